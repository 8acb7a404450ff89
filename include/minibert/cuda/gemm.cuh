// SPDX-License-Identifier: MIT
#pragma once
/* Matrix products of backend<device::cuda> on cuBLASLt (llmc/matmul.cuh): gemm, strided-batched gemm, and the linear
   layer forward (bias fused as cuBLASLt's BIAS epilogue) and backward (dbias by a deterministic column reduction).
   fp32 accumulation for every type (CUBLAS_COMPUTE_32F, or its TF32 mode for fp32 when MINIBERT_ALLOW_TF32=1).

   Row-major to column-major: a row-major (r, c) matrix with row stride ld is the column-major (c, r) matrix with
   leading dim ld, its transpose. So the row-major C (M,N) = op(A) op(B) is computed as the column-major
   C^T (N,M) = op(B)^T (N,K) op(A)^T (K,M): cuBLASLt's A operand is our B, its B operand our A, m = N, n = M.

   cuBLASLt picks algorithms assuming 256-byte aligned operands unless told otherwise, so each call passes the real
   alignment of its pointers (and batch strides), as PyTorch does. Problems cuBLASLt declines (no algorithm, a leading
   dim it rejects) run a plain tiled kernel instead, so every call has a result. cuBLASLt keeps its own heuristics
   cache (cublasLtHeuristicsCacheGetCapacity), so the heuristic is queried per call. */

#ifndef __CUDACC__
#error "minibert/cuda/gemm.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm>   // min
#include <cstdint>     // int64_t, int32_t, uint32_t, uint64_t, uintptr_t
#include <cstdlib>     // getenv
#include <cstring>     // strcmp
#include <limits>      // numeric_limits
#include <type_traits> // is_same_v
#include <utility>     // pair

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/gemm_mma.cuh>
#include <minibert/cuda/gemm_wgmma.cuh>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int gemm_tile = 16;

// Fallback GEMM (row-major, fp32 accumulation), for what cuBLASLt declines:
// C[z] (M,N) = alpha op(A[z]) op(B[z]) + beta C[z] (+ bias (N) on every row); C is not read when beta == 0.
// grid (ceil(N/16), <= 65535 row tiles, <= 65535 batches), block (16,16); the y and z dims loop.
template <class T>
__global__ void gemm_fallback_kernel(bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const T* a, i64 lda, i64 sa,
                                     const T* b, i64 ldb, i64 sb, float beta, T* c, i64 ldc, i64 sc, i64 batch,
                                     const T* bias) {
  __shared__ float as[gemm_tile][gemm_tile + 1], bs[gemm_tile][gemm_tile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const i64 col = i64(blockIdx.x) * gemm_tile + tx;
  const i64 row_tiles = ceil_div(M, gemm_tile);
  for (i64 z = blockIdx.z; z < batch; z += gridDim.z) {
    const T* A = a + z * sa;
    const T* B = b + z * sb;
    T* C = c + z * sc;
    for (i64 rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
      const i64 row = rt * gemm_tile + ty;
      float acc = 0.f;
      for (i64 k0 = 0; k0 < K; k0 += gemm_tile) {
        const i64 ar = rt * gemm_tile + ty, ak = k0 + tx; // as[ty][tx] = op(A)(ar, ak)
        as[ty][tx] = ar < M && ak < K ? to_float(ta ? A[ak * lda + ar] : A[ar * lda + ak]) : 0.f;
        const i64 bk = k0 + ty; // bs[ty][tx] = op(B)(bk, col)
        bs[ty][tx] = bk < K && col < N ? to_float(tb ? B[col * ldb + bk] : B[bk * ldb + col]) : 0.f;
        __syncthreads();
        for (int kk = 0; kk < gemm_tile; ++kk) acc += as[ty][kk] * bs[kk][tx];
        __syncthreads();
      }
      if (row < M && col < N) {
        T* out = C + row * ldc + col;
        float v = alpha * acc;
        if (beta != 0.f) v += beta * to_float(*out);
        if (bias) v += to_float(bias[col]);
        *out = from_float<T>(v);
      }
    }
  }
}

// c (M,N; ldc): every row = bias (N); n = M*N
template <class T> __global__ void bias_rows_kernel(i64 n, i64 N, const T* bias, T* c, i64 ldc) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) c[(i / N) * ldc + i % N] = bias[i % N];
}

