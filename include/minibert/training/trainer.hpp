// SPDX-License-Identifier: MIT
#pragma once
/* trainer<T, Device>: fine-tunes a bert_for_sequence_classification as transformers' Trainer does: AdamW with the
   Trainer's no-decay groups, an LR schedule stepped per optimizer step, gradient accumulation and clipping,
   logging every N steps (mean loss since the last log, learning rate, grad norm, epoch), evaluation and
   checkpoints per epoch or every N steps, resume that continues bit-identically, best-model reloading and early
   stopping. Metrics and log entries carry transformers' names; trainer_state.json has its format.

   Given a communicator of several ranks it trains data-parallel as PyTorch's DistributedDataParallel: each rank
   takes its DistributedSampler shard with batch_size rows per micro-batch, gradients are averaged in buckets that
   start during the backward pass (distributed/ddp.hpp), logged losses are averaged over the ranks, evaluation is
   sharded by batches and gathered (every rank gets the single-process metrics), and only rank 0 logs and writes. */

#include <algorithm>  // max_element, sort
#include <chrono>     // steady_clock
#include <cmath>      // isfinite, round
#include <cstdint>    // int64_t
#include <filesystem> // path, rename, remove_all
#include <fstream>    // ifstream
#include <iomanip>    // setprecision (the all-reduce summary)
#include <iterator>   // istreambuf_iterator (trainer_state.json)
#include <limits>     // infinity
#include <optional>   // optional
#include <ostream>    // ostream
#include <string>     // string
#include <utility>    // pair
#include <vector>     // vector

#include <nlohmann/json.hpp>

#include <minibert/cpu/parallel.hpp>
#include <minibert/data.hpp>
#include <minibert/detail/json_limits.hpp>
#include <minibert/detail/py_repr.hpp>
#include <minibert/distributed/communicator.hpp>
#include <minibert/distributed/ddp.hpp>
#include <minibert/heads.hpp>
#include <minibert/io/atomic_file.hpp>
#include <minibert/io/checkpoint.hpp>
#include <minibert/metrics.hpp>
#include <minibert/optimizer.hpp>
#include <minibert/pretrained.hpp>
#include <minibert/scheduler.hpp>
#include <minibert/tokenizer.hpp>
#include <minibert/training/args.hpp>
#include <minibert/training/batching.hpp>
#include <minibert/training/grad_scaler.hpp>
#include <minibert/training/progress.hpp>
#include <minibert/training/step_graphs.hpp>

