// SPDX-License-Identifier: MIT
#pragma once
/* Loading and saving models in the Hugging Face layout (config.json + model.safetensors, or an older
   pytorch_model.bin), with transformers' key handling: the "bert." prefix added or dropped between base
   and head models, legacy LayerNorm gamma/beta names, and its warnings for newly initialized and unused
   weights. Shape mismatches are errors naming the tensor and both shapes. */

#include <algorithm>  // sort, find
#include <cstdint>    // int64_t
#include <filesystem> // path, create_directories
#include <map>        // map
#include <memory>     // unique_ptr
#include <ostream>    // ostream
#include <set>        // set
#include <string>     // string
#include <vector>     // vector

#include <minibert/bert_config.hpp>
#include <minibert/error.hpp>
#include <minibert/hub.hpp>
#include <minibert/io/atomic_file.hpp>
#include <minibert/io/checkpoint.hpp>
#include <minibert/io/safetensors.hpp>
#include <minibert/nn/init.hpp>
#include <minibert/nn/module.hpp>
#include <minibert/random.hpp>
#include <minibert/torch_random.hpp>

namespace minibert {

/// @brief what load_weights matched: model keys not in the checkpoint, checkpoint keys the model did not use
struct load_report {
  std::vector<std::string> missing;    ///< newly initialized (sorted)
  std::vector<std::string> unexpected; ///< not used (sorted)
};

/// @brief Python's repr of a list of strings: ['a', 'b'] (the form transformers prints)
inline std::string py_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
  return s + "]";
}

/// @brief Copy every parameter of `model` found in `ck` into the model. Keys are matched as transformers
/// does: legacy `gamma`/`beta` LayerNorm names are renamed, the head models' `bert.` prefix is added to a
/// base checkpoint's keys or dropped for a base model, `position_ids` buffers and the tied MLM decoder
/// copies are ignored. Prints to `warn` (if not null) what transformers 4.46 logs at its default verbosity: the
/// missing keys, and the unused ones when the model's config names Model::class_name in `architectures`.
/// @param source how the checkpoint is named in the warnings (the path or hub id the user gave)
/// @throws minibert::error naming the tensor and both shapes on a shape mismatch, and the reader's errors
template <class Model>
load_report load_weights(Model& model, const checkpoint& ck, const std::string& source, std::ostream* warn) {
  using T = typename Model::variable_t::tensor_t::value_type;
  using D = typename Model::variable_t::tensor_t::device_type;
  const std::string prefix = Model::base_prefix;
  auto starts = [](const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; };
  auto fix_legacy = [](std::string k) {
    for (auto [from, to] : {std::pair<const char*, const char*>{"LayerNorm.gamma", "LayerNorm.weight"},
                            {"LayerNorm.beta", "LayerNorm.bias"}})
      if (auto at = k.find(from); at != std::string::npos && at + std::string(from).size() == k.size())
        k.replace(at, std::string(from).size(), to);
    return k;
  };
  // How the checkpoint names things: with the "bert." prefix of a head model, or without (a BertModel).
  bool ck_has_prefix = false;
  for (const auto& k : ck.names()) ck_has_prefix = ck_has_prefix || starts(k, "bert.");
  std::map<std::string, std::string> by_model_key; // model key -> checkpoint key
  std::vector<std::string> unexpected;
  for (const auto& k : ck.names()) {
    std::string m = fix_legacy(k);
    if (prefix.empty() && starts(m, "bert.")) m = m.substr(5);          // head checkpoint -> base model
    else if (!prefix.empty() && !ck_has_prefix && !starts(m, "cls.") && !starts(m, "classifier."))
      m = prefix + m;                                                   // base checkpoint -> head model
    by_model_key.emplace(m, k);
  }
  std::set<std::string> used;
  load_report rep;
  for (auto& [name, v] : model.named_parameters()) {
    auto it = by_model_key.find(name);
    if (it == by_model_key.end() && name == "cls.predictions.bias") it = by_model_key.find("cls.predictions.decoder.bias");
    if (it == by_model_key.end()) {
      rep.missing.push_back(name);
      continue;
    }
    variable<T, D> p = v;
    tensor<T, D>& t = p.mutable_value();
    const std::vector<std::int64_t> want = t.shape().to_vector();
    std::vector<T> host(static_cast<std::size_t>(t.numel()));
    ck.read<T>(it->second, host.data(), std::span<const std::int64_t>(want));
    backend<D>::upload(current_context<D>(), host.data(), t.data(), t.numel());
    used.insert(it->second);
  }
  for (const auto& k : ck.names()) {
    if (used.count(k)) continue;
    if (k.find("position_ids") != std::string::npos) continue;                        // a buffer, not a weight
    if (k == "cls.predictions.decoder.weight" || k == "cls.predictions.decoder.bias") { // tied copies
      if (std::string(Model::class_name) == "BertForMaskedLM") continue;
    }
    unexpected.push_back(k);
  }
  std::sort(rep.missing.begin(), rep.missing.end());
  std::sort(unexpected.begin(), unexpected.end());
  rep.unexpected = unexpected;
  const std::string cls = Model::class_name;
  // transformers warns about unused weights only when the config names this very class in `architectures`
  // (otherwise it logs them at info level, which its default verbosity does not show)
  const auto& archs = model.config().architectures;
  const bool warn_unused = archs && std::find(archs->begin(), archs->end(), cls) != archs->end();
  if (warn && warn_unused && !rep.unexpected.empty())
    *warn << "Some weights of the model checkpoint at " << source << " were not used when initializing " << cls << ": "
          << py_list(rep.unexpected) << "\n- This IS expected if you are initializing " << cls
          << " from the checkpoint of a model trained on another task or with another architecture (e.g. initializing a "
             "BertForSequenceClassification model from a BertForPreTraining model).\n- This IS NOT expected if you are "
             "initializing "
          << cls << " from the checkpoint of a model that you expect to be exactly identical (initializing a "
                    "BertForSequenceClassification model from a BertForSequenceClassification model).\n";
  if (warn && !rep.missing.empty()) {
    // transformers lists its state-dict names as they compare with the checkpoint's: without the "bert." prefix
    // when a base checkpoint loads into a head, with it when a head checkpoint loads into a base model; the tied
    // MLM decoder's aliases are missing along with what they alias
    std::vector<std::string> names;
    for (const auto& k : rep.missing) {
      if (!prefix.empty() && !ck_has_prefix && starts(k, prefix)) names.push_back(k.substr(prefix.size()));
      else if (prefix.empty() && ck_has_prefix) names.push_back("bert." + k);
      else names.push_back(k);
      if (cls == "BertForMaskedLM" && k == "cls.predictions.bias") names.push_back("cls.predictions.decoder.bias");
      if (cls == "BertForMaskedLM" && k == "bert.embeddings.word_embeddings.weight")
        names.push_back("cls.predictions.decoder.weight");
    }
    std::sort(names.begin(), names.end());
    *warn << "Some weights of " << cls << " were not initialized from the model checkpoint at " << source
          << " and are newly initialized: " << py_list(names)
          << "\nYou should probably TRAIN this model on a down-stream task to be able to use it for predictions and "
             "inference.\n";
  }
  return rep;
}

