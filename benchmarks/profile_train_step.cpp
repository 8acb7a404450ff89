// SPDX-License-Identifier: MIT
// Per-op profile of BERT training steps on the CPU (minibert/profiler.hpp): bert-base-sized
// BertForSequenceClassification (random weights), batch B, sequence T, all positions valid, train mode (dropout 0.1):
// forward, backward, gradient clipping and an AdamW step, as the trainer runs them. After one warm-up step it profiles
// the next steps and prints two Markdown tables: time per op kind (forward and backward apart, with the GEMM share)
// and the GEMMs by shape. usage: profile_train_step [--steps N] [--batch B] [--seq T] [--layers L]
// [--precision fp32|bf16|fp16] (the matmul precision of autocast<device::cpu>, precision.hpp)
#include <minibert/bert.hpp>
#include <minibert/heads.hpp>
#include <minibert/optimizer.hpp>
#include <minibert/profiler.hpp>

#include "bert_bench_inputs.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace minibert;

namespace {
struct options {
  int steps = 3;
  std::int64_t batch = 32, seq = 128;
  int layers = 12;
  matmul_precision precision = matmul_precision::fp32;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--precision") {
      const std::string p = argv[i + 1];
      if (p == "bf16") o.precision = matmul_precision::bf16;
      else if (p == "fp16") o.precision = matmul_precision::fp16;
      else if (p != "fp32") throw error("profile_train_step", "--precision is fp32, bf16 or fp16, not " + p);
      continue;
    }
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (v <= 0) throw error("profile_train_step", flag + " needs a positive number, got " + argv[i + 1]);
    if (flag == "--steps") o.steps = int(v);
    else if (flag == "--batch") o.batch = v;
    else if (flag == "--seq") o.seq = v;
    else if (flag == "--layers") o.layers = int(v);
    else throw error("profile_train_step", "unknown flag " + flag);
  }
  return o;
}


using rows = std::vector<std::pair<std::string, profiler::row>>;
rows sorted_by_time(const std::map<std::string, profiler::row>& m) {
  rows r(m.begin(), m.end());
  std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  return r;
}

void print_tables(const profiler::recorder& rec, int steps, double step_seconds) {
  std::printf("\n| op | calls/step | ms/step | share of step | of which GEMM ms |\n|---|---:|---:|---:|---:|\n");
  double listed = 0;
  for (const auto& [key, r] : sorted_by_time(rec.ops)) {
    listed += r.seconds;
    std::printf("| %s | %.0f | %.1f | %.1f%% | %.1f |\n", key.c_str(), double(r.calls) / steps,
                1e3 * r.seconds / steps, 100.0 * r.seconds / step_seconds / steps, 1e3 * r.gemm_seconds / steps);
  }
  std::printf("| (not in an op: model glue, topological sort) | | %.1f | %.1f%% | |\n",
              1e3 * (step_seconds * steps - listed) / steps, 100.0 * (1 - listed / (step_seconds * steps)));
  std::printf("\nGEMMs (M/N/K/trans_a/trans_b, x batch):\n\n| GEMM | calls/step | ms/step | GFLOP/s | share of step |\n"
              "|---|---:|---:|---:|---:|\n");
  double gemm_total = 0;
  for (const auto& [key, r] : sorted_by_time(rec.gemms)) {
    gemm_total += r.seconds;
    std::printf("| %s | %.0f | %.1f | %.0f | %.1f%% |\n", key.c_str(), double(r.calls) / steps, 1e3 * r.seconds / steps,
                r.flops / r.seconds / 1e9, 100.0 * r.seconds / step_seconds / steps);
  }
  std::printf("| all GEMMs | | %.1f | | %.1f%% |\n", 1e3 * gemm_total / steps, 100.0 * gemm_total / step_seconds / steps);
}
} // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  bert_config c = bench::bert_base_config();
  c.num_hidden_layers = o.layers;
  bert_for_sequence_classification<float> model(c);
  generator gen(0);
  model.init_weights(gen);
  model.train();
  adamw<float> opt(default_param_groups(model, 0.01));
  std::vector<std::int32_t> y(o.batch);
  for (std::int64_t i = 0; i < o.batch; ++i) y[i] = std::int32_t(i % 2);
  const auto inputs = bench::random_batch(o.batch, o.seq, c.vocab_size);
  const auto labels = tensor<std::int32_t>::from(y, {o.batch});

  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  auto step = [&](profiler::recorder* rec) {
    using clock = profiler::clock;
    if (rec) rec->restart();
    autocast<device::cpu> mixed(o.precision);
    const auto t0 = clock::now();
    auto loss = model.loss(model.forward(inputs, gen), labels);
    const auto t1 = clock::now();
    loss.backward();
    const auto t2 = clock::now();
    clip_grad_norm(model.parameters(), 1.0);
    opt.step(2e-5);
    opt.zero_grad();
    const auto t3 = clock::now();
    if (rec) {
      forward_s += std::chrono::duration<double>(t1 - t0).count();
      backward_s += std::chrono::duration<double>(t2 - t1).count();
      optimizer_s += std::chrono::duration<double>(t3 - t2).count();
    }
  };
  std::fprintf(stderr, "warm-up step...\n");
  step(nullptr);
  profiler::session session;
  for (int s = 0; s < o.steps; ++s) {
    std::fprintf(stderr, "profiled step %d/%d\n", s + 1, o.steps);
    step(&session.result());
  }
  // the optimizer (clipping + AdamW) runs no autograd op: one row of its own
  session.result().ops["optimizer (clip + AdamW)"] = profiler::row{optimizer_s, 0, 0, o.steps};
  const double step_s = (forward_s + backward_s + optimizer_s) / o.steps;
  std::printf("bert: %d layers, batch %lld, seq %lld, matmul precision %s, %d profiled steps\n", o.layers,
              (long long)o.batch, (long long)o.seq, precision_name(o.precision), o.steps);
  std::printf("step %.3f s = forward %.3f + backward %.3f + optimizer %.3f (backward/forward %.2f)\n", step_s,
              forward_s / o.steps, backward_s / o.steps, optimizer_s / o.steps, backward_s / forward_s);
  print_tables(session.result(), o.steps, step_s);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "profile_train_step: %s\n", e.what());
  return 1;
}
