// SPDX-License-Identifier: MIT
// bert_config (minibert/bert_config.hpp): the real bert-base-uncased config.json round trip (checked against the
// text Python's json module writes, as transformers does), defaults, one rejection per invalid value (the message
// names the file and field), and the id2label / label2id / num_labels rules.
#include <doctest/doctest.h>

#include <minibert/bert_config.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace test_bert_config { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using minibert::bert_config;
using nlohmann::json;

namespace {

const fs::path real_config = fs::path(MINIBERT_TEST_SHARED_DIR) / "data" / "bert-base-uncased" / "config.json";

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "io_fixtures" / ("bert_config_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const minibert::error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

json real_json() { return json::parse(slurp(real_config)); }

// Writes `j` as a config file and returns the error from_file gives for it (which must exist and name the file).
std::string file_error(const std::string& case_name, const std::string& text) {
  const fs::path p = fresh_dir(case_name) / "config.json";
  spit(p, text);
  const std::string msg = error_of([&] { bert_config::from_file(p); });
  REQUIRE_MESSAGE(!msg.empty(), case_name << ": accepted");
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "[minibert.bert_config]"), msg);
  return msg;
}

} // namespace

TEST_CASE("bert_config: bert-base-uncased loads with every field as in the file") {
  const json j = real_json();
  const auto c = bert_config::from_file(real_config);
  CHECK(c.vocab_size == j["vocab_size"].get<std::int64_t>());
  CHECK(c.hidden_size == j["hidden_size"].get<std::int64_t>());
  CHECK(c.num_hidden_layers == j["num_hidden_layers"].get<std::int64_t>());
  CHECK(c.num_attention_heads == j["num_attention_heads"].get<std::int64_t>());
  CHECK(c.intermediate_size == j["intermediate_size"].get<std::int64_t>());
  CHECK(std::string(minibert::hidden_activation_name(c.hidden_act)) == j["hidden_act"].get<std::string>());
  CHECK(c.hidden_dropout_prob == j["hidden_dropout_prob"].get<double>());
  CHECK(c.attention_probs_dropout_prob == j["attention_probs_dropout_prob"].get<double>());
  CHECK(c.max_position_embeddings == j["max_position_embeddings"].get<std::int64_t>());
  CHECK(c.type_vocab_size == j["type_vocab_size"].get<std::int64_t>());
  CHECK(c.initializer_range == j["initializer_range"].get<double>());
  CHECK(c.layer_norm_eps == j["layer_norm_eps"].get<double>());
  CHECK(c.pad_token_id == j["pad_token_id"].get<std::int64_t>());
  CHECK(c.use_cache == j["use_cache"].get<bool>());
  CHECK(c.architectures == j["architectures"].get<std::vector<std::string>>());
  CHECK(c.head_size() * c.num_attention_heads == c.hidden_size);
  // absent from the file: transformers' defaults
  CHECK_FALSE(c.classifier_dropout.has_value());
  CHECK(c.num_labels() == 2);
  CHECK(c.id2label == std::vector<std::string>{"LABEL_0", "LABEL_1"});
  CHECK(c.problem_type == minibert::problem_kind::unspecified);
  // fields BertConfig does not know stay in extra
  CHECK(c.extra.contains("gradient_checkpointing"));
  CHECK(c.extra.contains("transformers_version"));
  CHECK_FALSE(c.extra.contains("hidden_size"));
}

TEST_CASE("bert_config: round trip writes what transformers writes, unknown fields included") {
  const auto c = bert_config::from_file(real_config);
  const fs::path d = fresh_dir("roundtrip");
  c.save(d / "config.json");
  // transformers' save_pretrained: json.dumps(to_diff_dict(), indent=2, sort_keys=True) + "\n"; re-saving this file
  // adds BertConfig's only missing field, classifier_dropout (null). Let Python's json produce the expected text.
  const std::string cmd = std::string("'") + MINIBERT_TEST_PYTHON + "' -c 'import json,sys; j=json.load(open(sys.argv[1]));"
                          " j[\"classifier_dropout\"]=None; open(sys.argv[2],\"w\").write(json.dumps(j, indent=2, "
                          "sort_keys=True) + \"\\n\")' '" + real_config.string() + "' '" + (d / "expected.json").string() + "'";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
  CHECK(slurp(d / "config.json") == slurp(d / "expected.json"));
  // and reading our own output gives the same config back
  const auto again = bert_config::from_file(d / "config.json");
  CHECK(again.to_json() == c.to_json());
  json orig = real_json();
  orig["classifier_dropout"] = nullptr;
  CHECK(c.to_json() == orig);
}

