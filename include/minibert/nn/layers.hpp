// SPDX-License-Identifier: MIT
#pragma once
/* The basic layers, named and shaped as torch.nn's so checkpoints map one to one:
   linear_layer (torch.nn.Linear), layer_norm_layer (torch.nn.LayerNorm), embedding_layer (torch.nn.Embedding). */

#include <cstdint> // int64_t

#include <minibert/nn/module.hpp>
#include <minibert/ops.hpp>

namespace minibert {

/// @brief y = x W^T + b with weight (out,in) and bias (out)
template <class T, class D = device::cpu> class linear_layer : public module<T, D> {
public:
  linear_layer(std::int64_t in, std::int64_t out, bool bias = true)
      : weight(this->register_parameter("weight", tensor<T, D>::empty({out, in}))),
        bias(bias ? this->register_parameter("bias", tensor<T, D>::empty({out})) : variable<T, D>()) {}
  variable<T, D> forward(const variable<T, D>& x) const { return linear(x, weight, bias); }
  variable<T, D> weight, bias;
};

/// @brief layer normalization over the last dim with weight (C) and bias (C)
template <class T, class D = device::cpu> class layer_norm_layer : public module<T, D> {
public:
  layer_norm_layer(std::int64_t C, double eps)
      : weight(this->register_parameter("weight", tensor<T, D>::empty({C}))),
        bias(this->register_parameter("bias", tensor<T, D>::empty({C}))), eps(eps) {}
  variable<T, D> forward(const variable<T, D>& x) const { return layer_norm(x, weight, bias, eps); }
  variable<T, D> weight, bias;
  double eps;
};

/// @brief lookup table weight (V,C); padding_idx (or -1) names the row that initialization zeroes
template <class T, class D = device::cpu> class embedding_layer : public module<T, D> {
public:
  embedding_layer(std::int64_t V, std::int64_t C, std::int64_t padding_idx = -1)
      : weight(this->register_parameter("weight", tensor<T, D>::empty({V, C}))), padding_idx(padding_idx) {}
  template <class I> variable<T, D> forward(const tensor<I, D>& ids) const { return embedding(weight, ids); }
  variable<T, D> weight;
  std::int64_t padding_idx;
};

} // namespace minibert
