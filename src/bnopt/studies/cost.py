"""What a whole sweep costs: the runs a config asks for, the passes each does, and its device
time projected from per-step costs measured with the real training loop.

    project("config.yaml", "cuda")               # all of it, printed (benchmarks/project_sweep.py)
    plan = sweep_plan(cfg)                        # one row per (dataset, model, variant)
    costs = {key: measure_costs(cfg, *key) for key in plan.index}   # seconds, on a device
    projected_seconds(plan, costs)                # per row; .sum() for the sweep
    sweep_minutes(seconds, devices, cores=16)     # GPU-minutes, CPU job-minutes, wall estimate

:func:`measure_costs` times :func:`bnopt.training.loop.train_run` itself (not a model of it) on random
data of the dataset's shape: the steady-state cost of a plain step, of a measured step, and of
one evaluation, with setup and warm-up cancelled by differencing runs of two lengths
(:func:`per_step_seconds`: long enough to time, fastest of repeats).
:func:`observed_seconds` reads what real runs took, to check a projection against them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.datasets import NUM_CLASSES, TEST_SIZES, TRAIN_SIZES, input_shape
from bnopt.plan.runs import JOB_BENCHMARK, plan, run_config
from bnopt.training.data import fake_dataset
from bnopt.training.loop import (
    build_run,
    device_name,
    evaluate,
    resolve_device,
    train_run,
)
from bnopt.training.models import build_model
from bnopt.training.precision import cudnn_autotune, matmul_precision

KEY = ["dataset", "model", "variant"]


def step_counts(steps: int, measure_every: int, eval_every: int, hessian_every: int = 0) -> dict:
    """How many steps of a run are measured (``step % measure_every == 0``), how many measure
    curvature (``step % hessian_every == 0``) and how many evaluations it runs (every
    ``eval_every`` steps from 0, and one at the end)."""
    measured = math.ceil(steps / measure_every) if measure_every else 0
    curvature = math.ceil(steps / hessian_every) if hessian_every else 0
    evals = len(set(range(0, steps, eval_every)) | {steps})
    return {"steps": steps, "measured_steps": measured, "curvature_steps": curvature,
            "evals": evals}


def sweep_plan(cfg: dict) -> pd.DataFrame:
    """One row per (dataset, model, variant) of the runs the whole workflow trains (see
    :func:`bnopt.plan.runs.plan`), with the number of runs and, per run, the steps, measured
    steps, evaluations, images per evaluation (training plus test set) and the configured
    device (``auto``, ``cpu`` or ``cuda``)."""
    rows = {}
    for run in plan(cfg):
        key = (run.dataset, run.model, run.variant)
        if key not in rows:
            rows[key] = {"runs": 0, **step_counts(run.steps, run.measure_every, run.eval_every,
                                                  run.hessian_every),
                         "eval_images": TRAIN_SIZES[run.dataset] + TEST_SIZES[run.dataset],
                         "device": run.device}
        rows[key]["runs"] += 1
    index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return pd.DataFrame(list(rows.values()), index=index)


def projected_seconds(plan: pd.DataFrame, costs: dict) -> pd.Series:
    """Device seconds of each plan row: runs x (steps x train_s + measured steps x (measured_s
    - train_s) + curvature steps x (curvature_s - train_s) + evals x eval_s + startup_s), with
    ``costs[(dataset, model, variant)]`` a dict of those per-step costs in seconds
    (``curvature_s`` only where the plan has curvature steps; ``startup_s``, a job's start-up
    before its first step, 0 where absent)."""
    out = {}
    for key, row in plan.iterrows():
        c = costs[key]
        curvature = row.get("curvature_steps", 0)
        per_run = (row["steps"] * c["train_s"] + row["measured_steps"] * (c["measured_s"] - c["train_s"])
                   + (curvature * (c["curvature_s"] - c["train_s"]) if curvature else 0.0)
                   + row["evals"] * c["eval_s"] + c.get("startup_s", 0.0))
        out[key] = row["runs"] * per_run
    return pd.Series(out, name="seconds").rename_axis(KEY)


def sweep_minutes(seconds: pd.Series, devices: pd.Series, cores: int, threads: int = 1) -> dict:
    """Totals of a projection whose rows (``seconds``) run on ``devices`` ('cuda' or 'cpu', same
    index): GPU-minutes (one GPU, one training job at a time), CPU job-minutes, and the sweep's
    wall-clock estimate on a machine with one GPU and ``cores`` CPU cores. CPU jobs of
    ``threads`` threads each run beside the GPU job on the cores it leaves (one core drives the
    GPU), assumed to scale perfectly: an estimate, not a measurement."""
    gpu = float(seconds[devices == "cuda"].sum()) / 60
    cpu = float(seconds[devices == "cpu"].sum()) / 60
    slots = max(1, (cores - (1 if gpu else 0)) // threads)
    return {"gpu_minutes": gpu, "cpu_job_minutes": cpu, "cpu_slots": slots,
            "projected_minutes": max(gpu, cpu / slots)}


def per_step_seconds(wall, steps: int, min_seconds: float = 0.0, repeats: int = 1,
                     max_steps: int = 1 << 14) -> tuple[float, int]:
    """Steady-state seconds per step from ``wall(n)``, the wall time of a run of n steps:
    (fastest of ``repeats`` runs of 2n steps - fastest of ``repeats`` runs of n steps) / n,
    after one warm-up run. Other load on the machine only ever slows a run down, so the fastest
    run is the least disturbed one (timeit's rule). n starts at ``steps`` and grows until the
    2n-run outlasts the n-run by ``min_seconds`` (a difference of a few milliseconds is timer
    and scheduler noise). Returns (seconds per step, n)."""
    wall(steps)  # warm-up: kernels, allocator, cuDNN autotuning
    n = steps
    while True:
        long, short = [wall(2 * n)], [wall(n)]
        d = long[0] - short[0]
        if d >= min_seconds or min_seconds <= 0 or n >= max_steps:
            break
        grow = 8.0 if d <= 0 else min(8.0, max(2.0, 1.2 * min_seconds / d))
        n = min(max_steps, math.ceil(n * grow))
    for _ in range(repeats - 1):
        long.append(wall(2 * n))
        short.append(wall(n))
    return (min(long) - min(short)) / n, n


def observed_seconds(runs_root) -> pd.DataFrame:
    """What real runs under ``runs_root`` (results/runs) took, per (dataset, model, variant):
    the number of runs, the mean of their ``wall_seconds`` (the training loop, evaluations
    included, as :func:`projected_seconds` counts it) from each run.json, and the mean of the
    whole jobs' seconds (start-up and writing included) from Snakemake's benchmark files
    (``results/benchmarks/train/...tsv``, beside ``runs_root``), NaN where there are none."""
    runs_root = Path(runs_root)
    workdir = runs_root.resolve().parents[1]  # runs_root is <workdir>/results/runs
    rows = []
    for path in sorted(runs_root.glob("*/*/*/lr*/seed*/run.json")):
        meta = json.loads(path.read_text())
        dataset, model, variant, lr_dir, seed_dir = path.parts[-6:-1]
        bench = workdir / JOB_BENCHMARK.format(dataset=dataset, model=model, variant=variant,
                                               lr=lr_dir[2:], seed=seed_dir[4:])
        job_s = float(pd.read_csv(bench, sep="\t")["s"].iloc[0]) if bench.exists() else math.nan
        rows.append({**{k: meta[k] for k in KEY}, "wall_seconds": meta["wall_seconds"],
                     "job_s": job_s, "device_name": meta["device_name"]})
    if not rows:
        raise FileNotFoundError(f"no run.json under {runs_root}/<dataset>/<model>/<variant>/"
                                "lr*/seed*: train some runs first, or name the runs folder")
    df = pd.DataFrame(rows)
    return df.groupby(KEY).agg(observed_runs=("wall_seconds", "size"),
                               observed_s=("wall_seconds", "mean"), job_s=("job_s", "mean"),
                               device_name=("device_name", "first"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_costs(cfg: dict, dataset: str, model: str, variant: str, device: str = "auto",
                  steps: int = 4, lr: float | None = None, min_seconds: float = 0.0,
                  repeats: int = 1) -> dict:
    """Seconds per plain step, per measured step and per evaluation of a (dataset, model,
    variant) run under the checked config ``cfg``, on the run's configured device (``device``
    where the config says ``auto``).

    The step costs are differences of two :func:`~bnopt.training.loop.train_run` calls of n and 2n
    steps (every step measured, or none), divided by n (:func:`per_step_seconds`: n from
    ``steps`` up until the difference lasts ``min_seconds``, fastest of ``repeats``): the run's
    setup, warm-up and its evaluations at start and end cancel (the timing runs use a small
    random split, so those evaluations are short). A measured step includes everything
    training does for one: probes, ICS, activation statistics, snapshots. Where the config
    measures curvature (``hessian_every`` > 0), ``curvature_s`` is a step with a curvature
    measurement (and no other), timed the same way; Lanczos stops at its tolerance, so on these
    random data it estimates rather than bounds the cost (at most ``hessian_iters`` products).
    An evaluation is timed by :func:`eval_seconds`.
    Everything runs with the config's ``threads`` CPU threads, as its jobs do."""
    lr = lr if lr is not None else (cfg["dln"]["lrs"][0] if model == "dln" else cfg["lrs"][0])
    planned = run_config(cfg, dataset, model, variant, lr, 0)
    base = dataclasses.replace(planned, checkpoint_every=0, hist_every=0,
                               device=device if planned.device == "auto" else planned.device)
    batch = base.batch_size
    full_batch = batch >= TRAIN_SIZES[dataset]  # the DLN: gradient descent on the whole split
    size = None if model == "dln" else cfg["image_size"]
    small = fake_dataset(dataset, n_train=TRAIN_SIZES[dataset] if full_batch else 2 * batch,
                         n_test=min(batch, TEST_SIZES[dataset]), image_size=size)

    def wall(n: int, measure_every: int, hessian_every: int) -> float:
        cfg_n = dataclasses.replace(base, steps=n, log_every=n, eval_every=n,
                                    measure_every=measure_every, hessian_every=hessian_every)
        return train_run(cfg_n, small, progress=False, threads=cfg["threads"]).meta["wall_seconds"]

    out = {}
    kinds = [("train_s", 0, 0), ("measured_s", 1, 0)]
    kinds += [("curvature_s", 0, 1)] if base.hessian_every else []
    for name, every, hessian in kinds:
        out[name], _ = per_step_seconds(lambda n: wall(n, every, hessian), steps, min_seconds,
                                        repeats)

    out["eval_s"] = eval_seconds(base, cfg["image_size"], min_seconds, repeats)
    return out


