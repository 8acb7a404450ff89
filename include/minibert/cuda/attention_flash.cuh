// SPDX-License-Identifier: MIT
#pragma once
/* Fused ("flash") multi-head self-attention on the tensor cores, forward and backward side by side (Dao et al.,
   FlashAttention-2): the (T,T) scores and probabilities never reach global memory. The result is attention.cuh's
   (and the CPU's) up to rounding, with the same dropout draw bit for bit:
     S = scale q_h k_h^T + mask[b] over keys [0, L_b);  P = softmax(S);  O_h = (P * Z / (1-p)) v_h
   with Z(b,h,i,j) = philox4x32_10(seed, base + e/4).v[e%4] >= p for e = ((b NH + h) T + i) T + j, L_b the key length
   of attention.cuh (1 + the last key whose mask is not below attention_masked_below), and scale = 1/sqrt(HS).

   Forward (forward_kernel): one block of 4 warps per (64 queries, head, sequence); each warp owns 16 query rows and
   keeps its q fragments in registers. Key tiles of 64 go through shared memory; S (16 x 64 per warp) stays in the
   mma accumulators, the online softmax keeps a running row max m and sum l, and P is fed back into the P V product
   straight from registers (the C fragment of two 16 x 8 tiles is the A fragment of one 16 x 16). Saved for the
   backward: one log-sum-exp per row, lse = m + log l (fp32), and the output itself.
   Backward, deterministic (no atomics): delta_i = dO_i . O_i (delta_kernel); dK and dV per key tile, looping over the
   query tiles (dkdv_kernel); dQ per query tile, looping over the key tiles (dq_kernel). Both recompute P from lse
   and regenerate Z from Philox, so nothing of size T x T is stored: P = exp(S - lse), dP = dO v^T * Z / (1-p),
   dS = P (dP - delta), dq = scale dS k, dk = scale dS^T q, dv = (P Z / (1-p))^T dO.

   Operands: bf16 or fp16 (Op) on mma.sync m16n8k16 with fp32 accumulation; data of type T (float, half, bfloat16)
   is rounded to Op on its way into shared memory, as gemm_mma.cuh does, and P and dS are rounded to Op before their
   products (as the materialized path stores them in T or hands them to a GEMM that rounds them). Head sizes 32, 64
   and 128. Sequences are padded (B,T) rows with a key mask, or packed without padding (FlashAttention's varlen API:
   cumulative row offsets cu_seqlens (B+1), no mask); a query tile past a sequence's end does nothing, a key tile
   past L_b is never loaded.

   Version 1: fragments read from shared memory with 32-bit loads, and one Philox block drawn per element of the
   dropout mask (4 times what is needed). ldmatrix, cp.async double buffering, shared Philox blocks and the sm_90a
   wgmma/TMA path are the next versions, measured in benchmarks/cuda/attention_workbench.cu. */
#ifndef __CUDACC__
#error "minibert/cuda/attention_flash.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cmath>       // INFINITY, sqrt
#include <cstdint>     // int64_t, uint16_t, uint32_t, uint64_t
#include <type_traits> // is_same_v

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/gemm_mma.cuh> // mma::mma_tile, mma::operand_bits
#include <minibert/cuda/philox.cuh>  // philox_args
#include <minibert/detail/philox.hpp>

