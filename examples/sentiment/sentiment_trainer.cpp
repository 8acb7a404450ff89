// SPDX-License-Identifier: MIT
// sentiment_trainer: fine-tune, evaluate and run BERT sentiment classifiers in the Hugging Face layout, printing
// and writing what transformers' Trainer would (the reference experiment: ../shared/docs/REFERENCE.md).
//   sentiment_trainer train    --model DIR|HUB_ID | --config CONFIG.json --tokenizer PATH  --train FILE ...
//   sentiment_trainer evaluate --model DIR --data FILE
//   sentiment_trainer predict  --model DIR --input FILE [--output FILE]
//   sentiment_trainer compare  RUN_DIR... [--output-dir DIR]
//   sentiment_trainer download ORG/NAME [--revision R] [--include PATTERN] [--cache-dir DIR]
//   mpirun -np N sentiment_trainer train ...   (data-parallel over N processes; docs/scaling.md)
#include <minibert/bert.hpp>
#include <minibert/detail/py_repr.hpp>
#include <minibert/hub.hpp>
#include <minibert/report.hpp>
#include <minibert/training/trainer.hpp>
#if defined(MINIBERT_WITH_CUDA)
#include <minibert/cuda/backend.hpp>
#endif
#if defined(MINIBERT_WITH_MPI)
#include <minibert/distributed/mpi.hpp>
#endif
#if defined(MINIBERT_WITH_NCCL)
#include <minibert/distributed/nccl.hpp>
#endif

#include <charconv>   // to_chars (predict's floats)
#include <cmath>      // exp
#include <cstdio>     // printf
#include <filesystem> // path
#include <fstream>    // ifstream
#include <iostream>   // cout, cerr
#include <optional>   // optional (tokenizer loaded after the model)
#include <sstream>    // ostringstream
#include <string>     // string

#include "cli.hpp"

namespace fs = std::filesystem;
using namespace minibert;

namespace {

constexpr const char* usage = R"(usage: sentiment_trainer COMMAND [flags]   (COMMAND --help for its flags)

commands:
  train     fine-tune a BERT classifier (from a Hugging Face model directory or hub id, or a random-init config)
  evaluate  loss, accuracy, precision, recall, F1 and the confusion matrix of a model on labeled data
  predict   labels, probabilities and logits for every row of a TSV, CSV or JSONL file, as JSON lines
  compare   a side-by-side table and overlaid loss curves of several training runs
  download  a model from the Hugging Face Hub into the local cache (shared with Python's huggingface_hub)
)";

// transformers' model files copied beside a saved model, so the output directory is a complete HF model
constexpr const char* tokenizer_files[] = {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};

// floats as Python prints them (transformers' log_metrics output)
std::string shortest(double v) { return detail::py_float_repr(v); }

// a float32 value with the fewest digits that read back as the same float (predict's full precision)
std::string float_text(float v) {
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

// "***** eval metrics *****" block as transformers' Trainer.log_metrics prints it
void print_metrics(const std::string& split, const nlohmann::json& m) {
  std::cout << "***** " << split << " metrics *****\n";
  std::size_t w = 0;
  for (auto& [k, v] : m.items())
    if (v.is_number()) w = std::max(w, k.size());
  for (auto& [k, v] : m.items())
    if (v.is_number()) std::cout << "  " << k << std::string(w - k.size(), ' ') << " = " << shortest(v.get<double>()) << "\n";
  std::cout << std::flush;
}

nlohmann::json numbers_only(const nlohmann::json& m) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& [k, v] : m.items())
    if (v.is_number()) out[k] = v;
  return out;
}

read_options data_options(const sentiment::cli& a, std::vector<std::string> labels, bool require_labels) {
  read_options o;
  o.text_column = a.str("text-column");
  o.text_pair_column = a.str("text-pair-column");
  o.label_column = a.str("label-column");
  o.label_names = std::move(labels);
  o.require_labels = require_labels;
  const std::int64_t max_record = a.integer("max-record-bytes");
  MINIBERT_CHECK(max_record > 0, "sentiment_trainer", "--max-record-bytes must be positive, got " << max_record);
  o.max_record_bytes = static_cast<std::size_t>(max_record);
  return o;
}

