// SPDX-License-Identifier: MIT
// Live parity of minibert::tokenizer with Hugging Face tokenizers (PyPI `tokenizers`, the Rust library behind
// transformers' BertTokenizerFast, driven by tests/python/tokenizer_reference.py in the MINIBERT_TEST_PYTHON venv):
// every text of every file under ../shared/data/sentiment and a list of hard cases, loading tokenizer.json and
// loading vocab.txt (+ tokenizer_config.json); ids, type ids, attention mask, special-tokens mask and offsets must be
// identical. Also pairs with each truncation strategy, padding, decoding, every Unicode code point through the
// normalizer and the pre-tokenizer, the generated tables of unicode_tables.hpp, variant tokenizer.json files (other
// normalizer settings, added tokens with every flag), and transformers' BertTokenizerFast / BertTokenizer loaded
// from the pretrained all-MiniLM-L6-v2's own files in the hub cache, called as a trainer calls them (truncation to
// 128, single texts and padded batches). One python process per list of runs (per test case, and per variant
// file), never one per text.
#include <doctest/doctest.h>

#include <algorithm>   // min
#include <chrono>      // steady_clock
#include <cstdint>     // int32_t
#include <cstdlib>     // system
#include <cstring>     // memcpy
#include <filesystem>  // directory_iterator, temp_directory_path
#include <fstream>     // ifstream, ofstream
#include <iostream>    // cerr
#include <sstream>     // ostringstream
#include <string>      // string
#include <vector>      // vector

#include <unistd.h> // getpid

#include <nlohmann/json.hpp>

#include <minibert/hub.hpp> // resolve_model_path
#include <minibert/tokenizer.hpp>

namespace test_tokenizer_parity { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path data_dir = fs::path(MINIBERT_TEST_SHARED_DIR) / "data";
const fs::path model_dir = data_dir / "bert-base-uncased";
const fs::path reference_py = fs::path(MINIBERT_TEST_SOURCE_DIR) / "python" / "tokenizer_reference.py";

// `python tokenizer_reference.py ARGS...`, each argument single-quoted for the shell
std::string reference_command(const std::vector<std::string>& args) {
  const auto quoted = [](const std::string& a) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string cmd = quoted(MINIBERT_TEST_PYTHON) + " " + quoted(reference_py.string());
  for (const std::string& a : args) cmd += " " + quoted(a);
  return cmd;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// ---------------------------------------------------------------------------------------------------------------
// minimal readers for the corpus formats (the data-loading library is tested elsewhere)

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t eol = s.find('\n', pos);
    if (eol == std::string::npos) eol = s.size();
    std::string line = s.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
    pos = eol + 1;
  }
  return out;
}

// TSV with a header line; returns the named column.
std::vector<std::string> read_tsv(const fs::path& p, const std::string& column) {
  const std::vector<std::string> lines = split_lines(slurp(p));
  REQUIRE(!lines.empty());
  const auto fields = [](const std::string& line) {
    std::vector<std::string> f;
    std::size_t pos = 0;
    for (;;) {
      const std::size_t tab = line.find('\t', pos);
      f.push_back(line.substr(pos, tab == std::string::npos ? std::string::npos : tab - pos));
      if (tab == std::string::npos) break;
      pos = tab + 1;
    }
    return f;
  };
  const std::vector<std::string> header = fields(lines[0]);
  const std::size_t col = static_cast<std::size_t>(std::find(header.begin(), header.end(), column) - header.begin());
  REQUIRE_MESSAGE(col < header.size(), p << " has no column " << column);
  std::vector<std::string> out;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const std::vector<std::string> f = fields(lines[i]);
    REQUIRE_MESSAGE(col < f.size(), p << ":" << i + 1 << ": too few fields");
    out.push_back(f[col]);
  }
  return out;
}

// RFC 4180 CSV (quoted fields, "" escapes, newlines inside quotes, CRLF records); returns the named column.
std::vector<std::string> read_csv(const fs::path& p, const std::string& column) {
  const std::string s = slurp(p);
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      rows.back().push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      rows.back().push_back(std::move(field));
      field.clear();
      was_quoted = false;
      rows.emplace_back();
    } else {
      field += c;
    }
  }
  REQUIRE_MESSAGE(!quoted, p << ": unterminated quoted field");
  if (!field.empty() || !rows.back().empty()) rows.back().push_back(std::move(field));
  if (rows.back().empty()) rows.pop_back();
  const std::vector<std::string>& header = rows.at(0);
  const std::size_t col = static_cast<std::size_t>(std::find(header.begin(), header.end(), column) - header.begin());
  REQUIRE_MESSAGE(col < header.size(), p << " has no column " << column);
  std::vector<std::string> out;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    REQUIRE_MESSAGE(rows[r].size() == header.size(), p << ": record " << r << " has " << rows[r].size() << " fields");
    out.push_back(rows[r][col]);
  }
  return out;
}

std::vector<std::string> read_jsonl(const fs::path& p, const std::string& key) {
  std::vector<std::string> out;
  for (const std::string& line : split_lines(slurp(p)))
    if (!line.empty()) out.push_back(json::parse(line).at(key).get<std::string>());
  return out;
}

// Financial PhraseBank: "sentence@label" lines (UTF-8 BOM on the first, CRLF).
std::vector<std::string> read_at_label(const fs::path& p) {
  std::vector<std::string> out;
  for (const std::string& line : split_lines(slurp(p))) {
    if (line.empty()) continue;
    const std::size_t at = line.rfind('@');
    REQUIRE_MESSAGE(at != std::string::npos, p << ": line without '@label'");
    out.push_back(line.substr(0, at));
  }
  return out;
}

