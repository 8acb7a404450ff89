// SPDX-License-Identifier: MIT
#pragma once
/* Reverse-mode automatic differentiation (flashlight/micrograd style): every op computes its value eagerly
   and, when an input needs a gradient, records a node holding a backward closure. variable<T, Device>
   is a handle to such a node; backward() runs the closures in reverse topological order and frees the
   graph as it goes (PyTorch's retain_graph=false). */

#include <algorithm>        // reverse
#include <cstdint>          // int64_t
#include <functional>       // function (backward closures)
#include <initializer_list> // initializer_list
#include <memory>           // shared_ptr, make_shared
#include <string>           // string
#include <unordered_map>    // unordered_map (hooked leaves)
#include <unordered_set>    // unordered_set (topological sort)
#include <utility>          // move
#include <vector>           // vector

#include <minibert/backend.hpp>
#include <minibert/error.hpp>
#include <minibert/profiler.hpp>
#include <minibert/tensor.hpp>
#include <minibert/tensor_ops.hpp>

namespace minibert {

namespace detail {
inline bool& grad_mode() {
  thread_local bool enabled = true;
  return enabled;
}

} // namespace detail

/// @brief whether ops on this thread record the graph
inline bool grad_enabled() { return detail::grad_mode(); }

/// @brief RAII scope in which no graph is recorded (inference, optimizer updates), like torch.no_grad().
class no_grad {
public:
  no_grad() : prev_(detail::grad_mode()) { detail::grad_mode() = false; }
  ~no_grad() { detail::grad_mode() = prev_; }
  no_grad(const no_grad&) = delete;
  no_grad& operator=(const no_grad&) = delete;

private:
  bool prev_;
};

/// @brief One value in the graph: its tensor, its gradient, and how to send the gradient to its inputs.
template <class T, class Device> struct node {
  using tensor_t = tensor<T, Device>;
  tensor_t value;
  tensor_t grad;            // undefined until a gradient arrives
  bool grad_owned = false;  // grad has its own storage (may be accumulated into in place)
  bool requires_grad = false;
  bool released = false;    // the backward closure was freed by a backward() pass
  const char* op = "leaf";
  std::vector<std::shared_ptr<node>> inputs;
  /// receives this node's gradient; calls accumulate(i, g) for each input i that needs one
  std::function<void(const tensor_t& grad, node& self)> backward_fn;
  /// leaves only: runs once per backward pass, as soon as this leaf's gradient is complete (every node that feeds it
  /// has run), like torch's register_post_accumulate_grad_hook; data-parallel training starts a bucket's
  /// all-reduce from it while the backward pass goes on
  std::function<void()> grad_ready_hook;

  bool is_leaf() const { return inputs.empty() && !released; }
  /// @brief whether input i wants a gradient
  bool needs(std::size_t i) const { return i < inputs.size() && inputs[i] && inputs[i]->requires_grad; }
  /// @brief add g into input i's gradient (no-op if that input needs none)
  void accumulate(std::size_t i, tensor_t g) {
    if (needs(i)) inputs[i]->add_grad(std::move(g));
  }
  void add_grad(tensor_t g) {
    profiler::backward_timer timer(profiler::active());
    add_grad_untimed(std::move(g));
    timer.finish("backward (gradient accumulation)");
  }
  /// @brief whether grad may be written in place: it is owned already, or it is contiguous and nothing else holds its
  /// storage any more (the producer has let go: the usual case, which then costs no copy), when it becomes owned
  bool take_grad_ownership() {
    if (!grad_owned && grad.is_contiguous() && grad.sole_handle()) grad_owned = true;
    return grad_owned && grad.is_contiguous();
  }
  void add_grad_untimed(tensor_t g) {
    MINIBERT_CHECK(g.shape() == value.shape(), "autograd",
                   op << ": gradient of shape " << g.shape() << " for a value of shape " << value.shape());
    if (!grad.defined()) {
      grad = std::move(g); // maybe shared with the producer: copied before any in-place accumulation unless sole
      grad_owned = false;
      return;
    }
    auto& ctx = current_context<Device>();
    const tensor_t gc = contiguous(g);
    if (take_grad_ownership()) {
      backend<Device>::axpy(ctx, T(1), gc.data(), grad.data(), grad.numel());
      return;
    }
    // the gradient held so far is shared: the sum goes to a new buffer of this node's own, in one pass (the same
    // values as a copy then axpy: held + g, rounded once)
    const tensor_t held = contiguous(grad);
    tensor_t sum = tensor_t::empty(grad.shape());
    const shape strides = contiguous_strides(sum.shape());
    backend<Device>::binary(ctx, binary_op::add, sum.shape(), held.data(), strides, gc.data(), strides, sum.data());
    grad = std::move(sum);
    grad_owned = true;
  }
};

/// @brief A differentiable value: a shared handle to a graph node (copies alias the same node).
template <class T, class Device = device::cpu> class variable {
public:
  using tensor_t = tensor<T, Device>;
  using node_t = node<T, Device>;
  using shape_type = ::minibert::shape;

  variable() = default;
  /// @brief a leaf holding value; requires_grad marks it as a parameter or input to differentiate
  explicit variable(tensor_t value, bool requires_grad = false) : n_(std::make_shared<node_t>()) {
    n_->value = std::move(value);
    n_->requires_grad = requires_grad;
  }
  explicit variable(std::shared_ptr<node_t> n) : n_(std::move(n)) {}

  bool defined() const { return n_ != nullptr; }
  const tensor_t& value() const { return n_->value; }
  /// @brief the value, writable in place (optimizer updates; do it under no_grad)
  tensor_t& mutable_value() { return n_->value; }
  const tensor_t& grad() const { return n_->grad; }
  bool has_grad() const { return n_->grad.defined(); }
  bool requires_grad() const { return n_->requires_grad; }
  void set_requires_grad(bool r) {
    MINIBERT_CHECK(n_->is_leaf(), "autograd", "requires_grad can only be set on leaves (op " << n_->op << ")");
    n_->requires_grad = r;
  }
  const shape_type& shape() const { return n_->value.shape(); }
  std::int64_t size(int i) const { return n_->value.size(i); }
  int rank() const { return n_->value.rank(); }
  std::int64_t numel() const { return n_->value.numel(); }
  const char* op() const { return n_->op; }
  const std::shared_ptr<node_t>& node_ptr() const { return n_; }

  /// @brief drop the gradient (PyTorch's zero_grad(set_to_none=True)); the next backward starts from zero
  void zero_grad() {
    n_->grad = tensor_t();
    n_->grad_owned = false;
  }
  /// @brief hands the gradient over to the caller, leaving none (as zero_grad)
  tensor_t take_grad() {
    tensor_t g = std::move(n_->grad);
    n_->grad = tensor_t();
    n_->grad_owned = false;
    return g;
  }
  /// @brief the gradient is g from now on (torch: param.grad = g); it is written in place only while nothing else
  /// holds its storage
  /// @throws minibert::error if g's shape is not the value's
  void set_grad(tensor_t g) {
    MINIBERT_CHECK(!g.defined() || g.shape() == shape(), "autograd",
                   "gradient of shape " << g.shape() << " set for a value of shape " << shape());
    n_->grad = std::move(g);
    n_->grad_owned = false;
  }
  /// @brief runs `hook` in every backward pass that reaches this leaf, once its gradient is complete (see node)
  void set_grad_ready_hook(std::function<void()> hook) {
    MINIBERT_CHECK(n_->is_leaf(), "autograd", "grad-ready hooks go on leaves (op " << n_->op << ")");
    n_->grad_ready_hook = std::move(hook);
  }
  /// @brief a leaf sharing this value's storage, outside the graph
  variable detach() const { return variable(n_->value, false); }

  /// @brief backpropagate from this scalar (seed 1)
  void backward() {
    MINIBERT_CHECK(numel() == 1, "backward", "output of shape " << shape() << " is not a scalar; pass a seed gradient");
    backward(full_on<T, Device>(shape(), T(1)));
  }
  /// @brief backpropagate from this value with the given gradient
  void backward(const tensor_t& seed) {
    MINIBERT_CHECK(n_->requires_grad, "backward", "the output (op " << n_->op << ") does not require grad");
    MINIBERT_CHECK(seed.shape() == shape(), "backward", "seed of shape " << seed.shape() << " for output " << shape());
    // Topological order by iterative DFS over nodes that need gradients. `order` owns the nodes: freeing
    // a node's inputs below would otherwise destroy intermediates still waiting for their turn.
    std::vector<std::shared_ptr<node_t>> order;
    std::unordered_set<node_t*> seen;
    std::vector<std::pair<std::shared_ptr<node_t>, std::size_t>> stack{{n_, 0}};
    seen.insert(n_.get());
    while (!stack.empty()) {
      auto& top = stack.back();
      if (top.second < top.first->inputs.size()) {
        const std::shared_ptr<node_t>& in = top.first->inputs[top.second++];
        if (in && in->requires_grad && seen.insert(in.get()).second) stack.push_back({in, 0});
      } else {
        order.push_back(std::move(top.first));
        stack.pop_back();
      }
    }
    hooked_leaf_uses pending(order);
    n_->add_grad(seed);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      node_t* nd = it->get();
      MINIBERT_CHECK(!nd->released, "backward",
                     "op " << nd->op << ": backward through the graph a second time (its buffers were freed)");
      if (nd->inputs.empty()) continue; // leaf: keeps its gradient
      profiler::recorder* const prof = profiler::active();
      if (nd->grad.defined() && nd->backward_fn) {
        profiler::backward_timer timer(prof);
        nd->backward_fn(nd->grad, *nd);
        if (prof) timer.finish(std::string("backward ") + nd->op);
      }
      pending.consumer_done(*nd);
      // free the closure (and the tensors it saved), the inputs and the intermediate gradient
      profiler::backward_timer timer(prof);
      nd->backward_fn = nullptr;
      nd->inputs.clear();
      nd->grad = tensor_t();
      nd->released = true;
      timer.finish("backward (freeing saved tensors)");
    }
  }

private:
  // for each leaf with a grad-ready hook, how many edges of this backward pass still have to deliver into it
  class hooked_leaf_uses {
  public:
    explicit hooked_leaf_uses(const std::vector<std::shared_ptr<node_t>>& order) {
      for (const auto& nd : order)
        for (const auto& in : nd->inputs)
          if (in && in->requires_grad && in->grad_ready_hook && in->is_leaf()) ++left_[in.get()];
    }
    void consumer_done(const node_t& nd) {
      if (left_.empty()) return;
      for (const auto& in : nd.inputs) {
        const auto it = in ? left_.find(in.get()) : left_.end();
        if (it != left_.end() && --it->second == 0) in->grad_ready_hook();
      }
    }

