// SPDX-License-Identifier: MIT
// End-to-end BERT throughput on the CPU: bert-base-sized BertForSequenceClassification (random weights: no
// pretrained weights exist on these machines), batch B, sequence T, all positions valid.
//   BM_BertInference_CpuF32/B/T  forward under no_grad (eval mode)
//   BM_BertTrainStep_CpuF32/B/T  forward + backward in train mode (dropout 0.1), gradients zeroed each step
// Counters: samples/s, and peak_rss_mb (getrusage: the whole process, so run one benchmark per process with
// --benchmark_filter, as benchmarks/run_bert_bench.sh does). The PyTorch side is bench_bert_torch.py.
#include <benchmark/benchmark.h>

#include <minibert/bert.hpp>
#include <minibert/heads.hpp>

#include <sys/resource.h> // getrusage

#include <cstdlib>
#include <vector>

using namespace minibert;

namespace {
bert_config base_config() {
  bert_config c; // transformers' defaults are bert-base: 12 layers, hidden 768, 12 heads, intermediate 3072
  c.id2label = {"negative", "positive"};
  return c;
}
bert_inputs<device::cpu> random_batch(std::int64_t B, std::int64_t T, std::int64_t V) {
  std::vector<std::int32_t> ids(B * T), mask(B * T, 1);
  std::uint64_t s = 12345;
  for (auto& x : ids) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = std::int32_t(1000 + (s >> 33) % std::uint64_t(V - 1000));
  }
  return {tensor<std::int32_t>::from(ids, {B, T}), tensor<std::int32_t>::from(mask, {B, T}), {}};
}
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}
} // namespace

static void BM_BertInference_CpuF32(benchmark::State& state) {
  const std::int64_t B = state.range(0), T = state.range(1);
  const bert_config c = base_config();
  bert_for_sequence_classification<float> model(c);
  generator gen(0);
  model.init_weights(gen);
  model.eval();
  const auto in = random_batch(B, T, c.vocab_size);
  for (auto _ : state) {
    no_grad ng;
    auto logits = model.forward(in, gen);
    benchmark::DoNotOptimize(logits.value().data());
  }
  state.counters["samples_per_s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}

static void BM_BertTrainStep_CpuF32(benchmark::State& state) {
  const std::int64_t B = state.range(0), T = state.range(1);
  const bert_config c = base_config();
  bert_for_sequence_classification<float> model(c);
  generator gen(0);
  model.init_weights(gen);
  model.train();
  const auto in = random_batch(B, T, c.vocab_size);
  std::vector<std::int32_t> y(B);
  for (std::int64_t i = 0; i < B; ++i) y[i] = std::int32_t(i % 2);
  const auto labels = tensor<std::int32_t>::from(y, {B});
  for (auto _ : state) {
    model.zero_grad();
    auto loss = model.loss(model.forward(in, gen), labels);
    loss.backward();
    benchmark::DoNotOptimize(loss.value().data());
  }
  state.counters["samples_per_s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}

BENCHMARK(BM_BertInference_CpuF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(20)->UseRealTime();
BENCHMARK(BM_BertTrainStep_CpuF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(30)->UseRealTime();
