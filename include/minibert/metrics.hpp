// SPDX-License-Identifier: MIT
#pragma once
/* Classification metrics from predicted and true label ids: accuracy, per-class precision/recall/F1/support,
   their macro and support-weighted averages (scikit-learn's precision_recall_fscore_support with
   zero_division=0), and the confusion matrix; to_json writes them under transformers' metric names. */

#include <cstddef>     // size_t
#include <cstdint>     // int64_t
#include <span>        // span
#include <string>      // string, to_string
#include <string_view> // string_view
#include <utility>     // move
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/error.hpp>

namespace minibert {

/// @brief Precision, recall, F1 and counts of one class.
struct class_metrics {
  double precision = 0; ///< tp / (tp + fp); 0 when nothing was predicted as this class
  double recall = 0;    ///< tp / (tp + fn); 0 when the class has no true examples
  double f1 = 0;        ///< 2 tp / (2 tp + fp + fn); 0 when the class is in neither labels nor predictions
  std::int64_t support = 0;   ///< true examples of the class (tp + fn)
  std::int64_t predicted = 0; ///< examples predicted as the class (tp + fp)
};

/// @brief Every figure compute_classification_metrics derives. Averages follow scikit-learn
/// (precision_recall_fscore_support, zero_division=0, labels=None):
///   macro    = unweighted mean over the classes that occur in the labels or the predictions;
///   weighted = sum over classes of support_c * metric_c / number of examples. Weighted recall equals accuracy.
struct classification_metrics {
  std::int64_t count = 0;   ///< number of examples
  std::int64_t correct = 0; ///< predictions equal to the label
  double accuracy = 0;      ///< correct / count (0 for no examples)
  double precision_macro = 0, recall_macro = 0, f1_macro = 0;
  double precision_weighted = 0, recall_weighted = 0, f1_weighted = 0;
  std::vector<class_metrics> per_class;          ///< indexed by label id, size num_labels
  std::vector<std::vector<std::int64_t>> confusion; ///< confusion[true][predicted], num_labels x num_labels

  std::size_t num_labels() const noexcept { return per_class.size(); }

