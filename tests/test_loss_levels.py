"""Training progress (bnopt.analysis.loss_levels): the smoothed training loss and a run's
quantities read at fixed levels of it, on series whose answer is known."""
import math

import numpy as np
import pandas as pd
import pytest

from bnopt.analysis.loss_levels import (
    LEVELS_PER_DECADE,
    MIN_STEPS_AT_LEVEL,
    SMOOTH_MIN,
    SUPPORT_DECADES,
    at_levels,
    geometric_mean,
    level_label,
    level_loss,
    smoothed_loss,
    span,
)


def steps_table(loss) -> pd.DataFrame:
    return pd.DataFrame({"step": np.arange(len(loss)), "loss": np.asarray(loss, dtype=float)})


def test_smoothing_is_a_centred_geometric_mean():
    # alternating 1 and 100 has geometric mean 10 wherever the window holds as many of each
    loss = np.tile([1.0, 100.0], 50)
    p = smoothed_loss(steps_table(loss))
    window = SMOOTH_MIN  # 100 steps: 1% is below the minimum window
    assert window % 2 == 1  # an odd window holds one more of one value: 10^(1 +- 1/window)
    inner = np.log10(p.iloc[window:-window]) - 1.0
    assert np.allclose(inner.abs(), 1 / window)
    # an exponential decay is unchanged by a centred geometric mean, away from the ends
    decay = np.exp(-np.arange(400) / 50)
    q = smoothed_loss(steps_table(decay))
    assert np.allclose(q.iloc[10:-10], decay[10:-10], rtol=1e-12)


def test_a_diverged_stretch_has_no_progress():
    loss = np.r_[np.ones(20), np.nan, np.ones(20)]
    p = smoothed_loss(steps_table(loss))
    assert p.isna().sum() == SMOOTH_MIN and p.iloc[:15].notna().all()


def test_levels_are_fixed_on_a_log_scale():
    assert np.allclose(np.log10(level_loss(np.arange(-8, 5))), np.arange(-8, 5) / LEVELS_PER_DECADE)
    assert level_label(0) == "1" and level_label(-LEVELS_PER_DECADE) == "0.1"
    assert span([-4, -3]) == "0.1-0.178 (2 levels)" and span([0]) == "1 (1 level)"
    assert span([-4, -2]) == "0.1-0.316 (2 levels, not contiguous)" and span([]) == "none"


def decaying_run(n, start, stop, every=5):
    """A run whose training loss falls geometrically from ``start`` to ``stop`` over ``n``
    steps, measured every ``every`` steps: (its smoothed loss, the measured steps)."""
    loss = np.geomspace(start, stop, n)
    return smoothed_loss(steps_table(loss)), np.arange(0, n, every)


def test_a_quantity_proportional_to_the_loss_is_read_off_exactly_at_every_level():
    """Two runs pass the same losses at very different speeds (one measured step per 1/100
    decade, the other one per 1/10): read at the levels, the quantity 0.3 x loss is the same
    for both, exactly; averaged over half-decade bins it is not (each run's bin median sits
    wherever in the bin its measured steps fell)."""
    rows = {}
    for name, (n, start, stop) in {"slow": (2000, 3.0, 0.01), "fast": (300, 1.0, 0.0011)}.items():
        progress, measured = decaying_run(n, start, stop)
        at = progress.loc[measured].to_numpy()
        values = pd.DataFrame({"step": measured, "value": 0.3 * at})
        rows[name] = at_levels(values, progress, log=True).set_index("level")  # a ratio quantity
    shared = rows["slow"].index.intersection(rows["fast"].index)
    assert len(shared) >= 6
    for k in shared:
        for r in rows.values():
            assert r.loc[k, "value"] == pytest.approx(0.3 * level_loss(k), rel=1e-9)
            assert r.loc[k, "count"] >= MIN_STEPS_AT_LEVEL
    # a level beyond a run's measured losses is not read (no extrapolation)
    assert rows["fast"].index.max() <= np.floor(np.log10(1.0) * LEVELS_PER_DECADE)
    assert rows["slow"].index.min() >= np.ceil(np.log10(0.01) * LEVELS_PER_DECADE)


def test_half_decade_bins_of_the_same_runs_would_give_up_to_3x():
    """Why the levels: one run spends its measured steps at the top of the bin [1, 3.16), the
    other at its bottom. Their bin medians differ 3x for a quantity equal to the loss; at the
    levels both runs support the effect is exactly 1."""
    top = steps_table(np.r_[np.full(200, 3.0), np.geomspace(3.0, 0.9, 20)])
    bottom = steps_table(np.r_[np.geomspace(3.3, 1.0, 20), np.full(200, 1.0)])
    out = {}
    for name, steps in (("top", top), ("bottom", bottom)):
        progress = smoothed_loss(steps)
        measured = np.arange(len(steps))
        x = progress.to_numpy()
        out[name] = (np.median(x[(x >= 1) & (x < 10 ** 0.5)]),
                     at_levels(pd.DataFrame({"step": measured, "value": np.log(x)}),
                               progress).set_index("level"))
    assert out["top"][0] / out["bottom"][0] > 2.9          # the bin medians: ~3x apart
    shared = out["top"][1].index.intersection(out["bottom"][1].index)
    assert len(shared) >= 1
    effect = out["top"][1].loc[shared, "value"] - out["bottom"][1].loc[shared, "value"]
    assert np.allclose(effect, 0.0, atol=1e-12)            # the levels: exactly 1


def test_a_level_needs_measured_steps_near_it():
    """A run that jumps from loss 2 to 0.02 between two measured stretches supports the levels
    near 2 and near 0.02, none in the decades it passed unmeasured."""
    loss = np.r_[np.full(100, 2.0), np.full(100, 0.02)]
    progress = smoothed_loss(steps_table(loss))
    measured = np.r_[np.arange(0, 90, 10), np.arange(110, 200, 10)]
    out = at_levels(pd.DataFrame({"step": measured, "value": np.ones(len(measured))}), progress)
    x = np.log10([2.0, 0.02])
    for k in out.level:
        assert np.abs(k / LEVELS_PER_DECADE - x).min() <= SUPPORT_DECADES + 1e-12
    assert set(out.level) == {-6, 1}  # 1.78 and 0.0316: within the curve, measured nearby


def test_at_levels_groups_by_keys_and_leaves_out_what_is_not_finite():
    progress, measured = decaying_run(400, 10.0, 0.1)
    values = pd.DataFrame({"step": np.r_[measured, measured], "layer": np.repeat([1, 2], len(measured)),
                           "value": np.r_[np.full(len(measured), 2.0), np.full(len(measured), np.nan)]})
    values.loc[3, "value"] = np.inf
    out = at_levels(values, progress, ("layer",))
    assert set(out.layer) == {1} and np.allclose(out.value, 2.0)
    assert list(out.columns) == ["level", "layer", "value", "count"]
    assert at_levels(values.iloc[:0], progress, ("layer",)).empty


def test_geometric_mean():
    assert geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert geometric_mean([2.0, 0.0]) == 0.0
    assert math.isnan(geometric_mean([])) and math.isnan(geometric_mean([1.0, np.nan]))
