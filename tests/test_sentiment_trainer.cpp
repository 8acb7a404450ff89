// SPDX-License-Identifier: MIT
// The sentiment_trainer program end to end, on a tiny random-init BERT and slices of ../shared's SST-2 (written into
// the build directory): the Hugging Face output layout and metrics files, predict/evaluate, a SIGKILL followed by
// --resume-from-checkpoint ending bit-identical to an uninterrupted run, and clear errors for malformed data.
#include <doctest/doctest.h>

#include <minibert/io/checkpoint.hpp>

#include <nlohmann/json.hpp>

#include "tiny_training_fixtures.hpp"

#include <signal.h>   // kill, SIGKILL
#include <sys/wait.h> // waitpid
#include <unistd.h>   // fork, execv, usleep

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace test_sentiment_trainer { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;

namespace {

const fs::path work = fs::path(MINIBERT_TEST_BINARY_DIR) / "sentiment_trainer_work";
const std::string shared = MINIBERT_TEST_SHARED_DIR;

struct result {
  int code;
  std::string out;
};

result run(const std::string& args) {
  const std::string cmd = std::string(MINIBERT_TEST_PROGRAM) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

using minibert::test::read_file;
fs::path sst2_slice(const std::string& name, const std::string& file, std::size_t n) {
  return minibert::test::sst2_slice(work, name, file, n);
}
fs::path tiny_config() { return minibert::test::tiny_config(work); }

std::string train_args(const fs::path& out, const std::string& extra) {
  return "train --config " + tiny_config().string() + " --tokenizer " + shared + "/data/bert-base-uncased --train " +
         sst2_slice("train.tsv", "train.tsv", 400).string() + " --test " + sst2_slice("test.tsv", "test.tsv", 60).string() +
         " --output-dir " + out.string() + " --learning-rate 1e-3 --warmup-steps 3 --batch-size 16 --threads 2 " + extra;
}

// `train` into a fresh output directory (whatever an earlier run left there removed first)
result train_into(const fs::path& out, const std::string& extra) {
  fs::remove_all(out);
  return run(train_args(out, extra));
}

} // namespace

TEST_CASE("train writes the Hugging Face layout, transformers' metric files and the report, and predict and evaluate use it") {
  const fs::path out = work / "run";
  const result r = train_into(out, "--max-steps 12 --logging-steps 4 --eval-strategy steps --eval-steps 6 "
                                       "--save-strategy steps --save-steps 6 --save-total-limit 1");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("NOT pretrained") != std::string::npos);
  CHECK(r.out.find("'loss': ") != std::string::npos);
  CHECK(r.out.find("***** test metrics *****") != std::string::npos);
  for (const char* f : {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "trainer_state.json",
                        "train_results.json", "eval_results.json", "test_results.json", "report.md", "report.html"})
    CHECK_MESSAGE(fs::exists(out / f), f);
  CHECK(fs::exists(out / "checkpoint-12"));
  CHECK(!fs::exists(out / "checkpoint-6")); // --save-total-limit 1

  const auto state = nlohmann::json::parse(read_file(out / "trainer_state.json"));
  CHECK(state["global_step"] == 12);
  int logs = 0, evals = 0;
  for (const auto& e : state["log_history"]) {
    if (e.contains("loss")) {
      ++logs;
      for (const char* k : {"step", "epoch", "loss", "learning_rate", "grad_norm"}) CHECK_MESSAGE(e.contains(k), k);
    }
    if (e.contains("eval_loss")) ++evals;
  }
  CHECK(logs == 3);
  CHECK(evals == 2);
  const auto test = nlohmann::json::parse(read_file(out / "test_results.json"));
  for (const char* k : {"test_loss", "test_accuracy", "test_precision", "test_recall", "test_f1", "test_runtime",
                        "test_samples_per_second"})
    CHECK_MESSAGE(test.contains(k), k);
  const auto cfg = nlohmann::json::parse(read_file(out / "config.json"));
  CHECK(cfg["architectures"][0] == "BertForSequenceClassification");
  CHECK(cfg["id2label"]["1"] == "1");
  const std::string html = read_file(out / "report.html");
  CHECK(html.find("<svg") != std::string::npos);

  // predict: one JSON line per input row, in order, independent of the batch size
  const fs::path input = work / "test.tsv";
  const result p1 = run("predict --model " + out.string() + " --input " + input.string() + " --batch-size 1");
  const result p7 = run("predict --model " + out.string() + " --input " + input.string() + " --batch-size 7");
  REQUIRE(p1.code == 0);
  REQUIRE(p7.code == 0);
#if defined(__AVX512F__)
  CHECK(p1.out == p7.out); // the own fp32 GEMM: a row's sums do not depend on the batch (cpu/gemm.hpp)
#else
  // Eigen's GEMM (the fallback without AVX-512) blocks and threads by matrix size: the same labels, the logits to
  // a few units in the last place
  std::istringstream lines1(p1.out), lines7(p7.out);
  std::string l1, l7;
  while (std::getline(lines1, l1) && std::getline(lines7, l7)) {
    const auto j1 = nlohmann::json::parse(l1), j7 = nlohmann::json::parse(l7);
    CHECK(j1["label"] == j7["label"]);
    for (int c = 0; c < 2; ++c)
      CHECK(j1["logits"][c].get<double>() == doctest::Approx(j7["logits"][c].get<double>()).epsilon(1e-5));
  }
  CHECK(std::count(p1.out.begin(), p1.out.end(), '\n') == std::count(p7.out.begin(), p7.out.end(), '\n'));
#endif
  std::istringstream lines(p1.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j["probs"].size() == 2);
    CHECK(j["logits"].size() == 2);
    CHECK(std::abs(j["probs"][0].get<double>() + j["probs"][1].get<double>() - 1.0) < 1e-6);
    CHECK(j["label_name"] == std::to_string(j["label"].get<int>()));
    ++n;
  }
  CHECK(n == 60);

  // evaluate the saved model on the test file: the same accuracy as the run's own test evaluation
  const result e = run("evaluate --model " + out.string() + " --data " + input.string() + " --output " +
                       (work / "eval.json").string());
  REQUIRE(e.code == 0);
  const auto ev = nlohmann::json::parse(read_file(work / "eval.json"));
  CHECK(ev["eval_accuracy"] == test["test_accuracy"]);
  CHECK(ev["eval_loss"].get<double>() == doctest::Approx(test["test_loss"].get<double>()).epsilon(1e-12));
}

