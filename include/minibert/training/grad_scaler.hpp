// SPDX-License-Identifier: MIT
#pragma once
/* Dynamic loss scaling for fp16 training with the semantics of PyTorch 1.13's torch.cuda.amp.GradScaler as
   transformers' Trainer (4.46, through accelerate 1.0) drives it:

     loss.backward(scaler.seed_like(loss));   // scaler.scale(loss).backward(): the loss gradient is the scale
     scaler.unscale(opt);                      // optional: accelerator.clip_grad_norm_ unscales before clipping
     clip_grad_norm(params, max_norm);
     bool ran = scaler.step(opt, lr);          // unscales unless done; skips opt.step when a gradient is inf/NaN
     scaler.update();                          // backoff after a skip, growth after growth_interval clean steps
     if (ran) sched.step();                    // the Trainer steps the schedule only after a step that ran

   Where torch keeps the scale and the growth tracker in device tensors, they live on the host here: step() must read
   found_inf anyway to decide whether AdamW runs (torch's step reads it too, with .item()), and with that bit on the
   host the update needs no kernel. The arithmetic is the CUDA kernel's: the scale is a float, each new scale a
   double product rounded to float. found_inf itself is a device scalar that the backend's
   non_finite_check_and_unscale writes, so unscale() never waits for the device; found_inf() is the one read. */

#include <cmath>    // isfinite, abs
#include <cstdint>  // int64_t, int32_t
#include <limits>   // numeric_limits
#include <optional> // optional (found_inf read once per step)
#include <span>     // span (the gradient lists)
#include <string>   // string
#include <vector>   // vector

#include <nlohmann/json.hpp>

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/error.hpp>
#include <minibert/optimizer.hpp>
#include <minibert/tensor.hpp>
#include <minibert/tensor_ops.hpp>

