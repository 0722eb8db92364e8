"""Benchmark a training step, a fully measured step, and the naive measured step.

    python benchmarks/bench_step.py --device cpu --json
    python benchmarks/bench_step.py --device cuda --json
    python benchmarks/bench_step.py --smoke --json          # seconds; what CI runs
    python benchmarks/bench_step.py --device cuda --precision tf32 --channels-last --json
    python benchmarks/bench_step.py --device cuda --profile   # where a measured step's time goes
    python benchmarks/bench_step.py --device cuda --project config.yaml   # whole sweep, GPU-min
    python benchmarks/bench_step.py --project CONFIG --compare results/runs  # against real runs
    python benchmarks/bench_step.py --device cpu --hessian-iters 20 --no-naive --json  # curvature

Default: the paper's VGG (width 1, 32x32x3 inputs, batch 128, BatchNorm) on random uint8 images
resident on the device. A *measured* step is a training step plus every probe point (the default
8) and ICS for every layer, through the function training calls
(:func:`bnopt.train.measure_after_step`);
the *naive* one deep-copies the model for each point and layer, as the earlier attempts did
(:mod:`bnopt.reference`). Times are means over ``--steps`` after ``--warmup``, with a device
sync around each timed block. The last line is one JSON object.

Options mirror the config keys: ``--precision tf32`` lets unmeasured steps use TF32 (measured
ones stay IEEE fp32, as in training), ``--dtype``, ``--channels-last``, ``--vmap-probes``,
``--cudnn-benchmark`` (off here unless given; the config's default is on).
``--compile`` times the train step under ``torch.compile`` (not used by training).
``--hessian-iters N`` also times a curvature step as training does it
(:func:`bnopt.measure.measure_curvature`) with exactly N Lanczos iterations (tolerance 0), and
reports the cost of one Hessian-vector product in training steps.
``--project CONFIG`` instead times every (dataset, model, variant) of that config's sweep with
the real training loop (:mod:`bnopt.cost`) on the device each runs on (the DLN: ``dln.device``),
adds each job's start-up (a fresh Python importing torch), and projects the whole sweep:
GPU-minutes, CPU job-minutes, and its wall time on one GPU and ``--cores`` CPU cores;
``--compare results/runs`` sets it beside what real runs took.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import pandas as pd
import torch
import torch.nn as nn

from bnopt.config import DEFAULT_MULTIPLIERS
from bnopt.measure import ieee_fp32, matmul_precision
from bnopt.data import DLN_DIM
from bnopt.models import build_model, set_noise_generator
from bnopt.reference import _copy, naive_measure_step
from bnopt.train import (CudaGraphStep, Recorder, criterion, cudnn_autotune,
                         measure_after_step, plain_step)

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
    was_training = model.training
    model.eval()  # the count does not depend on the mode; eval also takes a batch of one
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for h in hs:
        h.remove()
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="vgg", choices=["vgg", "simple_cnn", "dln"],
                    help="dln: the 25-layer deep linear network, full batch (--batch-size 1000)")
    ap.add_argument("--variant", default="batchnorm")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-naive", action="store_true", help="skip the (slow) naive measured step")
    ap.add_argument("--train-only", action="store_true",
                    help="time the train step only (no measured or naive step)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32"],
                    help="float32 matmul/conv precision of train steps (measured: always fp32)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="cuDNN times its conv algorithms (config cudnn_benchmark; GPU only)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="the train step replays as one CUDA graph (config cuda_graph; CUDA only)")
    ap.add_argument("--vmap-probes", action="store_true", help="probe points in one vmap pass")
    ap.add_argument("--compile", action="store_true", help="torch.compile the train step's model")
    ap.add_argument("--hessian-iters", type=int, default=0, metavar="N",
                    help="also time a curvature step of exactly N Lanczos iterations (HVPs)")
    ap.add_argument("--profile", action="store_true",
                    help="print torch.profiler's top operators of one measured step")
    ap.add_argument("--project", metavar="CONFIG",
                    help="project the device time of CONFIG's whole sweep (GPU-minutes)")
    ap.add_argument("--project-steps", type=int, default=1,
                    help="--project: fewest steps N of a timing run (runs of N and 2N are differenced)")
    ap.add_argument("--project-seconds", type=float, default=0.5,
                    help="--project: N grows until the 2N-run outlasts the N-run by this much")
    ap.add_argument("--project-repeats", type=int, default=3,
                    help="--project: the fastest of this many runs of each length per cost")
    ap.add_argument("--cores", type=int, help="--project: CPU cores of the sweep's machine "
                    "(default: this one's), for the CPU jobs' share of the wall time")
    ap.add_argument("--compare", metavar="RUNS",
                    help="--project: also show what the real runs under RUNS (results/runs) took")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    if a.smoke:
        a.batch_size, a.width, a.image_size, a.steps, a.warmup = 16, 0.125, 8, 1, 1
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    if a.cuda_graph and device.type != "cuda":
        ap.error("--cuda-graph needs --device cuda (CUDA graphs exist only on NVIDIA GPUs)")
    if a.project:
        return project(a.project, a.device, a.project_steps, a.json, a.project_seconds,
                       a.project_repeats, a.cores, a.compare)
    with matmul_precision(a.precision), cudnn_autotune(a.cudnn_benchmark):
        return bench(a, device)


def project(config_path: str, device: str, steps: int, as_json: bool, min_seconds: float = 0.5,
            repeats: int = 3, cores: int | None = None, compare: str | None = None) -> dict:
    """Time each (dataset, model, variant) of the config's sweep on its device (``device``
    where the config says auto) and project the total; with ``compare``, set the projection
    per run beside what the real runs under that folder took."""
    import os

    import yaml

    from bnopt.config import check_config
    from bnopt.cost import (measure_costs, observed_seconds, projected_seconds, sweep_minutes,
                            sweep_plan)

    with open(config_path) as f:
        cfg = check_config(yaml.safe_load(f))
    plan = sweep_plan(cfg)
    plan["device"] = plan["device"].replace("auto", device)
    costs = {}
    for key in plan.index:
        costs[key] = measure_costs(cfg, *key, device=device, steps=steps, min_seconds=min_seconds,
                                   repeats=repeats)
        print(f"{'/'.join(key):32s} {plan.loc[key, 'device']:4s} "
              + "  ".join(f"{k} {v:.4g}" for k, v in costs[key].items()), file=sys.stderr, flush=True)
    startup = job_startup_seconds(repeats)
    for key in plan.index:
        costs[key]["startup_s"] = startup
    seconds = projected_seconds(plan, costs)
    table = plan.join(pd.DataFrame.from_dict(costs, orient="index").rename_axis(plan.index.names))
    table["minutes"] = seconds / 60
    table["pflop"] = [sweep_row_flops(cfg, key, row) / 1e15 for key, row in plan.iterrows()]
    print(table.to_string(), file=sys.stderr)
    pflop = float(table["pflop"].sum())
    cores = cores or os.cpu_count()
    totals = sweep_minutes(seconds, plan["device"], cores, cfg["threads"])
    res = {"config": config_path, "device": _device_name(torch.device(device)),
           "torch": torch.__version__, "runs": int(plan["runs"].sum()),
           "device_minutes": float(seconds.sum() / 60), **totals, "cores": cores,
           "gpu_jobs_at_once": 1,
           "pflop": pflop, "achieved_tflops": pflop * 1e3 / float(seconds.sum()),
           "minutes_by_variant": {"/".join(k): round(float(v / 60), 3) for k, v in seconds.items()},
           "costs_s": {"/".join(k): v for k, v in costs.items()},
           "timing": {"min_steps": steps, "min_seconds": min_seconds, "repeats": repeats}}
    print(f"projected: {totals['gpu_minutes']:.1f} GPU-minutes, one GPU job at a time "
          f"(jobs_per_gpu > 1 measured 0.96-1.06x, BENCHMARKS.md), {totals['cpu_job_minutes']:.1f} "
          f"CPU job-minutes ({totals['cpu_slots']} at once on {cores} cores); the sweep "
          f"{res['projected_minutes']:.1f} minutes", file=sys.stderr)
    if compare:
        seen = observed_seconds(compare)
        # per run: the training loop as run.json's wall_seconds counts it, and the whole job
        both = (seconds / plan["runs"]).rename("projected_job_s").to_frame().join(seen, how="inner")
        both.insert(0, "projected_s", both["projected_job_s"] - startup)
        both["observed_over_projected"] = both["observed_s"] / both["projected_s"]
        both["job_over_projected"] = both["job_s"] / both["projected_job_s"]
        print(both.to_string(), file=sys.stderr)
        res["compare"] = {"/".join(k): {c: (v.item() if hasattr(v, "item") else v)
                                        for c, v in row.items()} for k, row in both.iterrows()}
    if as_json:
        print(json.dumps(res))
    return res


def job_startup_seconds(repeats: int = 3) -> float:
    """Seconds a training job spends before its first step that the loop's timing misses: a
    fresh Python importing torch and the training code (the fastest of ``repeats``)."""
    import subprocess

    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import bnopt.train"], check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def sweep_row_flops(cfg: dict, key: tuple, row) -> float:
    """Floating-point operations of a plan row's runs, counting conv and linear layers only:
    forward + backward = 3 x forward per training pass, 1 + K + (L - 1) passes per measured step
    (an upper bound: ICS backward passes stop at their layer), 2 x hessian_iters more per
    curvature step (an upper bound: Lanczos may stop early), forward only for evaluations."""
    from bnopt.config import train_settings
    from bnopt.data import NUM_CLASSES, input_shape

    dataset, model_name, variant = key
    s = train_settings(cfg, model_name)
    shape = input_shape(dataset, None if model_name == "dln" else cfg["image_size"])
    outputs = NUM_CLASSES[dataset] or shape[0]
    net = build_model(model_name, variant, shape[0], shape[-1] if len(shape) > 1 else 1, outputs,
                      s["width"])
    per_image = forward_flops(net, torch.zeros(1, *shape))
    passes = 1 + len(s["probe_multipliers"]) + len(net.layers) - 1
    # a curvature step: at most hessian_iters Hessian-vector products of ~2 training passes each
    curvature = row.get("curvature_steps", 0) * 2 * s["hessian_iters"]
    train = (row["steps"] - row["measured_steps"] + row["measured_steps"] * passes
             + curvature) * 3 * per_image * s["batch_size"]
    return row["runs"] * (train + row["evals"] * row["eval_images"] * per_image)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")


def bench(a, device: torch.device) -> dict:
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    dln = a.model == "dln"
    model = build_model(a.model, a.variant, DLN_DIM if dln else 3, a.image_size,
                        DLN_DIM if dln else 10, a.width).to(device, dtype)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    noise_gen = torch.Generator(device).manual_seed(0)
    set_noise_generator(model, noise_gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n = a.batch_size * 4
    if dln:  # regression: y = A x
        data = torch.randn(n, DLN_DIM, device=device, dtype=dtype)
        labels = data @ torch.randn(DLN_DIM, DLN_DIM, device=device, dtype=dtype)
        steps_sizes = torch.tensor([m * 1e-6 for m in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)],
                                   dtype=dtype, device=device)
    else:
        data = torch.randint(0, 256, (n, 3, a.image_size, a.image_size), dtype=torch.uint8,
                             device=device)
        labels = torch.randint(0, 10, (n,), device=device)
        steps_sizes = torch.tensor([m * 0.1 for m in DEFAULT_MULTIPLIERS], dtype=dtype,
                                   device=device)
    it = [0]

    def batch():
        i = it[0] % 4
        it[0] += 1
        sl = slice(i * a.batch_size, (i + 1) * a.batch_size)
        if dln:
            return data[sl], labels[sl]
        x = (data[sl].to(dtype) / 255 - 0.5) / 0.25
        return (x.contiguous(memory_format=torch.channels_last) if a.channels_last else x), labels[sl]

    train_model = torch.compile(model) if a.compile else model

    def fwd_bwd(x, y, net=model):
        opt.zero_grad(set_to_none=True)
        criterion(net(x), y).backward()

    # the training loop's own plain step (forward, loss, backward, per-step row, update),
    # eager or replayed as one CUDA graph
    params = list(model.parameters())
    rec = Recorder(64, device, dtype, [])
    graphed = CudaGraphStep(noise_gen) if a.cuda_graph else None
    done = [0]

    def train_step():
        x, y = batch()
        (graphed or plain_step)(train_model, opt, params, rec, done[0] % 64, x, y)
        done[0] += 1

    def snapshot():
        return ({k: p.detach().clone() for k, p in model.named_parameters()},
                {k: p.grad.detach().clone() for k, p in model.named_parameters()})

    def ieee_step():
        """A training step in IEEE arithmetic; returns its batch, parameters and gradient."""
        x, y = batch()
        with ieee_fp32():
            fwd_bwd(x, y)
        before, grad = snapshot()
        opt.step()
        return x, y, before, grad

    def measured_step():  # what training does after the step, through the same function
        measure_after_step(model, *ieee_step(), steps_sizes, a.vmap_probes)

    def curvature_step():
        return measure_after_step(model, *ieee_step(), hessian=(a.hessian_iters, 0.0))

    def naive_step():
        x, y = batch()
        with ieee_fp32():
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
    measured_s = None if a.train_only else timed(measured_step)
    curvature_s = timed(curvature_step) if a.hessian_iters else None
    with ieee_fp32():
        naive_s = None if (a.no_naive or a.train_only) else timed(naive_step)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            measured_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=15), file=sys.stderr)
    n_layers = len(model.layers)
    passes = 1 + len(steps_sizes) + (n_layers - 1)  # the step, the probe points, ICS layers 2..L
    flops = 3 * forward_flops(model, batch()[0])  # forward + backward ~ 3 x forward
    name = _device_name(device)
    peak = next((v for k, v in PEAK_FP32.items() if k in name), None) if device.type == "cuda" else None
    res = {
        "device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": a.model, "variant": a.variant, "width": a.width, "image_size": a.image_size,
        "batch_size": a.batch_size, "num_parameters": sum(p.numel() for p in model.parameters()),
        "precision": a.precision, "dtype": a.dtype, "channels_last": a.channels_last,
        "cudnn_benchmark": a.cudnn_benchmark, "cuda_graph": a.cuda_graph,
        "vmap_probes": a.vmap_probes, "compile": a.compile,
        "train_step_s": train_s, "measured_step_s": measured_s,
        "passes_per_measured_step": passes, "naive_measured_step_s": naive_s,
        "measured_over_passes_x_train": None if measured_s is None else measured_s / (passes * train_s),
        "naive_over_measured": None if naive_s is None else naive_s / measured_s,
        "hessian_iters": a.hessian_iters, "curvature_step_s": curvature_s,
        # one Hessian-vector product (forward-over-reverse), in training steps
        "hvp_over_train": None if not curvature_s else (curvature_s - train_s) / (a.hessian_iters * train_s),
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
