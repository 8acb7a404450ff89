// SPDX-License-Identifier: MIT
#pragma once
/* parse_json_limited: the one way minibert parses JSON from a file. It refuses nesting deeper than json_max_depth
   (256 levels) while parsing, so no deep value is ever built (nlohmann's copy and dump() recurse and would overflow
   the stack on ~100k levels), optionally refuses duplicate keys, and turns every nlohmann exception into a
   minibert::error naming the file. Linear time: a SAX handler around nlohmann's DOM builder. */

#include <cstddef>     // size_t
#include <functional>  // function
#include <string>      // string
#include <string_view> // string_view
#include <unordered_set> // keys of an open object
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/error.hpp>

namespace minibert::detail {

/// Deepest nesting of arrays and objects minibert accepts in any JSON file: 256 levels. Real configs, tokenizers,
/// safetensors headers, JSONL records and trainer states nest fewer than 10; the limit only keeps hostile files from
/// overflowing the stack in recursive copies and dump().
inline constexpr int json_max_depth = 256;

// "line L, column C" of a 1-based byte position (as nlohmann's parse_error::byte reports it); "column C" for a
// text of one line (a JSONL record, whose caller names the line)
inline std::string json_line_and_column(std::string_view text, std::size_t byte) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  if (text.find('\n') == std::string_view::npos) return "column " + std::to_string(col);
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

/// Called when a key repeats within one JSON object: (nesting depth of that object, 1 for the top level; the key).
/// It throws to refuse the file; without one, nlohmann's rule applies (the last value wins).
using json_duplicate_key_handler = std::function<void(std::size_t, const std::string&)>;

/// The DOM builder of nlohmann's plain parser, plus the nesting limit and the duplicate-key check. (nlohmann's
/// callback parser would do both, but scans the enclosing container each time an object ends: quadratic in the
/// length of an array of objects, hours for a tokenizer.json with a million added tokens.)
template <class Json> class limited_dom_builder {
public:
  using number_integer_t = typename Json::number_integer_t;
  using number_unsigned_t = typename Json::number_unsigned_t;
  using number_float_t = typename Json::number_float_t;
  using string_t = typename Json::string_t;
  using binary_t = typename Json::binary_t;

  limited_dom_builder(Json& root, const std::string& op, const std::string& where,
                      const json_duplicate_key_handler& on_duplicate)
      : dom_(root), op_(op), where_(where), on_duplicate_(on_duplicate) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return dom_.number_float(v, s); }
  bool string(string_t& v) { return dom_.string(v); }
  bool binary(binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    enter();
    if (on_duplicate_) keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(string_t& k) {
    if (on_duplicate_ && !keys_.back().insert(k).second) on_duplicate_(keys_.size(), k);
    return dom_.key(k);
  }
  bool end_object() {
    --open_;
    if (on_duplicate_) keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    enter();
    return dom_.start_array(n);
  }
  bool end_array() {
    --open_;
    return dom_.end_array();
  }
  template <class Exception> bool parse_error(std::size_t at, const std::string& token, const Exception& e) {
    return dom_.parse_error(at, token, e); // throws e
  }

private:
  void enter() {
    if (open_ >= json_max_depth)
      throw error(op_, where_ + ": JSON nested deeper than " + std::to_string(json_max_depth) +
                           " levels (minibert's limit; real files nest fewer than 10)");
    ++open_;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  const std::string& op_;
  const std::string& where_;
  const json_duplicate_key_handler& on_duplicate_;
  std::vector<std::unordered_set<std::string>> keys_; // of each open object, when duplicates are checked
  int open_ = 0;
};

/// @brief parses `text` with a nesting limit (and, given `on_duplicate`, a duplicate-key check)
/// @param op    minibert::error's op ("bert_config", "tokenizer", ...)
/// @param where the file, or "file:line" for one JSONL line; every message starts with it
/// @param what  what a syntax error is called ("not valid JSON", "malformed JSON", ...)
/// @throws minibert::error(op, "<where>: JSON nested deeper than 256 levels ...") past json_max_depth;
///   error(op, "<where>: <what> at line L, column C: parse error ...") for a syntax error; and
///   error(op, "<where>: <what>: ...") for any other nlohmann exception (a number that overflows a double: 1e999);
///   whatever `on_duplicate` throws
template <class Json = nlohmann::json>
Json parse_json_limited(std::string_view text, const std::string& op, const std::string& where,
                        const std::string& what = "not valid JSON",
                        const json_duplicate_key_handler& on_duplicate = nullptr) {
  Json root;
  limited_dom_builder<Json> builder(root, op, where, on_duplicate);
  try {
    Json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const typename Json::parse_error& e) {
    std::string msg = e.what();
    const std::size_t cut = msg.find("parse error");
    throw error(op, where + ": " + what + " at " + json_line_and_column(text, e.byte) + ": " +
                        (cut == std::string::npos ? msg : msg.substr(cut)));
  } catch (const typename Json::exception& e) {
    throw error(op, where + ": " + what + ": " + e.what());
  }
  return root;
}

} // namespace minibert::detail
