// SPDX-License-Identifier: MIT
#pragma once
/* CUDA multi-head self-attention (Vaswani et al. 2017), forward and backward side by side, as cpu/attention.hpp with
   materialized probabilities (llm.c's llmc/attention.cuh without the permutes): q, k, v (B,T,C) are read in place
   with row stride ld (column blocks of one (B,T,3C) QKV projection, or separate tensors), heads taken as column
   blocks of size HS = C/NH; one strided-batched cuBLASLt GEMM over the NH heads of each batch row:
     S = q_h k_h^T / sqrt(HS) (+ mask[b]);  P = softmax(S) (B,NH,T,T);  O_h = dropout(P) v_h -> out (B,T,C)
   P and the dropout keep mask (B,NH,T,T) are saved for the backward. As on the CPU, keys past the last unmasked one of
   a batch row are left out of the softmax (probability 0), so a row's result does not depend on its padding. */
#ifndef __CUDACC__
#error "minibert/cuda/attention.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cmath>            // sqrt, floor, INFINITY
#include <cstdint>          // int64_t, uint8_t, uint64_t, uintptr_t
#include <initializer_list> // initializer_list
#include <type_traits>      // is_same_v

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/attention_cudnn.hpp>
#include <minibert/cuda/attention_flash.cuh>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/dropout.cuh>
#include <minibert/cuda/softmax.cuh>
#include <minibert/dtype.hpp>
#include <minibert/tensor.hpp>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int attention_block = 256; // 8 rows (warps) per block

// A key is masked out when its additive mask is below this (the CPU's T(-1e30) for fp32 and bf16, whose lowest is
// -3.4e38; fp16's lowest is -65504, and below -65000 it has only -65504, -65472, ... and -inf).
template <class T> inline float attention_masked_below() { return std::is_same_v<T, half> ? -65000.0f : -1e30f; }

// In place on S (B,NH,T,T) scaled scores: row r = (b, h, i) becomes softmax over keys [0, L_b) of S + mask[b] and 0
// past L_b, L_b = 1 + the last key of batch row b whose mask is not below masked_below (at least 1). One warp per row.
template <class T>
__global__ void attention_softmax_kernel(T* S, const T* __restrict__ mask, i64 R, i64 rows_per_batch, i64 Tn,
                                         float masked_below) {
  const i64 r = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const T* mr = mask ? mask + (r / rows_per_batch) * Tn : nullptr;
  const i64 L = mr ? warp_key_length(mr, Tn, masked_below) : Tn;
  T* row = S + r * Tn;
  auto value = [&](i64 j) { return mr ? to_float(row[j]) + to_float(mr[j]) : to_float(row[j]); };
  float m = -INFINITY;
  for (i64 j = lane; j < L; j += 32) m = fmaxf(m, value(j));
  m = warp_reduce_max(m);
  if (m == -INFINITY) { // all -inf: zeros, as the CPU's softmax
    for (i64 j = lane; j < Tn; j += 32) row[j] = from_float<T>(0.0f);
    return;
  }
  float s = 0.0f;
  for (i64 j = lane; j < L; j += 32) s += expf(value(j) - m);
  const float inv = 1.0f / warp_reduce_sum(s);
  // each lane rewrites only the entries it read, after the warp's reductions: in place is safe
  for (i64 j = lane; j < Tn; j += 32) row[j] = from_float<T>(j < L ? expf(value(j) - m) * inv : 0.0f);
}

/// @brief whether the flash kernels take attention over dims d with data T under ctx (ctx.attention asks for them)
template <class T> bool flash_attention_takes(const context<device::cuda>& ctx, const attention_dims& d) {
  return ctx.attention == attention_provider::flash && d.NH > 0 && d.C % d.NH == 0 &&
         flash::supported_head_size(d.HS()) && flash::tensor_core_operands<T>(ctx) && d.B <= 65535 &&
         d.NH <= 65535 && flash::flash_device();
}

/// @brief the flash kernels' parameters for padded (B,T) rows (key_len: device (B), or null for every key), with
/// dropout p drawn from counter `base` of generator `seed` (philox_of: by value, or from the device when captured)
inline flash::params flash_params(const context<device::cuda>& ctx, const attention_dims& d, const int* key_len,
                                  float p, std::uint64_t seed, std::uint64_t base) {
  flash::params pr;
  pr.B = d.B;
  pr.T = d.T;
  pr.NH = d.NH;
  pr.ld = d.ld_qkv;
  pr.ldo = d.C;
  pr.key_len = key_len;
  pr.scale = 1.0f / std::sqrt(float(d.HS()));
  pr.p = p;
  pr.keep_scale = dropout_scale(p);
  pr.philox = philox_of(ctx, p, seed, base);
  return pr;
}

