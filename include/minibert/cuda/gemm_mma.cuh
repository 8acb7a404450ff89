// SPDX-License-Identifier: MIT
#pragma once
/* minibert's own tensor-core GEMM (the "own" GEMM provider, gemm.cuh): C = alpha op(A) op(B) + beta C [+ bias on
   every row], row-major, strided-batched, any transpose combination, on the tensor cores with fp32 accumulation:
   bf16 or fp16 operands through mma.sync m16n8k16, TF32 operands through m16n8k8 (sm_80 and newer; sm_90 runs the
   same instructions).

   Which problems it takes: half and bfloat16 data; fp32 data whose context asks for bf16 or fp16 matmul precision
   (the operands are rounded to it, to nearest even, on the way into shared memory; cuBLASLt's FAST_16BF does not
   document its rounding);
   and fp32 data at fp32 precision when TF32 is allowed (MINIBERT_ALLOW_TF32=1; operands rounded to TF32 by
   cvt.rna, to nearest with ties away from zero). fp32 at full precision and double stay with cuBLASLt.

   Fusions (activation_linear's, gemm_fusion below): act applied to op(A) or op(B) elements as they are loaded, before
   their rounding to the operand type, and the epilogue's dy * act'(u) with u an (M,N) tensor: the GELU of BERT's
   FFN-down layer on the way in, and its backward on the way out, without the (tokens, 4C) temporaries.

   Version 1 (this file): one block computes a 128 x 128 tile of C with 8 warps (2 x 4, 64 x 32 each: 4 x 4 mma tiles
   of 16 x 8); the K loop steps 32 at a time through shared memory, where both operands are stored K-contiguous
   (As[m][k], Bs[n][k], rows padded by 16 bytes against bank conflicts) whatever their layout in global memory, so
   the fragments of every transpose combination are read the same way. Edges are predicated (zeros past M, N, K), so
   any size works. No cp.async pipeline, no ldmatrix, no swizzle yet: the workbench (benchmarks/cuda/gemm_workbench.cu)
   is where the next versions are measured against this one and cuBLASLt.

   Fragment layouts with g = lane / 4, c = lane % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16 / m16n8k8"), for
   an instruction of depth kd (16, or 8 for TF32) and e elements per 32-bit register (2, or 1 for TF32):
     A (16 x kd, row): a[0] = (g, e c..), a[1] = (g+8, e c..), a[2] = (g, e c + kd/2..), a[3] = (g+8, e c + kd/2..)
     B (kd x 8, col):  b[0] = (k e c.., n g), b[1] = (k e c + kd/2.., n g)
     C (16 x 8, f32):  d[0..1] = (g, 2c..2c+1), d[2..3] = (g+8, 2c..2c+1)
   where "e c.." is e consecutive k (the lower k in the lower bits). */

#ifndef __CUDACC__
#error "minibert/cuda/gemm_mma.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstdint>     // uint16_t, uint32_t
#include <type_traits> // is_same_v

#include <minibert/cuda/common.cuh>
#include <minibert/cuda/elementwise.cuh> // activation_value, activation_grad

namespace minibert::cuda {

namespace mma {

inline constexpr int block_m = 128, block_n = 128, block_k = 32;
inline constexpr int warps_m = 2, warps_n = 4, threads = 32 * warps_m * warps_n;
inline constexpr int warp_m = block_m / warps_m, warp_n = block_n / warps_n; // 64 x 32
inline constexpr int tiles_m = warp_m / 16, tiles_n = warp_n / 8;            // 4 x 4 mma tiles per warp
/// @brief the operand type tag of TF32 (fp32 storage, 10 mantissa bits used)
struct tf32 {};

/// @brief per operand type: its storage in shared memory, the instruction's depth, elements per 32-bit register
template <class Op> struct operand_traits {
  using storage = std::uint16_t; // bfloat16, half
  static constexpr int depth = 16, per_register = 2;
};
template <> struct operand_traits<tf32> {
  using storage = std::uint32_t;
  static constexpr int depth = 8, per_register = 1;
};

/// @brief a shared row: block_k elements and 16 bytes of padding (conflict-free fragment loads for both widths)
template <class Op> inline constexpr int smem_ld = block_k + 16 / int(sizeof(typename operand_traits<Op>::storage));

/// @brief x rounded to the operand type Op, as its bits; x already of type Op passes as is
template <class Op, class T> __device__ __forceinline__ typename operand_traits<Op>::storage operand_bits(T x) {
  if constexpr (std::is_same_v<Op, tf32>) {
    std::uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(to_float(x)));
#endif
    return r;
  } else if constexpr (std::is_same_v<T, Op>) {
    return x.bits;
  } else {
    return from_float<Op>(to_float(x)).bits;
  }
}

/// @brief d += a b on the tensor cores: one m16n8k16 (bf16, fp16) or m16n8k8 (TF32) product, fp32 accumulation
template <class Op>
__device__ __forceinline__ void mma_tile(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<Op, tf32>)
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else if constexpr (std::is_same_v<Op, bfloat16>)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap(); // the host never launches this kernel below sm_80 (mma_gemm_supported)
#endif
}