struct corpus {
  std::string name;
  std::vector<std::string> texts;
};

// Every file under sentiment/, by format; an unknown file fails the test so that none is silently skipped.
std::vector<corpus> read_all_corpora() {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(data_dir / "sentiment"))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<corpus> out;
  for (const fs::path& f : files) {
    const std::string name = fs::relative(f, data_dir / "sentiment").string();
    const std::string fn = f.filename().string();
    if (fn.rfind("PROVENANCE", 0) == 0) continue;
    if (f.extension() == ".tsv") out.push_back({name, read_tsv(f, "sentence")});
    else if (fn == "Tweets.csv") out.push_back({name, read_csv(f, "text")});
    else if (f.extension() == ".csv") out.push_back({name, read_csv(f, "review")});
    else if (f.extension() == ".jsonl") out.push_back({name, read_jsonl(f, "text")});
    else if (fn == "Sentences_50Agree.txt") out.push_back({name, read_at_label(f)});
    else FAIL("no reader for " << f << ": add one so that every corpus file is compared");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// the hard cases

std::vector<std::string> hard_cases() {
  std::vector<std::string> h = {
      // accents and case
      "Héllo wörld", "naïve café résumé", "Ångström", "Crème brûlée", "Ελληνικά ΚΕΦΑΛΑΙΑ", "ΣΊΣΥΦΟΣ ὅς", "İstanbul İ",
      "ǅemal ǈ ǋ Ǆ", "ẞ straße STRASSE", "ﬁne ﬂower ﬃ", "Tiếng Việt có dấu", "Ωμέγα ΐ ΰ", "ÀÉÎÕÜ àéîõü", "Ⅻ ⅻ",
      // combining marks
      "e\u0301 a\u0300\u0316 o\u0308\u0304", "\u0301leading combining", "Z\u0351\u036b\u0343\u036a\u0336\u0321a\u0337l\u0338g\u0335o",
      "क्षत्रिय नमस्ते", "ภาษาไทย", "한국어 텍스트 가나다", "ḱ ǘ ṩ", "a\u20dd b\u20e3", "q\u0307\u0323",
      // CJK
      "中文字符", "日本語のテキスト", "漢字かな交じり文", "𠀀𪜀𫝀", "豈 更 車", "㐀㐁", "中a文b字", "ｶﾀｶﾅ ｱｲｳ",
      // emoji
      "😀", "👍🏽 ok", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "❤️ love", "🇫🇷🇩🇪", "🥲 🫠 🪿", "I ♥ NY ☃ ★",
      // control and zero-width characters
      "a\u200bb", "zero\u200dwidth\u200cjoiner", "\ufeffBOM start", "tab\there", "new\nline", "cr\rlf\r\nend",
      std::string("nul\0byte", 8), "\x01\x02\x7f ctl", "\u0085nel\u00a0nbsp", "line\u2028sep\u2029para",
      "ideographic\u3000space", "\x0bvt\x0c" "ff", "\x1c\x1d\x1e\x1f seps", "soft\u00adhyphen", "\ufffd replacement",
      "\u2066isolate\u2069", "\ue000 private \U000F0000",
      // full-width and compatibility forms
      "ＡＢＣ１２３！？", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ", "①②③ ㈱ ㎏", "x² y₂ ½",
      // long words
      std::string(99, 'a'), std::string(100, 'a'), std::string(101, 'a'), "supercalifragilisticexpialidocious",
      "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
      "https://example.com/some/very/long/path?with=query&and=params#fragment",
      // special-token literals
      "[CLS]", "[SEP] in text", "a [MASK] b", "[mask] lower", "[UNK] [PAD]", "x[CLS]y", "[[CLS]]", "[CLS][SEP][MASK]",
      "[ CLS ]", "[CLS", "CLS]", "[MASK][mask][MASK]",
      // punctuation
      "Hello, world!!! ... ?!", "don't won't it's y'all", "¿Qué? ¡Sí!", "«quoted» „German“ ‹single›",
      "em—dash en–dash ‒ figure", "100,000.50 $5 €10 ¥20 £", "@user #hashtag", "<br /><br />", "&amp; &lt; &quot;",
      "a/b\\c|d~e^f", "snake_case_word", "→ ∞ ≠ ± § ¶", "…", "‘single’ “double”", "፣ ፤ ։ ؟ ، ۔", "〜〽〈〉「」",
      // numbers, empty and whitespace-only texts
      "", " ", "   \t\n ", "123456789", "3.14159", "2019-12-31", "COVID-19",
      // other scripts
      "Привет мир", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "Ողջույն", "ᚠᛇᚻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝",
      // code points whose properties changed after the Unicode version HF's tables come from
      "\u1df6x \u08e2 \u0890 \u1734 \U00011938 \u1c89 \ua7cb \ua7dc \U00010d50 \U00016ea0 \u0378 \u1715",
      "a\u302e\u302f b", "\u037e \u0387 \u1fef \u2000x", "\u0130\u0307",
  };
  // the word-length limit counts code points, not bytes
  std::string e101, e100;
  for (int i = 0; i < 101; ++i) e101 += "é";
  for (int i = 0; i < 100; ++i) e100 += "é";
  h.push_back(e101);
  h.push_back(e100);
  h.push_back(std::string(300, 'x') + " short " + std::string(150, 'y'));
  return h;
}

// ---------------------------------------------------------------------------------------------------------------
// the reference: one python process, binary results

struct reference_result {
  bool ok = false; // HF threw when false
  minibert::encoding e;
};

// Writes {"runs": runs} to work/input.json, runs `tokenizer_reference.py MODE SOURCE input.json output.bin` and
// reads the results back: per run, per text, n (-1: HF raised), n ids, n type ids, n attention mask, n special-tokens
// mask and, when the run has offsets (with_offsets(run)), 2n offsets.
template <class WithOffsets>
std::vector<std::vector<reference_result>> run_python(const std::string& mode, const fs::path& source, const json& runs,
                                                      const fs::path& work, WithOffsets with_offsets) {
  const fs::path in = work / "input.json", out = work / "output.bin";
  {
    std::ofstream f(in, std::ios::binary);
    f << json{{"runs", runs}}.dump();
  }
  const std::string cmd = reference_command({mode, source.string(), in.string(), out.string()});
  const int rc = std::system(cmd.c_str());
  REQUIRE_MESSAGE(rc == 0, "the reference failed (" << rc << "): " << cmd);
  const std::string bin = slurp(out);
  REQUIRE(bin.size() % 4 == 0);
  std::vector<std::int32_t> v(bin.size() / 4);
  std::memcpy(v.data(), bin.data(), bin.size());
  std::vector<std::vector<reference_result>> results;
  std::size_t k = 0;
  for (const json& run : runs) {
    const std::size_t fields = with_offsets(run) ? 6 : 4;
    std::vector<reference_result> rr;
    for (std::size_t t = 0; t < run.at("texts").size(); ++t) {
      REQUIRE(k < v.size());
      const std::int32_t n = v[k++];
      reference_result r;
      if (n >= 0) {
        const auto un = static_cast<std::size_t>(n);
        REQUIRE(k + fields * un <= v.size());
        r.ok = true;
        r.e.ids.assign(v.begin() + k, v.begin() + k + un);
        r.e.type_ids.assign(v.begin() + k + un, v.begin() + k + 2 * un);
        r.e.attention_mask.assign(v.begin() + k + 2 * un, v.begin() + k + 3 * un);
        r.e.special_tokens_mask.assign(v.begin() + k + 3 * un, v.begin() + k + 4 * un);
        if (fields == 6)
          for (std::size_t i = 0; i < un; ++i)
            r.e.offsets.push_back({static_cast<std::uint32_t>(v[k + 4 * un + 2 * i]), static_cast<std::uint32_t>(v[k + 4 * un + 2 * i + 1])});
        k += fields * un;
      }
      rr.push_back(std::move(r));
    }
    results.push_back(std::move(rr));
  }
  REQUIRE(k == v.size());
  return results;
}

// tokenizers' Tokenizer from a tokenizer.json (mode "encode"); with `decoded`, the decoded strings of the runs that ask
std::vector<std::vector<reference_result>> run_reference(const json& runs, const fs::path& work, json* decoded = nullptr,
                                                         const fs::path& tokenizer_json = model_dir / "tokenizer.json") {
  auto results = run_python("encode", tokenizer_json, runs, work, [](const json&) { return true; });
  if (decoded) *decoded = json::parse(slurp(fs::path((work / "output.bin").string() + ".decode.json")));
  return results;
}

std::string escaped(const std::string& s, std::size_t limit = 160) {
  std::string out = json(s.substr(0, std::min(limit, s.size()))).dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > limit) out += "...";
  return out;
}

