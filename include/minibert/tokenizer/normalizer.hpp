// SPDX-License-Identifier: MIT
#pragma once
/* BERT's basic tokenization, exactly as HF tokenizers' BertNormalizer followed by BertPreTokenizer: clean_text,
   CJK padding, NFD + non-spacing-mark removal, Rust's lower-casing, then a split on whitespace with each
   punctuation character isolated. One streaming pass: each normalized character goes to a sink as part of a word,
   as punctuation or as a space, with the range of the original text it came from (its alignment). */

#include <array>    // array
#include <cstddef>  // size_t
#include <cstdint>  // uint8_t, uint32_t
#include <optional> // optional
#include <string>   // string
#include <string_view> // string_view

#include <minibert/error.hpp>
#include <minibert/tokenizer/unicode.hpp>

namespace minibert {

/// @brief BertNormalizer's options (the `normalizer` object of a tokenizer.json).
struct normalizer_options {
  bool clean_text = true;           ///< drop controls, NUL and U+FFFD; map every whitespace character to ' '
  bool handle_chinese_chars = true; ///< put spaces around CJK ideographs so each is its own word
  std::optional<bool> strip_accents; ///< NFD, then drop non-spacing marks; unset: the same as `lowercase` (HF's null)
  bool lowercase = true;            ///< Rust's char::to_lowercase, one code point at a time
  /// @brief whether accents are stripped once `strip_accents` has been resolved against `lowercase`
  bool strips_accents() const noexcept { return strip_accents.value_or(lowercase); }
};

/// @brief Where offsets point: code points of the original text (HF's char offsets, the default) or UTF-8 bytes.
enum class offset_unit { code_points, bytes };

/// @brief What to do with invalid UTF-8: throw minibert::error naming the byte offset, or read each maximal invalid
/// subpart as one U+FFFD (which clean_text then drops).
enum class utf8_policy { strict, replace };

namespace detail {

// What the normalizer hands its sink for each normalized character (s: its UTF-8 bytes; [ab, ae): the original
// range it came from, in the caller's offset unit):
//   sink.word(s, len, ab, ae)   part of a word
//   sink.punct(s, len, ab, ae)  punctuation: a word of its own
//   sink.space(s, len, ab, ae)  whitespace: ends the current word
class bert_normalizer {
public:
  explicit bert_normalizer(const normalizer_options& o = {}) : opts_(o), strip_(o.strips_accents()) {
    for (int b = 0; b < 128; ++b) {
      const auto c = static_cast<char32_t>(b);
      const std::uint8_t f = char_properties::get().flags(c);
      std::uint8_t action = a_word;
      if (opts_.clean_text && (f & cf_removed)) action = a_drop;
      else if (f & cf_whitespace) action = a_space;
      else if (f & cf_punct) action = a_punct;
      ascii_action_[b] = action;
      char out = static_cast<char>(opts_.lowercase && b >= 'A' && b <= 'Z' ? b + 32 : b);
      if (action == a_space && opts_.clean_text) out = ' ';
      ascii_out_[b] = out;
    }
  }

  const normalizer_options& options() const noexcept { return opts_; }

  // Normalizes [p, end) of the text that starts at `text` (for error offsets; `what` names it in errors). `pos`
  // is the offset of p in the chosen unit; returns the offset of end.
  template <class Sink>
  std::uint32_t run(const unsigned char* text, const unsigned char* p, const unsigned char* end, std::uint32_t pos,
                    offset_unit unit, utf8_policy policy, Sink& sink, const char* what = "text") const {
    const bool bytes = unit == offset_unit::bytes;
    while (p < end) {
      const unsigned b = *p;
      if (b < 0x80) {
        const char* out = &ascii_out_[b];
        switch (ascii_action_[b]) {
        case a_word: sink.word(out, 1, pos, pos + 1); break;
        case a_punct: sink.punct(out, 1, pos, pos + 1); break;
        case a_space: sink.space(out, 1, pos, pos + 1); break;
        default: break; // a_drop
        }
        ++p;
        ++pos;
        continue;
      }
      char32_t cp;
      int len = decode_utf8(p, end, cp);
      if (len < 0) {
        if (policy == utf8_policy::strict) throw_invalid_utf8(what, text, p, -len);
        len = -len;
        cp = replacement_character;
      }
      const std::uint32_t next = pos + (bytes ? static_cast<std::uint32_t>(len) : 1u);
      normalize_char(cp, pos, next, sink);
      p += len;
      pos = next;
    }
    return pos;
  }

