// SPDX-License-Identifier: MIT
#pragma once
/* Added tokens ([CLS], [SEP], [MASK], user tokens): found in the text before the model sees it, leftmost-longest
   as HF's AddedVocabulary does, with its single_word, lstrip and rstrip rules. Tokens with normalized = false are
   matched in the original text, the others in the normalized text. */

#include <algorithm> // stable_sort, unique, lower_bound, upper_bound, max
#include <array>     // array
#include <cstddef>   // size_t
#include <cstdint>   // int32_t
#include <cstring>   // memchr
#include <string>    // string
#include <utility>   // move
#include <vector>    // vector

#include <utf8proc.h>

#include <minibert/tokenizer/unicode.hpp>

namespace minibert {

/// @brief A token that is matched as a whole before WordPiece runs (the `added_tokens` of a tokenizer.json).
struct added_token {
  std::string content;     ///< the literal text
  std::int32_t id = 0;
  bool special = true;     ///< special tokens can be skipped when decoding
  bool single_word = false; ///< match only when not inside a word
  bool lstrip = false;     ///< the match swallows the whitespace on its left
  bool rstrip = false;     ///< the match swallows the whitespace on its right
  bool normalized = false; ///< match in the normalized text instead of the original
};

namespace detail {

// Rust regex \w (Alphabetic, marks, decimal digits, connector punctuation, join controls), for single_word.
inline bool is_word_char(char32_t c) noexcept {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
  case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC: return true;
  default: return false;
  }
}

// The code point that ends s[0, end) (valid UTF-8 assumed up to end), or -1 at the start.
inline long last_code_point(const unsigned char* s, std::size_t end, std::size_t* begin = nullptr) noexcept {
  if (end == 0) return -1;
  std::size_t b = end - 1;
  while (b > 0 && (s[b] & 0xC0) == 0x80 && end - b < 4) --b;
  char32_t cp;
  const int len = decode_utf8(s + b, s + end, cp);
  if (len <= 0 || b + static_cast<std::size_t>(len) != end) return -1;
  if (begin) *begin = b;
  return static_cast<long>(cp);
}

// Leftmost-longest search of a fixed set of tokens in a UTF-8 string.
class added_token_matcher {
public:
  struct match {
    std::size_t begin, end; // bytes, after lstrip / rstrip
    std::int32_t id;
  };

  added_token_matcher() = default;
  explicit added_token_matcher(std::vector<added_token> tokens) : tokens_(std::move(tokens)) {
    // byte order, ties (the same content twice) in file order; only the first of equal contents can ever match
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      if (!tokens_[i].content.empty()) order_.push_back(static_cast<std::uint32_t>(i));
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::uint32_t x, std::uint32_t y) { return tokens_[x].content < tokens_[y].content; });
    order_.erase(std::unique(order_.begin(), order_.end(),
                             [&](std::uint32_t x, std::uint32_t y) { return tokens_[x].content == tokens_[y].content; }),
                 order_.end());
    first_.fill(false);
    int distinct = 0;
    for (const std::uint32_t i : order_) {
      const auto b = static_cast<unsigned char>(tokens_[i].content[0]);
      if (!first_[b]) ++distinct;
      first_[b] = true;
      only_first_ = b;
    }
    if (distinct != 1) only_first_ = -1;
    empty_ = distinct == 0;
  }

  bool empty() const noexcept { return empty_; }

  // The next match at or after `from` in s[0, n); prev_end bounds lstrip. Returns false when there is none.
  bool next(const unsigned char* s, std::size_t n, std::size_t from, std::size_t prev_end, match& m) const {
    if (empty_) return false;
    std::size_t p = from;
    while (p < n) {
      if (only_first_ >= 0) { // one possible first byte (BERT's '['): memchr
        const void* hit = std::memchr(s + p, only_first_, n - p);
        if (!hit) return false;
        p = static_cast<std::size_t>(static_cast<const unsigned char*>(hit) - s);
      } else if (!first_[s[p]]) {
        ++p;
        continue;
      }
      const added_token* best = longest_at(s, n, p);
      if (!best) {
        ++p;
        continue;
      }
      std::size_t begin = p, end = p + best->content.size();
      if (best->single_word) {
        const long before = last_code_point(s, begin);
        char32_t after = 0;
        const bool has_after = end < n && decode_utf8(s + end, s + n, after) > 0;
        if ((before >= 0 && is_word_char(static_cast<char32_t>(before))) || (has_after && is_word_char(after))) {
          p = end; // the search resumes after the rejected match, as aho-corasick's iterator does
          continue;
        }
      }
      if (best->lstrip) {
        std::size_t b = begin, nb;
        for (long c; (c = last_code_point(s, b, &nb)) >= 0 && is_space(static_cast<char32_t>(c));) b = nb;
        begin = std::max(b, prev_end);
      }
      if (best->rstrip) {
        char32_t c;
        for (int len; end < n && (len = decode_utf8(s + end, s + n, c)) > 0 && is_space(c);)
          end += static_cast<std::size_t>(len);
      }
      m = {begin, end, best->id};
      return true;
    }
    return false;
  }

private:
  // The longest token that s[p, n) starts with, or null. Tokens sharing the first k bytes of s[p, n) form one
  // range of order_, in which a token of exactly k bytes sorts first: narrowing the range byte by byte costs
  // O(length of the match x log(number of tokens)), however many tokens there are (a million stays fast).
  const added_token* longest_at(const unsigned char* s, std::size_t n, std::size_t p) const {
    auto lo = order_.begin(), hi = order_.end();
    const added_token* best = nullptr;
    for (std::size_t k = 0; lo != hi; ++k) {
      if (tokens_[*lo].content.size() == k) { // contents are distinct: at most one token ends here
        best = &tokens_[*lo];
        ++lo;
      }
      if (lo == hi || p + k >= n) break;
      const auto byte_k = [&](std::uint32_t i) { return static_cast<unsigned char>(tokens_[i].content[k]); };
      const unsigned char c = s[p + k];
      lo = std::lower_bound(lo, hi, c, [&](std::uint32_t i, unsigned char v) { return byte_k(i) < v; });
      hi = std::upper_bound(lo, hi, c, [&](unsigned char v, std::uint32_t i) { return v < byte_k(i); });
    }
    return best;
  }

  static bool is_space(char32_t c) noexcept { return (char_properties::get().flags(c) & cf_whitespace) != 0; }

  std::vector<added_token> tokens_;
  std::vector<std::uint32_t> order_; // indices of the non-empty tokens by content, duplicates dropped
  std::array<bool, 256> first_{};
  int only_first_ = -1;
  bool empty_ = true;
};

} // namespace detail
} // namespace minibert
