// SPDX-License-Identifier: MIT
#pragma once
/* Task heads on the BERT encoder, named as transformers names them: bert_for_sequence_classification
   (BertForSequenceClassification: pooled output, dropout, classifier; cross-entropy, MSE or BCE by
   problem_type) and bert_for_masked_lm (BertForMaskedLM: transform + LayerNorm + decoder tied to the word
   embeddings). */

#include <cstdint> // int32_t, int64_t
#include <string>  // string
#include <vector>  // vector

#include <minibert/bert_config.hpp>
#include <minibert/encoder.hpp>
#include <minibert/nn/layers.hpp>
#include <minibert/nn/module.hpp>
#include <minibert/ops.hpp>
#include <minibert/random.hpp>

namespace minibert {

/// @brief how a classification head turns logits and labels into a loss (transformers' problem_type)
inline problem_kind resolve_problem(const bert_config& c, bool integer_labels) {
  if (c.problem_type != problem_kind::unspecified) return c.problem_type;
  if (c.num_labels() == 1) return problem_kind::regression;
  return integer_labels ? problem_kind::single_label_classification : problem_kind::multi_label_classification;
}

/// @brief BertForSequenceClassification: bert (with pooler), dropout, classifier (num_labels)
template <class T, class D = device::cpu> class bert_for_sequence_classification : public module<T, D> {
public:
  static constexpr const char* class_name = "BertForSequenceClassification";
  static constexpr const char* base_prefix = "bert.";

  explicit bert_for_sequence_classification(const bert_config& c)
      : bert(c, true), classifier(c.hidden_size, c.num_labels()),
        p_(float(c.classifier_dropout.value_or(c.hidden_dropout_prob))) {
    this->register_module("bert", bert);
    this->register_module("classifier", classifier);
  }
  const bert_config& config() const { return bert.config(); }
  void init_weights(generator& gen) {
    init_bert_weights(*this, gen, config().initializer_range, config().pad_token_id.value_or(-1));
  }
  /// @brief logits (B, num_labels)
  variable<T, D> forward(const bert_inputs<D>& in, generator& gen) const {
    const auto out = bert.forward(in, gen);
    return classifier.forward(dropout(out.pooler_output, p_, this->training(), gen));
  }
  /// @brief loss for class-index labels (B): cross-entropy; with num_labels 1, MSE on the labels as values
  /// @throws minibert::error if a label is outside [0, num_labels)
  variable<T, D> loss(const variable<T, D>& logits, const tensor<std::int32_t, D>& labels) const {
    const problem_kind k = resolve_problem(config(), true);
    if (k == problem_kind::single_label_classification) return cross_entropy(logits, labels);
    MINIBERT_CHECK(k == problem_kind::regression, "bert_for_sequence_classification",
                   "integer labels " << labels.shape() << " given for a multi_label_classification head");
    const tensor<std::int32_t, device::cpu> host = to_host(labels);
    tensor<T, device::cpu> values = tensor<T, device::cpu>::empty(host.shape());
    for (std::int64_t i = 0; i < host.numel(); ++i) values.data()[i] = T(host.data()[i]);
    return loss(logits, to_device<D>(values));
  }
  /// @brief loss for float targets: MSE for regression (targets (B) or (B,1)), BCE with logits for
  /// multi-label (targets (B, num_labels) in [0,1])
  variable<T, D> loss(const variable<T, D>& logits, const tensor<T, D>& targets) const {
    const problem_kind k = resolve_problem(config(), false);
    MINIBERT_CHECK(k != problem_kind::single_label_classification, "bert_for_sequence_classification",
                   "float targets " << targets.shape() << " given for a single_label_classification head");
    if (k == problem_kind::regression) {
      MINIBERT_CHECK(config().num_labels() == 1, "bert_for_sequence_classification",
                     "regression needs num_labels 1, not " << config().num_labels());
      return mse_loss(reshape(logits, {-1}), targets.reshape({-1}));
    }
    return bce_with_logits(logits, targets);
  }

  bert_model<T, D> bert;
  linear_layer<T, D> classifier;

private:
  float p_;
};

/// @brief BertLMPredictionHead with its transform, registered as cls.predictions
template <class T, class D = device::cpu> class bert_lm_head : public module<T, D> {
public:
  bert_lm_head(const bert_config& c, const variable<T, D>& word_embeddings)
      : dense(c.hidden_size, c.hidden_size), LayerNorm(c.hidden_size, c.layer_norm_eps),
        decoder_weight(word_embeddings), act_(to_activation(c.hidden_act)) {
    this->register_module("transform.dense", dense);
    this->register_module("transform.LayerNorm", LayerNorm);
    bias = this->register_parameter("bias", tensor<T, D>::empty({c.vocab_size}));
  }
  /// @brief h (B,T,C) -> vocabulary logits (B,T,V)
  variable<T, D> forward(const variable<T, D>& h) const {
    return linear(LayerNorm.forward(activate(dense.forward(h), act_)), decoder_weight, bias);
  }
  linear_layer<T, D> dense;
  layer_norm_layer<T, D> LayerNorm;
  variable<T, D> decoder_weight; ///< the word embedding matrix itself (tied, registered there only)
  variable<T, D> bias;

private:
  activation act_;
};

/// @brief BertForMaskedLM: bert (no pooler) and the LM head tied to the word embeddings
template <class T, class D = device::cpu> class bert_for_masked_lm : public module<T, D> {
public:
  static constexpr const char* class_name = "BertForMaskedLM";
  static constexpr const char* base_prefix = "bert.";

  explicit bert_for_masked_lm(const bert_config& c)
      : bert(c, false), predictions(c, bert.embeddings.word_embeddings.weight) {
    this->register_module("bert", bert);
    this->register_module("cls.predictions", predictions);
  }
  const bert_config& config() const { return bert.config(); }
  void init_weights(generator& gen) {
    init_bert_weights(*this, gen, config().initializer_range, config().pad_token_id.value_or(-1));
  }
  /// @brief vocabulary logits (B,T,V)
  variable<T, D> forward(const bert_inputs<D>& in, generator& gen) const {
    return predictions.forward(bert.forward(in, gen).last_hidden_state);
  }
  /// @brief mean cross-entropy over positions whose label is not -100; labels (B,T)
  variable<T, D> loss(const variable<T, D>& logits, const tensor<std::int32_t, D>& labels) const {
    const std::int64_t V = logits.size(-1);
    return cross_entropy(reshape(logits, {-1, V}), labels.reshape({-1}));
  }

  bert_model<T, D> bert;
  bert_lm_head<T, D> predictions;
};

} // namespace minibert
