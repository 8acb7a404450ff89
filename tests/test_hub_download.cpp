// SPDX-License-Identifier: MIT
// The hub downloader (include/minibert/hub/) against a mock Hugging Face Hub on the loopback address
// (tests/python/mock_hub.py, a child process): the cache layout huggingface_hub writes (blobs named by ETag, relative
// symlinks, refs), resume after a dropped connection (counting the bytes the mock served), the sha256 check, offline
// mode, HTTP errors, where the token goes, hostile names from the server, concurrent downloads, and the cache shared
// with PyPI's huggingface_hub both ways (tests/python/hf_hub_client.py). What was served comes from the mock's own
// manifest and file dump, never from the code under test.
#include <doctest/doctest.h>

#include <atomic>     // atomic
#include <chrono>     // steady_clock
#include <cstdio>     // popen, pclose, fgets, FILE
#include <cstdlib>    // setenv, unsetenv, getenv, posix_openpt, grantpt, unlockpt, ptsname
#include <filesystem> // path, recursive_directory_iterator, read_symlink
#include <fstream>    // ifstream, ofstream
#include <functional> // function
#include <map>        // map
#include <set>        // set
#include <sstream>    // stringstream
#include <string>     // string
#include <thread>     // thread
#include <vector>     // vector

#include <fcntl.h>    // fcntl, O_RDWR, O_NOCTTY, O_NONBLOCK
#include <poll.h>     // poll
#include <signal.h>   // kill, SIGTERM
#include <spawn.h>    // posix_spawn
#include <sys/wait.h> // waitpid
#include <unistd.h>   // pipe, getpid, read

#include <nlohmann/json.hpp>

#include <minibert/hub.hpp>
#include <minibert/hub/download.hpp>

extern char** environ;

