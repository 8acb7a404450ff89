// SPDX-License-Identifier: MIT
// minibert against Hugging Face transformers on a real pretrained checkpoint, live: sentence-transformers/
// all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384, 12 heads, bert-base-uncased vocabulary) from the local hub
// cache. tests/python/pretrained_reference.py is transformers' side (the pinned 4.46.3 over Debian's torch).
//
// 1. Logits on all 1,821 SST-2 test sentences. minibert loads the checkpoint as BertForSequenceClassification
//    (num_labels 2, classifier newly initialized), tokenizes with its own tokenizer (truncation to 128 tokens,
//    batches of 32 padded to their longest) and computes fp32 logits in eval mode, then save_pretrained()s the
//    model. transformers loads that saved directory (which must log and warn nothing at all), tokenizes the same
//    sentences with BertTokenizerFast from the original files (the ids must be identical) and computes logits. The
//    classifier is random, but both sides use the saved one, so nothing depends on how minibert initializes it.
//
//    fp32 tolerance, per logit: |x - ref| <= atol + rtol |ref| with
//      rtol = u sqrt(K) L    u = 2^-24 (fp32 unit roundoff), K = intermediate_size (1536, the longest dot product),
//                            L = num_hidden_layers (6): rtol = 1.4e-5
//      atol = rtol max|ref|  (over all logits)
//    Why: a length-K fp32 dot product carries a relative rounding error of about u sqrt(K) of the size of its
//    terms (a random walk of K roundings; the worst case u K is never approached with random-sign errors); every
//    layer ends in a LayerNorm that keeps hidden states O(1) (here |h| <= 6, rms 0.37), so each layer adds its own
//    relative error instead of compounding it, and L layers add at most L of them. A logit is a dot product with
//    cancellation (the random classifier's logits are ~0.07 with either sign), so its error scales with the logits'
//    magnitude, not with its own value: hence the absolute floor rtol max|ref|. Two fp32 implementations may each be
//    this far from exact; the bound is a worst-case estimate, and the observed differences are printed (about 1e-7
//    against a bound of about 1e-6 when this was written, and torch's own fp32 error against fp64 is of the same size).
//    The first 128 sentences are also run in fp64 by transformers (the exact stand-in): minibert's fp32 logits must
//    be within the same bound of those too.
//
//    Negative control: one weight of the saved file, the largest-magnitude element of
//    bert.encoder.layer.5.attention.output.dense.weight, scaled by 1.01 (a 1% change of one of its 147,456
//    elements); transformers runs that file on the first 256 sentences and the comparison must fail. (A 0.1% change
//    moves the logits by about 7e-7, inside fp32 noise; that one is not required to be detected.)
// 2. Loading messages: all-MiniLM-L6-v2 (by hub id), a base checkpoint without a pooler, and a BertForPreTraining
//    checkpoint whose config names BertForMaskedLM (as bert-base-uncased's does), each loaded into
//    BertForSequenceClassification, BertForMaskedLM and BertModel: minibert must print exactly what transformers
//    logs at its default verbosity.
// 3. Bad model directories: the errors name the missing or truncated file and where it was looked for.
#include <doctest/doctest.h>

#include <minibert/bert.hpp>
#include <minibert/encoder.hpp>
#include <minibert/heads.hpp>
#include <minibert/hub.hpp>
#include <minibert/pretrained.hpp>
#include <minibert/tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace test_pretrained_parity { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

const std::string model_id = "sentence-transformers/all-MiniLM-L6-v2";

