// SPDX-License-Identifier: MIT
// Masked softmax forward and backward on the CPU at BERT-base attention shapes: scores (B, NH=12, T, T) with an
// additive (B,1,1,T) key mask, reported as GB/s of compulsory traffic (forward: read x, write y; backward: read y
// and dy, write dx). Validated against tests/reference first.
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
// mask (B, T): the last quarter of each row's keys masked out
std::vector<float> key_mask(std::int64_t B, std::int64_t T) {
  std::vector<float> m(static_cast<std::size_t>(B * T), 0.f);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 3 * T / 4; t < T; ++t) m[b * T + t] = std::numeric_limits<float>::lowest();
  return m;
}
row_broadcast key_rows(std::int64_t B, std::int64_t NH, std::int64_t T) {
  row_broadcast r;
  r.lead = shape{B, NH, T};
  r.row_strides = shape{1, 0, 0};
  return r;
}

void validate() {
  const std::int64_t B = 2, NH = 3, T = 16, R = B * NH * T;
  const auto x = random_values(R * T, 1), dy = random_values(R * T, 2);
  const auto m = key_mask(B, T);
  std::vector<float> y(R * T), dx(R * T);
  backend<device::cpu>::softmax_forward(ctx, x.data(), m.data(), key_rows(B, NH, T), y.data(), R, T);
  backend<device::cpu>::softmax_backward(ctx, y.data(), dy.data(), dx.data(), R, T);
  std::vector<double> mb(B * T);
  for (std::size_t i = 0; i < mb.size(); ++i) mb[i] = m[i] == 0.f ? 0.0 : -1e300;
  const ref::array rx({B, NH, T, T}, std::vector<double>(x.begin(), x.end()));
  const ref::array rm({B, 1, 1, T}, mb);
  const auto ry = ref::softmax(rx, rm);
  const auto rdx = ref::softmax_backward(rx, rm, ref::array({B, NH, T, T}, std::vector<double>(dy.begin(), dy.end())));
  double worst = 0;
  for (std::int64_t i = 0; i < R * T; ++i) {
    worst = std::max(worst, std::abs(y[i] - ry[i]) / (1e-6 + 1e-5 * std::abs(ry[i])));
    worst = std::max(worst, std::abs(dx[i] - rdx[i]) / (1e-6 + 1e-4 * std::abs(rdx[i])));
  }
  if (worst > 1.0) throw std::runtime_error("softmax kernels disagree with the reference");
  std::printf("softmax validated against tests/reference (worst ratio %.3g)\n", worst);
}
} // namespace

static void BM_SoftmaxForward_CpuF32(benchmark::State& state) {
  static bool checked = (validate(), true);
  (void)checked;
  const std::int64_t B = state.range(0), T = state.range(1), NH = 12, R = B * NH * T;
  const auto x = random_values(R * T, 1);
  const auto m = key_mask(B, T);
  std::vector<float> y(R * T);
  for (auto _ : state) {
    backend<device::cpu>::softmax_forward(ctx, x.data(), m.data(), key_rows(B, NH, T), y.data(), R, T);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * 2 * R * T * std::int64_t(sizeof(float)));
}

static void BM_SoftmaxBackward_CpuF32(benchmark::State& state) {
  const std::int64_t B = state.range(0), T = state.range(1), NH = 12, R = B * NH * T;
  const auto y0 = random_values(R * T, 1), dy = random_values(R * T, 2);
  std::vector<float> y(R * T), dx(R * T);
  backend<device::cpu>::softmax_forward(ctx, y0.data(), (const float*)nullptr, row_broadcast{}, y.data(), R, T);
  for (auto _ : state) {
    backend<device::cpu>::softmax_backward(ctx, y.data(), dy.data(), dx.data(), R, T);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetBytesProcessed(state.iterations() * 3 * R * T * std::int64_t(sizeof(float)));
}

BENCHMARK(BM_SoftmaxForward_CpuF32)->Args({1, 128})->Args({8, 128})->Args({32, 128})->Args({8, 512});
BENCHMARK(BM_SoftmaxBackward_CpuF32)->Args({1, 128})->Args({8, 128})->Args({32, 128})->Args({8, 512});
