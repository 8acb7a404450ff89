// SPDX-License-Identifier: MIT
#pragma once
/* Element types: the dtype tag used by checkpoints and tensors, and the 16-bit float storage types
   (IEEE half, bfloat16) with round-to-nearest-even conversions usable on host and device. */

#include <cstdint> // uint16_t, uint32_t
#include <cstring> // memcpy (bit casts)
#include <string>  // string
#include <type_traits> // is_same_v

#include <minibert/config.hpp>

namespace minibert {

/// @brief Element type tags, named as safetensors names them.
enum class dtype : std::uint8_t { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

/// @brief bytes per element of a dtype
inline constexpr std::size_t dtype_size(dtype t) {
  switch (t) {
  case dtype::f64: case dtype::i64: return 8;
  case dtype::f32: case dtype::i32: return 4;
  case dtype::f16: case dtype::bf16: case dtype::i16: return 2;
  default: return 1;
  }
}

/// @brief the safetensors name of a dtype ("F32", "BF16", ...)
inline const char* dtype_name(dtype t) {
  switch (t) {
  case dtype::f64: return "F64";
  case dtype::f32: return "F32";
  case dtype::f16: return "F16";
  case dtype::bf16: return "BF16";
  case dtype::i64: return "I64";
  case dtype::i32: return "I32";
  case dtype::i16: return "I16";
  case dtype::i8: return "I8";
  case dtype::u8: return "U8";
  case dtype::boolean: return "BOOL";
  }
  return "?";
}

namespace detail {
MINIBERT_HOST_DEVICE std::uint32_t f32_bits(float f) { std::uint32_t u; std::memcpy(&u, &f, 4); return u; }
MINIBERT_HOST_DEVICE float bits_f32(std::uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
} // namespace detail

/// @brief bfloat16 storage type: the top 16 bits of an fp32, rounded to nearest even; NaN stays NaN.
struct bfloat16 {
  std::uint16_t bits = 0;
  bfloat16() = default;
  MINIBERT_HOST_DEVICE explicit bfloat16(float f) {
    std::uint32_t u = detail::f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) { bits = static_cast<std::uint16_t>((u >> 16) | 0x40u); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<std::uint16_t>(u >> 16);
  }
  MINIBERT_HOST_DEVICE explicit operator float() const { return detail::bits_f32(std::uint32_t(bits) << 16); }
  MINIBERT_HOST_DEVICE static bfloat16 from_bits(std::uint16_t b) { bfloat16 h; h.bits = b; return h; }
};

/// @brief IEEE 754 binary16 storage type, round-to-nearest-even from fp32 (subnormals, inf and NaN kept).
struct half {
  std::uint16_t bits = 0;
  half() = default;
  MINIBERT_HOST_DEVICE explicit half(float f) {
    const std::uint32_t u = detail::f32_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) { bits = static_cast<std::uint16_t>(sign | 0x7e00u); return; }      // NaN
    if (a >= 0x477ff000u) { bits = static_cast<std::uint16_t>(sign | 0x7c00u); return; }     // overflow -> inf
    if (a < 0x38800000u) {                                                                   // subnormal or zero
      // add 0.5 (as a float) so the FPU does the rounding of the shifted-out mantissa bits
      const float r = detail::bits_f32(a) + 0.5f;
      bits = static_cast<std::uint16_t>(sign | (detail::f32_bits(r) - 0x3f000000u));
      return;
    }
    const std::uint32_t mant_odd = (a >> 13) & 1u;
    const std::uint32_t v = a + 0xc8000fffu + mant_odd; // rebias exponent (-112 << 23) and round
    bits = static_cast<std::uint16_t>(sign | (v >> 13));
  }
  MINIBERT_HOST_DEVICE explicit operator float() const {
    const std::uint32_t sign = std::uint32_t(bits & 0x8000u) << 16;
    const std::uint32_t e = (bits >> 10) & 0x1fu, m = bits & 0x3ffu;
    if (e == 0) { // zero or subnormal: m * 2^-24
      const float f = static_cast<float>(m) * 5.9604644775390625e-8f;
      return detail::bits_f32(detail::f32_bits(f) | sign);
    }
    if (e == 31) return detail::bits_f32(sign | 0x7f800000u | (m << 13));
    return detail::bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  }
  MINIBERT_HOST_DEVICE static half from_bits(std::uint16_t b) { half h; h.bits = b; return h; }
};

/// @brief a float, double, half or bfloat16 value as a double (the 16-bit types convert through float)
template <class T> double to_double(T v) {
  if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>) return double(float(v));
  else return double(v);
}

/// @brief the dtype tag of a C++ element type
template <class T> struct dtype_of;
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<half> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of<bfloat16> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <class T> inline constexpr dtype dtype_v = dtype_of<T>::value;

} // namespace minibert
