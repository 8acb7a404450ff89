// SPDX-License-Identifier: MIT
#pragma once
/* cuDNN's fused attention (scaled dot-product attention of the cuDNN 9 graph API, built with cudnn_frontend) as the
   third attention provider of backend<device::cuda> (MINIBERT_ATTENTION_PROVIDER=cudnn) and the baseline of the
   flash kernels. Declarations only, in plain C++: cuda/attention.cuh calls them; the definitions are in
   cuda/attention_cudnn_impl.hpp, which one plain C++ file of a program includes (cudnn_frontend is host code, and a
   heavy one: it stays out of the nvcc translation unit). Both sides see MINIBERT_CUDNN=1 (minibert's own programs:
   the CMake option MINIBERT_CUDNN_ATTENTION); without it the provider is not built and asking for it falls back like
   an unsupported problem.

   Layout: q, k, v, dq, dk, dv (B,T,C) with row stride ld, head h at columns [h*HS, (h+1)*HS); out, dout (B,T,C);
   stats (B,NH,T) fp32, the natural-log log-sum-exp of each scaled score row. The mask is the backend's (B,T)
   additive mask, passed as a bias broadcast over heads and queries, with key_len (B) (keys past a row's last
   unmasked key left out, as the other providers do) as cuDNN's padding mask. Dropout draws from cuDNN's own Philox
   stream (seed, offset = base): the backward regenerates the forward's mask, but it is not the CPU's draw. */

#include <cstdint> // int64_t, int32_t, uint64_t

#include <minibert/backend.hpp> // context
#include <minibert/dtype.hpp>   // dtype

namespace minibert::cuda::cudnn_sdpa {

/// @brief one attention problem: what selects (and caches) a cuDNN graph
struct problem {
  std::int64_t B, T, NH, HS, ld; ///< out and dout have row stride C = NH * HS
  dtype data;      ///< half or bfloat16
  bool masked;     ///< a bias and key lengths are given
  float p;         ///< dropout probability
  bool operator==(const problem&) const = default;
};

/// @brief device pointers of one call; null where the problem has no such input
struct tensors {
  const void *q, *k, *v, *bias; ///< bias: (B, bias_stride(T)), the additive mask in its first T columns
  const std::int32_t *seq_len_q, *seq_len_kv; ///< (B) each; seq_len_q holds T
  void* out;
  float* stats;
  const void *dout, *saved_out; ///< backward only
  void *dq, *dk, *dv;           ///< backward only
};

/// @brief the row stride of the bias cuDNN reads: T rounded up to 8 elements (16-byte aligned rows)
constexpr std::int64_t bias_stride(std::int64_t T) { return (T + 7) / 8 * 8; }

/// @brief whether this program was built with the cuDNN provider (MINIBERT_CUDNN=1)
constexpr bool built() {
#if defined(MINIBERT_CUDNN)
  return true;
#else
  return false;
#endif
}

/// @brief whether cuDNN builds a forward and a backward plan for the problem on the current device (cached; false
/// when the program was built without the provider, the library is missing, or cuDNN declines the problem)
bool supports(context<device::cuda>& ctx, const problem& pr);
/// @brief out, stats from q, k, v (and bias, key lengths): the forward graph, on ctx's stream
void forward(context<device::cuda>& ctx, const problem& pr, const tensors& t, std::uint64_t seed, std::uint64_t base);
/// @brief dq, dk, dv from dout, q, k, v, the saved output and stats: the backward graph, on ctx's stream
void backward(context<device::cuda>& ctx, const problem& pr, const tensors& t, std::uint64_t seed, std::uint64_t base);
/// @brief frees what a context's provider state holds (its handle and cached graphs); called by ~context
void release(void* state) noexcept;

} // namespace minibert::cuda::cudnn_sdpa