/// @brief the same for packed sequences
template <class VarlenDims>
flash::params flash_params(const context<device::cuda>& ctx, const VarlenDims& d, float p, std::uint64_t seed,
                           std::uint64_t base) {
  flash::params pr =
      flash_params(ctx, attention_dims{d.B, d.max_seqlen, d.C, d.NH, d.ld_qkv}, nullptr, p, seed, base);
  pr.cu_seqlens = d.cu_seqlens;
  return pr;
}

/// @brief the (B) key lengths of mask into device scratch (null without a mask: every key counts), followed by
/// `extra_floats` floats of scratch for the caller
template <class T>
int* flash_key_lengths(context<device::cuda>& ctx, const attention_dims& d, const T* mask, i64 extra_floats,
                       float** extra) {
  const std::size_t key_bytes = std::size_t(d.B) * sizeof(int), pad = (key_bytes + 255) / 256 * 256;
  auto* block = static_cast<unsigned char*>(ctx.scratch_bytes(pad + std::size_t(extra_floats) * sizeof(float)));
  if (extra) *extra = reinterpret_cast<float*>(block + pad);
  if (!mask) return nullptr;
  int* key_len = reinterpret_cast<int*>(block);
  flash::key_lengths(ctx, mask, d.B, d.T, attention_masked_below<T>(), key_len);
  return key_len;
}

/// @brief the cuDNN problem of attention over dims d with data T
template <class T> cudnn_sdpa::problem cudnn_problem(const attention_dims& d, bool masked, float p) {
  return {d.B, d.T, d.NH, d.HS(), d.ld_qkv, dtype_v<T>, masked, p};
}

/// @brief whether every pointer is 16-byte aligned (cuDNN refuses other operands when it executes a plan)
inline bool aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  return true;
}

/// @brief whether cuDNN runs attention over dims d with data T under ctx: ctx.attention asks for it; the data are
/// 16-bit, 16-byte aligned, rows and heads too; T > 1 (its backward refuses s_q = s_kv = 1); the dropout probability
/// is a multiple of 1/16 (some of its kernels draw at that resolution, so PyTorch routes no other p to it); the
/// program was built with the provider (MINIBERT_CUDNN), and cuDNN builds the plans
template <class T>
bool cudnn_attention_takes(context<device::cuda>& ctx, const attention_dims& d, const T* q, const T* k, const T* v,
                           const T* out, bool masked, float p) {
  if constexpr (cudnn_sdpa::built() && (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>))
    return ctx.attention == attention_provider::cudnn && d.NH > 0 && d.C % d.NH == 0 && d.HS() % 8 == 0 &&
           d.ld_qkv % 8 == 0 && d.T > 1 && d.B <= 65535 && d.NH <= 65535 && std::floor(p * 16) == p * 16 &&
           aligned16({q, k, v, out}) && cudnn_sdpa::supports(ctx, cudnn_problem<T>(d, masked, p));
  else return false;
}

