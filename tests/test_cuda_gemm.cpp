// SPDX-License-Identifier: MIT
// The GEMM providers of the CUDA backend (cuda/gemm.cuh: cuBLASLt, and the own tensor-core kernels of
// cuda/gemm_mma.cuh and, on an H100 / H200 with a build for sm_90a, cuda/gemm_wgmma.cuh) against a double-precision
// host reference, on ragged shapes (sizes that are not multiples of the kernels' tiles), every transpose combination, padded leading dims, strided batches, alpha and beta,
// and the bias epilogue; for bf16 and fp16 data, and fp32 data under bf16 / fp16 matmul precision or TF32; and
// activation_linear's GELU fused into the own kernel against the same products unfused. Built only with the CUDA
// backend; skipped without a GPU.
//
// TOLERANCE. Both providers round the operands (the reference rounds them the same way) and accumulate in fp32, in
// different orders: |got - want| <= eps_out (|alpha p| + |beta c| + |bias|) + 4 K 2^-24 |alpha| sum_k |a b|, with
// eps_out the output type's unit roundoff (2^-8 bf16, 2^-11 fp16, 2^-24 fp32), doubled, plus 2^-25 for fp16 (the
// absolute rounding of its subnormals). One exception: on fp32 data, cuBLASLt's FAST_16BF / FAST_16F / FAST_TF32
// modes do not document how they round the operands, so for that provider the bound adds 4 u_op sum_k |a b| (u_op =
// 2^-8 bf16, 2^-11 fp16 and TF32): two roundings of an operand differ by up to 2 u_op of it, a product of two such
// operands by about 4 u_op. The own kernel rounds as the reference does (nearest even; TF32 by cvt.rna) and gets no
// such term.

#include <cmath>    // fabs
#include <cstdint>  // int64_t, uint64_t
#include <cstdlib>  // setenv
#include <cstring>  // memcmp, memcpy
#include <iostream> // cout (skip notice)
#include <random>   // mt19937, uniform_real_distribution
#include <string>   // string
#include <vector>   // vector

#include <minibert/cuda/backend.hpp>
#include <minibert/tensor_ops.hpp> // to_host

#include "cuda_test_helpers.hpp"
#include "test_helpers.hpp"

