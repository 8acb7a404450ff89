# SPDX-License-Identifier: MIT
"""HF tokenizers (PyPI `tokenizers`, the Rust library behind transformers' BertTokenizerFast, from the .venv) on the
corpora of bench_tokenizer.cpp, measured the same way: Tokenizer.encode_batch over the whole corpus (the full
encodings are built), lines/s and MB/s of UTF-8 input, REPS repetitions after a warm-up. Single thread: run with
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false (the Rust side then encodes the batch sequentially on one thread);
batch: all cores. Also measures the binding's own cost per text (encode_batch of as many empty strings) so that a
reader can see how much of HF's time is not tokenization.

usage: .venv/bin/python benchmarks/bench_tokenizer_hf.py MODE REPS   (MODE: single | batch; one JSON line per corpus)
"""
import json
import os
import statistics
import sys
import time

import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def corpora():
    with open(os.path.join(DATA, "sentiment/sst2/train_full.tsv"), encoding="utf-8") as f:
        sst2 = [line.split("\t")[0] for line in f.read().split("\n")[1:] if line]
    amazon = []
    for fn in ("books.jsonl", "dvd.jsonl"):
        with open(os.path.join(DATA, "sentiment/amazon_reviews", fn), encoding="utf-8") as f:
            amazon += [json.loads(line)["text"] for line in f.read().split("\n") if line]
    return {"sst2_train_full": sst2, "amazon_reviews": amazon}


def time_batch(t, texts):
    t0 = time.perf_counter()
    encs = t.encode_batch(texts)
    t1 = time.perf_counter()
    if len(encs) != len(texts):
        raise RuntimeError("encode_batch returned %d encodings" % len(encs))
    return t1 - t0


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "single"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    t = Tokenizer.from_file(os.path.join(DATA, "bert-base-uncased", "tokenizer.json"))
    # the same validation as bench_tokenizer.cpp
    ids = t.encode("Héllo wörld 😀 naïve café").ids
    if ids != [101, 7592, 2088, 100, 15743, 7668, 102]:
        raise RuntimeError("unexpected ids %s" % ids)
    for name, texts in corpora().items():
        nbytes = sum(len(s.encode("utf-8")) for s in texts)
        time_batch(t, texts[:1000])  # warm-up
        secs = [time_batch(t, texts) for _ in range(reps)]
        empty = [""] * len(texts)
        overhead = [time_batch(t, empty) for _ in range(reps)]
        s = statistics.median(secs)
        print(json.dumps({
            "impl": "hf_tokenizers_python", "tokenizers": tokenizers.__version__, "mode": mode, "corpus": name,
            "lines": len(texts), "bytes": nbytes, "reps": reps,
            "seconds_median": s, "seconds_min": min(secs), "seconds_max": max(secs),
            "lines_per_s": len(texts) / s, "mb_per_s": nbytes / 1e6 / s,
            "empty_texts_seconds_median": statistics.median(overhead),
            "rayon_num_threads": os.environ.get("RAYON_NUM_THREADS"),
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        }), flush=True)


if __name__ == "__main__":
    main()
