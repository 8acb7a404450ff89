// SPDX-License-Identifier: MIT
// The CUDA backend's fused ("flash") attention (cuda/attention_flash.cuh, ctx.attention = attention_provider::flash)
// against the double-precision reference of tests/reference/ops.hpp: forward and dq, dk, dv, on ragged sequence
// lengths (not multiples of the 64-row tiles), head sizes 32, 64 and 128, no mask, padding masks with an additive
// part, dropout on and off (the reference gets the same Philox keep mask); bf16 and fp16 data, and fp32 data under
// bf16 / fp16 matmul precision. Also: the packed (varlen) API gives the padded batch's rows bit for bit, results
// are deterministic, the provider falls back where flash does not apply, and varlen refuses what it cannot run.
// cuDNN's fused SDPA (ctx.attention = attention_provider::cudnn, cuda/attention_cudnn.hpp) runs the same checks on
// bf16 and fp16 data; its dropout draw is its own, read back through its forward (cudnn_keep_mask).
// Built only with the CUDA backend; skipped without a GPU (the cuDNN cases also without the cuDNN provider).
//
// TOLERANCE. The kernels round q, k, v, dO, P and dS to the operand type (u_op = 2^-8 bf16, 2^-11 fp16) before
// their tensor-core products, accumulate in fp32 and round the results to the data type (u_out). The reference is
// computed on the same rounded q, k, v, dO, so every element must satisfy
//   |got - want| <= 2 u_out |want| + (2 u_op + (T + HS) 2^-24) M + 2^-24
// where M is the element's magnitude: out: sum_j Pd_ij |v_jd|; dv: sum_i Pd_ij |dO_id|; dq: scale sum_j w_ij |k_jd|
// and dk: scale sum_i w_ij |q_id|, with w_ij = |dS_ij| + P_ij sum_e |dO_ie| (|v_je| + |O_ie|) (dS's rounding, and
// the rounding of dP's operands and of the saved output that delta = rowsum(dO O) reads). Pd = P keep / (1-p).

#include <algorithm> // max, min
#include <cmath>     // fabs, ldexp, sqrt
#include <cstdint>   // int32_t, int64_t, uint64_t
#include <cstring>   // memcmp
#include <iostream>  // cout (skip notice)
#include <limits>    // numeric_limits
#include <random>    // mt19937, uniform_real_distribution
#include <string>    // string
#include <vector>    // vector

#include <minibert/cuda/backend.hpp>
#include <minibert/detail/philox.hpp>

#include "reference/ops.hpp"
#include "cuda_test_helpers.hpp"
#include "test_helpers.hpp"