  // One code point (any, ASCII included) through clean_text, CJK padding, accent stripping, lower-casing and the
  // pre-tokenizer's classification.
  template <class Sink> void normalize_char(char32_t cp, std::uint32_t ab, std::uint32_t ae, Sink& sink) const {
    const std::uint8_t f = char_properties::get().flags(cp);
    if (opts_.clean_text) {
      if (f & cf_removed) return;
      if (f & cf_whitespace) {
        sink.space(" ", 1, ab, ae);
        return;
      }
    }
    if (opts_.handle_chinese_chars && (f & cf_chinese)) {
      sink.space(" ", 1, ab, ae);
      transform(cp, f, ab, ae, sink);
      sink.space(" ", 1, ab, ae);
      return;
    }
    transform(cp, f, ab, ae, sink);
  }

private:
  enum : std::uint8_t { a_word, a_space, a_punct, a_drop };

  template <class Sink>
  void transform(char32_t cp, std::uint8_t f, std::uint32_t ab, std::uint32_t ae, Sink& sink) const {
    if (!(f & cf_nontrivial)) { // no decomposition, no lower-case mapping: the common case
      if (strip_ && (f & cf_mark)) return;
      classify(cp, f, ab, ae, sink);
      return;
    }
    char32_t d[8];
    const int n = strip_ ? decompose_hf(cp, d, 8) : (d[0] = cp, 1);
    const char_properties& props = char_properties::get();
    for (int k = 0; k < n; ++k) {
      const std::uint8_t fd = d[k] == cp ? f : props.flags(d[k]);
      if (strip_ && (fd & cf_mark)) continue;
      if (opts_.lowercase && (fd & cf_nontrivial)) {
        char32_t l[2];
        const int m = to_lower_hf(d[k], l);
        for (int j = 0; j < m; ++j) classify(l[j], l[j] == d[k] ? fd : props.flags(l[j]), ab, ae, sink);
      } else {
        classify(d[k], fd, ab, ae, sink);
      }
    }
  }

  template <class Sink>
  static void classify(char32_t c, std::uint8_t f, std::uint32_t ab, std::uint32_t ae, Sink& sink) {
    char u[4];
    const int n = encode_utf8(c, u);
    if (f & cf_whitespace) sink.space(u, n, ab, ae);
    else if (f & cf_punct) sink.punct(u, n, ab, ae);
    else sink.word(u, n, ab, ae);
  }

  normalizer_options opts_;
  bool strip_;
  std::array<std::uint8_t, 128> ascii_action_{};
  std::array<char, 128> ascii_out_{};
};

// A sink that rebuilds HF's normalized string (what Normalizer.normalizeString returns).
struct string_sink {
  std::string out;
  void word(const char* s, int n, std::uint32_t, std::uint32_t) { out.append(s, static_cast<std::size_t>(n)); }
  void punct(const char* s, int n, std::uint32_t, std::uint32_t) { out.append(s, static_cast<std::size_t>(n)); }
  void space(const char* s, int n, std::uint32_t, std::uint32_t) { out.append(s, static_cast<std::size_t>(n)); }
};

} // namespace detail

/// @brief HF's BertNormalizer on its own: the normalized string (whitespace kept as ' ', CJK padded with spaces).
/// @throws minibert::error if text is not valid UTF-8 (unless policy is utf8_policy::replace)
inline std::string normalize(std::string_view text, const normalizer_options& options = {},
                             utf8_policy policy = utf8_policy::strict) {
  const detail::bert_normalizer n(options);
  detail::string_sink sink;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  n.run(p, p, p + text.size(), 0, offset_unit::bytes, policy, sink);
  return std::move(sink.out);
}

} // namespace minibert
