#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The main job run twice on this machine, one after the other: by transformers' own Trainer (tests/python/hf_trainer.py,
Debian's torch 1.13 on OpenBLAS's OpenMP flavour with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, its strongest honest
CPU configuration here) and by minibert's sentiment_trainer: same model, data, split, protocol, seed and threads.
Prints both metric tables, the loss logs next to each other (with the relative difference at each logged step),
train and eval samples/s, wall time, peak RSS and the ratios; writes side_by_side.{json,md} into --output-dir.

usage: benchmarks/trainer_side_by_side.py [--build build] [--threads 2] [--dropout-off] [--output-dir DIR]
                                          [--epochs 3 | --max-steps N] [--skip-hf JSON] [--report-only]
                                          [--minibert-arg=--bf16 ...] (extra flags for sentiment_trainer only)
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_measured(cmd, env, log_path):
    """runs cmd to completion with its output in log_path (echoed); returns (wall seconds, peak RSS in MB)"""
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        p = subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        for line in p.stdout:
            log.write(line)
            sys.stdout.write("  " + line)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"side_by_side: {cmd[0]} failed with {p.returncode}; its log is {log_path}")
    return wall, usage.ru_maxrss / 1024.0


def baseline_env(threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")  # threads: torch.set_num_threads (--threads)
    return env


def torch_gemm_rate(threads):
    code = ("import torch,time; torch.set_num_threads(%d); a=torch.randn(2048,2048); b=torch.randn(2048,2048); a@b;"
            "t=time.perf_counter(); [a@b for _ in range(10)]; print(2*2048**3*10/(time.perf_counter()-t)/1e9)" % threads)
    return float(subprocess.check_output([str(PY), "-c", code], env=baseline_env(threads), text=True))


def logged(log_history):
    """{step: (loss, grad_norm)} of the training log entries"""
    return {e["step"]: (e["loss"], e["grad_norm"]) for e in log_history if "loss" in e}


def metrics_row(name, m, prefix):
    def g(k, fmt="%.4f"):
        v = m.get(f"{prefix}_{k}")
        return fmt % v if v is not None else "-"
    return (f"| {name} | {g('loss')} | {g('accuracy')} | {g('precision')} | {g('recall')} | {g('f1')} | "
            f"{g('runtime', '%.2f')} | {g('samples_per_second', '%.1f')} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build folder holding examples/sentiment_trainer")
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sentiment" / "sst2"))
    ap.add_argument("--output-dir", default=str(ROOT / "runs" / "side_by_side"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dropout-off", action="store_true", help="hidden and attention dropout 0 on both sides")
    ap.add_argument("--skip-hf", metavar="JSON", help="reuse the Trainer's result file of an earlier run")
    ap.add_argument("--minibert-arg", action="append", default=[],
                    help="a flag for sentiment_trainer only, e.g. --minibert-arg=--bf16 (repeatable)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: rebuild the report from the results already in --output-dir")
    a = ap.parse_args()
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)
    common = ["--train", data / "train.tsv", "--test", data / "test.tsv", "--epochs", a.epochs, "--max-steps",
              a.max_steps, "--batch-size", 32, "--eval-batch-size", 64, "--learning-rate", 2e-5, "--warmup-steps",
              500, "--seed", a.seed, "--logging-steps", 100, "--threads", a.threads]
    if a.dropout_off:
        common += ["--hidden-dropout", 0, "--attention-dropout", 0]

    if a.report_only:
        report(out, json.load(open(out / "measured.json")))
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; threads {a.threads}")
    gemm = torch_gemm_rate(a.threads)
    print(f"baseline check: torch GEMM 2048^3 at {gemm:.0f} GFLOP/s (OPENBLAS_CORETYPE/L2_SIZE unset)")

    hf_json = out / "hf_trainer.json"
    if a.skip_hf:
        if Path(a.skip_hf).resolve() != hf_json.resolve():
            hf_json.write_text(Path(a.skip_hf).read_text())
        hf_wall, hf_rss = json.load(open(hf_json))["measured"]
    else:
        hf_wall, hf_rss = run_measured([PY, ROOT / "tests" / "python" / "hf_trainer.py", "--model", a.model,
                                        "--output-dir", out / "hf_trainer", "--json", hf_json,
                                        "--max-length", 128] + common, baseline_env(a.threads), out / "hf_trainer.log")
        hf = json.load(open(hf_json))
        hf["measured"] = [hf_wall, hf_rss]
        json.dump(hf, open(hf_json, "w"), indent=2)

    mb_dir = out / "minibert"
    mb_wall, mb_rss = run_measured([ROOT / a.build / "examples" / "sentiment_trainer", "train", "--model", a.model,
                                    "--output-dir", mb_dir, "--max-seq-length", 128, "--save-strategy", "no"] + common
                                   + a.minibert_arg,
                                   dict(os.environ), out / "minibert.log")
    measured = {"cpu": cpu_model(), "threads": a.threads, "gemm_gflops": gemm, "dropout_off": a.dropout_off,
                "seed": a.seed, "hf": {"wall": hf_wall, "rss_mb": hf_rss},
                "minibert": {"wall": mb_wall, "rss_mb": mb_rss, "args": a.minibert_arg}}
    json.dump(measured, open(out / "measured.json", "w"), indent=2)
    report(out, measured)


def report(out, measured):
    """prints and writes side_by_side.{md,json} from the two runs' result files in `out`"""
    hf = json.load(open(out / "hf_trainer.json"))
    mb_dir = out / "minibert"
    mb_state = json.load(open(mb_dir / "trainer_state.json"))
    mb = {"train": json.load(open(mb_dir / "train_results.json")), "eval": json.load(open(mb_dir / "eval_results.json")),
          "test": json.load(open(mb_dir / "test_results.json"))}
    hf_wall, hf_rss = measured["hf"]["wall"], measured["hf"]["rss_mb"]
    mb_wall, mb_rss = measured["minibert"]["wall"], measured["minibert"]["rss_mb"]
    lines = [f"machine: {measured['cpu']}, {os.cpu_count()} cores, {measured['threads']} threads each; torch GEMM "
             f"{measured['gemm_gflops']:.0f} GFLOP/s; dropout {'off' if measured['dropout_off'] else 'as configured (0.1)'}; "
             f"seed {measured['seed']}; minibert flags: {' '.join(measured['minibert'].get('args', [])) or 'none (fp32)'}",
             ""]
    for who, res in (("transformers Trainer", hf), ("minibert sentiment_trainer", mb)):
        lines += [f"**{who}**", "", "| split | loss | accuracy | precision | recall | F1 | runtime (s) | samples/s |",
                  "|---|---|---|---|---|---|---|---|", metrics_row("validation", res["eval"], "eval"),
                  metrics_row("test", res["test"], "test"), ""]
    # logged losses are means over the logging window rounded to 4 decimals (in both); grad_norm is unrounded
    hl, ml = logged(hf["log_history"]), logged(mb_state["log_history"])
    lines += ["| step | Trainer loss | minibert loss | rel. diff | Trainer grad_norm | minibert grad_norm | rel. diff |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    worst_loss = worst_gn = 0.0
    for step in sorted(set(hl) & set(ml)):
        (hloss, hgn), (mloss, mgn) = hl[step], ml[step]
        rl, rg = abs(mloss - hloss) / abs(hloss), abs(mgn - hgn) / abs(hgn)
        worst_loss, worst_gn = max(worst_loss, rl), max(worst_gn, rg)
        lines.append(f"| {step} | {hloss:.4f} | {mloss:.4f} | {rl:.1e} | {hgn:.6g} | {mgn:.6g} | {rg:.1e} |")
    ht, mt = hf["train"], mb["train"]
    he, me = hf["test"], mb["test"]
    lines += ["", "| | Trainer | minibert | minibert / Trainer |", "|---|---:|---:|---:|",
              f"| train samples/s | {ht['train_samples_per_second']:.2f} | {mt['train_samples_per_second']:.2f} | "
              f"{mt['train_samples_per_second'] / ht['train_samples_per_second']:.2f}x |",
              f"| test eval samples/s | {he['test_samples_per_second']:.1f} | {me['test_samples_per_second']:.1f} | "
              f"{me['test_samples_per_second'] / he['test_samples_per_second']:.2f}x |",
              f"| train runtime (s) | {ht['train_runtime']:.1f} | {mt['train_runtime']:.1f} | "
              f"{mt['train_runtime'] / ht['train_runtime']:.2f}x |",
              f"| process wall time (s) | {hf_wall:.1f} | {mb_wall:.1f} | {mb_wall / hf_wall:.2f}x |",
              f"| peak RSS (MB) | {hf_rss:.0f} | {mb_rss:.0f} | {mb_rss / hf_rss:.2f}x |",
              f"| train_loss (mean of all steps, unrounded) | {ht['train_loss']:.8f} | {mt['train_loss']:.8f} | "
              f"rel. diff {abs(mt['train_loss'] - ht['train_loss']) / ht['train_loss']:.1e} |",
              f"| test accuracy | {he['test_accuracy']:.4f} | {me['test_accuracy']:.4f} | "
              f"{100 * (me['test_accuracy'] - he['test_accuracy']):+.2f} points |", "",
              f"largest relative difference at a logged step: loss {worst_loss:.1e}, grad_norm {worst_gn:.1e}"]
    text = "\n".join(lines)
    print("\n" + text)
    (out / "side_by_side.md").write_text(text + "\n")
    json.dump({"measured": measured, "hf": {"train": ht, "test": he}, "minibert": {"train": mt, "test": me},
               "worst_loss_rel_diff": worst_loss, "worst_grad_norm_rel_diff": worst_gn},
              open(out / "side_by_side.json", "w"), indent=2)


if __name__ == "__main__":
    main()
