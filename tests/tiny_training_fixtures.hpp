// SPDX-License-Identifier: MIT
#pragma once
// What the tests of sentiment_trainer train on: a tiny random-init BERT config and slices of ../shared's SST-2,
// written into a directory of the test's own.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <doctest/doctest.h>

namespace minibert::test {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `dir`/`name`: the header and the first n data rows of ../shared's sst2/`file`
inline std::filesystem::path sst2_slice(const std::filesystem::path& dir, const std::string& name,
                                        const std::string& file, std::size_t n) {
  std::filesystem::create_directories(dir);
  std::ifstream in(std::string(MINIBERT_TEST_SHARED_DIR) + "/data/sentiment/sst2/" + file);
  REQUIRE(in.good());
  const std::filesystem::path out = dir / name;
  std::ofstream o(out);
  std::string line;
  for (std::size_t i = 0; i <= n && std::getline(in, line); ++i) o << line << "\n";
  return out;
}

/// `dir`/tiny_config.json: one layer, hidden size 32, bert-base-uncased's vocabulary
inline std::filesystem::path tiny_config(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const std::filesystem::path p = dir / "tiny_config.json";
  std::ofstream(p) << R"({"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128, "hidden_act": "gelu"})";
  return p;
}

} // namespace minibert::test
