// SPDX-License-Identifier: MIT
// Layer norm forward and backward on the CPU at BERT-base shapes (C = 768), reported as GB/s of compulsory traffic
// (forward: read x, write out; backward: read dout and x, write dx). Validated against tests/reference first.
#include <benchmark/benchmark.h>

#include <minibert/bert.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "reference/ops.hpp"

using namespace minibert;

namespace {
// the benchmarks run on the main thread: its default CPU context
context<device::cpu>& ctx = default_context<device::cpu>();
std::vector<float> random_values(std::int64_t n, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  generator g(seed);
  g.normal(v.data(), v.size(), 0.0, 1.0);
  return v;
}

// Checks the kernels once against the double-precision reference; throws (aborting the run) on a mismatch.
void validate() {
  const std::int64_t N = 6, C = 768;
  const auto x = random_values(N * C, 1), w = random_values(C, 2), b = random_values(C, 3), dy = random_values(N * C, 4);
  std::vector<float> y(N * C), mean(N), rstd(N), dx(N * C), dw(C, 0.f), db(C, 0.f);
  backend<device::cpu>::layer_norm_forward(ctx, x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), N, C, 1e-12);
  backend<device::cpu>::layer_norm_backward(ctx, dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(),
                                            db.data(), N, C);
  auto arr = [](const std::vector<float>& v, ref::dims s) { return ref::array(s, std::vector<double>(v.begin(), v.end())); };
  const auto ry = ref::layer_norm(arr(x, {N, C}), arr(w, {C}), arr(b, {C}), 1e-12);
  const auto rg = ref::layer_norm_backward(arr(x, {N, C}), arr(w, {C}), arr(b, {C}), 1e-12, arr(dy, {N, C}));
  double worst = 0;
  for (std::int64_t i = 0; i < N * C; ++i) {
    worst = std::max(worst, std::abs(y[i] - ry[i]) / (1e-5 + 1e-5 * std::abs(ry[i])));
    worst = std::max(worst, std::abs(dx[i] - rg.d0[i]) / (1e-5 + 1e-4 * std::abs(rg.d0[i])));
  }
  if (worst > 1.0) throw std::runtime_error("layer_norm kernels disagree with the reference");
  std::printf("layer_norm validated against tests/reference (worst ratio %.3g)\n", worst);
}
} // namespace

static void BM_LayerNormForward_CpuF32(benchmark::State& state) {
  static bool checked = (validate(), true);
  (void)checked;
  const std::int64_t N = state.range(0) * state.range(1), C = state.range(2);
  const auto x = random_values(N * C, 1), w = random_values(C, 2), b = random_values(C, 3);
  std::vector<float> y(N * C), mean(N), rstd(N);
  for (auto _ : state) {
    backend<device::cpu>::layer_norm_forward(ctx, x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), N, C, 1e-12);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * 2 * N * C * std::int64_t(sizeof(float)));
}

static void BM_LayerNormBackward_CpuF32(benchmark::State& state) {
  const std::int64_t N = state.range(0) * state.range(1), C = state.range(2);
  const auto x = random_values(N * C, 1), w = random_values(C, 2), b = random_values(C, 3), dy = random_values(N * C, 4);
  std::vector<float> y(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
  backend<device::cpu>::layer_norm_forward(ctx, x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), N, C, 1e-12);
  for (auto _ : state) {
    backend<device::cpu>::layer_norm_backward(ctx, dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                                              dw.data(), db.data(), N, C);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetBytesProcessed(state.iterations() * 3 * N * C * std::int64_t(sizeof(float)));
}

#define MINIBERT_LN_SHAPES ->Args({1, 128, 768})->Args({8, 128, 768})->Args({32, 128, 768})->Args({8, 512, 768})->Args({32, 512, 768})
BENCHMARK(BM_LayerNormForward_CpuF32) MINIBERT_LN_SHAPES;
BENCHMARK(BM_LayerNormBackward_CpuF32) MINIBERT_LN_SHAPES;
