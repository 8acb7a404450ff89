// SPDX-License-Identifier: MIT
// config.json: JSON syntax and nesting, field types and ranges, id2label/label2id, the parameter-size limit. A config
// that is accepted must survive its own round trip (to_json_string, then read again) unchanged.
#include <cstdint>

#include <minibert/bert_config.hpp>
#include <minibert/detail/json_limits.hpp>

#include "fuzz_common.hpp"

namespace {
// Saving a config writes id2label and label2id: at the 1,000,000-label limit that is 57 MB of JSON, and the round trip
// takes about 5 s in a release build and over 30 s under the sanitizers (the first 10-minute campaign's finding,
// regressions/config/million_labels.json). Loading stays checked at every size; the round trip up to this many labels.
constexpr std::int64_t round_trip_max_labels = 10'000;

minibert::bert_config parse(std::string_view text) {
  return minibert::bert_config::from_json(
      minibert::detail::parse_json_limited(text, "bert_config", "config.json"), "config.json");
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  minibert::fuzz::expect_clean_refusal([&] {
    const minibert::bert_config c = parse(minibert::fuzz::as_text(data, size));
    if (c.num_labels() > round_trip_max_labels) return;
    const std::string saved = c.to_json_string();
    std::string again;
    try {
      again = parse(saved).to_json_string();
    } catch (const minibert::error& e) {
      minibert::fuzz::invariant(false, "a config minibert accepted cannot be read back after saving it");
    }
    minibert::fuzz::invariant(again == saved, "a config changes on its round trip through to_json_string");
  }, "config.json");
  return 0;
}