/// @brief act(x) / dy * act'(x) for an activation chosen at run time (one value per launch: no divergence)
__device__ __forceinline__ float activation_value(activation act, float x) {
  switch (act) {
  case activation::gelu_erf: return cuda::activation_value<activation::gelu_erf>(x);
  case activation::gelu_tanh: return cuda::activation_value<activation::gelu_tanh>(x);
  case activation::tanh: return cuda::activation_value<activation::tanh>(x);
  default: return cuda::activation_value<activation::relu>(x);
  }
}
__device__ __forceinline__ float activation_grad(activation act, float x, float dy) {
  switch (act) {
  case activation::gelu_erf: return cuda::activation_grad<activation::gelu_erf>(x, dy);
  case activation::gelu_tanh: return cuda::activation_grad<activation::gelu_tanh>(x, dy);
  case activation::tanh: return cuda::activation_grad<activation::tanh>(x, dy);
  default: return cuda::activation_grad<activation::relu>(x, dy);
  }
}

/// @brief what the kernel fuses into a product: act on op(A) and/or op(B) as they are loaded, and C's value v
/// (alpha times the product) replaced by v * act'(grad_of[row ld + col]) before beta C and the bias are added
template <class T> struct gemm_fusion {
  activation act = activation::gelu_erf;
  bool act_a = false, act_b = false;
  const T* grad_of = nullptr; // (M,N), row stride ld_grad_of; null: no activation backward
  i64 ld_grad_of = 0;
  bool any() const { return act_a || act_b || grad_of; }
};

/// @brief the 32-bit register of the elements of a K-contiguous shared row from k on (two 16-bit ones, or one TF32)
template <class S> __device__ __forceinline__ std::uint32_t register_at(const S* row, int k) {
  return *reinterpret_cast<const std::uint32_t*>(row + k);
}

// Loads the (rows x block_k) tile of a K-contiguous shared operand: dst[r][k] = op(X)(r0 + r, k0 + k) (through act
// when `activate`) rounded to Op, zero outside (rows_total, K). `k_major` says that X is stored with k as its row index ((K, rows): element (r, k) at
// x[k ld + r]); otherwise it is stored (rows, K): x[r ld + k]. Consecutive threads read consecutive addresses either
// way (coalesced); the transposed case pays bank conflicts on the shared store instead.
template <class Op, class T, int rows>
__device__ __forceinline__ void load_tile(typename operand_traits<Op>::storage (*dst)[smem_ld<Op>], const T* x, i64 ld,
                                          bool k_major, i64 r0, i64 rows_total, i64 k0, i64 K, bool activate,
                                          activation act) {
  constexpr int n = rows * block_k;
  for (int i = threadIdx.x; i < n; i += threads) {
    int r, k;
    if (k_major) {
      k = i / rows;
      r = i % rows;
    } else {
      r = i / block_k;
      k = i % block_k;
    }
    const i64 gr = r0 + r, gk = k0 + k;
    typename operand_traits<Op>::storage v = 0;
    if (gr < rows_total && gk < K) {
      const T xv = k_major ? x[gk * ld + gr] : x[gr * ld + gk];
      v = activate ? operand_bits<Op>(activation_value(act, to_float(xv))) : operand_bits<Op>(xv);
    }
    dst[r][k] = v;
  }
}

