// SPDX-License-Identifier: MIT
#pragma once
/* AdamW with PyTorch 1.13's torch.optim.AdamW semantics (decoupled weight decay, Loshchilov & Hutter 2019; the
   single-tensor path, operation for operation), parameter groups as transformers' Trainer builds them (no decay
   for biases and LayerNorm parameters), its state for trainer checkpoints, and clip_grad_norm
   (torch.nn.utils.clip_grad_norm_). Updates run through the backend op table (adamw_step over the parameters of a
   group at once, as torch's foreach implementation, sum_squares, scale),
   so they work on any device. */

#include <algorithm>     // any_of
#include <array>         // array (state tensors)
#include <cctype>        // tolower
#include <cmath>         // pow, sqrt, isfinite
#include <cstdint>       // int64_t
#include <span>          // span (checkpoint reads, the gradient lists)
#include <string>        // string
#include <string_view>   // string_view
#include <unordered_map> // unordered_map (parameters listed twice)
#include <unordered_set> // unordered_set (duplicate parameters)
#include <utility>       // move
#include <vector>        // vector

#include <nlohmann/json.hpp>

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/dtype.hpp>
#include <minibert/error.hpp>
#include <minibert/io/checkpoint.hpp>
#include <minibert/io/safetensors.hpp>
#include <minibert/tensor.hpp>
#include <minibert/tensor_ops.hpp>

