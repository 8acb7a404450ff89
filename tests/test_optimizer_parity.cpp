// SPDX-License-Identifier: MIT
// AdamW, clip_grad_norm and the linear schedule against PyTorch, live: tests/python/optimizer_reference.py trains a
// small random BertForSequenceClassification (2 layers, hidden 64, 4 heads, dropout 0) for 10 optimizer steps with
// torch.optim.AdamW (single-tensor path), transformers' no-decay groups, clip_grad_norm_ and a LambdaLR linear
// schedule (warmup 3 of 10 steps), on real SST-2 sentences in file order; minibert loads the same initial weights,
// runs the same loop, and must end with the same numbers: per-step loss, grad norm and lr, every final weight, and
// AdamW's moments.
//
// Tolerances (|x - ref| <= atol + rtol * |ref|, per element; every run prints its worst ratio and max differences):
//   fp64: rtol 1e-9, atol 1e-12 on losses, grad norms and final weights. Both sides compute in double; forward and
//         backward differ by summation order only (~1e-16 relative), and AdamW's update m / (sqrt(v) + eps) is
//         homogeneous of degree 0 in g, so relative gradient errors reach the update at the same size, not amplified.
//         Measured: weights max |diff| 1.2e-15 (worst ratio 3e-4), losses 1.6e-16 relative, norms 2.2e-15 relative.
//         The lr must be bit-identical (the same double operations as transformers' lambda).
//         AdamW's moments: rtol 1e-9 plus atol 1e-9 times the largest |moment| over all parameters: the key biases'
//         gradients are zero in exact arithmetic (softmax ignores a per-row constant), so both sides hold rounding
//         noise there, which only a floor on the model's scale can judge (measured worst ratio 3e-6).
//   fp32: losses and norms rtol 1e-5 (forward/backward in fp32 agree to ~1e-6 relative; measured 8.7e-8 and 1.1e-6);
//         weights rtol 1e-4 plus atol 1e-5 = 1% of lr, i.e. 1% of the largest single-step move of a weight: gradient
//         differences of ~1e-6 relative become update differences of ~1e-6 lr per step, compounded over 10 steps
//         through the changed forward pass (measured max |diff| 4.1e-7, worst ratio 0.034).
// Negative controls (fp64 tolerance): shifting the schedule by one step (lr_at(s+1)), or weight decay on every
// parameter (no transformers no-decay group), must make the final weights FAIL the comparison (measured worst
// ratios ~4e9 and ~8e5).
#include <doctest/doctest.h>

#include <minibert/bert.hpp>
#include <minibert/heads.hpp>
#include <minibert/optimizer.hpp>
#include <minibert/pretrained.hpp>
#include <minibert/scheduler.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_helpers.hpp" // check_error