namespace test_hub_download { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const fs::path tests_dir = MINIBERT_TEST_SOURCE_DIR;
const std::string python = MINIBERT_TEST_PYTHON;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// @brief sets an environment variable (or unsets it: nullptr) for one scope and restores the previous value
struct scoped_env {
  std::string name, old;
  bool had;
  scoped_env(const char* n, const char* value) : name(n), had(std::getenv(n) != nullptr) {
    if (had) old = std::getenv(n);
    value ? (void)setenv(n, value, 1) : (void)unsetenv(n);
  }
  ~scoped_env() { had ? (void)setenv(name.c_str(), old.c_str(), 1) : (void)unsetenv(name.c_str()); }
};

/// @brief a fresh folder under the system's temporary folder, removed at the end
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& name) {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / ("minibert_hubdl_" + std::to_string(getpid()) + "_" + name + "_" +
                                        std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// @brief the output and exit status of a shell command
struct command_result {
  std::string out;
  int code = -1;
};

command_result run(const std::string& cmd) {
  command_result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE_MESSAGE(p != nullptr, cmd);
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) r.out += buf;
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

/// @brief tests/python/mock_hub.py in a child process on an ephemeral loopback port, stopped at the end
class mock_hub {
public:
  explicit mock_hub(const fs::path& dir) : log_(dir / "mock_log.jsonl"), dump_(dir / "mock_dump") {
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    const std::string script = (tests_dir / "python" / "mock_hub.py").string(), log = log_.string(),
                      dump = dump_.string();
    std::vector<char*> argv = {const_cast<char*>(python.c_str()), const_cast<char*>(script.c_str()),
                               const_cast<char*>("--log"), const_cast<char*>(log.c_str()),
                               const_cast<char*>("--dump"), const_cast<char*>(dump.c_str()), nullptr};
    const int rc = posix_spawn(&pid_, python.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    REQUIRE_MESSAGE(rc == 0, "cannot start " << script);
    FILE* f = fdopen(out[0], "r");
    char line[128] = {0};
    const bool got = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    REQUIRE_MESSAGE((got && std::sscanf(line, "PORT %d", &port_) == 1), "mock_hub.py did not start: " << line);
    manifest_ = json::parse(read_file(dump_ / "manifest.json"));
  }
  ~mock_hub() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  mock_hub(const mock_hub&) = delete;
  mock_hub& operator=(const mock_hub&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// @brief every request served so far, in order (method, path, host, authorization, range, status, sent)
  std::vector<json> requests() const {
    std::vector<json> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(json::parse(line));
    return out;
  }
  /// @brief the requests whose path contains `part`, from the `from`-th request on
  std::vector<json> requests_to(const std::string& part, std::size_t from = 0) const {
    std::vector<json> all = requests(), out;
    for (std::size_t i = from; i < all.size(); ++i)
      if (all[i]["path"].get<std::string>().find(part) != std::string::npos) out.push_back(all[i]);
    return out;
  }
  std::string commit(const std::string& repo, const std::string& rev) const {
    return manifest_[repo][rev]["commit"].get<std::string>();
  }
  std::string etag(const std::string& repo, const std::string& rev, const std::string& file) const {
    return manifest_[repo][rev]["files"][file]["etag"].get<std::string>();
  }
  /// @brief the bytes the mock serves for that file
  std::string content(const std::string& repo, const std::string& rev, const std::string& file) const {
    return read_file(manifest_[repo][rev]["files"][file]["dump"].get<std::string>());
  }

private:
  fs::path log_, dump_;
  json manifest_;
  pid_t pid_ = -1;
  int port_ = 0;
};

minibert::hub_options options_for(const mock_hub& hub, const fs::path& cache) {
  minibert::hub_options o;
  o.cache_dir = cache;
  o.endpoint = hub.endpoint();
  o.token = "";
  o.offline = false;
  o.log = nullptr;
  o.retry_delay = 10ms;
  return o;
}

fs::path storage(const fs::path& cache, const std::string& repo) {
  return cache / minibert::hub::repo_folder_name(repo);
}

/// @brief a snapshot folder's files (relative names) and the targets of their symlinks
std::map<std::string, std::string> snapshot_links(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_symlink()) out[e.path().lexically_relative(dir).string()] = fs::read_symlink(e.path()).string();
  return out;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const minibert::error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const std::vector<std::string> bert_files = {"config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"};

} // namespace

TEST_CASE("hub: sha256, ETag normalization, glob patterns and file-name checks") {
  using namespace minibert::hub;
  const auto hex = [](std::string_view s) {
    sha256 h;
    h.update(s);
    return h.hex_digest();
  };
  // FIPS 180-4 test vectors
  CHECK(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

  // huggingface_hub's _normalize_etag: etag.lstrip("W/").strip('"')
  CHECK(normalize_etag("\"abc123\"") == "abc123");
  CHECK(normalize_etag("W/\"abc123\"") == "abc123");
  CHECK(normalize_etag("abc") == "abc");

  // Python's fnmatch, as huggingface_hub's allow_patterns use it
  CHECK(matches_any("onnx/model.onnx", {"*.onnx"})); // '*' crosses '/'
  CHECK(matches_any("onnx/model.onnx", {"onnx/"}));  // a folder: everything below it
  CHECK(matches_any("model.safetensors", {"*.bin", "model.[st]*"}));
  CHECK_FALSE(matches_any("vocab.txt", {"[!v]*"}));
  CHECK(matches_any("a\\b", {"a\\b"})); // a backslash is a plain character
  CHECK_FALSE(matches_any("config.json", {"*.bin"}));

  for (const char* bad : {"../x", "a/../../x", "/etc/passwd", "a//b", "", "./a", "a/.", "a\x01"})
    CHECK_THROWS_WITH_AS(check_repo_filename(bad, "GET http://x/api"), doctest::Contains("refusing it"),
                         minibert::error);
  CHECK_NOTHROW(check_repo_filename("onnx/model.onnx", "here"));
  CHECK_NOTHROW(check_repo_filename("weird\\name..txt", "here"));
  CHECK_THROWS_WITH_AS(check_revision("../../etc"), doctest::Contains("revision '../../etc'"), minibert::error);
  CHECK(repo_folder_name("org/name") == "models--org--name");
  CHECK(repo_folder_name("bert-base-uncased") == "models--bert-base-uncased");
}

TEST_CASE("hub: snapshot_download lays out the cache as huggingface_hub does") {
  temp_dir tmp("layout");
  mock_hub hub(tmp.path);
  const fs::path cache = tmp.path / "cache";
  const std::string repo = "acme/tiny-bert", commit = hub.commit(repo, "main");
  minibert::hub_options o = options_for(hub, cache);
  FILE* log = std::tmpfile();
  o.log = log;

  const fs::path snap = minibert::snapshot_download(repo, o);
  CHECK(snap == storage(cache, repo) / "snapshots" / commit);
  CHECK(read_file(storage(cache, repo) / "refs" / "main") == commit); // as huggingface_hub writes it: no newline

  // only what a BERT model needs: no pytorch_model.bin (model.safetensors is there), README, flax or onnx files
  const std::map<std::string, std::string> links = snapshot_links(snap);
  std::vector<std::string> names;
  for (auto& [name, target] : links) names.push_back(name);
  CHECK(names == bert_files);
  for (const std::string& f : bert_files) {
    CAPTURE(f);
    const std::string etag = hub.etag(repo, "main", f);
    CHECK(links.at(f) == "../../blobs/" + etag); // relative, named by the ETag
    CHECK(read_file(storage(cache, repo) / "blobs" / etag) == hub.content(repo, "main", f));
    CHECK(fs::exists(cache / ".locks" / "models--acme--tiny-bert" / (etag + ".lock")));
  }
  CHECK(names_in(storage(cache, repo) / "blobs").size() == bert_files.size()); // no .incomplete left
  // the LFS file came from the file store (another host), after a HEAD that was not redirected
  const std::vector<json> lfs = hub.requests_to("/lfs/");
  REQUIRE(lfs.size() == 1);
  CHECK(contains(lfs[0]["host"].get<std::string>(), "localhost:"));
  for (const json& r : hub.requests_to("/resolve/"))
    if (r["method"] == "HEAD" && contains(r["path"].get<std::string>(), "model.safetensors")) CHECK(r["status"] == 302);

  std::fflush(log);
  std::rewind(log);
  std::string logged(4096, '\0');
  logged.resize(std::fread(logged.data(), 1, logged.size(), log));
  std::fclose(log);
  CHECK(contains(logged, "hub: downloaded model.safetensors: 1.0 MB in ")); // not a terminal: one line per file
  o.log = nullptr;

  SUBCASE("a second download asks for the metadata only") {
    const std::size_t before = hub.requests().size();
    CHECK(minibert::snapshot_download(repo, o) == snap);
    for (const json& r : hub.requests_to("/", before))
      CHECK((r["method"] != "GET" || contains(r["path"].get<std::string>(), "/api/")));
  }
  SUBCASE("another revision: refs/v1, a new snapshot sharing the unchanged blob") {
    const std::size_t before = hub.requests().size();
    o.revision = "v1";
    const fs::path v1 = minibert::snapshot_download(repo, o);
    CHECK(v1 == storage(cache, repo) / "snapshots" / hub.commit(repo, "v1"));
    CHECK(read_file(storage(cache, repo) / "refs" / "v1") == hub.commit(repo, "v1"));
    CHECK(read_file(storage(cache, repo) / "refs" / "main") == commit);
    CHECK(read_file(v1 / "config.json") == hub.content(repo, "v1", "config.json"));
    CHECK(fs::read_symlink(v1 / "model.safetensors") == fs::read_symlink(snap / "model.safetensors"));
    CHECK(hub.requests_to("/lfs/", before).empty()); // the 1 MiB blob was not fetched again
  }
  SUBCASE("single files: in a subfolder, with a weak ETag, by commit") {
    const fs::path onnx = minibert::hub_download(repo, "onnx/model.onnx", o);
    CHECK(onnx == snap / "onnx" / "model.onnx");
    CHECK(fs::read_symlink(onnx) == "../../../blobs/" + hub.etag(repo, "main", "onnx/model.onnx"));
    const fs::path readme = minibert::hub_download(repo, "README.md", o); // ETag: W/"<sha1>"
    CHECK(fs::read_symlink(readme) == "../../blobs/" + hub.etag(repo, "main", "README.md"));
    CHECK(read_file(readme) == hub.content(repo, "main", "README.md"));
    const std::size_t before = hub.requests().size();
    o.revision = commit; // a commit whose file is cached: no request at all
    CHECK(minibert::hub_download(repo, "README.md", o) == readme);
    CHECK(hub.requests().size() == before);
  }
  SUBCASE("a renamed repository: the hub's relative redirect is followed") {
    const fs::path old = minibert::snapshot_download("acme/old-name", o);
    CHECK(old == storage(cache, "acme/old-name") / "snapshots" / commit);
    CHECK(read_file(old / "model.safetensors") == hub.content(repo, "main", "model.safetensors"));
  }
}

TEST_CASE("hub: a dropped connection is resumed with a Range request, not restarted") {
  temp_dir tmp("resume");
  mock_hub hub(tmp.path);
  const std::string flaky = "acme/flaky-bert";
  const std::string full = hub.content(flaky, "main", "model.safetensors");
  const std::int64_t n = std::int64_t(full.size()), half = n / 2;

  SUBCASE("within one call") {
    const fs::path p = minibert::hub_download(flaky, "model.safetensors", options_for(hub, tmp.path / "a"));
    CHECK(read_file(p) == full);
    const std::vector<json> gets = hub.requests_to("/lfs/");
    REQUIRE(gets.size() == 2);
    CHECK(gets[0]["range"].is_null());
    CHECK(gets[0]["sent"] == half); // the mock dropped the connection here
    CHECK(gets[1]["range"] == "bytes=" + std::to_string(half) + "-");
    CHECK(gets[1]["status"] == 206);
    CHECK(gets[0]["sent"].get<std::int64_t>() + gets[1]["sent"].get<std::int64_t>() == n); // no byte twice
  }
  SUBCASE("the .incomplete file an earlier process left") {
    const std::string repo = "acme/tiny-bert", etag = hub.etag(repo, "main", "model.safetensors");
    const std::string content = hub.content(repo, "main", "model.safetensors");
    const fs::path cache = tmp.path / "b", blobs = storage(cache, repo) / "blobs";
    fs::create_directories(blobs);
    const std::size_t third = content.size() / 3;
    std::ofstream(blobs / (etag + ".incomplete"), std::ios::binary) << content.substr(0, third);
    const fs::path p = minibert::hub_download(repo, "model.safetensors", options_for(hub, cache));
    CHECK(read_file(p) == content);
    const std::vector<json> gets = hub.requests_to("/lfs/");
    REQUIRE(gets.size() == 1);
    CHECK(gets[0]["range"] == "bytes=" + std::to_string(third) + "-");
    CHECK(gets[0]["sent"] == content.size() - third);
    CHECK_FALSE(fs::exists(blobs / (etag + ".incomplete")));
  }
}

TEST_CASE("hub: corrupt, truncated or mismatched downloads never become blobs") {
  temp_dir tmp("corrupt");
  mock_hub hub(tmp.path);
  const fs::path cache = tmp.path / "cache";
  const minibert::hub_options o = options_for(hub, cache);

  SUBCASE("content that does not match the sha256 ETag") {
    const std::string repo = "acme/corrupt-bert", etag = hub.etag(repo, "main", "model.safetensors");
    const std::string msg = message_of([&] { minibert::hub_download(repo, "model.safetensors", o); });
    CHECK(contains(msg, "sha256"));
    CHECK(contains(msg, etag));
    CHECK(contains(msg, "GET http://localhost:"));
    CHECK_FALSE(fs::exists(storage(cache, repo) / "blobs" / etag));
    CHECK_FALSE(fs::exists(storage(cache, repo) / "blobs" / (etag + ".incomplete")));
    CHECK_FALSE(fs::exists(storage(cache, repo) / "snapshots" / hub.commit(repo, "main") / "model.safetensors"));
  }
  SUBCASE("a stale .incomplete that is not the file's beginning: rejected, removed, the next try succeeds") {
    const std::string repo = "acme/tiny-bert", etag = hub.etag(repo, "main", "model.safetensors");
    const fs::path blobs = storage(cache, repo) / "blobs";
    fs::create_directories(blobs);
    std::ofstream(blobs / (etag + ".incomplete"), std::ios::binary) << std::string(1000, 'x');
    CHECK(contains(message_of([&] { minibert::hub_download(repo, "model.safetensors", o); }), "sha256"));
    CHECK_FALSE(fs::exists(blobs / (etag + ".incomplete")));
    CHECK_FALSE(fs::exists(blobs / etag));
    CHECK(read_file(minibert::hub_download(repo, "model.safetensors", o)) ==
          hub.content(repo, "main", "model.safetensors"));
  }
  SUBCASE("a server that never sends the body: an error after the retries, the .incomplete kept for later") {
    const std::string repo = "acme/stalled-bert", etag = hub.etag(repo, "main", "model.safetensors");
    minibert::hub_options few = o;
    few.max_retries = 2;
    const std::string msg = message_of([&] { minibert::hub_download(repo, "model.safetensors", few); });
    CHECK(contains(msg, "GET http://localhost:"));
    CHECK(contains(msg, "0 of 1048576 bytes"));
    CHECK(hub.requests_to("/lfs/").size() == 3); // the first try and two resumes
    CHECK(fs::exists(storage(cache, repo) / "blobs" / (etag + ".incomplete")));
    CHECK_FALSE(fs::exists(storage(cache, repo) / "blobs" / etag));
  }
}

TEST_CASE("hub: HF_HUB_OFFLINE means no network: the cache, or an error naming the repository and the cache") {
  temp_dir tmp("offline");
  mock_hub hub(tmp.path);
  const fs::path cache = tmp.path / "cache";
  minibert::hub_options o = options_for(hub, cache);
  const fs::path snap = minibert::snapshot_download("acme/tiny-bert", o);
  const std::size_t before = hub.requests().size();

  scoped_env offline("HF_HUB_OFFLINE", "1");
  scoped_env cache_env("HF_HUB_CACHE", cache.string().c_str());
  scoped_env endpoint("HF_ENDPOINT", hub.endpoint().c_str());
  o.offline.reset(); // from the environment
  CHECK(minibert::snapshot_download("acme/tiny-bert", o) == snap);
  CHECK(minibert::hub_download("acme/tiny-bert", "config.json", o) == snap / "config.json");
  CHECK(minibert::resolve_model_path("acme/tiny-bert") == snap);

  const std::string msg = message_of([&] { minibert::snapshot_download("acme/slow-bert", o); });
  CHECK(contains(msg, "HF_HUB_OFFLINE"));
  CHECK(contains(msg, "'acme/slow-bert'"));
  CHECK(contains(msg, storage(cache, "acme/slow-bert").string()));
  CHECK(contains(message_of([&] { minibert::hub_download("acme/tiny-bert", "README.md", o); }), "HF_HUB_OFFLINE"));
  const std::string resolved = message_of([&] { minibert::resolve_model_path("acme/slow-bert"); });
  CHECK(contains(resolved, "HF_HUB_OFFLINE forbids downloading it"));
  CHECK(contains(resolved, "models--acme--slow-bert"));
  CHECK(hub.requests().size() == before); // not one request
}

TEST_CASE("hub: HTTP errors and timeouts name the URL and the status and say what they mean") {
  temp_dir tmp("errors");
  mock_hub hub(tmp.path);
  minibert::hub_options o = options_for(hub, tmp.path / "cache");

  const std::string gated = message_of([&] { minibert::snapshot_download("acme/gated-bert", o); });
  CHECK(contains(gated, "GET " + hub.endpoint() + "/api/models/acme/gated-bert/revision/main: HTTP 401"));
  CHECK(contains(gated, "a token is needed"));
  o.token = "hf_wrong";
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/gated-bert", o); }),
                 "token (HF_TOKEN) was refused"));
  o.token = "hf_mock_token";
  CHECK(fs::exists(minibert::snapshot_download("acme/gated-bert", o) / "model.safetensors"));
  o.token = "";

  const std::string missing = message_of([&] { minibert::snapshot_download("acme/nope", o); });
  CHECK(contains(missing, "/api/models/acme/nope/revision/main: HTTP 404"));
  CHECK(contains(missing, "the repository 'acme/nope' or its revision 'main' does not exist"));
  o.revision = "no-such-branch";
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/tiny-bert", o); }),
                 "HTTP 404: the revision 'no-such-branch' does not exist in 'acme/tiny-bert'"));
  o.revision = "main";
  const std::string entry = message_of([&] { minibert::hub_download("acme/tiny-bert", "nope.bin", o); });
  CHECK(contains(entry, "HEAD " + hub.endpoint() + "/acme/tiny-bert/resolve/main/nope.bin: HTTP 404"));
  CHECK(contains(entry, "'nope.bin'"));

  o.etag_timeout_s = 1; // the mock answers hang-bert after 4 s
  const auto t0 = std::chrono::steady_clock::now();
  const std::string slow = message_of([&] { minibert::hub_download("acme/hang-bert", "config.json", o); });
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(contains(slow, "HEAD " + hub.endpoint() + "/acme/hang-bert/resolve/main/config.json failed: Timeout"));

  o.endpoint = "http://127.0.0.1:1"; // nothing listens there
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/tiny-bert", o); }),
                 "GET http://127.0.0.1:1/api/models/acme/tiny-bert/revision/main failed"));
}

