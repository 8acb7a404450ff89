// SPDX-License-Identifier: MIT
#pragma once
/* nccl_communicator (distributed/nccl.hpp): NCCL collectives on device memory. Each collective is queued on the
   communicator's own stream after an event recorded on the CUDA context's stream (so it sees the gradients the
   backward pass wrote there), and records a completion event; work::wait polls that event against the timeout and
   then makes the context's stream wait on it, so the backward kernels queued meanwhile overlap the communication.
   A rank that stops answering shows as a timeout (NCCL's own async errors are checked on every poll). */

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring> // memcpy
#include <memory>  // unique_ptr, make_unique
#include <vector>  // vector
#include <string> // string

#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/distributed/nccl.hpp>
#include <minibert/distributed/tcp_rendezvous.hpp>

namespace minibert::distributed {

namespace detail {
inline void check_nccl(ncclResult_t r, const std::string& what) {
  MINIBERT_CHECK(r == ncclSuccess, "nccl_communicator", what << " failed: " << ncclGetErrorString(r));
}
} // namespace detail

class nccl_communicator final : public communicator {
public:
  nccl_communicator(const launch_env& env, communicator* bootstrap) : rank_(env.rank), size_(env.world_size),
                                                                       local_rank_(env.local_rank) {
    int devices = 0;
    MINIBERT_CUDA_CHECK(cudaGetDeviceCount(&devices));
    MINIBERT_CHECK(devices > 0, "nccl_communicator", "no CUDA device is visible to rank " << rank_);
    MINIBERT_CUDA_CHECK(cudaSetDevice(local_rank_ % devices));
    ncclUniqueId id{};
    if (rank_ == 0) detail::check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (bootstrap) {
      bootstrap->broadcast(&id, sizeof id, 0);
    } else {
      std::vector<unsigned char> blob(sizeof id);
      std::memcpy(blob.data(), &id, sizeof id);
      blob = rendezvous_broadcast(env, std::move(blob), sizeof id, timeout_);
      std::memcpy(&id, blob.data(), sizeof id);
    }
    detail::check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank (rank " + std::to_string(rank_) +
                                                                       " of " + std::to_string(size_) + ")");
    MINIBERT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MINIBERT_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(float)));
  }
  ~nccl_communicator() override {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaFree(barrier_buf_);
    cudaStreamDestroy(stream_);
  }
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "nccl"; }
  memory_space memory() const override { return memory_space::cuda; }

  work all_reduce_sum_async(void* data, std::size_t count, element_type type, std::string what) override {
    const cudaEvent_t done = after_compute();
    detail::check_nccl(ncclAllReduce(data, data, count, type == element_type::f32 ? ncclFloat : ncclDouble, ncclSum,
                                     comm_, stream_),
                       what);
    return completion(done, std::move(what));
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    const cudaEvent_t done = after_compute();
    const std::string what = "broadcast of " + std::to_string(bytes) + " bytes from rank " + std::to_string(root);
    detail::check_nccl(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), what);
    completion(done, what).wait();
  }
  void barrier() override { all_reduce_sum_async(barrier_buf_, 1, element_type::f32, "barrier").wait(); }
  [[noreturn]] void abort(int code) override {
    ncclCommAbort(comm_);
    std::_Exit(code); // the launcher (torchrun, mpirun) ends the other ranks when one exits non-zero
  }

private:
  static cudaStream_t compute_stream() { return cuda::stream_of(current_context<device::cuda>()); }

  // orders the communicator's stream after the work queued so far on the compute stream; returns the event that
  // completion() records
  cudaEvent_t after_compute() {
    cudaEvent_t ready = nullptr, done = nullptr;
    MINIBERT_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    MINIBERT_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    MINIBERT_CUDA_CHECK(cudaEventRecord(ready, compute_stream()));
    MINIBERT_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    MINIBERT_CUDA_CHECK(cudaEventDestroy(ready)); // released once the wait has consumed it
    return done;
  }

  work completion(cudaEvent_t done, std::string what) {
    MINIBERT_CUDA_CHECK(cudaEventRecord(done, stream_));
    auto s = std::make_shared<work::state>();
    s->what = std::move(what);
    ncclComm_t comm = comm_;
    s->poll = [done, comm, w = s->what]() mutable {
      if (!done) return true;
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaErrorNotReady) {
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(comm, &async);
        detail::check_nccl(async, w);
        return false;
      }
      MINIBERT_CUDA_CHECK(q);
      MINIBERT_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done, 0)); // the compute stream reads the result
      MINIBERT_CUDA_CHECK(cudaEventDestroy(done));
      done = nullptr;
      return true;
    };
    return work(std::move(s), timeout_);
  }

  int rank_, size_, local_rank_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* barrier_buf_ = nullptr;
};

std::unique_ptr<communicator> make_nccl_communicator(const launch_env& env, communicator* bootstrap) {
  return std::make_unique<nccl_communicator>(env, bootstrap);
}

} // namespace minibert::distributed