void add_data_flags(sentiment::cli& c) {
  c.option("text-column", "column holding the text (default: 'sentence' or 'text', whichever exists)")
      .option("text-pair-column", "column holding a second text (sentence pairs)")
      .option("label-column", "column holding the label", "label")
      .option("max-record-bytes", "longest line or CSV record a data file may hold (longer: an error)", "16777216");
}

// the tokenizer files of `from` copied into `to` (those that exist), each replaced atomically
void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  const fs::path dir = fs::is_directory(from) ? from : from.parent_path();
  for (const char* f : tokenizer_files)
    if (fs::exists(dir / f)) atomic_copy_file(dir / f, to / f);
}

// the data-parallel job this process belongs to (null for a single process); main's error handler ends every rank
// through it, so that the other ranks never wait for one that failed. Under mpirun with --device cuda, `bootstrap`
// (MPI) hands NCCL its unique id.
std::unique_ptr<distributed::communicator> bootstrap, job;

// joins the job that mpirun or a torchrun-style launcher started: MPI for the CPU, NCCL for CUDA (bootstrapped
// through MPI under mpirun, through MASTER_ADDR:MASTER_PORT otherwise); null for a single process
distributed::communicator* join_job(const std::string& device) {
  const distributed::launch_env env = distributed::launch_env::detect();
  if (!env.distributed()) return nullptr;
  const std::string launched = env.launcher + " started " + std::to_string(env.world_size) + " processes";
  if (device == "cuda") {
#if defined(MINIBERT_WITH_NCCL)
#if defined(MINIBERT_WITH_MPI)
    if (env.launcher == "mpirun") bootstrap = std::make_unique<distributed::mpi_communicator>();
#endif
    job = distributed::make_nccl_communicator(env, bootstrap.get());
#else
    throw error("train", launched + " on CUDA, but this sentiment_trainer was built without NCCL");
#endif
  } else {
#if defined(MINIBERT_WITH_MPI)
    job = std::make_unique<distributed::mpi_communicator>();
#else
    throw error("train", launched + ", but this sentiment_trainer was built without MPI (install libopenmpi-dev and "
                                    "configure again)");
#endif
  }
  if (job->rank() != 0) std::cout.rdbuf(nullptr); // only rank 0 prints
  return job.get();
}

// evaluate and predict run in one process: several would write the same output
void refuse_distributed(const char* command) {
  const distributed::launch_env env = distributed::launch_env::detect();
  MINIBERT_CHECK(!env.distributed(), command, env.launcher << " started " << env.world_size << " processes, but "
                 << command << " runs in one process: launch it without mpirun");
}

// --device: runs f(device::cpu{}) or f(device::cuda{}) (when built with the CUDA backend and a GPU is present)
template <class F> int on_device(const std::string& name, F&& f) {
  if (name == "cpu") return f(device::cpu{});
#if defined(MINIBERT_WITH_CUDA)
  if (name == "cuda") {
    MINIBERT_CHECK(cuda_available(), "device", "--device cuda: no CUDA device is visible to this process");
    return f(device::cuda{});
  }
  throw error("device", "--device " + name + ": expected cpu or cuda");
#else
  throw error("device", "--device " + name + (name == "cuda" ? ": this sentiment_trainer was built without the CUDA "
                                                               "backend (configure with a CUDA toolkit)"
                                                             : ": expected cpu"));
#endif
}
void add_device_flag(sentiment::cli& c) {
  c.option("device", "cpu or cuda", "cpu")
      .flag("bf16", "mixed precision: matmuls in bf16 with fp32 accumulation (AVX512-BF16 on the CPU where present)")
      .flag("fp16", "mixed precision: matmuls on fp16-rounded operands; training uses dynamic loss scaling");
}
// the precision flags into args (--bf16 and --fp16 exclude each other: training_args::validate says so)
void read_precision_flags(const sentiment::cli& c, training_args& a) {
  a.bf16 = c.has("bf16");
  a.fp16 = c.has("fp16");
}

