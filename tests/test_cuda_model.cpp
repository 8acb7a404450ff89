// SPDX-License-Identifier: MIT
// The whole model on the GPU against the CPU (built only with the CUDA backend; skipped without a GPU): one BERT
// forward and backward pass with the same weights and inputs, then 20 training steps (dropout on: the Philox
// masks are the same on both devices; gradient clipping; AdamW) compared step by step.
//
// TOLERANCES. Both devices compute in fp32 (TF32 off), in different summation orders (cuBLASLt's GEMM tiles against
// the CPU kernel's blocking; warp reductions against Eigen's). Through 2 layers of dot products of length <= 64 and
// layer norms, that is ~10x the single-op fp32 tolerance of test_helpers.hpp: cond = 10 on the forward values and
// the gradients. Over 20 AdamW steps (lr 1e-4) an element whose gradient is near 0 may take an update of either
// sign, so the weights are compared as a whole: relative L2 difference <= 1e-3, and every step's loss to 1e-4
// relative.

#include <cmath>   // sqrt, abs
#include <cstdint> // int64_t, int32_t
#include <string>  // string
#include <vector>  // vector

#include <minibert/bert.hpp> // the model, the trainer and the scaler, on both devices
#include <minibert/cuda/backend.hpp>

#include "cuda_test_helpers.hpp"
#include "test_helpers.hpp"

namespace test_cuda_model { // each test file in its own namespace: a test group compiles as one unit

namespace {
using namespace minibert;
using cuda = device::cuda;

using test::skip_without_gpu;

bert_config small_config() {
  bert_config c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 48;
  c.max_position_embeddings = 16;
  c.id2label = {"a", "b", "c"};
  return c;
}

/// the same model on both devices: initialized on the CPU, its parameters copied into the GPU model (same names,
/// same order), both in train mode
struct twin_models {
  bert_for_sequence_classification<float> cpu{small_config()};
  bert_for_sequence_classification<float, cuda> gpu{small_config()};
  explicit twin_models(std::uint64_t seed) {
    generator init(seed);
    cpu.init_weights(init);
    test::copy_weights(cpu, gpu);
    cpu.train();
    gpu.train();
  }
};

model_batch<> ragged_batch(std::uint64_t seed) {
  test::rng r(seed);
  tokenized_dataset d;
  for (std::int64_t len : {7, 3, 5, 7}) { // padding in the middle rows
    std::vector<std::int32_t> ids{2};
    for (std::int64_t j = 1; j < len; ++j) ids.push_back(std::int32_t(4 + r.integer(40)));
    d.ids.push_back(ids);
    d.type_ids.emplace_back(ids.size(), 0);
    d.labels.push_back(r.integer(3));
  }
  return collate(d, std::vector<std::size_t>{0, 1, 2, 3});
}

std::vector<double> host_values(const tensor<float, cuda>& t) { return test::values(to_host(t)); }

double relative_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}
} // namespace

TEST_CASE("cuda model: BERT forward and backward on the GPU match the CPU") {
  if (skip_without_gpu("cuda model: forward and backward")) return;
  twin_models m(7);
  auto& cpu_model = m.cpu;
  auto& gpu_model = m.gpu;
  const model_batch<> host = ragged_batch(11);
  const model_batch<cuda> dev = to_device<cuda>(host);
  generator g1(3), g2(3);
  auto cpu_logits = cpu_model.forward(host.inputs, g1);
  auto gpu_logits = gpu_model.forward(dev.inputs, g2);
  const double cond = 10; // see the header: two layers of differently ordered fp32 sums
  test::check_close(host_values(gpu_logits.value()), test::values(cpu_logits.value()), 1e-5 * cond, 1e-5 * cond,
                    1e-7 * cond * cond, "logits");
  auto cpu_loss = cpu_model.loss(cpu_logits, host.labels);
  auto gpu_loss = gpu_model.loss(gpu_logits, dev.labels);
  test::check_scalar(double(item(gpu_loss.value())), double(cpu_loss.value().item()), "loss", cond);
  cpu_loss.backward();
  gpu_loss.backward();
  const auto cp = cpu_model.named_parameters();
  const auto gp = gpu_model.named_parameters();
  for (std::size_t i = 0; i < cp.size(); ++i)
    test::check_close(host_values(gp[i].second.grad()), test::values(cp[i].second.grad()), 1e-5 * cond, 1e-5 * cond,
                      1e-7 * cond * cond, "grad " + cp[i].first);
}

TEST_CASE("cuda model: 20 training steps on the GPU follow the CPU's") {
  if (skip_without_gpu("cuda model: 20 training steps")) return;
  twin_models m(8);
  auto& cpu_model = m.cpu;
  auto& gpu_model = m.gpu;
  adamw<float> cpu_opt(default_param_groups(cpu_model, 0.01));
  adamw<float, cuda> gpu_opt(default_param_groups(gpu_model, 0.01));
  generator g1(5), g2(5);
  for (int step = 0; step < 20; ++step) {
    const model_batch<> host = ragged_batch(100 + std::uint64_t(step));
    const model_batch<cuda> dev = to_device<cuda>(host);
    auto cl = cpu_model.loss(cpu_model.forward(host.inputs, g1), host.labels);
    auto gl = gpu_model.loss(gpu_model.forward(dev.inputs, g2), dev.labels);
    const double lc = cl.value().item(), lg = item(gl.value());
    CHECK_MESSAGE(std::abs(lg - lc) <= 1e-4 * std::abs(lc), "step " << step << ": loss " << lg << " on the GPU, " << lc
                                                                    << " on the CPU");
    cl.backward();
    gl.backward();
    const double nc = clip_grad_norm(cpu_model.parameters(), 1.0), ng = clip_grad_norm(gpu_model.parameters(), 1.0);
    CHECK_MESSAGE(std::abs(ng - nc) <= 1e-4 * nc, "step " << step << ": grad norm " << ng << " vs " << nc);
    cpu_opt.step(1e-4);
    gpu_opt.step(1e-4);
    cpu_model.zero_grad();
    gpu_model.zero_grad();
  }
  CHECK(g1.offset() == g2.offset()); // the same dropout draws on both devices
  const auto cp = cpu_model.named_parameters();
  const auto gp = gpu_model.named_parameters();
  for (std::size_t i = 0; i < cp.size(); ++i) {
    const double d = relative_l2(host_values(gp[i].second.value()), test::values(cp[i].second.value()));
    CHECK_MESSAGE(d <= 1e-3, cp[i].first << ": relative L2 difference " << d << " after 20 steps");
  }
}

TEST_CASE("cuda model: the caching allocator reuses freed blocks and reports its peak") {
  if (skip_without_gpu("cuda model: caching allocator")) return;
  auto& ctx = current_context<cuda>();
  backend<cuda>::synchronize(ctx);
  const std::int64_t before = backend<cuda>::memory_allocated(ctx);
  {
    tensor<float, cuda> a = tensor<float, cuda>::empty({1 << 20});
    CHECK(backend<cuda>::memory_allocated(ctx) >= before + (4 << 20));
  }
  CHECK(backend<cuda>::memory_allocated(ctx) == before);
  CHECK(backend<cuda>::max_memory_allocated(ctx) >= before + (4 << 20));
  const void* first = nullptr;
  {
    tensor<float, cuda> a = tensor<float, cuda>::empty({1 << 20});
    first = a.data();
  }
  tensor<float, cuda> b = tensor<float, cuda>::empty({1 << 20});
  CHECK(b.data() == first); // the freed block came back
  backend<cuda>::empty_cache(ctx);
}

} // namespace test_cuda_model
