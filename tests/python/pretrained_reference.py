# SPDX-License-Identifier: MIT
"""transformers' side of tests/test_pretrained_parity.cpp, on the real pretrained checkpoint
sentence-transformers/all-MiniLM-L6-v2 from the local hub cache (HF_HUB_OFFLINE=1, local_files_only).

usage:
  pretrained_reference.py logits --texts TEXTS.json --tokenizer ID_OR_DIR --out OUT_DIR [--f64-count N]
                                 [--control DIR --control-count M] MODEL_DIR
      MODEL_DIR (a directory minibert's save_pretrained wrote) loaded by BertForSequenceClassification.from_pretrained
      with every transformers log record (at its default verbosity) and every Python warning captured; the texts
      (a JSON list of strings) tokenized by BertTokenizerFast.from_pretrained(ID_OR_DIR) (truncation to 128 tokens,
      batches of 32 padded to their longest) and run in eval mode in fp32, and the first N also in fp64 (the same
      weights widened: the exact-arithmetic stand-in that fp32 results are measured against).
      Writes OUT_DIR/ids.json (the token ids, one list per text, without padding), OUT_DIR/logits_0.safetensors
      ("f32" (len,2) and "f64" (N,2)) and OUT_DIR/messages_0.json (the captured messages); for --control the same
      as logits_control.safetensors ("f32" of the first M texts) and messages_control.json.
  pretrained_reference.py messages --id ID --fixtures DIR --out OUT.json
      Writes two more checkpoints under DIR, both from ID: "base_no_pooler" (BertModel without its pooler, as
      BertModel(add_pooling_layer=False).save_pretrained writes it) and "pretraining" (BertForPreTraining's keys, heads
      newly initialized, with architectures ["BertForMaskedLM"] in config.json as bert-base-uncased has it). Then loads
      ID and both directories (named as given) into BertForSequenceClassification, BertForMaskedLM and BertModel and
      writes {source: {class: [message, ...]}}: what transformers logs at its default verbosity (warning) and warns.
"""
import argparse
import json
import logging
import os
import sys
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,  # noqa: E402
                          BertModel, BertTokenizerFast)

# transformers >= 4.46 warns once that BertForMaskedLM will stop inheriting GenerationMixin in v4.50: a notice about
# transformers' own class hierarchy, not about the checkpoint, which minibert (with no generate()) has no reason to
# print. It is the one message dropped, matched by its text.
GENERATION_MIXIN_NOTICE = "has generative capabilities, as `prepare_inputs_for_generation` is explicitly overwritten"


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.NOTSET)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_captured(cls, source, **kw):
    """cls.from_pretrained(source) with every transformers log record (default verbosity) and warning captured"""
    cap = Capture()
    logger = logging.getLogger("transformers")
    logger.addHandler(cap)
    transformers.logging.disable_default_handler()  # captured, not also printed (the level stays the default)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = cls.from_pretrained(source, local_files_only=True, **kw)
    finally:
        logger.removeHandler(cap)
        transformers.logging.enable_default_handler()
    msgs = [m for m in cap.messages if GENERATION_MIXIN_NOTICE not in m]
    msgs += ["%s: %s" % (w.category.__name__, w.message) for w in caught]
    return model, msgs


def cmd_logits(a):
    torch.set_num_threads(2)
    texts = json.load(open(a.texts))
    tok = BertTokenizerFast.from_pretrained(a.tokenizer, local_files_only=True)
    batches = [tok(texts[i:i + a.batch], padding="longest", truncation=True, max_length=a.max_length,
                   return_tensors="pt") for i in range(0, len(texts), a.batch)]
    ids = []
    for b in batches:
        for row, m in zip(b["input_ids"].tolist(), b["attention_mask"].tolist()):
            ids.append(row[:sum(m)])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "ids.json"), "w") as f:
        json.dump(ids, f)

    def run(model, count):
        with torch.no_grad():
            return torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                    token_type_ids=b["token_type_ids"]).logits
                              for b in batches[:(count + a.batch - 1) // a.batch]])[:count]

    runs = [("0", a.model, {"f32": len(texts), "f64": a.f64_count})]
    if a.control:
        runs.append(("control", a.control, {"f32": a.control_count}))
    for tag, d, counts in runs:
        model, msgs = load_captured(BertForSequenceClassification, d, attn_implementation="eager")
        with open(os.path.join(a.out, "messages_%s.json" % tag), "w") as f:
            json.dump(msgs, f)
        model.eval()
        out = {"f32": run(model, counts["f32"]).contiguous()}
        if counts.get("f64"):
            out["f64"] = run(model.double(), counts["f64"]).contiguous()
        save_file(out, os.path.join(a.out, "logits_%s.safetensors" % tag))


def cmd_messages(a):
    torch.manual_seed(0)
    base = os.path.join(a.fixtures, "base_no_pooler")
    pre = os.path.join(a.fixtures, "pretraining")
    logging.getLogger("transformers").setLevel(logging.ERROR)  # the fixtures' own load messages are not compared
    BertModel.from_pretrained(a.id, local_files_only=True, add_pooling_layer=False).save_pretrained(base)
    BertForPreTraining.from_pretrained(a.id, local_files_only=True).save_pretrained(pre)
    transformers.logging.set_verbosity_warning()  # transformers' default verbosity again
    cfg_path = os.path.join(pre, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["architectures"] = ["BertForMaskedLM"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    res = {}
    for source in (a.id, base, pre):
        res[source] = {}
        for cls in (BertForSequenceClassification, BertForMaskedLM, BertModel):
            res[source][cls.__name__] = load_captured(cls, source)[1]
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits")
    lg.add_argument("--texts", required=True)
    lg.add_argument("--tokenizer", required=True)
    lg.add_argument("--out", required=True)
    lg.add_argument("--batch", type=int, default=32)
    lg.add_argument("--max-length", type=int, default=128)
    lg.add_argument("--f64-count", type=int, default=0, help="run the first N texts in fp64 too")
    lg.add_argument("--control", help="a second model directory, run on the first --control-count texts")
    lg.add_argument("--control-count", type=int, default=0)
    lg.add_argument("model")
    ms = sub.add_parser("messages")
    ms.add_argument("--id", required=True)
    ms.add_argument("--fixtures", required=True)
    ms.add_argument("--out", required=True)
    a = ap.parse_args()
    if transformers.__version__ != "4.46.3":
        print("expected transformers 4.46.3, found", transformers.__version__, file=sys.stderr)
        return 1
    (cmd_logits if a.cmd == "logits" else cmd_messages)(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
