// SPDX-License-Identifier: MIT
// The backend contract (backend.hpp's backend_for) as a test: a stub device that implements every member of the
// table and does nothing but record the call. The whole model (BertForSequenceClassification), its loss, the
// backward pass, gradient clipping, an AdamW step, fp16 loss scaling and the trainer compile for it and run through
// the table alone; a device missing one member does not satisfy the contract.

#include <algorithm> // count
#include <cstdint>   // int64_t, int32_t, uint8_t, uint64_t
#include <cstdlib>   // malloc, free
#include <filesystem> // temp_directory_path, remove_all (the trainer's output)
#include <map>       // map
#include <memory>    // shared_ptr, make_shared (graphs)
#include <set>       // set
#include <sstream>   // ostringstream (graph log)
#include <span>      // span
#include <string>    // string
#include <vector>    // vector

#include <unistd.h> // getpid

#include <minibert/bert.hpp> // the contract instantiates the model, trainer and scaler on every backend

#include "test_helpers.hpp"

namespace minibert {
namespace device {
/// a device whose kernels only record that they were called (host memory, never written)
struct stub {
  static constexpr const char* name = "stub";
};
/// a device whose table lacks members
struct incomplete {
  static constexpr const char* name = "incomplete";
};
} // namespace device

template <> struct device_memory<device::stub> {
  static void* allocate(std::size_t bytes) { return bytes ? std::calloc(1, bytes) : nullptr; }
  static void deallocate(void* p) noexcept { std::free(p); }
};
template <> struct context<device::stub> {
  std::vector<std::string> calls;
  matmul_precision matmul = matmul_precision::fp32;
  bool capturing = false;            // between capture_begin and capture_end
  std::vector<std::string> captured; // the calls recorded into the graph being captured
};
template <> context<device::stub>& default_context<device::stub>() {
  static context<device::stub> ctx;
  return ctx;
}

template <> struct backend<device::stub> {
  using i64 = std::int64_t;
  using ctx_t = context<device::stub>;
  template <class T> using A = acc_t<T>;
  static void call(ctx_t& c, const char* name) { (c.capturing ? c.captured : c.calls).emplace_back(name); }

  template <class T> static void fill(ctx_t& c, T*, i64, T) { call(c, "fill"); }
  template <class T> static void copy(ctx_t& c, const T*, T*, i64) { call(c, "copy"); }
  template <class T> static void upload(ctx_t& c, const T*, T*, i64) { call(c, "upload"); }
  template <class T> static void download(ctx_t& c, const T*, T*, i64) {
    MINIBERT_CHECK(!c.capturing, "stub", "a download cannot be captured"); // as on CUDA
    call(c, "download");
  }
  template <class T> static void copy_strided(ctx_t& c, const T*, const shape&, const shape&, T*) { call(c, "copy_strided"); }
  template <class T> static void copy_into(ctx_t& c, const T*, T*, const shape&, const shape&) { call(c, "copy_into"); }
  template <class T> static void cast(ctx_t& c, const T*, A<T>*, i64) { call(c, "cast"); }
  static void synchronize(ctx_t& c) { call(c, "synchronize"); }
  template <class T> static void axpy(ctx_t& c, T, const T*, T*, i64) { call(c, "axpy"); }
  template <class T> static void scale(ctx_t& c, T, const T*, T*, i64) { call(c, "scale"); }
  template <class T>
  static void binary(ctx_t& c, binary_op, const shape&, const T*, const shape&, const T*, const shape&, T*) {
    call(c, "binary");
  }
  template <class T> static void sum_to(ctx_t& c, const T*, const shape&, T*, i64, const shape&) { call(c, "sum_to"); }
  template <class T> static void sum_all(ctx_t& c, const T*, i64, bool, T*) { call(c, "sum_all"); }
  template <class T> static void broadcast_scalar(ctx_t& c, const T*, T, T*, i64) { call(c, "broadcast_scalar"); }
  template <class T>
  static void gemm(ctx_t& c, bool, bool, i64, i64, i64, A<T>, const T*, i64, const T*, i64, A<T>, T*, i64) {
    call(c, "gemm");
  }
  template <class T>
  static void gemm_batched(ctx_t& c, bool, bool, i64, i64, i64, A<T>, const T*, i64, i64, const T*, i64, i64, A<T>, T*,
                           i64, i64, i64) {
    call(c, "gemm_batched");
  }
  template <class T> static void linear_forward(ctx_t& c, const T*, const T*, const T*, T*, i64, i64, i64) {
    call(c, "linear_forward");
  }
  template <class T>
  static void linear_backward(ctx_t& c, const T*, const T*, const T*, T*, T*, T*, i64, i64, i64) {
    call(c, "linear_backward");
  }
  template <class T> static void activation_forward(ctx_t& c, activation, const T*, T*, i64) { call(c, "activation_forward"); }
  template <class T> static void activation_backward(ctx_t& c, activation, const T*, const T*, T*, i64) {
    call(c, "activation_backward");
  }
  template <class T>
  static void layer_norm_forward(ctx_t& c, const T*, const T*, const T*, T*, A<T>*, A<T>*, i64, i64, double) {
    call(c, "layer_norm_forward");
  }
  template <class T>
  static void layer_norm_backward(ctx_t& c, const T*, const T*, const T*, const A<T>*, const A<T>*, T*, T*, T*, i64, i64) {
    call(c, "layer_norm_backward");
  }
  template <class T> static void softmax_forward(ctx_t& c, const T*, const T*, const row_broadcast&, T*, i64, i64) {
    call(c, "softmax_forward");
  }
  template <class T> static void softmax_backward(ctx_t& c, const T*, const T*, T*, i64, i64) { call(c, "softmax_backward"); }
  template <class T> static void additive_mask(ctx_t& c, const std::int32_t*, T*, i64) { call(c, "additive_mask"); }
  template <class T, class I> static void embedding_forward(ctx_t& c, const I*, const T*, T*, i64, i64) {
    call(c, "embedding_forward");
  }
  template <class T, class I> static void embedding_backward(ctx_t& c, const I*, const T*, T*, i64, i64) {
    call(c, "embedding_backward");
  }
  template <class T, class I>
  static void cross_entropy_forward(ctx_t& c, const T*, const I*, T*, i64, i64, i64, T*, A<T>*) {
    call(c, "cross_entropy_forward");
  }
  template <class T, class I>
  static void cross_entropy_backward(ctx_t& c, const T*, const I*, const T*, const A<T>*, T*, i64, i64, i64) {
    call(c, "cross_entropy_backward");
  }
  template <class T> static void mse_forward(ctx_t& c, const T*, const T*, i64, T*) { call(c, "mse_forward"); }
  template <class T> static void mse_backward(ctx_t& c, const T*, const T*, const T*, T*, i64) { call(c, "mse_backward"); }
  template <class T> static void bce_with_logits_forward(ctx_t& c, const T*, const T*, i64, T*) {
    call(c, "bce_with_logits_forward");
  }
  template <class T> static void bce_with_logits_backward(ctx_t& c, const T*, const T*, const T*, T*, i64) {
    call(c, "bce_with_logits_backward");
  }
  template <class T>
  static void dropout_forward(ctx_t& c, const T*, T*, std::uint8_t*, i64, float, std::uint64_t, std::uint64_t) {
    call(c, "dropout_forward");
  }
  template <class T> static void dropout_backward(ctx_t& c, const T*, const std::uint8_t*, T*, i64, float) {
    call(c, "dropout_backward");
  }
  template <class T> struct attention_saved {};
  template <class T>
  static void attention_forward(ctx_t& c, const attention_dims&, const T*, const T*, const T*, const T*, T*,
                                attention_saved<T>&, float, std::uint64_t, std::uint64_t) {
    call(c, "attention_forward");
  }
  template <class T>
  static void attention_backward(ctx_t& c, const attention_dims&, const T*, const T*, const T*, const T*, const T*,
                                 const attention_saved<T>&, float, T*, T*, T*) {
    call(c, "attention_backward");
  }
  template <class T>
  static void adamw_step(ctx_t& c, std::span<const adamw_tensor<T>>, const adamw_coefficients<A<T>>&) {
    call(c, "adamw_step");
  }
  template <class T> static void sum_squares(ctx_t& c, std::span<const foreach_tensor<const T>>, double*) {
    call(c, "sum_squares");
  }
  template <class T> static void clip_by_norm(ctx_t& c, std::span<const foreach_tensor<T>>, const double*, double) {
    call(c, "clip_by_norm");
  }
  template <class T>
  static void non_finite_check_and_unscale(ctx_t& c, std::span<const foreach_tensor<T>>, A<T>, A<T>*) {
    call(c, "non_finite_check_and_unscale");
  }

  // optional graph capture: calls between capture_begin and capture_end are recorded into the graph, not made; a
  // replay is one call
  static std::shared_ptr<void> graph_pool() { return std::make_shared<int>(0); }
  static void capture_begin(ctx_t& c, const std::shared_ptr<void>&, const std::uint64_t*, std::uint64_t,
                            std::uint64_t) {
    c.capturing = true;
  }
  static std::shared_ptr<void> capture_end(ctx_t& c) {
    c.capturing = false;
    return std::make_shared<std::vector<std::string>>(std::move(c.captured));
  }
  static void capture_abort(ctx_t& c) noexcept {
    c.capturing = false;
    c.captured.clear();
  }
  static void replay(ctx_t& c, const std::shared_ptr<void>&) { call(c, "replay"); }
};

template <> struct backend<device::incomplete> {
  template <class T> static void fill(context<device::incomplete>&, T*, std::int64_t, T) {}
};

static_assert(backend_for<device::stub, float>, "the stub implements the whole table");
static_assert(!backend_for<device::incomplete, float>, "a table missing members does not satisfy the contract");
static_assert(!has_memory_stats<device::stub>, "allocator statistics are optional");
static_assert(has_graph_capture<device::stub> && !has_graph_capture<device::cpu>, "graph capture is optional");

// the model and the trainer compile for any device that implements the table, with fp32 or 16-bit storage
template class trainer<float, device::stub>;
template class trainer<bfloat16, device::stub>;
template class trainer<half, device::stub>;
template class grad_scaler<float, device::stub>;
template class grad_scaler<bfloat16, device::stub>;
template class grad_scaler<half, device::stub>;

} // namespace minibert

