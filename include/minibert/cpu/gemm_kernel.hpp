// SPDX-License-Identifier: MIT
#pragma once
/* fp32 GEMM building blocks for AVX-512F CPUs in the BLIS / GotoBLAS layout (Van Zee & van de Geijn 2015,
   "BLIS: A Framework for Rapidly Instantiating BLAS Functionality"): the blocking constants, the 12x32
   register-blocked micro-kernel, and the packing of op(A) into MR-row panels and op(B) into NR-column
   panels. The blocked, threaded driver is cpu/gemm_f32.hpp. Private to cpu/gemm.hpp. */

#if !defined(__AVX512F__)
#error "minibert/cpu/gemm_kernel.hpp needs AVX-512F; include <minibert/cpu/gemm.hpp>, which falls back to Eigen"
#endif

#include <algorithm> // min, max
#include <cstdint>   // int64_t, uint32_t
#include <utility>   // integer_sequence

#include <immintrin.h> // AVX-512 intrinsics

namespace minibert::cpu::detail {

// ---------------------------------------------------------------------- blocking

// Micro-tile MR x NR = 12 x 32: 24 zmm accumulators + 2 zmm of B + 1 broadcast of A = 27 of the 32 zmm
// registers. Two FMA pipes with 4-cycle latency need >= 8 independent accumulators; 24 leaves headroom,
// and each k step issues 24 FMAs against 2 vector loads + 12 broadcasts, well within two loads a cycle.
// Measured on Zen 5 (2 x 512-bit FMA): 12x32, 14x32, 8x48 and 6x64 all reach ~99% of one core's peak
// with packed operands; 12x32 wins on edges: 32 divides every BERT width (64, 128, 768, 2304, 3072) and
// 12 = 3 groups of 4 rows suits the 4x4 transposes in pack_a. Row remainders (M % 12) get their own
// kernel instance (MR = 1..11) instead of zero-padded rows, so no flops are wasted on them.
inline constexpr int gemm_mr = 12;
inline constexpr int gemm_nr = 32;

// Cache blocking, for the 48 KiB L1d / 1 MiB L2 per core and 32 MiB shared L3 of the machine this was
// tuned on (Zen 5). Loop nest: for each packed B block (nc columns x a k range, packed on demand), for each
// unit of mc rows (shared out to the threads), for each chunk of 256 columns, for each k block (packing
// that k block of A during the first chunk), for each B panel, for each A panel: micro-kernel.
// kc = 384 (K is split into equal blocks of at most 384): the micro-kernel's B panel (kc x NR x 4 B =
//   48 KiB) is reused by the 16 A panels of the unit from L1/L2; 768 splits into 2 x 384.
// mc = 192 (16 A panels): one k block of packed A (mc x kc x 4 B = 288 KiB) stays in L2 while the chunk's
//   B panels stream past it.
// chunk = 8 B panels (256 columns): the C chunk (mc x 256 x 4 B = 192 KiB) stays in L2 through every k
//   block, where a whole row strip of C (2.3 MiB at N = 3072) would return to L3 once per k block.
// packed B block <= 2M floats (8 MiB): the block is re-read from L3 by every unit of rows, and the 32 MiB
//   L3 is shared with A, C and (on this VM) other tenants' cores; measured 2-thread rates at K = 4096 and
//   2048^3: 1M / 2M / 4M floats = ~415 / ~430 / ~410 GFLOP/s. A BERT-base weight (K x N up to
//   768 x 3072 or 4096 x 768) is then 1 or 2 blocks along K, packed once for all of M.
// Measured (1 thread, GFLOP/s per CPU-second; the machine is shared): mc in {48..192} x kc in {256..1024}
// all land within +-3% at the BERT shapes; the chunking is worth +2-4% at N >= 2048 and neutral below.
inline constexpr std::int64_t gemm_mc = 192;
inline constexpr std::int64_t gemm_kc = 384;
inline constexpr std::int64_t gemm_chunk_panels = 8;
inline constexpr std::int64_t gemm_packed_b = std::int64_t(1) << 21;
// B is packed in groups of 4 panels (128 columns, the block's whole k range), on demand: each k row of a
// group is 512 contiguous bytes of a non-transposed B, long enough for the prefetchers; a chunk is 2 groups.
inline constexpr std::int64_t gemm_pack_group = 4;

// Below this many flops a GEMM stays on one thread: a parallel region costs a few microseconds,
// about what one core does in 1-2 MFLOP at this speed.
inline constexpr std::int64_t gemm_parallel_flops = std::int64_t(1) << 22;

// ---------------------------------------------------------------------- micro-kernel

inline __mmask16 gemm_tail_mask(std::int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// C[0:MR, 0:n] = alpha * acc + beta * C (the micro-kernels' epilogue); beta == 0 never reads C
template <int MR, int NV>
inline void gemm_store_tile(const __m512 (&acc)[MR][NV], float* c, std::int64_t ldc, std::int64_t n, float alpha,
                            float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 last = gemm_tail_mask(n - 16 * (NV - 1));
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 16 * v;
      const __mmask16 m = v == NV - 1 ? last : __mmask16(0xFFFF);
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta == 1.0f) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, p));
      else if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, p), r);
      _mm512_mask_storeu_ps(p, m, r);
    }
  }
}

