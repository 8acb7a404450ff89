# SPDX-License-Identifier: MIT
"""PyTorch reference for minibert's optimizer: a few steps of transformers' Trainer inner loop on a small random
BertForSequenceClassification (bert_reference.py's port of modeling_bert.py) with torch.optim.AdamW (foreach=False,
the single-tensor path), transformers' no-decay parameter groups, clip_grad_norm_ and a LambdaLR schedule written as
transformers' optimization.py writes it.

usage: optimizer_reference.py --spec SPEC.json --out DIR
SPEC.json: {"config": {...BertConfig...}, "dtype": "float32"|"float64", "seed": N, "lr": 1e-3, "weight_decay": 0.01,
            "schedule": "linear"|"cosine"|"constant"|"constant_with_warmup", "warmup_steps": 3,
            "max_grad_norm": 0.5,
            "steps": [[micro-batch, ...], ...]}   one list of micro-batches per optimizer step;
            micro-batch: {"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]], "labels": [...]}
Writes into DIR/model: config.json and model.safetensors (the F32 initial weights, as bert_reference.py writes them);
into DIR/reference.safetensors (all F64):
  "loss" (steps): the step's training loss, the sum of the micro-batch losses each divided by the accumulation count
  "grad_norm" (steps): clip_grad_norm_'s return value;  "lr" (steps): the lr the optimizer step used
  "param.<name>": every parameter after the last step
  "state.<name>.exp_avg", "state.<name>.exp_avg_sq": AdamW's moments after the last step (all but the word
  embeddings, to keep the file small); "state_step" (params, in named_parameters order): each state's step count
"""
import argparse
import json
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_reference  # noqa: E402
import safetensors_reference  # noqa: E402


# transformers/optimization.py, as written there (lambda factors of LambdaLR)
def _linear(current_step, *, num_warmup_steps, num_training_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def _cosine(current_step, *, num_warmup_steps, num_training_steps, num_cycles=0.5):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def _constant(current_step, **_):
    return 1.0


def _constant_with_warmup(current_step, *, num_warmup_steps, **_):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1.0, num_warmup_steps))
    return 1.0


SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant": _constant, "constant_with_warmup": _constant_with_warmup}


def decay_parameter_names(model):
    """transformers' Trainer.get_decay_parameter_names: not in a LayerNorm layer, and "bias" not in the name."""
    def names(module):
        result = []
        for name, child in module.named_children():
            result += [f"{name}.{n}" for n in names(child) if not isinstance(child, nn.LayerNorm)]
        result += list(module._parameters.keys())
        return result
    return [n for n in names(model) if "bias" not in n]


def to_tensors(mb):
    return (torch.tensor(mb["input_ids"], dtype=torch.long), torch.tensor(mb["attention_mask"], dtype=torch.long),
            torch.tensor(mb["token_type_ids"], dtype=torch.long), torch.tensor(mb["labels"], dtype=torch.long))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    spec = json.load(open(a.spec))
    c = spec["config"]
    torch.manual_seed(spec.get("seed", 0))
    torch.set_num_threads(1)

    model = bert_reference.BertForSequenceClassification(c)
    bert_reference.init_weights(model, c)
    with torch.no_grad():  # as bert_reference.py: random biases and LayerNorm parameters (LayerNorm weight != 1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    mdir = os.path.join(a.out, "model")
    os.makedirs(mdir, exist_ok=True)
    cfg = dict(c)
    cfg["architectures"] = ["BertForSequenceClassification"]
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    safetensors_reference.save(state, os.path.join(mdir, "model.safetensors"), {"format": "pt"})

    dt = torch.float64 if spec["dtype"] == "float64" else torch.float32
    model = model.to(dt)
    model.train()  # dropout probabilities are 0 in the config: train mode is deterministic

    # Trainer.create_optimizer: decay group first, then the no-decay group
    decay = set(decay_parameter_names(model))
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay and p.requires_grad],
         "weight_decay": spec["weight_decay"]},
        {"params": [p for n, p in model.named_parameters() if n not in decay and p.requires_grad],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    steps = spec["steps"]
    fn = SCHEDULES[spec["schedule"]]
    kw = {"num_warmup_steps": spec["warmup_steps"], "num_training_steps": len(steps)}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: fn(s, **kw))

    losses, norms, lrs = [], [], []
    for micro in steps:  # Trainer._inner_training_loop, one optimizer step per list of micro-batches
        total = 0.0
        for mb in micro:
            ids, mask, types, labels = to_tensors(mb)
            _, loss = model(ids, mask, types, labels)
            loss = loss / len(micro)  # Trainer.training_step divides by gradient_accumulation_steps
            loss.backward()
            total += loss.item()
        norm = nn.utils.clip_grad_norm_(model.parameters(), spec["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        model.zero_grad()
        losses.append(total)
        norms.append(float(norm))

    f64 = torch.float64
    out = {"loss": torch.tensor(losses, dtype=f64), "grad_norm": torch.tensor(norms, dtype=f64),
           "lr": torch.tensor(lrs, dtype=f64)}
    step_counts = []
    for name, p in model.named_parameters():
        out["param." + name] = p.detach().to(f64)
        st = opt.state[p]
        step_counts.append(float(st["step"]))
        if name != "bert.embeddings.word_embeddings.weight":
            out[f"state.{name}.exp_avg"] = st["exp_avg"].to(f64)
            out[f"state.{name}.exp_avg_sq"] = st["exp_avg_sq"].to(f64)
    out["state_step"] = torch.tensor(step_counts, dtype=f64)
    safetensors_reference.save(out, os.path.join(a.out, "reference.safetensors"))


if __name__ == "__main__":
    main()