namespace minibert {

/// @brief Parameters that share a weight decay (torch's param_groups). names[i] names params[i]; the names key the
/// optimizer state in checkpoints (transformers' parameter names when built by default_param_groups).
template <class T, class D = device::cpu> struct param_group {
  std::vector<std::string> names;
  std::vector<variable<T, D>> params;
  double weight_decay = 0.0;
};

/// @brief transformers' Trainer rule (get_decay_parameter_names): no weight decay for a parameter whose name
/// contains "bias" or that belongs to a LayerNorm layer. Trainer tests the layer's type (nn.LayerNorm); minibert's
/// modules carry transformers' names, so a module path containing "layernorm" (any case) marks a LayerNorm layer.
inline bool is_no_decay_parameter(std::string_view name);

/// @brief the two groups transformers' Trainer.create_optimizer builds, in its order: every trainable parameter
/// that decays (weight_decay), then the rest (0). Empty groups are kept, as Trainer keeps them.
template <class Model>
auto default_param_groups(const Model& model, double weight_decay)
    -> std::vector<param_group<typename Model::tensor_t::value_type, typename Model::tensor_t::device_type>>;

/// @brief AdamW hyperparameters; the defaults are transformers' TrainingArguments defaults (adam_beta1 0.9,
/// adam_beta2 0.999, adam_epsilon 1e-8); weight decay is per group.
struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// @brief one parameter's AdamW state (torch: state[p] = {step, exp_avg, exp_avg_sq}), created at its first update,
/// in the accumulation type acc_t<T> (fp32 for 16-bit parameters), with the fp32 master weights of a 16-bit
/// parameter (undefined when the parameter is its own master: float, double)
template <class T, class D> struct adamw_state {
  tensor<acc_t<T>, D> exp_avg, exp_avg_sq, master;
  std::int64_t step = 0;
};

/// @brief An optimizer checkpoint: safetensors entries ("state.<param>.exp_avg", "state.<param>.exp_avg_sq", and
/// "state.<param>.master" for 16-bit parameters; on the host, in the accumulation type T) and the scalars as JSON ({"optimizer": "adamw", "betas", "eps", "param_groups": [{"params": [names],
/// "weight_decay"}], "state": {"<param>": {"step": n}}}). The entries point into `buffers`; move-only for that reason.
template <class T> struct optimizer_state {
  std::vector<safetensors_entry> entries;
  nlohmann::json scalars;
  std::vector<std::vector<T>> buffers;

  optimizer_state() = default;
  optimizer_state(optimizer_state&&) = default;
  optimizer_state& operator=(optimizer_state&&) = default;
  optimizer_state(const optimizer_state&) = delete;
  optimizer_state& operator=(const optimizer_state&) = delete;
};

/// @brief torch.optim.AdamW (PyTorch 1.13, foreach=False, amsgrad=False, maximize=False). For each parameter with a
/// gradient, at its t-th update: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Parameters without a gradient are skipped (their
/// step count does not advance), as in torch.
template <class T, class D = device::cpu> class adamw {
public:
  using variable_t = variable<T, D>;
  using tensor_t = tensor<T, D>;

  /// @throws minibert::error if a group's names and params differ in length, a name or parameter appears twice,
  ///   a weight decay is negative or not finite, or betas / eps are out of range (0 <= beta < 1, eps >= 0)
  explicit adamw(std::vector<param_group<T, D>> groups, adamw_options options = {});

  /// @brief one update of every parameter that has a gradient, at learning rate lr (under no_grad)
  /// @throws minibert::error if lr is negative or not finite, or a gradient's shape differs from its parameter's
  void step(double lr);
  /// @brief drop every parameter's gradient
  void zero_grad();

  const std::vector<param_group<T, D>>& param_groups() const { return groups_; }
  const adamw_options& options() const { return opt_; }
  /// @brief the state of the named parameter, or nullptr before its first update (or for an unknown name)
  const adamw_state<T, D>* state(const std::string& name) const;

  /// @brief a host copy of the state, for save_safetensors(path, st.entries) plus the JSON scalars
  optimizer_state<acc_t<T>> state_entries() const;
  /// @brief restores a state written from state_entries(): hyperparameters (betas, eps, weight decays; the saved
  /// values win, as in torch's load_state_dict) and every parameter's moments and step. All or nothing: on error
  /// the optimizer is unchanged.
  /// @throws minibert::error("adamw", ...) naming the group, parameter or tensor when the groups hold other
  ///   parameters, a state tensor is missing or has another shape than its parameter, or a scalar is malformed
  void load_state(const checkpoint& ck, const nlohmann::json& scalars);

private:
  using A = acc_t<T>;
  using acc_tensor = tensor<A, D>;
  struct slot {
    adamw_state<T, D> st;
    bool initialized = false;
  };
  const slot* find(const std::string& name) const;
  /// the scalars of an update at step `step` of a parameter with this weight decay
  adamw_coefficients<A> coefficients(double lr, double weight_decay, std::int64_t step) const;

  std::vector<param_group<T, D>> groups_;
  std::vector<std::vector<slot>> slots_; // parallel to groups_[g].params
  adamw_options opt_;
};

/// @brief torch.nn.utils.clip_grad_norm_ (L2): the norm of all gradients together (parameters without a gradient
/// are skipped), accumulated in double; if it exceeds max_norm, every gradient is multiplied by
/// max_norm / (norm + 1e-6) (clip_coefficient). Unlike torch, a non-finite norm leaves the gradients untouched (the
/// caller decides: skip the step, as fp16 loss scaling does). Runs on the device without waiting for it.
/// @return the sum of squares of the gradients before clipping, a (1) double tensor on the device
/// @throws minibert::error if max_norm is negative or not finite
template <class T, class D>
tensor<double, D> clip_grad_norm_on_device(const std::vector<variable<T, D>>& params, double max_norm);
/// @brief clip_grad_norm_on_device, then the norm before clipping on the host (waits for the device)
template <class T, class D> double clip_grad_norm(const std::vector<variable<T, D>>& params, double max_norm);

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline bool is_no_decay_parameter(std::string_view name) {
  if (name.find("bias") != std::string_view::npos) return true;
  const std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string path(name.substr(0, dot)); // the owning module's dotted path
  for (auto& ch : path) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return path.find("layernorm") != std::string::npos;
}

template <class Model>
auto default_param_groups(const Model& model, double weight_decay)
    -> std::vector<param_group<typename Model::tensor_t::value_type, typename Model::tensor_t::device_type>> {
  using T = typename Model::tensor_t::value_type;
  using D = typename Model::tensor_t::device_type;
  param_group<T, D> decay, no_decay;
  decay.weight_decay = weight_decay;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    auto& g = is_no_decay_parameter(name) ? no_decay : decay;
    g.names.push_back(name);
    g.params.push_back(p);
  }
  std::vector<param_group<T, D>> out;
  out.push_back(std::move(decay));
  out.push_back(std::move(no_decay));
  return out;
}