// C[0:MR, 0:n] = alpha * (A_panel * B_panel) + beta * C, n <= 16*NV.
// a: packed A panel, element (i,k) at a[k*MR + i]; b: packed B panel, element (k,j) at b[k*16*NV + j],
// zero-padded to 16*NV columns (so the k loop needs no masks; only the C access is masked).
// beta == 0 never reads C (it may hold NaNs).
template <int MR, int NV>
inline void gemm_micro_kernel(std::int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                              std::int64_t ldc, std::int64_t n, float alpha, float beta) {
  constexpr int ldb = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // C's rows are touched only after the k loop: start pulling them in now so the stores don't miss.
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (NV > 1) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + ldb - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (std::int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[k * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  gemm_store_tile<MR, NV>(acc, c, ldc, n, alpha, beta);
}

// The bf16 micro-kernel (AVX512-BF16, chosen at run time: compiled for that target whatever the build's flags):
// the same tile with k consumed in pairs by vdpbf16ps, c += a(i,k) b(k,j) + a(i,k+1) b(k+1,j) in fp32, twice the
// multiply-adds of an fp32 FMA per instruction. a and b are panels converted by gemm_pair_bf16 (element pair p at
// [p*MR + i] of a, [p*16*NV + j] of b, as 32-bit words: two bf16 numbers, k even in the low half).
#define MINIBERT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
template <int MR, int NV>
MINIBERT_BF16_TARGET void gemm_micro_kernel_bf16(std::int64_t kc, const float* __restrict a_, const float* __restrict b_,
                                                 float* c, std::int64_t ldc, std::int64_t n, float alpha, float beta) {
  constexpr int ldb = 16 * NV;
  const auto* a = reinterpret_cast<const std::uint32_t*>(a_);
  const auto* b = reinterpret_cast<const std::uint32_t*>(b_);
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (NV > 1) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + ldb - 1), _MM_HINT_T0);
  }
  const std::int64_t pairs = (kc + 1) / 2;
#pragma GCC unroll 4
  for (std::int64_t p = 0; p < pairs; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_load_si512(b + p * ldb + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[p * MR + i]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
    }
  }
  gemm_store_tile<MR, NV>(acc, c, ldc, n, alpha, beta);
}

using gemm_kernel_fn = void (*)(std::int64_t, const float*, const float*, float*, std::int64_t, std::int64_t, float,
                                float);

