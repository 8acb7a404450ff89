// SPDX-License-Identifier: MIT
#pragma once
/* Decoding ids back to text as HF tokenizers' WordPiece decoder does: continuation tokens lose their "##", the
   others get a leading space, and each token is cleaned up (" ." -> ".", " n't" -> "n't", ...) on its own. */

#include <cstddef>     // size_t
#include <string>      // string
#include <string_view> // string_view
#include <utility>     // move
#include <vector>      // vector

namespace minibert {

/// @brief The decoder of a tokenizer.json: WordPiece (HF's default for BERT) or none (tokens joined by spaces).
struct decoder_options {
  bool wordpiece = true;      ///< false: no decoder, tokens joined with ' '
  std::string prefix = "##";  ///< continuation prefix to remove
  bool cleanup = true;        ///< remove tokenization spaces (HF's `cleanup`)
};

namespace detail {

// std::string::replace for every non-overlapping occurrence, left to right (Rust's str::replace).
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (s.size() < from.size()) return;
  std::string out;
  std::size_t pos = 0, hit;
  bool any = false;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    if (!any) out.reserve(s.size());
    any = true;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  if (!any) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// HF's wordpiece::cleanup, the same replacements in the same order.
inline void cleanup_tokenization(std::string& s) {
  replace_all(s, " .", ".");
  replace_all(s, " ?", "?");
  replace_all(s, " !", "!");
  replace_all(s, " ,", ",");
  replace_all(s, " ' ", "'");
  replace_all(s, " n't", "n't");
  replace_all(s, " 'm", "'m");
  replace_all(s, " do not", " don't");
  replace_all(s, " 's", "'s");
  replace_all(s, " 've", "'ve");
  replace_all(s, " 're", "'re");
}

inline std::string decode_tokens(const std::vector<std::string_view>& tokens, const decoder_options& d) {
  std::string out, piece;
  if (!d.wordpiece) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out.append(tokens[i]);
    }
    return out;
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    piece.clear();
    if (i == 0) piece.assign(t);
    else if (!d.prefix.empty() && t.substr(0, d.prefix.size()) == d.prefix) piece.assign(t.substr(d.prefix.size()));
    else {
      piece = ' ';
      piece.append(t);
    }
    if (d.cleanup) cleanup_tokenization(piece);
    out += piece;
  }
  return out;
}

} // namespace detail
} // namespace minibert