namespace minibert {

/// @brief what evaluate/predict compute for a dataset
struct prediction_output {
  std::vector<std::vector<double>> logits; ///< (N, num_labels)
  std::vector<std::int64_t> predictions;   ///< argmax per row
  nlohmann::json metrics;                  ///< {prefix}_loss, _accuracy, ..., _runtime, _samples_per_second (labeled data)
  classification_metrics detail;           ///< per-class figures and the confusion matrix (labeled data)
};

template <class T = float, class Device = device::cpu> class trainer {
public:
  using model_t = bert_for_sequence_classification<T, Device>;

  /// @param log where log lines and warnings go (the progress bar goes to stderr on a terminal); rank 0's only
  /// @param comm the ranks to train with (data-parallel), or null for one process
  trainer(model_t& model, const tokenizer& tok, training_args args, std::ostream& log,
          distributed::communicator* comm = nullptr)
      : model_(model), tok_(tok), args_(std::move(args)), comm_(comm), log_(is_main() ? log : silent_), gen_(args_.seed) {
    args_.validate();
    if (args_.threads > 0) set_num_threads(args_.threads);
  }

  /// @brief train on `train`, evaluating on `eval` (may be null) as the strategy says
  /// @returns transformers' train metrics: train_runtime, train_samples_per_second, train_steps_per_second,
  ///   train_loss, epoch
  /// @throws minibert::error on a non-finite loss (naming the step), bad checkpoints or I/O failures
  nlohmann::json train(const dataset& train, const dataset* eval);

  /// @brief loss and metrics (with `prefix`_ names) of the model on `data`, in eval mode
  prediction_output evaluate(const dataset& data, const std::string& prefix = "eval");

  /// @brief one micro-batch: forward, loss (divided by the accumulation steps), backward; the loss is added to the
  /// running sum on the device (no host synchronization). Across ranks, `last_micro_batch` starts the gradient
  /// all-reduce during this backward pass; earlier micro-batches of an accumulation only accumulate.
  void train_step(const model_batch<Device>& mb, std::int64_t accumulation_steps, bool last_micro_batch = true);
  /// @brief clip, AdamW step at the schedule's learning rate, schedule step, zero_grad; returns the gradients'
  /// sum of squares before clipping, on the device (undefined without clipping). With fp16 the gradients are
  /// unscaled first, and a step whose gradients hold inf/NaN is skipped together with its schedule step (as the
  /// Trainer does: the logged learning rate then trails the schedule by the number of skipped steps)
  tensor<double, Device> optimizer_step();

  const nlohmann::json& log_history() const { return log_history_; }
  const training_args& args() const { return args_; }
  std::int64_t global_step() const { return global_step_; }
  /// @brief rank 0, or the only process: the one that logs and writes
  bool is_main() const { return rank() == 0; }

private:
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int world_size() const { return comm_ ? comm_->world_size() : 1; }
  // one log line in transformers' style, keys in its order, floats in Python's shortest round-trip form:
  // {'loss': 0.6206, 'grad_norm': 1.53, 'learning_rate': 3.92e-06, 'epoch': 0.33}
  void print_entry(const nlohmann::json& e) {
    static const char* const order[] = {"loss", "grad_norm", "learning_rate", "eval_loss", "eval_accuracy",
                                        "eval_precision", "eval_recall", "eval_f1", "eval_runtime",
                                        "eval_samples_per_second", "eval_steps_per_second", "train_runtime",
                                        "train_samples_per_second", "train_steps_per_second", "train_loss", "epoch"};
    log_ << "{";
    bool first = true;
    for (const char* k : order) {
      if (!e.contains(k)) continue;
      const auto& v = e[k];
      const std::string text = v.is_number_float() ? detail::py_float_repr(v.get<double>()) : v.dump();
      log_ << (first ? "" : ", ") << "'" << k << "': " << text;
      first = false;
    }
    log_ << "}\n" << std::flush;
  }
  nlohmann::json eval_and_log(const dataset& eval, double epoch_f);
  void save_checkpoint(std::int64_t epoch, std::int64_t batch_in_epoch);
  void load_checkpoint(const std::filesystem::path& dir);
  /// deletes a checkpoint directory so that it never shows half-deleted: it is renamed to .<name>.del first (a
  /// SIGKILL inside remove_all would otherwise leave an incomplete checkpoint-N)
  static void discard_checkpoint_dir(const std::filesystem::path& dir);
  /// output_dir at the start of train(): removes what an interrupted save or rotation left (.checkpoint-N.tmp,
  /// .checkpoint-N.del, atomic_write's temporary files) and, on resume, lists its checkpoint-N up to the resumed
  /// step (oldest first) so that --save-total-limit counts them, as the Trainer's rotation does
  void tidy_output_dir();
  void rotate_checkpoints();
  void start_gradient_reducer();
  /// with cuda_graphs: graphs_ when this device and run can use them, else a line saying why not
  void start_step_graphs();
  void log_gradient_reduction(double train_seconds);
  bool improved(double value) const {
    if (!best_metric_) return true;
    return greater_is_better() ? value > *best_metric_ : value < *best_metric_;
  }
  bool greater_is_better() const { return metric_key().find("loss") == std::string::npos; }
  std::string metric_key() const {
    const std::string& m = args_.metric_for_best_model;
    return m.rfind("eval_", 0) == 0 ? m : "eval_" + m;
  }
  nlohmann::json state_json() const;
  /// the loss summed on the device since the last log, added to total_loss_ and reset; a non-finite sum is an error
  double take_logged_loss();
  /// sums host values over the ranks in place (through device memory when the communicator reduces device memory)
  void all_reduce_host(std::vector<double>& v, const char* what);

  model_t& model_;
  const tokenizer& tok_;
  training_args args_;
  distributed::communicator* comm_;
  std::ostream silent_{nullptr}; // log_ of the ranks other than 0
  std::ostream& log_;
  generator gen_;
  std::optional<adamw<T, Device>> opt_;
  std::optional<scheduler> sched_;
  std::optional<grad_scaler<T, Device>> scaler_; // with fp16: GradScaler's defaults, as the Trainer's accelerator
  std::optional<distributed::gradient_reducer<T, Device>> reducer_; // across ranks
  std::optional<step_graphs<T, Device>> graphs_; // with cuda_graphs
  nlohmann::json log_history_ = nlohmann::json::array();
  std::int64_t global_step_ = 0, max_steps_ = 0, steps_per_epoch_ = 0, batches_per_epoch_ = 0;
  double num_epochs_ = 0;
  double total_loss_ = 0;           // sum of per-step losses (train_loss = total / steps)
  tensor<T, Device> loss_since_log_; // sum of per-step losses since the last log, on the device (as the Trainer's tr_loss)
  std::int64_t last_logged_step_ = 0;
  std::int64_t resume_epoch_ = 0, resume_batch_ = 0;
  std::optional<double> best_metric_;
  std::string best_checkpoint_;
  std::int64_t evals_without_improvement_ = 0;
  bool stop_early_ = false;
  std::vector<std::string> saved_checkpoints_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

template <class T, class Device> prediction_output trainer<T, Device>::evaluate(const dataset& data, const std::string& prefix) {
  const auto start = std::chrono::steady_clock::now();
  const bool was_training = model_.training();
  model_.eval();
  const tokenized_dataset td = tokenize_dataset(tok_, data, std::size_t(args_.max_seq_length));
  const std::int64_t L = model_.config().num_labels();
  const std::size_t B = std::size_t(args_.eval_batch_size), num_batches = (td.size() + B - 1) / B;
  // logits (N, L) then each batch's loss x rows; across ranks, rank r computes batches r, r + W, ... (each exactly as
  // one process would) and a sum all-reduce over zeros elsewhere gathers them bit for bit
  std::vector<double> gathered(td.size() * std::size_t(L) + num_batches, 0.0);
  double* const batch_loss = gathered.data() + td.size() * std::size_t(L);
  {
    no_grad ng;
    autocast<Device> mixed(args_.precision());
    generator eval_gen(0); // eval mode: dropout is off and draws nothing
    std::vector<std::size_t> idx;
    for (std::size_t b = std::size_t(rank()); b < num_batches; b += std::size_t(world_size())) {
      idx.clear();
      for (std::size_t i = b * B; i < std::min(td.size(), (b + 1) * B); ++i) idx.push_back(i);
      const model_batch<Device> mb = to_device<Device>(collate(td, idx, args_.pad_to_multiple_of));
      const auto logits = model_.forward(mb.inputs, eval_gen);
      if (mb.labels.defined()) batch_loss[b] = to_double(item(model_.loss(logits, mb.labels).value())) * double(mb.size);
      const tensor<T> host_logits = to_host(logits.value());
      for (std::int64_t i = 0; i < host_logits.numel(); ++i)
        gathered[b * B * std::size_t(L) + std::size_t(i)] = to_double(host_logits.data()[i]);
    }
  }
  if (world_size() > 1) all_reduce_host(gathered, "the evaluation's gather");
  prediction_output out;
  out.logits.reserve(td.size());
  for (std::size_t r = 0; r < td.size(); ++r) {
    const auto row = gathered.begin() + std::ptrdiff_t(r * std::size_t(L));
    out.logits.emplace_back(row, row + L);
    out.predictions.push_back(std::max_element(row, row + L) - row);
  }
  double loss_sum = 0;
  for (std::size_t b = 0; b < num_batches; ++b) loss_sum += batch_loss[b];
  const std::size_t steps = num_batches;
  if (was_training) model_.train();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (data.has_labels && !td.labels.empty()) {
    out.detail = compute_classification_metrics(out.predictions, td.labels, std::size_t(L));
    out.metrics = out.detail.to_json(prefix, model_.config().id2label);
    out.metrics[prefix + "_loss"] = loss_sum / double(td.size());
  } else {
    out.metrics = nlohmann::json::object();
  }
  out.metrics[prefix + "_runtime"] = std::round(secs * 1e4) / 1e4;
  out.metrics[prefix + "_samples_per_second"] = std::round(double(td.size()) / secs * 1e3) / 1e3;
  out.metrics[prefix + "_steps_per_second"] = std::round(double(steps) / secs * 1e3) / 1e3;
  return out;
}

template <class T, class Device> nlohmann::json trainer<T, Device>::eval_and_log(const dataset& eval, double epoch_f) {
  prediction_output r = evaluate(eval, "eval");
  nlohmann::json entry = r.metrics;
  entry.erase("eval_per_class");
  entry.erase("eval_confusion_matrix");
  entry["epoch"] = epoch_f;
  entry["step"] = global_step_;
  nlohmann::json shown = nlohmann::json::object();
  for (const char* k : {"eval_loss", "eval_accuracy", "eval_precision", "eval_recall", "eval_f1", "eval_runtime",
                        "eval_samples_per_second", "eval_steps_per_second", "epoch"})
    if (entry.contains(k)) shown[k] = entry[k];
  print_entry(shown);
  entry["eval_confusion_matrix"] = r.metrics["eval_confusion_matrix"];
  log_history_.push_back(entry);
  const std::string key = metric_key();
  MINIBERT_CHECK(entry.contains(key), "trainer",
                 "metric_for_best_model '" << args_.metric_for_best_model << "' is not among the eval metrics");
  const double v = entry[key].get<double>();
  if (improved(v)) {
    best_metric_ = v;
    evals_without_improvement_ = 0;
    best_checkpoint_ = (std::filesystem::path(args_.output_dir) / ("checkpoint-" + std::to_string(global_step_))).string();
  } else if (args_.early_stopping_patience > 0 && ++evals_without_improvement_ >= args_.early_stopping_patience) {
    log_ << "Early stopping: " << key << " has not improved for " << evals_without_improvement_ << " evaluations\n";
    stop_early_ = true;
  }
  return entry;
}

template <class T, class Device> nlohmann::json trainer<T, Device>::state_json() const {
  nlohmann::json s;
  s["best_metric"] = best_metric_ ? nlohmann::json(*best_metric_) : nlohmann::json(nullptr);
  s["best_model_checkpoint"] = best_checkpoint_.empty() ? nlohmann::json(nullptr) : nlohmann::json(best_checkpoint_);
  s["epoch"] = steps_per_epoch_ ? double(global_step_) / double(steps_per_epoch_) : 0.0;
  s["global_step"] = global_step_;
  s["is_local_process_zero"] = comm_ ? comm_->local_rank() == 0 : true;
  s["is_world_process_zero"] = is_main();
  s["log_history"] = log_history_;
  s["logging_steps"] = args_.logging_steps;
  s["eval_steps"] = args_.eval_steps;
  s["save_steps"] = args_.save_steps;
  s["max_steps"] = max_steps_;
  s["num_train_epochs"] = std::int64_t(std::ceil(num_epochs_));
  s["train_batch_size"] = args_.batch_size;
  return s;
}

template <class T, class Device> void trainer<T, Device>::save_checkpoint(std::int64_t epoch, std::int64_t batch_in_epoch) {
  namespace fs = std::filesystem;
  if (!is_main()) return; // every rank holds the same weights and optimizer state
  const fs::path final_dir = fs::path(args_.output_dir) / ("checkpoint-" + std::to_string(global_step_));
  const fs::path tmp = fs::path(args_.output_dir) / (".checkpoint-" + std::to_string(global_step_) + ".tmp");
  fs::remove_all(tmp);
  save_pretrained(model_, tmp);
  const optimizer_state<acc_t<T>> os = opt_->state_entries();
  save_safetensors(tmp / "optimizer.safetensors", os.entries);
  nlohmann::json st = state_json();
  // minibert's resume state: everything that makes the continuation bit-identical
  st["minibert"] = {{"optimizer", os.scalars},
                    {"scheduler_step", sched_->steps_taken()},
                    {"rng", {{"seed", gen_.seed()}, {"offset", gen_.offset()}}},
                    {"epoch_index", epoch},
                    {"batch_in_epoch", batch_in_epoch},
                    {"total_loss", total_loss_},
                    {"loss_since_log", to_double(item(loss_since_log_))},
                    {"last_logged_step", last_logged_step_},
                    {"evals_without_improvement", evals_without_improvement_},
                    {"threads", num_threads()},
                    {"world_size", world_size()}};
  if (scaler_) st["minibert"]["scaler"] = scaler_->state();
  atomic_write_bytes(tmp / "trainer_state.json", st.dump(2) + "\n");
  // the directory appears complete or not at all
  discard_checkpoint_dir(final_dir);
  fs::rename(tmp, final_dir);
  sync_directory(args_.output_dir, "trainer", final_dir.string() + ": saved, but"); // the rename survives a power loss
  std::erase(saved_checkpoints_, final_dir.string());
  saved_checkpoints_.push_back(final_dir.string());
  rotate_checkpoints();
}

/// @brief --save-total-limit: deletes the oldest checkpoints beyond the limit, but never the best one when it will be
/// reloaded
template <class T, class Device> void trainer<T, Device>::rotate_checkpoints() {
  if (args_.save_total_limit <= 0) return;
  while (std::int64_t(saved_checkpoints_.size()) > args_.save_total_limit) {
    auto victim = saved_checkpoints_.begin();
    if (args_.load_best_model_at_end && *victim == best_checkpoint_ && saved_checkpoints_.size() > 1) ++victim;
    discard_checkpoint_dir(*victim);
    saved_checkpoints_.erase(victim);
  }
}

template <class T, class Device> void trainer<T, Device>::discard_checkpoint_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::exists(dir)) return;
  const fs::path trash = dir.parent_path() / ("." + dir.filename().string() + ".del");
  fs::remove_all(trash);
  fs::rename(dir, trash);
  fs::remove_all(trash);
}