template <int... Ms> struct gemm_kernel_table {
  static constexpr gemm_kernel_fn one[] = {&gemm_micro_kernel<Ms + 1, 1>...};
  static constexpr gemm_kernel_fn two[] = {&gemm_micro_kernel<Ms + 1, 2>...};
  static constexpr gemm_kernel_fn one_bf16[] = {&gemm_micro_kernel_bf16<Ms + 1, 1>...};
  static constexpr gemm_kernel_fn two_bf16[] = {&gemm_micro_kernel_bf16<Ms + 1, 2>...};
};
template <int... Ms> gemm_kernel_table<Ms...> gemm_make_kernel_table(std::integer_sequence<int, Ms...>);
using gemm_kernels = decltype(gemm_make_kernel_table(std::make_integer_sequence<int, gemm_mr>{}));

// How a GEMM treats its fp32 operands: fp32; bf16 on vdpbf16ps (panels converted to bf16 pairs); or rounded to
// bf16 / fp16 in the packed panels and multiplied by the fp32 kernel (bf16 on a CPU without AVX512-BF16: the same
// rounding of the operands, at fp32 speed; fp16: no CPU here multiplies fp16).
enum class gemm_mode { fp32, bf16_native, round_bf16, round_fp16 };

// The kernel instance for an m-row, (16*nv)-column tile, 1 <= m <= MR, 1 <= nv <= 2.
inline gemm_kernel_fn gemm_kernel_select(std::int64_t m, std::int64_t nv, gemm_mode mode = gemm_mode::fp32) {
  if (mode == gemm_mode::bf16_native) return nv == 1 ? gemm_kernels::one_bf16[m - 1] : gemm_kernels::two_bf16[m - 1];
  return nv == 1 ? gemm_kernels::one[m - 1] : gemm_kernels::two[m - 1];
}

// ---------------------------------------------------------------------- packing

// 4x4 transpose of rows s[0], s[lds], s[2 lds], s[3 lds] (4 floats each) into d[0], d[ldd], ... .
inline void gemm_transpose_4x4(const float* s, std::int64_t lds, float* d, std::int64_t ldd) {
  __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds), r2 = _mm_loadu_ps(s + 2 * lds),
         r3 = _mm_loadu_ps(s + 3 * lds);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(d, r0);
  _mm_storeu_ps(d + ldd, r1);
  _mm_storeu_ps(d + 2 * ldd, r2);
  _mm_storeu_ps(d + 3 * ldd, r3);
}

// The packing loops read their source once, usually from DRAM or L3 (activations written by the previous op
// or weights not touched since the last step); one row segment per step is too little work to hide the
// miss latency and the hardware prefetchers follow strided row segments poorly, so request the segment
// gemm_pack_ahead rows ahead. Measured at 768x768x4096 (A^T B, both operands from DRAM), 2 threads:
// 2 / 4 / 8 / 16 rows ahead = 414 / 410 / 421 / 435 GFLOP/s; shapes whose operands are in cache don't care.
// The hint is NTA: the source is read once, and a non-temporal prefetch is meant to keep it out of the outer
// caches, where the packed B block is re-read by every unit (measured +1% against T0, about the noise).
inline constexpr std::int64_t gemm_pack_ahead = 16;
inline void gemm_prefetch_row(const float* p, std::int64_t n) {
  for (std::int64_t j = 0; j < n; j += 16) _mm_prefetch(reinterpret_cast<const char*>(p + j), _MM_HINT_NTA);
}

