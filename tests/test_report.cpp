// SPDX-License-Identifier: MIT
// minibert/report.hpp: writes a report and a comparison from synthetic runs into the build directory
// (tests/test_report_out/<case>/, one folder per test case, so `ctest -j` can run them at once) and checks them: well-formed, self-contained HTML with an <svg> per chart, the numbers,
// the banner and the verbatim warnings; the Markdown tables; report.json round trips; the SVG axis helpers.
#include <doctest/doctest.h>

#include <algorithm>  // find
#include <cctype>     // isalpha
#include <cmath>      // exp, sin, isnan
#include <cstdint>    // int64_t
#include <filesystem> // path, remove_all
#include <fstream>    // ifstream
#include <iterator>   // istreambuf_iterator
#include <string>     // string
#include <utility>    // pair
#include <vector>     // vector

#include <minibert/metrics.hpp>
#include <minibert/report.hpp>

namespace test_report { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;

namespace {

const fs::path out_dir = fs::path(MINIBERT_TEST_BINARY_DIR) / "test_report_out";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1)) ++n;
  return n;
}

std::string unescape(std::string s) {
  const std::pair<const char*, const char*> entities[] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}};
  for (const auto& [from, to] : entities)
    for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + std::string(to).size()))
      s.replace(pos, std::string(from).size(), to);
  return s;
}

// Every start tag has its end tag, properly nested (void elements and "/>" aside), and no stray '<' in text.
void check_well_formed(const std::string& html) {
  const std::vector<std::string> void_elements = {"meta", "br", "hr", "img", "input", "link"};
  std::vector<std::string> stack;
  std::size_t pos = 0;
  while ((pos = html.find('<', pos)) != std::string::npos) {
    const std::size_t end = html.find('>', pos);
    REQUIRE_MESSAGE(end != std::string::npos, "unclosed '<' at byte " << pos);
    const std::string tag = html.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.rfind("!DOCTYPE", 0) == 0) continue;
    REQUIRE_MESSAGE(!tag.empty(), "empty tag");
    REQUIRE_MESSAGE((std::isalpha(static_cast<unsigned char>(tag[0])) || tag[0] == '/'), "'<' in text: <" << tag << ">");
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      REQUIRE_MESSAGE(!stack.empty(), "</" << name << "> closes nothing");
      REQUIRE_MESSAGE(stack.back() == name, "</" << name << "> closes <" << stack.back() << ">");
      stack.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    if (tag.back() == '/' || std::find(void_elements.begin(), void_elements.end(), name) != void_elements.end()) continue;
    stack.push_back(name);
  }
  CHECK_MESSAGE(stack.empty(), stack.size() << " unclosed elements, innermost <" << (stack.empty() ? "" : stack.back()) << ">");
}

// No scripts, no links, no fetched resources.
void check_self_contained(const std::string& html) {
  for (const char* bad : {"<script", "<link", " src=", "href=", "url(", "@import", "<iframe", "<img"})
    CHECK_MESSAGE(html.find(bad) == std::string::npos, "HTML holds " << bad);
}