namespace minibert::cuda::flash {

inline constexpr int rows_per_block = 64; // query rows (forward, dQ) or keys (dK dV) of one block
inline constexpr int tile = 64;           // keys (forward, dQ) or queries (dK dV) per step of the inner loop
inline constexpr int warps = 4, threads = 32 * warps;
using bits16 = std::uint16_t;             // an Op element in shared memory

/// @brief shapes of one call: padded (cu_seqlens null: sequence b is rows [b T, b T + T), keys [0, key_len[b]))
/// or packed (sequence b is rows [cu_seqlens[b], cu_seqlens[b+1]), every key counts, T the longest sequence)
struct params {
  i64 B = 0, T = 0, NH = 0;
  i64 ld = 0;                       // row stride of q, k, v, dq, dk, dv
  i64 ldo = 0;                      // row stride of out and dout
  const int* cu_seqlens = nullptr;  // (B+1) device, packed layout
  const int* key_len = nullptr;     // (B) device, padded layout; null: every key
  float scale = 1.0f, p = 0.0f, keep_scale = 1.0f;
  philox_args philox;               // the dropout draw
};

struct sequence {
  i64 row0, len_q, len_k;
};

__device__ __forceinline__ sequence sequence_of(const params& pr, i64 b) {
  if (pr.cu_seqlens) { // a sequence longer than T (max_seqlen) breaks the caller's contract: its rows past T are
    const i64 s = pr.cu_seqlens[b], e = pr.cu_seqlens[b + 1]; // left alone rather than written out of bounds
    const i64 len = max(i64(0), min(e - s, pr.T));
    return {s, len, len};
  }
  return {b * pr.T, pr.T, pr.key_len ? i64(pr.key_len[b]) : pr.T};
}

/// @brief whether dropout keeps element e of the (B,NH,T,T) draw (dropout.cuh's rule); `draw` resolved (read from
/// the device once per kernel, not per element)
__device__ __forceinline__ bool kept(const params& pr, const philox_args& draw, std::uint64_t e) {
  const minibert::detail::philox_out r = minibert::detail::philox4x32_10(draw.seed, draw.base + e / 4);
  return minibert::detail::uniform01(r.v[e % 4]) >= pr.p;
}

/// @brief the dropout factor of element (b h, i, j): 1 without dropout, else keep ? 1/(1-p) : 0
__device__ __forceinline__ float dropout_factor(const params& pr, const philox_args& draw, i64 bh, i64 i, i64 j) {
  if (pr.p == 0.0f) return 1.0f;
  return kept(pr, draw, std::uint64_t((bh * pr.T + i) * pr.T + j)) ? pr.keep_scale : 0.0f;
}

/// @brief rows [0, rows) of a (rows_per_block, D) shared tile from x (row r at x + (row0 + r) ld + col0), rounded to
/// Op; zeros from row `valid` on. Consecutive threads read consecutive columns (coalesced).
template <class Op, int D, class T>
__device__ __forceinline__ void load_rows(bits16 (*dst)[D + 8], const T* x, i64 ld, i64 col0, i64 row0, i64 valid) {
  for (int i = threadIdx.x; i < rows_per_block * D; i += threads) {
    const int r = i / D, d = i % D;
    dst[r][d] = r < valid ? mma::operand_bits<Op>(x[(row0 + r) * ld + col0 + d]) : bits16(0);
  }
}

__device__ __forceinline__ std::uint32_t pack(std::uint32_t lo, std::uint32_t hi) { return lo | (hi << 16); }
template <class Op> __device__ __forceinline__ std::uint32_t pack_floats(float lo, float hi) {
  return pack(mma::operand_bits<Op>(lo), mma::operand_bits<Op>(hi));
}
template <int LD> __device__ __forceinline__ std::uint32_t reg(const bits16 (*t)[LD], int r, int c) {
  return *reinterpret_cast<const std::uint32_t*>(&t[r][c]);
}

/// A fragment (16 x 16, row) of rows [r0, r0+16), columns [c0, c0+16) of a row-major shared tile (g = lane/4,
/// q = lane%4; gemm_mma.cuh lists the layouts)
template <int LD>
__device__ __forceinline__ void load_a(std::uint32_t (&a)[4], const bits16 (*t)[LD], int r0, int c0, int g, int q) {
  a[0] = reg(t, r0 + g, c0 + 2 * q);
  a[1] = reg(t, r0 + g + 8, c0 + 2 * q);
  a[2] = reg(t, r0 + g, c0 + 2 * q + 8);
  a[3] = reg(t, r0 + g + 8, c0 + 2 * q + 8);
}

/// B fragment (16 x 8) whose element (k, n) is t[n0 + n][k0 + k]: the product with the tile's rows transposed
template <int LD>
__device__ __forceinline__ void load_b_transposed(std::uint32_t (&b)[2], const bits16 (*t)[LD], int n0, int k0, int g,
                                                  int q) {
  b[0] = reg(t, n0 + g, k0 + 2 * q);
  b[1] = reg(t, n0 + g, k0 + 2 * q + 8);
}

/// B fragment (16 x 8) whose element (k, n) is t[k0 + k][n0 + n]: the product with the tile as it is
template <int LD>
__device__ __forceinline__ void load_b(std::uint32_t (&b)[2], const bits16 (*t)[LD], int k0, int n0, int g, int q) {
  b[0] = pack(t[k0 + 2 * q][n0 + g], t[k0 + 2 * q + 1][n0 + g]);
  b[1] = pack(t[k0 + 2 * q + 8][n0 + g], t[k0 + 2 * q + 9][n0 + g]);
}

/// A fragments of a 16 x 64 accumulator (8 C tiles of 16 x 8), rounded to Op: c[2s], c[2s+1] make k-step s
template <class Op>
__device__ __forceinline__ void accumulator_as_a(std::uint32_t (&a)[4][4], const float (&c)[tile / 8][4]) {
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    a[s][0] = pack_floats<Op>(c[2 * s][0], c[2 * s][1]);
    a[s][1] = pack_floats<Op>(c[2 * s][2], c[2 * s][3]);
    a[s][2] = pack_floats<Op>(c[2 * s + 1][0], c[2 * s + 1][1]);
    a[s][3] = pack_floats<Op>(c[2 * s + 1][2], c[2 * s + 1][3]);
  }
}