// dbias pass 1: partial[y][c] = sum of dout[r][c] over the rows r of row chunk y (rows_per_chunk rows), dout (N,C).
// block (32,8): 32 columns, 8 row lanes striding the chunk; the 8 lane sums added in lane order.
template <class T>
__global__ void bias_grad_partial_kernel(const T* dout, i64 N, i64 C, i64 rows_per_chunk, float* partial) {
  __shared__ float sh[8][33];
  const i64 col = i64(blockIdx.x) * 32 + threadIdx.x;
  const i64 r0 = i64(blockIdx.y) * rows_per_chunk;
  const i64 r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  float s = 0.f;
  if (col < C)
    for (i64 r = r0 + threadIdx.y; r < r1; r += 8) s += to_float(dout[r * C + col]);
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < C) {
    float t = 0.f;
    for (int l = 0; l < 8; ++l) t += sh[l][threadIdx.x];
    partial[i64(blockIdx.y) * C + col] = t;
  }
}

// dbias pass 2: dbias[c] += sum over the P chunks of partial[y][c], in chunk order. dbias (C)
template <class T> __global__ void bias_grad_finish_kernel(i64 C, const float* partial, int P, T* dbias) {
  for (i64 col = global_thread_index(); col < C; col += global_thread_count()) {
    float s = 0.f;
    for (int y = 0; y < P; ++y) s += partial[i64(y) * C + col];
    dbias[col] = from_float<T>(to_float(dbias[col]) + s);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// host helpers

template <class T> struct lt_data_type;
template <> struct lt_data_type<float> { static constexpr cudaDataType_t value = CUDA_R_32F; };
template <> struct lt_data_type<half> { static constexpr cudaDataType_t value = CUDA_R_16F; };
template <> struct lt_data_type<bfloat16> { static constexpr cudaDataType_t value = CUDA_R_16BF; };

/// @brief whether fp32 GEMMs may use TF32 tensor cores (MINIBERT_ALLOW_TF32=1, read once per process)
inline bool allow_tf32() {
  static const bool allowed = [] {
    const char* v = std::getenv("MINIBERT_ALLOW_TF32");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return allowed;
}

/// @brief the alignment (a power of two <= 256 bytes) of every row start of every matrix of a batch:
/// p + z stride + r ld. Pass 0 for an ld or stride that is never stepped (one column, one matrix).
inline std::uint32_t lt_alignment(const void* p, i64 ld_bytes, i64 stride_bytes) {
  const auto addr = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p));
  const auto bits = addr | static_cast<std::uint64_t>(ld_bytes) | static_cast<std::uint64_t>(stride_bytes);
  std::uint32_t al = 256;
  while (al > 1 && (bits & (al - 1)) != 0) al >>= 1;
  return al;
}

struct lt_matmul_desc {
  cublasLtMatmulDesc_t h = nullptr;
  ~lt_matmul_desc() { if (h) cublasLtMatmulDescDestroy(h); }
};
struct lt_layout {
  cublasLtMatrixLayout_t h = nullptr;
  ~lt_layout() { if (h) cublasLtMatrixLayoutDestroy(h); }
};
struct lt_preference {
  cublasLtMatmulPreference_t h = nullptr;
  ~lt_preference() { if (h) cublasLtMatmulPreferenceDestroy(h); }
};

/// @brief one (strided-batched) row-major GEMM: C = alpha op(A) op(B) + beta C [+ bias (N) on every row]
template <class T> struct gemm_args {
  bool ta, tb;
  i64 M, N, K;
  float alpha;
  const T* a;
  i64 lda, sa;
  const T* b;
  i64 ldb, sb;
  float beta;
  T* c;
  i64 ldc, sc;
  i64 batch;
  const T* bias;             // nullptr: none. Used only with batch == 1
  mma::gemm_fusion<T> fused{}; // activation_linear's fusions: only the own kernel runs them (batch == 1)
};

// cuBLASLt statuses that mean "not this problem" (the fallback kernel runs), rather than a failure
inline bool lt_declined(cublasStatus_t s) {
  return s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE;
}

/// @brief cuBLASLt's compute type: fp32 accumulation; for fp32 data, operands rounded to the context's matmul
/// precision (bf16, fp16) or TF32 when MINIBERT_ALLOW_TF32=1
template <class T> cublasComputeType_t fp32_compute_type(matmul_precision p) {
  if (!std::is_same_v<T, float>) return CUBLAS_COMPUTE_32F;
  if (p == matmul_precision::bf16) return CUBLAS_COMPUTE_32F_FAST_16BF;
  if (p == matmul_precision::fp16) return CUBLAS_COMPUTE_32F_FAST_16F;
  return allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

/// @brief g on cuBLASLt (g.K > 0); false when cuBLASLt has no algorithm for it or rejects its layout
template <class T> bool lt_matmul(context<device::cuda>& ctx, const gemm_args<T>& g) {
  // cuBLASLt has no alignment preference for the bias epilogue and may fault on an unaligned bias: decline it, so
  // the caller adds the bias with its own kernel
  if (g.bias && reinterpret_cast<std::uintptr_t>(g.bias) % 16 != 0) return false;
  constexpr cudaDataType_t dt = lt_data_type<T>::value;
  // column-major operands: LA = our B, stored (N,K) [or (K,N) when tb]; LB = our A, stored (K,M) [or (M,K) when ta]
  const i64 la_rows = g.tb ? g.K : g.N, la_cols = g.tb ? g.N : g.K;
  const i64 lb_rows = g.ta ? g.M : g.K, lb_cols = g.ta ? g.K : g.M;
  // the leading dim of a one-column matrix is never used, but cuBLASLt insists it be >= rows
  auto fix_ld = [](i64 ld, i64 rows, i64 cols) { return cols == 1 && ld < rows ? rows : ld; };
  const i64 ld_la = fix_ld(g.ldb, la_rows, la_cols), ld_lb = fix_ld(g.lda, lb_rows, lb_cols);
  const i64 ld_c = fix_ld(g.ldc, g.N, g.M);
  if (ld_la < la_rows || ld_lb < lb_rows || ld_c < g.N) return false;
  if (g.batch > std::numeric_limits<std::int32_t>::max()) return false;

  const cublasComputeType_t compute = fp32_compute_type<T>(ctx.matmul);
  lt_matmul_desc op;
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.h, compute, CUDA_R_32F));
  const std::int32_t opa = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
  if (g.bias) { // bias (N) = one value per row of the column-major D (N,M), what BIAS broadcasts over columns
    const std::uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const void* bias = g.bias;
    MINIBERT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                         sizeof(epilogue)));
    MINIBERT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }

  lt_layout la, lb, lc;
  MINIBERT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la.h, dt, std::uint64_t(la_rows), std::uint64_t(la_cols), ld_la));
  MINIBERT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb.h, dt, std::uint64_t(lb_rows), std::uint64_t(lb_cols), ld_lb));
  MINIBERT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc.h, dt, std::uint64_t(g.N), std::uint64_t(g.M), ld_c));
  if (g.batch > 1) {
    const std::int32_t count = static_cast<std::int32_t>(g.batch);
    const std::pair<cublasLtMatrixLayout_t, i64> strided[] = {{la.h, g.sb}, {lb.h, g.sa}, {lc.h, g.sc}};
    for (const auto& [layout, stride] : strided) {
      MINIBERT_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      MINIBERT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                             &stride, sizeof(stride)));
    }
  }

  lt_preference pref;
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.h));
  const std::uint64_t ws = ctx.workspace_bytes;
  MINIBERT_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  // Conservative: the alignment of the pointers and of every row and batch step, so an algorithm that vectorizes
  // loads never sees a misaligned row, whatever cuBLASLt derives from the layouts itself.
  const bool batched = g.batch > 1;
  constexpr i64 es = sizeof(T);
  const std::uint32_t align_la = lt_alignment(g.b, la_cols > 1 ? ld_la * es : 0, batched ? g.sb * es : 0);
  const std::uint32_t align_lb = lt_alignment(g.a, lb_cols > 1 ? ld_lb * es : 0, batched ? g.sa * es : 0);
  const std::uint32_t align_c = lt_alignment(g.c, g.M > 1 ? ld_c * es : 0, batched ? g.sc * es : 0);
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                             &align_la, sizeof(align_la)));
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                             &align_lb, sizeof(align_lb)));
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                             &align_c, sizeof(align_c)));
  MINIBERT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                             &align_c, sizeof(align_c)));

  const cublasLtHandle_t handle = blaslt_of(ctx);
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(handle, op.h, la.h, lb.h, lc.h, lc.h, pref.h, 1, &heuristic, &found);
  if (lt_declined(hs)) return false;
  MINIBERT_CUBLAS_CHECK(hs);
  if (found == 0 || heuristic.state != CUBLAS_STATUS_SUCCESS || heuristic.workspaceSize > ctx.workspace_bytes)
    return false;

  const cublasStatus_t ms = cublasLtMatmul(handle, op.h, &g.alpha, g.b, la.h, g.a, lb.h, &g.beta, g.c, lc.h, g.c, lc.h,
                                           &heuristic.algo, ctx.workspace, ctx.workspace_bytes, stream_of(ctx));
  if (lt_declined(ms)) return false;
  MINIBERT_CUBLAS_CHECK(ms);
  return true;
}

