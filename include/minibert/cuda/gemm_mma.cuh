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

   Two versions, both with one block per 128 x 128 tile of C and 8 warps (2 x 4, 64 x 32 each: 4 x 4 mma tiles of
   16 x 8), the K loop stepping 32 at a time through shared memory, and the same epilogue (store_tile):
   - version 1 (mma::gemm_kernel) takes every problem above: both operands go through registers into shared memory,
     stored K-contiguous (As[m][k], Bs[n][k], rows padded by 16 bytes against bank conflicts) whatever their layout in
     global memory, so the fragments of every transpose combination are read the same way, and any rounding or
     activation applies on the way. Edges are predicated (zeros past M, N, K), so any size works.
   - version 2 (mma::pipelined) takes 16-byte aligned operands of bf16 and fp16 data (copied by cp.async into a
     3-stage ring of shared tiles) and of fp32 data under bf16 / fp16 precision, an activation on the way in included
     (staged through registers one tile ahead), with ldmatrix(.trans) fragment loads and one kernel per transpose
     combination: the products of training. gemm.cuh picks it wherever it applies; TF32 and 16-bit data with an
     activation on the way in stay on version 1.
   The workbench (benchmarks/cuda/gemm_workbench.cu) times both against cuBLASLt, and is where the next version
   starts.

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

// The epilogue of every version: one warp's tm x tn grid of 16 x 8 accumulator tiles (64 x 32 here, 16 x bn in
// gemm_wgmma.cuh), whose corner is (row0, col0) of C (M,N), stored as
// alpha acc [* act'(grad_of)] + beta C + bias; d[0..1] at (g, 2q..2q+1), d[2..3] at (g+8, 2q..2q+1) of each 16 x 8
// tile; C is not read when beta == 0.
template <class T, int tm, int tn>
__device__ __forceinline__ void store_tile(const float (&acc)[tm][tn][4], i64 M, i64 N, i64 row0, i64 col0,
                                           float alpha, float beta, T* C, i64 ldc, const T* bias,
                                           const gemm_fusion<T>& f) {
  const int g = threadIdx.x % 32 / 4, q = threadIdx.x % 4;
#pragma unroll
  for (int i = 0; i < tm; ++i)
#pragma unroll
    for (int j = 0; j < tn; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const i64 row = row0 + i * 16 + g + (r >= 2 ? 8 : 0);
        const i64 col = col0 + j * 8 + 2 * q + (r & 1);
        if (row >= M || col >= N) continue;
        T* out = C + row * ldc + col;
        float v = alpha * acc[i][j][r];
        if (f.grad_of) v = activation_grad(f.act, to_float(f.grad_of[row * f.ld_grad_of + col]), v);
        if (beta != 0.f) v += beta * to_float(*out);
        if (bias) v += to_float(bias[col]);
        *out = from_float<T>(v);
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
    store_tile(acc, M, N, m0 + wm, n0 + wn, alpha, beta, C, ldc, bias, f);
  }
}

