"""The measurement schedule: which steps a run measures (``measure_every`` and
``measure_per_decade``), decided in one place and followed by training, the cost projection and
the figures' checks."""

from pathlib import Path

import pytest
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.figure_specs import figures_off
from bnopt.plan.runs import RunConfig, measured_steps
from bnopt.studies.cost import step_counts
from bnopt.training.loop import train_run
from tests.test_train import TINY

BASE = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())


def _config(top: dict, dln: dict) -> dict:
    return check_config({**BASE, **top, "dln": {**BASE["dln"], **dln}})


def test_measured_steps_by_hand():
    assert measured_steps(10, 3) == [0, 3, 6, 9]
    assert measured_steps(10, 0) == []
    # 4 a decade: 10^(k/4) = 1, 1.78, 3.16, 5.62, 10, 17.8, 31.6, 56.2, 100, ...
    assert measured_steps(120, 0, 4) == [0, 1, 2, 3, 6, 10, 18, 32, 56, 100]
    # with every 50th too; a step both schedules name is measured once
    assert measured_steps(120, 50, 4) == [0, 1, 2, 3, 6, 10, 18, 32, 50, 56, 100]
    # dense enough to name every step while the geometric spacing is under one step
    assert measured_steps(30, 0, 100)[:30] == list(range(30))
    assert measured_steps(1, 0, 12) == [0]


def test_the_schedule_is_dense_early_and_sparse_late():
    """Each decade of steps gets at most per_decade + 1 measured steps, whatever the run's
    length: a 10x longer run measures per_decade more, not 10x more."""
    short, long = measured_steps(1_000, 0, 12), measured_steps(10_000, 0, 12)
    assert len(long) - len(short) in (12, 13)
    for lo in (10, 100, 1000):
        assert len([s for s in long if lo <= s < 10 * lo]) in (12, 13)


def test_step_counts_count_the_schedule():
    assert step_counts(800, 100, 100, 0, 12)["measured_steps"] == len(measured_steps(800, 100, 12))
    assert step_counts(800, 100, 100)["measured_steps"] == 8


def test_training_measures_exactly_the_scheduled_steps(synthetic):
    cfg = RunConfig(variant="batchnorm", **{**TINY, "steps": 40, "measure_every": 0,
                                            "measure_per_decade": 6, "hist_every": 0})
    r = train_run(cfg, synthetic, progress=False)
    want = measured_steps(40, 0, 6)
    assert want == [0, 1, 2, 3, 5, 7, 10, 15, 22, 32]
    for table in ("probes", "ics", "activations"):
        assert sorted(r.tables[table]["step"].unique()) == want, table


def test_a_run_config_refuses_a_negative_schedule():
    with pytest.raises(ValueError, match="measure_per_decade = -1"):
        RunConfig(variant="batchnorm", **{**TINY, "measure_per_decade": -1})


def test_a_schedule_by_decade_alone_draws_the_measured_figures():
    off = figures_off(_config({"measure_every": 0}, {"measure_every": 0}))
    assert "fig4_landscape" in off and "fig10_dln_landscape" in off
    on = figures_off(_config({"measure_every": 0, "measure_per_decade": 12},
                             {"measure_every": 0, "measure_per_decade": 12}))
    assert "fig4_landscape" not in on and "fig10_dln_landscape" not in on
