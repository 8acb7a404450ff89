// SPDX-License-Identifier: MIT
// Data-parallel pieces that one process can check: the DistributedSampler shards against live torch, the launcher's
// environment, the grad-ready hook of autograd, and gradient_reducer's buckets, overlap and no_sync through a
// communicator that stands in for a second rank holding the same gradients. The multi-process tests are
// test_distributed_mpi.cpp (mpirun -np 2) and tests/distributed/*.sh.
#include <cstdlib>    // setenv, unsetenv, system
#include <filesystem> // path
#include <fstream>    // ifstream
#include <numeric>    // accumulate
#include <string>     // string
#include <thread>     // thread
#include <vector>     // vector

#include <unistd.h> // getpid

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <minibert/bert.hpp>
#include <minibert/distributed/communicator.hpp>
#include <minibert/distributed/ddp.hpp>
#include <minibert/distributed/sampler.hpp>
#include <minibert/distributed/tcp_rendezvous.hpp>
#if defined(MINIBERT_TEST_CUDA)
#include <minibert/cuda/backend.hpp>
#endif
#if defined(MINIBERT_WITH_NCCL)
#include <minibert/distributed/nccl.hpp>
#endif

namespace test_distributed { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;
namespace dist = minibert::distributed;

namespace {

// a world of `size` ranks in which every other rank holds exactly this rank's buffers: a sum all-reduce multiplies by
// the world size. Records each collective, in order.
class mirror_communicator final : public dist::communicator {
public:
  explicit mirror_communicator(int size) : size_(size) {}
  int rank() const override { return 0; }
  int world_size() const override { return size_; }
  int local_rank() const override { return 0; }
  std::string name() const override { return "mirror"; }
  dist::memory_space memory() const override { return dist::memory_space::host; }
  dist::work all_reduce_sum_async(void* data, std::size_t count, dist::element_type type, std::string what) override {
    REQUIRE(type == dist::element_type::f32);
    float* x = static_cast<float*>(data);
    for (std::size_t i = 0; i < count; ++i) x[i] *= float(size_);
    log.push_back(what);
    return dist::work::completed();
  }
  void broadcast(void*, std::size_t bytes, int root) override { log.push_back("broadcast " + std::to_string(bytes)); }
  void barrier() override { log.push_back("barrier"); }
  [[noreturn]] void abort(int code) override { FAIL("abort(" << code << ")"); std::abort(); }
  std::vector<std::string> log;

private:
  int size_;
};

using env_vars = std::vector<std::pair<std::string, std::string>>;

// sets `vars` (and clears every other launcher variable) for its lifetime
struct scoped_env {
  explicit scoped_env(env_vars vars) : vars_(std::move(vars)) {
    for (const char* k : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                          "MASTER_ADDR", "MASTER_PORT"})
      unsetenv(k);
    for (auto& [k, v] : vars_) setenv(k.c_str(), v.c_str(), 1);
  }
  ~scoped_env() {
    for (auto& [k, v] : vars_) unsetenv(k.c_str());
  }
  env_vars vars_;
};

std::string thrown_by(auto&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

bert_config tiny_config() {
  bert_config c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 16;
  c.hidden_dropout_prob = 0;
  c.attention_probs_dropout_prob = 0;
  c.id2label = {"a", "b", "c"};
  return c;
}

bert_inputs<device::cpu> tiny_inputs() {
  std::vector<std::int32_t> ids = {2, 5, 7, 9, 3, 0, 2, 11, 13, 17, 19, 3};
  std::vector<std::int32_t> mask = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1};
  std::vector<std::int32_t> types(12, 0);
  return {tensor<std::int32_t>::from(ids, {2, 6}), tensor<std::int32_t>::from(mask, {2, 6}),
          tensor<std::int32_t>::from(types, {2, 6}), default_position_ids<device::cpu>(2, 6)};
}

// one forward and backward of the tiny model on fixed inputs, with the reducer's hooks armed for `sync`
void backward_once(bert_for_sequence_classification<float>& m, dist::gradient_reducer<float, device::cpu>* r, bool sync) {
  generator gen(1);
  if (r) r->prepare_backward(sync);
  const auto labels = tensor<std::int32_t>::from({0, 2}, {2});
  m.loss(m.forward(tiny_inputs(), gen), labels).backward();
}

std::vector<std::vector<float>> gradients(const bert_for_sequence_classification<float>& m) {
  std::vector<std::vector<float>> g;
  for (const auto& p : m.parameters()) {
    const tensor<float> c = contiguous(p.grad());
    g.emplace_back(c.data(), c.data() + c.numel());
  }
  return g;
}

} // namespace