/// @brief distributed runs: buckets sized by --ddp-bucket-cap-mb, and every rank starts from rank 0's weights
template <class T, class Device> void trainer<T, Device>::start_gradient_reducer() {
  if constexpr (!distributed::reducible_v<T>) {
    throw error("trainer", std::string("distributed training sums float or double gradients, and this model's "
                                       "parameters are ") + dtype_name(dtype_v<T>) +
                               " (keep fp32 parameters and use --bf16 or --fp16 mixed precision)");
  } else {
    comm_->set_timeout(std::chrono::seconds(args_.ddp_timeout));
    const auto cap = std::size_t(args_.ddp_bucket_cap_mb * double(1 << 20));
    reducer_.emplace(model_.parameters(), *comm_, distributed::bucket_options{std::min(cap, std::size_t(1) << 20), cap});
    reducer_->broadcast_parameters();
  }
}

/// @brief how much of the gradients' communication the backward pass hid (this rank's view)
template <class T, class Device> void trainer<T, Device>::start_step_graphs() {
  if (!args_.cuda_graphs) return;
  const char* why_not = !has_graph_capture<Device>                 ? "this device has no graphs"
                        : args_.gradient_accumulation_steps > 1 ? "gradient accumulation"
                        : world_size() > 1                       ? "data-parallel training"
                                                                 : nullptr;
  if (why_not) {
    log_ << "warning: --cuda-graphs ignored (" << why_not << "): every step runs eagerly\n";
    return;
  }
  graphs_.emplace(training_args::max_cuda_graphs, log_);
}