namespace test_optimizer_parity { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

template <class T> using seq_cls = bert_for_sequence_classification<T>;

// ------------------------------------------------------------------------------------------------ data

struct micro_batch {
  std::vector<std::vector<int>> ids, mask, types;
  std::vector<int> labels;
  std::int64_t B = 0, T = 0;
};

// Consecutive SST-2 training sentences (file order) and their labels, n_batches batches of `per` rows, tokenized by
// whole-word lookup in the real vocab ([CLS] words [SEP], [UNK] when absent, padded with [PAD] to the batch's
// longest row): this test is about the optimizer, not the tokenizer.
std::vector<micro_batch> sst2_batches(std::size_t n_batches, std::size_t per, std::size_t max_words) {
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
  std::getline(in, line); // header: sentence \t label
  std::vector<micro_batch> out(n_batches);
  for (auto& b : out) {
    while (b.ids.size() < per) {
      REQUIRE(std::getline(in, line));
      const auto tab = line.find('\t');
      REQUIRE(tab != std::string::npos);
      std::istringstream words(line.substr(0, tab));
      std::vector<int> ids{101};
      std::string w;
      while (words >> w && ids.size() < max_words + 1) {
        for (auto& ch : w) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        auto it = vocab.find(w);
        ids.push_back(it == vocab.end() ? 100 : it->second);
      }
      ids.push_back(102);
      b.ids.push_back(ids);
      b.labels.push_back(std::stoi(line.substr(tab + 1)));
    }
    for (auto& r : b.ids) b.T = std::max<std::int64_t>(b.T, std::int64_t(r.size()));
    b.B = std::int64_t(b.ids.size());
    for (auto& r : b.ids) {
      std::vector<int> m(b.T, 0);
      std::fill(m.begin(), m.begin() + std::ptrdiff_t(r.size()), 1);
      r.resize(b.T, 0);
      b.mask.push_back(m);
      b.types.push_back(std::vector<int>(b.T, 0));
    }
  }
  return out;
}

bert_inputs<device::cpu> to_inputs(const micro_batch& b) {
  auto flat = [&](const std::vector<std::vector<int>>& v) {
    std::vector<std::int32_t> f;
    for (auto& r : v) f.insert(f.end(), r.begin(), r.end());
    return tensor<std::int32_t>::from(f, {b.B, b.T});
  };
  return {flat(b.ids), flat(b.mask), flat(b.types), {}}; // position ids: the default 0..T-1
}

// ------------------------------------------------------------------------------------------------ the PyTorch side

nlohmann::json small_config() {
  return {{"model_type", "bert"},         {"vocab_size", 30522},        {"hidden_size", 64},
          {"num_hidden_layers", 2},        {"num_attention_heads", 4},   {"intermediate_size", 128},
          {"hidden_act", "gelu"},          {"hidden_dropout_prob", 0.0}, {"attention_probs_dropout_prob", 0.0},
          {"max_position_embeddings", 64}, {"type_vocab_size", 2},       {"initializer_range", 0.02},
          {"layer_norm_eps", 1e-12},       {"pad_token_id", 0}};
}

struct train_options {
  int steps = 10;
  int accum = 1;           // micro-batches per optimizer step
  double lr = 1e-3;        // large enough to move the weights visibly in 10 steps
  double weight_decay = 0.01;
  std::int64_t warmup = 3; // linear schedule: warmup 3 of `steps`
  double max_grad_norm = 0.5; // below most steps' gradient norm: clipping is active on most steps
  // negative controls (minibert side only)
  int schedule_shift = 0;        // use lr_at(s + shift) for step s
  bool decay_everything = false; // one group, weight decay on every parameter
};

constexpr std::size_t rows_per_batch = 4, max_words = 16;

// Runs the reference; returns its output directory (model/ and reference.safetensors).
fs::path run_reference(const std::string& name, const train_options& o, const std::vector<micro_batch>& batches,
                       const std::string& dtype) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "optimizer_parity" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  nlohmann::json steps = nlohmann::json::array();
  for (int s = 0; s < o.steps; ++s) {
    nlohmann::json micro = nlohmann::json::array();
    for (int k = 0; k < o.accum; ++k) {
      const micro_batch& b = batches.at(std::size_t(s * o.accum + k));
      micro.push_back({{"input_ids", b.ids}, {"attention_mask", b.mask}, {"token_type_ids", b.types},
                       {"labels", b.labels}});
    }
    steps.push_back(micro);
  }
  const nlohmann::json spec = {{"config", small_config()}, {"dtype", dtype},         {"seed", 0},
                               {"lr", o.lr},               {"weight_decay", o.weight_decay},
                               {"schedule", "linear"},     {"warmup_steps", o.warmup},
                               {"max_grad_norm", o.max_grad_norm}, {"steps", steps}};
  std::ofstream(d / "spec.json") << spec.dump();
  const std::string cmd = std::string(MINIBERT_TEST_PYTHON) + " " + MINIBERT_TEST_SOURCE_DIR +
                          "/python/optimizer_reference.py --spec " + (d / "spec.json").string() + " --out " +
                          d.string();
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
  return d;
}

