// SPDX-License-Identifier: MIT
// training/grad_scaler.hpp: fp16 dynamic loss scaling with torch.cuda.amp.GradScaler's semantics (PyTorch 1.13).
//
// Unit tests: the state machine step by step (growth after growth_interval clean steps, backoff and skip on inf,
// -inf and NaN, the tracker reset, growth refused when the scale would become inf, a disabled scaler), unscaling
// (the fp64 reciprocal, a shared gradient buffer unscaled once, unscale -> clip -> step without a second unscale),
// the state_dict round trip and the errors (each names its field; a failed load changes nothing).
//
// Parity, live: tests/python/grad_scaler_reference.py drives the real GradScaler class with accelerate's real
// AcceleratedOptimizer, torch.optim.AdamW (foreach=False) and transformers' get_linear_schedule_with_warmup, on CPU
// tensors (its header lists the four CPU patches: is_available at construction, the two AmpKernels.cu kernels in
// Python, the CUDA assert of _MultiDeviceReplicator, scale(loss) spelled out). Both sides see the same synthetic
// gradients (a sin formula, rounded through float16 as an fp16 backward produces them, so a large scale overflows by
// itself, plus NaN / inf / -inf injected at fixed steps), clip at max_norm, step, update, and step the schedule only
// when the optimizer ran, as transformers' Trainer does. Compared per step: scale before and after update() and the
// growth tracker (exact), skipped (exact), the lr the step used (bit-identical), the clip norm (rtol 1e-6: torch sums
// squares in fp32, minibert in double; both non-finite on skipped steps); then every final parameter and the final
// state_dict (exact). A second run starts at 2^126 with growth_interval 2 and checks growth stopping at 2^127.
//
// Parameter tolerance (fp32; |x - ref| <= atol + rtol |ref|): rtol 1e-6, atol 1e-6. The gradients are bit-identical
// after unscaling (a power-of-two scale multiplies and divides exactly); the sides then differ by the rounding of the
// clip coefficient (fp32 in torch, double rounded to float here) and by torch's fused multiply-adds in AdamW, about
// one ulp per step, on parameters of size ~1 moved by at most lr = 1e-2 per step.
// Measured: main run params max |diff| 6.0e-8 (one ulp; worst ratio 0.032), clip norm max rel 8.5e-8; 6 of 40 steps
// skipped (NaN/inf/-inf injected at steps 1, 4, 20, 33; fp16 overflow at scale 2^14 at steps 27 and 31), 10 growths,
// clipping on 17 of the 34 steps that ran. Float-limit run: params bit-identical, scale stops at 2^127.
//
// Negative controls, run every time and required to FAIL (measured by hand once, and printed on every run):
// stepping the schedule after skipped steps too makes the lr comparison fail from step 2 on (38 of 40 lrs differ);
// running AdamW on skipped steps makes the parameters NaN (worst ratio inf).

#include <cmath>      // isnan, isinf, isfinite, cos, sin
#include <cstdint>    // int64_t
#include <cstdio>     // printf
#include <cstdlib>    // getenv, system
#include <filesystem> // path, create_directories
#include <fstream>    // ifstream, ofstream
#include <limits>     // numeric_limits
#include <map>        // map
#include <string>     // string
#include <tuple>      // tuple
#include <vector>     // vector

#include <nlohmann/json.hpp>

#include <minibert/training/grad_scaler.hpp>
#include <minibert/optimizer.hpp>
#include <minibert/scheduler.hpp>

#include "test_helpers.hpp"

namespace test_grad_scaler { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

using var = variable<float>;
using ftensor = tensor<float>;
using json = nlohmann::json;
constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

// ------------------------------------------------------------------------------------------------ unit-test rig

/// one parameter w (4 values) in one AdamW group, and a scaler
struct rig {
  var w;
  adamw<float> opt;
  grad_scaler<float> scaler;

