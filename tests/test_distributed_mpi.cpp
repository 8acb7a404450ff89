// SPDX-License-Identifier: MIT
// Data-parallel training across processes, run as `mpirun -np 2 test_distributed_mpi` (CTest does; also across two
// network namespaces by tests/distributed/two_hosts.sh). Every rank runs every case in the same order; rank 0 also
// trains the single-process references. One thread per rank. Dropout is off so that one process with the doubled
// batch sees the same computation; what still differs is the order of summation (each rank's mean over its half,
// then the mean of the ranks, against one mean over the whole batch; padding to each half's longest row), so losses
// and gradient norms agree to a relative 1e-5 and weights to an absolute 2e-6 after 10 AdamW steps at lr 1e-3
// (measured: about 1e-7 and 2e-7).
#include <algorithm>  // max
#include <cmath>      // fabs
#include <cstring>    // memcmp
#include <filesystem> // path
#include <sstream>    // ostringstream
#include <string>     // string
#include <vector>     // vector

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <minibert/bert.hpp>
#include <minibert/distributed/mpi.hpp>
#include <minibert/training/trainer.hpp>

#include "tiny_training_fixtures.hpp"

namespace test_distributed_mpi { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

constexpr std::chrono::seconds collective_timeout{60};

distributed::mpi_communicator& world() {
  static distributed::mpi_communicator w; // MPI_Finalize at exit
  // a check that fails on one rank ends the other's wait in a collective instead of hanging
  static const bool timeout_set = (w.set_timeout(collective_timeout), true);
  (void)timeout_set;
  return w;
}

// the same scratch directory on every rank (rank 0 makes it empty)
fs::path scratch(const std::string& name) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "distributed_mpi" / name;
  if (world().rank() == 0) {
    fs::remove_all(d);
    fs::create_directories(d);
  }
  world().barrier();
  return d;
}

struct fixture {
  fs::path dir = scratch("data");
  tokenizer tok = tokenizer::from_pretrained(fs::path(MINIBERT_TEST_SHARED_DIR) / "data/bert-base-uncased");
  dataset train, eval;
  bert_config cfg;
  fixture() {
    if (world().rank() == 0) {
      test::sst2_slice(dir, "train.tsv", "train.tsv", 96);
      test::sst2_slice(dir, "eval.tsv", "dev.tsv", 37);
      test::tiny_config(dir);
    }
    world().barrier();
    train = read_dataset((dir / "train.tsv").string(), {});
    read_options o;
    o.label_names = train.label_names;
    eval = read_dataset((dir / "eval.tsv").string(), o);
    cfg = bert_config::from_file(dir / "tiny_config.json");
    cfg.id2label = train.label_names;
    cfg.hidden_dropout_prob = 0;
    cfg.attention_probs_dropout_prob = 0;
  }
};

training_args base_args(const fs::path& out) {
  training_args a;
  a.output_dir = out.string();
  a.max_steps = 10;
  a.learning_rate = 1e-3;
  a.warmup_steps = 2;
  a.weight_decay = 0.01;
  a.logging_steps = 1;
  a.eval_strategy = interval_strategy::no;
  a.save_strategy = interval_strategy::no;
  a.threads = 1;
  a.ddp_bucket_cap_mb = 0.05; // several buckets even for the tiny model
  a.ddp_timeout = collective_timeout.count();
  return a;
}

struct run {
  nlohmann::json metrics, history;
  std::string log;
  std::vector<float> weights;
};

run train_once(const fixture& f, const training_args& a, distributed::communicator* comm) {
  bert_for_sequence_classification<float> model(f.cfg);
  generator init(a.seed);
  model.init_weights(init);
  std::ostringstream log;
  trainer<float> t(model, f.tok, a, log, comm);
  run r;
  r.metrics = t.train(f.train, nullptr);
  r.history = t.log_history();
  r.log = log.str();
  for (const auto& p : model.parameters()) {
    const tensor<float> v = contiguous(p.value());
    r.weights.insert(r.weights.end(), v.data(), v.data() + v.numel());
  }
  return r;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// rank 0's weights on every rank: each rank checks that it holds exactly the same
void check_ranks_hold_the_same_weights(const std::vector<float>& mine) {
  std::vector<float> root = mine;
  world().broadcast(root.data(), root.size() * sizeof(float), 0);
  CHECK_MESSAGE(std::memcmp(root.data(), mine.data(), mine.size() * sizeof(float)) == 0,
                "rank " << world().rank() << " ended with weights that differ from rank 0's");
}

// `ddp` (per-rank batch, world_size ranks) against `single` (one process, the whole batch): the logged grad norms
// step by step, the mean training loss and the final weights
void check_same_training(const run& ddp, const run& single) {
  REQUIRE(ddp.history.size() == single.history.size());
  int steps = 0;
  for (std::size_t i = 0; i < ddp.history.size(); ++i) {
    if (!ddp.history[i].contains("grad_norm")) continue;
    ++steps;
    const double a = ddp.history[i]["grad_norm"], b = single.history[i]["grad_norm"];
    CHECK_MESSAGE(std::fabs(a - b) <= 1e-5 * std::fabs(b), "step " << ddp.history[i]["step"] << ": grad norm " << a
                                                                    << " with 2 processes, " << b << " with one");
    CHECK(ddp.history[i]["learning_rate"] == single.history[i]["learning_rate"]);
  }
  CHECK(steps == 10);
  const double la = ddp.metrics["train_loss"], lb = single.metrics["train_loss"];
  CHECK_MESSAGE(std::fabs(la - lb) <= 1e-5 * std::fabs(lb), "train_loss " << la << " vs " << lb);
  CHECK_MESSAGE(ddp.log.find("Gradient all-reduce (") != std::string::npos, ddp.log); // how much was hidden
  const double dw = max_abs_diff(ddp.weights, single.weights);
  MESSAGE("max |weight difference| after 10 steps: " << dw);
  CHECK(dw <= 5e-7); // the summation order differs; one step with a wrong gradient moves weights by ~1e-3
}

} // namespace

