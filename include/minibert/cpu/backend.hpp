// SPDX-License-Identifier: MIT
#pragma once
/* backend<device::cpu>: the CPU op table (backend.hpp's contract), forwarding to the kernels in the cpu/ headers
   (Eigen + OpenMP + the AVX-512 GEMM). Device memory is host memory, so upload/download are copies and scalar
   results are written straight to their destination. */

#include <algorithm> // copy, transform
#include <cmath>     // sqrt, isfinite
#include <cstdint>   // int64_t, int32_t, uint8_t, uint64_t
#include <limits>    // numeric_limits (additive mask)

#include <minibert/backend.hpp>
#include <minibert/cpu/adamw.hpp>
#include <minibert/cpu/attention.hpp>
#include <minibert/cpu/context.hpp>
#include <minibert/cpu/dropout.hpp>
#include <minibert/cpu/elementwise.hpp>
#include <minibert/cpu/embedding.hpp>
#include <minibert/cpu/gemm.hpp>
#include <minibert/cpu/layer_norm.hpp>
#include <minibert/cpu/loss.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/cpu/softmax.hpp>
#include <minibert/profiler.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

template <> struct backend<device::cpu> {
  using i64 = std::int64_t;
  using ctx_t = context<device::cpu>;
  template <class T> using A = acc_t<T>;

  // ------------------------------------------------------------------ memory and copies
  template <class T> static void fill(ctx_t&, T* y, i64 n, T v) { cpu::fill(y, n, v); }
  template <class T> static void copy(ctx_t&, const T* x, T* y, i64 n) { cpu::copy(x, y, n); }
  template <class T> static void upload(ctx_t&, const T* host, T* y, i64 n) { std::copy(host, host + n, y); }
  template <class T> static void download(ctx_t&, const T* x, T* host, i64 n) { std::copy(x, x + n, host); }
  template <class T> static void copy_strided(ctx_t&, const T* x, const shape& sizes, const shape& strides, T* y) {
    cpu::copy_strided(x, sizes, strides, y);
  }
  template <class T> static void copy_into(ctx_t&, const T* x, T* y, const shape& sizes, const shape& strides) {
    cpu::copy_into(x, y, sizes, strides);
  }
  template <class T> static void cast(ctx_t&, const T* x, A<T>* y, i64 n) {
    std::transform(x, x + n, y, [](T v) { return A<T>(v); });
  }
  static void synchronize(ctx_t&) {}

  // ------------------------------------------------------------------ element-wise
  template <class T> static void axpy(ctx_t&, T a, const T* x, T* y, i64 n) { cpu::axpy(a, x, y, n); }
  template <class T> static void scale(ctx_t&, T a, const T* x, T* y, i64 n) { cpu::scale(a, x, y, n); }
  template <class T>
  static void binary(ctx_t&, binary_op op, const shape& out_shape, const T* a, const shape& as, const T* b,
                     const shape& bs, T* out) {
    cpu::binary(op, out_shape, a, as, b, bs, out);
  }
  template <class T> static void sum_to(ctx_t&, const T* g, const shape& gs, T* out, i64 out_numel, const shape& ts) {
    cpu::sum_to(g, gs, out, out_numel, ts);
  }
  template <class T> static void sum_all(ctx_t&, const T* x, i64 n, bool mean, T* out) {
    const double s = cpu::sum(x, n);
    out[0] = T(mean ? s / double(n) : s);
  }
  template <class T> static void broadcast_scalar(ctx_t&, const T* s, T divisor, T* y, i64 n) {
    cpu::fill(y, n, T(s[0] / divisor));
  }

  // ------------------------------------------------------------------ matrix products
  template <class T>
  static void gemm(ctx_t& ctx, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a, i64 lda, const T* b,
                   i64 ldb, A<T> beta, T* c, i64 ldc) {
    profiler::gemm_timer timer(ta, tb, M, N, K);
    cpu::gemm(ta, tb, M, N, K, T(alpha), a, lda, b, ldb, T(beta), c, ldc, ctx.matmul);
  }
  template <class T>
  static void gemm_batched(ctx_t& ctx, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a, i64 lda, i64 sa,
                           const T* b, i64 ldb, i64 sb, A<T> beta, T* c, i64 ldc, i64 sc, i64 batch) {
    profiler::gemm_timer timer(ta, tb, M, N, K, batch);
    cpu::gemm_batched(ta, tb, M, N, K, T(alpha), a, lda, sa, b, ldb, sb, T(beta), c, ldc, sc, batch, ctx.matmul);
  }
  /// @brief out (N,C) = inp (N,K) * weight (C,K)^T + bias (C)  (a linear layer, weight as torch stores it)
  template <class T>
  static void linear_forward(ctx_t& ctx, const T* inp, const T* w, const T* bias, T* out, i64 N, i64 K, i64 C) {
    if (bias) {
      cpu::detail::parallel_for(N, C, [&](i64 b, i64 e) {
        for (i64 i = b; i < e; ++i) std::copy(bias, bias + C, out + i * C);
      });
    }
    profiler::gemm_timer timer(false, true, N, C, K);
    cpu::gemm(false, true, N, C, K, T(1), inp, K, w, K, bias ? T(1) : T(0), out, C, ctx.matmul);
  }
  /// @brief dinp = dout w (overwrite); dw += dout^T inp; dbias += column sums of dout. Null outputs are skipped.
  template <class T>
  static void linear_backward(ctx_t& ctx, const T* dout, const T* inp, const T* w, T* dinp, T* dw, T* dbias, i64 N, i64 K,
                              i64 C) {
    if (dinp) {
      profiler::gemm_timer timer(false, false, N, K, C);
      cpu::gemm(false, false, N, K, C, T(1), dout, C, w, K, T(0), dinp, K, ctx.matmul);
    }
    if (dw) {
      profiler::gemm_timer timer(true, false, C, K, N);
      cpu::gemm(true, false, C, K, N, T(1), dout, C, inp, K, T(1), dw, K, ctx.matmul);
    }
    if (dbias) {
      using cmat = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(dbias, C) += cmat(dout, N, C).colwise().sum();
    }
  }

  // ------------------------------------------------------------------ activations, normalization, softmax
  template <class T> static void activation_forward(ctx_t&, activation a, const T* x, T* y, i64 n) {
    cpu::activation_forward(a, x, y, n);
  }
  template <class T> static void activation_backward(ctx_t&, activation a, const T* x, const T* dy, T* dx, i64 n) {
    cpu::activation_backward(a, x, dy, dx, n);
  }
  template <class T>
  static void layer_norm_forward(ctx_t&, const T* inp, const T* w, const T* b, T* out, A<T>* mean, A<T>* rstd, i64 N,
                                 i64 C, double eps) {
    cpu::layer_norm_forward(inp, w, b, out, mean, rstd, N, C, eps);
  }
  template <class T>
  static void layer_norm_backward(ctx_t&, const T* dout, const T* inp, const T* w, const A<T>* mean, const A<T>* rstd,
                                  T* dinp, T* dw, T* db, i64 N, i64 C) {
    cpu::layer_norm_backward(dout, inp, w, mean, rstd, dinp, dw, db, N, C);
  }
  template <class T>
  static void softmax_forward(ctx_t&, const T* x, const T* mask, const row_broadcast& rows, T* y, i64 R, i64 L) {
    cpu::softmax_forward(x, mask, rows, y, R, L);
  }
  template <class T> static void softmax_backward(ctx_t&, const T* y, const T* dy, T* dx, i64 R, i64 L) {
    cpu::softmax_backward(y, dy, dx, R, L);
  }
  template <class T> static void additive_mask(ctx_t&, const std::int32_t* mask, T* out, i64 n) {
    for (i64 i = 0; i < n; ++i) out[i] = mask[i] ? T(0) : std::numeric_limits<T>::lowest();
  }

  // ------------------------------------------------------------------ embeddings
  template <class T, class I> static void embedding_forward(ctx_t&, const I* ids, const T* w, T* out, i64 N, i64 C) {
    cpu::embedding_forward(ids, w, out, N, C);
  }
  template <class T, class I> static void embedding_backward(ctx_t&, const I* ids, const T* dout, T* dw, i64 N, i64 C) {
    cpu::embedding_backward(ids, dout, dw, N, C);
  }

  // ------------------------------------------------------------------ losses
  template <class T, class I>
  static void cross_entropy_forward(ctx_t&, const T* logits, const I* targets, T* probs, i64 N, i64 C, i64 ignore,
                                    T* loss, A<T>* count) {
    i64 counted = 0;
    const double l = cpu::cross_entropy_forward(logits, targets, probs, N, C, ignore, counted);
    loss[0] = T(counted ? l : std::numeric_limits<double>::quiet_NaN());
    count[0] = A<T>(counted);
  }
  template <class T, class I>
  static void cross_entropy_backward(ctx_t&, const T* probs, const I* targets, const T* dloss, const A<T>* count,
                                     T* dlogits, i64 N, i64 C, i64 ignore) {
    cpu::cross_entropy_backward(probs, targets, dloss[0], dlogits, N, C, ignore, i64(count[0]));
  }
  template <class T> static void mse_forward(ctx_t&, const T* x, const T* y, i64 n, T* loss) {
    loss[0] = T(cpu::mse_forward(x, y, n));
  }
  template <class T> static void mse_backward(ctx_t&, const T* x, const T* y, const T* dloss, T* dx, i64 n) {
    cpu::mse_backward(x, y, dloss[0], dx, n);
  }
  template <class T> static void bce_with_logits_forward(ctx_t&, const T* x, const T* y, i64 n, T* loss) {
    loss[0] = T(cpu::bce_with_logits_forward(x, y, n));
  }
  template <class T> static void bce_with_logits_backward(ctx_t&, const T* x, const T* y, const T* dloss, T* dx, i64 n) {
    cpu::bce_with_logits_backward(x, y, dloss[0], dx, n);
  }

  // ------------------------------------------------------------------ dropout
  template <class T>
  static void dropout_forward(ctx_t&, const T* x, T* y, std::uint8_t* keep, i64 n, float p, std::uint64_t seed,
                              std::uint64_t base) {
    cpu::dropout_forward(x, y, keep, n, p, seed, base);
  }
  template <class T> static void dropout_backward(ctx_t&, const T* dy, const std::uint8_t* keep, T* dx, i64 n, float p) {
    cpu::dropout_backward(dy, keep, dx, n, p);
  }

  // ------------------------------------------------------------------ attention
  /// @brief what the CPU attention saves: the probabilities (B,NH,T,ldp) and, with dropout, the keep mask
  template <class T> struct attention_saved {
    tensor<T, device::cpu> probs;
    tensor<std::uint8_t, device::cpu> keep;
  };
  template <class T>
  static void attention_forward(ctx_t& ctx, const attention_dims& d, const T* q, const T* k, const T* v, const T* mask,
                                T* out, attention_saved<T>& saved, float p, std::uint64_t seed, std::uint64_t base) {
    saved.probs = tensor<T, device::cpu>::empty({d.B, d.NH, d.T, cpu::attention_probs_ld(d.T)});
    if (p > 0) saved.keep = tensor<std::uint8_t, device::cpu>::empty(saved.probs.shape());
    cpu::attention_forward(ctx, d, q, k, v, mask, out, saved.probs.data(), saved.keep.data(), p, seed, base);
  }
  template <class T>
  static void attention_backward(ctx_t& ctx, const attention_dims& d, const T* dout, const T* q, const T* k, const T* v,
                                 const T* mask, const attention_saved<T>& saved, float p, T* dq, T* dk, T* dv) {
    cpu::attention_backward(ctx, d, dout, q, k, v, mask, saved.probs.data(), saved.keep.data(), p, dq, dk, dv);
  }

  // ------------------------------------------------------------------ optimizer
  template <class T>
  static void adamw_step(ctx_t&, std::span<const adamw_tensor<T>> tensors, const adamw_coefficients<A<T>>& c) {
    for (const adamw_tensor<T>& t : tensors) cpu::adamw_step(t.master, t.param, t.grad, t.exp_avg, t.exp_avg_sq, t.n, c);
  }
  /// @brief total[0] += each tensor's sum of squares, tensor by tensor
  template <class T> static void sum_squares(ctx_t&, std::span<const foreach_tensor<const T>> xs, double* total) {
    for (const auto& x : xs) total[0] += cpu::sum_squares(x.data, x.n);
  }
  template <class T>
  static void clip_by_norm(ctx_t&, std::span<const foreach_tensor<T>> xs, const double* total_sq, double max_norm) {
    const double coef = clip_coefficient(total_sq[0], max_norm);
    if (coef < 1.0)
      for (const auto& x : xs) cpu::scale(T(coef), x.data, x.data, x.n);
  }
  /// @brief every g *= inv_scale; *found_inf = 1 when an element was inf or NaN (never cleared: the caller zeroes it
  /// once per step, as GradScaler.unscale_ does)
  template <class T>
  static void non_finite_check_and_unscale(ctx_t&, std::span<const foreach_tensor<T>> gs, A<T> inv_scale,
                                           A<T>* found_inf) {
    for (const auto& g : gs)
      if (cpu::non_finite_check_and_unscale(g.data, g.n, inv_scale)) found_inf[0] = A<T>(1);
  }
};

static_assert(backend_for<device::cpu, float> && backend_for<device::cpu, double>,
              "backend<device::cpu> does not implement the contract of backend.hpp");

} // namespace minibert