// ------------------------------------------------------------------------------------------------ the minibert side

// transformers' Trainer inner loop, one optimizer step at a time (the state can be saved between steps)
template <class T> struct trainer_loop {
  train_options o;
  std::unique_ptr<seq_cls<T>> model;
  std::unique_ptr<adamw<T>> opt;
  scheduler sched;
  std::vector<double> loss, norm, lr;

  trainer_loop(const fs::path& model_dir, const train_options& opts)
      : o(opts), sched(lr_schedule{schedule_kind::linear, opts.lr, opts.warmup, opts.steps}) {
    generator gen(1);
    model = from_pretrained<seq_cls<T>>(model_dir, gen, nullptr);
    model->train(); // dropout probabilities are 0
    std::vector<param_group<T>> groups;
    if (o.decay_everything) {
      param_group<T> all;
      all.weight_decay = o.weight_decay;
      for (auto& [n, p] : model->named_parameters()) {
        all.names.push_back(n);
        all.params.push_back(p);
      }
      groups.push_back(std::move(all));
    } else {
      groups = default_param_groups(*model, o.weight_decay);
    }
    opt = std::make_unique<adamw<T>>(std::move(groups));
  }

  void step(const std::vector<micro_batch>& batches) {
    const int s = int(sched.steps_taken());
    generator gen(2);
    double total = 0;
    for (int k = 0; k < o.accum; ++k) {
      const micro_batch& b = batches.at(std::size_t(s * o.accum + k));
      std::vector<std::int32_t> lab(b.labels.begin(), b.labels.end());
      const auto logits = model->forward(to_inputs(b), gen);
      auto l = scale(model->loss(logits, tensor<std::int32_t>::from(lab, {b.B})), T(1) / T(o.accum));
      l.backward();
      total += double(l.value().item());
    }
    norm.push_back(clip_grad_norm(model->parameters(), o.max_grad_norm));
    lr.push_back(sched.schedule().lr_at(sched.steps_taken() + o.schedule_shift));
    opt->step(lr.back());
    sched.step();
    opt->zero_grad();
    loss.push_back(total);
  }
  void run(const std::vector<micro_batch>& batches) {
    while (sched.steps_taken() < o.steps) step(batches);
  }
};

// ------------------------------------------------------------------------------------------------ comparison

struct tol {
  double rtol, atol;
};
struct verdict {
  double worst = 0;  // max |x-ref| / (atol + rtol |ref|): <= 1 passes
  double max_abs = 0, max_rel = 0;
  std::string where; // tensor (and element) of the worst ratio
};
void merge(verdict& v, const std::vector<double>& x, const std::vector<double>& ref, tol t, const std::string& name) {
  REQUIRE_MESSAGE(x.size() == ref.size(), name);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = std::abs(x[i] - ref[i]);
    const double r = std::isnan(d) ? INFINITY : d / (t.atol + t.rtol * std::abs(ref[i]));
    v.max_abs = std::max(v.max_abs, d);
    if (ref[i] != 0) v.max_rel = std::max(v.max_rel, d / std::abs(ref[i]));
    if (r > v.worst) {
      v.worst = r;
      v.where = name + "[" + std::to_string(i) + "]: " + std::to_string(x[i]) + " vs " + std::to_string(ref[i]);
    }
  }
}
template <class T> std::vector<double> as_double(const std::vector<T>& v) { return {v.begin(), v.end()}; }
void report(const char* what, const verdict& v) {
  std::printf("[optimizer parity] %-34s worst ratio %.3e  max |diff| %.3e  max rel %.3e  (worst at %s)\n", what,
              v.worst, v.max_abs, v.max_rel, v.where.c_str());
}

template <class T> verdict compare_weights(const seq_cls<T>& m, const checkpoint& ref, tol t) {
  verdict v;
  for (auto& [name, p] : m.named_parameters())
    merge(v, as_double(p.value().to_vector()), ref.read_vector<double>("param." + name), t, name);
  return v;
}