fs::path work_dir(const std::string& name) {
  fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "pretrained_parity" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void run_python(const std::string& args) {
  const std::string cmd = std::string("HF_HUB_OFFLINE=1 ") + MINIBERT_TEST_PYTHON + " " + MINIBERT_TEST_SOURCE_DIR +
                          "/python/pretrained_reference.py " + args;
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
}

std::vector<std::string> sst2_test_sentences() {
  std::ifstream in(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/sentiment/sst2/test.tsv");
  REQUIRE(in.good());
  std::string line;
  std::getline(in, line);
  REQUIRE(line == "sentence\tlabel");
  std::vector<std::string> texts;
  while (std::getline(in, line)) texts.push_back(line.substr(0, line.find('\t')));
  return texts;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct diff_stats {
  double max_abs = 0, max_rel = 0, worst = 0; // worst: max of |x - ref| / (atol + rtol |ref|)
};

diff_stats compare(const std::vector<float>& x, const std::vector<double>& ref, std::size_t n, double rtol) {
  REQUIRE(x.size() >= n);
  REQUIRE(ref.size() >= n);
  double scale = 0;
  for (std::size_t i = 0; i < n; ++i) scale = std::max(scale, std::abs(ref[i]));
  const double atol = rtol * scale;
  diff_stats s;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = std::abs(double(x[i]) - ref[i]);
    s.max_abs = std::max(s.max_abs, d);
    s.max_rel = std::max(s.max_rel, d / std::max(std::abs(ref[i]), std::numeric_limits<double>::min()));
    s.worst = std::max(s.worst, d / (atol + rtol * std::abs(ref[i])));
  }
  return s;
}

std::string describe(const diff_stats& s) {
  std::ostringstream o;
  o << "max abs " << s.max_abs << ", max rel " << s.max_rel << ", worst |d|/tol " << s.worst;
  return o.str();
}

// a copy of the saved model directory with one weight changed
fs::path perturbed_copy(const fs::path& saved, const std::string& tensor_name, double factor) {
  const fs::path d = work_dir("control_model");
  fs::copy_file(saved / "config.json", d / "config.json");
  const checkpoint ck = checkpoint::open(saved / "model.safetensors");
  std::vector<std::vector<float>> data;
  std::vector<safetensors_entry> entries;
  data.reserve(ck.names().size());
  bool found = false;
  for (const auto& n : ck.names()) {
    data.push_back(ck.read_vector<float>(n));
    if (n == tensor_name) {
      auto& v = data.back();
      auto it = std::max_element(v.begin(), v.end(), [](float a, float b) { return std::abs(a) < std::abs(b); });
      *it = float(*it * factor);
      found = true;
    }
    entries.push_back({n, dtype::f32, ck.info(n).shape, data.back().data()});
  }
  REQUIRE_MESSAGE(found, tensor_name);
  save_safetensors(d / "model.safetensors", entries, {{"format", "pt"}});
  return d;
}

template <class Model> std::string minibert_messages(const std::string& source) {
  generator gen(0);
  std::ostringstream warn;
  from_pretrained<Model>(source, gen, &warn);
  return warn.str();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const minibert::error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a minibert::error: ") + e.what();
  }
  return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

} // namespace

TEST_CASE("all-MiniLM-L6-v2 on the 1,821 SST-2 test sentences: minibert's fp32 logits match transformers'") {
  const auto t_start = std::chrono::steady_clock::now();
  const fs::path snapshot = resolve_model_path(model_id);
  const std::vector<std::string> texts = sst2_test_sentences();
  REQUIRE(texts.size() == 1821);

  generator gen(1234);
  std::ostringstream warn;
  auto m = from_pretrained<bert_for_sequence_classification<float>>(model_id, gen, &warn);
  REQUIRE(m->config().num_labels() == 2);
  m->eval();
  const tokenizer tok = tokenizer::from_pretrained(snapshot);
  encode_options opt;
  opt.truncation = truncation_options{128};
  opt.padding = padding_options{};

  // minibert: tokenize and run in padded batches of 32
  std::vector<std::vector<std::int32_t>> ids; // unpadded, per sentence
  std::vector<float> logits;
  const auto t_fwd = std::chrono::steady_clock::now();
  {
    no_grad ng;
    for (std::size_t b0 = 0; b0 < texts.size(); b0 += 32) {
      const std::vector<std::string> chunk(texts.begin() + b0, texts.begin() + std::min(texts.size(), b0 + 32));
      const std::vector<encoding> enc = tok.encode_batch(chunk, opt, 1);
      const std::int64_t B = std::int64_t(enc.size()), T = std::int64_t(enc[0].size());
      std::vector<std::int32_t> fi, fm, ft;
      for (const auto& e : enc) {
        REQUIRE(std::int64_t(e.size()) == T);
        fi.insert(fi.end(), e.ids.begin(), e.ids.end());
        fm.insert(fm.end(), e.attention_mask.begin(), e.attention_mask.end());
        ft.insert(ft.end(), e.type_ids.begin(), e.type_ids.end());
        std::vector<std::int32_t> real;
        for (std::size_t i = 0; i < e.size(); ++i)
          if (e.attention_mask[i]) real.push_back(e.ids[i]);
        ids.push_back(real);
      }
      const bert_inputs<device::cpu> in{tensor<std::int32_t>::from(fi, {B, T}), tensor<std::int32_t>::from(fm, {B, T}),
                                        tensor<std::int32_t>::from(ft, {B, T}), {}};
      const auto out = m->forward(in, gen).value().to_vector();
      REQUIRE(std::int64_t(out.size()) == B * 2);
      logits.insert(logits.end(), out.begin(), out.end());
    }
  }
  const double minibert_s = seconds_since(t_fwd);

  const fs::path saved = work_dir("saved_model");
  save_pretrained(*m, saved);
  const std::string control_tensor = "bert.encoder.layer.5.attention.output.dense.weight";
  const fs::path control = perturbed_copy(saved, control_tensor, 1.01);

  const fs::path out = work_dir("reference");
  std::ofstream(out / "texts.json") << nlohmann::json(texts).dump();
  const auto t_ref = std::chrono::steady_clock::now();
  run_python("logits --texts " + (out / "texts.json").string() + " --tokenizer " + model_id + " --out " + out.string() +
             " --f64-count 128 --control " + control.string() + " --control-count 256 " + saved.string());
  const double reference_s = seconds_since(t_ref);

  // transformers loads minibert's saved directories without a single message
  for (const char* f : {"messages_0.json", "messages_control.json"}) {
    const auto msgs = nlohmann::json::parse(std::ifstream(out / f));
    CHECK_MESSAGE(msgs.empty(), f << ": " << msgs.dump(1));
  }
  // the same token ids
  const auto ref_ids = nlohmann::json::parse(std::ifstream(out / "ids.json"));
  REQUIRE(ref_ids.size() == texts.size());
  std::size_t differing = 0, max_len = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto r = ref_ids[i].get<std::vector<std::int32_t>>();
    max_len = std::max(max_len, r.size());
    if (r != ids[i] && differing++ < 3) MESSAGE("token ids differ for sentence " << i << ": " << texts[i]);
  }
  CHECK(differing == 0);
  CHECK(max_len <= 128);

  // the logits
  const checkpoint ref = checkpoint::open(out / "logits_0.safetensors");
  const std::vector<double> hf32 = ref.read_vector<double>("f32"), hf64 = ref.read_vector<double>("f64");
  REQUIRE(hf32.size() == logits.size());
  REQUIRE(logits.size() == 2 * texts.size());
  const bert_config& c = m->config();
  const double u = std::ldexp(1.0, -24);
  const double rtol = u * std::sqrt(double(c.intermediate_size)) * double(c.num_hidden_layers);
  const std::size_t n64 = 2 * 128;
  std::vector<float> hf32_f(hf32.begin(), hf32.end());
  const diff_stats vs32 = compare(logits, hf32, logits.size(), rtol);
  const diff_stats vs64 = compare(logits, hf64, n64, rtol);
  const diff_stats torch_vs64 = compare(hf32_f, hf64, n64, rtol);
  double max_logit = 0;
  for (double x : hf32) max_logit = std::max(max_logit, std::abs(x));
  MESSAGE("rtol " << rtol << ", atol " << rtol * max_logit << " (max |logit| " << max_logit << ")");
  MESSAGE("minibert fp32 vs transformers fp32, all " << logits.size() << " logits: " << describe(vs32));
  MESSAGE("minibert fp32 vs transformers fp64, first " << n64 << " logits: " << describe(vs64));
  MESSAGE("transformers fp32 vs its fp64, first " << n64 << " logits: " << describe(torch_vs64));
  CHECK(vs32.worst <= 1.0);
  CHECK(vs64.worst <= 1.0);

  // negative control: the same comparison against transformers on the perturbed file must fail
  const checkpoint ctl = checkpoint::open(out / "logits_control.safetensors");
  const std::vector<double> ctl32 = ctl.read_vector<double>("f32");
  REQUIRE(ctl32.size() == 2 * 256);
  const diff_stats vs_ctl = compare(logits, ctl32, ctl32.size(), rtol);
  MESSAGE("negative control (" << control_tensor << ", largest element x 1.01), first 256 sentences: "
                               << describe(vs_ctl));
  CHECK(vs_ctl.worst > 1.0);
  MESSAGE("minibert forward " << minibert_s << " s, transformers script " << reference_s << " s, whole case "
                              << seconds_since(t_start) << " s");
}

