// SPDX-License-Identifier: MIT
#pragma once
/* The NCCL communicator, declared in plain C++ (no CUDA types: this header compiles with g++) and defined in
   cuda/nccl.cuh, which the program's one CUDA translation unit includes (MINIBERT_WITH_NCCL: link minibert::nccl).
   It reduces device memory on a stream of its own, ordered after the work queued on the CUDA context's stream, and
   makes that stream wait for the result only when the gradient reducer asks for it (work::wait). */

#include <memory> // unique_ptr

#include <minibert/distributed/communicator.hpp>

namespace minibert::distributed {

/// @brief joins the NCCL clique of this launch on GPU env.local_rank: NCCL's unique id comes from rank 0 through
/// `bootstrap` (an MPI communicator, under mpirun) or, when it is null, through the TCP rendezvous at
/// MASTER_ADDR:MASTER_PORT (a torchrun-style launch). Call it before any other CUDA work of the process.
/// @throws minibert::error when NCCL or the bootstrap fails, naming the step
std::unique_ptr<communicator> make_nccl_communicator(const launch_env& env, communicator* bootstrap);

} // namespace minibert::distributed