/// @brief Load a model directory's checkpoint into `model` (load_weights), then draw what the checkpoint lacks (a new
/// classifier head) as transformers' from_pretrained draws it right after set_seed(seed): torch's generator, bit for
/// bit (init_missing_bert_weights).
template <class Model>
load_report load_pretrained_weights(Model& model, const std::filesystem::path& dir, const std::string& source,
                                    std::uint64_t seed, std::ostream* warn) {
  const load_report rep = load_weights(model, checkpoint::open_dir(dir), source, warn);
  torch_generator tg(seed);
  const bert_config& cfg = model.config();
  init_missing_bert_weights(model, rep.missing, tg, cfg.initializer_range, cfg.pad_token_id.value_or(-1));
  return rep;
}

/// @brief Build Model from a model directory (config.json + weights) or a hub id in the local Hugging Face cache
/// (resolve_model_path): the config is read (then `adjust` may change it, e.g. set labels), weights initialized as
/// transformers does, then overwritten from the checkpoint; the modules it lacks (a new head) are drawn as
/// transformers draws them after set_seed(gen.seed()) (load_pretrained_weights). Warnings go to `warn`, naming the model as given (the
/// id or path, as transformers prints `pretrained_model_name_or_path`) unless `display_name` is set.
/// @throws minibert::error for a missing or invalid config.json or checkpoint, or mismatched tensors
template <class Model, class Adjust>
std::unique_ptr<Model> from_pretrained(const std::filesystem::path& name_or_path, generator& gen, std::ostream* warn,
                                       Adjust&& adjust, const std::string& display_name = "") {
  const std::filesystem::path dir = resolve_model_path(name_or_path.string());
  bert_config cfg = bert_config::from_file(dir / "config.json");
  adjust(cfg);
  auto model = std::make_unique<Model>(cfg);
  model->init_weights(gen);
  load_pretrained_weights(*model, dir, display_name.empty() ? name_or_path.string() : display_name, gen.seed(), warn);
  return model;
}
template <class Model>
std::unique_ptr<Model> from_pretrained(const std::filesystem::path& name_or_path, generator& gen, std::ostream* warn) {
  return from_pretrained<Model>(name_or_path, gen, warn, [](bert_config&) {});
}

/// @brief Write `model` into `dir` in the Hugging Face layout: config.json (with architectures, id2label,
/// label2id) and model.safetensors (F32, transformers' names; the tied MLM decoder stored once), both atomically.
/// @throws minibert::error on I/O failure, naming the file
template <class Model> void save_pretrained(const Model& model, const std::filesystem::path& dir) {
  using T = typename Model::variable_t::tensor_t::value_type;
  using D = typename Model::variable_t::tensor_t::device_type;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MINIBERT_CHECK(!ec, "save_pretrained", dir.string() << ": cannot create directory: " << ec.message());
  bert_config cfg = model.config();
  cfg.architectures = std::vector<std::string>{Model::class_name};
  std::vector<std::vector<float>> host;
  std::vector<safetensors_entry> entries;
  const auto params = model.named_parameters();
  host.reserve(params.size());
  for (auto& [name, v] : params) {
    const tensor<T, D> t = contiguous(v.value());
    std::vector<T> h(static_cast<std::size_t>(t.numel()));
    backend<D>::download(current_context<D>(), t.data(), h.data(), t.numel());
    host.emplace_back(h.begin(), h.end());
    entries.push_back({name, dtype::f32, t.shape().to_vector(), host.back().data()});
  }
  save_safetensors(dir / "model.safetensors", entries, {{"format", "pt"}});
  // the label maps are written even when they are transformers' LABEL_0/LABEL_1 default, so a reader sees the
  // head's classes without knowing that default
  nlohmann::json j = cfg.to_json();
  if (!j.contains("id2label")) {
    nlohmann::json i2l = nlohmann::json::object(), l2i = nlohmann::json::object();
    for (std::size_t i = 0; i < cfg.id2label.size(); ++i) {
      i2l[std::to_string(i)] = cfg.id2label[i];
      l2i[cfg.id2label[i]] = i;
    }
    j["id2label"] = std::move(i2l);
    j["label2id"] = std::move(l2i);
  }
  atomic_write_bytes(dir / "config.json", j.dump(2) + "\n");
}

} // namespace minibert
