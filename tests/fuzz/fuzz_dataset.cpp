// SPDX-License-Identifier: MIT
// The dataset readers: TSV, CSV (RFC 4180 quoting, embedded newlines, CRLF), JSONL (one JSON object per line, nesting,
// numbers that overflow), "text@label", UTF-8 checks, column and label resolution. The first byte picks the format
// (bits 0-1), a text pair (bit 2), unlabeled reading (bit 3), label kind (bits 4-5) and empty texts (bit 6).
#include <cstdint>

#include <minibert/data.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t bits = data[0];
  static const minibert::data_format formats[] = {minibert::data_format::tsv, minibert::data_format::csv,
                                                  minibert::data_format::jsonl, minibert::data_format::text_at_label};
  static const minibert::label_kind kinds[] = {minibert::label_kind::auto_detect, minibert::label_kind::ids,
                                               minibert::label_kind::names, minibert::label_kind::auto_detect};
  minibert::read_options o;
  o.format = formats[bits & 3];
  if (bits & 4) o.text_pair_column = "sentence2";
  o.require_labels = !(bits & 8);
  o.labels = kinds[(bits >> 4) & 3];
  o.allow_empty_text = bits & 64;
  if (bits & 128) o.label_names = {"negative", "positive"};
  minibert::fuzz::expect_clean_refusal([&] {
    const minibert::dataset d = minibert::parse_dataset(minibert::fuzz::as_text(data + 1, size - 1), "fuzz.data", o);
    for (const auto& e : d.examples)
      minibert::fuzz::invariant(e.label == -1 || (e.label >= 0 && std::size_t(e.label) < d.label_names.size()) ||
                                    d.label_names.empty(),
                                "a label id outside the dataset's label names");
  }, "fuzz.data");
  return 0;
}
