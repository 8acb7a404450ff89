// SPDX-License-Identifier: MIT
// torch_generator, torch_uniform, torch_normal and torch_randperm against live torch 1.13 (bit for bit), the
// classifier head from_pretrained draws against transformers', and the trainer's epoch order against the batches of
// transformers' Trainer (tests/python/torch_random_reference.py). Every comparison is exact: these are the same
// integer draws and the same float operations in the same order, so one differing bit is a failure.
#include <cstdio>     // printf
#include <cstdlib>    // system
#include <cstring>    // memcpy
#include <filesystem> // path
#include <fstream>    // ifstream
#include <map>        // map (reference cache)
#include <string>     // string
#include <vector>     // vector

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <minibert/bert.hpp>

namespace test_torch_random { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using namespace minibert;

namespace {

const std::string model_id = "sentence-transformers/all-MiniLM-L6-v2";

// the reference JSON for one ATEN_CPU_CAPABILITY ("" = torch's own choice), produced once per run
const nlohmann::json& reference(const std::string& capability) {
  static std::map<std::string, nlohmann::json> cache;
  if (auto it = cache.find(capability); it != cache.end()) return it->second;
  const fs::path out = fs::path(MINIBERT_TEST_BINARY_DIR) / ("torch_random_ref" + capability + ".json");
  const bool full = capability.empty(); // the model and Trainer parts do not depend on the capability
  const std::string cmd = std::string("HF_HUB_OFFLINE=1 ") + (full ? "" : "ATEN_CPU_CAPABILITY=" + capability + " ") +
                          MINIBERT_TEST_PYTHON + " " + MINIBERT_TEST_SOURCE_DIR + "/python/torch_random_reference.py " +
                          out.string() + (full ? "" : " --model '' --rows 0") + " > " + out.string() + ".log 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
  std::ifstream in(out);
  return cache[capability] = nlohmann::json::parse(in);
}

template <class T> std::vector<T> from_hex(const std::string& h) {
  std::vector<unsigned char> bytes(h.size() / 2);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = (unsigned char)std::stoi(h.substr(2 * i, 2), nullptr, 16);
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// number of elements whose bits differ (NaN-safe), with the first mismatch printed
template <class T> std::size_t bit_mismatches(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what << ": " << got.size() << " vs " << want.size() << " elements");
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (bad++ == 0) MESSAGE(what << ": first mismatch at " << i << ": " << double(got[i]) << " vs torch " << double(want[i]));
    }
  return bad;
}

} // namespace

TEST_CASE("torch_generator: mt19937 stream as torch.Generator.manual_seed seeds it (int64 random_ = random64 & 2^63-1)") {
  const auto& r = reference("");
  for (std::uint64_t seed : {std::uint64_t(42), (std::uint64_t(1) << 40) + 5}) {
    torch_generator g(seed);
    std::vector<std::int64_t> got(2000);
    for (auto& x : got) x = std::int64_t(g.random64() & 0x7fffffffffffffffull);
    CHECK(bit_mismatches(got, from_hex<std::int64_t>(r["random64"][std::to_string(seed)]), "random64") == 0);
  }
  // state() round trip: a restored generator continues the same stream
  torch_generator a(7);
  for (int i = 0; i < 700; ++i) a.random();
  torch_generator b;
  b.set_state(a.state());
  for (int i = 0; i < 1000; ++i) REQUIRE(a.random() == b.random());
}

TEST_CASE_TEMPLATE("torch_uniform: uniform_(-0.3, 0.7) bit-exact", T, float, double) {
  const auto& r = reference("");
  torch_generator g(7);
  std::vector<T> got(1000);
  torch_uniform(got.data(), 1000, -0.3, 0.7, g);
  const char* name = std::is_same_v<T, float> ? "float32" : "float64";
  CHECK(bit_mismatches(got, from_hex<T>(r["uniform"][name]), std::string("uniform ") + name) == 0);
}

TEST_CASE_TEMPLATE("torch_normal: normal_(0.1, 0.02) at sizes 1, 7, 16, 17, 33, 768 in sequence, bit-exact", T, float, double) {
  const char* name = std::is_same_v<T, float> ? "float32" : "float64";
  for (auto [capability, kernel] : {std::pair<std::string, torch_normal_kernel>{"", torch_normal_kernel::avx2},
                                    {"default", torch_normal_kernel::scalar}}) {
    CAPTURE(capability);
    const auto& r = reference(capability);
    torch_generator g(42); // one generator through all sizes: the cached Box-Muller sample carries over
    for (std::int64_t n : {1, 7, 16, 17, 33, 768}) {
      std::vector<T> got(std::size_t(n), T(0));
      torch_normal(got.data(), n, 0.1, 0.02, g, kernel);
      CHECK(bit_mismatches(got, from_hex<T>(r["normal"][name][std::to_string(n)]),
                           std::string("normal ") + name + " n=" + std::to_string(n) + " capability '" + capability + "'") == 0);
    }
  }
  // the two kernels really differ for floats (so the test above can tell them apart)
  if constexpr (std::is_same_v<T, float>) {
    torch_generator a(42), b(42);
    std::vector<float> x(768), y(768);
    torch_normal(x.data(), 768, 0.0, 0.02, a, torch_normal_kernel::avx2);
    torch_normal(y.data(), 768, 0.0, 0.02, b, torch_normal_kernel::scalar);
    CHECK(x != y);
  }
  torch_generator g(1);
  T v;
  {
    bool threw = false;
    try {
      torch_normal(&v, 1, 0.0, -1.0, g);
    } catch (const minibert::error& e) {
      threw = std::string(e.what()).find("torch_normal") != std::string::npos;
    }
    CHECK(threw);
  }
}

