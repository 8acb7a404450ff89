// SPDX-License-Identifier: MIT
// minibert/data.hpp: every rejection (each message must name the file and the line), the column and label rules,
// every real data file under ../shared/data/sentiment with the row counts of its README, and the seeded split
// (golden values from an independent Python implementation of splitmix64 + Fisher-Yates).
#include <doctest/doctest.h>

#include <chrono>     // steady_clock
#include <cstdint>    // int64_t
#include <filesystem> // path, create_directories
#include <fstream>    // ofstream
#include <algorithm>  // is_sorted
#include <set>        // set
#include <string>     // string
#include <vector>     // vector

#include <minibert/data.hpp>

namespace test_data { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using minibert::data_format;
using minibert::dataset;
using minibert::label_kind;
using minibert::read_options;

namespace {

const fs::path sentiment_dir = fs::path(MINIBERT_TEST_SHARED_DIR) / "data" / "sentiment";
const fs::path scratch_dir = fs::path(MINIBERT_TEST_BINARY_DIR) / "test_data_files";

// Writes `content` to a scratch file and returns its path.
fs::path scratch(const std::string& name, const std::string& content) {
  fs::create_directories(scratch_dir);
  const fs::path p = scratch_dir / name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

// f() must throw a minibert::error whose message holds every part.
template <class F> std::string expect_error(F&& f, std::initializer_list<std::string> parts) {
  std::string what;
  try {
    f();
  } catch (const minibert::error& e) {
    what = e.what();
  }
  REQUIRE_MESSAGE(!what.empty(), "expected a minibert::error");
  for (const auto& p : parts) CHECK_MESSAGE(what.find(p) != std::string::npos, "\"" << what << "\" lacks \"" << p << "\"");
  return what;
}

// parse_dataset(content) must fail with "[minibert.data] <name>:<line>: ..." holding every part.
void expect_parse_error(const std::string& name, const std::string& content, std::size_t line,
                        std::initializer_list<std::string> parts, const read_options& opt = {}) {
  const std::string what = expect_error([&] { minibert::parse_dataset(content, name, opt); }, parts);
  const std::string where = "[minibert.data] " + name + (line > 0 ? ":" + std::to_string(line) : std::string()) + ": ";
  CHECK_MESSAGE(what.rfind(where, 0) == 0, "\"" << what << "\" does not start with \"" << where << "\"");
}

dataset parse(const std::string& name, const std::string& content, const read_options& opt = {}) {
  return minibert::parse_dataset(content, name, opt);
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// formats

TEST_CASE("tsv: header, rows, CRLF, BOM, blank lines, line numbers") {
  const dataset d = parse("a.tsv", "\xEF\xBB\xBFsentence\tlabel\r\nfine film\t1\r\n\r\nbad \"film\"\t0\r\n");
  REQUIRE(d.size() == 2);
  CHECK(d[0].text == "fine film");
  CHECK(d[0].label == 1);
  CHECK(d[0].line == 2);
  CHECK(d[1].text == "bad \"film\""); // no quoting in TSV
  CHECK(d[1].line == 4);
  CHECK(d.label_names == std::vector<std::string>{"0", "1"});
  CHECK(d.has_labels);
  CHECK(d.path == "a.tsv");
}

TEST_CASE("csv: RFC 4180 quoting, embedded newlines/commas/quotes, CRLF, line of a record's first line") {
  const std::string csv = "id,text,label\r\n"
                          "1,\"hello, world\",pos\r\n"
                          "2,\"she said \"\"hi\"\"\nand left\",neg\r\n"
                          "3,plain text,pos\r\n"
                          "4,\"\",neg\n"
                          "5,un\"quoted,pos";
  read_options o;
  o.allow_empty_text = true;
  const dataset d = parse("b.csv", csv, o);
  REQUIRE(d.size() == 5);
  CHECK(d[0].text == "hello, world");
  CHECK(d[1].text == "she said \"hi\"\nand left");
  CHECK(d[1].line == 3);
  CHECK(d[2].text == "plain text");
  CHECK(d[2].line == 5); // the record above spans lines 3-4
  CHECK(d[3].text.empty());
  CHECK(d[4].text == "un\"quoted"); // a quote inside an unquoted field is a character
  CHECK(d.label_names == std::vector<std::string>{"neg", "pos"});
  CHECK(d[0].label == 1);
  CHECK(d[1].label == 0);
}

TEST_CASE("jsonl: objects per line, blank lines skipped, text pairs, integer and string labels") {
  const dataset a = parse("c.jsonl", "{\"text\": \"a\", \"label\": 2}\n\n{\"label\": 0, \"text\": \"b\\u00e9\"}\n");
  REQUIRE(a.size() == 2);
  CHECK(a[1].text == "b\xC3\xA9");
  CHECK(a[1].line == 3);
  CHECK(a.label_names == std::vector<std::string>{"0", "1", "2"});
  read_options o;
  o.text_column = "premise";
  o.text_pair_column = "hypothesis";
  const dataset p = parse("p.jsonl", "{\"premise\": \"x\", \"hypothesis\": \"y\", \"label\": \"entailment\"}\n", o);
  CHECK(p.has_text_pair);
  CHECK(p[0].text == "x");
  CHECK(p[0].text_pair == "y");
  CHECK(p.label_names == std::vector<std::string>{"entailment"});
}

TEST_CASE("text_at_label: split at the last '@', CRLF, BOM") {
  const dataset d = parse("f.txt", "\xEF\xBB\xBFmail me @ home .@neutral\r\nup 5 % .@positive\r\n");
  REQUIRE(d.size() == 2);
  CHECK(d[0].text == "mail me @ home .");
  CHECK(d.label_names == std::vector<std::string>{"neutral", "positive"});
  CHECK(d[1].label == 1);
}

TEST_CASE("format detection by content when the extension says nothing") {
  CHECK(parse("x.data", "{\"text\": \"a\", \"label\": 0}\n").size() == 1);
  CHECK(parse("x.data", "sentence\tlabel\na\t0\n").size() == 1);
  CHECK(parse("x.data", "text,label\na,0\n").size() == 1);
  read_options o;
  o.format = data_format::csv; // forced: a .tsv name holding CSV
  CHECK(parse("x.tsv", "text,label\n\"a,b\",0\n", o)[0].text == "a,b");
  expect_parse_error("x.data", "just words\n", 0, {"cannot tell the format"});
}

// ---------------------------------------------------------------------------------------------------------------
// columns and labels

TEST_CASE("columns: defaults, explicit names, prediction input without labels") {
  const dataset d = parse("t.tsv", "text\tsentence\tlabel\na\tb\t0\n");
  CHECK(d[0].text == "b"); // "sentence" is preferred over "text"
  read_options o;
  o.text_column = "text";
  CHECK(parse("t.tsv", "text\tsentence\tlabel\na\tb\t0\n", o)[0].text == "a");
  read_options pred;
  pred.require_labels = false;
  const dataset u = parse("u.tsv", "sentence\nno label here\n", pred);
  CHECK_FALSE(u.has_labels);
  CHECK(u[0].label == -1);
  CHECK(u.label_names.empty());
  pred.label_names = {"neg", "pos"};
  CHECK(parse("u.jsonl", "{\"text\": \"a\"}\n", pred).label_names == pred.label_names);
}

TEST_CASE("labels: integer-like strings are ids, names are sorted, given names fix the mapping") {
  CHECK(parse("a.tsv", "sentence\tlabel\na\t 3 \nb\t0\n").num_labels() == 4); // ids 0..3, white space trimmed
  const dataset n = parse("n.csv", "text,label\na,positive\nb,negative\nc,neutral\nd,2\n");
  CHECK(n.label_names == std::vector<std::string>{"2", "negative", "neutral", "positive"}); // one name: all names
  read_options o;
  o.label_names = {"positive", "negative"};
  const dataset g = parse("g.jsonl", "{\"text\": \"a\", \"label\": \"negative\"}\n{\"text\": \"b\", \"label\": \"positive\"}\n", o);
  CHECK(g[0].label == 1);
  CHECK(g[1].label == 0);
  CHECK(g.label_names == o.label_names);
  o.label_names = {"neg", "pos", "neutral"};
  CHECK(parse("i.tsv", "sentence\tlabel\na\t2\n", o)[0].label == 2); // ids within the given range
  read_options names;
  names.labels = label_kind::names;
  const dataset s = parse("s.tsv", "sentence\tlabel\na\t10\nb\t9\n", names);
  CHECK(s.label_names == std::vector<std::string>{"10", "9"}); // byte-wise order
  read_options stars;
  stars.labels = label_kind::names;
  stars.label_names = {"1", "2", "3", "4", "5"}; // a model whose id2label is the star count
  CHECK(parse("r.tsv", "sentence\tlabel\na\t5\n", stars)[0].label == 4);
}

// ---------------------------------------------------------------------------------------------------------------
// rejections: each names the file and the line

TEST_CASE("errors: missing, empty and header-only files") {
  expect_error([] { minibert::read_dataset(scratch_dir / "does_not_exist.tsv"); },
               {"[minibert.data]", "does_not_exist.tsv", "no such file"});
  fs::create_directories(scratch_dir);
  expect_error([] { minibert::read_dataset(scratch_dir); }, {scratch_dir.string(), "is a directory"});
  expect_error([] { minibert::read_dataset(scratch("empty.tsv", "")); }, {"empty.tsv", "empty file"});
  expect_error([] { minibert::read_dataset(scratch("bom_only.csv", "\xEF\xBB\xBF\n\n")); }, {"bom_only.csv", "empty file"});
  expect_error([] { minibert::read_dataset(scratch("header.tsv", "sentence\tlabel\n")); }, {"header.tsv:1:", "no data rows"});
  expect_parse_error("h.csv", "\ntext,label\r\n\r\n", 2, {"no data rows after the header"});
  expect_parse_error("e.jsonl", "\n  \n", 0, {"empty file"});
}

TEST_CASE("errors: invalid UTF-8 names the line and the byte offset in it") {
  expect_parse_error("u.tsv", "sentence\tlabel\nok\t1\ncaf\xE9 au lait\t0\n", 3, {"invalid UTF-8 at byte 3 of the line", "0xE9"});
  expect_parse_error("u.tsv", "sentence\tlabel\n\xED\xA0\x80 surrogate\t0\n", 2, {"invalid UTF-8 at byte 0"});
  expect_parse_error("u.tsv", "sentence\tlabel\nover\xC0\xAFlong\t0\n", 2, {"byte 4"});
  expect_parse_error("u.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"\xF5\", \"label\": 0}\n", 2, {"byte 10"});
  CHECK(parse("ok.tsv", "sentence\tlabel\n\xF0\x9F\x98\x80 \xE2\x82\xAC\t1\n")[0].text == "\xF0\x9F\x98\x80 \xE2\x82\xAC");
}

TEST_CASE("errors: missing columns list the columns present") {
  expect_parse_error("m.tsv", "review\tscore\na\t1\n", 1, {"no text column", "'review', 'score'"});
  read_options o;
  o.text_column = "body";
  expect_parse_error("m.csv", "title,text,label\na,b,0\n", 1, {"text column 'body' not found", "'title', 'text', 'label'"}, o);
  expect_parse_error("m.tsv", "sentence\tstars\na\t1\n", 1, {"label column 'label' not found", "'sentence', 'stars'"});
  read_options p;
  p.text_pair_column = "hypothesis";
  expect_parse_error("m.jsonl", "\n{\"text\": \"a\", \"label\": 0}\n", 2, {"text pair column 'hypothesis' not found", "'text', 'label'"}, p);
  expect_parse_error("m.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"txt\": \"b\", \"label\": 0}\n", 2,
                     {"field 'text' missing", "'txt', 'label'"});
  expect_parse_error("d.tsv", "sentence\tsentence\tlabel\na\tb\t0\n", 1, {"'sentence' appears twice"});
}

TEST_CASE("errors: wrong number of fields") {
  expect_parse_error("f.tsv", "sentence\tlabel\na\t1\nb\tc\t0\n", 3, {"expected 2 tab-separated fields", "found 3"});
  expect_parse_error("f.tsv", "sentence\tlabel\na\t1\n\nno tab\n", 4, {"found 1"});
  expect_parse_error("f.csv", "text,label\r\n\"multi\nline\",1\r\na,b,0\r\n", 4, {"expected 2 comma-separated fields", "found 3"});
}

TEST_CASE("errors: a JSONL line nested 100k deep, or with a number past a double, names the file and line") {
  // fuzzing reproducer: the bad label's message dump()ed it recursively and overflowed the stack
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_parse_error("deep.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": " + deep + "}\n", 2,
                     {"JSON nested deeper than 256 levels"});
  // nlohmann's out_of_range.406 escaped as its own exception, without the file
  expect_parse_error("big.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 1e999}\n", 2,
                     {"broken JSON line", "1e999"});
}

TEST_CASE("errors: unterminated quote names the line where the field opened, junk after a closing quote") {
  expect_parse_error("q.csv", "text,label\na,1\n\"never closed,0\nb,1\nc,0\n", 3, {"unterminated quoted field"});
  expect_parse_error("q.csv", "text,label\n\"two\nlines\"x,1\n", 3, {"unexpected character 'x' after the closing quote", "opened on line 2"});
}

TEST_CASE("errors: broken JSONL lines") {
  expect_parse_error("j.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 0\n", 2,
                     {"broken JSON line", "parse error"});
  expect_parse_error("j.jsonl", "[\"text\", 0]\n", 1, {"expected a JSON object per line, found a array"});
  expect_parse_error("j.jsonl", "{\"text\": 5, \"label\": 0}\n", 1, {"field 'text' is a number, expected a string"});
  expect_parse_error("j.jsonl", "{\"text\": \"a\", \"label\": 0.5}\n", 1, {"label 0.5", "expected an integer or a string"});
  expect_parse_error("j.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": null}\n", 2, {"label missing (null field 'label')"});
  expect_parse_error("j.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\"}\n", 2, {"label missing (no field 'label')"});
  expect_parse_error("j.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"pos\"}\n", 2,
                     {"label 'pos' is a name, but line 1 has the number 1"});
}

TEST_CASE("errors: empty text, missing label, '@' format") {
  expect_parse_error("t.tsv", "sentence\tlabel\na\t1\n  \t0\n", 3, {"empty text in column 'sentence'", "allow_empty_text"});
  expect_parse_error("t.csv", "text,label\na,1\nb,\n", 3, {"label missing (empty field 'label')"});
  expect_parse_error("t.txt", "fine@positive\nno separator\n", 2, {"no '@' separating"});
  read_options o;
  o.allow_empty_text = true;
  CHECK(parse("t.tsv", "sentence\tlabel\n\t0\n", o)[0].text.empty());
}

TEST_CASE("errors: label ids out of range, negative, unknown names") {
  read_options o;
  o.label_names = {"negative", "positive"};
  expect_parse_error("r.tsv", "sentence\tlabel\na\t1\nb\t2\n", 3,
                     {"label 2 out of range", "valid ids are 0..1", "'negative', 'positive'"}, o);
  expect_parse_error("r.tsv", "sentence\tlabel\na\t-1\n", 2, {"label -1 is negative"});
  expect_parse_error("r.jsonl", "{\"text\": \"a\", \"label\": \"neutral\"}\n", 1,
                     {"unknown label 'neutral'", "known labels: 'negative', 'positive'"}, o);
  expect_parse_error("r.tsv", "sentence\tlabel\na\t99999999999999999999\n", 2, {"too large"});
  expect_parse_error("r.tsv", "sentence\tlabel\na\t5000000\n", 2, {"too large"});
  read_options ids;
  ids.labels = label_kind::ids;
  expect_parse_error("r.csv", "text,label\na,0\nb,pos\n", 3, {"label 'pos' is not an integer id"}, ids);
  read_options dup;
  dup.label_names = {"a", "b", "a"};
  expect_error([&] { parse("r.tsv", "sentence\tlabel\nx\t0\n", dup); }, {"r.tsv", "lists 'a' twice"});
}

TEST_CASE("errors: a 1 GiB line is refused naming its line; the limit is read_options::max_record_bytes") {
  // a sparse file: header, one row, then a line of 2^30 NUL bytes (valid UTF-8) and ",0". read_dataset maps the file
  // and checks line lengths before anything is copied out of it (it used to read the whole file into a string).
  const fs::path p = scratch("huge_line.csv", "text,label\nfine,1\n");
  fs::resize_file(p, fs::file_size(p) + (std::size_t{1} << 30));
  std::ofstream(p, std::ios::binary | std::ios::app) << ",0\n";
  const auto t0 = std::chrono::steady_clock::now();
  expect_error([&] { minibert::read_dataset(p); },
               {p.string() + ":3: line of 1073741826 bytes exceeds the limit of 16777216",
                "read_options::max_record_bytes"});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
  fs::remove(p);

  read_options small;
  small.max_record_bytes = 40;
  const std::string line = "one line of forty-one bytes with labels,1\n"; // 41 bytes before the newline
  expect_parse_error("long.csv", "text,label\n" + line, 2, {"line of 41 bytes exceeds the limit of 40"}, small);
  // a quoted CSV field spans lines, each under the limit: the record as a whole is refused
  expect_parse_error("multi.csv", "text,label\n\"" + std::string(30, 'x') + "\n" + std::string(30, 'y') + "\",1\n", 2,
                     {"record of 65 bytes exceeds the limit of 40"}, small);
  small.max_record_bytes = 41;
  CHECK(parse("ok.csv", "text,label\n" + line, small).size() == 1);
}

TEST_CASE("errors from read_dataset name the real path") {
  const fs::path p = scratch("bad_row.tsv", "sentence\tlabel\ngood\t1\nbad\n");
  expect_error([&] { minibert::read_dataset(p); }, {"[minibert.data] " + p.string() + ":3:", "found 1"});
}

// ---------------------------------------------------------------------------------------------------------------
// the real files (counts from ../shared/data/README.md)

TEST_CASE("real data files: row counts and labels") {
  struct file_case {
    const char* path;
    std::size_t rows;
    std::vector<std::string> labels;
    std::vector<std::size_t> counts; // per id; empty: not checked
    const char* text_column = "";
    const char* label_column = "label";
  };
  const std::vector<file_case> cases = {
      {"sst2/train.tsv", 12000, {"0", "1"}, {5579, 6421}},
      {"sst2/test.tsv", 1821, {"0", "1"}, {912, 909}},
      {"sst2/dev.tsv", 872, {"0", "1"}, {428, 444}},
      {"sst2/train_full.tsv", 67349, {"0", "1"}, {29780, 37569}},
      {"sst5/train.tsv", 8544, {"0", "1", "2", "3", "4"}, {}},
      {"sst5/dev.tsv", 1101, {"0", "1", "2", "3", "4"}, {}},
      {"sst5/test.tsv", 2210, {"0", "1", "2", "3", "4"}, {}},
      {"airline_tweets/Tweets.csv", 14640, {"negative", "neutral", "positive"}, {9178, 3099, 2363}, "text", "airline_sentiment"},
      {"financial_phrasebank/Sentences_50Agree.txt", 4846, {"negative", "neutral", "positive"}, {604, 2879, 1363}},
      {"financial_phrasebank/all.jsonl", 4846, {"negative", "neutral", "positive"}, {604, 2879, 1363}},
      {"amazon_reviews/books.jsonl", 2000, {"negative", "positive"}, {1000, 1000}},
      {"amazon_reviews/dvd.jsonl", 2000, {"negative", "positive"}, {1000, 1000}},
      {"fine_foods/small_fine_foods_training_data.csv", 4000, {"great", "other"}, {2600, 1400}, "review", "score"},
      {"fine_foods/small_fine_foods_testing_data.csv", 1000, {"great", "other"}, {658, 342}, "review", "score"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    read_options o;
    o.text_column = c.text_column;
    o.label_column = c.label_column;
    const dataset d = minibert::read_dataset(sentiment_dir / c.path, o);
    CHECK(d.size() == c.rows);
    CHECK(d.label_names == c.labels);
    if (!c.counts.empty()) CHECK(d.label_counts() == c.counts);
    for (const auto& e : d.examples) REQUIRE_FALSE(e.text.empty());
  }
}

TEST_CASE("real data files: CSV records spanning lines, BOM, mojibake kept as is") {
  read_options o;
  o.label_column = "airline_sentiment";
  const dataset t = minibert::read_dataset(sentiment_dir / "airline_tweets" / "Tweets.csv", o);
  CHECK(t[3].text == "@VirginAmerica it's really aggressive to blast obnoxious \"entertainment\" in your guests' faces "
                     "&amp; they have little recourse");
  CHECK(t[5].text == "@VirginAmerica seriously would pay $30 a flight for seats that didn't have this playing.\n"
                     "it's really the only bad thing about flying VA");
  CHECK(t[5].line == 7);
  CHECK(t[6].line == 9); // after the two-line record
  CHECK(t.examples.back().line == 14846);

  const dataset txt = minibert::read_dataset(sentiment_dir / "financial_phrasebank" / "Sentences_50Agree.txt");
  const dataset js = minibert::read_dataset(sentiment_dir / "financial_phrasebank" / "all.jsonl");
  REQUIRE(txt.size() == js.size());
  CHECK(txt[0].text.rfind("According to Gran", 0) == 0); // the BOM is gone
  std::size_t mojibake = 0; // the source's mojibake ("Sepp+\u00f1l+\u00f1" for "Sepp\u00e4l\u00e4") is valid UTF-8: kept
  for (const auto& e : txt.examples) mojibake += e.text.find("Sepp+\xC3\xB1l+\xC3\xB1") != std::string::npos;
  CHECK(mojibake > 0);
  std::size_t same = 0;
  for (std::size_t i = 0; i < txt.size(); ++i) same += txt[i].text == js[i].text && txt[i].label == js[i].label;
  CHECK(same == txt.size());
}

// ---------------------------------------------------------------------------------------------------------------
// split

TEST_CASE("permutation: golden values (independent Python splitmix64 + Fisher-Yates)") {
  CHECK(minibert::permutation(10, 42) == std::vector<std::size_t>{0, 9, 5, 8, 6, 4, 7, 2, 1, 3});
  CHECK(minibert::permutation(5, 0) == std::vector<std::size_t>{2, 3, 1, 4, 0});
  CHECK(minibert::permutation(5, ~std::uint64_t{0}) == std::vector<std::size_t>{2, 0, 3, 4, 1});
  CHECK(minibert::permutation(0, 1).empty());
  CHECK(minibert::permutation(1, 1) == std::vector<std::size_t>{0});
}

TEST_CASE("split_validation: 12,000 -> 9,600 / 2,400, deterministic per seed, file order kept") {
  const dataset d = minibert::read_dataset(sentiment_dir / "sst2" / "train.tsv");
  const auto a = minibert::split_validation(d, 0.2, 42);
  const auto b = minibert::split_validation(d, 0.2, 42);
  const auto c = minibert::split_validation(d, 0.2, 7);
  REQUIRE(a.train.size() == 9600);
  REQUIRE(a.validation.size() == 2400);
  CHECK(a.train.label_names == d.label_names);
  auto lines = [](const dataset& s) {
    std::vector<std::size_t> l;
    for (const auto& e : s.examples) l.push_back(e.line);
    return l;
  };
  CHECK(lines(a.validation) == lines(b.validation));
  CHECK(lines(a.train) == lines(b.train));
  CHECK(lines(a.validation) != lines(c.validation));
  // golden (Python): first validation lines and the sum of validation row indices
  const auto va = lines(a.validation);
  CHECK(std::vector<std::size_t>(va.begin(), va.begin() + 5) == std::vector<std::size_t>{12, 15, 19, 24, 40});
  std::size_t sum = 0;
  for (std::size_t l : va) sum += l - 2; // line 2 holds row 0
  CHECK(sum == 14609645);
  const auto vc = lines(c.validation);
  CHECK(std::vector<std::size_t>(vc.begin(), vc.begin() + 5) == std::vector<std::size_t>{6, 12, 13, 17, 18});
  // disjoint, complete, each part in file order
  std::set<std::size_t> all(va.begin(), va.end());
  for (std::size_t l : lines(a.train)) CHECK(all.insert(l).second);
  CHECK(all.size() == 12000);
  CHECK(std::is_sorted(va.begin(), va.end()));
}

TEST_CASE("split_validation: bad fractions") {
  const dataset d = parse("s.tsv", "sentence\tlabel\na\t0\nb\t1\nc\t0\n");
  expect_error([&] { minibert::split_validation(d, 0.0, 1); }, {"s.tsv", "not in (0, 1)"});
  expect_error([&] { minibert::split_validation(d, 1.0, 1); }, {"not in (0, 1)"});
  expect_error([&] { minibert::split_validation(d, 0.1, 1); }, {"leaves 0 for validation"});
  const auto s = minibert::split_validation(d, 0.5, 1); // round(1.5) = 2, half away from zero
  CHECK(s.validation.size() == 2);
  CHECK(s.train.size() == 1);
}

} // namespace test_data
