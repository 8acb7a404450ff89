// SPDX-License-Identifier: MIT
#pragma once
/* Fused multi-head self-attention as one graph node with a hand-written backward:
   q, k, v (B,T,C) -> softmax(q_h k_h^T / sqrt(HS) + mask) v_h per head, concatenated (B,T,C).
   The mask is additive (B,T) over keys (0 keep, a large negative value to mask), as BERT's padding mask. */

#include <cstdint> // uint8_t

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/random.hpp>

namespace minibert {

/// @brief multi-head scaled dot-product attention with dropout p on the probabilities (when training)
/// @param mask additive key mask (B,T), or undefined for none
/// @throws minibert::error if shapes differ, C is not divisible by num_heads, or the mask is not (B,T)
template <class T, class D>
variable<T, D> attention(const variable<T, D>& q, const variable<T, D>& k, const variable<T, D>& v,
                         const tensor<T, D>& mask, int num_heads, float p, bool training, generator& gen) {
  MINIBERT_CHECK(q.rank() == 3 && q.shape() == k.shape() && q.shape() == v.shape(), "attention",
                 "q " << q.shape() << ", k " << k.shape() << ", v " << v.shape() << ": expected three equal (B,T,C)");
  const std::int64_t B = q.size(0), Tn = q.size(1), C = q.size(2);
  MINIBERT_CHECK(num_heads > 0 && C % num_heads == 0, "attention", "C " << C << " not divisible by " << num_heads << " heads");
  MINIBERT_CHECK((!mask.defined() || mask.shape() == shape{B, Tn}), "attention",
                 "mask " << mask.shape() << " for q " << q.shape() << ": expected (" << B << "," << Tn << ")");
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "attention", "dropout probability " << p << " outside [0, 1)");
  const float pe = training ? p : 0.0f;
  const attention_dims dims{B, Tn, C, num_heads, C};
  const tensor<T, D> qc = q.value().contiguous(), kc = k.value().contiguous(), vc = v.value().contiguous();
  const tensor<T, D> mc = mask.defined() ? mask.contiguous() : tensor<T, D>();
  tensor<T, D> out = tensor<T, D>::empty(qc.shape());
  tensor<T, D> probs = tensor<T, D>::empty({B, num_heads, Tn, backend<D>::attention_probs_ld(Tn)});
  tensor<std::uint8_t, D> keep = pe > 0 ? tensor<std::uint8_t, D>::empty(probs.shape()) : tensor<std::uint8_t, D>();
  // the dropout draw covers (B,NH,T,T) positions, whatever the saved layout
  const std::uint64_t base = pe > 0 ? gen.reserve(std::uint64_t(B * num_heads * Tn * Tn)) : 0;
  backend<D>::attention_forward(dims, qc.data(), kc.data(), vc.data(), mc.defined() ? mc.data() : (const T*)nullptr,
                                out.data(), probs.data(), keep.data(), pe, gen.seed(), base);
  return make_result(std::move(out), "attention", {&q, &k, &v}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dq = tensor<T, D>::empty(qc.shape()), dk = tensor<T, D>::empty(qc.shape()),
                   dv = tensor<T, D>::empty(qc.shape());
      backend<D>::attention_backward(dims, g.contiguous().data(), qc.data(), kc.data(), vc.data(),
                                     mc.defined() ? mc.data() : (const T*)nullptr, probs.data(),
                                     keep.data(), pe, dq.data(), dk.data(), dv.data());
      self.accumulate(0, std::move(dq));
      self.accumulate(1, std::move(dk));
      self.accumulate(2, std::move(dv));
    };
  });
}

} // namespace minibert