// evaluate and predict: a saved model, its tokenizer, and the evaluation settings from the shared flags
template <class D> struct inference_setup {
  fs::path dir;
  std::unique_ptr<bert_for_sequence_classification<float, D>> model;
  std::optional<tokenizer> tok;
  training_args args;
};

void add_inference_flags(sentiment::cli& c) {
  c.option("batch-size", "batch size", "64")
      .option("max-seq-length", "truncate inputs to this many tokens", "128")
      .option("threads", "CPU threads (0: all cores)", "0");
  add_device_flag(c);
  add_data_flags(c);
}

template <class D> inference_setup<D> load_for_inference(const sentiment::cli& c) {
  inference_setup<D> s;
  s.dir = resolve_model_path(c.str("model"));
  generator gen(0);
  s.model = from_pretrained<bert_for_sequence_classification<float, D>>(s.dir, gen, &std::cerr);
  s.tok.emplace(tokenizer::from_pretrained(s.dir));
  s.args.output_dir = s.dir.string();
  s.args.eval_batch_size = c.integer("batch-size");
  s.args.max_seq_length = c.integer("max-seq-length");
  s.args.threads = int(c.integer("threads"));
  read_precision_flags(c, s.args);
  return s;
}

// ------------------------------------------------------------------------------------------------ train