// Moments: the absolute floor scales with the largest reference value of that moment over all parameters (see the
// header: the key biases' moments are rounding noise on both sides).
template <class T> verdict compare_moments(const adamw<T>& opt, const checkpoint& ref, double rtol, double floor) {
  verdict v;
  int compared = 0;
  for (const char* k : {"exp_avg", "exp_avg_sq"}) {
    double scale = 0;
    for (const auto& grp : opt.param_groups())
      for (const auto& name : grp.names)
        if (ref.contains("state." + name + "." + k))
          for (double x : ref.read_vector<double>("state." + name + "." + k)) scale = std::max(scale, std::abs(x));
    for (const auto& grp : opt.param_groups())
      for (const auto& name : grp.names) {
        const std::string key = "state." + name + "." + k;
        if (!ref.contains(key)) continue;
        const auto* st = opt.state(name);
        REQUIRE_MESSAGE(st != nullptr, name);
        const auto& t = std::string(k) == "exp_avg" ? st->exp_avg : st->exp_avg_sq;
        merge(v, as_double(t.to_vector()), ref.read_vector<double>(key), {rtol, floor * scale}, key);
        ++compared;
      }
  }
  CHECK(compared > 60); // both moments of every parameter but the word embeddings
  return v;
}

struct parity {
  verdict loss, norm, weights;
  bool lr_identical = true;
  int clipped_ref = 0, clipped_ours = 0;
};

template <class T>
parity compare_run(const trainer_loop<T>& run, const checkpoint& ref, tol scalars, tol weights) {
  parity p;
  merge(p.loss, run.loss, ref.read_vector<double>("loss"), scalars, "loss");
  merge(p.norm, run.norm, ref.read_vector<double>("grad_norm"), scalars, "grad_norm");
  p.lr_identical = run.lr == ref.read_vector<double>("lr");
  for (double n : ref.read_vector<double>("grad_norm")) p.clipped_ref += n > run.o.max_grad_norm;
  for (double n : run.norm) p.clipped_ours += n > run.o.max_grad_norm;
  p.weights = compare_weights(*run.model, ref, weights);
  return p;
}

void print_steps(const std::vector<double>& ours, const checkpoint& ref, const char* key) {
  const auto r = ref.read_vector<double>(key);
  std::printf("[optimizer parity] %-9s", key);
  for (std::size_t i = 0; i < ours.size(); ++i) std::printf(" %.6g(%+.1e)", ours[i], ours[i] - r[i]);
  std::printf("\n");
}

} // namespace

