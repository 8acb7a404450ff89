// SPDX-License-Identifier: MIT
// The one translation unit of a program that defines minibert's CUDA backend (every member of backend<device::cuda>,
// instantiated for float, half and bfloat16) and, where NCCL was found, make_nccl_communicator. Everything else in
// the program is plain C++ and includes <minibert/cuda/backend.hpp> (and <minibert/distributed/nccl.hpp>).
#include <minibert/cuda/backend_impl.cuh>
#if defined(MINIBERT_WITH_NCCL)
#include <minibert/cuda/nccl.cuh> // make_nccl_communicator
#endif