int cmd_train(int argc, char** argv) {
  sentiment::cli c("train", "Fine-tune BERT for sequence classification as transformers' Trainer does, then evaluate on\n"
                            "the validation and test sets and write the model, metrics and a report into --output-dir.");
  c.option("model", "Hugging Face model directory, or a hub id (e.g. bert-base-uncased): taken from the local HF "
                    "cache, downloaded into it when missing (HF_HUB_OFFLINE=1 forbids)")
      .option("config", "config.json for a randomly initialized model (instead of --model)")
      .option("tokenizer", "vocab.txt, tokenizer.json or a directory holding one (default: the model directory)")
      .option("train", "training data (TSV, CSV or JSONL)", "", true)
      .option("validation", "validation data (default: split off the training data, see --validation-split)")
      .option("validation-split", "fraction of the training data held out for validation", "0.2")
      .option("test", "test data, evaluated once at the end")
      .option("output-dir", "where the model, checkpoints, metrics and report go", "", true);
  add_data_flags(c);
  c.option("epochs", "number of training epochs", "3")
      .option("max-steps", "total optimizer steps (overrides --epochs and sets the schedule's length)", "-1")
      .option("batch-size", "training batch size", "32")
      .option("eval-batch-size", "evaluation batch size", "64")
      .option("learning-rate", "peak learning rate", "2e-5")
      .option("lr-scheduler", "linear, cosine, constant or constant_with_warmup", "linear")
      .option("warmup-steps", "linear warmup steps (0: use --warmup-ratio)", "500")
      .option("warmup-ratio", "warmup as a fraction of the total steps", "0")
      .option("weight-decay", "AdamW weight decay (biases and LayerNorm weights excluded)", "0")
      .option("max-grad-norm", "clip the global gradient norm to this (0: no clipping)", "1.0")
      .option("gradient-accumulation-steps", "micro-batches per optimizer step", "1")
      .option("max-seq-length", "truncate inputs to this many tokens", "128")
      .option("seed", "seed for initialization, dropout, shuffling and the validation split", "42")
      .flag("no-shuffle", "keep the training data in file order")
      .flag("group-by-length", "batch examples of similar length together (less padding)")
      .option("pad-to-multiple-of", "pad each batch's length up to a multiple of N (0: to its longest row)", "0")
      .flag("cuda-graphs", "with --device cuda: replay each batch shape's forward and backward as a CUDA graph "
                           "(fewest shapes with --pad-to-multiple-of)")
      .option("hidden-dropout", "override the config's hidden_dropout_prob")
      .option("attention-dropout", "override the config's attention_probs_dropout_prob")
      .option("logging-steps", "log the mean loss, learning rate and grad norm every N steps", "100")
      .option("eval-strategy", "no, steps or epoch", "epoch")
      .option("eval-steps", "evaluate every N steps (with --eval-strategy steps)", "500")
      .option("save-strategy", "no, steps or epoch", "epoch")
      .option("save-steps", "checkpoint every N steps (with --save-strategy steps)", "500")
      .option("save-total-limit", "keep at most N checkpoints (-1: all)", "-1")
      .option("resume-from-checkpoint", "checkpoint directory to continue from (bit-identical continuation)")
      .flag("load-best-model-at-end", "reload the best checkpoint (by --metric-for-best-model) after training")
      .option("metric-for-best-model", "loss, accuracy, f1, precision or recall", "loss")
      .option("early-stopping-patience", "stop after N evaluations without improvement (0: never)", "0")
      .option("threads", "CPU threads (0: all cores)", "0")
      .option("ddp-bucket-cap-mb", "under mpirun: gradient bucket size in MiB (all-reduced during the backward pass)", "25")
      .option("ddp-timeout", "under mpirun: seconds a rank waits for the others before giving up", "1800");
  add_device_flag(c);
  if (!c.parse(argc, argv, 2, std::cout)) return 0;
  MINIBERT_CHECK(c.has("model") != c.has("config"), "train", "give exactly one of --model and --config");

  training_args a;
  a.output_dir = c.str("output-dir");
  a.epochs = c.number("epochs");
  a.max_steps = c.integer("max-steps");
  a.batch_size = c.integer("batch-size");
  a.eval_batch_size = c.integer("eval-batch-size");
  a.learning_rate = c.number("learning-rate");
  a.lr_scheduler = c.str("lr-scheduler");
  a.warmup_steps = c.integer("warmup-steps");
  a.warmup_ratio = c.number("warmup-ratio");
  a.weight_decay = c.number("weight-decay");
  a.max_grad_norm = c.number("max-grad-norm");
  a.gradient_accumulation_steps = c.integer("gradient-accumulation-steps");
  a.max_seq_length = c.integer("max-seq-length");
  a.seed = std::uint64_t(c.integer("seed"));
  a.shuffle = !c.has("no-shuffle");
  a.group_by_length = c.has("group-by-length");
  a.pad_to_multiple_of = c.integer("pad-to-multiple-of");
  a.cuda_graphs = c.has("cuda-graphs");
  a.logging_steps = c.integer("logging-steps");
  a.eval_strategy = parse_interval(c.str("eval-strategy"), "--eval-strategy");
  a.eval_steps = c.integer("eval-steps");
  a.save_strategy = parse_interval(c.str("save-strategy"), "--save-strategy");
  a.save_steps = c.integer("save-steps");
  a.save_total_limit = c.integer("save-total-limit");
  a.resume_from_checkpoint = c.str("resume-from-checkpoint");
  a.load_best_model_at_end = c.has("load-best-model-at-end");
  a.metric_for_best_model = c.str("metric-for-best-model");
  a.early_stopping_patience = c.integer("early-stopping-patience");
  a.threads = int(c.integer("threads"));
  a.ddp_bucket_cap_mb = c.number("ddp-bucket-cap-mb");
  a.ddp_timeout = c.integer("ddp-timeout");
  read_precision_flags(c, a);
  a.validate();
  distributed::communicator* const comm = join_job(c.str("device"));
  parse_schedule_kind(a.lr_scheduler); // reject a bad name before any work

  // model and tokenizer locations
  const bool pretrained = c.has("model");
  const std::string model_name = pretrained ? c.str("model") : c.str("config");
  const fs::path model_dir = pretrained ? resolve_model_path(c.str("model")) : fs::path();
  MINIBERT_CHECK(pretrained || c.has("tokenizer"), "train", "--config needs --tokenizer (vocab.txt, tokenizer.json or a directory)");
  const fs::path tok_path = c.has("tokenizer") ? fs::path(c.str("tokenizer")) : model_dir;
  const tokenizer tok = tokenizer::from_pretrained(tok_path);

  // data: labels come from the training file; validation and test must use the same names
  const dataset full = read_dataset(c.str("train"), data_options(c, {}, true));
  dataset train, validation;
  if (c.has("validation")) {
    train = full;
    validation = read_dataset(c.str("validation"), data_options(c, full.label_names, true));
  } else {
    auto s = split_validation(full, c.number("validation-split"), a.seed);
    train = std::move(s.train);
    validation = std::move(s.validation);
  }
  std::optional<dataset> test;
  if (c.has("test")) test = read_dataset(c.str("test"), data_options(c, full.label_names, true));

  // config: the model's (or the given one), with the training data's labels and any dropout overrides
  bert_config cfg = bert_config::from_file(pretrained ? model_dir / "config.json" : fs::path(c.str("config")));
  cfg.id2label = full.label_names;
  if (c.has("hidden-dropout")) cfg.hidden_dropout_prob = c.number("hidden-dropout");
  if (c.has("attention-dropout")) cfg.attention_probs_dropout_prob = c.number("attention-dropout");
  cfg.validate(pretrained ? (model_dir / "config.json").string() : c.str("config"));
  MINIBERT_CHECK(std::size_t(cfg.vocab_size) >= tok.vocab_size(), "train",
                 "the tokenizer has " << tok.vocab_size() << " tokens but the model's vocab_size is " << cfg.vocab_size);

  if (a.threads > 0) set_num_threads(a.threads);
  return on_device(c.str("device"), [&]<class D>(D) {
    auto model = std::make_unique<bert_for_sequence_classification<float, D>>(cfg);
    generator init_gen(a.seed);
    model->init_weights(init_gen);
    std::ostringstream warnings;
    if (pretrained) {
      load_pretrained_weights(*model, model_dir, model_name, a.seed, &warnings); // a new head as transformers draws it
    } else {
      warnings << "NOTE: the model was randomly initialized from " << c.str("config")
               << " and NOT pretrained: its scores are not those of a pretrained BERT (pass --model with a pretrained "
                  "BERT, e.g. sentence-transformers/all-MiniLM-L6-v2 or bert-base-uncased, to fine-tune one).\n";
    }
    std::cout << warnings.str() << std::flush;
    std::cout << "Data: " << train.size() << " train / " << validation.size() << " validation"
              << (test ? " / " + std::to_string(test->size()) + " test" : "") << " examples, labels "
              << py_list(full.label_names) << "\n";

    trainer<float, D> t(*model, tok, a, std::cout, comm);
    const nlohmann::json train_metrics = t.train(train, a.eval_strategy == interval_strategy::no ? nullptr : &validation);
    print_metrics("train", train_metrics);
    const bool writes = t.is_main(); // every rank evaluates its shard below; rank 0 writes

    // the fine-tuned model in the Hugging Face layout, with its tokenizer
    if (writes) {
      save_pretrained(*model, a.output_dir);
      copy_tokenizer_files(tok_path, a.output_dir);
      atomic_write_bytes(fs::path(a.output_dir) / "train_results.json", train_metrics.dump(4) + "\n");
    }

    report_data rep;
    rep.model = model_name;
    rep.model_pretrained = pretrained;
    if (!pretrained)
      rep.banner_note = "Configuration: " + c.str("config") + ". Pass --model with a pretrained BERT to fine-tune one.";
    rep.warnings = warnings.str();
    rep.label_names = full.label_names;
    rep.train_metrics = train_metrics;
    for (const nlohmann::json& e : t.log_history()) {
      if (e.contains("loss")) {
        rep.log_history.push_back({e["step"].get<std::int64_t>(), e["epoch"].get<double>(), e["loss"].get<double>(),
                                   e["learning_rate"].get<double>(), e["grad_norm"].get<double>()});
      } else if (e.contains("eval_loss")) {
        rep.evals.push_back({e["step"].get<std::int64_t>(), e["epoch"].get<double>(), e});
      }
    }
    std::vector<std::pair<std::string, nlohmann::json>> finals;
    for (auto [name, prefix, data] : {std::tuple<std::string, std::string, const dataset*>{"validation", "eval", &validation},
                                      {"test", "test", test ? &*test : nullptr}}) {
      if (!data) continue;
      const prediction_output r = t.evaluate(*data, prefix);
      nlohmann::json m = r.metrics;
      m["epoch"] = train_metrics["epoch"];
      print_metrics(prefix, numbers_only(m));
      if (writes) atomic_write_bytes(fs::path(a.output_dir) / (prefix + "_results.json"), m.dump(4) + "\n");
      rep.finals.push_back({name, prefix, m});
      finals.emplace_back(name, m);
    }
    rep.setup = {{"model", model_name + (pretrained ? "" : " (random init, not pretrained)")},
                 {"data", std::to_string(train.size()) + " train / " + std::to_string(validation.size()) + " validation" +
                              (test ? " / " + std::to_string(test->size()) + " test" : "")},
                 {"epochs", shortest(a.epochs)},
                 {"steps", std::to_string(t.global_step())},
                 {"batch size", std::to_string(a.batch_size)},
                 {"learning rate", shortest(a.learning_rate) + ", " + a.lr_scheduler + " schedule, " +
                                       std::to_string(a.warmup_steps) + " warmup steps"},
                 {"weight decay", shortest(a.weight_decay)},
                 {"max grad norm", shortest(a.max_grad_norm)},
                 {"max sequence length", std::to_string(a.max_seq_length)},
                 {"precision", std::string(a.bf16 ? "bf16 mixed (matmuls in bf16, fp32 accumulation and master weights)"
                                           : a.fp16 ? "fp16 mixed (matmuls on fp16-rounded operands, dynamic loss scaling)"
                                                    : "fp32") + " (" + D::name + ")"},
                 {"seed", std::to_string(a.seed)},
                 {"threads", std::to_string(num_threads()) +
                                 (comm ? " per process, " + std::to_string(comm->world_size()) + " processes (" +
                                             comm->name() + ")"
                                       : "")}};
    rep.notes.push_back(std::string("The reference experiment ran fp16 mixed precision on a GPU; this run computes ") +
                        (a.bf16 ? "its matmuls in bf16" : a.fp16 ? "its matmuls on fp16-rounded operands" : "in fp32") +
                        " on " + (std::is_same_v<D, device::cpu> ? "the CPU." : "the GPU."));
    if (!writes) return 0;
    write_report(rep, a.output_dir);

    // summary table
    std::cout << "\n| split | loss | accuracy | precision | recall | F1 | runtime (s) | samples/s |\n|---|---|---|---|---|---|---|---|\n";
    for (auto& [name, m] : finals) {
      const std::string p = name == "test" ? "test" : "eval";
      auto g = [&](const char* k) {
        if (!m.contains(p + "_" + k)) return std::string("-");
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.4f", m[p + "_" + k].template get<double>());
        return std::string(buf);
      };
      std::cout << "| " << name << " | " << g("loss") << " | " << g("accuracy") << " | " << g("precision") << " | "
                << g("recall") << " | " << g("f1") << " | " << g("runtime") << " | " << g("samples_per_second") << " |\n";
    }
    std::cout << "\nModel, metrics and report written to " << a.output_dir << " (report.md, report.html)\n";
    return 0;
  });
}

