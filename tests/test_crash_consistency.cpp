// SPDX-License-Identifier: MIT
// Crash consistency of sentiment_trainer's output directory (the tiny random-init BERT of test_sentiment_trainer, on
// slices of ../shared's SST-2): SIGKILL at many instants, a good share of them inside checkpoint and final-model
// writes, must leave every checkpoint-N complete and every file whole, and --resume-from-checkpoint from the newest
// checkpoint must end byte-identical to an uninterrupted run; a full disk must end in a clear error naming the file,
// with the earlier checkpoint intact.
#include <doctest/doctest.h>

#include <minibert/io/checkpoint.hpp>

#include <nlohmann/json.hpp>

#include "tiny_training_fixtures.hpp"

#include <fcntl.h>       // open
#include <poll.h>        // poll
#include <signal.h>      // kill, SIGKILL
#include <sys/inotify.h> // inotify_init1, inotify_add_watch
#include <sys/wait.h>    // waitpid
#include <unistd.h>      // fork, execv, dup2

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace test_crash_consistency { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

// each case works in its own folder (CTest may run them at once): set first thing in the case
fs::path work = fs::path(MINIBERT_TEST_BINARY_DIR) / "crash_consistency_work";
void use_work_dir(const std::string& name) {
  work = fs::path(MINIBERT_TEST_BINARY_DIR) / "crash_consistency_work" / name;
  fs::create_directories(work);
}
const std::string shared = MINIBERT_TEST_SHARED_DIR;
const fs::path tokenizer_dir = fs::path(shared) / "data" / "bert-base-uncased";

// 12 steps with a checkpoint every 2 (two kept): checkpoint and final-model writes (~12 MB each, fsync'ed) take a
// large share of the run's time. Dropout makes the RNG state part of what a resume must restore.
constexpr int max_steps = 12, save_steps = 2;
const std::vector<std::string> common = {"--max-steps", "12", "--logging-steps", "2", "--eval-strategy", "steps",
                                         "--eval-steps", "6", "--save-strategy", "steps", "--save-steps", "2",
                                         "--save-total-limit", "2", "--hidden-dropout", "0.1", "--threads", "1"};
// what save_checkpoint writes into checkpoint-N
const std::set<std::string> checkpoint_files = {"config.json", "model.safetensors", "optimizer.safetensors",
                                                "trainer_state.json"};

using minibert::test::read_file;

// the file holds exactly `bytes` (a bool, so that a failed check does not print megabytes)
bool same_bytes(const fs::path& p, const std::string& bytes) { return read_file(p) == bytes; }

fs::path sst2_slice(const std::string& file, std::size_t n) { return minibert::test::sst2_slice(work, file, file, n); }
fs::path tiny_config() { return minibert::test::tiny_config(work); }

std::vector<std::string> train_args(const fs::path& out, const std::vector<std::string>& extra = {}) {
  static const fs::path cfg = tiny_config(), train = sst2_slice("train.tsv", 400), test = sst2_slice("test.tsv", 60);
  std::vector<std::string> a = {"train", "--config", cfg.string(), "--tokenizer", tokenizer_dir.string(),
                                "--train", train.string(), "--test", test.string(), "--output-dir", out.string(),
                                "--learning-rate", "1e-3", "--warmup-steps", "3", "--batch-size", "16"};
  a.insert(a.end(), common.begin(), common.end());
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// the program with `args`, stdout and stderr into `log`
pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> s{MINIBERT_TEST_PROGRAM};
  s.insert(s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : s) argv.push_back(w.data());
  argv.push_back(nullptr);
  const std::string log_s = log.string();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(log_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

struct result {
  int code; // exit code, -1 when killed by a signal
  std::string out;
};

result run(const std::vector<std::string>& args, const fs::path& log) {
  const int status = wait_for(spawn(args, log));
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

// inotify on one directory: file and directory creations and renames into it
class watcher {
public:
  explicit watcher(const fs::path& dir) {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    REQUIRE(fd_ >= 0);
    REQUIRE(inotify_add_watch(fd_, dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0);
  }
  ~watcher() { ::close(fd_); }
  watcher(const watcher&) = delete;
  watcher& operator=(const watcher&) = delete;
  struct event {
    std::uint32_t mask;
    std::string name;
  };
  // the events that arrive within timeout_ms (none on timeout)
  std::vector<event> next(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    std::vector<event> out;
    if (poll(&p, 1, timeout_ms) <= 0) return out;
    alignas(inotify_event) char buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
        out.push_back({e->mask, e->len ? std::string(e->name) : std::string()});
        off += ssize_t(sizeof(inotify_event) + e->len);
      }
    }
    return out;
  }

private:
  int fd_ = -1;
};

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// N of "checkpoint-N", or -1
int checkpoint_step(const std::string& name) {
  if (!starts_with(name, "checkpoint-") || name.size() == 11) return -1;
  for (std::size_t i = 11; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoi(name.substr(11));
}

// the uninterrupted run: its wall time, final files, metrics, log history and every checkpoint's files
struct reference_run {
  double wall_s = 0;
  std::string model, config;
  nlohmann::json test_results, log_history;
  std::set<std::string> checkpoint_dirs;                       // what is left in its output directory
  std::map<int, std::map<std::string, std::string>> checkpoint; // step -> file -> bytes (all steps)
  std::uintmax_t checkpoint_bytes = 0;                         // total size of the first checkpoint's files
};

const reference_run& reference() {
  static const reference_run r = [] {
    reference_run ref;
    const fs::path out = work / "reference", snap = work / "reference_snapshots";
    fs::remove_all(out);
    fs::remove_all(snap);
    fs::create_directories(out);
    // checkpoints are rotated away (--save-total-limit 2): hard-link each one's files as it appears
    watcher w(out);
    const auto t0 = clock_type::now();
    const pid_t pid = spawn(train_args(out), work / "reference.log");
    int status = 0;
    for (;;) {
      for (const auto& e : w.next(20)) {
        const int step = checkpoint_step(e.name);
        if (step < 0 || !(e.mask & IN_MOVED_TO)) continue;
        std::error_code ec;
        fs::create_directories(snap / std::to_string(step), ec);
        for (const auto& f : checkpoint_files)
          fs::create_hard_link(out / e.name / f, snap / std::to_string(step) / f, ec);
      }
      if (waitpid(pid, &status, WNOHANG) == pid) break;
    }
    ref.wall_s = std::chrono::duration<double>(clock_type::now() - t0).count();
    INFO(read_file(work / "reference.log"));
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    ref.model = read_file(out / "model.safetensors");
    ref.config = read_file(out / "config.json");
    ref.test_results = nlohmann::json::parse(read_file(out / "test_results.json"));
    ref.log_history = nlohmann::json::parse(read_file(out / "trainer_state.json"))["log_history"];
    for (const auto& e : fs::directory_iterator(out))
      if (checkpoint_step(e.path().filename().string()) > 0) ref.checkpoint_dirs.insert(e.path().filename().string());
    bool missed = false;
    for (int s = save_steps; s <= max_steps; s += save_steps)
      for (const auto& f : checkpoint_files) missed = missed || !fs::exists(snap / std::to_string(s) / f);
    if (missed) { // the rotation outran the snapshot: the same run keeping every checkpoint (training is unchanged)
      const fs::path all = work / "reference_all";
      fs::remove_all(all);
      const result ra = run(train_args(all, {"--save-total-limit", "-1"}), work / "reference_all.log");
      INFO(ra.out);
      REQUIRE(ra.code == 0);
      REQUIRE(same_bytes(all / "model.safetensors", ref.model));
      fs::remove_all(snap);
      fs::create_directories(snap);
      for (int s = save_steps; s <= max_steps; s += save_steps)
        fs::copy(all / ("checkpoint-" + std::to_string(s)), snap / std::to_string(s), fs::copy_options::recursive);
    }
    for (int s = save_steps; s <= max_steps; s += save_steps)
      for (const auto& f : checkpoint_files) {
        const fs::path p = snap / std::to_string(s) / f;
        REQUIRE_MESSAGE(fs::exists(p), p.string());
        ref.checkpoint[s][f] = read_file(p);
        if (s == save_steps) ref.checkpoint_bytes += fs::file_size(p);
      }
    return ref;
  }();
  return r;
}

// checkpoint-N holds exactly the files save_checkpoint writes, each whole: the tensors files open and equal the
// reference's bytes, config.json equals them, trainer_state.json parses and names step N
void check_checkpoint(const fs::path& dir, int step, const reference_run& ref) {
  INFO("checkpoint " << dir.string());
  std::set<std::string> names;
  std::string listing;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  for (const auto& n : names) listing += " " + n;
  CHECK_MESSAGE(names == checkpoint_files, "incomplete or unexpected files:" << listing);
  REQUIRE(ref.checkpoint.count(step) == 1);
  for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
    if (!fs::exists(dir / f)) continue;
    CHECK_NOTHROW(CHECK(!minibert::checkpoint::open(dir / f).names().empty()));
    CHECK_MESSAGE(same_bytes(dir / f, ref.checkpoint.at(step).at(f)), (std::string(f) + " differs from the reference's"));
  }
  if (fs::exists(dir / "config.json")) CHECK(same_bytes(dir / "config.json", ref.checkpoint.at(step).at("config.json")));
  if (fs::exists(dir / "trainer_state.json")) {
    nlohmann::json st;
    CHECK_NOTHROW(st = nlohmann::json::parse(read_file(dir / "trainer_state.json")));
    CHECK(st.value("global_step", -1) == step);
    CHECK(st.contains("minibert"));
  }
}

// what one look at an output directory found besides whole files
struct dir_state {
  std::vector<int> checkpoints;        // complete checkpoint-N, ascending
  std::vector<std::string> leftovers;  // temporary directories and files of interrupted writes
  bool final_model = false;            // model.safetensors present (and whole)
};

// Every entry of a sentiment_trainer output directory is whole or a recognizable temporary: checkpoint-N complete,
// the final model.safetensors/config.json the reference's, JSON files parse, the tokenizer files the source's.
dir_state check_output_dir(const fs::path& out, const reference_run& ref) {
  dir_state s;
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    INFO(out.string() << ": " << name);
    const int step = checkpoint_step(name);
    if (step > 0 && e.is_directory()) {
      check_checkpoint(e.path(), step, ref);
      s.checkpoints.push_back(step);
    } else if (starts_with(name, ".checkpoint-") && e.is_directory()) {
      s.leftovers.push_back(name + "/"); // save_checkpoint's directory in the making, or a rotated-out one
    } else if (starts_with(name, ".") && name.find(".tmp-") != std::string::npos && e.is_regular_file()) {
      s.leftovers.push_back(name); // atomic_write's temporary file
    } else if (name == "model.safetensors") {
      CHECK_NOTHROW(minibert::checkpoint::open(e.path()));
      CHECK_MESSAGE(same_bytes(e.path(), ref.model), "the final model differs from the reference's");
      s.final_model = true;
    } else if (name == "config.json") {
      CHECK(same_bytes(e.path(), ref.config));
    } else if (name == "vocab.txt" || name == "tokenizer.json" || name == "tokenizer_config.json" ||
               name == "special_tokens_map.json") {
      CHECK_MESSAGE(same_bytes(e.path(), read_file(tokenizer_dir / name)),
                    "torn copy of the tokenizer file: " << fs::file_size(e.path()) << " of "
                                                        << fs::file_size(tokenizer_dir / name) << " bytes");
    } else if (e.path().extension() == ".json") {
      CHECK_NOTHROW(nlohmann::json::parse(read_file(e.path())));
      if (name == "trainer_state.json") // written once training is over
        CHECK(nlohmann::json::parse(read_file(e.path())).value("global_step", -1) == max_steps);
    } else if (name == "report.md") {
      CHECK(read_file(e.path()).find("test") != std::string::npos);
    } else if (name == "report.html") {
      const std::string h = read_file(e.path());
      CHECK(h.find("</html>") != std::string::npos);
    } else {
      FAIL_CHECK("unexpected entry in the output directory");
    }
  }
  std::sort(s.checkpoints.begin(), s.checkpoints.end());
  return s;
}

// the resumed (or rerun) run ends as the reference did: same final model, test metrics and logged values
void check_same_as_reference(const fs::path& out, const reference_run& ref) {
  CHECK_MESSAGE(same_bytes(out / "model.safetensors", ref.model), "the final model differs from the reference's");
  const auto t = nlohmann::json::parse(read_file(out / "test_results.json"));
  for (const auto& [k, v] : ref.test_results.items())
    if (k.find("runtime") == std::string::npos && k.find("per_second") == std::string::npos)
      CHECK_MESSAGE(t[k] == v, k);
  const auto lh = nlohmann::json::parse(read_file(out / "trainer_state.json"))["log_history"];
  REQUIRE(lh.size() == ref.log_history.size());
  for (std::size_t i = 0; i < lh.size(); ++i)
    for (const char* k : {"loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy", "train_loss", "step"})
      if (ref.log_history[i].contains(k))
        CHECK_MESSAGE(lh[i][k] == ref.log_history[i][k], "log entry " << i << " " << std::string(k));
}

// 'word' for sh -c
std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

} // namespace

TEST_CASE("SIGKILL at 32 instants, many inside checkpoint and final-model writes: every file whole, resume identical") {
  use_work_dir("kill");
  const reference_run& ref = reference();
  MESSAGE("reference run: " << ref.wall_s << " s, " << ref.checkpoint_bytes << " bytes per checkpoint");

  // The kill instants: 16 at fixed-seed random delays spread over the reference's wall time, 16 triggered by the
  // trainer's own writes (seen through inotify on the output directory), then after a random few ms or µs:
  //   .checkpoint-K.tmp created   -> inside save_checkpoint's writes of step K
  //   checkpoint-K renamed in     -> inside the --save-total-limit rotation that follows it (K >= 6)
  //   .model.safetensors.tmp-*    -> inside the final model's write
  //   .vocab.txt.tmp-* / .tokenizer.json.tmp-*  -> inside the copy of the tokenizer files
  //   .trainer_state.json.tmp-*   -> inside the final trainer_state.json's write
  struct instant {
    double delay_s = 0;      // after the start (time instants) or after the event (event instants)
    std::string event;       // name the event must carry; empty: a time instant
    std::uint32_t mask = 0;  // IN_CREATE or IN_MOVED_TO
    std::string label;
  };
  std::mt19937_64 rng(20240613);
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * double(rng() >> 11) * 0x1.0p-53; };
  auto pick = [&](int n) { return int(rng() % std::uint64_t(n)); };
  std::vector<instant> instants;
  const int n_time = 16;
  for (int i = 0; i < n_time; ++i) { // stratified: one in each 16th of the run
    const double d = ref.wall_s * (double(i) + uniform(0, 1)) / double(n_time) * 0.98;
    instants.push_back({d, "", 0, "at " + std::to_string(int(d * 1000)) + " ms"});
  }
  const char* const cycle = "ccrmcrtcmrcsmcrc"; // 16 event instants
  for (const char* k = cycle; *k; ++k) {
    instant in;
    switch (*k) {
    case 'c': { // during a checkpoint's writes (one takes some tens of ms)
      const int step = save_steps * (1 + pick(max_steps / save_steps));
      in = {uniform(0, 0.03), ".checkpoint-" + std::to_string(step) + ".tmp", IN_CREATE, ""};
      break;
    }
    case 'r': { // during the rotation's delete of checkpoint-(K-4)
      const int step = 6 + save_steps * pick(4);
      in = {uniform(0, 0.0003), "checkpoint-" + std::to_string(step), IN_MOVED_TO, ""};
      break;
    }
    case 'm': in = {uniform(0, 0.004), ".model.safetensors.tmp-", IN_CREATE, ""}; break;
    case 't': // the copy's temporary file (atomic_copy_file renames it into place)
      in = {uniform(0, 0.0003), pick(2) ? ".vocab.txt.tmp-" : ".tokenizer.json.tmp-", IN_CREATE, ""};
      break;
    case 's': in = {uniform(0, 0.0005), ".trainer_state.json.tmp-", IN_CREATE, ""}; break;
    }
    in.label = in.event + " + " + std::to_string(int(in.delay_s * 1e6)) + " us";
    instants.push_back(in);
  }

  const auto t_start = clock_type::now();
  int killed = 0, finished_first = 0, inside_write = 0, resumed = 0, from_scratch = 0;
  std::map<std::string, int> leftovers_after_resume;
  for (std::size_t i = 0; i < instants.size(); ++i) {
    const instant& in = instants[i];
    const fs::path out = work / ("killed_" + std::to_string(i));
    fs::remove_all(out);
    fs::create_directories(out);
    INFO("kill instant " << i << ": " << in.label);
    watcher w(out);
    const auto t0 = clock_type::now();
    const pid_t pid = spawn(train_args(out), out.string() + ".log");
    bool fired = false;
    int status = 0;
    if (in.event.empty()) {
      std::this_thread::sleep_until(t0 + std::chrono::duration<double>(in.delay_s));
      fired = true;
    } else {
      const auto deadline = t0 + std::chrono::seconds(60);
      while (!fired && clock_type::now() < deadline) {
        for (const auto& e : w.next(10))
          if ((e.mask & in.mask) && starts_with(e.name, in.event)) {
            if (in.delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(in.delay_s));
            fired = true;
            break;
          }
        if (!fired && waitpid(pid, &status, WNOHANG) == pid) break; // finished without the event
      }
      REQUIRE_MESSAGE(fired, "the trainer never wrote " << in.event);
    }
    kill(pid, SIGKILL);
    status = wait_for(pid);
    if (WIFSIGNALED(status)) {
      REQUIRE(WTERMSIG(status) == SIGKILL);
      ++killed;
    } else {
      ++finished_first; // the run ended before its instant: its directory must be the reference's
      CHECK(WEXITSTATUS(status) == 0);
    }

    const dir_state s = check_output_dir(out, ref);
    if (!s.leftovers.empty()) ++inside_write;
    std::string seen;
    for (int c : s.checkpoints) seen += " checkpoint-" + std::to_string(c);
    for (const auto& l : s.leftovers) seen += " " + l;
    MESSAGE("instant " << i << " (" << in.label << "): " << std::string(WIFSIGNALED(status) ? "killed" : "finished first")
                       << ", left:" << seen << std::string(s.final_model ? " model.safetensors" : ""));
    if (!WIFSIGNALED(status)) continue;

    // resume from the newest complete checkpoint (none yet: the same run again), into the same directory
    std::vector<std::string> extra;
    if (!s.checkpoints.empty())
      extra = {"--resume-from-checkpoint", (out / ("checkpoint-" + std::to_string(s.checkpoints.back()))).string()};
    else
      ++from_scratch;
    const result r = run(train_args(out, extra), out.string() + ".resume.log");
    REQUIRE_MESSAGE(r.code == 0, r.out);
    ++resumed;
    check_same_as_reference(out, ref);
    const dir_state after = check_output_dir(out, ref);
    // the resumed run keeps --save-total-limit's checkpoints, as the uninterrupted one did
    std::set<std::string> dirs;
    for (int c : after.checkpoints) dirs.insert("checkpoint-" + std::to_string(c));
    CHECK(dirs == ref.checkpoint_dirs);
    for (const auto& l : after.leftovers) {
      CHECK_MESSAGE(l.back() != '/', "the resumed run left the temporary checkpoint directory " << l);
      ++leftovers_after_resume[l.substr(0, l.find(".tmp-") + 4)];
    }
    fs::remove_all(out);
  }
  const double secs = std::chrono::duration<double>(clock_type::now() - t_start).count();
  std::string left;
  for (const auto& [k, n] : leftovers_after_resume) left += " " + std::to_string(n) + "x " + k + "*";
  MESSAGE(instants.size() << " kill instants: " << killed << " killed (" << finished_first << " runs ended first), "
                          << inside_write << " landed inside a write (temporary files or directories left), "
                          << resumed << " resumed (" << from_scratch << " of them from scratch), all survived; "
                          << secs << " s; temporary files the resumed runs ignored:" << (left.empty() ? " none" : left));
  CHECK(killed >= 20);
  CHECK(inside_write >= 5);
}