// A run like the reference's run 4: 900 steps, warmup 500, logged every 10 steps, evaluated each epoch.
minibert::report_data synthetic_run(double loss_scale, bool pretrained) {
  minibert::report_data r;
  r.title = "SST-2 fine-tuning";
  r.model = "bert-base-uncased";
  r.model_pretrained = pretrained;
  if (!pretrained) r.banner_note = "The checkpoint model.safetensors was not available.";
  r.setup = {{"model", "bert-base-uncased"}, {"data", "9,600 train / 2,400 validation / 1,821 test"},
             {"epochs", "3"}, {"steps", "900"}, {"batch", "32"}, {"learning rate", "2e-5"}, {"schedule", "linear"},
             {"warmup", "500 steps"}, {"precision", "fp32"}, {"seed", "42"}, {"threads", "16"}};
  r.warnings = "Some weights of BertForSequenceClassification were not initialized from the model checkpoint at "
               "bert-base-uncased and are newly initialized: ['classifier.bias', 'classifier.weight']\n"
               "You should probably TRAIN this model on a down-stream task <to be able> to use it & predict.";
  for (std::int64_t s = 10; s <= 900; s += 10) {
    const double lr = s <= 500 ? 2e-5 * static_cast<double>(s) / 500 : 2e-5 * static_cast<double>(900 - s) / 400;
    const double loss = loss_scale * (0.07 + 0.62 * std::exp(-static_cast<double>(s) / 180.0) + 0.03 * std::sin(static_cast<double>(s) * 0.37));
    r.log_history.push_back({s, static_cast<double>(s) / 300.0, loss, lr, s == 20 ? minibert::report_nan : 1.0 + 3.0 * std::exp(-static_cast<double>(s) / 300.0)});
  }
  r.label_names = {"negative", "positive"};
  std::vector<std::int64_t> y, p;
  for (int i = 0; i < 1821; ++i) {
    y.push_back(i % 2);
    p.push_back(i % 11 == 0 ? 1 - i % 2 : i % 2);
  }
  const auto test = minibert::compute_classification_metrics(p, y, 2);
  for (int e = 1; e <= 3; ++e) {
    std::vector<std::int64_t> pe = p;
    for (std::size_t i = 0; i < pe.size(); i += static_cast<std::size_t>(5 + e)) pe[i] = 1 - y[i];
    nlohmann::json j = minibert::compute_classification_metrics(pe, y, 2).to_json("eval", r.label_names);
    j["eval_loss"] = 0.30 + 0.05 * e;
    j["eval_runtime"] = 4.5;
    r.evals.push_back({300 * e, static_cast<double>(e), j});
  }
  nlohmann::json val = r.evals.back().metrics;
  val["eval_samples_per_second"] = 520.6;
  nlohmann::json tst = test.to_json("test", r.label_names);
  tst["test_loss"] = 0.501045;
  tst["test_runtime"] = 3.57;
  tst["test_samples_per_second"] = 496.0;
  tst["test_steps_per_second"] = 15.6;
  r.finals = {{"validation", "eval", val}, {"test", "test", tst}};
  r.train_metrics = {{"train_runtime", 297.4}, {"train_samples_per_second", 96.8}, {"global_step", 900}};
  r.notes = {"Accuracy and F1 are stable near 0.90.", "Markup in notes is escaped: <script>x</script> & co."};
  return r;
}

} // namespace

TEST_CASE("write_report: files, self-contained HTML, charts, numbers, banner, warnings") {
  const fs::path dir = out_dir / "not_pretrained";
  fs::remove_all(dir);
  const minibert::report_data r = synthetic_run(1.0, false);
  minibert::write_report(r, dir);
  for (const char* f : {"report.html", "report.md", "report.json"}) CHECK(fs::is_regular_file(dir / f));
  const std::string html = slurp(dir / "report.html");
  const std::string md = slurp(dir / "report.md");
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  check_well_formed(html);
  check_self_contained(html);
  CHECK(count(html, "<svg") == 6); // loss, learning rate, epoch scores, epoch loss, 2 confusion matrices
  CHECK(count(html, "</svg>") == 6);
  for (const char* title : {"Training loss", "Learning rate", "Validation accuracy and F1 per epoch",
                            "Validation loss per epoch", "Confusion matrix: validation", "Confusion matrix: test"})
    CHECK_MESSAGE(html.find(std::string("<title>") + title + "</title>") != std::string::npos, std::string(title));
  CHECK(html.find("class=\"banner\"") != std::string::npos);
  CHECK(html.find("The model was not pretrained") != std::string::npos);
  CHECK(html.find("model.safetensors was not available") != std::string::npos);
  // the warnings verbatim (escaped) in a <pre>
  const std::size_t pre = html.find("<pre class=\"warnings\">");
  REQUIRE(pre != std::string::npos);
  const std::size_t pre_end = html.find("</pre>", pre);
  CHECK(unescape(html.substr(pre + 22, pre_end - pre - 22)) == r.warnings);
  // numbers: test metrics, runtimes, learning rates, losses, confusion counts, setup
  for (const char* s : {"0.501045", "0.908841", "3.57", "496.0", "520.6", "4:57 (297.40 s)", "2e-5", "4e-7",
                        "1.2e-6", ">828<", ">83<", ">90.9%<", "bert-base-uncased", "500 steps", "9,600 train"})
    CHECK_MESSAGE(html.find(s) != std::string::npos, std::string(s));
  CHECK(html.find("&lt;script&gt;x&lt;/script&gt; &amp; co.") != std::string::npos);
  // Markdown
  for (const char* s : {"# SST-2 fine-tuning", "> **Warning.** The model was not pretrained", "## Results",
                        "| loss | 0.450000 | 0.501045 |", "## Setup", "| batch | 32 |", "## Warnings at start\n\n```\nSome weights",
                        "## Validation per epoch", "## Per-class metrics", "### test", "| negative | 0.908891 |",
                        "| true \\ predicted | negative | positive |", "| negative | 828 | 83 |", "## Training log",
                        "| 20 | 0.07 |", "| 900 | 3 |"})
    CHECK_MESSAGE(md.find(s) != std::string::npos, std::string(s));
  CHECK(md.find("| 20 | 0.07 | 0.6518 | 8e-7 | \u2013 |") != std::string::npos); // grad norm not logged
}

