// SPDX-License-Identifier: MIT
#pragma once
/* Fused multi-head self-attention as one graph node with a hand-written backward:
   q, k, v (B,T,C) -> softmax(q_h k_h^T / sqrt(HS) + mask) v_h per head, concatenated (B,T,C).
   The mask is additive (B,T) over keys (0 keep, a large negative value to mask), as BERT's padding mask.
   self_attention takes q, k, v as the column blocks of one (B,T,3C) projection (no copies, one QKV GEMM). */

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

/// @brief attention over the column blocks [q | k | v] of qkv (B,T,3C), as produced by one linear layer with the
/// three projections stacked; same semantics as attention(q, k, v, ...), output (B,T,C)
/// @throws minibert::error if qkv is not (B,T,3C) with C divisible by num_heads, or the mask is not (B,T)
template <class T, class D>
variable<T, D> self_attention(const variable<T, D>& qkv, const tensor<T, D>& mask, int num_heads, float p, bool training,
                              generator& gen) {
  MINIBERT_CHECK(qkv.rank() == 3 && qkv.size(2) % 3 == 0, "self_attention", "qkv " << qkv.shape() << ": expected (B,T,3C)");
  const std::int64_t B = qkv.size(0), Tn = qkv.size(1), C = qkv.size(2) / 3;
  MINIBERT_CHECK(num_heads > 0 && C % num_heads == 0, "self_attention",
                 "C " << C << " not divisible by " << num_heads << " heads");
  MINIBERT_CHECK((!mask.defined() || mask.shape() == shape{B, Tn}), "self_attention",
                 "mask " << mask.shape() << " for qkv " << qkv.shape() << ": expected (" << B << "," << Tn << ")");
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "self_attention", "dropout probability " << p << " outside [0, 1)");
  const float pe = training ? p : 0.0f;
  const attention_dims dims{B, Tn, C, num_heads, 3 * C};
  const tensor<T, D> x = qkv.value().contiguous();
  const tensor<T, D> mc = mask.defined() ? mask.contiguous() : tensor<T, D>();
  tensor<T, D> out = tensor<T, D>::empty({B, Tn, C});
  tensor<T, D> probs = tensor<T, D>::empty({B, num_heads, Tn, backend<D>::attention_probs_ld(Tn)});
  tensor<std::uint8_t, D> keep = pe > 0 ? tensor<std::uint8_t, D>::empty(probs.shape()) : tensor<std::uint8_t, D>();
  const std::uint64_t base = pe > 0 ? gen.reserve(std::uint64_t(B * num_heads * Tn * Tn)) : 0;
  backend<D>::attention_forward(dims, x.data(), x.data() + C, x.data() + 2 * C,
                                mc.defined() ? mc.data() : (const T*)nullptr, out.data(), probs.data(), keep.data(), pe,
                                gen.seed(), base);
  // the closure owns the mask (mc), the inputs and the probabilities: the caller's tensors may be gone by backward
  return make_result(std::move(out), "self_attention", {&qkv}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(x.shape());
      backend<D>::attention_backward(dims, g.contiguous().data(), x.data(), x.data() + C, x.data() + 2 * C,
                                     mc.defined() ? mc.data() : (const T*)nullptr,
                                     probs.data(), keep.data(), pe, dx.data(), dx.data() + C, dx.data() + 2 * C);
      self.accumulate(0, std::move(dx));
    };
  });
}

} // namespace minibert