namespace test_cuda_gemm { // each test file in its own namespace: a test group compiles as one unit

namespace {
using namespace minibert;
using cuda = device::cuda;
using i64 = std::int64_t;

using test::skip_without_gpu;

/// what the tensor cores multiply: bf16 or fp16 (rounded to nearest even), or TF32 (fp32 with 10 mantissa bits,
/// rounded to nearest with ties away from zero, as cvt.rna.tf32.f32)
enum class operand_kind { bf16, fp16, tf32 };

float operand(float x, operand_kind kind) {
  if (kind == operand_kind::bf16) return float(bfloat16(x));
  if (kind == operand_kind::fp16) return float(half(x));
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u; // finite: round the 13 dropped bits
  std::memcpy(&x, &u, 4);
  return x;
}

/// the unit roundoff of an operand kind (2^-8 bf16; 2^-11 fp16 and TF32, both with 10 mantissa bits)
double operand_roundoff(operand_kind kind) { return std::ldexp(1.0, kind == operand_kind::bf16 ? -8 : -11); }

/// the absolute rounding error of T's subnormal outputs (only fp16's are reachable here)
template <class T> double subnormal_rounding() { return std::is_same_v<T, half> ? std::ldexp(1.0, -25) : 0.0; }

template <class T> double unit_roundoff() {
  if constexpr (std::is_same_v<T, bfloat16>) return std::ldexp(1.0, -8);
  else if constexpr (std::is_same_v<T, half>) return std::ldexp(1.0, -11);
  else return std::ldexp(1.0, -24);
}

struct gemm_case {
  bool ta, tb;
  i64 M, N, K, batch;
  float alpha, beta;
};

std::string describe(const gemm_case& c) {
  return "ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " batch=" + std::to_string(c.batch) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta);
}

template <class T> std::vector<T> random_values(std::size_t n, std::uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

template <class T> tensor<T, cuda> upload(const std::vector<T>& v) {
  return to_device<cuda>(tensor<T>::from(v, {i64(v.size())}));
}

/// how the operands are laid out: leading dims and batch strides that are multiples of nothing (ld = columns + 3),
/// which only version 1 of the own GEMM takes, or multiples of 8 elements (16 bytes and more) with padding, which
/// version 2 (the pipelined kernels) takes
enum class operand_layout { unaligned, aligned };

i64 padded_ld(i64 cols, operand_layout l) { return l == operand_layout::aligned ? (cols + 7) / 8 * 8 + 8 : cols + 3; }
i64 padded_stride(i64 elems, operand_layout l, i64 gap) {
  return l == operand_layout::aligned ? elems + 8 : elems + gap;
}

// One strided-batched product through backend<cuda>::gemm_batched with padded leading dims and batch strides (see
// operand_layout), against the reference; operands rounded to `kind` (fp32 data: the context's matmul precision, or
// TF32; 16-bit data is already its own operand type). Checks which version of the own GEMM ran.
template <class T>
void check_gemm(const gemm_case& c, operand_kind kind, operand_layout layout = operand_layout::unaligned) {
  const i64 a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const i64 b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const i64 lda = padded_ld(a_cols, layout), ldb = padded_ld(b_cols, layout), ldc = c.N + 2;
  const i64 sa = padded_stride(a_rows * lda, layout, 5), sb = padded_stride(b_rows * ldb, layout, 1);
  const i64 sc = c.M * ldc + 7;
  const auto a = random_values<T>(std::size_t(sa * c.batch), 1), b = random_values<T>(std::size_t(sb * c.batch), 2);
  constexpr i64 guard = 64; // elements after the last batch, which must stay untouched as all padding does
  const auto c0 = random_values<T>(std::size_t(sc * c.batch + guard), 3);
  const tensor<T, cuda> da = upload(a), db = upload(b);
  tensor<T, cuda> dc = upload(c0);
  auto& ctx = current_context<cuda>();
  const std::uint64_t own_before = ctx.own_gemm_launches, pipelined_before = ctx.own_gemm_pipelined_launches;
  const std::uint64_t wgmma_before = ctx.own_gemm_wgmma_launches;
  backend<cuda>::gemm_batched(ctx, c.ta, c.tb, c.M, c.N, c.K, c.alpha, da.data(), lda, sa, db.data(), ldb, sb, c.beta,
                              dc.data(), ldc, sc, c.batch);
  const tensor<T> got = to_host(dc);
  // the provider asked for is the one that ran (the own kernel needs a device and a build for sm_80 or newer)
  CHECK_MESSAGE(ctx.own_gemm_launches - own_before == (ctx.gemm == gemm_provider::own ? 1u : 0u), describe(c));
  // version 3 takes aligned operands of 16-bit data where the context allows it on an sm_90a device and build;
  // version 2 the other aligned ones of 16-bit data, and those of fp32 data rounded to bf16 / fp16 (TF32 stays on
  // version 1)
  const bool own = ctx.gemm == gemm_provider::own, aligned = layout == operand_layout::aligned;
  const bool wgmma = own && aligned && !std::is_same_v<T, float> && ctx.own_gemm_wgmma && cuda_gemm_wgmma_ready();
  const bool pipelined =
      own && aligned && !wgmma && (!std::is_same_v<T, float> || ctx.matmul != matmul_precision::fp32);
  CHECK_MESSAGE(ctx.own_gemm_pipelined_launches - pipelined_before == (pipelined ? 1u : 0u),
                describe(c) << (pipelined ? ": version 2 did not run" : ": version 2 ran"));
  CHECK_MESSAGE(ctx.own_gemm_wgmma_launches - wgmma_before == (wgmma ? 1u : 0u),
                describe(c) << (wgmma ? ": version 3 did not run" : ": version 3 ran"));
  const bool undocumented_rounding = std::is_same_v<T, float> && ctx.gemm == gemm_provider::cublaslt;
  const double operand_rounding_slack = undocumented_rounding ? 4 * operand_roundoff(kind) : 0.0;

  auto op_a = [&](i64 z, i64 m, i64 k) {
    return double(operand(float(a[std::size_t(z * sa + (c.ta ? k * lda + m : m * lda + k))]), kind));
  };
  auto op_b = [&](i64 z, i64 k, i64 n) {
    return double(operand(float(b[std::size_t(z * sb + (c.tb ? n * ldb + k : k * ldb + n))]), kind));
  };
  int bad = 0;
  for (i64 z = 0; z < c.batch; ++z)
    for (i64 m = 0; m < c.M; ++m)
      for (i64 n = 0; n < c.N; ++n) {
        double p = 0, mag = 0;
        for (i64 k = 0; k < c.K; ++k) {
          p += op_a(z, m, k) * op_b(z, k, n);
          mag += std::fabs(op_a(z, m, k) * op_b(z, k, n));
        }
        const std::size_t at = std::size_t(z * sc + m * ldc + n);
        const double old = double(float(c0[at]));
        const double want = c.alpha * p + c.beta * old;
        const double tol = 2 * unit_roundoff<T>() * (std::fabs(c.alpha * p) + std::fabs(c.beta * old)) +
                           4 * double(c.K) * std::ldexp(1.0, -24) * std::fabs(c.alpha) * mag +
                           operand_rounding_slack * std::fabs(c.alpha) * mag + subnormal_rounding<T>() + 1e-30;
        const double g = double(float(got.data()[at]));
        if (std::fabs(g - want) > tol && ++bad <= 3)
          FAIL_CHECK(describe(c) << ": C[" << z << "][" << m << "][" << n << "] = " << g << ", want " << want
                                 << " (tolerance " << tol << ")");
      }
  // everything outside C's M x N matrices (row padding, the gap between batches, the guard after them) is untouched
  for (i64 at = 0; at < i64(c0.size()); ++at) {
    const i64 z = at / sc, m = (at % sc) / ldc, n = (at % sc) % ldc;
    if (z < c.batch && m < c.M && n < c.N) continue;
    if (std::memcmp(&got.data()[at], &c0[std::size_t(at)], sizeof(T)) != 0 && ++bad <= 3)
      FAIL_CHECK(describe(c) << ": wrote element " << at << ", outside C");
  }
  CHECK_MESSAGE(bad == 0, describe(c) << ": " << bad << " wrong elements");
}

// ragged sizes around the 128 x 128 x 32 tile, every transpose combination, alpha/beta, and strided batches
std::vector<gemm_case> cases() {
  std::vector<gemm_case> out;
  const i64 shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {17, 33, 9}, {64, 64, 64}, {130, 129, 65}, {257, 200, 300}};
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) out.push_back({bool(t & 1), bool(t & 2), s[0], s[1], s[2], 1, 1.f, 0.f});
  for (int t = 0; t < 4; ++t) out.push_back({bool(t & 1), bool(t & 2), 33, 47, 70, 3, 0.5f, -1.25f});
  out.push_back({false, true, 129, 131, 40, 2, 1.f, 1.f});
  return out;
}

/// runs `body` with the context's GEMM provider set to `p` (and its matmul precision to `prec`), restoring both
/// however it ends, and checks that the own kernel ran when it was chosen
template <class F> void with_provider(gemm_provider p, matmul_precision prec, F&& body) {
  auto& ctx = current_context<cuda>();
  const test::scoped_value provider(ctx.gemm, p);
  const test::scoped_value precision(ctx.matmul, prec);
  const std::uint64_t before = ctx.own_gemm_launches;
  body();
  if (p == gemm_provider::own)
    CHECK_MESSAGE(ctx.own_gemm_launches > before, "the own GEMM did not run (it needs compute capability 8.0+)");
  else CHECK(ctx.own_gemm_launches == before);
}

/// runs `body` with the own provider's sm_90a kernels allowed or not, and with version 3's block width (0: picked per
/// product), restoring both however it ends
template <class F> void with_wgmma(bool on, int width, F&& body) {
  auto& ctx = current_context<cuda>();
  const test::scoped_value allowed(ctx.own_gemm_wgmma, on);
  const test::scoped_value block_width(ctx.own_gemm_wgmma_width, width);
  body();
}

const gemm_provider providers[] = {gemm_provider::own, gemm_provider::cublaslt};
const char* provider_name(gemm_provider p) { return p == gemm_provider::own ? "own" : "cublaslt"; }

} // namespace