TEST_CASE("SIGKILL during training, then --resume-from-checkpoint, ends with the weights and metrics of an uninterrupted run") {
  const std::string common = "--max-steps 20 --logging-steps 2 --eval-strategy steps --eval-steps 5 --save-strategy steps "
                             "--save-steps 5 --hidden-dropout 0.1";
  const fs::path a = work / "uninterrupted", b = work / "killed";
  fs::remove_all(a);
  fs::remove_all(b);
  const result ra = run(train_args(a, common));
  INFO(ra.out);
  REQUIRE(ra.code == 0);

  // the same run, killed with SIGKILL right after its first checkpoint appears
  std::vector<std::string> argv_s{MINIBERT_TEST_PROGRAM};
  std::istringstream words(train_args(b, common));
  for (std::string w; words >> w;) argv_s.push_back(w);
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!fs::exists(b / "checkpoint-5") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status)); // it was killed, not finished
  std::string last;
  for (int s = 20; s >= 5 && last.empty(); s -= 5)
    if (fs::exists(b / ("checkpoint-" + std::to_string(s)))) last = (b / ("checkpoint-" + std::to_string(s))).string();
  REQUIRE(!last.empty());
  MESSAGE("resuming from " << last);

  const result rb = run(train_args(b, common + " --resume-from-checkpoint " + last));
  INFO(rb.out);
  REQUIRE(rb.code == 0);
  CHECK(read_file(a / "model.safetensors") == read_file(b / "model.safetensors"));
  const auto ta = nlohmann::json::parse(read_file(a / "test_results.json"));
  const auto tb = nlohmann::json::parse(read_file(b / "test_results.json"));
  for (const char* k : {"test_loss", "test_accuracy", "test_f1"}) CHECK_MESSAGE(ta[k] == tb[k], k);
  const auto la = nlohmann::json::parse(read_file(a / "trainer_state.json"))["log_history"];
  const auto lb = nlohmann::json::parse(read_file(b / "trainer_state.json"))["log_history"];
  REQUIRE(la.size() == lb.size());
  for (std::size_t i = 0; i < la.size(); ++i)
    for (const char* k : {"loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy"})
      if (la[i].contains(k)) CHECK_MESSAGE(la[i][k] == lb[i][k], "log entry " << i << " " << k);
}

