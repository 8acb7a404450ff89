// SPDX-License-Identifier: MIT
#pragma once
/* step_graphs<T, D>: the training step's forward and backward as CUDA graphs, one per batch shape (PyTorch's
   whole-network capture with torch.cuda.graph, the optimizer step left eager as make_graphed_callables leaves it).
   The first batch of a shape runs eagerly (it warms up workspaces, plans and the optimizer's state), the second is
   captured and every later one replays the graph: one launch instead of some 600 kernel launches and the host work
   around them. Only on devices with has_graph_capture (backend.hpp); elsewhere every step runs eagerly.

   A replay reads and writes what the capture fixed:
   - the batch: static copies of the captured batch, which each later batch of the shape is copied into;
   - the loss gradient's seed: a static (1) tensor set before each replay (the loss scale under fp16, else 1);
   - dropout: the captured kernels read the generator's (seed, offset) from a static device pair set before each
     replay, and the generator then advances by what the capture drew: a replay draws what the eager step would;
   - the parameters, in place (the optimizer updates them in place);
   - the gradients: the graph's own buffers, lent to the parameters after a replay and taken back by reclaim() after
     the optimizer step, in place of zero_grad. A parameter whose gradient buffer was replaced retires its graph.
   Allocations during a capture come from one private pool shared by this object's graphs (their replays never
   overlap) and are never handed to other tensors. A capture that fails (an operation that cannot be captured, such
   as a read of a device value on the host, or memory) is logged, and no further capture is tried: the shapes
   without a graph run eagerly from then on. */

#include <compare>    // operator<=> (key)
#include <cstdint>    // int64_t, uint64_t
#include <functional> // function
#include <map>        // map
#include <optional>   // optional
#include <ostream>    // ostream
#include <set>        // set
#include <string>     // string
#include <utility>    // move
#include <vector>     // vector

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/error.hpp>
#include <minibert/random.hpp>
#include <minibert/tensor_ops.hpp>
#include <minibert/training/batching.hpp>