namespace test_backend_contract { // each test file in its own namespace: a test group compiles as one unit

namespace {
using minibert::device::stub;

minibert::bert_config tiny_config() {
  minibert::bert_config c;
  c.vocab_size = 30;
  c.hidden_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 16;
  c.max_position_embeddings = 16;
  c.id2label = {"neg", "pos"};
  return c;
}

std::set<std::string> calls_made() {
  auto& calls = minibert::default_context<stub>().calls;
  std::set<std::string> s(calls.begin(), calls.end());
  calls.clear();
  return s;
}

/// how many times each op was called since the last calls_made() / call_counts(), which forgets them
std::map<std::string, int> call_counts() {
  auto& calls = minibert::default_context<stub>().calls;
  std::map<std::string, int> n;
  for (const auto& c : calls) ++n[c];
  calls.clear();
  return n;
}
} // namespace

TEST_CASE("backend contract: the whole model trains through the table of a stub device") {
  using namespace minibert;
  bert_for_sequence_classification<float, stub> model(tiny_config());
  generator gen(1);
  model.init_weights(gen);
  model.train();
  calls_made();
  const std::int64_t B = 2, T = 5;
  model_batch<stub> mb = to_device<stub>(collate(
      tokenized_dataset{{{2, 5, 7, 3}, {2, 9, 3}}, {{0, 0, 0, 0}, {0, 0, 0}}, {1, 0}, 0}, std::vector<std::size_t>{0, 1}));
  CHECK(mb.inputs.input_ids.shape() == shape{B, 4});
  (void)T;

  auto logits = model.forward(mb.inputs, gen);
  CHECK(logits.shape() == shape{B, 2});
  auto loss = model.loss(logits, mb.labels);
  const std::set<std::string> forward = calls_made();
  for (const char* op : {"additive_mask", "embedding_forward", "layer_norm_forward", "linear_forward", "attention_forward",
                         "activation_forward", "dropout_forward", "cross_entropy_forward", "binary"})
    CHECK_MESSAGE(forward.count(op), "the forward pass did not call " << op);
  CHECK_FALSE(forward.count("download")); // no host synchronization in the forward pass

  loss.backward();
  const std::set<std::string> backward = calls_made();
  for (const char* op : {"cross_entropy_backward", "linear_backward", "attention_backward", "layer_norm_backward",
                         "activation_backward", "dropout_backward", "embedding_backward"})
    CHECK_MESSAGE(backward.count(op), "the backward pass did not call " << op);
  CHECK_FALSE(backward.count("download"));

  auto groups = default_param_groups(model, 0.01);
  adamw<float, stub> opt(groups);
  const tensor<double, stub> norm = clip_grad_norm_on_device(model.parameters(), 1.0);
  opt.step(1e-3);
  std::map<std::string, int> update = call_counts();
  // one call for all the parameters (AdamW: one per param group, whose coefficients differ), not one per parameter:
  // multi-tensor ops, which a GPU runs in one launch per list
  CHECK(update["sum_squares"] == 1);
  CHECK(update["clip_by_norm"] == 1);
  CHECK(update["adamw_step"] == int(groups.size()));
  CHECK(update["download"] == 0); // clipping and the update need no host synchronization
  CHECK(norm.shape() == shape{1});
}

TEST_CASE("backend contract: 16-bit parameters get fp32 master weights and moments") {
  using namespace minibert;
  bert_for_sequence_classification<bfloat16, stub> model(tiny_config());
  generator gen(1);
  model.init_weights(gen);
  model.train();
  const model_batch<stub> mb = to_device<stub>(
      collate(tokenized_dataset{{{2, 5, 7, 3}}, {{0, 0, 0, 0}}, {1}, 0}, std::vector<std::size_t>{0}));
  model.loss(model.forward(mb.inputs, gen), mb.labels).backward();
  adamw<bfloat16, stub> opt(default_param_groups(model, 0.01));
  calls_made();
  opt.step(1e-3);
  const std::set<std::string> update = calls_made();
  CHECK(update.count("cast"));       // the master weights start as the fp32 values of the 16-bit parameters
  CHECK(update.count("adamw_step")); // which the update writes back
  const auto params = model.named_parameters();
  const auto& [name, p] = params.front();
  const adamw_state<bfloat16, stub>* st = opt.state(name);
  REQUIRE(st != nullptr);
  CHECK(st->master.defined());
  CHECK(st->master.shape() == p.shape());
  static_assert(std::is_same_v<decltype(st->exp_avg)::value_type, float>, "moments in fp32");
  // a float parameter is its own master
  bert_for_sequence_classification<float, stub> f32(tiny_config());
  f32.init_weights(gen);
  f32.loss(f32.forward(mb.inputs, gen), mb.labels).backward();
  adamw<float, stub> opt32(default_param_groups(f32, 0.01));
  opt32.step(1e-3);
  const auto params32 = f32.named_parameters();
  REQUIRE(opt32.state(params32.front().first) != nullptr);
  CHECK_FALSE(opt32.state(params32.front().first)->master.defined());
}

TEST_CASE("backend contract: fp16 loss scaling runs through the table and reads the device once per step") {
  using namespace minibert;
  bert_for_sequence_classification<half, stub> model(tiny_config());
  generator gen(1);
  model.init_weights(gen);
  const model_batch<stub> mb = to_device<stub>(
      collate(tokenized_dataset{{{2, 5, 7, 3}}, {{0, 0, 0, 0}}, {1}, 0}, std::vector<std::size_t>{0}));
  adamw<half, stub> opt(default_param_groups(model, 0.01));
  grad_scaler<half, stub> scaler({.init_scale = 1024.0});
  auto loss = model.loss(model.forward(mb.inputs, gen), mb.labels);
  calls_made();
  loss.backward(scaler.seed_like(loss));
  scaler.unscale(opt);
  std::map<std::string, int> unscale = call_counts();
  CHECK(unscale["fill"] > 0);                              // the seed, and found_inf zeroed
  CHECK(unscale["non_finite_check_and_unscale"] == 1);     // one call for all the gradients
  CHECK(unscale["download"] == 0);                         // unscaling does not wait for the device
  clip_grad_norm_on_device(model.parameters(), 1.0);
  CHECK(scaler.step(opt, 1e-3)); // the stub downloads nothing: found_inf reads 0, the step runs
  scaler.update();
  const auto& calls = default_context<stub>().calls;
  CHECK(std::count(calls.begin(), calls.end(), "download") == 1); // found_inf, read once for step() and update()
  CHECK(calls_made().count("adamw_step"));
  CHECK(scaler.growth_tracker() == 1);
}

namespace {
/// a model on the stub, its batch, its generator and step_graphs over them (at most 2 graphs)
struct graphed_stub {
  minibert::bert_for_sequence_classification<float, stub> model{tiny_config()};
  minibert::model_batch<stub> batch = minibert::to_device<stub>(minibert::collate(
      minibert::tokenized_dataset{{{2, 5, 7, 3}, {2, 9, 3}}, {{0, 0, 0, 0}, {0, 0, 0}}, {1, 0}, 0},
      std::vector<std::size_t>{0, 1}));
  minibert::generator gen{3};
  std::ostringstream log;
  minibert::step_graphs<float, stub> graphs{2, log};
  bool read_loss_on_host = false; // a download inside the step: it cannot be captured

