// SPDX-License-Identifier: MIT
#pragma once
/* CPU fused multi-head self-attention (Vaswani et al. 2017), forward and backward side by side.
   q, k, v (B,T,C) read in place with row stride ld (so they may be column blocks of one (B,T,3C) QKV
   projection), heads NH of size HS = C/NH taken as column blocks (no permute copies):
     S = q_h k_h^T / sqrt(HS) + mask[b] (B,T additive, optional);  P = softmax(S);  O_h = dropout(P) v_h
   out (B,T,C). Saves P (B,NH,T,ldp) and the dropout keep mask for the backward. Keys past the last unmasked one
   are skipped (exactly: they would add zeros), so a row's result does not depend on its batch's padding. */

#include <cmath>   // sqrt
#include <cstdint> // int64_t, uint8_t
#include <algorithm> // fill
#include <vector>  // vector (key lengths)

#include <minibert/backend.hpp>
#include <minibert/cpu/context.hpp>
#include <minibert/cpu/dropout.hpp>
#include <minibert/cpu/gemm.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/cpu/softmax.hpp>
#include <minibert/tensor.hpp>

namespace minibert::cpu {

/// @brief the row stride of the saved probabilities: T rounded up to a cache line of floats, so that every row
/// starts 64-byte aligned and its vectorized reductions group the elements the same way whatever T is
inline std::int64_t attention_probs_ld(std::int64_t T) { return (T + 15) / 16 * 16; }

namespace detail {
// Keys a row attends to: the prefix [0, len) that ends at the last key whose mask is not effectively -inf.
// Keys past it add exp(-huge) = 0 to every sum, so skipping them is exact, and it makes each row's result
// independent of how much padding its batch carries.
template <class T> std::vector<std::int64_t> key_lengths(const T* mask, std::int64_t B, std::int64_t Tn) {
  std::vector<std::int64_t> len(static_cast<std::size_t>(B), Tn);
  if (!mask) return len;
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t l = Tn;
    while (l > 1 && mask[b * Tn + l - 1] < T(-1e30)) --l;
    len[b] = l;
  }
  return len;
}
} // namespace detail

/// @brief forward; probs (B,NH,T,ldp) receives softmax(S) (ldp = attention_probs_ld(T); columns past a row's
/// key length are zero); keep (same layout) the dropout mask when p > 0
template <class T>
void attention_forward(context<device::cpu>& ctx, const attention_dims& d, const T* q, const T* k, const T* v, const T* mask, T* out, T* probs,
                       std::uint8_t* keep, float p, std::uint64_t seed, std::uint64_t base) {
  const std::int64_t B = d.B, Tn = d.T, NH = d.NH, HS = d.HS(), ld = d.ld_qkv, C = d.C, ldp = attention_probs_ld(Tn);
  const T scale = T(1) / std::sqrt(T(HS));
  const T keep_scale = p > 0 ? T(1) / (T(1) - T(p)) : T(1);
  const std::vector<std::int64_t> klen = detail::key_lengths(mask, B, Tn);
  // one scratch block of T x ldp per thread chunk, rows 64-byte aligned like the saved probabilities (Eigen's
  // reductions group elements by address)
  const std::int64_t per_chunk = p > 0 ? Tn * ldp : 0;
  T* scratch = ctx.scratch<T>(per_chunk * detail::parallel_chunks(B * NH, 4 * Tn * Tn * HS));
  detail::parallel_for_chunks(B * NH, 4 * Tn * Tn * HS, [&](int chunk, std::int64_t b0, std::int64_t b1) {
    T* dropped = scratch + chunk * per_chunk;
    for (std::int64_t bh = b0; bh < b1; ++bh) {
      const std::int64_t b = bh / NH, h = bh % NH, L = klen[b];
      const std::int64_t off = b * Tn * ld + h * HS;
      T* P = probs + bh * Tn * ldp;
      gemm(false, true, Tn, L, HS, scale, q + off, ld, k + off, ld, T(0), P, ldp, ctx.matmul);
      for (std::int64_t i = 0; i < Tn; ++i) {
        T* row = P + i * ldp;
        softmax_forward(row, mask ? mask + b * Tn : (const T*)nullptr, [](std::int64_t) { return std::int64_t(0); }, row,
                        1, L);
        std::fill(row + L, row + ldp, T(0));
      }
      const T* PV = P;
      if (p > 0) {
        std::uint8_t* kp = keep + bh * Tn * ldp;
        const std::uint64_t first = std::uint64_t(bh * Tn * Tn); // Philox index: position in (B,NH,T,T)
        for (std::int64_t i = 0; i < Tn; ++i) {
          std::uint8_t* krow = kp + i * ldp;
          dropout_keep(seed, base, first + std::uint64_t(i * Tn), L, p, krow);
          for (std::int64_t j = 0; j < L; ++j) dropped[i * ldp + j] = krow[j] ? P[i * ldp + j] * keep_scale : T(0);
        }
        PV = dropped;
      }
      gemm(false, false, Tn, HS, L, T(1), PV, ldp, v + off, ld, T(0), out + b * Tn * C + h * HS, C, ctx.matmul);
    }
  });
}

