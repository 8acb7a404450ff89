// SPDX-License-Identifier: MIT
#pragma once
/* CPU GEMM over row-major strided matrices: C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C, and a
   batched form for attention-style products. fp32 on AVX-512F builds runs minibert's own packed, blocked
   GEMM (cpu/gemm_f32.hpp over cpu/gemm_kernel.hpp, threaded with OpenMP); everything else runs Eigen's GEMM. */

#include <cstdint>     // int64_t
#include <type_traits> // is_same_v

#include <Eigen/Core> // Map, Matrix, OuterStride

#include <minibert/cpu/parallel.hpp>
#if defined(__AVX512F__)
#include <minibert/cpu/gemm_f32.hpp>
#endif

namespace minibert::cpu {

namespace detail {
template <class T> using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T> using const_map = Eigen::Map<const row_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T> using mut_map = Eigen::Map<row_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T, class OpA, class OpB>
void gemm_eigen(const OpA& a, const OpB& b, T alpha, T beta, mut_map<T>& c) {
  if (beta == T(0)) {
    c.noalias() = alpha * (a * b);
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * (a * b);
  }
}
} // namespace detail

/// @brief C = alpha * op(A) * op(B) + beta * C, all row-major with leading (row) strides lda, ldb, ldc.
/// op(A) is (M,K): A is stored (M,K) or, when trans_a, (K,M); likewise B is (K,N) or (N,K).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  using namespace detail;
  if (M == 0 || N == 0) return;
  mut_map<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K == 0) {
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    gemm_f32(gemm_args{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc});
    return;
  }
#endif
  const_map<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  const_map<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) gemm_eigen(a, b, alpha, beta, c);
  else if (!trans_a && trans_b) gemm_eigen(a, b.transpose(), alpha, beta, c);
  else if (trans_a && !trans_b) gemm_eigen(a.transpose(), b, alpha, beta, c);
  else gemm_eigen(a.transpose(), b.transpose(), alpha, beta, c);
}

/// @brief `batch` independent GEMMs; matrix i starts at A + i*stride_a (likewise B, C). Small products
/// run one per thread; large ones run one after another, each using all threads inside Eigen.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
                  const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
                  std::int64_t stride_b, T beta, T* C, std::int64_t ldc, std::int64_t stride_c,
                  std::int64_t batch) {
  const std::int64_t flops = 2 * M * N * K;
  const bool per_thread = batch > 1 && flops < (std::int64_t(1) << 24);
  auto run = [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t i = b0; i < b1; ++i)
      gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
           C + i * stride_c, ldc);
  };
  if (per_thread) detail::parallel_for(batch, flops, run);
  else run(0, batch);
}

} // namespace minibert::cpu
