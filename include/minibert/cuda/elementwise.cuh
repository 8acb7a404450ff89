// SPDX-License-Identifier: MIT
#pragma once
/* Element-wise members of backend<device::cuda>: axpy, scale, broadcasting binary ops, sum_to (the reverse of a
   broadcast), sum_all, broadcast_scalar, and the activations (GELU erf/tanh, tanh, ReLU) forward and backward, in the
   formulas of cpu/elementwise.hpp. Math in fp32 (the accumulation type), storage in T. Reductions are deterministic:
   fixed work split (a function of the shapes only) and fixed-order trees, no atomics. */

#ifndef __CUDACC__
#error "minibert/cuda/elementwise.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm>   // min
#include <cstdint>     // int64_t
#include <type_traits> // integral_constant

#include <cuda_runtime.h>

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/tensor.hpp>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

// y = y + a x, x, y (n)
template <class T> __global__ void axpy_kernel(i64 n, T a, const T* x, T* y) {
  const acc_t<T> af = to_acc(a);
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    y[i] = from_acc<T>(to_acc(y[i]) + af * to_acc(x[i]));
}

// y = a x, x, y (n)
template <class T> __global__ void scale_kernel(i64 n, T a, const T* x, T* y) {
  const acc_t<T> af = to_acc(a);
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[i] = from_acc<T>(af * to_acc(x[i]));
}

template <binary_op Op, class V> __device__ __forceinline__ V apply_binary(V a, V b) {
  if constexpr (Op == binary_op::add) return a + b;
  else if constexpr (Op == binary_op::sub) return a - b;
  else return a * b;
}

// out (n, packed) = a op b, a and b packed with out's shape
template <binary_op Op, class T> __global__ void binary_packed_kernel(i64 n, const T* a, const T* b, T* out) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    out[i] = from_acc<T>(apply_binary<Op>(to_acc(a[i]), to_acc(b[i])));
}

// out (shape, packed) = a op b, a and b read through strides in out's rank (0 on broadcast dims)
template <binary_op Op, class T>
__global__ void binary_kernel(i64 n, dims6 shape, const T* a, dims6 as, const T* b, dims6 bs, T* out) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) {
    i64 rem = i, oa = 0, ob = 0;
#pragma unroll
    for (int k = max_rank - 1; k >= 0; --k) { // unrolled: constant indices keep the dims out of local memory
      if (k < shape.rank) {
        const i64 idx = rem % shape.d[k];
        rem /= shape.d[k];
        oa += idx * as.d[k];
        ob += idx * bs.d[k];
      }
    }
    out[i] = from_acc<T>(apply_binary<Op>(to_acc(a[oa]), to_acc(b[ob])));
  }
}

// The g offset of output element o of sum_to: o is a row-major index over the kept dims (ks sizes, kst g strides).
__device__ __forceinline__ i64 kept_offset(i64 o, const dims6& ks, const dims6& kst) {
  return strided_offset(o, ks, kst);
}

// sum_to, one thread per output element: out[o] = sum over the reduced positions r (row-major over rs, g strides
// rst) of g[kept_offset(o) + offset(r)], added in increasing r (the CPU's order). out (n), R reduced positions.
template <class T>
__global__ void sum_to_thread_kernel(i64 n, const T* g, dims6 ks, dims6 kst, dims6 rs, dims6 rst, i64 R, T* out) {
  for (i64 o = global_thread_index(); o < n; o += global_thread_count()) {
    const T* base = g + kept_offset(o, ks, kst);
    acc_t<T> s = 0;
    for (i64 r = 0; r < R; ++r) s += to_acc(base[strided_offset(r, rs, rst)]);
    out[o] = from_acc<T>(s);
  }
}

