"""Figure helpers: the edge-of-stability line against the optimiser itself, and run notes."""
import pytest
import torch

from bnopt.analysis.aggregate import edge_of_stability
from bnopt.figures.style import run_notes


def _final_distance(curvature: float, lr: float, momentum: float, steps: int = 2000) -> float:
    """|x| after ``steps`` of torch's SGD on f(x) = curvature / 2 * x^2 from x = 1."""
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=lr, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * curvature * x.square()).sum().backward()
        opt.step()
    return float(x.detach().abs())


@pytest.mark.parametrize("lr,momentum", [(0.1, 0.0), (0.1, 0.9), (1e-6, 0.0), (0.5, 0.5)])
def test_edge_of_stability_is_where_sgd_on_a_quadratic_stops_converging(lr, momentum):
    """Closed form: SGD (heavy ball, as torch implements it) on a quadratic converges iff the
    curvature is below 2 (1 + mu) / lr; just above, it diverges."""
    edge = edge_of_stability(lr, momentum)
    assert edge == pytest.approx(2 * (1 + momentum) / lr)
    assert _final_distance(0.99 * edge, lr, momentum) < 1e-3
    assert _final_distance(1.01 * edge, lr, momentum) > 1e3


def test_run_notes_name_diverged_and_never_learned_runs():
    metas = [{"variant": "standard", "lr": 0.1, "seed": s, "diverged": False, "never_learned": True}
             for s in range(3)]
    metas += [{"variant": "batchnorm", "lr": 0.1, "seed": 0, "diverged": True, "never_learned": False},
              {"variant": "batchnorm", "lr": 0.1, "seed": 1, "diverged": False, "never_learned": False},
              {"variant": "batchnorm", "lr": 0.5, "seed": 0, "diverged": True, "never_learned": False}]
    note = run_notes(metas, 0.1, ["standard", "batchnorm"])
    assert note.splitlines() == ["Standard: 3/3 runs never learned",
                                 "Standard + BatchNorm: 1/2 runs diverged"]
    assert run_notes(metas, 0.1, ["noisy_batchnorm"]) == ""


def test_smooth_downsample_is_a_centred_mean_over_1_percent_then_at_most_max_points():
    """Per run: a rolling mean over len/100 steps, centred, then every ceil(len/MAX_POINTS)-th
    row. A linear ramp is unchanged by a centred mean (away from the ends), so the kept rows
    are the ramp at the kept steps; a constant per run stays that constant; runs never mix."""
    import numpy as np
    import pandas as pd

    from bnopt.figures.style import MAX_POINTS, smooth_downsample

    n = 1000
    df = pd.DataFrame({"step": np.tile(np.arange(n), 2), "run": np.repeat(["a", "b"], n),
                       "y": np.r_[np.arange(n, dtype=float), np.full(n, 7.0)]})
    out = smooth_downsample(df.sample(frac=1.0, random_state=0), "y", ["run"])  # any order
    stride = int(np.ceil(n / MAX_POINTS))  # 4: 250 rows per run
    a, b = out[out.run == "a"], out[out.run == "b"]
    assert len(a) == len(b) == len(range(0, n, stride))
    assert list(a.step) == list(range(0, n, stride))
    inner = a[(a.step >= 10) & (a.step < n - 10)]  # window 10: the ends average fewer rows
    np.testing.assert_allclose(inner.y, inner.step - 0.5)  # even window: centred half a step late
    assert (b.y == 7.0).all()
