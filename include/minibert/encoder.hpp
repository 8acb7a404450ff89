// SPDX-License-Identifier: MIT
#pragma once
/* The BERT encoder (Devlin et al. 2019), module for module as transformers' modeling_bert.py so that
   parameter names match its state_dict: embeddings, self-attention (one fused attention node), attention
   output, intermediate, output, the layer stack, the pooler, and bert_model that ties them together. */

#include <cstdint> // int32_t, int64_t
#include <limits>  // numeric_limits (mask value)
#include <memory>  // unique_ptr
#include <string>  // to_string
#include <vector>  // vector

#include <minibert/bert_config.hpp>
#include <minibert/nn/init.hpp>
#include <minibert/nn/layers.hpp>
#include <minibert/nn/module.hpp>
#include <minibert/ops.hpp>
#include <minibert/random.hpp>

namespace minibert {

/// @brief token ids and masks of one batch, all (B,T) on the model's device
template <class D = device::cpu> struct bert_inputs {
  tensor<std::int32_t, D> input_ids;
  tensor<std::int32_t, D> attention_mask; ///< 1 keep, 0 padding; undefined = all ones
  tensor<std::int32_t, D> token_type_ids; ///< undefined = all zeros
  tensor<std::int32_t, D> position_ids;   ///< undefined = 0..T-1 in every row (built and uploaded per forward)
};

/// @brief position ids 0..T-1 for each of B rows, on device D (one upload)
template <class D> tensor<std::int32_t, D> default_position_ids(std::int64_t B, std::int64_t T) {
  tensor<std::int32_t, device::cpu> host = tensor<std::int32_t, device::cpu>::empty({B, T});
  for (std::int64_t i = 0; i < B * T; ++i) host.data()[i] = std::int32_t(i % T);
  return to_device<D>(host);
}

/// @brief the activation a config's hidden_act names
inline activation to_activation(hidden_activation a) {
  switch (a) {
  case hidden_activation::gelu: return activation::gelu_erf;
  case hidden_activation::gelu_new:
  case hidden_activation::gelu_pytorch_tanh: return activation::gelu_tanh;
  case hidden_activation::relu: return activation::relu;
  }
  return activation::gelu_erf;
}

/// @brief c, after checking it (so no layer is built from an impossible config)
inline const bert_config& validated(const bert_config& c) {
  c.validate();
  return c;
}

/// @brief word + position + token type embeddings, then LayerNorm and dropout
template <class T, class D = device::cpu> class bert_embeddings : public module<T, D> {
public:
  explicit bert_embeddings(const bert_config& c)
      : word_embeddings(c.vocab_size, c.hidden_size, c.pad_token_id.value_or(-1)),
        position_embeddings(c.max_position_embeddings, c.hidden_size),
        token_type_embeddings(c.type_vocab_size, c.hidden_size), LayerNorm(c.hidden_size, c.layer_norm_eps),
        p_(float(c.hidden_dropout_prob)) {
    this->register_module("word_embeddings", word_embeddings);
    this->register_module("position_embeddings", position_embeddings);
    this->register_module("token_type_embeddings", token_type_embeddings);
    this->register_module("LayerNorm", LayerNorm);
  }
  /// @brief ids (B,T) -> (B,T,C)
  variable<T, D> forward(const bert_inputs<D>& in, generator& gen) const {
    const std::int64_t B = in.input_ids.size(0), Tn = in.input_ids.size(1);
    MINIBERT_CHECK(Tn <= position_embeddings.weight.size(0), "bert_embeddings",
                   "input_ids " << in.input_ids.shape() << ": sequence length " << Tn << " > max_position_embeddings "
                                << position_embeddings.weight.size(0));
    const tensor<std::int32_t, D> pos = in.position_ids.defined() ? in.position_ids : default_position_ids<D>(B, Tn);
    const tensor<std::int32_t, D> types =
        in.token_type_ids.defined() ? in.token_type_ids : zeros_on<std::int32_t, D>({B, Tn});
    MINIBERT_CHECK(types.shape() == in.input_ids.shape(), "bert_embeddings",
                   "token_type_ids " << types.shape() << " for input_ids " << in.input_ids.shape());
    MINIBERT_CHECK(pos.shape() == in.input_ids.shape(), "bert_embeddings",
                   "position_ids " << pos.shape() << " for input_ids " << in.input_ids.shape());
    auto e = word_embeddings.forward(in.input_ids) + token_type_embeddings.forward(types);
    e = e + position_embeddings.forward(pos);
    return dropout(LayerNorm.forward(e), p_, this->training(), gen);
  }
  embedding_layer<T, D> word_embeddings, position_embeddings, token_type_embeddings;
  layer_norm_layer<T, D> LayerNorm;

private:
  float p_;
};

/// @brief query, key, value projections and the fused multi-head attention
template <class T, class D = device::cpu> class bert_self_attention : public module<T, D> {
public:
  explicit bert_self_attention(const bert_config& c)
      : query(c.hidden_size, c.hidden_size), key(c.hidden_size, c.hidden_size), value(c.hidden_size, c.hidden_size),
        heads_(int(c.num_attention_heads)), p_(float(c.attention_probs_dropout_prob)) {
    this->register_module("query", query);
    this->register_module("key", key);
    this->register_module("value", value);
  }
  /// @brief h (B,T,C), additive key mask (B,T) -> context (B,T,C). The three projections run as one GEMM on the
  /// stacked weights (3C,C), whose gradient concat's backward splits back into query/key/value.
  variable<T, D> forward(const variable<T, D>& h, const tensor<T, D>& mask, generator& gen) const {
    const auto qkv = linear(h, concat<T, D>({query.weight, key.weight, value.weight}),
                            concat<T, D>({query.bias, key.bias, value.bias}));
    return self_attention(qkv, mask, heads_, p_, this->training(), gen);
  }
  linear_layer<T, D> query, key, value;

private:
  int heads_;
  float p_;
};

/// @brief dense, dropout, then LayerNorm of the residual sum (BertSelfOutput and BertOutput share this shape)
template <class T, class D = device::cpu> class bert_residual_output : public module<T, D> {
public:
  bert_residual_output(const bert_config& c, std::int64_t in)
      : dense(in, c.hidden_size), LayerNorm(c.hidden_size, c.layer_norm_eps), p_(float(c.hidden_dropout_prob)) {
    this->register_module("dense", dense);
    this->register_module("LayerNorm", LayerNorm);
  }
  variable<T, D> forward(const variable<T, D>& h, const variable<T, D>& residual, generator& gen) const {
    return LayerNorm.forward(dropout(dense.forward(h), p_, this->training(), gen) + residual);
  }
  /// @brief forward(act(u), residual), the activation fused into the dense layer (recomputed in the backward, not
  /// saved: activation_linear)
  variable<T, D> forward_activated(const variable<T, D>& u, activation act, const variable<T, D>& residual,
                                   generator& gen) const {
    return LayerNorm.forward(dropout(activation_linear(u, act, dense.weight, dense.bias), p_, this->training(), gen) +
                             residual);
  }
  linear_layer<T, D> dense;
  layer_norm_layer<T, D> LayerNorm;

private:
  float p_;
};

/// @brief BertAttention: self-attention and its output block
template <class T, class D = device::cpu> class bert_attention : public module<T, D> {
public:
  explicit bert_attention(const bert_config& c) : self(c), output(c, c.hidden_size) {
    this->register_module("self", self);
    this->register_module("output", output);
  }
  variable<T, D> forward(const variable<T, D>& h, const tensor<T, D>& mask, generator& gen) const {
    return output.forward(self.forward(h, mask, gen), h, gen);
  }
  bert_self_attention<T, D> self;
  bert_residual_output<T, D> output;
};

/// @brief BertIntermediate: dense to intermediate_size and the activation
template <class T, class D = device::cpu> class bert_intermediate : public module<T, D> {
public:
  explicit bert_intermediate(const bert_config& c)
      : dense(c.hidden_size, c.intermediate_size), act_(to_activation(c.hidden_act)) {
    this->register_module("dense", dense);
  }
  variable<T, D> forward(const variable<T, D>& h) const { return activate(dense.forward(h), act_); }
  activation act() const { return act_; }
  linear_layer<T, D> dense;

private:
  activation act_;
};

/// @brief BertLayer: attention, intermediate, output
template <class T, class D = device::cpu> class bert_layer : public module<T, D> {
public:
  explicit bert_layer(const bert_config& c) : attention(c), intermediate(c), output(c, c.intermediate_size) {
    this->register_module("attention", attention);
    this->register_module("intermediate", intermediate);
    this->register_module("output", output);
  }
  variable<T, D> forward(const variable<T, D>& h, const tensor<T, D>& mask, generator& gen) const {
    auto a = attention.forward(h, mask, gen);
    // output.forward(intermediate.forward(a), a, gen), with the activation's output not kept for the backward
    return output.forward_activated(intermediate.dense.forward(a), intermediate.act(), a, gen);
  }
  bert_attention<T, D> attention;
  bert_intermediate<T, D> intermediate;
  bert_residual_output<T, D> output;
};

/// @brief BertEncoder: num_hidden_layers layers, registered as layer.0, layer.1, ...
template <class T, class D = device::cpu> class bert_encoder : public module<T, D> {
public:
  explicit bert_encoder(const bert_config& c) {
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
      layers_.push_back(std::make_unique<bert_layer<T, D>>(c));
      this->register_module("layer." + std::to_string(i), *layers_.back());
    }
  }
  variable<T, D> forward(variable<T, D> h, const tensor<T, D>& mask, generator& gen) const {
    for (auto& l : layers_) h = l->forward(h, mask, gen);
    return h;
  }
  const bert_layer<T, D>& layer(std::size_t i) const { return *layers_.at(i); }
  std::size_t size() const { return layers_.size(); }

private:
  std::vector<std::unique_ptr<bert_layer<T, D>>> layers_;
};

