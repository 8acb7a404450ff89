// SPDX-License-Identifier: MIT
#pragma once
/* Small self-contained SVG charts for the reports: a line chart (several series, axes with "nice" ticks, grid,
   axis labels, legend; NaN values break a line) and a confusion-matrix heat map (counts, row-normalized shading,
   class names). Output is an <svg> element to inline in HTML: no scripts, no external resources. Private. */

#include <algorithm>   // min, max, clamp
#include <cmath>       // floor, ceil, round, lround, log10, pow, isfinite, abs
#include <cstddef>     // size_t
#include <cstdint>     // int64_t
#include <cstdio>      // snprintf
#include <limits>      // numeric_limits
#include <string>      // string
#include <string_view> // string_view
#include <utility>     // swap
#include <vector>      // vector

namespace minibert {
namespace detail {

/// One line of a chart: points (x[i], y[i]); non-finite y values leave a gap.
struct svg_series {
  std::string name;
  std::vector<double> x, y;
  std::string color;    ///< empty: the palette colour of the series' index
  bool line = true;     ///< draw the polyline
  bool markers = false; ///< draw a dot at each point
  bool dashed = false;
};

struct svg_line_chart {
  std::string title, x_label, y_label;
  std::vector<svg_series> series;
  int width = 520, height = 300;
  bool y_from_zero = false; ///< include 0 in the y range (losses, learning rates)
  bool x_integer = false;   ///< x ticks at integers only (steps, epochs)
};

struct svg_heatmap {
  std::string title;
  std::string row_label = "true label", col_label = "predicted label";
  std::vector<std::string> names;                 ///< class names (rows and columns)
  std::vector<std::vector<std::int64_t>> counts;  ///< counts[row][col]
};

/// The i-th colour of a palette that stays apart in print and for common colour-vision deficiencies (Tableau 10).
inline const char* svg_palette(std::size_t i) {
  static const char* const colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                       "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return colors[i % 10];
}

/// Escapes text for XML/HTML content and attribute values.
inline std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    case '\'': out += "&#39;"; break;
    default: out.push_back(c);
    }
  }
  return out;
}

/// printf into a std::string
template <class... Args> std::string strfmt(const char* format, Args... args) {
  char buf[128];
  const int n = std::snprintf(buf, sizeof buf, format, args...);
  if (n < 0) return {};
  if (static_cast<std::size_t>(n) < sizeof buf) return std::string(buf, static_cast<std::size_t>(n));
  std::string big(static_cast<std::size_t>(n) + 1, '\0');
  std::snprintf(big.data(), big.size(), format, args...);
  big.resize(static_cast<std::size_t>(n));
  return big;
}

/// "%.*g" with a compact exponent: 2e-05 -> 2e-5, 1.5e+06 -> 1.5e6
inline std::string compact_g(double v, int significant = 4) {
  std::string s = strfmt("%.*g", significant, v);
  const std::size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  std::string sign;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) {
    if (exp[0] == '-') sign = "-";
    exp.erase(0, 1);
  }
  while (exp.size() > 1 && exp[0] == '0') exp.erase(0, 1);
  return mant + "e" + sign + exp;
}

// ---------------------------------------------------------------------------------------------------------------
// axes

struct svg_axis {
  double lo = 0, hi = 1, step = 0.2;
};

// Heckbert's "nice numbers" (Graphics Gems, 1990): a step of 1, 2 or 5 times a power of ten, about `target`
// intervals, the range widened to multiples of the step.
inline svg_axis svg_nice_axis(double lo, double hi, int target, bool integer) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo <= std::abs(hi) * 1e-12 || hi == lo) { // one value: a range around it
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  double step = (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
  if (integer) step = std::max(1.0, std::round(step));
  svg_axis a;
  a.step = step;
  a.lo = std::floor(lo / step + 1e-9) * step;
  a.hi = std::ceil(hi / step - 1e-9) * step;
  return a;
}

inline std::string svg_tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-6) return "0";
  const double big = std::max(std::abs(v), step);
  if (big < 1e-3 || big >= 1e6) return compact_g(v, 3);
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return strfmt("%.*f", std::clamp(decimals, 0, 6), v);
}

// ---------------------------------------------------------------------------------------------------------------
// line chart

