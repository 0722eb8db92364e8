"""Training progress: how far a run has trained, so that two networks are compared at the same
stage of training rather than at the same step.

A network that has converged has small gradients, small gradient differences and a small loss
range along its gradient simply because it sits near a minimum; comparing it, step for step,
with a network that is still training measures where each net is, not what BatchNorm does. So
the scorecard (:mod:`bnopt.scorecard.verdicts`) compares per-step measurements within *bins of the training
loss* both runs visit:

- progress at step ``s`` is the run's logged training-mode batch loss (``steps.parquet``, every
  step), smoothed by a centred rolling geometric mean over ``SMOOTH_FRACTION`` of the run's steps
  (at least ``SMOOTH_MIN``): the batch loss is noisy, and a geometric mean suits a quantity that
  falls over decades;
- the bins are fixed on a log scale, ``BINS_PER_DECADE`` per decade: bin ``k`` holds losses in
  [10^(k / BINS_PER_DECADE), 10^((k + 1) / BINS_PER_DECADE)). Fixed edges put every run, seed
  and family (the deep linear network's squared loss has another scale) on the same grid;
- a run's value in a bin is the median of the quantity over its measured steps in that bin; a
  bin counts for a comparison only where every compared run has at least
  ``MIN_STEPS_PER_BIN`` measured steps in it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BINS_PER_DECADE = 2     # bins of the training loss: [1, 3.16), [3.16, 10), ...
SMOOTH_FRACTION = 0.01  # the rolling window: 1% of the run's steps ...
SMOOTH_MIN = 5          # ... and at least this many steps
MIN_STEPS_PER_BIN = 3   # measured steps every compared run needs in a bin for it to count


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


def loss_bin(loss) -> np.ndarray:
    """The bin of each training loss (float array; NaN where the loss is not positive and
    finite): floor(log10(loss) x BINS_PER_DECADE)."""
    x = np.asarray(loss, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor(np.log10(x) * BINS_PER_DECADE + 1e-9)
    return np.where(np.isfinite(k), k, np.nan)


def bin_edges(k: int) -> tuple[float, float]:
    return 10.0 ** (k / BINS_PER_DECADE), 10.0 ** ((k + 1) / BINS_PER_DECADE)


def bin_label(k: int) -> str:
    """'0.316-1' for bin -1: the training losses it holds, 3 significant digits."""
    lo, hi = bin_edges(int(k))
    return f"{lo:.3g}-{hi:.3g}"


def binned(values: pd.DataFrame, progress: pd.Series, keys=()) -> pd.DataFrame:
    """Per training-loss bin (and per ``keys``, e.g. layer): the median of ``values.value`` over
    the measured steps whose smoothed loss (``progress``, from :func:`smoothed_loss`) falls in
    the bin, and how many steps that is. ``values`` has columns step, value and ``keys``.
    Steps without a finite value or a progress are left out. Columns: bin, *keys, value, count."""
    keys = list(keys)
    step = values["step"].to_numpy()
    index = progress.index.to_numpy()
    if len(index) and (index == np.arange(len(index))).all() and step.max(initial=-1) < len(index):
        at = progress.to_numpy()[step]  # progress of every step 0..n-1: index by position
    else:
        at = progress.reindex(step).to_numpy()
    k = loss_bin(at)
    value = values["value"].to_numpy(dtype=float)
    ok = np.isfinite(k) & np.isfinite(value)
    v = pd.DataFrame({"bin": k[ok].astype(int), **{c: values[c].to_numpy()[ok] for c in keys},
                      "value": value[ok]})
    if v.empty:
        return pd.DataFrame(columns=["bin", *keys, "value", "count"])
    g = v.groupby(["bin", *keys])["value"]
    return pd.DataFrame({"value": g.median(), "count": g.size()}).reset_index()


def shared_bins(counts: list[dict[int, int]]) -> list[int]:
    """The bins in which every run (one dict of bin -> measured steps per run) has at least
    ``MIN_STEPS_PER_BIN`` measured steps, ascending."""
    if not counts:
        return []
    common = set.intersection(*({k for k, n in c.items() if n >= MIN_STEPS_PER_BIN}
                                for c in counts))
    return sorted(common)


def span(bins) -> str:
    """The training-loss range of ``bins`` in words: '0.0316-1 (2 bins)'."""
    bins = sorted(int(b) for b in bins)
    if not bins:
        return "none"
    lo, hi = bin_edges(bins[0])[0], bin_edges(bins[-1])[1]
    n = len(bins)
    gaps = "" if bins[-1] - bins[0] + 1 == n else ", not contiguous"
    return f"{lo:.3g}-{hi:.3g} ({n} bin{'s' if n > 1 else ''}{gaps})"


def geometric_mean(values) -> float:
    """exp(mean(log v)); 0 where a value is <= 0 (a ratio of it is then flagged), NaN where
    there is none."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or not np.isfinite(v).all():
        return math.nan
    if (v <= 0).any():
        return 0.0
    return float(np.exp(np.log(v).mean()))