  explicit rig(grad_scaler_options o, std::vector<float> init = {0.5f, -1.0f, 2.0f, 0.25f})
      : w(ftensor::from(init, {4}), true), opt({{{"w"}, {w}, 0.0}}), scaler(o) {}
  /// the scaled backward of sum(w * g): w.grad = g * scale
  void backward(const std::vector<float>& g) {
    var loss = sum(mul(w, var(ftensor::from(g, {4}))));
    loss.backward(scaler.seed_like(loss));
  }
  /// one step with loss gradient g: backward, step, update, zero_grad; whether AdamW ran
  bool step(const std::vector<float>& g, double lr = 0.1) {
    backward(g);
    const bool ran = scaler.step(opt, lr);
    scaler.update();
    opt.zero_grad();
    return ran;
  }
  std::vector<float> grad() const { return w.grad().to_vector(); }
  std::vector<float> value() const { return w.value().to_vector(); }
  std::int64_t adam_steps() const { return opt.state("w") ? opt.state("w")->step : 0; }
};

const std::vector<float> clean = {1.0f, -2.0f, 3.0f, 0.5f};

/// CHECKs (scale, growth tracker) after each of a sequence of steps; an entry with `inf_at` >= 0 puts `bad` there
struct expected_step {
  int inf_at;
  float bad;
  double scale;
  std::int64_t tracker;
};
void run_sequence(rig& r, const std::vector<expected_step>& seq) {
  for (std::size_t s = 0; s < seq.size(); ++s) {
    std::vector<float> g = clean;
    if (seq[s].inf_at >= 0) g[std::size_t(seq[s].inf_at)] = seq[s].bad;
    const std::int64_t adam_before = r.adam_steps();
    const std::vector<float> w_before = r.value();
    const bool ran = r.step(g);
    INFO("step " << s << " (non-finite at " << seq[s].inf_at << ")");
    CHECK(ran == (seq[s].inf_at < 0));
    CHECK(r.scaler.scale() == seq[s].scale);
    CHECK(r.scaler.growth_tracker() == seq[s].tracker);
    CHECK(r.adam_steps() == adam_before + (ran ? 1 : 0)); // a skipped step leaves AdamW's state alone
    if (!ran) CHECK(r.value() == w_before);               // ... and the weights
  }
}

} // namespace

// ================================================================================================ the state machine

TEST_CASE("grad_scaler: the scale grows by growth_factor after growth_interval clean steps, and only then") {
  rig r({.init_scale = 8.0, .growth_interval = 3});
  CHECK(r.scaler.scale() == 8.0);
  CHECK(r.scaler.growth_tracker() == 0);
  run_sequence(r, {{-1, 0, 8, 1}, {-1, 0, 8, 2}, {-1, 0, 16, 0}, {-1, 0, 16, 1}, {-1, 0, 16, 2}, {-1, 0, 32, 0}});
  rig g3({.init_scale = 8.0, .growth_factor = 3.0, .growth_interval = 1}); // a factor that is not 2, every step
  run_sequence(g3, {{-1, 0, 24, 0}, {-1, 0, 72, 0}});
}

TEST_CASE("grad_scaler: inf and -inf gradients skip the step and back the scale off, the tracker restarts") {
  rig r({.init_scale = 1024.0, .growth_interval = 3});
  run_sequence(r, {{-1, 0, 1024, 1},
                   {-1, 0, 1024, 2},   // one more clean step would grow the scale
                   {1, inf, 512, 0},   // ... but an inf resets the tracker and halves the scale
                   {-1, 0, 512, 1},
                   {-1, 0, 512, 2},
                   {3, -inf, 256, 0},  // -inf at the last element
                   {-1, 0, 256, 1},
                   {-1, 0, 256, 2},
                   {-1, 0, 512, 0}});  // three clean steps after the last skip: growth
  rig half_back({.init_scale = 1024.0, .backoff_factor = 0.25, .growth_interval = 3});
  run_sequence(half_back, {{0, inf, 256, 0}});
}

TEST_CASE("grad_scaler: NaN gradients skip the step like inf, whatever the tracker") {
  rig r({.init_scale = 64.0, .growth_interval = 2});
  run_sequence(r, {{2, qnan, 32, 0}, {-1, 0, 32, 1}, {0, qnan, 16, 0}, {-1, 0, 16, 1}, {-1, 0, 32, 0}});
  for (float v : r.value()) CHECK(std::isfinite(v)); // no NaN ever reached the weights
}