/// acc (16 x 64) = A (16 x D) times the transposed rows of t (64 x D): a (rows, 64) score tile. a_fragment(s, af)
/// gives A's fragment of k-step s (from registers, or read from shared memory where registers are short)
template <class Op, int D, class AFragment>
__device__ __forceinline__ void scores(float (&acc)[tile / 8][4], AFragment&& a_fragment, const bits16 (*t)[D + 8],
                                       int g, int q) {
#pragma unroll
  for (int n = 0; n < tile / 8; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[n][r] = 0.0f;
#pragma unroll
  for (int s = 0; s < D / 16; ++s) {
    std::uint32_t af[4];
    a_fragment(s, af);
#pragma unroll
    for (int n = 0; n < tile / 8; ++n) {
      std::uint32_t b[2];
      load_b_transposed(b, t, n * 8, s * 16, g, q);
      mma::mma_tile<Op>(acc[n], af, b);
    }
  }
}

/// A fragments kept in registers (fr[s] for k-step s)
template <int Steps> __device__ __forceinline__ auto from_registers(const std::uint32_t (&fr)[Steps][4]) {
  return [&fr](int s, std::uint32_t (&af)[4]) {
#pragma unroll
    for (int r = 0; r < 4; ++r) af[r] = fr[s][r];
  };
}
/// A fragments read from rows [a0, a0+16) of a shared tile
template <int LD> __device__ __forceinline__ auto from_shared(const bits16 (*t)[LD], int a0, int g, int q) {
  return [=](int s, std::uint32_t (&af)[4]) { load_a(af, t, a0, s * 16, g, q); };
}

/// out (16 x D) += A (16 x 64, fragments a) times t (64 x D)
template <class Op, int D>
__device__ __forceinline__ void accumulate_product(float (&out)[D / 8][4], const std::uint32_t (&a)[4][4],
                                                   const bits16 (*t)[D + 8], int g, int q) {
#pragma unroll
  for (int s = 0; s < 4; ++s)
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      std::uint32_t b[2];
      load_b(b, t, s * 16, n * 8, g, q);
      mma::mma_tile<Op>(out[n], a[s], b);
    }
}

