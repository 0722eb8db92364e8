"""Runs that never learn are flagged; the default config's standard VGG learns (a guard)."""
import math

import numpy as np
import pytest
import yaml

from bnopt.analysis.aggregate import summary_table
from bnopt.analysis.outcome import (
    CHANCE_MARGIN,
    LOSS_PLATEAU,
    outcome_text,
    training_outcome,
)
from bnopt.plan.check import check_config
from bnopt.plan.runs import RunConfig, train_settings
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run, write_run
from conftest import ROOT

DEFAULT = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))


def test_classification_outcome_is_judged_by_accuracy_against_chance():
    n = 1000
    dead = training_outcome(np.full(n, 2.3026), np.full(n, 0.1 + CHANCE_MARGIN - 0.01), 10, False)
    assert dead["never_learned"] and dead["chance_acc"] == pytest.approx(0.1)
    # its loss fell by 20% (a constant output calibrating to ln 10), but it learned nothing
    calibrated = training_outcome(np.linspace(2.9, 2.3, n), np.full(n, 0.1), 10, False)
    assert calibrated["never_learned"]
    acc = np.r_[np.full(n - 10, 0.1), np.full(10, 0.9)]  # the last 1% = 10 steps decide
    learned = training_outcome(np.full(n, 2.0), acc, 10, False)
    assert not learned["never_learned"] and learned["final_batch_acc"] == pytest.approx(0.9)
    assert learned["final_batch_loss"] == pytest.approx(2.0) and learned["initial_loss"] == 2.0


def test_regression_outcome_is_judged_by_the_loss_against_step_zero():
    n = 200
    flat = np.r_[100.0, np.full(n - 1, 100.0 * LOSS_PLATEAU + 0.5)]
    assert training_outcome(flat, np.full(n, np.nan), 0, False)["never_learned"]
    falling = np.r_[100.0, np.full(n - 1, 100.0 * LOSS_PLATEAU - 0.5)]
    out = training_outcome(falling, np.full(n, np.nan), 0, False)
    assert not out["never_learned"] and math.isnan(out["chance_acc"])
    assert math.isnan(out["final_batch_acc"])


def test_a_diverged_run_is_flagged_as_diverged_not_as_never_learned():
    out = training_outcome(np.full(50, 2.3), np.full(50, 0.1), 10, True)
    assert not out["never_learned"] and math.isnan(out["final_batch_loss"])
    assert "diverged at step 50" in outcome_text({"variant": "standard", "lr": 0.5, "seed": 0,
                                                  "dataset": "d", "model": "vgg", "diverged": True,
                                                  "steps_completed": 50})


@pytest.fixture(scope="module")
def vgg_runs():
    """The default config's network experiment, shrunk for a CPU: the default model, init and
    lr 0.1, at width 1/8 on digits resized to 16x16 (the layer geometry of 28x28 inputs), 300
    steps; and the same with the paper's Glorot init."""
    data = load_dataset("digits", image_size=16)  # as the quick preset prepares it
    base = {**train_settings(DEFAULT, DEFAULT["model"]), "dataset": "digits",
            "model": DEFAULT["model"], "variant": "standard", "lr": 0.1, "seed": 0, "steps": 300,
            "width": 0.125, "device": "cpu", "eval_every": 300, "log_every": 50,
            "measure_every": 0, "checkpoint_every": 0, "precision": "fp32",
            "probe_multipliers": tuple(DEFAULT["probe_multipliers"])}
    return {init: train_run(RunConfig.from_dict({**base, "init": init}), data, progress=False)
            for init in dict.fromkeys([DEFAULT["init"], "glorot", "kaiming"])}


def test_the_default_config_trains_a_standard_vgg_that_leaves_chance(vgg_runs):
    """Guard: every comparison the tool draws is against the default standard network. If a
    change of the default init or architecture kills it, this fails."""
    meta = vgg_runs[DEFAULT["init"]].meta
    assert not meta["diverged"] and not meta["never_learned"], outcome_text(meta)
    assert meta["final_batch_acc"] > 0.3, meta["final_batch_acc"]


def test_glorot_standard_vgg_is_flagged_and_he_is_not(vgg_runs, tmp_path):
    glorot, he = vgg_runs["glorot"].meta, vgg_runs["kaiming"].meta
    assert glorot["never_learned"] and not glorot["diverged"]
    assert abs(glorot["final_batch_loss"] - math.log(10)) < 0.01  # sits at ln 10: chance
    assert "never learned: final batch accuracy" in outcome_text(glorot)
    assert not he["never_learned"] and outcome_text(he) is None
    # summary.csv carries the flag and the training-mode columns next to the eval-mode ones
    metas = []
    for init, result in vgg_runs.items():
        d = tmp_path / init
        d.mkdir()
        write_run(result, {name: d / f"{name}.parquet" for name in result.tables}, d / "run.json")
        metas.append(d / "run.json")
    summary = summary_table(metas).set_index("init")
    assert bool(summary.loc["glorot", "never_learned"]) and not summary.loc["kaiming", "never_learned"]
    assert summary.loc["kaiming", "final_batch_acc"] == pytest.approx(he["final_batch_acc"])
    assert {"final_train_acc", "final_test_acc"} <= set(summary.columns)
