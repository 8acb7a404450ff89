// SPDX-License-Identifier: MIT
#pragma once
/* The CUDA backend's definitions: include this header from exactly ONE .cu file of a program (doctest's
   DOCTEST_CONFIG_IMPLEMENT idea). It pulls in every kernel header and explicitly instantiates every member that
   cuda/backend.hpp declares, so host .cpp files compiled by g++ link against them:
     floating members           float, half, bfloat16
     memory members             also double, int32, int64, uint8 (fill, copy, upload, download, copy_strided, copy_into)
     embedding, cross-entropy   ids int32 and int64
   It also defines the non-template functions (allocator, context, device count, cuda_gemm_wgmma_ready), hence
   "exactly one". */

#ifndef __CUDACC__
#error "minibert/cuda/backend_impl.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstdint> // int32_t, int64_t, uint8_t, uint64_t

#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>      // defines: MINIBERT_CUDA_CHECK, stream_of, to_float, dims6, launch_1d
#include <minibert/cuda/allocator.cuh>   // defines: device_memory<cuda>, empty_cache, memory_allocated, max_...
#include <minibert/cuda/context.cuh>     // defines: context<cuda>, default_context, cuda_device_count, synchronize
#include <minibert/cuda/graph.cuh>       // defines: graph_pool, capture_begin, capture_end, capture_abort, replay
#include <minibert/cuda/memory.cuh>      // defines: fill, copy, upload, download, copy_strided, copy_into, cast
#include <minibert/cuda/elementwise.cuh> // defines: axpy, scale, binary, sum_to, sum_all, broadcast_scalar, activations
#include <minibert/cuda/gemm.cuh>        // defines: gemm, gemm_batched, linear_*, activation_linear_*

#include <minibert/cuda/layer_norm.cuh>  // defines: layer_norm_forward, layer_norm_backward
#include <minibert/cuda/softmax.cuh>     // defines: softmax_forward, softmax_backward, additive_mask
#include <minibert/cuda/embedding.cuh>   // defines: embedding_forward, embedding_backward
#include <minibert/cuda/loss.cuh>        // defines: cross_entropy_*, mse_*, bce_with_logits_*
#include <minibert/cuda/dropout.cuh>     // defines: dropout_forward, dropout_backward
#include <minibert/cuda/attention.cuh>   // defines: attention_forward, attention_backward, attention_varlen_*
#include <minibert/cuda/adamw.cuh>       // defines: adamw_step, sum_squares, clip_by_norm, non_finite_check_and_unscale

