// SPDX-License-Identifier: MIT
// vocab.txt: lines, line endings, duplicates, empty lines, the special tokens BertTokenizer needs. A vocabulary that
// loads must make a tokenizer that encodes.
#include <cstdint>

#include <minibert/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  minibert::fuzz::expect_clean_refusal([&] {
    auto v = minibert::vocab::from_text(minibert::fuzz::as_text(data, size), "vocab.txt");
    const minibert::tokenizer tok(minibert::detail::spec_from_vocab(std::move(v), {}, "vocab.txt"));
    const auto enc = tok.encode("Hello, world! unbelievable 東京", "pair");
    for (const std::int32_t id : enc.ids) minibert::fuzz::invariant(tok.token_to_id(tok.id_to_token(id)).has_value(),
                                                                   "an encoded id has no token");
  }, "vocab.txt");
  return 0;
}