TEST_CASE("AdamW + linear schedule + clip_grad_norm match PyTorch over 10 steps (fp64) and the negative controls fail") {
  const train_options o;
  const auto batches = sst2_batches(std::size_t(o.steps * o.accum), rows_per_batch, max_words);
  const fs::path dir = run_reference("f64", o, batches, "float64");
  const checkpoint ref = checkpoint::open(dir / "reference.safetensors");
  const tol t{1e-9, 1e-12};

  trainer_loop<double> run(dir / "model", o);
  run.run(batches);
  const parity p = compare_run(run, ref, t, t);
  print_steps(run.loss, ref, "loss");
  print_steps(run.norm, ref, "grad_norm");
  print_steps(run.lr, ref, "lr");
  report("fp64 loss", p.loss);
  report("fp64 grad norm", p.norm);
  report("fp64 final weights", p.weights);
  CHECK(p.loss.worst <= 1.0);
  CHECK(p.norm.worst <= 1.0);
  CHECK(p.weights.worst <= 1.0);
  CHECK(p.lr_identical);
  // clipping was active (norm > max_norm) on some steps, on both sides, and on the same steps
  MESSAGE("steps clipped: torch " << p.clipped_ref << ", minibert " << p.clipped_ours << " of " << o.steps);
  CHECK(2 * p.clipped_ref > o.steps); // clipping active on most steps
  CHECK(p.clipped_ours == p.clipped_ref);
  CHECK(run.lr.front() == 0.0); // warmup: the first update runs at lr 0
  // the weights moved far beyond the tolerance (the comparison is not vacuous)
  {
    generator gen(1);
    auto init = from_pretrained<seq_cls<double>>(dir / "model", gen, nullptr);
    const verdict moved = compare_weights(*init, ref, t);
    report("fp64 initial vs torch final", moved);
    CHECK(moved.worst > 1e6);
  }
  const verdict mom = compare_moments(*run.opt, ref, 1e-9, 1e-9);
  report("fp64 AdamW moments", mom);
  CHECK(mom.worst <= 1.0);
  {
    const auto steps = ref.read_vector<double>("state_step");
    std::size_t i = 0;
    for (auto& [name, p] : run.model->named_parameters()) {
      REQUIRE(run.opt->state(name) != nullptr);
      CHECK_MESSAGE(double(run.opt->state(name)->step) == steps.at(i++), name);
    }
  }

  // negative controls, inline (a SUBCASE would rerun the reference for each one)
  { // the schedule shifted by one step
    train_options bad = o;
    bad.schedule_shift = 1;
    trainer_loop<double> r(dir / "model", bad);
    r.run(batches);
    const parity q = compare_run(r, ref, t, t);
    report("control: lr_at(s+1) weights", q.weights);
    CHECK_FALSE(q.lr_identical);
    CHECK(q.weights.worst > 1.0);
  }
  { // weight decay on every parameter
    train_options bad = o;
    bad.decay_everything = true;
    trainer_loop<double> r(dir / "model", bad);
    r.run(batches);
    const parity q = compare_run(r, ref, t, t);
    report("control: decay on all weights", q.weights);
    CHECK(q.lr_identical);
    CHECK(q.weights.worst > 1.0);
  }
}

TEST_CASE("AdamW + linear schedule + clip_grad_norm match PyTorch over 10 steps (fp32)") {
  const train_options o;
  const auto batches = sst2_batches(std::size_t(o.steps * o.accum), rows_per_batch, max_words);
  const fs::path dir = run_reference("f32", o, batches, "float32");
  const checkpoint ref = checkpoint::open(dir / "reference.safetensors");
  trainer_loop<float> run(dir / "model", o);
  run.run(batches);
  const parity p = compare_run(run, ref, {1e-5, 1e-7}, {1e-4, 0.01 * o.lr});
  print_steps(run.loss, ref, "loss");
  print_steps(run.norm, ref, "grad_norm");
  report("fp32 loss", p.loss);
  report("fp32 grad norm", p.norm);
  report("fp32 final weights", p.weights);
  CHECK(p.loss.worst <= 1.0);
  CHECK(p.norm.worst <= 1.0);
  CHECK(p.weights.worst <= 1.0);
  CHECK(p.lr_identical); // the schedule is computed in double on both sides
  CHECK(2 * p.clipped_ref > o.steps); // clipping active on most steps
  CHECK(p.clipped_ours == p.clipped_ref);
}

TEST_CASE("gradient accumulation (2 micro-batches per step, each loss / 2) matches PyTorch (fp64)") {
  train_options o;
  o.accum = 2;
  const auto batches = sst2_batches(std::size_t(o.steps * o.accum), rows_per_batch, max_words);
  const fs::path dir = run_reference("f64_accum2", o, batches, "float64");
  const checkpoint ref = checkpoint::open(dir / "reference.safetensors");
  const tol t{1e-9, 1e-12};
  trainer_loop<double> run(dir / "model", o);
  run.run(batches);
  const parity p = compare_run(run, ref, t, t);
  print_steps(run.loss, ref, "loss");
  print_steps(run.norm, ref, "grad_norm");
  report("accum fp64 loss", p.loss);
  report("accum fp64 grad norm", p.norm);
  report("accum fp64 final weights", p.weights);
  CHECK(p.loss.worst <= 1.0);
  CHECK(p.norm.worst <= 1.0);
  CHECK(p.weights.worst <= 1.0);
  CHECK(p.lr_identical);
  CHECK(2 * p.clipped_ref > o.steps); // clipping active on most steps
  CHECK(p.clipped_ours == p.clipped_ref);
}

