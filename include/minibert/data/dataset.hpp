// SPDX-License-Identifier: MIT
#pragma once
/* The public types of minibert's dataset reading: example (one text or text pair with its label id), dataset (the
   examples, the id -> label name table, the source path) and read_options (format, columns, label rules).
   The readers are in data/formats.hpp and data/labels.hpp; read_dataset is in data.hpp. */

#include <cstddef> // size_t
#include <cstdint> // int64_t
#include <string>  // string
#include <vector>  // vector

namespace minibert {

/// @brief File layouts read_dataset understands (docs/data_and_reports.md).
enum class data_format {
  auto_detect,   ///< by extension (.tsv .csv .jsonl/.ndjson .txt), else by the first non-blank line
  tsv,           ///< header line, tab-separated fields, no quoting
  csv,           ///< RFC 4180: header line, quoted fields with "" escapes, embedded commas/newlines, CRLF or LF
  jsonl,         ///< one JSON object per line; blank lines skipped
  text_at_label, ///< "sentence@label" per line (Financial PhraseBank); columns are named "sentence" and "label"
};

/// @brief How label values map to ids.
enum class label_kind {
  auto_detect, ///< ids when every label is an integer (JSON integer or integer-like string), else names
  ids,         ///< every label must be an integer id
  names,       ///< every label is a name, even "0" or "1"
};

/// @brief What read_dataset reads and how it maps labels.
struct read_options {
  data_format format = data_format::auto_detect;
  /// text column; empty: the first of "sentence", "text" that the file has
  std::string text_column;
  /// second text of a pair (e.g. a hypothesis); empty: single texts
  std::string text_pair_column;
  /// label column
  std::string label_column = "label";
  /// false: a file without the label column is read with every label -1 (prediction input)
  bool require_labels = true;
  label_kind labels = label_kind::auto_detect;
  /// fixes the id -> name mapping (a model's id2label): ids must be in [0, size), names must be in the list.
  /// Empty: ids are taken as they are, names get ids in sorted (byte-wise) order.
  std::vector<std::string> label_names;
  /// false: a text (or text pair) that is empty or only ASCII white space is an error
  bool allow_empty_text = false;
  /// a longer line (or CSV record) is an error naming it: corrupt or hostile input, refused before it is copied.
  /// 16 MiB is hundreds of times the longest review in ../shared's data; raise it for book-length texts.
  std::size_t max_record_bytes = std::size_t{16} << 20;
};

/// @brief One record of a dataset.
struct example {
  std::string text;        ///< the text (UTF-8, as in the file)
  std::string text_pair;   ///< the second text; empty unless read_options::text_pair_column was set
  std::int64_t label = -1; ///< label id in [0, num_labels); -1 when the dataset has no labels
  std::size_t line = 0;    ///< 1-based line of the record's first line in its file
};

/// @brief A labeled (or unlabeled) set of texts read from one file.
struct dataset {
  std::vector<example> examples;
  /// id -> name. Names read from the file (or read_options::label_names); for integer labels without given
  /// names, the ids' decimal text "0" .. "max". Empty when the dataset has no labels.
  std::vector<std::string> label_names;
  std::string path;          ///< where it was read from (error messages, reports)
  bool has_labels = false;   ///< false: every label is -1
  bool has_text_pair = false;

  std::size_t size() const noexcept { return examples.size(); }
  bool empty() const noexcept { return examples.empty(); }
  std::size_t num_labels() const noexcept { return label_names.size(); }
  const example& operator[](std::size_t i) const { return examples[i]; }

  /// @brief number of examples of each label id (size num_labels())
  std::vector<std::size_t> label_counts() const {
    std::vector<std::size_t> counts(label_names.size(), 0);
    for (const example& e : examples)
      if (e.label >= 0 && static_cast<std::size_t>(e.label) < counts.size()) ++counts[static_cast<std::size_t>(e.label)];
    return counts;
  }
  /// @brief every example's label id, in order
  std::vector<std::int64_t> labels() const {
    std::vector<std::int64_t> out;
    out.reserve(examples.size());
    for (const example& e : examples) out.push_back(e.label);
    return out;
  }
};

/// @brief The two parts of split_validation.
struct dataset_split {
  dataset train;
  dataset validation;
};

} // namespace minibert
