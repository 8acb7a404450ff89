// SPDX-License-Identifier: MIT
#pragma once
/* torch_generator: PyTorch's CPU generator (CPUGeneratorImpl of torch 1.13: mt19937 seeded as torch.manual_seed
   seeds it, plus its cached Box-Muller sample), and the draws transformers' Trainer makes with it: uniform_,
   normal_ (the 16-wide Box-Muller kernel, AVX2 or scalar) and randperm, each reproducing torch's bits. */

#include <array>    // array
#include <cmath>    // sqrt, log, cos, sin, fma
#include <cstdint>  // uint32_t, uint64_t, int64_t
#include <cstring>  // memcpy
#include <optional> // optional
#include <type_traits> // is_same_v
#include <utility>  // swap
#include <vector>   // vector

#include <minibert/error.hpp>

namespace minibert {

/// @brief PyTorch's CPU generator: mt19937 (at::mt19937) and the cached second normal sample of the scalar
/// Box-Muller path. torch_generator(s) is torch.Generator().manual_seed(s) (and torch.manual_seed(s)'s default
/// generator). Its whole state is state(), saved and restored exactly.
class torch_generator {
public:
  static constexpr std::uint64_t default_seed = 67280421310721ull; ///< c10::detail::default_rng_seed_val

  explicit torch_generator(std::uint64_t seed = default_seed) { manual_seed(seed); }

  /// @brief torch.Generator.manual_seed: mt19937 seeded with the low 32 bits, cached normals dropped
  void manual_seed(std::uint64_t seed);
  std::uint64_t initial_seed() const { return s_.seed; }
  /// @brief 32 random bits (CPUGeneratorImpl::random)
  std::uint32_t random();
  /// @brief 64 random bits: the first 32-bit draw is the high word (CPUGeneratorImpl::random64)
  std::uint64_t random64() {
    const std::uint64_t hi = random(), lo = random();
    return (hi << 32) | lo;
  }

  /// @brief everything that determines the future draws
  struct state_t {
    std::uint64_t seed = 0;
    std::array<std::uint32_t, 624> mt{};
    int left = 1, next = 0;
    std::optional<double> next_double_normal;
  };
  const state_t& state() const { return s_; }
  void set_state(const state_t& s) { s_ = s; }

