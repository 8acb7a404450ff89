// SPDX-License-Identifier: MIT
#pragma once
/* backend<device::cuda>: the CUDA op table, declared here in plain C++ (no CUDA types: this header compiles with
   g++), defined in cuda/backend_impl.cuh and its kernel headers, which exactly one .cu file of a program includes
   (it instantiates every member for float, half and bfloat16). Program code calls these members like the CPU
   table's; the model, optimizer and trainer need nothing else. Link minibert::cuda.

   Instantiated element types: floating members for float, half, bfloat16; memory members (fill, copy, upload,
   download, copy_strided, copy_into) also for double, int32, int64, uint8; embedding and cross-entropy for int32
   and int64 ids. */

#include <cstddef> // size_t
#include <cstdint> // int64_t, int32_t, uint8_t, uint64_t
#include <cstdlib> // getenv
#include <memory>  // shared_ptr (graphs)
#include <span>    // span
#include <string>  // string

#include <minibert/backend.hpp>
#include <minibert/dtype.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

/// @brief how many CUDA devices this process sees (0 without a driver or a GPU; never throws)
int cuda_device_count() noexcept;
/// @brief whether a CUDA device is usable
inline bool cuda_available() noexcept { return cuda_device_count() > 0; }
/// @brief whether the own GEMM runs its sm_90a kernels (cuda/gemm_wgmma.cuh) on the current device: an H100 / H200
/// (compute capability 9.0) and a build for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a)
bool cuda_gemm_wgmma_ready() noexcept;

/// @brief who computes a matrix product: cuBLASLt, or minibert's own tensor-core kernels (cuda/gemm_mma.cuh), which
/// take half and bfloat16 data, and fp32 data under bf16/fp16 matmul precision or with MINIBERT_ALLOW_TF32=1, on sm_80
/// and newer; what they do not take goes to cuBLASLt either way
enum class gemm_provider { cublaslt, own };

/// @brief the provider MINIBERT_GEMM_PROVIDER names ("cublaslt", the default, or "own"), read once per process
/// @throws minibert::error for another value
inline gemm_provider gemm_provider_from_env() {
  static const gemm_provider p = [] {
    const char* v = std::getenv("MINIBERT_GEMM_PROVIDER");
    const std::string s = v ? v : "cublaslt";
    MINIBERT_CHECK(s == "cublaslt" || s == "own", "gemm",
                   "MINIBERT_GEMM_PROVIDER=" << s << ": expected cublaslt or own");
    return s == "own" ? gemm_provider::own : gemm_provider::cublaslt;
  }();
  return p;
}

/// @brief whether the own provider may run its sm_90a kernels (cuda/gemm_wgmma.cuh) where they apply: yes unless
/// MINIBERT_GEMM_WGMMA=0 (read once per process; the pipelined mma.sync kernels take those products then)
/// @throws minibert::error for a value other than 0 or 1
inline bool gemm_wgmma_from_env() {
  static const bool on = [] {
    const char* v = std::getenv("MINIBERT_GEMM_WGMMA");
    const std::string s = v ? v : "1";
    MINIBERT_CHECK(s == "0" || s == "1", "gemm", "MINIBERT_GEMM_WGMMA=" << s << ": expected 0 or 1");
    return s == "1";
  }();
  return on;
}

/// @brief how attention runs: "materialized" (the (B,NH,T,T) probabilities in memory, GEMMs around a softmax kernel,
/// cuda/attention.cuh: every head size and data type), "flash" (cuda/attention_flash.cuh: fused on the tensor cores,
/// nothing of size T x T stored; head sizes 32, 64, 128, half and bfloat16 data or fp32 data under bf16 / fp16 matmul
/// precision, sm_80 and newer) or "cudnn" (cuDNN 9's fused SDPA, cuda/attention_cudnn.hpp: half and bfloat16 data,
/// in programs built with MINIBERT_CUDNN=1). What flash or cuDNN does not take runs materialized either way.
enum class attention_provider { materialized, flash, cudnn };