/// @brief the cuDNN call's inputs: q, k, v and, with a mask, in scratch: the key lengths, seq_len_q = T, and the
/// mask copied to rows of cudnn_sdpa::bias_stride(T) elements (16-byte aligned, as cuDNN reads its operands)
template <class T>
cudnn_sdpa::tensors cudnn_inputs(context<device::cuda>& ctx, const attention_dims& d, const T* q, const T* k,
                                 const T* v, const T* mask) {
  cudnn_sdpa::tensors t{};
  t.q = q;
  t.k = k;
  t.v = v;
  if (mask) {
    const i64 seq_q_floats = (d.B + 63) / 64 * 64, ldm = cudnn_sdpa::bias_stride(d.T); // 256-byte steps
    float* after = nullptr;
    t.seq_len_kv = flash_key_lengths(ctx, d, mask, seq_q_floats + ceil_div(d.B * ldm * i64(sizeof(T)), 4), &after);
    auto* seq_q = reinterpret_cast<std::int32_t*>(after);
    backend<device::cuda>::fill(ctx, seq_q, d.B, std::int32_t(d.T));
    T* bias = reinterpret_cast<T*>(after + seq_q_floats);
    MINIBERT_CUDA_CHECK(cudaMemcpy2DAsync(bias, std::size_t(ldm) * sizeof(T), mask, std::size_t(d.T) * sizeof(T),
                                          std::size_t(d.T) * sizeof(T), std::size_t(d.B), cudaMemcpyDeviceToDevice,
                                          stream_of(ctx)));
    t.seq_len_q = seq_q;
    t.bias = bias;
  }
  return t;
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// q, k, v (B,T,C) row stride d.ld_qkv, mask (B,T) additive or null -> out (B,T,C); saves probs, keep (B,NH,T,T)
template <class T>
void backend<device::cuda>::attention_forward(ctx_t& ctx, const attention_dims& d, const T* q, const T* k, const T* v,
                                              const T* mask, T* out, attention_saved<T>& saved, float p,
                                              std::uint64_t seed, std::uint64_t base) {
  const i64 B = d.B, Tn = d.T, C = d.C, NH = d.NH, ld = d.ld_qkv;
  MINIBERT_CHECK(NH > 0 && C % NH == 0, "attention", "C " << C << " not divisible by " << NH << " heads");
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "attention", "dropout probability " << p << " outside [0, 1)");
  const i64 HS = d.HS(), TT = Tn * Tn, n = B * NH * TT;
  saved = attention_saved<T>();
  if (n == 0 || C == 0) {
    saved.probs = tensor<T, device::cuda>::empty({B, NH, Tn, Tn});
    return;
  }
  const bool flash = cuda::flash_attention_takes<T>(ctx, d);
  if (flash || cuda::cudnn_attention_takes<T>(ctx, d, q, k, v, static_cast<const T*>(out), mask != nullptr, p)) {
    // fused: lse (B,NH,T) and a copy of the output are what the backward needs
    saved.provider = flash ? attention_provider::flash : attention_provider::cudnn;
    saved.lse = tensor<float, device::cuda>::empty({B, NH, Tn});
    saved.out = tensor<T, device::cuda>::empty({B, Tn, C});
    saved.seed = seed;
    saved.base = base;
    saved.matmul = ctx.matmul;
    if (flash) {
      const int* key_len = cuda::flash_key_lengths(ctx, d, mask, 0, nullptr);
      cuda::flash::forward(ctx, cuda::flash_params(ctx, d, key_len, p, seed, base), HS, q, k, v, mask, out,
                           saved.lse.data());
      ++ctx.flash_attention_launches;
    } else {
#if defined(MINIBERT_CUDNN)
      cuda::cudnn_sdpa::tensors t = cuda::cudnn_inputs(ctx, d, q, k, v, mask);
      t.out = out;
      t.stats = saved.lse.data();
      cuda::cudnn_sdpa::forward(ctx, cuda::cudnn_problem<T>(d, mask != nullptr, p), t, seed, base);
      ++ctx.cudnn_attention_launches;
#endif
    }
    copy(ctx, static_cast<const T*>(out), saved.out.data(), B * Tn * C);
    return;
  }
  saved.probs = tensor<T, device::cuda>::empty({B, NH, Tn, Tn});
  cudaStream_t stream = cuda::stream_of(ctx);
  T* P = saved.probs.data();
  const float scale = 1.0f / std::sqrt(float(HS));
  // S (NH,T,T) of batch row b = scale * q_h k_h^T, head h at column h*HS of q and k
  for (i64 b = 0; b < B; ++b)
    gemm_batched<T>(ctx, false, true, Tn, Tn, HS, scale, q + b * Tn * ld, ld, HS, k + b * Tn * ld, ld, HS, 0.0f,
                    P + b * NH * TT, Tn, TT, NH);
  constexpr int rows_per_block = cuda::attention_block / 32;
  const i64 R = B * NH * Tn;
  cuda::attention_softmax_kernel<<<static_cast<unsigned>(cuda::ceil_div(R, rows_per_block)), cuda::attention_block, 0,
                                   stream>>>(P, mask, R, NH * Tn, Tn, cuda::attention_masked_below<T>());
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  const T* PV = P;
  if (p > 0.0f) {
    // element (bh, i, j) of (B,NH,T,T) is element bh*T*T + i*T + j of one dropout draw: the CPU's Philox index
    saved.keep = tensor<std::uint8_t, device::cuda>::empty(saved.probs.shape());
    T* dropped = ctx.scratch<T>(n);
    cuda::dropout_forward(stream, static_cast<const T*>(P), dropped, saved.keep.data(), n, p,
                          cuda::philox_of(ctx, p, seed, base));
    PV = dropped;
  }
  // O_h (T,HS) = dropout(P) (T,T) v_h (T,HS), written at column h*HS of out (B,T,C)
  for (i64 b = 0; b < B; ++b)
    gemm_batched<T>(ctx, false, false, Tn, HS, Tn, 1.0f, PV + b * NH * TT, Tn, TT, v + b * Tn * ld, ld, HS, 0.0f,
                    out + b * Tn * C, C, HS, NH);
}