// 2 ranks x `batch` rows x `accum` micro-batches against one process with the whole batch of 8
void check_against_one_process(const std::string& name, std::int64_t batch, std::int64_t accum) {
  const fixture f;
  const fs::path out = scratch(name);
  run single;
  if (world().rank() == 0) {
    training_args a = base_args(out / "single");
    a.batch_size = 8;
    single = train_once(f, a, nullptr);
  }
  training_args a = base_args(out / "ddp");
  a.batch_size = batch;
  a.gradient_accumulation_steps = accum;
  const run ddp = train_once(f, a, &world());
  check_ranks_hold_the_same_weights(ddp.weights);
  if (world().rank() == 0) check_same_training(ddp, single);
}

TEST_CASE("two processes with batch 4 train as one process with batch 8") {
  REQUIRE(world().world_size() == 2);
  check_against_one_process("doubled_batch", 4, 1);
}

TEST_CASE("gradient accumulation across processes: 2 ranks x 2 micro-batches of 2 train as one batch of 8") {
  check_against_one_process("accumulation", 2, 2);
}

TEST_CASE("sharded evaluation gives every rank exactly the single-process metrics and logits") {
  const fixture f;
  bert_for_sequence_classification<float> model(f.cfg);
  generator init(7);
  model.init_weights(init);
  training_args a = base_args(scratch("evaluation"));
  a.eval_batch_size = 4; // 37 rows: 10 batches, the last one short; rank 0 takes 5, rank 1 takes 5
  std::ostringstream log;
  trainer<float> alone(model, f.tok, a, log, nullptr);
  trainer<float> sharded(model, f.tok, a, log, &world());
  const prediction_output want = alone.evaluate(f.eval, "eval"), got = sharded.evaluate(f.eval, "eval");
  CHECK(got.logits == want.logits);
  CHECK(got.predictions == want.predictions);
  for (const char* k : {"eval_loss", "eval_accuracy", "eval_f1", "eval_precision", "eval_recall"})
    CHECK_MESSAGE(got.metrics[k] == want.metrics[k], k);
}

TEST_CASE("checkpoints: rank 0 writes them, a resume with the same world size continues bit-identically, a resume "
          "with another world size is refused") {
  const fixture f;
  const fs::path out = scratch("resume");
  training_args a = base_args(out / "full");
  a.batch_size = 4;
  a.save_strategy = interval_strategy::steps;
  a.save_steps = 5;
  const run full = train_once(f, a, &world());
  world().barrier();
  const fs::path ckpt = out / "full" / "checkpoint-5";
  const nlohmann::json st = nlohmann::json::parse(test::read_file(ckpt / "trainer_state.json"));
  CHECK(st["minibert"]["world_size"] == 2);
  CHECK(st["is_world_process_zero"] == true);

  training_args b = a;
  b.output_dir = (out / "resumed").string();
  b.resume_from_checkpoint = ckpt.string();
  const run resumed = train_once(f, b, &world());
  CHECK_MESSAGE(std::memcmp(resumed.weights.data(), full.weights.data(), full.weights.size() * sizeof(float)) == 0,
                "the resumed run's final weights differ from the uninterrupted run's");

  if (world().rank() == 0) {
    training_args c = b;
    c.output_dir = (out / "one_process").string();
    std::string message;
    try {
      train_once(f, c, nullptr);
    } catch (const error& e) {
      message = e.what();
    }
    CHECK_MESSAGE(message.find("written by 2 process(es) and this run has 1") != std::string::npos, message);
    CHECK(message.find("checkpoint-5/trainer_state.json") != std::string::npos);
  }
  world().barrier();
}

} // namespace test_distributed_mpi
