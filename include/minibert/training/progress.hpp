// SPDX-License-Identifier: MIT
#pragma once
/* Progress display for long loops and downloads: a one-line bar with count, rate and ETA redrawn in place when the
   stream is a terminal; otherwise nothing (the caller's log lines carry the progress). Counts are items (training
   steps: "123/900 4.10 it/s") or bytes (downloads: "12.3 MB/440.5 MB 25.1 MB/s"). */

#include <chrono>  // steady_clock
#include <cstdint> // int64_t
#include <cstdio>  // FILE, fprintf, snprintf, fileno
#include <string>  // string, to_string

#include <unistd.h> // isatty

namespace minibert {

/// @brief what a progress_bar counts
enum class progress_unit { items, bytes };

/// @brief a byte count in decimal units as a person reads it: "512 B", "12.3 kB", "440.5 MB", "1.3 GB"
inline std::string human_bytes(double n) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (n >= 1000.0 && u < 4) {
    n /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", n, units[u]);
  return buf;
}

/// @brief "[#####.....] 123/900 4.1 it/s ETA 03:09 <suffix>" (or "[###.......] 12.3 MB/440.5 MB 25.1 MB/s ETA 00:17")
/// on a terminal
class progress_bar {
public:
  progress_bar(std::string label, std::int64_t total, std::FILE* out = stderr,
               progress_unit unit = progress_unit::items)
      : label_(std::move(label)), total_(total), out_(out), tty_(out && isatty(fileno(out)) != 0), unit_(unit),
        start_(std::chrono::steady_clock::now()) {}
  ~progress_bar() { finish(); }
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;

  bool interactive() const { return tty_; }
  /// @brief set the count to `done` (redraws at most ~10 times a second)
  void update(std::int64_t done, const std::string& suffix = "") {
    done_ = done;
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? double(done - first_) / secs : 0.0;
    const double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
    constexpr int width = 30;
    const int fill = total_ > 0 ? int(width * double(done) / double(total_)) : 0;
    std::string bar(std::size_t(fill), '#');
    bar.resize(width, '.');
    std::fprintf(out_, "\r%s [%s] %s/%s %s ETA %02d:%02d %s\x1b[K", label_.c_str(), bar.c_str(), count(done).c_str(),
                 count(total_).c_str(), rate_text(rate).c_str(), int(eta) / 60, int(eta) % 60, suffix.c_str());
    std::fflush(out_);
    drawn_ = true;
  }
  /// @brief start counting the rate from `done` (after a resume)
  void start_at(std::int64_t done) {
    first_ = done_ = done;
    start_ = std::chrono::steady_clock::now();
  }
  /// @brief move off the bar's line so other output starts clean
  void clear_line() {
    if (tty_ && drawn_) {
      std::fprintf(out_, "\r\x1b[K");
      std::fflush(out_);
      last_draw_ = {};
    }
  }
  void finish() {
    if (tty_ && drawn_) {
      std::fprintf(out_, "\n");
      std::fflush(out_);
      drawn_ = false;
    }
  }

private:
  std::string count(std::int64_t n) const {
    return unit_ == progress_unit::bytes ? human_bytes(double(n)) : std::to_string(n);
  }
  std::string rate_text(double per_second) const {
    if (unit_ == progress_unit::bytes) return human_bytes(per_second) + "/s";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f it/s", per_second);
    return buf;
  }

  std::string label_;
  std::int64_t total_, done_ = 0, first_ = 0;
  std::FILE* out_;
  bool tty_, drawn_ = false;
  progress_unit unit_;
  std::chrono::steady_clock::time_point start_, last_draw_{};
};

} // namespace minibert