TEST_CASE("malformed data and bad values fail with the file and line, and exit code 1") {
  fs::create_directories(work);
  auto write = [](const std::string& name, const std::string& text) {
    const fs::path p = work / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  };
  auto expect = [](const result& r, std::initializer_list<const char*> parts) {
    INFO(r.out);
    CHECK(r.code == 1);
    for (const char* s : parts) CHECK_MESSAGE(r.out.find(s) != std::string::npos, s);
  };
  const std::string base = "train --config " + tiny_config().string() + " --tokenizer " + shared +
                           "/data/bert-base-uncased --output-dir " + (work / "bad").string() + " --train ";
  const std::string good = sst2_slice("train.tsv", "train.tsv", 400).string();
  expect(run(base + write("nolabel.tsv", "sentence\tscore\ngood movie\t1\n")), {"nolabel.tsv", "label"});
  expect(run(base + write("broken.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 1}\n{\"text\": \n")),
         {"broken.jsonl:3"});
  expect(run(base + write("empty.tsv", "")), {"empty.tsv", "empty"});
  expect(run(base + write("utf8.tsv", "sentence\tlabel\nfine\t1\nbad \xC3\x28 byte\t0\n")), {"utf8.tsv:3"});
  expect(run(base + good + " --validation " + write("val5.tsv", "sentence\tlabel\nok\t1\nodd\t5\n")), {"val5.tsv:3", "5"});
  expect(run(base + good + " --learning-rate 1e30 --max-grad-norm 0 --max-steps 6"), {"optimizer step"});
  expect(run(base + good + " --lr-scheduler sideways"), {"sideways", "linear"});
  const result h = run("train --help");
  CHECK(h.code == 0);
  CHECK(h.out.find("--resume-from-checkpoint") != std::string::npos);
  for (const char* cmd : {"evaluate", "predict", "compare"}) CHECK(run(std::string(cmd) + " --help").code == 0);
}