template <class T> void gemm_fallback(context<device::cuda>& ctx, const gemm_args<T>& g) {
  const dim3 block(gemm_tile, gemm_tile);
  const i64 col_tiles = ceil_div(g.N, gemm_tile), row_tiles = ceil_div(g.M, gemm_tile);
  MINIBERT_CHECK(col_tiles <= std::numeric_limits<std::int32_t>::max(), "gemm", "N = " << g.N << " too large");
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(std::min<i64>(row_tiles, 65535)),
                  static_cast<unsigned>(std::min<i64>(g.batch, 65535)));
  gemm_fallback_kernel<T><<<grid, block, 0, stream_of(ctx)>>>(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.sa,
                                                              g.b, g.ldb, g.sb, g.beta, g.c, g.ldc, g.sc, g.batch,
                                                              g.bias);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// @brief whether the own tensor-core GEMM (gemm_mma.cuh) takes g: half or bfloat16 data, or fp32 data under bf16 /
/// fp16 matmul precision or with TF32 allowed; a device of compute capability 8.0+; a grid within CUDA's limits
template <class T> bool mma_gemm_takes(const context<device::cuda>& ctx, const gemm_args<T>& g) {
  const bool tensor_core_operands =
      std::is_same_v<T, half> || std::is_same_v<T, bfloat16> ||
      (std::is_same_v<T, float> && (ctx.matmul != matmul_precision::fp32 || allow_tf32()));
  return tensor_core_operands && g.K > 0 && ceil_div(g.M, mma::block_m) <= 65535 &&
         ceil_div(g.N, mma::block_n) <= std::numeric_limits<std::int32_t>::max() && mma_gemm_device();
}

