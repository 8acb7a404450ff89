// SPDX-License-Identifier: MIT
#pragma once
/* Dataset reading for text classification: read_dataset (TSV, RFC 4180 CSV, JSONL, "sentence@label" lines) with
   column and label rules, and split_validation (a seeded, platform-independent train/validation split).
   Tokenization and batching are the trainer's. Formats, rules and errors: docs/data_and_reports.md. */

#include <filesystem>  // path, is_regular_file
#include <fstream>     // ifstream
#include <iterator>    // istreambuf_iterator
#include <string>      // string
#include <string_view> // string_view
#include <system_error> // error_code
#include <utility>     // move

#include <minibert/data/dataset.hpp> // defines: example, dataset, dataset_split, read_options, data_format, label_kind
#include <minibert/data/formats.hpp> // defines: detail readers (TSV, CSV, JSONL, text_at_label)
#include <minibert/data/labels.hpp>  // defines: detail label-id assignment
#include <minibert/data/split.hpp>   // defines: permutation, split_validation, subset
#include <minibert/error.hpp>
#include <minibert/io/mmap_file.hpp>

namespace minibert {

/// @brief Reads a labeled (or, with require_labels = false, unlabeled) dataset from a file.
/// The format comes from read_options::format, else from the extension (.tsv .csv .jsonl/.ndjson .txt), else
/// from the first non-blank line. A UTF-8 byte order mark is skipped; the rest must be valid UTF-8.
/// @throws minibert::error("data", "<path>:<line>: ...") for a missing or empty file, invalid UTF-8 (with the
///   byte offset in the line), a missing column (listing the columns present), a row with the wrong number of
///   fields, an unterminated quote (the line where it opened), a broken JSON line, a non-string text, an empty
///   text, a missing label, an out-of-range id (with the valid range) or an unknown label name (with the known ones)
inline dataset read_dataset(const std::filesystem::path& path, const read_options& options = {});

/// @brief read_dataset on text already in memory; `source` names it in errors and becomes dataset::path.
/// data_format::auto_detect uses the extension of `source`, else the content.
/// @throws minibert::error as read_dataset
inline dataset parse_dataset(std::string_view content, const std::string& source, const read_options& options = {});

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline dataset parse_dataset(std::string_view content, const std::string& source, const read_options& options) {
  if (content.size() >= 3 && content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3); // BOM
  if (detail::is_blank(content)) detail::data_fail(source, 0, "empty file");
  detail::check_line_lengths(content, options.max_record_bytes, source);
  detail::check_utf8(content, source);
  data_format format = options.format;
  if (format == data_format::auto_detect) format = detail::detect_format(source, content, source);
  detail::raw_table table;
  switch (format) {
  case data_format::tsv: table = detail::read_tsv(content, options, source); break;
  case data_format::csv: table = detail::read_csv(content, options, source); break;
  case data_format::jsonl: table = detail::read_jsonl(content, options, source); break;
  case data_format::text_at_label: table = detail::read_text_at_label(content, options, source); break;
  case data_format::auto_detect: break; // resolved above
  }
  return detail::build_dataset(std::move(table), options, source);
}

inline dataset read_dataset(const std::filesystem::path& path, const read_options& options) {
  const std::string source = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) detail::data_fail(source, 0, "no such file");
  if (std::filesystem::is_directory(status)) detail::data_fail(source, 0, "is a directory, not a data file");
  if (std::filesystem::is_regular_file(status)) {
    // mapped, not copied: the file's pages stay in the page cache, and only accepted records are copied out
    const mmap_file file(path);
    return parse_dataset(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), source, options);
  }
  std::ifstream in(path, std::ios::binary); // a pipe (`--train <(zcat data.tsv.gz)`) cannot be mapped
  if (!in) detail::data_fail(source, 0, "cannot open for reading");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) detail::data_fail(source, 0, "read error");
  return parse_dataset(content, source, options);
}

} // namespace minibert
