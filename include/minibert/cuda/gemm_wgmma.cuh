// SPDX-License-Identifier: MIT
#pragma once
/* Version 3 of the own GEMM, for sm_90a (H100, H200): the Hopper path of gemm_mma.cuh's products.
   C = alpha op(A) op(B) + beta C [+ bias on every row] [* act'(grad_of)], row-major, strided-batched, every transpose
   combination, bf16 or fp16 data (16-byte aligned operands, as version 2's copied kernels), fp32 accumulation.

   One block per 128 x bn tile of C (bn 128, 192 or 256, picked per problem against wave quantization: tile_width),
   three warpgroups, warp-specialized (llm.c's and CUTLASS's sm90 "warp-specialized" GEMM design):
   - the producer (warpgroup 0, its registers given back by setmaxnreg) has one thread issue the TMA copies
     (cp.async.bulk.tensor) of each k tile of A (128 x 64) and B (bn x 64) into a ring of `stages` shared slots, each
     slot with a "full" mbarrier (the copies' bytes landed) and an "empty" one (both consumers are done with it);
   - two consumers (warpgroups 1 and 2, 232 registers each) each multiply their 64 rows of the A tile by the whole B
     tile with wgmma.mma_async m64n{bn}k16 straight from shared memory (4 per k tile), accumulating in registers,
     then share versions 1 and 2's epilogue (mma::store_tile).
   Tiles are copied with the 128-byte swizzle (the TMA writes 16-byte chunk c of row r at chunk c ^ (r % 8) of a
   128-byte row; wgmma reads through the same swizzle), so every operand is read conflict-free whatever its layout:
   - a K-contiguous operand (A stored (M,K), B stored (N,K)) lands as [rows][64 k], one 128-byte row per row: its
     wgmma descriptor is "K-major" (8-row groups 1024 bytes apart: SBO), and the next k16 step starts 32 bytes on;
   - an M- or N-contiguous operand (A stored (K,M), B stored (K,N)) lands as boxes of [64 k][64 rows], one per 64
     rows: "MN-major" (the instruction's transpose bit set; 8-k groups 1024 bytes apart: SBO; 64-row boxes 8 KiB
     apart: LBO), and the next k16 step starts 16 rows (2048 bytes) on.
   Descriptor fields (PTX ISA "Matrix Descriptor Format"; CUTLASS's GmmaDescriptor): bits 0-13 the start address / 16,
   16-29 the leading byte offset / 16, 32-45 the stride byte offset / 16, 62-63 the swizzle (1: 128 bytes).
   Accumulator layout of m64nNk16 (PTX ISA "wgmma 64N16 D"): warp w of the warpgroup holds rows 16w..16w+15, in the
   layout of mma.sync's 16 x 8 C fragment repeated along N (d[4j..4j+3] for columns 8j..8j+7), which is what
   store_tile takes as a 1 x (bn / 8) grid of tiles.
   The TMA reads zeros past M, N and K (the tensor maps carry the real sizes), so ragged shapes need no predication
   but the epilogue's.

   Only code compiled for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a) has the kernels' bodies; elsewhere they trap and the
   host never launches them (wgmma_gemm_ready checks the running binary with a probe kernel). */

#ifndef __CUDACC__
#error "minibert/cuda/gemm_wgmma.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm>   // min
#include <cstdint>     // uint32_t, uint64_t
#include <type_traits> // is_same_v

#include <cuda.h>          // CUtensorMap and its enums (the encoder is reached through cudart: no libcuda link)
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000
#include <cuda_runtime.h>

#include <minibert/cuda/common.cuh>
#include <minibert/cuda/gemm_mma.cuh> // gemm_fusion, store_tile

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MINIBERT_WGMMA_DEVICE 1
#endif

