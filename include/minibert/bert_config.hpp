// SPDX-License-Identifier: MIT
#pragma once
/* minibert::bert_config: the fields of Hugging Face transformers' BertConfig (plus the PretrainedConfig label
   fields a classifier needs), read from and written to config.json the way transformers does: same defaults, same
   derivation of num_labels from id2label, sorted 2-space JSON. Unknown fields are kept and written back. */

#include <cmath>      // isfinite
#include <cstdint>    // int64_t, INT32_MAX
#include <filesystem> // path
#include <fstream>    // ifstream
#include <iterator>   // istreambuf_iterator
#include <map>        // map (label2id)
#include <optional>   // optional (nullable fields)
#include <string>     // string
#include <utility>    // pair, move
#include <vector>     // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/checked_math.hpp>
#include <minibert/detail/json_limits.hpp>
#include <minibert/error.hpp>
#include <minibert/io/atomic_file.hpp>

namespace minibert {

/// @brief BertConfig.hidden_act values minibert implements
enum class hidden_activation { gelu, gelu_new, gelu_pytorch_tanh, relu };
/// @brief PretrainedConfig.problem_type (unspecified = JSON null: transformers infers it from num_labels and labels)
enum class problem_kind { unspecified, single_label_classification, multi_label_classification, regression };

/// @brief BERT hyper-parameters and label maps. Defaults are transformers' BertConfig() defaults.
struct bert_config {
  std::int64_t vocab_size = 30522;
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t intermediate_size = 3072;
  hidden_activation hidden_act = hidden_activation::gelu;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  std::int64_t max_position_embeddings = 512;
  std::int64_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  std::optional<std::int64_t> pad_token_id = 0;
  std::string position_embedding_type = "absolute"; ///< only "absolute" is supported
  bool use_cache = true;                            ///< decoder-only; kept for round trips
  std::optional<double> classifier_dropout;         ///< null: the head uses hidden_dropout_prob
  std::vector<std::string> id2label = {"LABEL_0", "LABEL_1"}; ///< label name of class id i; size = num_labels
  problem_kind problem_type = problem_kind::unspecified;
  std::optional<std::vector<std::string>> architectures;
  nlohmann::json extra = nlohmann::json::object(); ///< every other field, written back unchanged

  /// @brief number of classes of a classification head (= id2label.size())
  std::int64_t num_labels() const { return static_cast<std::int64_t>(id2label.size()); }
  /// @brief transformers' num_labels setter: resets the labels to LABEL_0..LABEL_{n-1} unless already n of them
  /// @throws minibert::error("bert_config", ...) if n < 1
  void set_num_labels(std::int64_t n);
  /// @brief the inverse of id2label
  std::map<std::string, std::int64_t> label2id() const;
  /// @brief per-head size, hidden_size / num_attention_heads
  std::int64_t head_size() const { return hidden_size / num_attention_heads; }

  /// @brief checks every value (sizes positive, heads divide hidden_size, dropouts in [0,1), ...)
  /// @throws minibert::error("bert_config", "<source>: field '<name>': ...") on the first bad value
  void validate(const std::string& source = "bert_config") const;

