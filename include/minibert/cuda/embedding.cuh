// SPDX-License-Identifier: MIT
#pragma once
/* CUDA embedding lookup and its scatter-add backward: ids (N) into weight (V,C) -> out (N,C). The backward is
   deterministic without atomics: a stable radix sort of (id, row) pairs (CUB) groups the rows of each id in row order,
   then the head of each id's run adds its rows into dweight[id] in that order, so for fp32 every sum is the CPU's
   (dw[id] += dout[i] for i ascending) bit for bit. Ids are not checked on the device: the
   op checks them only for CPU tensors, and the trainer's ids come from the tokenizer, whose vocabulary the model's
   vocab_size covers (checked when the model is loaded). */
#ifndef __CUDACC__
#error "minibert/cuda/embedding.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstddef> // size_t
#include <cstdint> // int64_t, int32_t
#include <limits>  // numeric_limits

#include <cub/device/device_radix_sort.cuh> // cub::DeviceRadixSort (stable)

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int embedding_block = 256;         // threads per row of the lookup
inline constexpr int embedding_backward_block = 64; // columns per block of the backward

// ids (N) into weight (V,C) -> out (N,C); one block per row i, threads over columns
template <class T, class I>
__global__ void embedding_forward_kernel(const I* __restrict__ ids, const T* __restrict__ weight, T* __restrict__ out,
                                         i64 C) {
  const i64 i = blockIdx.x;
  const T* src = weight + i64(ids[i]) * C;
  T* dst = out + i * C;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// rows (N) = 0, 1, ..., N-1: the values sorted along with the ids
template <class Index> __global__ void embedding_iota_kernel(i64 N, Index* __restrict__ rows) {
  for (i64 i = global_thread_index(); i < N; i += global_thread_count()) rows[i] = static_cast<Index>(i);
}

// sorted ids (N) with their rows (N, ascending within each id) -> dweight[id] += dout[rows of id] in row order.
// grid (N sorted positions, column blocks): only the first position of each id's run does work, so every dweight
// element has exactly one writer; one thread per column adds the run's rows one after the other (the loop is unrolled
// so that a long run, e.g. of token type ids, keeps several loads in flight).
template <class T, class I>
__global__ void embedding_backward_kernel(const I* __restrict__ sorted_ids, const std::int32_t* __restrict__ rows,
                                          const T* __restrict__ dout, T* __restrict__ dweight, i64 N, i64 C) {
  const i64 s = blockIdx.x;
  const I id = sorted_ids[s];
  if (s > 0 && sorted_ids[s - 1] == id) return; // not the head of its run (block-uniform exit)
  const i64 c = i64(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  i64 e = s + 1, hi = N; // the run's end: the first position past s whose id is not id (binary search, ids sorted)
  while (e < hi) {
    const i64 mid = e + (hi - e) / 2;
    if (sorted_ids[mid] == id) e = mid + 1;
    else hi = mid;
  }
  T* dst = dweight + i64(id) * C + c;
  float acc = to_float(*dst); // start from dweight: for fp32 the CPU's rounding order exactly
#pragma unroll 8
  for (i64 t = s; t < e; ++t) acc += to_float(dout[i64(rows[t]) * C + c]);
  *dst = from_float<T>(acc);
}

inline std::size_t embedding_align(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// ids (N) into w (V,C) -> out (N,C)
template <class T, class I>
void backend<device::cuda>::embedding_forward(ctx_t& ctx, const I* ids, const T* w, T* out, i64 N, i64 C) {
  if (N <= 0 || C <= 0) return;
  MINIBERT_CHECK(N <= std::numeric_limits<std::int32_t>::max(), "embedding", N << " ids: at most 2^31-1 per call");
  cuda::embedding_forward_kernel<<<static_cast<unsigned>(N), cuda::embedding_block, 0, cuda::stream_of(ctx)>>>(ids, w,
                                                                                                              out, C);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// ids (N), dout (N,C) -> dw (V,C) += dout rows scattered to their ids (deterministic, no atomics)
template <class T, class I>
void backend<device::cuda>::embedding_backward(ctx_t& ctx, const I* ids, const T* dout, T* dw, i64 N, i64 C) {
  if (N <= 0 || C <= 0) return;
  MINIBERT_CHECK(N <= std::numeric_limits<std::int32_t>::max(), "embedding", N << " ids: at most 2^31-1 per call");
  MINIBERT_CHECK(cuda::ceil_div(C, cuda::embedding_backward_block) <= 65535, "embedding", "C " << C << " too large");
  cudaStream_t stream = cuda::stream_of(ctx);
  const int n = static_cast<int>(N);
  // one scratch block: sorted ids (N), rows (N), sorted rows (N), CUB's temporary storage
  std::size_t temp_bytes = 0;
  MINIBERT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, static_cast<I*>(nullptr),
                                                      static_cast<const std::int32_t*>(nullptr),
                                                      static_cast<std::int32_t*>(nullptr), n, 0, int(sizeof(I) * 8),
                                                      stream));
  const std::size_t keys_bytes = cuda::embedding_align(std::size_t(N) * sizeof(I));
  const std::size_t rows_bytes = cuda::embedding_align(std::size_t(N) * sizeof(std::int32_t));
  char* base = static_cast<char*>(ctx.scratch_bytes(keys_bytes + 2 * rows_bytes + temp_bytes));
  I* sorted_ids = reinterpret_cast<I*>(base);
  std::int32_t* rows = reinterpret_cast<std::int32_t*>(base + keys_bytes);
  std::int32_t* sorted_rows = reinterpret_cast<std::int32_t*>(base + keys_bytes + rows_bytes);
  void* temp = base + keys_bytes + 2 * rows_bytes;

  cuda::launch_1d(cuda::embedding_iota_kernel<std::int32_t>, N, stream, rows);
  // LSD radix sort is stable: rows of one id stay ascending
  MINIBERT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, sorted_ids,
                                                      static_cast<const std::int32_t*>(rows), sorted_rows, n, 0,
                                                      int(sizeof(I) * 8), stream));
  const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(cuda::ceil_div(C, cuda::embedding_backward_block)));
  cuda::embedding_backward_kernel<<<grid, cuda::embedding_backward_block, 0, stream>>>(sorted_ids, sorted_rows, dout,
                                                                                        dw, N, C);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace minibert
