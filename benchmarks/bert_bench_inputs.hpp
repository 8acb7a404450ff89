// SPDX-License-Identifier: MIT
#pragma once
// What the BERT benchmarks (bench_bert, profile_train_step) feed the model: bert-base's config with two labels and a
// batch of B rows of T random token ids (fixed seed), all positions valid.
#include <minibert/bert.hpp>

#include <cstdint>
#include <vector>

namespace bench {

inline minibert::bert_config bert_base_config() {
  minibert::bert_config c; // transformers' defaults are bert-base: 12 layers, hidden 768, 12 heads, intermediate 3072
  c.id2label = {"negative", "positive"};
  return c;
}

inline minibert::bert_inputs<minibert::device::cpu> random_batch(std::int64_t B, std::int64_t T, std::int64_t V) {
  std::vector<std::int32_t> ids(B * T), mask(B * T, 1);
  std::uint64_t s = 12345;
  for (auto& x : ids) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = std::int32_t(1000 + (s >> 33) % std::uint64_t(V - 1000));
  }
  return {minibert::tensor<std::int32_t>::from(ids, {B, T}), minibert::tensor<std::int32_t>::from(mask, {B, T}), {},
          minibert::default_position_ids<minibert::device::cpu>(B, T)};
}

} // namespace bench
