// SPDX-License-Identifier: MIT
#pragma once
/* module<T, Device>: the base of every layer and model. It keeps the registry of named parameters and
   child modules (dotted names as transformers' state_dict uses), and the train/eval mode. Modules are
   neither copied nor moved (children register by address); hold whole models by unique_ptr. */

#include <string>  // string
#include <utility> // pair
#include <vector>  // vector

#include <minibert/autograd.hpp>
#include <minibert/error.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

template <class T, class Device = device::cpu> class module {
public:
  using variable_t = variable<T, Device>;
  using tensor_t = tensor<T, Device>;

  module() = default;
  virtual ~module() = default;
  module(const module&) = delete;
  module& operator=(const module&) = delete;

  /// @brief training mode (dropout on) for this module and every descendant
  void train(bool on = true) {
    training_ = on;
    for (auto& c : children_) c.second->train(on);
  }
  /// @brief evaluation mode (dropout off)
  void eval() { train(false); }
  bool training() const { return training_; }

  /// @brief every parameter of this module and its descendants, with dotted names, in registration order
  std::vector<std::pair<std::string, variable_t>> named_parameters(const std::string& prefix = "") const {
    std::vector<std::pair<std::string, variable_t>> out;
    collect(prefix, out);
    return out;
  }
  std::vector<variable_t> parameters() const {
    std::vector<variable_t> out;
    for (auto& [n, v] : named_parameters()) out.push_back(v);
    return out;
  }
  /// @brief drop every parameter's gradient
  void zero_grad() {
    for (auto& [n, v] : named_parameters()) v.zero_grad();
  }
  /// @brief number of distinct parameter elements (tied parameters counted once)
  std::int64_t num_parameters() const {
    std::int64_t n = 0;
    for (auto& [name, v] : named_parameters()) n += v.numel();
    return n;
  }

protected:
  /// @brief register a trainable parameter holding `init`
  variable_t register_parameter(const std::string& name, tensor_t init) {
    variable_t v(std::move(init), true);
    params_.push_back({name, v});
    return v;
  }
  /// @brief register an existing variable under a name (tied weights register in one place only)
  void register_parameter(const std::string& name, const variable_t& v) { params_.push_back({name, v}); }
  /// @brief register a child module, stored by the caller (a member or a unique_ptr it owns)
  template <class M> M& register_module(const std::string& name, M& m) {
    children_.push_back({name, &m});
    return m;
  }

private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, variable_t>>& out) const {
    for (auto& [n, v] : params_) out.push_back({prefix + n, v});
    for (auto& [n, c] : children_) c->collect(prefix + n + ".", out);
  }

  std::vector<std::pair<std::string, variable_t>> params_;
  std::vector<std::pair<std::string, module*>> children_;
  bool training_ = true;
};

} // namespace minibert
