// SPDX-License-Identifier: MIT
#pragma once
/* Fused multi-head self-attention as one graph node with a hand-written backward:
   q, k, v (B,T,C) -> softmax(q_h k_h^T / sqrt(HS) + mask) v_h per head, concatenated (B,T,C).
   The mask is additive (B,T) over keys (0 keep, a large negative value to mask), as BERT's padding mask.
   self_attention takes q, k, v as the column blocks of one (B,T,3C) projection (no copies, one QKV GEMM). */

#include <array>   // array (operands)
#include <cstdint> // int64_t, uint64_t

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/random.hpp>

namespace minibert {

namespace detail {
/// One attention graph node for both entry points. Operand j (q, k, v) is buffers[j] read from element offset[j]
/// with row stride dims.ld_qkv; it belongs to graph input which[j], whose gradient receives dq/dk/dv at the same
/// place. attention(q, k, v): three inputs at offset 0; self_attention(qkv): one input at offsets 0, C, 2C.
/// What the forward keeps for the backward is the backend's attention_saved<T>.
template <class T, class D, std::size_t Inputs>
variable<T, D> attention_node(const char* op, const attention_dims& dims, const std::array<const variable<T, D>*, Inputs>& inputs,
                              const std::array<int, 3>& which, const std::array<std::int64_t, 3>& offset,
                              const tensor<T, D>& mask, float p, generator& gen) {
  std::array<tensor<T, D>, Inputs> x;
  for (std::size_t i = 0; i < Inputs; ++i) x[i] = contiguous(inputs[i]->value());
  const tensor<T, D> mc = mask.defined() ? contiguous(mask) : tensor<T, D>();
  const T* m = mc.defined() ? mc.data() : nullptr;
  auto operand = [&](const auto& bufs, int j) { return bufs[std::size_t(which[j])].data() + offset[j]; };
  auto& ctx = current_context<D>();
  tensor<T, D> out = tensor<T, D>::empty({dims.B, dims.T, dims.C});
  typename backend<D>::template attention_saved<T> saved;
  // the dropout draw covers (B,NH,T,T) positions, whatever the backend saves
  const std::uint64_t base = p > 0 ? gen.reserve(std::uint64_t(dims.B * dims.NH * dims.T * dims.T)) : 0;
  backend<D>::attention_forward(ctx, dims, operand(x, 0), operand(x, 1), operand(x, 2), m, out.data(), saved, p,
                                gen.seed(), base);
  // the closure owns the mask, the inputs and the saved state: the caller's tensors may be gone by the backward
  const auto make_backward = [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      std::array<tensor<T, D>, Inputs> dx;
      for (std::size_t i = 0; i < Inputs; ++i) dx[i] = tensor<T, D>::empty(x[i].shape());
      const T* mm = mc.defined() ? mc.data() : nullptr;
      auto in = [&](int j) { return x[std::size_t(which[j])].data() + offset[j]; };
      auto grad = [&](int j) { return dx[std::size_t(which[j])].data() + offset[j]; };
      backend<D>::attention_backward(current_context<D>(), dims, contiguous(g).data(), in(0), in(1), in(2), mm, saved, p,
                                     grad(0), grad(1), grad(2));
      for (std::size_t i = 0; i < Inputs; ++i) self.accumulate(i, std::move(dx[i]));
    };
  };
  if constexpr (Inputs == 3) return make_result(std::move(out), op, {inputs[0], inputs[1], inputs[2]}, make_backward);
  else return make_result(std::move(out), op, {inputs[0]}, make_backward);
}

} // namespace detail

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
  return detail::attention_node<T, D, 3>("attention", {B, Tn, C, num_heads, C}, {&q, &k, &v}, {0, 1, 2}, {0, 0, 0}, mask,
                                         training ? p : 0.0f, gen);
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
  return detail::attention_node<T, D, 1>("self_attention", {B, Tn, C, num_heads, 3 * C}, {&qkv}, {0, 0, 0},
                                         {0, C, 2 * C}, mask, training ? p : 0.0f, gen);
}

} // namespace minibert