// ids:token(type attention special)[offsets) of the first 40 tokens; no offsets when the reference has none
std::string show(const minibert::tokenizer& tok, const minibert::encoding& e, bool offsets = true) {
  std::ostringstream os;
  for (std::size_t i = 0; i < e.size() && i < 40; ++i) {
    os << (i ? " " : "") << e.ids[i];
    if (tok.spec().vocab.contains(e.ids[i])) os << ":" << tok.id_to_token(e.ids[i]);
    os << "(" << e.type_ids[i] << e.attention_mask[i] << e.special_tokens_mask[i] << ")";
    if (offsets) os << "[" << e.offsets.at(i).begin << "," << e.offsets.at(i).end << ")";
  }
  if (e.size() > 40) os << " ... (" << e.size() << " tokens)";
  return os.str();
}

bool same(const minibert::encoding& a, const minibert::encoding& b, bool offsets = true) {
  return a.ids == b.ids && a.type_ids == b.type_ids && a.attention_mask == b.attention_mask &&
         a.special_tokens_mask == b.special_tokens_mask && (!offsets || a.offsets == b.offsets);
}

// Compares one run; prints the first mismatches with their text. Returns the number of differing texts.
// offsets = false only against transformers' slow BertTokenizer, which returns none.
struct comparison {
  std::size_t texts = 0, differ = 0, printed = 0;
  bool offsets = true;
  void check(const std::string& what, const std::string& text, const minibert::tokenizer& tok, bool ok,
             const minibert::encoding& got, const std::string& err, const reference_result& want) {
    ++texts;
    const bool equal = ok == want.ok && (!ok || same(got, want.e, offsets));
    if (equal) return;
    ++differ;
    if (printed++ >= 8) return;
    std::ostringstream os;
    os << "MISMATCH [" << what << "] text " << escaped(text) << "\n";
    os << "  HF:       " << (want.ok ? show(tok, want.e, offsets) : "threw") << "\n";
    os << "  minibert: " << (ok ? show(tok, got, offsets) : "threw: " + err) << "\n";
    MESSAGE(os.str());
  }
};

} // namespace