// Version 2, the pipelined kernels: the same block and warp tiles as version 1 and the same epilogue, with shared
// tiles in which each operand's contiguous dimension stays contiguous -- a K-contiguous operand as [rows][k] (rows of
// block_k + 8 elements, 80 bytes), an M- or N-contiguous one as [k][rows] (rows of 128 + 8 elements, 272 bytes; both
// strides put the 8 rows one ldmatrix phase reads on 8 disjoint 16-byte bank groups) -- and ldmatrix.x4 fragment
// loads, .trans for the [k][rows] tiles (4 for A and 2 for B per k16 step, instead of 24 32-bit loads). One kernel
// per transpose combination. Global memory is read in 16-byte chunks (8 elements of 16 bits, 4 of fp32), so operands,
// leading dims and batch strides must be 16-byte aligned (the host checks: gemm.cuh). Two ways in:
//   - copied (gemm_kernel): 16-bit data multiplied as stored, by cp.async.cg with no register staging, the bytes past
//     M, N or K zero-filled (src-size below 16), into a ring of `stages` tiles, so that the copies of tile kt + 2 fly
//     while tile kt is multiplied;
//   - staged (staged_gemm_kernel): fp32 data rounded to bf16 or fp16, and through an activation where the fusion
//     says, on the way in (the --bf16 / --fp16 training path): read into registers one tile ahead (the loads of tile
//     kt + 1 fly while tile kt is multiplied), then converted into a double-buffered shared tile.
// ldmatrix (PTX ISA, "ldmatrix"): lane l gives the address of row l % 8 of matrix l / 8 and receives (row l / 4,
// columns 2 (l % 4)..+1) of every matrix, or with .trans (rows 2 (l % 4)..+1, column l / 4), the lower index in the
// lower bits. A's 16 x 16 tile is read as the matrices (m 0-7 | 8-15) x (k 0-7 | 8-15) in a[0..3]'s order; B's two
// n8 tiles as (n 0-7: k 0-7, k 8-15), (n 8-15: k 0-7, k 8-15).
namespace pipelined {
inline constexpr int stages = 3, staged_stages = 2;
inline constexpr int ld_k = block_k + 8;    // a [rows][k] tile's row, in elements
inline constexpr int ld_rows = block_m + 8; // a [k][rows] tile's row (block_m == block_n)
inline constexpr int operand_elems = block_m * ld_k > block_k * ld_rows ? block_m * ld_k : block_k * ld_rows;
inline constexpr int smem_bytes = stages * 2 * operand_elems * 2;               // 61,440 bytes: past 48 KiB (opt-in)
inline constexpr int staged_smem_bytes = staged_stages * 2 * operand_elems * 2; // 40,960 bytes
static_assert(block_m == block_n, "one tile size for both operands");

__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
/// @brief 16 bytes at dst from src, of which the first `bytes` (0..16) are read and the rest are zeros
__device__ __forceinline__ void copy16(void* dst, const void* src, int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(bytes));
#endif
}
__device__ __forceinline__ void commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int pending> __device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}
template <bool transposed> __device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (transposed)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
#endif
}

// The 16-byte chunks of one operand's (128 x block_k) tile of op(X) from (r0, k0), E elements of T each: X stored
// (rows_total, K) when not k_major (lines are rows, chunks run along k; dst[r][k]), or (K, rows_total) when k_major
// (lines are k, chunks run along the rows; dst[k][r]). Chunk c of the tile is this thread's i-th with
// c = threadIdx.x + i threads.
template <bool k_major, class T> struct tile_chunks {
  static constexpr int E = 16 / int(sizeof(T));
  static constexpr int along = k_major ? block_m : block_k, across = k_major ? block_k : block_m;
  static constexpr int per_line = along / E, per_thread = across * per_line / threads;
  static constexpr int ld = k_major ? ld_rows : ld_k; // of the shared tile
  static_assert(across * per_line % threads == 0, "whole chunks per thread");
  const T* x;
  i64 ldx, r0, rows_total, k0, K;

  /// @brief chunk c's offset in the shared tile, in elements
  __device__ int shared_offset(int c) const { return c / per_line * ld + c % per_line * E; }
  /// @brief chunk c's line in X, and its first element's place along that line
  __device__ i64 line(int c) const { return (k_major ? k0 : r0) + c / per_line; }
  __device__ i64 along_at(int c) const { return (k_major ? r0 : k0) + c % per_line * E; }
  /// @brief chunk c's first element in x (meaningful when valid(c) > 0)
  __device__ const T* source(int c) const { return x + line(c) * ldx + along_at(c); }
  /// @brief how many of chunk c's E elements lie inside op(X) (the rest are zeros)
  __device__ int valid(int c) const {
    const i64 line = this->line(c), at = along_at(c);
    const i64 lines_total = k_major ? K : rows_total, along_total = k_major ? rows_total : K;
    if (line >= lines_total || at >= along_total) return 0;
    return along_total - at >= E ? E : int(along_total - at);
  }
};