  /// @brief parses a config.json object. Missing fields take transformers' defaults, as transformers does.
  /// @param source_name names the origin in error messages (usually the file path)
  /// @throws minibert::error("bert_config", "<source>: [field '<name>': ]...") if j is not an object, model_type
  ///   is not "bert", a field has the wrong JSON type, a value is impossible, or the label fields disagree
  static bert_config from_json(const nlohmann::json& j, const std::string& source_name);
  /// @brief reads and parses a config.json file
  /// @throws minibert::error("bert_config", "<path>: ...") if unreadable or not valid JSON, and from_json's errors
  static bert_config from_file(const std::filesystem::path& path);
  /// @brief the JSON transformers' save_pretrained would write (use_diff: BERT fields always, the label maps only
  /// when not the 2-label default, problem_type and architectures only when set) plus the extra fields
  nlohmann::json to_json() const;
  /// @brief to_json() as text: 2-space indent, sorted keys, non-ASCII escaped, trailing newline (transformers' form)
  /// @throws minibert::error("bert_config", ...) if a string is not valid UTF-8
  std::string to_json_string() const;
  /// @brief validates, then writes to_json_string() atomically
  /// @throws minibert::error("bert_config", ...) if invalid; minibert::error("atomic_write", ...) on I/O failure
  void save(const std::filesystem::path& path) const;
};

/// @brief "gelu", "gelu_new", ... (the config.json spelling)
inline const char* hidden_activation_name(hidden_activation a);
/// @brief "single_label_classification", ...; nullptr for unspecified
inline const char* problem_kind_name(problem_kind p);

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline const char* hidden_activation_name(hidden_activation a) {
  switch (a) {
  case hidden_activation::gelu: return "gelu";
  case hidden_activation::gelu_new: return "gelu_new";
  case hidden_activation::gelu_pytorch_tanh: return "gelu_pytorch_tanh";
  case hidden_activation::relu: return "relu";
  }
  return "?";
}

inline const char* problem_kind_name(problem_kind p) {
  switch (p) {
  case problem_kind::single_label_classification: return "single_label_classification";
  case problem_kind::multi_label_classification: return "multi_label_classification";
  case problem_kind::regression: return "regression";
  case problem_kind::unspecified: break;
  }
  return nullptr;
}

inline void bert_config::set_num_labels(std::int64_t n) {
  if (n < 1) throw error("bert_config", "num_labels must be at least 1, got " + std::to_string(n));
  if (num_labels() == n) return;
  id2label.clear();
  for (std::int64_t i = 0; i < n; ++i) id2label.push_back("LABEL_" + std::to_string(i));
}

inline std::map<std::string, std::int64_t> bert_config::label2id() const {
  std::map<std::string, std::int64_t> m;
  for (std::size_t i = 0; i < id2label.size(); ++i) m.emplace(id2label[i], static_cast<std::int64_t>(i));
  return m;
}

namespace detail {

[[noreturn]] inline void config_fail(const std::string& source, const std::string& field, const std::string& msg) {
  throw error("bert_config", source + ": field '" + field + "': " + msg);
}

// the largest size we accept: keeps every product of two sizes inside int64
inline constexpr std::int64_t config_max_size = INT32_MAX;

/// Most bytes of float32 parameters a config may ask for: 2^40 (1 TiB). bert-large needs 1.3 GB; the cap keeps a
/// hostile config.json from asking for terabytes (validate() checks it before anything is allocated).
inline constexpr std::int64_t config_max_parameter_bytes = std::int64_t{1} << 40;

// Refuses a config whose float32 parameters would need more than config_max_parameter_bytes, naming the field with
// the largest value in the largest part of the model. Sizes are in 1 .. 2^31-1 (checked before), but sums and
// triple products can pass int64: every step is overflow-checked.
inline void check_parameter_bytes(std::int64_t V, std::int64_t P, std::int64_t TV, std::int64_t H, std::int64_t L,
                                  std::int64_t I, std::int64_t labels, const std::string& src) {
  struct part {
    const char* what;
    std::int64_t params;                 // -1: past int64
    std::pair<const char*, std::int64_t> fields[3];
  };
  auto mul = [](std::int64_t a, std::int64_t b) { return a < 0 || b < 0 || !mul_checked(a, b, a) ? -1 : a; };
  auto add = [](std::int64_t a, std::int64_t b) { return a < 0 || b < 0 || !add_checked(a, b, a) ? -1 : a; };
  // per layer: Q, K, V, attention output (H x H + H each), 2 LayerNorms (2H each), intermediate (H x I + I), output (I x H + H)
  const std::int64_t per_layer = add(add(mul(4, add(mul(H, H), H)), mul(4, H)), add(mul(2, mul(H, I)), add(I, H)));
  const part parts[] = {
      {"the word embeddings (vocab_size x hidden_size)", mul(V, H), {{"vocab_size", V}, {"hidden_size", H}, {"", 0}}},
      {"the position embeddings (max_position_embeddings x hidden_size)", mul(P, H),
       {{"max_position_embeddings", P}, {"hidden_size", H}, {"", 0}}},
      {"the token type embeddings (type_vocab_size x hidden_size)", mul(TV, H),
       {{"type_vocab_size", TV}, {"hidden_size", H}, {"", 0}}},
      {"the encoder layers (num_hidden_layers x (4 hidden_size^2 + 2 hidden_size x intermediate_size + ...))",
       mul(L, per_layer), {{"num_hidden_layers", L}, {"hidden_size", H}, {"intermediate_size", I}}},
      {"the pooler and classifier (hidden_size x (hidden_size + num_labels))", add(mul(H, add(H, labels)), add(H, labels)),
       {{"hidden_size", H}, {"", 0}, {"", 0}}},
  };
  std::int64_t total = 0;
  const part* largest = &parts[0];
  for (const part& p : parts) {
    total = add(total, p.params);
    if (p.params < 0 || (largest->params >= 0 && p.params > largest->params)) largest = &p;
  }
  const std::int64_t bytes = mul(total, 4);
  if (bytes >= 0 && bytes <= config_max_parameter_bytes) return;
  const std::pair<const char*, std::int64_t>* field = &largest->fields[0];
  for (const auto& f : largest->fields)
    if (f.second > field->second) field = &f;
  const std::string need = bytes < 0 ? "more than 2^63 bytes" : std::to_string(bytes) + " bytes";
  config_fail(src, field->first,
              std::to_string(field->second) + " makes the model's float32 parameters need " + need + ", mostly for " +
                  largest->what + "; minibert's limit is " + std::to_string(config_max_parameter_bytes) +
                  " bytes (1 TiB)");
}

inline std::int64_t config_int(const nlohmann::json& v, const std::string& src, const char* field) {
  if (!v.is_number_integer()) config_fail(src, field, "expected an integer, got " + v.dump());
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    config_fail(src, field, "integer " + v.dump() + " is too large");
  return v.get<std::int64_t>();
}
inline double config_number(const nlohmann::json& v, const std::string& src, const char* field) {
  if (!v.is_number()) config_fail(src, field, "expected a number, got " + v.dump());
  return v.get<double>();
}
inline const std::string& config_string(const nlohmann::json& v, const std::string& src, const char* field) {
  if (!v.is_string()) config_fail(src, field, "expected a string, got " + v.dump());
  return v.get_ref<const std::string&>();
}

} // namespace detail

inline void bert_config::validate(const std::string& src) const {
  using detail::config_fail;
  const std::pair<const char*, std::int64_t> sizes[] = {
      {"vocab_size", vocab_size},           {"hidden_size", hidden_size},
      {"num_hidden_layers", num_hidden_layers}, {"num_attention_heads", num_attention_heads},
      {"intermediate_size", intermediate_size}, {"max_position_embeddings", max_position_embeddings},
      {"type_vocab_size", type_vocab_size}};
  for (const auto& [name, v] : sizes)
    if (v < 1 || v > detail::config_max_size)
      config_fail(src, name, "must be a positive size (1 .. 2^31-1), got " + std::to_string(v));
  detail::check_parameter_bytes(vocab_size, max_position_embeddings, type_vocab_size, hidden_size, num_hidden_layers,
                                intermediate_size, num_labels(), src);
  if (hidden_size % num_attention_heads != 0)
    config_fail(src, "num_attention_heads", "hidden_size " + std::to_string(hidden_size) +
                                                " is not a multiple of num_attention_heads " +
                                                std::to_string(num_attention_heads));
  const std::pair<const char*, double> probs[] = {{"hidden_dropout_prob", hidden_dropout_prob},
                                                  {"attention_probs_dropout_prob", attention_probs_dropout_prob},
                                                  {"classifier_dropout", classifier_dropout.value_or(0.0)}};
  for (const auto& [name, v] : probs)
    if (!(v >= 0.0 && v < 1.0)) config_fail(src, name, "dropout probability must be in [0, 1), got " + nlohmann::json(v).dump());
  if (!(std::isfinite(layer_norm_eps) && layer_norm_eps > 0.0))
    config_fail(src, "layer_norm_eps", "must be positive, got " + nlohmann::json(layer_norm_eps).dump());
  if (!(std::isfinite(initializer_range) && initializer_range >= 0.0))
    config_fail(src, "initializer_range", "must be non-negative, got " + nlohmann::json(initializer_range).dump());
  if (pad_token_id && (*pad_token_id < 0 || *pad_token_id >= vocab_size))
    config_fail(src, "pad_token_id", std::to_string(*pad_token_id) + " is outside the vocabulary [0, " +
                                         std::to_string(vocab_size) + ")");
  if (position_embedding_type != "absolute")
    config_fail(src, "position_embedding_type", "'" + position_embedding_type +
                                                    "' is not supported (minibert implements only \"absolute\")");
  if (id2label.empty()) config_fail(src, "id2label", "needs at least one label");
  if (label2id().size() != id2label.size()) config_fail(src, "id2label", "label names must be distinct");
}

inline bert_config bert_config::from_json(const nlohmann::json& j, const std::string& src) {
  using detail::config_fail;
  if (!j.is_object()) throw error("bert_config", src + ": not a JSON object");
  bert_config c;
  c.extra = nlohmann::json::object();
  const nlohmann::json* id2label = nullptr;
  const nlohmann::json* label2id = nullptr;
  const nlohmann::json* num_labels = nullptr;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    const char* f = k.c_str();
    if (k == "vocab_size") c.vocab_size = detail::config_int(v, src, f);
    else if (k == "hidden_size") c.hidden_size = detail::config_int(v, src, f);
    else if (k == "num_hidden_layers") c.num_hidden_layers = detail::config_int(v, src, f);
    else if (k == "num_attention_heads") c.num_attention_heads = detail::config_int(v, src, f);
    else if (k == "intermediate_size") c.intermediate_size = detail::config_int(v, src, f);
    else if (k == "max_position_embeddings") c.max_position_embeddings = detail::config_int(v, src, f);
    else if (k == "type_vocab_size") c.type_vocab_size = detail::config_int(v, src, f);
    else if (k == "hidden_dropout_prob") c.hidden_dropout_prob = detail::config_number(v, src, f);
    else if (k == "attention_probs_dropout_prob") c.attention_probs_dropout_prob = detail::config_number(v, src, f);
    else if (k == "initializer_range") c.initializer_range = detail::config_number(v, src, f);
    else if (k == "layer_norm_eps") c.layer_norm_eps = detail::config_number(v, src, f);
    else if (k == "classifier_dropout") {
      if (v.is_null()) c.classifier_dropout.reset();
      else c.classifier_dropout = detail::config_number(v, src, f);
    } else if (k == "pad_token_id") {
      if (v.is_null()) c.pad_token_id.reset();
      else c.pad_token_id = detail::config_int(v, src, f);
    } else if (k == "use_cache") {
      if (!v.is_boolean()) config_fail(src, f, "expected true or false, got " + v.dump());
      c.use_cache = v.get<bool>();
    } else if (k == "hidden_act") {
      const std::string& s = detail::config_string(v, src, f);
      bool found = false;
      for (auto a : {hidden_activation::gelu, hidden_activation::gelu_new, hidden_activation::gelu_pytorch_tanh,
                     hidden_activation::relu})
        if (s == hidden_activation_name(a)) {
          c.hidden_act = a;
          found = true;
        }
      if (!found)
        config_fail(src, f, "unsupported activation '" + s + "' (minibert has gelu, gelu_new, gelu_pytorch_tanh, relu)");
    } else if (k == "position_embedding_type") {
      c.position_embedding_type = detail::config_string(v, src, f);
    } else if (k == "problem_type") {
      c.problem_type = problem_kind::unspecified;
      if (!v.is_null()) {
        const std::string& s = detail::config_string(v, src, f);
        bool found = false;
        for (auto p : {problem_kind::single_label_classification, problem_kind::multi_label_classification,
                       problem_kind::regression})
          if (s == problem_kind_name(p)) {
            c.problem_type = p;
            found = true;
          }
        if (!found)
          config_fail(src, f, "'" + s + "' is not one of null, single_label_classification, "
                              "multi_label_classification, regression");
      }
    } else if (k == "architectures") {
      if (v.is_null()) c.architectures.reset();
      else {
        if (!v.is_array()) config_fail(src, f, "expected a list of strings, got " + v.dump());
        c.architectures.emplace();
        for (const auto& a : v) c.architectures->push_back(detail::config_string(a, src, f));
      }
    } else if (k == "model_type") {
      if (!v.is_string() || v.get<std::string>() != "bert")
        config_fail(src, f, "expected \"bert\", got " + v.dump() + " (this is not a BERT config)");
    } else if (k == "id2label") {
      if (!v.is_null()) id2label = &v;
    } else if (k == "label2id") {
      if (!v.is_null()) label2id = &v;
    } else if (k == "num_labels") {
      if (!v.is_null()) num_labels = &v;
    } else {
      c.extra[k] = v;
    }
  }