TEST_CASE("parity with HF tokenizers: every text under sentiment/ and the hard cases, tokenizer.json and vocab.txt") {
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_parity_" + std::to_string(::getpid()));
  fs::create_directories(work);
  std::vector<corpus> corpora = read_all_corpora();
  CHECK(corpora.size() == 14); // sst2 4, sst5 3, airline 1, phrasebank 2, amazon 2, fine_foods 2
  corpora.push_back({"hard cases", hard_cases()});
  json runs = json::array();
  std::size_t total = 0;
  for (const corpus& c : corpora) {
    runs.push_back({{"name", c.name}, {"texts", c.texts}, {"truncation", nullptr}, {"padding", nullptr}});
    total += c.texts.size();
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto reference = run_reference(runs, work);
  const auto t1 = std::chrono::steady_clock::now();

  const minibert::tokenizer from_json = minibert::tokenizer::from_pretrained(model_dir / "tokenizer.json");
  const minibert::tokenizer from_vocab = minibert::tokenizer::from_pretrained(model_dir / "vocab.txt");
  const minibert::tokenizer from_dir = minibert::tokenizer::from_pretrained(model_dir);
  const minibert::encode_options options;
  comparison cmp_json, cmp_vocab, cmp_dir;
  for (std::size_t r = 0; r < corpora.size(); ++r) {
    const corpus& c = corpora[r];
    // tokenizer.json through the batch path (several threads), vocab.txt one text at a time
    const std::vector<minibert::encoding> batch = from_json.encode_batch(c.texts, options);
    for (std::size_t t = 0; t < c.texts.size(); ++t) {
      cmp_json.check(c.name + " / tokenizer.json", c.texts[t], from_json, true, batch[t], "", reference[r][t]);
      cmp_vocab.check(c.name + " / vocab.txt", c.texts[t], from_vocab, true, from_vocab.encode(c.texts[t], options), "",
                      reference[r][t]);
      if (c.name == "hard cases")
        cmp_dir.check(c.name + " / directory", c.texts[t], from_dir, true, from_dir.encode(c.texts[t], options), "",
                      reference[r][t]);
    }
  }
  const auto t2 = std::chrono::steady_clock::now();
  MESSAGE("reference (python) " << std::chrono::duration<double>(t1 - t0).count() << " s, minibert + comparison "
                              << std::chrono::duration<double>(t2 - t1).count() << " s");
  MESSAGE("compared " << total << " texts (" << corpora.size() << " corpora incl. " << hard_cases().size()
                      << " hard cases): tokenizer.json " << cmp_json.differ << " differ, vocab.txt " << cmp_vocab.differ
                      << " differ, directory (hard cases) " << cmp_dir.differ << " differ");
  CHECK(cmp_json.texts == total);
  CHECK(cmp_json.differ == 0);
  CHECK(cmp_vocab.differ == 0);
  CHECK(cmp_dir.differ == 0);
  fs::remove_all(work);
}

namespace {

json pair_texts(const std::vector<std::pair<std::string, std::string>>& pairs) {
  json a = json::array();
  for (const auto& [x, y] : pairs) a.push_back(json::array({x, y}));
  return a;
}

minibert::encode_options options_of(const json& run) {
  minibert::encode_options o;
  o.add_special_tokens = run.value("add_special_tokens", true);
  if (!run.at("truncation").is_null()) {
    const json& t = run.at("truncation");
    minibert::truncation_options tr;
    tr.max_length = t.at("max_length").get<std::size_t>();
    const std::string st = t.at("strategy").get<std::string>();
    tr.strategy = st == "OnlyFirst"    ? minibert::truncation_strategy::only_first
                  : st == "OnlySecond" ? minibert::truncation_strategy::only_second
                                       : minibert::truncation_strategy::longest_first;
    tr.direction = t.at("direction").get<std::string>() == "left" ? minibert::side::left : minibert::side::right;
    o.truncation = tr;
  }
  if (!run.at("padding").is_null()) {
    const json& p = run.at("padding");
    minibert::padding_options pd;
    if (p.contains("max_length")) {
      pd.to = minibert::padding_options::strategy::fixed;
      pd.max_length = p.at("max_length").get<std::size_t>();
    }
    pd.pad_to_multiple_of = p.value("pad_to_multiple_of", std::size_t{0});
    pd.direction = p.value("direction", std::string("right")) == "left" ? minibert::side::left : minibert::side::right;
    o.padding = pd;
  }
  return o;
}

} // namespace

TEST_CASE("parity with HF tokenizers: pairs, truncation strategies, padding, no special tokens, decode") {
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_pairs_" + std::to_string(::getpid()));
  fs::create_directories(work);
  const std::vector<std::string> dev = read_tsv(data_dir / "sentiment/sst2/dev.tsv", "sentence");
  const std::vector<std::string> books = read_jsonl(data_dir / "sentiment/amazon_reviews/books.jsonl", "text");
  const std::vector<std::string> dvd = read_jsonl(data_dir / "sentiment/amazon_reviews/dvd.jsonl", "text");
  const std::vector<std::string> hard = hard_cases();
  using pair_list = std::vector<std::pair<std::string, std::string>>;
  pair_list pairs, long_pairs; // long_pairs: two reviews of hundreds of tokens each
  for (std::size_t i = 0; i + 1 < dev.size(); i += 2) pairs.emplace_back(dev[i], dev[i + 1]);
  for (std::size_t i = 0; i < 100; ++i) pairs.emplace_back(dev[i], books[i + 200]); // short first, long second
  for (std::size_t i = 0; i + 1 < hard.size(); ++i) pairs.emplace_back(hard[i], hard[i + 1]);
  for (std::size_t i = 0; i < 200; ++i) long_pairs.emplace_back(books[i], dvd[i]);
  pair_list all_pairs = pairs;
  all_pairs.insert(all_pairs.end(), long_pairs.begin(), long_pairs.end());
  // HF computes every overflowing window of a truncated pair (seemingly combining both sides' windows): two long
  // reviews truncated to 8 tokens took HF's reference 45 s per run, so the long pairs go only into the runs with room
  const auto pairs_for = [&](int max_length) -> const pair_list& { return max_length > 8 ? all_pairs : pairs; };
  std::vector<const pair_list*> run_pairs; // per run: its pairs, or nullptr for a run of single texts
  std::vector<std::string> singles(books.begin(), books.begin() + 300);
  singles.insert(singles.end(), hard.begin(), hard.end());

  json runs = json::array();
  const json no = nullptr;
  const auto add_run = [&](json run, const pair_list* with_pairs) {
    run["pairs"] = with_pairs != nullptr;
    if (with_pairs) run["texts"] = pair_texts(*with_pairs);
    runs.push_back(std::move(run));
    run_pairs.push_back(with_pairs);
  };
  add_run({{"name", "pairs"}, {"truncation", no}, {"padding", no}}, &all_pairs);
  for (const int max_length : {3, 8, 32, 128})
    for (const char* strategy : {"LongestFirst", "OnlyFirst", "OnlySecond"})
      for (const char* direction : {"right", "left"})
        add_run({{"name", std::string("pairs truncated ") + strategy + " " + direction + " " + std::to_string(max_length)},
                 {"truncation", {{"max_length", max_length}, {"strategy", strategy}, {"direction", direction}}},
                 {"padding", no}},
                &pairs_for(max_length));
  for (const char* strategy : {"LongestFirst", "OnlyFirst", "OnlySecond"})
    add_run({{"name", std::string("single truncated ") + strategy},
             {"texts", singles},
             {"truncation", {{"max_length", 64}, {"strategy", strategy}, {"direction", "right"}}},
             {"padding", no}},
            nullptr);
  add_run({{"name", "single padded to 64, truncated to 64"}, {"texts", singles},
           {"truncation", {{"max_length", 64}, {"strategy", "LongestFirst"}, {"direction", "right"}}},
           {"padding", {{"max_length", 64}}}},
          nullptr);
  add_run({{"name", "single padded to the longest, multiple of 8"}, {"texts", singles}, {"truncation", no},
           {"padding", {{"pad_to_multiple_of", 8}}}},
          nullptr);
  add_run({{"name", "pairs padded left to the longest"},
           {"truncation", {{"max_length", 100}, {"strategy", "LongestFirst"}, {"direction", "right"}}},
           {"padding", {{"direction", "left"}}}},
          &all_pairs);
  add_run({{"name", "pairs without special tokens, truncated to 20"},
           {"truncation", {{"max_length", 20}, {"strategy", "LongestFirst"}, {"direction", "right"}}},
           {"padding", no},
           {"add_special_tokens", false}},
          &all_pairs);
  std::vector<std::string> decode_texts = hard;
  decode_texts.insert(decode_texts.end(), dev.begin(), dev.end());
  add_run({{"name", "decode"}, {"texts", decode_texts}, {"truncation", no}, {"padding", no}, {"decode", true}}, nullptr);

  json decoded;
  const auto reference = run_reference(runs, work, &decoded);
  const minibert::tokenizer tok = minibert::tokenizer::from_pretrained(model_dir / "tokenizer.json");
  comparison cmp;
  std::size_t threw = 0;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const json& run = runs[r];
    const std::string name = run.at("name").get<std::string>();
    const bool is_pair = run_pairs[r] != nullptr;
    static const pair_list no_pairs;
    const pair_list& pairs = is_pair ? *run_pairs[r] : no_pairs;
    const minibert::encode_options o = options_of(run);
    const std::size_t n = run.at("texts").size();
    const auto text_of = [&](std::size_t i) {
      return is_pair ? pairs[i].first + " ||| " + pairs[i].second : run.at("texts")[i].get<std::string>();
    };
    if (o.padding && o.padding->to == minibert::padding_options::strategy::longest) {
      std::vector<minibert::encoding> got; // padding to the longest is per batch
      if (is_pair) {
        std::vector<std::pair<std::string_view, std::string_view>> views(pairs.begin(), pairs.end());
        got = tok.encode_batch(views, o);
      } else {
        got = tok.encode_batch(run.at("texts").get<std::vector<std::string>>(), o);
      }
      for (std::size_t i = 0; i < n; ++i) cmp.check(name, text_of(i), tok, true, got[i], "", reference[r][i]);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      minibert::encoding got;
      std::string err;
      bool ok = true;
      try {
        got = is_pair ? tok.encode(pairs[i].first, pairs[i].second, o) : tok.encode(run.at("texts")[i].get<std::string>(), o);
      } catch (const minibert::error& e) {
        ok = false;
        err = e.what();
        ++threw;
      }
      cmp.check(name, text_of(i), tok, ok, got, err, reference[r][i]);
    }
  }
  // decode(ids) and decode(ids, skip_special_tokens) of HF's own ids
  const std::size_t decode_run = runs.size() - 1;
  std::size_t decode_differ = 0;
  for (std::size_t i = 0; i < decode_texts.size(); ++i) {
    const std::vector<std::int32_t>& ids = reference[decode_run][i].e.ids;
    for (const bool skip : {false, true}) {
      const std::string want = decoded.at(0).at(i).at(skip ? 1 : 0).get<std::string>();
      const std::string got = tok.decode(ids, skip);
      if (got != want && decode_differ++ < 8)
        MESSAGE("DECODE MISMATCH (skip_special_tokens " << skip << ") text " << escaped(decode_texts[i]) << "\n  HF:       "
                                                        << escaped(want) << "\n  minibert: " << escaped(got));
    }
  }
  MESSAGE("compared " << cmp.texts << " encodings in " << runs.size() << " runs (" << threw
                      << " truncation errors, thrown by both), " << cmp.differ << " differ; decoded "
                      << 2 * decode_texts.size() << " id lists, " << decode_differ << " differ");
  CHECK(cmp.differ == 0);
  CHECK(decode_differ == 0);
  CHECK(threw > 0); // the only_first / only_second runs must exercise the error path
  fs::remove_all(work);
}

