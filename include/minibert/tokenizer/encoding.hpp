// SPDX-License-Identifier: MIT
#pragma once
/* minibert::encoding (ids, type ids, masks, offsets of one encoded text or pair), the encode options (truncation,
   padding, offsets, invalid UTF-8), and the steps that follow tokenization, as HF tokenizers runs them:
   truncation (longest_first / only_first / only_second), the post-processor template ([CLS] A [SEP] B [SEP] with
   type ids), then padding. */

#include <algorithm>   // min, max
#include <cstddef>     // size_t, ptrdiff_t
#include <cstdint>     // int32_t, uint32_t
#include <optional>    // optional
#include <type_traits> // decay_t
#include <utility>     // swap
#include <vector>      // vector

#include <minibert/error.hpp>
#include <minibert/tokenizer/normalizer.hpp>

namespace minibert {

/// @brief [begin, end) of a token in its original text, in the unit of encode_options::offsets (code points by
/// default, like HF's char offsets). Special and padding tokens get {0, 0}.
struct offset_span {
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
  friend bool operator==(const offset_span&, const offset_span&) = default;
};

/// @brief One encoded text (or pair), all vectors of the same length.
struct encoding {
  std::vector<std::int32_t> ids;                 ///< token ids
  std::vector<std::int32_t> type_ids;            ///< 0 for the first text, 1 for the second (segment ids)
  std::vector<std::int32_t> attention_mask;      ///< 1 for real tokens, 0 for padding
  std::vector<std::int32_t> special_tokens_mask; ///< 1 for tokens the post-processor or padding added
  std::vector<offset_span> offsets;              ///< where each token came from in its text
  std::vector<std::int32_t> sequence_ids;        ///< 0 or 1: which text a token came from; -1: special or padding

  /// @brief number of tokens
  std::size_t size() const noexcept { return ids.size(); }
  /// @brief empties every vector, keeping their capacity
  void clear() noexcept {
    ids.clear();
    type_ids.clear();
    attention_mask.clear();
    special_tokens_mask.clear();
    offsets.clear();
    sequence_ids.clear();
  }
};

/// @brief Which text loses tokens when a pair is too long (HF's TruncationStrategy).
enum class truncation_strategy { longest_first, only_first, only_second };
/// @brief Which end of a sequence truncation cuts, or padding fills.
enum class side { right, left };

/// @brief Truncation to max_length tokens, special tokens included (HF's TruncationParams, without stride).
struct truncation_options {
  std::size_t max_length = 512;
  truncation_strategy strategy = truncation_strategy::longest_first;
  side direction = side::right;
};

/// @brief Padding: to the longest encoding of the batch, or to a fixed length (HF's PaddingParams).
struct padding_options {
  enum class strategy { longest, fixed } to = strategy::longest;
  std::size_t max_length = 0;         ///< the length for strategy::fixed
  std::size_t pad_to_multiple_of = 0; ///< round the target length up to a multiple of this (0: no rounding)
  side direction = side::right;
  std::optional<std::int32_t> pad_id; ///< unset: the tokenizer's pad token ([PAD]), or 0 if it has none
  std::int32_t pad_type_id = 0;
};

/// @brief Options of one encode call.
struct encode_options {
  bool add_special_tokens = true;               ///< run the post-processor ([CLS] ... [SEP])
  std::optional<truncation_options> truncation; ///< unset: no truncation
  std::optional<padding_options> padding;       ///< unset: no padding
  offset_unit offsets = offset_unit::code_points;
  utf8_policy invalid_utf8 = utf8_policy::strict;
};

/// @brief One element of a post-processor template: a special token, or sequence A (0) / B (1).
struct template_piece {
  int sequence = -1;              ///< 0 or 1 for $A / $B; -1 for a special token
  std::vector<std::int32_t> ids;  ///< the special token's ids (usually one)
  std::int32_t type_id = 0;
};

/// @brief HF's TemplateProcessing: what surrounds one text and a pair.
struct post_processor {
  std::vector<template_piece> single; ///< e.g. [CLS] $A [SEP]
  std::vector<template_piece> pair;   ///< e.g. [CLS] $A [SEP] $B:1 [SEP]:1

