// SPDX-License-Identifier: MIT
// Attention throughput on the GPU: the fused flash kernels (cuda/attention_flash.cuh) beside cuDNN's fused SDPA (the
// baseline, cuda/attention_cudnn.hpp; its cases report "built without cuDNN" where the provider was not built) and
// the materialized path (cuBLASLt GEMMs around a softmax kernel, cuda/attention.cuh) in the same process, through
// backend<device::cuda> with the context's attention provider switched (built with the CUDA backend; every case
// reports "no CUDA device" without a GPU).
//   BM_Attention_<provider>_<Fwd|FwdBwd>/B/T/padded   bf16 data, bert-base's attention: 12 heads of size 64, q, k, v
//                                                     column blocks of one (B,T,3C) projection; padded = 1: row b
//                                                     keeps T - (b T / 2) / B keys (lengths T/2 .. T), the rest masked
// Counters: "TFLOP/s" counts the dense products (forward 4 B NH T^2 HS; backward 2.5 times that, FlashAttention's
// convention), "GB/s" the unavoidable traffic (forward: q, k, v read and out written; backward: q, k, v, out, dout
// read and dq, dk, dv written), so a kernel bound by memory is judged by GB/s and one bound by the tensor cores by
// TFLOP/s. scripts/gpu_check.sh puts them beside each other (with the fraction of the device's peak).

#include <benchmark/benchmark.h>

#include <cstdint> // int64_t, uint64_t
#include <vector>  // vector

#include <minibert/bert.hpp>
#include <minibert/cuda/backend.hpp>

namespace {
using namespace minibert;
using cuda = device::cuda;
using i64 = std::int64_t;
constexpr i64 NH = 12, HS = 64, C = NH * HS;
constexpr int launches = 10;

enum class pass { forward, forward_backward };

void bench_attention(benchmark::State& state, attention_provider provider, pass what) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
#if !defined(MINIBERT_CUDNN)
  if (provider == attention_provider::cudnn) {
    state.SkipWithError("built without cuDNN");
    return;
  }
#endif
  using T = bfloat16;
  const i64 B = state.range(0), Tn = state.range(1);
  const bool padded = state.range(2) != 0;
  auto& ctx = current_context<cuda>();
  ctx.attention = provider;
  tensor<T, cuda> qkv = tensor<T, cuda>::empty({B * Tn * 3 * C}), out = tensor<T, cuda>::empty({B * Tn * C});
  tensor<T, cuda> dout = tensor<T, cuda>::empty({B * Tn * C}), grads = tensor<T, cuda>::empty({B * Tn * 3 * C});
  backend<cuda>::fill(ctx, qkv.data(), qkv.numel(), T(0.01f));
  backend<cuda>::fill(ctx, dout.data(), dout.numel(), T(0.02f));
  tensor<T, cuda> mask;
  if (padded) {
    std::vector<T> m(std::size_t(B * Tn), T(0.0f));
    for (i64 b = 0; b < B; ++b)
      for (i64 j = Tn - (b * Tn / 2) / B; j < Tn; ++j) m[std::size_t(b * Tn + j)] = T(-3.3895313892515355e38f);
    mask = to_device<cuda>(tensor<T>::from(m, {B, Tn}));
  }
  const attention_dims d{B, Tn, C, NH, 3 * C};
  const T* x = qkv.data();
  const T* mk = padded ? mask.data() : nullptr;
  backend<cuda>::attention_saved<T> saved;
  auto run = [&] {
    for (int i = 0; i < launches; ++i) {
      backend<cuda>::attention_forward(ctx, d, x, x + C, x + 2 * C, mk, out.data(), saved, 0.0f, 1, 0);
      if (what == pass::forward_backward)
        backend<cuda>::attention_backward(ctx, d, dout.data(), x, x + C, x + 2 * C, mk, saved, 0.0f, grads.data(),
                                          grads.data() + C, grads.data() + 2 * C);
    }
    backend<cuda>::synchronize(ctx);
  };
  run(); // warm-up: cuBLASLt's heuristics, the allocator, the clocks
  const std::uint64_t flash_before = ctx.flash_attention_launches, cudnn_before = ctx.cudnn_attention_launches;
  for (auto _ : state) run();
  const double forward_flops = 4.0 * double(B * NH) * double(Tn) * double(Tn) * double(HS);
  const double flops = what == pass::forward ? forward_flops : 3.5 * forward_flops;
  const double bytes = double(B * Tn * C) * sizeof(T) * (what == pass::forward ? 4.0 : 12.0);
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * launches * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(bytes * launches * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // 0: the fused provider declined the problem (it ran materialized)
  state.counters["fused"] = ctx.flash_attention_launches > flash_before || ctx.cudnn_attention_launches > cudnn_before;
  ctx.attention = attention_provider_from_env();
}

void BM_Attention_Flash_Fwd(benchmark::State& s) { bench_attention(s, attention_provider::flash, pass::forward); }
void BM_Attention_Cudnn_Fwd(benchmark::State& s) { bench_attention(s, attention_provider::cudnn, pass::forward); }
void BM_Attention_Materialized_Fwd(benchmark::State& s) {
  bench_attention(s, attention_provider::materialized, pass::forward);
}
void BM_Attention_Flash_FwdBwd(benchmark::State& s) {
  bench_attention(s, attention_provider::flash, pass::forward_backward);
}
void BM_Attention_Cudnn_FwdBwd(benchmark::State& s) {
  bench_attention(s, attention_provider::cudnn, pass::forward_backward);
}
void BM_Attention_Materialized_FwdBwd(benchmark::State& s) {
  bench_attention(s, attention_provider::materialized, pass::forward_backward);
}

// bert-base's batch 32 at sequence lengths 128 and 512, without and with padding
void bert_shapes(benchmark::internal::Benchmark* b) {
  for (i64 T : {128, 512})
    for (i64 padded : {0, 1}) b->Args({32, T, padded});
}

} // namespace

#define MINIBERT_ATTENTION_BENCHMARK(name)                                                                            \
  BENCHMARK(name)->Apply(bert_shapes)->ArgNames({"B", "T", "padded"})->UseRealTime()->MinTime(0.2)
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Flash_Fwd);
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Cudnn_Fwd);
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Materialized_Fwd);
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Flash_FwdBwd);
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Cudnn_FwdBwd);
MINIBERT_ATTENTION_BENCHMARK(BM_Attention_Materialized_FwdBwd);

BENCHMARK_MAIN();