/// the maximum (or sum) of v over the 4 lanes that share a row of a C fragment
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/// element (n, r) of a 16 x 64 C-fragment accumulator lies at row g + 8 (r/2), column 8 n + 2 q + r%2
__device__ __forceinline__ int frag_row(int g, int r) { return g + 8 * (r >> 1); }
__device__ __forceinline__ int frag_col(int n, int q, int r) { return 8 * n + 2 * q + (r & 1); }

/// the scaled, masked score of key j (key_row < valid keys of the tile), or -inf past the keys that count
template <class T>
__device__ __forceinline__ float masked_score(float s, const params& pr, const T* mask, i64 b, i64 j, bool counts) {
  if (!counts) return -INFINITY;
  return s * pr.scale + (mask ? to_float(mask[b * pr.T + j]) : 0.0f);
}

// ---------------------------------------------------------------------------------------------------------------------
// kernels

} // namespace minibert::cuda::flash

namespace minibert::cuda {
/// @brief L of a mask row (Tn): 1 + the last key whose additive mask is not below masked_below (key 0 always counts,
/// the CPU's l > 1); computed by a whole warp, every lane gets it. The materialized softmax and the flash kernels
/// leave the keys from L on out of the softmax.
template <class T> __device__ __forceinline__ i64 warp_key_length(const T* mask_row, i64 Tn, float masked_below) {
  int last = 0;
  for (i64 j = threadIdx.x % 32; j < Tn; j += 32)
    if (!(to_float(mask_row[j]) < masked_below)) last = int(j);
  for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(0xffffffffu, last, o));
  return last + 1;
}
} // namespace minibert::cuda

namespace minibert::cuda::flash {

// key_len (B) = warp_key_length of each mask row (B,T); one warp per sequence
template <class T>
__global__ void key_length_kernel(const T* __restrict__ mask, i64 B, i64 Tn, float masked_below, int* key_len) {
  const i64 b = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (b >= B) return;
  const i64 L = warp_key_length(mask + b * Tn, Tn, masked_below);
  if (threadIdx.x % 32 == 0) key_len[b] = int(L);
}

// out (rows, ldo) head h columns, lse (B,NH,T); grid (ceil(T/64), NH, B), block 128
template <class Op, class T, int D>
__global__ void __launch_bounds__(threads)
    forward_kernel(params pr, const T* q, const T* k, const T* v, const T* mask, T* out, float* lse) {
  __shared__ __align__(16) bits16 Ks[rows_per_block][D + 8];
  __shared__ __align__(16) bits16 Vs[tile][D + 8];
  const i64 b = blockIdx.z, h = blockIdx.y, i0 = i64(blockIdx.x) * rows_per_block, bh = b * pr.NH + h;
  const sequence sq = sequence_of(pr, b);
  const philox_args draw = pr.philox.resolved();
  if (i0 >= sq.len_q) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4, wr = warp * 16;
  // this warp's 16 query rows into registers, through Ks
  load_rows<Op, D>(Ks, q, pr.ld, h * D, sq.row0 + i0, min(i64(rows_per_block), sq.len_q - i0));
  __syncthreads();
  std::uint32_t qf[D / 16][4];
#pragma unroll
  for (int s = 0; s < D / 16; ++s) load_a(qf[s], Ks, wr, s * 16, g, qd);
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // rows g and g+8; l is this lane's share until the end
  for (i64 j0 = 0; j0 < sq.len_k; j0 += tile) {
    const int valid = int(min(i64(tile), sq.len_k - j0));
    __syncthreads(); // the previous tile (or the q rows) fully read
    load_rows<Op, D>(Ks, k, pr.ld, h * D, sq.row0 + j0, valid);
    load_rows<Op, D>(Vs, v, pr.ld, h * D, sq.row0 + j0, valid);
    __syncthreads();
    float s[tile / 8][4];
    scores<Op, D>(s, from_registers(qf), Ks, g, qd);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < tile / 8; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int c = frag_col(n, qd, r);
        s[n][r] = masked_score(s[n][r], pr, mask, b, j0 + c, c < valid);
        tile_max[r >> 1] = fmaxf(tile_max[r >> 1], s[n][r]);
      }
    float base[2], correction[2];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float m_new = fmaxf(m[hr], quad_max(tile_max[hr]));
      base[hr] = m_new == -INFINITY ? 0.0f : m_new; // a row with nothing yet: exp(-inf - 0) = 0
      correction[hr] = expf(m[hr] - base[hr]);
      m[hr] = m_new;
      l[hr] *= correction[hr];
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) o[n][r] *= correction[r >> 1];
#pragma unroll
    for (int n = 0; n < tile / 8; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float pij = expf(s[n][r] - base[r >> 1]);
        l[r >> 1] += pij; // the softmax normalizer counts every key, dropped or not
        s[n][r] = pij * dropout_factor(pr, draw, bh, i0 + wr + frag_row(g, r), j0 + frag_col(n, qd, r));
      }
    std::uint32_t pa[4][4];
    accumulator_as_a<Op>(pa, s);
    accumulate_product<Op, D>(o, pa, Vs, g, qd);
  }
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const float sum = quad_sum(l[hr]);
    const i64 i = i0 + wr + g + 8 * hr;
    if (i >= sq.len_q) continue;
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f; // all keys at -inf: zeros, as the softmax kernels
    T* row = out + (sq.row0 + i) * pr.ldo + h * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      row[8 * n + 2 * qd] = from_float<T>(o[n][2 * hr] * inv);
      row[8 * n + 2 * qd + 1] = from_float<T>(o[n][2 * hr + 1] * inv);
    }
    if (qd == 0) lse[bh * pr.T + i] = sum > 0.0f ? m[hr] + logf(sum) : -INFINITY;
  }
}