TEST_CASE("torch_randperm: torch.randperm(n, generator) bit-exact") {
  const auto& r = reference("");
  for (std::int64_t n : {0, 1, 2, 10, 100, 9600, 100000}) {
    torch_generator g(std::uint64_t(1000 + n));
    CHECK(bit_mismatches(torch_randperm(n, g), from_hex<std::int64_t>(r["randperm"][std::to_string(n)]),
                         "randperm " + std::to_string(n)) == 0);
  }
}

TEST_CASE("from_pretrained: the new classifier head is transformers' after set_seed(42), bit for bit") {
  const auto& r = reference("");
  for (int labels : {2, 3}) {
    generator gen(42);
    auto m = from_pretrained<bert_for_sequence_classification<float>>(model_id, gen, nullptr, [&](bert_config& c) {
      c.id2label.clear();
      for (int i = 0; i < labels; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
    });
    const auto w = m->classifier.weight.value().to_vector(), b = m->classifier.bias.value().to_vector();
    const auto& ref = r["classifier"][std::to_string(labels)];
    CHECK(bit_mismatches(w, from_hex<float>(ref["weight"]), "classifier.weight, " + std::to_string(labels) + " labels") == 0);
    CHECK(bit_mismatches(b, from_hex<float>(ref["bias"]), "classifier.bias") == 0);
    // negative control: another seed gives another head
    generator other(43);
    auto m2 = from_pretrained<bert_for_sequence_classification<float>>(model_id, other, nullptr, [&](bert_config& c) {
      c.id2label.clear();
      for (int i = 0; i < labels; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
    });
    CHECK(m2->classifier.weight.value().to_vector() != w);
  }
}

TEST_CASE("epoch_batches: transformers' Trainer batches (SeedableRandomSampler, seed + epoch) for 9,600 rows") {
  const auto& r = reference("");
  CHECK(r["sampler"].get<std::string>() == "SeedableRandomSampler");
  tokenized_dataset td;
  td.ids.assign(9600, std::vector<std::int32_t>{101, 102});
  td.type_ids = td.ids;
  td.labels.assign(9600, 0);
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    CAPTURE(epoch);
    const auto got = epoch_batches(td, 32, true, 42, epoch, false);
    const auto& want = r["epochs"][epoch];
    REQUIRE(got.size() == want.size());
    std::size_t bad = 0;
    for (std::size_t b = 0; b < got.size(); ++b) bad += std::vector<std::size_t>(got[b]) != want[b].get<std::vector<std::size_t>>();
    CHECK(bad == 0);
    // negative control: the neighbouring epoch's order is not this one
    const auto next = epoch_batches(td, 32, true, 42, epoch + 1, false);
    CHECK(next[0] != want[0].get<std::vector<std::size_t>>());
  }
}

TEST_CASE("collate: padding to the longest row, or up to a multiple of pad_to_multiple_of (DataCollatorWithPadding)") {
  tokenized_dataset td;
  td.ids = {{101, 7, 8, 102}, {101, 5, 6, 9, 102}, {101, 102}};
  td.type_ids = {{0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0}};
  td.labels = {1, 0, 1};
  td.pad_id = 0;
  const std::vector<std::size_t> rows{0, 2, 1};
  for (const auto& [multiple, expected] : std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 5}, {1, 5}, {5, 5},
                                                                                            {8, 8}, {3, 6}}) {
    CAPTURE(multiple);
    const model_batch<> mb = collate(td, rows, multiple);
    REQUIRE(mb.inputs.input_ids.shape() == shape{3, expected});
    const auto ids = mb.inputs.input_ids.to_vector(), mask = mb.inputs.attention_mask.to_vector();
    const auto positions = mb.inputs.position_ids.to_vector();
    for (std::int64_t b = 0; b < 3; ++b) {
      const auto& row = td.ids[rows[std::size_t(b)]];
      for (std::int64_t j = 0; j < expected; ++j) {
        const bool real = j < std::int64_t(row.size());
        CHECK(ids[std::size_t(b * expected + j)] == (real ? row[std::size_t(j)] : 0));
        CHECK(mask[std::size_t(b * expected + j)] == (real ? 1 : 0));
        CHECK(positions[std::size_t(b * expected + j)] == j);
      }
    }
  }
}

} // namespace test_torch_random