TEST_CASE("loading all-MiniLM-L6-v2 prints what transformers logs") {
  const fs::path fixtures = work_dir("message_fixtures");
  const fs::path out = fixtures / "messages.json";
  run_python("messages --id " + model_id + " --fixtures " + fixtures.string() + " --out " + out.string());
  const auto ref = nlohmann::json::parse(std::ifstream(out));
  REQUIRE(ref.size() == 3);
  int compared = 0, nonempty = 0;
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    const std::string source = it.key();
    for (auto jt = it.value().begin(); jt != it.value().end(); ++jt) {
      std::string expected;
      for (const auto& msg : jt.value()) expected += msg.get<std::string>() + "\n";
      std::string got;
      if (jt.key() == "BertForSequenceClassification")
        got = minibert_messages<bert_for_sequence_classification<float>>(source);
      else if (jt.key() == "BertForMaskedLM")
        got = minibert_messages<bert_for_masked_lm<float>>(source);
      else if (jt.key() == "BertModel")
        got = minibert_messages<bert_model<float>>(source);
      else
        FAIL("unknown class " << jt.key());
      CHECK_MESSAGE(got == expected, jt.key() << " from " << source << "\nminibert:\n" << got << "transformers:\n"
                                              << expected);
      ++compared;
      nonempty += !expected.empty();
    }
  }
  CHECK(compared == 9);
  CHECK(nonempty == 7); // the reference did produce messages to compare (both kinds, see the fixtures)
  CHECK(has(ref[model_id]["BertForSequenceClassification"].dump(),
            "Some weights of BertForSequenceClassification were not initialized from the model checkpoint at " +
                model_id + " and are newly initialized: ['classifier.bias', 'classifier.weight']"));
  CHECK(has(ref[(fixtures / "pretraining").string()]["BertForMaskedLM"].dump(), "were not used when initializing"));
}