// Packs rows [0, w) of a source whose element (r,k) is at s[r*lds + k] ("row-contiguous": op(A) when A is
// not transposed, op(B)^T when B is) into one panel: d[k*wp + r], rows w..wp-1 zero. 4x4 transposes keep
// both the loads and the stores contiguous. The source usually comes from DRAM or L3 (activations written
// by the previous op), so this is latency-bound, not shuffle-bound: walk one cache line (16 k) of all w
// rows at a time, so w streams are in flight instead of 4, and prefetch each row 4 lines ahead.
inline void gemm_pack_rows(std::int64_t w, std::int64_t wp, std::int64_t kc, const float* s, std::int64_t lds,
                           float* d) {
  const std::int64_t w4 = w / 4 * 4;
  for (std::int64_t k0 = 0; k0 < kc; k0 += 16) {
    const std::int64_t k1 = std::min(kc, k0 + 16), k4 = k0 + (k1 - k0) / 4 * 4;
    for (std::int64_t r = 0; r < w; ++r) // (a prefetch past the end of the matrix is harmless: it never faults)
      _mm_prefetch(reinterpret_cast<const char*>(s + r * lds + k0 + 64), _MM_HINT_NTA);
    for (std::int64_t r = 0; r < w4; r += 4) {
      for (std::int64_t k = k0; k < k4; k += 4) gemm_transpose_4x4(s + r * lds + k, lds, d + k * wp + r, wp);
      for (std::int64_t k = k4; k < k1; ++k)
        for (std::int64_t q = 0; q < 4; ++q) d[k * wp + r + q] = s[(r + q) * lds + k];
    }
    for (std::int64_t r = w4; r < w; ++r)
      for (std::int64_t k = k0; k < k1; ++k) d[k * wp + r] = s[r * lds + k];
    for (std::int64_t r = w; r < wp; ++r)
      for (std::int64_t k = k0; k < k1; ++k) d[k * wp + r] = 0.0f;
  }
}

// Packs op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row panels; panel q at ap + q*MR*kc holds
// m = min(MR, mc - q*MR) rows, element (i,k) at [k*m + i] (remainder panels are compact: their kernel has MR = m).
inline void gemm_pack_a(bool trans_a, std::int64_t mc, std::int64_t kc, const float* A, std::int64_t lda,
                        std::int64_t i0, std::int64_t p0, float* ap) {
  const std::int64_t panels = (mc + gemm_mr - 1) / gemm_mr;
  if (trans_a) {
    // A is (K,M): row k of the block is contiguous across all panels, so walk k outermost and read A
    // sequentially (panel-by-panel would stride through kc rows of A once per panel).
    for (std::int64_t k = 0; k < kc; ++k) {
      const float* src = A + (p0 + k) * lda + i0;
      gemm_prefetch_row(src + gemm_pack_ahead * lda, mc);
      for (std::int64_t q = 0; q < panels; ++q) {
        const std::int64_t m = std::min<std::int64_t>(gemm_mr, mc - q * gemm_mr);
        const __mmask16 mask = gemm_tail_mask(m);
        _mm512_mask_storeu_ps(ap + q * gemm_mr * kc + k * m, mask, _mm512_maskz_loadu_ps(mask, src + q * gemm_mr));
      }
    }
    return;
  }
  for (std::int64_t q = 0; q < panels; ++q) {
    const std::int64_t m = std::min<std::int64_t>(gemm_mr, mc - q * gemm_mr);
    gemm_pack_rows(m, m, kc, A + (i0 + q * gemm_mr) * lda + p0, lda, ap + q * gemm_mr * kc);
  }
}

