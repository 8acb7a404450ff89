// SPDX-License-Identifier: MIT
#pragma once
/* The file-format readers behind read_dataset: TSV, RFC 4180 CSV, JSONL and "sentence@label" lines. Each turns the
   file's text into a raw_table (column names, and per record: line, text, text pair, label text). Label ids are
   assigned afterwards (data/labels.hpp). Every error names "<file>:<line>". Private: include <minibert/data.hpp>. */

#include <algorithm>   // find, all_of, count
#include <cstddef>     // size_t
#include <cstdio>      // snprintf
#include <string>      // string
#include <string_view> // string_view
#include <utility>     // move
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/data/dataset.hpp>
#include <minibert/detail/json_limits.hpp>
#include <minibert/error.hpp>

namespace minibert {
namespace detail {

// One record before label ids are assigned.
struct raw_record {
  std::size_t line = 0;
  std::string text, text_pair, label;
  bool label_is_number = false; // a JSON integer (not a string)
};

// A parsed file: the columns the reader saw and the records.
struct raw_table {
  std::vector<std::string> columns; // header (TSV/CSV), keys of the first record (JSONL), fixed (text_at_label)
  std::string text_column, pair_column, label_column; // resolved names; pair/label empty when absent
  std::vector<raw_record> records;
};

// ---------------------------------------------------------------------------------------------------------------
// text helpers

[[noreturn]] inline void data_fail(const std::string& source, std::size_t line, const std::string& msg) {
  throw error("data", line > 0 ? source + ":" + std::to_string(line) + ": " + msg : source + ": " + msg);
}

// Offset of the first byte that is not part of well-formed UTF-8 (Unicode 15, table 3-7: no overlongs, no
// surrogates, nothing past U+10FFFF), or npos.
inline std::size_t utf8_error_offset(std::string_view s) noexcept {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF; // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else return i;
    if (i + 1 >= n || b[i + 1] < lo || b[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (i + k >= n || b[i + k] < 0x80 || b[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Throws naming the line and the byte offset within it when `content` is not valid UTF-8.
inline void check_utf8(std::string_view content, const std::string& source) {
  const std::size_t at = utf8_error_offset(content);
  if (at == std::string_view::npos) return;
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < at; ++i)
    if (content[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(content[at])));
  data_fail(source, line, "invalid UTF-8 at byte " + std::to_string(at - line_start) + " of the line (byte " +
                              hex + "); the file must be UTF-8");
}

inline bool is_blank(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out.empty() ? "(none)" : out;
}

// Calls fn(line_number, line) for each line, without its "\n" or "\r\n".
template <class Fn> void for_each_line(std::string_view content, Fn&& fn) {
  std::size_t pos = 0, line = 0;
  while (pos < content.size()) {
    ++line;
    std::size_t eol = content.find('\n', pos);
    if (eol == std::string_view::npos) eol = content.size();
    std::string_view l = content.substr(pos, eol - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    fn(line, l);
    pos = eol + 1;
  }
}

// Refuses a line longer than `max` bytes (read_options::max_record_bytes) before any field is copied out of it.
inline void check_line_lengths(std::string_view content, std::size_t max, const std::string& source) {
  for_each_line(content, [&](std::size_t line, std::string_view l) {
    if (l.size() > max)
      data_fail(source, line, "line of " + std::to_string(l.size()) + " bytes exceeds the limit of " +
                                  std::to_string(max) + " (read_options::max_record_bytes; raise it for longer texts)");
  });
}

// ---------------------------------------------------------------------------------------------------------------
// columns

// Index of `name` in `columns`, or npos.
inline std::size_t column_index(const std::vector<std::string>& columns, const std::string& name) {
  const auto it = std::find(columns.begin(), columns.end(), name);
  return it == columns.end() ? std::string::npos : static_cast<std::size_t>(it - columns.begin());
}

// Resolves the text, pair and label column names of `table` against its columns (line: where they were read).
inline void resolve_columns(raw_table& table, const read_options& opt, const std::string& source, std::size_t line) {
  const auto& cols = table.columns;
  for (std::size_t i = 0; i < cols.size(); ++i)
    for (std::size_t j = i + 1; j < cols.size(); ++j)
      if (cols[i] == cols[j]) data_fail(source, line, "column '" + cols[i] + "' appears twice in the header");
  if (!opt.text_column.empty()) {
    if (column_index(cols, opt.text_column) == std::string::npos)
      data_fail(source, line, "text column '" + opt.text_column + "' not found; columns present: " + join_names(cols));
    table.text_column = opt.text_column;
  } else if (column_index(cols, "sentence") != std::string::npos) table.text_column = "sentence";
  else if (column_index(cols, "text") != std::string::npos) table.text_column = "text";
  else
    data_fail(source, line, "no text column: neither 'sentence' nor 'text' found (set read_options::text_column); "
                            "columns present: " + join_names(cols));
  if (!opt.text_pair_column.empty()) {
    if (column_index(cols, opt.text_pair_column) == std::string::npos)
      data_fail(source, line,
                "text pair column '" + opt.text_pair_column + "' not found; columns present: " + join_names(cols));
    table.pair_column = opt.text_pair_column;
  }
  if (opt.label_column.empty()) {
    if (opt.require_labels) data_fail(source, 0, "read_options::label_column is empty but labels are required");
  } else if (column_index(cols, opt.label_column) != std::string::npos) table.label_column = opt.label_column;
  else if (opt.require_labels)
    data_fail(source, line, "label column '" + opt.label_column + "' not found; columns present: " + join_names(cols));
}

// Checks a text field against the empty-text rule.
inline void check_text(const std::string& text, const std::string& column, const read_options& opt,
                       const std::string& source, std::size_t line) {
  if (!opt.allow_empty_text && is_blank(text))
    data_fail(source, line, "empty text in column '" + column + "' (set read_options::allow_empty_text to accept it)");
}

// Fills a record from the fields of a delimited row (TSV, CSV, text_at_label).
inline raw_record record_from_fields(const raw_table& table, std::vector<std::string>& fields, std::size_t line,
                                     const read_options& opt, const std::string& source) {
  raw_record r;
  r.line = line;
  r.text = std::move(fields[column_index(table.columns, table.text_column)]);
  check_text(r.text, table.text_column, opt, source, line);
  if (!table.pair_column.empty()) {
    r.text_pair = std::move(fields[column_index(table.columns, table.pair_column)]);
    check_text(r.text_pair, table.pair_column, opt, source, line);
  }
  if (!table.label_column.empty()) {
    r.label = std::string(trim(fields[column_index(table.columns, table.label_column)]));
    if (r.label.empty()) data_fail(source, line, "label missing (empty field '" + table.label_column + "')");
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// TSV: header line, tab-separated, no quoting; blank lines skipped

inline std::vector<std::string> split_tabs(std::string_view line) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t tab = line.find('\t', pos);
    out.emplace_back(line.substr(pos, tab == std::string_view::npos ? std::string_view::npos : tab - pos));
    if (tab == std::string_view::npos) return out;
    pos = tab + 1;
  }
}

inline raw_table read_tsv(std::string_view content, const read_options& opt, const std::string& source) {
  raw_table t;
  std::size_t header_line = 0;
  for_each_line(content, [&](std::size_t line, std::string_view l) {
    if (is_blank(l)) return;
    std::vector<std::string> fields = split_tabs(l);
    if (header_line == 0) {
      header_line = line;
      t.columns = std::move(fields);
      resolve_columns(t, opt, source, line);
      return;
    }
    if (fields.size() != t.columns.size())
      data_fail(source, line, "expected " + std::to_string(t.columns.size()) + " tab-separated fields (" +
                                  join_names(t.columns) + "), found " + std::to_string(fields.size()));
    t.records.push_back(record_from_fields(t, fields, line, opt, source));
  });
  if (header_line == 0) data_fail(source, 0, "empty file (no header line)");
  if (t.records.empty()) data_fail(source, header_line, "no data rows after the header");
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// CSV (RFC 4180): fields separated by ',', records by "\r\n" or "\n"; a field may be quoted with '"', and then
// holds commas, newlines and doubled quotes. A quote inside an unquoted field is kept as a character (as Python's
// csv module does). Records that are entirely empty (blank lines) are skipped.

// Reads the record starting at `pos` (advancing pos and line); false at end of input.
inline bool csv_next_record(std::string_view s, std::size_t& pos, std::size_t& line, std::vector<std::string>& fields,
                            const std::string& source) {
  fields.clear();
  if (pos >= s.size()) return false;
  for (;;) { // one field per iteration
    std::string field;
    if (pos < s.size() && s[pos] == '"') {
      const std::size_t start_line = line;
      ++pos;
      for (;;) {
        const std::size_t q = s.find('"', pos);
        if (q == std::string_view::npos)
          data_fail(source, start_line, "unterminated quoted field (the quote opened on this line is never closed)");
        const std::string_view chunk = s.substr(pos, q - pos);
        line += static_cast<std::size_t>(std::count(chunk.begin(), chunk.end(), '\n'));
        field.append(chunk);
        pos = q + 1;
        if (pos < s.size() && s[pos] == '"') { // "" -> "
          field.push_back('"');
          ++pos;
          continue;
        }
        break;
      }
      if (pos < s.size() && s[pos] != ',' && s[pos] != '\n' && !(s[pos] == '\r' && pos + 1 < s.size() && s[pos + 1] == '\n') &&
          !(s[pos] == '\r' && pos + 1 == s.size()))
        data_fail(source, line, std::string("unexpected character '") + s[pos] +
                                    "' after the closing quote of a field (quoted field opened on line " +
                                    std::to_string(start_line) + ")");
    } else {
      const std::size_t end = s.find_first_of(",\n", pos);
      const std::size_t stop = end == std::string_view::npos ? s.size() : end;
      field.assign(s.substr(pos, stop - pos));
      pos = stop;
      if (!field.empty() && field.back() == '\r' && (pos == s.size() || s[pos] == '\n')) field.pop_back();
    }
    fields.push_back(std::move(field));
    if (pos < s.size() && s[pos] == ',') {
      ++pos;
      continue;
    }
    if (pos < s.size() && s[pos] == '\r') ++pos; // "\r\n" after a quoted field
    if (pos < s.size() && s[pos] == '\n') {
      ++pos;
      ++line;
    }
    return true;
  }
}

// Bytes of the record s[begin, end) without its line ending.
inline std::size_t record_bytes(std::string_view s, std::size_t begin, std::size_t end) {
  if (end > begin && s[end - 1] == '\n') --end;
  if (end > begin && s[end - 1] == '\r') --end;
  return end - begin;
}

inline raw_table read_csv(std::string_view content, const read_options& opt, const std::string& source) {
  raw_table t;
  std::size_t pos = 0, line = 1, header_line = 0;
  std::vector<std::string> fields;
  for (;;) {
    const std::size_t record_line = line;
    const std::size_t record_pos = pos;
    if (!csv_next_record(content, pos, line, fields, source)) break;
    if (const std::size_t bytes = record_bytes(content, record_pos, pos); bytes > opt.max_record_bytes)
      data_fail(source, record_line, "record of " + std::to_string(bytes) + // quoted fields span lines
                                         " bytes exceeds the limit of " + std::to_string(opt.max_record_bytes) +
                                         " (read_options::max_record_bytes; raise it for longer texts)");
    if (fields.size() == 1 && fields[0].empty() && content[record_pos] != '"') continue; // blank line
    if (header_line == 0) {
      header_line = record_line;
      t.columns = std::move(fields);
      resolve_columns(t, opt, source, record_line);
      fields = {};
      continue;
    }
    if (fields.size() != t.columns.size())
      data_fail(source, record_line, "expected " + std::to_string(t.columns.size()) + " comma-separated fields (" +
                                         join_names(t.columns) + "), found " + std::to_string(fields.size()));
    t.records.push_back(record_from_fields(t, fields, record_line, opt, source));
  }
  if (header_line == 0) data_fail(source, 0, "empty file (no header line)");
  if (t.records.empty()) data_fail(source, header_line, "no data rows after the header");
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// text_at_label: "sentence@label" per line, split at the last '@' (sentences may hold '@'); blank lines skipped

inline raw_table read_text_at_label(std::string_view content, const read_options& opt, const std::string& source) {
  raw_table t;
  t.columns = {"sentence", "label"};
  resolve_columns(t, opt, source, 0);
  bool any_line = false;
  for_each_line(content, [&](std::size_t line, std::string_view l) {
    if (is_blank(l)) return;
    any_line = true;
    const std::size_t at = l.rfind('@');
    if (at == std::string_view::npos)
      data_fail(source, line, "no '@' separating the sentence from its label (expected \"sentence@label\")");
    std::vector<std::string> fields{std::string(l.substr(0, at)), std::string(l.substr(at + 1))};
    t.records.push_back(record_from_fields(t, fields, line, opt, source));
  });
  if (!any_line) data_fail(source, 0, "empty file (no \"sentence@label\" lines)");
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// JSONL: one object per line; the first object's keys resolve the columns, every later object must have them

inline const char* json_type_name(const nlohmann::ordered_json& j) {
  return j.type_name(); // "null", "boolean", "number", "string", "array", "object"
}

inline raw_table read_jsonl(std::string_view content, const read_options& opt, const std::string& source) {
  raw_table t;
  bool resolved = false;
  for_each_line(content, [&](std::size_t line, std::string_view l) {
    if (is_blank(l)) return;
    // keeps the file's key order for messages; nesting is capped while parsing (a bad label's message dumps it)
    const nlohmann::ordered_json j = detail::parse_json_limited<nlohmann::ordered_json>(
        l, "data", source + ":" + std::to_string(line), "broken JSON line");
    if (!j.is_object())
      data_fail(source, line, std::string("expected a JSON object per line, found a ") + json_type_name(j));
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    if (!resolved) {
      t.columns = keys;
      resolve_columns(t, opt, source, line);
      resolved = true;
    }
    auto text_field = [&](const std::string& column) -> std::string {
      const auto it = j.find(column);
      if (it == j.end())
        data_fail(source, line, "field '" + column + "' missing; fields present: " + join_names(keys));
      if (!it->is_string())
        data_fail(source, line, "field '" + column + "' is a " + json_type_name(*it) + ", expected a string");
      std::string s = it->get<std::string>();
      check_text(s, column, opt, source, line);
      return s;
    };
    raw_record r;
    r.line = line;
    r.text = text_field(t.text_column);
    if (!t.pair_column.empty()) r.text_pair = text_field(t.pair_column);
    if (!t.label_column.empty()) {
      const auto it = j.find(t.label_column);
      if (it == j.end() || it->is_null())
        data_fail(source, line, "label missing (" + std::string(it == j.end() ? "no field '" : "null field '") +
                                    t.label_column + "'); fields present: " + join_names(keys));
      if (it->is_number_integer()) { // signed or unsigned
        r.label = it->dump();
        r.label_is_number = true;
      } else if (it->is_string()) {
        r.label = std::string(trim(it->get<std::string>()));
        if (r.label.empty()) data_fail(source, line, "label missing (empty string in '" + t.label_column + "')");
      } else
        data_fail(source, line, "label " + it->dump() + " in '" + t.label_column + "' is a " + json_type_name(*it) +
                                    ", expected an integer or a string");
    }
    t.records.push_back(std::move(r));
  });
  if (!resolved) data_fail(source, 0, "empty file (no JSON lines)");
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// format detection

inline data_format detect_format(const std::string& path, std::string_view content, const std::string& source) {
  std::string ext;
  const std::size_t dot = path.rfind('.');
  const std::size_t slash = path.find_last_of('/');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash))
    for (char c : path.substr(dot + 1)) ext.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  if (ext == "tsv") return data_format::tsv;
  if (ext == "csv") return data_format::csv;
  if (ext == "jsonl" || ext == "ndjson") return data_format::jsonl;
  if (ext == "txt") return data_format::text_at_label;
  std::string_view first;
  bool found = false;
  for_each_line(content, [&](std::size_t, std::string_view l) {
    if (!found && !is_blank(l)) {
      first = trim(l);
      found = true;
    }
  });
  if (!found) data_fail(source, 0, "empty file");
  if (first.front() == '{') return data_format::jsonl;
  if (first.find('\t') != std::string_view::npos) return data_format::tsv;
  if (first.find(',') != std::string_view::npos) return data_format::csv;
  if (first.find('@') != std::string_view::npos) return data_format::text_at_label;
  data_fail(source, 0, "cannot tell the format from the extension '" + ext +
                           "' or the first line; set read_options::format (tsv, csv, jsonl, text_at_label)");
}

} // namespace detail
} // namespace minibert
