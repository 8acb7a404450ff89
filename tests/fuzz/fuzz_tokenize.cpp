// SPDX-License-Identifier: MIT
// The tokenizer on arbitrary bytes: invalid UTF-8 (strict and replace), every Unicode category through the BERT
// normalizer and pre-tokenizer, very long words, added tokens with lstrip/rstrip/single_word, pairs, truncation and
// padding. The tokenizer is the fixed tiny.json of the tokenizer_json corpus; the input's last byte picks the
// options and a 0xFF byte (never valid UTF-8) splits it into a text pair.
#include <cstdint>
#include <optional>
#include <string_view>

#include <minibert/tokenizer.hpp>

#include "fuzz_common.hpp"

namespace {

const minibert::tokenizer& fixed_tokenizer() {
  static const minibert::tokenizer tok = minibert::tokenizer::from_pretrained(MINIBERT_FUZZ_TOKENIZER_JSON);
  return tok;
}

minibert::encode_options options_from(std::uint8_t bits) {
  minibert::encode_options o;
  o.add_special_tokens = bits & 1;
  if (bits & 2) o.truncation = minibert::truncation_options{.max_length = std::size_t{bits} % 7 + 1};
  if (bits & 4) {
    o.padding = minibert::padding_options{};
    o.padding->to = minibert::padding_options::strategy::fixed;
    o.padding->max_length = 24;
    if (bits & 64) o.padding->direction = minibert::side::left;
  }
  if (bits & 8) o.offsets = minibert::offset_unit::bytes;
  if (bits & 16) o.invalid_utf8 = minibert::utf8_policy::replace;
  return o;
}

void check_offsets(const minibert::encoding& enc, std::size_t len_a, std::size_t len_b) {
  for (std::size_t i = 0; i < enc.ids.size(); ++i) {
    const auto s = enc.sequence_ids[i];
    if (s < 0) continue;
    const std::size_t len = s == 0 ? len_a : len_b;
    minibert::fuzz::invariant(enc.offsets[i].begin <= enc.offsets[i].end && enc.offsets[i].end <= len,
                              "a token's offsets reach outside its text");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& tok = fixed_tokenizer();
  const minibert::encode_options o = options_from(data[size - 1]);
  const std::string_view in = minibert::fuzz::as_text(data, size - 1);
  const std::size_t cut = in.find('\xff');
  minibert::fuzz::expect_clean_refusal([&] {
    const minibert::encoding enc = cut == std::string_view::npos ? tok.encode(in, o)
                                                                 : tok.encode(in.substr(0, cut), in.substr(cut + 1), o);
    minibert::fuzz::invariant(enc.ids.size() == enc.type_ids.size() && enc.ids.size() == enc.offsets.size() &&
                                  enc.ids.size() == enc.sequence_ids.size(),
                              "encoding fields differ in length");
    check_offsets(enc, cut == std::string_view::npos ? in.size() : cut,
                  cut == std::string_view::npos ? 0 : in.size() - cut - 1);
    (void)tok.decode(enc.ids, bool(data[size - 1] & 32));
  });
  return 0;
}