/// dout (B,T,C), q, k, v (B,T,C) row stride d.ld_qkv, saved probs/keep -> dq, dk, dv (B,T,C) row stride d.ld_qkv,
/// overwritten. The mask is additive (no gradient) and its key lengths are already in the zeros of P (materialized),
/// or recomputed from it (flash, cudnn: the provider saved.provider names ran the forward).
template <class T>
void backend<device::cuda>::attention_backward(ctx_t& ctx, const attention_dims& d, const T* dout, const T* q,
                                               const T* k, const T* v, const T* mask,
                                               const attention_saved<T>& saved, float p, T* dq, T* dk, T* dv) {
  const i64 B = d.B, Tn = d.T, C = d.C, NH = d.NH, ld = d.ld_qkv;
  MINIBERT_CHECK(NH > 0 && C % NH == 0, "attention", "C " << C << " not divisible by " << NH << " heads");
  const i64 HS = d.HS(), TT = Tn * Tn, n = B * NH * TT;
  if (n == 0 || C == 0) return;
  if (saved.provider != attention_provider::materialized)
    MINIBERT_CHECK(saved.lse.numel() == B * NH * Tn && saved.out.numel() == B * Tn * C, "attention",
                   "saved lse " << saved.lse.shape() << " and output " << saved.out.shape() << " for B " << B
                                << ", NH " << NH << ", T " << Tn << ", C " << C);
  if (saved.provider == attention_provider::cudnn) {
#if defined(MINIBERT_CUDNN)
    MINIBERT_CHECK(cuda::aligned16({dout, dq, dk, dv}), "attention (cudnn)",
                   "dout, dq, dk, dv must be 16-byte aligned for the cuDNN backward");
    // with key lengths cuDNN leaves the rows of dk and dv past them unwritten: zeros first (every query row counts,
    // so dq is written whole)
    if (mask)
      for (T* g : {dk, dv})
        MINIBERT_CUDA_CHECK(cudaMemset2DAsync(g, std::size_t(ld) * sizeof(T), 0, std::size_t(C) * sizeof(T),
                                              std::size_t(B * Tn), cuda::stream_of(ctx)));
    cuda::cudnn_sdpa::tensors t = cuda::cudnn_inputs(ctx, d, q, k, v, mask);
    t.dout = dout;
    t.saved_out = saved.out.data();
    t.stats = const_cast<float*>(saved.lse.data());
    t.dq = dq;
    t.dk = dk;
    t.dv = dv;
    cuda::cudnn_sdpa::backward(ctx, cuda::cudnn_problem<T>(d, mask != nullptr, p), t, saved.seed, saved.base);
#endif
    return;
  }
  if (saved.provider == attention_provider::flash) {
    float* delta = nullptr;
    const int* key_len = cuda::flash_key_lengths(ctx, d, mask, B * NH * Tn, &delta);
    cuda::flash::backward(ctx, saved.matmul, cuda::flash_params(ctx, d, key_len, p, saved.seed, saved.base), HS, dout,
                          q, k, v, mask, saved.out.data(), saved.lse.data(), delta, dq, dk, dv);
    return;
  }
  MINIBERT_CHECK(saved.probs.data() && saved.probs.numel() == n, "attention",
                 "saved probabilities " << saved.probs.shape() << " for B " << B << ", NH " << NH << ", T " << Tn);
  MINIBERT_CHECK(p == 0.0f || (saved.keep.data() && saved.keep.numel() == n), "attention",
                 "dropout " << p << " without a saved keep mask");
  cudaStream_t stream = cuda::stream_of(ctx);
  const T* P = saved.probs.data();
  const std::uint8_t* keep = p > 0.0f ? saved.keep.data() : nullptr;
  const float scale = 1.0f / std::sqrt(float(HS));
  // one scratch block: dP (B,NH,T,T), then (with dropout) dropout(P) (B,NH,T,T)
  T* dP = ctx.scratch<T>((keep ? 2 : 1) * n);
  const T* PV = P;
  if (keep) {
    T* dropped = dP + n;
    cuda::dropout_backward(stream, P, keep, dropped, n, p); // keep ? P / (1-p) : 0
    PV = dropped;
  }
  for (i64 b = 0; b < B; ++b) {
    const T* dO = dout + b * Tn * C; // head h at column h*HS
    // dv_h (T,HS) = dropout(P)^T (T,T) dO_h (T,HS)
    gemm_batched<T>(ctx, true, false, Tn, HS, Tn, 1.0f, PV + b * NH * TT, Tn, TT, dO, C, HS, 0.0f, dv + b * Tn * ld, ld,
                    HS, NH);
    // dP (T,T) = dO_h (T,HS) v_h^T
    gemm_batched<T>(ctx, false, true, Tn, Tn, HS, 1.0f, dO, C, HS, v + b * Tn * ld, ld, HS, 0.0f, dP + b * NH * TT, Tn,
                    TT, NH);
  }
  // dS = P * (g - rowsum(g * P)), g = dP through the keep mask and 1/(1-p); in place (P is 0 past each key length)
  cuda::softmax_backward(stream, P, static_cast<const T*>(dP), keep, keep ? cuda::dropout_scale(p) : 1.0f, dP,
                         B * NH * Tn, Tn);
  for (i64 b = 0; b < B; ++b) {
    const T* dS = dP + b * NH * TT;
    // dq_h (T,HS) = scale * dS (T,T) k_h (T,HS);  dk_h (T,HS) = scale * dS^T q_h
    gemm_batched<T>(ctx, false, false, Tn, HS, Tn, scale, dS, Tn, TT, k + b * Tn * ld, ld, HS, 0.0f, dq + b * Tn * ld,
                    ld, HS, NH);
    gemm_batched<T>(ctx, true, false, Tn, HS, Tn, scale, dS, Tn, TT, q + b * Tn * ld, ld, HS, 0.0f, dk + b * Tn * ld,
                    ld, HS, NH);
  }
}

