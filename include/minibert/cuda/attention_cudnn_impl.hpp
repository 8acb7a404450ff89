// SPDX-License-Identifier: MIT
#pragma once
/* Definitions of cuda/attention_cudnn.hpp: cuDNN's SDPA forward and backward graphs (cudnn_frontend's sdpa and
   sdpa_backward nodes), one pair per problem, built on first use and cached per context with the cuDNN handle.
   Plain C++ (no kernels): include it from exactly one .cpp file of a program, compiled with MINIBERT_CUDNN=1 and
   linked with libcudnn and libnvrtc (the frontend's own engines use it), with cudnn_frontend's headers on the include
   path (scripts/install_deps.sh installs them; CMake's MINIBERT_CUDNN_ATTENTION does this for minibert's programs). */

#if !defined(MINIBERT_CUDNN)
#error "minibert/cuda/attention_cudnn_impl.hpp needs MINIBERT_CUDNN=1, cuDNN and cudnn_frontend"
#endif

#include <cmath>   // sqrt
#include <cstdint> // int64_t
#include <memory>  // shared_ptr, make_shared, unique_ptr
#include <sstream> // ostringstream
#include <string>  // string
#include <unordered_map>
#include <utility> // move
#include <vector>  // vector

#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <cudnn_frontend.h>

#include <minibert/cuda/attention_cudnn.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/error.hpp>

namespace minibert::cuda::cudnn_sdpa {

namespace fe = cudnn_frontend;

namespace detail {

// variant-pack uids of the graphs' tensors
enum uid : std::int64_t { Q = 1, K, V, O, STATS, BIAS, SEQ_Q, SEQ_KV, SEED, OFFSET, DO, DQ, DK, DV };

inline std::string describe(const problem& pr) {
  std::ostringstream s;
  s << "B " << pr.B << ", T " << pr.T << ", NH " << pr.NH << ", head size " << pr.HS << ", ld " << pr.ld << ", "
    << dtype_name(pr.data) << (pr.masked ? ", masked" : "") << ", dropout " << pr.p;
  return s.str();
}

struct problem_hash {
  std::size_t operator()(const problem& p) const noexcept {
    std::size_t h = 0;
    for (std::int64_t v : {p.B, p.T, p.NH, p.HS, p.ld, std::int64_t(p.data), std::int64_t(p.masked)})
      h = h * 1000003u ^ std::hash<std::int64_t>()(v);
    return h ^ std::hash<float>()(p.p);
  }
};

struct graphs {
  std::shared_ptr<fe::graph::Graph> forward, backward; ///< null when cuDNN declined the problem
  std::string why;                                      ///< cuDNN's message when it declined
};

/// what a context holds: its cuDNN handle, the graphs per problem, two int64 (seed, offset) of device memory
struct state {
  cudnnHandle_t handle = nullptr;
  std::unordered_map<problem, graphs, problem_hash> cache;
  std::int64_t* philox = nullptr; // device: seed, offset
  ~state() {
    cache.clear(); // the graphs' plans before the handle they were built on
    if (philox) device_memory<device::cuda>::deallocate(philox);
    if (handle) (void)cudnnDestroy(handle);
  }
};

inline state& state_of(context<device::cuda>& ctx) {
  if (!ctx.cudnn) {
    auto s = std::make_unique<state>();
    const cudnnStatus_t st = cudnnCreate(&s->handle);
    MINIBERT_CHECK(st == CUDNN_STATUS_SUCCESS, "attention (cudnn)", "cudnnCreate: " << cudnnGetErrorString(st));
    s->philox = static_cast<std::int64_t*>(device_memory<device::cuda>::allocate(2 * sizeof(std::int64_t)));
    ctx.cudnn = s.release();
  }
  state& s = *static_cast<state*>(ctx.cudnn);
  (void)cudnnSetStream(s.handle, static_cast<cudaStream_t>(ctx.stream));
  return s;
}

inline fe::DataType_t io_type(dtype t) { return t == dtype::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF; }

/// (B,NH,T,HS) dims of a (B,T,·) buffer with row stride ld, head h at column h*HS
inline std::shared_ptr<fe::graph::Tensor_attributes> heads(fe::graph::Graph& g, const problem& pr, const char* name,
                                                            std::int64_t id, std::int64_t ld) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(id)
                      .set_dim({pr.B, pr.NH, pr.T, pr.HS})
                      .set_stride({pr.T * ld, pr.HS, ld, 1}));
}
inline void set_heads(fe::graph::Tensor_attributes& t, const problem& pr, std::int64_t id, std::int64_t ld) {
  t.set_output(true).set_uid(id).set_dim({pr.B, pr.NH, pr.T, pr.HS}).set_stride({pr.T * ld, pr.HS, ld, 1});
}
inline std::shared_ptr<fe::graph::Tensor_attributes> stats(fe::graph::Graph& g, const problem& pr) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name("stats")
                      .set_uid(STATS)
                      .set_dim({pr.B, pr.NH, pr.T, 1})
                      .set_stride({pr.NH * pr.T, pr.T, 1, 1})
                      .set_data_type(fe::DataType_t::FLOAT));
}