// delta (B,NH,T) = rowsum(dO * O) per head, fp32; one warp per (query, head); grid (ceil(T NH / 8), B), block 256
template <class T, int D>
__global__ void delta_kernel(params pr, const T* dout, const T* out, float* delta) {
  const i64 b = blockIdx.y, w = i64(blockIdx.x) * 8 + threadIdx.x / 32, i = w / pr.NH, h = w % pr.NH;
  const int lane = threadIdx.x % 32;
  const sequence sq = sequence_of(pr, b);
  if (i >= sq.len_q) return;
  const T* dO = dout + (sq.row0 + i) * pr.ldo + h * D;
  const T* O = out + (sq.row0 + i) * pr.ldo + h * D;
  float acc = 0.0f;
  for (int d = lane; d < D; d += 32) acc += to_float(dO[d]) * to_float(O[d]);
  acc = warp_reduce_sum(acc);
  if (lane == 0) delta[(b * pr.NH + h) * pr.T + i] = acc;
}

/// exp(s - lse) of a recomputed score; 0 for a row whose lse says it attended nothing
__device__ __forceinline__ float recomputed_probability(float s, float row_lse) {
  return row_lse == -INFINITY ? 0.0f : expf(s - row_lse);
}

// dq (rows, ld) head h columns; grid (ceil(T/64), NH, B), block 128
template <class Op, class T, int D>
__global__ void __launch_bounds__(threads)
    dq_kernel(params pr, const T* q, const T* k, const T* v, const T* mask, const T* dout, const float* lse,
              const float* delta, T* dq) {
  __shared__ __align__(16) bits16 Ks[tile][D + 8];
  __shared__ __align__(16) bits16 Vs[tile][D + 8];
  const i64 b = blockIdx.z, h = blockIdx.y, i0 = i64(blockIdx.x) * rows_per_block, bh = b * pr.NH + h;
  const sequence sq = sequence_of(pr, b);
  const philox_args draw = pr.philox.resolved();
  if (i0 >= sq.len_q) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4, wr = warp * 16;
  const i64 rows = min(i64(rows_per_block), sq.len_q - i0);
  load_rows<Op, D>(Ks, q, pr.ld, h * D, sq.row0 + i0, rows);
  load_rows<Op, D>(Vs, dout, pr.ldo, h * D, sq.row0 + i0, rows);
  __syncthreads();
  std::uint32_t qf[D / 16][4], dof[D / 16][4];
#pragma unroll
  for (int s = 0; s < D / 16; ++s) {
    load_a(qf[s], Ks, wr, s * 16, g, qd);
    load_a(dof[s], Vs, wr, s * 16, g, qd);
  }
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const i64 i = i0 + wr + g + 8 * hr;
    row_lse[hr] = i < sq.len_q ? lse[bh * pr.T + i] : -INFINITY;
    row_delta[hr] = i < sq.len_q ? delta[bh * pr.T + i] : 0.0f;
  }
  float acc[D / 8][4] = {};
  for (i64 j0 = 0; j0 < sq.len_k; j0 += tile) {
    const int valid = int(min(i64(tile), sq.len_k - j0));
    __syncthreads();
    load_rows<Op, D>(Ks, k, pr.ld, h * D, sq.row0 + j0, valid);
    load_rows<Op, D>(Vs, v, pr.ld, h * D, sq.row0 + j0, valid);
    __syncthreads();
    float s[tile / 8][4], dp[tile / 8][4];
    scores<Op, D>(s, from_registers(qf), Ks, g, qd);  // q k^T
    scores<Op, D>(dp, from_registers(dof), Vs, g, qd); // dO v^T
#pragma unroll
    for (int n = 0; n < tile / 8; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int c = frag_col(n, qd, r), hr = r >> 1;
        const float pij = recomputed_probability(masked_score(s[n][r], pr, mask, b, j0 + c, c < valid), row_lse[hr]);
        const float z = dropout_factor(pr, draw, bh, i0 + wr + frag_row(g, r), j0 + c);
        s[n][r] = pij * (dp[n][r] * z - row_delta[hr]); // dS
      }
    std::uint32_t da[4][4];
    accumulator_as_a<Op>(da, s);
    accumulate_product<Op, D>(acc, da, Ks, g, qd); // dS k
  }
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const i64 i = i0 + wr + g + 8 * hr;
    if (i >= sq.len_q) continue;
    T* row = dq + (sq.row0 + i) * pr.ld + h * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      row[8 * n + 2 * qd] = from_float<T>(acc[n][2 * hr] * pr.scale);
      row[8 * n + 2 * qd + 1] = from_float<T>(acc[n][2 * hr + 1] * pr.scale);
    }
  }
}