template <class T, class Device> void trainer<T, Device>::log_gradient_reduction(double train_seconds) {
  const double exposed = reducer_->exposed_seconds();
  log_ << "Gradient all-reduce (" << reducer_->num_buckets() << " buckets, " << reducer_->launched_during_backward()
       << " started during the last backward pass): " << std::fixed << std::setprecision(2) << exposed
       << " s of waiting after the backward passes, " << std::setprecision(1) << 100.0 * exposed / train_seconds
       << "% of the training time\n" << std::defaultfloat;
}

template <class T, class Device> void trainer<T, Device>::tidy_output_dir() {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, std::string>> found;
  if (!is_main()) return; // rank 0 writes and rotates checkpoints
  for (const auto& e : fs::directory_iterator(args_.output_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && is_atomic_write_temp(name)) fs::remove(e.path());
    if (!e.is_directory()) continue;
    const bool hidden = name.rfind(".checkpoint-", 0) == 0;
    if (hidden && (name.ends_with(".tmp") || name.ends_with(".del"))) {
      fs::remove_all(e.path());
    } else if (!hidden && name.rfind("checkpoint-", 0) == 0 && name.size() > 11 && name.size() < 30 &&
               name.find_first_not_of("0123456789", 11) == std::string::npos) {
      found.emplace_back(std::stoll(name.substr(11)), e.path().string());
    }
  }
  if (args_.resume_from_checkpoint.empty()) return;
  std::sort(found.begin(), found.end());
  for (const auto& [step, dir] : found)
    if (step <= global_step_) saved_checkpoints_.push_back(dir);
  // a run killed between publishing a checkpoint and deleting the oldest one left one too many: finish its rotation
  // (the resumed run may save nothing more to trigger it)
  rotate_checkpoints();
}

