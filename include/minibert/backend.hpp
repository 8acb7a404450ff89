// SPDX-License-Identifier: MIT
#pragma once
/* The backend interface: backend<Device> is the op table every device implements (ggml's backend_i, dlib's
   tt:: functions), as static member templates over raw device pointers of contiguous data. Autograd ops
   (the ops/ headers) call only this table, so model code never names a device's kernels. The CPU table is in
   cpu/backend.hpp; the CUDA table is declared in cuda/backend.hpp and defined by cuda/backend_impl.cuh.

   The table (T = element type, I = integer id type; shapes in B,T,C,NH,HS letters):
     fill(y,n,v)  copy(x,y,n)  axpy(a,x,y,n)  scale(a,x,y,n)  copy_strided(src tensor, dst)
     binary(op, out_shape, a, a_strides, b, b_strides, out)     sum_to(g, g_shape, out, out_numel, target_strides)
     sum(x,n) -> double
     gemm(ta,tb,M,N,K,alpha,A,lda,B,ldb,beta,C,ldc)             gemm_batched(..., strides, batch)
     activation_forward(act,x,y,n) / activation_backward(act,x,dy,dx,n)
     layer_norm_forward(inp,w,b,out,mean,rstd,N,C,eps) / layer_norm_backward(dout,inp,w,mean,rstd,dinp,dw,db,N,C)
     softmax_forward(x,mask,row_broadcast,y,R,L) / softmax_backward(y,dy,dx,R,L)
     embedding_forward(ids,w,out,N,C) / embedding_backward(ids,dout,dw,N,C)
     cross_entropy_forward(logits,targets,probs,N,C,ignore,count&) / cross_entropy_backward(...)
     mse_forward/backward, bce_with_logits_forward/backward
     dropout_forward(x,y,keep,n,p,seed,base) / dropout_backward(dy,keep,dx,n,p)
     attention_forward(dims,q,k,v,mask,out,probs,keep,p,seed,base) / attention_backward(dims,dout,q,k,v,mask,probs,keep,p,dq,dk,dv)  attention_probs_ld(T)
     adamw_step(p,g,m,v,n,coef)   one AdamW update in place (torch.optim.AdamW's single-tensor arithmetic, see
                                   adamw_coefficients)        sum_squares(x,n) -> double (sum of x^2, in double)
*/

#include <cstdint> // int64_t

#include <minibert/config.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

/// @brief element-wise binary ops of the table
enum class binary_op { add, sub, mul };
/// @brief activations of the table: GELU in erf form (BERT's "gelu") and tanh form ("gelu_new",
/// "gelu_pytorch_tanh"), tanh, ReLU
enum class activation { gelu_erf, gelu_tanh, tanh, relu };

/// @brief shapes and strides of one fused attention call
struct attention_dims {
  std::int64_t B, T, C, NH;
  std::int64_t ld_qkv; // row stride of q, k, v: C, or 3C when they are column blocks of one QKV buffer
  MINIBERT_HOST_DEVICE std::int64_t HS() const { return C / NH; }
};

/// @brief Maps a row r of a (lead..., L) tensor to the row of a broadcast (lead'..., L) operand:
/// lead holds the leading dims, row_strides the operand's strides in rows (0 on broadcast dims).
struct row_broadcast {
  shape lead;
  shape row_strides;
  std::int64_t operator()(std::int64_t r) const {
    std::int64_t off = 0;
    for (int k = lead.rank() - 1; k >= 0; --k) {
      off += (r % lead[k]) * row_strides[k];
      r /= lead[k];
    }
    return off;
  }
};

/// @brief The per-step scalars of one AdamW update, computed in double on the host (as PyTorch computes them in
/// Python floats) and rounded to T once, as a Scalar argument of a torch op is. adamw_step does, element-wise:
///   p = p * decay;  m = m * beta1 + (1-beta1) * g;  v = v * beta2 + (1-beta2) * g * g;
///   p = p + (neg_step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
/// with decay = 1 - lr * weight_decay, neg_step_size = -lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t).
template <class T> struct adamw_coefficients {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
};

/// @brief the op table of one device; specialized by each backend
template <class Device> struct backend;

} // namespace minibert