// Packs op(B)[p0 : p0+kc, j0 + q*NR ...] for panels q in [q0, q1) of an nc-column block; panel q at
// bp + q*NR*kc holds n = min(NR, nc - q*NR) columns padded with zeros to a multiple of 16, element (k,j) at [k*np + j].
inline void gemm_pack_b(bool trans_b, std::int64_t nc, std::int64_t kc, const float* B, std::int64_t ldb,
                        std::int64_t p0, std::int64_t j0, std::int64_t q0, std::int64_t q1, float* bp) {
  if (!trans_b) {
    // B is (K,N): walk k outermost so each row of B is read once, sequentially, across the panels.
    for (std::int64_t k = 0; k < kc; ++k) {
      const float* src = B + (p0 + k) * ldb + j0;
      gemm_prefetch_row(src + gemm_pack_ahead * ldb + q0 * gemm_nr, std::min(nc, q1 * gemm_nr) - q0 * gemm_nr);
      for (std::int64_t q = q0; q < q1; ++q) {
        const std::int64_t n = std::min<std::int64_t>(gemm_nr, nc - q * gemm_nr), np = (n + 15) / 16 * 16;
        float* d = bp + q * gemm_nr * kc + k * np;
        const float* s = src + q * gemm_nr;
        if (n == gemm_nr) {
          _mm512_store_ps(d, _mm512_loadu_ps(s));
          _mm512_store_ps(d + 16, _mm512_loadu_ps(s + 16));
        } else {
          for (std::int64_t r = 0; r < np; r += 16)
            _mm512_store_ps(d + r, _mm512_maskz_loadu_ps(gemm_tail_mask(std::max<std::int64_t>(0, n - r)), s + r));
        }
      }
    }
    return;
  }
  for (std::int64_t q = q0; q < q1; ++q) {
    const std::int64_t n = std::min<std::int64_t>(gemm_nr, nc - q * gemm_nr), np = (n + 15) / 16 * 16;
    gemm_pack_rows(n, np, kc, B + (j0 + q * gemm_nr) * ldb + p0, ldb, bp + q * gemm_nr * kc);
  }
}


// ---------------------------------------------------------------------- reduced-precision panels

// fp32 -> bf16 by round to nearest even, exactly as bfloat16(float) (dtype.hpp; NaN stays NaN): the bf16 bits in
// the upper half of each 32-bit lane and zeros below, i.e. the rounded value as an fp32
inline __m512i gemm_bf16_upper(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512i r = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x400000));
  return _mm512_and_si512(r, _mm512_set1_epi32(int(0xFFFF0000u)));
}

// A packed panel (kc rows of w floats, row k at d + k*w) rounded in place to bf16 or fp16 values (still fp32)
inline void gemm_round_panel(gemm_mode mode, float* d, std::int64_t kc, std::int64_t w) {
  const std::int64_t n = kc * w;
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = gemm_tail_mask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(m, d + i);
    const __m512 r = mode == gemm_mode::round_bf16
                         ? _mm512_castsi512_ps(gemm_bf16_upper(x))
                         : _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm512_mask_storeu_ps(d + i, m, r);
  }
}

// A packed panel (kc rows of w floats) converted in place to bf16 pairs: word (p, r) at ((uint32*)d)[p*w + r] holds
// rows 2p (low half) and 2p+1 (high half; zero past kc) of column r. In place is safe: word row p is written after
// source rows 2p and 2p+1 are read, and it only overlaps source rows already consumed (p >= 1) or the very chunk of
// row 0 just read (p = 0).
inline void gemm_pair_bf16(float* d, std::int64_t kc, std::int64_t w) {
  auto* out = reinterpret_cast<std::uint32_t*>(d);
  for (std::int64_t p = 0; 2 * p < kc; ++p) {
    const float* r0 = d + 2 * p * w;
    const float* r1 = 2 * p + 1 < kc ? r0 + w : nullptr;
    for (std::int64_t r = 0; r < w; r += 16) {
      const __mmask16 m = gemm_tail_mask(w - r);
      const __m512i lo = _mm512_srli_epi32(gemm_bf16_upper(_mm512_maskz_loadu_ps(m, r0 + r)), 16);
      const __m512i hi = r1 ? gemm_bf16_upper(_mm512_maskz_loadu_ps(m, r1 + r)) : _mm512_setzero_si512();
      _mm512_mask_storeu_epi32(out + p * w + r, m, _mm512_or_si512(lo, hi));
    }
  }
}

// Converts a freshly packed panel for the mode (nothing for fp32)
inline void gemm_finish_panel(gemm_mode mode, float* d, std::int64_t kc, std::int64_t w) {
  if (mode == gemm_mode::bf16_native) gemm_pair_bf16(d, kc, w);
  else if (mode != gemm_mode::fp32) gemm_round_panel(mode, d, kc, w);
}

} // namespace minibert::cpu::detail
