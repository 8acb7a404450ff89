// SPDX-License-Identifier: MIT
// `sentiment_trainer train` against transformers' own Trainer (tests/python/hf_trainer.py): 20 optimizer steps of
// sentence-transformers/all-MiniLM-L6-v2 on minibert's 9,600-row split of SST-2 train.tsv, same seed (42), dropout 0,
// lr 2e-5, 5 warmup steps then linear decay, weight decay 0.01, clipping at 1.0, batch 32, a log entry every step.
// With the same initial head (torch's generator) and the same batches (the Trainer's SeedableRandomSampler order),
// the two runs differ only by fp32 rounding in a different accumulation order. Compared: every step's logged loss,
// grad_norm and learning_rate, the run's train_loss, and every final weight.
//
// TOLERANCES (derived, not fitted):
//  * fp32 dot products of length K in a different order differ by ~sqrt(K) u relative (u = 6e-8); the longest
//    reductions here are K ~ 1536 (FFN) and ~32*T (weight gradients over the batch's tokens, T ~ 30), so one GEMM
//    adds ~2.5e-6 and the ~12 GEMMs between the input and a gradient ~1e-5 relative. So:
//    grad_norm (unrounded in both logs) rel <= 1e-4, the unrounded train_loss rel <= 1e-5 (the loss sees only the
//    forward pass, errors of ~1e-6), learning_rate rel <= 1e-12 (both compute it in double from the same formula).
//  * the logged "loss" is round(loss, 4) in both (transformers' _maybe_log_save_evaluate): two losses 1e-6 apart
//    may round to neighbours, so |difference| <= 1e-4 (+1e-9 for the decimal-binary conversion).
//  * weights: AdamW moves an element by lr_s * m/(sqrt(v)+eps) per step, at most ~lr_s; for an element whose gradient
//    is well above its rounding noise the two runs' steps differ by the gradient's relative error (~1e-5 of a step),
//    for an element whose true gradient is ~0 (key biases: softmax ignores them; rarely seen embedding rows) the
//    gradient is rounding noise << eps and the step is damped to a few percent. So |w_minibert - w_torch| <=
//    0.05 * sum_s lr_s (= 0.05 * 2e-4 = 1e-5) for every element: 5% of the largest total movement.
// Negative controls: one weight perturbed by 1e-4 must fail the weight check, and the per-step losses shifted by one
// step (the data order off by one batch) must fail the loss check.
#include <sys/wait.h> // WIFEXITED

#include <chrono>     // steady_clock
#include <cmath>      // abs, round
#include <cstdio>     // popen
#include <cstdlib>    // system
#include <filesystem> // path
#include <fstream>    // ifstream
#include <map>        // map
#include <string>     // string
#include <thread>     // thread (both runs side by side)
#include <vector>     // vector

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <minibert/bert.hpp>

namespace test_trainer_parity { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

const fs::path work = fs::path(MINIBERT_TEST_BINARY_DIR) / "trainer_parity_work";
const std::string shared = MINIBERT_TEST_SHARED_DIR;
constexpr int steps = 20;

int run(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE_MESSAGE(in.good(), p.string());
  return nlohmann::json::parse(in);
}

std::map<std::string, std::vector<float>> read_weights(const fs::path& p) {
  const checkpoint ck = checkpoint::open(p);
  std::map<std::string, std::vector<float>> out;
  for (const auto& n : ck.names()) {
    const auto& info = ck.info(n);
    std::vector<float> v(static_cast<std::size_t>(info.numel()));
    ck.read<float>(n, v.data(), std::span<const std::int64_t>(info.shape));
    out[n] = std::move(v);
  }
  return out;
}

std::vector<nlohmann::json> step_logs(const nlohmann::json& history) {
  std::vector<nlohmann::json> out;
  for (const auto& e : history)
    if (e.contains("loss") && e.contains("grad_norm")) out.push_back(e);
  return out;
}

struct loss_check {
  bool ok = true;
  double max_loss_diff = 0, max_grad_norm_rel = 0, max_lr_rel = 0;
};

// minibert's log entries against the Trainer's, entry i against entry i + shift
loss_check compare_logs(const std::vector<nlohmann::json>& mb, const std::vector<nlohmann::json>& hf, std::size_t shift) {
  loss_check c;
  c.ok = mb.size() == hf.size();
  for (std::size_t i = 0; i + shift < hf.size() && i < mb.size(); ++i) {
    const auto &a = mb[i], &b = hf[i + shift];
    const double dl = std::abs(a["loss"].get<double>() - b["loss"].get<double>());
    const double dg = std::abs(a["grad_norm"].get<double>() - b["grad_norm"].get<double>()) / b["grad_norm"].get<double>();
    const double lr_b = b["learning_rate"].get<double>();
    const double dr = std::abs(a["learning_rate"].get<double>() - lr_b) / (lr_b > 0 ? lr_b : 1.0);
    c.max_loss_diff = std::max(c.max_loss_diff, dl);
    c.max_grad_norm_rel = std::max(c.max_grad_norm_rel, dg);
    c.max_lr_rel = std::max(c.max_lr_rel, dr);
    c.ok = c.ok && dl <= 1e-4 + 1e-9 && dg <= 1e-4 && dr <= 1e-12 && a["step"] == b["step"];
  }
  return c;
}

struct weight_check {
  bool ok = true;
  double max_abs = 0, max_rel = 0;
  std::string worst;
};

weight_check compare_weights(const std::map<std::string, std::vector<float>>& mb,
                             const std::map<std::string, std::vector<float>>& hf, double tol) {
  weight_check c;
  c.ok = mb.size() == hf.size();
  for (const auto& [name, b] : hf) {
    auto it = mb.find(name);
    if (it == mb.end() || it->second.size() != b.size()) {
      c.ok = false;
      continue;
    }
    for (std::size_t i = 0; i < b.size(); ++i) {
      const double d = std::abs(double(it->second[i]) - double(b[i]));
      if (d > c.max_abs) {
        c.max_abs = d;
        c.worst = name + "[" + std::to_string(i) + "]";
      }
      if (b[i] != 0) c.max_rel = std::max(c.max_rel, d / std::abs(double(b[i])));
      c.ok = c.ok && d <= tol;
    }
  }
  return c;
}

} // namespace

