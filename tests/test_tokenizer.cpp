// SPDX-License-Identifier: MIT
// Unit tests of minibert::tokenizer: expected values from HF tokenizers 0.20.3 (PyPI, the version transformers 4.46 requires) for a few hard cases,
// the linear-time WordPiece against a brute-force MaxMatch, truncation, padding, pairs, decode, batch order, byte
// offsets, and every error path (invalid UTF-8, missing or malformed vocab.txt / tokenizer.json).
// The exhaustive comparison with the live reference is test_tokenizer_parity.cpp.
#include <doctest/doctest.h>

#include <chrono>     // steady_clock
#include <cstdint>    // int32_t
#include <cstring>    // strlen
#include <filesystem> // path, temp_directory_path
#include <fstream>    // ofstream
#include <random>     // mt19937
#include <string>     // string
#include <vector>     // vector

#include <unistd.h> // getpid

#include <minibert/tokenizer.hpp>

namespace test_tokenizer { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using minibert::encode_options;
using minibert::encoding;
using minibert::tokenizer;
using ids_t = std::vector<std::int32_t>;

namespace {

const fs::path model_dir = fs::path(MINIBERT_TEST_SHARED_DIR) / "data" / "bert-base-uncased";

const tokenizer& bert() {
  static const tokenizer t = tokenizer::from_pretrained(model_dir / "tokenizer.json");
  return t;
}

// A scratch directory, removed at exit.
struct scratch {
  fs::path dir = fs::temp_directory_path() / ("minibert_tok_unit_" + std::to_string(::getpid()));
  scratch() { fs::create_directories(dir); }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

std::vector<std::pair<std::uint32_t, std::uint32_t>> offsets_of(const encoding& e) {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> o;
  for (const auto& s : e.offsets) o.emplace_back(s.begin, s.end);
  return o;
}

using offs = std::vector<std::pair<std::uint32_t, std::uint32_t>>;

// HF's WordPiece::tokenize, written the slow way (the spec the linear-time version must equal).
bool max_match(const minibert::vocab& v, const std::string& word, ids_t& out) {
  out.clear();
  std::size_t start = 0;
  while (start < word.size()) {
    std::size_t end = word.size();
    std::int32_t found = -1;
    while (start < end) {
      const std::string sub = (start > 0 ? "##" : "") + word.substr(start, end - start);
      if (const auto id = v.find(sub)) {
        found = *id;
        break;
      }
      do --end;
      while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
    }
    if (found < 0) return false;
    out.push_back(found);
    start = end;
  }
  return true;
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const minibert::error& e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

TEST_CASE("tokenizer: hard cases give HF's ids and offsets") {
  const tokenizer& t = bert();
  SUBCASE("accents, emoji, lower-casing") {
    const encoding e = t.encode("Héllo wörld 😀 naïve café");
    CHECK(e.ids == ids_t{101, 7592, 2088, 100, 15743, 7668, 102});
    CHECK(offsets_of(e) == offs{{0, 0}, {0, 5}, {6, 11}, {12, 13}, {14, 19}, {20, 24}, {0, 0}});
    CHECK(e.special_tokens_mask == ids_t{1, 0, 0, 0, 0, 0, 1});
    CHECK(e.attention_mask == ids_t(7, 1));
  }
  SUBCASE("special-token literals match as written, before normalization") {
    const encoding e = t.encode("a😀b [MASK] [mask] x[CLS]y");
    CHECK(e.ids == ids_t{101, 100, 103, 1031, 7308, 1033, 1060, 101, 1061, 102});
    CHECK(offsets_of(e) == offs{{0, 0}, {0, 3}, {4, 10}, {11, 12}, {12, 16}, {16, 17}, {18, 19}, {19, 24}, {24, 25}, {0, 0}});
    CHECK(e.special_tokens_mask == ids_t{1, 0, 0, 0, 0, 0, 0, 0, 0, 1}); // only the template's are special
  }
  SUBCASE("zero-width and control characters vanish, words around them join") {
    const encoding e = t.encode(std::string("\u200b zero\u200dwidth ") + '\0' + " \ufffd");
    CHECK(e.ids == ids_t{101, 5717, 9148, 11927, 2232, 102});
    CHECK(offsets_of(e) == offs{{0, 0}, {2, 6}, {7, 9}, {9, 11}, {11, 12}, {0, 0}});
  }
  SUBCASE("İ, ǅ, ẞ: Rust's lower-casing after accent stripping; CJK split apart") {
    CHECK(t.encode("İstanbul ǅ ẞ ß").ids == ids_t{101, 9960, 100, 1096, 1096, 102});
    CHECK(t.encode("中文字符 テスト").ids == ids_t{101, 1746, 1861, 100, 100, 1713, 30233, 30240, 102});
    CHECK(t.encode("ﬁne Ｆｕｌｌ").ids == ids_t{101, 1984, 2638, 100, 102});
  }
  SUBCASE("punctuation and subwords") {
    const encoding e = t.encode("The Quick-Brown fox's 3.14 naïve résumé!");
    CHECK(e.ids == ids_t{101, 1996, 4248, 1011, 2829, 4419, 1005, 1055, 1017, 1012, 2403, 15743, 13746, 999, 102});
    CHECK(t.encode("unaffable supercalifragilisticexpialidocious").ids ==
          ids_t{101, 14477, 20961, 3468, 3565, 9289, 10128, 29181, 24411, 4588, 10288, 19312, 21273, 10085, 6313, 102});
  }
  SUBCASE("words over 100 code points are one [UNK]; 100 is fine") {
    std::string e100, e101;
    for (int i = 0; i < 100; ++i) e100 += "é";
    e101 = e100 + "é";
    CHECK(t.encode(e101).ids == ids_t{101, 100, 102});
    CHECK(offsets_of(t.encode(e101)) == offs{{0, 0}, {0, 101}, {0, 0}});
    CHECK(t.encode(e100).ids.size() > 3);
    CHECK(t.encode(std::string(101, 'a')).ids == ids_t{101, 100, 102});
  }
  SUBCASE("empty and whitespace-only texts") {
    CHECK(t.encode("").ids == ids_t{101, 102});
    CHECK(t.encode(" \t\n ").ids == ids_t{101, 102});
  }
}

TEST_CASE("tokenizer: offsets in code points (HF) or in bytes") {
  const tokenizer& t = bert();
  encode_options o;
  o.offsets = minibert::offset_unit::bytes;
  const std::string text = "Héllo wörld 😀 x";
  const encoding e = t.encode(text, o);
  CHECK(offsets_of(e) == offs{{0, 0}, {0, 6}, {7, 13}, {14, 18}, {19, 20}, {0, 0}});
  CHECK(text.substr(7, 6) == "wörld");
  CHECK(offsets_of(t.encode(text)) == offs{{0, 0}, {0, 5}, {6, 11}, {12, 13}, {14, 15}, {0, 0}});
}

TEST_CASE("tokenizer: pairs get [SEP] between and type ids 1") {
  const encoding e = bert().encode("hello world", "second one");
  CHECK(e.ids == ids_t{101, 7592, 2088, 102, 2117, 2028, 102});
  CHECK(e.type_ids == ids_t{0, 0, 0, 0, 1, 1, 1});
  CHECK(e.special_tokens_mask == ids_t{1, 0, 0, 1, 0, 0, 1});
  CHECK(e.sequence_ids == ids_t{-1, 0, 0, -1, 1, 1, -1});
  CHECK(offsets_of(e) == offs{{0, 0}, {0, 5}, {6, 11}, {0, 0}, {0, 6}, {7, 10}, {0, 0}});
  encode_options o;
  o.add_special_tokens = false;
  const encoding bare = bert().encode("hello world", "second one", o);
  CHECK(bare.ids == ids_t{7592, 2088, 2117, 2028});
  CHECK(bare.type_ids == ids_t{0, 0, 1, 1});
}

TEST_CASE("tokenizer: truncation strategies (lengths as HF computes them)") {
  const tokenizer& t = bert();
  const auto a = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += i ? " a" : "a";
    return s;
  };
  const auto b = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += i ? " b" : "b";
    return s;
  };
  const auto counts = [&](const std::string& x, const std::string& y, std::size_t max_length,
                          minibert::truncation_strategy s, minibert::side d = minibert::side::right) {
    encode_options o;
    o.truncation = minibert::truncation_options{max_length, s, d};
    const encoding e = t.encode(x, y, o);
    int na = 0, nb = 0;
    for (std::size_t i = 0; i < e.size(); ++i) {
      na += e.sequence_ids[i] == 0;
      nb += e.sequence_ids[i] == 1;
    }
    CHECK(e.size() <= max_length);
    return std::pair<int, int>{na, nb};
  };
  using minibert::truncation_strategy;
  SUBCASE("longest_first") {
    CHECK(counts(a(10), b(2), 8, truncation_strategy::longest_first) == std::pair{3, 2});
    CHECK(counts(a(2), b(10), 8, truncation_strategy::longest_first) == std::pair{2, 3});
    CHECK(counts(a(7), b(7), 8, truncation_strategy::longest_first) == std::pair{2, 3}); // the odd one to B
    CHECK(counts(a(9), b(8), 8, truncation_strategy::longest_first) == std::pair{3, 2}); // the longer text's
    CHECK(counts(a(8), b(7), 8, truncation_strategy::longest_first) == std::pair{3, 2});
    // the whole texts' token counts decide (15 against 11 here), however far past max_length they go
    const std::string u = "unflinchingly";
    CHECK(counts(u + " " + u + " " + u, u + " " + u + " x", 8, truncation_strategy::longest_first) == std::pair{3, 2});
    CHECK(counts(a(3), b(2), 3, truncation_strategy::longest_first) == std::pair{0, 0});
  }
  SUBCASE("only_first / only_second, and their errors") {
    CHECK(counts(a(10), b(2), 8, truncation_strategy::only_first) == std::pair{3, 2});
    CHECK(counts(a(2), b(10), 8, truncation_strategy::only_second) == std::pair{2, 3});
    encode_options o;
    o.truncation = minibert::truncation_options{8, truncation_strategy::only_first, minibert::side::right};
    CHECK(error_of([&] { t.encode(a(2), b(10), o); }).find("too few to remove") != std::string::npos);
    o.truncation->strategy = truncation_strategy::only_second;
    CHECK(error_of([&] { t.encode(a(20), o); }).find("needs a pair") != std::string::npos);
    o.truncation->max_length = 2;
    CHECK(error_of([&] { t.encode(a(2), b(2), o); }).find("smaller than the 3 special tokens") != std::string::npos);
  }
  SUBCASE("left keeps the end") {
    encode_options o;
    o.truncation = minibert::truncation_options{5, truncation_strategy::longest_first, minibert::side::left};
    const encoding e = t.encode("one two three four five six", o);
    CHECK(e.ids == ids_t{101, t.token_to_id("four").value(), t.token_to_id("five").value(), t.token_to_id("six").value(), 102});
  }
}

TEST_CASE("tokenizer: padding") {
  const tokenizer& t = bert();
  encode_options o;
  o.padding = minibert::padding_options{};
  o.padding->to = minibert::padding_options::strategy::fixed;
  o.padding->max_length = 8;
  encoding e = t.encode("hello there", o);
  CHECK(e.ids == ids_t{101, 7592, 2045, 102, 0, 0, 0, 0});
  CHECK(e.attention_mask == ids_t{1, 1, 1, 1, 0, 0, 0, 0});
  CHECK(e.special_tokens_mask == ids_t{1, 0, 0, 1, 1, 1, 1, 1});
  CHECK(e.type_ids == ids_t(8, 0));
  o.padding->direction = minibert::side::left;
  e = t.encode("hello there", o);
  CHECK(e.ids == ids_t{0, 0, 0, 0, 101, 7592, 2045, 102});
  o.padding->max_length = 2; // never truncates
  CHECK(t.encode("hello there", o).size() == 4);

  encode_options longest;
  longest.padding = minibert::padding_options{};
  longest.padding->pad_to_multiple_of = 4;
  const std::vector<std::string> texts = {"hi there", "a b c", "one"};
  const std::vector<encoding> batch = t.encode_batch(texts, longest);
  REQUIRE(batch.size() == 3);
  for (const encoding& x : batch) CHECK(x.size() == 8); // longest is 5, rounded up to 8
  CHECK(batch[2].ids == ids_t{101, 2028, 102, 0, 0, 0, 0, 0});
}

TEST_CASE("tokenizer: decode as HF does") {
  const tokenizer& t = bert();
  const ids_t ids = {101, 7592, 1010, 2088, 999, 102, 2009, 1005, 1055, 2172, 2017, 1012};
  CHECK(t.decode(ids) == "[CLS] hello, world! [SEP] it ' s much you.");
  CHECK(t.decode(ids, true) == "hello, world! it ' s much you.");
  CHECK(t.decode(ids_t{101, 4895, 10354, 3085, 2123, 1005, 1056, 1029, 102}, true) == "unafable don ' t?");
  CHECK(t.decode(t.encode("Hello, World! It's 3.14.").ids, true) == "hello, world! it ' s 3. 14.");
  CHECK(error_of([&] { t.decode(ids_t{101, 999999}); }).find("token id 999999 names no token") != std::string::npos);
  CHECK(error_of([&] { t.decode(ids_t{-1}); }).find("names no token") != std::string::npos);
}

TEST_CASE("tokenizer: batch encoding keeps input order on several threads") {
  const tokenizer& t = bert();
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back("text number " + std::to_string(i) + (i % 7 ? " with café" : " 😀 [MASK]"));
  const std::vector<encoding> batch = t.encode_batch(texts, encode_options{}, 4);
  REQUIRE(batch.size() == texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const encoding one = t.encode(texts[i], encode_options{});
    CHECK_MESSAGE(batch[i].ids == one.ids, "item " << i);
    CHECK(batch[i].offsets == one.offsets);
  }
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  for (std::size_t i = 0; i + 1 < 200; ++i) pairs.emplace_back(texts[i], texts[i + 1]);
  const std::vector<encoding> pb = t.encode_batch(pairs, encode_options{}, 3);
  for (std::size_t i = 0; i < pairs.size(); ++i) CHECK(pb[i].ids == t.encode(pairs[i].first, pairs[i].second, encode_options{}).ids);
  // the first failing item is named, whatever thread met it
  texts[1234] = "bad \xff byte";
  texts[2000] = "bad \xfe byte";
  const std::string err = error_of([&] { t.encode_batch(texts, encode_options{}, 4); });
  CHECK(err.find("batch item 1234") != std::string::npos);
  CHECK(err.find("byte offset 4") != std::string::npos);
}

TEST_CASE("tokenizer: encode_into reuses its buffers") {
  const tokenizer& t = bert();
  encoding e;
  t.encode_into(e, "a fairly long sentence to size the buffers once", nullptr, encode_options{});
  const auto* data = e.ids.data();
  for (int i = 0; i < 100; ++i) t.encode_into(e, "short one", nullptr, encode_options{});
  CHECK(e.ids.data() == data);
  CHECK(e.ids == ids_t{101, 2460, 2028, 102});
}

TEST_CASE("tokenizer: invalid UTF-8 is an error with its byte offset, or U+FFFD on request") {
  const tokenizer& t = bert();
  CHECK(error_of([&] { t.encode("abc\xff def"); }) ==
        "[minibert.tokenizer] invalid UTF-8 in text at byte offset 3 (bytes ff); pass utf8_policy::replace to read it as U+FFFD");
  CHECK(error_of([&] { t.encode("ok \xe2\x82"); }).find("byte offset 3 (bytes e2 82)") != std::string::npos); // truncated
  CHECK(error_of([&] { t.encode("\xed\xa0\x80"); }).find("byte offset 0") != std::string::npos);              // surrogate
  CHECK(error_of([&] { t.encode("xy\xc0\xaf"); }).find("byte offset 2") != std::string::npos);                // overlong
  CHECK(error_of([&] { t.encode("\xf4\x90\x80\x80"); }).find("byte offset 0") != std::string::npos);          // > U+10FFFF
  CHECK(error_of([&] { t.encode("fine", "pair \x80"); }).find("invalid UTF-8 in the second text at byte offset 5") != std::string::npos);
  encode_options o;
  o.invalid_utf8 = minibert::utf8_policy::replace;
  const encoding e = t.encode("abc\xff def", o);
  CHECK(e.ids == ids_t{101, 5925, 13366, 102}); // as HF encodes "abc\ufffd def": clean_text drops U+FFFD
  CHECK(offsets_of(e) == offs{{0, 0}, {0, 3}, {5, 8}, {0, 0}});
  CHECK(t.encode("a\xe2\x82z", o).ids == t.encode("az").ids); // one U+FFFD for the maximal invalid subpart
  o.offsets = minibert::offset_unit::bytes;
  CHECK(offsets_of(t.encode("abc\xff\xfe def", o)) == offs{{0, 0}, {0, 3}, {6, 9}, {0, 0}});
}

TEST_CASE("tokenizer: loading vocab.txt, tokenizer.json, a directory, and their errors") {
  const scratch s;
  SUBCASE("the three ways give the same tokenizer") {
    const tokenizer v = tokenizer::from_pretrained(model_dir / "vocab.txt");
    const tokenizer d = tokenizer::from_pretrained(model_dir);
    const tokenizer f = tokenizer::from_vocab(model_dir / "vocab.txt");
    for (const char* text : {"Héllo, WORLD! [MASK] 中文", "naïve résumé's"}) {
      CHECK(v.encode(text).ids == bert().encode(text).ids);
      CHECK(d.encode(text).ids == bert().encode(text).ids);
      CHECK(f.encode(text).ids == bert().encode(text).ids);
    }
    CHECK(v.vocab_size() == 30522);
    CHECK(v.token_to_id("[MASK]") == 103);
    CHECK(v.id_to_token(7592) == "hello");
  }
  SUBCASE("tokenizer_config.json beside vocab.txt sets the casing") {
    fs::create_directories(s.dir / "cased");
    fs::copy_file(model_dir / "vocab.txt", s.dir / "cased" / "vocab.txt", fs::copy_options::overwrite_existing);
    s.write("cased/tokenizer_config.json", R"({"do_lower_case": false})");
    const tokenizer cased = tokenizer::from_pretrained(s.dir / "cased");
    CHECK(cased.encode("Hello").ids == ids_t{101, 100, 102}); // "Hello" is not in an uncased vocab
    CHECK(cased.spec().normalizer.strips_accents() == false);
  }
  SUBCASE("CRLF vocab lines") {
    const fs::path p = s.write("crlf/vocab.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n##s\r\n");
    const tokenizer t = tokenizer::from_pretrained(p);
    CHECK(t.encode("hellos hello x").ids == ids_t{2, 4, 5, 4, 1, 3});
  }
  SUBCASE("missing files") {
    CHECK(error_of([&] { tokenizer::from_pretrained(s.dir / "nope" / "vocab.txt"); }).find("no such file or directory") != std::string::npos);
    fs::create_directories(s.dir / "empty");
    CHECK(error_of([&] { tokenizer::from_pretrained(s.dir / "empty"); }).find("holds neither tokenizer.json nor vocab.txt") != std::string::npos);
    CHECK(error_of([&] { tokenizer::from_vocab(s.dir / "missing.txt"); }).find("cannot open vocab file") != std::string::npos);
  }
  SUBCASE("malformed vocab.txt: the message names the file and line") {
    const fs::path dup = s.write("dup/vocab.txt", "[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n");
    CHECK(error_of([&] { tokenizer::from_pretrained(dup); }) ==
          "[minibert.vocab] " + dup.string() + ":6: token 'hello' already on line 4");
    const fs::path empty_line = s.write("el/vocab.txt", "[UNK]\n[CLS]\n\n[SEP]\n");
    CHECK(error_of([&] { tokenizer::from_pretrained(empty_line); }).find(":3: empty line") != std::string::npos);
    const fs::path bad_utf8 = s.write("bu/vocab.txt", "[UNK]\n[CLS]\n[SEP]\nca\xff" "fe\n");
    CHECK(error_of([&] { tokenizer::from_pretrained(bad_utf8); }).find(":4: invalid UTF-8 at byte 20 of the file") != std::string::npos);
    const fs::path no_unk = s.write("nu/vocab.txt", "[CLS]\n[SEP]\nhello\n");
    CHECK(error_of([&] { tokenizer::from_pretrained(no_unk); }).find("unk token '[UNK]' is not in the vocabulary") != std::string::npos);
    const fs::path empty = s.write("e/vocab.txt", "");
    CHECK(error_of([&] { tokenizer::from_pretrained(empty); }).find("no tokens") != std::string::npos);
  }
  SUBCASE("malformed tokenizer.json: syntax errors name the line, semantic ones the key") {
    const fs::path syntax = s.write("syntax/tokenizer.json", "{\n  \"model\": {\n    \"vocab\": {\"a\": 1,,}\n  }\n}\n");
    const std::string e1 = error_of([&] { tokenizer::from_pretrained(syntax); });
    CHECK(e1.find(syntax.string() + ": malformed JSON at line 3, column") != std::string::npos);
    const fs::path no_vocab = s.write("nv/tokenizer.json", R"({"model": {"type": "WordPiece"}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(no_vocab); }).find("missing key /model/vocab") != std::string::npos);
    const fs::path bad_id = s.write("bi/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0, "a": "one"}}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(bad_id); }).find("/model/vocab: token 'a' needs a non-negative integer id") != std::string::npos);
    const fs::path bpe = s.write("bpe/tokenizer.json", R"({"model": {"type": "BPE", "vocab": {}}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(bpe); }).find("unsupported model type 'BPE'") != std::string::npos);
    const fs::path norm = s.write("norm/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0}}, "normalizer": {"type": "NFKC"}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(norm); }).find("/normalizer: unsupported normalizer 'NFKC'") != std::string::npos);
    const fs::path flag = s.write("flag/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0}}, "normalizer": {"type": "BertNormalizer", "lowercase": "yes"}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(flag); }).find("/normalizer/lowercase: expected true or false, got string") != std::string::npos);
    const fs::path not_obj = s.write("arr/tokenizer.json", "[1, 2]");
    CHECK(error_of([&] { tokenizer::from_pretrained(not_obj); }).find("expected a JSON object") != std::string::npos);
    const fs::path dup_id = s.write("dupid/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0, "a": 0}}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
    CHECK(error_of([&] { tokenizer::from_pretrained(dup_id); }).find("id 0 given to both") != std::string::npos);
  }
}

TEST_CASE("tokenizer: hostile tokenizer.json / tokenizer_config.json give minibert errors naming the file") {
  // fuzzing reproducers: deep nesting, a number past a double (nlohmann's out_of_range.406) and a non-array where
  // the loader indexes one (type_error.304) escaped as nlohmann's exceptions, without the file
  const scratch s;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string pre = R"("pre_tokenizer": {"type": "BertPreTokenizer"})";
  const auto fails = [](const fs::path& p, const std::string& says) {
    const std::string e = error_of([&] { tokenizer::from_pretrained(p); });
    CHECK_MESSAGE(e.rfind("[minibert.tokenizer] ", 0) == 0, e);
    CHECK_MESSAGE(e.find(p.string()) != std::string::npos, e);
    CHECK_MESSAGE(e.find(says) != std::string::npos, e << " lacks " << says);
  };
  SUBCASE("100k-deep nesting") {
    fails(s.write("deep/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0}}, "x": )" + deep + "}"),
          "JSON nested deeper than 256 levels");
    s.write("deepcfg/vocab.txt", "[UNK]\n[CLS]\n[SEP]\n");
    const fs::path cfg = s.write("deepcfg/tokenizer_config.json", "{\"unk_token\": " + deep + "}");
    const std::string e = error_of([&] { tokenizer::from_pretrained(s.dir / "deepcfg"); });
    CHECK_MESSAGE(e.find(cfg.string() + ": JSON nested deeper than 256 levels") != std::string::npos, e);
  }
  SUBCASE("a number that overflows a double") {
    fails(s.write("big/tokenizer.json", R"({"model": {"vocab": {"[UNK]": 0}, "max_input_chars_per_word": 1e999}, )" + pre + "}"),
          "malformed JSON: [json.exception.out_of_range.406] number overflow parsing '1e999'");
    s.write("bigcfg/vocab.txt", "[UNK]\n[CLS]\n[SEP]\n");
    const fs::path cfg = s.write("bigcfg/tokenizer_config.json", R"({"model_max_length": 1e999})");
    const std::string e = error_of([&] { tokenizer::from_pretrained(s.dir / "bigcfg"); });
    CHECK_MESSAGE(e.find(cfg.string() + ": malformed JSON") != std::string::npos, e);
    CHECK_MESSAGE(e.find("1e999") != std::string::npos, e);
  }
  SUBCASE("a non-array where the loader indexes an array names the field") {
    const std::string vocab = R"("model": {"vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}})";
    fails(s.write("bp/tokenizer.json", "{" + vocab + ", " + pre +
                                           R"(, "post_processor": {"type": "BertProcessing", "cls": {"a": 1}, "sep": ["[SEP]", 2]}})"),
          "/post_processor/cls: expected an array, got object");
    fails(s.write("bp1/tokenizer.json", "{" + vocab + ", " + pre +
                                            R"(, "post_processor": {"type": "BertProcessing", "cls": ["[CLS]"], "sep": ["[SEP]", 2]}})"),
          "/post_processor/cls: expected at least 2 entries, got 1");
    const std::string single = R"([{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}])";
    const std::string pair = R"([{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}])";
    fails(s.write("tp/tokenizer.json", "{" + vocab + ", " + pre + R"(, "post_processor": {"type": "TemplateProcessing", "single": )" +
                                           single + ", \"pair\": " + pair +
                                           R"(, "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": "1", "tokens": ["[CLS]"]}}}})"),
          "/post_processor/special_tokens/[CLS]/ids: expected an array, got string");
  }
  SUBCASE("the model's own errors name the file") {
    // fuzzing reproducer: WordPiece's check of its unk_token reached the caller without the file's name
    const std::string e = error_of([&] {
      tokenizer::from_pretrained(s.write("unk/tokenizer.json", R"({"model": {"vocab": {"a": 0}}, )" + pre + "}"));
    });
    CHECK_MESSAGE(e.find((s.dir / "unk/tokenizer.json").string() + ": unk_token '[UNK]' is not in the vocabulary") !=
                      std::string::npos, e);
  }
  SUBCASE("padding longer than 2^20 tokens") {
    const std::string head = R"({"model": {"vocab": {"[UNK]": 0, "[PAD]": 1}}, )" + pre + ", ";
    fails(s.write("fixed/tokenizer.json", head + R"("padding": {"strategy": {"Fixed": 2000000000}}})"),
          "/padding/strategy/Fixed: 2000000000 tokens exceeds minibert's padding limit of 1048576");
    fails(s.write("mult/tokenizer.json", head + R"("padding": {"strategy": "BatchLongest", "pad_to_multiple_of": 1048577}})"),
          "/padding/pad_to_multiple_of: 1048577 tokens exceeds minibert's padding limit of 1048576");
    const tokenizer ok = tokenizer::from_pretrained(
        s.write("ok/tokenizer.json", head + R"("padding": {"strategy": {"Fixed": 1048576}, "pad_to_multiple_of": 8}})"));
    REQUIRE(ok.spec().padding.has_value());
    CHECK(ok.spec().padding->max_length == 1048576);
  }
}

TEST_CASE("tokenizer: a tokenizer.json with a million added tokens loads and matches them in linear time") {
  // The loader looked up every added token among those before it, and the matcher compared every token with the
  // same first byte at each position: both quadratic, so a million tokens ran for hours. Now: a hash of contents,
  // and a byte-wise narrowing of the sorted contents (O(match length x log n) per position).
  constexpr int n = 1'000'000;
  std::string json = R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1, "##b": 2}},
    "pre_tokenizer": {"type": "BertPreTokenizer"}, "added_tokens": [)";
  const auto token = [](int i) { return "tok" + std::to_string(i) + "x"; };
  for (int i = 0; i < n; ++i)
    json += std::string(i ? "," : "") + R"({"id": )" + std::to_string(3 + i) + R"(, "content": ")" + token(i) +
            R"(", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false})";
  json += R"(, {"id": 9, "content": "tok1", "special": false}]})"; // a prefix of many tokens, added last
  const auto t0 = std::chrono::steady_clock::now();
  const tokenizer tok = tokenizer::from_json(json);
  std::string text;
  std::vector<std::int32_t> expect;
  for (int i = 0; i < 20000; ++i) {
    const int k = (i * 7919) % n;
    text += token(k) + (i % 3 ? " a " : "");
    expect.push_back(3 + k);
    if (i % 3) expect.push_back(1);
  }
  text += "tok1 tok12"; // tok1 is its own token; "tok12" matches tok1 (the longest token it starts with) + "2" ([UNK])
  expect.insert(expect.end(), {3 + n, 3 + n, 0});
  encode_options plain;
  plain.add_special_tokens = false;
  const encoding e = tok.encode(text, plain);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(e.ids == expect);
  MESSAGE("load + encode of " << n << " added tokens: " << seconds << " s");
  CHECK_MESSAGE(seconds < 120, "quadratic again? " << seconds << " s"); // linear: ~5 s here, ~30 s under ASan
}

