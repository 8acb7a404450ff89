// SPDX-License-Identifier: MIT
#pragma once
/* The seeded train/validation split: a permutation from splitmix64 + Fisher-Yates with rejection sampling, fully
   specified here so that a (seed, n) pair gives the same split with every compiler and standard library (which
   std::uniform_int_distribution does not promise). */

#include <algorithm> // sort, swap
#include <cmath>     // llround, isfinite
#include <cstddef>   // size_t
#include <cstdint>   // uint64_t
#include <numeric>   // iota
#include <span>      // span
#include <vector>    // vector

#include <minibert/data/dataset.hpp>
#include <minibert/error.hpp>

namespace minibert {

/// @brief A permutation of 0..n-1 fixed by `seed`, identical on every platform:
/// splitmix64 seeded with `seed`; for i = n-1 down to 1, j = uniform draw in [0, i] (64-bit draws below
/// 2^64 mod (i+1) are rejected, then j = draw mod (i+1)); swap(p[i], p[j]).
inline std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed);

/// @brief Splits `data` into train and validation parts. The validation part is the first
/// round(fraction * n) indices of permutation(n, seed) (round half away from zero), the train part the rest;
/// each part keeps the file order of its examples (the trainer shuffles the train part every epoch).
/// 12,000 examples with fraction 0.2 give 9,600 / 2,400. Both parts keep label_names, path and flags.
/// @throws minibert::error("data", ...) if fraction is not in (0, 1) or either part would be empty
inline dataset_split split_validation(const dataset& data, double fraction, std::uint64_t seed);

/// @brief The examples of `data` at `indices`, in that order (label_names, path and flags copied).
/// @throws minibert::error("data", ...) for an index out of range
inline dataset subset(const dataset& data, std::span<const std::size_t> indices);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

// splitmix64 (Steele, Lea & Flood 2014; constants of Vigna's reference implementation)
class splitmix64 {
public:
  explicit splitmix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound >= 1, without modulo bias: draws below 2^64 mod bound are rejected.
  std::uint64_t below(std::uint64_t bound) noexcept {
    const std::uint64_t threshold = (0 - bound) % bound; // 2^64 mod bound
    for (;;) {
      const std::uint64_t x = next();
      if (x >= threshold) return x % bound;
    }
  }

private:
  std::uint64_t state_;
};

} // namespace detail

inline std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), std::size_t{0});
  detail::splitmix64 rng(seed);
  for (std::size_t i = n; i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(i)));
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

inline dataset subset(const dataset& data, std::span<const std::size_t> indices) {
  dataset out;
  out.label_names = data.label_names;
  out.path = data.path;
  out.has_labels = data.has_labels;
  out.has_text_pair = data.has_text_pair;
  out.examples.reserve(indices.size());
  for (std::size_t i : indices) {
    MINIBERT_CHECK(i < data.size(), "data", data.path << ": subset index " << i << " out of range (size " << data.size() << ")");
    out.examples.push_back(data.examples[i]);
  }
  return out;
}

inline dataset_split split_validation(const dataset& data, double fraction, std::uint64_t seed) {
  MINIBERT_CHECK(std::isfinite(fraction) && fraction > 0.0 && fraction < 1.0, "data",
                 data.path << ": validation fraction " << fraction << " is not in (0, 1)");
  const std::size_t n = data.size();
  const auto n_val = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
  MINIBERT_CHECK(n_val > 0 && n_val < n, "data",
                 data.path << ": a validation fraction of " << fraction << " of " << n << " examples leaves "
                           << n_val << " for validation and " << (n - n_val) << " for training; both must be > 0");
  std::vector<std::size_t> p = permutation(n, seed);
  std::vector<std::size_t> val(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n_val));
  std::vector<std::size_t> train(p.begin() + static_cast<std::ptrdiff_t>(n_val), p.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return dataset_split{subset(data, train), subset(data, val)};
}

} // namespace minibert
