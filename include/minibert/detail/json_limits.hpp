// SPDX-License-Identifier: MIT
#pragma once
/* parse_json_limited: the one way minibert parses JSON from a file. It refuses nesting deeper than json_max_depth
   (256 levels) while parsing, so no deep value is ever built (nlohmann's copy and dump() recurse and would overflow
   the stack on ~100k levels), and turns every nlohmann exception into a minibert::error naming the file. */

#include <cstddef>     // size_t
#include <string>      // string
#include <string_view> // string_view

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

/// @brief parses `text` with a nesting limit; `also` (optional) sees every parse event after the depth check
/// @param op    minibert::error's op ("bert_config", "tokenizer", ...)
/// @param where the file, or "file:line" for one JSONL line; every message starts with it
/// @param what  what a syntax error is called ("not valid JSON", "malformed JSON", ...)
/// @throws minibert::error(op, "<where>: JSON nested deeper than 256 levels ...") past json_max_depth;
///   error(op, "<where>: <what> at line L, column C: parse error ...") for a syntax error; and
///   error(op, "<where>: <what>: ...") for any other nlohmann exception (a number that overflows a double: 1e999)
template <class Json = nlohmann::json>
Json parse_json_limited(std::string_view text, const std::string& op, const std::string& where,
                        const std::string& what = "not valid JSON",
                        const typename Json::parser_callback_t& also = nullptr) {
  using event = typename Json::parse_event_t;
  // depth is the number of containers already open when one more starts (0 for the top-level value)
  const typename Json::parser_callback_t limit = [&](int depth, event ev, Json& v) -> bool {
    if ((ev == event::object_start || ev == event::array_start) && depth >= json_max_depth)
      throw error(op, where + ": JSON nested deeper than " + std::to_string(json_max_depth) +
                          " levels (minibert's limit; real files nest fewer than 10)");
    return also ? also(depth, ev, v) : true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit);
  } catch (const typename Json::parse_error& e) {
    std::string msg = e.what();
    const std::size_t cut = msg.find("parse error");
    throw error(op, where + ": " + what + " at " + json_line_and_column(text, e.byte) + ": " +
                        (cut == std::string::npos ? msg : msg.substr(cut)));
  } catch (const typename Json::exception& e) {
    throw error(op, where + ": " + what + ": " + e.what());
  }
}

} // namespace minibert::detail
