// SPDX-License-Identifier: MIT
#pragma once
/* Renders a report_data as Markdown and as one self-contained HTML page (inline CSS and SVG charts: no scripts,
   no external resources). Both are built from the same tables; the HTML adds the charts and heat maps. */

#include <algorithm>   // max
#include <cmath>       // isfinite
#include <cstddef>     // size_t
#include <cstdint>     // int64_t
#include <string>      // string
#include <string_view> // string_view
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/svg.hpp>
#include <minibert/report/report_data.hpp>
#include <minibert/version.hpp>

namespace minibert {

/// @brief The report as Markdown (tables only; the charts are in the HTML).
inline std::string render_report_markdown(const report_data& r);

/// @brief The report as a self-contained HTML page with inline SVG charts.
inline std::string render_report_html(const report_data& r);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

// A table both renderers print. numeric columns are right-aligned.
struct report_table {
  std::vector<std::string> header;
  std::vector<bool> numeric;
  std::vector<std::vector<std::string>> rows;
};

inline std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += "<br>";
    else if (c == '\r') continue;
    else out.push_back(c);
  }
  return out.empty() ? " " : out;
}

inline std::string to_markdown(const report_table& t) {
  std::string o = "|";
  for (const auto& h : t.header) o.append(" ").append(md_cell(h)).append(" |");
  o += "\n|";
  for (std::size_t i = 0; i < t.header.size(); ++i) o += i < t.numeric.size() && t.numeric[i] ? "---:|" : "---|";
  o += "\n";
  for (const auto& row : t.rows) {
    o += "|";
    for (const auto& c : row) o.append(" ").append(md_cell(c)).append(" |");
    o += "\n";
  }
  return o + "\n";
}

inline std::string to_html(const report_table& t, const char* css_class = nullptr) {
  std::string o = css_class ? std::string("<table class=\"") + css_class + "\">\n<thead><tr>" : "<table>\n<thead><tr>";
  for (std::size_t i = 0; i < t.header.size(); ++i)
    o += std::string(i < t.numeric.size() && t.numeric[i] ? "<th class=\"num\">" : "<th>") + xml_escape(t.header[i]) + "</th>";
  o += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    o += "<tr>";
    for (std::size_t i = 0; i < row.size(); ++i)
      o += std::string(i < t.numeric.size() && t.numeric[i] ? "<td class=\"num\">" : "<td>") + xml_escape(row[i]) + "</td>";
    o += "</tr>\n";
  }
  return o + "</tbody>\n</table>\n";
}

inline std::string final_prefix(const final_eval& f) { return f.prefix.empty() ? metrics_prefix(f.metrics) : f.prefix; }

// Rows: metric; columns: the final evaluations.
inline report_table results_table(const std::vector<final_eval>& finals) {
  report_table t;
  t.header = {"metric"};
  t.numeric = {false};
  for (const auto& f : finals) {
    t.header.push_back(f.name + " (" + final_prefix(f) + "_*)");
    t.numeric.push_back(true);
  }
  struct row_spec {
    const char* label;
    const char* key;
    int decimals;
  };
  const row_spec specs[] = {{"loss", "loss", 6},
                            {"accuracy", "accuracy", 6},
                            {"precision (weighted)", "precision", 6},
                            {"recall (weighted)", "recall", 6},
                            {"F1 (weighted)", "f1", 6},
                            {"precision (macro)", "precision_macro", 6},
                            {"recall (macro)", "recall_macro", 6},
                            {"F1 (macro)", "f1_macro", 6},
                            {"runtime (s)", "runtime", 2},
                            {"samples/s", "samples_per_second", 1},
                            {"steps/s", "steps_per_second", 2}};
  for (const auto& s : specs) {
    std::vector<std::string> row{s.label};
    bool any = false;
    for (const auto& f : finals) {
      const double v = metric_value(f.metrics, final_prefix(f), s.key);
      any = any || std::isfinite(v);
      row.push_back(fmt_fixed(v, s.decimals));
    }
    if (any) t.rows.push_back(std::move(row));
  }
  return t;
}

