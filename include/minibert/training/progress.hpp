// SPDX-License-Identifier: MIT
#pragma once
/* Progress display for long loops: a one-line bar with count, rate and ETA redrawn in place when the stream is a
   terminal; otherwise nothing (the caller's log lines carry the progress). */

#include <chrono>  // steady_clock
#include <cstdint> // int64_t
#include <cstdio>  // FILE, fprintf, fileno
#include <string>  // string

#include <unistd.h> // isatty

namespace minibert {

/// @brief "[#####.....] 123/900 4.1 it/s ETA 03:09 <suffix>" on a terminal
class progress_bar {
public:
  progress_bar(std::string label, std::int64_t total, std::FILE* out = stderr)
      : label_(std::move(label)), total_(total), out_(out), tty_(isatty(fileno(out)) != 0),
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
    std::fprintf(out_, "\r%s [%s] %lld/%lld %.2f it/s ETA %02d:%02d %s\x1b[K", label_.c_str(), bar.c_str(),
                 (long long)done, (long long)total_, rate, int(eta) / 60, int(eta) % 60, suffix.c_str());
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
  std::string label_;
  std::int64_t total_, done_ = 0, first_ = 0;
  std::FILE* out_;
  bool tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_{};
};

} // namespace minibert
