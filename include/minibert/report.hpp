// SPDX-License-Identifier: MIT
#pragma once
/* Training reports: write_report turns a report_data (setup, warnings, training log, evaluations) into report.md,
   a self-contained report.html (inline SVG charts) and report.json; compare_runs reads several runs' report.json
   and writes comparison.md and comparison.html. Every file is written atomically. docs/data_and_reports.md. */

#include <filesystem>  // path, create_directories
#include <string>      // string
#include <system_error> // error_code
#include <vector>      // vector

#include <minibert/io/atomic_file.hpp>
#include <minibert/report/comparison.hpp>  // defines: comparison_run, comparison_data, render_comparison_*
#include <minibert/report/render.hpp>      // defines: render_report_markdown, render_report_html
#include <minibert/report/report_data.hpp> // defines: log_entry, eval_entry, final_eval, report_data, report JSON
#include <minibert/error.hpp>

namespace minibert {

/// @brief Writes report.md, report.html and report.json into `out_dir` (created if missing), each atomically.
/// @throws minibert::error("report", ...) if the directory cannot be created; ("atomic_write", ...) on I/O failure
inline void write_report(const report_data& r, const std::filesystem::path& out_dir);

/// @brief Writes comparison.md and comparison.html into `out_dir` (created if missing), each atomically.
/// @throws minibert::error as write_report
inline void write_comparison(const comparison_data& c, const std::filesystem::path& out_dir);

/// @brief Reads each run directory's report.json (runs named by their directory names, in the order given),
/// writes the comparison into `out_dir` and returns it.
/// @throws minibert::error("report", ...) for no runs, a missing or malformed report.json; as write_comparison
inline comparison_data compare_runs(const std::vector<std::filesystem::path>& run_dirs,
                                    const std::filesystem::path& out_dir);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

inline void ensure_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MINIBERT_CHECK(!ec && std::filesystem::is_directory(dir), "report",
                 dir.string() << ": cannot create the output directory" << (ec ? ": " + ec.message() : std::string()));
}

// The name of a run directory: its last component ("runs/run2/" -> "run2").
inline std::string run_name(const std::filesystem::path& dir) {
  std::filesystem::path p = dir;
  if (!p.has_filename()) p = p.parent_path(); // trailing slash
  const std::string name = p.filename().string();
  return name.empty() || name == "." ? std::filesystem::absolute(p).filename().string() : name;
}

} // namespace detail

inline void write_report(const report_data& r, const std::filesystem::path& out_dir) {
  detail::ensure_directory(out_dir);
  atomic_write_bytes(out_dir / "report.md", render_report_markdown(r));
  atomic_write_bytes(out_dir / "report.html", render_report_html(r));
  atomic_write_bytes(out_dir / "report.json", report_to_json(r).dump(1) + "\n");
}

inline void write_comparison(const comparison_data& c, const std::filesystem::path& out_dir) {
  detail::ensure_directory(out_dir);
  atomic_write_bytes(out_dir / "comparison.md", render_comparison_markdown(c));
  atomic_write_bytes(out_dir / "comparison.html", render_comparison_html(c));
}

inline comparison_data compare_runs(const std::vector<std::filesystem::path>& run_dirs,
                                    const std::filesystem::path& out_dir) {
  MINIBERT_CHECK(!run_dirs.empty(), "report", "compare_runs: no run directories given");
  comparison_data c;
  for (const auto& dir : run_dirs) c.runs.push_back(comparison_run{detail::run_name(dir), read_report_json(dir)});
  write_comparison(c, out_dir);
  return c;
}

} // namespace minibert