/// dynamic shared memory of dkdv_kernel: the block's keys and values, a query tile and its dO, their lse and delta
template <int D> constexpr std::size_t dkdv_shared_bytes() {
  return 4 * std::size_t(tile) * (D + 8) * sizeof(bits16) + 2 * tile * sizeof(float);
}

// dk, dv (rows, ld) head h columns; grid (ceil(T/64), NH, B), block 128, dkdv_shared_bytes<D>() of shared memory.
// Rows of S^T are keys here: element (n, r) of a warp's accumulator is key wr + frag_row, query frag_col.
template <class Op, class T, int D>
__global__ void __launch_bounds__(threads)
    dkdv_kernel(params pr, const T* q, const T* k, const T* v, const T* mask, const T* dout, const float* lse,
                const float* delta, T* dk, T* dv) {
  extern __shared__ __align__(16) unsigned char shared[];
  using row_t = bits16[D + 8];
  row_t* Ks = reinterpret_cast<row_t*>(shared);
  row_t* Vs = Ks + rows_per_block;
  row_t* Qs = Vs + rows_per_block;
  row_t* dOs = Qs + tile;
  float* lse_s = reinterpret_cast<float*>(dOs + tile);
  float* delta_s = lse_s + tile;
  const i64 b = blockIdx.z, h = blockIdx.y, j0 = i64(blockIdx.x) * rows_per_block, bh = b * pr.NH + h;
  const sequence sq = sequence_of(pr, b);
  const philox_args draw = pr.philox.resolved();
  if (j0 >= sq.len_q) return; // past the sequence's rows
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4, wr = warp * 16;
  const i64 valid_keys = max(i64(0), min(i64(rows_per_block), sq.len_k - j0)); // keys past L_b get zero gradients
  float ddk[D / 8][4] = {}, ddv[D / 8][4] = {};
  if (valid_keys > 0) {
    load_rows<Op, D>(Ks, k, pr.ld, h * D, sq.row0 + j0, valid_keys);
    load_rows<Op, D>(Vs, v, pr.ld, h * D, sq.row0 + j0, valid_keys);
    for (i64 i0 = 0; i0 < sq.len_q; i0 += tile) {
      const i64 rows = min(i64(tile), sq.len_q - i0);
      __syncthreads(); // the previous query tile fully read (the first time: nothing)
      load_rows<Op, D>(Qs, q, pr.ld, h * D, sq.row0 + i0, rows);
      load_rows<Op, D>(dOs, dout, pr.ldo, h * D, sq.row0 + i0, rows);
      for (int c = threadIdx.x; c < tile; c += threads) {
        lse_s[c] = c < rows ? lse[bh * pr.T + i0 + c] : -INFINITY; // a row past the end: probability 0
        delta_s[c] = c < rows ? delta[bh * pr.T + i0 + c] : 0.0f;
      }
      __syncthreads();
      float s[tile / 8][4], dp[tile / 8][4];
      scores<Op, D>(s, from_shared(Ks, wr, g, qd), Qs, g, qd);   // S^T = k q^T
      scores<Op, D>(dp, from_shared(Vs, wr, g, qd), dOs, g, qd); // dP^T = v dO^T
      float pd[tile / 8][4];
#pragma unroll
      for (int n = 0; n < tile / 8; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int kr = wr + frag_row(g, r), c = frag_col(n, qd, r);
          const float pij =
              recomputed_probability(masked_score(s[n][r], pr, mask, b, j0 + kr, kr < valid_keys), lse_s[c]);
          const float z = dropout_factor(pr, draw, bh, i0 + c, j0 + kr);
          pd[n][r] = pij * z;                          // dropped P^T
          s[n][r] = pij * (dp[n][r] * z - delta_s[c]); // dS^T
        }
      std::uint32_t a[4][4];
      accumulator_as_a<Op>(a, pd);
      accumulate_product<Op, D>(ddv, a, dOs, g, qd); // dv += P^T dO
      accumulator_as_a<Op>(a, s);
      accumulate_product<Op, D>(ddk, a, Qs, g, qd); // dk += dS^T q
    }
  }
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const i64 j = j0 + wr + g + 8 * hr;
    if (j >= sq.len_q) continue;
    T* krow = dk + (sq.row0 + j) * pr.ld + h * D;
    T* vrow = dv + (sq.row0 + j) * pr.ld + h * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        krow[8 * n + 2 * qd + e] = from_float<T>(ddk[n][2 * hr + e] * pr.scale);
        vrow[8 * n + 2 * qd + e] = from_float<T>(ddv[n][2 * hr + e]);
      }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// host side

