// SPDX-License-Identifier: MIT
// tokenizer.json: JSON syntax and nesting, the model/normalizer/pre-tokenizer/post-processor/decoder sections,
// added tokens, truncation and padding (capped lengths). A tokenizer that loads must encode and decode.
#include <cstdint>
#include <optional>
#include <string_view>

#include <minibert/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<minibert::tokenizer> tok;
  minibert::fuzz::expect_clean_refusal(
      [&] { tok.emplace(minibert::tokenizer::from_json(minibert::fuzz::as_text(data, size), "tokenizer.json")); },
      "tokenizer.json");
  if (!tok) return 0;
  // encoding with the file's settings may fail for a text (truncation that cannot remove enough): an error about
  // the text, which need not name the file
  const std::string_view texts[] = {"Hello, world! naïve 東京 <lstrip> word [MASK]", "", "x"};
  for (const std::string_view t : texts)
    minibert::fuzz::expect_clean_refusal([&] {
      const auto enc = tok->encode(t, "a second text");
      minibert::fuzz::invariant(enc.ids.size() == enc.attention_mask.size() && enc.ids.size() == enc.offsets.size(),
                                "encoding fields differ in length");
      (void)tok->decode(enc.ids, true);
    });
  return 0;
}
