// SPDX-License-Identifier: MIT
#pragma once
/* CPU inverted dropout: keep each element with probability 1-p and scale it by 1/(1-p). The keep mask
   comes from Philox at (seed, base counter + element index / 4, word index % 4) -- generator::uniform_at --
   so it does not depend on threads or device. dropout_keep computes it 16 counters (64 elements) per step
   with AVX-512 where the build has it, else one counter at a time; both give the same bits. */

#include <algorithm> // min
#include <cstdint>   // int64_t, uint8_t, uint32_t, uint64_t

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__BMI2__)
#include <immintrin.h>
#define MINIBERT_PHILOX_AVX512 1
#endif

#include <minibert/cpu/parallel.hpp>
#include <minibert/random.hpp>

namespace minibert::cpu {

namespace detail {
// keep[i] = uniform_at(seed, base, first + i) >= p, one Philox call per element (the definition)
inline void dropout_keep_scalar(std::uint64_t seed, std::uint64_t base, std::uint64_t first, std::int64_t n, float p,
                                std::uint8_t* keep) {
  for (std::int64_t i = 0; i < n;) {
    const std::uint64_t e = first + std::uint64_t(i);
    const auto r = minibert::detail::philox4x32_10(seed, base + e / 4);
    for (std::uint64_t w = e % 4; w < 4 && i < n; ++w, ++i) keep[i] = minibert::detail::uniform01(r.v[w]) >= p;
  }
}

#if defined(MINIBERT_PHILOX_AVX512)
// high and low 32 bits of the 16 products a * b (unsigned 32 x 32 -> 64)
inline void mul_wide_epu32(__m512i a, __m512i b, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, b);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// Philox4x32-10 of the 16 counters counter0 .. counter0 + 15 (detail/philox.hpp, lane j = counter0 + j); returns
// the keep mask of their 64 elements: bit 4j + w = uniform01(word w of lane j) >= p
inline std::uint64_t philox16_keep_bits(std::uint64_t seed, std::uint64_t counter0, float p) {
  const __m512i step = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i lo8 = _mm512_add_epi64(_mm512_set1_epi64(std::int64_t(counter0)), step);
  const __m512i hi8 = _mm512_add_epi64(lo8, _mm512_set1_epi64(8));
  __m512i c0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo8)), _mm512_cvtepi64_epi32(hi8), 1);
  __m512i c1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(lo8, 32))),
                                  _mm512_cvtepi64_epi32(_mm512_srli_epi64(hi8, 32)), 1);
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const __m512i m0 = _mm512_set1_epi32(int(0xD2511F53u)), m1 = _mm512_set1_epi32(int(0xCD9E8D57u));
  for (int r = 0; r < 10; ++r) {
    __m512i hi0, lo0, hi1, lo1;
    mul_wide_epu32(m0, c0, hi0, lo0);
    mul_wide_epu32(m1, c2, hi1, lo1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(int(k0)));
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(int(k1)));
    c1 = lo1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m512 pv = _mm512_set1_ps(p), unit = _mm512_set1_ps(1.0f / 16777216.0f);
  auto keep = [&](__m512i w) {
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8)), unit); // uniform01, exactly
    return std::uint64_t(_mm512_cmp_ps_mask(u, pv, _CMP_GE_OQ));
  };
  return _pdep_u64(keep(c0), 0x1111111111111111ull) | _pdep_u64(keep(c1), 0x2222222222222222ull) |
         _pdep_u64(keep(c2), 0x4444444444444444ull) | _pdep_u64(keep(c3), 0x8888888888888888ull);
}
#endif
} // namespace detail

/// @brief keep[i] = generator::uniform_at(seed, base, first + i) >= p for i in [0, n) (1 or 0)
inline void dropout_keep(std::uint64_t seed, std::uint64_t base, std::uint64_t first, std::int64_t n, float p,
                         std::uint8_t* keep) {
#if defined(MINIBERT_PHILOX_AVX512)
  const std::int64_t head = std::min<std::int64_t>(n, std::int64_t((4 - first % 4) % 4));
  detail::dropout_keep_scalar(seed, base, first, head, p, keep);
  const __m512i one = _mm512_set1_epi8(1);
  for (std::int64_t i = head; i < n; i += 64) { // first + i is a multiple of 4 here
    const std::uint64_t bits = detail::philox16_keep_bits(seed, base + (first + std::uint64_t(i)) / 4, p);
    const std::uint64_t valid = n - i >= 64 ? ~0ull : (1ull << (n - i)) - 1;
    _mm512_mask_storeu_epi8(keep + i, valid, _mm512_maskz_mov_epi8(bits, one));
  }
#else
  detail::dropout_keep_scalar(seed, base, first, n, p, keep);
#endif
}

/// @brief y = x * keep / (1-p), keep[i] = uniform_at(seed, base, i) >= p
template <class T>
void dropout_forward(const T* x, T* y, std::uint8_t* keep, std::int64_t n, float p, std::uint64_t seed,
                     std::uint64_t base) {
  const T s = T(1) / (T(1) - T(p));
  constexpr std::int64_t block = 4096; // elements per mask call (a multiple of 64: blocks start 4-aligned)
  detail::parallel_for((n + block - 1) / block, 3 * block, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t q = b; q < e; ++q) {
      const std::int64_t i0 = q * block, m = std::min(block, n - i0);
      dropout_keep(seed, base, std::uint64_t(i0), m, p, keep + i0);
      for (std::int64_t i = i0; i < i0 + m; ++i) y[i] = keep[i] ? x[i] * s : T(0);
    }
  });
}

/// @brief dx = dy * keep / (1-p)
template <class T> void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, std::int64_t n, float p) {
  const T s = T(1) / (T(1) - T(p));
  detail::parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) dx[i] = keep[i] ? dy[i] * s : T(0);
  });
}

} // namespace minibert::cpu