template <class T, class Device> void trainer<T, Device>::load_checkpoint(const std::filesystem::path& dir) {
  const std::filesystem::path state_file = dir / "trainer_state.json";
  std::ifstream in(state_file, std::ios::binary);
  MINIBERT_CHECK(in.good(), "trainer", state_file.string() << ": missing or not a minibert trainer state");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json st = detail::parse_json_limited(text, "trainer", state_file.string());
  MINIBERT_CHECK(st.is_object() && st.contains("minibert"), "trainer",
                 state_file.string() << ": missing or not a minibert trainer state");
  load_weights(model_, checkpoint::open(dir / "model.safetensors"), dir.string(), nullptr);
  const auto& m = st["minibert"];
  const int saved_world = m.value("world_size", 1);
  MINIBERT_CHECK(saved_world == world_size(), "trainer",
                 state_file.string() << ": the checkpoint was written by " << saved_world << " process(es) and this run has "
                 << world_size() << ": each rank's data shard and position in the epoch depend on the world size (resume "
                    "with " << saved_world << ", or start a new run from its model.safetensors)");
  opt_->load_state(checkpoint::open(dir / "optimizer.safetensors"), m["optimizer"]);
  sched_->load_state({m["scheduler_step"].get<std::int64_t>()});
  gen_.set_state(m["rng"]["seed"].get<std::uint64_t>(), m["rng"]["offset"].get<std::uint64_t>());
  global_step_ = st["global_step"].get<std::int64_t>();
  log_history_ = st["log_history"];
  if (!st["best_metric"].is_null()) best_metric_ = st["best_metric"].get<double>();
  if (!st["best_model_checkpoint"].is_null()) best_checkpoint_ = st["best_model_checkpoint"].get<std::string>();
  resume_epoch_ = m["epoch_index"].get<std::int64_t>();
  resume_batch_ = m["batch_in_epoch"].get<std::int64_t>();
  total_loss_ = m["total_loss"].get<double>();
  backend<Device>::fill(current_context<Device>(), loss_since_log_.data(), 1, T(m["loss_since_log"].get<double>()));
  last_logged_step_ = m["last_logged_step"].get<std::int64_t>();
  evals_without_improvement_ = m["evals_without_improvement"].get<std::int64_t>();
  if (scaler_) {
    MINIBERT_CHECK(m.contains("scaler"), "trainer", state_file.string() << ": the run uses fp16 but the checkpoint "
                                                                          "has no loss scaler state (written without --fp16)");
    scaler_->load_state(m["scaler"]);
  }
  if (m["threads"].get<int>() != num_threads())
    log_ << "warning: the checkpoint was written with " << m["threads"].get<int>() << " threads and this run uses "
         << num_threads() << ": results will not be bit-identical to an uninterrupted run\n";
  log_ << "Resumed from " << dir.string() << " at step " << global_step_ << "\n";
}

