// SPDX-License-Identifier: MIT
#pragma once
/* CPU fused multi-head self-attention (Vaswani et al. 2017), forward and backward side by side.
   q, k, v (B,T,C) read in place with row stride ld (so they may be column blocks of one (B,T,3C) QKV
   projection), heads NH of size HS = C/NH taken as column blocks (no permute copies):
     S = q_h k_h^T / sqrt(HS) + mask[b] (B,T additive, optional);  P = softmax(S);  O_h = dropout(P) v_h
   out (B,T,C). Saves P (B,NH,T,T) and the dropout keep mask for the backward. */

#include <cmath>   // sqrt
#include <cstdint> // int64_t, uint8_t
#include <vector>  // vector (per-thread scratch)

#include <minibert/backend.hpp>
#include <minibert/cpu/gemm.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/cpu/softmax.hpp>
#include <minibert/random.hpp>

namespace minibert::cpu {

/// @brief forward; probs (B,NH,T,T) receives softmax(S); keep (B,NH,T,T) the dropout mask when p > 0
template <class T>
void attention_forward(const attention_dims& d, const T* q, const T* k, const T* v, const T* mask, T* out, T* probs,
                       std::uint8_t* keep, float p, std::uint64_t seed, std::uint64_t base) {
  const std::int64_t B = d.B, Tn = d.T, NH = d.NH, HS = d.HS(), ld = d.ld_qkv, C = d.C;
  const T scale = T(1) / std::sqrt(T(HS));
  const T keep_scale = p > 0 ? T(1) / (T(1) - T(p)) : T(1);
  detail::parallel_for(B * NH, 4 * Tn * Tn * HS, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<T> dropped(p > 0 ? Tn * Tn : 0);
    for (std::int64_t bh = b0; bh < b1; ++bh) {
      const std::int64_t b = bh / NH, h = bh % NH;
      const std::int64_t off = b * Tn * ld + h * HS;
      T* P = probs + bh * Tn * Tn;
      gemm(false, true, Tn, Tn, HS, scale, q + off, ld, k + off, ld, T(0), P, Tn);
      const T* mrow = mask ? mask + b * Tn : nullptr;
      softmax_forward(P, mrow, [](std::int64_t) { return std::int64_t(0); }, P, Tn, Tn);
      const T* PV = P;
      if (p > 0) {
        std::uint8_t* kp = keep + bh * Tn * Tn;
        const std::uint64_t first = std::uint64_t(bh * Tn * Tn);
        for (std::int64_t i = 0; i < Tn * Tn; ++i) {
          kp[i] = generator::uniform_at(seed, base, first + i) >= p;
          dropped[i] = kp[i] ? P[i] * keep_scale : T(0);
        }
        PV = dropped.data();
      }
      gemm(false, false, Tn, HS, Tn, T(1), PV, Tn, v + off, ld, T(0), out + b * Tn * C + h * HS, C);
    }
  });
}

/// @brief backward: dq, dk, dv (B,T,C, row stride ld) are overwritten with the gradients
template <class T>
void attention_backward(const attention_dims& d, const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        const std::uint8_t* keep, float p, T* dq, T* dk, T* dv) {
  const std::int64_t B = d.B, Tn = d.T, NH = d.NH, HS = d.HS(), ld = d.ld_qkv, C = d.C;
  const T scale = T(1) / std::sqrt(T(HS));
  const T keep_scale = p > 0 ? T(1) / (T(1) - T(p)) : T(1);
  detail::parallel_for(B * NH, 8 * Tn * Tn * HS, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<T> dP(Tn * Tn), dropped(p > 0 ? Tn * Tn : 0);
    for (std::int64_t bh = b0; bh < b1; ++bh) {
      const std::int64_t b = bh / NH, h = bh % NH;
      const std::int64_t off = b * Tn * ld + h * HS, ooff = b * Tn * C + h * HS;
      const T* P = probs + bh * Tn * Tn;
      const T* PV = P;
      const std::uint8_t* kp = p > 0 ? keep + bh * Tn * Tn : nullptr;
      if (p > 0) {
        for (std::int64_t i = 0; i < Tn * Tn; ++i) dropped[i] = kp[i] ? P[i] * keep_scale : T(0);
        PV = dropped.data();
      }
      // dv_h = dropout(P)^T dO_h ; dP = dO_h v_h^T (then through the dropout mask)
      gemm(true, false, Tn, HS, Tn, T(1), PV, Tn, dout + ooff, C, T(0), dv + off, ld);
      gemm(false, true, Tn, Tn, HS, T(1), dout + ooff, C, v + off, ld, T(0), dP.data(), Tn);
      if (p > 0)
        for (std::int64_t i = 0; i < Tn * Tn; ++i) dP[i] = kp[i] ? dP[i] * keep_scale : T(0);
      softmax_backward(P, dP.data(), dP.data(), Tn, Tn); // dS (the mask is additive: no gradient)
      gemm(false, false, Tn, HS, Tn, scale, dP.data(), Tn, k + off, ld, T(0), dq + off, ld);
      gemm(true, false, Tn, HS, Tn, scale, dP.data(), Tn, q + off, ld, T(0), dk + off, ld);
    }
  });
}

} // namespace minibert::cpu