namespace detail {
inline void check_adamw_options(const adamw_options& o) {
  MINIBERT_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "adamw", "beta1 " << o.beta1 << " outside [0, 1)");
  MINIBERT_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "adamw", "beta2 " << o.beta2 << " outside [0, 1)");
  MINIBERT_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, "adamw", "eps " << o.eps << " < 0");
}
inline void check_weight_decay(double wd, std::size_t group) {
  MINIBERT_CHECK(std::isfinite(wd) && wd >= 0.0, "adamw", "param group " << group << ": weight decay " << wd << " < 0");
}
// the gradient as a contiguous tensor owned by the parameter alone, so it may be scaled in place: a leaf's
// gradient can be a buffer shared with another leaf (an add passes one gradient to both inputs) or a strided view,
// which are copied first; one that nothing else holds is taken as it is
template <class T, class D> const tensor<T, D>& owned_contiguous_grad(const variable<T, D>& p) {
  auto& n = *p.node_ptr();
  if (!n.take_grad_ownership()) {
    n.grad = clone(n.grad);
    n.grad_owned = true;
  }
  return n.grad;
}
// the parameters' gradients (owned_contiguous_grad) as lists for the multi-tensor ops, in rounds: a parameter listed
// k times is in the first k lists, so that no list holds a tensor twice (a GPU updates a list's tensors all at once)
// and the parameter is still updated k times, as torch's loops over the list do. Usually one list.
template <class T, class D>
std::vector<std::vector<foreach_tensor<T>>> owned_grad_lists(const std::vector<variable<T, D>>& params) {
  std::vector<std::vector<foreach_tensor<T>>> rounds;
  std::unordered_map<const void*, std::size_t> listed;
  for (const auto& p : params) {
    if (!p.defined() || !p.has_grad()) continue;
    const std::size_t round = listed[p.node_ptr().get()]++;
    const tensor<T, D>& g = owned_contiguous_grad(p);
    if (rounds.size() <= round) rounds.emplace_back();
    rounds[round].push_back({g.data(), g.numel()});
  }
  return rounds;
}
} // namespace detail

template <class T, class D>
adamw<T, D>::adamw(std::vector<param_group<T, D>> groups, adamw_options options)
    : groups_(std::move(groups)), opt_(options) {
  detail::check_adamw_options(opt_);
  std::unordered_set<std::string> names;
  std::unordered_set<const void*> nodes;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const auto& grp = groups_[g];
    MINIBERT_CHECK(grp.names.size() == grp.params.size(), "adamw",
                   "param group " << g << ": " << grp.names.size() << " names for " << grp.params.size() << " params");
    detail::check_weight_decay(grp.weight_decay, g);
    for (std::size_t i = 0; i < grp.params.size(); ++i) {
      MINIBERT_CHECK(grp.params[i].defined(), "adamw", "param group " << g << ": parameter '" << grp.names[i]
                                                                      << "' is undefined");
      MINIBERT_CHECK(names.insert(grp.names[i]).second, "adamw", "parameter name '" << grp.names[i] << "' appears twice");
      MINIBERT_CHECK(nodes.insert(grp.params[i].node_ptr().get()).second, "adamw",
                     "parameter '" << grp.names[i] << "' appears in more than one place in the param groups");
    }
    slots_.emplace_back(grp.params.size());
  }
}