TEST_CASE("bert_config: missing fields take transformers' BertConfig defaults") {
  // bert-base-uncased *is* BertConfig's default model: an empty config must equal it field by field
  const auto empty = bert_config::from_json(json::object(), "{}");
  const auto base = bert_config::from_file(real_config);
  json want = base.to_json();
  for (const char* k : {"architectures", "gradient_checkpointing", "transformers_version"}) want.erase(k);
  CHECK(empty.to_json() == want);
  CHECK(empty.position_embedding_type == "absolute");
}

TEST_CASE("bert_config: each invalid value is rejected naming the file and the field") {
  struct bad_case {
    const char* field;
    json value;
    const char* says;
  };
  const std::vector<bad_case> cases = {
      {"hidden_size", 770, "field 'num_attention_heads': hidden_size 770 is not a multiple"},
      {"num_attention_heads", 7, "field 'num_attention_heads'"},
      {"hidden_size", 0, "field 'hidden_size'"},
      {"vocab_size", -5, "field 'vocab_size'"},
      {"num_hidden_layers", 0, "field 'num_hidden_layers'"},
      {"intermediate_size", "3072", "field 'intermediate_size': expected an integer"},
      {"max_position_embeddings", 512.5, "field 'max_position_embeddings': expected an integer"},
      {"type_vocab_size", true, "field 'type_vocab_size': expected an integer"},
      {"hidden_dropout_prob", 1.0, "field 'hidden_dropout_prob'"},
      {"attention_probs_dropout_prob", -0.1, "field 'attention_probs_dropout_prob'"},
      {"classifier_dropout", 1.5, "field 'classifier_dropout'"},
      {"hidden_dropout_prob", "0.1", "field 'hidden_dropout_prob': expected a number"},
      {"hidden_act", "swish", "field 'hidden_act': unsupported activation 'swish'"},
      {"hidden_act", 3, "field 'hidden_act': expected a string"},
      {"position_embedding_type", "relative_key", "field 'position_embedding_type': 'relative_key' is not supported"},
      {"layer_norm_eps", 0, "field 'layer_norm_eps'"},
      {"initializer_range", -0.02, "field 'initializer_range'"},
      {"pad_token_id", 30522, "field 'pad_token_id'"},
      {"problem_type", "ranking", "field 'problem_type'"},
      {"use_cache", "yes", "field 'use_cache'"},
      {"architectures", "BertModel", "field 'architectures'"},
      {"model_type", "roberta", "field 'model_type'"},
      {"num_labels", 0, "field 'num_labels'"},
  };
  int i = 0;
  for (const auto& c : cases) {
    json j = real_json();
    j[c.field] = c.value;
    CAPTURE(c.field);
    CAPTURE(c.value.dump());
    const std::string msg = file_error("invalid_" + std::to_string(i++), j.dump(2));
    CHECK_MESSAGE(has(msg, c.says), msg);
  }
}

TEST_CASE("bert_config: a file that is not a JSON object, or not JSON, is rejected") {
  CHECK(has(file_error("array", "[1, 2, 3]"), "not a JSON object"));
  CHECK(has(file_error("malformed", "{\"hidden_size\": 768,"), "not valid JSON"));
  CHECK(has(error_of([] { bert_config::from_file("/nonexistent/config.json"); }), "/nonexistent/config.json"));
}

TEST_CASE("bert_config: JSON nested 100k deep, or a number past a double, is refused naming the file") {
  // fuzzing reproducers (a 200 KB file): an unknown field was copied into `extra` recursively, and a known field's
  // bad value was dump()ed recursively for the message; both overflowed the stack
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(has(file_error("deep_unknown", "{\"x\": " + deep + "}"), "JSON nested deeper than 256 levels"));
  CHECK(has(file_error("deep_known", "{\"hidden_size\": " + deep + "}"), "JSON nested deeper than 256 levels"));
  CHECK(has(file_error("deep_top", deep), "JSON nested deeper than 256 levels"));
  const std::string big = file_error("overflow", "{\"layer_norm_eps\": 1e999}");
  CHECK(has(big, "not valid JSON"));
  CHECK(has(big, "1e999"));
  // the limit is on nesting: 256 levels (the object plus 255 arrays) still load, and round-trip in `extra`
  json j = real_json();
  j["deep"] = json::parse(std::string(255, '[') + std::string(255, ']'));
  const fs::path p = fresh_dir("deep_ok") / "config.json";
  spit(p, j.dump());
  CHECK(bert_config::from_file(p).extra["deep"] == j["deep"]);
}

