"""What a whole sweep costs: the runs a config asks for, the passes each does, and its device
time projected from per-step costs measured with the real training loop.

    plan = sweep_plan(cfg)                        # one row per (dataset, model, variant)
    costs = {key: measure_costs(cfg, *key) for key in plan.index}   # seconds, on a device
    projected_seconds(plan, costs)                # per row; .sum() for the sweep

:func:`measure_costs` times :func:`bnopt.train.train_run` itself (not a model of it) on random
data of the dataset's shape: the steady-state cost of a plain step, of a measured step, and of
one evaluation, with setup and warm-up cancelled by differencing runs of two lengths.
"""

from __future__ import annotations

import dataclasses
import math
import time

import pandas as pd
import torch

from bnopt.config import sweep_runs, train_settings
from bnopt.data import TEST_SIZES, TRAIN_SIZES, DeviceData, fake_dataset
from bnopt.measure import matmul_precision

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
    :func:`bnopt.config.sweep_runs`), with the number of runs and, per run, the steps, measured
    steps, evaluations and images per evaluation (training plus test set)."""
    rows = {}
    for dataset, model, variant, _lr, _seed in sweep_runs(cfg):
        key = (dataset, model, variant)
        if key not in rows:
            s = train_settings(cfg, model)
            rows[key] = {"runs": 0, **step_counts(s["steps"], s["measure_every"], s["eval_every"],
                                                  s["hessian_every"]),
                         "eval_images": TRAIN_SIZES[dataset] + TEST_SIZES[dataset]}
        rows[key]["runs"] += 1
    index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return pd.DataFrame(list(rows.values()), index=index)


def projected_seconds(plan: pd.DataFrame, costs: dict) -> pd.Series:
    """Device seconds of each plan row: runs x (steps x train_s + measured steps x (measured_s
    - train_s) + curvature steps x (curvature_s - train_s) + evals x eval_s), with
    ``costs[(dataset, model, variant)]`` a dict of those per-step costs in seconds
    (``curvature_s`` only where the plan has curvature steps)."""
    out = {}
    for key, row in plan.iterrows():
        c = costs[key]
        curvature = row.get("curvature_steps", 0)
        per_run = (row["steps"] * c["train_s"] + row["measured_steps"] * (c["measured_s"] - c["train_s"])
                   + (curvature * (c["curvature_s"] - c["train_s"]) if curvature else 0.0)
                   + row["evals"] * c["eval_s"])
        out[key] = row["runs"] * per_run
    return pd.Series(out, name="seconds").rename_axis(KEY)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_costs(cfg: dict, dataset: str, model: str, variant: str, device: str = "auto",
                  steps: int = 4, lr: float | None = None) -> dict:
    """Seconds per plain step, per measured step and per evaluation of a (dataset, model,
    variant) run under the checked config ``cfg``, on ``device``.

    The step costs are differences of two :func:`~bnopt.train.train_run` calls of ``steps`` and
    ``2 * steps`` steps (every step measured, or none), divided by ``steps``: the run's setup,
    warm-up and its evaluations at start and end cancel (the timing runs use a small random
    split, so those evaluations are short). A measured step includes everything training does
    for one: probes, ICS, activation statistics, snapshots. Where the config measures curvature
    (``hessian_every`` > 0), ``curvature_s`` is a step with a curvature measurement (and no
    other), timed the same way; Lanczos stops at its tolerance, so on these random data it
    estimates rather than bounds the cost (at most ``hessian_iters`` products). An evaluation (training and test
    split, eval mode) is timed on up to two eval batches and scaled to the full splits."""
    from bnopt.train import DTYPES, RunConfig, evaluate, resolve_device, run_model, train_run

    settings = {**train_settings(cfg, model), "device": device, "checkpoint_every": 0,
                "hist_every": 0}
    batch = settings["batch_size"]
    full_batch = batch >= TRAIN_SIZES[dataset]  # the DLN: gradient descent on the whole split
    size = None if model == "dln" else cfg["image_size"]
    small = fake_dataset(dataset, n_train=TRAIN_SIZES[dataset] if full_batch else 2 * batch,
                         n_test=min(batch, TEST_SIZES[dataset]), image_size=size)
    lr = lr if lr is not None else (cfg["dln"]["lrs"][0] if model == "dln" else cfg["lrs"][0])
    base = RunConfig(dataset=dataset, model=model, variant=variant, lr=lr, seed=0,
                     **{**settings, "probe_multipliers": tuple(settings["probe_multipliers"])})

    def wall(n: int, measure_every: int, hessian_every: int) -> float:
        cfg_n = dataclasses.replace(base, steps=n, log_every=n, eval_every=n,
                                    measure_every=measure_every, hessian_every=hessian_every)
        return train_run(cfg_n, small, progress=False).meta["wall_seconds"]

    out = {}
    kinds = [("train_s", 0, 0), ("measured_s", 1, 0)]
    kinds += [("curvature_s", 0, 1)] if settings["hessian_every"] else []
    for name, every, hessian in kinds:
        wall(steps, every, hessian)  # warm-up: kernels, allocator, cuDNN autotuning
        out[name] = (wall(2 * steps, every, hessian) - wall(steps, every, hessian)) / steps

    dev, dtype = resolve_device(device), DTYPES[base.dtype]
    n_eval = min(TRAIN_SIZES[dataset], 2 * base.eval_batch_size)
    data = fake_dataset(dataset, n_train=n_eval, n_test=1, image_size=size)
    dd = DeviceData(data, dev, dtype, base.channels_last)
    net = run_model(base, data, dev)

    def timed_eval() -> float:  # as training does it, in the run's precision
        _sync(dev)
        t = time.perf_counter()
        with matmul_precision(base.precision):
            evaluate(net, dd, dd.x_train, dd.y_train, base.eval_batch_size)
        _sync(dev)
        return time.perf_counter() - t

    timed_eval()  # warm-up
    images = TRAIN_SIZES[dataset] + TEST_SIZES[dataset]
    out["eval_s"] = timed_eval() * images / n_eval
    return out
