// SPDX-License-Identifier: MIT
#pragma once
/* The comparison of several training runs: a side-by-side table of their test metrics and runtimes (the runs
   table of REFERENCE.md), the setup items that differ, and overlaid training-loss and learning-rate curves.
   Rendered as Markdown and as self-contained HTML. */

#include <algorithm> // find, max
#include <cmath>     // isfinite, isnan
#include <cstddef>   // size_t
#include <cstdint>   // int64_t
#include <string>    // string
#include <vector>    // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/svg.hpp>
#include <minibert/report/render.hpp>
#include <minibert/report/report_data.hpp>
#include <minibert/version.hpp>

namespace minibert {

/// @brief One run of a comparison: its name (a run directory's name) and its report.
struct comparison_run {
  std::string name;
  report_data data;
};

/// @brief What write_comparison shows: the runs in order (oldest first), and notes.
struct comparison_data {
  std::string title = "minibert run comparison";
  std::vector<comparison_run> runs;
  std::vector<std::string> notes;
};

/// @brief The comparison as Markdown (tables; the curves are in the HTML).
inline std::string render_comparison_markdown(const comparison_data& c);

/// @brief The comparison as a self-contained HTML page with overlaid SVG curves.
inline std::string render_comparison_html(const comparison_data& c);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

// The final evaluation the runs table shows: the one named "test", else the last.
inline const final_eval* test_eval(const report_data& r) {
  for (const auto& f : r.finals)
    if (f.name == "test") return &f;
  return r.finals.empty() ? nullptr : &r.finals.back();
}

inline std::int64_t run_steps(const report_data& r) {
  const auto it = r.train_metrics.find("global_step");
  if (it != r.train_metrics.end() && it->is_number_integer()) return it->get<std::int64_t>();
  std::int64_t steps = 0;
  for (const auto& e : r.log_history) steps = std::max(steps, e.step);
  return steps;
}

inline bool same_values(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Same training log and the same test loss and scores (runtimes may differ): a repeated run.
inline bool same_run(const report_data& a, const report_data& b) {
  if (a.log_history.size() != b.log_history.size() || a.log_history.empty()) return false;
  for (std::size_t i = 0; i < a.log_history.size(); ++i) {
    const log_entry &x = a.log_history[i], &y = b.log_history[i];
    if (x.step != y.step || !same_values(x.loss, y.loss) || !same_values(x.learning_rate, y.learning_rate)) return false;
  }
  const final_eval *ta = test_eval(a), *tb = test_eval(b);
  if (!ta || !tb) return ta == tb;
  for (const char* k : {"loss", "accuracy", "precision", "recall", "f1"})
    if (!same_values(metric_value(ta->metrics, final_prefix(*ta), k), metric_value(tb->metrics, final_prefix(*tb), k)))
      return false;
  return true;
}

inline report_table runs_table(const comparison_data& c) {
  report_table t{{"run", "steps", "train time", "test loss", "accuracy", "precision", "recall", "F1", "eval time",
                  "eval samples/s", "note"},
                 {false, true, true, true, true, true, true, true, true, true, false},
                 {}};
  for (std::size_t i = 0; i < c.runs.size(); ++i) {
    const report_data& r = c.runs[i].data;
    const final_eval* f = test_eval(r);
    const std::string p = f ? final_prefix(*f) : std::string();
    const nlohmann::json m = f ? f->metrics : nlohmann::json::object();
    const double eval_time = metric_value(m, p, "runtime");
    std::string note;
    for (std::size_t j = 0; j < i && note.empty(); ++j)
      if (same_run(r, c.runs[j].data)) note = "same log and test metrics as " + c.runs[j].name;
    if (!r.model_pretrained) note += std::string(note.empty() ? "" : "; ") + "model not pretrained";
    t.rows.push_back({c.runs[i].name, std::to_string(run_steps(r)), fmt_duration(number_or_nan(r.train_metrics, "train_runtime")),
                      fmt_fixed(metric_value(m, p, "loss"), 6), fmt_fixed(metric_value(m, p, "accuracy"), 6),
                      fmt_fixed(metric_value(m, p, "precision"), 6), fmt_fixed(metric_value(m, p, "recall"), 6),
                      fmt_fixed(metric_value(m, p, "f1"), 6), std::isfinite(eval_time) ? fmt_fixed(eval_time, 2) + " s" : "\u2013",
                      fmt_fixed(metric_value(m, p, "samples_per_second"), 1), note});
  }
  return t;
}

// Setup items whose values differ between runs (or that some runs lack), one column per run.
inline report_table setup_differences(const comparison_data& c) {
  report_table t;
  t.header = {"item"};
  t.numeric = {false};
  std::vector<std::string> keys;
  for (const auto& run : c.runs) {
    t.header.push_back(run.name);
    t.numeric.push_back(false);
    for (const auto& kv : run.data.setup)
      if (std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
  }
  for (const auto& k : keys) {
    std::vector<std::string> row{k};
    bool differ = false;
    for (const auto& run : c.runs) {
      std::string v = "\u2013";
      for (const auto& kv : run.data.setup)
        if (kv.first == k) v = kv.second;
      if (row.size() > 1 && v != row[1]) differ = true;
      row.push_back(v);
    }
    if (differ) t.rows.push_back(std::move(row));
  }
  return t;
}

inline std::string overlay_chart(const comparison_data& c, bool learning_rate) {
  svg_line_chart ch{learning_rate ? "Learning rate per step" : "Training loss per step", "step",
                    learning_rate ? "learning rate" : "loss", {}, 520, 320, true, true};
  for (std::size_t i = 0; i < c.runs.size(); ++i) {
    svg_series s{c.runs[i].name, {}, {}, "", true, false, false};
    for (const auto& e : c.runs[i].data.log_history) {
      const double v = learning_rate ? e.learning_rate : e.loss;
      if (std::isfinite(v)) {
        s.x.push_back(static_cast<double>(e.step));
        s.y.push_back(v);
      }
    }
    // a repeated run would hide under its twin: draw it dashed
    for (std::size_t j = 0; j < i; ++j)
      if (same_run(c.runs[i].data, c.runs[j].data)) s.dashed = true;
    ch.series.push_back(std::move(s));
  }
  return render_svg(ch);
}

inline std::string comparison_markdown(const comparison_data& c) {
  std::string o = "# " + c.title + "\n\n";
  o += std::string("Written by minibert ") + version_string + "; the curves are in comparison.html. Test metrics are " +
       "those of each run's final \"test\" evaluation; precision, recall and F1 are weighted averages.\n\n";
  o += "## Runs\n\n" + to_markdown(runs_table(c));
  const report_table diff = setup_differences(c);
  if (!diff.rows.empty()) o += "## Setup differences\n\n" + to_markdown(diff);
  if (!c.notes.empty()) {
    o += "## Notes\n\n";
    for (const auto& n : c.notes) o += "- " + n + "\n";
    o += "\n";
  }
  return o;
}

inline std::string comparison_html(const comparison_data& c) {
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                  xml_escape(c.title) + "</title>\n<style>\n" + report_css() + "</style>\n</head>\n<body>\n<main>\n";
  o += "<h1>" + xml_escape(c.title) + "</h1>\n<p class=\"meta\">Written by minibert " + std::string(version_string) +
       ". Test metrics are those of each run's final \"test\" evaluation; precision, recall and F1 are weighted "
       "averages.</p>\n";
  o += "<h2>Runs</h2>\n" + to_html(runs_table(c), "runs");
  const report_table diff = setup_differences(c);
  if (!diff.rows.empty()) o += "<h2>Setup differences</h2>\n" + to_html(diff, "setup-diff");
  o += "<h2>Training curves</h2>\n<div class=\"charts\">\n" + overlay_chart(c, false) + overlay_chart(c, true) + "</div>\n";
  if (!c.notes.empty()) {
    o += "<h2>Notes</h2>\n<ul class=\"notes\">\n";
    for (const auto& n : c.notes) o += "<li>" + xml_escape(n) + "</li>\n";
    o += "</ul>\n";
  }
  return o + "</main>\n</body>\n</html>\n";
}

} // namespace detail

inline std::string render_comparison_markdown(const comparison_data& c) { return detail::comparison_markdown(c); }

inline std::string render_comparison_html(const comparison_data& c) { return detail::comparison_html(c); }

} // namespace minibert