// C[z] (M,N) = alpha op(A[z]) op(B[z]) + beta C[z] (+ bias (N) on every row), with the fusions of f (batch 1 only);
// C is not read when beta == 0.
// grid (ceil(N/128), ceil(M/128), min(batch, 65535)), block 256; the z dim loops over the batch.
template <class Op, class T>
__global__ void __launch_bounds__(threads)
    gemm_kernel(bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const T* a, i64 lda, i64 sa, const T* b, i64 ldb,
                i64 sb, float beta, T* c, i64 ldc, i64 sc, i64 batch, const T* bias, gemm_fusion<T> f) {
  using S = typename operand_traits<Op>::storage;
  constexpr int depth = operand_traits<Op>::depth, e = operand_traits<Op>::per_register;
  __shared__ __align__(16) S As[block_m][smem_ld<Op>];
  __shared__ __align__(16) S Bs[block_n][smem_ld<Op>];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  const int wm = (warp / warps_n) * warp_m, wn = (warp % warps_n) * warp_n; // this warp's corner in the block tile
  const i64 m0 = i64(blockIdx.y) * block_m, n0 = i64(blockIdx.x) * block_n;
  for (i64 z = blockIdx.z; z < batch; z += gridDim.z) {
    const T* A = a + z * sa;
    const T* B = b + z * sb;
    T* C = c + z * sc;
    float acc[tiles_m][tiles_n][4] = {};
    for (i64 k0 = 0; k0 < K; k0 += block_k) {
      // op(A) (M,K) is A (M,K) row-major, or A (K,M) when ta; op(B) (K,N) is B (K,N), or B (N,K) when tb: in shared
      // memory op(B) is kept as its transpose (N,K), so B (N,K) is the K-contiguous case
      load_tile<Op, T, block_m>(As, A, lda, ta, m0, M, k0, K, f.act_a, f.act);
      load_tile<Op, T, block_n>(Bs, B, ldb, !tb, n0, N, k0, K, f.act_b, f.act);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < block_k; kk += depth) {
        const int k_lo = kk + e * q, k_hi = k_lo + depth / 2;
        std::uint32_t af[tiles_m][4], bf[tiles_n][2];
#pragma unroll
        for (int i = 0; i < tiles_m; ++i) {
          const S* top = As[wm + i * 16 + g];
          const S* bottom = As[wm + i * 16 + g + 8];
          af[i][0] = register_at(top, k_lo);
          af[i][1] = register_at(bottom, k_lo);
          af[i][2] = register_at(top, k_hi);
          af[i][3] = register_at(bottom, k_hi);
        }
#pragma unroll
        for (int j = 0; j < tiles_n; ++j) {
          const S* col = Bs[wn + j * 8 + g];
          bf[j][0] = register_at(col, k_lo);
          bf[j][1] = register_at(col, k_hi);
        }
#pragma unroll
        for (int i = 0; i < tiles_m; ++i)
#pragma unroll
          for (int j = 0; j < tiles_n; ++j) mma_tile<Op>(acc[i][j], af[i], bf[j]);
      }
      __syncthreads();
    }
    // epilogue: d[0..1] at (g, 2q..2q+1), d[2..3] at (g+8, 2q..2q+1) of each 16 x 8 tile
#pragma unroll
    for (int i = 0; i < tiles_m; ++i)
#pragma unroll
      for (int j = 0; j < tiles_n; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const i64 row = m0 + wm + i * 16 + g + (r >= 2 ? 8 : 0);
          const i64 col = n0 + wn + j * 8 + 2 * q + (r & 1);
          if (row >= M || col >= N) continue;
          T* out = C + row * ldc + col;
          float v = alpha * acc[i][j][r];
          if (f.grad_of) v = activation_grad(f.act, to_float(f.grad_of[row * f.ld_grad_of + col]), v);
          if (beta != 0.f) v += beta * to_float(*out);
          if (bias) v += to_float(bias[col]);
          *out = from_float<T>(v);
        }
  }
}

} // namespace mma

/// @brief whether the binary the current device runs for `kernel` (picked from CMAKE_CUDA_ARCHITECTURES) is sm_80 or
/// newer, so that it has the tensor-core instructions; cached per device (one cache per kernel type). A build for
/// older architectures only would run the kernels' trap on a newer GPU: their callers fall back instead.
template <class Kernel> bool sm80_binary(Kernel kernel) {
  constexpr int max_devices = 64;
  static signed char known[max_devices] = {}; // 0 unknown, 1 yes, -1 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= max_devices) return false;
  if (known[dev] == 0) {
    cudaFuncAttributes attr{};
    const bool ok = cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.binaryVersion >= 80;
    (void)cudaGetLastError(); // a kernel image the device cannot run is "no", not a sticky error
    known[dev] = ok ? 1 : -1;
  }
  return known[dev] > 0;
}

/// @brief whether gemm_mma.cuh's kernels can run on the current device (else cuBLASLt takes their products)
inline bool mma_gemm_device() { return sm80_binary(mma::gemm_kernel<bfloat16, bfloat16>); }

} // namespace minibert::cuda
