"""Training progress: how far a run has trained, so that two networks are compared at the same
training loss rather than at the same step.

A network that has converged has small gradients, small gradient differences and a small loss
range along its gradient simply because it sits near a minimum; comparing it, step for step,
with a network that is still training measures where each net is, not what BatchNorm does. So
the scorecard (:mod:`bnopt.scorecard.verdicts`) compares per-step measurements *at the same
levels of the training loss*:

- progress at step ``s`` is the run's logged training-mode batch loss (``steps.parquet``, every
  step), smoothed by a centred rolling geometric mean over ``SMOOTH_FRACTION`` of the run's steps
  (at least ``SMOOTH_MIN``): the batch loss is noisy, and a geometric mean suits a quantity that
  falls over decades;
- the levels are fixed on a log scale, ``LEVELS_PER_DECADE`` per decade: level ``k`` is the
  training loss 10^(k / LEVELS_PER_DECADE). Fixed levels put every run, seed and family (the deep
  linear network's squared loss has another scale) on the same grid;
- a run's value at a level is read off its own curve of the quantity against the training loss
  (log10 of the smoothed loss at each measured step, sorted; a running median over
  ``SMOOTH_POINTS`` measured steps; linear interpolation at the level, never beyond the curve's
  ends), on the scale the quantity is compared on (``log`` for a ratio quantity), so a
  quantity proportional to the loss is read off exactly, however fast or slowly
  each run passed that loss (a bin of the loss would compare wherever in the bin each run
  happened to spend its steps: up to the bin's width, 3.16x for half a decade);
- a level counts for a run only where the run has at least ``MIN_STEPS_AT_LEVEL`` measured steps
  within ``SUPPORT_DECADES`` of it: an interpolation across a stretch the run passed unmeasured
  is not a measurement.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LEVELS_PER_DECADE = 4    # levels of the training loss: 1, 1.78, 3.16, ...
SUPPORT_DECADES = 0.25   # a level counts for a run with measured steps this close (log10) ...
MIN_STEPS_AT_LEVEL = 3   # ... at least this many of them
SMOOTH_POINTS = 5        # the running median over measured steps, in order of training loss
SMOOTH_FRACTION = 0.01   # the training loss's rolling window: 1% of the run's steps ...
SMOOTH_MIN = 5           # ... and at least this many steps


def smoothed_loss(steps: pd.DataFrame) -> pd.Series:
    """The training progress of a run from its ``steps`` table (columns step, loss): the
    centred rolling geometric mean of the batch loss over ``max(SMOOTH_MIN, SMOOTH_FRACTION x
    steps)`` steps, indexed by step. NaN where the window holds a non-positive or non-finite
    loss (a diverged run has no stage of training there)."""
    s = steps.sort_values("step")
    loss = s["loss"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.where((loss > 0) & np.isfinite(loss), np.log(loss), np.nan)
    window = max(SMOOTH_MIN, int(round(SMOOTH_FRACTION * len(s))))
    # the mean of the (clipped, at the ends) window; one bad loss in it makes the step NaN
    smooth = pd.Series(log).rolling(window, center=True, min_periods=1).mean()
    bad = pd.Series(np.isnan(log).astype(float)).rolling(window, center=True, min_periods=1).max()
    out = np.exp(smooth.where(bad == 0).to_numpy())
    return pd.Series(out, index=s["step"].to_numpy(), name="progress_loss")


def level_loss(k) -> np.ndarray | float:
    """The training loss of level ``k``: 10^(k / LEVELS_PER_DECADE)."""
    return 10.0 ** (np.asarray(k, dtype=float) / LEVELS_PER_DECADE)


def level_label(k: int) -> str:
    """'0.316' for level -2: its training loss, 3 significant digits."""
    return f"{float(level_loss(int(k))):.3g}"


def _progress_at(progress: pd.Series, step: np.ndarray) -> np.ndarray:
    index = progress.index.to_numpy()
    if len(index) and (index == np.arange(len(index))).all() and step.max(initial=-1) < len(index):
        return progress.to_numpy()[step]  # progress of every step 0..n-1: index by position
    return progress.reindex(step).to_numpy()


def curve_at_levels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run's quantity ``y`` against ``x`` = log10(training loss) at its measured steps,
    read at the levels it supports: (levels k, values, measured steps within SUPPORT_DECADES).
    Points without a finite x and y are left out."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    empty = np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int64)
    if len(x) < MIN_STEPS_AT_LEVEL:
        return empty
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    roll = dict(window=SMOOTH_POINTS, center=True, min_periods=1)
    xs = pd.Series(x).rolling(**roll).median().to_numpy()
    ys = pd.Series(y).rolling(**roll).median().to_numpy()
    k = np.arange(math.ceil(xs[0] * LEVELS_PER_DECADE - 1e-9),
                  math.floor(xs[-1] * LEVELS_PER_DECADE + 1e-9) + 1)
    at = k / LEVELS_PER_DECADE
    support = (np.searchsorted(x, at + SUPPORT_DECADES + 1e-12, side="right")
               - np.searchsorted(x, at - SUPPORT_DECADES - 1e-12, side="left"))
    keep = support >= MIN_STEPS_AT_LEVEL
    if not keep.any():
        return empty
    return k[keep].astype(np.int64), np.interp(at[keep], xs, ys), support[keep].astype(np.int64)


def at_levels(values: pd.DataFrame, progress: pd.Series, keys=(), log=False) -> pd.DataFrame:
    """Per level of the training loss (and per ``keys``, e.g. quantity and layer): each group's
    ``values.value`` read off its curve against the smoothed training loss (``progress``, from
    :func:`smoothed_loss`) by :func:`curve_at_levels`, and how many measured steps support it.
    ``values`` has columns step, value and ``keys``. ``log``: read on a log scale (a quantity
    compared as a ratio; values <= 0 left out) and return the value back on its own scale; a
    bool, or one per row of ``values`` (the same within a group). Columns: level, *keys,
    value, count."""
    keys = list(keys)
    columns = ["level", *keys, "value", "count"]
    if values.empty:
        return pd.DataFrame(columns=columns)
    x = np.log10(_progress_at(progress, values["step"].to_numpy()))
    value = values["value"].to_numpy(dtype=float)
    log = np.broadcast_to(np.asarray(log, dtype=bool), value.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(log, np.log(value), value)
    df = values.assign(_x=x, value=value, _log=log)
    parts = []
    for key, g in (df.groupby(keys, sort=True) if keys else [((), df)]):
        k, v, n = curve_at_levels(g["_x"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float))
        if g["_log"].iloc[0]:
            v = np.exp(v)
        key = key if isinstance(key, tuple) else (key,)
        parts.append(pd.DataFrame({"level": k, **{c: np.full(len(k), kv) for c, kv in
                                                    zip(keys, key)}, "value": v, "count": n}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return out[columns]


def span(levels) -> str:
    """The training-loss levels ``levels`` in words: '0.0316-1 (7 levels)'."""
    levels = sorted(int(k) for k in levels)
    if not levels:
        return "none"
    n = len(levels)
    gaps = "" if levels[-1] - levels[0] + 1 == n else ", not contiguous"
    ends = (level_label(levels[0]) if n == 1 else
            f"{level_label(levels[0])}-{level_label(levels[-1])}")
    return f"{ends} ({n} level{'s' if n > 1 else ''}{gaps})"


def geometric_mean(values) -> float:
    """exp(mean(log v)); 0 where a value is <= 0 (a ratio of it is then flagged), NaN where
    there is none."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or not np.isfinite(v).all():
        return math.nan
    if (v <= 0).any():
        return 0.0
    return float(np.exp(np.log(v).mean()))
