// SPDX-License-Identifier: MIT
#pragma once
// What the tests of sentiment_trainer train on: a tiny random-init BERT config and slices of ../shared's SST-2,
// written into a directory of the test's own.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h> // getpid

#include <doctest/doctest.h>

namespace minibert::test {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// replaces `path` with `text` atomically: the cases of one test program run as parallel CTest processes that
/// write the same fixture files, and one must never read another's half-written copy
inline void write_fixture(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp-" + std::to_string(::getpid());
  std::ofstream(tmp, std::ios::binary) << text;
  std::filesystem::rename(tmp, path);
}

/// `dir`/`name`: the header and the first n data rows of ../shared's sst2/`file`
inline std::filesystem::path sst2_slice(const std::filesystem::path& dir, const std::string& name,
                                        const std::string& file, std::size_t n) {
  std::filesystem::create_directories(dir);
  std::ifstream in(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/sentiment/sst2/" + file);
  REQUIRE(in.good());
  const std::filesystem::path out = dir / name;
  std::string text, line;
  for (std::size_t i = 0; i <= n && std::getline(in, line); ++i) text += line + "\n";
  write_fixture(out, text);
  return out;
}

/// `dir`/tiny_config.json: one layer, hidden size 32, bert-base-uncased's vocabulary
inline std::filesystem::path tiny_config(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const std::filesystem::path p = dir / "tiny_config.json";
  write_fixture(p, R"({"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128, "hidden_act": "gelu"})");
  return p;
}

} // namespace minibert::test