namespace minibert {

template <class T, class D> class step_graphs {
public:
  using tensor_t = tensor<T, D>;
  using variable_t = variable<T, D>;
  /// forward and backward of a batch with `seed` as the loss gradient; returns the loss value (1)
  using work = std::function<tensor_t(const model_batch<D>& batch, const tensor_t& seed)>;

  /// @param max_graphs shapes captured at most (each holds a gradient buffer per parameter); others run eagerly
  step_graphs(std::size_t max_graphs, std::ostream& log) : max_graphs_(max_graphs), log_(log) {}

  /// @brief forward and backward of `batch` through a graph when one takes it: captured on the shape's second batch,
  /// replayed on later ones. The parameters then hold the gradients until reclaim().
  /// @return the loss (device (1), overwritten by the next replay), or nothing when the caller must run `fn` eagerly
  /// @throws minibert::error when the previous step's gradients were not reclaimed
  std::optional<tensor_t> run(const model_batch<D>& batch, std::vector<variable_t> params, generator& gen,
                              T seed_value, const work& fn) {
    if constexpr (!has_graph_capture<D>) {
      return std::nullopt;
    } else {
      MINIBERT_CHECK(!lent_, "step_graphs", "run() again before reclaim() took the last replay's gradients back");
      for (const variable_t& p : params)
        if (p.has_grad()) return std::nullopt; // accumulating onto gradients: the graphs write fresh ones
      const key k = key_of(batch);
      auto it = graphs_.find(k);
      if (it == graphs_.end()) {
        const bool warmed_up = !seen_.insert(k).second;
        if (!warmed_up || capture_failed_ || failed_.count(k) || graphs_.size() >= max_graphs_) return std::nullopt;
        it = capture(k, batch, params, gen, fn);
        if (it == graphs_.end()) return std::nullopt;
      } else {
        copy_batch(batch, it->second.inputs);
      }
      replay(it->second, params, gen, seed_value);
      return it->second.loss;
    }
  }

  /// @brief takes the gradients the last replay lent to the parameters back (call it after the optimizer step, in
  /// place of zero_grad); a no-op when the last step ran eagerly
  void reclaim(std::vector<variable_t> params) {
    if (!lent_) return;
    graph& g = *lent_;
    lent_ = nullptr;
    bool intact = params.size() == g.grad_data.size();
    for (std::size_t i = 0; i < params.size() && i < g.grad_data.size(); ++i) {
      if (!g.grad_data[i]) continue;
      tensor_t held = params[i].take_grad();
      if (!held.defined() || held.data() != g.grad_data[i]) intact = false;
      else g.grads[i] = std::move(held);
    }
    if (intact) return;
    const key k = g.id;
    log_ << "cuda graphs: a gradient buffer of the graph for batches of shape (" << k.rows << ", " << k.length
         << ") was replaced during the optimizer step; that shape runs eagerly from now on\n";
    failed_.insert(k);
    graphs_.erase(k);
    release_idle_pool();
  }

  std::int64_t captures() const { return captures_; } ///< graphs captured
  std::int64_t replays() const { return replays_; }   ///< steps a graph ran
  std::int64_t failures() const { return std::int64_t(failed_.size()); } ///< shapes that run eagerly after a failure
  bool capturing_stopped() const { return capture_failed_; } ///< a capture failed: no more are tried

private:
  struct key {
    std::int64_t rows = 0, length = 0;
    unsigned defined = 0; // which of mask, token types, positions, labels the batch has
    auto operator<=>(const key&) const = default;
  };
  struct graph {
    key id;
    std::shared_ptr<void> exec;
    model_batch<D> inputs; // static: each batch of the shape is copied here
    tensor_t seed, loss;
    std::vector<tensor_t> grads;    // per parameter: the graph's gradient buffer while not lent (undefined: none)
    std::vector<const T*> grad_data; // per parameter: where the graph writes its gradient (null: none)
    std::uint64_t draws = 0;        // Philox counters one step consumes
  };

  static key key_of(const model_batch<D>& b) {
    const auto& in = b.inputs;
    return {in.input_ids.size(0), in.input_ids.size(1),
            unsigned(in.attention_mask.defined()) | unsigned(in.token_type_ids.defined()) << 1 |
                unsigned(in.position_ids.defined()) << 2 | unsigned(b.labels.defined()) << 3};
  }

  static model_batch<D> clone_batch(const model_batch<D>& b) {
    const auto c = [](const tensor<std::int32_t, D>& t) { return t.defined() ? clone(t) : tensor<std::int32_t, D>(); };
    return {{c(b.inputs.input_ids), c(b.inputs.attention_mask), c(b.inputs.token_type_ids), c(b.inputs.position_ids)},
            c(b.labels),
            b.size};
  }

  static void copy_batch(const model_batch<D>& from, model_batch<D>& to) {
    const auto c = [](const tensor<std::int32_t, D>& src, tensor<std::int32_t, D>& dst) {
      if (!src.defined()) return;
      const tensor<std::int32_t, D> s = contiguous(src);
      backend<D>::copy(current_context<D>(), s.data(), dst.data(), s.numel());
    };
    c(from.inputs.input_ids, to.inputs.input_ids);
    c(from.inputs.attention_mask, to.inputs.attention_mask);
    c(from.inputs.token_type_ids, to.inputs.token_type_ids);
    c(from.inputs.position_ids, to.inputs.position_ids);
    c(from.labels, to.labels);
    to.size = from.size;
  }

  /// records fn's forward and backward of `batch` into a new graph; graphs_.end() when the capture failed (then
  /// the generator and the parameters' gradients are as before)
  auto capture(const key& k, const model_batch<D>& batch, std::vector<variable_t>& params, generator& gen,
               const work& fn) {
    auto& ctx = current_context<D>();
    if (!pool_) {
      pool_ = backend<D>::graph_pool();
      philox_ = tensor<std::int64_t, D>::empty({2});
    }
    graph g;
    g.id = k;
    g.inputs = clone_batch(batch);
    g.seed = tensor_t::empty({1});
    const std::uint64_t seed = gen.seed(), origin = gen.offset();
    // the capture cannot give cached memory back to the driver if it runs short: give it back now (once per shape)
    if constexpr (has_memory_stats<D>) backend<D>::empty_cache(ctx);
    try {
      backend<D>::capture_begin(ctx, pool_, reinterpret_cast<const std::uint64_t*>(philox_.data()), seed, origin);
      g.loss = fn(g.inputs, g.seed);
      g.exec = backend<D>::capture_end(ctx);
      g.draws = gen.offset() - origin;
      gen.set_state(seed, origin); // the replay below draws from here, as the eager step would have
      take_gradients(g, params);
    } catch (const error& e) {
      backend<D>::capture_abort(ctx);
      gen.set_state(seed, origin);
      for (variable_t& p : params) p.zero_grad(); // never computed
      failed_.insert(k);
      // what fails one shape (an op that cannot be captured, memory) almost always fails the others: stop trying
      capture_failed_ = true;
      release_idle_pool();
      log_ << "cuda graphs: the step of batches of shape (" << k.rows << ", " << k.length << ") could not be "
           << "captured (" << e.what() << "): shapes without a graph run eagerly from now on\n";
      return graphs_.end();
    } catch (...) {
      backend<D>::capture_abort(ctx);
      gen.set_state(seed, origin);
      for (variable_t& p : params) p.zero_grad();
      throw;
    }
    ++captures_;
    return graphs_.emplace(k, std::move(g)).first;
  }

  /// with no graph left, the pool's memory goes back to the allocator's common cache (a later capture makes a new one)
  void release_idle_pool() {
    if (graphs_.empty()) pool_.reset();
  }

  /// the gradients the capture left in the parameters become the graph's buffers
  static void take_gradients(graph& g, std::vector<variable_t>& params) {
    g.grads.resize(params.size());
    g.grad_data.assign(params.size(), nullptr);
    for (std::size_t i = 0; i < params.size(); ++i) {
      tensor_t t = params[i].take_grad();
      if (!t.defined()) continue;
      MINIBERT_CHECK(t.is_contiguous() && t.sole_handle(), "step_graphs",
                     "the gradient of parameter " << i << " " << t.shape() << " shares its storage: not capturable");
      g.grad_data[i] = t.data();
      g.grads[i] = std::move(t);
    }
  }

  void replay(graph& g, std::vector<variable_t>& params, generator& gen, T seed_value) {
    auto& ctx = current_context<D>();
    backend<D>::fill(ctx, g.seed.data(), 1, seed_value);
    const std::int64_t state[2] = {std::int64_t(gen.seed()), std::int64_t(gen.offset())};
    backend<D>::upload(ctx, state, philox_.data(), 2);
    backend<D>::replay(ctx, g.exec);
    gen.set_state(gen.seed(), gen.offset() + g.draws);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (g.grad_data[i]) params[i].set_grad(std::move(g.grads[i]));
    lent_ = &g;
    ++replays_;
  }

  std::size_t max_graphs_;
  std::ostream& log_;
  std::shared_ptr<void> pool_;        // the allocations of every capture here
  tensor<std::int64_t, D> philox_;    // device (seed, offset) the captured dropout kernels read
  std::map<key, graph> graphs_;
  std::set<key> seen_, failed_;       // shapes run once (warmed up); shapes that stay eager
  graph* lent_ = nullptr;             // the graph whose gradients the parameters hold
  bool capture_failed_ = false;       // no more captures after a failed one
  std::int64_t captures_ = 0, replays_ = 0;
};

} // namespace minibert