TEST_CASE("a hub id resolves through the local Hugging Face cache, early stopping and best-model reloading") {
  const fs::path out = work / "hub_source";
  REQUIRE(train_into(out, "--max-steps 2 --eval-strategy no --save-strategy no").code == 0);
  // huggingface_hub's cache layout: models--org--name/refs/main -> snapshots/<revision>/
  const fs::path cache = work / "hf_home" / "hub" / "models--acme--tiny-sst2";
  fs::remove_all(work / "hf_home");
  fs::create_directories(cache / "refs");
  fs::create_directories(cache / "snapshots");
  std::ofstream(cache / "refs" / "main") << "0123abcd";
  fs::copy(out, cache / "snapshots" / "0123abcd", fs::copy_options::recursive);
  const std::string env = "HF_HOME=" + (work / "hf_home").string() + " ";
  const std::string cmd = env + MINIBERT_TEST_PROGRAM + " evaluate --model acme/tiny-sst2 --data " +
                          (work / "test.tsv").string() + " --output " + (work / "hub_eval.json").string() + " 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK(fs::exists(work / "hub_eval.json"));
  ::setenv("HF_HUB_OFFLINE", "1", 1); // a hub id not in the cache, and no network: an error naming the cache
  const result missing = run("evaluate --model acme/not-there --data " + (work / "test.tsv").string());
  ::unsetenv("HF_HUB_OFFLINE");
  CHECK(missing.code == 1);
  CHECK(missing.out.find("local Hugging Face cache") != std::string::npos);
  CHECK(missing.out.find("HF_HUB_OFFLINE") != std::string::npos);

  // learning rate 0: the eval loss never improves, so patience 1 stops at the second evaluation
  const fs::path es = work / "early";
  const result r = train_into(es, "--max-steps 20 --learning-rate 0 --warmup-steps 0 --eval-strategy steps "
                                      "--eval-steps 2 --save-strategy no --early-stopping-patience 1");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("Early stopping") != std::string::npos);
  CHECK(nlohmann::json::parse(read_file(es / "trainer_state.json"))["global_step"] == 4);

  // the final model is the best checkpoint's
  const fs::path best = work / "best";
  const result rb = train_into(best, "--max-steps 12 --eval-strategy steps --eval-steps 4 --save-strategy steps "
                                         "--save-steps 4 --load-best-model-at-end --metric-for-best-model loss");
  INFO(rb.out);
  REQUIRE(rb.code == 0);
  const auto st = nlohmann::json::parse(read_file(best / "trainer_state.json"));
  const std::string best_dir = st["best_model_checkpoint"].get<std::string>();
  CHECK(rb.out.find("Loading best model from " + best_dir) != std::string::npos);
  const auto a = minibert::checkpoint::open(best / "model.safetensors");
  const auto b = minibert::checkpoint::open(fs::path(best_dir) / "model.safetensors");
  for (const auto& name : a.names()) CHECK_MESSAGE(a.read_vector<float>(name) == b.read_vector<float>(name), name);
}

TEST_CASE("--bf16 and --fp16: train, evaluate and predict run mixed precision, both at once are refused") {
  const fs::path input = sst2_slice("test.tsv", "test.tsv", 60);
  const fs::path bf = work / "run_bf16";
  const result r = train_into(bf, "--max-steps 6 --logging-steps 3 --eval-strategy no --bf16");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("Mixed precision = bf16") != std::string::npos);
  CHECK(read_file(bf / "report.md").find("bf16 mixed") != std::string::npos);
  // evaluation runs at the flag's precision: bf16 moves the loss a little off fp32's, never far
  const result e32 = run("evaluate --model " + bf.string() + " --data " + input.string() + " --output " +
                         (work / "eval32.json").string());
  const result e16 = run("evaluate --model " + bf.string() + " --data " + input.string() + " --bf16 --output " +
                         (work / "eval16.json").string());
  REQUIRE(e32.code == 0);
  REQUIRE(e16.code == 0);
  const double l32 = nlohmann::json::parse(read_file(work / "eval32.json"))["eval_loss"].get<double>();
  const double l16 = nlohmann::json::parse(read_file(work / "eval16.json"))["eval_loss"].get<double>();
  CHECK(l16 != l32);
  CHECK(std::abs(l16 - l32) < 1e-2 * l32);
  const result p16 = run("predict --model " + bf.string() + " --input " + input.string() + " --fp16");
  CHECK(p16.code == 0);

  // fp16: GradScaler's state travels in the checkpoint's trainer_state.json
  const fs::path fp = work / "run_fp16";
  const result f = train_into(fp, "--max-steps 4 --logging-steps 2 --eval-strategy no --save-strategy steps "
                                      "--save-steps 4 --fp16");
  INFO(f.out);
  REQUIRE(f.code == 0);
  CHECK(f.out.find("Mixed precision = fp16") != std::string::npos);
  const auto st = nlohmann::json::parse(read_file(fp / "checkpoint-4" / "trainer_state.json"));
  REQUIRE(st["minibert"].contains("scaler"));
  const double scale = st["minibert"]["scaler"]["scale"].get<double>();
  CHECK(scale <= 65536.0);
  CHECK(scale == std::exp2(std::round(std::log2(scale)))); // 2^16 halved per skipped step
  const result both = train_into(work / "run_both", "--max-steps 2 --bf16 --fp16");
  CHECK(both.code != 0);
  CHECK(both.out.find("exclude each other") != std::string::npos);
}

} // namespace test_sentiment_trainer