/// the inputs both graphs share (bias, key lengths, dropout), set on forward or backward attributes alike
template <class Attributes> void common_inputs(fe::graph::Graph& g, const problem& pr, Attributes& a) {
  a.set_attn_scale(1.0f / std::sqrt(float(pr.HS)));
  if (pr.masked) {
    // the (B,T) additive mask, broadcast over heads and query rows (size-1 dims)
    const std::int64_t ldm = bias_stride(pr.T);
    a.set_bias(g.tensor(fe::graph::Tensor_attributes()
                            .set_name("bias")
                            .set_uid(BIAS)
                            .set_dim({pr.B, 1, 1, pr.T})
                            .set_stride({ldm, ldm, ldm, 1})));
    auto lengths = [&](const char* name, std::int64_t id) {
      return g.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(id)
                          .set_dim({pr.B, 1, 1, 1})
                          .set_stride({1, 1, 1, 1})
                          .set_data_type(fe::DataType_t::INT32));
    };
    a.set_padding_mask(true).set_seq_len_q(lengths("seq_q", SEQ_Q)).set_seq_len_kv(lengths("seq_kv", SEQ_KV));
  }
  if (pr.p > 0.0f) {
    auto scalar = [&](const char* name, std::int64_t id) {
      return g.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(id)
                          .set_dim({1, 1, 1, 1})
                          .set_stride({1, 1, 1, 1})
                          .set_data_type(fe::DataType_t::INT64));
    };
    a.set_dropout(pr.p, scalar("seed", SEED), scalar("offset", OFFSET));
  }
}

inline std::shared_ptr<fe::graph::Graph> new_graph(const problem& pr) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(io_type(pr.data))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

inline std::shared_ptr<fe::graph::Graph> forward_graph(const problem& pr) {
  auto g = new_graph(pr);
  auto a = fe::graph::SDPA_attributes().set_name("minibert_sdpa").set_generate_stats(true);
  common_inputs(*g, pr, a);
  auto [o, st] = g->sdpa(heads(*g, pr, "q", Q, pr.ld), heads(*g, pr, "k", K, pr.ld), heads(*g, pr, "v", V, pr.ld), a);
  set_heads(*o, pr, O, pr.NH * pr.HS);
  st->set_output(true).set_uid(STATS).set_data_type(fe::DataType_t::FLOAT);
  return g;
}

inline std::shared_ptr<fe::graph::Graph> backward_graph(const problem& pr) {
  auto g = new_graph(pr);
  auto a = fe::graph::SDPA_backward_attributes().set_name("minibert_sdpa_backward");
  common_inputs(*g, pr, a);
  auto [dq, dk, dv] = g->sdpa_backward(heads(*g, pr, "q", Q, pr.ld), heads(*g, pr, "k", K, pr.ld),
                                       heads(*g, pr, "v", V, pr.ld), heads(*g, pr, "o", O, pr.NH * pr.HS),
                                       heads(*g, pr, "do", DO, pr.NH * pr.HS), stats(*g, pr), a);
  set_heads(*dq, pr, DQ, pr.ld);
  set_heads(*dk, pr, DK, pr.ld);
  set_heads(*dv, pr, DV, pr.ld);
  return g;
}

inline constexpr std::size_t max_cached_problems = 64;

/// the graphs of a problem, built on first use (validate, operation graph, heuristics' plans, support check)
inline const graphs& graphs_for(state& s, const problem& pr) {
  auto it = s.cache.find(pr);
  if (it != s.cache.end()) return it->second;
  if (s.cache.size() >= max_cached_problems) s.cache.clear(); // batches padded to ever new lengths: bounded
  graphs gs;
  auto build = [&](std::shared_ptr<fe::graph::Graph> g, const char* which) -> std::shared_ptr<fe::graph::Graph> {
    if (!gs.why.empty()) return nullptr;
    fe::error_t e = g->build(s.handle, {fe::HeurMode_t::A});
    if (e.is_good()) return g;
    gs.why = std::string(which) + ": " + e.get_message();
    return nullptr;
  };
  gs.forward = build(forward_graph(pr), "forward");
  gs.backward = build(backward_graph(pr), "backward");
  if (!gs.forward || !gs.backward) gs.forward = gs.backward = nullptr;
  return s.cache.emplace(pr, std::move(gs)).first->second;
}

