// SPDX-License-Identifier: MIT
#pragma once
/* A per-op profiler for training steps: wall time per op kind, forward and backward apart, the share spent in
   GEMMs, and the GEMMs by shape and transposes. Off unless a profiler::session is alive (one pointer test per
   op then). It times the calling thread's view: ops run one after another and parallelize inside, so each
   op's wall time is its cost. On a device with an asynchronous queue (CUDA) the times are launch times unless
   the caller synchronizes; it is meant for the CPU.

   Where the hooks are: autograd's make_result marks the end of each forward op (an op's forward time is the
   time since the previous mark: its own preparation, its kernels, its result); variable::backward times each
   node's backward closure, the gradient accumulation into shared inputs (add_grad) and the freeing of saved
   tensors; backend<cpu>'s GEMM entry points record each product by shape. */

#include <chrono>  // steady_clock
#include <cstdint> // int64_t
#include <map>     // map
#include <sstream> // ostringstream
#include <string>  // string
#include <string_view> // string_view

namespace minibert::profiler {

using clock = std::chrono::steady_clock;

/// @brief accumulated cost of one row of the profile
struct row {
  double seconds = 0;      // wall time, excluding nested rows listed separately (gradient accumulation)
  double gemm_seconds = 0; // of which inside GEMM calls
  double flops = 0;        // GEMM rows: 2 M N K per call
  std::int64_t calls = 0;
};

/// @brief what a session records: ops keyed "forward <op>" / "backward <op>", GEMMs keyed by shape
struct recorder {
  std::map<std::string, row> ops;
  std::map<std::string, row> gemms;
  clock::time_point last = clock::now(); // end of the previous forward mark or timed region
  double pending_gemm = 0;               // GEMM seconds since the last mark, attributed to the next op
  double nested = 0;                     // seconds of nested rows inside the current backward closure

  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }
  /// @brief restart the forward clock (call before a forward pass so the time before it is not charged)
  void restart() {
    last = clock::now();
    pending_gemm = 0;
  }
  /// @brief charge seconds to ops[key], with the GEMM time recorded since pending_gemm was at gemm_base
  void add_op(const std::string& key, double seconds, double gemm_base = 0) {
    row& r = ops[key];
    r.seconds += seconds;
    r.gemm_seconds += pending_gemm - gemm_base;
    ++r.calls;
    pending_gemm = gemm_base;
  }
  /// @brief a forward op produced its result: charge it the time since the previous mark
  void forward_mark(const char* op) {
    add_op(std::string("forward ") + op, since(last));
    last = clock::now();
  }
  void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t batch, double seconds) {
    std::ostringstream key;
    key << M << "/" << N << "/" << K << "/" << ta << "/" << tb;
    if (batch > 1) key << " x" << batch;
    row& r = gemms[key.str()];
    r.seconds += seconds;
    r.gemm_seconds += seconds;
    r.flops += 2.0 * double(M) * double(N) * double(K) * double(batch);
    ++r.calls;
    pending_gemm += seconds;
  }
};

namespace detail {
inline recorder*& active_slot() {
  static recorder* active = nullptr;
  return active;
}
} // namespace detail

/// @brief the recorder of the live session, or null (profiling off)
inline recorder* active() { return detail::active_slot(); }

/// @brief records while alive (sessions nest: the innermost records). Not thread-safe: profile one
/// training loop at a time, from the thread that drives it.
class session {
public:
  session() : previous_(detail::active_slot()) { detail::active_slot() = &rec_; }
  ~session() { detail::active_slot() = previous_; }
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  recorder& result() { return rec_; }

private:
  recorder rec_;
  recorder* previous_;
};

/// @brief times one region of a backward pass into ops[key] (nested regions are subtracted from the outer)
class backward_timer {
public:
  explicit backward_timer(recorder* r) : r_(r) {
    if (!r_) return;
    start_ = clock::now();
    outer_nested_ = r_->nested;
    gemm_base_ = r_->pending_gemm;
    r_->nested = 0;
  }
  void finish(std::string_view key) {
    if (!r_) return;
    const double total = recorder::since(start_);
    r_->add_op(std::string(key), total - r_->nested, gemm_base_);
    r_->nested = outer_nested_ + total; // the enclosing region excludes all of this one
    r_->last = clock::now();
    r_ = nullptr;
  }

private:
  recorder* r_;
  clock::time_point start_{};
  double outer_nested_ = 0, gemm_base_ = 0;
};

/// @brief times one GEMM entry point (batch products as one record)
class gemm_timer {
public:
  gemm_timer(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t batch = 1)
      : r_(active()), ta_(ta), tb_(tb), M_(M), N_(N), K_(K), batch_(batch) {
    if (r_) start_ = clock::now();
  }
  ~gemm_timer() {
    if (r_) r_->gemm(ta_, tb_, M_, N_, K_, batch_, recorder::since(start_));
  }
  gemm_timer(const gemm_timer&) = delete;
  gemm_timer& operator=(const gemm_timer&) = delete;

private:
  recorder* r_;
  bool ta_, tb_;
  std::int64_t M_, N_, K_, batch_;
  clock::time_point start_{};
};

} // namespace minibert::profiler
