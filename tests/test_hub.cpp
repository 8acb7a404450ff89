// SPDX-License-Identifier: MIT
// Finding a model by hub id in the local Hugging Face cache: minibert's resolve_model_path must pick the directory
// that huggingface_hub's snapshot_download(..., local_files_only=True) and transformers' cached_file pick (live, via
// tests/python/hub_reference.py), for the pretrained model install_deps.sh placed there and for caches made here
// with scripts/hf_cache_put.py (refs/main switching between two snapshots, HF_HUB_CACHE over HF_HOME); an id that
// is not cached fails in both, and minibert's message names the id and the folder it looked in.
#include <doctest/doctest.h>

#include <cstdio>     // popen, pclose, fgets
#include <cstdlib>    // setenv, unsetenv, getenv
#include <filesystem> // path, create_directories, remove_all, canonical
#include <fstream>    // ofstream
#include <string>     // string

#include <unistd.h> // getpid

#include <nlohmann/json.hpp>

#include <minibert/bert.hpp>

namespace test_hub { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path repo_root = fs::path(MINIBERT_TEST_SOURCE_DIR).parent_path();

std::string run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE_MESSAGE(p != nullptr, cmd);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  REQUIRE_MESSAGE(pclose(p) == 0, cmd << " failed:\n" << out);
  return out;
}

json python_lookup(const std::string& repo_id) {
  return json::parse(run(std::string("'") + MINIBERT_TEST_PYTHON + "' '" + MINIBERT_TEST_SOURCE_DIR +
                         "/python/hub_reference.py' '" + repo_id + "'"));
}

/// @brief a model folder with a config.json whose hidden_size tells the snapshots apart
fs::path make_model(const fs::path& dir, int hidden) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << json{{"model_type", "bert"}, {"hidden_size", hidden}}.dump();
  std::ofstream(dir / "vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n";
  return dir;
}

void cache_put(const fs::path& model, const std::string& repo_id, const std::string& revision) {
  run(std::string("'") + MINIBERT_TEST_PYTHON + "' '" + (repo_root / "scripts" / "hf_cache_put.py").string() + "' '" +
      model.string() + "' '" + repo_id + "' " + revision);
}

/// @brief sets an environment variable for one scope and restores the previous value
struct scoped_env {
  std::string name;
  std::string old;
  bool had;
  scoped_env(const char* n, const std::string& value) : name(n), had(std::getenv(n) != nullptr) {
    if (had) old = std::getenv(n);
    setenv(n, value.c_str(), 1);
  }
  ~scoped_env() { had ? (void)setenv(name.c_str(), old.c_str(), 1) : (void)unsetenv(name.c_str()); }
};

fs::path same_dir(const fs::path& p) { return fs::canonical(p); }

} // namespace

TEST_CASE("hub: the installed pretrained model resolves where huggingface_hub and transformers find it") {
  const std::string id = "sentence-transformers/all-MiniLM-L6-v2";
  const json ref = python_lookup(id);
  REQUIRE_MESSAGE(!ref.contains("error"), id << " is not in the hub cache: run scripts/install_deps.sh");
  const fs::path mine = minibert::resolve_model_path(id);
  CHECK(same_dir(mine) == same_dir(ref["snapshot_download"].get<std::string>()));
  CHECK(same_dir(mine / "config.json") == same_dir(fs::path(ref["config_json"].get<std::string>())));
  CHECK(fs::is_regular_file(mine / "model.safetensors"));
}

TEST_CASE("hub: refs/main picks the snapshot, HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub") {
  const fs::path tmp = fs::temp_directory_path() / ("minibert_hub_" + std::to_string(getpid()));
  fs::remove_all(tmp);
  const std::string id = "org-x/tiny-bert";
  const std::string rev_a(40, 'a'), rev_b(40, 'b');
  const fs::path cache = tmp / "home" / "hub";
  scoped_env home("HF_HOME", (tmp / "home").string());
  scoped_env cache_env("HF_HUB_CACHE", cache.string());

  cache_put(make_model(tmp / "a", 24), id, rev_a);
  cache_put(make_model(tmp / "b", 36), id, rev_b); // refs/main now names rev_b
  json ref = python_lookup(id);
  REQUIRE(!ref.contains("error"));
  CHECK(same_dir(minibert::resolve_model_path(id)) == same_dir(ref["snapshot_download"].get<std::string>()));
  CHECK(minibert::resolve_model_path(id).filename() == rev_b);
  CHECK(minibert::bert_config::from_file(minibert::resolve_model_path(id) / "config.json").hidden_size == 36);

  cache_put(tmp / "a", id, rev_a); // back to rev_a: the blobs are shared, only refs/main changes
  ref = python_lookup(id);
  CHECK(minibert::resolve_model_path(id).filename() == rev_a);
  CHECK(same_dir(minibert::resolve_model_path(id)) == same_dir(ref["snapshot_download"].get<std::string>()));

  {
    scoped_env other("HF_HUB_CACHE", (tmp / "elsewhere").string()); // HF_HUB_CACHE over HF_HOME/hub
    CHECK(python_lookup(id).contains("error"));
    try {
      (void)minibert::resolve_model_path(id);
      FAIL("an id missing from HF_HUB_CACHE resolved");
    } catch (const minibert::error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("'" + id + "'") != std::string::npos);
      CHECK(msg.find((tmp / "elsewhere" / "models--org-x--tiny-bert").string()) != std::string::npos);
    }
  }
  fs::remove_all(tmp);
}

TEST_CASE("hub: a model that is not cached is an error in minibert and in huggingface_hub") {
  const std::string id = "no-such-org/no-such-model";
  CHECK(python_lookup(id).contains("error"));
  CHECK_THROWS_WITH_AS(minibert::resolve_model_path(id),
                       doctest::Contains("models--no-such-org--no-such-model"), minibert::error);
}

TEST_CASE("hub: a path that is neither a directory nor a hub id says so") {
  CHECK(minibert::is_hub_repo_id("bert-base-uncased"));
  CHECK(minibert::is_hub_repo_id("sentence-transformers/all-MiniLM-L6-v2"));
  CHECK_FALSE(minibert::is_hub_repo_id("/abs/path/model"));
  CHECK_FALSE(minibert::is_hub_repo_id("./model"));
  CHECK_FALSE(minibert::is_hub_repo_id("a--b/c"));
  CHECK_FALSE(minibert::is_hub_repo_id("org/name/extra"));
  CHECK_THROWS_WITH_AS(minibert::resolve_model_path("/no/such/model/dir"),
                       "[minibert.hub] '/no/such/model/dir' is not a model directory (no such directory) and not a hub "
                       "id (\"name\" or \"org/name\")",
                       minibert::error);
  CHECK_THROWS_WITH_AS(minibert::resolve_model_path(MINIBERT_TEST_SOURCE_DIR "/test_hub.cpp"),
                       doctest::Contains("(it is a file)"), minibert::error);
}

} // namespace test_hub
