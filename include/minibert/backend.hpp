// SPDX-License-Identifier: MIT
#pragma once
/* The backend contract. backend<Device> is the op table every device implements (ggml's ggml_backend_i, candle's
   BackendStorage): static member templates over raw pointers to contiguous device data, each taking the device's
   context<Device> first (stream, library handles, scratch arena, threads), as llm.c passes its cudaStream_t.
   Autograd ops (the ops/ headers) call only this table, so model code never names a device's kernels.

   `backend_for<Device, T>` below is the contract as code: one requirement per member, checked at compile time by
   each backend for the element types it serves (cpu/backend.hpp: float, double; cuda/backend.hpp: float, half,
   bfloat16). tests/test_backend_contract.cpp builds the whole model, forward and backward, against a stub device
   that only declares the table. Adding an op = one line here, one kernel per backend, one test body
   (tests/test_backend_ops.cpp). */

#include <cmath>    // sqrt
#include <concepts> // same_as, convertible_to
#include <cstdint>  // int64_t, int32_t, uint8_t, uint64_t
#include <memory>   // shared_ptr (graph capture)
#include <span>     // span (multi-tensor AdamW)

#include <minibert/config.hpp>
#include <minibert/dtype.hpp>
#include <minibert/precision.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

/// @brief element-wise binary ops of the table
enum class binary_op { add, sub, mul };
/// @brief activations of the table: GELU in erf form (BERT's "gelu") and tanh form ("gelu_new",
/// "gelu_pytorch_tanh"), tanh, ReLU
enum class activation { gelu_erf, gelu_tanh, tanh, relu };

/// @brief The accumulation type of a storage type (PyTorch's acc_type): what statistics, losses, optimizer moments
/// and master weights are kept in. fp32 for float, half and bfloat16; fp64 for double.
template <class T> struct accumulate_type { using type = float; };
template <> struct accumulate_type<double> { using type = double; };
template <class T> using acc_t = typename accumulate_type<T>::type;

/// @brief shapes and strides of one fused attention call
struct attention_dims {
  std::int64_t B, T, C, NH;
  std::int64_t ld_qkv; // row stride of q, k, v: C, or 3C when they are column blocks of one QKV buffer
  MINIBERT_HOST_DEVICE std::int64_t HS() const { return C / NH; }
};

/// @brief Maps a row r of a (lead..., L) tensor to the row of a broadcast (lead'..., L) operand:
/// lead holds the leading dims, row_strides the operand's strides in rows (0 on broadcast dims).
struct row_broadcast {
  shape lead;
  shape row_strides;
  std::int64_t operator()(std::int64_t r) const {
    std::int64_t off = 0;
    for (int k = lead.rank() - 1; k >= 0; --k) {
      off += (r % lead[k]) * row_strides[k];
      r /= lead[k];
    }
    return off;
  }
};

/// @brief The per-step scalars of one AdamW update, computed in double on the host (as PyTorch computes them in
/// Python floats) and rounded to A (the accumulation type) once, as a Scalar argument of a torch op is.
/// adamw_step does, element-wise on the master weights p:
///   p = p * decay;  m = m * beta1 + (1-beta1) * g;  v = v * beta2 + (1-beta2) * g * g;
///   p = p + (neg_step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
/// with decay = 1 - lr * weight_decay, neg_step_size = -lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t).
template <class A> struct adamw_coefficients {
  A decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
};

/// @brief One tensor of a multi-tensor (foreach) op: n contiguous elements at data. The optimizer's ops take a list of
/// them (torch's _foreach_* ops and its foreach clip_grad_norm_), so a device covers every parameter in one launch
/// rather than one or more per parameter: bert-base has about 200.
template <class T> struct foreach_tensor {
  T* data;
  std::int64_t n;
};

