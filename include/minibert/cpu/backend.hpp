// SPDX-License-Identifier: MIT
#pragma once
/* backend<device::cpu>: the CPU op table, forwarding to the kernels in the cpu/ headers (Eigen + OpenMP). */

#include <cstdint> // int64_t, uint8_t

#include <minibert/backend.hpp>
#include <minibert/cpu/adamw.hpp>
#include <minibert/cpu/attention.hpp>
#include <minibert/cpu/dropout.hpp>
#include <minibert/cpu/elementwise.hpp>
#include <minibert/cpu/embedding.hpp>
#include <minibert/cpu/gemm.hpp>
#include <minibert/cpu/layer_norm.hpp>
#include <minibert/cpu/loss.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/cpu/softmax.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

template <> struct backend<device::cpu> {
  using i64 = std::int64_t;
  template <class T> using tensor_t = tensor<T, device::cpu>;

  template <class T> static void fill(T* y, i64 n, T v) { cpu::fill(y, n, v); }
  template <class T> static void copy(const T* x, T* y, i64 n) { cpu::copy(x, y, n); }
  /// @brief device -> host and host -> device copies (plain copies here)
  template <class T> static void download(const T* dev, T* host, i64 n) { std::copy(dev, dev + n, host); }
  template <class T> static void upload(const T* host, T* dev, i64 n) { std::copy(host, host + n, dev); }
  template <class T> static void axpy(T a, const T* x, T* y, i64 n) { cpu::axpy(a, x, y, n); }
  template <class T> static void scale(T a, const T* x, T* y, i64 n) { cpu::scale(a, x, y, n); }
  /// @brief contiguous copy of a strided view
  template <class T> static tensor_t<T> contiguous(const tensor_t<T>& t) { return t.contiguous(); }
  /// @brief dst (a strided view) = src (contiguous, same shape)
  template <class T> static void copy_into(const T* src, const tensor_t<T>& dst) { cpu::copy_into(src, dst); }
  template <class T>
  static void binary(binary_op op, const shape& out_shape, const T* a, const shape& as, const T* b, const shape& bs,
                     T* out) {
    cpu::binary(op, out_shape, a, as, b, bs, out);
  }
  template <class T> static void sum_to(const T* g, const shape& gs, T* out, i64 out_numel, const shape& ts) {
    cpu::sum_to(g, gs, out, out_numel, ts);
  }
  template <class T> static double sum(const T* x, i64 n) { return cpu::sum(x, n); }

  template <class T>
  static void gemm(bool ta, bool tb, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, const T* B, i64 ldb, T beta,
                   T* C, i64 ldc) {
    cpu::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  template <class T>
  static void gemm_batched(bool ta, bool tb, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, i64 sa, const T* B,
                           i64 ldb, i64 sb, T beta, T* C, i64 ldc, i64 sc, i64 batch) {
    cpu::gemm_batched(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
  /// @brief out (N,C) = inp (N,K) * weight (C,K)^T + bias (C)  (a linear layer, weight as torch stores it)
  template <class T> static void linear_forward(const T* inp, const T* w, const T* bias, T* out, i64 N, i64 K, i64 C) {
    if (bias) {
      cpu::detail::parallel_for(N, C, [&](i64 b, i64 e) {
        for (i64 i = b; i < e; ++i) std::copy(bias, bias + C, out + i * C);
      });
    }
    cpu::gemm(false, true, N, C, K, T(1), inp, K, w, K, bias ? T(1) : T(0), out, C);
  }
  /// @brief dinp = dout w (overwrite); dw += dout^T inp; dbias += column sums of dout. Null outputs are skipped.
  template <class T>
  static void linear_backward(const T* dout, const T* inp, const T* w, T* dinp, T* dw, T* dbias, i64 N, i64 K, i64 C) {
    if (dinp) cpu::gemm(false, false, N, K, C, T(1), dout, C, w, K, T(0), dinp, K);
    if (dw) cpu::gemm(true, false, C, K, N, T(1), dout, C, inp, K, T(1), dw, K);
    if (dbias) {
      using cmat = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(dbias, C) += cmat(dout, N, C).colwise().sum();
    }
  }

  template <class T> static void activation_forward(activation a, const T* x, T* y, i64 n) {
    cpu::activation_forward(a, x, y, n);
  }
  template <class T> static void activation_backward(activation a, const T* x, const T* dy, T* dx, i64 n) {
    cpu::activation_backward(a, x, dy, dx, n);
  }
  template <class T>
  static void layer_norm_forward(const T* inp, const T* w, const T* b, T* out, T* mean, T* rstd, i64 N, i64 C,
                                 double eps) {
    cpu::layer_norm_forward(inp, w, b, out, mean, rstd, N, C, eps);
  }
  template <class T>
  static void layer_norm_backward(const T* dout, const T* inp, const T* w, const T* mean, const T* rstd, T* dinp, T* dw,
                                  T* db, i64 N, i64 C) {
    cpu::layer_norm_backward(dout, inp, w, mean, rstd, dinp, dw, db, N, C);
  }
  template <class T>
  static void softmax_forward(const T* x, const T* mask, const row_broadcast& rows, T* y, i64 R, i64 L) {
    cpu::softmax_forward(x, mask, rows, y, R, L);
  }
  template <class T> static void softmax_backward(const T* y, const T* dy, T* dx, i64 R, i64 L) {
    cpu::softmax_backward(y, dy, dx, R, L);
  }
  template <class T, class I> static void embedding_forward(const I* ids, const T* w, T* out, i64 N, i64 C) {
    cpu::embedding_forward(ids, w, out, N, C);
  }
  template <class T, class I> static void embedding_backward(const I* ids, const T* dout, T* dw, i64 N, i64 C) {
    cpu::embedding_backward(ids, dout, dw, N, C);
  }
  template <class T, class I>
  static double cross_entropy_forward(const T* logits, const I* targets, T* probs, i64 N, i64 C, i64 ignore,
                                      i64& count) {
    return cpu::cross_entropy_forward(logits, targets, probs, N, C, ignore, count);
  }
  template <class T, class I>
  static void cross_entropy_backward(const T* probs, const I* targets, T dloss, T* dlogits, i64 N, i64 C, i64 ignore,
                                     i64 count) {
    cpu::cross_entropy_backward(probs, targets, dloss, dlogits, N, C, ignore, count);
  }
  template <class T> static double mse_forward(const T* x, const T* y, i64 n) { return cpu::mse_forward(x, y, n); }
  template <class T> static void mse_backward(const T* x, const T* y, T dloss, T* dx, i64 n) {
    cpu::mse_backward(x, y, dloss, dx, n);
  }
  template <class T> static double bce_with_logits_forward(const T* x, const T* y, i64 n) {
    return cpu::bce_with_logits_forward(x, y, n);
  }
  template <class T> static void bce_with_logits_backward(const T* x, const T* y, T dloss, T* dx, i64 n) {
    cpu::bce_with_logits_backward(x, y, dloss, dx, n);
  }
  template <class T>
  static void dropout_forward(const T* x, T* y, std::uint8_t* keep, i64 n, float p, std::uint64_t seed,
                              std::uint64_t base) {
    cpu::dropout_forward(x, y, keep, n, p, seed, base);
  }
  template <class T> static void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, i64 n, float p) {
    cpu::dropout_backward(dy, keep, dx, n, p);
  }
  /// @brief row stride of attention_forward's saved probabilities (B,NH,T,ld)
  static i64 attention_probs_ld(i64 T) { return cpu::attention_probs_ld(T); }
  template <class T>
  static void attention_forward(const attention_dims& d, const T* q, const T* k, const T* v, const T* mask, T* out,
                                T* probs, std::uint8_t* keep, float p, std::uint64_t seed, std::uint64_t base) {
    cpu::attention_forward(d, q, k, v, mask, out, probs, keep, p, seed, base);
  }
  template <class T>
  static void attention_backward(const attention_dims& d, const T* dout, const T* q, const T* k, const T* v,
                                 const T* mask, const T* probs, const std::uint8_t* keep, float p, T* dq, T* dk, T* dv) {
    cpu::attention_backward(d, dout, q, k, v, mask, probs, keep, p, dq, dk, dv);
  }
  template <class T> static void adamw_step(T* p, const T* g, T* m, T* v, i64 n, const adamw_coefficients<T>& c) {
    cpu::adamw_step(p, g, m, v, n, c);
  }
  template <class T> static double sum_squares(const T* x, i64 n) { return cpu::sum_squares(x, n); }
};

} // namespace minibert