// copied: the tile's chunks by cp.async, straight into dst; a chunk wholly out of range copies zeros from x itself
template <bool k_major, class T>
__device__ __forceinline__ void copy_tile(std::uint16_t* dst, const tile_chunks<k_major, T>& t) {
#pragma unroll
  for (int i = 0; i < t.per_thread; ++i) {
    const int c = threadIdx.x + i * threads, n = t.valid(c);
    copy16(dst + t.shared_offset(c), n > 0 ? t.source(c) : t.x, n * int(sizeof(T)));
  }
}

// staged: this thread's chunks of the tile into registers (16-byte loads; element by element at the edges, zeros
// past them) ...
template <bool k_major, class T, int n_regs>
__device__ __forceinline__ void fetch_tile(uint4 (&r)[n_regs], const tile_chunks<k_major, T>& t) {
  static_assert(n_regs == tile_chunks<k_major, T>::per_thread);
#pragma unroll
  for (int i = 0; i < n_regs; ++i) {
    const int c = threadIdx.x + i * threads, n = t.valid(c);
    if (n == t.E) {
      r[i] = *reinterpret_cast<const uint4*>(t.source(c));
    } else {
      r[i] = make_uint4(0, 0, 0, 0);
      T* e = reinterpret_cast<T*>(&r[i]);
#pragma unroll
      for (int j = 0; j < t.E; ++j) // constant indices: r stays in registers
        if (j < n) e[j] = t.source(c)[j];
    }
  }
}
// ... then into dst, each element through act when `activate` (elements inside op(X) only) and rounded to Op
template <class Op, bool k_major, class T, int n_regs>
__device__ __forceinline__ void store_staged_tile(std::uint16_t* dst, const uint4 (&r)[n_regs],
                                                  const tile_chunks<k_major, T>& t, bool activate, activation act) {
  constexpr int E = tile_chunks<k_major, T>::E;
  static_assert(E == 4, "the staged kernels take fp32 data (16-bit data is copied)");
#pragma unroll
  for (int i = 0; i < n_regs; ++i) {
    const int c = threadIdx.x + i * threads, n = activate ? t.valid(c) : 0;
    const T* e = reinterpret_cast<const T*>(&r[i]);
    alignas(8) std::uint16_t out[E];
#pragma unroll
    for (int j = 0; j < E; ++j)
      out[j] = j < n ? operand_bits<Op>(activation_value(act, to_float(e[j]))) : operand_bits<Op>(e[j]);
    *reinterpret_cast<uint2*>(dst + t.shared_offset(c)) = *reinterpret_cast<const uint2*>(out);
  }
}

// A's 16 x 16 fragment of rows m..m+15 at depth kk: from [m][k] (not ta) or [k][m] (ta)
template <bool ta>
__device__ __forceinline__ void load_a_fragment(std::uint32_t (&af)[4], const std::uint16_t* As, int m, int kk) {
  const int lane = threadIdx.x % 32;
  if constexpr (ta)
    ldmatrix_x4<true>(af, As + (kk + (lane >> 4) * 8 + (lane & 7)) * ld_rows + m + ((lane >> 3) & 1) * 8);
  else
    ldmatrix_x4<false>(af, As + (m + (lane & 15)) * ld_k + kk + (lane >> 4) * 8);
}
// B's fragments of the two n8 tiles n..n+15 at depth kk: from [n][k] (tb: B stored (N,K)) or [k][n] (B stored (K,N))
template <bool tb>
__device__ __forceinline__ void load_b_fragments(std::uint32_t (&lo)[2], std::uint32_t (&hi)[2],
                                                 const std::uint16_t* Bs, int n, int kk) {
  const int lane = threadIdx.x % 32;
  std::uint32_t r[4];
  if constexpr (tb)
    ldmatrix_x4<false>(r, Bs + (n + (lane >> 4) * 8 + (lane & 7)) * ld_k + kk + ((lane >> 3) & 1) * 8);
  else
    ldmatrix_x4<true>(r, Bs + (kk + ((lane >> 3) & 1) * 8 + (lane & 7)) * ld_rows + n + (lane >> 4) * 8);
  lo[0] = r[0];
  lo[1] = r[1];
  hi[0] = r[2];
  hi[1] = r[3];
}