inline report_table setup_table(const report_data& r) {
  report_table t{{"item", "value"}, {false, false}, {}};
  for (const auto& [k, v] : r.setup) t.rows.push_back({k, v});
  return t;
}

// train_metrics as key/value rows; runtimes also as m:ss.
inline report_table train_table(const nlohmann::json& m) {
  report_table t{{"item", "value"}, {false, true}, {}};
  if (!m.is_object()) return t;
  for (auto it = m.begin(); it != m.end(); ++it) {
    std::string value;
    if (it->is_number()) {
      const double v = it->get<double>();
      if (it->is_number_integer()) value = it->dump();
      else if (it.key().find("runtime") != std::string::npos) value = fmt_duration(v) + " (" + fmt_fixed(v, 2) + " s)";
      else value = fmt_sig(v, 6);
    } else value = it->is_string() ? it->get<std::string>() : it->dump();
    t.rows.push_back({it.key(), value});
  }
  return t;
}

inline report_table log_table(const std::vector<log_entry>& log) {
  report_table t{{"step", "epoch", "loss", "learning rate", "grad norm"}, {true, true, true, true, true}, {}};
  for (const log_entry& e : log)
    t.rows.push_back({std::to_string(e.step), fmt_trim(e.epoch, 2), fmt_fixed(e.loss, 4), fmt_sig(e.learning_rate, 4),
                      fmt_fixed(e.grad_norm, 4)});
  return t;
}

inline report_table epochs_table(const std::vector<eval_entry>& evals) {
  report_table t{{"epoch", "step", "loss", "accuracy", "precision", "recall", "F1", "F1 (macro)", "runtime (s)"},
                 {true, true, true, true, true, true, true, true, true},
                 {}};
  for (const eval_entry& e : evals) {
    const std::string p = metrics_prefix(e.metrics);
    t.rows.push_back({fmt_trim(e.epoch, 2), std::to_string(e.step), fmt_fixed(metric_value(e.metrics, p, "loss"), 6),
                      fmt_fixed(metric_value(e.metrics, p, "accuracy"), 6),
                      fmt_fixed(metric_value(e.metrics, p, "precision"), 6),
                      fmt_fixed(metric_value(e.metrics, p, "recall"), 6), fmt_fixed(metric_value(e.metrics, p, "f1"), 6),
                      fmt_fixed(metric_value(e.metrics, p, "f1_macro"), 6),
                      fmt_fixed(metric_value(e.metrics, p, "runtime"), 2)});
  }
  return t;
}

// Class names for a final evaluation: report label_names when they fit, else the per-class entries' labels.
inline std::vector<std::string> class_names(const report_data& r, const final_eval& f, std::size_t n) {
  if (r.label_names.size() == n) return r.label_names;
  std::vector<std::string> names;
  const auto it = f.metrics.find(final_prefix(f) + "_per_class");
  for (std::size_t i = 0; i < n; ++i) {
    std::string name = std::to_string(i);
    if (it != f.metrics.end() && it->is_array() && i < it->size() && (*it)[i].contains("label") && (*it)[i]["label"].is_string())
      name = (*it)[i]["label"].get<std::string>();
    names.push_back(name);
  }
  return names;
}

inline bool has_per_class(const final_eval& f) {
  const auto it = f.metrics.find(final_prefix(f) + "_per_class");
  return it != f.metrics.end() && it->is_array() && !it->empty();
}

inline report_table per_class_table(const report_data& r, const final_eval& f) {
  report_table t{{"class", "precision", "recall", "F1", "support"}, {false, true, true, true, true}, {}};
  const auto& pc = f.metrics.at(final_prefix(f) + "_per_class");
  const std::vector<std::string> names = class_names(r, f, pc.size());
  for (std::size_t i = 0; i < pc.size(); ++i) {
    const auto& c = pc[i];
    t.rows.push_back({names[i], fmt_fixed(number_or_nan(c, "precision"), 6), fmt_fixed(number_or_nan(c, "recall"), 6),
                      fmt_fixed(number_or_nan(c, "f1"), 6),
                      c.contains("support") && c["support"].is_number() ? c["support"].dump() : "\u2013"});
  }
  return t;
}