namespace minibert::cuda::wgmma {

inline constexpr int block_m = 128, block_k = 64; // block_k 16-bit elements: one 128-byte swizzled row
inline constexpr int consumers = 2, threads = 128 * (1 + consumers);
inline constexpr int row_bytes = 128;
inline constexpr int box_bytes = 64 * row_bytes;               // one [64][64] box of an M- or N-contiguous operand
inline constexpr int max_shared_bytes = 227 * 1024;           // H100 / H200: dynamic shared memory per block
inline constexpr int producer_registers = 40, consumer_registers = 232; // 40 x 128 + 232 x 256 = 168 x 384

/// @brief the shared-memory plan of a block of width bn: the ring of (A, B) slots, 1024-byte aligned for the swizzle,
/// then the 2 x stages mbarriers
template <int bn> struct plan {
  static_assert(bn % 64 == 0 && bn >= 128 && bn <= 256, "bn: 128, 192 or 256");
  static constexpr int a_bytes = block_m * row_bytes, b_bytes = bn * row_bytes, slot_bytes = a_bytes + b_bytes;
  static constexpr int alignment_slack = 1024, barrier_bytes = 2 * 8 * 8; // at most 8 stages
  static constexpr int stages = std::min(6, (max_shared_bytes - alignment_slack - barrier_bytes) / slot_bytes);
  static constexpr int smem_bytes = stages * slot_bytes + alignment_slack + barrier_bytes;
};

// ---------------------------------------------------------------------------------------------------------------------
// PTX wrappers (sm_90a; empty elsewhere, where the kernels are never launched)

__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void barrier_init(std::uint32_t bar, int count) {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}
/// @brief makes the barriers' initialization visible to the other threads' waits and to the TMA unit (the async
/// proxy), as CUTLASS's fence_barrier_init and DeepGEMM do
__device__ __forceinline__ void fence_barrier_init() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
/// @brief one arrival on bar that also expects `bytes` more bytes of copies to complete the phase
__device__ __forceinline__ void arrive_expecting(std::uint32_t bar, std::uint32_t bytes) {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void arrive(std::uint32_t bar) {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}
/// @brief waits until the phase of bar with this parity has completed
__device__ __forceinline__ void wait(std::uint32_t bar, std::uint32_t parity) {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("{\n"
               ".reg .pred done;\n"
               "WAIT:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra WAIT;\n"
               "}\n" ::"r"(bar),
               "r"(parity)
               : "memory");
#endif
}
/// @brief the TMA copy of the box at (c0 inner, c1 outer, z batch) of map into dst, completing on bar
__device__ __forceinline__ void copy_box(std::uint32_t dst, const CUtensorMap& map, int c0, int c1, int z,
                                         std::uint32_t bar) {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
               "%4}], [%5];\n" ::"r"(dst),
               "l"(reinterpret_cast<std::uint64_t>(&map)), "r"(c0), "r"(c1), "r"(z), "r"(bar)
               : "memory");
#endif
}
template <int registers> __device__ __forceinline__ void release_registers() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(registers));
#endif
}
template <int registers> __device__ __forceinline__ void claim_registers() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(registers));
#endif
}
__device__ __forceinline__ void mma_fence() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void mma_commit() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
/// @brief waits until at most `pending` committed groups of this warpgroup's MMAs are still running
template <int pending> __device__ __forceinline__ void mma_wait() {
#ifdef MINIBERT_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(pending) : "memory");
#endif
}
/// @brief keeps the compiler from moving reads or writes of the accumulators across the asynchronous MMAs
template <int tiles> __device__ __forceinline__ void fence_accumulators(float (&d)[1][tiles][4]) {
#pragma unroll
  for (int j = 0; j < tiles; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) asm volatile("" : "+f"(d[0][j][r])::"memory");
}

/// @brief the wgmma descriptor of a 128-byte-swizzled shared operand starting at `address` (1024-byte aligned, or
/// a k16 step past such an address), with its leading and stride byte offsets
__device__ __forceinline__ std::uint64_t descriptor(std::uint32_t address, std::uint32_t leading_bytes,
                                                    std::uint32_t stride_bytes) {
  return std::uint64_t((address & 0x3FFFF) >> 4) | std::uint64_t((leading_bytes & 0x3FFFF) >> 4) << 16 |
         std::uint64_t((stride_bytes & 0x3FFFF) >> 4) << 32 | std::uint64_t(1) << 62;
}

