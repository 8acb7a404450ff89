// SPDX-License-Identifier: MIT
#pragma once
/* training_args: every knob of the trainer, with transformers' TrainingArguments defaults except where the
   reference experiment fixes them (3 epochs, batch 32, lr 2e-5, linear schedule, 500 warmup steps). */

#include <cstddef> // size_t
#include <cstdint> // int64_t, uint64_t
#include <string>  // string

#include <minibert/error.hpp>
#include <minibert/precision.hpp>

namespace minibert {

/// @brief when to evaluate or save: never, every N optimizer steps, or at the end of each epoch
enum class interval_strategy { no, steps, epoch };

/// @throws minibert::error naming the flag for anything but "no", "steps", "epoch"
inline interval_strategy parse_interval(const std::string& s, const char* what) {
  if (s == "no") return interval_strategy::no;
  if (s == "steps") return interval_strategy::steps;
  if (s == "epoch") return interval_strategy::epoch;
  throw error("trainer", std::string(what) + " '" + s + "': expected one of no, steps, epoch");
}

struct training_args {
  std::string output_dir;
  double epochs = 3;                  ///< num_train_epochs (may be fractional, as transformers)
  std::int64_t max_steps = -1;        ///< > 0 overrides epochs and sets the schedule's length
  std::int64_t batch_size = 32;       ///< per_device_train_batch_size
  std::int64_t eval_batch_size = 64;  ///< per_device_eval_batch_size
  double learning_rate = 2e-5;
  std::string lr_scheduler = "linear";
  std::int64_t warmup_steps = 500;    ///< used when > 0; else warmup_ratio
  double warmup_ratio = 0;
  double weight_decay = 0;
  double max_grad_norm = 1.0;         ///< <= 0: no clipping
  std::int64_t gradient_accumulation_steps = 1;
  std::int64_t max_seq_length = 128;
  std::uint64_t seed = 42;
  bool shuffle = true;
  bool group_by_length = false;
  std::int64_t pad_to_multiple_of = 0; ///< > 0: pad batches to a multiple of this length (DataCollatorWithPadding)
  /// on a device with graphs (CUDA): capture the forward and backward of each batch shape (up to max_cuda_graphs) the
  /// second time it comes and replay it after (training/step_graphs.hpp); needs gradient_accumulation_steps 1 and
  /// one process, and pays off with few shapes (pad_to_multiple_of)
  bool cuda_graphs = false;
  static constexpr std::size_t max_cuda_graphs = 8;
  std::int64_t logging_steps = 100;
  interval_strategy eval_strategy = interval_strategy::epoch;
  std::int64_t eval_steps = 500;
  interval_strategy save_strategy = interval_strategy::epoch;
  std::int64_t save_steps = 500;
  std::int64_t save_total_limit = -1; ///< keep at most this many checkpoints (-1: all)
  std::string resume_from_checkpoint;
  bool load_best_model_at_end = false;
  std::string metric_for_best_model = "loss"; ///< "loss", "accuracy", "f1", ... (with or without "eval_")
  std::int64_t early_stopping_patience = 0;   ///< > 0: stop after this many evaluations without improvement
  int threads = 0;                            ///< 0: all cores
  bool bf16 = false; ///< mixed precision: matmuls in bf16 with fp32 accumulation (training and evaluation)
  bool fp16 = false; ///< mixed precision: matmuls on fp16-rounded operands, dynamic loss scaling (GradScaler)
  double ddp_bucket_cap_mb = 25; ///< data-parallel: gradient bucket size in MiB (the first bucket is at most 1 MiB)
  std::int64_t ddp_timeout = 1800; ///< data-parallel: seconds a collective may wait for the other ranks

  /// @brief the matmul precision the flags select (autocast's dtype)
  matmul_precision precision() const {
    return bf16 ? matmul_precision::bf16 : fp16 ? matmul_precision::fp16 : matmul_precision::fp32;
  }

  /// @throws minibert::error naming the first impossible value
  void validate() const {
    MINIBERT_CHECK(!output_dir.empty(), "trainer", "output_dir is empty");
    MINIBERT_CHECK(epochs > 0 || max_steps > 0, "trainer", "epochs " << epochs << " and max_steps " << max_steps);
    MINIBERT_CHECK(batch_size > 0 && eval_batch_size > 0, "trainer",
                   "batch sizes must be positive (train " << batch_size << ", eval " << eval_batch_size << ")");
    MINIBERT_CHECK(learning_rate >= 0, "trainer", "learning rate " << learning_rate << " < 0");
    MINIBERT_CHECK(gradient_accumulation_steps > 0, "trainer",
                   "gradient_accumulation_steps " << gradient_accumulation_steps << " must be positive");
    MINIBERT_CHECK(max_seq_length >= 2, "trainer", "max_seq_length " << max_seq_length << " < 2");
    MINIBERT_CHECK(pad_to_multiple_of >= 0, "trainer", "pad_to_multiple_of " << pad_to_multiple_of << " < 0");
    MINIBERT_CHECK(logging_steps > 0, "trainer", "logging_steps " << logging_steps << " must be positive");
    MINIBERT_CHECK(eval_strategy != interval_strategy::steps || eval_steps > 0, "trainer", "eval_steps must be positive");
    MINIBERT_CHECK(save_strategy != interval_strategy::steps || save_steps > 0, "trainer", "save_steps must be positive");
    MINIBERT_CHECK(warmup_ratio >= 0 && warmup_ratio <= 1, "trainer", "warmup_ratio " << warmup_ratio << " outside [0, 1]");
    MINIBERT_CHECK(!load_best_model_at_end || eval_strategy != interval_strategy::no, "trainer",
                   "load_best_model_at_end needs an eval strategy");
    MINIBERT_CHECK(!load_best_model_at_end || save_strategy == eval_strategy, "trainer",
                   "load_best_model_at_end needs the save strategy to match the eval strategy (as transformers)");
    MINIBERT_CHECK(early_stopping_patience == 0 || eval_strategy != interval_strategy::no, "trainer",
                   "early stopping needs an eval strategy");
    MINIBERT_CHECK(ddp_bucket_cap_mb > 0 && ddp_timeout > 0, "trainer",
                   "ddp_bucket_cap_mb " << ddp_bucket_cap_mb << " and ddp_timeout " << ddp_timeout << " must be positive");
    MINIBERT_CHECK(!(bf16 && fp16), "trainer", "bf16 and fp16 mixed precision exclude each other (choose one)");
  }
};

} // namespace minibert
