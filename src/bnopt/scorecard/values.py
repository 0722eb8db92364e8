"""What the scorecard compares, read from finished runs: every quantity of
:data:`bnopt.scorecard.checks.QUANTITIES` per run, run-long and, for a per-step quantity, at fixed
levels of the training loss (:mod:`bnopt.analysis.loss_levels`), so that
:mod:`bnopt.scorecard.verdicts` can compare runs at the same training loss."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnopt.analysis.aggregate import landscape_summary, read_meta, run_tables
from bnopt.analysis.loss_levels import at_levels, geometric_mean, smoothed_loss
from bnopt.plan.runs import RUN_IDENTITY
from bnopt.scorecard.checks import LANDSCAPE, LATE_FRACTION, QUANTITIES


def _late(df: pd.DataFrame, steps: int) -> pd.DataFrame:
    return df[df.step >= LATE_FRACTION * steps]


NAMES = tuple(QUANTITIES)  # a quantity's code in the tables below: its index here
# the codes of the quantities compared as ratios: read at the loss levels on a log scale
LOG_SCALE = np.array([QUANTITIES[q].comparison == "ratio" for q in NAMES])


def _long(df: pd.DataFrame, columns) -> list[np.ndarray]:
    """[step, quantity code, layer, value] arrays of ``df``'s ``columns`` (a cheap melt)."""
    n, k = len(df), len(columns)
    layer = df["layer"].to_numpy(dtype=np.int64) if "layer" in df else np.zeros(n, np.int64)
    return [np.tile(df["step"].to_numpy(dtype=np.int64), k),
            np.repeat([NAMES.index(c) for c in columns], n), np.tile(layer, k),
            np.concatenate([df[c].to_numpy(dtype=float) for c in columns])]


def per_step_values(tables: dict, land: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every matched quantity of a run at each of its measured steps: rows of (step, quantity,
    layer, value) from its probes, ics, activations and hessian tables (layer 0: the whole
    network; quantity: its code, the index in ``NAMES``). Relative ICS is ||G - G'|| / ||G||
    of the layer's weight gradient G; the moment shifts are those of the fixed probe batch
    before and after the step's update, each unit on its own scale (``probe_mean_shift``,
    ``probe_var_shift``: the shift the update makes, free of batch sampling; a run written
    before they were measured has none). Non-finite values are left out."""
    land = (landscape_summary(tables["probes"]) if land is None else land).rename(
        columns={"grad_pred_max": "grad_pred", "beta_max": "beta_smoothness"})
    ics = tables["ics"]
    acts = tables["activations"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ics = ics.assign(ics_rel=ics.l2 / ics.grad_norm, ics_cos=ics.cos)
        acts = acts.assign(mean_shift=acts.probe_mean_shift, var_shift=acts.probe_var_shift)
    parts = [_long(land, LANDSCAPE), _long(ics, ("ics_rel", "ics_cos")),
             _long(acts, ("mean_shift", "var_shift")), _long(tables["hessian"], ("lambda_max",))]
    step, code, layer, value = (np.concatenate(c) for c in zip(*parts))
    keep = np.isfinite(value)
    return pd.DataFrame({"step": step[keep], "quantity": code[keep], "layer": layer[keep],
                         "value": value[keep]})


# the columns of a run's tables that run_values reads
RUN_COLUMNS = {"probes": ["step", "loss", "grad_change", "beta"],
               "ics": ["step", "layer", "l2", "cos", "grad_norm"],
               "activations": ["step", "layer", "probe_mean_shift", "probe_var_shift"],
               "hessian": ["step", "lambda_max", "batch_sharpness"],
               "steps": ["step", "loss", "accuracy"]}


def _run_values(meta_path) -> tuple[dict, pd.DataFrame]:
    """A run's identity and its rows of (quantity code, layer, level, count, value)."""
    meta = read_meta(meta_path)
    tables = run_tables(meta_path, tuple(RUN_COLUMNS), RUN_COLUMNS)
    steps = int(meta["steps"])
    diverged = bool(meta["diverged"])
    land = landscape_summary(tables["probes"])
    per_step = per_step_values(tables, land)
    g = per_step.groupby(["quantity", "layer"])["value"]
    whole = pd.DataFrame({"value": g.median(), "count": g.size()}).reset_index()
    # at the loss levels, each quantity on the scale it is compared on (log for a ratio)
    per_level = at_levels(per_step, smoothed_loss(tables["steps"]), ("quantity", "layer"),
                          log=LOG_SCALE[per_step["quantity"].to_numpy()])
    one = {"final_test_acc": meta["final_test_acc"],
           "mean_batch_acc": math.nan if diverged else tables["steps"].accuracy.mean(),
           "run_loss": math.nan if diverged else geometric_mean(tables["steps"].loss),
           "trained": not (diverged or meta["never_learned"]),
           "beta_late": _late(land, steps).beta_max.median(),
           "batch_sharpness_late": _late(tables["hessian"], steps).batch_sharpness.median()}
    cols = {"quantity": [whole["quantity"], per_level["quantity"], [NAMES.index(q) for q in one]],
            "layer": [whole["layer"], per_level["layer"], np.zeros(len(one))],
            "level": [np.full(len(whole), np.nan), per_level["level"], np.full(len(one), np.nan)],
            "count": [whole["count"], per_level["count"], np.ones(len(one))],
            "value": [whole["value"], per_level["value"], list(one.values())]}
    types = {"quantity": np.int64, "layer": np.int64, "level": float, "count": np.int64,
             "value": float}
    rows = pd.DataFrame({k: np.concatenate([np.asarray(p, dtype=types[k]) for p in parts])
                         for k, parts in cols.items()})
    ident = {"family": "dln" if meta["model"] == "dln" else "net",
             **{k: meta[k] for k in RUN_IDENTITY}, "lr": float(meta["lr"]),
             "seed": int(meta["seed"]), "diverged": diverged,
             "never_learned": bool(meta["never_learned"]),
             "momentum": float(meta["momentum"]),
             # run.json written before optimizer existed: SGD, its neutral value
             "optimizer": meta.get("optimizer", "sgd")}
    return ident, rows