// The register lists of the three instruction widths: accumulators %0 .. %(bn / 2 - 1), then the A and B
// descriptors, the scale-d flag and the two transpose immediates.
#define MINIBERT_WGMMA_D64                                                                                            \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "    \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "    \
  "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define MINIBERT_WGMMA_D96                                                                                            \
  MINIBERT_WGMMA_D64 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, "   \
                     "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define MINIBERT_WGMMA_D128                                                                                           \
  MINIBERT_WGMMA_D96 ", %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
                     "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define MINIBERT_WGMMA_ACC4(j) "+f"(d[0][j][0]), "+f"(d[0][j][1]), "+f"(d[0][j][2]), "+f"(d[0][j][3])
#define MINIBERT_WGMMA_ACC16                                                                                          \
  MINIBERT_WGMMA_ACC4(0), MINIBERT_WGMMA_ACC4(1), MINIBERT_WGMMA_ACC4(2), MINIBERT_WGMMA_ACC4(3),                     \
      MINIBERT_WGMMA_ACC4(4), MINIBERT_WGMMA_ACC4(5), MINIBERT_WGMMA_ACC4(6), MINIBERT_WGMMA_ACC4(7),                 \
      MINIBERT_WGMMA_ACC4(8), MINIBERT_WGMMA_ACC4(9), MINIBERT_WGMMA_ACC4(10), MINIBERT_WGMMA_ACC4(11),               \
      MINIBERT_WGMMA_ACC4(12), MINIBERT_WGMMA_ACC4(13), MINIBERT_WGMMA_ACC4(14), MINIBERT_WGMMA_ACC4(15)
#define MINIBERT_WGMMA_ACC24                                                                                          \
  MINIBERT_WGMMA_ACC16, MINIBERT_WGMMA_ACC4(16), MINIBERT_WGMMA_ACC4(17), MINIBERT_WGMMA_ACC4(18),                    \
      MINIBERT_WGMMA_ACC4(19), MINIBERT_WGMMA_ACC4(20), MINIBERT_WGMMA_ACC4(21), MINIBERT_WGMMA_ACC4(22),             \
      MINIBERT_WGMMA_ACC4(23)
#define MINIBERT_WGMMA_ACC32                                                                                          \
  MINIBERT_WGMMA_ACC24, MINIBERT_WGMMA_ACC4(24), MINIBERT_WGMMA_ACC4(25), MINIBERT_WGMMA_ACC4(26),                    \
      MINIBERT_WGMMA_ACC4(27), MINIBERT_WGMMA_ACC4(28), MINIBERT_WGMMA_ACC4(29), MINIBERT_WGMMA_ACC4(30),             \
      MINIBERT_WGMMA_ACC4(31)
// d (64 x n) += A (64 x 16) B (16 x n) for the whole warpgroup: one wgmma.mma_async of n columns of element type ty;
// `scale` and `tail` name the operands after the accumulators (A's and B's descriptors, the scale-d flag, the two
// transpose immediates)
#define MINIBERT_WGMMA(n, ty, regs, scale, tail, accs)                                                                \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " scale ", 0;\nwgmma.mma_async.sync.aligned.m64n" #n "k16.f32." ty  \
               "." ty " {" regs "}, " tail "\n}\n"                                                                   \
               : accs                                                                                                 \
               : "l"(desc_a), "l"(desc_b), "r"(1), "n"(int(a_mn_major)), "n"(int(b_mn_major)))