template <class T, class Device>
void trainer<T, Device>::train_step(const model_batch<Device>& mb, std::int64_t accumulation_steps, bool last_micro_batch) {
  // the loss gradient's seed: scaler.scale(loss).backward() seeds the loss scale, loss.backward() seeds 1
  const T seed = scaler_ ? scaler_->seed_value() : T(1);
  const auto forward_backward = [&](const model_batch<Device>& b, const tensor<T, Device>& s) {
    autocast<Device> mixed(args_.precision()); // forward and backward: the backward's matmuls run at its precision too
    auto loss = model_.loss(model_.forward(b.inputs, gen_), b.labels);
    if (accumulation_steps > 1) loss = scale(loss, T(acc_t<T>(1) / acc_t<T>(accumulation_steps)));
    loss.backward(s);
    return loss.value();
  };
  std::optional<tensor<T, Device>> loss;
  if (graphs_) loss = graphs_->run(mb, model_.parameters(), gen_, seed, forward_backward);
  if (!loss) {
    if (reducer_) reducer_->prepare_backward(last_micro_batch);
    loss = forward_backward(mb, full_on<T, Device>({1}, seed));
  }
  backend<Device>::axpy(current_context<Device>(), T(1), loss->data(), loss_since_log_.data(), 1);
}

template <class T, class Device> tensor<double, Device> trainer<T, Device>::optimizer_step() {
  tensor<double, Device> grad_sq;
  if (reducer_) reducer_->finish(); // every rank now holds the gradients averaged over all ranks
  if (scaler_) scaler_->unscale(*opt_); // accelerate unscales before clipping
  if (args_.max_grad_norm > 0) grad_sq = clip_grad_norm_on_device(model_.parameters(), args_.max_grad_norm);
  bool ran = true;
  if (scaler_) {
    ran = scaler_->step(*opt_, sched_->last_lr());
    scaler_->update();
  } else {
    opt_->step(sched_->last_lr());
  }
  if (ran) sched_->step();
  if (graphs_) graphs_->reclaim(model_.parameters()); // a replay's gradients go back to its graph
  model_.zero_grad();
  ++global_step_;
  return grad_sq;
}