TEST_CASE("hub: HF_TOKEN goes to the endpoint's host only, never to the file store a redirect names") {
  temp_dir tmp("token");
  mock_hub hub(tmp.path);
  scoped_env home("HF_HOME", tmp.path.string().c_str()); // no token file of the user's
  scoped_env token("HF_TOKEN", "hf_mock_token");
  minibert::hub_options o = options_for(hub, tmp.path / "cache");
  o.token.reset(); // from the environment
  const fs::path snap = minibert::snapshot_download("acme/gated-bert", o);
  CHECK(read_file(snap / "model.safetensors") == hub.content("acme/gated-bert", "main", "model.safetensors"));
  int to_endpoint = 0, to_store = 0;
  for (const json& r : hub.requests()) {
    const std::string host = r["host"];
    CAPTURE(r.dump());
    if (contains(host, "127.0.0.1:")) {
      CHECK(r["authorization"] == "Bearer hf_mock_token");
      ++to_endpoint;
    } else {
      CHECK(contains(host, "localhost:"));
      CHECK(r["authorization"].is_null());
      ++to_store;
    }
  }
  CHECK(to_endpoint >= 3);
  CHECK(to_store == 1);
}

TEST_CASE("hub: names from the server or the user that would leave the cache are refused") {
  temp_dir tmp("names");
  mock_hub hub(tmp.path);
  const fs::path cache = tmp.path / "a" / "b" / "cache"; // "../../escape.txt" from a snapshot would stay in tmp
  minibert::hub_options o = options_for(hub, cache);
  const bool had_tmp_escape = fs::exists("/tmp/escape.txt");
  const auto refused = [&](const std::string& rev, const std::string& expect, bool one_file) {
    o.revision = rev;
    const std::string msg = message_of([&] {
      one_file ? (void)minibert::hub_download("acme/evil", "config.json", o)
               : (void)minibert::snapshot_download("acme/evil", o);
    });
    CAPTURE(msg);
    CHECK(contains(msg, "refusing it"));
    CHECK(contains(msg, expect));
  };
  refused("dotdot", "the file name '../../escape.txt' has an unsafe part (it is '..')", false);
  refused("absolute", "the file name '/tmp/escape.txt' is absolute", false);
  refused("etag", "the ETag '../../../escape'", true);
  refused("commit", "the commit '../../escape'", false);
  refused("commit", "the commit '../../escape'", true);
  for (const auto& e : fs::recursive_directory_iterator(tmp.path))
    CHECK_MESSAGE(!contains(e.path().filename().string(), "escape"), e.path());
  CHECK(fs::exists("/tmp/escape.txt") == had_tmp_escape);

  o.revision = "main";
  const std::string bad_json = message_of([&] { minibert::snapshot_download("acme/badjson", o); });
  CHECK(contains(bad_json, "GET " + hub.endpoint() + "/api/models/acme/badjson/revision/main"));
  CHECK(contains(bad_json, "not valid JSON"));
  o.revision = "nosha";
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/badjson", o); }), "no \"sha\" string"));
  o.revision = "badsibling";
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/badjson", o); }), "no \"rfilename\" string"));
  o.revision = "../../../x";
  CHECK(contains(message_of([&] { minibert::snapshot_download("acme/tiny-bert", o); }), "the revision '../../../x'"));
  o.revision = "main";
  CHECK(contains(message_of([&] { minibert::snapshot_download("../evil", o); }), "not a hub repository id"));
  CHECK(contains(message_of([&] { minibert::hub_download("acme/tiny-bert", "../../x", o); }), "refusing it"));
}