TEST_CASE("cuda gemm: bf16 and fp16 data, every provider, ragged shapes and every transpose, against the reference") {
  if (skip_without_gpu("cuda gemm")) return;
  for (gemm_provider p : providers) {
    CAPTURE(provider_name(p));
    with_provider(p, matmul_precision::fp32, [] {
      for (const gemm_case& c : cases()) {
        check_gemm<bfloat16>(c, operand_kind::bf16);
        check_gemm<half>(c, operand_kind::fp16);
      }
    });
  }
}

TEST_CASE("cuda gemm: version 2 of the own kernel (aligned operands), ragged shapes and every transpose") {
  if (skip_without_gpu("cuda gemm")) return;
  // 16-bit data, copied into shared memory as stored (with version 3 off, which takes these products where it runs)
  with_wgmma(false, 0, [] {
    with_provider(gemm_provider::own, matmul_precision::fp32, [] {
      for (const gemm_case& c : cases()) {
        check_gemm<bfloat16>(c, operand_kind::bf16, operand_layout::aligned);
        check_gemm<half>(c, operand_kind::fp16, operand_layout::aligned);
      }
    });
  });
  // fp32 data, rounded to bf16 or fp16 in registers on the way (the staged kernels)
  with_provider(gemm_provider::own, matmul_precision::bf16, [] {
    for (const gemm_case& c : cases()) check_gemm<float>(c, operand_kind::bf16, operand_layout::aligned);
  });
  with_provider(gemm_provider::own, matmul_precision::fp16, [] {
    for (const gemm_case& c : cases()) check_gemm<float>(c, operand_kind::fp16, operand_layout::aligned);
  });
}

