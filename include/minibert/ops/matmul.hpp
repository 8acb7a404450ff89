// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable matrix products: batched matmul with optional transposes, the fused linear layer
   (x W^T + b, weights stored (out,in) as torch.nn.Linear stores them), and activation_linear (a linear layer over
   an activation that is recomputed in the backward instead of saved). */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief op(a) @ op(b): a (...,M,K) (or (...,K,M) when trans_a), b (...,K,N) (or (...,N,K) when trans_b),
/// with equal batch dims, or b of rank 2 shared by every batch -> (...,M,N).
/// @throws minibert::error on rank or inner-dim mismatch, naming both shapes
template <class T, class D>
variable<T, D> matmul(const variable<T, D>& a, const variable<T, D>& b, bool trans_a = false, bool trans_b = false) {
  const shape& sa = a.shape();
  const shape& sb = b.shape();
  MINIBERT_CHECK(sa.rank() >= 2 && sb.rank() >= 2, "matmul", "lhs " << sa << " x rhs " << sb << ": need rank >= 2");
  const std::int64_t M = trans_a ? sa.dim(-1) : sa.dim(-2), K = trans_a ? sa.dim(-2) : sa.dim(-1);
  const std::int64_t Kb = trans_b ? sb.dim(-1) : sb.dim(-2), N = trans_b ? sb.dim(-2) : sb.dim(-1);
  MINIBERT_CHECK(K == Kb, "matmul", "lhs " << sa << (trans_a ? "^T" : "") << " x rhs " << sb << (trans_b ? "^T" : "")
                                            << ": inner dims " << K << " != " << Kb);
  const bool shared_b = sb.rank() == 2 && sa.rank() > 2;
  if (!shared_b) {
    MINIBERT_CHECK(sa.rank() == sb.rank(), "matmul", "lhs " << sa << " x rhs " << sb << ": batch ranks differ");
    for (int i = 0; i < sa.rank() - 2; ++i)
      MINIBERT_CHECK(sa[i] == sb[i], "matmul", "lhs " << sa << " x rhs " << sb << ": batch dim " << i << " differs");
  }
  const std::int64_t batch = sa.numel() / (M * K == 0 ? 1 : M * K);
  shape so;
  for (int i = 0; i < sa.rank() - 2; ++i) so.push_back(sa[i]);
  so.push_back(M);
  so.push_back(N);
  const tensor<T, D> ac = contiguous(a.value()), bc = contiguous(b.value());
  tensor<T, D> out = tensor<T, D>::empty(so);
  const std::int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  const std::int64_t stride_b = shared_b ? 0 : K * N;
  auto& ctx = current_context<D>();
  backend<D>::gemm_batched(ctx, trans_a, trans_b, M, N, K, T(1), ac.data(), lda, M * K, bc.data(), ldb, stride_b, T(0),
                           out.data(), N, M * N, batch);
  return make_result(std::move(out), "matmul", {&a, &b}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      const tensor<T, D> gc = contiguous(g);
      if (self.needs(0)) { // d op(A) = dC op(B)^T
        tensor<T, D> da = tensor<T, D>::empty(ac.shape());
        if (!trans_a)
          backend<D>::gemm_batched(ctx, false, !trans_b, M, K, N, T(1), gc.data(), N, M * N, bc.data(), ldb, stride_b, T(0),
                                   da.data(), K, M * K, batch);
        else // dA = op(B) dC^T
          backend<D>::gemm_batched(ctx, trans_b, true, K, M, N, T(1), bc.data(), ldb, stride_b, gc.data(), N, M * N, T(0),
                                   da.data(), M, M * K, batch);
        self.accumulate(0, std::move(da));
      }
      if (self.needs(1)) { // d op(B) = op(A)^T dC; a shared B sums over the batch (beta = 1)
        tensor<T, D> db = tensor<T, D>::empty(bc.shape());
        if (shared_b) backend<D>::fill(ctx, db.data(), db.numel(), T(0));
        const T beta = shared_b ? T(1) : T(0);
        const std::int64_t sdb = shared_b ? 0 : K * N;
        // with a shared B every batch adds into the same matrix: run serially, one GEMM per batch
        const std::int64_t nb = shared_b ? 1 : batch;
        for (std::int64_t i = 0; i < (shared_b ? batch : 1); ++i) {
          const T* A0 = ac.data() + i * M * K;
          const T* G0 = gc.data() + i * M * N;
          if (!trans_b)
            backend<D>::gemm_batched(ctx, !trans_a, false, K, N, M, T(1), A0, lda, M * K, G0, N, M * N, beta, db.data(), N,
                                     sdb, nb);
          else // dB = dC^T op(A)
            backend<D>::gemm_batched(ctx, true, trans_a, N, K, M, T(1), G0, N, M * N, A0, lda, M * K, beta, db.data(), K,
                                     sdb, nb);
        }
        self.accumulate(1, std::move(db));
      }
    };
  });
}