/// @brief d (this warpgroup's 64 x bn accumulators) += A B for one k16 step: A (64 x 16) and B (16 x bn) read through
/// their descriptors, each transposed (MN-major) where its flag says; accumulates onto d (scale-d = 1)
template <class T, int bn, bool a_mn_major, bool b_mn_major>
__device__ __forceinline__ void mma_async(float (&d)[1][bn / 8][4], std::uint64_t desc_a, std::uint64_t desc_b) {
#ifdef MINIBERT_WGMMA_DEVICE
  constexpr bool bf16 = std::is_same_v<T, bfloat16>;
  if constexpr (bn == 128 && bf16)
    MINIBERT_WGMMA(128, "bf16", MINIBERT_WGMMA_D64, "%66", "%64, %65, p, 1, 1, %67, %68;", MINIBERT_WGMMA_ACC16);
  else if constexpr (bn == 128)
    MINIBERT_WGMMA(128, "f16", MINIBERT_WGMMA_D64, "%66", "%64, %65, p, 1, 1, %67, %68;", MINIBERT_WGMMA_ACC16);
  else if constexpr (bn == 192 && bf16)
    MINIBERT_WGMMA(192, "bf16", MINIBERT_WGMMA_D96, "%98", "%96, %97, p, 1, 1, %99, %100;", MINIBERT_WGMMA_ACC24);
  else if constexpr (bn == 192)
    MINIBERT_WGMMA(192, "f16", MINIBERT_WGMMA_D96, "%98", "%96, %97, p, 1, 1, %99, %100;", MINIBERT_WGMMA_ACC24);
  else if constexpr (bf16)
    MINIBERT_WGMMA(256, "bf16", MINIBERT_WGMMA_D128, "%130", "%128, %129, p, 1, 1, %131, %132;", MINIBERT_WGMMA_ACC32);
  else
    MINIBERT_WGMMA(256, "f16", MINIBERT_WGMMA_D128, "%130", "%128, %129, p, 1, 1, %131, %132;", MINIBERT_WGMMA_ACC32);
#endif
}

// ---------------------------------------------------------------------------------------------------------------------
// the kernel

/// @brief which 128 x bn tile of C block t computes: tiles taken in groups of 8 tile rows, column by column within a
/// group, so that the blocks running together share their A rows and B columns in L2
__device__ __forceinline__ void tile_of(int t, int row_tiles, int col_tiles, int& row_tile, int& col_tile) {
  constexpr int group = 8;
  const int per_group = group * col_tiles, first = t / per_group * group;
  const int rows = min(group, row_tiles - first), in_group = t % per_group;
  row_tile = first + in_group % rows;
  col_tile = in_group / rows;
}

/// @brief one operand's tiles: its tensor map (dims: contiguous, outer, batch) and whether it is K-contiguous
/// (one box of [rows][64 k] per k tile) or M/N-contiguous (rows / 64 boxes of [64 k][64 rows])
template <int rows, bool mn_major> struct operand_tiles {
  static constexpr int bytes = rows * row_bytes;
  /// @brief the TMA copies of k tile kt of the rows from r0 (of matrix z) into the slot at dst
  __device__ static void copy(const CUtensorMap& map, std::uint32_t dst, int r0, int kt, int z, std::uint32_t bar) {
    if constexpr (mn_major) {
#pragma unroll
      for (int b = 0; b < rows / 64; ++b) copy_box(dst + b * box_bytes, map, r0 + 64 * b, kt * block_k, z, bar);
    } else {
      copy_box(dst, map, kt * block_k, r0, z, bar);
    }
  }
  /// @brief the descriptor of the 64-row (A) or whole (B) operand from row `first` of the slot, at depth kk (a
  /// multiple of 16) of the k tile
  __device__ static std::uint64_t at(std::uint32_t slot, int first, int kk) {
    if constexpr (mn_major) return descriptor(slot + first / 64 * box_bytes + kk * row_bytes, box_bytes, 1024);
    else return descriptor(slot + first * row_bytes + kk * 2, 16, 1024);
  }
};

