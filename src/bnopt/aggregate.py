"""Reduce finished runs into tables: one summary row per run and combined per-step rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

IDENTITY = ["dataset", "model", "variant", "lr", "seed"]
SUMMARY_COLUMNS = IDENTITY + [
    "steps", "steps_completed", "diverged", "final_train_loss", "final_train_acc",
    "final_test_acc", "wall_seconds", "width", "batch_size", "momentum", "num_parameters",
    "device_name",
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


def summary_table(meta_paths) -> pd.DataFrame:
    rows = [read_meta(mp) for mp in meta_paths]
    df = pd.DataFrame(rows)
    return df[SUMMARY_COLUMNS].sort_values(IDENTITY, ignore_index=True)
