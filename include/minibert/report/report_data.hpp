// SPDX-License-Identifier: MIT
#pragma once
/* The plain data a training report is made from (report_data: setup, warnings, training log, per-epoch and final
   evaluations, notes), its JSON form (report.json, which compare_runs reads back), and the number formatting the
   Markdown and HTML renderers share. */

#include <cmath>       // isfinite, floor, lround
#include <cstdint>     // int64_t
#include <filesystem>  // path
#include <fstream>     // ifstream
#include <iterator>    // istreambuf_iterator
#include <limits>      // numeric_limits
#include <string>      // string
#include <string_view> // string_view
#include <utility>     // pair
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/json_limits.hpp>
#include <minibert/detail/svg.hpp>
#include <minibert/error.hpp>

namespace minibert {

inline constexpr double report_nan = std::numeric_limits<double>::quiet_NaN();

/// @brief One training log line (transformers' log_history entry): NaN marks a value that was not logged.
struct log_entry {
  std::int64_t step = 0;
  double epoch = report_nan;
  double loss = report_nan;
  double learning_rate = report_nan;
  double grad_norm = report_nan;
};

/// @brief One evaluation during training (usually per epoch on the validation set). `metrics` holds what the
/// trainer returns: "eval_loss", "eval_accuracy", "eval_f1", ... (any one prefix, found from the "_loss" or
/// "_accuracy" key).
struct eval_entry {
  std::int64_t step = 0;
  double epoch = report_nan;
  nlohmann::json metrics = nlohmann::json::object();
};

/// @brief A final evaluation: `name` is what the report calls the set ("validation", "test"), `prefix` the
/// metric names' prefix ("eval", "test"; empty: found from the keys). `metrics` may hold {prefix}_per_class and
/// {prefix}_confusion_matrix (classification_metrics::to_json); the report draws the confusion matrix from it.
struct final_eval {
  std::string name;
  std::string prefix;
  nlohmann::json metrics = nlohmann::json::object();
};

/// @brief Everything write_report shows. Plain data: the trainer fills it in, nothing is computed from a model.
struct report_data {
  std::string title = "minibert fine-tuning report";
  std::string model;                ///< model name or path (shown in the title block)
  bool model_pretrained = true;     ///< false: a banner says the figures do not come from a pretrained model
  std::string banner_note;          ///< extra banner text (why the model was not pretrained)
  std::vector<std::pair<std::string, std::string>> setup; ///< setup table rows, in order
  std::string warnings;             ///< warnings printed at start (weight loading), shown verbatim
  std::vector<log_entry> log_history;
  std::vector<eval_entry> evals;    ///< per-epoch evaluations
  std::vector<final_eval> finals;   ///< final evaluations, e.g. validation then test
  nlohmann::json train_metrics = nlohmann::json::object(); ///< train_runtime, train_samples_per_second, ...
  std::vector<std::string> label_names; ///< class names by id (confusion matrices, per-class tables)
  std::vector<std::string> notes;   ///< free-text paragraphs shown at the end
};

/// @brief report_data as JSON (the report.json write_report leaves beside report.md; NaN is written as null).
inline nlohmann::json report_to_json(const report_data& r);

/// @brief report_data from its JSON form; `source` names it in errors.
/// @throws minibert::error("report", "<source>: ...") for a JSON value of the wrong shape
inline report_data report_from_json(const nlohmann::json& j, const std::string& source = "report.json");

/// @brief Reads a report.json file (a run directory's, or the file itself).
/// @throws minibert::error("report", ...) if it is missing or malformed
inline report_data read_report_json(const std::filesystem::path& path);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

inline nlohmann::json nan_to_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

inline double number_or_nan(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : report_nan;
}

// The prefix of a metrics object's keys: "eval" for {"eval_loss": ..., "eval_accuracy": ...}.
inline std::string metrics_prefix(const nlohmann::json& m) {
  if (!m.is_object()) return {};
  for (const char* suffix : {"_accuracy", "_loss", "_f1"})
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string& k = it.key();
      const std::string_view s(suffix);
      if (k.size() > s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0) return k.substr(0, k.size() - s.size());
    }
  return {};
}

// {prefix}_{name} as a double, NaN when absent or not a number.
inline double metric_value(const nlohmann::json& m, const std::string& prefix, const char* name) {
  if (!m.is_object()) return report_nan;
  return number_or_nan(m, (prefix + "_" + name).c_str());
}

// Fixed decimals; "–" for NaN.
inline std::string fmt_fixed(double v, int decimals) {
  return std::isfinite(v) ? strfmt("%.*f", decimals, v) : std::string("\u2013");
}
// Up to `decimals` decimals, trailing zeros dropped (epochs: 1, 0.33, 2.5).
inline std::string fmt_trim(double v, int decimals) {
  if (!std::isfinite(v)) return "\u2013";
  std::string s = strfmt("%.*f", decimals, v);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}
