"""Training progress (bnopt.analysis.loss_bins): the smoothed training loss and its bins, on series whose
answer is known."""
import math

import numpy as np
import pandas as pd
import pytest

from bnopt.analysis.loss_bins import (
    BINS_PER_DECADE,
    MIN_STEPS_PER_BIN,
    SMOOTH_MIN,
    bin_edges,
    bin_label,
    binned,
    geometric_mean,
    loss_bin,
    shared_bins,
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


def test_bins_are_fixed_on_a_log_scale():
    # every bin spans the same factor of the loss, whatever the decade
    widths = [np.log10(hi / lo) for lo, hi in map(bin_edges, range(-6, 4))]
    assert np.allclose(widths, 1 / BINS_PER_DECADE)
    assert list(loss_bin([1.0, 3.0, 3.17, 10.0, 0.5, 0.1])) == [0, 0, 1, 2, -1, -2]
    assert np.isnan(loss_bin([0.0, -1.0, np.inf, np.nan])).all()
    lo, hi = bin_edges(-2)
    assert (lo, hi) == pytest.approx((0.1, 10 ** -0.5))
    assert bin_label(-2) == "0.1-0.316" and bin_label(0) == "1-3.16"
    assert span([-2, -1]) == "0.1-1 (2 bins)"
    assert span([-3, -1]) == "0.0316-1 (2 bins, not contiguous)" and span([]) == "none"


def test_binned_takes_the_median_per_bin_of_the_measured_steps():
    loss = np.r_[np.full(10, 2.0), np.full(10, 0.5)]  # bins 0 then -1
    progress = smoothed_loss(steps_table(loss))
    values = pd.DataFrame({"step": [0, 1, 2, 3, 15, 16, 17, 19],
                           "value": [1.0, 5.0, 3.0, np.nan, 7.0, 8.0, 9.0, 100.0]})
    out = binned(values, progress).set_index("bin")
    assert out.loc[0, "value"] == 3.0 and out.loc[0, "count"] == 3  # NaN left out
    assert out.loc[-1, "value"] == 8.5 and out.loc[-1, "count"] == 4


def test_shared_bins_need_enough_steps_in_every_run():
    n = MIN_STEPS_PER_BIN
    runs = [{0: n, -1: n, -2: n - 1}, {0: 10 * n, -1: n, -2: n, -3: n}]
    assert shared_bins(runs) == [-1, 0]
    assert shared_bins([{0: n}, {-1: n}]) == [] and shared_bins([]) == []


def test_geometric_mean():
    assert geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert geometric_mean([2.0, 0.0]) == 0.0
    assert math.isnan(geometric_mean([])) and math.isnan(geometric_mean([1.0, np.nan]))