TEST_CASE("cuda gemm: version 3 of the own kernel (sm_90a: TMA and wgmma), every block width, ragged shapes and "
          "every transpose") {
  if (skip_without_gpu("cuda gemm")) return;
  if (!cuda_gemm_wgmma_ready()) {
    std::cout << "[minibert-skip] cuda gemm version 3: needs an H100 / H200 and a build for sm_90a" << std::endl;
    return;
  }
  // the ragged cases, and products deep enough (16 k tiles) to go round every width's ring of shared slots (4 to 6)
  std::vector<gemm_case> all = cases();
  for (int t = 0; t < 4; ++t) all.push_back({bool(t & 1), bool(t & 2), 200, 300, 1000, 1, 1.f, 0.f});
  all.push_back({true, false, 150, 270, 1030, 2, 0.75f, 0.5f});
  for (const int width : {128, 192, 256}) {
    CAPTURE(width);
    with_wgmma(true, width, [&] {
      with_provider(gemm_provider::own, matmul_precision::fp32, [&] {
        for (const gemm_case& c : all) {
          check_gemm<bfloat16>(c, operand_kind::bf16, operand_layout::aligned);
          check_gemm<half>(c, operand_kind::fp16, operand_layout::aligned);
        }
      });
    });
  }
}

TEST_CASE("cuda gemm: fp32 data under bf16 and fp16 matmul precision, every provider, against the reference") {
  if (skip_without_gpu("cuda gemm")) return;
  for (gemm_provider p : providers) {
    CAPTURE(provider_name(p));
    with_provider(p, matmul_precision::bf16, [] {
      for (const gemm_case& c : cases()) check_gemm<float>(c, operand_kind::bf16);
    });
    with_provider(p, matmul_precision::fp16, [] {
      for (const gemm_case& c : cases()) check_gemm<float>(c, operand_kind::fp16);
    });
  }
}

TEST_CASE("cuda gemm: fp32 data with TF32 allowed, every provider, against the reference") {
  if (skip_without_gpu("cuda gemm")) return;
  // read once per process, at the first fp32 product at fp32 precision: no earlier case of this file runs one, and
  // CTest runs each case in a process of its own
  setenv("MINIBERT_ALLOW_TF32", "1", 1);
  for (gemm_provider p : providers) {
    CAPTURE(provider_name(p));
    with_provider(p, matmul_precision::fp32, [] {
      for (const gemm_case& c : cases()) check_gemm<float>(c, operand_kind::tf32);
    });
  }
}