// C[z] (M,N) = alpha op(A[z]) op(B[z]) + beta C[z] (+ bias (N) on every row) [* act'(grad_of), batch 1], with A and
// B read through their tensor maps (16-bit T: half or bfloat16). C is not read when beta == 0.
// grid (row tiles x column tiles, 1, min(batch, 65535)), block 384, plan<bn>::smem_bytes of dynamic shared memory;
// the z dim loops over the batch.
template <class T, bool ta, bool tb, int bn>
__global__ void __launch_bounds__(threads, 1)
    gemm_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b, int M, int N,
                int K, float alpha, float beta, T* c, i64 ldc, i64 sc, int batch, const T* bias,
                mma::gemm_fusion<T> f) {
#ifdef MINIBERT_WGMMA_DEVICE
  using P = plan<bn>;
  using a_tiles = operand_tiles<block_m, ta>;  // A stored (K,M) when ta: M-contiguous
  using b_tiles = operand_tiles<bn, !tb>;      // B stored (K,N) unless tb: N-contiguous
  extern __shared__ std::uint8_t smem_raw[];
  const std::uint32_t base = (shared_address(smem_raw) + 1023) & ~std::uint32_t(1023);
  const auto slot_a = [&](int s) { return base + std::uint32_t(s * P::slot_bytes); };
  const auto slot_b = [&](int s) { return slot_a(s) + P::a_bytes; };
  const std::uint32_t barriers = base + P::stages * P::slot_bytes;
  const auto full = [&](int s) { return barriers + 8 * s; };
  const auto empty = [&](int s) { return barriers + 8 * (P::stages + s); };
  if (threadIdx.x == 0) {
    for (int s = 0; s < P::stages; ++s) {
      barrier_init(full(s), 1);
      barrier_init(empty(s), consumers);
    }
    fence_barrier_init();
  }
  __syncthreads();

  const int row_tiles = (M + block_m - 1) / block_m, col_tiles = (N + bn - 1) / bn;
  int row_tile, col_tile;
  tile_of(int(blockIdx.x), row_tiles, col_tiles, row_tile, col_tile);
  const int m0 = row_tile * block_m, n0 = col_tile * bn, k_tiles = (K + block_k - 1) / block_k;
  const int warpgroup = int(threadIdx.x) / 128;
  if (warpgroup == 0) { // the producer: one thread issues every copy
    release_registers<producer_registers>();
    if (threadIdx.x != 0) return; // (so no block-wide barrier may follow: the epilogue below has none)
    int it = 0; // k tiles issued so far, over the whole batch loop (the ring's position)
    for (int z = blockIdx.z; z < batch; z += gridDim.z)
      for (int kt = 0; kt < k_tiles; ++kt, ++it) {
        const int s = it % P::stages, round = it / P::stages;
        if (round > 0) wait(empty(s), (round - 1) & 1); // both consumers are done with the slot's last tile
        arrive_expecting(full(s), P::slot_bytes);
        a_tiles::copy(map_a, slot_a(s), m0, kt, z, full(s));
        b_tiles::copy(map_b, slot_b(s), n0, kt, z, full(s));
      }
    return;
  }
  claim_registers<consumer_registers>();
  const int consumer = warpgroup - 1; // its 64 rows of the block tile: 64 consumer ..
  const bool leader = threadIdx.x % 128 == 0; // arrives on the empty barriers for its warpgroup
  int it = 0;
  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    float acc[1][bn / 8][4] = {};
    fence_accumulators(acc);
    for (int kt = 0; kt < k_tiles; ++kt, ++it) {
      const int s = it % P::stages;
      wait(full(s), (it / P::stages) & 1);
      mma_fence();
#pragma unroll
      for (int kk = 0; kk < block_k; kk += 16)
        mma_async<T, bn, ta, !tb>(acc, a_tiles::at(slot_a(s), 64 * consumer, kk), b_tiles::at(slot_b(s), 0, kk));
      mma_commit();
      // one k tile of MMAs stays in flight (successive wgmmas on the same accumulators are ordered): once the
      // previous tile's are done, its slot goes back to the producer
      mma_wait<1>();
      if (kt > 0 && leader) arrive(empty((it - 1) % P::stages));
    }
    mma_wait<0>();
    fence_accumulators(acc);
    if (leader) arrive(empty((it - 1) % P::stages));
    const int warp = int(threadIdx.x) / 32 % 4;
    mma::store_tile(acc, M, N, m0 + 64 * consumer + 16 * warp, n0, alpha, beta, c + z * sc, ldc, bias, f);
  }
#else
  __trap(); // never launched: wgmma_gemm_ready is false for a binary without sm_90a
#endif
}

// ---------------------------------------------------------------------------------------------------------------------
// host side

// writes 1 into *built when the device runs code compiled for sm_90a (a template: one definition in every program)
template <int = 0> __global__ void probe_kernel(int* built) {
#ifdef MINIBERT_WGMMA_DEVICE
  *built = 1;
#else
  *built = 0;
#endif
}