/// @brief whether activation_linear's products may run fused: the own provider is chosen and takes an (M,N,K) product
/// of T under ctx (the same answer for its forward and both backward products)
template <class T> bool fused_gemm_takes(const context<device::cuda>& ctx, i64 M, i64 N, i64 K) {
  gemm_args<T> g{false, false, M, N, K, 1.f, nullptr, K, 0, nullptr, N, 0, 0.f, nullptr, N, 0, 1, nullptr};
  return ctx.gemm == gemm_provider::own && M > 0 && N > 0 && mma_gemm_takes(ctx, g);
}

template <class T> inline constexpr bool is_16bit = std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

/// @brief whether g's operands can be read in 16-byte chunks: pointers, leading dims and (with a batch) batch strides
/// all multiples of 16 bytes
template <class T> bool chunk_aligned(const gemm_args<T>& g) {
  constexpr i64 E = 16 / i64(sizeof(T));
  auto aligned = [&](const T* p, i64 ld, i64 stride) {
    return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && ld % E == 0 && (g.batch == 1 || stride % E == 0);
  };
  return aligned(g.a, g.lda, g.sa) && aligned(g.b, g.ldb, g.sb);
}

/// @brief whether version 3's tensor maps can describe g (chunk-aligned 16-bit operands): sizes within int, and with a
/// batch, batch strides the TMA can step (not 0: a shared operand goes to version 2)
template <class T> bool wgmma_takes(const gemm_args<T>& g) {
  constexpr i64 int_max = std::numeric_limits<std::int32_t>::max();
  return g.M <= int_max && g.N <= int_max && g.K <= int_max && g.batch <= int_max &&
         (g.batch == 1 || (g.sa > 0 && g.sb > 0));
}

