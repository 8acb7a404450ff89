// SPDX-License-Identifier: MIT
#pragma once
/* gradient_reducer: the gradient averaging of PyTorch's DistributedDataParallel. Parameters are packed into buckets
   in reverse registration order (the order the backward pass completes them in): a small first bucket (1 MiB) so that
   communication starts early, then buckets of up to 25 MiB. A grad-ready hook on every parameter (autograd.hpp)
   copies its gradient into the bucket; a full bucket starts its all-reduce at once, while the backward pass goes on
   with the layers below, and buckets start in index order on every rank (collectives must match across ranks).
   finish() waits for them and writes gradient / world_size back into every parameter: after it every rank holds the
   same averaged gradients. Micro-batches that only accumulate (no_sync) communicate nothing.

     reducer.broadcast_parameters();            // once: every rank starts from rank 0's weights
     for each micro-batch:
       reducer.prepare_backward(last_micro_batch); loss.backward();
     reducer.finish(); optimizer step          */

#include <algorithm> // fill
#include <chrono>    // steady_clock
#include <cstddef>   // size_t
#include <cstdint>   // int64_t
#include <string>    // string, to_string
#include <vector>    // vector

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/distributed/communicator.hpp>
#include <minibert/tensor_ops.hpp>

namespace minibert::distributed {

/// @brief bucket sizes, as DDP's bucket_cap_mb and its first bucket
struct bucket_options {
  std::size_t first_bucket_bytes = std::size_t(1) << 20;
  std::size_t bucket_bytes = std::size_t(25) << 20;
};

/// @brief the parameter types whose gradients the communicators sum (MPI has no 16-bit floating-point sum)
template <class T> inline constexpr bool reducible_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T, class Device> class gradient_reducer {
public:
  /// @param params the model's parameters in registration order (module::parameters())
  /// @throws minibert::error when the communicator cannot reach Device's memory
  gradient_reducer(std::vector<variable<T, Device>> params, communicator& comm, bucket_options opt = {})
      : params_(std::move(params)), comm_(comm), owner_(params_.size()), seen_(params_.size(), false) {
    static_assert(reducible_v<T>, "gradients are reduced in float or double");
    constexpr bool host = std::is_same_v<Device, device::cpu>;
    MINIBERT_CHECK((comm.memory() == memory_space::host) == host, "gradient_reducer",
                   "the " << comm.name() << " communicator reduces " << (host ? "device" : "host") << " memory, but the "
                          "model is on " << Device::name << " (MPI for the CPU, NCCL for CUDA)");
    assign_buckets(opt);
    for (std::size_t i = 0; i < params_.size(); ++i) params_[i].set_grad_ready_hook([this, i] { grad_ready(i); });
  }
  ~gradient_reducer() {
    for (auto& p : params_) p.set_grad_ready_hook(nullptr);
  }
  gradient_reducer(const gradient_reducer&) = delete;
  gradient_reducer& operator=(const gradient_reducer&) = delete;

  /// @brief copies rank 0's parameter values to every rank (DDP's constructor does the same)
  void broadcast_parameters() {
    for (auto& b : buckets_) {
      for_each_member(b, [&](variable<T, Device>& p, std::int64_t off) {
        backend<Device>::copy(ctx(), p.value().data(), b.buffer.data() + off, p.numel());
      });
      comm_.broadcast(b.buffer.data(), std::size_t(b.buffer.numel()) * sizeof(T), 0);
      for_each_member(b, [&](variable<T, Device>& p, std::int64_t off) {
        backend<Device>::copy(ctx(), b.buffer.data() + off, p.mutable_value().data(), p.numel());
      });
    }
  }

  /// @brief before each backward pass: `sync` when it is the last micro-batch of an optimizer step (its hooks then
  /// start the all-reduces); otherwise gradients only accumulate locally (DDP's no_sync)
  void prepare_backward(bool sync) {
    sync_ = sync;
    if (!sync) return;
    std::fill(seen_.begin(), seen_.end(), false);
    for (auto& b : buckets_) b.ready = 0;
  }

  /// @brief starts the buckets no hook started (parameters the backward pass did not reach count as zero), waits for
  /// every bucket and sets each parameter's gradient to the average over the ranks
  /// @throws minibert::error when a collective failed or timed out
  void finish() {
    launched_in_backward_ = next_launch_;
    for (auto& b : buckets_) b.ready = b.members.size();
    launch_ready_buckets();
    for (auto& b : buckets_) {
      const auto t0 = std::chrono::steady_clock::now();
      b.pending.wait();
      exposed_ += std::chrono::steady_clock::now() - t0;
      b.pending = work();
      const T inv_world = T(1.0f / float(comm_.world_size()));
      for_each_member(b, [&](variable<T, Device>& p, std::int64_t off) {
        tensor<T, Device> g = tensor<T, Device>::empty(p.shape());
        backend<Device>::scale(ctx(), inv_world, b.buffer.data() + off, g.data(), p.numel());
        auto& n = *p.node_ptr();
        n.grad = std::move(g);
        n.grad_owned = true;
      });
    }
    next_launch_ = 0;
    sync_ = true;
  }

  std::size_t num_buckets() const { return buckets_.size(); }
  /// @brief how many buckets had started before the last finish() (started by hooks during the backward pass)
  std::size_t launched_during_backward() const { return launched_in_backward_; }
  /// @brief seconds finish() has waited for all-reduces in all: the communication the backward pass did not hide
  double exposed_seconds() const { return exposed_.count(); }

private:
  struct bucket {
    std::vector<std::size_t> members; // parameter indices
    std::vector<std::int64_t> offsets;
    tensor<T, Device> buffer;
    std::size_t ready = 0;
    work pending;
  };

  static context<Device>& ctx() { return current_context<Device>(); }

  void assign_buckets(const bucket_options& opt) {
    std::size_t cap = opt.first_bucket_bytes, bytes = 0;
    buckets_.emplace_back();
    for (std::size_t k = params_.size(); k-- > 0;) {
      const std::size_t nbytes = std::size_t(params_[k].numel()) * sizeof(T);
      if (!buckets_.back().members.empty() && bytes + nbytes > cap) {
        buckets_.emplace_back();
        cap = opt.bucket_bytes;
        bytes = 0;
      }
      bucket& b = buckets_.back();
      b.offsets.push_back(std::int64_t(bytes / sizeof(T)));
      b.members.push_back(k);
      owner_[k] = buckets_.size() - 1;
      bytes += nbytes;
    }
    for (auto& b : buckets_) {
      std::int64_t n = 0;
      for (std::size_t m : b.members) n += params_[m].numel();
      b.buffer = tensor<T, Device>::empty({std::max<std::int64_t>(n, 1)});
    }
  }

  template <class F> void for_each_member(bucket& b, F&& f) {
    for (std::size_t j = 0; j < b.members.size(); ++j) f(params_[b.members[j]], b.offsets[j]);
  }

  void grad_ready(std::size_t i) {
    if (!sync_ || seen_[i]) return;
    seen_[i] = true;
    ++buckets_[owner_[i]].ready;
    launch_ready_buckets();
  }

  void launch_ready_buckets() {
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].members.size()) {
      bucket& b = buckets_[next_launch_];
      for_each_member(b, [&](variable<T, Device>& p, std::int64_t off) {
        if (p.has_grad()) backend<Device>::copy(ctx(), contiguous(p.grad()).data(), b.buffer.data() + off, p.numel());
        else backend<Device>::fill(ctx(), b.buffer.data() + off, p.numel(), T(0));
      });
      b.pending = comm_.all_reduce_sum_async(b.buffer.data(), std::size_t(b.buffer.numel()),
                                             std::is_same_v<T, float> ? element_type::f32 : element_type::f64,
                                             "all_reduce of gradient bucket " + std::to_string(next_launch_) + " (" +
                                                 std::to_string(b.buffer.numel()) + " elements)");
      ++next_launch_;
    }
  }

  std::vector<variable<T, Device>> params_;
  communicator& comm_;
  std::vector<bucket> buckets_;
  std::vector<std::size_t> owner_; // parameter index -> bucket index
  std::vector<bool> seen_;
  std::size_t next_launch_ = 0, launched_in_backward_ = 0;
  std::chrono::duration<double> exposed_{0};
  bool sync_ = true;
};

} // namespace minibert::distributed