template <class T, class D>
auto adamw<T, D>::coefficients(double lr, double weight_decay, std::int64_t step) const -> adamw_coefficients<A> {
  // Python-float arithmetic of torch's _single_tensor_adamw, then one rounding to A per scalar
  const double t = double(step);
  const double bias_correction1 = 1.0 - std::pow(opt_.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(opt_.beta2, t);
  const double step_size = lr / bias_correction1;
  return {A(1.0 - lr * weight_decay), A(opt_.beta1),
          A(1.0 - opt_.beta1),        A(opt_.beta2),
          A(1.0 - opt_.beta2),        A(std::sqrt(bias_correction2)),
          A(opt_.eps),                A(-step_size)};
}

template <class T, class D> void adamw<T, D>::step(double lr) {
  MINIBERT_CHECK(std::isfinite(lr) && lr >= 0.0, "adamw", "learning rate " << lr);
  no_grad guard;
  // every parameter is checked before any state changes: an error leaves the optimizer as it was
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      const variable_t& p = groups_[g].params[i];
      if (!p.has_grad()) continue;
      MINIBERT_CHECK(p.grad().shape() == p.shape(), "adamw",
                     "parameter '" << groups_[g].names[i] << "' " << p.shape() << " has a gradient of shape "
                                   << p.grad().shape());
      MINIBERT_CHECK(p.value().is_contiguous(), "adamw", "parameter '" << groups_[g].names[i] << "' is a strided view");
    }
  auto& ctx = current_context<D>();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    // the group's parameters go to the backend in runs that share their coefficients (the same step count: all of
    // them, unless some missed a gradient at an earlier step), one multi-tensor call per run
    std::vector<adamw_tensor<T>> run;
    std::vector<tensor_t> grads; // the contiguous gradients the run reads, alive until it is queued
    std::int64_t run_step = 0;
    auto flush = [&] {
      if (!run.empty())
        backend<D>::adamw_step(ctx, std::span<const adamw_tensor<T>>(run),
                               coefficients(lr, groups_[g].weight_decay, run_step));
      run.clear();
      grads.clear();
    };
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      variable_t& p = groups_[g].params[i];
      if (!p.has_grad()) continue;
      slot& s = slots_[g][i];
      const std::int64_t n = p.numel();
      if (!s.initialized) { // torch: zeros_like(p) at the first step that sees a gradient
        s.st.exp_avg = zeros_on<A, D>(p.shape());
        s.st.exp_avg_sq = zeros_on<A, D>(p.shape());
        if constexpr (!std::is_same_v<T, A>) { // fp32 master weights of a 16-bit parameter
          s.st.master = acc_tensor::empty(p.shape());
          backend<D>::cast(ctx, p.value().data(), s.st.master.data(), n);
        }
        s.st.step = 0;
        s.initialized = true;
      }
      ++s.st.step;
      if (s.st.step != run_step) {
        flush();
        run_step = s.st.step;
      }
      grads.push_back(contiguous(p.grad()));
      T* param = p.mutable_value().data();
      A* master = nullptr;
      if constexpr (std::is_same_v<T, A>) master = param;
      else master = s.st.master.data();
      run.push_back({master, param, grads.back().data(), s.st.exp_avg.data(), s.st.exp_avg_sq.data(), n});
    }
    flush();
  }
}

template <class T, class D> void adamw<T, D>::zero_grad() {
  for (auto& grp : groups_)
    for (auto& p : grp.params) p.zero_grad();
}

namespace detail {
/// the tensors of one parameter's state with their checkpoint suffixes, in checkpoint order
template <class S> auto state_tensors(S& st) {
  using tensor_ptr = decltype(&st.exp_avg);
  return std::array<std::pair<const char*, tensor_ptr>, 3>{
      {{"exp_avg", &st.exp_avg}, {"exp_avg_sq", &st.exp_avg_sq}, {"master", &st.master}}};
}
} // namespace detail

