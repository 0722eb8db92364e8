"""What a whole sweep costs: the runs a config asks for, the passes each does, and its device
time projected from per-step costs measured with the real training loop.

    project("config.yaml", "cuda")               # all of it, printed (benchmarks/project_sweep.py)
    plan = sweep_plan(cfg)           # one row per (dataset, model, variant, what it measures)
    costs = {key: measure_costs(cfg, *key) for key in plan.index}   # seconds, on a device
    projected_seconds(plan, costs)                # per row; .sum() for the sweep
    sweep_minutes(seconds, devices, cores=16)     # --cores 1 and the profile's wall, minutes

:func:`measure_costs` times :func:`bnopt.training.loop.train_run` itself (not a model of it) on random
data of the dataset's shape: the steady-state cost of a plain step, of a measured step, and of
one evaluation, with setup and warm-up cancelled by differencing runs of two lengths
(:func:`per_step_seconds`: long enough to time, fastest of repeats).
:func:`startup_stages` times what a job pays outside its steps (a fresh Python doing what the
train script does: :mod:`bnopt.studies.job_probe`) and :func:`other_jobs` counts the jobs that
are not training. :func:`observed_seconds` reads what real runs took, to check a projection
against them (``benchmarks/check_projection.py`` runs a whole sweep for that).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.datasets import NUM_CLASSES, TEST_SIZES, TRAIN_SIZES, input_shape
from bnopt.plan.reads import ALL, key_measures, measures_key
from bnopt.plan.runs import (
    JOB_BENCHMARK,
    measured_steps,
    plan,
    run_config,
    target_figures,
)
from bnopt.scorecard.reads import run_measures
from bnopt.training.data import fake_dataset
from bnopt.training.loop import (
    build_run,
    device_name,
    evaluate,
    resolve_device,
    train_run,
)
from bnopt.training.models import build_model
from bnopt.training.module_net import build_module_net, is_import_path, module_depth
from bnopt.training.precision import cudnn_autotune, matmul_precision

KEY = ["dataset", "model", "variant", "measures"]  # measures: bnopt.plan.reads.measures_key


def step_counts(steps: int, measure_every: int, eval_every: int, hessian_every: int = 0,
                measure_per_decade: int = 0, checkpoint_every: int = 0) -> dict:
    """How many steps of a run are measured (:func:`bnopt.plan.runs.measured_steps`), how many
    measure curvature (``step % hessian_every == 0``), how many evaluations it runs (every
    ``eval_every`` steps from 0, and one at the end) and how many checkpoints it writes (every
    ``checkpoint_every`` steps before the last)."""
    measured = len(measured_steps(steps, measure_every, measure_per_decade))
    curvature = math.ceil(steps / hessian_every) if hessian_every else 0
    evals = len(set(range(0, steps, eval_every)) | {steps})
    checkpoints = len(range(checkpoint_every, steps, checkpoint_every)) if checkpoint_every else 0
    return {"steps": steps, "measured_steps": measured, "curvature_steps": curvature,
            "evals": evals, "checkpoints": checkpoints}


def sweep_plan(cfg: dict) -> pd.DataFrame:
    """One row per (dataset, model, variant, measures) of the runs the whole workflow trains
    (see :func:`bnopt.plan.runs.plan`; measures: what their measured steps measure,
    :func:`measures_key`), with the number of runs and, per run, the steps, measured steps
    (curvature steps only where it measures curvature), evaluations, images per evaluation
    (training plus test set) and the configured device (``auto``, ``cpu`` or ``cuda``)."""
    rows = {}
    for run in plan(cfg, run_measures(cfg)):
        key = (run.dataset, run.model, run.variant, measures_key(run.measures))
        if key not in rows:
            hessian = run.hessian_every if "hessian" in run.measures else 0
            rows[key] = {"runs": 0, **step_counts(run.steps, run.measure_every, run.eval_every,
                                                  hessian, run.measure_per_decade,
                                                  run.checkpoint_every),
                         "eval_images": TRAIN_SIZES[run.dataset] + TEST_SIZES[run.dataset],
                         "device": run.device}
        rows[key]["runs"] += 1
    index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return pd.DataFrame(list(rows.values()), index=index)


def projected_seconds(plan: pd.DataFrame, costs: dict) -> pd.Series:
    """Seconds of each plan row's jobs: runs x (steps x train_s + measured steps x (measured_s
    - train_s) + curvature steps x (curvature_s - train_s) + evals x eval_s + checkpoints x
    checkpoint_s + startup_s), with ``costs[key]`` (the row's key) a dict of those costs
    in seconds (``curvature_s`` only where the plan has curvature steps; ``startup_s``, what a
    job pays outside its steps (:func:`startup_stages`), and ``checkpoint_s``, 0 where
    absent)."""
    out = {}
    for key, row in plan.iterrows():
        c = costs[key]
        curvature = row.get("curvature_steps", 0)
        per_run = (row["steps"] * c["train_s"] + row["measured_steps"] * (c["measured_s"] - c["train_s"])
                   + (curvature * (c["curvature_s"] - c["train_s"]) if curvature else 0.0)
                   + row["evals"] * c["eval_s"] + row.get("checkpoints", 0) * c.get("checkpoint_s", 0.0)
                   + c.get("startup_s", 0.0))
        out[key] = row["runs"] * per_run
    return pd.Series(out, name="seconds").rename_axis(plan.index.names)


def sweep_minutes(seconds: pd.Series, devices: pd.Series, cores: int, threads: int = 1,
                  startup: pd.Series | None = None, jobs_per_gpu: int = 1,
                  other_seconds: float = 0.0, worker_seconds: float = 0.0) -> dict:
    """Totals of a projection whose rows' jobs take ``seconds`` (start-up included; ``startup``
    of it, per row, the jobs' start-up: 0 where None) on ``devices`` ('cuda' or 'cpu', same
    index), with ``other_seconds`` of jobs that are not training (data preparation, tables,
    figures, the scorecard: one core each) and ``worker_seconds``, the start-up of the warm
    worker processes the CPU jobs and the other jobs run in (once: under the profile they
    start side by side),
    under the two ways a sweep is run:

    - ``serial_minutes``, ``snakemake --cores 1 --resources gpu=1``: one job at a time, so
      every job's time adds up, the CPU's DLN jobs and the figures included.
    - ``profile_minutes``, ``snakemake`` with the workflow profile (every core;
      ``--resources gpu=jobs_per_gpu``): ``jobs_per_gpu`` GPU jobs at a time, whose steps share
      the GPU (no faster: BENCHMARKS.md) while one's start-up overlaps another's steps; CPU
      jobs of ``threads`` threads each beside them on the cores the GPU jobs leave, assumed
      to scale perfectly; then the other jobs on every core. An estimate, not a measurement.

    Also GPU-minutes and CPU job-minutes (all of their jobs' time) and the CPU slots."""
    startup = startup if startup is not None else seconds * 0
    gpu = float(seconds[devices == "cuda"].sum()) / 60
    cpu = float(seconds[devices == "cpu"].sum()) / 60
    workers = worker_seconds / 60
    overlap = float(startup[devices == "cuda"].sum()) / 60 * (1 - 1 / jobs_per_gpu)
    slots = max(1, (cores - (threads * jobs_per_gpu if gpu else 0)) // threads)
    other = other_seconds / 60
    return {"gpu_minutes": gpu, "cpu_job_minutes": cpu, "other_job_minutes": other,
            "worker_startup_minutes": workers, "cpu_slots": slots,
            "serial_minutes": gpu + cpu + workers + other,
            "profile_minutes": max(gpu - overlap, cpu / slots + workers) + other / cores}


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
    """What real runs under ``runs_root`` (results/runs) took, per (dataset, model, variant,
    measures):
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
        rows.append({**{k: meta[k] for k in KEY[:3]},
                     # a run.json written before runs recorded it measured everything
                     "measures": measures_key(meta.get("measures", ALL)),
                     "wall_seconds": meta["wall_seconds"],
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


def measure_costs(cfg: dict, dataset: str, model: str, variant: str, measures: str | None = None,
                  device: str = "auto", steps: int = 4, lr: float | None = None,
                  min_seconds: float = 0.0, repeats: int = 1) -> dict:
    """Seconds per plain step, per measured step and per evaluation of a (dataset, model,
    variant) run under the checked config ``cfg`` that measures ``measures`` (a plan row's
    key, :func:`measures_key`; None: everything), on the run's configured device (``device``
    where the config says ``auto``).

    The step costs are differences of two :func:`~bnopt.training.loop.train_run` calls of n and 2n
    steps (every step measured, or none), divided by n (:func:`per_step_seconds`: n from
    ``steps`` up until the difference lasts ``min_seconds``, fastest of ``repeats``): the run's
    setup, warm-up and its evaluations at start and end cancel (the timing runs use a small
    random split, so those evaluations are short). A measured step includes everything
    training does for one of these measures: probes, ICS, activation statistics, snapshots.
    Where the run measures curvature (``hessian_every`` > 0), ``curvature_s`` is a step with a curvature
    measurement (and no other), timed the same way; Lanczos stops at its tolerance, so on these
    random data it estimates rather than bounds the cost (at most ``hessian_iters`` products).
    An evaluation is timed by :func:`eval_seconds`.
    Everything runs with the config's ``threads`` CPU threads, as its jobs do."""
    lr = lr if lr is not None else (cfg["dln"]["lrs"][0] if model == "dln" else cfg["lrs"][0])
    planned = run_config(cfg, dataset, model, variant, lr, 0)
    base = dataclasses.replace(planned, checkpoint_every=0, hist_every=0, measure_per_decade=0,
                               measures=ALL if measures is None else key_measures(measures),
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
    kinds += [("curvature_s", 0, 1)] if base.hessian_every and "hessian" in base.measures else []
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
            repeats: int = 3, cores: int | None = None, compare=None, scripts=None) -> dict:
    """Time each (dataset, model, variant) of the sweep of the config at ``config_path`` on its
    device (``device`` where the config says auto), its jobs' start-up by stage
    (:func:`startup_stages`) and the jobs that are not training (:func:`other_jobs`), and
    project the whole sweep under both schedules (:func:`sweep_minutes`; the other jobs' start-up
    is timed from the workflow's rule scripts in ``scripts``, and is left out where that is
    None); with ``compare``
    (results/runs), set the projection per run beside what the real runs there took. Prints
    each row's costs and the tables to stderr; returns the summary
    (``benchmarks/project_sweep.py`` prints it as JSON)."""
    with open(config_path) as f:
        cfg = check_config(yaml.safe_load(f), depth_of=module_depth)
    plan = sweep_plan(cfg)
    plan["device"] = plan["device"].replace("auto", device)
    costs, stages = {}, {}
    for key in plan.index:
        costs[key] = measure_costs(cfg, *key, device=device, steps=steps, min_seconds=min_seconds,
                                   repeats=repeats)
        # one variant's start-up per (dataset, model, device): the stages do not depend on the
        # normaliser (VGG standard / BN / noisy BN 2.70 / 2.72 / 2.59 s on the CPU, BENCHMARKS.md)
        same = next((k for k in stages if k[:2] == key[:2]
                     and plan.loc[k, "device"] == plan.loc[key, "device"]), None)
        stages[key] = stages[same] if same else startup_stages(cfg, *key, device=device)
        costs[key]["checkpoint_s"] = stages[key]["checkpoint"]
        warm = cfg["warm_workers"] and plan.loc[key, "device"] == "cpu"
        costs[key]["startup_s"] = sum(stages[key][k] for k in STARTUP_STAGES
                                      if not (warm and k in PROCESS_STAGES))
        print(f"{'/'.join(key):32s} {plan.loc[key, 'device']:4s} "
              + "  ".join(f"{k} {v:.4g}" for k, v in costs[key].items()), file=sys.stderr, flush=True)
    seconds = projected_seconds(plan, costs)
    startup = pd.Series({k: plan.loc[k, "runs"] * costs[k]["startup_s"] for k in plan.index})
    others = other_jobs(cfg)
    # a fresh Python's start-up for each kind of other job (its script's imports); with warm
    # workers a worker pays it once, at its first job of the kind, not every job
    other_startup = {kind: other_job_startup(kind, scripts)
                     for kind, n in others.items() if n} if scripts else {}
    other_s = {kind: n * (OTHER_WORK_S[kind]
                          + (0.0 if cfg["warm_workers"] else other_startup.get(kind, 0.0)))
               for kind, n in others.items() if n}
    table = plan.join(pd.DataFrame.from_dict(costs, orient="index").rename_axis(plan.index.names))
    table["minutes"] = seconds / 60
    table["pflop"] = [sweep_row_flops(cfg, key, row) / 1e15 for key, row in plan.iterrows()]
    print(table.to_string(), file=sys.stderr)
    pflop = float(table["pflop"].sum())
    cores = cores or os.cpu_count()
    # the warm workers start once (in parallel under the profile): a CPU training job's
    # process start-up, and the other jobs' imports (the plotting libraries)
    worker_s = (max((sum(stages[k][s] for s in PROCESS_STAGES) for k in plan.index
                     if plan.loc[k, "device"] == "cpu"), default=0.0)
                + max(other_startup.values(), default=0.0)) if cfg["warm_workers"] else 0.0
    totals = sweep_minutes(seconds, plan["device"], cores, cfg["threads"], startup.reindex(seconds.index),
                           cfg["jobs_per_gpu"], sum(other_s.values()), worker_s)
    res = {"config": str(config_path), "device": device_name(torch.device(device)),
           "torch": torch.__version__, "runs": int(plan["runs"].sum()),
           "device_minutes": float(seconds.sum() / 60), **totals, "cores": cores,
           "threads": cfg["threads"], "jobs_per_gpu": cfg["jobs_per_gpu"],
           "pflop": pflop, "achieved_tflops": pflop * 1e3 / float(seconds.sum()),
           "minutes_by_variant": {"/".join(k): round(float(v / 60), 3) for k, v in seconds.items()},
           "costs_s": {"/".join(k): v for k, v in costs.items()},
           "startup_stages_s": {"/".join(k): v for k, v in stages.items()},
           "other_jobs": others, "other_seconds": other_s, "other_startup_s": other_startup,
           "plan": {"/".join(k): {c: (v.item() if hasattr(v, "item") else v)
                                  for c, v in row.items()} for k, row in plan.iterrows()},
           "timing": {"min_steps": steps, "min_seconds": min_seconds, "repeats": repeats}}
    print(f"projected: {totals['gpu_minutes']:.1f} GPU-minutes, {totals['cpu_job_minutes']:.1f} "
          f"CPU job-minutes, {totals['other_job_minutes']:.1f} minutes of data, tables and "
          f"figures ({sum(others.values())} jobs).\n"
          f"  snakemake --cores 1 --resources gpu=1 (one job at a time): "
          f"{totals['serial_minutes']:.1f} minutes\n"
          f"  snakemake (the profile: {cores} cores, {cfg['jobs_per_gpu']} job(s) a GPU, "
          f"{totals['cpu_slots']} CPU jobs beside): {totals['profile_minutes']:.1f} minutes",
          file=sys.stderr)
    if compare:
        seen = observed_seconds(compare)
        # per run: the training loop as run.json's wall_seconds counts it, and the whole job
        both = (seconds / plan["runs"]).rename("projected_job_s").to_frame().join(seen, how="inner")
        both.insert(0, "projected_s", both["projected_job_s"]
                    - pd.Series({k: costs[k]["startup_s"] for k in both.index}))
        both["observed_over_projected"] = both["observed_s"] / both["projected_s"]
        both["job_over_projected"] = both["job_s"] / both["projected_job_s"]
        print(both.to_string(), file=sys.stderr)
        res["compare"] = {"/".join(k): {c: (v.item() if hasattr(v, "item") else v)
                                        for c, v in row.items()} for k, row in both.iterrows()}
    return res


# The rule scripts of the jobs that are not training (workflow/scripts/), by kind
OTHER_SCRIPTS = {"prepare_data": "prepare_data.py", "summary": "summarize.py",
                 "scorecard": "scorecard.py", "fig0_scorecard": "plot_scorecard.py",
                 "reported": "reported.py", "figures": "plot_figure.py"}
# Seconds of each such job's work after its imports: measured, not modelled, on the quick
# preset's 51 runs (2-core CPU, 2026-12-06, Snakemake's log: a figure job took 2-4 s, its
# script's imports 1.5 s alone; data preparation 3-4 s with 2.1 s of imports; the scorecard
# 4 s, its figure 6 s, the summary 1 s). A downloaded dataset's download and conversion are not
# counted (they depend on the network, and happen once).
OTHER_WORK_S = {"prepare_data": 1.5, "summary": 0.5, "scorecard": 3.0, "fig0_scorecard": 4.0,
                "reported": 3.0, "figures": 1.5}


def other_jobs(cfg: dict) -> dict[str, int]:
    """How many jobs of each kind that is not training `snakemake` (rule all) runs for the
    checked config ``cfg``: one data preparation per dataset, the summary, the scorecard and
    its figure (or an earlier experiment's reported.csv), and one job per target figure."""
    experiment = bool(cfg["experiment"])
    return {"prepare_data": len({run.dataset for run in plan(cfg)}), "summary": 1,
            "scorecard": int(not experiment), "fig0_scorecard": int(not experiment),
            "reported": int(experiment), "figures": len(target_figures(cfg))}


def other_job_startup(kind: str, scripts, repeats: int = 1) -> float:
    """Seconds a job of ``kind`` (:data:`OTHER_SCRIPTS`) pays before its work
    (:data:`OTHER_WORK_S`): a fresh Python importing what its rule script in the folder
    ``scripts`` (the workflow's ``workflow/scripts``) imports, the fastest of ``repeats``."""
    script = Path(scripts) / OTHER_SCRIPTS[kind]
    if not script.exists():
        raise FileNotFoundError(f"{script} is not here: name the workflow's scripts folder "
                                "(workflow/scripts in a checkout of bnopt)")
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(script)!r})"],
                       check=True)
        times.append(time.perf_counter() - t)
    return min(times)