inline std::string render_svg(const svg_line_chart& c) {
  const double W = c.width, H = c.height;
  // legend entries, laid out left to right under the title (about 6.5 px per character at 12 px)
  std::vector<double> legend_x;
  double lx = 64;
  int legend_rows = 0;
  const bool legend = c.series.size() > 1 || (c.series.size() == 1 && !c.series[0].name.empty());
  if (legend) {
    legend_rows = 1;
    for (const auto& s : c.series) {
      const double w = 26 + 6.5 * static_cast<double>(s.name.size()) + 16;
      if (lx + w > W - 8 && lx > 64) {
        lx = 64;
        ++legend_rows;
      }
      legend_x.push_back(lx);
      lx += w;
    }
  }
  const double L = 64, R = 16, T = 30 + 18.0 * legend_rows, B = 44;
  const double pw = W - L - R, ph = H - T - B;

  constexpr double inf = std::numeric_limits<double>::infinity();
  double x0 = inf, x1 = -inf, y0 = inf, y1 = -inf;
  for (const auto& s : c.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  const bool empty = !(x0 <= x1);
  if (empty) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (c.y_from_zero) y0 = std::min(y0, 0.0), y1 = std::max(y1, 0.0);
  const svg_axis ax = svg_nice_axis(x0, x1, 6, c.x_integer);
  const svg_axis ay = svg_nice_axis(y0, y1, 5, false);
  auto sx = [&](double x) { return L + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto sy = [&](double y) { return T + ph - (y - ay.lo) / (ay.hi - ay.lo) * ph; };

  std::string o;
  o += strfmt("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\" "
              "font-family=\"sans-serif\" role=\"img\" aria-label=\"",
              W, H, W, H) +
       xml_escape(c.title) + "\">\n";
  o += "<title>" + xml_escape(c.title) + "</title>\n";
  o += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  o += strfmt("<text x=\"%g\" y=\"18\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">", L) + xml_escape(c.title) +
       "</text>\n";
  // grid and ticks
  o += "<g font-size=\"11\" fill=\"#444\">\n";
  const int ny = static_cast<int>(std::round((ay.hi - ay.lo) / ay.step));
  for (int i = 0; i <= ny; ++i) {
    const double v = ay.lo + i * ay.step, y = sy(v);
    o += strfmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>", L, y, L + pw, y);
    o += strfmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", L - 4, y, L, y);
    o += strfmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">", L - 7, y) +
         xml_escape(svg_tick_label(v, ay.step)) + "</text>\n";
  }
  const int nx = static_cast<int>(std::round((ax.hi - ax.lo) / ax.step));
  for (int i = 0; i <= nx; ++i) {
    const double v = ax.lo + i * ax.step, x = sx(v);
    o += strfmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>", x, T, x, T + ph);
    o += strfmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", x, T + ph, x, T + ph + 4);
    o += strfmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, T + ph + 16) +
         xml_escape(svg_tick_label(v, ax.step)) + "</text>\n";
  }
  o += "</g>\n";
  o += strfmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
  // axis labels
  o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\">", L + pw / 2, H - 8) +
       xml_escape(c.x_label) + "</text>\n";
  o += strfmt("<text x=\"14\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\" "
              "transform=\"rotate(-90 14 %.1f)\">",
              T + ph / 2, T + ph / 2) +
       xml_escape(c.y_label) + "</text>\n";
  if (empty)
    o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                L + pw / 2, T + ph / 2);
  // series
  for (std::size_t si = 0; si < c.series.size(); ++si) {
    const svg_series& s = c.series[si];
    const std::string color = s.color.empty() ? svg_palette(si) : s.color;
    const std::size_t n = std::min(s.x.size(), s.y.size());
    if (s.line) {
      std::string d;
      bool pen_down = false;
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
          pen_down = false;
          continue;
        }
        d += strfmt("%c%.1f,%.1f", pen_down ? 'L' : 'M', sx(s.x[i]), sy(s.y[i]));
        pen_down = true;
      }
      if (!d.empty())
        o += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.8\"" +
             (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + " stroke-linejoin=\"round\"/>\n";
    }
    if (s.markers) {
      o += "<g fill=\"" + color + "\">";
      for (std::size_t i = 0; i < n; ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
          o += strfmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>", sx(s.x[i]), sy(s.y[i]));
      o += "</g>\n";
    }
  }
  // legend
  if (legend) {
    int row = 0;
    double prev = 1e300;
    for (std::size_t si = 0; si < c.series.size(); ++si) {
      const svg_series& s = c.series[si];
      if (legend_x[si] < prev && si > 0) ++row;
      prev = legend_x[si];
      const double ly = 34 + 18.0 * row;
      const std::string color = s.color.empty() ? svg_palette(si) : s.color;
      o += strfmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"", legend_x[si], ly - 4,
                  legend_x[si] + 20, ly - 4) +
           color + "\" stroke-width=\"" + (s.line ? "2.5" : "0") + "\"" + (s.dashed ? " stroke-dasharray=\"6 4\"" : "") +
           "/>";
      if (s.markers || !s.line)
        o += strfmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"", legend_x[si] + 10, ly - 4) + color + "\"/>";
      o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#222\">", legend_x[si] + 26, ly) +
           xml_escape(s.name) + "</text>\n";
    }
  }
  o += "</svg>\n";
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// confusion-matrix heat map