TEST_CASE("a kill between publishing a checkpoint and rotating the oldest away: the resumed run finishes the rotation") {
  // the state such a kill leaves after the last save: three complete checkpoints where --save-total-limit keeps two
  // (the SIGKILL case above reaches it only when a kill lands in that window); resuming from the newest, which is the
  // last step, saves nothing more
  use_work_dir("rotation");
  const reference_run& ref = reference();
  const fs::path out = work / "rotation_after_kill";
  fs::remove_all(out);
  for (int s = max_steps - 2 * save_steps; s <= max_steps; s += save_steps) {
    const fs::path dir = out / ("checkpoint-" + std::to_string(s));
    fs::create_directories(dir);
    for (const auto& [file, bytes] : ref.checkpoint.at(s)) {
      std::ofstream f(dir / file, std::ios::binary);
      f << bytes;
    }
  }
  const fs::path newest = out / ("checkpoint-" + std::to_string(max_steps));
  const result r = run(train_args(out, {"--resume-from-checkpoint", newest.string()}), out.string() + ".log");
  REQUIRE_MESSAGE(r.code == 0, r.out);
  check_same_as_reference(out, ref);
  std::set<std::string> dirs;
  for (const auto& e : fs::directory_iterator(out))
    if (checkpoint_step(e.path().filename().string()) > 0) dirs.insert(e.path().filename().string());
  CHECK(dirs == ref.checkpoint_dirs);
  fs::remove_all(out);
}

