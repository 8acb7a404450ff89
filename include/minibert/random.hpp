// SPDX-License-Identifier: MIT
#pragma once
/* minibert::generator: the seeded source of randomness for dropout and weight initialization. Its whole
   state is (seed, offset), so it is saved into and restored from trainer checkpoints exactly. */

#include <cmath>   // log, sqrt, cos
#include <cstdint> // uint64_t

#include <minibert/detail/philox.hpp>

namespace minibert {

/// @brief Counter-based generator: each draw of n numbers consumes counters [offset, offset + ceil(n/4)).
class generator {
public:
  explicit generator(std::uint64_t seed = 42) : seed_(seed) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  void set_state(std::uint64_t seed, std::uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  /// @brief reserve counters for n numbers; returns the first counter
  std::uint64_t reserve(std::uint64_t n) {
    const std::uint64_t first = offset_;
    offset_ += (n + 3) / 4;
    return first;
  }
  /// @brief the i-th uniform [0,1) number of a draw that starts at counter `base`
  static float uniform_at(std::uint64_t seed, std::uint64_t base, std::uint64_t i) {
    return detail::uniform01(detail::philox4x32_10(seed, base + i / 4).v[i % 4]);
  }
  /// @brief fill out[0..n) with N(mean, std) numbers (Box-Muller over Philox pairs)
  template <class T> void normal(T* out, std::uint64_t n, double mean, double std) {
    const std::uint64_t base = reserve(2 * n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const double u1 = 1.0 - uniform_at(seed_, base, 2 * i); // (0, 1]
      const double u2 = uniform_at(seed_, base, 2 * i + 1);
      out[i] = static_cast<T>(mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
  }

private:
  std::uint64_t seed_;
  std::uint64_t offset_ = 0;
};

} // namespace minibert
