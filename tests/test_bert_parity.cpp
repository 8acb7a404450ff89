// SPDX-License-Identifier: MIT
// BERT against Hugging Face transformers, live: tests/python/bert_reference.py builds transformers' own
// BertForSequenceClassification / BertForMaskedLM (the pinned PyPI transformers over Debian's torch) from a config,
// saves it with transformers' save_pretrained (model.safetensors and pytorch_model.bin) and writes its logits, loss
// and every parameter's gradient; minibert loads the saved directory and must give the same numbers.
//
// Tolerances (|x - ref| <= atol + rtol * |ref|, per element):
//   fp64: rtol 1e-9, atol 1e-12 (both sides compute in double; differences are summation order only)
//   fp32: logits and loss rtol 1e-5, atol 1e-6; gradients rtol 1e-4, atol 1e-5 * G
//   with G the largest |gradient| over all parameters: some gradients are exactly zero in exact arithmetic (the key
//   bias: softmax ignores a per-row constant) and both sides then hold rounding noise, which only an absolute
//   floor on the model's gradient scale can judge.
#include <doctest/doctest.h>

#include <minibert/bert.hpp>
#include <minibert/encoder.hpp>
#include <minibert/heads.hpp>
#include <minibert/pretrained.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace test_bert_parity { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

struct batch {
  std::vector<std::vector<int>> ids, mask, types;
  std::int64_t B = 0, T = 0;
};