namespace minibert {

/// @brief GradScaler's constructor arguments and defaults (init_scale 2^16, growth 2, backoff 0.5, interval 2000)
struct grad_scaler_options {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 2000;
  bool enabled = true;
};

/// @brief torch.cuda.amp.GradScaler for one optimizer (see the header comment for the loop). A disabled scaler has
/// scale 1, leaves gradients alone, and its step() always runs the optimizer, as torch's does.
template <class T, class D = device::cpu> class grad_scaler {
public:
  using variable_t = variable<T, D>;
  using tensor_t = tensor<T, D>;

  /// @throws minibert::error("grad_scaler", ...) when enabled with growth_factor <= 1, backoff_factor outside
  ///   (0, 1), an init_scale that is not a positive finite float, or growth_interval outside [1, 2^31)
  explicit grad_scaler(grad_scaler_options o = {});

  bool enabled() const { return opt_.enabled; }
  const grad_scaler_options& options() const { return opt_; }
  /// @brief the current scale (a float, as torch's float32 tensor holds it); 1 when disabled (get_scale())
  double scale() const { return opt_.enabled ? double(scale_) : 1.0; }
  /// @brief consecutive steps without inf/NaN since the last growth or backoff; 0 when disabled
  std::int64_t growth_tracker() const { return opt_.enabled ? tracker_ : 0; }

  /// @brief the seed of loss.backward(): T(scale()) in the loss's shape, as scaler.scale(loss).backward() seeds it.
  /// With half storage a scale >= 65520 rounds to inf here, so every gradient overflows and the step is skipped.
  tensor_t seed_like(const variable_t& loss) const;
  /// @brief seed_like's value: T(scale())
  T seed_value() const { return T(A(scale())); }

  /// @brief unscale_: every gradient *= 1/scale (the reciprocal in double, rounded to float, as torch) and found_inf
  /// recorded on the device; no wait. Once per step, after all gradients were accumulated; each parameter once.
  /// Parameters without a gradient are skipped; when none has one, nothing is recorded (step() then refuses).
  /// @throws minibert::error if called twice before update(), or after step()
  void unscale(const std::vector<variable_t>& params);
  /// @brief unscale() of every parameter of the optimizer's groups
  void unscale(const adamw<T, D>& opt);
  /// @brief whether this step's unscale() saw an inf or NaN (reads the device scalar back once per step)
  /// @throws minibert::error before unscale()
  bool found_inf();
  /// @brief unscales unless unscale() was called this step, then runs opt.step(lr) unless found_inf()
  /// @return whether the optimizer ran (accelerate's `not optimizer_step_was_skipped`)
  /// @throws minibert::error if called twice before update(), or when no parameter had a gradient
  bool step(adamw<T, D>& opt, double lr);
  /// @brief _amp_update_scale_: after inf/NaN, scale *= backoff_factor and tracker = 0; otherwise tracker + 1, and
  /// when that reaches growth_interval, scale *= growth_factor (unless the product would be inf) and tracker = 0
  /// @throws minibert::error when nothing was unscaled since the last update()
  void update();

  /// @brief GradScaler.state_dict(): {"scale", "growth_factor", "backoff_factor", "growth_interval",
  /// "_growth_tracker"}; {} when disabled
  nlohmann::json state() const;
  /// @brief load_state_dict(): all fields or none; a no-op when disabled (as torch)
  /// @throws minibert::error("grad_scaler", ...) naming the field that is missing, of another type or out of range
  void load_state(const nlohmann::json& st);

private:
  using A = acc_t<T>;
  enum class stage { ready, unscaled, stepped }; // torch's OptState

  grad_scaler_options opt_;
  float scale_ = 1.0f;
  std::int64_t tracker_ = 0;
  tensor<A, D> found_inf_dev_;       // this step's flag: 0 or 1
  std::optional<bool> found_inf_;    // its value once read back
  std::int64_t checked_ = 0;         // gradients unscaled this step
  stage stage_ = stage::ready;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {
/// static_cast<float>(x) as IEEE (and the CUDA kernel) rounds it: to nearest even, +-inf past the float range. A C++
/// cast of an out-of-range double is undefined, so the overflow is spelled out.
inline float to_float_rounded(double x) {
  constexpr double overflow = 0x1.ffffffp127; // FLT_MAX + half an ulp: from here on the rounding gives inf
  constexpr float fmax = std::numeric_limits<float>::max();
  constexpr float inf = std::numeric_limits<float>::infinity();
  if (std::abs(x) >= overflow) return x > 0 ? inf : -inf;
  if (std::abs(x) > double(fmax)) return x > 0 ? fmax : -fmax;
  return static_cast<float>(x);
}

inline void check_grad_scaler_factors(double growth, double backoff, std::int64_t interval, const std::string& where) {
  MINIBERT_CHECK(std::isfinite(growth) && growth > 1.0, "grad_scaler",
                 where << "\"growth_factor\" must be a finite number > 1, got " << growth);
  MINIBERT_CHECK(backoff > 0.0 && backoff < 1.0, "grad_scaler",
                 where << "\"backoff_factor\" must be in (0, 1), got " << backoff);
  MINIBERT_CHECK(interval >= 1 && interval <= std::numeric_limits<std::int32_t>::max(), "grad_scaler",
                 where << "\"growth_interval\" must be an integer in [1, 2^31), got " << interval);
}

// the scale as torch stores it: a float32 that is finite and > 0 (a scale of inf or 0 never recovers)
inline float checked_scale(double s, const std::string& where, const char* name) {
  const float f = std::isfinite(s) ? to_float_rounded(s) : 0.0f;
  MINIBERT_CHECK(std::isfinite(f) && f > 0.0f, "grad_scaler",
                 where << "\"" << name << "\" must be a finite float32 > 0, got " << s);
  return f;
}

// st[key] when it is present and a number (an integer when `integer`), else an error naming it
inline const nlohmann::json& scaler_field(const nlohmann::json& st, const char* key, bool integer) {
  MINIBERT_CHECK(st.contains(key), "grad_scaler", "load_state: field \"" << key << "\" is missing");
  const nlohmann::json& v = st[key];
  MINIBERT_CHECK(integer ? v.is_number_integer() : v.is_number(), "grad_scaler",
                 "load_state: field \"" << key << "\" must be " << (integer ? "an integer" : "a number") << ", got "
                                        << v.dump());
  return v;
}
} // namespace detail

template <class T, class D> grad_scaler<T, D>::grad_scaler(grad_scaler_options o) : opt_(o) {
  if (!opt_.enabled) return; // torch validates nothing for a disabled scaler
  detail::check_grad_scaler_factors(opt_.growth_factor, opt_.backoff_factor, opt_.growth_interval, "options: ");
  scale_ = detail::checked_scale(opt_.init_scale, "options: ", "init_scale");
}

template <class T, class D> auto grad_scaler<T, D>::seed_like(const variable_t& loss) const -> tensor_t {
  return full_on<T, D>(loss.shape(), seed_value());
}

template <class T, class D> void grad_scaler<T, D>::unscale(const std::vector<variable_t>& params) {
  if (!opt_.enabled) return;
  MINIBERT_CHECK(stage_ != stage::unscaled, "grad_scaler", "unscale() was already called since the last update()");
  MINIBERT_CHECK(stage_ != stage::stepped, "grad_scaler", "unscale() after step(): call update() first");
  // torch: self._scale.double().reciprocal().float() (fp32 division may be imprecise, so the reciprocal is in fp64)
  const A inv_scale = A(detail::to_float_rounded(1.0 / double(scale_)));
  auto& ctx = current_context<D>();
  if (!found_inf_dev_.defined()) found_inf_dev_ = tensor<A, D>::empty({1});
  backend<D>::fill(ctx, found_inf_dev_.data(), 1, A(0)); // torch: found_inf = torch.full((1,), 0.0) per unscale_
  no_grad guard;
  checked_ = 0; // gradients unscaled
  // scaled in place: a gradient buffer shared by two parameters is first copied, or it would be unscaled twice
  for (const auto& list : detail::owned_grad_lists(params)) {
    backend<D>::non_finite_check_and_unscale(ctx, std::span<const foreach_tensor<T>>(list), inv_scale,
                                             found_inf_dev_.data());
    checked_ += std::int64_t(list.size());
  }
  found_inf_.reset();
  // torch records no inf check without a gradient, and its step() and update() then refuse to run; staying ready
  // gives the same errors here without leaving the scaler stuck between unscale and update
  stage_ = checked_ > 0 ? stage::unscaled : stage::ready;
}

template <class T, class D> void grad_scaler<T, D>::unscale(const adamw<T, D>& opt) {
  std::vector<variable_t> params;
  for (const auto& g : opt.param_groups()) params.insert(params.end(), g.params.begin(), g.params.end());
  unscale(params);
}

template <class T, class D> bool grad_scaler<T, D>::found_inf() {
  if (!opt_.enabled) return false;
  MINIBERT_CHECK(stage_ != stage::ready, "grad_scaler", "found_inf() before unscale() or step()");
  if (!found_inf_) found_inf_ = item(found_inf_dev_) != A(0);
  return *found_inf_;
}

template <class T, class D> bool grad_scaler<T, D>::step(adamw<T, D>& opt, double lr) {
  if (!opt_.enabled) {
    opt.step(lr);
    return true;
  }
  MINIBERT_CHECK(stage_ != stage::stepped, "grad_scaler", "step() was already called since the last update()");
  if (stage_ == stage::ready) unscale(opt);
  MINIBERT_CHECK(stage_ == stage::unscaled, "grad_scaler",
                 "step(): no inf checks were recorded (no parameter has a gradient)");
  const bool ran = !found_inf();
  if (ran) opt.step(lr);
  stage_ = stage::stepped;
  return ran;
}

template <class T, class D> void grad_scaler<T, D>::update() {
  if (!opt_.enabled) return;
  MINIBERT_CHECK(stage_ != stage::ready, "grad_scaler", "update(): no inf checks were recorded since the last update() "
                                                        "(call unscale() or step() first)");
  // AmpKernels.cu's amp_update_scale_cuda_kernel: float scale times a double factor, rounded back to float
  if (found_inf()) {
    scale_ = detail::to_float_rounded(double(scale_) * opt_.backoff_factor);
    tracker_ = 0;
  } else if (tracker_ + 1 == opt_.growth_interval) {
    const float grown = detail::to_float_rounded(double(scale_) * opt_.growth_factor);
    if (std::isfinite(grown)) scale_ = grown; // "Do not grow the scale past fp32 bounds to inf."
    tracker_ = 0;
  } else {
    ++tracker_;
  }
  found_inf_.reset();
  stage_ = stage::ready;
}

template <class T, class D> nlohmann::json grad_scaler<T, D>::state() const {
  if (!opt_.enabled) return nlohmann::json::object();
  return {{"scale", double(scale_)},
          {"growth_factor", opt_.growth_factor},
          {"backoff_factor", opt_.backoff_factor},
          {"growth_interval", opt_.growth_interval},
          {"_growth_tracker", tracker_}};
}

template <class T, class D> void grad_scaler<T, D>::load_state(const nlohmann::json& st) {
  if (!opt_.enabled) return;
  MINIBERT_CHECK(st.is_object(), "grad_scaler", "load_state: the state must be a JSON object, got " << st.type_name());
  MINIBERT_CHECK(!st.empty(), "grad_scaler",
                 "load_state: the state is empty, possibly because it was saved from a disabled scaler");
  const double growth = detail::scaler_field(st, "growth_factor", false).get<double>();
  const double backoff = detail::scaler_field(st, "backoff_factor", false).get<double>();
  const std::int64_t interval = detail::scaler_field(st, "growth_interval", true).get<std::int64_t>();
  detail::check_grad_scaler_factors(growth, backoff, interval, "load_state: ");
  const double scale = detail::scaler_field(st, "scale", false).get<double>();
  const float s = detail::checked_scale(scale, "load_state: ", "scale");
  const std::int64_t tracker = detail::scaler_field(st, "_growth_tracker", true).get<std::int64_t>();
  // the kernel compares tracker + 1 == growth_interval: a tracker at or past the interval would never grow again
  MINIBERT_CHECK(tracker >= 0 && tracker < interval, "grad_scaler",
                 "load_state: \"_growth_tracker\" must be in [0, growth_interval = " << interval << "), got "
                     << tracker);
  opt_.growth_factor = growth;
  opt_.backoff_factor = backoff;
  opt_.growth_interval = interval;
  scale_ = s;
  tracker_ = tracker;
}

} // namespace minibert