TEST_CASE("write_report: no banner for a pretrained model, report.json round trips") {
  const fs::path dir = out_dir / "pretrained";
  fs::remove_all(dir);
  const minibert::report_data r = synthetic_run(1.0, true);
  minibert::write_report(r, dir);
  minibert::write_report(r, dir); // replacing existing files
  const std::string html = slurp(dir / "report.html");
  CHECK(html.find("class=\"banner\"") == std::string::npos);
  CHECK(slurp(dir / "report.md").find("not pretrained") == std::string::npos);
  const minibert::report_data back = minibert::read_report_json(dir);
  CHECK(minibert::report_to_json(back) == minibert::report_to_json(r));
  CHECK(std::isnan(back.log_history[1].grad_norm));
  CHECK(minibert::render_report_html(back) == html);
}

TEST_CASE("write_report: an almost empty report still renders") {
  const fs::path dir = out_dir / "empty";
  fs::remove_all(dir);
  minibert::report_data r;
  minibert::write_report(r, dir);
  const std::string html = slurp(dir / "report.html");
  check_well_formed(html);
  CHECK(count(html, "<svg") == 2); // training loss and learning rate, each saying "no data"
  CHECK(count(html, ">no data<") == 2);
}

TEST_CASE("compare_runs: runs table, setup differences, overlaid curves") {
  const fs::path dir = out_dir / "compare";
  fs::remove_all(dir);
  minibert::write_report(synthetic_run(1.0, true), dir / "run_a");
  minibert::report_data b = synthetic_run(1.15, true);
  b.setup[4].second = "16";
  b.setup[3].second = "1,800";
  b.train_metrics["train_runtime"] = 820.0;
  b.train_metrics["global_step"] = 1800;
  b.finals[1].metrics["test_loss"] = 0.633635;
  minibert::write_report(b, dir / "run_b");
  minibert::write_report(synthetic_run(1.0, true), dir / "run_c");
  const auto c = minibert::compare_runs({dir / "run_a", dir / "run_b", dir / "run_c/"}, dir / "comparison");
  REQUIRE(c.runs.size() == 3);
  CHECK(c.runs[2].name == "run_c");
  const std::string md = slurp(dir / "comparison" / "comparison.md");
  const std::string html = slurp(dir / "comparison" / "comparison.html");
  check_well_formed(html);
  check_self_contained(html);
  CHECK(count(html, "<svg") == 2);
  for (const char* s : {">run_a<", ">run_b<", ">run_c<", "Training loss per step", "Learning rate per step",
                        "stroke-dasharray"}) // run_c repeats run_a: dashed
    CHECK_MESSAGE(html.find(s) != std::string::npos, std::string(s));
  for (const char* s : {"| run_a | 900 | 4:57 | 0.501045 | 0.908841 |", "| run_b | 1800 | 13:40 | 0.633635 |",
                        "3.57 s | 496.0 |", "same log and test metrics as run_a", "## Setup differences",
                        "| batch | 32 | 16 | 32 |", "| steps | 900 | 1,800 | 900 |"})
    CHECK_MESSAGE(md.find(s) != std::string::npos, std::string(s));
  CHECK(md.find("| epochs |") == std::string::npos); // equal everywhere: not a difference
}

