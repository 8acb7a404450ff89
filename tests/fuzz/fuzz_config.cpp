// SPDX-License-Identifier: MIT
// config.json: JSON syntax and nesting, field types and ranges, id2label/label2id, the parameter-size limit. A config
// that is accepted must survive its own round trip (to_json_string, then read again) unchanged.
#include <cstdint>

#include <minibert/bert_config.hpp>
#include <minibert/detail/json_limits.hpp>

#include "fuzz_common.hpp"

namespace {
minibert::bert_config parse(std::string_view text) {
  return minibert::bert_config::from_json(
      minibert::detail::parse_json_limited(text, "bert_config", "config.json"), "config.json");
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  minibert::fuzz::expect_clean_refusal([&] {
    const minibert::bert_config c = parse(minibert::fuzz::as_text(data, size));
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