namespace minibert {

// ---------------------------------------------------------------------------------------------------------------------
// explicit instantiations

#define MINIBERT_CUDA_B backend<device::cuda>
#define MINIBERT_CUDA_CTX backend<device::cuda>::ctx_t&
#define MINIBERT_CUDA_I64 std::int64_t

#define MINIBERT_CUDA_INSTANTIATE_MEMORY(T)                                                                         \
  template void MINIBERT_CUDA_B::fill<T>(MINIBERT_CUDA_CTX, T*, MINIBERT_CUDA_I64, T);                              \
  template void MINIBERT_CUDA_B::copy<T>(MINIBERT_CUDA_CTX, const T*, T*, MINIBERT_CUDA_I64);                       \
  template void MINIBERT_CUDA_B::upload<T>(MINIBERT_CUDA_CTX, const T*, T*, MINIBERT_CUDA_I64);                     \
  template void MINIBERT_CUDA_B::download<T>(MINIBERT_CUDA_CTX, const T*, T*, MINIBERT_CUDA_I64);                   \
  template void MINIBERT_CUDA_B::copy_strided<T>(MINIBERT_CUDA_CTX, const T*, const shape&, const shape&, T*);      \
  template void MINIBERT_CUDA_B::copy_into<T>(MINIBERT_CUDA_CTX, const T*, T*, const shape&, const shape&);

#define MINIBERT_CUDA_INSTANTIATE_ELEMENTWISE(T)                                                                    \
  template void MINIBERT_CUDA_B::cast<T>(MINIBERT_CUDA_CTX, const T*, acc_t<T>*, MINIBERT_CUDA_I64);                \
  template void MINIBERT_CUDA_B::axpy<T>(MINIBERT_CUDA_CTX, T, const T*, T*, MINIBERT_CUDA_I64);                    \
  template void MINIBERT_CUDA_B::scale<T>(MINIBERT_CUDA_CTX, T, const T*, T*, MINIBERT_CUDA_I64);                   \
  template void MINIBERT_CUDA_B::binary<T>(MINIBERT_CUDA_CTX, binary_op, const shape&, const T*, const shape&,      \
                                           const T*, const shape&, T*);                                             \
  template void MINIBERT_CUDA_B::sum_to<T>(MINIBERT_CUDA_CTX, const T*, const shape&, T*, MINIBERT_CUDA_I64,        \
                                           const shape&);                                                           \
  template void MINIBERT_CUDA_B::sum_all<T>(MINIBERT_CUDA_CTX, const T*, MINIBERT_CUDA_I64, bool, T*);              \
  template void MINIBERT_CUDA_B::broadcast_scalar<T>(MINIBERT_CUDA_CTX, const T*, T, T*, MINIBERT_CUDA_I64);        \
  template void MINIBERT_CUDA_B::activation_forward<T>(MINIBERT_CUDA_CTX, activation, const T*, T*,                 \
                                                       MINIBERT_CUDA_I64);                                          \
  template void MINIBERT_CUDA_B::activation_backward<T>(MINIBERT_CUDA_CTX, activation, const T*, const T*, T*,      \
                                                        MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_GEMM(T)                                                                           \
  template void MINIBERT_CUDA_B::gemm<T>(MINIBERT_CUDA_CTX, bool, bool, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64,        \
                                         MINIBERT_CUDA_I64, acc_t<T>, const T*, MINIBERT_CUDA_I64, const T*,         \
                                         MINIBERT_CUDA_I64, acc_t<T>, T*, MINIBERT_CUDA_I64);                        \
  template void MINIBERT_CUDA_B::gemm_batched<T>(                                                                   \
      MINIBERT_CUDA_CTX, bool, bool, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, acc_t<T>, const T*,    \
      MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, const T*, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, acc_t<T>, T*,           \
      MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);                                                     \
  template void MINIBERT_CUDA_B::linear_forward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*, T*,             \
                                                   MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);        \
  template void MINIBERT_CUDA_B::linear_backward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*, T*, T*, T*,    \
                                                    MINIBERT_CUDA_I64, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);       \
  template void MINIBERT_CUDA_B::activation_linear_forward<T>(MINIBERT_CUDA_CTX, activation, const T*, const T*,    \
                                                              const T*, T*, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64,   \
                                                              MINIBERT_CUDA_I64);                                   \
  template void MINIBERT_CUDA_B::activation_linear_backward<T>(MINIBERT_CUDA_CTX, activation, const T*, const T*,   \
                                                               const T*, T*, T*, T*, MINIBERT_CUDA_I64,             \
                                                               MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_LAYER_NORM(T)                                                                     \
  template void MINIBERT_CUDA_B::layer_norm_forward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*, T*,         \
                                                       acc_t<T>*, acc_t<T>*, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64,   \
                                                       double);                                                     \
  template void MINIBERT_CUDA_B::layer_norm_backward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*,            \
                                                        const acc_t<T>*, const acc_t<T>*, T*, T*, T*,               \
                                                        MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_SOFTMAX(T)                                                                        \
  template void MINIBERT_CUDA_B::softmax_forward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const row_broadcast&,    \
                                                    T*, MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);                      \
  template void MINIBERT_CUDA_B::softmax_backward<T>(MINIBERT_CUDA_CTX, const T*, const T*, T*, MINIBERT_CUDA_I64,  \
                                                     MINIBERT_CUDA_I64);                                            \
  template void MINIBERT_CUDA_B::additive_mask<T>(MINIBERT_CUDA_CTX, const std::int32_t*, T*, MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_EMBEDDING(T, I)                                                                   \
  template void MINIBERT_CUDA_B::embedding_forward<T, I>(MINIBERT_CUDA_CTX, const I*, const T*, T*,                 \
                                                         MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);                     \
  template void MINIBERT_CUDA_B::embedding_backward<T, I>(MINIBERT_CUDA_CTX, const I*, const T*, T*,                \
                                                          MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_CROSS_ENTROPY(T, I)                                                               \
  template void MINIBERT_CUDA_B::cross_entropy_forward<T, I>(MINIBERT_CUDA_CTX, const T*, const I*, T*,             \
                                                             MINIBERT_CUDA_I64, MINIBERT_CUDA_I64,                  \
                                                             MINIBERT_CUDA_I64, T*, acc_t<T>*);                     \
  template void MINIBERT_CUDA_B::cross_entropy_backward<T, I>(MINIBERT_CUDA_CTX, const T*, const I*, const T*,      \
                                                              const acc_t<T>*, T*, MINIBERT_CUDA_I64,               \
                                                              MINIBERT_CUDA_I64, MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_LOSS(T)                                                                           \
  MINIBERT_CUDA_INSTANTIATE_CROSS_ENTROPY(T, std::int32_t)                                                          \
  MINIBERT_CUDA_INSTANTIATE_CROSS_ENTROPY(T, std::int64_t)                                                          \
  template void MINIBERT_CUDA_B::mse_forward<T>(MINIBERT_CUDA_CTX, const T*, const T*, MINIBERT_CUDA_I64, T*);      \
  template void MINIBERT_CUDA_B::mse_backward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*, T*,               \
                                                 MINIBERT_CUDA_I64);                                                \
  template void MINIBERT_CUDA_B::bce_with_logits_forward<T>(MINIBERT_CUDA_CTX, const T*, const T*,                  \
                                                            MINIBERT_CUDA_I64, T*);                                 \
  template void MINIBERT_CUDA_B::bce_with_logits_backward<T>(MINIBERT_CUDA_CTX, const T*, const T*, const T*, T*,   \
                                                             MINIBERT_CUDA_I64);

#define MINIBERT_CUDA_INSTANTIATE_DROPOUT(T)                                                                        \
  template void MINIBERT_CUDA_B::dropout_forward<T>(MINIBERT_CUDA_CTX, const T*, T*, std::uint8_t*,                 \
                                                    MINIBERT_CUDA_I64, float, std::uint64_t, std::uint64_t);        \
  template void MINIBERT_CUDA_B::dropout_backward<T>(MINIBERT_CUDA_CTX, const T*, const std::uint8_t*, T*,          \
                                                     MINIBERT_CUDA_I64, float);

#define MINIBERT_CUDA_INSTANTIATE_ATTENTION(T)                                                                      \
  template void MINIBERT_CUDA_B::attention_forward<T>(MINIBERT_CUDA_CTX, const attention_dims&, const T*, const T*, \
                                                      const T*, const T*, T*, MINIBERT_CUDA_B::attention_saved<T>&, \
                                                      float, std::uint64_t, std::uint64_t);                         \
  template void MINIBERT_CUDA_B::attention_backward<T>(                                                             \
      MINIBERT_CUDA_CTX, const attention_dims&, const T*, const T*, const T*, const T*, const T*,                   \
      const MINIBERT_CUDA_B::attention_saved<T>&, float, T*, T*, T*);                                           \
  template void MINIBERT_CUDA_B::attention_varlen_forward<T>(MINIBERT_CUDA_CTX, const MINIBERT_CUDA_B::varlen_dims&, \
                                                             const T*, const T*, const T*, T*, float*, float,       \
                                                             std::uint64_t, std::uint64_t);                         \
  template void MINIBERT_CUDA_B::attention_varlen_backward<T>(                                                      \
      MINIBERT_CUDA_CTX, const MINIBERT_CUDA_B::varlen_dims&, const T*, const T*, const T*, const T*, const T*,      \
      const float*, float, std::uint64_t, std::uint64_t, T*, T*, T*);

#define MINIBERT_CUDA_INSTANTIATE_ADAMW(T)                                                                          \
  template void MINIBERT_CUDA_B::adamw_step<T>(MINIBERT_CUDA_CTX, std::span<const adamw_tensor<T>>,                \
                                               const adamw_coefficients<acc_t<T>>&);                                \
  template void MINIBERT_CUDA_B::sum_squares<T>(MINIBERT_CUDA_CTX, std::span<const foreach_tensor<const T>>,       \
                                                double*);                                                           \
  template void MINIBERT_CUDA_B::clip_by_norm<T>(MINIBERT_CUDA_CTX, std::span<const foreach_tensor<T>>,             \
                                                 const double*, double);                                            \
  template void MINIBERT_CUDA_B::non_finite_check_and_unscale<T>(MINIBERT_CUDA_CTX,                                 \
                                                                 std::span<const foreach_tensor<T>>, acc_t<T>,      \
                                                                 acc_t<T>*);

// every member over the floating types
#define MINIBERT_CUDA_INSTANTIATE_FLOATING(T)                                                                       \
  MINIBERT_CUDA_INSTANTIATE_MEMORY(T)                                                                               \
  MINIBERT_CUDA_INSTANTIATE_ELEMENTWISE(T)                                                                          \
  MINIBERT_CUDA_INSTANTIATE_GEMM(T)                                                                                 \
  MINIBERT_CUDA_INSTANTIATE_LAYER_NORM(T)                                                                           \
  MINIBERT_CUDA_INSTANTIATE_SOFTMAX(T)                                                                              \
  MINIBERT_CUDA_INSTANTIATE_EMBEDDING(T, std::int32_t)                                                              \
  MINIBERT_CUDA_INSTANTIATE_EMBEDDING(T, std::int64_t)                                                              \
  MINIBERT_CUDA_INSTANTIATE_LOSS(T)                                                                                 \
  MINIBERT_CUDA_INSTANTIATE_DROPOUT(T)                                                                              \
  MINIBERT_CUDA_INSTANTIATE_ATTENTION(T)                                                                            \
  MINIBERT_CUDA_INSTANTIATE_ADAMW(T)

MINIBERT_CUDA_INSTANTIATE_FLOATING(float)
MINIBERT_CUDA_INSTANTIATE_FLOATING(half)
MINIBERT_CUDA_INSTANTIATE_FLOATING(bfloat16)

MINIBERT_CUDA_INSTANTIATE_MEMORY(double)
MINIBERT_CUDA_INSTANTIATE_MEMORY(std::int32_t)
MINIBERT_CUDA_INSTANTIATE_MEMORY(std::int64_t)
MINIBERT_CUDA_INSTANTIATE_MEMORY(std::uint8_t)

#undef MINIBERT_CUDA_INSTANTIATE_FLOATING
#undef MINIBERT_CUDA_INSTANTIATE_ADAMW
#undef MINIBERT_CUDA_INSTANTIATE_ATTENTION
#undef MINIBERT_CUDA_INSTANTIATE_DROPOUT
#undef MINIBERT_CUDA_INSTANTIATE_LOSS
#undef MINIBERT_CUDA_INSTANTIATE_CROSS_ENTROPY
#undef MINIBERT_CUDA_INSTANTIATE_EMBEDDING
#undef MINIBERT_CUDA_INSTANTIATE_SOFTMAX
#undef MINIBERT_CUDA_INSTANTIATE_LAYER_NORM
#undef MINIBERT_CUDA_INSTANTIATE_GEMM
#undef MINIBERT_CUDA_INSTANTIATE_ELEMENTWISE
#undef MINIBERT_CUDA_INSTANTIATE_MEMORY
#undef MINIBERT_CUDA_I64
#undef MINIBERT_CUDA_CTX
#undef MINIBERT_CUDA_B

bool cuda_gemm_wgmma_ready() noexcept { return cuda::wgmma::ready(); }

} // namespace minibert
