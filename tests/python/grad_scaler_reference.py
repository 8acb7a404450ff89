# SPDX-License-Identifier: MIT
"""PyTorch reference for minibert's grad_scaler (tests/test_grad_scaler.cpp): the real torch.cuda.amp.GradScaler class
of PyTorch 1.13 and accelerate's real AcceleratedOptimizer drive torch.optim.AdamW (foreach=False) and transformers'
get_linear_schedule_with_warmup for a few steps of synthetic gradients, the way transformers' Trainer (4.46) does
with fp16 on: scaled backward, unscale_ (accelerator.clip_grad_norm_), clip_grad_norm_, scaler.step + scaler.update
(AcceleratedOptimizer.step), and lr_scheduler.step() only when accelerator.optimizer_step_was_skipped is False.

GradScaler is CUDA-only in torch 1.13, and this runs on CPU tensors, so four things are patched (see cpu_grad_scaler):
  1. torch.cuda.is_available returns True while GradScaler() is constructed: otherwise it disables itself.
  2. torch._amp_foreach_non_finite_check_and_unscale_ and torch._amp_update_scale_ have no CPU kernels in 1.13; they
     are replaced by Python transcriptions of the CUDA kernels of aten/src/ATen/native/cuda/AmpKernels.cu (below).
  3. grad_scaler._MultiDeviceReplicator asserts that its tensor is a CUDA tensor; a subclass without the assert
     serves the CPU copies (the same .to(device, copy=True) as the original).
  4. scaler.scale(loss) asserts a CUDA tensor, so the script computes what it returns, loss * scaler._scale, after
     the lazy initialization scale() would do (_lazy_init_scale_growth_tracker).
Everything else (unscale_/step/update control flow, the inv_scale reciprocal in fp64, found_inf bookkeeping, the
skip, state_dict) is GradScaler's own code.

usage: grad_scaler_reference.py --spec SPEC.json   (prints one JSON document on stdout)
SPEC.json: {"dtype": "float32", "steps": N,
            "scaler": {"init_scale", "growth_factor", "backoff_factor", "growth_interval"},
            "lr", "warmup_steps", "max_grad_norm", "magnitude", "fp16_grads": bool,
            "params": [{"name", "shape": [...], "weight_decay"}],     one parameter group per parameter
            "inject": [{"step", "param", "index", "value": "inf"|"-inf"|"nan"}]}
Values (the C++ test computes the same in double and rounds to the dtype once):
  parameter k, element i, initial value   cos(0.37 i + 1.1 k)
  its loss gradient at step s             magnitude * sin(0.7 s + 1.3 i + 0.5 k), replaced by "inject" entries
  loss = sum_k sum(p_k * g_k), so the scaled backward leaves p_k.grad = g_k * scale; with fp16_grads the gradient
  is then rounded to float16 and back, as an fp16 backward would produce it (|g * scale| >= 65520 becomes inf).
Output: {"torch": version, "steps": [{"scale_before", "scale", "growth_tracker", "skipped", "lr", "grad_norm"}],
         "params": {name: [final values]}, "state_dict": scaler.state_dict()}
  scale / growth_tracker: after update(); lr: the lr the step used; grad_norm: clip_grad_norm_'s value, null when
  not finite (JSON has no inf).
"""
import argparse
import contextlib
import json
import math
import sys
from unittest import mock

import torch
from torch.cuda.amp import grad_scaler as torch_grad_scaler


# ---------------------------------------------------------------------------------------------------- the kernels
# Transcribed from aten/src/ATen/native/cuda/AmpKernels.cu (PyTorch 1.12/1.13).

def amp_foreach_non_finite_check_and_unscale_(scaled_grads, found_inf, inv_scale):
    """_amp_foreach_non_finite_check_and_unscale_cuda_: per element, val in opmath_t (float for float and half
    gradients, double for double); `if (!isfinite(val)) *found_inf_ptr = 1.f;` and the element becomes
    `inv_scale_val == 1.f ? val : val * inv_scale_val`. found_inf is never cleared (the caller zeroes it)."""
    for g in scaled_grads:
        opmath = torch.float64 if g.dtype == torch.float64 else torch.float32
        val = g.to(opmath)
        if not bool(torch.isfinite(val).all()):
            found_inf.fill_(1.0)
        if inv_scale.item() != 1.0:
            g.copy_(val * inv_scale.to(opmath))


