// SPDX-License-Identifier: MIT
// cpu::gemm and cpu::gemm_batched against a naive double-precision loop: all four transpose combinations,
// alpha in {1, 0.125}, beta in {0, 1, 0.5}, odd shapes with leading dimensions larger than the rows, C's
// padding left untouched, beta = 0 ignoring NaNs already in C, strided batches, calls from inside an
// OpenMP parallel region, and bitwise-reproducible results across repeated calls, thread counts and sizes.
//
// TOLERANCE. Each element of C is a dot product of length K; its rounding error is bounded by about
// K eps_f32 sum_k |a_ik b_kj| in the worst case and ~sqrt(K) eps in practice. An element passes when
//   |c - ref| <= rtol * (|alpha| sum_k |a_ik||b_kj| + |beta c0_ij|),  rtol = 1e-5 (fp32), 1e-12 (fp64),
// i.e. relative to the magnitude of the terms summed, not to the (possibly cancelling) result. The
// reference is computed in double from the exact fp32 inputs, so the error measured is the GEMM's alone.

#include <algorithm> // max
#include <cmath>   // abs, isfinite, nan
#include <fstream> // ifstream (/proc/cpuinfo)
#include <string>  // string
#include <cstdint> // int64_t, uint64_t
#include <cstdio>  // printf
#include <limits>  // quiet_NaN
#include <vector>  // vector

#include <doctest/doctest.h>

#include <minibert/cpu/gemm.hpp>
#include <minibert/precision.hpp>
#if defined(_OPENMP)
#include <omp.h> // omp_get_max_threads, omp_set_num_threads, omp_get_thread_num
#endif

namespace test_gemm { // each test file in its own namespace: a test group compiles as one unit

namespace {

using i64 = std::int64_t;

// splitmix64, uniform in [-1, 1)
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double uniform() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return -1.0 + 2.0 * double(z >> 11) * 0x1.0p-53;
  }
};

template <class T> std::vector<T> random_vector(i64 n, std::uint64_t seed) {
  rng r(seed);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = T(r.uniform());
  return v;
}

template <class T> constexpr double gemm_rtol = sizeof(T) == 4 ? 1e-5 : 1e-12;

// One GEMM problem with padded leading dimensions (ld = cols + pad).
struct problem {
  bool ta, tb;
  i64 M, N, K, pad;
  i64 lda() const { return (ta ? M : K) + pad; }
  i64 ldb() const { return (tb ? K : N) + pad + 1; }
  i64 ldc() const { return N + pad + 2; }
  i64 a_size() const { return (ta ? K : M) * lda(); }
  i64 b_size() const { return (tb ? N : K) * ldb(); }
  i64 c_size() const { return M * ldc(); }
};

// Naive op(A) op(B) in double: dot (M,N) and the sum of |terms| (M,N) for the tolerance.
template <class T>
void reference_product(const problem& p, const T* A, const T* B, std::vector<double>& dot, std::vector<double>& mag) {
  dot.assign(std::size_t(p.M * p.N), 0.0);
  mag.assign(std::size_t(p.M * p.N), 0.0);
  for (i64 i = 0; i < p.M; ++i)
    for (i64 j = 0; j < p.N; ++j) {
      double s = 0, a = 0;
      for (i64 k = 0; k < p.K; ++k) {
        const double x = p.ta ? A[k * p.lda() + i] : A[i * p.lda() + k];
        const double y = p.tb ? B[j * p.ldb() + k] : B[k * p.ldb() + j];
        s += x * y;
        a += std::abs(x * y);
      }
      dot[std::size_t(i * p.N + j)] = s;
      mag[std::size_t(i * p.N + j)] = a;
    }
}