// sum_to, one block per output element (long reductions): thread t sums r = t, t + blockDim, ...; then a fixed tree.
template <class T>
__global__ void sum_to_block_kernel(i64 n, const T* g, dims6 ks, dims6 kst, dims6 rs, dims6 rst, i64 R, T* out) {
  __shared__ acc_t<T> partial[block_1d];
  for (i64 o = blockIdx.x; o < n; o += gridDim.x) {
    const T* base = g + kept_offset(o, ks, kst);
    acc_t<T> s = 0;
    for (i64 r = threadIdx.x; r < R; r += blockDim.x) s += to_acc(base[strided_offset(r, rs, rst)]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int w = block_1d / 2; w > 0; w >>= 1) {
      if (int(threadIdx.x) < w) partial[threadIdx.x] += partial[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[o] = from_acc<T>(partial[0]);
    __syncthreads(); // partial[0] is read before the next output overwrites it
  }
}

// sum_to for layouts the kernels above do not cover: one thread, the CPU's odometer, exactly.
// out (out_numel) = 0; out[sum idx_k ts_k] += g[i] for i over g (shape gs).
template <class T> __global__ void sum_to_serial_kernel(const T* g, dims6 gs, dims6 ts, i64 out_numel, T* out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  for (i64 o = 0; o < out_numel; ++o) out[o] = from_acc<T>(acc_t<T>(0));
  i64 n = 1;
#pragma unroll
  for (int k = 0; k < max_rank; ++k)
    if (k < gs.rank) n *= gs.d[k];
  for (i64 i = 0; i < n; ++i) {
    const i64 o = strided_offset(i, gs, ts);
    out[o] = from_acc<T>(to_acc(out[o]) + to_acc(g[i]));
  }
}

// sum_all pass 1: partial[block] = sum (in double) of x[i] for the block's grid-stride positions, a fixed tree.
template <class T> __global__ void sum_partials_kernel(i64 n, const T* x, double* partial) {
  double s = 0;
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) s += double(to_acc(x[i]));
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// sum_all pass 2 (one block): out[0] = T(s / n) or T(s), s the sum of the P partials in a fixed order.
template <class T> __global__ void sum_finish_kernel(const double* partial, int P, i64 n, bool mean, T* out) {
  double s = 0;
  for (int i = threadIdx.x; i < P; i += blockDim.x) s += partial[i];
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) {
    const double r = mean ? s / double(n) : s;
    out[0] = from_acc<T>(acc_t<T>(r));
  }
}

// y[i] = s[0] / divisor, y (n)
template <class T> __global__ void broadcast_scalar_kernel(i64 n, const T* s, T divisor, T* y) {
  const T v = from_acc<T>(to_acc(s[0]) / to_acc(divisor));
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[i] = v;
}

// ------------------------------------------------------------------ activations (cpu/elementwise.hpp's formulas)

__device__ __forceinline__ float erf_(float x) { return erff(x); }
__device__ __forceinline__ double erf_(double x) { return erf(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }

template <class V> inline constexpr V inv_sqrt2 = V(0.70710678118654752440);
template <class V> inline constexpr V inv_sqrt_2pi = V(0.39894228040143267794);
template <class V> inline constexpr V sqrt_2_over_pi = V(0.79788456080286535588);
template <class V> inline constexpr V gelu_tanh_c = V(0.044715);

template <activation Act, class V> __device__ __forceinline__ V activation_value(V x) {
  if constexpr (Act == activation::gelu_erf) return V(0.5) * x * (V(1) + erf_(x * inv_sqrt2<V>));
  else if constexpr (Act == activation::gelu_tanh)
    return V(0.5) * x * (V(1) + tanh_(sqrt_2_over_pi<V> * (x + gelu_tanh_c<V> * (x * x * x))));
  else if constexpr (Act == activation::tanh) return tanh_(x);
  else return x > V(0) ? x : V(0);
}

// dy * act'(x)
template <activation Act, class V> __device__ __forceinline__ V activation_grad(V x, V g) {
  if constexpr (Act == activation::gelu_erf) {
    return g * (V(0.5) * (V(1) + erf_(x * inv_sqrt2<V>)) + x * inv_sqrt_2pi<V> * exp_(V(-0.5) * (x * x)));
  } else if constexpr (Act == activation::gelu_tanh) {
    const V th = tanh_(sqrt_2_over_pi<V> * (x + gelu_tanh_c<V> * (x * x * x)));
    constexpr V c3 = V(3) * gelu_tanh_c<V>; // the CPU's T(3) * c, folded before it meets x
    return g * (V(0.5) * (V(1) + th) + V(0.5) * x * (V(1) - th * th) * sqrt_2_over_pi<V> * (V(1) + c3 * (x * x)));
  } else if constexpr (Act == activation::tanh) {
    const V t = tanh_(x);
    return g * (V(1) - t * t);
  } else {
    return x > V(0) ? g : V(0);
  }
}

// y = act(x), x, y (n)
template <activation Act, class T> __global__ void activation_forward_kernel(i64 n, const T* x, T* y) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    y[i] = from_acc<T>(activation_value<Act>(to_acc(x[i])));
}

// dx = dy * act'(x), x, dy, dx (n)
template <activation Act, class T> __global__ void activation_backward_kernel(i64 n, const T* x, const T* dy, T* dx) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    dx[i] = from_acc<T>(activation_grad<Act>(to_acc(x[i]), to_acc(dy[i])));
}