namespace detail {
/// @brief the backward of a linear node (inputs: x, weight, bias) given its input x (N,K) and weight w (C,K): the
/// weight and bias gradients are accumulated into inputs 1 and 2 (when they need them); returns dx (N,K) when
/// want_dx, else an undefined tensor
template <class T, class D>
tensor<T, D> linear_node_backward(node<T, D>& self, const tensor<T, D>& dout, const tensor<T, D>& x,
                                  const tensor<T, D>& w, bool want_dx) {
  auto& ctx = current_context<D>();
  const std::int64_t C = w.size(0), K = w.size(1), N = x.numel() / K;
  tensor<T, D> dx, dw, db;
  if (want_dx) dx = tensor<T, D>::empty(x.shape());
  if (self.needs(1)) dw = zeros_on<T, D>(w.shape());
  if (self.needs(2)) db = zeros_on<T, D>({C});
  backend<D>::linear_backward(ctx, dout.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), N, K, C);
  if (self.needs(1)) self.accumulate(1, std::move(dw));
  if (self.needs(2)) self.accumulate(2, std::move(db));
  return dx;
}
} // namespace detail

/// @brief x (...,K) W^T + b: weight (C,K) as torch.nn.Linear stores it, bias (C) or undefined -> (...,C)
/// @throws minibert::error if x's last dim is not K or the bias is not (C)
template <class T, class D>
variable<T, D> linear(const variable<T, D>& x, const variable<T, D>& weight, const variable<T, D>& bias) {
  MINIBERT_CHECK(weight.rank() == 2, "linear", "weight " << weight.shape() << " must be (out, in)");
  const std::int64_t C = weight.size(0), K = weight.size(1);
  MINIBERT_CHECK(x.rank() >= 1 && x.size(-1) == K, "linear", "input " << x.shape() << " x weight " << weight.shape()
                                                                      << "^T: inner dims " << x.size(-1) << " != " << K);
  if (bias.defined())
    MINIBERT_CHECK(bias.rank() == 1 && bias.size(0) == C, "linear", "bias " << bias.shape() << " for weight " << weight.shape());
  const tensor<T, D> xc = contiguous(x.value());
  const std::int64_t N = xc.numel() / K;
  shape so = x.shape();
  so[so.rank() - 1] = C;
  tensor<T, D> out = tensor<T, D>::empty(so);
  const tensor<T, D> w = contiguous(weight.value());
  auto& ctx = current_context<D>();
  backend<D>::linear_forward(ctx, xc.data(), w.data(), bias.defined() ? contiguous(bias.value()).data() : (const T*)nullptr, out.data(),
                             N, K, C);
  return make_result(std::move(out), "linear", {&x, &weight, &bias}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = detail::linear_node_backward(self, contiguous(g), xc, w, self.needs(0));
      if (self.needs(0)) self.accumulate(0, std::move(dx));
    };
  });
}