/// runs a built graph with the variant pack, a workspace from the caching allocator and the Philox pair
inline void execute(context<device::cuda>& ctx, state& s, const problem& pr, fe::graph::Graph& g,
                    std::unordered_map<std::int64_t, void*>& pack, std::uint64_t seed, std::uint64_t base,
                    const char* which) {
  if (pr.p > 0.0f) {
    // a captured graph would replay this step's pair (and read a dead host buffer): cuda/philox.cuh's device pair is
    // not wired into cuDNN's dropout, so a capture fails here and its step runs eagerly (step_graphs.hpp)
    MINIBERT_CHECK(!ctx.capture, "attention (cudnn)", "dropout cannot be captured into a CUDA graph with this provider");
    // pageable source: the copy has read it when cudaMemcpyAsync returns; the graph reads it in stream order
    const std::int64_t host[2] = {std::int64_t(seed), std::int64_t(base)};
    const cudaError_t e = cudaMemcpyAsync(s.philox, host, sizeof host, cudaMemcpyHostToDevice,
                                          static_cast<cudaStream_t>(ctx.stream));
    MINIBERT_CHECK(e == cudaSuccess, "attention (cudnn)", "seed upload: " << cudaGetErrorString(e));
    pack[SEED] = s.philox;
    pack[OFFSET] = s.philox + 1;
  }
  std::int64_t bytes = 0;
  MINIBERT_CHECK(g.get_workspace_size(bytes).is_good(), "attention (cudnn)", which << " workspace size");
  // the block goes back to the allocator right after the graph is queued: its next user runs after it (one stream)
  void* workspace = bytes > 0 ? device_memory<device::cuda>::allocate(std::size_t(bytes)) : nullptr;
  fe::error_t e = g.execute(s.handle, pack, workspace);
  device_memory<device::cuda>::deallocate(workspace);
  MINIBERT_CHECK(e.is_good(), "attention (cudnn)", which << " for " << describe(pr) << ": " << e.get_message());
}

inline void add_mask(const problem& pr, const tensors& t, std::unordered_map<std::int64_t, void*>& pack) {
  if (!pr.masked) return;
  pack[BIAS] = const_cast<void*>(t.bias);
  pack[SEQ_Q] = const_cast<std::int32_t*>(t.seq_len_q);
  pack[SEQ_KV] = const_cast<std::int32_t*>(t.seq_len_kv);
}

} // namespace detail

bool supports(context<device::cuda>& ctx, const problem& pr) {
  if (pr.data != dtype::f16 && pr.data != dtype::bf16) return false;
  try {
    return detail::graphs_for(detail::state_of(ctx), pr).forward != nullptr;
  } catch (const error&) { // no usable cuDNN or device: the other providers run
    return false;
  }
}

void forward(context<device::cuda>& ctx, const problem& pr, const tensors& t, std::uint64_t seed,
             std::uint64_t base) {
  detail::state& s = detail::state_of(ctx);
  const detail::graphs& gs = detail::graphs_for(s, pr);
  MINIBERT_CHECK(gs.forward, "attention (cudnn)", detail::describe(pr) << ": cuDNN declined it (" << gs.why << ")");
  std::unordered_map<std::int64_t, void*> pack = {{detail::Q, const_cast<void*>(t.q)},
                                                  {detail::K, const_cast<void*>(t.k)},
                                                  {detail::V, const_cast<void*>(t.v)},
                                                  {detail::O, t.out},
                                                  {detail::STATS, t.stats}};
  detail::add_mask(pr, t, pack);
  detail::execute(ctx, s, pr, *gs.forward, pack, seed, base, "forward");
}

void backward(context<device::cuda>& ctx, const problem& pr, const tensors& t, std::uint64_t seed,
              std::uint64_t base) {
  detail::state& s = detail::state_of(ctx);
  const detail::graphs& gs = detail::graphs_for(s, pr);
  MINIBERT_CHECK(gs.backward, "attention (cudnn)", detail::describe(pr) << ": cuDNN declined it (" << gs.why << ")");
  std::unordered_map<std::int64_t, void*> pack = {{detail::Q, const_cast<void*>(t.q)},
                                                  {detail::K, const_cast<void*>(t.k)},
                                                  {detail::V, const_cast<void*>(t.v)},
                                                  {detail::O, const_cast<void*>(t.saved_out)},
                                                  {detail::DO, const_cast<void*>(t.dout)},
                                                  {detail::STATS, t.stats},
                                                  {detail::DQ, t.dq},
                                                  {detail::DK, t.dk},
                                                  {detail::DV, t.dv}};
  detail::add_mask(pr, t, pack);
  detail::execute(ctx, s, pr, *gs.backward, pack, seed, base, "backward");
}

void release(void* state) noexcept { delete static_cast<detail::state*>(state); }

} // namespace minibert::cuda::cudnn_sdpa