TEST_CASE("a full disk at the second checkpoint: exit code 1, an error naming the file and ENOSPC, checkpoint-2 intact") {
  use_work_dir("full_disk");
  const fs::path mnt = work / "full_disk_mnt", copy = work / "full_disk_copy", log = work / "full_disk.log";
  fs::remove_all(copy);
  fs::create_directories(mnt);
  fs::create_directories(copy);
  // a private mount namespace, so the tmpfs is seen by nothing else and goes with it
  const std::string probe = "unshare --mount --propagation private sh -c " +
                            sh_quote("mount -t tmpfs -o size=64k minibert_probe " + sh_quote(mnt.string()) + " && umount " +
                                   sh_quote(mnt.string())) + " > " + sh_quote((work / "probe.log").string()) + " 2>&1";
  if (std::system(probe.c_str()) != 0) {
    MESSAGE("[minibert-skip] full disk: cannot mount a tmpfs in a private mount namespace here: "
            << read_file(work / "probe.log"));
    return;
  }
  const reference_run& ref = reference();
  // room for the first checkpoint and half of another: the second one's optimizer.safetensors cannot fit
  const std::uintmax_t size_k = (ref.checkpoint_bytes * 3 / 2 + 4095) / 4096 * 4;
  const fs::path out = mnt / "out";
  std::string cmd = "mount -t tmpfs -o size=" + std::to_string(size_k) + "k minibert_full " + sh_quote(mnt.string()) +
                    " || exit 90; " + sh_quote(MINIBERT_TEST_PROGRAM);
  for (const auto& a : train_args(out)) cmd += " " + sh_quote(a);
  cmd += " > " + sh_quote(log.string()) + " 2>&1; echo $? > " + sh_quote((work / "full_disk.rc").string()) +
         "; ls -la " + sh_quote(out.string()) + " " + sh_quote(out.string()) + "/.checkpoint-* >> " + sh_quote(log.string()) +
         " 2>&1; cp -a " + sh_quote(out.string()) + "/. " + sh_quote(copy.string());
  fs::remove(work / "full_disk.rc");
  const int sh = std::system(("unshare --mount --propagation private sh -c " + sh_quote(cmd)).c_str());
  const std::string out_text = read_file(log);
  REQUIRE_MESSAGE(WIFEXITED(sh), out_text);
  REQUIRE_MESSAGE(WEXITSTATUS(sh) != 90, "mounting the tmpfs failed after the probe succeeded");
  REQUIRE_MESSAGE(fs::exists(work / "full_disk.rc"), out_text);
  const int code = std::stoi(read_file(work / "full_disk.rc"));
  MESSAGE("tmpfs of " << size_k << " KiB, checkpoint of " << ref.checkpoint_bytes << " bytes; exit code " << code);
  CHECK_MESSAGE(code == 1, out_text); // the CLI's error exit, not a crash (a signal reads 128 + its number)
  const auto err = out_text.find("error: ");
  REQUIRE_MESSAGE(err != std::string::npos, out_text);
  const std::string message = out_text.substr(err, out_text.find('\n', err) - err);
  MESSAGE("the error: " << message);
  CHECK(message.find((out / ".checkpoint-4.tmp").string()) != std::string::npos); // names the file being written
  CHECK(message.find(".safetensors") != std::string::npos);
  CHECK(message.find("No space left on device") != std::string::npos);
  // the first checkpoint is intact, no second one appeared, and no temporary file of the failed write is left
  REQUIRE(fs::is_directory(copy / "checkpoint-2"));
  check_checkpoint(copy / "checkpoint-2", 2, ref);
  CHECK(same_bytes(copy / "checkpoint-2" / "model.safetensors", ref.checkpoint.at(2).at("model.safetensors")));
  CHECK(!fs::exists(copy / "checkpoint-4"));
  std::string left, listing;
  for (const auto& e : fs::recursive_directory_iterator(copy)) {
    listing += " " + fs::relative(e.path(), copy).string();
    if (e.path().filename().string().find(".tmp-") != std::string::npos) left += " " + e.path().string();
  }
  MESSAGE("left on the full disk:" << listing);
  CHECK_MESSAGE(left.empty(), "temporary files of the failed write left:" << left);
  // and the run can go on from it once there is room
  const fs::path on = work / "full_disk_resumed";
  fs::remove_all(on);
  fs::create_directories(on);
  fs::copy(copy, on, fs::copy_options::recursive);
  const result r = run(train_args(on, {"--resume-from-checkpoint", (on / "checkpoint-2").string()}), work / "full_disk_resumed.log");
  REQUIRE_MESSAGE(r.code == 0, r.out);
  check_same_as_reference(on, ref);
  CHECK(!fs::exists(on / ".checkpoint-4.tmp")); // the failed save's directory went with the next run
}