namespace {
// linear_forward (out (N,C) = x (N,K) w^T + bias) on both providers against the reference; K % 8 == 0 makes both
// operands aligned, so the own provider runs version 2, or 3 where it runs (else version 1)
void check_bias_epilogue(i64 K) {
  const i64 N = 130, C = 129;
  const auto x = random_values<bfloat16>(std::size_t(N * K), 7), w = random_values<bfloat16>(std::size_t(C * K), 8);
  const auto bias = random_values<bfloat16>(std::size_t(C), 9);
  const tensor<bfloat16, cuda> dx = upload(x), dw = upload(w), db = upload(bias);
  std::vector<tensor<bfloat16>> outs;
  for (gemm_provider p : providers)
    with_provider(p, matmul_precision::fp32, [&] {
      auto& ctx = current_context<cuda>();
      const std::uint64_t later_before = ctx.own_gemm_pipelined_launches + ctx.own_gemm_wgmma_launches;
      tensor<bfloat16, cuda> out = tensor<bfloat16, cuda>::empty({N, C});
      backend<cuda>::linear_forward(ctx, dx.data(), dw.data(), db.data(), out.data(), N, K, C);
      outs.push_back(to_host(out));
      const bool later = p == gemm_provider::own && K % 8 == 0; // version 2, or 3 where it runs
      CHECK(ctx.own_gemm_pipelined_launches + ctx.own_gemm_wgmma_launches - later_before == (later ? 1u : 0u));
    });
  int bad = 0;
  for (i64 i = 0; i < N; ++i)
    for (i64 j = 0; j < C; ++j) {
      double want = float(bias[std::size_t(j)]), mag = std::fabs(want);
      for (i64 k = 0; k < K; ++k) {
        const double t = double(float(x[std::size_t(i * K + k)])) * double(float(w[std::size_t(j * K + k)]));
        want += t;
        mag += std::fabs(t);
      }
      for (const auto& o : outs) {
        const double g = float(o.data()[i * C + j]);
        const double tol = 2 * unit_roundoff<bfloat16>() * mag + 4 * K * std::ldexp(1.0, -24) * mag;
        if (std::fabs(g - want) > tol && ++bad <= 3)
          FAIL_CHECK("K=" << K << ": out[" << i << "][" << j << "] = " << g << ", want " << want);
      }
    }
  CHECK(bad == 0);
}
} // namespace

TEST_CASE("cuda gemm: linear_forward's bias epilogue on the own kernel (every version) and cuBLASLt, against the "
          "reference") {
  if (skip_without_gpu("cuda gemm")) return;
  check_bias_epilogue(65);
  check_bias_epilogue(64);
  with_wgmma(false, 0, [] { check_bias_epilogue(64); }); // version 2 where version 3 would run
}

