"""Reduce finished runs into tables: one summary row per run and combined per-step rows."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bnopt.analysis.code_versions import UNRECORDED
from bnopt.plan.reads import ALL, measures_key
from bnopt.plan.runs import RUN_IDENTITY

IDENTITY = list(RUN_IDENTITY)
MEDIANS = ["loss_range", "grad_pred", "beta_smoothness", "ics_l2", "ics_cos", "lambda_max",
           "batch_sharpness"]
SUMMARY_COLUMNS = IDENTITY + [
    "steps", "steps_completed", "diverged", "never_learned", "final_batch_loss", "final_batch_acc",
    "final_train_loss", "final_train_acc", "final_test_acc", *MEDIANS, "measures",
    "wall_seconds", "init",
    "width", "batch_size", "momentum", "num_parameters", "device_name", "code_version",
]


def edge_of_stability(lr, momentum=0.0):
    """The sharpness at which gradient descent (momentum mu) with step ``lr`` stops being stable
    on a quadratic: 2 (1 + mu) / lr (Cohen et al. 2021; Andreyev & Beneventano 2024). Works on
    numbers and on arrays or columns of them."""
    return 2 * (1 + momentum) / lr


def seed_interval(values) -> tuple[float, float]:
    """The band of a mean over seeds, the one rule every figure and the scorecard use: with 3 or
    more finite values the 95% confidence interval of the mean from Student's t (mean +-
    t(0.975, n-1) * standard error; a bootstrap understates it at n = 3); with 2, where
    t(0.975, 1) = 12.7 makes that interval uninformative, their range; with 1, the value itself
    (no spread); with none, NaN."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) <= 2:
        return float(x.min()), float(x.max())
    m = float(x.mean())
    from scipy import stats  # here: the workflow imports this module to parse

    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m - h, m + h


def band_label(nseeds: int) -> str:
    """What :func:`seed_interval` gives for ``nseeds`` seeds, in words (figure titles, tables)."""
    if nseeds >= 3:
        return f"mean of {nseeds} seeds, 95% t-CI"
    return {2: "mean and range of 2 seeds", 1: "1 seed"}.get(nseeds, "no seeds")


def read_meta(meta_path: str | os.PathLike) -> dict:
    with open(meta_path) as f:
        return json.load(f)


def read_table(meta_path, table: str, columns=None) -> pd.DataFrame:
    """One run's ``table`` (its ``{table}.parquet`` beside ``meta_path``, the run.json), with
    ``columns`` only (all by default; Parquet reads only those). A column the run's file does not
    have (a run written before that measurement existed) comes back all NaN. The one place run
    tables are read: :func:`load_table`, :func:`run_tables` and so the figures, the scorecard
    and :func:`bnopt.analysis.results.load` go through it."""
    path = Path(meta_path).with_name(f"{table}.parquet")
    if columns is None:
        return pd.read_parquet(path)
    have = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in have]).reindex(
        columns=list(columns))


def load_table(meta_paths, table: str, columns=None, meta=()) -> pd.DataFrame:
    """Concatenate one per-run table (e.g. 'steps', 'ics') of many runs, with identity columns
    (dataset, model, variant, lr, seed) in front, then the run.json keys ``meta``, then the
    table's ``columns`` (all by default). ``meta_paths`` are the runs' run.json files."""
    frames = []
    for mp in meta_paths:
        info = read_meta(mp)
        df = read_table(mp, table, None if columns is None else
                        [c for c in columns if c not in IDENTITY])
        for i, k in enumerate(IDENTITY):
            if k in df:  # the per-step 'lr' column: constant, equal to the run's lr
                df.insert(i, k, df.pop(k))
            else:
                df.insert(i, k, info[k])
        for i, k in enumerate(meta, len(IDENTITY)):
            df.insert(i, k, info[k])
        frames.append(df)
    if not frames:
        raise ValueError(f"no runs given for table {table!r}")
    return pd.concat(frames, ignore_index=True)


def landscape_summary(probes: pd.DataFrame, keys=("step",)) -> pd.DataFrame:
    """Per measured step (and per ``keys``), from the per-point probe rows: the loss range along
    the gradient (min, max, max - min), the gradient-predictiveness range (min and max of
    ||grad(x') - grad(x)||), and the effective beta-smoothness (max over the points)."""
    g = probes.groupby(list(keys), sort=True)
    lo, hi = g[["loss", "grad_change"]].min(), g[["loss", "grad_change", "beta"]].max()
    return pd.DataFrame({"loss_min": lo.loss, "loss_max": hi.loss,
                         "loss_range": hi.loss - lo.loss, "grad_pred_min": lo.grad_change,
                         "grad_pred_max": hi.grad_change, "beta_max": hi.beta}).reset_index()


def run_tables(meta_path, names=("probes", "ics", "hessian"),
               columns: dict | None = None) -> dict[str, pd.DataFrame]:
    """A finished run's per-run tables, by name, read once (:func:`read_table`); ``columns``:
    the columns to read of some of them, by name."""
    columns = columns or {}
    return {name: read_table(meta_path, name, columns.get(name)) for name in names}


def run_medians(meta_path, tables: dict | None = None) -> dict:
    """Medians over a run's measured steps: loss_range, grad_pred (max gradient change),
    beta_smoothness (max beta), and ics_l2 / ics_cos over all (step, layer >= 2) rows
    (layer 1's ICS is 0 and 1 by definition); over its curvature steps: lambda_max and
    batch_sharpness. NaN where the run measured nothing. ``tables``: the run's probes, ics and
    hessian tables where the caller has read them already (:func:`run_tables`)."""
    t = tables if tables is not None else run_tables(meta_path)
    land = landscape_summary(t["probes"])
    ics = t["ics"].query("layer >= 2")
    hess = t["hessian"]
    return {"loss_range": land.loss_range.median(), "grad_pred": land.grad_pred_max.median(),
            "beta_smoothness": land.beta_max.median(), "ics_l2": ics.l2.median(),
            "ics_cos": ics.cos.median(), "lambda_max": hess.lambda_max.median(),
            "batch_sharpness": hess.batch_sharpness.median()}


def summary_table(meta_paths) -> pd.DataFrame:
    rows = [{**read_meta(mp), **run_medians(mp)} for mp in meta_paths]
    missing = [mp for mp, r in zip(meta_paths, rows) if "never_learned" not in r]
    if missing:
        raise ValueError(f"{missing[0]} was written by an older bnopt (no 'never_learned'); rerun "
                         "its training with `snakemake --forcerun train ...` or delete the run folder.")
    df = pd.DataFrame(rows)
    if "code_version" not in df:
        df["code_version"] = None
    df["code_version"] = df.code_version.fillna(UNRECORDED)  # runs made before runs recorded it
    # what each run measured (bnopt.plan.reads): a median is NaN where it did not measure it;
    # a run made before runs recorded it measured everything
    df["measures"] = [measures_key(ALL if not isinstance(m, list) else m)
                      for m in df.get("measures", [None] * len(df))]
    return df[SUMMARY_COLUMNS].sort_values(IDENTITY, ignore_index=True)