// One strace line's thread, call name and arguments, and the call's result
struct traced_call {
  std::string pid, name, args;
  long result = -1;
};

// the rename/fsync calls of a `strace -f -y -s 4096` log (with -y, a descriptor reads "7</path>")
std::vector<traced_call> traced_calls(const std::string& log) {
  std::vector<traced_call> calls;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    const auto open = line.find('('), eq = line.rfind(") = ");
    if (open == std::string::npos || eq == std::string::npos || eq < open) continue;
    const auto name_at = line.find_last_of(' ', open) == std::string::npos ? 0 : line.find_last_of(' ', open) + 1;
    traced_call c{line.substr(0, line.find(' ')), line.substr(name_at, open - name_at),
                  line.substr(open + 1, eq - open - 1), -1};
    try {
      c.result = std::stol(line.substr(eq + 4));
    } catch (const std::exception&) {
      continue; // "= ?" of a call a killed thread left
    }
    calls.push_back(c);
  }
  return calls;
}

// the last quoted path of a rename's arguments (the new name), or of a -y descriptor "<...>"
std::string rename_target(const std::string& args) {
  const auto end = args.rfind('"'), begin = end == std::string::npos ? end : args.rfind('"', end - 1);
  return begin == std::string::npos ? std::string() : args.substr(begin + 1, end - begin - 1);
}
std::string fsync_path(const std::string& args) {
  const auto begin = args.find('<'), end = args.rfind('>');
  return begin == std::string::npos || end == std::string::npos ? std::string() : args.substr(begin + 1, end - begin - 1);
}