TEST_CASE("optimizer and scheduler state: save after 5 steps, restore, continue == uninterrupted, bit for bit") {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "optimizer_parity" / "state";
  fs::remove_all(d);
  {
    generator gen(11);
    seq_cls<double> m(bert_config::from_json(small_config(), "small_config"));
    m.init_weights(gen);
    save_pretrained(m, d / "model");
  }
  const train_options o;
  const auto batches = sst2_batches(std::size_t(o.steps), rows_per_batch, max_words);
  trainer_loop<double> full(d / "model", o);
  full.run(batches);

  trainer_loop<double> first(d / "model", o);
  for (int s = 0; s < 5; ++s) first.step(batches);
  {
    const auto st = first.opt->state_entries();
    CHECK(st.entries.size() == 2 * first.model->named_parameters().size());
    bool named = false;
    for (const auto& e : st.entries) {
      named |= e.name == "state.bert.encoder.layer.1.attention.self.key.bias.exp_avg_sq";
      CHECK(e.dtype == dtype::f64);
    }
    CHECK(named);
    CHECK(st.scalars["state"]["classifier.weight"]["step"] == 5);
    CHECK(st.scalars["param_groups"][1]["weight_decay"] == 0.0);
    save_safetensors(d / "optimizer.safetensors", st.entries);
    std::ofstream(d / "optimizer.json") << st.scalars.dump();
  }
  trainer_loop<double> second(d / "model", o);
  {
    const auto src = first.model->named_parameters(), dst = second.model->named_parameters();
    REQUIRE(src.size() == dst.size());
    for (std::size_t i = 0; i < src.size(); ++i) { // a trainer checkpoint stores the fp64 weights too
      auto v = dst[i].second;
      backend<device::cpu>::copy(minibert::current_context<device::cpu>(), src[i].second.value().data(), v.mutable_value().data(), v.numel());
    }
  }
  second.opt->load_state(checkpoint::open(d / "optimizer.safetensors"),
                         nlohmann::json::parse(std::ifstream(d / "optimizer.json")));
  second.sched.load_state(first.sched.state());
  CHECK(second.sched.last_lr() == full.lr[5]);
  second.run(batches);
  REQUIRE(second.loss.size() == 5);
  for (int s = 0; s < 5; ++s) {
    CHECK(second.loss[s] == full.loss[s + 5]);
    CHECK(second.norm[s] == full.norm[s + 5]);
    CHECK(second.lr[s] == full.lr[s + 5]);
  }
  const auto a = full.model->named_parameters(), b = second.model->named_parameters();
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK_MESSAGE(a[i].second.value().to_vector() == b[i].second.value().to_vector(), a[i].first);
  CHECK(second.opt->state("classifier.bias")->step == 10);
  CHECK(second.opt->state("classifier.bias")->exp_avg.to_vector() ==
        full.opt->state("classifier.bias")->exp_avg.to_vector());

  // errors name what does not match, and leave the optimizer as it was
  const nlohmann::json scalars = nlohmann::json::parse(std::ifstream(d / "optimizer.json"));
  train_options all = o;
  all.decay_everything = true;
  trainer_loop<double> other(d / "model", all);
  test::check_error([&] { other.opt->load_state(checkpoint::open(d / "optimizer.safetensors"), scalars); },
                    {"adamw", "2 param groups", "optimizer 1"});
  {
    const auto st = first.opt->state_entries();
    std::vector<safetensors_entry> missing, reshaped;
    for (const auto& e : st.entries) {
      if (e.name != "state.classifier.bias.exp_avg_sq") missing.push_back(e);
      reshaped.push_back(e);
      if (e.name == "state.classifier.bias.exp_avg") reshaped.back().shape = {1, 2};
    }
    save_safetensors(d / "missing.safetensors", missing);
    save_safetensors(d / "reshaped.safetensors", reshaped);
  }
  const double before = first.opt->state("classifier.bias")->exp_avg.to_vector()[0];
  test::check_error([&] { first.opt->load_state(checkpoint::open(d / "missing.safetensors"), scalars); },
                    {"adamw", "state.classifier.bias.exp_avg_sq", "not found"});
  test::check_error([&] { first.opt->load_state(checkpoint::open(d / "reshaped.safetensors"), scalars); },
                    {"adamw", "state.classifier.bias.exp_avg", "[1, 2]", "[2]"});
  nlohmann::json renamed = scalars;
  renamed["param_groups"][1]["params"][0] = "bert.no_such.bias";
  test::check_error([&] { first.opt->load_state(checkpoint::open(d / "optimizer.safetensors"), renamed); },
                    {"adamw", "param group 1", "bert.no_such.bias"});
  CHECK(first.opt->state("classifier.bias")->exp_avg.to_vector()[0] == before);
  CHECK(first.opt->state("classifier.bias")->step == 5);
}