STARTUP_STAGES = ("interpreter", "imports", "data", "setup", "warmup", "write")
# what a process pays before its first job: with warm_workers a local sweep's CPU jobs pay it
# once per worker (bnopt.running.workers), not once per job
PROCESS_STAGES = ("interpreter", "imports")


def startup_stages(cfg: dict, dataset: str, model: str, variant: str, measures: str | None = None,
                   device: str = "auto", workdir=None) -> dict:
    """Seconds a training job of a (dataset, model, variant) of the checked config ``cfg``
    pays outside its steps, by stage (:data:`STARTUP_STAGES`), and ``checkpoint``, one
    checkpoint's writing: :mod:`bnopt.studies.job_probe` in a fresh Python, as a job pays
    them (its imports, the prepared data at its real size, the run's setup on its device,
    the first steps' warm-up, writing its tables), on random data of the dataset's shapes
    written to ``workdir`` (a temporary folder if None). ``measures`` (a plan row's) changes
    nothing here: its steps measure nothing."""
    planned = run_config(cfg, dataset, model, variant,
                         cfg["dln"]["lrs"][0] if model == "dln" else cfg["lrs"][0], 0)
    run = dataclasses.replace(planned, steps=2, eval_every=2, log_every=2, checkpoint_every=0,
                              measure_every=0, measure_per_decade=0, hessian_every=0,
                              hist_every=0,
                              device=device if planned.device == "auto" else planned.device)
    size = None if model == "dln" else cfg["image_size"]
    full_batch = run.batch_size >= TRAIN_SIZES[dataset]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        fake_dataset(dataset, image_size=size).save(tmp / "full.pt")
        fake_dataset(dataset, n_train=TRAIN_SIZES[dataset] if full_batch else 2 * run.batch_size,
                     n_test=min(run.batch_size, TEST_SIZES[dataset]),
                     image_size=size).save(tmp / "small.pt")
        (tmp / "run.json").write_text(json.dumps(dataclasses.asdict(run)))
        (tmp / "out").mkdir()
        out = subprocess.run([sys.executable, "-m", "bnopt.studies.job_probe", str(tmp / "run.json"),
                              str(tmp / "full.pt"), str(tmp / "small.pt"), str(tmp / "out"),
                              str(cfg["threads"])], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"timing the start-up of {dataset}/{model}/{variant} failed:\n"
                           f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep_row_flops(cfg: dict, key: tuple, row) -> float:
    """Floating-point operations of a plan row's runs, counting conv and linear layers only:
    forward + backward = 3 x forward per training pass, 1 + K + (L - 1) passes per measured step
    (K probes and L - 1 ICS passes where its measures have them)
    (an upper bound: ICS backward passes stop at their layer), 2 x hessian_iters more per
    curvature step (an upper bound: Lanczos may stop early), forward only for evaluations."""
    dataset, model_name, variant, measures = key
    measures = key_measures(measures)
    s = dataclasses.asdict(run_config(cfg, dataset, model_name, variant, 0.1, 0))
    shape = input_shape(dataset, None if model_name == "dln" else cfg["image_size"])
    outputs = NUM_CLASSES[dataset] or shape[0]
    if is_import_path(model_name):
        net = build_module_net(model_name, variant, shape, outputs, s["model_kwargs"])
    else:
        net = build_model(model_name, variant, shape[0], shape[-1] if len(shape) > 1 else 1,
                          outputs, s["width"], activation=s["activation"],
                          mlp_widths=s["mlp_widths"])
    per_image = forward_flops(net, torch.zeros(1, *shape))
    passes = (1 + ("probes" in measures) * len(s["probe_multipliers"])
              + ("ics" in measures) * (len(net.layers) - 1))
    # a curvature step: at most hessian_iters Hessian-vector products of ~2 training passes each
    curvature = row.get("curvature_steps", 0) * 2 * s["hessian_iters"]
    train = (row["steps"] - row["measured_steps"] + row["measured_steps"] * passes
             + curvature) * 3 * per_image * s["batch_size"]
    return row["runs"] * (train + row["evals"] * row["eval_images"] * per_image)