// A rename is durable once its directory is fsync'ed; the thread that renamed must do so before its next rename
// (a later, unrelated fsync of the same directory would leave a window in which a power loss loses the file).
TEST_CASE("power loss: every rename that publishes a file or a checkpoint is followed by an fsync of its directory") {
  use_work_dir("power_loss");
  const fs::path out = work / "out", trace = work / "trace.txt", log = work / "train.log";
  fs::remove_all(out);
  if (std::system(("strace -f -o /dev/null true > " + sh_quote((work / "probe.log").string()) + " 2>&1").c_str()) != 0) {
    MESSAGE("[minibert-skip] power loss: strace cannot trace here (not installed, or ptrace is not allowed): "
            << read_file(work / "probe.log"));
    return;
  }
  std::string cmd = "strace -f -y -s 4096 -qq -e trace=rename,renameat,renameat2,fsync,fdatasync -o " +
                    sh_quote(trace.string()) + " " + sh_quote(MINIBERT_TEST_PROGRAM);
  for (const auto& a : train_args(out, {"--max-steps", "4"})) cmd += " " + sh_quote(a);
  const int rc = std::system((cmd + " > " + sh_quote(log.string()) + " 2>&1").c_str());
  REQUIRE_MESSAGE(rc == 0, read_file(log));
  const std::vector<traced_call> calls = traced_calls(read_file(trace));
  int published = 0, checkpoints = 0;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].name.rfind("rename", 0) != 0 || calls[i].result != 0) continue;
    const fs::path target = rename_target(calls[i].args);
    if (target.filename().string().ends_with(".del")) continue; // a rotated-out checkpoint on its way to deletion
    ++published;
    if (checkpoint_step(target.filename().string()) > 0) ++checkpoints;
    bool synced = false;
    for (std::size_t j = i + 1; j < calls.size() && !synced; ++j) {
      if (calls[j].pid != calls[i].pid) continue;
      if (calls[j].name.rfind("rename", 0) == 0) break;
      synced = calls[j].name == "fsync" && calls[j].result == 0 && fsync_path(calls[j].args) == target.parent_path().string();
    }
    CHECK_MESSAGE(synced, "no fsync of " << target.parent_path().string() << " between the rename to " << target.string()
                                                                        << " and the thread's next rename");
  }
  MESSAGE(published << " renames published files or checkpoints, " << checkpoints << " of them checkpoints");
  CHECK(checkpoints == 2);  // --max-steps 4 with a checkpoint every 2 steps
  CHECK(published >= 10);   // and the checkpoint's files, the final model, the tokenizer copies, the reports
}

} // namespace test_crash_consistency