def eval_seconds(run, image_size: int, min_seconds: float = 0.0, repeats: int = 1) -> float:
    """Seconds of one evaluation (training and test split, eval mode, in the run's
    ``eval_precision``) of the RunConfig ``run``, as training does it: timed on up to two eval
    batches of random data, repeated to last ``min_seconds`` (fastest of ``repeats``), scaled
    to the full splits."""
    dataset = run.dataset
    dev = resolve_device(run.device)
    n_eval = min(TRAIN_SIZES[dataset], 2 * run.eval_batch_size)
    data = fake_dataset(dataset, n_train=n_eval, n_test=1,
                        image_size=None if run.model == "dln" else image_size)
    parts = build_run(dataclasses.replace(run, batch_size=min(run.batch_size, n_eval)), data, dev)
    dd, net = parts.data, parts.model

    def timed_eval(times: int = 1) -> float:
        _sync(dev)
        t = time.perf_counter()
        with matmul_precision(run.eval_precision):
            for _ in range(times):
                evaluate(net, dd, dd.x_train, dd.y_train, run.eval_batch_size)
        _sync(dev)
        return (time.perf_counter() - t) / times

    with cudnn_autotune(run.cudnn_benchmark):
        first = timed_eval()  # warm-up; then enough passes to last min_seconds
        times = max(1, math.ceil(min_seconds / max(first, 1e-6)))
        images = TRAIN_SIZES[dataset] + TEST_SIZES[dataset]
        return min(timed_eval(times) for _ in range(repeats)) * images / n_eval


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of every conv and linear layer for one forward pass of ``x``."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2.0 * out.numel() * k
        else:
            total += 2.0 * out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    was_training = model.training
    model.eval()  # the count does not depend on the mode; eval also takes a batch of one
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for h in hs:
        h.remove()
    return total