template <class T, class D> auto adamw<T, D>::find(const std::string& name) const -> const slot* {
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (std::size_t i = 0; i < groups_[g].names.size(); ++i)
      if (groups_[g].names[i] == name) return &slots_[g][i];
  return nullptr;
}

template <class T, class D> const adamw_state<T, D>* adamw<T, D>::state(const std::string& name) const {
  const slot* s = find(name);
  return s && s->initialized ? &s->st : nullptr;
}

template <class T, class D> optimizer_state<acc_t<T>> adamw<T, D>::state_entries() const {
  optimizer_state<A> out;
  nlohmann::json groups = nlohmann::json::array(), states = nlohmann::json::object();
  std::size_t count = 0;
  for (const auto& row : slots_)
    for (const auto& s : row) count += s.initialized ? 3 : 0;
  out.buffers.reserve(count); // entries point into the buffers: no reallocation after the first push
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    groups.push_back({{"params", groups_[g].names}, {"weight_decay", groups_[g].weight_decay}});
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      const slot& s = slots_[g][i];
      if (!s.initialized) continue;
      const std::string& name = groups_[g].names[i];
      states[name] = {{"step", s.st.step}};
      for (const auto& [suffix, t] : detail::state_tensors(s.st)) {
        if (!t->defined()) continue;
        std::vector<A>& host = out.buffers.emplace_back(static_cast<std::size_t>(t->numel()));
        backend<D>::download(current_context<D>(), t->data(), host.data(), t->numel());
        out.entries.push_back({"state." + name + "." + suffix, dtype_v<A>, t->shape().to_vector(), host.data()});
      }
    }
  }
  out.scalars = {{"optimizer", "adamw"},
                 {"betas", {opt_.beta1, opt_.beta2}},
                 {"eps", opt_.eps},
                 {"param_groups", std::move(groups)},
                 {"state", std::move(states)}};
  return out;
}