TEST_CASE("parity with HF tokenizers: every code point through BertNormalizer and BertPreTokenizer") {
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_unicode_" + std::to_string(::getpid()));
  fs::create_directories(work);
  const fs::path out = work / "unicode.txt";
  const std::string cmd = reference_command({"unicode", (model_dir / "tokenizer.json").string(), out.string()});
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
  // HF: one line per code point that some stage changes ("cp clean strip lower full pre")
  std::vector<std::string> want(minibert::detail::max_code_point + 1);
  for (const std::string& line : split_lines(slurp(out))) {
    if (line.empty()) continue;
    const std::size_t sp = line.find(' ');
    want[std::stoul(line.substr(0, sp), nullptr, 16)] = line.substr(sp + 1);
  }
  const minibert::normalizer_options clean{true, false, false, false}, strip{false, false, true, false},
      lower{false, false, false, true}, full{true, true, true, true};
  const auto hex = [](const std::string& s, const std::string& original) -> std::string {
    if (s == original) return "=";
    if (s.empty()) return "-";
    std::ostringstream os;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (std::size_t i = 0; i < s.size();) {
      char32_t cp = 0;
      const int len = minibert::detail::decode_utf8(p + i, p + s.size(), cp);
      REQUIRE(len > 0); // normalize never writes invalid UTF-8
      os << (i ? "." : "") << std::hex << static_cast<unsigned long>(cp);
      i += static_cast<std::size_t>(len);
    }
    return os.str();
  };
  struct piece_counter { // the pre-tokenizer's pieces
    int pieces = 0;
    bool in_word = false;
    void word(const char*, int, std::uint32_t, std::uint32_t) {
      if (!in_word) ++pieces;
      in_word = true;
    }
    void punct(const char*, int, std::uint32_t, std::uint32_t) { ++pieces, in_word = false; }
    void space(const char*, int, std::uint32_t, std::uint32_t) { in_word = false; }
  };
  const minibert::detail::bert_normalizer raw(minibert::normalizer_options{false, false, false, false});
  std::size_t differ = 0, checked = 0;
  char buf[8];
  for (char32_t cp = 0; cp <= minibert::detail::max_code_point; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string s(buf, static_cast<std::size_t>(minibert::detail::encode_utf8(cp, buf)));
    piece_counter pc;
    raw.normalize_char('a', 0, 1, pc);
    raw.normalize_char(cp, 1, 2, pc);
    raw.normalize_char('b', 2, 3, pc);
    std::ostringstream got;
    got << hex(minibert::normalize(s, clean), s) << ' ' << hex(minibert::normalize(s, strip), s) << ' '
        << hex(minibert::normalize(s, lower), s) << ' ' << hex(minibert::normalize(s, full), s) << ' ' << pc.pieces;
    const std::string expect = want[cp].empty() ? "= = = = 1" : want[cp];
    ++checked;
    if (got.str() != expect && differ++ < 20)
      MESSAGE("U+" << std::hex << static_cast<unsigned long>(cp) << std::dec << ": HF \"" << expect << "\" minibert \""
                   << got.str() << "\" (clean strip lower full pieces)");
  }
  MESSAGE("checked " << checked << " code points, " << differ << " differ");
  CHECK(differ == 0);
  fs::remove_all(work);
}

