// SPDX-License-Identifier: MIT
#pragma once
/* minibert::tokenizer_spec, everything that defines a BERT WordPiece tokenizer, and its readers: a tokenizer.json
   (HF fast-tokenizer format), a vocab.txt with an optional tokenizer_config.json (what BertTokenizerFast builds
   from them), or a model directory holding either. Malformed files fail with the file name and line. */

#include <algorithm>   // max
#include <cstddef>     // size_t
#include <cstdint>     // int32_t
#include <filesystem>  // path, exists
#include <optional>    // optional
#include <string>      // string
#include <string_view> // string_view
#include <unordered_map> // added tokens by content
#include <utility>     // move, pair
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/json_limits.hpp>
#include <minibert/error.hpp>
#include <minibert/tokenizer/added_tokens.hpp>
#include <minibert/tokenizer/decode.hpp>
#include <minibert/tokenizer/encoding.hpp>
#include <minibert/tokenizer/normalizer.hpp>
#include <minibert/tokenizer/vocab.hpp>
#include <minibert/tokenizer/wordpiece.hpp>

namespace minibert {

/// @brief Everything that defines a tokenizer: what a tokenizer.json holds, for a BERT WordPiece model.
struct tokenizer_spec {
  minibert::vocab vocab;
  wordpiece_options model;
  normalizer_options normalizer;
  std::vector<added_token> added_tokens;          ///< matched before WordPiece ([CLS], [SEP], [MASK], ...)
  std::optional<post_processor> post;             ///< unset: no special tokens are added
  decoder_options decoder;
  std::optional<truncation_options> truncation;   ///< the file's default truncation
  std::optional<padding_options> padding;         ///< the file's default padding
  std::optional<std::size_t> model_max_length;    ///< tokenizer_config.json's model_max_length, if any
  std::string pad_token = "[PAD]";                ///< the padding token (its id pads)
  std::string source;                             ///< where it was read from, for messages
};

/// @brief BertTokenizer's settings for a vocab.txt (the keys of a tokenizer_config.json).
struct bert_vocab_options {
  bool do_lower_case = true;
  std::optional<bool> strip_accents;  ///< unset: follows do_lower_case
  bool tokenize_chinese_chars = true;
  std::string unk_token = "[UNK]", sep_token = "[SEP]", pad_token = "[PAD]", cls_token = "[CLS]",
              mask_token = "[MASK]";
  std::optional<std::size_t> model_max_length;
};

namespace detail {

using json = nlohmann::json;

/// Longest padding a tokenizer.json may ask for (padding.strategy.Fixed, padding.pad_to_multiple_of): 2^20 tokens.
/// BERT models take 512; the cap only keeps a hostile file from making every encode() allocate gigabytes.
inline constexpr std::int64_t max_padding_length = std::int64_t{1} << 20;

// nesting capped at json_max_depth; syntax errors name the line and column, any nlohmann error the file
inline json parse_json(std::string_view text, const std::string& source) {
  return parse_json_limited(text, "tokenizer", source, "malformed JSON");
}

// Typed access to a JSON object with errors that name the file and the key path.
class json_reader {
public:
  json_reader(const json& j, std::string source, std::string path) : j_(j), source_(std::move(source)), path_(std::move(path)) {}
  const json& value() const noexcept { return j_; }
  bool has(const char* key) const { return j_.is_object() && j_.contains(key) && !j_.at(key).is_null(); }
  json_reader at(const char* key) const {
    MINIBERT_CHECK(j_.is_object(), "tokenizer", source_ << ": " << path_ << " must be an object");
    MINIBERT_CHECK(j_.contains(key), "tokenizer", source_ << ": missing key " << path_ << "/" << key);
    return json_reader(j_.at(key), source_, path_ + "/" + key);
  }
  json_reader at(std::size_t i) const {
    if (!j_.is_array()) fail("expected an array, got " + std::string(j_.type_name()));
    if (i >= j_.size()) fail("expected at least " + std::to_string(i + 1) + " entries, got " + std::to_string(j_.size()));
    return json_reader(j_.at(i), source_, path_ + "/" + std::to_string(i));
  }
  [[noreturn]] void fail(const std::string& msg) const { throw error("tokenizer", source_ + ": " + path_ + ": " + msg); }
  std::string str() const {
    if (!j_.is_string()) fail("expected a string, got " + std::string(j_.type_name()));
    return j_.get<std::string>();
  }
  bool boolean() const {
    if (!j_.is_boolean()) fail("expected true or false, got " + std::string(j_.type_name()));
    return j_.get<bool>();
  }
  std::int64_t integer(std::int64_t lo = 0, std::int64_t hi = INT32_MAX) const {
    if (!j_.is_number_integer()) fail("expected an integer, got " + std::string(j_.type_name()));
    const auto v = j_.get<std::int64_t>();
    if (v < lo || v > hi) fail("value " + std::to_string(v) + " out of range");
    return v;
  }
  std::string str_or(const char* key, std::string d) const { return has(key) ? at(key).str() : d; }
  bool bool_or(const char* key, bool d) const { return has(key) ? at(key).boolean() : d; }
  const std::string& source() const noexcept { return source_; }

private:
  const json& j_;
  std::string source_, path_;
};

inline std::int32_t required_id(const vocab& v, const std::string& token, const char* role, const std::string& source) {
  const auto id = v.find(token);
  MINIBERT_CHECK(id.has_value(), "tokenizer", source << ": " << role << " token '" << token << "' is not in the vocabulary");
  return *id;
}

// What BertTokenizerFast builds from a vocab.txt (transformers' BertConverter).
inline tokenizer_spec spec_from_vocab(minibert::vocab v, const bert_vocab_options& o, std::string source) {
  tokenizer_spec s;
  s.source = std::move(source);
  s.normalizer = {true, o.tokenize_chinese_chars, o.strip_accents, o.do_lower_case};
  s.model.unk_token = o.unk_token;
  const std::int32_t cls = required_id(v, o.cls_token, "cls", s.source);
  const std::int32_t sep = required_id(v, o.sep_token, "sep", s.source);
  required_id(v, o.unk_token, "unk", s.source);
  for (const std::string* t : {&o.unk_token, &o.sep_token, &o.pad_token, &o.cls_token, &o.mask_token})
    if (const auto id = v.find(*t)) s.added_tokens.push_back({*t, *id, true, false, false, false, false});
  s.post = post_processor{{{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}},
                          {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}}};
  s.pad_token = o.pad_token;
  s.model_max_length = o.model_max_length;
  s.vocab = std::move(v);
  return s;
}

inline void apply_bert_config(const json_reader& c, bert_vocab_options& o) {
  o.do_lower_case = c.bool_or("do_lower_case", o.do_lower_case);
  o.tokenize_chinese_chars = c.bool_or("tokenize_chinese_chars", o.tokenize_chinese_chars);
  if (c.has("strip_accents")) o.strip_accents = c.at("strip_accents").boolean();
  // special tokens are strings, or {"content": ...} objects in newer files
  const auto token = [&](const char* key, std::string& out) {
    if (!c.has(key)) return;
    const json_reader t = c.at(key);
    out = t.value().is_object() ? t.at("content").str() : t.str();
  };
  token("unk_token", o.unk_token);
  token("sep_token", o.sep_token);
  token("pad_token", o.pad_token);
  token("cls_token", o.cls_token);
  token("mask_token", o.mask_token);
  if (c.has("model_max_length") && c.at("model_max_length").value().is_number_integer())
    o.model_max_length = static_cast<std::size_t>(c.at("model_max_length").integer(0, INT64_MAX));
}

inline bert_vocab_options read_tokenizer_config(const std::filesystem::path& path) {
  bert_vocab_options o;
  const std::string text = vocab::read_file(path, "tokenizer_config");
  const json j = parse_json(text, path.string());
  const json_reader c(j, path.string(), "");
  MINIBERT_CHECK(j.is_object(), "tokenizer", path.string() << ": expected a JSON object");
  try {
    apply_bert_config(c, o);
  } catch (const json::exception& e) { // json_reader checks types; this is the net behind it
    throw error("tokenizer", path.string() + ": unexpected structure: " + e.what());
  }
  return o;
}

inline std::vector<template_piece> parse_template(const json_reader& t, const json_reader* special, bool pair) {
  if (!t.value().is_array()) t.fail("expected an array of template pieces");
  std::vector<template_piece> out;
  int seen[2] = {0, 0};
  for (std::size_t i = 0; i < t.value().size(); ++i) {
    const json_reader p = t.at(i);
    if (p.has("Sequence")) {
      const json_reader q = p.at("Sequence");
      const std::string id = q.at("id").str();
      if (id != "A" && id != "B") q.fail("sequence id must be A or B, got '" + id + "'");
      const int seq = id == "A" ? 0 : 1;
      ++seen[seq];
      out.push_back({seq, {}, static_cast<std::int32_t>(q.at("type_id").integer())});
    } else if (p.has("SpecialToken")) {
      const json_reader q = p.at("SpecialToken");
      const std::string name = q.at("id").str();
      if (!special || !special->value().contains(name)) q.fail("special token '" + name + "' not in special_tokens");
      const json_reader st = special->at(name.c_str());
      std::vector<std::int32_t> ids;
      for (std::size_t k = 0; k < st.at("ids").value().size(); ++k)
        ids.push_back(static_cast<std::int32_t>(st.at("ids").at(k).integer()));
      out.push_back({-1, std::move(ids), static_cast<std::int32_t>(q.at("type_id").integer())});
    } else {
      p.fail("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  if (seen[0] != 1 || seen[1] != (pair ? 1 : 0))
    t.fail(pair ? "the pair template needs $A and $B once each" : "the single template needs $A once and no $B");
  return out;
}

// a padding length from tokenizer.json (padding.strategy.Fixed, padding.pad_to_multiple_of), at most max_padding_length
inline std::size_t padding_length(const json_reader& r) {
  const std::int64_t n = r.integer();
  if (n > max_padding_length)
    r.fail(std::to_string(n) + " tokens exceeds minibert's padding limit of " + std::to_string(max_padding_length) +
           " (2^20) tokens");
  return static_cast<std::size_t>(n);
}

inline side parse_side(const json_reader& r) {
  const std::string d = r.str();
  if (d == "Right" || d == "right") return side::right;
  if (d == "Left" || d == "left") return side::left;
  r.fail("expected Right or Left, got '" + d + "'");
}

// A tokenizer.json (tokenizers' serialization) for a BERT WordPiece model. With `config` (a tokenizer_config.json
// beside it), its casing options replace the normalizer's, as transformers' BertTokenizerFast does.
inline tokenizer_spec spec_from_parsed_json(const json& j, const std::string& source, const bert_vocab_options* config);

inline tokenizer_spec spec_from_json(std::string_view text, std::string source,
                                     const bert_vocab_options* config = nullptr) {
  const json j = parse_json(text, source);
  try {
    return spec_from_parsed_json(j, source, config);
  } catch (const json::exception& e) { // json_reader checks types and names the field; this is the net behind it
    throw error("tokenizer", source + ": unexpected structure: " + e.what());
  }
}

inline tokenizer_spec spec_from_parsed_json(const json& j, const std::string& source, const bert_vocab_options* config) {
  tokenizer_spec s;
  s.source = source;
  const json_reader root(j, source, "");
  MINIBERT_CHECK(j.is_object(), "tokenizer", source << ": expected a JSON object at the top");

  // model
  const json_reader m = root.at("model");
  const std::string type = m.str_or("type", "WordPiece");
  if (type != "WordPiece") m.fail("unsupported model type '" + type + "' (minibert reads WordPiece models)");
  s.model.unk_token = m.str_or("unk_token", "[UNK]");
  s.model.continuing_subword_prefix = m.str_or("continuing_subword_prefix", "##");
  if (m.has("max_input_chars_per_word"))
    s.model.max_input_chars_per_word = static_cast<std::size_t>(m.at("max_input_chars_per_word").integer(1, INT32_MAX));
  const json_reader v = m.at("vocab");
  if (!v.value().is_object()) v.fail("expected an object {token: id}");
  std::vector<std::pair<std::string, std::int32_t>> pairs;
  pairs.reserve(v.value().size());
  for (auto it = v.value().begin(); it != v.value().end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 || it.value().get<std::int64_t>() > INT32_MAX)
      v.fail("token '" + it.key() + "' needs a non-negative integer id");
    pairs.emplace_back(it.key(), static_cast<std::int32_t>(it.value().get<std::int64_t>()));
  }
  s.vocab = vocab::from_pairs(std::move(pairs), source + ": model/vocab");

  // normalizer
  if (root.has("normalizer")) {
    const json_reader n = root.at("normalizer");
    const std::string ntype = n.at("type").str();
    if (ntype != "BertNormalizer") n.fail("unsupported normalizer '" + ntype + "' (minibert implements BertNormalizer)");
    s.normalizer.clean_text = n.bool_or("clean_text", true);
    s.normalizer.handle_chinese_chars = n.bool_or("handle_chinese_chars", true);
    s.normalizer.lowercase = n.bool_or("lowercase", true);
    if (n.has("strip_accents")) s.normalizer.strip_accents = n.at("strip_accents").boolean();
    if (config) {
      s.normalizer.lowercase = config->do_lower_case;
      s.normalizer.strip_accents = config->strip_accents;
      s.normalizer.handle_chinese_chars = config->tokenize_chinese_chars;
    }
  } else {
    s.normalizer = {false, false, false, false};
  }

  // pre-tokenizer
  {
    const std::string ptype = root.has("pre_tokenizer") ? root.at("pre_tokenizer").at("type").str() : "null";
    if (ptype != "BertPreTokenizer")
      root.at("pre_tokenizer").fail("unsupported pre_tokenizer '" + ptype + "' (minibert implements BertPreTokenizer)");
  }

  // added tokens. HF gives them ids itself, in file order (the file's ids agree for files HF wrote): an earlier
  // added token's id, else the vocabulary's, else the next id after the vocabulary and the ids given so far.
  if (root.has("added_tokens")) {
    const json_reader a = root.at("added_tokens");
    if (!a.value().is_array()) a.fail("expected an array");
    std::unordered_map<std::string, std::int32_t> given; // content -> id (a hash: a file may add a million tokens)
    std::int32_t max_given = -1;
    const auto vocab_count = static_cast<std::int32_t>(s.vocab.size());
    for (std::size_t i = 0; i < a.value().size(); ++i) {
      const json_reader t = a.at(i);
      added_token at;
      t.at("id").integer(); // present and well-formed, though HF recomputes it
      at.content = t.at("content").str();
      std::optional<std::int32_t> id;
      if (const auto g = given.find(at.content); g != given.end()) id = g->second;
      if (!id) id = s.vocab.find(at.content);
      if (!id) id = max_given < 0 ? vocab_count : (max_given >= vocab_count || vocab_count == 0 ? max_given + 1 : vocab_count);
      at.id = *id;
      given.emplace(at.content, at.id);
      max_given = std::max(max_given, at.id);
      if (at.content.empty()) t.fail("empty content");
      at.special = t.bool_or("special", false);
      at.single_word = t.bool_or("single_word", false);
      at.lstrip = t.bool_or("lstrip", false);
      at.rstrip = t.bool_or("rstrip", false);
      at.normalized = t.bool_or("normalized", !at.special);
      s.added_tokens.push_back(std::move(at));
    }
  }

  // post-processor
  if (root.has("post_processor")) {
    const json_reader p = root.at("post_processor");
    const std::string ptype = p.at("type").str();
    if (ptype == "TemplateProcessing") {
      const json_reader special = p.at("special_tokens");
      s.post = post_processor{parse_template(p.at("single"), &special, false), parse_template(p.at("pair"), &special, true)};
    } else if (ptype == "BertProcessing") {
      const auto id = [&](const char* key) { return static_cast<std::int32_t>(p.at(key).at(1).integer()); };
      const std::int32_t cls = id("cls"), sep = id("sep");
      s.post = post_processor{{{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}},
                              {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}}};
    } else {
      p.fail("unsupported post_processor '" + ptype + "' (minibert implements TemplateProcessing, BertProcessing)");
    }
  }

  // decoder
  if (root.has("decoder")) {
    const json_reader d = root.at("decoder");
    const std::string dtype = d.at("type").str();
    if (dtype != "WordPiece") d.fail("unsupported decoder '" + dtype + "' (minibert implements WordPiece)");
    s.decoder.prefix = d.str_or("prefix", "##");
    s.decoder.cleanup = d.bool_or("cleanup", true);
  } else {
    s.decoder.wordpiece = false;
  }

  // default truncation and padding
  if (root.has("truncation")) {
    const json_reader t = root.at("truncation");
    truncation_options o;
    o.max_length = static_cast<std::size_t>(t.at("max_length").integer());
    if (t.has("direction")) o.direction = parse_side(t.at("direction"));
    const std::string st = t.str_or("strategy", "LongestFirst");
    if (st == "LongestFirst") o.strategy = truncation_strategy::longest_first;
    else if (st == "OnlyFirst") o.strategy = truncation_strategy::only_first;
    else if (st == "OnlySecond") o.strategy = truncation_strategy::only_second;
    else t.at("strategy").fail("unknown truncation strategy '" + st + "'");
    s.truncation = o;
  }
  if (root.has("padding")) {
    const json_reader p = root.at("padding");
    padding_options o;
    const json& st = p.at("strategy").value();
    if (st.is_object() && st.contains("Fixed")) {
      o.to = padding_options::strategy::fixed;
      o.max_length = padding_length(p.at("strategy").at("Fixed"));
    } else if (!(st.is_string() && st.get<std::string>() == "BatchLongest")) {
      p.at("strategy").fail("expected \"BatchLongest\" or {\"Fixed\": n}");
    }
    if (p.has("direction")) o.direction = parse_side(p.at("direction"));
    if (p.has("pad_to_multiple_of")) o.pad_to_multiple_of = padding_length(p.at("pad_to_multiple_of"));
    if (p.has("pad_id")) o.pad_id = static_cast<std::int32_t>(p.at("pad_id").integer());
    if (p.has("pad_type_id")) o.pad_type_id = static_cast<std::int32_t>(p.at("pad_type_id").integer());
    s.pad_token = p.str_or("pad_token", s.pad_token);
    s.padding = o;
  }
  if (config) s.model_max_length = config->model_max_length;
  return s;
}

// A tokenizer.json, a vocab.txt (with the tokenizer_config.json beside it, if any), or a directory of either.
inline tokenizer_spec load_spec(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MINIBERT_CHECK(fs::exists(path, ec), "tokenizer", "no such file or directory: '" << path.string() << "'");
  if (fs::is_directory(path, ec)) {
    const fs::path json_file = path / "tokenizer.json", vocab_file = path / "vocab.txt",
                   config = path / "tokenizer_config.json";
    if (fs::exists(json_file, ec)) {
      std::optional<bert_vocab_options> o;
      if (fs::exists(config, ec)) o = read_tokenizer_config(config);
      return spec_from_json(vocab::read_file(json_file, "tokenizer.json"), json_file.string(), o ? &*o : nullptr);
    }
    MINIBERT_CHECK(fs::exists(vocab_file, ec), "tokenizer",
                   "directory '" << path.string() << "' holds neither tokenizer.json nor vocab.txt");
    return load_spec(vocab_file);
  }
  if (path.extension() == ".json")
    return spec_from_json(vocab::read_file(path, "tokenizer.json"), path.string());
  const fs::path config = path.parent_path() / "tokenizer_config.json";
  const bert_vocab_options o = fs::exists(config, ec) ? read_tokenizer_config(config) : bert_vocab_options{};
  return spec_from_vocab(vocab::from_file(path), o, path.string());
}

} // namespace detail
} // namespace minibert