namespace test_cuda_attention { // each test file in its own namespace: a test group compiles as one unit

namespace {
using namespace minibert;
using cuda = device::cuda;
using i64 = std::int64_t;
using B_cuda = backend<cuda>;
using test::check_error;

using test::skip_without_gpu;

/// the operand type the kernels multiply in: T itself for 16-bit data, the matmul precision for fp32 data
template <class T> double operand_roundoff(matmul_precision m) {
  if constexpr (std::is_same_v<T, half>) return std::ldexp(1.0, -11);
  else if constexpr (std::is_same_v<T, bfloat16>) return std::ldexp(1.0, -8);
  else return std::ldexp(1.0, m == matmul_precision::fp16 ? -11 : -8);
}
template <class T> double output_roundoff() {
  if constexpr (std::is_same_v<T, half>) return std::ldexp(1.0, -11);
  else if constexpr (std::is_same_v<T, bfloat16>) return std::ldexp(1.0, -8);
  else return std::ldexp(1.0, -24);
}
/// x as the kernels' operand: rounded to the matmul precision for fp32 data, as is for 16-bit data
template <class T> double as_operand(T x, matmul_precision m) {
  if constexpr (std::is_same_v<T, float>)
    return m == matmul_precision::fp16 ? double(float(half(x))) : double(float(bfloat16(x)));
  else return double(float(x));
}
/// transformers' masked value for T: finfo(T).min
template <class T> float masked_value() {
  if constexpr (std::is_same_v<T, half>) return -65504.0f;
  else if constexpr (std::is_same_v<T, bfloat16>) return -3.3895313892515355e38f;
  else return std::numeric_limits<float>::lowest();
}

/// dropout.cuh's keep rule over n elements from Philox counter base
std::vector<int> keep_mask(std::uint64_t seed, std::uint64_t base, i64 n, float p) {
  std::vector<int> keep(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) {
    const auto r = minibert::detail::philox4x32_10(seed, base + std::uint64_t(i / 4));
    keep[std::size_t(i)] = minibert::detail::uniform01(r.v[i % 4]) >= p ? 1 : 0;
  }
  return keep;
}

struct attn_case {
  i64 B, T, NH, HS;
  bool masked; // padding (keys past a per-row length at finfo.min) plus an additive part
  float p;     // dropout
};

std::string describe(const attn_case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " NH=" + std::to_string(c.NH) +
         " HS=" + std::to_string(c.HS) + (c.masked ? " masked" : " no mask") + " p=" + std::to_string(c.p);
}

template <class T> std::vector<T> random_values(std::size_t n, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

template <class T> tensor<T, cuda> upload(const std::vector<T>& v) {
  return to_device<cuda>(tensor<T>::from(v, {i64(v.size())}));
}
template <class T> std::vector<T> download(const tensor<T, cuda>& t) {
  const tensor<T> h = to_host(t);
  return std::vector<T>(h.data(), h.data() + h.numel());
}

/// the (B,T) additive mask: row b keeps keys [0, T - 1 - 5b) (at least 1) with values in [-0.5, 0), the rest finfo.min
template <class T> std::vector<T> padding_mask(i64 B, i64 Tn) {
  std::vector<T> m = random_values<T>(std::size_t(B * Tn), 77, -0.5f, 0.0f);
  for (i64 b = 0; b < B; ++b)
    for (i64 j = std::max<i64>(1, Tn - 1 - 5 * b); j < Tn; ++j) m[std::size_t(b * Tn + j)] = T(masked_value<T>());
  return m;
}

/// column block [c0, c0 + C) of a (B,T,ld) buffer as a reference array (B,T,C), each value through f
template <class T, class F> ref::array block(const std::vector<T>& x, i64 B, i64 Tn, i64 ld, i64 c0, i64 C, F&& f) {
  ref::array a({B, Tn, C});
  for (i64 r = 0; r < B * Tn; ++r)
    for (i64 c = 0; c < C; ++c) a[r * C + c] = f(x[std::size_t(r * ld + c0 + c)]);
  return a;
}

/// the tolerance magnitudes of the file's header, from the reference's probabilities
struct magnitudes {
  ref::array out, dq, dk, dv;
};
magnitudes tolerance_magnitudes(const ref::array& q, const ref::array& k, const ref::array& v, const ref::array& mask,
                                int NH, const ref::array& dout, const std::vector<int>& keep, double p) {
  const ref::attention_result fw = ref::attention(q, k, v, mask, NH, keep, p);
  const i64 B = q.shape[0], Tn = q.shape[1], C = q.shape[2], HS = C / NH;
  const double scale = 1.0 / std::sqrt(double(HS));
  magnitudes m{ref::array(q.shape), ref::array(q.shape), ref::array(q.shape), ref::array(q.shape)};
  auto at = [&](i64 b, i64 t, i64 h, i64 d) { return (b * Tn + t) * C + h * HS + d; };
  for (i64 b = 0; b < B; ++b)
    for (i64 h = 0; h < NH; ++h)
      for (i64 i = 0; i < Tn; ++i) {
        const std::size_t n = static_cast<std::size_t>(Tn);
        std::vector<double> P(n), kf(n), dP(n);
        double delta = 0;
        for (i64 j = 0; j < Tn; ++j) {
          const i64 f = ((b * NH + h) * Tn + i) * Tn + j;
          P[std::size_t(j)] = fw.probs[((b * NH + h) * Tn + i) * Tn + j];
          kf[std::size_t(j)] = keep.empty() ? 1.0 : (keep[std::size_t(f)] ? 1.0 / (1.0 - p) : 0.0);
          double dpd = 0;
          for (i64 d = 0; d < HS; ++d) dpd += dout[at(b, i, h, d)] * v[at(b, j, h, d)];
          dP[std::size_t(j)] = dpd * kf[std::size_t(j)];
          delta += P[std::size_t(j)] * dP[std::size_t(j)];
        }
        for (i64 j = 0; j < Tn; ++j) {
          const double pj = P[std::size_t(j)], pd = pj * kf[std::size_t(j)];
          double side = 0;
          for (i64 e = 0; e < HS; ++e)
            side += std::fabs(dout[at(b, i, h, e)]) *
                    (std::fabs(v[at(b, j, h, e)]) + std::fabs(fw.out[at(b, i, h, e)]));
          const double w = std::fabs(pj * (dP[std::size_t(j)] - delta)) + pj * side;
          for (i64 d = 0; d < HS; ++d) {
            m.out[at(b, i, h, d)] += pd * std::fabs(v[at(b, j, h, d)]);
            m.dv[at(b, j, h, d)] += pd * std::fabs(dout[at(b, i, h, d)]);
            m.dq[at(b, i, h, d)] += scale * w * std::fabs(k[at(b, j, h, d)]);
            m.dk[at(b, j, h, d)] += scale * w * std::fabs(q[at(b, i, h, d)]);
          }
        }
      }
  return m;
}

/// counts (and reports the first 3 of) the elements of `got` (column block c0 of a (B,T,ld) buffer) outside the
/// header's bound around `want`
template <class T>
int count_outside(const std::string& what, const std::vector<T>& got, i64 ld, i64 c0, const ref::array& want,
                  const ref::array& mag, double u_op, i64 Tn, i64 HS) {
  const i64 C = want.shape[2], rows = want.shape[0] * want.shape[1];
  const double u_out = output_roundoff<T>(), acc = double(Tn + HS) * std::ldexp(1.0, -24);
  int bad = 0;
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < C; ++c) {
      const double g = double(float(got[std::size_t(r * ld + c0 + c)])), w = want[r * C + c], m = mag[r * C + c];
      const double tol = 2 * u_out * std::fabs(w) + (2 * u_op + acc) * m + std::ldexp(1.0, -24);
      if (!(std::fabs(g - w) <= tol) && ++bad <= 3)
        FAIL_CHECK(what << " [row " << r << ", col " << c << "] = " << g << ", want " << w << " (tolerance " << tol
                        << ")");
    }
  return bad;
}

template <class T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// what one forward and backward on the GPU produced
template <class T> struct gpu_run {
  std::vector<T> out, dqkv;
  std::vector<float> lse;
};

/// attention forward and backward through backend<cuda> with q, k, v the column blocks of one (B,T,3C) buffer (the
/// self-attention layout), mask (B,T) or empty
template <class T>
gpu_run<T> run_padded(const attn_case& c, const std::vector<T>& qkv, const std::vector<T>& mask,
                      const std::vector<T>& dout, std::uint64_t seed, std::uint64_t base) {
  auto& ctx = current_context<cuda>();
  const i64 C = c.NH * c.HS;
  const tensor<T, cuda> dq = upload(qkv), dm = mask.empty() ? tensor<T, cuda>() : upload(mask), dd = upload(dout);
  tensor<T, cuda> out = tensor<T, cuda>::empty({c.B * c.T * C}), grads = tensor<T, cuda>::empty({c.B * c.T * 3 * C});
  const attention_dims d{c.B, c.T, C, c.NH, 3 * C};
  B_cuda::attention_saved<T> saved;
  const T* x = dq.data();
  const T* m = mask.empty() ? nullptr : dm.data();
  B_cuda::attention_forward(ctx, d, x, x + C, x + 2 * C, m, out.data(), saved, c.p, seed, base);
  B_cuda::attention_backward(ctx, d, dd.data(), x, x + C, x + 2 * C, m, saved, c.p, grads.data(), grads.data() + C,
                             grads.data() + 2 * C);
  gpu_run<T> r{download(out), download(grads), {}};
  if (saved.lse.defined()) r.lse = download(saved.lse);
  return r;
}

/// the launch counter of a fused provider
std::uint64_t launches_of(attention_provider provider) {
  auto& ctx = current_context<cuda>();
  return provider == attention_provider::flash ? ctx.flash_attention_launches : ctx.cudnn_attention_launches;
}

/// cuDNN's dropout keep mask (B,NH,T,T) for (seed, base), read back through the forward itself: with v_h the identity
/// (v[b, j, h*HS + d] = [d == j], so T <= HS), out[b, i, h*HS + j] = P_ij keep_ij / (1-p), nonzero exactly where
/// keep_ij = 1 (P_ij > 0; where a key is masked out, P_ij = 0 and keep does not matter: 1)
template <class T>
std::vector<int> cudnn_keep_mask(const attn_case& c, const std::vector<T>& qkv, const std::vector<T>& mask,
                                 std::uint64_t seed, std::uint64_t base) {
  REQUIRE(c.T <= c.HS);
  const i64 C = c.NH * c.HS;
  std::vector<T> identity_v = qkv;
  for (i64 r = 0; r < c.B * c.T; ++r)
    for (i64 h = 0; h < c.NH; ++h)
      for (i64 d = 0; d < c.HS; ++d)
        identity_v[std::size_t(r * 3 * C + 2 * C + h * c.HS + d)] = T(d == r % c.T ? 1.f : 0.f);
  const std::vector<T> no_dout(std::size_t(c.B * c.T * C), T(0.f));
  const gpu_run<T> probe = run_padded(c, identity_v, mask, no_dout, seed, base);
  std::vector<int> keep(std::size_t(c.B * c.NH * c.T * c.T), 1);
  double drawn = 0, kept = 0;
  for (i64 b = 0; b < c.B; ++b)
    for (i64 h = 0; h < c.NH; ++h)
      for (i64 i = 0; i < c.T; ++i)
        for (i64 j = 0; j < c.T; ++j) {
          const bool masked_out = !mask.empty() && float(mask[std::size_t(b * c.T + j)]) <= masked_value<T>();
          if (masked_out) continue;
          const int k = float(probe.out[std::size_t((b * c.T + i) * C + h * c.HS + j)]) != 0.f;
          keep[std::size_t(((b * c.NH + h) * c.T + i) * c.T + j)] = k;
          drawn += 1;
          kept += k;
        }
  // the draw keeps 1 - p of the probabilities (within 5 standard deviations), which the scale 1/(1-p) assumes
  const double sigma = std::sqrt(double(c.p) * (1 - c.p) / drawn);
  CHECK_MESSAGE(std::fabs(kept / drawn - (1 - c.p)) < 5 * sigma,
                describe(c) << ": kept " << kept / drawn << " of the probabilities, want " << 1 - c.p);
  return keep;
}

/// one case on data T under matmul precision `prec`, asking for a fused provider (flash or cudnn): against the
/// reference, and run twice alike (cuDNN's backward may accumulate dq with atomics: only its forward must repeat bit
/// for bit). Flash must take the case; cuDNN may decline it (then the materialized path runs). Returns whether the
/// fused provider ran.
template <class T> bool check_fused(const attn_case& c, matmul_precision prec, attention_provider provider) {
  auto& ctx = current_context<cuda>();
  ctx.matmul = prec;
  const i64 C = c.NH * c.HS;
  const std::vector<T> qkv = random_values<T>(std::size_t(c.B * c.T * 3 * C), 11);
  const std::vector<T> dout = random_values<T>(std::size_t(c.B * c.T * C), 12);
  const std::vector<T> mask = c.masked ? padding_mask<T>(c.B, c.T) : std::vector<T>();
  const std::uint64_t seed = 2024, base = 6;
  const std::uint64_t launches = launches_of(provider);
  const gpu_run<T> got = run_padded(c, qkv, mask, dout, seed, base);
  const bool fused = launches_of(provider) == launches + 1;
  if (provider == attention_provider::flash) REQUIRE_MESSAGE(fused, describe(c) << ": the flash kernels did not run");
  else if (!fused) MESSAGE(describe(c) << " " << dtype_name(dtype_v<T>) << ": cuDNN declined it, materialized ran");
  const gpu_run<T> again = run_padded(c, qkv, mask, dout, seed, base);
  CHECK_MESSAGE(same_bits(got.out, again.out), describe(c) << ": the forward is not deterministic");
  if (provider == attention_provider::flash)
    CHECK_MESSAGE(same_bits(got.dqkv, again.dqkv), describe(c) << ": the backward is not deterministic");

  auto op = [&](T x) { return as_operand(x, prec); };
  const ref::array q = block(qkv, c.B, c.T, 3 * C, 0, C, op), k = block(qkv, c.B, c.T, 3 * C, C, C, op),
                   v = block(qkv, c.B, c.T, 3 * C, 2 * C, C, op), dO = block(dout, c.B, c.T, C, 0, C, op);
  ref::array m2;
  if (c.masked) {
    m2 = ref::array({c.B, c.T});
    for (i64 i = 0; i < c.B * c.T; ++i) m2[i] = double(float(mask[std::size_t(i)]));
  }
  std::vector<int> keep;
  if (c.p > 0)
    keep = provider == attention_provider::flash ? keep_mask(seed, base, c.B * c.NH * c.T * c.T, c.p)
                                                 : cudnn_keep_mask(c, qkv, mask, seed, base);
  const ref::array out = ref::attention(q, k, v, m2, int(c.NH), keep, c.p).out;
  const ref::grad3 g = ref::attention_backward(q, k, v, m2, int(c.NH), dO, keep, c.p);
  const magnitudes mag = tolerance_magnitudes(q, k, v, m2, int(c.NH), dO, keep, c.p);
  const double u_op = operand_roundoff<T>(prec);
  const std::string tag = describe(c) + " " + dtype_name(dtype_v<T>);
  int bad = count_outside(tag + " out", got.out, C, 0, out, mag.out, u_op, c.T, c.HS);
  bad += count_outside(tag + " dq", got.dqkv, 3 * C, 0, g.d0, mag.dq, u_op, c.T, c.HS);
  bad += count_outside(tag + " dk", got.dqkv, 3 * C, C, g.d1, mag.dk, u_op, c.T, c.HS);
  bad += count_outside(tag + " dv", got.dqkv, 3 * C, 2 * C, g.d2, mag.dv, u_op, c.T, c.HS);
  CHECK_MESSAGE(bad == 0, tag << ": " << bad << " elements outside the tolerance");
  return fused;
}

/// runs body with ctx.attention = provider, restoring the provider and the matmul precision however it ends
template <class F> void with_provider(attention_provider provider, F&& body) {
  auto& ctx = current_context<cuda>();
  const test::scoped_value chosen(ctx.attention, provider);
  const test::scoped_value precision(ctx.matmul, ctx.matmul); // bodies may change it
  body();
}
template <class F> void with_flash(F&& body) { with_provider(attention_provider::flash, body); }

// ragged lengths around the 64-row tiles, the three head sizes, masks and dropout
std::vector<attn_case> cases() {
  return {{2, 1, 2, 32, false, 0.0f},  {2, 17, 2, 32, true, 0.1f},   {3, 64, 2, 64, true, 0.0f},
          {2, 130, 2, 64, true, 0.1f}, {1, 200, 1, 128, false, 0.1f}, {2, 77, 3, 64, false, 0.0f},
          {2, 65, 1, 128, true, 0.0f}, {2, 130, 2, 32, true, 0.1f}};
}

} // namespace

TEST_CASE("cuda flash attention: bf16 and fp16 data against the reference, forward and backward, deterministic") {
  if (skip_without_gpu("cuda flash attention")) return;
  with_flash([] {
    for (const attn_case& c : cases()) {
      check_fused<bfloat16>(c, matmul_precision::fp32, attention_provider::flash);
      check_fused<half>(c, matmul_precision::fp32, attention_provider::flash);
    }
  });
}

TEST_CASE("cuda flash attention: fp32 data under bf16 and fp16 matmul precision (the --bf16 / --fp16 policy)") {
  if (skip_without_gpu("cuda flash attention fp32")) return;
  with_flash([] {
    for (const attn_case& c : cases()) {
      check_fused<float>(c, matmul_precision::bf16, attention_provider::flash);
      check_fused<float>(c, matmul_precision::fp16, attention_provider::flash);
    }
  });
}

TEST_CASE("cuda flash attention: packed sequences (varlen) give the padded batch's rows bit for bit") {
  if (skip_without_gpu("cuda flash attention varlen")) return;
  with_flash([] {
    using T = bfloat16;
    const std::vector<i64> lengths = {5, 64, 0, 1, 130}; // an empty sequence too
    const i64 B = i64(lengths.size()), Tmax = 130, NH = 2, HS = 64, C = NH * HS;
    const float p = 0.1f;
    const std::uint64_t seed = 7, base = 100;
    std::vector<std::int32_t> cu = {0};
    for (i64 L : lengths) cu.push_back(std::int32_t(cu.back() + L));
    const i64 rows = cu.back();
    const std::vector<T> packed = random_values<T>(std::size_t(rows * 3 * C), 21);
    const std::vector<T> packed_dout = random_values<T>(std::size_t(rows * C), 22);
    // the same rows padded to Tmax, keys past each length at finfo.min and dO of padding rows zero
    std::vector<T> padded(std::size_t(B * Tmax * 3 * C), T(0.0f)), padded_dout(std::size_t(B * Tmax * C), T(0.0f));
    std::vector<T> mask(std::size_t(B * Tmax), T(0.0f));
    for (i64 b = 0; b < B; ++b)
      for (i64 t = 0; t < Tmax; ++t) {
        if (t >= lengths[std::size_t(b)]) {
          mask[std::size_t(b * Tmax + t)] = T(masked_value<T>());
          continue;
        }
        const i64 src = cu[std::size_t(b)] + t, dst = b * Tmax + t;
        for (i64 c = 0; c < 3 * C; ++c) padded[std::size_t(dst * 3 * C + c)] = packed[std::size_t(src * 3 * C + c)];
        for (i64 c = 0; c < C; ++c) padded_dout[std::size_t(dst * C + c)] = packed_dout[std::size_t(src * C + c)];
      }
    const gpu_run<T> pad = run_padded(attn_case{B, Tmax, NH, HS, true, p}, padded, mask, padded_dout, seed, base);

    auto& ctx = current_context<cuda>();
    const tensor<std::int32_t, cuda> dcu = upload(cu);
    const tensor<T, cuda> x = upload(packed), dd = upload(packed_dout);
    tensor<T, cuda> out = tensor<T, cuda>::empty({rows * C}), grads = tensor<T, cuda>::empty({rows * 3 * C});
    tensor<float, cuda> lse = tensor<float, cuda>::empty({B * NH * Tmax});
    const B_cuda::varlen_dims d{dcu.data(), B, Tmax, C, NH, 3 * C};
    B_cuda::attention_varlen_forward(ctx, d, x.data(), x.data() + C, x.data() + 2 * C, out.data(), lse.data(), p, seed,
                                     base);
    B_cuda::attention_varlen_backward(ctx, d, dd.data(), x.data(), x.data() + C, x.data() + 2 * C, out.data(),
                                      lse.data(), p, seed, base, grads.data(), grads.data() + C, grads.data() + 2 * C);
    const std::vector<T> vout = download(out), vgrads = download(grads);
    const std::vector<float> vlse = download(lse);
    int differ = 0;
    for (i64 b = 0; b < B; ++b)
      for (i64 t = 0; t < lengths[std::size_t(b)]; ++t) {
        const i64 src = cu[std::size_t(b)] + t, dst = b * Tmax + t;
        for (i64 c = 0; c < C; ++c)
          differ += float(vout[std::size_t(src * C + c)]) != float(pad.out[std::size_t(dst * C + c)]);
        for (i64 c = 0; c < 3 * C; ++c)
          differ += float(vgrads[std::size_t(src * 3 * C + c)]) != float(pad.dqkv[std::size_t(dst * 3 * C + c)]);
        for (i64 h = 0; h < NH; ++h)
          differ += vlse[std::size_t((b * NH + h) * Tmax + t)] != pad.lse[std::size_t((b * NH + h) * Tmax + t)];
      }
    CHECK_MESSAGE(differ == 0, differ << " values of the packed batch differ from the padded batch's");
  });
}

TEST_CASE("cuda flash attention: other head sizes and fp32 precision fall back to materialized; varlen refuses them") {
  if (skip_without_gpu("cuda flash attention fallback")) return;
  with_flash([] {
    auto& ctx = current_context<cuda>();
    const std::uint64_t launches = ctx.flash_attention_launches;
    // head size 16 runs materialized (whose values test_backend_ops checks)
    const attn_case c{2, 9, 2, 16, true, 0.0f};
    const std::vector<bfloat16> qkv = random_values<bfloat16>(std::size_t(c.B * c.T * 3 * 32), 31);
    const std::vector<bfloat16> dout = random_values<bfloat16>(std::size_t(c.B * c.T * 32), 32);
    const gpu_run<bfloat16> r = run_padded(c, qkv, padding_mask<bfloat16>(c.B, c.T), dout, 1, 0);
    CHECK(r.lse.empty()); // nothing flash saved
    ctx.matmul = matmul_precision::fp32;
    const std::vector<float> qkv32 = random_values<float>(std::size_t(2 * 9 * 3 * 64), 33);
    const gpu_run<float> r32 = run_padded(attn_case{2, 9, 1, 64, false, 0.0f}, qkv32, {},
                                          random_values<float>(std::size_t(2 * 9 * 64), 34), 1, 0);
    CHECK(r32.lse.empty());
    CHECK(ctx.flash_attention_launches == launches);
    const tensor<std::int32_t, cuda> cu = upload(std::vector<std::int32_t>{0, 9});
    tensor<bfloat16, cuda> x = upload(qkv), out = tensor<bfloat16, cuda>::empty({9 * 32});
    tensor<float, cuda> lse = tensor<float, cuda>::empty({2 * 9});
    const B_cuda::varlen_dims d{cu.data(), 1, 9, 32, 2, 96};
    check_error([&] {
      B_cuda::attention_varlen_forward(ctx, d, x.data(), x.data() + 32, x.data() + 64, out.data(), lse.data(), 0.0f, 1, 0);
    },
                {"attention_varlen", "head size 16", "packed sequences need the flash provider"});
    ctx.attention = attention_provider::materialized;
    const B_cuda::varlen_dims d64{cu.data(), 1, 9, 128, 2, 384};
    const std::vector<bfloat16> big = random_values<bfloat16>(std::size_t(9 * 384), 35);
    tensor<bfloat16, cuda> xb = upload(big), ob = tensor<bfloat16, cuda>::empty({9 * 128});
    check_error([&] {
      B_cuda::attention_varlen_forward(ctx, d64, xb.data(), xb.data() + 128, xb.data() + 256, ob.data(), lse.data(), 0.0f,
                                       1, 0);
    },
                {"attention_varlen", "packed sequences need the flash provider"});
  });
}

TEST_CASE("cuda cudnn attention: cuDNN's fused SDPA against the reference, masks and dropout, bf16 and fp16") {
#if !defined(MINIBERT_CUDNN) // the CMake option MINIBERT_CUDNN_ATTENTION was off or cuDNN was not found
  std::cout << "[minibert-skip] cuda cudnn attention: built without the cuDNN provider" << std::endl;
  return;
#endif
  if (skip_without_gpu("cuda cudnn attention")) return;
  with_provider(attention_provider::cudnn, [] {
    // the flash cases without dropout (cuDNN's keep mask can be read back only where T <= HS) and with T > 1 (its
    // backward refuses T = 1), then with dropout at multiples of 1/16 (the only probabilities it is given)
    std::vector<attn_case> all;
    for (attn_case c : cases()) {
      c.p = 0.0f;
      if (c.T > 1) all.push_back(c);
    }
    for (const attn_case& c : {attn_case{2, 17, 2, 32, true, 0.125f}, attn_case{3, 64, 2, 64, true, 0.125f},
                               attn_case{1, 100, 1, 128, false, 0.25f}})
      all.push_back(c);
    for (const attn_case& c : all) {
      // cuDNN must take every unmasked case without dropout (padding with a bias, or dropout, it may decline)
      const bool plain = !c.masked && c.p == 0.0f;
      CHECK_MESSAGE((check_fused<bfloat16>(c, matmul_precision::fp32, attention_provider::cudnn) || !plain),
                    describe(c) << " bf16: cuDNN declined it");
      CHECK_MESSAGE((check_fused<half>(c, matmul_precision::fp32, attention_provider::cudnn) || !plain),
                    describe(c) << " fp16: cuDNN declined it");
    }
  });
}

TEST_CASE("cuda cudnn attention: fp32 data, head sizes and dropout rates cuDNN does not take run materialized") {
  if (skip_without_gpu("cuda cudnn attention fallback")) return;
  with_provider(attention_provider::cudnn, [] {
    auto& ctx = current_context<cuda>();
    const std::uint64_t launches = ctx.cudnn_attention_launches;
    ctx.matmul = matmul_precision::bf16;
    const gpu_run<float> r = run_padded(attn_case{2, 9, 1, 64, true, 0.0f}, random_values<float>(2 * 9 * 3 * 64, 41),
                                        padding_mask<float>(2, 9), random_values<float>(2 * 9 * 64, 42), 1, 0);
    CHECK(r.lse.empty()); // the materialized path saved no statistics
    const gpu_run<bfloat16> r12 =
        run_padded(attn_case{2, 9, 2, 12, false, 0.0f}, random_values<bfloat16>(2 * 9 * 3 * 24, 43), {},
                   random_values<bfloat16>(2 * 9 * 24, 44), 1, 0); // head size 12: rows not 16-byte aligned
    CHECK(r12.lse.empty());
    const gpu_run<bfloat16> r01 =
        run_padded(attn_case{2, 9, 1, 64, false, 0.1f}, random_values<bfloat16>(2 * 9 * 3 * 64, 45), {},
                   random_values<bfloat16>(2 * 9 * 64, 46), 1, 0); // 0.1: not a multiple of 1/16
    CHECK(r01.lse.empty());
    CHECK(ctx.cudnn_attention_launches == launches);
  });
}

} // namespace test_cuda_attention