/// @brief the provider MINIBERT_ATTENTION_PROVIDER names ("materialized", the default, "flash" or "cudnn"), read once
/// @throws minibert::error for another value
inline attention_provider attention_provider_from_env() {
  static const attention_provider p = [] {
    const char* v = std::getenv("MINIBERT_ATTENTION_PROVIDER");
    const std::string s = v ? v : "materialized";
    MINIBERT_CHECK(s == "materialized" || s == "flash" || s == "cudnn", "attention",
                   "MINIBERT_ATTENTION_PROVIDER=" << s << ": expected materialized, flash or cudnn");
    return s == "flash" ? attention_provider::flash
           : s == "cudnn" ? attention_provider::cudnn
                          : attention_provider::materialized;
  }();
  return p;
}

/// @brief A CUDA context: the stream every call is queued on, the cuBLASLt handle and its workspace, and a scratch
/// arena (device memory, valid until the next scratch() call). Handles are opaque here (no CUDA types).
template <> struct context<device::cuda> {
  context();  ///< a new non-blocking stream on the current device, a cuBLASLt handle, a 32 MiB GEMM workspace
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// the precision of matrix products (precision.hpp; autocast<device::cuda>): bf16 / fp16 run cuBLASLt's
  /// CUBLAS_COMPUTE_32F_FAST_16BF / _16F on fp32 data, or the own kernel on operands rounded to them (the fallback
  /// kernel, when neither takes a problem, stays fp32)
  matmul_precision matmul = matmul_precision::fp32;
  /// who runs this context's matrix products (set it per call site, or for the process with MINIBERT_GEMM_PROVIDER)
  gemm_provider gemm = gemm_provider_from_env();
  std::uint64_t own_gemm_launches = 0; ///< products the own kernels ran on this context (tests and benchmarks read it)
  std::uint64_t own_gemm_pipelined_launches = 0; ///< of those, the ones version 2 (gemm_mma.cuh's pipelined) ran
  /// whether the own provider runs 16-bit products on its sm_90a kernels (gemm_wgmma.cuh) on an H100 / H200 with a
  /// build for sm_90a (set it per call site, or for the process with MINIBERT_GEMM_WGMMA=0)
  bool own_gemm_wgmma = gemm_wgmma_from_env();
  int own_gemm_wgmma_width = 0; ///< version 3's block width: 128, 192 or 256 columns, or 0 to pick one per product
  std::uint64_t own_gemm_wgmma_launches = 0; ///< of the own products, the ones version 3 (gemm_wgmma.cuh) ran
  /// who runs this context's attention (set it per call site, or for the process with MINIBERT_ATTENTION_PROVIDER)
  attention_provider attention = attention_provider_from_env();
  std::uint64_t flash_attention_launches = 0; ///< attention forwards the flash kernels ran on this context
  std::uint64_t cudnn_attention_launches = 0; ///< attention forwards cuDNN ran on this context
  void* cudnn = nullptr; ///< the cuDNN provider's state (handle, cached graphs), made on first use
  void* stream = nullptr;          ///< cudaStream_t
  void* blaslt = nullptr;          ///< cublasLtHandle_t
  void* workspace = nullptr;       ///< cuBLASLt workspace (device memory)
  std::size_t workspace_bytes = 0;
  void* staging = nullptr;         ///< pinned host buffer for large uploads and for downloads
  std::size_t staging_bytes = 0;
  /// small uploads (a batch's ids and masks) go through a ring of pinned slots, each reused only after the copy that
  /// last read it completed (its event), so an upload never waits for the kernels queued before it
  static constexpr int upload_slots = 16; // a step makes about 10 small uploads (batch, optimizer plans)
  static constexpr std::size_t upload_slot_bytes = std::size_t(1) << 20;
  void* upload_ring = nullptr;                  ///< upload_slots x upload_slot_bytes of pinned memory
  void* upload_events[upload_slots] = {};       ///< cudaEvent_t per slot
  unsigned upload_next = 0;

  // while this context's stream is being captured into a CUDA graph (cuda/graph.cuh; null / 0 otherwise)
  void* capture = nullptr;                       ///< the capture's state (cuda::capture_state)
  const std::uint64_t* capture_philox = nullptr; ///< device (seed, offset) the captured dropout kernels read at replay
  std::uint64_t capture_seed = 0;                ///< the generator whose draws are captured
  std::uint64_t capture_offset = 0;              ///< its offset when the capture began

  /// @brief n elements of T of device memory, zeroed; valid until the next scratch() call on this context
  template <class T> T* scratch(std::int64_t n) { return static_cast<T*>(scratch_bytes(std::size_t(n) * sizeof(T))); }
  void* scratch_bytes(std::size_t bytes);
  /// @brief exchanges the scratch arena (its block and capacity) with the given one (a capture's; cuda/graph.cuh)
  void swap_scratch(void*& arena, std::size_t& capacity) noexcept;

private:
  void* scratch_ = nullptr;
  std::size_t scratch_capacity_ = 0;
};