TEST_CASE("AdamW: one step by hand, parameters without a gradient are skipped, argument errors") {
  using var = variable<double>;
  var a(tensor<double>::from({1.0, -2.0}, {2}), true), b(tensor<double>::from({3.0}, {1}), true);
  adamw<double> opt({{{"a"}, {a}, 0.1}, {{"b"}, {b}, 0.0}});
  // only a gets a gradient: g = (0.5, -0.25)
  sum(mul(a, var(tensor<double>::from({0.5, -0.25}, {2})))).backward();
  opt.step(0.1);
  // at t = 1 the bias-corrected moments are g and g^2, so the update is lr * g / (|g| + eps)
  const double lr = 0.1, eps = 1e-8;
  const auto av = a.value().to_vector();
  CHECK(av[0] == doctest::Approx(1.0 * (1 - lr * 0.1) - lr * 0.5 / (0.5 + eps)).epsilon(1e-15));
  CHECK(av[1] == doctest::Approx(-2.0 * (1 - lr * 0.1) + lr * 0.25 / (0.25 + eps)).epsilon(1e-15));
  CHECK(b.value().to_vector()[0] == 3.0);
  CHECK(opt.state("b") == nullptr);
  REQUIRE(opt.state("a") != nullptr);
  CHECK(opt.state("a")->step == 1);
  CHECK(opt.state("a")->exp_avg.to_vector()[0] == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(opt.state("a")->exp_avg_sq.to_vector()[1] == doctest::Approx(0.001 * 0.0625).epsilon(1e-15));
  opt.zero_grad();
  sum(mul(add(a, var(tensor<double>::from({0.0, 0.0}, {2}))), b)).backward(); // now both have gradients
  opt.step(0.1);
  CHECK(opt.state("a")->step == 2);
  CHECK(opt.state("b")->step == 1);

  test::check_error([&] { opt.step(-1.0); }, {"adamw", "learning rate"});
  test::check_error([&] { adamw<double>({{{"a", "b"}, {a}, 0.0}}); }, {"adamw", "2 names for 1 params"});
  test::check_error([&] { adamw<double>({{{"a"}, {a}, 0.0}, {{"a2"}, {a}, 0.0}}); },
                    {"adamw", "'a2'", "more than one place"});
  test::check_error([&] { adamw<double>({{{"a"}, {a}, -0.1}}); }, {"adamw", "weight decay"});
  test::check_error([&] { adamw<double>({{{"a"}, {a}, 0.0}}, {0.9, 1.0, 1e-8}); }, {"adamw", "beta2"});
}

TEST_CASE("clip_grad_norm: norm over all gradients, scaling, shared gradient buffers, non-finite norms") {
  using var = variable<double>;
  var a(tensor<double>::from({1.0, 2.0}, {2}), true), b(tensor<double>::from({0.5, 0.5}, {2}), true);
  var c(tensor<double>::from({7.0}, {1}), true); // never gets a gradient
  // a + b passes ONE gradient buffer to both leaves: scaling in place must not scale it twice
  sum(mul(add(a, b), var(tensor<double>::from({3.0, 4.0}, {2})))).backward();
  const double norm = clip_grad_norm(std::vector<var>{a, b, c}, 1.0);
  CHECK(norm == doctest::Approx(std::sqrt(2.0) * 5.0).epsilon(1e-15));
  const double coef = 1.0 / (norm + 1e-6);
  CHECK(a.grad().to_vector()[0] == doctest::Approx(3.0 * coef).epsilon(1e-15));
  CHECK(a.grad().to_vector()[1] == doctest::Approx(4.0 * coef).epsilon(1e-15));
  CHECK(b.grad().to_vector()[0] == doctest::Approx(3.0 * coef).epsilon(1e-15));
  CHECK(b.grad().to_vector()[1] == doctest::Approx(4.0 * coef).epsilon(1e-15));
  CHECK_FALSE(c.has_grad());
  // below max_norm: untouched
  const auto before = a.grad().to_vector();
  CHECK(clip_grad_norm(std::vector<var>{a, b}, 10.0) == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(a.grad().to_vector() == before);
  // a non-finite norm is returned, the gradients are left for the caller
  a.zero_grad();
  b.zero_grad();
  sum(mul(a, var(tensor<double>::from({INFINITY, 1.0}, {2})))).backward();
  CHECK(std::isinf(clip_grad_norm(std::vector<var>{a, b}, 1.0)));
  CHECK(a.grad().to_vector()[1] == 1.0);
  test::check_error([&] { clip_grad_norm(std::vector<var>{a}, -1.0); }, {"clip_grad_norm", "max_norm"});
}

TEST_CASE("default_param_groups: transformers' Trainer groups (no decay for biases and LayerNorm weights)") {
  CHECK(is_no_decay_parameter("bert.encoder.layer.0.attention.self.query.bias"));
  CHECK(is_no_decay_parameter("bert.embeddings.LayerNorm.weight"));
  CHECK(is_no_decay_parameter("bert.encoder.layer.3.output.LayerNorm.bias"));
  CHECK(is_no_decay_parameter("cls.predictions.bias"));
  CHECK_FALSE(is_no_decay_parameter("bert.embeddings.word_embeddings.weight"));
  CHECK_FALSE(is_no_decay_parameter("classifier.weight"));
  CHECK_FALSE(is_no_decay_parameter("bert.encoder.layer.0.output.dense.weight"));

  seq_cls<float> m(bert_config::from_json(small_config(), "small_config"));
  const auto groups = default_param_groups(m, 0.01);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.01);
  CHECK(groups[1].weight_decay == 0.0);
  // 2 layers: decay = 3 embeddings + per layer (q, k, v, attention out, intermediate, out weights) + pooler + classifier
  CHECK(groups[0].names.size() == 3 + 2 * 6 + 2);
  // no decay = embeddings LayerNorm (2) + per layer 6 biases + 2 LayerNorms (4) + pooler and classifier biases
  CHECK(groups[1].names.size() == 2 + 2 * 10 + 2);
  CHECK(groups[0].names.size() + groups[1].names.size() == m.named_parameters().size());
  for (const auto& n : groups[0].names) CHECK_MESSAGE(n.find("LayerNorm") == std::string::npos, n);
  for (const auto& n : groups[1].names)
    CHECK_MESSAGE((n.find("bias") != std::string::npos || n.find("LayerNorm.weight") != std::string::npos), n);
}

} // namespace test_optimizer_parity