TEST_CASE("parity with HF tokenizers: other normalizer settings, added tokens with lstrip / rstrip / single_word / normalized") {
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_variants_" + std::to_string(::getpid()));
  fs::create_directories(work);
  const json base = json::parse(slurp(model_dir / "tokenizer.json"));
  std::vector<std::pair<std::string, json>> variants;
  const auto with_normalizer = [&](const char* name, json n) {
    json j = base;
    j["normalizer"] = std::move(n);
    variants.emplace_back(name, std::move(j));
  };
  with_normalizer("cased", {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                            {"strip_accents", nullptr}, {"lowercase", false}});
  with_normalizer("no clean_text, no CJK", {{"type", "BertNormalizer"}, {"clean_text", false}, {"handle_chinese_chars", false},
                                            {"strip_accents", false}, {"lowercase", true}});
  with_normalizer("strip accents only", {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                                         {"strip_accents", true}, {"lowercase", false}});
  with_normalizer("no normalizer", nullptr);
  {
    json j = base;
    j["model"]["max_input_chars_per_word"] = 10;
    auto& added = j["added_tokens"];
    const auto add = [&](int id, const char* content, bool special, bool single_word, bool lstrip, bool rstrip, bool normalized) {
      added.push_back({{"id", id}, {"content", content}, {"special", special}, {"single_word", single_word},
                       {"lstrip", lstrip}, {"rstrip", rstrip}, {"normalized", normalized}});
    };
    add(30522, "MyToken", false, false, false, false, true);
    add(30523, "<ent>", true, false, true, true, false);
    add(30524, "ab", false, true, false, false, false);
    add(30525, "中文", false, false, false, false, true);
    add(30526, "Ünïcode", false, false, false, false, true);
    add(1996, "the", false, false, false, false, true); // already in the vocabulary
    add(30527, "[X]", true, true, true, false, false);
    // normalized form in the vocabulary, not the content. (Not "The": two added tokens with one normalized form are
    // matched at random by HF, the order of a Rust HashMap.)
    add(30528, "Theme", false, false, false, false, true);
    add(30529, "Spec", true, false, false, false, true);   // special and normalized: decodes as "spec", not skipped
    add(7592, "hello", true, false, false, false, false);  // special, in the vocabulary: skipped by decode
    add(30530, "Zzq", false, false, false, false, false);
    add(30531, "Zzq", false, false, false, false, false);  // twice: one id
    variants.emplace_back("added tokens, max_input_chars_per_word 10", std::move(j));
  }
  std::vector<std::string> texts = hard_cases();
  const std::vector<std::string> tweets = read_csv(data_dir / "sentiment/airline_tweets/Tweets.csv", "text");
  texts.insert(texts.end(), tweets.begin(), tweets.begin() + 2000);
  for (const char* t : {"I like MyToken and mytoken and MYTOKEN.", "x <ent> y", "x<ent>y", "  <ent>  z", "<ent><ent>",
                        "ab abc cab ab", "ab_c ab-c (ab) ab.", "中文 中文字 文中文", "the THE The theme", "MyTokenMyToken",
                        "ünïcode ÜNÏCODE Ünïcode", "a [X] b[X]c [X]", "tab\t<ent>\tx", "\u3000<ent>\u3000",
                        "x The the theme Theme themes spec Spec hello Zzq zzq"})
    texts.emplace_back(t);
  std::size_t differ = 0, compared = 0;
  for (std::size_t v = 0; v < variants.size(); ++v) {
    const fs::path tj = work / ("tokenizer_" + std::to_string(v) + ".json");
    std::ofstream(tj, std::ios::binary) << variants[v].second.dump();
    json runs = json::array();
    runs.push_back({{"name", variants[v].first}, {"texts", texts}, {"truncation", nullptr}, {"padding", nullptr}, {"decode", true}});
    json decoded;
    const auto reference = run_reference(runs, work, &decoded, tj);
    const minibert::tokenizer tok = minibert::tokenizer::from_pretrained(tj);
    comparison cmp;
    std::size_t decode_differ = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      cmp.check(variants[v].first, texts[i], tok, true, tok.encode(texts[i], minibert::encode_options{}), "", reference[0][i]);
      for (const bool skip : {false, true}) {
        const std::string want = decoded.at(0).at(i).at(skip ? 1 : 0).get<std::string>();
        const std::string got = tok.decode(reference[0][i].e.ids, skip);
        if (got != want && decode_differ++ < 5)
          MESSAGE("DECODE MISMATCH [" << variants[v].first << "] " << escaped(texts[i]) << "\n  HF:       " << escaped(want)
                                      << "\n  minibert: " << escaped(got));
      }
    }
    MESSAGE(variants[v].first << ": " << cmp.texts << " texts, " << cmp.differ << " differ; decode " << decode_differ
                              << " differ");
    differ += cmp.differ + decode_differ;
    compared += cmp.texts;
  }
  CHECK(compared == variants.size() * texts.size());
  CHECK(differ == 0);
  fs::remove_all(work);
}