TEST_CASE("wordpiece: the linear-time algorithm equals MaxMatch") {
  SUBCASE("bert-base-uncased vocabulary, random words") {
    const minibert::vocab& v = bert().spec().vocab;
    const minibert::wordpiece wp(v, {});
    std::mt19937 rng(7);
    const char* parts[] = {"a", "b", "c", "e", "i", "n", "s", "t", "#", "##", "un", "ing", "é", "中", "x", "z", "'", "ß", "q"};
    ids_t want, got;
    int differ = 0;
    for (int it = 0; it < 20000; ++it) {
      std::string w;
      const int len = 1 + static_cast<int>(rng() % 14);
      for (int k = 0; k < len; ++k) w += parts[rng() % std::size(parts)];
      const bool ok_want = max_match(v, w, want);
      got.clear();
      const bool ok_got = wp.tokenize(reinterpret_cast<const unsigned char*>(w.data()), w.size(), 0,
                                      [&](std::int32_t id, std::uint32_t, std::uint32_t) { got.push_back(id); });
      if (ok_want != ok_got || (ok_want && want != got)) {
        if (differ++ < 5) MESSAGE("word '" << w << "' differs");
      }
    }
    CHECK(differ == 0);
  }
  SUBCASE("a tiny vocabulary with the edge cases: '#', '##', '###', prefixes of tokens") {
    const minibert::vocab v = minibert::vocab::from_text("[UNK]\na\nab\nabcd\n##b\n##bc\n##c\n##d\n#\n##\n###\n##a\nx\n##x\n");
    const minibert::wordpiece wp(v, {});
    ids_t want, got;
    for (const char* w : {"abc", "abcd", "abcdx", "ab", "abb", "abd", "a", "b", "##", "###", "####", "#a", "##a", "##ab",
                          "abx", "xx", "xa", "aaa", "abcx", "abcdd", "##x", "c"}) {
      const bool ok_want = max_match(v, w, want);
      got.clear();
      const bool ok_got = wp.tokenize(reinterpret_cast<const unsigned char*>(w), std::strlen(w), 0,
                                      [&](std::int32_t id, std::uint32_t, std::uint32_t) { got.push_back(id); });
      CHECK_MESSAGE(ok_want == ok_got, w);
      if (ok_want && ok_got) CHECK_MESSAGE(want == got, w);
    }
  }
}

TEST_CASE("normalize: HF's normalized strings") {
  CHECK(minibert::normalize("Héllo\tWÖRLD 中文") == "hello world  中  文 ");
  CHECK(minibert::normalize("İ") == "i");
  minibert::normalizer_options keep_accents;
  keep_accents.strip_accents = false;
  CHECK(minibert::normalize("İé", keep_accents) == "i\u0307é");
  CHECK(minibert::normalize("a\u200bb\x01") == "ab");
  CHECK(error_of([] { minibert::normalize("\xc3"); }).find("byte offset 0") != std::string::npos);
}

} // namespace test_tokenizer