  /// @brief The metrics under transformers' names: {prefix}_accuracy, {prefix}_precision, {prefix}_recall,
  /// {prefix}_f1 (weighted averages), {prefix}_precision_macro, {prefix}_recall_macro, {prefix}_f1_macro,
  /// {prefix}_per_class (array by id of {"id", "label", "precision", "recall", "f1", "support"}) and
  /// {prefix}_confusion_matrix (rows: true labels, columns: predictions). The trainer adds {prefix}_loss,
  /// _runtime, _samples_per_second and _steps_per_second.
  /// @param label_names names for the per-class entries; empty: the ids' decimal text
  /// @throws minibert::error("metrics", ...) if label_names is neither empty nor num_labels long
  nlohmann::json to_json(std::string_view prefix = "eval", const std::vector<std::string>& label_names = {}) const;
};

/// @brief Computes the metrics of `predictions` against `labels` (ids in [0, num_labels)).
/// An empty input gives zero for every figure.
/// @throws minibert::error("metrics", ...) if the sizes differ, num_labels is 0, or an id is out of range
inline classification_metrics compute_classification_metrics(std::span<const std::int64_t> predictions,
                                                              std::span<const std::int64_t> labels,
                                                              std::size_t num_labels);

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline classification_metrics compute_classification_metrics(std::span<const std::int64_t> predictions,
                                                              std::span<const std::int64_t> labels,
                                                              std::size_t num_labels) {
  MINIBERT_CHECK(predictions.size() == labels.size(), "metrics",
                 predictions.size() << " predictions for " << labels.size() << " labels");
  MINIBERT_CHECK(num_labels > 0, "metrics", "num_labels is 0");
  const auto k = static_cast<std::int64_t>(num_labels);
  classification_metrics m;
  m.count = static_cast<std::int64_t>(labels.size());
  m.per_class.assign(num_labels, class_metrics{});
  m.confusion.assign(num_labels, std::vector<std::int64_t>(num_labels, 0));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::int64_t y = labels[i], p = predictions[i];
    MINIBERT_CHECK(y >= 0 && y < k, "metrics", "label " << y << " at index " << i << " out of range [0, " << k << ")");
    MINIBERT_CHECK(p >= 0 && p < k, "metrics",
                   "prediction " << p << " at index " << i << " out of range [0, " << k << ")");
    ++m.confusion[static_cast<std::size_t>(y)][static_cast<std::size_t>(p)];
  }
  std::size_t present = 0; // classes in the labels or the predictions (scikit-learn's labels=None)
  for (std::size_t c = 0; c < num_labels; ++c) {
    class_metrics& cm = m.per_class[c];
    const std::int64_t tp = m.confusion[c][c];
    for (std::size_t o = 0; o < num_labels; ++o) {
      cm.support += m.confusion[c][o];
      cm.predicted += m.confusion[o][c];
    }
    const std::int64_t fp = cm.predicted - tp, fn = cm.support - tp;
    m.correct += tp;
    cm.precision = cm.predicted > 0 ? static_cast<double>(tp) / static_cast<double>(cm.predicted) : 0.0;
    cm.recall = cm.support > 0 ? static_cast<double>(tp) / static_cast<double>(cm.support) : 0.0;
    // scikit-learn >= 1.3 computes F1 from counts; equal to 2PR/(P+R) wherever that is defined
    const std::int64_t f1_den = 2 * tp + fp + fn;
    cm.f1 = f1_den > 0 ? 2.0 * static_cast<double>(tp) / static_cast<double>(f1_den) : 0.0;
    if (cm.support > 0 || cm.predicted > 0) {
      ++present;
      m.precision_macro += cm.precision;
      m.recall_macro += cm.recall;
      m.f1_macro += cm.f1;
    }
    const auto w = static_cast<double>(cm.support);
    m.precision_weighted += w * cm.precision;
    m.recall_weighted += w * cm.recall;
    m.f1_weighted += w * cm.f1;
  }
  if (present > 0) {
    m.precision_macro /= static_cast<double>(present);
    m.recall_macro /= static_cast<double>(present);
    m.f1_macro /= static_cast<double>(present);
  }
  if (m.count > 0) {
    const auto n = static_cast<double>(m.count);
    m.accuracy = static_cast<double>(m.correct) / n;
    m.precision_weighted /= n;
    m.recall_weighted /= n;
    m.f1_weighted /= n;
  }
  return m;
}

inline nlohmann::json classification_metrics::to_json(std::string_view prefix,
                                                      const std::vector<std::string>& label_names) const {
  MINIBERT_CHECK(label_names.empty() || label_names.size() == num_labels(), "metrics",
                 label_names.size() << " label names for " << num_labels() << " classes");
  const std::string p(prefix);
  nlohmann::json j = nlohmann::json::object();
  j[p + "_accuracy"] = accuracy;
  j[p + "_precision"] = precision_weighted;
  j[p + "_recall"] = recall_weighted;
  j[p + "_f1"] = f1_weighted;
  j[p + "_precision_macro"] = precision_macro;
  j[p + "_recall_macro"] = recall_macro;
  j[p + "_f1_macro"] = f1_macro;
  nlohmann::json classes = nlohmann::json::array();
  for (std::size_t c = 0; c < per_class.size(); ++c) {
    const class_metrics& cm = per_class[c];
    classes.push_back({{"id", c},
                       {"label", label_names.empty() ? std::to_string(c) : label_names[c]},
                       {"precision", cm.precision},
                       {"recall", cm.recall},
                       {"f1", cm.f1},
                       {"support", cm.support}});
  }
  j[p + "_per_class"] = std::move(classes);
  j[p + "_confusion_matrix"] = confusion;
  return j;
}

} // namespace minibert
