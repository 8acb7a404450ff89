# SPDX-License-Identifier: MIT
"""PyTorch's side of tests/test_mixed_precision.cpp: how far CPU bf16 autocast moves a model's logits and a short
fine-tuning run's losses away from fp32, measured on the case minibert runs.

usage: autocast_reference.py --spec SPEC.json --out OUT.json

SPEC: {"model_dir": a BertForSequenceClassification directory (minibert's save_pretrained, dropout set to 0 in its
config), "eval": {"input_ids", "attention_mask"} (one batch, lists of rows), "steps": [{"input_ids",
"attention_mask", "labels"}, ...], "lr": AdamW's learning rate}.
For each mode (fp32, and torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss, the backward outside
it, as the autocast documentation prescribes), from the same weights: the eval batch's logits in eval mode, then one
AdamW step (weight decay 0, constant lr) per entry of "steps" in train mode, recording each step's loss.
OUT: {"fp32": {"logits": [[...]], "losses": [...]}, "bf16": {...}, "torch": version}.
"""
import argparse
import json

import torch
from transformers import BertForSequenceClassification


def run(spec, bf16):
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(spec["model_dir"], attn_implementation="eager")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    model.eval()
    with torch.no_grad(), autocast:
        ev = spec["eval"]
        logits = model(input_ids=torch.tensor(ev["input_ids"]), attention_mask=torch.tensor(ev["attention_mask"])).logits
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.0)
    losses = []
    for step in spec["steps"]:
        opt.zero_grad()
        with autocast:
            out = model(input_ids=torch.tensor(step["input_ids"]), attention_mask=torch.tensor(step["attention_mask"]),
                        labels=torch.tensor(step["labels"]))
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss))
    return {"logits": logits.float().tolist(), "losses": losses}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.spec) as f:
        spec = json.load(f)
    torch.set_num_threads(2)
    result = {"fp32": run(spec, False), "bf16": run(spec, True), "torch": torch.__version__}
    with open(a.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