// ---------------------------------------------------------------------------------------------------------------------
// host helpers

template <class T>
void binary_launch(cudaStream_t s, binary_op op, const shape& out_shape, const T* a, const shape& as, const T* b,
                   const shape& bs, T* out) {
  const i64 n = out_shape.numel();
  const shape packed = contiguous_strides(out_shape);
  const bool flat = as == packed && bs == packed;
  auto run = [&](auto op_tag) {
    constexpr binary_op Op = decltype(op_tag)::value;
    if (flat) launch_1d(binary_packed_kernel<Op, T>, n, s, a, b, out);
    else launch_1d(binary_kernel<Op, T>, n, s, to_dims6(out_shape), a, to_dims6(as), b, to_dims6(bs), out);
  };
  switch (op) {
  case binary_op::add: run(std::integral_constant<binary_op, binary_op::add>{}); break;
  case binary_op::sub: run(std::integral_constant<binary_op, binary_op::sub>{}); break;
  case binary_op::mul: run(std::integral_constant<binary_op, binary_op::mul>{}); break;
  }
}

template <class T>
void activation_launch(cudaStream_t s, activation act, bool backward, const T* x, const T* dy, T* out, i64 n) {
  auto run = [&](auto act_tag) {
    constexpr activation Act = decltype(act_tag)::value;
    if (backward) launch_1d(activation_backward_kernel<Act, T>, n, s, x, dy, out);
    else launch_1d(activation_forward_kernel<Act, T>, n, s, x, out);
  };
  switch (act) {
  case activation::gelu_erf: run(std::integral_constant<activation, activation::gelu_erf>{}); break;
  case activation::gelu_tanh: run(std::integral_constant<activation, activation::gelu_tanh>{}); break;
  case activation::tanh: run(std::integral_constant<activation, activation::tanh>{}); break;
  case activation::relu: run(std::integral_constant<activation, activation::relu>{}); break;
  }
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

template <class T> void backend<device::cuda>::axpy(ctx_t& ctx, T a, const T* x, T* y, i64 n) {
  cuda::launch_1d(cuda::axpy_kernel<T>, n, cuda::stream_of(ctx), a, x, y);
}

template <class T> void backend<device::cuda>::scale(ctx_t& ctx, T a, const T* x, T* y, i64 n) {
  cuda::launch_1d(cuda::scale_kernel<T>, n, cuda::stream_of(ctx), a, x, y);
}

// out (out_shape, packed) = a op b; as, bs: strides of a and b in out's rank, 0 on broadcast dims
template <class T>
void backend<device::cuda>::binary(ctx_t& ctx, binary_op op, const shape& out_shape, const T* a, const shape& as,
                                   const T* b, const shape& bs, T* out) {
  MINIBERT_CHECK(as.rank() == out_shape.rank() && bs.rank() == out_shape.rank(), "binary",
                 "strides " << as << " and " << bs << " for output shape " << out_shape);
  cuda::binary_launch(cuda::stream_of(ctx), op, out_shape, a, as, b, bs, out);
}

// g (gs, packed) -> out (out_numel, packed): g summed over the dims where ts (out's strides in g's rank) is 0
template <class T>
void backend<device::cuda>::sum_to(ctx_t& ctx, const T* g, const shape& gs, T* out, i64 out_numel, const shape& ts) {
  MINIBERT_CHECK(ts.rank() == gs.rank(), "sum_to", "target strides " << ts << " for gradient shape " << gs);
  if (out_numel <= 0) return;
  const cudaStream_t s = cuda::stream_of(ctx);
  // Split g's dims into kept (ts != 0) and reduced (ts == 0) ones. When ts are the packed strides of the kept dims
  // (what a broadcast gives), output o is the row-major index over the kept dims; otherwise run the CPU's loop.
  const shape gst = contiguous_strides(gs);
  shape ks, kst, rs, rst;
  for (int k = 0; k < gs.rank(); ++k) {
    if (ts[k] != 0) {
      ks.push_back(gs[k]);
      kst.push_back(gst[k]);
    } else {
      rs.push_back(gs[k]);
      rst.push_back(gst[k]);
    }
  }
  bool packed = ks.numel() == out_numel;
  for (int k = 0, j = 0; k < gs.rank() && packed; ++k) {
    if (ts[k] == 0) continue;
    i64 expect = 1;
    for (int l = j + 1; l < ks.rank(); ++l) expect *= ks[l];
    packed = ts[k] == expect;
    ++j;
  }
  if (!packed) {
    cuda::sum_to_serial_kernel<T><<<1, 1, 0, s>>>(g, cuda::to_dims6(gs), cuda::to_dims6(ts), out_numel, out);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const i64 R = rs.numel(); // reduced positions per output element (1 when nothing is reduced)
  const auto kd = cuda::to_dims6(ks), kstd = cuda::to_dims6(kst), rd = cuda::to_dims6(rs), rstd = cuda::to_dims6(rst);
  if (R >= 128 && out_numel < 8192) { // few long sums: a block each
    const unsigned grid = static_cast<unsigned>(out_numel); // < 8192
    cuda::sum_to_block_kernel<T><<<grid, cuda::block_1d, 0, s>>>(out_numel, g, kd, kstd, rd, rstd, R, out);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
  } else {
    cuda::launch_1d(cuda::sum_to_thread_kernel<T>, out_numel, s, g, kd, kstd, rd, rstd, R, out);
  }
}

// out[0] = sum x (or its mean), accumulated in double: per-block partials, then one block adds them in order
template <class T> void backend<device::cuda>::sum_all(ctx_t& ctx, const T* x, i64 n, bool mean, T* out) {
  const cudaStream_t s = cuda::stream_of(ctx);
  constexpr i64 max_partials = 1024;
  const int P = n > 0 ? static_cast<int>(std::min<i64>(cuda::ceil_div(n, cuda::block_1d * 4), max_partials)) : 0;
  double* partial = ctx.scratch<double>(P > 0 ? P : 1);
  if (P > 0) {
    cuda::sum_partials_kernel<T><<<P, cuda::block_1d, 0, s>>>(n, x, partial);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
  }
  cuda::sum_finish_kernel<T><<<1, cuda::block_1d, 0, s>>>(partial, P, n, mean, out);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

// y (n) = s[0] / divisor, s read on the device
template <class T> void backend<device::cuda>::broadcast_scalar(ctx_t& ctx, const T* s, T divisor, T* y, i64 n) {
  cuda::launch_1d(cuda::broadcast_scalar_kernel<T>, n, cuda::stream_of(ctx), s, divisor, y);
}

template <class T> void backend<device::cuda>::activation_forward(ctx_t& ctx, activation a, const T* x, T* y, i64 n) {
  cuda::activation_launch<T>(cuda::stream_of(ctx), a, false, x, nullptr, y, n);
}

template <class T>
void backend<device::cuda>::activation_backward(ctx_t& ctx, activation a, const T* x, const T* dy, T* dx, i64 n) {
  cuda::activation_launch<T>(cuda::stream_of(ctx), a, true, x, dy, dx, n);
}

} // namespace minibert