// Checks C against alpha * dot + beta * C0 and that C's padding columns still hold C0's values.
template <class T>
void check_result(const problem& p, T alpha, T beta, const std::vector<T>& C0, const T* C,
                  const std::vector<double>& dot, const std::vector<double>& mag) {
  double worst = 0; // max |c - ref| / bound
  i64 failures = 0, pad_changed = 0;
  for (i64 i = 0; i < p.M; ++i) {
    for (i64 j = 0; j < p.N; ++j) {
      const std::size_t r = std::size_t(i * p.N + j);
      const double c0 = C0[std::size_t(i * p.ldc() + j)];
      const double ref = double(alpha) * dot[r] + (beta != T(0) ? double(beta) * c0 : 0.0);
      const double bound =
          gemm_rtol<T> * (std::abs(double(alpha)) * mag[r] + (beta != T(0) ? std::abs(double(beta) * c0) : 0.0)) +
          1e-30;
      const double err = std::abs(double(C[i * p.ldc() + j]) - ref);
      if (!(err <= bound)) ++failures; // also catches NaN
      if (err / bound > worst) worst = err / bound;
    }
    for (i64 j = p.N; j < p.ldc(); ++j)
      if (C[i * p.ldc() + j] != C0[std::size_t(i * p.ldc() + j)]) ++pad_changed;
  }
  INFO("M=", p.M, " N=", p.N, " K=", p.K, " ta=", p.ta, " tb=", p.tb, " alpha=", alpha, " beta=", beta,
       " worst err/bound=", worst);
  CHECK(failures == 0);
  CHECK(pad_changed == 0);
}

// Runs every alpha/beta combination for one problem (one reference product for all of them).
template <class T> void check_problem(const problem& p, std::uint64_t seed) {
  const std::vector<T> A = random_vector<T>(p.a_size(), seed), B = random_vector<T>(p.b_size(), seed + 1);
  const std::vector<T> C0 = random_vector<T>(p.c_size(), seed + 2);
  std::vector<double> dot, mag;
  reference_product(p, A.data(), B.data(), dot, mag);
  for (T beta : {T(0), T(1), T(0.5)})
    for (T alpha : {T(1), T(0.125)}) {
      std::vector<T> C = C0;
      // beta = 0 must not read C: poison the part the GEMM overwrites (C0 keeps the padding's values).
      if (beta == T(0))
        for (i64 i = 0; i < p.M; ++i)
          for (i64 j = 0; j < p.N; ++j) C[std::size_t(i * p.ldc() + j)] = std::numeric_limits<T>::quiet_NaN();
      minibert::cpu::gemm<T>(p.ta, p.tb, p.M, p.N, p.K, alpha, A.data(), p.lda(), B.data(), p.ldb(), beta, C.data(),
                             p.ldc());
      check_result(p, alpha, beta, C0, C.data(), dot, mag);
    }
}

struct dims {
  i64 M, N, K, pad;
};

// f(problem) for every shape in all four transpose combinations, the shape captured for failure messages
template <std::size_t S, class F> void for_each_problem(const dims (&shapes)[S], F&& f) {
  for (const dims& d : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        CAPTURE(d.M);
        CAPTURE(d.N);
        CAPTURE(d.K);
        f(problem{ta != 0, tb != 0, d.M, d.N, d.K, d.pad});
      }
}

// A product at a reduced matmul precision: C must be the fp32-accumulated product of the operands rounded to that
// precision (reference: a double loop over the rounded operands, fp32's tolerance), and must differ from the
// unrounded product by more than that tolerance somewhere (so the rounding really happened). Returns the largest
// |C - unrounded product| / sum |terms|.
double check_reduced_precision(const problem& p, minibert::matmul_precision prec, std::uint64_t seed) {
  std::vector<float> A = random_vector<float>(p.a_size(), seed), B = random_vector<float>(p.b_size(), seed + 1);
  std::vector<float> Ar = A, Br = B;
  for (float& x : Ar) x = minibert::round_to_precision(prec, x);
  for (float& x : Br) x = minibert::round_to_precision(prec, x);
  std::vector<double> dot, mag, exact_dot, exact_mag;
  reference_product(p, Ar.data(), Br.data(), dot, mag);
  reference_product(p, A.data(), B.data(), exact_dot, exact_mag);
  const std::vector<float> C0 = random_vector<float>(p.c_size(), seed + 2);
  std::vector<float> C = C0;
  minibert::cpu::gemm<float>(p.ta, p.tb, p.M, p.N, p.K, 1.0f, A.data(), p.lda(), B.data(), p.ldb(), 0.0f, C.data(),
                             p.ldc(), prec);
  check_result<float>(p, 1.0f, 0.0f, C0, C.data(), dot, mag);
  double from_exact = 0;
  for (i64 i = 0; i < p.M; ++i)
    for (i64 j = 0; j < p.N; ++j) {
      const std::size_t r = std::size_t(i * p.N + j);
      from_exact = std::max(from_exact, std::abs(double(C[std::size_t(i * p.ldc() + j)]) - exact_dot[r]) / exact_mag[r]);
    }
  return from_exact;
}

} // namespace