TEST_CASE("grad_scaler: growth that would make the scale inf is refused (the tracker still restarts)") {
  rig r({.init_scale = 0x1p126, .growth_interval = 2});
  const std::vector<float> tiny = {1e-30f, -2e-30f, 3e-30f, 5e-31f}; // scaled: ~1e8, finite
  for (const auto& [scale, tracker] : std::vector<std::pair<double, std::int64_t>>{
           {0x1p126, 1}, {0x1p127, 0}, {0x1p127, 1}, {0x1p127, 0}, {0x1p127, 1}}) {
    CHECK(r.step(tiny));
    CHECK(r.scaler.scale() == scale); // 2^128 is not a float: the scale stays at 2^127
    CHECK(r.scaler.growth_tracker() == tracker);
  }
  // the rounding the kernel's static_cast<float>(double) does, overflow included
  constexpr float fmax = std::numeric_limits<float>::max();
  CHECK(detail::to_float_rounded(double(fmax) + 0x1p98) == fmax); // rounds down to FLT_MAX: a finite growth
  CHECK(detail::to_float_rounded(0x1.ffffffp127) == inf);         // the halfway point rounds to even: inf
  CHECK(detail::to_float_rounded(-1e300) == -inf);
  CHECK(detail::to_float_rounded(1.0 / 3.0) == 1.0f / 3.0f);
}

TEST_CASE("grad_scaler: a disabled scaler has scale 1, never touches gradients and always steps") {
  rig r({.growth_factor = 0.5, .enabled = false}); // options are not validated when disabled, as in torch
  CHECK_FALSE(r.scaler.enabled());
  CHECK(r.scaler.scale() == 1.0);
  CHECK(r.scaler.growth_tracker() == 0);
  r.backward({1.0f, inf, 3.0f, 0.5f});
  r.scaler.unscale(r.opt);
  CHECK_FALSE(r.scaler.found_inf());
  CHECK(r.grad()[0] == 1.0f);
  CHECK(r.scaler.step(r.opt, 0.1)); // runs even with an inf gradient
  r.scaler.update();
  CHECK(std::isnan(r.value()[1])); // and AdamW's inf / inf reached the weight: nothing was skipped
  CHECK(r.scaler.scale() == 1.0);
  CHECK(r.scaler.state() == json::object()); // torch: state_dict() is {} when disabled
  r.scaler.load_state(json{{"scale", "not even a number"}}); // and load_state_dict a no-op
  CHECK(r.scaler.scale() == 1.0);
}

// ================================================================================================ unscaling

TEST_CASE("grad_scaler: the seed is the scale, and unscale multiplies by float(1 / double(scale))") {
  rig r({.init_scale = 3.0}); // not a power of two: the products round
  const ftensor seed = r.scaler.seed_like(sum(r.w));
  CHECK(seed.shape() == sum(r.w).shape());
  CHECK(seed.to_vector() == std::vector<float>{3.0f});
  r.backward(clean);
  for (std::size_t i = 0; i < 4; ++i) CHECK(r.grad()[i] == clean[i] * 3.0f);
  r.scaler.unscale(r.opt);
  const float inv = float(1.0 / 3.0); // torch: self._scale.double().reciprocal().float()
  for (std::size_t i = 0; i < 4; ++i) CHECK(r.grad()[i] == (clean[i] * 3.0f) * inv);
  CHECK_FALSE(r.scaler.found_inf());
}

TEST_CASE("grad_scaler: unscale, clip_grad_norm, step: step does not unscale a second time") {
  rig r({.init_scale = 64.0});
  r.backward({3.0f, 4.0f, 0.0f, 0.0f});
  r.scaler.unscale(r.opt);
  CHECK(r.grad() == std::vector<float>{3.0f, 4.0f, 0.0f, 0.0f});
  CHECK(clip_grad_norm(std::vector<var>{r.w}, 1.0) == doctest::Approx(5.0).epsilon(1e-12));
  const std::vector<float> clipped = r.grad();
  CHECK(clipped[0] == doctest::Approx(0.6).epsilon(1e-6));
  CHECK(r.scaler.step(r.opt, 0.1));
  CHECK(r.grad() == clipped);
  r.scaler.update();
  CHECK(r.scaler.growth_tracker() == 1);
}