  /// @brief how many tokens the template adds
  std::size_t added_tokens(bool is_pair) const noexcept {
    std::size_t n = 0;
    for (const template_piece& p : is_pair ? pair : single) n += p.sequence < 0 ? p.ids.size() : 0;
    return n;
  }
};

namespace detail {

// The tokens of one text before post-processing.
struct token_sequence {
  std::vector<std::int32_t> ids;
  std::vector<offset_span> offsets;
  std::size_t keep_begin = 0, keep_end = 0; // the range truncation keeps
  std::size_t size() const noexcept { return ids.size(); }
  std::size_t kept() const noexcept { return keep_end - keep_begin; }
  void clear() noexcept {
    ids.clear();
    offsets.clear();
    keep_begin = keep_end = 0;
  }
  void truncate(std::size_t n, side direction) noexcept {
    n = std::min(n, ids.size());
    if (direction == side::right) {
      keep_begin = 0;
      keep_end = n;
    } else {
      keep_begin = ids.size() - n;
      keep_end = ids.size();
    }
  }
};

// HF's truncate_encodings (tokenizers 0.20), on the lengths only (the tokens stay where they are): splits max_length
// minus the special tokens (`max_length` here) between the two texts using their full lengths. (tokenizers 0.21+
// compare the lengths up to the word that reaches the user's max_length instead; 0.20 is the version transformers
// 4.46 uses.)
inline void truncate_sequences(token_sequence& a, token_sequence* b, std::size_t max_length,
                               truncation_strategy strategy, side direction) {
  const std::size_t la = a.size(), lb = b ? b->size() : 0;
  a.truncate(la, direction);
  if (b) b->truncate(lb, direction);
  if (max_length == 0) {
    a.truncate(0, direction);
    if (b) b->truncate(0, direction);
    return;
  }
  const std::size_t total = la + lb;
  if (total <= max_length) return;
  const std::size_t to_remove = total - max_length;
  if (strategy == truncation_strategy::longest_first) {
    if (!b) {
      a.truncate(total - to_remove, direction);
      return;
    }
    std::size_t n1 = la, n2 = lb;
    const bool swap = n1 > n2;
    if (swap) std::swap(n1, n2);
    n2 = n1 > max_length ? n1 : std::max(n1, max_length - n1);
    if (n1 + n2 > max_length) {
      n1 = max_length / 2;
      n2 = n1 + max_length % 2;
    }
    if (swap) std::swap(n1, n2);
    a.truncate(std::min(n1, la), direction);
    b->truncate(std::min(n2, lb), direction);
    return;
  }
  token_sequence* target = strategy == truncation_strategy::only_first ? &a : b;
  MINIBERT_CHECK(target != nullptr, "tokenizer", "truncation only_second needs a pair (the text is "
                                                     << la << " tokens, max_length " << max_length << ")");
  const std::size_t target_len = target == &a ? la : lb;
  MINIBERT_CHECK(target_len > to_remove, "tokenizer",
                 "truncation " << (strategy == truncation_strategy::only_first ? "only_first" : "only_second")
                               << ": the " << (target == &a ? "first" : "second") << " text has " << target_len
                               << " tokens, too few to remove " << to_remove << " (max_length " << max_length
                               << " without special tokens)");
  target->truncate(target_len - to_remove, direction);
}

// Writes the post-processed encoding: the template's order and type ids, its special tokens when add_special.
inline void assemble(encoding& out, const token_sequence& a, const token_sequence* b, const post_processor* post,
                     bool add_special) {
  out.clear();
  const std::size_t n = a.kept() + (b ? b->kept() : 0) + (post && add_special ? post->added_tokens(b != nullptr) : 0);
  out.ids.reserve(n);
  out.type_ids.reserve(n);
  out.attention_mask.reserve(n);
  out.special_tokens_mask.reserve(n);
  out.offsets.reserve(n);
  out.sequence_ids.reserve(n);
  const auto append_sequence = [&](const token_sequence& s, int seq, std::int32_t type_id) {
    out.ids.insert(out.ids.end(), s.ids.begin() + static_cast<std::ptrdiff_t>(s.keep_begin),
                   s.ids.begin() + static_cast<std::ptrdiff_t>(s.keep_end));
    out.offsets.insert(out.offsets.end(), s.offsets.begin() + static_cast<std::ptrdiff_t>(s.keep_begin),
                       s.offsets.begin() + static_cast<std::ptrdiff_t>(s.keep_end));
    out.type_ids.insert(out.type_ids.end(), s.kept(), type_id);
    out.attention_mask.insert(out.attention_mask.end(), s.kept(), 1);
    out.special_tokens_mask.insert(out.special_tokens_mask.end(), s.kept(), 0);
    out.sequence_ids.insert(out.sequence_ids.end(), s.kept(), seq);
  };
  if (!post) {
    append_sequence(a, 0, 0);
    if (b) append_sequence(*b, 1, 1); // HF without a post-processor: the pair's type ids are 1
    return;
  }
  for (const template_piece& p : b ? post->pair : post->single) {
    if (p.sequence >= 0) {
      append_sequence(p.sequence == 0 ? a : *b, p.sequence, p.type_id);
      continue;
    }
    if (!add_special) continue;
    for (const std::int32_t id : p.ids) {
      out.ids.push_back(id);
      out.offsets.push_back({});
      out.type_ids.push_back(p.type_id);
      out.attention_mask.push_back(1);
      out.special_tokens_mask.push_back(1);
      out.sequence_ids.push_back(-1);
    }
  }
}

// HF's Encoding::pad to target_length (no-op when already that long).
inline void pad_encoding(encoding& e, std::size_t target, const padding_options& p, std::int32_t pad_id) {
  if (e.size() >= target) return;
  const std::size_t n = target - e.size();
  const auto fill = [&](auto& v, auto value) {
    using value_type = typename std::decay_t<decltype(v)>::value_type;
    if (p.direction == side::right) v.insert(v.end(), n, value_type(value));
    else v.insert(v.begin(), n, value_type(value));
  };
  fill(e.ids, pad_id);
  fill(e.type_ids, p.pad_type_id);
  fill(e.attention_mask, 0);
  fill(e.special_tokens_mask, 1);
  fill(e.offsets, offset_span{});
  fill(e.sequence_ids, -1);
}

// The padded length of an encoding of n tokens (HF: fixed or batch-longest, rounded up to pad_to_multiple_of).
inline std::size_t padding_target(const padding_options& p, std::size_t longest) {
  std::size_t target = p.to == padding_options::strategy::fixed ? p.max_length : longest;
  if (p.pad_to_multiple_of > 0 && target % p.pad_to_multiple_of != 0)
    target += p.pad_to_multiple_of - target % p.pad_to_multiple_of;
  return target;
}

} // namespace detail
} // namespace minibert