// ------------------------------------------------------------------------------------------------ evaluate

int cmd_evaluate(int argc, char** argv) {
  sentiment::cli c("evaluate", "Evaluate a fine-tuned model on labeled data: prints the metrics and writes them as JSON.");
  c.option("model", "model directory (config.json, model.safetensors, tokenizer files)", "", true)
      .option("data", "labeled data (TSV, CSV or JSONL)", "", true)
      .option("output", "metrics JSON file (default: <model>/evaluate_results.json)");
  add_inference_flags(c);
  if (!c.parse(argc, argv, 2, std::cout)) return 0;
  refuse_distributed("evaluate");
  return on_device(c.str("device"), [&]<class D>(D) {
    inference_setup<D> m = load_for_inference<D>(c);
    const dataset data = read_dataset(c.str("data"), data_options(c, m.model->config().id2label, true));
    trainer<float, D> t(*m.model, *m.tok, m.args, std::cout);
    const prediction_output r = t.evaluate(data, "eval");
    print_metrics("eval", numbers_only(r.metrics));
    const fs::path out = c.has("output") ? fs::path(c.str("output")) : m.dir / "evaluate_results.json";
    atomic_write_bytes(out, r.metrics.dump(4) + "\n");
    std::cout << "Metrics written to " << out.string() << "\n";
    return 0;
  });
}