TEST_CASE("distributed_sampler_indices shards exactly as torch's DistributedSampler") {
  const fs::path out = fs::path(MINIBERT_TEST_BINARY_DIR) / "distributed_sampler_ref.json";
  const std::string cmd = std::string(MINIBERT_TEST_PYTHON) + " " + MINIBERT_TEST_SOURCE_DIR +
                          "/python/distributed_sampler_reference.py > " + out.string();
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
  std::ifstream in(out);
  const nlohmann::json cases = nlohmann::json::parse(in);
  REQUIRE(cases.size() >= 8);
  for (const auto& c : cases) {
    const int world = c["world_size"].get<int>();
    for (int r = 0; r < world; ++r) {
      const auto got = dist::distributed_sampler_indices(c["n"].get<std::size_t>(), {r, world}, c["shuffle"].get<bool>(),
                                                         c["seed"].get<std::uint64_t>(), c["epoch"].get<std::int64_t>());
      CHECK_MESSAGE(nlohmann::json(got) == c["shards"][r], c.dump().substr(0, 80) << " rank " << r);
    }
  }
}

TEST_CASE("distributed_sampler_indices: shards are disjoint, cover the data and one rank keeps the epoch order") {
  const std::size_t n = 103;
  std::vector<int> seen(n, 0);
  for (int r = 0; r < 4; ++r)
    for (std::size_t i : dist::distributed_sampler_indices(n, {r, 4}, true, 42, 1)) ++seen[i];
  for (std::size_t i = 0; i < n; ++i) CHECK(seen[i] >= 1); // 104 slots: one row twice (the padding)
  CHECK(std::accumulate(seen.begin(), seen.end(), 0) == 104);
  CHECK(thrown_by([] { dist::distributed_sampler_indices(10, {2, 2}, true, 0, 0); }).find("rank 2 of world size 2") !=
        std::string::npos);
}

