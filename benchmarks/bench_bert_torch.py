# SPDX-License-Identifier: MIT
"""PyTorch side of bench_bert.cpp: the same bert-base BertForSequenceClassification (transformers' own class, built by
tests/python/bert_reference.py), same batch, 2 threads; prints samples/s and peak RSS (MB) as JSON.
Strongest honest configuration on these machines: OpenBLAS's OpenMP flavour, torch.inference_mode() for inference,
and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (they force an older kernel; run_bert_bench.sh unsets them).

usage: bench_bert_torch.py {inference,train} [--batch 32] [--seq 128] [--seconds 20] [--bf16]
  --bf16: forward (and loss) under torch.autocast("cpu", dtype=torch.bfloat16), the backward outside it (as the
          autocast documentation prescribes and transformers' Trainer does with bf16=True)
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import bert_reference as ref  # noqa: E402

BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
             "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
             "id2label": {"0": "negative", "1": "positive"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["inference", "train"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    model = ref.BertForSequenceClassification(BERT_BASE)
    ref.init_weights(model, BERT_BASE)
    ids = torch.randint(1000, BERT_BASE["vocab_size"], (a.batch, a.seq))
    mask = torch.ones(a.batch, a.seq, dtype=torch.long)
    types = torch.zeros(a.batch, a.seq, dtype=torch.long)
    labels = torch.arange(a.batch) % 2

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)

    def step():
        if a.mode == "inference":
            with torch.inference_mode(), autocast:
                model(ids, mask, types, labels)
        else:
            model.zero_grad(set_to_none=True)
            with autocast:
                _, loss = model(ids, mask, types, labels)
            loss.backward()

    model.eval() if a.mode == "inference" else model.train()
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds or n < 2:
        step()
        n += 1
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": a.mode, "bf16": a.bf16, "batch": a.batch, "seq": a.seq, "iterations": n,
                      "ms_per_step": 1000 * dt / n, "samples_per_s": a.batch * n / dt,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
