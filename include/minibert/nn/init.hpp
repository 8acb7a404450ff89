// SPDX-License-Identifier: MIT
#pragma once
/* transformers' BERT weight initialization (BertPreTrainedModel._init_weights), applied by parameter name: to a
   whole model with minibert's Philox generator, or, after from_pretrained, to the modules the checkpoint lacked with
   torch's generator, drawing exactly what transformers draws. */

#include <algorithm> // fill
#include <cstdint>   // int64_t
#include <set>       // set
#include <string>    // string
#include <vector>    // vector

#include <minibert/nn/module.hpp>
#include <minibert/random.hpp>
#include <minibert/torch_random.hpp>

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
    backend<D>::upload(current_context<D>(), host.data(), t.data(), t.numel());
  }
}

/// @brief What transformers' from_pretrained does to the modules the checkpoint does not fully cover
/// (_fast_init: model.apply(_initialize_weights) over modules not marked _is_hf_initialized), with torch's
/// generator: for each such leaf module in registration order (apply's post-order, as only Linear, Embedding and
/// LayerNorm modules are touched): Linear weight normal_(0, std) then bias zero; Embedding weight normal_(0, std)
/// then the padding_idx row of word_embeddings zero; LayerNorm weight 1, bias 0. The draws of a partly loaded
/// module's loaded weight are consumed but its loaded values kept, as transformers initializes before it loads.
/// Modules are told apart by their transformers names (`...LayerNorm`, `..._embeddings`, else Linear).
/// @param missing the parameters the checkpoint lacked (load_report::missing)
template <class T, class D>
void init_missing_bert_weights(const module<T, D>& m, const std::vector<std::string>& missing, torch_generator& gen,
                               double std, std::int64_t pad_token_id, torch_normal_kernel kernel = torch_normal_kernel::avx2) {
  auto ends_with = [](const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  auto module_of = [](const std::string& name) { return name.substr(0, name.rfind('.') == std::string::npos ? 0 : name.rfind('.')); };
  const std::set<std::string> lacking(missing.begin(), missing.end());
  std::set<std::string> modules;
  for (const auto& name : missing) modules.insert(module_of(name));
  for (auto& [name, v] : m.named_parameters()) {
    const std::string mod = module_of(name);
    if (!modules.count(mod)) continue;
    variable<T, D> p = v;
    tensor<T, D>& t = p.mutable_value();
    std::vector<T> host(static_cast<std::size_t>(t.numel()));
    const bool weight = ends_with(name, ".weight") || name == "weight";
    if (ends_with(mod, "LayerNorm")) {
      std::fill(host.begin(), host.end(), weight ? T(1) : T(0));
    } else if (weight) { // torch draws in float32 (the parameter's dtype in transformers) whatever T is
      std::vector<float> drawn(host.size());
      torch_normal(drawn.data(), std::int64_t(drawn.size()), 0.0, std, gen, kernel);
      std::copy(drawn.begin(), drawn.end(), host.begin());
      if (ends_with(mod, "word_embeddings") && pad_token_id >= 0 && pad_token_id < t.size(0))
        std::fill(host.begin() + pad_token_id * t.size(1), host.begin() + (pad_token_id + 1) * t.size(1), T(0));
    } else {
      std::fill(host.begin(), host.end(), T(0));
    }
    if (lacking.count(name)) backend<D>::upload(current_context<D>(), host.data(), t.data(), t.numel());
  }
}

} // namespace minibert