// ------------------------------------------------------------------------------------------------ predict

int cmd_predict(int argc, char** argv) {
  sentiment::cli c("predict", "Predict every row of a TSV (header with a 'sentence' column; a 'label' column is\n"
                              "ignored), CSV or JSONL file. Writes one JSON line per row, in input order:\n"
                              "{\"label\": ID, \"label_name\": NAME, \"probs\": [...], \"logits\": [...]}");
  c.option("model", "model directory", "", true)
      .option("input", "TSV, CSV or JSONL file", "", true)
      .option("output", "JSON-lines file (default: standard output)");
  add_inference_flags(c);
  if (!c.parse(argc, argv, 2, std::cout)) return 0;
  refuse_distributed("predict");
  return on_device(c.str("device"), [&]<class D>(D) {
    inference_setup<D> m = load_for_inference<D>(c);
    read_options o = data_options(c, m.model->config().id2label, false);
    o.label_column = c.has("label-column") ? c.str("label-column") : "";
    dataset data = read_dataset(c.str("input"), o);
    for (auto& e : data.examples) e.label = -1; // labels are ignored
    data.has_labels = false;
    std::ostringstream quiet;
    trainer<float, D> t(*m.model, *m.tok, m.args, quiet);
    const prediction_output r = t.evaluate(data, "predict");
    std::ostringstream os;
    const auto& names = m.model->config().id2label;
    for (std::size_t i = 0; i < r.logits.size(); ++i) {
      const auto& z = r.logits[i];
      double mx = z[0], sum = 0;
      for (double v : z) mx = std::max(mx, v);
      std::vector<double> p(z.size());
      for (std::size_t k = 0; k < z.size(); ++k) sum += (p[k] = std::exp(z[k] - mx));
      os << "{\"label\": " << r.predictions[i] << ", \"label_name\": " << nlohmann::json(names[r.predictions[i]]).dump()
         << ", \"probs\": [";
      for (std::size_t k = 0; k < p.size(); ++k) os << (k ? ", " : "") << float_text(float(p[k] / sum));
      os << "], \"logits\": [";
      for (std::size_t k = 0; k < z.size(); ++k) os << (k ? ", " : "") << float_text(float(z[k]));
      os << "]}\n";
    }
    if (c.has("output")) atomic_write_bytes(c.str("output"), os.str());
    else std::cout << os.str() << std::flush;
    return 0;
  });
}

