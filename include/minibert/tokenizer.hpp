// SPDX-License-Identifier: MIT
#pragma once
/* minibert's tokenizer: BERT WordPiece with the exact output of Hugging Face tokenizers (BertTokenizerFast) for
   bert-base-uncased and its kind, in linear time. Load with tokenizer::from_pretrained(path) (a tokenizer.json, a
   vocab.txt or a model directory), then encode / encode_batch / decode. Design: docs/tokenizer.md.

     auto tok = minibert::tokenizer::from_pretrained("bert-base-uncased/");
     minibert::encoding e = tok.encode("Hello, world!", "Second text");   // e.ids, e.type_ids, e.offsets, ...
*/

#include <minibert/tokenizer/unicode.hpp>        // defines: detail UTF-8 decoding, HF's code point properties
#include <minibert/tokenizer/normalizer.hpp>     // defines: normalizer_options, offset_unit, utf8_policy, normalize
#include <minibert/tokenizer/vocab.hpp>          // defines: vocab (vocab.txt reader)
#include <minibert/tokenizer/wordpiece.hpp>      // defines: wordpiece_options, wordpiece (LinMaxMatch)
#include <minibert/tokenizer/added_tokens.hpp>   // defines: added_token
#include <minibert/tokenizer/encoding.hpp>       // defines: encoding, encode_options, truncation/padding options
#include <minibert/tokenizer/decode.hpp>         // defines: decoder_options
#include <minibert/tokenizer/loader.hpp>         // defines: tokenizer_spec, bert_vocab_options (file readers)
#include <minibert/tokenizer/bert_tokenizer.hpp> // defines: tokenizer
