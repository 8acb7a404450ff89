// SPDX-License-Identifier: MIT
// End-to-end BERT throughput on the CPU and the GPU: bert-base-sized BertForSequenceClassification (random weights: no
// pretrained weights exist on these machines), batch B, sequence T, all positions valid.
//   BM_BertInference_CpuF32/B/T  forward under no_grad (eval mode)
//   BM_BertTrainStep_CpuF32/B/T  forward + backward in train mode (dropout 0.1), gradients zeroed each step
//   BM_Bert*_CpuBF16/B/T         the same under autocast<device::cpu>(bf16): matmuls in bf16, fp32 accumulation
//   BM_Bert*_CudaF32/B/T         the same on the GPU (with the CUDA backend built; skipped without a GPU)
//   BM_BertTrainStep_CudaBF16/B/T       the training step under autocast<device::cuda>(bf16)
//   BM_BertTrainStep_CudaBF16Graph/B/T  the same step replayed as a CUDA graph (training/step_graphs.hpp)
// Counters: samples/s, and peak_rss_mb (getrusage: the whole process, so run one benchmark per process with
// --benchmark_filter, as benchmarks/run_bert_bench.sh does). The PyTorch side is bench_bert_torch.py.
#include <benchmark/benchmark.h>

#include <minibert/bert.hpp>
#include <minibert/heads.hpp>
#if defined(MINIBERT_WITH_CUDA)
#include <minibert/cuda/backend.hpp>
#endif

#include "bert_bench_inputs.hpp"

#include <sys/resource.h> // getrusage

#include <cstdlib>
#include <optional>
#include <sstream>
#include <vector>

using namespace minibert;

namespace {
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}
} // namespace

// one benchmark body per device: the result is synchronized every iteration (download of one value), so a GPU's
// asynchronous queue is timed to completion
template <class D, matmul_precision P = matmul_precision::fp32> void bert_inference(benchmark::State& state) {
  const std::int64_t B = state.range(0), T = state.range(1);
  const bert_config c = bench::bert_base_config();
  bert_for_sequence_classification<float, D> model(c);
  generator gen(0);
  model.init_weights(gen);
  model.eval();
  const auto in = to_device<D>(model_batch<>{bench::random_batch(B, T, c.vocab_size), {}, B}).inputs;
  autocast<D> mixed(P);
  for (auto _ : state) {
    no_grad ng;
    auto logits = model.forward(in, gen);
    benchmark::DoNotOptimize(item(contiguous(logits.value().select(0, 0).select(0, 0))));
  }
  state.counters["samples_per_s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}

/// bert-base in train mode (dropout 0.1) and a labelled random batch (B, T) on device D
template <class D> struct training_setup {
  bert_for_sequence_classification<float, D> model{bench::bert_base_config()};
  generator gen{0};
  model_batch<D> mb;
  training_setup(std::int64_t B, std::int64_t T) {
    model.init_weights(gen);
    model.train();
    std::vector<std::int32_t> y(B);
    for (std::int64_t i = 0; i < B; ++i) y[i] = std::int32_t(i % 2);
    mb = to_device<D>(model_batch<>{bench::random_batch(B, T, model.config().vocab_size),
                                    tensor<std::int32_t>::from(y, {B}), B});
  }
};

/// forward + backward in train mode (dropout 0.1), gradients zeroed each step (as bench_bert_torch.py)
template <class D, matmul_precision P = matmul_precision::fp32> void bert_train_step(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  training_setup<D> s(B, state.range(1));
  auto& [model, gen, mb] = s;
  autocast<D> mixed(P);
  for (auto _ : state) {
    model.zero_grad();
    auto loss = model.loss(model.forward(mb.inputs, gen), mb.labels);
    loss.backward();
    benchmark::DoNotOptimize(item(loss.value()));
  }
  state.counters["samples_per_s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}

/// the same step through step_graphs (training/step_graphs.hpp): eager on the first iteration, captured on the
/// second, replayed after (the graph's gradients are taken back where the eager loop zeroes them)
template <class D, matmul_precision P> void bert_train_step_graphed(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  training_setup<D> s(B, state.range(1));
  auto& [model, gen, mb] = s;
  std::ostringstream log;
  step_graphs<float, D> graphs(1, log);
  const auto forward_backward = [&](const model_batch<D>& b, const tensor<float, D>& seed) {
    autocast<D> mixed(P);
    auto loss = model.loss(model.forward(b.inputs, gen), b.labels);
    loss.backward(seed);
    return loss.value();
  };
  for (auto _ : state) {
    std::optional<tensor<float, D>> loss = graphs.run(mb, model.parameters(), gen, 1.0f, forward_backward);
    if (!loss) loss = forward_backward(mb, full_on<float, D>({1}, 1.0f));
    benchmark::DoNotOptimize(item(*loss));
    graphs.reclaim(model.parameters());
    model.zero_grad();
  }
  if (graphs.replays() == 0) state.SkipWithError(("no step was replayed: " + log.str()).c_str());
  state.counters["replays"] = double(graphs.replays());
  state.counters["samples_per_s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}

static void BM_BertInference_CpuF32(benchmark::State& state) { bert_inference<device::cpu>(state); }
static void BM_BertTrainStep_CpuF32(benchmark::State& state) { bert_train_step<device::cpu>(state); }
BENCHMARK(BM_BertInference_CpuF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(20)->UseRealTime();
BENCHMARK(BM_BertTrainStep_CpuF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(30)->UseRealTime();
static void BM_BertInference_CpuBF16(benchmark::State& state) {
  bert_inference<device::cpu, matmul_precision::bf16>(state);
}
static void BM_BertTrainStep_CpuBF16(benchmark::State& state) {
  bert_train_step<device::cpu, matmul_precision::bf16>(state);
}
BENCHMARK(BM_BertInference_CpuBF16)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(20)->UseRealTime();
BENCHMARK(BM_BertTrainStep_CpuBF16)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(30)->UseRealTime();

#if defined(MINIBERT_WITH_CUDA)
// fp32 (TF32 when MINIBERT_ALLOW_TF32=1 is set in the environment); skipped without a GPU
template <void (*Body)(benchmark::State&)> void on_gpu(benchmark::State& state) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  Body(state);
}
static void BM_BertInference_CudaF32(benchmark::State& state) { on_gpu<bert_inference<device::cuda>>(state); }
static void BM_BertTrainStep_CudaF32(benchmark::State& state) { on_gpu<bert_train_step<device::cuda>>(state); }
BENCHMARK(BM_BertInference_CudaF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(2)->UseRealTime();
BENCHMARK(BM_BertTrainStep_CudaF32)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(3)->UseRealTime();
// bf16 autocast, eager and replayed as a CUDA graph (the launch overhead a graph removes: their ratio, one process)
static void BM_BertTrainStep_CudaBF16(benchmark::State& state) {
  on_gpu<bert_train_step<device::cuda, matmul_precision::bf16>>(state);
}
static void BM_BertTrainStep_CudaBF16Graph(benchmark::State& state) {
  on_gpu<bert_train_step_graphed<device::cuda, matmul_precision::bf16>>(state);
}
BENCHMARK(BM_BertTrainStep_CudaBF16)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(3)->UseRealTime();
BENCHMARK(BM_BertTrainStep_CudaBF16Graph)->Args({32, 128})->Unit(benchmark::kMillisecond)->MinTime(3)->UseRealTime();
#endif