  graphed_stub() {
    minibert::generator init(1);
    model.init_weights(init);
    model.train();
  }
  minibert::tensor<float, stub> forward_backward(const minibert::model_batch<stub>& b,
                                                 const minibert::tensor<float, stub>& seed) {
    auto loss = model.loss(model.forward(b.inputs, gen), b.labels);
    if (read_loss_on_host) (void)minibert::item(loss.value());
    loss.backward(seed);
    return loss.value();
  }
  /// one step's forward and backward, graphed when the graphs take it; whether they did
  bool step() {
    const auto fb = [&](const minibert::model_batch<stub>& b, const minibert::tensor<float, stub>& seed) {
      return forward_backward(b, seed);
    };
    if (graphs.run(batch, model.parameters(), gen, 1.0f, fb)) return true;
    forward_backward(batch, minibert::full_on<float, stub>({1}, 1.0f));
    return false;
  }
  /// the optimizer step's end: the graph takes its gradients back, zero_grad drops eager ones
  void finish_step() {
    graphs.reclaim(model.parameters());
    model.zero_grad();
  }
  /// every parameter has a gradient that nothing else holds (so clipping and unscaling write it in place)
  bool every_parameter_has_a_sole_gradient() const {
    for (const auto& p : model.parameters())
      if (!p.has_grad() || !p.grad().sole_handle()) return false;
    return true;
  }
  std::vector<const float*> gradient_buffers() const {
    std::vector<const float*> out;
    for (const auto& p : model.parameters()) out.push_back(p.grad().data());
    return out;
  }
};
} // namespace

TEST_CASE("backend contract: step_graphs captures a shape's second step and replays it in one call") {
  graphed_stub s;
  call_counts();
  CHECK_FALSE(s.step()); // the shape's first step runs eagerly (warm-up)
  const std::uint64_t draws = s.gen.offset();
  CHECK(draws > 0); // dropout drew
  CHECK(call_counts()["linear_forward"] > 0);
  s.finish_step();
  std::vector<const float*> buffers;
  for (std::uint64_t step = 2; step <= 4; ++step) {
    CHECK(s.step());
    std::map<std::string, int> calls = call_counts();
    CHECK(calls["replay"] == 1);
    CHECK(calls["fill"] == 1);   // the loss seed
    CHECK(calls["upload"] == 1); // the generator's state
    // the batch's ids, mask, token types, positions and labels: cloned into the static inputs by the capture,
    // copied there by a replay
    CHECK(calls["copy"] + calls["copy_strided"] == 5);
    for (const char* expected : {"replay", "fill", "upload", "copy", "copy_strided"}) calls.erase(expected);
    CHECK_MESSAGE(calls.empty(), "a replayed step made other calls, e.g. " << calls.begin()->first);
    CHECK(s.gen.offset() == step * draws); // each replay advances the generator by the eager step's draws
    CHECK(s.every_parameter_has_a_sole_gradient()); // lent by the graph, which keeps no other handle
    if (buffers.empty()) buffers = s.gradient_buffers();
    CHECK(s.gradient_buffers() == buffers); // the same buffers at every replay
    s.finish_step();
    for (const auto& p : s.model.parameters()) CHECK_FALSE(p.has_grad());
  }
  CHECK(s.graphs.captures() == 1);
  CHECK(s.graphs.replays() == 3);
  CHECK(s.graphs.failures() == 0);
  // a step that starts with gradients (accumulation) runs eagerly: the graph writes fresh ones
  s.model.parameters().front().set_grad(minibert::tensor<float, stub>::empty(s.model.parameters().front().shape()));
  CHECK_FALSE(s.graphs.run(s.batch, s.model.parameters(), s.gen, 1.0f, {}));
}

TEST_CASE("backend contract: a step that cannot be captured runs eagerly, and its shape stays eager") {
  graphed_stub s;
  s.read_loss_on_host = true;
  CHECK_FALSE(s.step());
  s.finish_step();
  const std::uint64_t offset = s.gen.offset();
  call_counts();
  CHECK_FALSE(s.graphs.run(s.batch, s.model.parameters(), s.gen, 1.0f,
                           [&](const auto& b, const auto& seed) { return s.forward_backward(b, seed); }));
  CHECK(s.graphs.failures() == 1);
  CHECK(s.graphs.captures() == 0);
  CHECK(s.log.str().find("could not be captured") != std::string::npos);
  CHECK(s.gen.offset() == offset); // the failed capture's draws are given back
  for (const auto& p : s.model.parameters()) CHECK_FALSE(p.has_grad());
  CHECK(minibert::default_context<stub>().captured.empty());
  CHECK_FALSE(s.step()); // eager from now on
  CHECK(s.graphs.captures() == 0);
  // and no other shape is tried: what failed one capture would fail the next
  CHECK(s.graphs.capturing_stopped());
  s.read_loss_on_host = false;
  s.batch = minibert::to_device<stub>(minibert::collate(
      minibert::tokenized_dataset{{{2, 5, 3}}, {{0, 0, 0}}, {1}, 0}, std::vector<std::size_t>{0}));
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(s.step());
    s.finish_step();
  }
  CHECK(s.graphs.captures() == 0);
}

