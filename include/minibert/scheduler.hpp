// SPDX-License-Identifier: MIT
#pragma once
/* Learning-rate schedules as transformers builds them (optimization.py: get_linear_schedule_with_warmup,
   get_cosine_schedule_with_warmup, get_constant_schedule[_with_warmup]), i.e. torch LambdaLR factors of a base
   lr, step for step; and `scheduler`, the LambdaLR counterpart a trainer steps once per optimizer step. */

#include <algorithm>   // max
#include <cmath>       // ceil, cos, isfinite
#include <cstdint>     // int64_t
#include <numbers>     // pi
#include <string>      // string
#include <string_view> // string_view

#include <minibert/error.hpp>

namespace minibert {

/// @brief the schedules transformers names (SchedulerType) that minibert implements
enum class schedule_kind { linear, cosine, constant, constant_with_warmup };

/// @brief "linear", "cosine", "constant" or "constant_with_warmup"
inline const char* to_string(schedule_kind k);

/// @brief the schedule named as transformers' `lr_scheduler_type` names it
/// @throws minibert::error("scheduler", ...) listing the valid names if `name` is not one of them
inline schedule_kind parse_schedule_kind(std::string_view name);

/// @brief transformers' TrainingArguments.get_warmup_steps for a ratio: ceil(total_steps * ratio), computed in
/// double as Python does (so 100 * 0.07 = 7.000000000000001 gives 8, as in transformers)
/// @throws minibert::error if ratio is outside [0, 1] or total_steps < 0
inline std::int64_t warmup_steps_from_ratio(double ratio, std::int64_t total_steps);

/// @brief A schedule: lr(step) = base_lr * factor(step), where step counts scheduler steps taken (0 before the
/// first optimizer step). With warmup w > 0, step 0 has lr 0: a trainer's first update does not move the weights
/// (apart from weight decay, which is also scaled by lr).
///   linear:               s < w ? s / max(1,w) : max(0, (total - s) / max(1, total - w))
///   cosine (0.5 cycles):  s < w ? s / max(1,w) : max(0, (1 + cos(pi * (s - w) / max(1, total - w))) / 2)
///   constant:             1
///   constant_with_warmup: s < w ? s / max(1,w) : 1
struct lr_schedule {
  schedule_kind kind = schedule_kind::linear;
  double base_lr = 5e-5;           ///< transformers' default learning_rate
  std::int64_t warmup_steps = 0;   ///< in optimizer steps (see warmup_steps_from_ratio)
  std::int64_t total_steps = 0;    ///< num_training_steps (ignored by the constant schedules)

  /// @brief the LambdaLR factor at scheduler step `step` (>= 0)
  double factor(std::int64_t step) const;
  /// @brief base_lr * factor(step)
  double lr_at(std::int64_t step) const { return base_lr * factor(step); }
  /// @throws minibert::error for a negative step count, warmup, or a non-finite / negative base lr
  void validate() const;
};

/// @brief a scheduler's checkpointable state: scheduler steps taken (LambdaLR's last_epoch)
struct scheduler_state {
  std::int64_t step = 0;
};

/// @brief torch LambdaLR over an lr_schedule: last_lr() is the lr for the next optimizer step; step() advances.
class scheduler {
public:
  /// @throws minibert::error if the schedule is invalid (lr_schedule::validate)
  explicit scheduler(lr_schedule s) : s_(s) { s_.validate(); }
  /// @brief advance by one scheduler step (call after each optimizer step that ran)
  void step() { ++state_.step; }
  /// @brief lr at the current step (the value a trainer logs after its optimizer step, and uses for the next one)
  double last_lr() const { return s_.lr_at(state_.step); }
  /// @brief scheduler steps taken so far
  std::int64_t steps_taken() const { return state_.step; }
  const lr_schedule& schedule() const { return s_; }
  scheduler_state state() const { return state_; }
  /// @throws minibert::error for a negative step count
  void load_state(const scheduler_state& st) {
    MINIBERT_CHECK(st.step >= 0, "scheduler", "load_state: step " << st.step << " < 0");
    state_ = st;
  }

private:
  lr_schedule s_;
  scheduler_state state_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {
struct schedule_name {
  const char* name;
  schedule_kind kind;
};
inline constexpr schedule_name schedule_names[] = {{"linear", schedule_kind::linear},
                                                   {"cosine", schedule_kind::cosine},
                                                   {"constant", schedule_kind::constant},
                                                   {"constant_with_warmup", schedule_kind::constant_with_warmup}};
} // namespace detail

inline const char* to_string(schedule_kind k) {
  for (const auto& n : detail::schedule_names)
    if (n.kind == k) return n.name;
  return "?";
}

inline schedule_kind parse_schedule_kind(std::string_view name) {
  std::string valid;
  for (const auto& n : detail::schedule_names) {
    if (name == n.name) return n.kind;
    valid += std::string(valid.empty() ? "" : ", ") + "'" + n.name + "'";
  }
  throw error("scheduler", "unknown lr schedule '" + std::string(name) + "'; valid names: " + valid);
}

inline std::int64_t warmup_steps_from_ratio(double ratio, std::int64_t total_steps) {
  MINIBERT_CHECK(ratio >= 0.0 && ratio <= 1.0, "scheduler", "warmup ratio " << ratio << " outside [0, 1]");
  MINIBERT_CHECK(total_steps >= 0, "scheduler", "total steps " << total_steps << " < 0");
  return static_cast<std::int64_t>(std::ceil(double(total_steps) * ratio));
}

inline void lr_schedule::validate() const {
  MINIBERT_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "scheduler", "base lr " << base_lr);
  MINIBERT_CHECK(warmup_steps >= 0, "scheduler", "warmup steps " << warmup_steps << " < 0");
  MINIBERT_CHECK(total_steps >= 0, "scheduler", "total steps " << total_steps << " < 0");
}

inline double lr_schedule::factor(std::int64_t step) const {
  MINIBERT_CHECK(step >= 0, "scheduler", "step " << step << " < 0");
  // Python's float(int) / float(max(1, int)): the same double operations, so factors agree bit for bit.
  const double s = double(step), w = double(warmup_steps);
  if (kind == schedule_kind::constant) return 1.0;
  if (step < warmup_steps) return s / double(std::max<std::int64_t>(1, warmup_steps));
  switch (kind) {
  case schedule_kind::linear:
    return std::max(0.0, double(total_steps - step) / double(std::max<std::int64_t>(1, total_steps - warmup_steps)));
  case schedule_kind::cosine: {
    const double progress = (s - w) / double(std::max<std::int64_t>(1, total_steps - warmup_steps));
    return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5 * 2.0 * progress)));
  }
  default: return 1.0; // constant_with_warmup after warmup
  }
}

} // namespace minibert