// ------------------------------------------------------------------------------------------------ compare

int cmd_compare(int argc, char** argv) {
  sentiment::cli c("compare", "Compare training runs: writes comparison.md and comparison.html (a side-by-side table\n"
                              "of their test metrics and runtimes, overlaid loss and learning-rate curves).");
  c.positional("RUN_DIR", "output directories of sentiment_trainer train runs (each holds report.json)")
      .option("output-dir", "where comparison.md and comparison.html go", ".");
  if (!c.parse(argc, argv, 2, std::cout)) return 0;
  MINIBERT_CHECK(c.positionals().size() >= 1, "compare", "give at least one run directory (see --help)");
  std::vector<fs::path> runs(c.positionals().begin(), c.positionals().end());
  const comparison_data cmp = compare_runs(runs, c.str("output-dir"));
  std::cout << render_comparison_markdown(cmp) << "\nWritten to " << (fs::path(c.str("output-dir")) / "comparison.md").string()
            << " and comparison.html\n";
  return 0;
}

// ------------------------------------------------------------------------------------------------ download

// every value of a repeatable flag (--name V or --name=V), each split at commas
std::vector<std::string> repeated_values(int argc, char** argv, const std::string& name) {
  std::vector<std::string> out;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (a == "--" + name && i + 1 < argc) v = argv[++i];
    else if (a.rfind("--" + name + "=", 0) == 0) v = a.substr(name.size() + 3);
    else continue;
    for (std::size_t start = 0, comma; start <= v.size(); start = comma + 1) {
      comma = std::min(v.find(',', start), v.size());
      if (comma > start) out.push_back(v.substr(start, comma - start));
    }
  }
  return out;
}