TEST_CASE("unicode_tables.hpp holds the range tables the reference prints (tokenizer_reference.py unicode-tables)") {
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_tables_" + std::to_string(::getpid()));
  fs::create_directories(work);
  const fs::path out = work / "tables.txt";
  const std::string cmd = reference_command({"unicode-tables"}) + " > '" + out.string() + "'";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
  const std::string printed = slurp(out);
  const std::string header =
      slurp(fs::path(MINIBERT_TEST_SOURCE_DIR).parent_path() / "include/minibert/tokenizer/unicode_tables.hpp");
  // the three tables, each "// comment (N ranges)\ninline constexpr code_point_range NAME[] = {...};"
  CHECK(std::count(printed.begin(), printed.end(), '{') == std::count(printed.begin(), printed.end(), '}'));
  for (const char* name : {"hf_removed_by_clean_text", "hf_nonspacing_mark", "hf_punctuation"})
    CHECK_MESSAGE(printed.find(std::string("code_point_range ") + name + "[]") != std::string::npos, name);
  CHECK_MESSAGE(header.find(printed) != std::string::npos,
                "include/minibert/tokenizer/unicode_tables.hpp differs from what the reference prints: regenerate it "
                "with `.venv/bin/python tests/python/tokenizer_reference.py unicode-tables`\n"
                << printed);
  fs::remove_all(work);
}