TEST_CASE("grad_scaler: a gradient buffer shared by two parameters is unscaled once for each") {
  var a(ftensor::from({1.0f, 2.0f}, {2}), true), b(ftensor::from({0.5f, 0.5f}, {2}), true);
  grad_scaler<float> scaler({.init_scale = 256.0});
  var loss = sum(mul(add(a, b), var(ftensor::from({3.0f, 4.0f}, {2})))); // add hands one buffer to both leaves
  loss.backward(scaler.seed_like(loss));
  scaler.unscale({a, b});
  CHECK(a.grad().to_vector() == std::vector<float>{3.0f, 4.0f});
  CHECK(b.grad().to_vector() == std::vector<float>{3.0f, 4.0f});
}

// ================================================================================================ state and errors

TEST_CASE("grad_scaler: state() is GradScaler.state_dict(), load_state restores it and training continues alike") {
  rig a({.init_scale = 256.0, .growth_interval = 4});
  run_sequence(a, {{-1, 0, 256, 1}, {-1, 0, 256, 2}, {2, inf, 128, 0}, {-1, 0, 128, 1}, {-1, 0, 128, 2}});
  const json st = a.scaler.state();
  CHECK(st == json{{"scale", 128.0},
                   {"growth_factor", 2.0},
                   {"backoff_factor", 0.5},
                   {"growth_interval", 4},
                   {"_growth_tracker", 2}});
  rig b({.init_scale = 1.0, .growth_factor = 3.0, .backoff_factor = 0.25, .growth_interval = 9});
  b.scaler.load_state(json::parse(st.dump())); // through text, as a checkpoint stores it
  CHECK(b.scaler.state() == st);
  CHECK(b.scaler.options().growth_factor == 2.0);
  run_sequence(b, {{-1, 0, 128, 3}, {-1, 0, 256, 0}, {0, qnan, 128, 0}});
  run_sequence(a, {{-1, 0, 128, 3}, {-1, 0, 256, 0}, {0, qnan, 128, 0}});
  // a state as torch writes it (json.dumps(scaler.state_dict()))
  b.scaler.load_state(json::parse(R"({"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                      "growth_interval": 2000, "_growth_tracker": 17})"));
  CHECK(b.scaler.scale() == 32768.0);
  CHECK(b.scaler.growth_tracker() == 17);
}

TEST_CASE("grad_scaler: a malformed state is rejected with the field's name, and nothing changes") {
  rig r({.init_scale = 512.0, .growth_interval = 4});
  r.step(clean);
  const json good = r.scaler.state();
  const std::vector<std::tuple<const char*, json, std::vector<std::string>>> cases = {
      {"scale", nullptr, {"\"scale\"", "missing"}},
      {"scale", "big", {"\"scale\"", "must be a number", "\"big\""}},
      {"scale", -1.0, {"\"scale\"", "finite float32 > 0", "-1"}},
      {"scale", 0.0, {"\"scale\"", "finite float32 > 0"}},
      {"scale", 1e39, {"\"scale\"", "finite float32 > 0", "1e+39"}},
      {"growth_factor", 1.0, {"\"growth_factor\"", "> 1"}},
      {"growth_factor", nullptr, {"\"growth_factor\"", "missing"}},
      {"backoff_factor", 1.5, {"\"backoff_factor\"", "(0, 1)", "1.5"}},
      {"backoff_factor", 0.0, {"\"backoff_factor\"", "(0, 1)"}},
      {"growth_interval", 2.5, {"\"growth_interval\"", "an integer", "2.5"}},
      {"growth_interval", 0, {"\"growth_interval\"", "[1, 2^31)"}},
      {"growth_interval", 1ll << 31, {"\"growth_interval\"", "[1, 2^31)"}},
      {"_growth_tracker", -1, {"\"_growth_tracker\"", "[0, growth_interval = 4)", "-1"}},
      {"_growth_tracker", 4, {"\"_growth_tracker\"", "[0, growth_interval = 4)"}},
      {"_growth_tracker", true, {"\"_growth_tracker\"", "an integer"}},
  };
  for (const auto& [key, value, parts] : cases) {
    json bad = good;
    if (value.is_null()) bad.erase(key);
    else bad[key] = value;
    INFO("state " << bad.dump());
    std::vector<std::string> all{"[minibert.grad_scaler] load_state"};
    all.insert(all.end(), parts.begin(), parts.end());
    bool thrown = false;
    try {
      r.scaler.load_state(bad);
    } catch (const error& e) {
      thrown = true;
      for (const auto& p : all)
        CHECK_MESSAGE(std::string(e.what()).find(p) != std::string::npos, e.what() << " lacks " << p);
    }
    CHECK(thrown);
    CHECK(r.scaler.state() == good); // all or nothing
  }
  test::check_error([&] { r.scaler.load_state(json::object()); }, {"grad_scaler", "empty", "disabled"});
  test::check_error([&] { r.scaler.load_state(json::array()); }, {"grad_scaler", "JSON object", "array"});
  CHECK(r.scaler.state() == good);
}