// Real sentences from SST-2, tokenized by whole-word lookup in the real vocab (this test is about the model, not
// the tokenizer): [CLS] words [SEP], [UNK] for words not in the vocab, padded to the longest with [PAD].
batch real_sentences(std::size_t count, std::size_t max_words) {
  std::unordered_map<std::string, int> vocab;
  {
    std::ifstream v(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/bert-base-uncased/vocab.txt");
    REQUIRE(v.good());
    std::string line;
    for (int i = 0; std::getline(v, line); ++i) vocab.emplace(line, i);
  }
  std::ifstream in(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/sentiment/sst2/train.tsv");
  REQUIRE(in.good());
  std::string line;
  std::getline(in, line); // header
  batch b;
  while (b.ids.size() < count && std::getline(in, line)) {
    std::istringstream words(line.substr(0, line.find('\t')));
    std::vector<int> ids{101};
    std::string w;
    while (words >> w && ids.size() < max_words + 1) {
      for (auto& ch : w) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      auto it = vocab.find(w);
      ids.push_back(it == vocab.end() ? 100 : it->second);
    }
    ids.push_back(102);
    b.ids.push_back(ids);
  }
  for (auto& r : b.ids) b.T = std::max<std::int64_t>(b.T, std::int64_t(r.size()));
  b.B = std::int64_t(b.ids.size());
  for (std::size_t r = 0; r < b.ids.size(); ++r) {
    const std::size_t n = b.ids[r].size();
    std::vector<int> m(b.T, 0), t(b.T, 0);
    for (std::size_t i = 0; i < n; ++i) m[i] = 1;
    if (r == 1) // a sentence-pair-like row: the last three real tokens are segment B
      for (std::size_t i = n - 3; i < n; ++i) t[i] = 1;
    b.ids[r].resize(b.T, 0);
    b.mask.push_back(m);
    b.types.push_back(t);
  }
  return b;
}

nlohmann::json small_config(const std::string& act) {
  return {{"model_type", "bert"},        {"vocab_size", 30522},        {"hidden_size", 64},
          {"num_hidden_layers", 2},       {"num_attention_heads", 4},   {"intermediate_size", 128},
          {"hidden_act", act},            {"hidden_dropout_prob", 0.1}, {"attention_probs_dropout_prob", 0.1},
          {"max_position_embeddings", 64}, {"type_vocab_size", 2},       {"initializer_range", 0.02},
          {"layer_norm_eps", 1e-12},      {"pad_token_id", 0}};
}

fs::path work_dir(const std::string& name) {
  fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "bert_parity" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Writes config and inputs, runs the PyTorch reference; returns the model directory it wrote.
fs::path run_reference(const std::string& name, const nlohmann::json& cfg, const batch& b, const nlohmann::json& labels,
                       const std::string& task, const std::string& dtype) {
  const fs::path d = work_dir(name);
  std::ofstream(d / "in_config.json") << cfg.dump();
  nlohmann::json inp = {{"input_ids", b.ids}, {"attention_mask", b.mask}, {"token_type_ids", b.types}, {"labels", labels}};
  std::ofstream(d / "inputs.json") << inp.dump();
  const std::string cmd = std::string(MINIBERT_TEST_PYTHON) + " " + MINIBERT_TEST_SOURCE_DIR +
                          "/python/bert_reference.py --config " + (d / "in_config.json").string() + " --inputs " +
                          (d / "inputs.json").string() + " --out " + (d / "model").string() + " --task " + task +
                          " --dtype " + dtype;
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
  return d / "model";
}

bert_inputs<device::cpu> to_inputs(const batch& b) {
  auto flat = [&](const std::vector<std::vector<int>>& v) {
    std::vector<std::int32_t> f;
    for (auto& r : v) f.insert(f.end(), r.begin(), r.end());
    return tensor<std::int32_t>::from(f, {b.B, b.T});
  };
  return {flat(b.ids), flat(b.mask), flat(b.types), {}};
}

struct tol {
  double rtol, atol;
};

// max over elements of |x - ref| / (atol + rtol |ref|): <= 1 passes
template <class T> double worst(const std::vector<T>& x, const std::vector<double>& ref, tol t) {
  REQUIRE(x.size() == ref.size());
  double w = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    w = std::max(w, std::abs(double(x[i]) - ref[i]) / (t.atol + t.rtol * std::abs(ref[i])));
  return w;
}

std::vector<double> ref_values(const checkpoint& ref, const std::string& name) { return ref.read_vector<double>(name); }

template <class Model> struct run_result {
  std::vector<typename Model::variable_t::tensor_t::value_type> logits;
  double loss = 0;
};

// forward + backward in eval mode; grads stay on the model's parameters
template <class Model, class Labels>
run_result<Model> forward_backward(Model& m, const bert_inputs<device::cpu>& in, const Labels& labels) {
  generator gen(0);
  m.eval();
  m.zero_grad();
  auto logits = m.forward(in, gen);
  auto loss = m.loss(logits, labels);
  loss.backward();
  return {logits.value().to_vector(), double(loss.value().item())};
}

template <class Model>
void compare_all(const Model& m, const run_result<Model>& r, const checkpoint& ref, tol fwd, tol grad_rtol) {
  const double wl = worst(r.logits, ref_values(ref, "logits"), fwd);
  const double wloss = worst(std::vector<double>{r.loss}, ref_values(ref, "loss"), fwd);
  MESSAGE("logits worst ratio " << wl << ", loss " << r.loss << " vs " << ref_values(ref, "loss")[0]);
  CHECK(wl <= 1.0);
  CHECK(wloss <= 1.0);
  double G = 0;
  for (auto& [name, v] : m.named_parameters())
    for (double x : ref_values(ref, "grad." + name)) G = std::max(G, std::abs(x));
  int compared = 0;
  for (auto& [name, v] : m.named_parameters()) {
    REQUIRE_MESSAGE(v.has_grad(), name);
    const auto g = v.grad().to_vector();
    const auto rg = ref_values(ref, "grad." + name);
    const double w = worst(g, rg, {grad_rtol.rtol, grad_rtol.atol * G});
    CHECK_MESSAGE(w <= 1.0, "gradient of " << name << ": worst ratio " << w);
    ++compared;
  }
  CHECK(compared == int(ref.names().size()) - 2); // every gradient the reference wrote was compared
}

template <class T> using seq_cls = bert_for_sequence_classification<T>;

} // namespace

TEST_CASE("sequence classification matches transformers: logits, loss and every gradient (fp32 and fp64)") {
  const batch b = real_sentences(4, 12);
  const nlohmann::json labels = {0, 1, 1, 0};
  const tensor<std::int32_t> lab = tensor<std::int32_t>::from({0, 1, 1, 0}, {4});
  generator gen(7);

  SUBCASE("fp32") {
    const fs::path dir = run_reference("cls_f32", small_config("gelu"), b, labels, "seq_cls", "float32");
    auto m = from_pretrained<seq_cls<float>>(dir, gen, nullptr);
    const auto r = forward_backward(*m, to_inputs(b), lab);
    compare_all(*m, r, checkpoint::open(dir / "reference.safetensors"), {1e-5, 1e-6}, {1e-4, 1e-5});
  }
  SUBCASE("fp64") {
    const fs::path dir = run_reference("cls_f64", small_config("gelu"), b, labels, "seq_cls", "float64");
    auto m = from_pretrained<seq_cls<double>>(dir, gen, nullptr);
    const auto r = forward_backward(*m, to_inputs(b), lab);
    compare_all(*m, r, checkpoint::open(dir / "reference.safetensors"), {1e-9, 1e-12}, {1e-9, 1e-12});
  }
}

TEST_CASE("the parity check fails when one weight or the mask is perturbed") {
  const batch b = real_sentences(4, 12);
  const fs::path dir = run_reference("cls_perturb", small_config("gelu"), b, {0, 1, 1, 0}, "seq_cls", "float64");
  const checkpoint ref = checkpoint::open(dir / "reference.safetensors");
  generator gen(7);
  auto m = from_pretrained<seq_cls<double>>(dir, gen, nullptr);
  const tensor<std::int32_t> lab = tensor<std::int32_t>::from({0, 1, 1, 0}, {4});
  const tol t{1e-9, 1e-12};
  REQUIRE(worst(forward_backward(*m, to_inputs(b), lab).logits, ref_values(ref, "logits"), t) <= 1.0);

  SUBCASE("one weight") {
    for (auto& [name, v] : m->named_parameters())
      if (name == "bert.encoder.layer.1.attention.self.query.weight") {
        auto p = v;
        p.mutable_value().data()[5] += 1e-3;
      }
    CHECK(worst(forward_backward(*m, to_inputs(b), lab).logits, ref_values(ref, "logits"), t) > 1.0);
  }
  SUBCASE("the mask") {
    batch bm = b;
    std::int64_t row = 0; // a row with padding: unmask its first padded position
    while (bm.mask[row].back() == 1) ++row;
    for (auto& x : bm.mask[row])
      if (x == 0) {
        x = 1;
        break;
      }
    CHECK(worst(forward_backward(*m, to_inputs(bm), lab).logits, ref_values(ref, "logits"), t) > 1.0);
  }
}

TEST_CASE("masked LM (tied decoder, gelu_new) matches transformers") {
  const batch b = real_sentences(3, 10);
  nlohmann::json labels = nlohmann::json::array();
  std::vector<std::int32_t> flat;
  for (std::int64_t r = 0; r < b.B; ++r) {
    std::vector<int> row(b.T, -100);
    for (std::int64_t i = 1; i < b.T; i += 3)
      if (b.mask[r][i]) row[i] = b.ids[r][i];
    labels.push_back(row);
    flat.insert(flat.end(), row.begin(), row.end());
  }
  const fs::path dir = run_reference("mlm_f64", small_config("gelu_new"), b, labels, "mlm", "float64");
  generator gen(3);
  std::ostringstream warn;
  auto m = from_pretrained<bert_for_masked_lm<double>>(dir, gen, &warn);
  CHECK(warn.str().empty()); // every weight found, none unused (the tied decoder is stored once)
  const auto r = forward_backward(*m, to_inputs(b), tensor<std::int32_t>::from(flat, {b.B, b.T}));
  compare_all(*m, r, checkpoint::open(dir / "reference.safetensors"), {1e-9, 1e-12}, {1e-9, 1e-12});
}

TEST_CASE("regression (MSE) and multi-label (BCE) heads match transformers") {
  const batch b = real_sentences(4, 8);
  generator gen(5);
  SUBCASE("regression, num_labels 1") {
    auto cfg = small_config("relu");
    cfg["id2label"] = {{"0", "score"}};
    cfg["label2id"] = {{"score", 0}};
    const fs::path dir = run_reference("reg", cfg, b, {0.5, -1.0, 2.0, 0.25}, "seq_cls", "float64");
    auto m = from_pretrained<seq_cls<double>>(dir, gen, nullptr);
    const auto r = forward_backward(*m, to_inputs(b), tensor<double>::from({0.5, -1.0, 2.0, 0.25}, {4}));
    compare_all(*m, r, checkpoint::open(dir / "reference.safetensors"), {1e-9, 1e-12}, {1e-9, 1e-12});
  }
  SUBCASE("multi-label") {
    auto cfg = small_config("gelu_pytorch_tanh");
    cfg["id2label"] = {{"0", "a"}, {"1", "b"}, {"2", "c"}};
    cfg["label2id"] = {{"a", 0}, {"b", 1}, {"c", 2}};
    cfg["problem_type"] = "multi_label_classification";
    const std::vector<double> y = {1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0};
    const fs::path dir = run_reference("multi", cfg, b, {{1., 0., 1.}, {0., 0., 1.}, {1., 1., 0.}, {0., 1., 0.}},
                                       "seq_cls", "float64");
    auto m = from_pretrained<seq_cls<double>>(dir, gen, nullptr);
    const auto r = forward_backward(*m, to_inputs(b), tensor<double>::from(y, {4, 3}));
    compare_all(*m, r, checkpoint::open(dir / "reference.safetensors"), {1e-9, 1e-12}, {1e-9, 1e-12});
  }
}

TEST_CASE("pytorch_model.bin loads the same tensors as model.safetensors, and save then load is bit-exact") {
  const batch b = real_sentences(2, 6);
  const fs::path dir = run_reference("formats", small_config("gelu"), b, {0, 1}, "seq_cls", "float32");
  const checkpoint st = checkpoint::open(dir / "model.safetensors");
  const checkpoint pt = checkpoint::open(dir / "pytorch_model.bin");
  CHECK(std::string(pt.format()) == "torch");
  REQUIRE(st.names().size() == pt.names().size());
  for (const auto& n : st.names()) {
    const auto a = st.read_vector<float>(n), c = pt.read_vector<float>(n);
    CHECK_MESSAGE(a == c, n);
  }

  generator gen(1);
  auto m = from_pretrained<seq_cls<float>>(dir, gen, nullptr);
  const fs::path out = work_dir("formats_saved");
  save_pretrained(*m, out);
  auto m2 = from_pretrained<seq_cls<float>>(out, gen, nullptr);
  const auto p1 = m->named_parameters(), p2 = m2->named_parameters();
  REQUIRE(p1.size() == p2.size());
  for (std::size_t i = 0; i < p1.size(); ++i) {
    CHECK(p1[i].first == p2[i].first);
    CHECK_MESSAGE(p1[i].second.value().to_vector() == p2[i].second.value().to_vector(), p1[i].first);
  }
  const auto saved = nlohmann::json::parse(std::ifstream(out / "config.json"));
  CHECK(saved["architectures"] == nlohmann::json::array({"BertForSequenceClassification"}));
  CHECK(saved["id2label"].size() == 2);
}

TEST_CASE("loading a base checkpoint into a head warns as transformers does, and shape mismatches name the tensor") {
  const batch b = real_sentences(2, 6);
  const fs::path dir = run_reference("base", small_config("gelu"), b, {0, 1}, "seq_cls", "float32");
  generator gen(1);
  // a base BertModel checkpoint with legacy LayerNorm names: strip the "bert." prefix and the head
  auto full = from_pretrained<seq_cls<float>>(dir, gen, nullptr);
  const fs::path base = work_dir("base_model");
  {
    bert_model<float> bm(full->config());
    save_pretrained(bm, base); // writes BertModel names (no prefix)
    const checkpoint ck = checkpoint::open(base / "model.safetensors");
    std::vector<std::vector<float>> data;
    std::vector<safetensors_entry> entries;
    data.reserve(ck.names().size());
    const auto fp = full->named_parameters();
    for (auto& [name, v] : fp) {
      if (name.rfind("bert.", 0) != 0) continue;
      std::string n = name.substr(5);
      if (n.size() > 16 && n.compare(n.size() - 16, 16, "LayerNorm.weight") == 0) n = n.substr(0, n.size() - 6) + "gamma";
      else if (n.size() > 14 && n.compare(n.size() - 14, 14, "LayerNorm.bias") == 0) n = n.substr(0, n.size() - 4) + "beta";
      data.push_back(v.value().to_vector());
      entries.push_back({n, dtype::f32, v.shape().to_vector(), data.back().data()});
    }
    save_safetensors(base / "model.safetensors", entries, {{"format", "pt"}});
  }
  std::ostringstream warn;
  auto m = from_pretrained<seq_cls<float>>(base, gen, &warn, [](bert_config&) {}, "bert-base-uncased");
  CHECK(warn.str().find("Some weights of BertForSequenceClassification were not initialized from the model checkpoint "
                        "at bert-base-uncased and are newly initialized: ['classifier.bias', 'classifier.weight']") !=
        std::string::npos);
  CHECK(warn.str().find("were not used") == std::string::npos);
  for (auto& [name, v] : m->named_parameters()) // every encoder weight came from the checkpoint
    if (name.rfind("bert.", 0) == 0)
      for (auto& [n2, v2] : full->named_parameters())
        if (n2 == name) CHECK_MESSAGE(v.value().to_vector() == v2.value().to_vector(), name);

  // a checkpoint whose classifier has 3 labels cannot load into a 2-label model
  bert_config c3 = full->config();
  c3.set_num_labels(3);
  seq_cls<float> three(c3);
  three.init_weights(gen);
  const fs::path d3 = work_dir("three_labels");
  save_pretrained(three, d3);
  bert_config c2 = full->config();
  seq_cls<float> two(c2);
  try {
    load_weights(two, checkpoint::open(d3 / "model.safetensors"), "x", nullptr);
    FAIL("no error for a shape mismatch");
  } catch (const minibert::error& e) {
    const std::string w = e.what();
    CHECK(w.find("classifier.") != std::string::npos);
    CHECK(w.find("3") != std::string::npos);
    CHECK(w.find("2") != std::string::npos);
  }
}

} // namespace test_bert_parity
