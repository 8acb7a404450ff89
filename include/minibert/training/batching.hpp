// SPDX-License-Identifier: MIT
#pragma once
/* From a dataset to model batches: tokenize every example once (truncated to max_seq_length, on several threads),
   order them per epoch (transformers' Trainer shuffle: torch.randperm seeded with seed + epoch; optional length
   grouping as transformers' LengthGroupedSampler), and
   collate a batch with dynamic padding (to the longest sequence in that batch). */

#include <algorithm> // min, max, stable_sort
#include <cstdint>   // int32_t, int64_t, uint64_t
#include <span>      // span
#include <string>    // string
#include <utility>   // pair
#include <vector>    // vector

#include <minibert/data.hpp>
#include <minibert/distributed/sampler.hpp>
#include <minibert/encoder.hpp>
#include <minibert/tensor.hpp>
#include <minibert/tokenizer.hpp>

namespace minibert {

/// @brief token ids of a whole dataset, one row per example (no padding)
struct tokenized_dataset {
  std::vector<std::vector<std::int32_t>> ids, type_ids;
  std::vector<std::int64_t> labels; ///< -1 when unlabeled
  std::int32_t pad_id = 0;
  std::size_t size() const { return ids.size(); }
};

/// @brief [CLS] text [SEP] (text_pair [SEP]) for every example, truncated (longest_first) to max_length
inline tokenized_dataset tokenize_dataset(const tokenizer& tok, const dataset& data, std::size_t max_length,
                                          std::size_t threads = 0) {
  encode_options opt;
  opt.truncation = truncation_options{};
  opt.truncation->max_length = max_length;
  std::vector<encoding> enc;
  if (data.has_text_pair) {
    std::vector<std::pair<std::string_view, std::string_view>> pairs;
    pairs.reserve(data.size());
    for (const auto& e : data.examples) pairs.emplace_back(e.text, e.text_pair);
    enc = tok.encode_batch(std::span<const std::pair<std::string_view, std::string_view>>(pairs), opt, threads);
  } else {
    std::vector<std::string_view> texts;
    texts.reserve(data.size());
    for (const auto& e : data.examples) texts.emplace_back(e.text);
    enc = tok.encode_batch(std::span<const std::string_view>(texts), opt, threads);
  }
  tokenized_dataset out;
  out.pad_id = tok.pad_id();
  out.ids.reserve(enc.size());
  out.type_ids.reserve(enc.size());
  for (std::size_t i = 0; i < enc.size(); ++i) {
    out.ids.push_back(std::move(enc[i].ids));
    out.type_ids.push_back(std::move(enc[i].type_ids));
    out.labels.push_back(data.examples[i].label);
  }
  return out;
}

/// @brief one padded batch on device D: ids, attention mask, token types and position ids (B,T); labels (B),
/// undefined for unlabeled data
template <class D = device::cpu> struct model_batch {
  bert_inputs<D> inputs;
  tensor<std::int32_t, D> labels;
  std::int64_t size = 0;
};

/// @brief rows `idx` of `data`, padded to the longest of them (ids with pad_id, mask 0, type 0), or past it to a
/// multiple of pad_to_multiple_of when that is > 0 (DataCollatorWithPadding's), with position ids 0..T-1, built on
/// the host once per batch
inline model_batch<> collate(const tokenized_dataset& data, std::span<const std::size_t> idx,
                             std::int64_t pad_to_multiple_of = 0) {
  const auto B = static_cast<std::int64_t>(idx.size());
  std::int64_t T = 1;
  for (std::size_t i : idx) T = std::max<std::int64_t>(T, std::int64_t(data.ids[i].size()));
  if (pad_to_multiple_of > 0) T = (T + pad_to_multiple_of - 1) / pad_to_multiple_of * pad_to_multiple_of;
  std::vector<std::int32_t> ids(B * T, data.pad_id), mask(B * T, 0), types(B * T, 0), labels(B, -1);
  bool labeled = true;
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& r = data.ids[idx[b]];
    const auto& t = data.type_ids[idx[b]];
    for (std::size_t j = 0; j < r.size(); ++j) {
      ids[b * T + j] = r[j];
      mask[b * T + j] = 1;
      types[b * T + j] = t[j];
    }
    labels[b] = std::int32_t(data.labels[idx[b]]);
    labeled = labeled && data.labels[idx[b]] >= 0;
  }
  model_batch<> mb;
  mb.inputs = {tensor<std::int32_t>::from(ids, {B, T}), tensor<std::int32_t>::from(mask, {B, T}),
               tensor<std::int32_t>::from(types, {B, T}), default_position_ids<device::cpu>(B, T)};
  if (labeled) mb.labels = tensor<std::int32_t>::from(labels, {B});
  mb.size = B;
  return mb;
}

/// @brief a host batch uploaded to device D, each tensor once (the same batch when D is the CPU)
template <class D> model_batch<D> to_device(const model_batch<device::cpu>& b) {
  if constexpr (std::is_same_v<D, device::cpu>) {
    return b;
  } else {
    const auto up = [](const tensor<std::int32_t>& t) { return t.defined() ? to_device<D>(t) : tensor<std::int32_t, D>(); };
    return {{up(b.inputs.input_ids), up(b.inputs.attention_mask), up(b.inputs.token_type_ids), up(b.inputs.position_ids)},
            up(b.labels),
            b.size};
  }
}

/// @brief this rank's batches of one epoch as lists of row indices. Shuffled as transformers' Trainer shuffles (its
/// RandomSampler, which accelerate turns into a SeedableRandomSampler: torch.randperm(n) from a generator seeded
/// with seed + epoch), so that batch b of epoch e holds the rows of the Trainer's batch b, in its order; unless
/// !shuffle (file order). Across several processes, the rows are first sharded as DistributedSampler shards them
/// (distributed/sampler.hpp). With group_by_length, megabatches of 50 batches of that order are sorted by length
/// (longest first), like transformers' LengthGroupedSampler (which draws its own order; not reproduced).
inline std::vector<std::vector<std::size_t>> epoch_batches(const tokenized_dataset& data, std::size_t batch_size,
                                                           bool shuffle, std::uint64_t seed, std::int64_t epoch,
                                                           bool group_by_length, distributed::shard s = {}) {
  std::vector<std::size_t> order = distributed::distributed_sampler_indices(data.size(), s, shuffle, seed, epoch);
  if (group_by_length) {
    const std::size_t mega = 50 * batch_size;
    for (std::size_t b = 0; b < order.size(); b += mega) {
      auto first = order.begin() + std::ptrdiff_t(b), last = order.begin() + std::ptrdiff_t(std::min(order.size(), b + mega));
      std::stable_sort(first, last, [&](std::size_t x, std::size_t y) { return data.ids[x].size() > data.ids[y].size(); });
    }
  }
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t b = 0; b < order.size(); b += batch_size)
    batches.emplace_back(order.begin() + std::ptrdiff_t(b),
                         order.begin() + std::ptrdiff_t(std::min(order.size(), b + batch_size)));
  return batches;
}

} // namespace minibert