// acc (this warp's 64 x 32, corner (wm, wn) of the block tile) += the shared tiles As Bs, block_k deep
template <class Op, bool ta, bool tb>
__device__ __forceinline__ void multiply_tiles(float (&acc)[tiles_m][tiles_n][4], const std::uint16_t* As,
                                               const std::uint16_t* Bs, int wm, int wn) {
#pragma unroll
  for (int kk = 0; kk < block_k; kk += 16) {
    std::uint32_t af[tiles_m][4], bf[tiles_n][2];
#pragma unroll
    for (int i = 0; i < tiles_m; ++i) load_a_fragment<ta>(af[i], As, wm + i * 16, kk);
#pragma unroll
    for (int j = 0; j < tiles_n; j += 2) load_b_fragments<tb>(bf[j], bf[j + 1], Bs, wn + j * 8, kk);
#pragma unroll
    for (int i = 0; i < tiles_m; ++i)
#pragma unroll
      for (int j = 0; j < tiles_n; ++j) mma_tile<Op>(acc[i][j], af[i], bf[j]);
  }
}

/// @brief this thread's place: its warp's corner (wm, wn) in the block tile, and the block tile's corner (m0, n0) in C
struct block_position {
  int wm, wn;
  i64 m0, n0;
  __device__ block_position()
      : wm(int(threadIdx.x) / 32 / warps_n * warp_m), wn(int(threadIdx.x) / 32 % warps_n * warp_n),
        m0(i64(blockIdx.y) * block_m), n0(i64(blockIdx.x) * block_n) {}
};
/// @brief the slot of k tile kt in a ring of `slots` shared (A, B) tile pairs: A's tile, then B's at + operand_elems
template <int slots> __device__ __forceinline__ std::uint16_t* ring_slot(std::uint16_t* smem, i64 kt) {
  return smem + (kt % slots) * 2 * operand_elems;
}

// Both kernels: C[z] (M,N) = alpha op(A[z]) op(B[z]) + beta C[z] (+ bias (N) on every row), with the fusions of f
// (batch 1 only; the copied kernel takes grad_of only). grid (ceil(N/128), ceil(M/128), min(batch, 65535)), block
// 256, smem_bytes / staged_smem_bytes of dynamic shared memory; the z dim loops over the batch.
// op(B) (K,N) is kept as (N,K) in shared memory: B stored (N,K) (tb) is the K-contiguous case.

// copied: T (half or bfloat16) multiplied as stored
template <class T, bool ta, bool tb>
__global__ void __launch_bounds__(threads, 2)
    gemm_kernel(i64 M, i64 N, i64 K, float alpha, const T* a, i64 lda, i64 sa, const T* b, i64 ldb, i64 sb,
                float beta, T* c, i64 ldc, i64 sc, i64 batch, const T* bias, gemm_fusion<T> f) {
  extern __shared__ __align__(16) std::uint16_t smem[];
  const block_position at;
  const i64 m0 = at.m0, n0 = at.n0, k_tiles = (K + block_k - 1) / block_k;
  const auto stage_a = [&](i64 kt) { return ring_slot<stages>(smem, kt); };
  const auto stage_b = [&](i64 kt) { return ring_slot<stages>(smem, kt) + operand_elems; };
  for (i64 z = blockIdx.z; z < batch; z += gridDim.z) {
    const auto load_stage = [&](i64 kt) {
      if (kt < k_tiles) {
        copy_tile(stage_a(kt), tile_chunks<ta, T>{a + z * sa, lda, m0, M, kt * block_k, K});
        copy_tile(stage_b(kt), tile_chunks<!tb, T>{b + z * sb, ldb, n0, N, kt * block_k, K});
      }
      commit(); // an empty group past the end keeps wait<stages - 2>'s count right
    };
    for (int s = 0; s < stages - 1; ++s) load_stage(s);
    float acc[tiles_m][tiles_n][4] = {};
    for (i64 kt = 0; kt < k_tiles; ++kt) {
      wait<stages - 2>(); // tile kt has landed (this thread's copies) ...
      __syncthreads();    // ... everybody's, and every warp is done with tile kt - 1, whose slot the next load takes
      load_stage(kt + stages - 1);
      multiply_tiles<T, ta, tb>(acc, stage_a(kt), stage_b(kt), at.wm, at.wn);
    }
    wait<0>();
    __syncthreads(); // the next batch's first copies reuse the slots
    store_tile(acc, M, N, m0 + at.wm, n0 + at.wn, alpha, beta, c + z * sc, ldc, bias, f);
  }
}