/// @brief backward: dq, dk, dv (B,T,C, row stride ld) are overwritten with the gradients
template <class T>
void attention_backward(context<device::cpu>& ctx, const attention_dims& d, const T* dout, const T* q, const T* k, const T* v, const T* mask,
                        const T* probs, const std::uint8_t* keep, float p, T* dq, T* dk, T* dv) {
  const std::int64_t B = d.B, Tn = d.T, NH = d.NH, HS = d.HS(), ld = d.ld_qkv, C = d.C, ldp = attention_probs_ld(Tn);
  const T scale = T(1) / std::sqrt(T(HS));
  const T keep_scale = p > 0 ? T(1) / (T(1) - T(p)) : T(1);
  const std::vector<std::int64_t> klen = detail::key_lengths(mask, B, Tn);
  // per thread chunk: dP and (with dropout) the dropped probabilities, T x ldp each, rows 64-byte aligned
  const std::int64_t per_chunk = (p > 0 ? 2 : 1) * Tn * ldp;
  T* scratch = ctx.scratch<T>(per_chunk * detail::parallel_chunks(B * NH, 8 * Tn * Tn * HS));
  detail::parallel_for_chunks(B * NH, 8 * Tn * Tn * HS, [&](int chunk, std::int64_t b0, std::int64_t b1) {
    T* dP = scratch + chunk * per_chunk;
    T* dropped = dP + Tn * ldp;
    for (std::int64_t bh = b0; bh < b1; ++bh) {
      const std::int64_t b = bh / NH, h = bh % NH, L = klen[b];
      const std::int64_t off = b * Tn * ld + h * HS, ooff = b * Tn * C + h * HS;
      const T* P = probs + bh * Tn * ldp;
      const T* PV = P;
      const std::uint8_t* kp = p > 0 ? keep + bh * Tn * ldp : nullptr;
      if (p > 0) {
        for (std::int64_t i = 0; i < Tn * ldp; ++i) dropped[i] = kp[i] ? P[i] * keep_scale : T(0);
        PV = dropped;
      }
      // dv_h = dropout(P)^T dO_h ; dP = dO_h v_h^T (then through the dropout mask); keys past L get no gradient
      gemm(true, false, L, HS, Tn, T(1), PV, ldp, dout + ooff, C, T(0), dv + off, ld, ctx.matmul);
      for (std::int64_t j = L; j < Tn; ++j) std::fill(dv + off + j * ld, dv + off + j * ld + HS, T(0));
      gemm(false, true, Tn, L, HS, T(1), dout + ooff, C, v + off, ld, T(0), dP, ldp, ctx.matmul);
      for (std::int64_t i = 0; i < Tn; ++i) {
        T* row = dP + i * ldp;
        if (p > 0)
          for (std::int64_t j = 0; j < L; ++j) row[j] = kp[i * ldp + j] ? row[j] * keep_scale : T(0);
        softmax_backward(P + i * ldp, row, row, 1, L); // dS (the mask is additive: no gradient)
      }
      gemm(false, false, Tn, HS, L, scale, dP, ldp, k + off, ld, T(0), dq + off, ld, ctx.matmul);
      gemm(true, false, L, HS, Tn, scale, dP, ldp, q + off, ld, T(0), dk + off, ld, ctx.matmul);
      for (std::int64_t j = L; j < Tn; ++j) std::fill(dk + off + j * ld, dk + off + j * ld + HS, T(0));
    }
  });
}

} // namespace minibert::cpu