  /// @brief the cached second sample of the scalar Box-Muller path (torch's next_double_normal_sample)
  std::optional<double>& next_double_normal() { return s_.next_double_normal; }

private:
  state_t s_;
};

/// @brief which build of torch's normal_ kernel (n >= 16) to reproduce. avx2: torch 1.13's AVX2 build, which it
/// runs on any CPU with AVX2 (Debian's build also on AVX-512 CPUs): floats through normal_fill_AVX2 (avx_mathfun's
/// polynomial log and sincos, with the FMAs GCC formed), doubles through the scalar normal_fill with
/// `* std + mean` fused. scalar: the DEFAULT build (ATEN_CPU_CAPABILITY=default, or no AVX2): libm log/cos/sin in
/// T, no FMA.
enum class torch_normal_kernel { avx2, scalar };

/// @brief Tensor.uniform_(from, to) on n contiguous elements: one random() per float, one random64() per double
template <class T> void torch_uniform(T* data, std::int64_t n, double from, double to, torch_generator& gen);

/// @brief Tensor.normal_(mean, std) on n contiguous elements. n >= 16: uniforms for all n first, Box-Muller over
/// blocks of 16 (pairs j, j+8), and for n % 16 != 0 the last 16 elements drawn again and recomputed; n < 16:
/// the scalar double Box-Muller with the generator's cached second sample.
/// @throws minibert::error if std < 0
template <class T>
void torch_normal(T* data, std::int64_t n, double mean, double std, torch_generator& gen,
                  torch_normal_kernel kernel = torch_normal_kernel::avx2);

/// @brief torch.randperm(n, generator=gen) on the CPU: forward Fisher-Yates, z = random() % (n - i)
/// @throws minibert::error if n < 0
inline std::vector<std::int64_t> torch_randperm(std::int64_t n, torch_generator& gen);

/// @brief one sample of at::normal_distribution<double>(mean, std) (serial normal_ path, caches the sine sample)
inline double torch_normal_double(torch_generator& gen, double mean, double std);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

// a value forced through memory: keeps a product rounded on its own where torch's compiled code rounds it, so that
// -march=native builds do not contract it into an FMA (and, where torch's compiler did fuse, std::fma says so)
template <class T> inline T rounded(T x) {
  volatile T v = x;
  return v;
}

inline std::uint32_t float_bits(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
inline float bits_float(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// at::uniform_real_distribution: the low digits(T) bits of one draw scaled to [0, 1), then x * (to - from) + from
inline float torch_uniform_float(torch_generator& g, float from, float to) {
  const float x = float(g.random() & ((1u << 24) - 1)) * (1.0f / 16777216.0f);
  return rounded(x * (to - from)) + from;
}
inline double torch_uniform_double(torch_generator& g, double from, double to) {
  const double x = double(g.random64() & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
  return rounded(x * (to - from)) + from;
}

// avx_mathfun.h's log256_ps (Cephes logf), one lane, with the multiply-adds GCC fuses in torch's AVX2 build
// (checked against that compiled code for all 2^24 inputs 1 - k/2^24). x > 0 and normal.
inline float avx2_log(float x) {
  std::uint32_t b = float_bits(x);
  float e = float(std::int32_t(b >> 23) - 0x7f) + 1.0f;
  x = bits_float((b & ~0x7f800000u) | 0x3f000000u); // mantissa in [0.5, 1)
  const bool small = x < 0.707106781186547524f;
  const float tmp = small ? x : 0.0f;
  x = x - 1.0f;
  e = e - (small ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = rounded(x * x);
  static constexpr float p[9] = {7.0376836292E-2f,  -1.1514610310E-1f, 1.1676998740E-1f,
                                 -1.2420140846E-1f, 1.4249322787E-1f,  -1.6668057665E-1f,
                                 2.0000714765E-1f,  -2.4999993993E-1f, 3.3333331174E-1f};
  float y = p[0];
  for (int i = 1; i < 9; ++i) y = std::fma(y, x, p[i]);
  y = std::fma(rounded(y * x), z, rounded(e * -2.12194440e-4f));
  y = std::fma(-z, 0.5f, y);
  x = x + y;
  return std::fma(e, 0.693359375f, x);
}

// avx_mathfun.h's sincos256_ps (Cephes sinf/cosf), one lane, fused as in torch's AVX2 build (checked for all
// 2^24 arguments float(2 pi) * k/2^24)
inline void avx2_sincos(float x, float& s, float& c) {
  std::uint32_t sign_sin = float_bits(x) & 0x80000000u;
  x = bits_float(float_bits(x) & 0x7fffffffu);
  std::int32_t j = std::int32_t(rounded(x * 1.27323954473516f)); // 4 / pi, truncated
  j = (j + 1) & ~1;
  const float y = float(j);
  sign_sin ^= std::uint32_t(j & 4) << 29;
  const std::uint32_t sign_cos = std::uint32_t(~(j - 2) & 4) << 29;
  const bool sin_poly = (j & 2) == 0; // x reduced into [-pi/4, pi/4]: sine from the sine polynomial
  x = std::fma(y, -0.78515625f, x);   // extended-precision x - j pi/4
  x = std::fma(y, -2.4187564849853515625e-4f, x);
  x = std::fma(y, -3.77489497744594108e-8f, x);
  const float z = rounded(x * x);
  float yc = std::fma(2.443315711809948E-005f, z, -1.388731625493765E-003f);
  yc = std::fma(yc, z, 4.166664568298827E-002f);
  yc = std::fma(rounded(yc * z), z, -rounded(z * 0.5f));
  yc = yc + 1.0f;
  float ys = std::fma(-1.9515295891E-4f, z, 8.3321608736E-3f);
  ys = std::fma(ys, z, -1.6666654611E-1f);
  ys = std::fma(rounded(ys * z), x, x);
  const float sin_v = sin_poly ? ys : yc, cos_v = sin_poly ? yc : ys;
  s = bits_float(float_bits(sin_v) ^ sign_sin);
  c = bits_float(float_bits(cos_v) ^ sign_cos);
}

// normal_fill_16_AVX2: lanes j and j+8 of 16 uniforms become two normals
inline void normal_fill_16_avx2(float* d, float mean, float std) {
  const float two_pi = float(2.0 * 3.14159265358979323846);
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j], u2 = d[j + 8];
    const float radius = std::sqrt(rounded(-2.0f * avx2_log(u1)));
    float s, c;
    avx2_sincos(rounded(two_pi * u2), s, c);
    d[j] = std::fma(rounded(radius * c), std, mean);
    d[j + 8] = std::fma(rounded(radius * s), std, mean);
  }
}

// normal_fill_16: the scalar kernel (libm log, cos, sin; theta rounded to T from a double product). `fused`: the
// final `* std + mean` as one FMA, as GCC contracts it in torch's AVX2 build (the kernel doubles take there)
template <class T> inline void normal_fill_16_scalar(T* d, T mean, T std, bool fused) {
  for (int j = 0; j < 8; ++j) {
    const T u1 = 1 - d[j], u2 = d[j + 8];
    const T radius = std::sqrt(rounded(T(-2) * std::log(u1)));
    const T theta = T(2.0 * 3.14159265358979323846 * double(u2));
    const T n1 = rounded(radius * std::cos(theta)), n2 = rounded(radius * std::sin(theta));
    d[j] = fused ? std::fma(n1, std, mean) : rounded(n1 * std) + mean;
    d[j + 8] = fused ? std::fma(n2, std, mean) : rounded(n2 * std) + mean;
  }
}

} // namespace detail

inline void torch_generator::manual_seed(std::uint64_t seed) {
  s_.seed = seed;
  s_.mt[0] = std::uint32_t(seed & 0xffffffffu);
  for (std::uint32_t j = 1; j < 624; ++j) s_.mt[j] = 1812433253u * (s_.mt[j - 1] ^ (s_.mt[j - 1] >> 30)) + j;
  s_.left = 1;
  s_.next = 0;
  s_.next_double_normal.reset();
}

inline std::uint32_t torch_generator::random() {
  if (--s_.left <= 0) { // regenerate the 624 words (Matsumoto & Nishimura's twist)
    for (int i = 0; i < 624; ++i) {
      const std::uint32_t y = (s_.mt[i] & 0x80000000u) | (s_.mt[(i + 1) % 624] & 0x7fffffffu);
      s_.mt[i] = s_.mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    s_.left = 624;
    s_.next = 0;
  }
  std::uint32_t y = s_.mt[s_.next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  return y ^ (y >> 18);
}

inline double torch_normal_double(torch_generator& gen, double mean, double std) {
  auto& cached = gen.next_double_normal();
  if (cached) {
    const double v = *cached;
    cached.reset();
    return detail::rounded(v * std) + mean;
  }
  const double u1 = detail::torch_uniform_double(gen, 0.0, 1.0);
  const double u2 = detail::torch_uniform_double(gen, 0.0, 1.0);
  const double r = std::sqrt(detail::rounded(-2.0 * std::log(1.0 - u2)));
  const double theta = detail::rounded(2.0 * 3.14159265358979323846 * u1);
  cached = detail::rounded(r * std::sin(theta));
  return detail::rounded(detail::rounded(r * std::cos(theta)) * std) + mean;
}

template <class T> void torch_uniform(T* data, std::int64_t n, double from, double to, torch_generator& gen) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "torch_uniform: float or double");
  for (std::int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) data[i] = detail::torch_uniform_float(gen, float(from), float(to));
    else data[i] = detail::torch_uniform_double(gen, from, to);
  }
}

template <class T>
void torch_normal(T* data, std::int64_t n, double mean, double std, torch_generator& gen, torch_normal_kernel kernel) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "torch_normal: float or double");
  MINIBERT_CHECK(std >= 0.0, "torch_normal", "std " << std << " < 0 (n " << n << ")");
  if (n < 16) { // serial kernel: double Box-Muller, one cached sample
    for (std::int64_t i = 0; i < n; ++i) data[i] = T(torch_normal_double(gen, mean, std));
    return;
  }
  auto fill16 = [&](T* d) {
    if constexpr (std::is_same_v<T, float>) {
      if (kernel == torch_normal_kernel::avx2) return detail::normal_fill_16_avx2(d, float(mean), float(std));
    }
    detail::normal_fill_16_scalar<T>(d, T(mean), T(std), kernel == torch_normal_kernel::avx2);
  };
  torch_uniform(data, n, 0.0, 1.0, gen);
  for (std::int64_t i = 0; i + 16 <= n; i += 16) fill16(data + i);
  if (n % 16 != 0) { // torch recomputes the last 16 from fresh uniforms
    T* tail = data + n - 16;
    torch_uniform(tail, 16, 0.0, 1.0, gen);
    fill16(tail);
  }
}

inline std::vector<std::int64_t> torch_randperm(std::int64_t n, torch_generator& gen) {
  MINIBERT_CHECK(n >= 0, "torch_randperm", "n " << n << " < 0");
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) p[std::size_t(i)] = i;
  for (std::int64_t i = 0; i + 1 < n; ++i) {
    const std::int64_t z = std::int64_t(gen.random() % std::uint64_t(n - i));
    std::swap(p[std::size_t(i)], p[std::size_t(z + i)]);
  }
  return p;
}

} // namespace minibert