TEST_CASE("hub: concurrent downloads of one model leave one consistent cache") {
  temp_dir tmp("concurrent");
  mock_hub hub(tmp.path);
  const std::string repo = "acme/slow-bert", etag = hub.etag(repo, "main", "model.safetensors");
  const std::string content = hub.content(repo, "main", "model.safetensors");

  SUBCASE("threads of one process") {
    const fs::path cache = tmp.path / "threads";
    const minibert::hub_options o = options_for(hub, cache);
    std::vector<fs::path> got(4);
    std::vector<std::string> errors(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
      threads.emplace_back([&, i] {
        try {
          got[std::size_t(i)] = minibert::hub_download(repo, "model.safetensors", o);
        } catch (const std::exception& e) {
          errors[std::size_t(i)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < 4; ++i) {
      CHECK(errors[std::size_t(i)].empty());
      CHECK(got[std::size_t(i)] == got[0]);
    }
    CHECK(read_file(got[0]) == content);
    std::int64_t served = 0;
    for (const json& r : hub.requests_to("/lfs/")) served += r["sent"].get<std::int64_t>();
    CHECK(served == std::int64_t(content.size())); // downloaded once
    CHECK(names_in(storage(cache, repo) / "blobs").count(etag + ".incomplete") == 0);
  }
  SUBCASE("two sentiment_trainer processes") {
    const fs::path cache = tmp.path / "procs";
    const std::string cmd = "HF_HUB_CACHE=" + quoted(cache.string()) + " HF_ENDPOINT=" + hub.endpoint() +
                            " HF_HOME=" + quoted(tmp.path.string()) + " HF_TOKEN= " + quoted(MINIBERT_TEST_PROGRAM) +
                            " download " + repo + " 2>/dev/null";
    FILE* a = popen(cmd.c_str(), "r");
    FILE* b = popen(cmd.c_str(), "r");
    REQUIRE((a && b));
    char la[1024] = {0}, lb[1024] = {0};
    const bool ra = std::fgets(la, sizeof la, a) != nullptr, rb = std::fgets(lb, sizeof lb, b) != nullptr;
    CHECK(pclose(a) == 0);
    CHECK(pclose(b) == 0);
    CHECK((ra && rb));
    CHECK(std::string(la) == std::string(lb));
    const fs::path snap = storage(cache, repo) / "snapshots" / hub.commit(repo, "main");
    CHECK(std::string(la) == snap.string() + "\n");
    CHECK(read_file(snap / "model.safetensors") == content);
    std::int64_t served = 0;
    for (const json& r : hub.requests_to("/lfs/")) served += r["sent"].get<std::int64_t>();
    CHECK(served == std::int64_t(content.size()));
  }
  SUBCASE("huggingface_hub's lock on the blob (Python's filelock) and minibert's exclude each other") {
    const fs::path cache = tmp.path / "pylock";
    const fs::path lock = cache / ".locks" / minibert::hub::repo_folder_name(repo) / (etag + ".lock");
    fs::create_directories(lock.parent_path());
    const std::string cmd = quoted(python) + " " + quoted((tests_dir / "python" / "hf_hub_client.py").string()) +
                            " lock " + quoted(lock.string()) + " ";
    const auto next_line = [](FILE* f) {
      char line[64] = {0};
      return std::fgets(line, sizeof line, f) ? std::string(line) : std::string("(end)");
    };
    FILE* waiter = nullptr;
    {
      minibert::hub::file_lock ours(lock); // minibert holds it: Python waits
      waiter = popen((cmd + "0").c_str(), "r");
      REQUIRE(waiter != nullptr);
      REQUIRE(next_line(waiter) == "trying\n");
      pollfd p{fileno(waiter), POLLIN, 0};
      CHECK(poll(&p, 1, 300) == 0); // no "locked" while minibert holds it
    }
    CHECK(next_line(waiter) == "locked\n");
    CHECK(next_line(waiter) == "released\n");
    CHECK(pclose(waiter) == 0);

    FILE* holder = popen((cmd + "1.5").c_str(), "r"); // Python holds it: minibert's download waits
    REQUIRE(holder != nullptr);
    REQUIRE(next_line(holder) == "trying\n");
    REQUIRE(next_line(holder) == "locked\n");
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path p = minibert::hub_download(repo, "model.safetensors", options_for(hub, cache));
    CHECK(std::chrono::steady_clock::now() - t0 > 1s);
    CHECK(read_file(p) == content);
    CHECK(next_line(holder) == "released\n");
    CHECK(pclose(holder) == 0);
  }
}

TEST_CASE("hub: huggingface_hub finds minibert's downloads, and minibert finds huggingface_hub's offline") {
  temp_dir tmp("interop");
  mock_hub hub(tmp.path);
  const std::string repo = "acme/tiny-bert", client = (tests_dir / "python" / "hf_hub_client.py").string();
  const fs::path ours = tmp.path / "ours", theirs = tmp.path / "theirs";

  const fs::path snap = minibert::snapshot_download(repo, options_for(hub, ours));
  std::string files;
  for (const std::string& f : bert_files) files += " " + f;
  const command_result looked = run(quoted(python) + " " + quoted(client) + " lookup " + quoted(ours.string()) + " " +
                                    repo + files);
  REQUIRE(looked.code == 0);
  const json found = json::parse(looked.out);
  REQUIRE_MESSAGE(!found.contains("error"), looked.out);
  CHECK(fs::path(found["snapshot"].get<std::string>()) == snap);
  for (const std::string& f : bert_files) CHECK(fs::path(found["files"][f].get<std::string>()) == snap / f);

  const command_result fetched = run(quoted(python) + " " + quoted(client) + " download " + hub.endpoint() + " " +
                                     quoted(theirs.string()) + " " + repo + files);
  REQUIRE(fetched.code == 0);
  const fs::path their_snap = json::parse(fetched.out)["snapshot"].get<std::string>();
  {
    scoped_env offline("HF_HUB_OFFLINE", "1");
    scoped_env cache("HF_HUB_CACHE", theirs.string().c_str());
    minibert::hub_options o = options_for(hub, theirs);
    o.offline.reset();
    CHECK(minibert::snapshot_download(repo, o) == their_snap);
    CHECK(minibert::hub_download(repo, "model.safetensors", o) == their_snap / "model.safetensors");
    CHECK(minibert::resolve_model_path(repo) == their_snap);
  }
  // the very same cache, file for file: names, link targets, blobs, refs
  CHECK(their_snap.lexically_relative(theirs) == snap.lexically_relative(ours));
  CHECK(snapshot_links(their_snap) == snapshot_links(snap));
  CHECK(names_in(storage(theirs, repo) / "blobs") == names_in(storage(ours, repo) / "blobs"));
  CHECK(read_file(storage(theirs, repo) / "refs" / "main") == read_file(storage(ours, repo) / "refs" / "main"));
}

TEST_CASE("hub: resolve_model_path and sentiment_trainer download a hub id that is not cached") {
  temp_dir tmp("resolve");
  mock_hub hub(tmp.path);
  const fs::path cache = tmp.path / "cache";
  const std::string repo = "acme/tiny-bert", snap = (storage(cache, repo) / "snapshots" /
                                                     hub.commit(repo, "main")).string();

  SUBCASE("resolve_model_path, as from_pretrained uses it") {
    scoped_env cache_env("HF_HUB_CACHE", cache.string().c_str());
    scoped_env endpoint("HF_ENDPOINT", hub.endpoint().c_str());
    scoped_env offline("HF_HUB_OFFLINE", nullptr);
    scoped_env transformers_offline("TRANSFORMERS_OFFLINE", nullptr);
    scoped_env home("HF_HOME", tmp.path.string().c_str());
    CHECK(minibert::resolve_model_path(repo) == snap);
    CHECK(read_file(fs::path(snap) / "config.json") == hub.content(repo, "main", "config.json"));
    const std::size_t before = hub.requests().size();
    CHECK(minibert::resolve_model_path(repo) == snap); // cached now: no network
    CHECK(hub.requests().size() == before);
    // a snapshot without the weights (an interrupted download, or one limited to other files) is completed
    minibert::hub_options jsons = options_for(hub, cache);
    jsons.allow_patterns = {"*.json"};
    const fs::path partial = minibert::snapshot_download("acme/old-name", jsons);
    REQUIRE_FALSE(fs::exists(partial / "model.safetensors"));
    CHECK(minibert::resolve_model_path("acme/old-name") == partial);
    CHECK(read_file(partial / "model.safetensors") == hub.content(repo, "main", "model.safetensors"));

    const std::string msg = message_of([&] { minibert::resolve_model_path("acme/nope"); });
    CHECK(contains(msg, "local Hugging Face cache"));
    CHECK(contains(msg, "downloading it failed: GET " + hub.endpoint() +
                            "/api/models/acme/nope/revision/main: HTTP 404"));
  }
  SUBCASE("sentiment_trainer download [--revision] [--include]") {
    const std::string env = "HF_HUB_CACHE=" + quoted(cache.string()) + " HF_ENDPOINT=" + hub.endpoint() +
                            " HF_HOME=" + quoted(tmp.path.string()) + " HF_TOKEN= HF_HUB_OFFLINE= ";
    const std::string program = env + quoted(MINIBERT_TEST_PROGRAM) + " download ";
    const fs::path err = tmp.path / "stderr.txt";
    const command_result plain = run(program + repo + " 2>" + quoted(err.string()));
    CHECK(plain.code == 0);
    CHECK(plain.out == snap + "\n");
    std::vector<std::string> names;
    for (auto& [name, target] : snapshot_links(snap)) names.push_back(name);
    CHECK(names == bert_files);
    CHECK(contains(read_file(err), "hub: downloaded model.safetensors: 1.0 MB"));

    const command_result some = run(program + repo + " --revision v1 --include '*.json' --include vocab.txt,onnx/ " +
                                    "--cache-dir " + quoted((tmp.path / "other").string()) + " 2>/dev/null");
    CHECK(some.code == 0);
    const fs::path v1 = storage(tmp.path / "other", repo) / "snapshots" / hub.commit(repo, "v1");
    CHECK(some.out == v1.string() + "\n");
    names.clear();
    for (auto& [name, target] : snapshot_links(v1)) names.push_back(name);
    CHECK(names == std::vector<std::string>{"config.json", "onnx/model.onnx", "tokenizer_config.json", "vocab.txt"});

    const command_result missing = run(program + "acme/nope 2>&1");
    CHECK(missing.code == 1);
    CHECK(contains(missing.out, "HTTP 404"));
    const command_result none = run(program + repo + " --include '*.h5' 2>&1");
    CHECK(none.code == 1);
    CHECK(contains(none.out, "matches the patterns *.h5"));
  }
}

TEST_CASE("hub: a terminal gets a progress bar with size, rate and ETA") {
  temp_dir tmp("tty");
  mock_hub hub(tmp.path);
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE((grantpt(master) == 0 && unlockpt(master) == 0));
  FILE* terminal = std::fopen(ptsname(master), "w");
  REQUIRE(terminal != nullptr);
  minibert::hub_options o = options_for(hub, tmp.path / "cache");
  o.log = terminal;
  (void)minibert::hub_download("acme/slow-bert", "model.safetensors", o);
  std::fclose(terminal);
  fcntl(master, F_SETFL, O_NONBLOCK);
  std::string shown;
  char buf[4096];
  for (::ssize_t n; (n = read(master, buf, sizeof buf)) > 0;) shown.append(buf, std::size_t(n));
  close(master);
  CAPTURE(shown);
  CHECK(contains(shown, "\rmodel.safetensors ["));
  CHECK(contains(shown, "/1.0 MB "));
  CHECK(contains(shown, "MB/s ETA "));
  CHECK(contains(shown, "1.0 MB/1.0 MB"));
}

} // namespace test_hub_download
