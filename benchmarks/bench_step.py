"""Benchmark a training step, a fully measured step, and the naive measured step.

    python benchmarks/bench_step.py --device cpu --json
    python benchmarks/bench_step.py --device cuda --json
    python benchmarks/bench_step.py --smoke --json          # seconds; what CI runs

Default: the paper's VGG (width 1, 32x32x3 inputs, batch 128, BatchNorm) on random uint8 images
resident on the device. A *measured* step is a training step plus every probe point (the default
8) and ICS for every layer, exactly as training does it (:func:`bnopt.measure.measure_step`);
the *naive* one deep-copies the model for each point and layer, as the earlier attempts did
(:mod:`bnopt.reference`). Times are means over ``--steps`` after ``--warmup``, with a device
sync around each timed block. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bnopt.measure import DEFAULT_MULTIPLIERS, measure_step  # noqa: E402
from bnopt.models import build_model, set_noise_generator  # noqa: E402
from bnopt.reference import _copy, naive_measure_step  # noqa: E402
from bnopt.train import criterion  # noqa: E402

# Dense fp32 (non-tensor-core) peak of known accelerators, TFLOP/s, for comparison only.
PEAK_FP32 = {"H100": 67.0, "H200": 67.0, "A100": 19.5}


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of every conv and linear layer for one forward pass of ``x``."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2.0 * out.numel() * k
        else:
            total += 2.0 * out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="vgg", choices=["vgg", "simple_cnn"])
    ap.add_argument("--variant", default="batchnorm")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-naive", action="store_true", help="skip the (slow) naive measured step")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    if a.smoke:
        a.batch_size, a.width, a.image_size, a.steps, a.warmup = 16, 0.125, 8, 1, 1
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")

    torch.manual_seed(0)
    model = build_model(a.model, a.variant, 3, a.image_size, 10, a.width).to(device)
    set_noise_generator(model, torch.Generator(device).manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n = a.batch_size * 4
    data = torch.randint(0, 256, (n, 3, a.image_size, a.image_size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (n,), device=device)
    steps_sizes = [m * 0.1 for m in DEFAULT_MULTIPLIERS]
    it = [0]

    def batch():
        i = it[0] % 4
        it[0] += 1
        sl = slice(i * a.batch_size, (i + 1) * a.batch_size)
        return (data[sl].float() / 255 - 0.5) / 0.25, labels[sl]

    def fwd_bwd(x, y):
        opt.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()

    def train_step():
        x, y = batch()
        fwd_bwd(x, y)
        opt.step()

    def snapshot():
        return ({k: p.detach().clone() for k, p in model.named_parameters()},
                {k: p.grad.detach().clone() for k, p in model.named_parameters()})

    def measured_step():
        x, y = batch()
        fwd_bwd(x, y)
        before, grad = snapshot()
        opt.step()
        measure_step(model, criterion, x, y, before, grad, steps_sizes)

    def naive_step():
        x, y = batch()
        fwd_bwd(x, y)
        copy_before = _copy(model)
        grad = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        opt.step()
        naive_measure_step(copy_before, model, criterion, x, y, grad, steps_sizes)

    def timed(fn):
        for _ in range(a.warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / a.steps

    model.train()
    train_s = timed(train_step)
    measured_s = timed(measured_step)
    naive_s = None if a.no_naive else timed(naive_step)
    n_layers = len(model.layers)
    passes = 1 + len(steps_sizes) + (n_layers - 1)  # the step, the probe points, ICS layers 2..L
    flops = 3 * forward_flops(model, batch()[0])  # forward + backward ~ 3 x forward
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    peak = next((v for k, v in PEAK_FP32.items() if k in name), None) if device.type == "cuda" else None
    res = {
        "device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": a.model, "variant": a.variant, "width": a.width, "image_size": a.image_size,
        "batch_size": a.batch_size, "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_step_s": train_s, "measured_step_s": measured_s,
        "passes_per_measured_step": passes, "naive_measured_step_s": naive_s,
        "measured_over_passes_x_train": measured_s / (passes * train_s),
        "naive_over_measured": None if naive_s is None else naive_s / measured_s,
        "images_per_s": a.batch_size / train_s, "train_tflops": flops / train_s / 1e12,
        "peak_fp32_tflops": peak,
        "epoch_s_at_50k": 390 * train_s,
    }
    for k, v in res.items():
        print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}", file=sys.stderr)
    if a.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
