// SPDX-License-Identifier: MIT
#pragma once
/* The blocked, threaded fp32 GEMM driver over cpu/gemm_kernel.hpp: packing scratch, the macro-kernel, the
   packed-B blocks (packed on demand), the split of C into units of rows, and the work sharing of a two-way
   OpenMP team without OpenMP barriers. Private to cpu/gemm.hpp. */

#include <algorithm> // min, max, clamp
#include <atomic>    // atomic (work sharing in a GEMM's team)
#include <cstddef>   // size_t
#include <cstdint>   // int64_t
#include <cstdlib>   // aligned_alloc, free
#include <memory>    // unique_ptr, make_unique
#include <new>       // bad_alloc
#include <thread>    // this_thread::yield

#include <immintrin.h> // _mm_pause
#if defined(__linux__)
#include <sys/mman.h> // madvise
#endif
#if defined(_OPENMP)
#include <omp.h> // omp_get_max_threads, omp_get_num_threads, omp_get_thread_num, omp_in_parallel
#endif

#include <minibert/cpu/gemm_kernel.hpp>

namespace minibert::cpu::detail {

// ---------------------------------------------------------------------- packing buffers

// Grow-only, 64-byte aligned scratch, kept by the calling thread (thread_local), so steady-state calls
// allocate nothing. Everything a call needs (the packed B block and one A block per team thread) is
// reserved before the parallel region, where a bad_alloc could not propagate.
struct gemm_buffer {
  float* data = nullptr;
  std::size_t capacity = 0; // floats
  gemm_buffer() = default;
  gemm_buffer(const gemm_buffer&) = delete;
  gemm_buffer& operator=(const gemm_buffer&) = delete;
  ~gemm_buffer() { std::free(data); }
  float* reserve(std::size_t n) {
    if (n > capacity) {
      std::free(data);
      // Large buffers (the packed B block is up to 8 MiB) are 2 MiB-aligned and asked to be backed by huge
      // pages where THP is in madvise mode: with 4 KiB pages a packed B block spans thousands of TLB entries.
      const std::size_t align = n * sizeof(float) >= (std::size_t(1) << 21) ? std::size_t(1) << 21 : 64;
      const std::size_t bytes = (n * sizeof(float) + align - 1) / align * align;
      data = static_cast<float*>(std::aligned_alloc(align, bytes));
      if (!data) {
        capacity = 0;
        throw std::bad_alloc();
      }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (align > 64) madvise(data, bytes, MADV_HUGEPAGE); // a hint: failure only costs TLB misses
#endif
      capacity = bytes / sizeof(float);
    }
    return data;
  }
};
inline gemm_buffer& gemm_scratch() {
  thread_local gemm_buffer buffer;
  return buffer;
}

// ---------------------------------------------------------------------- macro-kernel and driver

// C[0:mc, columns of B panels q0..q1) = alpha * (packed A block (mc x kc)) (those packed B panels) + beta * C.
// B panels outermost: one B panel (kc x NR, 48 KiB at kc = 384) is reused from L1/L2 by every A panel.
inline void gemm_macro_kernel(std::int64_t mc, std::int64_t nc, std::int64_t kc, const float* ap, const float* bp,
                              std::int64_t q0, std::int64_t q1, float* C, std::int64_t ldc, float alpha, float beta,
                              gemm_mode mode) {
  for (std::int64_t q = q0; q < q1; ++q) {
    const std::int64_t n = std::min<std::int64_t>(gemm_nr, nc - q * gemm_nr);
    const std::int64_t nv = (n + 15) / 16;
    const float* b = bp + q * gemm_nr * kc;
    std::int64_t i = 0;
    const gemm_kernel_fn full = gemm_kernel_select(gemm_mr, nv, mode);
    for (; i + gemm_mr <= mc; i += gemm_mr)
      full(kc, ap + i * kc, b, C + i * ldc + q * gemm_nr, ldc, n, alpha, beta);
    if (i < mc) gemm_kernel_select(mc - i, nv, mode)(kc, ap + i * kc, b, C + i * ldc + q * gemm_nr, ldc, n, alpha, beta);
  }
}

// One GEMM call, C = alpha op(A) op(B) + beta C with M, N, K >= 1, and its blocking.
struct gemm_args {
  bool trans_a, trans_b;
  std::int64_t M, N, K;
  float alpha;
  const float* A;
  std::int64_t lda;
  const float* B;
  std::int64_t ldb;
  float beta;
  float* C;
  std::int64_t ldc;
  gemm_mode mode = gemm_mode::fp32; // operands in fp32, or converted to bf16 / rounded in the packed panels
  // blocking: k block (<= gemm_kc, K split evenly), k range of one packed-B block (a multiple of kc),
  // columns of one packed-B block (a multiple of NR)
  std::int64_t kc = 0, ks = 0, nc = 0;
};

// Threads for a GEMM of this size: 1 below gemm_parallel_flops or inside a parallel region (attention runs
// its per-head GEMMs from one), else up to omp_get_max_threads().
inline int gemm_threads(std::int64_t M, std::int64_t N, std::int64_t K) {
#if defined(_OPENMP)
  if (omp_in_parallel() || 2 * M * N * K < gemm_parallel_flops) return 1;
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The parallel work: a grid of units (row_units bands of MR-row panels x col_units bands of B panels) over
// one packed B block. Units are handed out dynamically, so a thread slowed by other processes on the same
// cores takes fewer; each unit computes its C tile completely (the block's k range, in order) whichever
// thread runs it, so results are bitwise the same for any thread count and schedule.
struct gemm_units {
  std::int64_t mp = 0, np = 0; // row panels (of MR rows) and B panels in all
  // bands: unit (r, c) has row panels [r mp / row_units, (r+1) mp / row_units), likewise B panels
  std::int64_t row_units = 1, col_units = 1;
  std::int64_t count() const { return row_units * col_units; }
  // unit -> rows [i0, i1) of C and B panels [q0, q1)
  void bounds(std::int64_t unit, std::int64_t M, std::int64_t& i0, std::int64_t& i1, std::int64_t& q0,
              std::int64_t& q1) const {
    const std::int64_t r = unit / col_units, c = unit % col_units;
    i0 = r * mp / row_units * gemm_mr;
    i1 = std::min(M, (r + 1) * mp / row_units * gemm_mr);
    q0 = c * np / col_units;
    q1 = (c + 1) * np / col_units;
  }
};

inline gemm_units gemm_plan_units(std::int64_t M, std::int64_t npanels, int threads) {
  gemm_units u;
  u.mp = (M + gemm_mr - 1) / gemm_mr;
  u.np = npanels;
  // At least 4 units per thread (balance against a co-scheduled process), at most mc rows each, a multiple
  // of the thread count, in bands of equal size (+-1 panel): 2048 rows as 11 units of <= 16 panels leave
  // one thread idle for the last unit; 12 units of 14-15 panels don't (2048^3: 430 -> 455 GFLOP/s). One
  // thread takes the largest units. Among such grids, take the one moving the least data: each row band
  // streams the packed B block once more (row_units x nc floats per k), each column band packs its rows
  // of A once more (col_units x M per k, weighted 2x: packing is read, transpose and write). 768 rows x
  // 768 or 1536 columns (the dW GEMMs) then run as 4 x 2 units, not 8 x 1 (measured +6-10%).
  const std::int64_t t = threads, target = threads == 1 ? 1 : 4 * t;
  const std::int64_t min_rows = (u.mp + gemm_mc / gemm_mr - 1) / (gemm_mc / gemm_mr);
  double best = -1;
  for (std::int64_t c = 1; c <= std::min(npanels, target); ++c) {
    std::int64_t r = std::max(min_rows, (target + c - 1) / c);
    while (r < u.mp && (r * c) % t != 0) ++r;
    r = std::min(r, u.mp);
    if (r * c < std::min(target, u.mp * npanels)) continue; // too few units (M small): more column bands
    const double cost = double(r) * double(npanels * gemm_nr) + 2.0 * double(c) * double(M);
    if (best < 0 || cost < best) {
      best = cost;
      u.row_units = r;
      u.col_units = c;
    }
  }
  return u;
}

// One packed B block (columns [j0, j0 + nc) x k range [s0, s1) of op(B)), packed on demand in groups of
// gemm_pack_group panels (the whole k range each).
// Whichever thread first needs a group claims and packs it; others needing it meanwhile wait. So packing
// (DRAM-bound: B is read once) overlaps the other thread's arithmetic instead of running as a phase of
// its own before it, the first use of a group finds it in L2, and no barrier separates packing from use.
struct gemm_b_block {
  const gemm_args* g;
  std::int64_t j0, nc, npanels; // columns [j0, j0 + nc) of op(B)
  std::int64_t s0, s1;          // rows (k) [s0, s1) of op(B)
  float* bp;                    // k block p0 at bp + (p0 - s0) * npanels * NR
  std::atomic<int>* state;      // per group: 0 unpacked, 1 being packed, 2 ready
  bool shared;                  // false: one thread, no waiting needed

  float* block(std::int64_t p0) const { return bp + (p0 - s0) * npanels * gemm_nr; }
  void pack(std::int64_t group) const {
    const std::int64_t q0 = group * gemm_pack_group, q1 = std::min(npanels, q0 + gemm_pack_group);
    for (std::int64_t p0 = s0; p0 < s1; p0 += g->kc) {
      const std::int64_t kc = std::min(g->kc, s1 - p0);
      gemm_pack_b(g->trans_b, nc, kc, g->B, g->ldb, p0, j0, q0, q1, block(p0));
      if (g->mode == gemm_mode::fp32) continue;
      for (std::int64_t q = q0; q < q1; ++q) {
        const std::int64_t n = std::min<std::int64_t>(gemm_nr, nc - q * gemm_nr);
        gemm_finish_panel(g->mode, block(p0) + q * gemm_nr * kc, kc, (n + 15) / 16 * 16);
      }
    }
  }
  // Makes the groups holding panels [q0, q1) ready: packs those nobody claimed yet, then waits for the rest.
  void ensure(std::int64_t q0, std::int64_t q1) const {
    const std::int64_t g0 = q0 / gemm_pack_group, g1 = (q1 + gemm_pack_group - 1) / gemm_pack_group;
    for (std::int64_t x = g0; x < g1; ++x) {
      int expected = 0;
      if (state[x].load(std::memory_order_acquire) == 0 &&
          state[x].compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
        pack(x);
        state[x].store(2, std::memory_order_release);
      }
    }
    if (!shared) return;
    for (std::int64_t x = g0; x < g1; ++x)
      for (int spin = 0; state[x].load(std::memory_order_acquire) != 2; ++spin) {
        if (spin < 256) _mm_pause();
        else std::this_thread::yield();
      }
  }
};

// One unit: C[i0 : i0+mc, panels q0..q1 of the B block] over the block's k range; ap is this thread's A
// buffer (mc x ks: k block p0 packed at ap + (p0 - s0) * mc).
// C is swept in chunks of gemm_chunk_panels B panels, each chunk through every k block: the C chunk
// (mc x 256 x 4 B = 192 KiB) stays in L2 between k blocks, where a whole row strip of C (mc x N, 2.3 MiB
// at N = 3072) would go back to L3 once per k block. A is packed during the first chunk, each k block
// just before its first use, and read back by the later chunks.
inline void gemm_unit(const gemm_b_block& pb, std::int64_t i0, std::int64_t mc, std::int64_t q0, std::int64_t q1,
                      float* ap) {
  const gemm_args& g = *pb.g;
  for (std::int64_t c0 = q0; c0 < q1; c0 += gemm_chunk_panels) {
    const std::int64_t c1 = std::min(q1, c0 + gemm_chunk_panels);
    pb.ensure(c0, c1);
    for (std::int64_t p0 = pb.s0; p0 < pb.s1; p0 += g.kc) { // later k blocks accumulate onto the first
      const std::int64_t kc = std::min(g.kc, pb.s1 - p0);
      float* a = ap + (p0 - pb.s0) * mc;
      if (c0 == q0) {
        gemm_pack_a(g.trans_a, mc, kc, g.A, g.lda, i0, p0, a);
        if (g.mode != gemm_mode::fp32)
          for (std::int64_t r = 0; r < mc; r += gemm_mr)
            gemm_finish_panel(g.mode, a + r * kc, kc, std::min<std::int64_t>(gemm_mr, mc - r));
      }
      gemm_macro_kernel(mc, pb.nc, kc, a, pb.block(p0), c0, c1, g.C + i0 * g.ldc + pb.j0, g.ldc, g.alpha,
                        p0 == 0 ? g.beta : 1.0f, g.mode);
    }
  }
}

// Work sharing inside a GEMM's team without OpenMP barriers: libgomp's barriers spin for a long while
// before sleeping, and on a 2-core machine shared with other processes a spinning thread burns the time
// slice its preempted partner needs (measured: median 2-thread rate down by a quarter at load ~5).
// Units are claimed from one counter; a thread that runs out of units (its claim fails) arrives at the
// phase's end and waits for the others there with a short pause loop, then sched_yield. Once all have
// arrived every unit is done and every thread has made exactly one failed claim, so the counters never
// need resetting: phase p's claims start at sum over earlier phases of (units + threads).
struct gemm_team {
  alignas(64) std::atomic<std::int64_t> claimed{0};
  alignas(64) std::atomic<std::int64_t> arrived{0};
};

// One thread's view of the team's phases.
struct gemm_phase {
  int threads = 1; // team size
  std::int64_t claim_base = 0, arrivals = 0;
  // Runs f(i) for the items i in [0, n) this thread claims, then waits until all n are done.
  template <class F> void run(gemm_team& team, std::int64_t n, F&& f) {
    for (std::int64_t i; (i = team.claimed.fetch_add(1, std::memory_order_relaxed) - claim_base) < n;) f(i);
    arrivals += threads;
    team.arrived.fetch_add(1, std::memory_order_acq_rel);
    for (int spin = 0; team.arrived.load(std::memory_order_acquire) < arrivals; ++spin) {
      if (spin < 256) _mm_pause(); // ~10 us on Zen 5: the partner usually finishes its last unit within that
      else std::this_thread::yield();
    }
    claim_base += n + threads;
  }
};

// Body run by every thread of the team (phase: this thread's view of it), or alone when team is null
// (then it must meet no OpenMP construct: the caller may be inside a parallel region of its own).
// state: the group states of every B block, all 0. B blocks run one after another, k ranges innermost (so
// C's k order is the same as without blocking); each is one phase of units.
inline void gemm_f32_team(const gemm_args& g, gemm_team* team, gemm_phase* phase, float* bp, float* ap,
                          std::atomic<int>* state) {
  for (std::int64_t j0 = 0; j0 < g.N; j0 += g.nc) {
    const std::int64_t nc = std::min(g.nc, g.N - j0), npanels = (nc + gemm_nr - 1) / gemm_nr;
    const gemm_units u = gemm_plan_units(g.M, npanels, team ? phase->threads : 1);
    for (std::int64_t s0 = 0; s0 < g.K; s0 += g.ks) {
      const gemm_b_block pb{&g, j0, nc, npanels, s0, std::min(g.K, s0 + g.ks), bp, state, team != nullptr};
      state += (npanels + gemm_pack_group - 1) / gemm_pack_group;
      auto run = [&](std::int64_t unit) {
        std::int64_t i0, i1, q0, q1;
        u.bounds(unit, g.M, i0, i1, q0, q1);
        gemm_unit(pb, i0, i1 - i0, q0, q1, ap);
      };
      if (!team) {
        for (std::int64_t unit = 0; unit < u.count(); ++unit) run(unit);
      } else {
        phase->run(*team, u.count(), run); // its closing wait: bp stays until every unit is done
      }
    }
  }
}

// Per-thread state buffer for gemm_b_block (grow-only, like the scratch).
inline std::atomic<int>* gemm_group_states(std::size_t n) {
  thread_local std::unique_ptr<std::atomic<int>[]> states;
  thread_local std::size_t capacity = 0;
  if (n > capacity) {
    states = std::make_unique<std::atomic<int>[]>(n);
    capacity = n;
  }
  for (std::size_t i = 0; i < n; ++i) states[i].store(0, std::memory_order_relaxed);
  return states.get();
}

// Splits op(B) (K x N) into packed blocks of at most gemm_packed_b floats (ks x nc), each read back from L3
// rather than DRAM: cols column blocks (nc = N / cols, whole panels) times ranges k ranges (ks = whole k
// blocks). Each extra column block repacks all of A (read and write M x K); each extra k range makes one
// more pass over C (read and write M x N); take the split with the least of that traffic. BERT-base:
// 4096x3072x768 splits N in 2 (a K split would stream its 50 MB C twice), 768x768x4096 splits K in 2.
inline void gemm_plan_b_blocks(gemm_args& g, std::int64_t kblocks) {
  const std::int64_t npanels = (g.N + gemm_nr - 1) / gemm_nr;
  double best = -1;
  for (std::int64_t cols = 1; cols <= npanels; ++cols) {
    const std::int64_t nc = (npanels + cols - 1) / cols * gemm_nr;
    const std::int64_t per_range = gemm_packed_b / (g.kc * nc); // whole k blocks per range (>= 1 at nc = NR)
    if (per_range < 1) continue;
    const std::int64_t ranges = (kblocks + per_range - 1) / per_range;
    const double traffic = double(g.M) * (double(cols - 1) * double(g.K) + double(ranges - 1) * double(g.N));
    if (best < 0 || traffic < best) {
      best = traffic;
      g.nc = nc;
      g.ks = (kblocks + ranges - 1) / ranges * g.kc; // k blocks split evenly over the ranges
    }
    if (ranges == 1) break; // more column blocks would only add traffic
  }
}

// C = alpha op(A) op(B) + beta C for M, N, K >= 1 (the caller handles the empty cases).
inline void gemm_f32(gemm_args g) {
  const int threads = gemm_threads(g.M, g.N, g.K);
  // K in equal blocks of at most gemm_kc (a multiple of 8): K = 2048 runs 6 x 344, not 5 x 384 + 128,
  // whose short block would pay the C update and the kernel's prologue for a third of the work.
  // bf16 panels hold two k per 32-bit word: twice the k block in the same bytes of L1 and L2
  const std::int64_t kc_max = g.mode == gemm_mode::bf16_native ? 2 * gemm_kc : gemm_kc;
  const std::int64_t kblocks = (g.K + kc_max - 1) / kc_max;
  g.kc = std::min(g.K, ((g.K + kblocks - 1) / kblocks + 7) / 8 * 8);
  gemm_plan_b_blocks(g, kblocks);
  // Scratch: the packed B block, then one mc x ks A buffer per thread. nc is a multiple of 32, so each
  // part starts 64-byte aligned.
  const std::int64_t ks = std::min(g.ks, g.K);
  const std::size_t b_size = std::size_t(g.nc * ks), a_size = std::size_t(gemm_mc * ks);
  float* const bp = gemm_scratch().reserve(b_size + std::size_t(threads) * a_size);
  const std::int64_t blocks = (g.N + g.nc - 1) / g.nc * ((g.K + g.ks - 1) / g.ks);
  std::atomic<int>* state =
      gemm_group_states(std::size_t(blocks * ((g.nc / gemm_nr + gemm_pack_group - 1) / gemm_pack_group)));
  if (threads == 1) {
    gemm_f32_team(g, nullptr, nullptr, bp, bp + b_size, state);
    return;
  }
#if defined(_OPENMP)
  gemm_team team;
#pragma omp parallel num_threads(threads)
  {
    gemm_phase phase{omp_get_num_threads()}; // (the team may be smaller than asked)
    gemm_f32_team(g, &team, &phase, bp, bp + b_size + std::size_t(omp_get_thread_num()) * a_size, state);
  }
#endif
}

} // namespace minibert::cpu::detail
