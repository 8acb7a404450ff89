// SPDX-License-Identifier: MIT
#pragma once
/* Label ids for read_dataset: turns a raw_table (label texts) into a dataset (label ids and the id -> name table).
   Integer labels are ids; string labels get ids in sorted order, unless read_options::label_names fixes the
   mapping. Private: include <minibert/data.hpp>. */

#include <algorithm>    // max
#include <charconv>     // from_chars
#include <cstddef>      // size_t
#include <cstdint>      // int64_t
#include <functional>   // less
#include <map>          // map
#include <string>       // string, to_string
#include <string_view>  // string_view
#include <system_error> // errc
#include <utility>      // move
#include <vector>       // vector

#include <minibert/data/dataset.hpp>
#include <minibert/data/formats.hpp>

namespace minibert {
namespace detail {

// Integer ids above this are refused unless label_names says there are that many classes: a stray "1000000"
// would otherwise make a million-way classifier.
inline constexpr std::int64_t max_label_id = (std::int64_t{1} << 20) - 1;

// "-?[0-9]+": the label texts read as integer ids.
inline bool integer_like(std::string_view s) noexcept {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

inline std::string label_range_text(const std::vector<std::string>& names) {
  std::string out = "valid ids are 0.." + std::to_string(names.size() - 1) + " (" + std::to_string(names.size()) +
                    " labels: " + join_names(names) + ")";
  return out;
}

// Assigns label ids and builds the dataset; consumes the table's records.
inline dataset build_dataset(raw_table&& t, const read_options& opt, const std::string& source) {
  dataset d;
  d.path = source;
  d.has_labels = !t.label_column.empty();
  d.has_text_pair = !t.pair_column.empty();
  const std::vector<std::string>& given = opt.label_names;
  for (std::size_t i = 0; i < given.size(); ++i) {
    MINIBERT_CHECK(!given[i].empty(), "data", source << ": read_options::label_names[" << i << "] is empty");
    for (std::size_t k = 0; k < i; ++k)
      MINIBERT_CHECK(given[k] != given[i], "data",
                     source << ": read_options::label_names lists '" << given[i] << "' twice (ids " << k << " and "
                            << i << ")");
  }

  d.examples.reserve(t.records.size());
  for (raw_record& r : t.records)
    d.examples.push_back(example{std::move(r.text), std::move(r.text_pair), -1, r.line});
  if (!d.has_labels) {
    d.label_names = given;
    return d;
  }

  label_kind kind = opt.labels;
  if (kind == label_kind::auto_detect) {
    const raw_record* first_name = nullptr;
    const raw_record* first_number = nullptr;
    for (const raw_record& r : t.records) {
      if (!first_name && !integer_like(r.label)) first_name = &r;
      if (!first_number && r.label_is_number) first_number = &r;
    }
    if (first_name && first_number)
      data_fail(source, first_name->line,
                "label '" + first_name->label + "' is a name, but line " + std::to_string(first_number->line) +
                    " has the number " + first_number->label +
                    ": labels must be all integers or all strings (or set read_options::labels)");
    kind = first_name ? label_kind::names : label_kind::ids;
  }

  if (kind == label_kind::ids) {
    std::int64_t max_id = -1;
    for (std::size_t i = 0; i < t.records.size(); ++i) {
      const raw_record& r = t.records[i];
      std::int64_t id = 0;
      const char* first = r.label.data();
      const char* last = first + r.label.size();
      const auto res = integer_like(r.label) ? std::from_chars(first, last, id) : std::from_chars_result{first, std::errc::invalid_argument};
      if (res.ec == std::errc::result_out_of_range || (res.ec == std::errc{} && id > max_label_id && given.empty()))
        data_fail(source, r.line, "label " + r.label + " is too large for a class id (at most " +
                                      std::to_string(max_label_id) + " without read_options::label_names)");
      if (res.ec != std::errc{} || res.ptr != last)
        data_fail(source, r.line, "label '" + r.label + "' is not an integer id (labels are read as ids)");
      if (id < 0) data_fail(source, r.line, "label " + r.label + " is negative: class ids start at 0");
      if (!given.empty() && id >= static_cast<std::int64_t>(given.size()))
        data_fail(source, r.line, "label " + r.label + " out of range: " + label_range_text(given));
      d.examples[i].label = id;
      max_id = std::max(max_id, id);
    }
    if (!given.empty()) d.label_names = given;
    else
      for (std::int64_t id = 0; id <= max_id; ++id) d.label_names.push_back(std::to_string(id));
    return d;
  }

  // names
  std::map<std::string, std::int64_t, std::less<>> ids;
  if (!given.empty()) {
    for (std::size_t i = 0; i < given.size(); ++i) ids.emplace(given[i], static_cast<std::int64_t>(i));
    d.label_names = given;
  } else {
    for (const raw_record& r : t.records) ids.emplace(r.label, 0);
    std::int64_t next = 0;
    for (auto& [name, id] : ids) { // std::map iterates in sorted (byte-wise) order
      id = next++;
      d.label_names.push_back(name);
    }
  }
  for (std::size_t i = 0; i < t.records.size(); ++i) {
    const raw_record& r = t.records[i];
    const auto it = ids.find(r.label);
    if (it == ids.end())
      data_fail(source, r.line, "unknown label '" + r.label + "'; known labels: " + join_names(given));
    d.examples[i].label = it->second;
  }
  return d;
}

} // namespace detail
} // namespace minibert