TEST_CASE_TEMPLATE("gemm: 4 transposes x alpha {1, 0.125} x beta {0, 1, 0.5} against a double loop", T, float,
                   double) {
  // 128x128x64 with a wide ld is the attention shape (q, k read from a (T, 3C) projection); 300x200x770
  // crosses the k-block size and runs threaded; 1x1x1 and the odd sizes hit every edge-tile kernel.
  const dims shapes[] = {{1, 1, 1, 0}, {17, 33, 5, 3}, {63, 65, 129, 1}, {128, 128, 64, 2 * 128 + 64},
                         {300, 200, 770, 5}};
  std::uint64_t seed = 1;
  for_each_problem(shapes, [&](const problem& p) { check_problem<T>(p, seed += 3); });
}

TEST_CASE("gemm: fp32 B larger than one packed block (split along N, K or both), K = 0 and empty shapes") {
  // A packed B block holds at most 2M floats: 384 x 5600 is packed as 2 column blocks, 4000 x 700 as 2 k
  // ranges (accumulated onto C in order), 3000 x 3000 as 2 column blocks x 3 k ranges.
  for (const dims& d : {dims{7, 5600, 384, 1}, dims{13, 700, 4000, 1}, dims{5, 3000, 3000, 2}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const problem p{ta != 0, tb != 0, d.M, d.N, d.K, d.pad};
        const std::vector<float> A = random_vector<float>(p.a_size(), 7), B = random_vector<float>(p.b_size(), 8);
        const std::vector<float> C0 = random_vector<float>(p.c_size(), 9);
        std::vector<double> dot, mag;
        reference_product(p, A.data(), B.data(), dot, mag);
        std::vector<float> C = C0;
        minibert::cpu::gemm<float>(p.ta, p.tb, p.M, p.N, p.K, 0.5f, A.data(), p.lda(), B.data(), p.ldb(), 0.5f,
                                   C.data(), p.ldc());
        check_result(p, 0.5f, 0.5f, C0, C.data(), dot, mag);
      }
  }
  // K = 0: C = beta C (beta = 0 zeroes it, even over NaNs); M = 0 or N = 0: nothing happens.
  std::vector<float> C = {1.f, 2.f, 3.f, std::numeric_limits<float>::quiet_NaN()};
  minibert::cpu::gemm<float>(false, false, 1, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2);
  CHECK(C[0] == 0.5f);
  CHECK(C[1] == 1.f);
  minibert::cpu::gemm<float>(false, false, 1, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, C.data() + 2, 2);
  CHECK(C[2] == 0.f);
  CHECK(C[3] == 0.f);
  minibert::cpu::gemm<float>(false, false, 0, 2, 3, 1.f, nullptr, 3, nullptr, 2, 0.f, C.data(), 2);
  minibert::cpu::gemm<float>(false, false, 2, 0, 3, 1.f, nullptr, 3, nullptr, 2, 0.f, C.data(), 2);
  CHECK(C[0] == 0.5f);
}