namespace detail {
/// whether backend<D> has the optional fused members activation_linear_forward / _backward (CUDA's own GEMM)
template <class T, class D>
concept has_fused_activation_linear = requires(context<D>& ctx, const T* x, T* y, std::int64_t n, activation a) {
  backend<D>::activation_linear_forward(ctx, a, x, x, x, y, n, n, n);
  backend<D>::activation_linear_backward(ctx, a, x, x, x, y, y, y, n, n, n);
};

/// activation_linear through the fused members: the same node, saving u, with act recomputed inside the products
template <class T, class D>
variable<T, D> fused_activation_linear(const variable<T, D>& u, activation act, const variable<T, D>& weight,
                                       const variable<T, D>& bias, const tensor<T, D>& uc, const tensor<T, D>& w,
                                       tensor<T, D> out, std::int64_t N, std::int64_t K, std::int64_t C) {
  backend<D>::activation_linear_forward(current_context<D>(), act, uc.data(), w.data(),
                                        bias.defined() ? contiguous(bias.value()).data() : (const T*)nullptr,
                                        out.data(), N, K, C);
  return make_result(std::move(out), "activation_linear", {&u, &weight, &bias}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> du, dw, db;
      if (self.needs(0)) du = tensor<T, D>::empty(uc.shape());
      if (self.needs(1)) dw = zeros_on<T, D>(w.shape());
      if (self.needs(2)) db = zeros_on<T, D>({C});
      backend<D>::activation_linear_backward(current_context<D>(), act, contiguous(g).data(), uc.data(), w.data(),
                                             du.data(), dw.data(), db.data(), N, K, C);
      if (self.needs(0)) self.accumulate(0, std::move(du));
      if (self.needs(1)) self.accumulate(1, std::move(dw));
      if (self.needs(2)) self.accumulate(2, std::move(db));
    };
  });
}
} // namespace detail

/// @brief linear(act(u), weight, bias), the same values and gradients (bit for bit where act(u) goes through a
/// temporary; a fused backend skips rounding dout W to T before act', so 16-bit du differ by a rounding), without
/// saving act(u): the backward
/// recomputes it from u (which this node saves instead). BERT's FFN-down layer: the GELU's input and output are both
/// (B,T,4C), the largest activations of a layer, and only one of them is kept (-50 MB per bert-base layer at
/// B*T = 4096), for one more activation pass in the backward. A backend with the optional fused members (CUDA) applies
/// act inside the products instead: no temporary at all.
/// @throws minibert::error as linear() does
template <class T, class D>
variable<T, D> activation_linear(const variable<T, D>& u, activation act, const variable<T, D>& weight,
                                 const variable<T, D>& bias) {
  MINIBERT_CHECK(weight.rank() == 2, "activation_linear", "weight " << weight.shape() << " must be (out, in)");
  const std::int64_t C = weight.size(0), K = weight.size(1);
  MINIBERT_CHECK(u.rank() >= 1 && u.size(-1) == K, "activation_linear",
                 "input " << u.shape() << " x weight " << weight.shape() << "^T: inner dims " << u.size(-1) << " != " << K);
  if (bias.defined())
    MINIBERT_CHECK(bias.rank() == 1 && bias.size(0) == C, "activation_linear",
                   "bias " << bias.shape() << " for weight " << weight.shape());
  const tensor<T, D> uc = contiguous(u.value()), w = contiguous(weight.value());
  const std::int64_t N = uc.numel() / K;
  shape so = u.shape();
  so[so.rank() - 1] = C;
  tensor<T, D> out = tensor<T, D>::empty(so);
  if constexpr (detail::has_fused_activation_linear<T, D>) { // a backend that fuses act into its products
    return detail::fused_activation_linear(u, act, weight, bias, uc, w, std::move(out), N, K, C);
  } else {
    auto activated = [act, uc] { // act(u), a temporary
      tensor<T, D> a = tensor<T, D>::empty(uc.shape());
      backend<D>::activation_forward(current_context<D>(), act, uc.data(), a.data(), a.numel());
      return a;
    };
    backend<D>::linear_forward(current_context<D>(), activated().data(), w.data(),
                               bias.defined() ? contiguous(bias.value()).data() : (const T*)nullptr, out.data(), N, K, C);
    return make_result(std::move(out), "activation_linear", {&u, &weight, &bias}, [=] {
      return [=](const tensor<T, D>& g, node<T, D>& self) {
        const tensor<T, D> da = detail::linear_node_backward(self, contiguous(g), activated(), w, self.needs(0));
        if (self.needs(0)) {
          tensor<T, D> du = tensor<T, D>::empty(uc.shape());
          backend<D>::activation_backward(current_context<D>(), act, uc.data(), da.data(), du.data(), du.numel());
          self.accumulate(0, std::move(du));
        }
      };
    });
  }
}

} // namespace minibert