// Significant digits, compact exponent (learning rates: 3.92e-6).
inline std::string fmt_sig(double v, int significant = 4) {
  return std::isfinite(v) ? compact_g(v, significant) : std::string("\u2013");
}
// Seconds as m:ss or h:mm:ss (13:40, 1:02:05).
inline std::string fmt_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "\u2013";
  const long long s = std::llround(seconds);
  if (s >= 3600) return strfmt("%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return strfmt("%lld:%02lld", s / 60, s % 60);
}

} // namespace detail

inline nlohmann::json report_to_json(const report_data& r) {
  using nlohmann::json;
  json j;
  j["format"] = "minibert.report";
  j["version"] = 1;
  j["title"] = r.title;
  j["model"] = r.model;
  j["model_pretrained"] = r.model_pretrained;
  j["banner_note"] = r.banner_note;
  json setup = json::array();
  for (const auto& [k, v] : r.setup) setup.push_back(json::array({k, v}));
  j["setup"] = std::move(setup);
  j["warnings"] = r.warnings;
  json log = json::array();
  for (const log_entry& e : r.log_history)
    log.push_back({{"step", e.step},
                   {"epoch", detail::nan_to_null(e.epoch)},
                   {"loss", detail::nan_to_null(e.loss)},
                   {"learning_rate", detail::nan_to_null(e.learning_rate)},
                   {"grad_norm", detail::nan_to_null(e.grad_norm)}});
  j["log_history"] = std::move(log);
  json evals = json::array();
  for (const eval_entry& e : r.evals)
    evals.push_back({{"step", e.step}, {"epoch", detail::nan_to_null(e.epoch)}, {"metrics", e.metrics}});
  j["evals"] = std::move(evals);
  json finals = json::array();
  for (const final_eval& f : r.finals) finals.push_back({{"name", f.name}, {"prefix", f.prefix}, {"metrics", f.metrics}});
  j["finals"] = std::move(finals);
  j["train_metrics"] = r.train_metrics;
  j["label_names"] = r.label_names;
  j["notes"] = r.notes;
  return j;
}

inline report_data report_from_json(const nlohmann::json& j, const std::string& source) {
  report_data r;
  try {
    MINIBERT_CHECK(j.is_object(), "report", source << ": expected a JSON object, found " << j.type_name());
    MINIBERT_CHECK(j.value("format", std::string()) == "minibert.report", "report",
                   source << ": not a minibert report (\"format\" is not \"minibert.report\")");
    r.title = j.value("title", r.title);
    r.model = j.value("model", std::string());
    r.model_pretrained = j.value("model_pretrained", true);
    r.banner_note = j.value("banner_note", std::string());
    for (const auto& kv : j.value("setup", nlohmann::json::array()))
      r.setup.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
    r.warnings = j.value("warnings", std::string());
    for (const auto& e : j.value("log_history", nlohmann::json::array())) {
      log_entry l;
      l.step = e.at("step").get<std::int64_t>();
      l.epoch = detail::number_or_nan(e, "epoch");
      l.loss = detail::number_or_nan(e, "loss");
      l.learning_rate = detail::number_or_nan(e, "learning_rate");
      l.grad_norm = detail::number_or_nan(e, "grad_norm");
      r.log_history.push_back(l);
    }
    for (const auto& e : j.value("evals", nlohmann::json::array()))
      r.evals.push_back(eval_entry{e.at("step").get<std::int64_t>(), detail::number_or_nan(e, "epoch"),
                                   e.value("metrics", nlohmann::json::object())});
    for (const auto& f : j.value("finals", nlohmann::json::array()))
      r.finals.push_back(final_eval{f.at("name").get<std::string>(), f.value("prefix", std::string()),
                                    f.value("metrics", nlohmann::json::object())});
    r.train_metrics = j.value("train_metrics", nlohmann::json::object());
    r.label_names = j.value("label_names", std::vector<std::string>());
    r.notes = j.value("notes", std::vector<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw error("report", source + ": malformed report: " + e.what());
  }
  return r;
}

inline report_data read_report_json(const std::filesystem::path& path) {
  const std::filesystem::path file = std::filesystem::is_directory(path) ? path / "report.json" : path;
  std::ifstream in(file, std::ios::binary);
  MINIBERT_CHECK(in.good(), "report", file.string() << ": cannot open (write_report leaves report.json in a run directory)");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return report_from_json(detail::parse_json_limited(text, "report", file.string()), file.string());
}

} // namespace minibert