TEST_CASE("backend contract: a gradient buffer replaced during the optimizer step retires its graph") {
  graphed_stub s;
  CHECK_FALSE(s.step());
  s.finish_step();
  CHECK(s.step());
  auto p = s.model.parameters().front();
  p.set_grad(clone(p.grad())); // as a clip that copies would
  s.finish_step();
  CHECK(s.graphs.failures() == 1);
  CHECK(s.log.str().find("was replaced") != std::string::npos);
  CHECK_FALSE(s.step());
  CHECK(s.graphs.captures() == 1);
}

TEST_CASE("backend contract: the trainer's cuda_graphs replays every step after each shape's first (stub device)") {
  using namespace minibert;
  const tokenizer tok =
      tokenizer::from_vocab(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/bert-base-uncased/vocab.txt");
  bert_config c = tiny_config();
  c.vocab_size = 30522;
  c.max_position_embeddings = 32;
  bert_for_sequence_classification<float, stub> model(c);
  generator init(1);
  model.init_weights(init);
  dataset d;
  d.label_names = {"neg", "pos"};
  d.has_labels = true;
  d.path = "memory";
  for (std::size_t i = 0; i < 16; ++i) // rows of 5 and 8 tokens: every batch pads to 16
    d.examples.push_back({i % 2 ? "a good film" : "a rather long and tedious film", "", std::int64_t(i % 2), i + 1});
  training_args a;
  a.output_dir = (std::filesystem::temp_directory_path() / ("minibert_graphs_" + std::to_string(::getpid()))).string();
  a.batch_size = 4;
  a.max_steps = 8; // 2 epochs of 4 batches
  a.eval_strategy = a.save_strategy = interval_strategy::no;
  a.pad_to_multiple_of = 16;
  a.cuda_graphs = true;
  std::ostringstream log;
  trainer<float, stub> t(model, tok, a, log);
  t.train(d, nullptr);
  std::filesystem::remove_all(a.output_dir);
  CHECK_MESSAGE(log.str().find("CUDA graphs: 1 captured, 7 of 8 steps replayed, 0 shapes") != std::string::npos,
                log.str());
  // with accumulation the steps run eagerly, and the log says why
  a.gradient_accumulation_steps = 2;
  std::ostringstream log2;
  trainer<float, stub> t2(model, tok, a, log2);
  t2.train(d, nullptr);
  std::filesystem::remove_all(a.output_dir);
  CHECK(log2.str().find("--cuda-graphs ignored (gradient accumulation)") != std::string::npos);
  CHECK(log2.str().find("CUDA graphs:") == std::string::npos);
}

} // namespace test_backend_contract
