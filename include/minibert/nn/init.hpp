// SPDX-License-Identifier: MIT
#pragma once
/* transformers' BERT weight initialization (BertPreTrainedModel._init_weights), applied by parameter name. */

#include <algorithm> // fill
#include <cstdint>   // int64_t
#include <string>    // string
#include <vector>    // vector

#include <minibert/nn/module.hpp>
#include <minibert/random.hpp>

namespace minibert {

/// @brief transformers' _init_weights over every parameter of m: Linear and Embedding weights ~ N(0, std),
/// the embedding row padding_idx of word embeddings zero, biases zero, LayerNorm weight 1 and bias 0.
/// Parameters are told apart by their transformers names.
template <class T, class D> void init_bert_weights(const module<T, D>& m, generator& gen, double std,
                                                   std::int64_t pad_token_id) {
  auto ends_with = [](const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  for (auto& [name, v] : m.named_parameters()) {
    variable<T, D> p = v;
    tensor<T, D>& t = p.mutable_value();
    std::vector<T> host(static_cast<std::size_t>(t.numel()));
    if (ends_with(name, "LayerNorm.weight")) {
      std::fill(host.begin(), host.end(), T(1));
    } else if (ends_with(name, "bias")) {
      std::fill(host.begin(), host.end(), T(0));
    } else {
      gen.normal(host.data(), host.size(), 0.0, std);
      if (ends_with(name, "word_embeddings.weight") && pad_token_id >= 0 && pad_token_id < t.size(0))
        std::fill(host.begin() + pad_token_id * t.size(1), host.begin() + (pad_token_id + 1) * t.size(1), T(0));
    }
    backend<D>::upload(host.data(), t.data(), t.numel());
  }
}

} // namespace minibert
