// SPDX-License-Identifier: MIT
// The training step as CUDA graphs (training/step_graphs.hpp, cuda/graph.cuh) against the same steps run eagerly
// (built only with the CUDA backend; skipped without a GPU). A replay runs the kernels the eager step would, with the
// same arguments but for the dropout draw's key and counter, which it reads from the device: so every loss and every
// weight must be bit-identical, over steps that mix two batch shapes (two graphs in one pool), dropout on, in fp32
// and under bf16 autocast (flash attention, with and without attention dropout), and through the trainer (fp16 loss
// scaling, clipping on the device). test_backend_contract.cpp checks step_graphs' bookkeeping (warm-up, capture,
// replay, the gradients lent and taken back, failed captures) on a stub device, without a GPU.

#include <cstdint>    // int64_t, int32_t, uint64_t
#include <filesystem> // temp_directory_path, remove_all (the trainer's output)
#include <optional>   // optional
#include <sstream>    // ostringstream
#include <string>     // string, to_string
#include <utility>    // pair
#include <vector>     // vector

#include <unistd.h> // getpid

#include <minibert/bert.hpp>
#include <minibert/cuda/backend.hpp>

#include "cuda_test_helpers.hpp"
#include "test_helpers.hpp"

namespace test_cuda_graphs { // each test file in its own namespace: a test group compiles as one unit

namespace {
using namespace minibert;
using cuda = device::cuda;

using test::skip_without_gpu;

bert_config small_config(double attention_dropout = 0.1) {
  bert_config c;
  c.attention_probs_dropout_prob = attention_dropout;
  c.vocab_size = 50;
  c.hidden_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2; // head size 32: the flash kernels take it too
  c.intermediate_size = 96;
  c.max_position_embeddings = 32;
  c.id2label = {"a", "b", "c"};
  return c;
}

/// step s's batch: 4 rows, padded to 16 columns, or to 32 every third step (two shapes)
model_batch<cuda> batch_of(std::uint64_t s) {
  test::rng r(100 + s);
  tokenized_dataset d;
  const std::int64_t longest = s % 3 == 2 ? 20 : 12;
  for (std::int64_t len : {longest, std::int64_t(3), longest - 4, std::int64_t(7)}) {
    std::vector<std::int32_t> ids{2};
    for (std::int64_t j = 1; j < len; ++j) ids.push_back(std::int32_t(4 + r.integer(40)));
    d.ids.push_back(ids);
    d.type_ids.emplace_back(ids.size(), 0);
    d.labels.push_back(r.integer(3));
  }
  return to_device<cuda>(collate(d, std::vector<std::size_t>{0, 1, 2, 3}, 16));
}

struct run_result {
  std::vector<float> losses;
  std::vector<std::vector<double>> weights;
  std::uint64_t draws = 0;
  std::int64_t captures = 0, replays = 0;
};

/// the weights of `cpu` (initialized from `seed`) copied into `gpu`
void init_from_cpu(bert_for_sequence_classification<float, cuda>& gpu, std::uint64_t seed) {
  bert_for_sequence_classification<float> cpu(gpu.config());
  generator init(seed);
  cpu.init_weights(init);
  test::copy_weights(cpu, gpu);
}

std::vector<std::vector<double>> weights_of(const bert_for_sequence_classification<float, cuda>& model) {
  std::vector<std::vector<double>> out;
  for (const auto& p : model.parameters()) out.push_back(test::values(to_host(p.value())));
  return out;
}

/// `steps` training steps (AdamW, clipping, hidden dropout 0.1) of a model initialized from seed 7, graphed or eager
run_result train(bool graphed, matmul_precision precision, int steps, double attention_dropout) {
  bert_for_sequence_classification<float, cuda> model(small_config(attention_dropout));
  init_from_cpu(model, 7);
  model.train();
  adamw<float, cuda> opt(default_param_groups(model, 0.01));
  std::ostringstream log;
  step_graphs<float, cuda> graphs(4, log);
  generator gen(5);
  const auto forward_backward = [&](const model_batch<cuda>& b, const tensor<float, cuda>& seed) {
    autocast<cuda> mixed(precision);
    auto loss = model.loss(model.forward(b.inputs, gen), b.labels);
    loss.backward(seed);
    return loss.value();
  };
  run_result r;
  for (int s = 0; s < steps; ++s) {
    const model_batch<cuda> b = batch_of(std::uint64_t(s));
    std::optional<tensor<float, cuda>> loss;
    if (graphed) loss = graphs.run(b, model.parameters(), gen, 1.0f, forward_backward);
    if (!loss) loss = forward_backward(b, full_on<float, cuda>({1}, 1.0f));
    r.losses.push_back(item(*loss));
    clip_grad_norm(model.parameters(), 1.0);
    opt.step(1e-3);
    graphs.reclaim(model.parameters());
    model.zero_grad();
  }
  r.weights = weights_of(model);
  r.draws = gen.offset();
  r.captures = graphs.captures();
  r.replays = graphs.replays();
  INFO(log.str());
  CHECK(graphs.failures() == 0);
  return r;
}

void check_identical(matmul_precision precision, double attention_dropout = 0.1) {
  auto& ctx = current_context<cuda>();
  backend<cuda>::synchronize(ctx);
  const std::int64_t before = backend<cuda>::memory_allocated(ctx);
  const int steps = 9; // shape A at steps 0 1 3 4 6 7 (warm-up, capture, 4 replays), shape B at 2 5 8
  const run_result eager = train(false, precision, steps, attention_dropout);
  const run_result graphed = train(true, precision, steps, attention_dropout);
  CHECK(backend<cuda>::memory_allocated(ctx) == before); // the graphs' pool gave everything back
  CHECK(graphed.captures == 2);
  CHECK(graphed.replays == 7); // every step but each shape's first
  CHECK(graphed.draws == eager.draws);
  REQUIRE(graphed.losses.size() == eager.losses.size());
  for (std::size_t s = 0; s < eager.losses.size(); ++s)
    CHECK_MESSAGE(graphed.losses[s] == eager.losses[s], "step " << s << ": loss " << graphed.losses[s]
                                                                << " replayed, " << eager.losses[s] << " eager");
  REQUIRE(graphed.weights.size() == eager.weights.size());
  for (std::size_t i = 0; i < eager.weights.size(); ++i)
    CHECK_MESSAGE(graphed.weights[i] == eager.weights[i], "parameter " << i << " differs after " << steps << " steps");
}
} // namespace

TEST_CASE("cuda graphs: replayed training steps are bit-identical to eager ones (fp32)") {
  if (skip_without_gpu("cuda graphs: fp32 steps")) return;
  check_identical(matmul_precision::fp32);
}

TEST_CASE("cuda graphs: replayed training steps are bit-identical to eager ones (bf16 autocast, flash attention)") {
  if (skip_without_gpu("cuda graphs: bf16 steps")) return;
  auto& ctx = current_context<cuda>();
  const test::scoped_value attention(ctx.attention, attention_provider::flash);
  const std::uint64_t flash_before = ctx.flash_attention_launches;
  check_identical(matmul_precision::bf16);
  CHECK(ctx.flash_attention_launches > flash_before); // the flash kernels ran (captured too), not the fallback
}

TEST_CASE("cuda graphs: flash attention without attention dropout is captured too (bf16)") {
  if (skip_without_gpu("cuda graphs: no attention dropout")) return;
  auto& ctx = current_context<cuda>();
  const test::scoped_value attention(ctx.attention, attention_provider::flash);
  check_identical(matmul_precision::bf16, 0.0); // hidden dropout still draws: attention's empty draw must not refuse
}

TEST_CASE("cuda graphs: the trainer's --cuda-graphs trains bit for bit as eagerly (fp16 loss scaling, clipping)") {
  if (skip_without_gpu("cuda graphs: trainer")) return;
  const tokenizer tok =
      tokenizer::from_vocab(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/bert-base-uncased/vocab.txt");
  bert_config c = small_config();
  c.vocab_size = 30522;
  dataset d;
  d.label_names = {"neg", "pos"};
  d.has_labels = true;
  d.path = "memory";
  const char* texts[] = {"a good film", "a rather long and tedious film", "fine", "not the best film of the year"};
  for (std::size_t i = 0; i < 24; ++i) d.examples.push_back({texts[i % 4], "", std::int64_t(i % 3 == 0), i + 1});
  const auto run = [&](bool graphs, std::string& log_text) {
    bert_for_sequence_classification<float, cuda> model(c);
    init_from_cpu(model, 11);
    training_args a;
    a.output_dir = (std::filesystem::temp_directory_path() /
                    ("minibert_cuda_graphs_" + std::to_string(::getpid()) + (graphs ? "_g" : "_e"))).string();
    a.batch_size = 4;
    a.max_steps = 12; // two epochs of 6 batches, lengths padded to 16
    a.learning_rate = 1e-3;
    a.warmup_steps = 2;
    a.eval_strategy = a.save_strategy = interval_strategy::no;
    a.pad_to_multiple_of = 16;
    a.fp16 = true;
    a.cuda_graphs = graphs;
    std::ostringstream log;
    trainer<float, cuda> t(model, tok, a, log);
    const nlohmann::json r = t.train(d, nullptr);
    std::filesystem::remove_all(a.output_dir);
    log_text = log.str();
    return std::make_pair(r["train_loss"].get<double>(), weights_of(model));
  };
  std::string eager_log, graph_log;
  const auto eager = run(false, eager_log), graphed = run(true, graph_log);
  INFO(graph_log);
  CHECK(graph_log.find("CUDA graphs: 1 captured, 11 of 12 steps replayed, 0 shapes") != std::string::npos);
  CHECK(graphed.first == eager.first);
  REQUIRE(graphed.second.size() == eager.second.size());
  for (std::size_t i = 0; i < eager.second.size(); ++i)
    CHECK_MESSAGE(graphed.second[i] == eager.second[i], "parameter " << i << " differs after 12 steps");
}

TEST_CASE("cuda graphs: a capture that fails leaves the stream, the allocator and the generator usable") {
  if (skip_without_gpu("cuda graphs: failed capture")) return;
  auto& ctx = current_context<cuda>();
  const tensor<float, cuda> x = full_on<float, cuda>({4}, 2.0f);
  const std::shared_ptr<void> pool = backend<cuda>::graph_pool();
  const tensor<std::int64_t, cuda> philox = zeros_on<std::int64_t, cuda>({2});
  backend<cuda>::capture_begin(ctx, pool, reinterpret_cast<const std::uint64_t*>(philox.data()), 1, 0);
  CHECK_THROWS_WITH_AS((void)item(x), doctest::Contains("cannot be captured"), error);
  backend<cuda>::capture_abort(ctx);
  CHECK(ctx.capture == nullptr);
  CHECK(double(item(x)) == 2.0); // eager work runs again
  // a capture that records a kernel and an upload replays them: y = 3 + x each time
  tensor<float, cuda> y = tensor<float, cuda>::empty({4});
  backend<cuda>::capture_begin(ctx, pool, reinterpret_cast<const std::uint64_t*>(philox.data()), 1, 0);
  float three[4] = {3, 3, 3, 3};
  backend<cuda>::upload(ctx, three, y.data(), 4);
  backend<cuda>::axpy(ctx, 1.0f, x.data(), y.data(), 4);
  const std::shared_ptr<void> graph = backend<cuda>::capture_end(ctx);
  // the source changes and the upload ring goes round: the replays still upload the captured values
  const auto scribble = [&](float v) {
    for (float& t : three) t = v;
    tensor<float, cuda> z = tensor<float, cuda>::empty({4});
    for (int i = 0; i < 2 * context<cuda>::upload_slots; ++i) backend<cuda>::upload(ctx, three, z.data(), 4);
  };
  scribble(7);
  backend<cuda>::replay(ctx, graph);
  CHECK(test::values(to_host(y)) == std::vector<double>{5, 5, 5, 5});
  backend<cuda>::fill(ctx, y.data(), 4, 0.0f);
  scribble(9);
  backend<cuda>::replay(ctx, graph);
  CHECK(test::values(to_host(y)) == std::vector<double>{5, 5, 5, 5}); // the upload's source is the graph's copy
}

} // namespace test_cuda_graphs
