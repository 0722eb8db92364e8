"""Does packing pay? Steps/s of N runs trained as one packed network (benchmarks/pack.py)
against N solo steps, for a train step and a measured step.

    python benchmarks/bench_pack.py --device cuda --json      # BN and standard VGG, N = 1 2 3 5
    python benchmarks/bench_pack.py --device cpu --width 0.125 --batch-size 64 --image-size 16 \
        --threads 1 --json                                    # the quick preset's jobs
    python benchmarks/bench_pack.py --model dln --variants standard batchnorm l1 --runs 1 3 6 \
        --threads 1 --json                                    # the DLN's seeds and lrs
    python benchmarks/bench_pack.py --smoke --json            # seconds; what CI runs

Default: the paper's VGG (width 1, batch 128 per run, 32x32x3 random images resident on the
device), BatchNorm and standard, N = 1, 2, 3, 5. Every setting is the config's default for the
device: on CUDA, TF32 for unmeasured steps, channels_last, cuDNN autotuning, and rows for the
eager step and the step replayed as one CUDA graph (:class:`bnopt.training.steps.CudaGraphStep`, which
captures the packed step as it captures training's); on the CPU, eager fp32. The solo step is
training's own (:func:`bnopt.training.steps.plain_step` on a :func:`bnopt.training.loop.build_run` run); a
measured step is an IEEE step plus every probe point and ICS for every layer, solo through
:func:`bnopt.training.steps.measure_after_step`, packed through :func:`pack.packed_measure_step`.

One JSON line per (variant, N, mode) row with ``--json``: per-step seconds of one solo step and
of the packed step, and ``train_speedup`` = N x solo / packed (above 1: packing pays), the same
for measured steps. Times are means over ``--steps`` after ``--warmup``, synchronised.
Results: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pack import (  # noqa: E402
    Pack,
    PackedRecorder,
    packed_forward_backward,
    packed_measure_step,
    packed_step,
)

from bnopt.plan.runs import RunConfig
from bnopt.training.data import fake_dataset  # noqa: E402
from bnopt.training.loop import build_run, device_name  # noqa: E402
from bnopt.training.precision import DTYPES, cudnn_autotune, ieee_fp32, matmul_precision  # noqa: E402
from bnopt.training.recorder import Recorder  # noqa: E402
from bnopt.training.steps import (  # noqa: E402
    CudaGraphStep,
    forward_backward,
    measure_after_step,
    plain_step,
)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="vgg", choices=["vgg", "simple_cnn", "dln"],
                    help="dln: the deep linear network as the workflow trains it (float64, "
                         "full batch of its 1,000 samples, lr 1e-6; --width etc. unused)")
    ap.add_argument("--variants", nargs="+", default=["batchnorm", "standard"])
    ap.add_argument("--runs", nargs="+", type=int, default=[1, 2, 3, 5], metavar="N")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128, help="per run")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed train steps")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--measured-steps", type=int, default=3, help="timed measured steps (0: none)")
    ap.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--json", action="store_true", help="print one JSON line per row")
    a = ap.parse_args(argv)
    if a.smoke:
        a.width, a.batch_size, a.image_size, a.runs = 0.125, 16, 8, [1, 2]
        a.steps, a.warmup, a.measured_steps = 1, 1, 1
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.model == "dln":  # the DLN's own defaults (bnopt.plan.runs.model_defaults)
        cfg = RunConfig(dataset="dln", model="dln", variant="standard", lr=1e-6, seed=0,
                        device=a.device)
        data = fake_dataset("dln")
    else:
        cfg = RunConfig(dataset="cifar10", model=a.model, variant="standard", lr=0.05, seed=0,
                        batch_size=a.batch_size, width=a.width, device=a.device)
        data = fake_dataset("cifar10", n_train=8 * a.batch_size, n_test=a.batch_size,
                            image_size=a.image_size)
    modes = ["eager", "graph"] if device.type == "cuda" else ["eager"]
    rows = []
    with matmul_precision(cfg.precision), cudnn_autotune(cfg.cudnn_benchmark):
        for variant in a.variants:
            for mode in modes:
                base = RunConfig(**{**vars(cfg), "variant": variant})
                solo = time_solo(base, data, device, mode, a)
                for n in a.runs:
                    row = time_pack([RunConfig(**{**vars(base), "seed": s}) for s in range(n)],
                                    data, device, mode, a)
                    row = {"device": device_name(device), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),
                           "model": a.model, "variant": variant, "runs": n, "mode": mode,
                           "precision": cfg.precision if device.type == "cuda" else "fp32",
                           "channels_last": base.uses_channels_last(device),
                           "width": a.width, "batch_size": a.batch_size,
                           "image_size": a.image_size, **_ratios(solo, row, n)}
                    rows.append(row)
                    print(f"{variant:10s} N={n} {mode:5s} train solo {solo['train_s']*1e3:8.2f} ms"
                          f" x N vs packed {row['packed_train_s']*1e3:8.2f} ms: "
                          f"{row['train_speedup']:.2f}x", file=sys.stderr, flush=True)
                    if a.json:
                        print(json.dumps(row), flush=True)
    return rows


def _ratios(solo: dict, packed: dict, n: int) -> dict:
    out = {"solo_train_s": solo["train_s"], "packed_train_s": packed["train_s"],
           "train_speedup": n * solo["train_s"] / packed["train_s"],
           "solo_measured_s": solo.get("measured_s"), "packed_measured_s": packed.get("measured_s")}
    out["measured_speedup"] = (n * out["solo_measured_s"] / out["packed_measured_s"]
                               if out["packed_measured_s"] else None)
    return out


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def time_solo(cfg: RunConfig, data, device, mode: str, a) -> dict:
    """One run as training trains it: per-step seconds of a train step and a measured step."""
    run = build_run(cfg, data, device)
    model, opt = run.model, run.opt
    params = list(model.parameters())
    rec = Recorder(64, device, DTYPES[cfg.dtype], [])
    graphed = CudaGraphStep(run.noise_gen) if mode == "graph" else None
    done = [0]

    def train():
        x, y = next(run.batches)
        (graphed or plain_step)(model, opt, params, rec, done[0] % 64, x, y)
        done[0] += 1

    sizes = _step_sizes(cfg, device)

    def measured():
        x, y = next(run.batches)
        with ieee_fp32():
            forward_backward(model, opt, x, y)
        before, grad = _snapshot(model)
        opt.step()
        measure_after_step(model, x, y, before, grad, sizes)

    model.train()
    out = {"train_s": _timed(train, a.steps, a.warmup, device)}
    if a.measured_steps and mode == "eager":  # measured steps are eager in training too
        out["measured_s"] = _timed(measured, a.measured_steps, 1, device)
    return out


def time_pack(cfgs: list[RunConfig], data, device, mode: str, a) -> dict:
    """N runs as one packed network: per-step seconds of a packed train and measured step."""
    pack = Pack(cfgs, data, device)
    model, opt, params, n = pack.model, pack.opt, pack.params, pack.runs
    rec = PackedRecorder(64, n, device, DTYPES[cfgs[0].dtype])
    graphed = CudaGraphStep(pack.generators, step=packed_step) if mode == "graph" else None
    done = [0]

    def train():
        x, y = pack.next_batch()
        (graphed or packed_step)(model, opt, params, rec, done[0] % 64, x, y)
        done[0] += 1

    sizes = _step_sizes(cfgs[0], device)

    def measured():
        x, y = pack.next_batch()
        with ieee_fp32():
            packed_forward_backward(model, opt, x, y, n)
        before, grad = _snapshot(model)
        opt.step()
        packed_measure_step(model, x, y, n, before, grad, sizes)

    model.train()
    out = {"train_s": _timed(train, a.steps, a.warmup, device)}
    if a.measured_steps and mode == "eager":  # measured steps are eager in training too
        out["measured_s"] = _timed(measured, a.measured_steps, 1, device)
    return out


def _step_sizes(cfg: RunConfig, device) -> torch.Tensor:
    return torch.tensor([m * cfg.lr for m in cfg.probe_multipliers], dtype=DTYPES[cfg.dtype],
                        device=device)


def _snapshot(model):
    named = dict(model.named_parameters())
    return ({k: p.detach().clone() for k, p in named.items()},
            {k: p.grad.detach().clone() for k, p in named.items()})


if __name__ == "__main__":
    main()
