# SPDX-License-Identifier: MIT
"""PyTorch reference for minibert's BERT: Hugging Face transformers itself (the pinned PyPI transformers in the
test venv, over Debian's torch). BertForSequenceClassification (problem_type losses) or BertForMaskedLM (decoder
tied to the word embeddings) is built from the given config with transformers' own initialization
(PreTrainedModel.post_init -> BertPreTrainedModel._init_weights) and eager attention, then saved with transformers'
own save_pretrained, in both formats.

usage: bert_reference.py --config CONFIG.json --inputs INPUTS.json --out DIR --task {seq_cls,mlm}
                         [--seed N] [--dtype float32|float64]
Writes into DIR: config.json and model.safetensors (save_pretrained, safe_serialization=True: the tied MLM decoder
stored once), pytorch_model.bin (save_pretrained, safe_serialization=False: torch.save of the state dict, the older
HF format), and reference.safetensors with the model's outputs in eval mode at --dtype: "logits", "loss", and
"grad.<param>" for every parameter of model.named_parameters() (tied parameters appear once, under their first name).
Imported by optimizer_reference.py and benchmarks/bench_bert_torch.py for BertForSequenceClassification(config_dict)
(transformers' class, called positionally, returning (logits, loss)) and init_weights(model, config_dict).
INPUTS.json: {"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]],
              "labels": [...] (ints for single-label / mlm (B,T with -100), floats for regression / multi-label)}
"""
import argparse
import json
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig  # noqa: E402


class BertForSequenceClassification(transformers.BertForSequenceClassification):
    """transformers' BertForSequenceClassification (same parameter names, same init) built from a config dict and
    called positionally: model(input_ids, attention_mask, token_type_ids, labels) -> (logits, loss). The interface
    optimizer_reference.py and benchmarks/bench_bert_torch.py use."""

    def __init__(self, c):
        super().__init__(BertConfig(**c, attn_implementation="eager"))

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              labels=labels)
        return out.logits, out.loss


def init_weights(model, c):
    """transformers' BertPreTrainedModel._init_weights over every module again (a fresh draw from torch's RNG)"""
    model.apply(model._init_weights)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", choices=["seq_cls", "mlm"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    with open(a.config) as f:
        cfg = BertConfig(**json.load(f), attn_implementation="eager")
    with open(a.inputs) as f:
        inp = json.load(f)
    cls = transformers.BertForSequenceClassification if a.task == "seq_cls" else transformers.BertForMaskedLM
    model = cls(cfg)  # post_init: transformers' _init_weights
    assert model.config._attn_implementation == "eager"
    # random LayerNorm and bias values too, so a swapped or skipped bias/LayerNorm tensor cannot go unnoticed
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)

    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)  # config.json + model.safetensors
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)  # pytorch_model.bin
        shutil.move(os.path.join(tmp, "pytorch_model.bin"), os.path.join(a.out, "pytorch_model.bin"))

    dt = torch.float64 if a.dtype == "float64" else torch.float32
    model = model.to(dt)
    model.eval()
    ids = torch.tensor(inp["input_ids"], dtype=torch.long)
    mask = torch.tensor(inp["attention_mask"], dtype=torch.long)
    types = torch.tensor(inp["token_type_ids"], dtype=torch.long)
    labels = torch.tensor(inp["labels"])
    if labels.is_floating_point():  # regression / multi-label targets in the model's dtype
        labels = labels.to(dt)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()
    ref = {"logits": out.logits.detach().to(torch.float64),
           "loss": out.loss.detach().reshape(1).to(torch.float64)}
    for name, p in model.named_parameters():
        ref["grad." + name] = p.grad.detach().to(torch.float64).contiguous()
    save_file(ref, os.path.join(a.out, "reference.safetensors"))


if __name__ == "__main__":
    main()
