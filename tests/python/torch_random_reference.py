# SPDX-License-Identifier: MIT
"""Live torch / transformers draws for tests/test_torch_random.cpp, written as JSON (arrays as little-endian hex).

usage: HF_HUB_OFFLINE=1 torch_random_reference.py OUT.json [--model HUB_ID] [--rows N]
  "random64":   torch.empty(2000, dtype=int64).random_(generator=g) after g.manual_seed(s), s in 42, 2**40 + 5
                (int64 random_() keeps the low 63 bits of random64(); 2000 draws cross the 624-word twist)
  "uniform":    uniform_(-0.3, 0.7) on 1000 float32 / float64 elements, seed 7
  "normal":     normal_(0.1, 0.02) at sizes 1, 7, 16, 17, 33, 768, one after another from one generator seeded 42
                (so the cached Box-Muller sample carries over), float32 and float64
  "randperm":   torch.randperm(n, generator=g) with g.manual_seed(1000 + n), n in 0, 1, 2, 10, 100, 9600, 100000
  "classifier": set_seed(42); BertForSequenceClassification.from_pretrained(model, num_labels=2 and 3):
                the new head's weight and bias
  "epochs":     the Trainer's train batches for epochs 0, 1, 2 of a --rows-row dataset (batch 32, seed 42): the
                row indices of every batch, from Trainer.get_train_dataloader() with set_epoch(epoch) per epoch as
                Trainer._inner_training_loop calls it
The normal_ float32 kernel depends on ATEN_CPU_CAPABILITY; "capability" records torch's choice.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def hexs(t):
    return t.contiguous().numpy().tobytes().hex()


def epochs_of_trainer(rows, seed=42, batch=32, epochs=3):
    import tempfile
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return rows

        def __getitem__(self, i):
            return {"idx": i}

    tiny = BertForSequenceClassification(BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1,
                                                    num_attention_heads=1, intermediate_size=4))
    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(output_dir=d, per_device_train_batch_size=batch, seed=seed, report_to=[],
                                 use_cpu=True, remove_unused_columns=False, dataloader_num_workers=0)
        tr = Trainer(model=tiny, args=args, train_dataset=Rows(),
                     data_collator=lambda feats: {"idx": torch.tensor([f["idx"] for f in feats])})
        dl = tr.get_train_dataloader()
        out = []
        for epoch in range(epochs):
            if hasattr(dl, "set_epoch"):
                dl.set_epoch(epoch)
            out.append([b["idx"].tolist() for b in dl])
        return out, type(dl.batch_sampler.sampler).__name__ if hasattr(dl, "batch_sampler") else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--rows", type=int, default=9600)
    a = ap.parse_args()
    r = {"capability": os.environ.get("ATEN_CPU_CAPABILITY", "")}
    g = torch.Generator()
    r["random64"] = {}
    for s in (42, 2**40 + 5):
        g.manual_seed(s)
        r["random64"][str(s)] = hexs(torch.empty(2000, dtype=torch.int64).random_(generator=g))
    r["uniform"], r["normal"] = {}, {}
    for name, dt in (("float32", torch.float32), ("float64", torch.float64)):
        g.manual_seed(7)
        r["uniform"][name] = hexs(torch.empty(1000, dtype=dt).uniform_(-0.3, 0.7, generator=g))
        g.manual_seed(42)
        r["normal"][name] = {str(n): hexs(torch.empty(n, dtype=dt).normal_(0.1, 0.02, generator=g))
                             for n in (1, 7, 16, 17, 33, 768)}
    r["randperm"] = {}
    for n in (0, 1, 2, 10, 100, 9600, 100000):
        g.manual_seed(1000 + n)
        r["randperm"][str(n)] = hexs(torch.randperm(n, generator=g))
    if a.model:
        from transformers import BertForSequenceClassification, set_seed
        r["classifier"] = {}
        for labels in (2, 3):
            set_seed(42)
            m = BertForSequenceClassification.from_pretrained(a.model, num_labels=labels, local_files_only=True)
            r["classifier"][str(labels)] = {"weight": hexs(m.classifier.weight.detach()),
                                            "bias": hexs(m.classifier.bias.detach())}
    if a.rows > 0:
        r["epochs"], r["sampler"] = epochs_of_trainer(a.rows)
    with open(a.out, "w") as f:
        json.dump(r, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
