// SPDX-License-Identifier: MIT
#pragma once
/* CPU GEMM over row-major strided matrices: C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C, and a
   batched form for attention-style products. fp32 on AVX-512F builds runs minibert's own packed, blocked
   GEMM (cpu/gemm_f32.hpp over cpu/gemm_kernel.hpp, threaded with OpenMP); everything else runs Eigen's GEMM.
   A matmul_precision other than fp32 (precision.hpp) rounds the operands to bf16 or fp16 and accumulates in
   fp32: bf16 runs on vdpbf16ps when the CPU has AVX512-BF16 (checked at run time; the kernel is compiled for
   that target whatever the build's flags), else the rounded operands go through the fp32 kernel, with one
   warning on stderr. */

#include <cstdint>     // int64_t
#include <cstdio>      // fprintf (the one-time warning)
#include <type_traits> // is_same_v
#include <vector>      // vector (rounded operands, Eigen path)

#include <Eigen/Core> // Map, Matrix, OuterStride

#include <minibert/cpu/parallel.hpp>
#include <minibert/precision.hpp>
#if defined(__AVX512F__)
#include <minibert/cpu/gemm_f32.hpp>
#endif

namespace minibert::cpu {

/// @brief whether this CPU executes AVX512-BF16 (vdpbf16ps)
inline bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

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

// test hook: false makes bf16 products take the emulated path (rounded operands, fp32 kernel) on any CPU
inline bool& bf16_kernel_enabled() {
  static bool enabled = true;
  return enabled;
}

inline void warn_bf16_emulated() {
  static const bool once = [] {
    std::fprintf(stderr, "minibert: no AVX512-BF16 kernel for this CPU or this build: bf16 matmuls round their "
                         "operands to bf16 and run at fp32 speed\n");
    return true;
  }();
  (void)once;
}

// the operands rounded to the precision, as dense copies of the stored matrices (the Eigen path)
template <class T>
std::vector<T> rounded_copy(matmul_precision p, const T* x, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  std::vector<T> out(std::size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      out[std::size_t(r * cols + c)] = T(round_to_precision(p, float(x[r * ld + c])));
  return out;
}
} // namespace detail

/// @brief C = alpha * op(A) * op(B) + beta * C, all row-major with leading (row) strides lda, ldb, ldc.
/// op(A) is (M,K): A is stored (M,K) or, when trans_a, (K,M); likewise B is (K,N) or (N,K). With a precision
/// other than fp32, the products see A and B rounded to it (see the top of this file).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
          matmul_precision precision = matmul_precision::fp32) {
  using namespace detail;
  if (M == 0 || N == 0) return;
  mut_map<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K == 0) {
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    gemm_args g{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    if (precision == matmul_precision::fp16) g.mode = gemm_mode::round_fp16;
    if (precision == matmul_precision::bf16) {
      g.mode = cpu_has_avx512_bf16() && bf16_kernel_enabled() ? gemm_mode::bf16_native : gemm_mode::round_bf16;
      if (!cpu_has_avx512_bf16()) warn_bf16_emulated();
    }
    gemm_f32(g);
    return;
  }
#endif
  if (precision != matmul_precision::fp32) { // round copies of the operands, then the fp32 product
    if (precision == matmul_precision::bf16) warn_bf16_emulated();
    const std::int64_t ar = trans_a ? K : M, ac = trans_a ? M : K, br = trans_b ? N : K, bc = trans_b ? K : N;
    const std::vector<T> ra = rounded_copy(precision, A, ar, ac, lda), rb = rounded_copy(precision, B, br, bc, ldb);
    gemm(trans_a, trans_b, M, N, K, alpha, ra.data(), ac, rb.data(), bc, beta, C, ldc);
    return;
  }
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
                  std::int64_t batch, matmul_precision precision = matmul_precision::fp32) {
  const std::int64_t flops = 2 * M * N * K;
  const bool per_thread = batch > 1 && flops < (std::int64_t(1) << 24);
  auto run = [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t i = b0; i < b1; ++i)
      gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
           C + i * stride_c, ldc, precision);
  };
  if (per_thread) detail::parallel_for(batch, flops, run);
  else run(0, batch);
}

} // namespace minibert::cpu
