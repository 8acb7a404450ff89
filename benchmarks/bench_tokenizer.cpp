// SPDX-License-Identifier: MIT
// Tokenizer throughput on real corpora: SST-2 train_full (67,349 short lines) and the Amazon reviews (books + dvd,
// 4,000 long reviews), bert-base-uncased. Single thread (encode_into, one text after another) and batch on all
// cores (encode_batch, fresh encodings as HF's encodeBatch returns; encode_batch_into, buffers kept). items/s = lines/s, bytes/s = UTF-8 input bytes/s. The full encoding is produced
// (ids, type ids, masks, offsets), as HF's encodeBatch does. benchmarks/run_tokenizer_bench.sh runs this beside
// HF tokenizers (bench_tokenizer_hf.js) and prints the ratios.
// Correctness first: before timing, the ids of a few texts are checked against HF tokenizers' (the parity test
// checks every text of these corpora).
#include <benchmark/benchmark.h>

#include <cstdint>    // int32_t
#include <filesystem> // path
#include <fstream>    // ifstream
#include <string>     // string, getline
#include <thread>     // hardware_concurrency
#include <vector>     // vector

#include <nlohmann/json.hpp>

#include <minibert/tokenizer.hpp>

namespace {

const std::filesystem::path data_dir = std::filesystem::path(MINIBERT_BENCH_SHARED_DIR) / "data";

struct corpus {
  std::vector<std::string> texts;
  std::size_t bytes = 0;
};

// The same texts bench_tokenizer_hf.js reads: the first column of a TSV after its header; "text" of JSONL lines.
corpus read_corpus(const std::string& which) {
  corpus c;
  const auto add = [&](std::string s) {
    c.bytes += s.size();
    c.texts.push_back(std::move(s));
  };
  if (which == "sst2_train_full") {
    std::ifstream in(data_dir / "sentiment/sst2/train_full.tsv");
    std::string line;
    std::getline(in, line); // header
    while (std::getline(in, line))
      if (!line.empty()) add(line.substr(0, line.find('\t')));
  } else {
    for (const char* f : {"books.jsonl", "dvd.jsonl"}) {
      std::ifstream in(data_dir / "sentiment/amazon_reviews" / f);
      std::string line;
      while (std::getline(in, line))
        if (!line.empty()) add(nlohmann::json::parse(line).at("text").get<std::string>());
    }
  }
  if (c.texts.empty()) throw minibert::error("bench_tokenizer", "no texts read for " + which);
  return c;
}

const corpus& get_corpus(const std::string& which) {
  static const corpus sst2 = read_corpus("sst2_train_full");
  static const corpus amazon = read_corpus("amazon_reviews");
  return which == "sst2_train_full" ? sst2 : amazon;
}

const minibert::tokenizer& get_tokenizer() {
  static const minibert::tokenizer t = [] {
    minibert::tokenizer tok = minibert::tokenizer::from_pretrained(data_dir / "bert-base-uncased" / "tokenizer.json");
    // HF tokenizers' ids for these texts (the same in 0.20.3 and 0.23) (tests/test_tokenizer.cpp holds more)
    const std::vector<std::pair<const char*, std::vector<std::int32_t>>> expected = {
        {"Héllo wörld 😀 naïve café", {101, 7592, 2088, 100, 15743, 7668, 102}},
        {"a😀b [MASK] [mask] x[CLS]y", {101, 100, 103, 1031, 7308, 1033, 1060, 101, 1061, 102}},
        {"unaffable supercalifragilisticexpialidocious",
         {101, 14477, 20961, 3468, 3565, 9289, 10128, 29181, 24411, 4588, 10288, 19312, 21273, 10085, 6313, 102}},
    };
    for (const auto& [text, ids] : expected)
      if (tok.encode(text).ids != ids) throw minibert::error("bench_tokenizer", std::string("wrong ids for: ") + text);
    return tok;
  }();
  return t;
}

void BM_Tokenizer_EncodeSingleThread(benchmark::State& state, const std::string& which) {
  const minibert::tokenizer& tok = get_tokenizer();
  const corpus& c = get_corpus(which);
  const minibert::encode_options options;
  minibert::encoding e;
  std::size_t tokens = 0;
  for (auto _ : state) {
    for (const std::string& text : c.texts) {
      tok.encode_into(e, text, nullptr, options);
      tokens += e.size();
    }
    benchmark::DoNotOptimize(e.ids.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.texts.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_Tokenizer_EncodeBatch(benchmark::State& state, const std::string& which) {
  const minibert::tokenizer& tok = get_tokenizer();
  const corpus& c = get_corpus(which);
  const minibert::encode_options options;
  for (auto _ : state) {
    std::vector<minibert::encoding> out = tok.encode_batch(c.texts, options);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.texts.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes));
  state.counters["threads"] = static_cast<double>(std::thread::hardware_concurrency());
}

// The same, into encodings kept from one batch to the next (what a data loader does): no allocation in the loop.
void BM_Tokenizer_EncodeBatchInto(benchmark::State& state, const std::string& which) {
  const minibert::tokenizer& tok = get_tokenizer();
  const corpus& c = get_corpus(which);
  const minibert::encode_options options;
  std::vector<minibert::encoding> out;
  for (auto _ : state) {
    tok.encode_batch_into(out, c.texts, options);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.texts.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes));
}

void BM_Tokenizer_Load(benchmark::State& state) {
  const auto path = data_dir / "bert-base-uncased" / "tokenizer.json";
  for (auto _ : state) benchmark::DoNotOptimize(minibert::tokenizer::from_pretrained(path));
}

} // namespace

BENCHMARK_CAPTURE(BM_Tokenizer_EncodeSingleThread, sst2_train_full, std::string("sst2_train_full"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Tokenizer_EncodeSingleThread, amazon_reviews, std::string("amazon_reviews"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Tokenizer_EncodeBatch, sst2_train_full, std::string("sst2_train_full"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Tokenizer_EncodeBatch, amazon_reviews, std::string("amazon_reviews"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Tokenizer_EncodeBatchInto, sst2_train_full, std::string("sst2_train_full"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Tokenizer_EncodeBatchInto, amazon_reviews, std::string("amazon_reviews"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Tokenizer_Load)->Unit(benchmark::kMillisecond);