def amp_update_scale_(current_scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    """amp_update_scale_cuda_kernel (one thread): the float scale times a double factor, stored as float.
        if (*found_inf) { scale = scale * backoff_factor; growth_tracker = 0; }
        else { successful = growth_tracker + 1;
               if (successful == growth_interval) {
                 new_scale = static_cast<float>(scale * growth_factor);
                 if (isfinite(new_scale)) scale = new_scale;   // "Do not grow the scale past fp32 bounds to inf."
                 growth_tracker = 0;
               } else growth_tracker = successful; }"""
    if found_inf.item():
        current_scale.copy_((current_scale.double() * backoff_factor).float())
        growth_tracker.fill_(0)
    else:
        successful = int(growth_tracker.item()) + 1
        if successful == growth_interval:
            new_scale = (current_scale.double() * growth_factor).float()
            if bool(torch.isfinite(new_scale).all()):
                current_scale.copy_(new_scale)
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return current_scale


class CpuReplicator(torch_grad_scaler._MultiDeviceReplicator):
    """_MultiDeviceReplicator without its `assert master_tensor.is_cuda` (get() is inherited unchanged)."""

    def __init__(self, master_tensor):
        self.master = master_tensor
        self._per_device_tensors = {}


@contextlib.contextmanager
def cpu_grad_scaler_patches():
    with mock.patch.object(torch, "_amp_foreach_non_finite_check_and_unscale_",
                           amp_foreach_non_finite_check_and_unscale_), \
         mock.patch.object(torch, "_amp_update_scale_", amp_update_scale_), \
         mock.patch.object(torch_grad_scaler, "_MultiDeviceReplicator", CpuReplicator):
        yield


def cpu_grad_scaler(**kwargs):
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        scaler = torch.cuda.amp.GradScaler(**kwargs)
    assert scaler.is_enabled()
    return scaler


# ---------------------------------------------------------------------------------------------------- the loop

def values(n, f, dtype):
    return torch.tensor([f(i) for i in range(n)], dtype=torch.float64).to(dtype)  # double, rounded once


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    spec = json.load(open(ap.parse_args().spec))
    torch.set_num_threads(1)
    dtype = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]

    # accelerate's AcceleratedOptimizer needs an initialized AcceleratorState; a CPU Accelerator without mixed
    # precision provides it (Accelerator(mixed_precision="fp16") refuses a CPU), and the scaler is passed in directly
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer
    from transformers import get_linear_schedule_with_warmup
    accelerator = Accelerator(cpu=True)

    params, groups = [], []
    for k, p in enumerate(spec["params"]):
        n = math.prod(p["shape"])
        t = values(n, lambda i: math.cos(0.37 * i + 1.1 * k), dtype).reshape(p["shape"])
        params.append(torch.nn.Parameter(t))
        groups.append({"params": [params[-1]], "weight_decay": p["weight_decay"]})
    opt = torch.optim.AdamW(groups, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, spec["warmup_steps"], spec["steps"])
    scaler = cpu_grad_scaler(**spec["scaler"])
    acc_opt = AcceleratedOptimizer(opt, device_placement=False, scaler=scaler)
    accelerator._optimizers.append(acc_opt)  # as accelerator.prepare(opt) registers it: optimizer_step_was_skipped
    inject = {(j["step"], j["param"], j["index"]): float(j["value"]) for j in spec["inject"]}

    steps = []
    with cpu_grad_scaler_patches():
        for s in range(spec["steps"]):
            loss = 0
            for k, p in enumerate(params):
                g = values(p.numel(), lambda i: spec["magnitude"] * math.sin(0.7 * s + 1.3 * i + 0.5 * k), dtype)
                for i in range(p.numel()):
                    if (s, k, i) in inject:
                        g[i] = inject[(s, k, i)]
                loss = loss + (p * g.reshape(p.shape)).sum()
            if scaler._scale is None:
                scaler._lazy_init_scale_growth_tracker(loss.device)
            scale_before = scaler.get_scale()
            (loss * scaler._scale).backward()  # scaler.scale(loss).backward()
            if spec["fp16_grads"]:
                for p in params:
                    p.grad.copy_(p.grad.half().to(dtype))
            # Trainer: accelerator.clip_grad_norm_ = unscale_gradients() (scaler.unscale_) + clip_grad_norm_
            scaler.unscale_(opt)
            norm = float(torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"]))
            lr = opt.param_groups[0]["lr"]
            acc_opt.step()  # scaler.step(opt) (no second unscale) and scaler.update()
            skipped = accelerator.optimizer_step_was_skipped
            if not skipped:  # Trainer: optimizer_was_run = not self.accelerator.optimizer_step_was_skipped
                sched.step()
            opt.zero_grad(set_to_none=True)
            steps.append({"scale_before": scale_before, "scale": scaler.get_scale(),
                          "growth_tracker": scaler._get_growth_tracker(), "skipped": skipped, "lr": lr,
                          "grad_norm": norm if math.isfinite(norm) else None})

    out = {"torch": torch.__version__, "steps": steps,
           "params": {p["name"]: t.detach().to(torch.float64).flatten().tolist()
                      for p, t in zip(spec["params"], params)},
           "state_dict": scaler.state_dict()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