TEST_CASE("sentiment_trainer train vs transformers' Trainer: 20 steps of all-MiniLM-L6-v2, same seed, same batches") {
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string train = shared + "/data/sentiment/sst2/train.tsv";
  const std::string common = " --max-steps " + std::to_string(steps) +
                             " --logging-steps 1 --eval-strategy no --hidden-dropout 0 --attention-dropout 0"
                             " --learning-rate 2e-5 --warmup-steps 5 --weight-decay 0.01 --max-grad-norm 1.0"
                             " --batch-size 32 --seed 42 --threads 1";
  const std::string hf_cmd = std::string("HF_HUB_OFFLINE=1 ") + MINIBERT_TEST_PYTHON + " " + MINIBERT_TEST_SOURCE_DIR +
                             "/python/hf_trainer.py --train " + train + " --output-dir " + (work / "hf").string() +
                             " --json " + (work / "hf.json").string() + " --save-weights " +
                             (work / "hf.safetensors").string() + " --no-final-eval" + common + " > " +
                             (work / "hf.log").string() + " 2>&1";
  const std::string mb_cmd = std::string(MINIBERT_TEST_PROGRAM) + " train --model sentence-transformers/all-MiniLM-L6-v2"
                             " --train " + train + " --output-dir " + (work / "mb").string() +
                             " --save-strategy no" + common + " > " + (work / "mb.log").string() + " 2>&1";
  // one thread each, side by side (minibert's GEMM blocking depends on the thread count: keep it fixed)
  const auto t0 = std::chrono::steady_clock::now();
  int hf_rc = -1;
  std::thread hf([&] { hf_rc = run(hf_cmd); });
  const int mb_rc = run(mb_cmd);
  hf.join();
  MESSAGE("both runs took " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  REQUIRE_MESSAGE(hf_rc == 0, "transformers run failed: " << hf_cmd);
  REQUIRE_MESSAGE(mb_rc == 0, "sentiment_trainer failed: " << mb_cmd);

  const nlohmann::json hf_out = read_json(work / "hf.json");
  const nlohmann::json mb_state = read_json(work / "mb" / "trainer_state.json");
  const auto hf_logs = step_logs(hf_out["log_history"]), mb_logs = step_logs(mb_state["log_history"]);
  REQUIRE(hf_logs.size() == steps);
  REQUIRE(mb_logs.size() == steps);

  { // per-step loss, grad_norm and learning_rate (plain blocks, not SUBCASEs: those would rerun both trainings)
    const loss_check c = compare_logs(mb_logs, hf_logs, 0);
    MESSAGE("max |loss diff| (4-decimal logs) " << c.max_loss_diff << ", max grad_norm rel diff " << c.max_grad_norm_rel
                                                << ", max lr rel diff " << c.max_lr_rel);
    CHECK(c.ok);
    double mb_train_loss = 0, hf_train_loss = 0;
    for (const auto& e : mb_state["log_history"])
      if (e.contains("train_loss")) mb_train_loss = e["train_loss"].get<double>();
    for (const auto& e : hf_out["log_history"])
      if (e.contains("train_loss")) hf_train_loss = e["train_loss"].get<double>();
    const double rel = std::abs(mb_train_loss - hf_train_loss) / hf_train_loss;
    MESSAGE("train_loss " << mb_train_loss << " vs " << hf_train_loss << ": rel diff " << rel);
    CHECK(rel <= 1e-5);
    // negative control: the data order off by one batch (step s against the Trainer's step s+1)
    CHECK_FALSE(compare_logs(mb_logs, hf_logs, 1).ok);
  }

  { // final weights
    double sum_lr = 0;
    // the lr logged after step s is step s+1's; step 1's is 0 (warmup), so the logged values sum to all steps' lr
    for (const auto& e : hf_logs) sum_lr += e["learning_rate"].get<double>();
    const double tol = 0.05 * sum_lr;
    auto mb_w = read_weights(work / "mb" / "model.safetensors");
    const auto hf_w = read_weights(work / "hf.safetensors");
    const weight_check c = compare_weights(mb_w, hf_w, tol);
    MESSAGE("weights: max abs diff " << c.max_abs << " at " << c.worst << ", max rel diff " << c.max_rel
                                     << ", tolerance " << tol);
    CHECK(c.ok);
    // negative control: one weight off by 1e-4
    mb_w["bert.encoder.layer.3.attention.self.query.weight"][1000] += 1e-4f;
    CHECK_FALSE(compare_weights(mb_w, hf_w, tol).ok);
  }
}

} // namespace test_trainer_parity