TEST_CASE("a model directory with missing or truncated weights gives an error naming the file and where it looked") {
  const fs::path snapshot = resolve_model_path(model_id);
  generator gen(0);
  auto load = [&](const fs::path& d) {
    return error_of([&] { from_pretrained<bert_for_sequence_classification<float>>(d, gen, nullptr); });
  };

  SUBCASE("no model.safetensors and no pytorch_model.bin") {
    const fs::path d = work_dir("no_weights");
    fs::copy_file(snapshot / "config.json", d / "config.json");
    const std::string e = load(d);
    MESSAGE(e);
    CHECK(has(e, "[minibert.checkpoint]"));
    CHECK(has(e, d.string()));
    CHECK(has(e, "model.safetensors"));
    CHECK(has(e, "pytorch_model.bin"));
    CHECK(has(e, "no weights found"));
  }
  SUBCASE("model.safetensors truncated in its data") {
    const fs::path d = work_dir("truncated_data");
    fs::copy_file(snapshot / "config.json", d / "config.json");
    fs::copy_file(snapshot / "model.safetensors", d / "model.safetensors");
    fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") / 2);
    const std::string e = load(d);
    MESSAGE(e);
    CHECK(has(e, "[minibert.safetensors]"));
    CHECK(has(e, (d / "model.safetensors").string()));
    CHECK(has(e, "truncated"));
  }
  SUBCASE("model.safetensors truncated in its header") {
    const fs::path d = work_dir("truncated_header");
    fs::copy_file(snapshot / "config.json", d / "config.json");
    fs::copy_file(snapshot / "model.safetensors", d / "model.safetensors");
    fs::resize_file(d / "model.safetensors", 1000);
    const std::string e = load(d);
    MESSAGE(e);
    CHECK(has(e, (d / "model.safetensors").string()));
    CHECK(has(e, "truncated"));
  }
  SUBCASE("no config.json") {
    const fs::path d = work_dir("no_config");
    fs::copy_file(snapshot / "model.safetensors", d / "model.safetensors");
    const std::string e = load(d);
    MESSAGE(e);
    CHECK(has(e, (d / "config.json").string()));
  }
  SUBCASE("neither a directory nor a cached hub id") {
    const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "pretrained_parity" / "does_not_exist";
    const std::string e = load(d);
    MESSAGE(e);
    CHECK(has(e, "[minibert.hub]"));
    CHECK(has(e, d.string()));
    CHECK(has(e, "not a model directory (no such directory)"));
  }
}

} // namespace test_pretrained_parity