// The confusion matrix of a final evaluation, empty when absent or not square.
inline std::vector<std::vector<std::int64_t>> confusion_of(const final_eval& f) {
  const auto it = f.metrics.find(final_prefix(f) + "_confusion_matrix");
  std::vector<std::vector<std::int64_t>> m;
  if (it == f.metrics.end() || !it->is_array()) return m;
  for (const auto& row : *it) {
    if (!row.is_array() || row.size() != it->size()) return {};
    std::vector<std::int64_t> r;
    for (const auto& v : row) {
      if (!v.is_number_integer()) return {};
      r.push_back(v.get<std::int64_t>());
    }
    m.push_back(std::move(r));
  }
  return m;
}

inline report_table confusion_table(const std::vector<std::vector<std::int64_t>>& m, const std::vector<std::string>& names) {
  report_table t;
  t.header = {"true \\ predicted"};
  t.numeric = {false};
  for (const auto& n : names) {
    t.header.push_back(n);
    t.numeric.push_back(true);
  }
  for (std::size_t i = 0; i < m.size(); ++i) {
    std::vector<std::string> row{names[i]};
    for (std::int64_t v : m[i]) row.push_back(std::to_string(v));
    t.rows.push_back(std::move(row));
  }
  return t;
}

inline std::string banner_text(const report_data& r) {
  std::string s = "The model was not pretrained: its encoder weights were randomly initialized, so these figures "
                  "measure training from scratch, not fine-tuning of a pretrained BERT.";
  if (!r.banner_note.empty()) s += " " + r.banner_note;
  return s;
}

// Markdown code fence longer than any run of backticks in `text`.
inline std::string md_fence(const std::string& text) {
  std::size_t longest = 0, run = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  return std::string(std::max<std::size_t>(3, longest + 1), '`');
}

// ---------------------------------------------------------------------------------------------------------------
// charts

inline std::string chart_training_loss(const report_data& r) {
  svg_line_chart c{"Training loss", "step", "loss", {}, 520, 300, true, true};
  svg_series train{"training loss", {}, {}, "", true, false, false};
  for (const log_entry& e : r.log_history)
    if (std::isfinite(e.loss)) {
      train.x.push_back(static_cast<double>(e.step));
      train.y.push_back(e.loss);
    }
  svg_series val{"validation loss", {}, {}, "", true, true, true};
  for (const eval_entry& e : r.evals) {
    const double v = metric_value(e.metrics, metrics_prefix(e.metrics), "loss");
    if (std::isfinite(v)) {
      val.x.push_back(static_cast<double>(e.step));
      val.y.push_back(v);
    }
  }
  c.series.push_back(std::move(train));
  if (!val.x.empty()) c.series.push_back(std::move(val));
  return render_svg(c);
}

inline std::string chart_learning_rate(const report_data& r) {
  svg_line_chart c{"Learning rate", "step", "learning rate", {}, 520, 300, true, true};
  svg_series s{"", {}, {}, svg_palette(4), true, false, false};
  for (const log_entry& e : r.log_history)
    if (std::isfinite(e.learning_rate)) {
      s.x.push_back(static_cast<double>(e.step));
      s.y.push_back(e.learning_rate);
    }
  c.series.push_back(std::move(s));
  return render_svg(c);
}

inline std::string chart_epoch_metrics(const report_data& r) {
  svg_line_chart c{"Validation accuracy and F1 per epoch", "epoch", "score", {}, 520, 300, false, true};
  const char* keys[] = {"accuracy", "f1", "f1_macro"};
  const char* names[] = {"accuracy", "F1 (weighted)", "F1 (macro)"};
  for (int k = 0; k < 3; ++k) {
    svg_series s{names[k], {}, {}, "", true, true, k == 2};
    for (const eval_entry& e : r.evals) {
      const double v = metric_value(e.metrics, metrics_prefix(e.metrics), keys[k]);
      if (std::isfinite(v)) {
        s.x.push_back(e.epoch);
        s.y.push_back(v);
      }
    }
    if (!s.x.empty()) c.series.push_back(std::move(s));
  }
  return render_svg(c);
}