template <class T, class D> void adamw<T, D>::load_state(const checkpoint& ck, const nlohmann::json& sc) {
  const std::string where = "load_state (" + ck.path() + "): ";
  MINIBERT_CHECK(sc.is_object() && sc.value("optimizer", std::string()) == "adamw", "adamw",
                 where << "the scalars are not an AdamW state (\"optimizer\": \"adamw\" missing)");
  MINIBERT_CHECK(sc.contains("betas") && sc["betas"].is_array() && sc["betas"].size() == 2 && sc.contains("eps") &&
                     sc["eps"].is_number() && sc.contains("param_groups") && sc["param_groups"].is_array() &&
                     sc.contains("state") && sc["state"].is_object(),
                 "adamw", where << "malformed scalars: need betas [b1, b2], eps, param_groups [...], state {...}");
  adamw_options opt = opt_;
  opt.beta1 = sc["betas"][0].get<double>();
  opt.beta2 = sc["betas"][1].get<double>();
  opt.eps = sc["eps"].get<double>();
  detail::check_adamw_options(opt);
  const auto& jg = sc["param_groups"];
  MINIBERT_CHECK(jg.size() == groups_.size(), "adamw",
                 where << "the checkpoint has " << jg.size() << " param groups, the optimizer " << groups_.size());
  std::vector<double> decays;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    MINIBERT_CHECK(jg[g].is_object() && jg[g].contains("params") && jg[g]["params"].is_array() &&
                       jg[g].contains("weight_decay") && jg[g]["weight_decay"].is_number(),
                   "adamw", where << "param group " << g << ": malformed (need params and weight_decay)");
    const auto names = jg[g]["params"].get<std::vector<std::string>>();
    const auto& mine = groups_[g].names;
    for (std::size_t i = 0; i < std::max(names.size(), mine.size()); ++i)
      MINIBERT_CHECK(i < names.size() && i < mine.size() && names[i] == mine[i], "adamw",
                     where << "param group " << g << ", position " << i << ": the checkpoint has parameter '"
                           << (i < names.size() ? names[i] : "(none)") << "', the optimizer '"
                           << (i < mine.size() ? mine[i] : "(none)") << "'");
    decays.push_back(jg[g]["weight_decay"].get<double>());
    detail::check_weight_decay(decays.back(), g);
  }
  // read everything into new slots first; commit only when all of it loaded
  std::vector<std::vector<slot>> next;
  for (std::size_t g = 0; g < groups_.size(); ++g) next.emplace_back(groups_[g].params.size());
  std::size_t found = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      const std::string& name = groups_[g].names[i];
      if (!sc["state"].contains(name)) continue;
      ++found;
      const auto& js = sc["state"][name];
      MINIBERT_CHECK(js.is_object() && js.contains("step") && js["step"].is_number_integer() &&
                         js["step"].get<std::int64_t>() >= 1,
                     "adamw", where << "parameter '" << name << "': state needs an integer step >= 1");
      slot& s = next[g][i];
      s.st.step = js["step"].get<std::int64_t>();
      const variable_t& p = groups_[g].params[i];
      if constexpr (!std::is_same_v<T, A>) s.st.master = acc_tensor::empty(p.shape());
      for (const auto& [suffix, dst] : detail::state_tensors(s.st)) {
        if (!dst->defined() && suffix != std::string_view("master")) *dst = acc_tensor::empty(p.shape());
        if (!dst->defined()) continue;
        const std::string tname = "state." + name + "." + suffix;
        MINIBERT_CHECK(ck.contains(tname), "adamw", where << "tensor '" << tname << "' not found");
        const auto& shp = ck.info(tname).shape;
        MINIBERT_CHECK(shp == p.shape().to_vector(), "adamw",
                       where << "tensor '" << tname << "' has shape " << format_shape(shp) << ", parameter '" << name
                             << "' has " << format_shape(p.shape().to_vector()));
        std::vector<A> host(static_cast<std::size_t>(p.numel()));
        ck.read<A>(tname, host.data(), std::span<const std::int64_t>(shp));
        backend<D>::upload(current_context<D>(), host.data(), dst->data(), p.numel());
      }
      s.initialized = true;
    }
  MINIBERT_CHECK(found == sc["state"].size(), "adamw",
                 where << "the state names " << sc["state"].size() - found
                       << " parameter(s) that are in no param group of this optimizer");
  opt_ = opt;
  for (std::size_t g = 0; g < groups_.size(); ++g) groups_[g].weight_decay = decays[g];
  slots_ = std::move(next);
}

template <class T, class D>
tensor<double, D> clip_grad_norm_on_device(const std::vector<variable<T, D>>& params, double max_norm) {
  MINIBERT_CHECK(std::isfinite(max_norm) && max_norm >= 0.0, "clip_grad_norm", "max_norm " << max_norm);
  auto& ctx = current_context<D>();
  tensor<double, D> sum_sq = zeros_on<double, D>({1});
  std::vector<tensor<T, D>> grads; // contiguous, and alive until the op has them
  std::vector<foreach_tensor<const T>> to_sum;
  for (const auto& p : params) {
    if (!p.defined() || !p.has_grad()) continue;
    grads.push_back(contiguous(p.grad()));
    to_sum.push_back({grads.back().data(), grads.back().numel()});
  }
  backend<D>::sum_squares(ctx, std::span<const foreach_tensor<const T>>(to_sum), sum_sq.data());
  grads.clear(); // queued: the parameters' gradients are held by the parameters alone again (no copy below)
  no_grad guard;
  for (const auto& list : detail::owned_grad_lists(params))
    backend<D>::clip_by_norm(ctx, std::span<const foreach_tensor<T>>(list), sum_sq.data(), max_norm);
  return sum_sq;
}

template <class T, class D> double clip_grad_norm(const std::vector<variable<T, D>>& params, double max_norm) {
  return std::sqrt(item(clip_grad_norm_on_device(params, max_norm)));
}

} // namespace minibert
