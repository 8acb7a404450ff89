// SPDX-License-Identifier: MIT
#pragma once
/* UTF-8 decoding (strict, with the byte offset of the first bad byte, or U+FFFD per maximal invalid subpart) and
   the per-code-point properties of HF's BERT pipeline: a two-stage flag table built once from unicode_tables.hpp,
   utf8proc for canonical decomposition and simple lower-casing, Rust's full lower-casing on top. */

#include <algorithm> // lower_bound, fill
#include <array>     // array
#include <cstddef>   // size_t
#include <cstdint>   // uint8_t, uint16_t, uint32_t
#include <cstring>   // memcmp
#include <sstream>   // ostringstream (error messages)
#include <string>    // string
#include <vector>    // vector

#include <utf8proc.h>

#include <minibert/error.hpp>
#include <minibert/tokenizer/unicode_tables.hpp>

namespace minibert {
namespace detail {

// Flags of one code point in HF's BERT pipeline.
enum char_flag : std::uint8_t {
  cf_removed = 1,    // clean_text drops it (NUL, U+FFFD, controls and format characters but \t \n \r)
  cf_whitespace = 2, // Rust's char::is_whitespace: clean_text maps it to ' ', the pre-tokenizer splits on it
  cf_mark = 4,       // strip_accents drops it after NFD (is_mark_nonspacing)
  cf_punct = 8,      // the pre-tokenizer isolates it (ASCII punctuation or is_punctuation)
  cf_chinese = 16,   // handle_chinese_chars pads it with spaces (HF's _is_chinese_char ranges)
  cf_nontrivial = 32 // may have a canonical decomposition or a lower-case mapping (asks utf8proc)
};

inline constexpr char32_t max_code_point = 0x10FFFF;
inline constexpr char32_t replacement_character = 0xFFFD;

// ---------------------------------------------------------------------------------------------------------------
// UTF-8

// Decodes the sequence at p (p < end). Returns its length (1-4) and sets cp, or returns -k when the k >= 1 bytes
// at p are a maximal invalid subpart (Unicode 15 §3.9, "U+FFFD substitution of maximal subparts").
inline int decode_utf8(const unsigned char* p, const unsigned char* end, char32_t& cp) noexcept {
  const unsigned b0 = p[0];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  int need = 0;
  unsigned lo = 0x80, hi = 0xBF;
  char32_t v = 0;
  if (b0 < 0xC2) {
    return -1;
  } else if (b0 < 0xE0) {
    need = 1;
    v = b0 & 0x1F;
  } else if (b0 < 0xF0) {
    need = 2;
    v = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;      // no overlong forms
    else if (b0 == 0xED) hi = 0x9F; // no surrogates
  } else if (b0 < 0xF5) {
    need = 3;
    v = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;      // no overlong forms
    else if (b0 == 0xF4) hi = 0x8F; // nothing past U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (p + k >= end) return -k;
    const unsigned b = p[k];
    if (b < lo || b > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
    v = (v << 6) | (b & 0x3F);
  }
  cp = v;
  return need + 1;
}

// Writes cp as UTF-8 into out (4 bytes of room); returns the length.
inline int encode_utf8(char32_t cp, char* out) noexcept {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

// The error for invalid UTF-8: names the byte offset and shows the offending bytes.
[[noreturn]] inline void throw_invalid_utf8(const char* what, const unsigned char* begin, const unsigned char* p,
                                            int bad_len) {
  std::ostringstream os;
  os << "invalid UTF-8 in " << what << " at byte offset " << (p - begin) << " (bytes";
  static const char* digits = "0123456789abcdef";
  for (int k = 0; k < bad_len; ++k) os << ' ' << digits[p[k] >> 4] << digits[p[k] & 15];
  os << "); pass utf8_policy::replace to read it as U+FFFD";
  throw error("tokenizer", os.str());
}

// Returns the byte offset of the first invalid sequence in s, or npos.
inline std::size_t find_invalid_utf8(const char* s, std::size_t n, int* bad_len = nullptr) noexcept {
  const auto* b = reinterpret_cast<const unsigned char*>(s);
  const auto* e = b + n;
  for (const unsigned char* p = b; p < e;) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    char32_t cp;
    const int len = decode_utf8(p, e, cp);
    if (len < 0) {
      if (bad_len) *bad_len = -len;
      return static_cast<std::size_t>(p - b);
    }
    p += len;
  }
  return static_cast<std::size_t>(-1);
}

// ---------------------------------------------------------------------------------------------------------------
// code point properties

// Two-stage table (cp >> 8 -> block, cp & 255 -> flags) built once from the range tables: about 40 KB.
class char_properties {
public:
  static const char_properties& get() {
    static const char_properties instance;
    return instance;
  }
  std::uint8_t flags(char32_t cp) const noexcept {
    return cp > max_code_point ? std::uint8_t{0} : blocks_[(std::size_t{stage1_[cp >> 8]} << 8) | (cp & 0xFF)];
  }

private:
  char_properties() {
    std::vector<std::uint8_t> all(max_code_point + 1, 0);
    const auto mark = [&](const auto& table, std::uint8_t f) {
      for (const code_point_range& r : table)
        for (char32_t c = r.first; c <= r.last; ++c) all[c] |= f;
    };
    mark(hf_removed_by_clean_text, cf_removed);
    mark(hf_nonspacing_mark, cf_mark);
    mark(hf_punctuation, cf_punct);
    for (char32_t c : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000})
      all[c] |= cf_whitespace;
    for (char32_t c = 0x2000; c <= 0x200A; ++c) all[c] |= cf_whitespace;
    static constexpr code_point_range chinese[] = {{0x4E00, 0x9FFF},   {0x3400, 0x4DBF},   {0x20000, 0x2A6DF},
                                                   {0x2A700, 0x2B73F}, {0x2B740, 0x2B81F}, {0x2B920, 0x2CEAF},
                                                   {0xF900, 0xFAFF},   {0x2F800, 0x2FA1F}};
    mark(chinese, cf_chinese);
    for (char32_t c = 0; c <= max_code_point; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
      const bool hangul = c >= 0xAC00 && c <= 0xD7A3; // decomposed algorithmically by utf8proc
      if (p->decomp_seqindex != UINT16_MAX || p->lowercase_seqindex != UINT16_MAX || hangul) all[c] |= cf_nontrivial;
    }
    for (const lowercase_range& r : hf_lowercase_extra)
      for (char32_t c = r.first; c <= r.last; ++c) all[c] |= cf_nontrivial;
    all[0x130] |= cf_nontrivial;

    // Deduplicate the 256-entry blocks (most of the code space is a handful of distinct blocks).
    stage1_.resize((max_code_point + 1) >> 8);
    for (std::size_t b = 0; b < stage1_.size(); ++b) {
      const std::uint8_t* block = all.data() + (b << 8);
      std::size_t found = blocks_.size() >> 8;
      for (std::size_t k = 0; k < (blocks_.size() >> 8); ++k) {
        if (std::memcmp(blocks_.data() + (k << 8), block, 256) == 0) {
          found = k;
          break;
        }
      }
      if (found == (blocks_.size() >> 8)) blocks_.insert(blocks_.end(), block, block + 256);
      stage1_[b] = static_cast<std::uint16_t>(found);
    }
  }

  std::vector<std::uint16_t> stage1_;
  std::vector<std::uint8_t> blocks_;
};

// Rust's char::to_lowercase as HF calls it, one code point at a time (no final-sigma rule). Writes 1 or 2 code
// points; U+0130 is the only one that lower-cases to two.
inline int to_lower_hf(char32_t cp, char32_t out[2]) noexcept {
  if (cp == 0x130) {
    out[0] = 0x69;
    out[1] = 0x307;
    return 2;
  }
  for (const lowercase_range& r : hf_lowercase_extra) {
    if (cp >= r.first && cp <= r.last) {
      out[0] = static_cast<char32_t>(static_cast<int>(cp) + r.delta);
      return 1;
    }
  }
  out[0] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
  return 1;
}

// Canonical decomposition (NFD of one code point, without the reordering across code points). Writes up to
// max_out code points and returns how many.
inline int decompose_hf(char32_t cp, char32_t* out, int max_out) noexcept {
  for (char32_t c : hf_nfd_unknown) {
    if (c == cp) {
      out[0] = cp;
      return 1;
    }
  }
  utf8proc_int32_t buf[8];
  int boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 8, UTF8PROC_DECOMPOSE, &boundclass);
  if (n <= 0 || n > 8 || n > max_out) {
    out[0] = cp;
    return 1;
  }
  for (utf8proc_ssize_t k = 0; k < n; ++k) out[k] = static_cast<char32_t>(buf[k]);
  return static_cast<int>(n);
}

} // namespace detail
} // namespace minibert