inline std::string chart_epoch_loss(const report_data& r) {
  svg_line_chart c{"Validation loss per epoch", "epoch", "loss", {}, 520, 300, true, true};
  svg_series s{"", {}, {}, svg_palette(2), true, true, false};
  for (const eval_entry& e : r.evals) {
    const double v = metric_value(e.metrics, metrics_prefix(e.metrics), "loss");
    if (std::isfinite(v)) {
      s.x.push_back(e.epoch);
      s.y.push_back(v);
    }
  }
  c.series.push_back(std::move(s));
  return render_svg(c);
}

inline const char* report_css() {
  return "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;"
         "background:#eef0f3;color:#1d1d1f;line-height:1.4}\n"
         "main{max-width:1180px;margin:0 auto;padding:24px 36px 48px;background:#fff}\n"
         "h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;border-bottom:1px solid #d8dbe0;padding-bottom:4px;"
         "margin:32px 0 10px}h3{font-size:15px;margin:18px 0 6px}\n"
         ".meta{color:#666;font-size:13px;margin:0 0 12px}\n"
         "table{border-collapse:collapse;margin:6px 0 14px;font-size:13.5px}\n"
         "th,td{border:1px solid #d9dce1;padding:3px 10px;text-align:left;vertical-align:top}\n"
         "th{background:#f1f3f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\n"
         "tbody tr:nth-child(even){background:#fafbfc}\n"
         ".banner{background:#fff3e0;border:1px solid #f0a030;border-left:6px solid #e07000;padding:10px 16px;"
         "margin:14px 0;font-weight:600;color:#7a3b00}\n"
         "pre{background:#f5f6f8;border:1px solid #e1e4e8;padding:10px 12px;white-space:pre-wrap;"
         "word-break:break-word;font-size:12.5px}\n"
         ".charts{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0}\n"
         ".charts svg{max-width:100%;height:auto;border:1px solid #e3e5e8}\n"
         ".scroll{max-height:520px;overflow:auto;display:inline-block}\n"
         ".row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}\n"
         "ul.notes li{margin:4px 0}\n";
}

inline std::string report_markdown(const report_data& r) {
  std::string o = "# " + r.title + "\n\n";
  if (!r.model.empty()) o += "Model: `" + r.model + "`. ";
  o += std::string("Written by minibert ") + version_string + "; the charts are in report.html.\n\n";
  if (!r.model_pretrained) o += "> **Warning.** " + banner_text(r) + "\n\n";
  if (!r.finals.empty()) o += "## Results\n\n" + to_markdown(results_table(r.finals));
  if (!r.setup.empty()) o += "## Setup\n\n" + to_markdown(setup_table(r));
  if (!r.warnings.empty()) {
    const std::string fence = md_fence(r.warnings);
    o += "## Warnings at start\n\n" + fence + "\n" + r.warnings + (r.warnings.back() == '\n' ? "" : "\n") + fence + "\n\n";
  }
  if (r.train_metrics.is_object() && !r.train_metrics.empty()) o += "## Training\n\n" + to_markdown(train_table(r.train_metrics));
  if (!r.evals.empty()) o += "## Validation per epoch\n\n" + to_markdown(epochs_table(r.evals));
  bool any_per_class = false;
  for (const auto& f : r.finals) any_per_class = any_per_class || has_per_class(f);
  if (any_per_class) {
    o += "## Per-class metrics\n\n";
    for (const auto& f : r.finals)
      if (has_per_class(f)) o += "### " + f.name + "\n\n" + to_markdown(per_class_table(r, f));
  }
  std::string cm;
  for (const auto& f : r.finals) {
    const auto m = confusion_of(f);
    if (!m.empty()) cm += "### " + f.name + "\n\n" + to_markdown(confusion_table(m, class_names(r, f, m.size())));
  }
  if (!cm.empty()) o += "## Confusion matrices (rows: true label, columns: prediction)\n\n" + cm;
  if (!r.log_history.empty()) o += "## Training log\n\n" + to_markdown(log_table(r.log_history));
  if (!r.notes.empty()) {
    o += "## Notes\n\n";
    for (const auto& n : r.notes) o += "- " + n + "\n";
    o += "\n";
  }
  return o;
}