def project(config_path, device: str = "cpu", steps: int = 1, min_seconds: float = 0.5,
            repeats: int = 3, cores: int | None = None, compare=None) -> dict:
    """Time each (dataset, model, variant) of the sweep of the config at ``config_path`` on its
    device (``device`` where the config says auto) and project the total; with ``compare``
    (results/runs), set the projection per run beside what the real runs there took. Prints
    each row's costs and the tables to stderr; returns the summary
    (``benchmarks/project_sweep.py`` prints it as JSON)."""


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
    res = {"config": str(config_path), "device": device_name(torch.device(device)),
           "torch": torch.__version__, "runs": int(plan["runs"].sum()),
           "device_minutes": float(seconds.sum() / 60), **totals, "cores": cores,
           "gpu_jobs_at_once": 1,
           "pflop": pflop, "achieved_tflops": pflop * 1e3 / float(seconds.sum()),
           "minutes_by_variant": {"/".join(k): round(float(v / 60), 3) for k, v in seconds.items()},
           "costs_s": {"/".join(k): v for k, v in costs.items()},
           "timing": {"min_steps": steps, "min_seconds": min_seconds, "repeats": repeats}}
    print(f"projected: {totals['gpu_minutes']:.1f} GPU-minutes, one GPU job at a time "
          f"(BENCHMARKS.md: sharing a GPU measured no faster), {totals['cpu_job_minutes']:.1f} "
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
    return res


def job_startup_seconds(repeats: int = 3) -> float:
    """Seconds a training job spends before its first step that the loop's timing misses: a
    fresh Python importing torch and the training code (the fastest of ``repeats``)."""
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import bnopt.training.loop"], check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def sweep_row_flops(cfg: dict, key: tuple, row) -> float:
    """Floating-point operations of a plan row's runs, counting conv and linear layers only:
    forward + backward = 3 x forward per training pass, 1 + K + (L - 1) passes per measured step
    (an upper bound: ICS backward passes stop at their layer), 2 x hessian_iters more per
    curvature step (an upper bound: Lanczos may stop early), forward only for evaluations."""
    dataset, model_name, variant = key
    s = dataclasses.asdict(run_config(cfg, dataset, model_name, variant, 0.1, 0))
    shape = input_shape(dataset, None if model_name == "dln" else cfg["image_size"])
    outputs = NUM_CLASSES[dataset] or shape[0]
    net = build_model(model_name, variant, shape[0], shape[-1] if len(shape) > 1 else 1, outputs,
                      s["width"], activation=s["activation"], mlp_widths=s["mlp_widths"])
    per_image = forward_flops(net, torch.zeros(1, *shape))
    passes = 1 + len(s["probe_multipliers"]) + len(net.layers) - 1
    # a curvature step: at most hessian_iters Hessian-vector products of ~2 training passes each
    curvature = row.get("curvature_steps", 0) * 2 * s["hessian_iters"]
    train = (row["steps"] - row["measured_steps"] + row["measured_steps"] * passes
             + curvature) * 3 * per_image * s["batch_size"]
    return row["runs"] * (train + row["evals"] * row["eval_images"] * per_image)