TEST_CASE("bert_config: a config whose parameters need terabytes is refused before anything is allocated") {
  // fuzzing reproducer: valid sizes (each under 2^31) whose products ask for terabytes; the model constructor tried
  // to allocate them. The limit is 2^40 bytes of float32 parameters; the message names the field and the bytes.
  struct bad {
    const char* field;
    std::int64_t value;
    const char* says;
  } cases[] = {
      {"vocab_size", 2'000'000'000, "6144"},                 // 2e9 x 768 floats: 6.1 TB
      {"num_hidden_layers", 2'000'000, "the encoder layers"}, // 2e6 bert-base layers: 57 TB
      {"hidden_size", 2'147'483'647, "more than 2^63 bytes"}, // hidden_size^2 alone passes int64
      {"intermediate_size", 2'000'000'000, "the encoder layers"},
  };
  int i = 0;
  for (const auto& c : cases) {
    CAPTURE(c.field);
    json j = real_json();
    j[c.field] = c.value;
    const std::string msg = file_error("huge_" + std::to_string(i++), j.dump());
    CHECK_MESSAGE(has(msg, std::string("field '") + c.field + "': " + std::to_string(c.value)), msg);
    CHECK_MESSAGE(has(msg, c.says), msg);
    CHECK_MESSAGE(has(msg, "limit is 1099511627776 bytes"), msg);
  }
  // just under the limit is accepted (validate() only; nothing is allocated here)
  json j = real_json();
  j["vocab_size"] = 300'000'000; // 300e6 x 768 x 4 = 0.92 TB, plus bert-base's layers
  const fs::path p = fresh_dir("huge_ok") / "config.json";
  spit(p, j.dump());
  CHECK(bert_config::from_file(p).vocab_size == 300'000'000);
}

TEST_CASE("bert_config: id2label, label2id and num_labels stay consistent") {
  json j = real_json();
  j["id2label"] = {{"0", "negative"}, {"1", "positive"}, {"2", "neutral"}};
  j["label2id"] = {{"negative", 0}, {"positive", 1}, {"neutral", 2}};
  j["problem_type"] = "single_label_classification";
  const auto c = bert_config::from_json(j, "labels");
  CHECK(c.num_labels() == 3);
  CHECK(c.id2label == std::vector<std::string>{"negative", "positive", "neutral"});
  CHECK(c.label2id().at("neutral") == 2);
  const json out = c.to_json();
  CHECK(out["id2label"] == j["id2label"]);
  CHECK(out["label2id"] == j["label2id"]);
  CHECK(out["problem_type"] == "single_label_classification");
  CHECK_FALSE(out.contains("num_labels"));

  SUBCASE("num_labels alone makes LABEL_i, written back as id2label/label2id") {
    json k = real_json();
    k["num_labels"] = 4;
    const auto c4 = bert_config::from_json(k, "n4");
    CHECK(c4.id2label == std::vector<std::string>{"LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"});
    CHECK(c4.to_json()["label2id"]["LABEL_3"] == 3);
    CHECK(bert_config::from_json(c4.to_json(), "again").num_labels() == 4);
  }
  SUBCASE("the 2-label default is not written, as transformers' to_diff_dict") {
    json k = real_json();
    k["num_labels"] = 2;
    CHECK_FALSE(bert_config::from_json(k, "n2").to_json().contains("id2label"));
  }
  SUBCASE("a conflicting num_labels is rejected") {
    json k = j;
    k["num_labels"] = 2;
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "src.json: field 'num_labels'"));
  }
  SUBCASE("label2id that is not the inverse is rejected") {
    json k = j;
    k["label2id"]["neutral"] = 0;
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "src.json: field 'label2id'"));
  }
  SUBCASE("label2id without id2label is rejected") {
    json k = real_json();
    k["label2id"] = {{"a", 0}, {"b", 1}};
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "field 'label2id'"));
  }
  SUBCASE("id2label keys must be 0..n-1, labels distinct") {
    json k = real_json();
    k["id2label"] = {{"0", "a"}, {"2", "b"}};
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "field 'id2label'"));
    k["id2label"] = {{"0", "a"}, {"1", "a"}};
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "field 'id2label'"));
    k["id2label"] = {{"0", "a"}, {"x", "b"}};
    CHECK(has(error_of([&] { bert_config::from_json(k, "src.json"); }), "field 'id2label'"));
  }
}

TEST_CASE("bert_config: unknown fields survive a round trip unchanged") {
  json j = real_json();
  j["custom_block"] = {{"nested", {1, 2.5, "three", nullptr}}, {"flag", false}};
  j["torch_dtype"] = "float32";
  j["label_smoothing"] = 0.0;
  const auto c = bert_config::from_json(j, "custom");
  const fs::path p = fresh_dir("unknown") / "config.json";
  c.save(p);
  const json back = json::parse(slurp(p));
  CHECK(back["custom_block"] == j["custom_block"]);
  CHECK(back["torch_dtype"] == "float32");
  CHECK(back["label_smoothing"].is_number_float());
  CHECK(back["gradient_checkpointing"] == false);
}

} // namespace test_bert_config