TEST_CASE("parity with transformers' BertTokenizerFast and BertTokenizer on all-MiniLM-L6-v2's own files, as trained") {
  // The pretrained model's tokenizer files in the hub cache, loaded by minibert as the trainer loads them
  // (from_pretrained of the snapshot directory, or of its vocab.txt) and by transformers as its users load them.
  const fs::path snapshot = minibert::resolve_model_path("sentence-transformers/all-MiniLM-L6-v2");
  for (const char* f : {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"})
    REQUIRE_MESSAGE(fs::exists(snapshot / f), (snapshot / f) << " is missing: run scripts/install_deps.sh");
  const fs::path work = fs::temp_directory_path() / ("minibert_tok_transformers_" + std::to_string(::getpid()));
  fs::create_directories(work);
  const std::vector<corpus> corpora = {
      {"sst2/test.tsv", read_tsv(data_dir / "sentiment/sst2/test.tsv", "sentence")},
      {"sst2/train.tsv", read_tsv(data_dir / "sentiment/sst2/train.tsv", "sentence")},
      // long reviews: SST-2 sentences never reach 128 tokens, these do (the truncation path)
      {"amazon_reviews/books.jsonl", read_jsonl(data_dir / "sentiment/amazon_reviews/books.jsonl", "text")},
  };
  constexpr std::size_t max_length = 128, batch_size = 32; // the trainer's --max-length and --batch-size defaults
  json runs = json::array();
  for (const char* loader : {"fast", "fast-vocab", "slow"})
    for (const corpus& c : corpora)
      for (const bool batched : {false, true})
        runs.push_back({{"name", std::string(loader) + " " + c.name + (batched ? " batches of 32, padded" : " one by one")},
                        {"loader", loader}, {"texts", c.texts}, {"max_length", max_length},
                        {"batch_size", batched ? batch_size : 1}, {"padding", batched}});
  const auto t0 = std::chrono::steady_clock::now();
  const auto reference = run_python("transformers", snapshot, runs, work,
                                    [](const json& run) { return run.at("loader").get<std::string>() != "slow"; });
  const auto t1 = std::chrono::steady_clock::now();

  const minibert::tokenizer from_dir = minibert::tokenizer::from_pretrained(snapshot);
  const minibert::tokenizer from_vocab = minibert::tokenizer::from_pretrained(snapshot / "vocab.txt");
  minibert::encode_options single;
  single.truncation = minibert::truncation_options{max_length}; // longest_first, right: transformers' truncation=True
  minibert::encode_options padded = single;
  padded.padding = minibert::padding_options{}; // to the longest of the batch
  std::size_t compared = 0, differ = 0, truncated = 0, padded_rows = 0;
  std::size_t r = 0;
  for (const char* loader : {"fast", "fast-vocab", "slow"}) {
    // BertTokenizerFast from tokenizer.json <-> minibert from the directory (tokenizer.json + tokenizer_config.json);
    // from vocab.txt <-> minibert from vocab.txt; the slow BertTokenizer <-> both.
    const std::string l = loader;
    std::vector<const minibert::tokenizer*> toks;
    if (l != "fast-vocab") toks.push_back(&from_dir);
    if (l != "fast") toks.push_back(&from_vocab);
    for (const corpus& c : corpora) {
      for (const bool batched : {false, true}) {
        const std::string name = runs[r].at("name").get<std::string>();
        const auto& want = reference[r++];
        REQUIRE(want.size() == c.texts.size());
        for (const minibert::tokenizer* tok : toks) {
          const std::string what = name + (tok == &from_dir ? " / minibert directory" : " / minibert vocab.txt");
          comparison cmp;
          cmp.offsets = l != "slow";
          if (batched) {
            for (std::size_t b = 0; b < c.texts.size(); b += batch_size) {
              const std::vector<std::string> batch(c.texts.begin() + static_cast<std::ptrdiff_t>(b),
                                                   c.texts.begin() + static_cast<std::ptrdiff_t>(std::min(b + batch_size, c.texts.size())));
              const std::vector<minibert::encoding> got = tok->encode_batch(batch, padded);
              for (std::size_t i = 0; i < batch.size(); ++i) {
                cmp.check(what, batch[i], *tok, true, got[i], "", want[b + i]);
                padded_rows += std::count(got[i].attention_mask.begin(), got[i].attention_mask.end(), 0) > 0;
              }
            }
          } else {
            // the whole corpus through encode_batch, as the trainer's tokenize_dataset, and one text at a time
            const std::vector<minibert::encoding> all = tok->encode_batch(c.texts, single);
            comparison one = cmp;
            for (std::size_t i = 0; i < c.texts.size(); ++i) {
              cmp.check(what + " (encode_batch)", c.texts[i], *tok, true, all[i], "", want[i]);
              one.check(what + " (encode)", c.texts[i], *tok, true, tok->encode(c.texts[i], single), "", want[i]);
              truncated += all[i].size() == max_length;
            }
            compared += one.texts;
            differ += one.differ;
          }
          compared += cmp.texts;
          differ += cmp.differ;
          if (cmp.differ) MESSAGE(what << ": " << cmp.differ << " of " << cmp.texts << " differ");
        }
      }
    }
  }
  const auto t2 = std::chrono::steady_clock::now();
  MESSAGE("transformers " << std::chrono::duration<double>(t1 - t0).count() << " s, minibert + comparison "
                          << std::chrono::duration<double>(t2 - t1).count() << " s; compared " << compared
                          << " encodings (" << truncated << " cut at " << max_length << ", " << padded_rows
                          << " padded), " << differ << " differ");
  CHECK(r == runs.size());
  // per text: fast 3 (encode_batch, encode, padded batch), fast-vocab 3, slow 6 (against both minibert loaders)
  CHECK(compared == 12 * (corpora[0].texts.size() + corpora[1].texts.size() + corpora[2].texts.size()));
  CHECK(truncated > 0); // the truncation and padding paths must be exercised
  CHECK(padded_rows > 0);
  CHECK(differ == 0);
  fs::remove_all(work);
}

} // namespace test_tokenizer_parity