/// @brief One tensor of a multi-tensor AdamW update (torch's _multi_tensor_adamw, apex's multi_tensor_apply): n
/// elements of master weights (the parameter itself when T is its accumulation type), the parameter (written as
/// T(master) when it is not the master), its gradient and both moments. One adamw_step call updates a list of them
/// with the same coefficients, so a device can do it in one launch.
template <class T> struct adamw_tensor {
  acc_t<T>* master;
  T* param;
  const T* grad;
  acc_t<T>* exp_avg;
  acc_t<T>* exp_avg_sq;
  std::int64_t n;
};

/// @brief torch.nn.utils.clip_grad_norm_'s factor max_norm / (norm + 1e-6) from the sum of squares of all gradients,
/// or 1 when that is >= 1 (torch's clamp) or the norm is not finite (the gradients are then left alone: the caller
/// decides, as fp16 loss scaling skips the step). Host and device code.
MINIBERT_HOST_DEVICE double clip_coefficient(double total_sq, double max_norm) {
  const double total = sqrt(total_sq);
  if (!(total - total == 0.0)) return 1.0; // inf or NaN
  const double coef = max_norm / (total + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

/// @brief what a device's calls run in (stream, handles, scratch, threads); specialized by each backend
template <class Device> struct context;
/// @brief the op table of one device; specialized by each backend
template <class Device> struct backend;
/// @brief the device's default context (one per thread on the CPU; one per process on a GPU, on its own stream: use
/// it from one host thread at a time, or give each thread its own context through context_scope)
template <class Device> context<Device>& default_context();

namespace detail {
template <class Device> context<Device>*& current_context_slot() {
  thread_local context<Device>* current = nullptr;
  return current;
}
} // namespace detail

/// @brief The context ops on this thread run in: the device's default context unless a context_scope chose another
/// (as a CUDA stream guard does in PyTorch). Ops (the ops/ headers) take it here and pass it to every backend call.
template <class Device> context<Device>& current_context() {
  context<Device>* c = detail::current_context_slot<Device>();
  return c ? *c : default_context<Device>();
}

/// @brief RAII: ops on this thread run in ctx until the scope ends
template <class Device> class context_scope {
public:
  explicit context_scope(context<Device>& ctx) : prev_(detail::current_context_slot<Device>()) {
    detail::current_context_slot<Device>() = &ctx;
  }
  ~context_scope() { detail::current_context_slot<Device>() = prev_; }
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;

private:
  context<Device>* prev_;
};

/// @brief RAII: matrix products of ops on this thread run at precision p until the scope ends (fp32 data, operands
/// rounded to p, fp32 accumulation: precision.hpp), as a torch.autocast region does; it sets the current context's
/// matmul field and restores it
template <class Device> class autocast {
public:
  explicit autocast(matmul_precision p) : ctx_(current_context<Device>()), prev_(ctx_.matmul) { ctx_.matmul = p; }
  ~autocast() { ctx_.matmul = prev_; }
  autocast(const autocast&) = delete;
  autocast& operator=(const autocast&) = delete;

private:
  context<Device>& ctx_;
  matmul_precision prev_;
};

// ---------------------------------------------------------------------------------------------------------------------
// The contract. Shapes in B,T,C,NH letters; N rows, C columns; every pointer is device memory of contiguous data
// unless it says host. Results that are scalars (losses, sums, norms) are written to device memory, so a training
// step needs no host synchronization; download() is the only call that waits for the device.

template <class Device, class T>
concept backend_for = requires(context<Device>& ctx, T* y, const T* x, T a, std::int64_t n, const shape& s,
                               acc_t<T>* acc, const acc_t<T>* cacc, double* sum_dev, const double* csum_dev,
                               const std::int32_t* ids, const std::int32_t* mask01, std::uint8_t* keep,
                               const std::uint8_t* ckeep, const row_broadcast& rows, const attention_dims& dims,
                               typename backend<Device>::template attention_saved<T>& saved,
                               const typename backend<Device>::template attention_saved<T>& csaved,
                               const adamw_coefficients<acc_t<T>>& coef, std::span<const adamw_tensor<T>> adamw_list,
                               std::span<const foreach_tensor<T>> list, std::span<const foreach_tensor<const T>> clist,
                               binary_op op, activation act, bool flag,
                               float p, std::uint64_t seed) {
  // memory and copies
  { ctx.matmul } -> std::convertible_to<matmul_precision>;                      // precision of GEMMs (autocast)
  { backend<Device>::fill(ctx, y, n, a) } -> std::same_as<void>;               // y[0,n) = a
  { backend<Device>::copy(ctx, x, y, n) } -> std::same_as<void>;               // y = x (device to device)
  { backend<Device>::upload(ctx, x, y, n) } -> std::same_as<void>;             // device y = host x; x reusable on return
  { backend<Device>::download(ctx, x, y, n) } -> std::same_as<void>;           // host y = device x; waits for the device
  { backend<Device>::copy_strided(ctx, x, s, s, y) } -> std::same_as<void>;    // y (packed) = view x (sizes, strides)
  { backend<Device>::copy_into(ctx, x, y, s, s) } -> std::same_as<void>;       // view y (sizes, strides) = packed x
  { backend<Device>::cast(ctx, x, acc, n) } -> std::same_as<void>;             // acc = float(x) (to master weights)
  { backend<Device>::synchronize(ctx) } -> std::same_as<void>;                 // wait for the context's work
  // element-wise
  { backend<Device>::axpy(ctx, a, x, y, n) } -> std::same_as<void>;            // y += a x
  { backend<Device>::scale(ctx, a, x, y, n) } -> std::same_as<void>;           // y = a x
  { backend<Device>::binary(ctx, op, s, x, s, x, s, y) } -> std::same_as<void>; // out = a op b, broadcast strides
  { backend<Device>::sum_to(ctx, x, s, y, n, s) } -> std::same_as<void>;       // reverse of a broadcast
  { backend<Device>::sum_all(ctx, x, n, flag, y) } -> std::same_as<void>;      // y[0] = sum (mean if flag), in double
  { backend<Device>::broadcast_scalar(ctx, x, a, y, n) } -> std::same_as<void>; // y[i] = x[0] / a
  // matrix products (row-major; alpha, beta in the accumulation type)
  { backend<Device>::gemm(ctx, flag, flag, n, n, n, *cacc, x, n, x, n, *cacc, y, n) } -> std::same_as<void>;
  { backend<Device>::gemm_batched(ctx, flag, flag, n, n, n, *cacc, x, n, n, x, n, n, *cacc, y, n, n, n) }
      -> std::same_as<void>;
  { backend<Device>::linear_forward(ctx, x, x, x, y, n, n, n) } -> std::same_as<void>;  // (N,K) (C,K)^T + bias (C)
  { backend<Device>::linear_backward(ctx, x, x, x, y, y, y, n, n, n) } -> std::same_as<void>; // dinp=; dw+=; db+=
  // activations, normalization, softmax
  { backend<Device>::activation_forward(ctx, act, x, y, n) } -> std::same_as<void>;
  { backend<Device>::activation_backward(ctx, act, x, x, y, n) } -> std::same_as<void>;
  { backend<Device>::layer_norm_forward(ctx, x, x, x, y, acc, acc, n, n, 1e-12) } -> std::same_as<void>; // mean, rstd fp32
  { backend<Device>::layer_norm_backward(ctx, x, x, x, cacc, cacc, y, y, y, n, n) } -> std::same_as<void>; // dw, db +=
  { backend<Device>::softmax_forward(ctx, x, x, rows, y, n, n) } -> std::same_as<void>;  // additive mask, rows map
  { backend<Device>::softmax_backward(ctx, x, x, y, n, n) } -> std::same_as<void>;
  { backend<Device>::additive_mask(ctx, mask01, y, n) } -> std::same_as<void>;           // 1 -> 0, 0 -> lowest(T)
  // embeddings (int32 and int64 ids; the backward is deterministic: no float atomics)
  { backend<Device>::embedding_forward(ctx, ids, x, y, n, n) } -> std::same_as<void>;
  { backend<Device>::embedding_backward(ctx, ids, x, y, n, n) } -> std::same_as<void>;    // dw[ids[i]] += dout[i]
  // losses: the forward writes the mean loss to y[0]; the backward reads dloss from device memory
  { backend<Device>::cross_entropy_forward(ctx, x, ids, y, n, n, n, y, acc) } -> std::same_as<void>; // probs, loss, count
  { backend<Device>::cross_entropy_backward(ctx, x, ids, x, cacc, y, n, n, n) } -> std::same_as<void>;
  { backend<Device>::mse_forward(ctx, x, x, n, y) } -> std::same_as<void>;
  { backend<Device>::mse_backward(ctx, x, x, x, y, n) } -> std::same_as<void>;
  { backend<Device>::bce_with_logits_forward(ctx, x, x, n, y) } -> std::same_as<void>;
  { backend<Device>::bce_with_logits_backward(ctx, x, x, x, y, n) } -> std::same_as<void>;
  // dropout: element i kept when Philox uniform (seed, counter base + i/4, lane i%4) >= p (same on every device)
  { backend<Device>::dropout_forward(ctx, x, y, keep, n, p, seed, seed) } -> std::same_as<void>;
  { backend<Device>::dropout_backward(ctx, x, ckeep, y, n, p) } -> std::same_as<void>;
  // attention: the backend owns what it saves for the backward (attention_saved<T>: probabilities and the dropout
  // mask on the CPU; a kernel may save a log-sum-exp per row instead)
  { backend<Device>::attention_forward(ctx, dims, x, x, x, x, y, saved, p, seed, seed) } -> std::same_as<void>;
  { backend<Device>::attention_backward(ctx, dims, x, x, x, x, x, csaved, p, y, y, y) } -> std::same_as<void>;
  // optimizer: each over a list of tensors (one launch for all of them on a GPU). AdamW with the same coefficients, on
  // fp32 master weights; each tensor's T copy is written when it is not the master itself
  { backend<Device>::adamw_step(ctx, adamw_list, coef) } -> std::same_as<void>;
  { backend<Device>::sum_squares(ctx, clist, sum_dev) } -> std::same_as<void>;   // *sum_dev += sum x^2 (double)
  { backend<Device>::clip_by_norm(ctx, list, csum_dev, 1.0) } -> std::same_as<void>; // torch's clip coefficient
  // fp16 loss scaling (torch._amp_foreach_non_finite_check_and_unscale_): y *= inv_scale in place (y unchanged when
  // inv_scale is 1); *acc = 1 when an element is inf or NaN before or after (as stored in T); never cleared here
  { backend<Device>::non_finite_check_and_unscale(ctx, list, *cacc, acc) } -> std::same_as<void>;
};

/// @brief Optional members: allocator statistics (a device without a caching allocator need not have them).
template <class Device>
concept has_memory_stats = requires(context<Device>& ctx) {
  { backend<Device>::empty_cache(ctx) } -> std::same_as<void>;
  { backend<Device>::memory_allocated(ctx) } -> std::convertible_to<std::int64_t>;
  { backend<Device>::max_memory_allocated(ctx) } -> std::convertible_to<std::int64_t>;
};

/// @brief Optional members: capturing the work queued on a context into a graph and replaying it (CUDA graphs;
/// cuda/backend.hpp says what each does; training/step_graphs.hpp uses them for the training step).
template <class Device>
concept has_graph_capture =
    requires(context<Device>& ctx, const std::shared_ptr<void>& h, const std::uint64_t* philox) {
      { backend<Device>::graph_pool() } -> std::same_as<std::shared_ptr<void>>;
      { backend<Device>::capture_begin(ctx, h, philox, std::uint64_t(0), std::uint64_t(0)) } -> std::same_as<void>;
      { backend<Device>::capture_end(ctx) } -> std::same_as<std::shared_ptr<void>>;
      { backend<Device>::capture_abort(ctx) } -> std::same_as<void>;
      { backend<Device>::replay(ctx, h) } -> std::same_as<void>;
    };

} // namespace minibert