// staged: T's (fp32) elements rounded to Op (and through f.act where f says) on their way into shared memory
template <class Op, class T, bool ta, bool tb>
__global__ void __launch_bounds__(threads, 1)
    staged_gemm_kernel(i64 M, i64 N, i64 K, float alpha, const T* a, i64 lda, i64 sa, const T* b, i64 ldb, i64 sb,
                       float beta, T* c, i64 ldc, i64 sc, i64 batch, const T* bias, gemm_fusion<T> f) {
  extern __shared__ __align__(16) std::uint16_t smem[];
  const block_position at;
  const i64 m0 = at.m0, n0 = at.n0, k_tiles = (K + block_k - 1) / block_k;
  const auto stage_a = [&](i64 kt) { return ring_slot<staged_stages>(smem, kt); };
  const auto stage_b = [&](i64 kt) { return ring_slot<staged_stages>(smem, kt) + operand_elems; };
  using a_chunks = tile_chunks<ta, T>;
  using b_chunks = tile_chunks<!tb, T>;
  for (i64 z = blockIdx.z; z < batch; z += gridDim.z) {
    const auto a_tile = [&](i64 kt) { return a_chunks{a + z * sa, lda, m0, M, kt * block_k, K}; };
    const auto b_tile = [&](i64 kt) { return b_chunks{b + z * sb, ldb, n0, N, kt * block_k, K}; };
    uint4 ra[a_chunks::per_thread], rb[b_chunks::per_thread];
    fetch_tile(ra, a_tile(0));
    fetch_tile(rb, b_tile(0));
    store_staged_tile<Op>(stage_a(0), ra, a_tile(0), f.act_a, f.act);
    store_staged_tile<Op>(stage_b(0), rb, b_tile(0), f.act_b, f.act);
    __syncthreads();
    float acc[tiles_m][tiles_n][4] = {};
    for (i64 kt = 0; kt < k_tiles; ++kt) {
      const bool next = kt + 1 < k_tiles;
      if (next) { // in flight while tile kt is multiplied
        fetch_tile(ra, a_tile(kt + 1));
        fetch_tile(rb, b_tile(kt + 1));
      }
      multiply_tiles<Op, ta, tb>(acc, stage_a(kt), stage_b(kt), at.wm, at.wn);
      if (next) { // into the other buffer, which every warp finished with before the last barrier
        store_staged_tile<Op>(stage_a(kt + 1), ra, a_tile(kt + 1), f.act_a, f.act);
        store_staged_tile<Op>(stage_b(kt + 1), rb, b_tile(kt + 1), f.act_b, f.act);
      }
      __syncthreads();
    }
    store_tile(acc, M, N, m0 + at.wm, n0 + at.wn, alpha, beta, c + z * sc, ldc, bias, f);
  }
}
} // namespace pipelined

} // namespace mma

/// @brief whether the binary the current device runs for `kernel` (picked from CMAKE_CUDA_ARCHITECTURES) is sm_80 or
/// newer, so that it has the tensor-core instructions; cached per device (one cache per kernel type). A build for
/// older architectures only would run the kernels' trap on a newer GPU: their callers fall back instead.
template <class Kernel> bool sm80_binary(Kernel kernel) {
  return once_per_device(
      [kernel](int) {
        cudaFuncAttributes attr{};
        const bool ok = cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.binaryVersion >= 80;
        (void)cudaGetLastError(); // a kernel image the device cannot run is "no", not a sticky error
        return ok;
      },
      false);
}

/// @brief whether gemm_mma.cuh's kernels can run on the current device (else cuBLASLt takes their products)
inline bool mma_gemm_device() { return sm80_binary(mma::gemm_kernel<bfloat16, bfloat16>); }

} // namespace minibert::cuda