TEST_CASE("grad_scaler: calls out of order and bad options are errors, as torch's RuntimeErrors") {
  rig r({.init_scale = 16.0});
  test::check_error([&] { r.scaler.update(); }, {"grad_scaler", "update()", "no inf checks"});
  test::check_error([&] { r.scaler.found_inf(); }, {"grad_scaler", "found_inf() before unscale()"});
  test::check_error([&] { r.scaler.step(r.opt, 0.1); },
                    {"grad_scaler", "no inf checks", "no parameter has a gradient"});
  test::check_error([&] { r.scaler.update(); }, {"grad_scaler", "update()", "no inf checks"}); // still nothing
  r.backward(clean);
  r.scaler.unscale(r.opt);
  test::check_error([&] { r.scaler.unscale(r.opt); }, {"grad_scaler", "already called since the last update()"});
  CHECK(r.scaler.step(r.opt, 0.1));
  test::check_error([&] { r.scaler.step(r.opt, 0.1); }, {"grad_scaler", "step() was already called"});
  test::check_error([&] { r.scaler.unscale(r.opt); }, {"grad_scaler", "unscale() after step()"});
  r.scaler.update();
  CHECK(r.grad() == clean); // unscaled exactly once

  using opts = grad_scaler_options;
  test::check_error([] { grad_scaler<float>(opts{.growth_factor = 1.0}); },
                    {"grad_scaler", "\"growth_factor\"", "> 1"});
  test::check_error([] { grad_scaler<float>(opts{.backoff_factor = 1.0}); }, {"grad_scaler", "\"backoff_factor\""});
  test::check_error([] { grad_scaler<float>(opts{.growth_interval = 0}); }, {"grad_scaler", "\"growth_interval\""});
  test::check_error([] { grad_scaler<float>(opts{.init_scale = 0.0}); }, {"grad_scaler", "\"init_scale\"", "> 0"});
  test::check_error([] { grad_scaler<float>(opts{.init_scale = 1e39}); }, {"grad_scaler", "\"init_scale\""});
  test::check_error([] { grad_scaler<float>(opts{.init_scale = std::numeric_limits<double>::infinity()}); },
                    {"grad_scaler", "\"init_scale\""});
}

// ================================================================================================ parity with torch

namespace {

std::string python() {
  const char* env = std::getenv("MINIBERT_PYTHON");
  return env && *env ? env : MINIBERT_TEST_PYTHON;
}

/// true after printing the skip line when the python with torch, transformers and accelerate is not there
bool skip_without_reference() {
  const std::string cmd = python() + " -c \"import torch, transformers, accelerate\" > /dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0) return false;
  const auto* tc = doctest::getContextOptions()->currentTest;
  std::printf("[minibert-skip] %s: %s cannot import torch, transformers and accelerate (set MINIBERT_PYTHON)\n",
              tc ? tc->m_name : "grad_scaler parity", python().c_str());
  return true;
}

json main_spec() {
  return {{"dtype", "float32"},
          {"steps", 40},
          {"scaler", {{"init_scale", 1024.0}, {"growth_factor", 2.0}, {"backoff_factor", 0.5}, {"growth_interval", 3}}},
          {"lr", 1e-2},
          {"warmup_steps", 5},
          {"max_grad_norm", 22.5}, // the gradient norms lie between 22.0 and 22.9: clipped on some steps only
          {"magnitude", 6.0},      // 6 * 16384 > 65504: at scale 2^14 the fp16 gradients overflow by themselves
          {"fp16_grads", true},
          {"params",
           {{{"name", "w"}, {"shape", {4, 5}}, {"weight_decay", 0.01}},
            {{"name", "b"}, {"shape", {5}}, {"weight_decay", 0.0}},
            {{"name", "c"}, {"shape", {3}}, {"weight_decay", 0.0}}}},
          // NaN, inf and -inf at the first, last and a middle element of a parameter, one with the tracker mid-way
          {"inject",
           {{{"step", 1}, {"param", 0}, {"index", 0}, {"value", "nan"}},
            {{"step", 4}, {"param", 2}, {"index", 2}, {"value", "inf"}},
            {{"step", 20}, {"param", 1}, {"index", 2}, {"value", "-inf"}},
            {{"step", 33}, {"param", 0}, {"index", 19}, {"value", "nan"}}}}};
}

json run_reference(const json& spec, const std::string& name) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "grad_scaler_parity" / name;
  fs::create_directories(d);
  std::ofstream(d / "spec.json") << spec.dump();
  const std::string cmd = python() + " " + MINIBERT_TEST_SOURCE_DIR + "/python/grad_scaler_reference.py --spec " +
                          (d / "spec.json").string() + " > " + (d / "reference.json").string();
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
  return json::parse(std::ifstream(d / "reference.json"));
}