TEST_CASE("gemm_batched: strided batches, small (one per thread) and large (threaded inside)") {
  struct batch_case {
    bool ta, tb;
    i64 M, N, K, batch;
  };
  // 24x40x17: per-thread path (flops < 2^24); 160x192x300: each product threaded inside gemm.
  for (const batch_case& bc : {batch_case{false, true, 24, 40, 17, 7}, batch_case{true, false, 24, 40, 17, 5},
                               batch_case{false, false, 160, 192, 300, 3}, batch_case{true, true, 160, 192, 300, 2}}) {
    const problem p{bc.ta, bc.tb, bc.M, bc.N, bc.K, 3};
    // strides larger than one matrix, so batches are not contiguous
    const i64 sa = p.a_size() + 11, sb = p.b_size() + 5, sc = p.c_size() + 7;
    const std::vector<float> A = random_vector<float>(sa * bc.batch, 21), B = random_vector<float>(sb * bc.batch, 22);
    const std::vector<float> C0 = random_vector<float>(sc * bc.batch, 23);
    std::vector<float> C = C0;
    minibert::cpu::gemm_batched<float>(p.ta, p.tb, p.M, p.N, p.K, 0.125f, A.data(), p.lda(), sa, B.data(), p.ldb(), sb,
                                       0.5f, C.data(), p.ldc(), sc, bc.batch);
    for (i64 b = 0; b < bc.batch; ++b) {
      std::vector<double> dot, mag;
      reference_product(p, A.data() + b * sa, B.data() + b * sb, dot, mag);
      const std::vector<float> c0(C0.begin() + b * sc, C0.begin() + b * sc + p.c_size());
      CAPTURE(b);
      check_result(p, 0.125f, 0.5f, c0, C.data() + b * sc, dot, mag);
      // the gap between matrices is untouched
      if (b + 1 < bc.batch)
        for (i64 g = b * sc + p.c_size(); g < (b + 1) * sc; ++g) CHECK(C[std::size_t(g)] == C0[std::size_t(g)]);
    }
  }
}

TEST_CASE("gemm: called from inside an OpenMP parallel region (as attention does)") {
  const problem p{false, true, 128, 64, 96, 64};
  const std::vector<float> A = random_vector<float>(p.a_size(), 31), B = random_vector<float>(p.b_size(), 32);
  const std::vector<float> C0 = random_vector<float>(p.c_size(), 33);
  std::vector<double> dot, mag;
  reference_product(p, A.data(), B.data(), dot, mag);
  const int copies = 4;
  std::vector<std::vector<float>> C(copies, C0);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static, 1) num_threads(2)
#endif
  for (int t = 0; t < copies; ++t)
    minibert::cpu::gemm<float>(p.ta, p.tb, p.M, p.N, p.K, 1.f, A.data(), p.lda(), B.data(), p.ldb(), 0.f,
                               C[std::size_t(t)].data(), p.ldc());
  for (int t = 0; t < copies; ++t) check_result(p, 1.f, 0.f, C0, C[std::size_t(t)].data(), dot, mag);
}

TEST_CASE("gemm: fp32 results are bitwise reproducible across calls, thread counts and matrix sizes") {
  // Every element of C is summed by one thread in a fixed k order that depends on K alone, whatever the
  // thread count, the schedule, or how M and N are blocked.
  const problem p{false, true, 515, 300, 800, 0};
  const std::vector<float> A = random_vector<float>(p.a_size(), 41), B = random_vector<float>(p.b_size(), 42);
  auto run = [&] {
    std::vector<float> C(std::size_t(p.c_size()));
    minibert::cpu::gemm<float>(p.ta, p.tb, p.M, p.N, p.K, 1.f, A.data(), p.lda(), B.data(), p.ldb(), 0.f, C.data(),
                               p.ldc());
    return C;
  };
  const std::vector<float> first = run();
  CHECK(run() == first);
#if defined(__AVX512F__) // the Eigen fallback makes no promise across sizes or thread counts
  // a 100 x 64 corner of the same product, computed on its own (other units, other blocking of M and N)
  std::vector<float> corner(100 * 64);
  minibert::cpu::gemm<float>(p.ta, p.tb, 100, 64, p.K, 1.f, A.data(), p.lda(), B.data(), p.ldb(), 0.f, corner.data(),
                             64);
  i64 differ = 0;
  for (i64 i = 0; i < 100; ++i)
    for (i64 j = 0; j < 64; ++j) differ += corner[std::size_t(i * 64 + j)] != first[std::size_t(i * p.ldc() + j)];
  CHECK(differ == 0);
#endif
#if defined(_OPENMP) && defined(__AVX512F__)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> single = run();
  omp_set_num_threads(threads);
  CHECK(single == first);
#endif
}