  // Labels, as PretrainedConfig.__init__: id2label wins and num_labels is derived from it; without id2label,
  // num_labels (default 2) makes LABEL_0..LABEL_{n-1}. We refuse what transformers would silently repair.
  if (id2label != nullptr) {
    if (!id2label->is_object()) config_fail(src, "id2label", "expected an object {\"0\": \"label\", ...}");
    const std::size_t n = id2label->size();
    std::vector<std::string> names(n);
    std::vector<bool> seen(n, false);
    for (auto it = id2label->begin(); it != id2label->end(); ++it) {
      const std::string& key = it.key();
      std::size_t id = 0;
      bool ok = !key.empty() && key.size() <= 9; // decimal ids, as Python's int(key) after json round trips
      for (char ch : key) {
        ok = ok && ch >= '0' && ch <= '9';
        id = id * 10 + static_cast<std::size_t>(ch - '0');
      }
      if (!ok || id >= n || seen[id])
        config_fail(src, "id2label", "keys must be the ids 0.." + std::to_string(n - 1) + ", got \"" + key + "\"");
      seen[id] = true;
      names[id] = detail::config_string(it.value(), src, "id2label");
    }
    c.id2label = std::move(names);
    if (num_labels != nullptr && detail::config_int(*num_labels, src, "num_labels") != c.num_labels())
      config_fail(src, "num_labels", num_labels->dump() + " disagrees with the " + std::to_string(n) +
                                         " entries of id2label");
  } else {
    if (label2id != nullptr)
      config_fail(src, "label2id", "given without id2label (transformers would drop it and use LABEL_0..); add id2label");
    const std::int64_t n = num_labels != nullptr ? detail::config_int(*num_labels, src, "num_labels") : 2;
    if (n < 1 || n > 1'000'000) config_fail(src, "num_labels", "must be in 1 .. 1000000, got " + std::to_string(n));
    c.set_num_labels(n);
  }
  if (label2id != nullptr) {
    if (!label2id->is_object()) config_fail(src, "label2id", "expected an object {\"label\": id, ...}");
    const auto expect = c.label2id();
    bool same = label2id->size() == expect.size();
    for (auto it = label2id->begin(); same && it != label2id->end(); ++it) {
      auto e = expect.find(it.key());
      same = e != expect.end() && it.value().is_number_integer() && it.value().get<std::int64_t>() == e->second;
    }
    if (!same) config_fail(src, "label2id", "is not the inverse of id2label");
  }
  c.validate(src);
  return c;
}