def run_values(meta_path) -> pd.DataFrame:
    """Every quantity of QUANTITIES for one finished run: rows of (quantity, layer, level,
    count, value) after the run's identity (``VALUE_COLUMNS``); layer 0 for a quantity of the
    whole network. Each quantity has a run-long row (level NaN: the median over the measured
    steps for a matched quantity); a matched quantity also has one row per level of the
    training loss the run supports (:func:`bnopt.analysis.loss_levels.at_levels`: its value
    read off the run's curve there, and the measured steps near it). NaN where the run
    measured nothing."""
    return load_values([meta_path])


# a run's identity in the scorecard: its family, the run identity, what decides whether it
# counts (diverged, never learned) and what its edge of stability needs (momentum; SGD)
IDENTITY = ["family", *RUN_IDENTITY, "diverged", "never_learned", "momentum", "optimizer"]
VALUE_COLUMNS = [*IDENTITY, "quantity", "layer", "level", "count", "value"]
CATEGORIES = ("family", "dataset", "model", "variant")  # every check filters by them


def load_values(meta_paths) -> pd.DataFrame:
    """:func:`run_values` of many runs, one row per (run, quantity, layer, level); the text
    columns are categories."""
    runs = [_run_values(p) for p in meta_paths]
    if not runs:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    rows = pd.concat([r for _, r in runs], ignore_index=True)
    which = np.repeat(np.arange(len(runs)), [len(r) for _, r in runs])
    out = {}
    for k in IDENTITY:
        per_run = [ident[k] for ident, _ in runs]
        out[k] = (pd.Categorical(per_run)[which] if k in CATEGORIES
                  else np.asarray(per_run)[which])
    out["quantity"] = pd.Categorical.from_codes(rows["quantity"].to_numpy(), NAMES)
    for k in ("layer", "level", "count", "value"):
        out[k] = rows[k].to_numpy()
    return pd.DataFrame(out)[VALUE_COLUMNS]