/// @brief g on version 3 of the own GEMM (gemm_wgmma.cuh: TMA and wgmma, sm_90a), in the block width that fills the
/// device best; false (nothing launched) when the driver cannot make its tensor maps or the kernel was compiled with
/// another register count than its setmaxnreg budget assumes
template <class T> bool wgmma_gemm(context<device::cuda>& ctx, const gemm_args<T>& g) {
  if constexpr (!is_16bit<T>) {
    return false;
  } else {
    const int bn = ctx.own_gemm_wgmma_width ? ctx.own_gemm_wgmma_width
                                            : wgmma::tile_width(g.M, g.N, g.batch, wgmma::multiprocessors());
    MINIBERT_CHECK(bn == 128 || bn == 192 || bn == 256, "gemm",
                   "own_gemm_wgmma_width = " << bn << ": expected 0, 128, 192 or 256");
    CUtensorMap map_a{}, map_b{};
    // A (M,K) is K-contiguous, A stored (K,M) (ta) M-contiguous; B stored (N,K) (tb) K-contiguous, (K,N) N-contiguous
    const bool encoded =
        (g.ta ? wgmma::encode_operand(map_a, g.a, g.M, g.K, g.lda, g.sa, g.batch, 64)
              : wgmma::encode_operand(map_a, g.a, g.K, g.M, g.lda, g.sa, g.batch, wgmma::block_m)) &&
        (g.tb ? wgmma::encode_operand(map_b, g.b, g.K, g.N, g.ldb, g.sb, g.batch, bn)
              : wgmma::encode_operand(map_b, g.b, g.N, g.K, g.ldb, g.sb, g.batch, 64));
    if (!encoded) return false;
    const i64 tiles = ceil_div(g.M, wgmma::block_m) * ceil_div(g.N, i64(bn));
    MINIBERT_CHECK(tiles <= std::numeric_limits<std::int32_t>::max(), "gemm",
                   "M=" << g.M << " N=" << g.N << ": too many tiles");
    const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(std::min<i64>(g.batch, 65535)));
    auto launch = [&]<auto kernel>(int smem) {
      if (!wgmma::register_budget_matches<kernel>()) return false;
      allow_dynamic_shared_memory<kernel>(smem);
      kernel<<<grid, wgmma::threads, smem, stream_of(ctx)>>>(map_a, map_b, int(g.M), int(g.N), int(g.K), g.alpha,
                                                             g.beta, g.c, g.ldc, g.sc, int(g.batch), g.bias, g.fused);
      return true;
    };
    auto by_width = [&]<bool ta, bool tb>() {
      if (bn == 256) return launch.template operator()<wgmma::gemm_kernel<T, ta, tb, 256>>(wgmma::plan<256>::smem_bytes);
      if (bn == 192) return launch.template operator()<wgmma::gemm_kernel<T, ta, tb, 192>>(wgmma::plan<192>::smem_bytes);
      return launch.template operator()<wgmma::gemm_kernel<T, ta, tb, 128>>(wgmma::plan<128>::smem_bytes);
    };
    const bool launched = g.ta && g.tb ? by_width.template operator()<true, true>()
                          : g.ta       ? by_width.template operator()<true, false>()
                          : g.tb       ? by_width.template operator()<false, true>()
                                       : by_width.template operator()<false, false>();
    if (launched) ++ctx.own_gemm_wgmma_launches;
    return launched;
  }
}

/// @brief which version of the own GEMM runs g (given mma_gemm_takes), for chunk-aligned operands: 3 (wgmma, on an
/// sm_90a device and binary, when the context allows it) or 2 copied for 16-bit data as stored, 2 staged for fp32 data
/// rounded to bf16 / fp16 (with or without an activation on the way in); else 1 (TF32, unaligned operands, and 16-bit
/// data with an activation on the way in: not training's path, and one kernel family fewer to compile)
enum class mma_version { v1, copied, staged, wgmma };
template <class T> mma_version mma_version_for(const context<device::cuda>& ctx, const gemm_args<T>& g) {
  if (!chunk_aligned(g)) return mma_version::v1;
  if (is_16bit<T>) {
    if (g.fused.act_a || g.fused.act_b) return mma_version::v1;
    return ctx.own_gemm_wgmma && wgmma_takes(g) && wgmma::ready() ? mma_version::wgmma : mma_version::copied;
  }
  return ctx.matmul == matmul_precision::fp32 ? mma_version::v1 : mma_version::staged;
}