/// the reference's value formulas, in double with every product rounded on its own (as Python evaluates them; a
/// -march=native build would otherwise fuse a*b + c), then rounded to float once
double r(double x) {
  volatile double v = x;
  return v;
}
float initial_value(std::int64_t k, std::int64_t i) {
  return float(std::cos(r(0.37 * double(i)) + r(1.1 * double(k))));
}
float gradient(double magnitude, std::int64_t s, std::int64_t k, std::int64_t i) {
  const double arg = r(r(0.7 * double(s)) + r(1.3 * double(i))) + r(0.5 * double(k));
  return float(magnitude * std::sin(arg));
}

enum class control { none, schedule_on_skip, no_skip };

struct trace {
  std::vector<double> scale_before, scale, lr, norm;
  std::vector<std::int64_t> tracker;
  std::vector<bool> skipped;
  std::map<std::string, std::vector<double>> params;
  json state;
};

/// what the reference does, with minibert: the Trainer's step with fp16 loss scaling
trace run_minibert(const json& spec, control c) {
  std::vector<var> params;
  std::vector<param_group<float>> groups;
  for (std::size_t k = 0; k < spec["params"].size(); ++k) {
    const auto& p = spec["params"][k];
    const auto shp = p["shape"].get<std::vector<std::int64_t>>();
    std::vector<float> v(std::size_t(shape(shp).numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = initial_value(std::int64_t(k), std::int64_t(i));
    params.emplace_back(ftensor::from(v, shape(shp)), true);
    groups.push_back({{p["name"].get<std::string>()}, {params.back()}, p["weight_decay"].get<double>()});
  }
  adamw<float> opt(groups);
  const std::int64_t steps = spec["steps"].get<std::int64_t>();
  scheduler sched(lr_schedule{schedule_kind::linear, spec["lr"].get<double>(), spec["warmup_steps"].get<std::int64_t>(),
                              steps});
  const auto& so = spec["scaler"];
  grad_scaler<float> scaler({so["init_scale"].get<double>(), so["growth_factor"].get<double>(),
                             so["backoff_factor"].get<double>(), so["growth_interval"].get<std::int64_t>()});
  std::map<std::tuple<std::int64_t, std::size_t, std::size_t>, float> inject;
  for (const auto& j : spec["inject"])
    inject[{j["step"].get<std::int64_t>(), j["param"].get<std::size_t>(), j["index"].get<std::size_t>()}] =
        std::stof(j["value"].get<std::string>());

  const double magnitude = spec["magnitude"].get<double>();
  trace t;
  for (std::int64_t s = 0; s < steps; ++s) {
    var loss;
    for (std::size_t k = 0; k < params.size(); ++k) {
      std::vector<float> g(std::size_t(params[k].numel()));
      for (std::size_t i = 0; i < g.size(); ++i) {
        const auto it = inject.find({s, k, i});
        g[i] = it != inject.end() ? it->second : gradient(magnitude, s, std::int64_t(k), std::int64_t(i));
      }
      var term = sum(mul(params[k], var(ftensor::from(g, params[k].shape()))));
      loss = k == 0 ? term : add(loss, term);
    }
    t.scale_before.push_back(scaler.scale());
    loss.backward(scaler.seed_like(loss));
    if (spec["fp16_grads"].get<bool>()) // the gradient an fp16 backward would have produced
      for (auto& p : params) {
        const ftensor& g = detail::owned_contiguous_grad(p);
        for (std::int64_t i = 0; i < g.numel(); ++i) g.data()[i] = float(half(g.data()[i]));
      }
    scaler.unscale(opt);
    t.norm.push_back(clip_grad_norm(params, spec["max_grad_norm"].get<double>()));
    t.lr.push_back(sched.last_lr());
    bool ran = true;
    if (c == control::no_skip) opt.step(t.lr.back());
    else ran = scaler.step(opt, t.lr.back());
    scaler.update();
    if (ran || c == control::schedule_on_skip) sched.step();
    opt.zero_grad();
    t.scale.push_back(scaler.scale());
    t.tracker.push_back(scaler.growth_tracker());
    t.skipped.push_back(!ran);
  }
  for (std::size_t k = 0; k < params.size(); ++k) {
    const auto v = params[k].value().to_vector();
    t.params[spec["params"][k]["name"].get<std::string>()] = std::vector<double>(v.begin(), v.end());
  }
  t.state = scaler.state();
  return t;
}

struct param_verdict {
  double worst = 0, max_abs = 0; // worst |x - ref| / (atol + rtol |ref|) (inf for NaN): <= 1 passes
  std::string where;
};
param_verdict compare_params(const trace& t, const json& ref, double rtol, double atol) {
  param_verdict v;
  for (const auto& [name, x] : t.params) {
    const auto want = ref["params"][name].get<std::vector<double>>();
    REQUIRE(want.size() == x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double d = std::abs(x[i] - want[i]);
      const double ratio = std::isnan(d) ? INFINITY : d / (atol + rtol * std::abs(want[i]));
      v.max_abs = std::isnan(d) ? INFINITY : std::max(v.max_abs, d);
      if (ratio > v.worst || (ratio == INFINITY && v.where.empty())) {
        v.worst = ratio;
        v.where = name + "[" + std::to_string(i) + "]: " + std::to_string(x[i]) + " vs " + std::to_string(want[i]);
      }
    }
  }
  return v;
}

/// the first step whose value differs, or -1
template <class V, class F> int first_difference(const V& ours, const json& steps, const char* key, F same) {
  for (std::size_t s = 0; s < ours.size(); ++s)
    if (!same(ours[s], steps[s][key])) return int(s);
  return -1;
}

/// CHECKs scale, tracker, skipped, lr and clip norm step by step; prints the trace
void compare_steps(const trace& t, const json& ref) {
  const json& steps = ref["steps"];
  REQUIRE(steps.size() == t.scale.size());
  auto exact = [](double a, const json& b) { return a == b.get<double>(); };
  auto same_int = [](std::int64_t a, const json& b) { return a == b.get<std::int64_t>(); };
  auto same_bool = [](bool a, const json& b) { return a == b.get<bool>(); };
  CHECK(first_difference(t.scale_before, steps, "scale_before", exact) == -1);
  CHECK(first_difference(t.scale, steps, "scale", exact) == -1);
  CHECK(first_difference(t.lr, steps, "lr", exact) == -1);
  CHECK(first_difference(t.tracker, steps, "growth_tracker", same_int) == -1);
  CHECK(first_difference(t.skipped, steps, "skipped", same_bool) == -1);
  double worst_norm = 0;
  for (std::size_t s = 0; s < t.norm.size(); ++s) {
    const json& n = steps[s]["grad_norm"];
    INFO("step " << s << ": clip norm " << t.norm[s] << " vs " << n.dump());
    if (n.is_null()) {
      CHECK_FALSE(std::isfinite(t.norm[s]));
      continue;
    }
    worst_norm = std::max(worst_norm, std::abs(t.norm[s] / n.get<double>() - 1.0));
  }
  CHECK(worst_norm <= 1e-6);
  std::printf("[grad_scaler parity] step: scale before -> after (tracker) skipped lr\n");
  for (std::size_t s = 0; s < t.scale.size(); ++s) {
    const json& q = steps[s];
    std::printf("[grad_scaler parity] %2zu: %8g -> %8g (%lld) %s lr %.6g | torch %8g -> %8g (%lld) %s lr %.6g\n", s,
                t.scale_before[s], t.scale[s], (long long)t.tracker[s], t.skipped[s] ? "SKIP" : "ran ", t.lr[s],
                q["scale_before"].get<double>(), q["scale"].get<double>(),
                (long long)q["growth_tracker"].get<std::int64_t>(), q["skipped"].get<bool>() ? "SKIP" : "ran ",
                q["lr"].get<double>());
  }
  std::printf("[grad_scaler parity] clip norm: max relative difference %.3g\n", worst_norm);
}

} // namespace

TEST_CASE("grad_scaler parity: 40 Trainer steps against torch's GradScaler, and the negative controls fail") {
  if (skip_without_reference()) return;
  const json spec = main_spec();
  const json ref = run_reference(spec, "main");
  const trace t = run_minibert(spec, control::none);
  compare_steps(t, ref);
  const param_verdict p = compare_params(t, ref, 1e-6, 1e-6);
  std::printf("[grad_scaler parity] final parameters: worst ratio %.3g, max |diff| %.3g (worst at %s)\n", p.worst,
              p.max_abs, p.where.c_str());
  CHECK(p.worst <= 1.0);
  CHECK(t.state == ref["state_dict"]);
  grad_scaler<float> loaded;
  loaded.load_state(ref["state_dict"]); // torch's state_dict, as json.dumps wrote it
  CHECK(loaded.state() == t.state);

  // the run exercises what it claims to: fp16 overflows, injected non-finite values, growth, clipping on some steps
  int skipped = 0, grown = 0, clipped = 0;
  for (std::size_t s = 0; s < t.scale.size(); ++s) {
    skipped += t.skipped[s];
    grown += t.scale[s] > t.scale_before[s];
    clipped += std::isfinite(t.norm[s]) && t.norm[s] > spec["max_grad_norm"].get<double>();
  }
  std::printf("[grad_scaler parity] %d skipped, %d growths, %d of %d finite steps clipped\n", skipped, grown, clipped,
              int(t.scale.size()) - skipped);
  CHECK(skipped >= 6); // 4 injected + fp16 overflows at scale 2^14
  CHECK(grown >= 5);
  CHECK(clipped > 0);
  CHECK(clipped < int(t.scale.size()) - skipped);

  // negative controls: each must break the comparison it targets
  const trace sched_on_skip = run_minibert(spec, control::schedule_on_skip);
  const int lr_diff = first_difference(sched_on_skip.lr, ref["steps"], "lr",
                                       [](double a, const json& b) { return a == b.get<double>(); });
  int lr_diffs = 0;
  for (std::size_t s = 0; s < sched_on_skip.lr.size(); ++s)
    lr_diffs += sched_on_skip.lr[s] != ref["steps"][s]["lr"].get<double>();
  std::printf("[grad_scaler parity] control, schedule stepped on skipped steps: first lr difference at step %d, %d of "
              "%zu lrs differ\n",
              lr_diff, lr_diffs, sched_on_skip.lr.size());
  CHECK(lr_diff >= 0);
  const trace no_skip = run_minibert(spec, control::no_skip);
  const param_verdict pn = compare_params(no_skip, ref, 1e-6, 1e-6);
  std::printf("[grad_scaler parity] control, AdamW run on skipped steps: worst ratio %.3g (at %s)\n", pn.worst,
              pn.where.c_str());
  CHECK(pn.worst > 1.0);
}

TEST_CASE("grad_scaler parity: growth stops at 2^127 (the next growth would be inf), as torch's kernel") {
  if (skip_without_reference()) return;
  json spec = main_spec();
  spec["steps"] = 8;
  spec["scaler"]["init_scale"] = 0x1p126;
  spec["scaler"]["growth_interval"] = 2;
  spec["magnitude"] = 1e-15; // scaled by 2^127: ~1.7e23, a finite float
  spec["fp16_grads"] = false;
  spec["max_grad_norm"] = 1.0;
  spec["inject"] = json::array();
  const json ref = run_reference(spec, "float_limit");
  const trace t = run_minibert(spec, control::none);
  compare_steps(t, ref);
  CHECK(t.scale.back() == 0x1p127);
  const param_verdict p = compare_params(t, ref, 1e-6, 1e-6);
  std::printf("[grad_scaler parity] float limit: final parameters worst ratio %.3g, max |diff| %.3g\n", p.worst,
              p.max_abs);
  CHECK(p.worst <= 1.0);
  CHECK(t.state == ref["state_dict"]);
}

} // namespace test_grad_scaler
