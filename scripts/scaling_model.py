#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The arithmetic of docs/scaling.md: gradient bytes of bert-base per optimizer step, all-reduce time under the
bandwidth model of NCCL's ring (each GPU sends and receives 2 (N-1)/N of the gradients) plus a tree's latency per
bucket, the part of it the backward pass cannot hide, and the resulting data-parallel efficiency.

Every input is printed with the table; change them with the flags. Nothing here is measured: it is a model, stated so
that a measurement can be checked against it. Usage: scripts/scaling_model.py [--step-ms 5] [--accum 1,8]"""
import argparse
import math

# bert-base-uncased with a 2-label head: the parameters (transformers' BertForSequenceClassification)
VOCAB, HIDDEN, LAYERS, FFN, POSITIONS, TYPES = 30522, 768, 12, 3072, 512, 2
LAYER = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN * FFN + FFN + HIDDEN + 4 * HIDDEN  # attention, FFN, 2 LayerNorms
EMBED = (VOCAB + POSITIONS + TYPES) * HIDDEN + 2 * HIDDEN
PARAMS = EMBED + LAYERS * LAYER + HIDDEN * HIDDEN + HIDDEN + 2 * HIDDEN + 2  # + pooler + classifier
WORD_EMBEDDINGS = VOCAB * HIDDEN  # the last gradient the backward pass completes: its bucket cannot overlap
BUCKET_BYTES = 25 << 20

# bus bandwidth (GB/s) an all-reduce of large buckets reaches, and the latency of one tree step (s). Assumptions:
# NVLink 4 on 8 H100 SXM (900 GB/s bidirectional per GPU; NCCL's all_reduce_perf reaches about 400 GB/s bus
# bandwidth without NVLS); across nodes, one NIC per GPU (8 per node, as DGX H100) at 90% of its line rate: NCCL
# runs one ring per NIC, each carrying an eighth of the buckets, so the bus bandwidth is the node's NICs together.
def nics_busbw(gbit_per_gpu):
    return 8 * gbit_per_gpu / 8 * 0.9  # 8 NICs x (Gb/s / 8 bits per byte) x 90%


NETWORKS = {
    "NVLink (one node)": (400.0, 3e-6),
    "100 Gb/s per GPU": (nics_busbw(100), 8e-6),
    "400 Gb/s per GPU": (nics_busbw(400), 8e-6),
}


def allreduce_seconds(nbytes, gpus, busbw_gbs, alpha, buckets):
    bandwidth = 2 * (gpus - 1) / gpus * nbytes / (busbw_gbs * 1e9)
    latency = buckets * 2 * math.ceil(math.log2(gpus)) * alpha
    return bandwidth + latency


def exposed_seconds(total, last, backward):
    """the communication left after the backward pass: buckets queue behind each other from the first one ready;
    the last (word embeddings) starts only when the backward pass ends"""
    return max(0.0, total - last - backward) + last


def efficiency(gpus, network, grad_bytes, step_s, accum):
    busbw, alpha = NETWORKS[network]
    if gpus > 8 and network.startswith("NVLink"):
        return None
    if gpus <= 8:
        busbw, alpha = NETWORKS["NVLink (one node)"]
    size = PARAMS * grad_bytes
    buckets = math.ceil(size / BUCKET_BYTES)
    total = allreduce_seconds(size, gpus, busbw, alpha, buckets)
    last = allreduce_seconds(WORD_EMBEDDINGS * grad_bytes, gpus, busbw, alpha, 1)
    backward = step_s * 2 / 3  # the backward pass is about two thirds of a training step's FLOPs
    compute = step_s * accum  # accumulation: only the last micro-batch's backward overlaps communication
    exposed = exposed_seconds(total, last, backward)
    return total, exposed, compute / (compute + exposed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step-ms", type=float, default=5.0, help="one GPU's training step (batch 32 x 128, bf16)")
    ap.add_argument("--accum", default="1,8", help="gradient accumulation steps to tabulate")
    a = ap.parse_args()
    step = a.step_ms / 1e3
    accums = [int(x) for x in a.accum.split(",")]
    print(f"bert-base parameters: {PARAMS:,}; gradients per step: {PARAMS * 4 / 1e6:.0f} MB fp32, "
          f"{PARAMS * 2 / 1e6:.0f} MB bf16; word embeddings (the last bucket): {WORD_EMBEDDINGS * 4 / 1e6:.0f} MB fp32")
    print(f"step {a.step_ms} ms per micro-batch, backward {a.step_ms * 2 / 3:.2f} ms; buckets of 25 MiB\n")
    head = "| GPUs | network | grads | all-reduce (ms) | exposed (ms) | " + " | ".join(
        f"efficiency, accum {k}" for k in accums) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for gpus in (8, 64, 512):
        for network in NETWORKS:
            for name, nbytes in (("fp32", 4), ("bf16", 2)):
                rows = [efficiency(gpus, network, nbytes, step, k) for k in accums]
                if rows[0] is None or (gpus == 8 and network != "NVLink (one node)"):
                    continue
                total, exposed, _ = rows[0]
                effs = " | ".join(f"{r[2] * 100:.0f}%" for r in rows)
                print(f"| {gpus} | {network} | {name} | {total * 1e3:.2f} | {exposed * 1e3:.2f} | {effs} |")


if __name__ == "__main__":
    main()