/// packed sequences (varlen_dims) -> out (rows, C), lse (B,NH,max_seqlen); flash kernels only
template <class T>
void backend<device::cuda>::attention_varlen_forward(ctx_t& ctx, const varlen_dims& d, const T* q, const T* k,
                                                     const T* v, T* out, float* lse, float p, std::uint64_t seed,
                                                     std::uint64_t base) {
  const attention_dims padded{d.B, d.max_seqlen, d.C, d.NH, d.ld_qkv};
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "attention_varlen", "dropout probability " << p << " outside [0, 1)");
  MINIBERT_CHECK(d.cu_seqlens && cuda::flash_attention_takes<T>(ctx, padded), // which asks for ctx.attention == flash
                 "attention_varlen", "B " << d.B << ", C " << d.C << ", NH " << d.NH << " (head size "
                                          << (d.NH > 0 ? d.C / d.NH : 0) << "), " << dtype_name(dtype_v<T>)
                                          << ": packed sequences need the flash provider, head size 32, 64 or 128, "
                                             "tensor-core operands and an sm_80+ device");
  if (d.B == 0 || d.max_seqlen == 0) return;
  cuda::flash::forward(ctx, cuda::flash_params(ctx, d, p, seed, base), d.C / d.NH, q, k, v,
                       static_cast<const T*>(nullptr), out, lse);
  ++ctx.flash_attention_launches;
}

/// packed sequences: dout, the forward's out and lse -> dq, dk, dv (rows, ld_qkv), overwritten
template <class T>
void backend<device::cuda>::attention_varlen_backward(ctx_t& ctx, const varlen_dims& d, const T* dout, const T* q,
                                                      const T* k, const T* v, const T* out, const float* lse, float p,
                                                      std::uint64_t seed, std::uint64_t base, T* dq, T* dk, T* dv) {
  const attention_dims padded{d.B, d.max_seqlen, d.C, d.NH, d.ld_qkv};
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "attention_varlen", "dropout probability " << p << " outside [0, 1)");
  MINIBERT_CHECK(d.cu_seqlens && cuda::flash_attention_takes<T>(ctx, padded), // which asks for ctx.attention == flash
                 "attention_varlen", "B " << d.B << ", C " << d.C << ", NH " << d.NH
                                          << ": packed sequences need the flash provider (see the forward)");
  if (d.B == 0 || d.max_seqlen == 0) return;
  float* delta = nullptr;
  cuda::flash_key_lengths(ctx, padded, static_cast<const T*>(nullptr), d.B * d.NH * d.max_seqlen, &delta);
  cuda::flash::backward(ctx, ctx.matmul, cuda::flash_params(ctx, d, p, seed, base), d.C / d.NH, dout, q, k, v,
                        static_cast<const T*>(nullptr), out, lse, delta, dq, dk, dv);
}

} // namespace minibert
