// SPDX-License-Identifier: MIT
#pragma once
/* minibert::vocab: the token <-> id table of a WordPiece model, and the vocab.txt reader (one token per line, the
   line number is the id; malformed files fail with the file name and line). */

#include <algorithm>     // max
#include <cstddef>       // size_t
#include <cstdint>       // int32_t
#include <filesystem>    // path
#include <fstream>       // ifstream
#include <functional>    // equal_to, hash
#include <iterator>      // istreambuf_iterator
#include <optional>      // optional
#include <sstream>       // ostringstream
#include <string>        // string
#include <string_view>   // string_view
#include <unordered_map> // unordered_map
#include <utility>       // pair, move
#include <vector>        // vector

#include <minibert/error.hpp>
#include <minibert/tokenizer/unicode.hpp>

namespace minibert {

/// @brief A vocabulary: token strings and their ids. Ids may have gaps (tokenizer.json allows any ids).
class vocab {
public:
  vocab() = default;

  /// @brief Builds a vocabulary from (token, id) pairs.
  /// @throws minibert::error if a token appears twice, an id is negative or used twice, or a token is empty
  static vocab from_pairs(std::vector<std::pair<std::string, std::int32_t>> pairs, const std::string& source = "vocab") {
    vocab v;
    std::int32_t max_id = -1;
    for (const auto& [tok, id] : pairs) {
      MINIBERT_CHECK(id >= 0, "vocab", source << ": token '" << tok << "' has negative id " << id);
      max_id = std::max(max_id, id);
    }
    // ids index a table: refuse ones so sparse that it would dwarf the vocabulary
    MINIBERT_CHECK(static_cast<std::size_t>(max_id) < 4 * pairs.size() + 65536, "vocab",
                   source << ": ids too sparse (largest " << max_id << " for " << pairs.size() << " tokens)");
    v.tokens_.assign(static_cast<std::size_t>(max_id + 1), std::string());
    v.present_.assign(static_cast<std::size_t>(max_id + 1), false);
    v.ids_.reserve(pairs.size());
    for (auto& [tok, id] : pairs) {
      MINIBERT_CHECK(!tok.empty(), "vocab", source << ": empty token (id " << id << ")");
      MINIBERT_CHECK(!v.present_[static_cast<std::size_t>(id)], "vocab",
                     source << ": id " << id << " given to both '" << v.tokens_[static_cast<std::size_t>(id)]
                            << "' and '" << tok << "'");
      const auto [it, inserted] = v.ids_.emplace(tok, id);
      MINIBERT_CHECK(inserted, "vocab", source << ": token '" << tok << "' appears twice (ids " << it->second << " and "
                                               << id << ")");
      v.present_[static_cast<std::size_t>(id)] = true;
      v.tokens_[static_cast<std::size_t>(id)] = std::move(tok);
      ++v.count_;
    }
    return v;
  }

  /// @brief Parses the text of a vocab.txt: one token per line ("\n" or "\r\n"), ids from 0.
  /// @throws minibert::error naming `source` and the line for invalid UTF-8, an empty line or a duplicate token
  static vocab from_text(std::string_view text, const std::string& source = "vocab.txt") {
    std::vector<std::pair<std::string, std::int32_t>> pairs;
    std::unordered_map<std::string_view, std::size_t> line_of;
    std::size_t line = 0, pos = 0;
    while (pos < text.size()) {
      ++line;
      std::size_t eol = text.find('\n', pos);
      const bool last = eol == std::string_view::npos;
      if (last) eol = text.size();
      std::string_view tok = text.substr(pos, eol - pos);
      if (!tok.empty() && tok.back() == '\r') tok.remove_suffix(1);
      int bad = 0;
      const std::size_t at = detail::find_invalid_utf8(tok.data(), tok.size(), &bad);
      MINIBERT_CHECK(at == static_cast<std::size_t>(-1), "vocab",
                     source << ":" << line << ": invalid UTF-8 at byte " << (pos + at) << " of the file");
      MINIBERT_CHECK(!tok.empty(), "vocab", source << ":" << line << ": empty line (every line must hold one token)");
      MINIBERT_CHECK(tok.find('\0') == std::string_view::npos, "vocab", source << ":" << line << ": NUL byte in token");
      const auto [it, inserted] = line_of.emplace(tok, line);
      MINIBERT_CHECK(inserted, "vocab",
                     source << ":" << line << ": token '" << tok << "' already on line " << it->second);
      pairs.emplace_back(std::string(tok), static_cast<std::int32_t>(line - 1));
      pos = last ? text.size() : eol + 1;
    }
    MINIBERT_CHECK(!pairs.empty(), "vocab", source << ": no tokens (empty file)");
    return from_pairs(std::move(pairs), source);
  }

  /// @brief Reads a vocab.txt file.
  /// @throws minibert::error if the file cannot be read or is malformed (see from_text)
  static vocab from_file(const std::filesystem::path& path) {
    return from_text(read_file(path, "vocab"), path.string());
  }

  /// @brief the id of `token`, if it is in the vocabulary
  std::optional<std::int32_t> find(std::string_view token) const {
    const auto it = ids_.find(token);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  /// @brief whether `id` names a token
  bool contains(std::int32_t id) const noexcept {
    return id >= 0 && static_cast<std::size_t>(id) < present_.size() && present_[static_cast<std::size_t>(id)];
  }
  /// @brief the token of `id`
  /// @throws minibert::error if no token has this id
  const std::string& token(std::int32_t id) const {
    MINIBERT_CHECK(contains(id), "vocab", "token id " << id << " out of range (vocabulary ids 0.." << max_id() << ")");
    return tokens_[static_cast<std::size_t>(id)];
  }
  /// @brief number of tokens
  std::size_t size() const noexcept { return count_; }
  /// @brief the largest id, or -1 when empty
  std::int32_t max_id() const noexcept { return static_cast<std::int32_t>(tokens_.size()) - 1; }
  /// @brief every (token, id) pair, in id order
  std::vector<std::pair<std::string, std::int32_t>> pairs() const {
    std::vector<std::pair<std::string, std::int32_t>> out;
    out.reserve(count_);
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      if (present_[i]) out.emplace_back(tokens_[i], static_cast<std::int32_t>(i));
    return out;
  }

  // Reads a whole file; the error names what the file was meant to be.
  static std::string read_file(const std::filesystem::path& path, const char* what) {
    std::error_code ec;
    MINIBERT_CHECK(std::filesystem::is_regular_file(path, ec), "tokenizer",
                   "cannot open " << what << " file '" << path.string() << "': "
                                  << (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
    std::ifstream in(path, std::ios::binary);
    MINIBERT_CHECK(in.good(), "tokenizer", "cannot open " << what << " file '" << path.string() << "'");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    MINIBERT_CHECK(!in.bad(), "tokenizer", "error reading " << what << " file '" << path.string() << "'");
    return s;
  }

private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> ids_;
  std::vector<std::string> tokens_; // by id; "" where no token has the id
  std::vector<bool> present_;
  std::size_t count_ = 0;
};

} // namespace minibert