/// @brief g on version 2 of the own GEMM: one kernel per transpose combination (and operand type Op)
template <class T> void pipelined_gemm(context<device::cuda>& ctx, const gemm_args<T>& g, mma_version v, dim3 grid) {
  auto launch = [&]<auto kernel>(int smem) {
    allow_dynamic_shared_memory<kernel>(smem);
    kernel<<<grid, mma::threads, smem, stream_of(ctx)>>>(g.M, g.N, g.K, g.alpha, g.a, g.lda, g.sa, g.b, g.ldb, g.sb,
                                                         g.beta, g.c, g.ldc, g.sc, g.batch, g.bias, g.fused);
  };
  auto by_layout = [&]<bool ta, bool tb>() {
    namespace p = mma::pipelined;
    if constexpr (is_16bit<T>) {
      MINIBERT_CHECK(v == mma_version::copied, "gemm", "16-bit data takes the copied kernels only");
      return launch.template operator()<p::gemm_kernel<T, ta, tb>>(p::smem_bytes);
    } else {
      if (ctx.matmul == matmul_precision::bf16)
        return launch.template operator()<p::staged_gemm_kernel<bfloat16, T, ta, tb>>(p::staged_smem_bytes);
      return launch.template operator()<p::staged_gemm_kernel<half, T, ta, tb>>(p::staged_smem_bytes);
    }
  };
  if (g.ta && g.tb) by_layout.template operator()<true, true>();
  else if (g.ta) by_layout.template operator()<true, false>();
  else if (g.tb) by_layout.template operator()<false, true>();
  else by_layout.template operator()<false, false>();
  ++ctx.own_gemm_pipelined_launches;
}