namespace {
template <class T> std::vector<float> as_floats(const tensor<T, cuda>& t) {
  const tensor<T> h = to_host(t);
  std::vector<float> f;
  for (i64 i = 0; i < h.numel(); ++i) f.push_back(float(h.data()[i]));
  return f;
}

/// activation_linear's fused products (GELU applied as the own kernel loads u, GELU' in du's epilogue) against the
/// same products unfused on the own kernel (activation into a temporary first): out, dw and dbias bit for bit (the
/// operands are rounded from the same fp32 values, and every version of the kernel sums in the same order); du within
/// 4 unit roundoffs (plus two fp16 subnormal steps), since the unfused path rounds dout w to T before multiplying by
/// GELU'(u). dw and dbias start from the same random values on both sides: both are accumulated into (beta = 1).
/// C = 70 leaves dout's rows unaligned (version 1 runs the products that read it); C = 72 aligns every operand, so
/// version 2 runs every product of fp32 data, and those of 16-bit data without GELU on the way in.
/// With `mixed_versions` (16-bit data with version 3 on, C = 72) the fused out and dw come from version 1 and the
/// unfused ones from version 3, which need not sum in the same order: only du (version 3 on both sides: the fused
/// GELU' epilogue against the unfused activation backward) and dbias are compared.
template <class T> void check_fused_activation_linear(matmul_precision prec, i64 C, bool mixed_versions = false) {
  CAPTURE(C);
  const i64 N = 130, K = 200; // tokens, intermediate (the GELU's width); C is the output width
  const auto u = random_values<T>(std::size_t(N * K), 11), w = random_values<T>(std::size_t(C * K), 12);
  const auto bias = random_values<T>(std::size_t(C), 13), dout = random_values<T>(std::size_t(N * C), 14);
  const auto dw0 = random_values<T>(std::size_t(C * K), 15), db0 = random_values<T>(std::size_t(C), 16);
  const tensor<T, cuda> du_in = upload(u), dw_in = upload(w), db_in = upload(bias), dd = upload(dout);
  std::vector<std::vector<float>> fused, unfused;
  with_provider(gemm_provider::own, prec, [&] {
    auto& ctx = current_context<cuda>();
    const activation act = activation::gelu_erf;
    tensor<T, cuda> out = tensor<T, cuda>::empty({N * C}), du = tensor<T, cuda>::empty({N * K});
    tensor<T, cuda> dw = upload(dw0), db = upload(db0);
    const std::uint64_t before = ctx.own_gemm_launches;
    backend<cuda>::activation_linear_forward(ctx, act, du_in.data(), dw_in.data(), db_in.data(), out.data(), N, K, C);
    backend<cuda>::activation_linear_backward(ctx, act, dd.data(), du_in.data(), dw_in.data(), du.data(), dw.data(),
                                              db.data(), N, K, C);
    CHECK_MESSAGE(ctx.own_gemm_launches - before == 3, "the fused path did not run the own kernel three times");
    fused = {as_floats(out), as_floats(du), as_floats(dw), as_floats(db)};
    // unfused: act(u) into a temporary, then the plain products and the activation's backward
    tensor<T, cuda> a = tensor<T, cuda>::empty({N * K}), da = tensor<T, cuda>::empty({N * K});
    tensor<T, cuda> out2 = tensor<T, cuda>::empty({N * C}), du2 = tensor<T, cuda>::empty({N * K});
    tensor<T, cuda> dw2 = upload(dw0), db2 = upload(db0);
    backend<cuda>::activation_forward(ctx, act, du_in.data(), a.data(), N * K);
    backend<cuda>::linear_forward(ctx, static_cast<const T*>(a.data()), dw_in.data(), db_in.data(), out2.data(), N, K, C);
    backend<cuda>::linear_backward(ctx, dd.data(), static_cast<const T*>(a.data()), dw_in.data(), da.data(), dw2.data(),
                                   db2.data(), N, K, C);
    backend<cuda>::activation_backward(ctx, act, du_in.data(), static_cast<const T*>(da.data()), du2.data(), N * K);
    unfused = {as_floats(out2), as_floats(du2), as_floats(dw2), as_floats(db2)};
  });
  const char* names[] = {"out", "du", "dw", "dbias"};
  for (int t = 0; t < 4; ++t) {
    if (mixed_versions && (t == 0 || t == 2)) continue;
    int bad = 0;
    for (std::size_t i = 0; i < fused[t].size(); ++i) {
      const double f = fused[t][i], e = unfused[t][i];
      const double tol = t == 1 ? 4 * unit_roundoff<T>() * std::fabs(e) + 2 * subnormal_rounding<T>() + 1e-30 : 0.0;
      if (!(std::fabs(f - e) <= tol) && ++bad <= 3)
        FAIL_CHECK(names[t] << "[" << i << "] fused " << f << ", unfused " << e << " (tolerance " << tol << ")");
    }
    CHECK_MESSAGE(bad == 0, names[t] << ": " << bad << " values differ");
  }
}
} // namespace

TEST_CASE("cuda gemm: activation_linear with GELU fused into the own kernel equals the unfused products") {
  if (skip_without_gpu("cuda gemm fused activation")) return;
  for (const i64 C : {70, 72}) {
    // version 3 off: it takes the unfused 16-bit products on an sm_90a device, and wgmma need not sum a k16 step's
    // products in mma.sync's order (versions 1 and 2 share that instruction)
    with_wgmma(false, 0, [C] {
      check_fused_activation_linear<bfloat16>(matmul_precision::fp32, C);
      check_fused_activation_linear<half>(matmul_precision::fp32, C);
    });
    check_fused_activation_linear<float>(matmul_precision::bf16, C);
  }
  if (cuda_gemm_wgmma_ready()) // version 3's GELU' epilogue (du)
    with_wgmma(true, 0, [] {
      check_fused_activation_linear<bfloat16>(matmul_precision::fp32, 72, true);
      check_fused_activation_linear<half>(matmul_precision::fp32, 72, true);
    });
}

} // namespace test_cuda_gemm