/// @brief BertPooler: tanh(dense(h[:, 0]))
template <class T, class D = device::cpu> class bert_pooler : public module<T, D> {
public:
  explicit bert_pooler(const bert_config& c) : dense(c.hidden_size, c.hidden_size) {
    this->register_module("dense", dense);
  }
  variable<T, D> forward(const variable<T, D>& h) const { return tanh(dense.forward(select(h, 1, 0))); }
  linear_layer<T, D> dense;
};

/// @brief outputs of bert_model
template <class T, class D> struct bert_outputs {
  variable<T, D> last_hidden_state; ///< (B,T,C)
  variable<T, D> pooler_output;     ///< (B,C), undefined without a pooler
};

/// @brief BertModel: embeddings, encoder and (optionally) the pooler
template <class T, class D = device::cpu> class bert_model : public module<T, D> {
public:
  static constexpr const char* class_name = "BertModel";
  static constexpr const char* base_prefix = "";

  explicit bert_model(const bert_config& c, bool add_pooling_layer = true) : embeddings(validated(c)), encoder(c), config_(c) {
    this->register_module("embeddings", embeddings);
    this->register_module("encoder", encoder);
    if (add_pooling_layer) {
      pooler = std::make_unique<bert_pooler<T, D>>(c);
      this->register_module("pooler", *pooler);
    }
  }
  const bert_config& config() const { return config_; }
  void init_weights(generator& gen) {
    init_bert_weights(*this, gen, config_.initializer_range, config_.pad_token_id.value_or(-1));
  }
  /// @throws minibert::error on mismatched input shapes or out-of-range ids
  bert_outputs<T, D> forward(const bert_inputs<D>& in, generator& gen) const {
    MINIBERT_CHECK(in.input_ids.rank() == 2, "bert_model", "input_ids " << in.input_ids.shape() << " must be (B,T)");
    const tensor<T, D> mask = additive_mask(in);
    auto h = encoder.forward(embeddings.forward(in, gen), mask, gen);
    bert_outputs<T, D> out{h, {}};
    if (pooler) out.pooler_output = pooler->forward(h);
    return out;
  }
  /// @brief (1 - attention_mask) * lowest(T) as (B,T), as transformers' extended attention mask, built on the device
  static tensor<T, D> additive_mask(const bert_inputs<D>& in) {
    if (!in.attention_mask.defined()) return tensor<T, D>();
    MINIBERT_CHECK(in.attention_mask.shape() == in.input_ids.shape(), "bert_model",
                   "attention_mask " << in.attention_mask.shape() << " for input_ids " << in.input_ids.shape());
    const tensor<std::int32_t, D> m = contiguous(in.attention_mask);
    tensor<T, D> out = tensor<T, D>::empty(m.shape());
    backend<D>::additive_mask(current_context<D>(), m.data(), out.data(), m.numel());
    return out;
  }

  bert_embeddings<T, D> embeddings;
  bert_encoder<T, D> encoder;
  std::unique_ptr<bert_pooler<T, D>> pooler;

private:
  bert_config config_;
};

} // namespace minibert