  private:
    std::unordered_map<node_t*, int> left_;
  };

  std::shared_ptr<node_t> n_;
};

/// @brief true when recording is on and any of the inputs needs a gradient
template <class T, class D> bool any_requires_grad(std::initializer_list<const variable<T, D>*> inputs) {
  if (!grad_enabled()) return false;
  for (auto* v : inputs)
    if (v && v->defined() && v->requires_grad()) return true;
  return false;
}

/// @brief Wrap an op's result. When an input needs a gradient (and grad mode is on), the result records
/// its inputs and the backward closure; otherwise the closure is never built, so inference saves nothing.
/// make_backward() returns the closure: void(const tensor& grad, node& self).
template <class T, class D, class MakeBackward>
variable<T, D> make_result(tensor<T, D> value, const char* op, std::initializer_list<const variable<T, D>*> inputs,
                           MakeBackward&& make_backward) {
  if (profiler::recorder* prof = profiler::active()) prof->forward_mark(op);
  auto n = std::make_shared<node<T, D>>();
  n->value = std::move(value);
  n->op = op;
  if (any_requires_grad<T, D>(inputs)) {
    n->requires_grad = true;
    for (auto* v : inputs) n->inputs.push_back(v && v->defined() ? v->node_ptr() : nullptr);
    n->backward_fn = make_backward();
  }
  return variable<T, D>(std::move(n));
}

} // namespace minibert
