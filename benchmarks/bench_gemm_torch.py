# SPDX-License-Identifier: MIT
"""PyTorch side of bench_gemm.cpp: the same fp32 GEMM shapes, timed with torch (Debian's python3-torch, whose BLAS
is OpenBLAS's OpenMP flavour), 2 threads. Linear-forward shapes (trans_b) use torch.nn.functional.linear, as
nn.Linear does; the others torch.matmul on transposed views (OpenBLAS takes the transpose flags, no copies).
Batched attention shapes use torch.matmul on (384, ., .) tensors, as a BERT attention layer does.

Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (they force an older kernel; run_gemm_bench.sh unsets them).
Prints one JSON object per shape, named like the Google Benchmark cases:
  {"name": "M/N/K/ta/tb" or "batch/M/N/K/ta/tb", "gflops_median": ..., "gflops_max": ..., "ms_median": ...}
and first a {"torch": ...} line with the BLAS configuration and the OpenBLAS core in use.

usage: bench_gemm_torch.py [--repetitions 5] [--min-time 0.5] [--filter SUBSTRING]
"""
import argparse
import ctypes
import json
import os
import statistics
import time

import torch

SHAPES = [  # (M, N, K, trans_a, trans_b): see bench_gemm.cpp
    (4096, 768, 768, 0, 1), (4096, 2304, 768, 0, 1), (4096, 3072, 768, 0, 1), (4096, 768, 3072, 0, 1),
    (4096, 768, 768, 0, 0), (4096, 768, 2304, 0, 0), (4096, 768, 3072, 0, 0), (4096, 3072, 768, 0, 0),
    (768, 768, 4096, 1, 0), (2304, 768, 4096, 1, 0), (3072, 768, 4096, 1, 0), (768, 3072, 4096, 1, 0),
    (2048, 2048, 2048, 0, 0),
]
BATCHED = [(384, 128, 128, 64, 0, 1), (384, 128, 64, 128, 0, 0), (384, 128, 64, 128, 1, 0)]


def openblas_core():
    """The OpenBLAS kernel family torch's BLAS picked (None if the loaded BLAS is not OpenBLAS)."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return {"core": lib.openblas_get_corename().decode(), "config": lib.openblas_get_config().decode(),
                    "library": name}
        except (OSError, AttributeError):
            continue
    return None


def operands(batch, M, N, K, ta, tb):
    """A as stored (K,M) when ta else (M,K); B as stored (N,K) when tb else (K,N); returns op(A), op(B) views."""
    lead = (batch,) if batch else ()
    a = torch.rand(*lead, *((K, M) if ta else (M, K))) * 2 - 1
    b = torch.rand(*lead, *((N, K) if tb else (K, N))) * 2 - 1
    return (a.transpose(-1, -2) if ta else a), (b.transpose(-1, -2) if tb else b), a, b


def time_shape(batch, M, N, K, ta, tb, repetitions, min_time):
    opa, opb, a, b = operands(batch, M, N, K, ta, tb)
    if tb and not ta and not batch:
        def run():  # nn.Linear: out = inp W^T with W stored (out_features, in_features)
            return torch.nn.functional.linear(a, b)
    else:
        def run():
            return torch.matmul(opa, opb)
    # validate once against a float64 product (never time a wrong kernel); tolerance as in tests/test_gemm.cpp
    out = run()
    ref = torch.matmul(opa.double(), opb.double())
    bound = 1e-5 * torch.matmul(opa.double().abs(), opb.double().abs())
    if not bool(((out.double() - ref).abs() <= bound + 1e-30).all()):
        raise RuntimeError(f"torch GEMM disagrees with the float64 reference at {M}x{N}x{K}")
    flops = 2.0 * (batch or 1) * M * N * K
    run()
    times = []
    for _ in range(repetitions):
        n, t0 = 0, time.perf_counter()
        while True:
            run()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        times.append(dt / n)
    med = statistics.median(times)
    return {"gflops_median": flops / med / 1e9, "gflops_max": flops / min(times) / 1e9, "ms_median": med * 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    blas = [line.strip() for line in torch.__config__.show().splitlines() if "BLAS" in line]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "openblas": openblas_core(),
                      "config_blas_lines": blas,
                      "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}))
    cases = [((0,) + s, "%d/%d/%d/%d/%d" % s) for s in SHAPES] + [(s, "%d/%d/%d/%d/%d/%d" % s) for s in BATCHED]
    for shape, name in cases:
        if args.filter not in name:
            continue
        r = time_shape(*shape, args.repetitions, args.min_time)
        print(json.dumps({"name": name, **r}), flush=True)


if __name__ == "__main__":
    main()