template <class T, class Device> void trainer<T, Device>::all_reduce_host(std::vector<double>& v, const char* what) {
  const auto n = std::int64_t(v.size());
  if (comm_->memory() == distributed::memory_space::host)
    return comm_->all_reduce_sum(v.data(), v.size(), distributed::element_type::f64, what);
  auto& ctx = current_context<Device>();
  tensor<double, Device> d = tensor<double, Device>::empty({n});
  backend<Device>::upload(ctx, v.data(), d.data(), n);
  comm_->all_reduce_sum(d.data(), v.size(), distributed::element_type::f64, what);
  backend<Device>::download(ctx, d.data(), v.data(), n);
}

template <class T, class Device> double trainer<T, Device>::take_logged_loss() {
  double window = to_double(item(loss_since_log_));
  if (world_size() > 1) { // the mean over the ranks, as the Trainer logs it
    std::vector<double> w{window};
    all_reduce_host(w, "all_reduce of the logged loss");
    window = w[0] / double(world_size());
  }
  if (!std::isfinite(window))
    throw error("trainer", "the loss is " + std::to_string(window) + " in the optimizer steps " +
                               std::to_string(last_logged_step_ + 1) + " to " + std::to_string(global_step_) +
                               " (lower the learning rate, or check the data)");
  total_loss_ += window;
  backend<Device>::fill(current_context<Device>(), loss_since_log_.data(), 1, T(0));
  return window;
}