TEST_CASE("report errors") {
  auto fails = [](auto&& f, std::initializer_list<std::string> parts) {
    std::string what;
    try {
      f();
    } catch (const minibert::error& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("[minibert.report]") == 0, what);
    for (const auto& p : parts) CHECK_MESSAGE(what.find(p) != std::string::npos, what);
  };
  const fs::path dir = out_dir / "errors";
  fs::remove_all(dir);
  fails([&] { minibert::compare_runs({}, dir / "x"); }, {"no run directories"});
  fails([&] { minibert::read_report_json(dir / "missing_run"); }, {"missing_run", "cannot open"});
  fs::create_directories(dir / "broken");
  const fs::path file = dir / "broken" / "report.json";
  minibert::atomic_write_bytes(file, std::string_view("{\"format\": "));
  fails([&] { minibert::read_report_json(dir / "broken"); }, {"broken", "not valid JSON"});
  minibert::atomic_write_bytes(file, std::string_view("{\"format\": \"other\"}"));
  fails([&] { minibert::read_report_json(dir / "broken"); }, {"not a minibert report"});
  minibert::atomic_write_bytes(file, std::string_view("{\"format\": \"minibert.report\", \"log_history\": [{\"loss\": 1}]}"));
  fails([&] { minibert::read_report_json(file); }, {"malformed report"});
  // 100k-deep nesting and a number past a double: minibert errors naming the file, not a crash or nlohmann's own
  minibert::atomic_write_bytes(file, "{\"format\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  fails([&] { minibert::read_report_json(file); }, {file.string(), "JSON nested deeper than 256 levels"});
  minibert::atomic_write_bytes(file, std::string_view("{\"format\": 1e999}"));
  fails([&] { minibert::read_report_json(file); }, {file.string(), "not valid JSON", "1e999"});
}

TEST_CASE("svg helpers: nice axes, tick labels, durations, heat map names") {
  using namespace minibert::detail;
  const svg_axis a = svg_nice_axis(0, 0.69, 5, false);
  CHECK(a.lo == 0);
  CHECK(a.hi == doctest::Approx(0.7));
  CHECK(a.step == doctest::Approx(0.1));
  const svg_axis s = svg_nice_axis(10, 900, 6, true);
  CHECK(s.step == 100);
  CHECK(s.lo == 0);
  CHECK(s.hi == 900);
  CHECK(svg_nice_axis(1, 3, 6, true).step == 1); // epochs: integer ticks
  const svg_axis flat = svg_nice_axis(0.5, 0.5, 5, false);
  CHECK(flat.lo < 0.5);
  CHECK(flat.hi > 0.5);
  CHECK(svg_tick_label(1.5e-5, 5e-6) == "1.5e-5");
  CHECK(svg_tick_label(0.25, 0.05) == "0.25");
  CHECK(svg_tick_label(400, 100) == "400");
  CHECK(svg_tick_label(1e-17, 0.1) == "0");
  CHECK(compact_g(3.92e-6) == "3.92e-6");
  CHECK(compact_g(1.5e+6, 3) == "1.5e6");
  CHECK(fmt_duration(820) == "13:40");
  CHECK(fmt_duration(297.4) == "4:57");
  CHECK(fmt_duration(3725) == "1:02:05");
  CHECK(fmt_trim(1.0, 2) == "1");
  CHECK(fmt_trim(1.0 / 3, 2) == "0.33");
  svg_heatmap h;
  h.title = "five classes";
  h.names = {"very negative", "negative", "neutral", "positive", "extraordinarily positive"};
  h.counts = {{5, 1, 0, 0, 0}, {1, 7, 2, 0, 0}, {0, 2, 9, 1, 0}, {0, 0, 1, 8, 3}, {0, 0, 0, 0, 0}};
  const std::string svg = render_svg(h);
  check_well_formed(svg);
  CHECK(svg.find("<title>extraordinarily positive</title>") != std::string::npos); // full name on hover
  CHECK(count(svg, "<rect") == 2 + 25);
}

} // namespace test_report
