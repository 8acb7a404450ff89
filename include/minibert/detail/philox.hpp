// SPDX-License-Identifier: MIT
#pragma once
/* Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3",
   SC'11). A (seed, counter) pair maps to four uniform 32-bit words, so any element's random number is
   computed independently: dropout masks are identical on every thread count and on CPU and GPU. */

#include <cstdint> // uint32_t, uint64_t

#include <minibert/config.hpp>

namespace minibert::detail {

struct philox_out {
  std::uint32_t v[4];
};

MINIBERT_HOST_DEVICE philox_out philox4x32_10(std::uint64_t seed, std::uint64_t counter) {
  std::uint32_t c0 = static_cast<std::uint32_t>(counter), c1 = static_cast<std::uint32_t>(counter >> 32);
  std::uint32_t c2 = 0, c3 = 0;
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = std::uint64_t(0xD2511F53u) * c0, p1 = std::uint64_t(0xCD9E8D57u) * c2;
    const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<std::uint32_t>(p1);
    c3 = static_cast<std::uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

/// uniform float in [0, 1) from 24 random bits
MINIBERT_HOST_DEVICE float uniform01(std::uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

} // namespace minibert::detail