template <class T, class Device> nlohmann::json trainer<T, Device>::train(const dataset& train, const dataset* eval) {
  namespace fs = std::filesystem;
  const auto start = std::chrono::steady_clock::now();
  MINIBERT_CHECK(!train.empty(), "trainer", train.path << ": no training examples");
  MINIBERT_CHECK(train.has_labels, "trainer", train.path << ": training data has no labels");
  fs::create_directories(args_.output_dir);
  const tokenized_dataset td = tokenize_dataset(tok_, train, std::size_t(args_.max_seq_length));
  const std::int64_t accum = args_.gradient_accumulation_steps;
  const distributed::shard shard{rank(), world_size()};
  const auto rows_per_rank = std::int64_t(distributed::shard_size(td.size(), shard));
  batches_per_epoch_ = (rows_per_rank + args_.batch_size - 1) / args_.batch_size;
  steps_per_epoch_ = std::max<std::int64_t>(1, batches_per_epoch_ / accum);
  if (args_.max_steps > 0) {
    max_steps_ = args_.max_steps;
    num_epochs_ = std::ceil(double(max_steps_) / double(steps_per_epoch_));
  } else {
    max_steps_ = std::int64_t(std::ceil(args_.epochs * double(steps_per_epoch_)));
    num_epochs_ = std::ceil(args_.epochs);
  }
  const std::int64_t warmup =
      args_.warmup_steps > 0 ? args_.warmup_steps : warmup_steps_from_ratio(args_.warmup_ratio, max_steps_);
  opt_.emplace(default_param_groups(model_, args_.weight_decay));
  loss_since_log_ = zeros_on<T, Device>({1});
  sched_.emplace(lr_schedule{parse_schedule_kind(args_.lr_scheduler), args_.learning_rate, warmup, max_steps_});
  if (args_.fp16) scaler_.emplace();
  if (!args_.resume_from_checkpoint.empty()) load_checkpoint(args_.resume_from_checkpoint);
  tidy_output_dir();
  if (world_size() > 1) start_gradient_reducer();
  start_step_graphs();

  log_ << "***** Running training *****\n"
       << "  Num examples = " << td.size() << "\n  Num Epochs = " << std::int64_t(num_epochs_)
       << "\n  Batch size = " << args_.batch_size
       << (world_size() > 1 ? "\n  Processes = " + std::to_string(world_size()) + " (" + comm_->name() + ")" +
                                  "\n  Total train batch size (w. parallel, distributed & accumulation) = " +
                                  std::to_string(args_.batch_size * accum * world_size())
                            : "")
       << "\n  Gradient Accumulation steps = " << accum
       << "\n  Total optimization steps = " << max_steps_ << "\n  Warmup steps = " << warmup
       << "\n  Number of trainable parameters = " << model_.num_parameters() << "\n  Threads = " << num_threads()
       << "\n  Mixed precision = " << (args_.bf16 ? "bf16" : args_.fp16 ? "fp16 (dynamic loss scaling)" : "no")
       << "\n" << std::flush;

  progress_bar bar("train", max_steps_, is_main() ? stderr : nullptr);
  bar.start_at(global_step_);
  model_.train();
  std::string last_loss;
  for (std::int64_t epoch = resume_epoch_; epoch < std::int64_t(num_epochs_) && global_step_ < max_steps_ && !stop_early_;
       ++epoch) {
    const auto batches = epoch_batches(td, std::size_t(args_.batch_size), args_.shuffle, args_.seed, epoch,
                                       args_.group_by_length, shard);
    const std::int64_t nb = std::int64_t(batches.size());
    std::int64_t first = epoch == resume_epoch_ ? resume_batch_ : 0;
    for (std::int64_t bi = first; bi < nb && global_step_ < max_steps_ && !stop_early_; ++bi) {
      const bool boundary = (bi + 1) % accum == 0 || bi + 1 == nb;
      train_step(to_device<Device>(collate(td, batches[bi], args_.pad_to_multiple_of)), accum, boundary);
      if (!boundary) continue;
      const tensor<double, Device> grad_sq = optimizer_step();
      const double epoch_f = double(epoch) + double(bi + 1) / double(nb);
      if (global_step_ % args_.logging_steps == 0) { // the only per-step reads from the device
        const double window = take_logged_loss();
        nlohmann::json e = {{"loss", std::round(window / double(global_step_ - last_logged_step_) * 1e4) / 1e4},
                            {"grad_norm", grad_sq.defined() ? std::sqrt(double(item(grad_sq))) : 0.0},
                            {"learning_rate", sched_->last_lr()},
                            {"epoch", std::round(epoch_f * 1e4) / 1e4},
                            {"step", global_step_}};
        last_loss = " loss " + detail::py_float_repr(e["loss"].get<double>());
        bar.clear_line();
        print_entry(e);
        log_history_.push_back(e);
        last_logged_step_ = global_step_;
      }
      const bool epoch_end = bi + 1 == nb;
      const bool eval_now = eval && ((args_.eval_strategy == interval_strategy::steps && global_step_ % args_.eval_steps == 0) ||
                                     (args_.eval_strategy == interval_strategy::epoch && epoch_end));
      if (eval_now) {
        bar.clear_line();
        eval_and_log(*eval, epoch_f);
      }
      const bool save_now = (args_.save_strategy == interval_strategy::steps && global_step_ % args_.save_steps == 0) ||
                            (args_.save_strategy == interval_strategy::epoch && epoch_end);
      if (save_now) save_checkpoint(epoch_end ? epoch + 1 : epoch, epoch_end ? 0 : bi + 1);
      bar.update(global_step_, last_loss);
    }
  }
  take_logged_loss(); // the steps since the last log count in train_loss, as the Trainer's final tr_loss.item()
  bar.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (reducer_) log_gradient_reduction(secs);
  if (graphs_)
    log_ << "CUDA graphs: " << graphs_->captures() << " captured, " << graphs_->replays() << " of " << global_step_
         << " steps replayed, " << graphs_->failures() << " shapes left eager after a failure\n";
  if (comm_) comm_->barrier(); // rank 0's last checkpoint is complete
  if (args_.load_best_model_at_end && !best_checkpoint_.empty() && fs::exists(best_checkpoint_)) {
    log_ << "Loading best model from " << best_checkpoint_ << " (score: " << *best_metric_ << ").\n";
    load_weights(model_, checkpoint::open(fs::path(best_checkpoint_) / "model.safetensors"), best_checkpoint_, nullptr);
  }
  const double samples =
      args_.max_steps > 0 ? double(max_steps_ * args_.batch_size * accum * world_size()) : double(td.size()) * args_.epochs;
  nlohmann::json r = {{"train_runtime", std::round(secs * 1e4) / 1e4},
                      {"train_samples_per_second", std::round(samples / secs * 1e3) / 1e3},
                      {"train_steps_per_second", std::round(double(max_steps_) / secs * 1e3) / 1e3},
                      {"train_loss", global_step_ ? total_loss_ / double(global_step_) : 0.0},
                      {"epoch", double(global_step_) / double(steps_per_epoch_)},
                      {"step", global_step_}};
  log_history_.push_back(r);
  nlohmann::json shown = r;
  shown.erase("step");
  print_entry(shown);
  if (is_main()) atomic_write_bytes(fs::path(args_.output_dir) / "trainer_state.json", state_json().dump(2) + "\n");
  return shown;
}

} // namespace minibert
