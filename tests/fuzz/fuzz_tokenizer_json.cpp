// SPDX-License-Identifier: MIT
// tokenizer.json: JSON syntax and nesting, the model/normalizer/pre-tokenizer/post-processor/decoder sections,
// added tokens, truncation and padding (capped lengths). A tokenizer that loads must encode and decode.
#include <cstdint>
#include <string_view>

#include <minibert/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  minibert::fuzz::expect_clean_refusal([&] {
    const auto tok = minibert::tokenizer::from_json(minibert::fuzz::as_text(data, size), "tokenizer.json");
    const std::string_view texts[] = {"Hello, world! naïve 東京 <lstrip> word [MASK]", "", "x"};
    for (const std::string_view t : texts) {
      const auto enc = tok.encode(t, "a second text");
      minibert::fuzz::invariant(enc.ids.size() == enc.attention_mask.size() && enc.ids.size() == enc.offsets.size(),
                                "encoding fields differ in length");
      (void)tok.decode(enc.ids, true);
    }
  });
  return 0;
}