template <> context<device::cuda>& default_context<device::cuda>();

/// @brief device memory through the caching allocator (cuda/allocator.cuh): sized bins, blocks reused after free
template <> struct device_memory<device::cuda> {
  static void* allocate(std::size_t bytes);
  static void deallocate(void* p) noexcept;
};

template <> struct backend<device::cuda> {
  using i64 = std::int64_t;
  using ctx_t = context<device::cuda>;
  template <class T> using A = acc_t<T>;

  // memory and copies
  template <class T> static void fill(ctx_t&, T* y, i64 n, T v);
  template <class T> static void copy(ctx_t&, const T* x, T* y, i64 n);
  template <class T> static void upload(ctx_t&, const T* host, T* y, i64 n);
  template <class T> static void download(ctx_t&, const T* x, T* host, i64 n);
  template <class T> static void copy_strided(ctx_t&, const T* x, const shape& sizes, const shape& strides, T* y);
  template <class T> static void copy_into(ctx_t&, const T* x, T* y, const shape& sizes, const shape& strides);
  template <class T> static void cast(ctx_t&, const T* x, A<T>* y, i64 n);
  static void synchronize(ctx_t&);

  // element-wise
  template <class T> static void axpy(ctx_t&, T a, const T* x, T* y, i64 n);
  template <class T> static void scale(ctx_t&, T a, const T* x, T* y, i64 n);
  template <class T>
  static void binary(ctx_t&, binary_op op, const shape& out_shape, const T* a, const shape& as, const T* b,
                     const shape& bs, T* out);
  template <class T> static void sum_to(ctx_t&, const T* g, const shape& gs, T* out, i64 out_numel, const shape& ts);
  template <class T> static void sum_all(ctx_t&, const T* x, i64 n, bool mean, T* out);
  template <class T> static void broadcast_scalar(ctx_t&, const T* s, T divisor, T* y, i64 n);

  // matrix products (cuBLASLt; fp32 accumulation, TF32 allowed for fp32 when MINIBERT_ALLOW_TF32=1)
  template <class T>
  static void gemm(ctx_t&, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a, i64 lda, const T* b, i64 ldb,
                   A<T> beta, T* c, i64 ldc);
  template <class T>
  static void gemm_batched(ctx_t&, bool ta, bool tb, i64 M, i64 N, i64 K, A<T> alpha, const T* a, i64 lda, i64 sa,
                           const T* b, i64 ldb, i64 sb, A<T> beta, T* c, i64 ldc, i64 sc, i64 batch);
  template <class T>
  static void linear_forward(ctx_t&, const T* inp, const T* w, const T* bias, T* out, i64 N, i64 K, i64 C);
  template <class T>
  static void linear_backward(ctx_t&, const T* dout, const T* inp, const T* w, T* dinp, T* dw, T* dbias, i64 N, i64 K,
                              i64 C);
  /// activation_linear's products with act fused into the own GEMM (on the way in, and act' in the epilogue of du);
  /// unfused through a temporary when the own provider does not take them. An optional member: the op uses it where
  /// a backend has it.
  template <class T>
  static void activation_linear_forward(ctx_t&, activation act, const T* u, const T* w, const T* bias, T* out, i64 N,
                                        i64 K, i64 C);
  template <class T>
  static void activation_linear_backward(ctx_t&, activation act, const T* dout, const T* u, const T* w, T* du, T* dw,
                                         T* dbias, i64 N, i64 K, i64 C);

  // activations, normalization, softmax
  template <class T> static void activation_forward(ctx_t&, activation a, const T* x, T* y, i64 n);
  template <class T> static void activation_backward(ctx_t&, activation a, const T* x, const T* dy, T* dx, i64 n);
  template <class T>
  static void layer_norm_forward(ctx_t&, const T* inp, const T* w, const T* b, T* out, A<T>* mean, A<T>* rstd, i64 N,
                                 i64 C, double eps);
  template <class T>
  static void layer_norm_backward(ctx_t&, const T* dout, const T* inp, const T* w, const A<T>* mean, const A<T>* rstd,
                                  T* dinp, T* dw, T* db, i64 N, i64 C);
  template <class T>
  static void softmax_forward(ctx_t&, const T* x, const T* mask, const row_broadcast& rows, T* y, i64 R, i64 L);
  template <class T> static void softmax_backward(ctx_t&, const T* y, const T* dy, T* dx, i64 R, i64 L);
  template <class T> static void additive_mask(ctx_t&, const std::int32_t* mask, T* out, i64 n);

  // embeddings
  template <class T, class I> static void embedding_forward(ctx_t&, const I* ids, const T* w, T* out, i64 N, i64 C);
  template <class T, class I> static void embedding_backward(ctx_t&, const I* ids, const T* dout, T* dw, i64 N, i64 C);

  // losses
  template <class T, class I>
  static void cross_entropy_forward(ctx_t&, const T* logits, const I* targets, T* probs, i64 N, i64 C, i64 ignore,
                                    T* loss, A<T>* count);
  template <class T, class I>
  static void cross_entropy_backward(ctx_t&, const T* probs, const I* targets, const T* dloss, const A<T>* count,
                                     T* dlogits, i64 N, i64 C, i64 ignore);
  template <class T> static void mse_forward(ctx_t&, const T* x, const T* y, i64 n, T* loss);
  template <class T> static void mse_backward(ctx_t&, const T* x, const T* y, const T* dloss, T* dx, i64 n);
  template <class T> static void bce_with_logits_forward(ctx_t&, const T* x, const T* y, i64 n, T* loss);
  template <class T> static void bce_with_logits_backward(ctx_t&, const T* x, const T* y, const T* dloss, T* dx, i64 n);

  // dropout
  template <class T>
  static void dropout_forward(ctx_t&, const T* x, T* y, std::uint8_t* keep, i64 n, float p, std::uint64_t seed,
                              std::uint64_t base);
  template <class T> static void dropout_backward(ctx_t&, const T* dy, const std::uint8_t* keep, T* dx, i64 n, float p);

  // attention: materialized (probs and keep (B,NH,T,T) saved), flash or cudnn (one log-sum-exp per row and the
  // output saved; the dropout mask is regenerated from seed and base), chosen by ctx.attention
  template <class T> struct attention_saved {
    attention_provider provider = attention_provider::materialized; ///< who ran the forward (and runs the backward)
    tensor<T, device::cuda> probs;
    tensor<std::uint8_t, device::cuda> keep;
    tensor<float, device::cuda> lse; ///< (B,NH,T): the fused forward's log-sum-exp of each scaled score row
    tensor<T, device::cuda> out;     ///< (B,T,C): the fused forward's output, for its backward's rowsum(dO * O)
    std::uint64_t seed = 0, base = 0;
    matmul_precision matmul = matmul_precision::fp32; ///< the forward's: the backward rounds fp32 data alike
  };
  template <class T>
  static void attention_forward(ctx_t&, const attention_dims& d, const T* q, const T* k, const T* v, const T* mask,
                                T* out, attention_saved<T>& saved, float p, std::uint64_t seed, std::uint64_t base);
  template <class T>
  static void attention_backward(ctx_t&, const attention_dims& d, const T* dout, const T* q, const T* k, const T* v,
                                 const T* mask, const attention_saved<T>& saved, float p, T* dq, T* dk, T* dv);

  /// @brief packed sequences without padding (FlashAttention's varlen API): sequence b is rows
  /// [cu_seqlens[b], cu_seqlens[b+1]) of q, k, v (row stride ld_qkv), dq, dk, dv (ld_qkv) and out, dout (row stride
  /// C); every key of a sequence counts, no mask. lse is (B,NH,max_seqlen) fp32. The dropout draw is the padded
  /// one's with T = max_seqlen, so a packed batch gives the padded batch's rows bit for bit. Flash kernels only.
  /// Preconditions the device cannot report: no sequence is longer than max_seqlen (rows past it are left
  /// untouched), and the backward runs under the forward's matmul precision (for fp32 data).
  struct varlen_dims {
    const std::int32_t* cu_seqlens; ///< (B+1) device memory, ascending, cu_seqlens[0] = 0
    i64 B, max_seqlen, C, NH, ld_qkv;
  };
  /// @throws minibert::error when the flash kernels cannot take the problem (head size, data type, device)
  template <class T>
  static void attention_varlen_forward(ctx_t&, const varlen_dims& d, const T* q, const T* k, const T* v, T* out,
                                       float* lse, float p, std::uint64_t seed, std::uint64_t base);
  template <class T>
  static void attention_varlen_backward(ctx_t&, const varlen_dims& d, const T* dout, const T* q, const T* k,
                                        const T* v, const T* out, const float* lse, float p, std::uint64_t seed,
                                        std::uint64_t base, T* dq, T* dk, T* dv);

  // optimizer
  template <class T>
  static void adamw_step(ctx_t&, std::span<const adamw_tensor<T>> tensors, const adamw_coefficients<A<T>>& c);
  template <class T>
  static void sum_squares(ctx_t&, std::span<const foreach_tensor<const T>> xs, double* total);
  template <class T>
  static void clip_by_norm(ctx_t&, std::span<const foreach_tensor<T>> xs, const double* total_sq, double max_norm);
  template <class T>
  static void non_finite_check_and_unscale(ctx_t&, std::span<const foreach_tensor<T>> gs, A<T> inv_scale,
                                           A<T>* found_inf);

  // optional: CUDA graphs (cuda/graph.cuh). Between capture_begin and capture_end the work queued on ctx is recorded
  // into a graph instead of run: its allocations come from `pool` (a graph_pool(), shared by graphs that never run
  // at once) and stay reserved for it, its dropout kernels draw from the device pair (seed, offset) at `philox` read
  // at replay, with counters relative to `offset` (generator `seed`'s offset now). capture_end instantiates the
  // graph; when the capture failed (an operation that cannot be captured), it throws and the capture is over.
  // capture_abort ends a capture an exception interrupted. replay queues the graph on ctx. One capture at a time per
  // process; run the captured work eagerly once before (kernel settings, plans and caches are made on first use,
  // which a capture cannot do), and keep alive, for as long as the graph may replay, every tensor allocated before
  // the capture that the captured work uses.
  static std::shared_ptr<void> graph_pool();
  static void capture_begin(ctx_t&, const std::shared_ptr<void>& pool, const std::uint64_t* philox, std::uint64_t seed,
                            std::uint64_t offset);
  static std::shared_ptr<void> capture_end(ctx_t&);
  static void capture_abort(ctx_t&) noexcept;
  static void replay(ctx_t&, const std::shared_ptr<void>& graph);

  // optional: the caching allocator's statistics
  static void empty_cache(ctx_t&);
  static std::int64_t memory_allocated(ctx_t&);
  static std::int64_t max_memory_allocated(ctx_t&);
};

static_assert(backend_for<device::cuda, float> && backend_for<device::cuda, half> &&
                  backend_for<device::cuda, bfloat16>,
              "backend<device::cuda> does not declare the contract of backend.hpp");
static_assert(has_memory_stats<device::cuda>);
static_assert(has_graph_capture<device::cuda>);

} // namespace minibert