inline std::string svg_shorten(const std::string& s, std::size_t max_chars) {
  if (s.size() <= max_chars || max_chars < 2) return s;
  std::size_t cut = max_chars - 1;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut; // not inside a UTF-8 sequence
  return s.substr(0, cut) + "\u2026";
}

inline std::string render_svg(const svg_heatmap& h) {
  const std::size_t n = h.counts.size();
  const double cell = std::clamp(420.0 / static_cast<double>(std::max<std::size_t>(n, 1)), 34.0, 84.0);
  std::size_t longest = 4;
  for (const auto& name : h.names) longest = std::max(longest, name.size());
  const double name_w = std::min(150.0, 7.0 * static_cast<double>(std::min<std::size_t>(longest, 20)) + 12);
  const double L = 30 + name_w, T = 58, grid = cell * static_cast<double>(n);
  const double W = std::max(L + grid + 20, 300.0), H = T + grid + 24;
  const auto label_chars = static_cast<std::size_t>(std::max(3.0, cell / 7.0));
  auto name_of = [&](std::size_t i) { return i < h.names.size() ? h.names[i] : std::to_string(i); };

  std::string o;
  o += strfmt("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\" "
              "font-family=\"sans-serif\" role=\"img\" aria-label=\"",
              W, H, W, H) +
       xml_escape(h.title) + "\">\n<title>" + xml_escape(h.title) + "</title>\n";
  o += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  o += "<text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">" + xml_escape(h.title) + "</text>\n";
  o += strfmt("<text x=\"%.1f\" y=\"36\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\">", L + grid / 2) +
       xml_escape(h.col_label) + "</text>\n";
  o += strfmt("<text x=\"12\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"#222\" "
              "transform=\"rotate(-90 12 %.1f)\">",
              T + grid / 2, T + grid / 2) +
       xml_escape(h.row_label) + "</text>\n";
  for (std::size_t j = 0; j < n; ++j) // column names
    o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\"><title>",
                L + cell * (static_cast<double>(j) + 0.5), T - 6) +
         xml_escape(name_of(j)) + "</title>" + xml_escape(svg_shorten(name_of(j), label_chars)) + "</text>\n";
  for (std::size_t i = 0; i < n; ++i) {
    const double y = T + cell * static_cast<double>(i);
    o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"middle\" "
                "fill=\"#444\"><title>",
                L - 6, y + cell / 2) +
         xml_escape(name_of(i)) + "</title>" + xml_escape(svg_shorten(name_of(i), 20)) + "</text>\n";
    std::int64_t row_total = 0;
    for (std::int64_t v : h.counts[i]) row_total += v;
    for (std::size_t j = 0; j < n && j < h.counts[i].size(); ++j) {
      const std::int64_t v = h.counts[i][j];
      const double f = row_total > 0 ? static_cast<double>(v) / static_cast<double>(row_total) : 0.0;
      // white (#f7fbff) to dark blue (#08306b), by the share of the true class's examples
      const int r = static_cast<int>(std::lround(0xf7 + (0x08 - 0xf7) * f));
      const int g = static_cast<int>(std::lround(0xfb + (0x30 - 0xfb) * f));
      const int b = static_cast<int>(std::lround(0xff + (0x6b - 0xff) * f));
      const double x = L + cell * static_cast<double>(j);
      o += strfmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%02x%02x%02x\" stroke=\"#ffffff\">",
                  x, y, cell, cell, r, g, b) +
           "<title>" + xml_escape("true " + name_of(i) + ", predicted " + name_of(j) + ": " + std::to_string(v)) +
           "</title></rect>";
      const char* ink = f > 0.5 ? "#ffffff" : "#222222";
      const bool two_lines = cell >= 48;
      o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"%s\">",
                  x + cell / 2, y + cell / 2 - (two_lines ? 6 : 0), cell >= 48 ? 13 : 11, ink) +
           std::to_string(v) + "</text>";
      if (two_lines)
        o += strfmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\" dominant-baseline=\"middle\" "
                    "fill=\"%s\">%.1f%%</text>",
                    x + cell / 2, y + cell / 2 + 9, ink, 100.0 * f);
      o += "\n";
    }
  }
  o += strfmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, grid, grid);
  o += "</svg>\n";
  return o;
}

} // namespace detail
} // namespace minibert