inline std::string report_html(const report_data& r) {
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                  xml_escape(r.title) + "</title>\n<style>\n" + report_css() + "</style>\n</head>\n<body>\n<main>\n";
  o += "<h1>" + xml_escape(r.title) + "</h1>\n<p class=\"meta\">";
  if (!r.model.empty()) o += "Model: <code>" + xml_escape(r.model) + "</code>. ";
  o += std::string("Written by minibert ") + version_string + ".</p>\n";
  if (!r.model_pretrained) o += "<div class=\"banner\" role=\"alert\">" + xml_escape(banner_text(r)) + "</div>\n";
  if (!r.finals.empty()) o += "<h2>Results</h2>\n" + to_html(results_table(r.finals), "results");
  if (!r.setup.empty()) o += "<h2>Setup</h2>\n" + to_html(setup_table(r), "setup");
  if (!r.warnings.empty()) o += "<h2>Warnings at start</h2>\n<pre class=\"warnings\">" + xml_escape(r.warnings) + "</pre>\n";
  o += "<h2>Training</h2>\n<div class=\"charts\">\n" + chart_training_loss(r) + chart_learning_rate(r) + "</div>\n";
  if (r.train_metrics.is_object() && !r.train_metrics.empty()) o += to_html(train_table(r.train_metrics), "train");
  if (!r.evals.empty()) {
    o += "<h2>Validation per epoch</h2>\n<div class=\"charts\">\n" + chart_epoch_metrics(r) + chart_epoch_loss(r) + "</div>\n";
    o += to_html(epochs_table(r.evals), "epochs");
  }
  std::string cm;
  for (const auto& f : r.finals) {
    const auto m = confusion_of(f);
    if (m.empty()) continue;
    svg_heatmap h;
    h.title = "Confusion matrix: " + f.name;
    h.names = class_names(r, f, m.size());
    h.counts = m;
    cm += render_svg(h);
  }
  if (!cm.empty())
    o += "<h2>Confusion matrices</h2>\n<p class=\"meta\">Rows: true label; columns: prediction. Shading: share of "
         "the true class's examples.</p>\n<div class=\"charts\">\n" + cm + "</div>\n";
  bool any_per_class = false;
  for (const auto& f : r.finals) any_per_class = any_per_class || has_per_class(f);
  if (any_per_class) {
    o += "<h2>Per-class metrics</h2>\n<div class=\"row\">\n";
    for (const auto& f : r.finals)
      if (has_per_class(f)) o += "<div>\n<h3>" + xml_escape(f.name) + "</h3>\n" + to_html(per_class_table(r, f), "per-class") + "</div>\n";
    o += "</div>\n";
  }
  if (!r.log_history.empty())
    o += "<h2>Training log</h2>\n<div class=\"scroll\">\n" + to_html(log_table(r.log_history), "log") + "</div>\n";
  if (!r.notes.empty()) {
    o += "<h2>Notes</h2>\n<ul class=\"notes\">\n";
    for (const auto& n : r.notes) o += "<li>" + xml_escape(n) + "</li>\n";
    o += "</ul>\n";
  }
  return o + "</main>\n</body>\n</html>\n";
}

} // namespace detail

inline std::string render_report_markdown(const report_data& r) { return detail::report_markdown(r); }

inline std::string render_report_html(const report_data& r) { return detail::report_html(r); }

} // namespace minibert
