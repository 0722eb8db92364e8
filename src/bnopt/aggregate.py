"""Reduce finished runs into tables: one summary row per run and combined per-step rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

IDENTITY = ["dataset", "model", "variant", "lr", "seed"]
MEDIANS = ["loss_range", "grad_pred", "beta_smoothness", "ics_l2", "ics_cos"]
SUMMARY_COLUMNS = IDENTITY + [
    "steps", "steps_completed", "diverged", "final_train_loss", "final_train_acc",
    "final_test_acc", *MEDIANS, "wall_seconds", "width", "batch_size", "momentum",
    "num_parameters", "device_name",
]


def read_meta(meta_path: str | os.PathLike) -> dict:
    with open(meta_path) as f:
        return json.load(f)


def load_table(meta_paths, table: str) -> pd.DataFrame:
    """Concatenate one per-run table ('steps' or 'eval') of many runs, with identity columns
    (dataset, model, variant, lr, seed) in front. ``meta_paths`` are the runs' run.json files."""
    frames = []
    for mp in meta_paths:
        meta = read_meta(mp)
        df = pd.read_parquet(Path(mp).with_name(f"{table}.parquet"))
        for i, k in enumerate(IDENTITY):
            if k in df:  # the per-step 'lr' column: constant, equal to the run's lr
                df.insert(i, k, df.pop(k))
            else:
                df.insert(i, k, meta[k])
        frames.append(df)
    if not frames:
        raise ValueError(f"no runs given for table {table!r}")
    return pd.concat(frames, ignore_index=True)


def landscape_summary(probes: pd.DataFrame, keys=("step",)) -> pd.DataFrame:
    """Per measured step (and per ``keys``), from the per-point probe rows: the loss range along
    the gradient (min, max, max - min), the gradient-predictiveness range (min and max of
    ||grad(x') - grad(x)||), and the effective beta-smoothness (max over the points)."""
    g = probes.groupby(list(keys), sort=True)
    out = g.agg(loss_min=("loss", "min"), loss_max=("loss", "max"),
                grad_pred_min=("grad_change", "min"), grad_pred_max=("grad_change", "max"),
                beta_max=("beta", "max")).reset_index()
    out.insert(out.columns.get_loc("loss_max") + 1, "loss_range", out.loss_max - out.loss_min)
    return out


def run_medians(meta_path) -> dict:
    """Medians over a run's measured steps: loss_range, grad_pred (max gradient change),
    beta_smoothness (max beta), and ics_l2 / ics_cos over all (step, layer >= 2) rows
    (layer 1's ICS is 0 and 1 by definition). NaN where the run measured nothing."""
    d = Path(meta_path).parent
    land = landscape_summary(pd.read_parquet(d / "probes.parquet"))
    ics = pd.read_parquet(d / "ics.parquet").query("layer >= 2")
    return {"loss_range": land.loss_range.median(), "grad_pred": land.grad_pred_max.median(),
            "beta_smoothness": land.beta_max.median(), "ics_l2": ics.l2.median(),
            "ics_cos": ics.cos.median()}


def summary_table(meta_paths) -> pd.DataFrame:
    rows = [{**read_meta(mp), **run_medians(mp)} for mp in meta_paths]
    df = pd.DataFrame(rows)
    return df[SUMMARY_COLUMNS].sort_values(IDENTITY, ignore_index=True)