/// @brief whether the current device runs these kernels: compute capability 9.0 and a binary built for sm_90a
/// (probe_kernel, run once per device, tells which binary the device picked); cached per device
inline bool ready() {
  return once_per_device(
      [](int dev) {
        int major = 0, minor = 0, built = 0;
        int* flag = nullptr;
        bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                  major == 9 && minor == 0 && cudaMalloc(&flag, sizeof(int)) == cudaSuccess;
        if (ok) {
          probe_kernel<<<1, 1>>>(flag);
          ok = cudaGetLastError() == cudaSuccess &&
               cudaMemcpy(&built, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess && built == 1;
        }
        if (flag) cudaFree(flag);
        (void)cudaGetLastError(); // a kernel image the device cannot run is "no", not a sticky error
        return ok;
      },
      false);
}

/// @brief the current device's multiprocessor count, cached per device (132 on an H100 SXM, assumed when unknown)
inline int multiprocessors() {
  return once_per_device(
      [](int dev) {
        int sms = 0;
        return cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && sms > 0 ? sms : 132;
      },
      132);
}

/// @brief the driver's cuTensorMapEncodeTiled, through the runtime (no link against libcuda); null when unavailable
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                                           &found);
#else
    const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &found);
#endif
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess) p = nullptr;
    (void)cudaGetLastError();
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

/// @brief the tensor map of one 16-bit operand: `inner` elements contiguous (row stride ld), `outer` rows, `batch`
/// matrices `stride` apart, read in boxes of 64 x box_outer with the 128-byte swizzle and zeros past the edges;
/// false when the driver rejects it
template <class T>
bool encode_operand(CUtensorMap& map, const T* x, i64 inner, i64 outer, i64 ld, i64 stride, i64 batch,
                    int box_outer) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (!encode) return false;
  constexpr i64 es = sizeof(T);
  const cuuint64_t dims[3] = {cuuint64_t(inner), cuuint64_t(outer), cuuint64_t(batch)};
  // a single matrix's batch stride is never stepped; any multiple of 16 bytes will do
  const cuuint64_t strides[2] = {cuuint64_t(ld * es), cuuint64_t((batch > 1 ? stride : ld * outer) * es)};
  const cuuint32_t box[3] = {64, cuuint32_t(box_outer), 1}, element_strides[3] = {1, 1, 1};
  const CUresult r = encode(&map, std::is_same_v<T, bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                               : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                            3, const_cast<T*>(x), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

/// @brief the block width for `batch` (M,N) products on `sms` multiprocessors: the widest tile (most work per byte
/// moved) unless a narrower one fills the last wave better (N = 768 at 4096 rows: 128 tiles of 192 columns on 132 SMs
/// rather than 96 of 256) or wastes fewer columns past N; each width's tile efficiency is a guess (1, 0.95, 0.9) that
/// the workbench can revise
inline int tile_width(i64 M, i64 N, i64 batch, int sms) {
  int best = 256;
  double best_score = 0;
  for (const int bn : {256, 192, 128}) {
    const i64 col_tiles = (N + bn - 1) / bn, blocks = (M + block_m - 1) / block_m * col_tiles * batch;
    const i64 waves = (blocks + sms - 1) / sms;
    const double fill = double(blocks) / double(waves * sms), used = double(N) / double(col_tiles * bn);
    const double score = fill * used * (1.0 - 0.1 * (256 - bn) / 128.0);
    if (score > best_score + 1e-9) {
      best = bn;
      best_score = score;
    }
  }
  return best;
}

/// @brief whether `kernel` was given the registers at launch that its warpgroups' setmaxnreg redistribute
/// (168 x 384 = 40 x 128 + 232 x 256): with fewer, the consumers' setmaxnreg.inc would wait forever. Cached per kernel.
template <auto kernel> bool register_budget_matches() {
  static const bool ok = [] {
    cudaFuncAttributes attr{};
    const bool got = cudaFuncGetAttributes(&attr, kernel) == cudaSuccess;
    (void)cudaGetLastError();
    return got && attr.numRegs * threads == producer_registers * 128 + consumer_registers * 128 * consumers;
  }();
  return ok;
}

} // namespace minibert::cuda::wgmma