/// @brief whether the flash kernels can run on the current device (an sm_80+ binary: mma.sync)
inline bool flash_device() { return sm80_binary(forward_kernel<bfloat16, bfloat16, 64>); }

/// @brief whether head size HS has kernels (32, 64, 128)
inline bool supported_head_size(i64 HS) { return HS == 32 || HS == 64 || HS == 128; }

/// @brief whether the data type T under the context's matmul precision has tensor-core operands here: half and
/// bfloat16 data, or fp32 data under bf16 / fp16 matmul precision
template <class T> bool tensor_core_operands(const context<device::cuda>& ctx) {
  return std::is_same_v<T, half> || std::is_same_v<T, bfloat16> ||
         (std::is_same_v<T, float> && ctx.matmul != matmul_precision::fp32);
}

/// @brief f.template operator()<Op, D>() for the operand type of T under matmul precision `matmul` and head size HS
template <class T, class F> void dispatch(matmul_precision matmul, i64 HS, F&& f) {
  auto with_op = [&](auto op) {
    using Op = decltype(op);
    if (HS == 32) f.template operator()<Op, 32>();
    else if (HS == 64) f.template operator()<Op, 64>();
    else f.template operator()<Op, 128>();
  };
  if constexpr (std::is_same_v<T, float>) {
    if (matmul == matmul_precision::fp16) with_op(half{});
    else with_op(bfloat16{});
  } else {
    with_op(T{});
  }
}

