// SPDX-License-Identifier: MIT
// scheduler.hpp: transformers' lr schedules (LambdaLR factors of the base lr), checked against the same functions
// written in another form here: the linear schedule as a slope (base/warmup per step up, base/(total-warmup) per step
// down) rather than a ratio of step counts, the cosine as a half-period cosine of the decay fraction, and the
// reference experiment's logged learning rates (docs: shared/docs/REFERENCE.md). Values agree to a few ulps
// (relative 1e-14); the parity test against PyTorch (test_optimizer_parity.cpp) checks bit equality with transformers'
// own lambda.
#include <doctest/doctest.h>

#include <minibert/scheduler.hpp>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "test_helpers.hpp" // check_error

namespace test_scheduler { // each test file in its own namespace: a test group compiles as one unit

using namespace minibert;

namespace {
constexpr double rel = 1e-14;
// |x - expect| <= rel |expect| (exact when the expected value is 0)
bool close(double x, double expect) { return std::abs(x - expect) <= rel * std::abs(expect); }
} // namespace

TEST_CASE("linear warmup then linear decay: the reference experiment's schedule (2e-5, warmup 500, total 900)") {
  const lr_schedule s{schedule_kind::linear, 2e-5, 500, 900};
  // slope form: +4e-8 per step up to 500, then -5e-8 per step down to 0 at 900
  const double up = 2e-5 / 500, down = 2e-5 / 400;
  for (std::int64_t step : {0, 1, 2, 99, 100, 250, 499, 500, 501, 600, 750, 899, 900}) {
    const double expect = step <= 500 ? up * double(step) : down * double(900 - step);
    CHECK_MESSAGE(close(s.lr_at(step), expect), "step " << step);
  }
  // the table of REFERENCE.md if the scheduler had stepped once per optimizer step
  const std::vector<std::pair<std::int64_t, double>> table = {
      {100, 4e-6}, {200, 8e-6}, {300, 1.2e-5}, {400, 1.6e-5}, {500, 2e-5},
      {600, 1.5e-5}, {700, 1e-5}, {800, 5e-6}, {900, 0.0}};
  for (const auto& row : table) {
    const std::int64_t step = row.first; // not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE
    CHECK_MESSAGE(close(s.lr_at(step), row.second), step);
  }
  CHECK(s.lr_at(0) == 0.0);   // warmup: the first optimizer step runs at lr 0
  CHECK(s.lr_at(900) == 0.0); // and the last scheduler step reaches 0
  CHECK(s.lr_at(1000) == 0.0); // clamped at 0 past the end

  // The run logged 3.92e-6 at step 100, ..., 1.5e-7 at step 900: each value is lr_at(step - k) with k = 2 or 3 skipped
  // steps. With fp16 loss scaling the Trainer does not step the scheduler when the optimizer step was skipped
  // (an overflowed gradient), so the schedule trails the global step: lr_at(98), lr_at(198), lr_at(297), ...
  const std::vector<std::pair<std::int64_t, double>> logged = {
      {100, 3.92e-6}, {200, 7.92e-6}, {300, 1.188e-5}, {400, 1.588e-5}, {500, 1.988e-5},
      {600, 1.515e-5}, {700, 1.015e-5}, {800, 5.15e-6}, {900, 1.5e-7}};
  for (const auto& row : logged) {
    const std::int64_t step = row.first;
    const double lr = row.second;
    int lag = -1;
    for (int k = 0; k <= 5 && lag < 0; ++k)
      if (std::abs(s.lr_at(step - k) - lr) <= 1e-12 * lr) lag = k;
    CHECK_MESSAGE((lag == 2 || lag == 3), "logged lr at step " << step << " is not lr_at(step - 2 or 3)");
  }
}

TEST_CASE("cosine (0.5 cycles), constant, constant_with_warmup, warmup 0") {
  const lr_schedule cos{schedule_kind::cosine, 1.0, 10, 110};
  CHECK(cos.lr_at(0) == 0.0);
  CHECK(cos.lr_at(5) == doctest::Approx(0.5).epsilon(rel));
  CHECK(cos.lr_at(10) == doctest::Approx(1.0).epsilon(rel));
  for (std::int64_t step = 10; step <= 110; step += 7) {
    // decay fraction f in [0, 1]: the lr follows half a cosine period, (1 + cos(pi f)) / 2 = cos^2(pi f / 2)
    const double f = double(step - 10) / 100.0, c = std::cos(std::numbers::pi * f / 2);
    CHECK_MESSAGE(cos.lr_at(step) == doctest::Approx(c * c).epsilon(rel).scale(1.0), "step " << step);
  }
  CHECK(cos.lr_at(60) == doctest::Approx(0.5).epsilon(rel));
  CHECK(cos.lr_at(110) == doctest::Approx(0.0).scale(1.0).epsilon(rel));
  // transformers' cosine is not clamped past the end: the cosine rises again (at 2x the decay length it is back to 1)
  CHECK(cos.lr_at(210) == doctest::Approx(1.0).epsilon(rel));

  const lr_schedule con{schedule_kind::constant, 3e-4, 50, 100}; // warmup is ignored by "constant"
  for (std::int64_t step : {0, 1, 49, 50, 100, 1000}) CHECK(con.lr_at(step) == 3e-4);

  const lr_schedule cw{schedule_kind::constant_with_warmup, 3e-4, 4, 100};
  const std::vector<double> expect = {0.0, 0.75e-4, 1.5e-4, 2.25e-4, 3e-4, 3e-4, 3e-4};
  for (std::size_t i = 0; i < expect.size(); ++i)
    CHECK(close(cw.lr_at(std::int64_t(i)), expect[i]));
  CHECK(cw.lr_at(100000) == 3e-4);

  // no warmup: the first step already runs at the base lr
  const lr_schedule lin0{schedule_kind::linear, 1e-3, 0, 4};
  const std::vector<double> lin_expect = {1e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0};
  for (std::size_t i = 0; i < lin_expect.size(); ++i)
    CHECK(close(lin0.lr_at(std::int64_t(i)), lin_expect[i]));
  // warmup as long as training (transformers divides by max(1, total - warmup))
  const lr_schedule all_warm{schedule_kind::linear, 1.0, 4, 4};
  CHECK(all_warm.lr_at(3) == 0.75);
  CHECK(all_warm.lr_at(4) == 0.0);
}

TEST_CASE("warmup ratio: ceil(total * ratio) in double, as transformers' get_warmup_steps") {
  CHECK(warmup_steps_from_ratio(0.0, 900) == 0);
  CHECK(warmup_steps_from_ratio(0.1, 900) == 90);
  CHECK(warmup_steps_from_ratio(0.06, 1000) == 60);
  CHECK(warmup_steps_from_ratio(0.07, 100) == 8); // 100 * 0.07 = 7.000000000000001 in binary floating point
  CHECK(warmup_steps_from_ratio(0.5, 3) == 2);
  CHECK(warmup_steps_from_ratio(1.0, 900) == 900);
  const lr_schedule s{schedule_kind::linear, 2e-5, warmup_steps_from_ratio(500.0 / 900.0, 900), 900};
  CHECK(s.warmup_steps == 500);
  test::check_error([] { (void)warmup_steps_from_ratio(1.5, 10); }, {"scheduler", "warmup ratio", "1.5"});
  test::check_error([] { (void)warmup_steps_from_ratio(-0.1, 10); }, {"scheduler", "warmup ratio"});
}

TEST_CASE("schedule names: parsed as transformers' lr_scheduler_type, unknown names list the valid ones") {
  CHECK(parse_schedule_kind("linear") == schedule_kind::linear);
  CHECK(parse_schedule_kind("cosine") == schedule_kind::cosine);
  CHECK(parse_schedule_kind("constant") == schedule_kind::constant);
  CHECK(parse_schedule_kind("constant_with_warmup") == schedule_kind::constant_with_warmup);
  for (auto k : {schedule_kind::linear, schedule_kind::cosine, schedule_kind::constant,
                 schedule_kind::constant_with_warmup})
    CHECK(parse_schedule_kind(to_string(k)) == k);
  for (const char* bad : {"Linear", "cosine_with_restarts", "polynomial", ""})
    test::check_error([&] { (void)parse_schedule_kind(bad); },
                      {"scheduler", std::string("'") + bad + "'", "'linear'", "'cosine'", "'constant'",
                       "'constant_with_warmup'"});
}

TEST_CASE("scheduler: LambdaLR stepping, state save and restore, invalid schedules") {
  scheduler s(lr_schedule{schedule_kind::linear, 1e-3, 3, 10});
  std::vector<double> seen;
  for (int i = 0; i < 10; ++i) { // what a trainer does: read the lr, run the optimizer step, then step()
    seen.push_back(s.last_lr());
    s.step();
  }
  CHECK(s.steps_taken() == 10);
  CHECK(s.last_lr() == 0.0);
  CHECK(seen.front() == 0.0);
  CHECK(seen[3] == 1e-3);
  CHECK(seen[1] == doctest::Approx(1e-3 / 3).epsilon(rel));
  CHECK(seen[9] == doctest::Approx(1e-3 / 7).epsilon(rel));

  scheduler resumed(s.schedule());
  resumed.load_state(scheduler_state{4});
  CHECK(resumed.steps_taken() == 4);
  CHECK(resumed.last_lr() == seen[4]);
  CHECK(resumed.state().step == 4);
  test::check_error([&] { resumed.load_state(scheduler_state{-1}); }, {"scheduler", "-1"});

  test::check_error([] { scheduler(lr_schedule{schedule_kind::linear, -1e-3, 0, 10}); }, {"scheduler", "base lr"});
  test::check_error([] { scheduler(lr_schedule{schedule_kind::linear, 1e-3, -2, 10}); }, {"scheduler", "warmup"});
  test::check_error([] { scheduler(lr_schedule{schedule_kind::linear, 1e-3, 0, -10}); }, {"scheduler", "total"});
  test::check_error([] { (void)lr_schedule{schedule_kind::linear, 1e-3, 0, 10}.lr_at(-1); }, {"scheduler", "step -1"});
}

} // namespace test_scheduler
