# SPDX-License-Identifier: MIT
"""transformers' own Trainer on the sentiment protocol of sentiment_trainer, as the side-by-side reference.

The data are prepared exactly as `sentiment_trainer train` prepares them: the train file is split with a port of
minibert's split_validation (include/minibert/data/split.hpp: splitmix64 Fisher-Yates with rejection; validation =
the first round(fraction * n) indices of the permutation; both parts keep file order), texts tokenized with the
model's tokenizer (truncation to --max-length, padding per batch to the longest). Then the usual script:
set_seed(seed); from_pretrained (the new classifier head drawn from torch's generator); Trainer(...).train().

Two uses:
  * parity (tests/test_trainer_parity.cpp): --max-steps 20 --logging-steps 1 --eval-strategy no --no-final-eval
    --hidden-dropout 0 --attention-dropout 0 --save-weights OUT.safetensors
  * the full reference protocol (defaults: 3 epochs, batch 32, lr 2e-5, warmup 500, linear decay, seed 42, max
    length 128, eval per epoch, logging every 100 steps, fp32 on the CPU) with --test and --threads N, for a
    side-by-side benchmark: prints a metric table (accuracy, weighted precision/recall/F1, eval_loss, runtime,
    samples/s) and writes --json {"setup", "train", "eval", "test", "log_history", "step_losses"}.

usage: HF_HUB_OFFLINE=1 hf_trainer.py --train train.tsv [--test test.tsv] --output-dir DIR [--json FILE] [flags]
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,  # noqa: E402
                          Trainer, TrainingArguments, set_seed)

M64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------------ minibert's split
def splitmix64_permutation(n, seed):
    """minibert::permutation(n, seed): splitmix64, for i = n-1 down to 1 a rejection-sampled j in [0, i]."""
    state = seed & M64

    def nxt():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    p = list(range(n))
    for i in range(n, 1, -1):
        threshold = (1 << 64) % i
        while True:
            x = nxt()
            if x >= threshold:
                break
        j = x % i
        p[i - 1], p[j] = p[j], p[i - 1]
    return p


def split_validation(n, fraction, seed):
    """(train indices, validation indices), both in file order, as minibert::split_validation."""
    x = fraction * n
    n_val = int(x + 0.5) if x >= 0 else -int(-x + 0.5)  # llround: half away from zero
    p = splitmix64_permutation(n, seed)
    return sorted(p[n_val:]), sorted(p[:n_val])


def read_tsv(path, text_column="sentence", label_column="label"):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        ti, li = header.index(text_column), header.index(label_column)
        rows = [line.rstrip("\r\n").split("\t") for line in f if line.strip()]
    return [r[ti] for r in rows], [int(r[li]) for r in rows]


class Encoded(torch.utils.data.Dataset):
    def __init__(self, tok, texts, labels, max_length):
        enc = tok(texts, truncation=True, max_length=max_length)
        self.rows = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                      "attention_mask": enc["attention_mask"][i], "labels": labels[i]} for i in range(len(texts))]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


# ------------------------------------------------------------------------------------------------ metrics
def classification_metrics(eval_pred):
    """accuracy and support-weighted precision, recall and F1 (sklearn's average='weighted', zero_division=0)."""
    logits, labels = eval_pred
    preds = logits.argmax(-1)
    classes = sorted(set(labels.tolist()) | set(preds.tolist()))
    n = len(labels)
    p_w = r_w = f_w = 0.0
    for c in classes:
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        w = (tp + fn) / n
        p_w, r_w, f_w = p_w + w * p, r_w + w * r, f_w + w * f
    return {"accuracy": float((preds == labels).mean()), "precision": p_w, "recall": r_w, "f1": f_w}


class RecordingTrainer(Trainer):
    """Trainer that also keeps every optimizer step's unrounded loss (log_history rounds to 4 decimals)."""

    step_losses = []

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self.step_losses.append(float(loss.detach()))
        return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--train", required=True)
    ap.add_argument("--test")
    ap.add_argument("--validation-split", type=float, default=0.2)
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("--json", help="write setup, metrics, log_history and step losses here")
    ap.add_argument("--save-weights", help="write the trained model's state dict here (safetensors, F32)")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--warmup-steps", type=int, default=500)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--logging-steps", type=int, default=100)
    ap.add_argument("--eval-strategy", default="epoch", choices=["no", "steps", "epoch"])
    ap.add_argument("--hidden-dropout", type=float)
    ap.add_argument("--attention-dropout", type=float)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--no-final-eval", action="store_true", help="skip the final validation/test evaluation")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    texts, labels = read_tsv(a.train)
    tr, va = split_validation(len(texts), a.validation_split, a.seed)
    num_labels = max(labels) + 1
    tok = AutoTokenizer.from_pretrained(a.model, local_files_only=True)
    train_ds = Encoded(tok, [texts[i] for i in tr], [labels[i] for i in tr], a.max_length)
    val_ds = Encoded(tok, [texts[i] for i in va], [labels[i] for i in va], a.max_length)
    test_ds = None
    if a.test:
        tt, tl = read_tsv(a.test)
        test_ds = Encoded(tok, tt, tl, a.max_length)

    overrides = {}
    if a.hidden_dropout is not None:
        overrides["hidden_dropout_prob"] = a.hidden_dropout
    if a.attention_dropout is not None:
        overrides["attention_probs_dropout_prob"] = a.attention_dropout
    set_seed(a.seed)  # as the transformers examples do, right before from_pretrained draws the new head
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=num_labels, local_files_only=True,
                                                               **overrides)
    args = TrainingArguments(
        output_dir=a.output_dir, num_train_epochs=a.epochs, max_steps=a.max_steps,
        per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=a.eval_batch_size,
        learning_rate=a.learning_rate, lr_scheduler_type="linear", warmup_steps=a.warmup_steps,
        weight_decay=a.weight_decay, max_grad_norm=a.max_grad_norm, seed=a.seed, logging_steps=a.logging_steps,
        eval_strategy=a.eval_strategy, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=train_ds,
                               eval_dataset=val_ds if a.eval_strategy != "no" else None,
                               data_collator=DataCollatorWithPadding(tok), compute_metrics=classification_metrics)
    t0 = time.time()
    train_out = trainer.train()
    wall = time.time() - t0
    result = {"setup": {"model": a.model, "train": len(train_ds), "validation": len(val_ds),
                        "test": len(test_ds) if test_ds else 0, "epochs": a.epochs, "max_steps": a.max_steps,
                        "batch_size": a.batch_size, "learning_rate": a.learning_rate, "warmup_steps": a.warmup_steps,
                        "weight_decay": a.weight_decay, "max_grad_norm": a.max_grad_norm, "seed": a.seed,
                        "max_length": a.max_length, "threads": torch.get_num_threads(),
                        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
                        "precision": "fp32 (CPU)"},
              "train": dict(train_out.metrics, wall_seconds=wall)}
    if not a.no_final_eval:
        result["eval"] = trainer.evaluate(val_ds, metric_key_prefix="eval")
        if test_ds is not None:
            result["test"] = trainer.evaluate(test_ds, metric_key_prefix="test")
    result["log_history"] = trainer.state.log_history
    result["step_losses"] = trainer.step_losses
    if a.save_weights:
        from safetensors.torch import save_file
        save_file({k: v.detach().contiguous().float() for k, v in model.state_dict().items()}, a.save_weights)

    rows = [(name, result[p], p) for name, p in (("validation", "eval"), ("test", "test")) if p in result]
    if rows:
        print("\n| split | loss | accuracy | precision | recall | F1 | runtime (s) | samples/s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, m, p in rows:
            def g(k):
                return "%.4f" % m[f"{p}_{k}"] if f"{p}_{k}" in m else "-"
            print(f"| {name} | {g('loss')} | {g('accuracy')} | {g('precision')} | {g('recall')} | {g('f1')} | "
                  f"{g('runtime')} | {g('samples_per_second')} |")
    print("train:", json.dumps(result["train"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