inline bert_config bert_config::from_file(const std::filesystem::path& path) {
  const std::string p = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error("bert_config", p + ": cannot open for reading");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // nesting is capped while parsing: from_json copies unknown fields and dumps bad values, both recursively
  return from_json(detail::parse_json_limited(text, "bert_config", p), p);
}

inline nlohmann::json bert_config::to_json() const {
  nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["intermediate_size"] = intermediate_size;
  j["hidden_act"] = hidden_activation_name(hidden_act);
  j["hidden_dropout_prob"] = hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["max_position_embeddings"] = max_position_embeddings;
  j["type_vocab_size"] = type_vocab_size;
  j["initializer_range"] = initializer_range;
  j["layer_norm_eps"] = layer_norm_eps;
  j["pad_token_id"] = pad_token_id ? nlohmann::json(*pad_token_id) : nlohmann::json(nullptr);
  j["position_embedding_type"] = position_embedding_type;
  j["use_cache"] = use_cache;
  j["classifier_dropout"] = classifier_dropout ? nlohmann::json(*classifier_dropout) : nlohmann::json(nullptr);
  j["model_type"] = "bert";
  if (problem_type != problem_kind::unspecified) j["problem_type"] = problem_kind_name(problem_type);
  if (architectures) j["architectures"] = *architectures;
  // transformers writes the label maps only when they differ from PretrainedConfig's 2-label default
  if (id2label != std::vector<std::string>{"LABEL_0", "LABEL_1"}) {
    nlohmann::json i2l = nlohmann::json::object(), l2i = nlohmann::json::object();
    for (std::size_t i = 0; i < id2label.size(); ++i) {
      i2l[std::to_string(i)] = id2label[i];
      l2i[id2label[i]] = i;
    }
    j["id2label"] = std::move(i2l);
    j["label2id"] = std::move(l2i);
  }
  return j;
}

inline std::string bert_config::to_json_string() const {
  try {
    return to_json().dump(2, ' ', true) + "\n"; // Python's json.dumps(indent=2, sort_keys=True) escapes non-ASCII too
  } catch (const nlohmann::json::exception& e) {
    throw error("bert_config", std::string("cannot write the config as JSON: ") + e.what());
  }
}

inline void bert_config::save(const std::filesystem::path& path) const {
  validate(path.string());
  atomic_write_bytes(path, to_json_string());
}

} // namespace minibert