int cmd_download(int argc, char** argv) {
  sentiment::cli c("download", "Download a model from the Hugging Face Hub into the local cache that Python's huggingface_hub\n"
                               "and transformers use (the same layout, so each finds the other's downloads), as\n"
                               "huggingface_hub's snapshot_download does, and print its snapshot directory. By default only\n"
                               "what a BERT model needs: config.json, the tokenizer files, and model.safetensors (else\n"
                               "pytorch_model.bin). Environment: HF_ENDPOINT, HF_TOKEN (gated or private models),\n"
                               "HF_HUB_OFFLINE=1 (no network: only what the cache holds), HF_HUB_CACHE / HF_HOME.");
  c.positional("ORG/NAME", "the hub id, e.g. bert-base-uncased or google-bert/bert-base-uncased")
      .option("revision", "branch, tag or commit", "main")
      .option("include", "only the files matching these glob patterns (comma-separated, or the flag repeated;\n"
                         "      fnmatch patterns as huggingface_hub's allow_patterns, e.g. '*.json,vocab.txt')")
      .option("cache-dir", "the hub cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)");
  if (!c.parse(argc, argv, 2, std::cout)) return 0;
  MINIBERT_CHECK(c.positionals().size() == 1, "download", "give exactly one hub id, e.g. bert-base-uncased (see --help)");
  std::vector<std::string> patterns = repeated_values(argc, argv, "include");
#if defined(MINIBERT_WITH_CURL)
  hub_options o;
  o.revision = c.str("revision");
  o.allow_patterns = std::move(patterns);
  if (c.has("cache-dir")) o.cache_dir = c.str("cache-dir");
  std::cout << snapshot_download(c.positionals().front(), o).string() << "\n";
  return 0;
#else
  throw error("download", "this sentiment_trainer was built without the hub downloader (libcurl): install "
                          "libcurl4-openssl-dev and configure again");
#endif
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "train") {
      const int rc = cmd_train(argc, argv);
      job.reset(); // NCCL's clique, then MPI_Finalize on every rank
      bootstrap.reset();
      return rc;
    }
    if (cmd == "evaluate") return cmd_evaluate(argc, argv);
    if (cmd == "predict") return cmd_predict(argc, argv);
    if (cmd == "compare") return cmd_compare(argc, argv);
    if (cmd == "download") return cmd_download(argc, argv);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::cout << usage;
      return 0;
    }
    std::cerr << (cmd.empty() ? "" : "unknown command '" + cmd + "'\n") << usage;
    return 2;
  } catch (const std::exception& e) {
    if (job && job->world_size() > 1) {
      std::cerr << "error (rank " << job->rank() << " of " << job->world_size() << "): " << e.what()
                << "\nending every rank of the job\n" << std::flush;
      job->abort(1);
    }
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