TEST_CASE("gemm: bf16 and fp16 precision multiply the rounded operands with fp32 accumulation (both bf16 kernels)") {
  // odd K (a bf16 pair padded with zero), K across k blocks, the attention shape with a wide ld, and a B larger
  // than one packed block (split along N and K)
  const dims shapes[] = {{1, 1, 1, 0}, {17, 33, 5, 3}, {63, 65, 129, 1}, {128, 128, 64, 2 * 128 + 64},
                         {300, 200, 771, 5}, {40, 1100, 2100, 0}};
  struct mode {
    const char* name;
    minibert::matmul_precision prec;
    bool bf16_kernel;
  };
  const mode modes[] = {{"bf16 (vdpbf16ps where the CPU has it)", minibert::matmul_precision::bf16, true},
                        {"bf16 emulated (fp32 kernel on rounded operands)", minibert::matmul_precision::bf16, false},
                        {"fp16 (rounded operands)", minibert::matmul_precision::fp16, true}};
  for (const mode& m : modes) {
    CAPTURE(m.name);
    minibert::cpu::detail::bf16_kernel_enabled() = m.bf16_kernel;
    std::uint64_t seed = 100;
    double worst_from_exact = 0;
    for_each_problem(shapes, [&](const problem& p) {
      worst_from_exact = std::max(worst_from_exact, check_reduced_precision(p, m.prec, seed += 3));
    });
    // operands in [-1, 1) rounded to 8 (bf16) or 11 (fp16) significant bits move products by up to ~2^-8 / 2^-11
    // of the terms' magnitude: far beyond fp32's 1e-5
    CHECK_MESSAGE(worst_from_exact > 1e-4, m.name << ": the result is the unrounded product (rounding skipped?)");
  }
  minibert::cpu::detail::bf16_kernel_enabled() = true;
}

TEST_CASE("gemm: fp16 precision overflows to inf as a cast to half does, bf16 keeps fp32's range") {
  const problem p{false, false, 3, 4, 5, 0};
  std::vector<float> A(std::size_t(p.a_size()), 1.0f), B(std::size_t(p.b_size()), 1.0f);
  A[0] = 70000.0f; // above half's largest finite value, 65504
  for (const auto prec : {minibert::matmul_precision::fp16, minibert::matmul_precision::bf16}) {
    std::vector<float> C(std::size_t(p.c_size()), 0.0f);
    minibert::cpu::gemm<float>(false, false, p.M, p.N, p.K, 1.0f, A.data(), p.lda(), B.data(), p.ldb(), 0.0f, C.data(),
                               p.ldc(), prec);
    if (prec == minibert::matmul_precision::fp16) CHECK(std::isinf(C[0]));
    else CHECK(C[0] == doctest::Approx(70144.0f + 4.0f)); // bf16(70000) = 70144, plus four products of 1
    CHECK(C[std::size_t(p.ldc())] == 5.0f); // the other rows are untouched by the large value
  }
}

TEST_CASE("gemm: the bf16 kernel is chosen exactly when the CPU reports AVX512-BF16") {
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (!cpuinfo) {
    MESSAGE("[minibert-skip] no /proc/cpuinfo to compare the CPU dispatch with");
    return;
  }
  std::string line;
  bool flag = false;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0) {
      flag = line.find(" avx512_bf16") != std::string::npos;
      break;
    }
  CHECK(minibert::cpu::cpu_has_avx512_bf16() == flag);
}

} // namespace test_gemm