inline dim3 grid_of(const params& pr, i64 rows) {
  MINIBERT_CHECK(pr.B <= 65535 && pr.NH <= 65535 && ceil_div(rows, rows_per_block) <= 0x7fffffff, "attention",
                 "B " << pr.B << ", NH " << pr.NH << ", T " << rows << ": beyond the flash kernels' grid");
  return dim3(static_cast<unsigned>(ceil_div(rows, rows_per_block)), static_cast<unsigned>(pr.NH),
              static_cast<unsigned>(pr.B));
}

/// out, lse (B,NH,T) from q, k, v (and the key lengths / mask of pr), operands rounded as ctx.matmul says for fp32 data
template <class T>
void forward(context<device::cuda>& ctx, const params& pr, i64 HS, const T* q, const T* k, const T* v, const T* mask,
             T* out, float* lse) {
  const dim3 grid = grid_of(pr, pr.T);
  dispatch<T>(ctx.matmul, HS, [&]<class Op, int D>() {
    forward_kernel<Op, T, D><<<grid, threads, 0, stream_of(ctx)>>>(pr, q, k, v, mask, out, lse);
  });
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// dq, dk, dv from dout, the forward's out and lse, operands rounded as the forward's matmul precision said;
/// delta (B,NH,T) fp32 is scratch of the caller
template <class T>
void backward(context<device::cuda>& ctx, matmul_precision forward_matmul, const params& pr, i64 HS, const T* dout,
              const T* q, const T* k, const T* v, const T* mask, const T* out, const float* lse, float* delta, T* dq,
              T* dk, T* dv) {
  const dim3 grid = grid_of(pr, pr.T);
  cudaStream_t stream = stream_of(ctx);
  dispatch<T>(forward_matmul, HS, [&]<class Op, int D>() {
    delta_kernel<T, D><<<dim3(static_cast<unsigned>(ceil_div(pr.T * pr.NH, 8)), static_cast<unsigned>(pr.B)), 256, 0,
                         stream>>>(pr, dout, out, delta);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    dq_kernel<Op, T, D><<<grid, threads, 0, stream>>>(pr, q, k, v, mask, dout, lse, delta, dq);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    constexpr std::size_t bytes = dkdv_shared_bytes<D>();
    allow_dynamic_shared_memory<dkdv_kernel<Op, T, D>>(static_cast<int>(bytes));
    dkdv_kernel<Op, T, D><<<grid, threads, bytes, stream>>>(pr, q, k, v, mask, dout, lse, delta, dk, dv);
  });
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// key_len (B) of a (B,T) additive mask
template <class T>
void key_lengths(context<device::cuda>& ctx, const T* mask, i64 B, i64 Tn, float masked_below, int* key_len) {
  constexpr int per_block = 8;
  key_length_kernel<T><<<static_cast<unsigned>(ceil_div(B, per_block)), 32 * per_block, 0, stream_of(ctx)>>>(
      mask, B, Tn, masked_below, key_len);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace minibert::cuda::flash