TEST_CASE("launch_env reads mpirun's and torchrun's variables and names a malformed one") {
  {
    scoped_env e(env_vars{});
    const auto env = dist::launch_env::detect();
    CHECK(env.world_size == 1);
    CHECK(env.launcher == "none");
  }
  {
    scoped_env e(env_vars{{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                  {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
    const auto env = dist::launch_env::detect();
    CHECK(env.launcher == "mpirun");
    CHECK(env.rank == 3);
    CHECK(env.world_size == 4);
    CHECK(env.local_rank == 1);
  }
  {
    scoped_env e(env_vars{{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "10.0.0.1"},
                  {"MASTER_PORT", "29500"}});
    const auto env = dist::launch_env::detect();
    CHECK(env.launcher == "torchrun");
    CHECK(env.rank == 1);
    CHECK(env.master_addr == "10.0.0.1");
    CHECK(env.master_port == 29500);
  }
  {
    scoped_env e(env_vars{{"WORLD_SIZE", "2"}, {"RANK", "1"}});
    CHECK(thrown_by([] { dist::launch_env::detect(); }).find("MASTER_ADDR") != std::string::npos);
  }
  {
    scoped_env e(env_vars{{"OMPI_COMM_WORLD_SIZE", "two"}});
    CHECK(thrown_by([] { dist::launch_env::detect(); }).find("OMPI_COMM_WORLD_SIZE='two'") != std::string::npos);
  }
  {
    scoped_env e(env_vars{{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}});
    CHECK(thrown_by([] { dist::launch_env::detect(); }).find("rank 2 is not below the world size 2") != std::string::npos);
  }
}

TEST_CASE("grad-ready hooks fire once per backward, when the leaf's gradient is complete") {
  variable<float> w(tensor<float>::from({1.f, 2.f, 3.f}, {3}), true);
  variable<float> unused(tensor<float>::from({1.f}, {1}), true);
  std::vector<float> at_hook;
  int unused_calls = 0;
  w.set_grad_ready_hook([&] { at_hook.assign(w.grad().data(), w.grad().data() + 3); });
  unused.set_grad_ready_hook([&] { ++unused_calls; });
  // w feeds the loss through three paths: its gradient is only complete after the last of them
  const auto y = add(mul(w, w), scale(w, 2.f));
  sum(add(y, w)).backward();
  REQUIRE(at_hook.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(at_hook[std::size_t(i)] == doctest::Approx(2 * (i + 1) + 2 + 1)); // d/dw (w^2 + 2w + w)
    CHECK(at_hook[std::size_t(i)] == w.grad().data()[i]);
  }
  CHECK(unused_calls == 0); // the backward pass never reached it
  CHECK(thrown_by([&] { variable<float>(y.node_ptr()).set_grad_ready_hook([] {}); }).find("leaves") !=
        std::string::npos);
}

TEST_CASE("gradient_reducer: buckets start during the backward pass, in order, and leave the average") {
  const bert_config cfg = tiny_config();
  bert_for_sequence_classification<float> m(cfg), reference(cfg);
  generator g1(3), g2(3);
  m.init_weights(g1);
  reference.init_weights(g2);
  backward_once(reference, nullptr, true);
  const auto want = gradients(reference);

  mirror_communicator comm(2);
  dist::gradient_reducer<float, device::cpu> r(m.parameters(), comm, {2048, 8192}); // several small buckets
  REQUIRE(r.num_buckets() > 3);
  backward_once(m, &r, true);
  CHECK(r.launched_during_backward() == 0); // finish() not yet called: counted there
  const std::size_t started = comm.log.size();
  CHECK(started >= r.num_buckets() - 1); // all but possibly the last (the embeddings') started by hooks
  r.finish();
  CHECK(r.launched_during_backward() == started);
  REQUIRE(comm.log.size() == r.num_buckets());
  for (std::size_t b = 0; b < comm.log.size(); ++b)
    CHECK(comm.log[b].find("bucket " + std::to_string(b) + " ") != std::string::npos);
  CHECK(gradients(m) == want); // (g + g) / 2 == g exactly
}

TEST_CASE("gradient_reducer: accumulating micro-batches (no_sync) communicate nothing until the last") {
  const bert_config cfg = tiny_config();
  bert_for_sequence_classification<float> m(cfg), reference(cfg);
  generator g1(5), g2(5);
  m.init_weights(g1);
  reference.init_weights(g2);
  backward_once(reference, nullptr, true);
  backward_once(reference, nullptr, true);
  const auto want = gradients(reference);

  mirror_communicator comm(4);
  dist::gradient_reducer<float, device::cpu> r(m.parameters(), comm);
  backward_once(m, &r, false);
  CHECK(comm.log.empty());
  backward_once(m, &r, true);
  r.finish();
  CHECK(comm.log.size() == r.num_buckets());
  CHECK(gradients(m) == want); // 4 g / 4 == g exactly
}

TEST_CASE("gradient_reducer: broadcast_parameters sends every parameter from rank 0, bucket by bucket") {
  bert_for_sequence_classification<float> m(tiny_config());
  mirror_communicator comm(2);
  dist::gradient_reducer<float, device::cpu> r(m.parameters(), comm, {4096, 4096});
  r.broadcast_parameters();
  std::size_t bytes = 0;
  for (const auto& e : comm.log) {
    REQUIRE(e.rfind("broadcast ", 0) == 0);
    bytes += std::stoul(e.substr(10));
  }
  CHECK(comm.log.size() == r.num_buckets());
  CHECK(bytes == std::size_t(m.num_parameters()) * sizeof(float));
}

TEST_CASE("rendezvous_broadcast: rank 0 hands its bytes to the others over TCP; an absent rank 0 is a timeout naming "
          "the address") {
  dist::launch_env env;
  env.launcher = "torchrun";
  env.world_size = 3;
  env.master_addr = "127.0.0.1";
  env.master_port = 20000 + int(getpid() % 20000);
  const std::vector<unsigned char> blob = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<unsigned char> got1, got2;
  std::thread r1([&] {
    dist::launch_env e = env;
    e.rank = 1;
    got1 = dist::rendezvous_broadcast(e, {}, blob.size(), std::chrono::seconds(20));
  });
  std::thread r2([&] {
    dist::launch_env e = env;
    e.rank = 2;
    got2 = dist::rendezvous_broadcast(e, {}, blob.size(), std::chrono::seconds(20));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300)); // the others retry until rank 0 listens
  CHECK(dist::rendezvous_broadcast(env, blob, blob.size(), std::chrono::seconds(20)) == blob);
  r1.join();
  r2.join();
  CHECK(got1 == blob);
  CHECK(got2 == blob);

  dist::launch_env lonely = env;
  lonely.rank = 1;
  lonely.master_port = env.master_port + 1; // nobody listens there
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = thrown_by([&] { dist::rendezvous_broadcast(lonely, {}, 8, std::chrono::seconds(1)); });
  CHECK(e.find("could not reach rank 0 at 127.0.0.1:" + std::to_string(lonely.master_port)) != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

#if defined(MINIBERT_TEST_CUDA) && defined(MINIBERT_WITH_NCCL)
TEST_CASE("nccl_communicator: one rank on the GPU averages the tiny model's gradients as the CPU computes them") {
  if (!cuda_available()) {
    MESSAGE("[minibert-skip] no CUDA device: the NCCL communicator is compiled, not run");
    return;
  }
  dist::launch_env env; // a world of one: NCCL still runs its all-reduce kernels on the device
  env.launcher = "torchrun";
  env.master_addr = "127.0.0.1";
  env.master_port = 20000 + int(getpid() % 20000);
  const auto comm = dist::make_nccl_communicator(env, nullptr);
  const bert_config cfg = tiny_config();
  bert_for_sequence_classification<float> cpu(cfg);
  generator g(9);
  cpu.init_weights(g);
  backward_once(cpu, nullptr, true);
  bert_for_sequence_classification<float, device::cuda> gpu(cfg);
  const auto src = cpu.parameters();
  auto dst = gpu.parameters();
  for (std::size_t i = 0; i < src.size(); ++i) {
    const tensor<float, device::cuda> up = to_device<device::cuda>(src[i].value());
    backend<device::cuda>::copy(current_context<device::cuda>(), up.data(), dst[i].mutable_value().data(), up.numel());
  }
  dist::gradient_reducer<float, device::cuda> r(gpu.parameters(), *comm, {2048, 8192});
  generator gen(1);
  r.prepare_backward(true);
  const auto labels = to_device<device::cuda>(tensor<std::int32_t>::from({0, 2}, {2}));
  const auto in = tiny_inputs();
  const bert_inputs<device::cuda> gin{to_device<device::cuda>(in.input_ids), to_device<device::cuda>(in.attention_mask),
                                      to_device<device::cuda>(in.token_type_ids), to_device<device::cuda>(in.position_ids)};
  gpu.loss(gpu.forward(gin, gen), labels).backward();
  r.finish();
  const auto want = gradients(cpu);
  for (std::size_t i = 0; i < dst.size(); ++i) {
    const tensor<float> got = to_host(contiguous(dst[i].grad()));
    for (std::int64_t k = 0; k < got.numel(); ++k)
      REQUIRE(got.data()[k] == doctest::Approx(want[i][std::size_t(k)]).epsilon(1e-4).scale(1e-6));
  }
}
#endif

} // namespace test_distributed