/// @brief g on the own tensor-core GEMM (mma_gemm_takes(ctx, g)): version 3 or 2 where it takes g (mma_version_for),
/// else version 1
template <class T> void mma_gemm(context<device::cuda>& ctx, const gemm_args<T>& g) {
  const dim3 grid(static_cast<unsigned>(ceil_div(g.N, mma::block_n)), static_cast<unsigned>(ceil_div(g.M, mma::block_m)),
                  static_cast<unsigned>(std::min<i64>(g.batch, 65535)));
  ++ctx.own_gemm_launches;
  if (const mma_version v = mma_version_for(ctx, g); v != mma_version::v1) {
    if (v != mma_version::wgmma || !wgmma_gemm(ctx, g))
      pipelined_gemm(ctx, g, v == mma_version::wgmma ? mma_version::copied : v, grid);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  auto launch = [&](auto kernel) {
    kernel<<<grid, mma::threads, 0, stream_of(ctx)>>>(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.sa, g.b, g.ldb,
                                                      g.sb, g.beta, g.c, g.ldc, g.sc, g.batch, g.bias, g.fused);
  };
  if constexpr (std::is_same_v<T, float>) { // operands rounded to the context's matmul precision, or to TF32
    if (ctx.matmul == matmul_precision::bf16) launch(mma::gemm_kernel<bfloat16, float>);
    else if (ctx.matmul == matmul_precision::fp16) launch(mma::gemm_kernel<half, float>);
    else launch(mma::gemm_kernel<mma::tf32, float>);
  } else {
    launch(mma::gemm_kernel<T, T>);
  }
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// @brief g by whatever runs it: the context's provider (the own tensor-core GEMM when it is chosen and takes the
/// problem), else cuBLASLt when it takes the problem, else the fallback kernel
template <class T> void gemm_run(context<device::cuda>& ctx, gemm_args<T> g) {
  MINIBERT_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0 && g.batch >= 0, "gemm",
                 "negative size M=" << g.M << " N=" << g.N << " K=" << g.K << " batch=" << g.batch);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  if (g.fused.any()) { // the caller checked fused_gemm_takes: only the own kernel fuses
    MINIBERT_CHECK(g.batch == 1 && mma_gemm_takes(ctx, g), "gemm", "a fused product the own kernel cannot take (M="
                                                                     << g.M << " N=" << g.N << " K=" << g.K << ")");
    return mma_gemm(ctx, g);
  }
  if (g.K == 0 && g.beta == 1.f && !g.bias) return; // C = 0 + 1 C
  // A B shared by every batch, over A and C whose matrices follow each other row after row, is one GEMM with
  // batch*M rows (matmul's (..., M, K) x (K, N)).
  if (g.batch > 1 && g.sb == 0 && !g.ta && g.sa == g.M * g.lda && g.sc == g.M * g.ldc) {
    g.M *= g.batch;
    g.batch = 1;
  }
  // Every batch writing one C (stride 0) means the products apply one after another, as on the CPU.
  if (g.batch > 1 && g.sc == 0) {
    gemm_args<T> one = g;
    one.batch = 1;
    for (i64 z = 0; z < g.batch; ++z) {
      one.a = g.a + z * g.sa;
      one.b = g.b + z * g.sb;
      gemm_run(ctx, one);
    }
    return;
  }
  if (ctx.gemm == gemm_provider::own && mma_gemm_takes(ctx, g)) return mma_gemm(ctx, g);
  if (g.K > 0 && lt_matmul(ctx, g)) return;
  if (g.bias && g.K > 0 && g.beta == 0.f && g.batch == 1) {
    // cuBLASLt has no bias epilogue for this problem (a misaligned bias, say): write the bias into every row of C,
    // then add the product onto it, as the CPU does
    launch_1d(bias_rows_kernel<T>, g.M * g.N, stream_of(ctx), g.N, g.bias, g.c, g.ldc);
    gemm_args<T> plain = g;
    plain.bias = nullptr;
    plain.beta = 1.f;
    if (lt_matmul(ctx, plain)) return;
    return gemm_fallback(ctx, plain);
  }
  gemm_fallback(ctx, g);
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

// c (M,N; ldc) = alpha op(a) op(b) + beta c; a (M,K) or (K,M) when ta, row stride lda; b (K,N) or (N,K) when tb
template <class T>
void backend<device::cuda>::gemm(ctx_t& ctx, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a, i64 lda,
                                 const T* b, i64 ldb, A<T> beta, T* c, i64 ldc) {
  cuda::gemm_run<T>(ctx, {ta, tb, M, N, K, float(alpha), a, lda, 0, b, ldb, 0, float(beta), c, ldc, 0, 1, nullptr});
}

// for z < batch: c + z sc = alpha op(a + z sa) op(b + z sb) + beta (c + z sc); a stride may be 0 (shared operand)
template <class T>
void backend<device::cuda>::gemm_batched(ctx_t& ctx, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a,
                                         i64 lda, i64 sa, const T* b, i64 ldb, i64 sb, A<T> beta, T* c, i64 ldc,
                                         i64 sc, i64 batch) {
  cuda::gemm_run<T>(ctx, {ta, tb, M, N, K, float(alpha), a, lda, sa, b, ldb, sb, float(beta), c, ldc, sc, batch,
                          nullptr});
}

// out (N,C) = inp (N,K) w (C,K)^T + bias (C), bias optional
template <class T>
void backend<device::cuda>::linear_forward(ctx_t& ctx, const T* inp, const T* w, const T* bias, T* out, i64 N, i64 K,
                                           i64 C) {
  cuda::gemm_run<T>(ctx, {false, true, N, C, K, 1.f, inp, K, 0, w, K, 0, 0.f, out, C, 0, 1, bias});
}

// out (N,C) = act(u) (N,K) w^T (C,K) + bias; act applied as the own kernel loads u, or into a temporary when the own
// provider does not take the product
template <class T>
void backend<device::cuda>::activation_linear_forward(ctx_t& ctx, activation act, const T* u, const T* w,
                                                      const T* bias, T* out, i64 N, i64 K, i64 C) {
  if (!cuda::fused_gemm_takes<T>(ctx, N, C, K)) {
    tensor<T, device::cuda> a = tensor<T, device::cuda>::empty({N * K});
    activation_forward(ctx, act, u, a.data(), N * K);
    return linear_forward(ctx, static_cast<const T*>(a.data()), w, bias, out, N, K, C);
  }
  cuda::gemm_args<T> g{false, true, N, C, K, 1.f, u, K, 0, w, K, 0, 0.f, out, C, 0, 1, bias};
  g.fused.act = act;
  g.fused.act_a = true;
  cuda::gemm_run<T>(ctx, g);
}

// du (N,K) = (dout (N,C) w (C,K)) * act'(u) (the product's epilogue); dw (C,K) += dout^T act(u) (act as u is loaded);
// dbias (C) += column sums of dout. Null outputs are skipped. Unfused (a temporary act(u), then linear_backward and
// activation_backward) when the own provider does not take the products.
template <class T>
void backend<device::cuda>::activation_linear_backward(ctx_t& ctx, activation act, const T* dout, const T* u,
                                                       const T* w, T* du, T* dw, T* dbias, i64 N, i64 K, i64 C) {
  if (!cuda::fused_gemm_takes<T>(ctx, N, C, K) || !cuda::fused_gemm_takes<T>(ctx, N, K, C) ||
      !cuda::fused_gemm_takes<T>(ctx, C, K, N)) {
    if (!du && !dw) // only the bias gradient: no act(u) needed
      return linear_backward(ctx, dout, static_cast<const T*>(nullptr), w, du, dw, dbias, N, K, C);
    tensor<T, device::cuda> a = tensor<T, device::cuda>::empty({N * K});
    activation_forward(ctx, act, u, a.data(), N * K);
    tensor<T, device::cuda> da = du ? tensor<T, device::cuda>::empty({N * K}) : tensor<T, device::cuda>();
    linear_backward(ctx, dout, static_cast<const T*>(a.data()), w, da.data(), dw, dbias, N, K, C);
    if (du) activation_backward(ctx, act, u, static_cast<const T*>(da.data()), du, N * K);
    return;
  }
  if (du) {
    cuda::gemm_args<T> g{false, false, N, K, C, 1.f, dout, C, 0, w, K, 0, 0.f, du, K, 0, 1, nullptr};
    g.fused.act = act;
    g.fused.grad_of = u;
    g.fused.ld_grad_of = K;
    cuda::gemm_run<T>(ctx, g);
  }
  if (dw) {
    cuda::gemm_args<T> g{true, false, C, K, N, 1.f, dout, C, 0, u, K, 0, 1.f, dw, K, 0, 1, nullptr};
    g.fused.act = act;
    g.fused.act_b = true;
    cuda::gemm_run<T>(ctx, g);
  }
  if (dbias) linear_backward(ctx, dout, static_cast<const T*>(nullptr), w, static_cast<T*>(nullptr),
                             static_cast<T*>(nullptr), dbias, N, K, C);
}

// dinp (N,K) = dout (N,C) w (C,K); dw (C,K) += dout^T inp (N,K); dbias (C) += column sums of dout. Null: skipped.
template <class T>
void backend<device::cuda>::linear_backward(ctx_t& ctx, const T* dout, const T* inp, const T* w, T* dinp, T* dw,
                                            T* dbias, i64 N, i64 K, i64 C) {
  if (dinp) cuda::gemm_run<T>(ctx, {false, false, N, K, C, 1.f, dout, C, 0, w, K, 0, 0.f, dinp, K, 0, 1, nullptr});
  if (dw) cuda::gemm_run<T>(ctx, {true, false, C, K, N, 1.f, dout, C, 0, inp, K, 0, 1.f, dw, K, 0, 1, nullptr});
  if (dbias && N > 0 && C > 0) {
    // rows split in P chunks (a function of N only, so the sums are the same on every run and every GPU)
    constexpr i64 max_chunks = 128, min_rows = 64;
    const i64 P = std::min(max_chunks, cuda::ceil_div(N, min_rows));
    const i64 rows_per_chunk = cuda::ceil_div(N, P);
    const i64 col_blocks = cuda::ceil_div(C, 32);
    MINIBERT_CHECK(col_blocks <= std::numeric_limits<std::int32_t>::max(), "linear", "C = " << C << " too large");
    float* partial = ctx.scratch<float>(P * C);
    const cudaStream_t s = cuda::stream_of(ctx);
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(P)), block(32, 8);
    cuda::bias_grad_partial_kernel<T><<<grid, block, 0, s>>>(dout, N, C, rows_per_chunk, partial);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    cuda::launch_1d(cuda::bias_grad_finish_kernel<T>, C, s, partial, static_cast<int>(P), dbias);
  }
}

} // namespace minibert
