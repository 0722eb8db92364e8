"""The run plan (bnopt.plan.runs.plan): every run once, each complete; what the train rule tracks of a
run, and why a setting added at its neutral value retrains nothing."""
import dataclasses

import pytest
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.datasets import TRAIN_SIZES
from bnopt.plan.runs import (
    NEUTRAL,
    RUN_IDENTITY,
    UNTRACKED,
    RunConfig,
    plan,
    run_config,
    sweep_runs,
    tracked_settings,
)
from bnopt.plan.variants import MODELS
from conftest import ROOT

QUICK = yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())


def test_the_plan_is_every_run_once_each_complete():
    cfg = check_config(QUICK)
    runs = plan(cfg)
    assert [tuple(getattr(r, k) for k in RUN_IDENTITY) for r in runs] == sweep_runs(cfg)
    assert len({r.folder for r in runs}) == len(runs)
    for r in runs:
        assert all(getattr(r, f.name) is not None for f in dataclasses.fields(r)), r
        if r.model == "dln":  # the DLN's overrides, applied in the plan
            assert (r.batch_size, r.dtype, r.steps) == (TRAIN_SIZES["dln"], "float64", 600)
            assert r.measure_every == cfg["dln"]["measure_every"]
        else:
            assert (r.batch_size, r.steps, r.width) == (64, 800, 0.125)


def test_the_dln_is_full_batch_gradient_descent_whatever_the_top_level_says():
    """Paper Section 4: the DLN trains by plain full-batch gradient descent; the top level's
    momentum, weight decay, batch, width and augmentation are the conv nets' and not its."""
    cfg = check_config({**QUICK, "momentum": 0.9, "weight_decay": 5e-4, "augment": True,
                        "width": 0.5, "batch_size": 32})
    for r in plan(cfg):
        if r.model == "dln":
            assert (r.momentum, r.weight_decay, r.augment, r.width, r.batch_size,
                    r.eval_batch_size) == (0.0, 0.0, False, 1.0, 1000, 1000)
        else:
            assert (r.momentum, r.weight_decay, r.augment, r.width, r.batch_size) == (
                0.9, 5e-4, True, 0.5, 32)


def test_a_run_asked_for_by_path_gets_the_plans_settings():
    """The train rule builds a run's settings from its wildcards with the plan's function: a
    planned run gets what the plan says, a run outside it the same config's settings."""
    cfg = check_config(QUICK)
    for r in plan(cfg):
        assert run_config(cfg, r.dataset, r.model, r.variant, str(r.lr), str(r.seed)) == r
    extra = run_config(cfg, "digits", "vgg", "batchnorm", "0.3", "7")
    assert (extra.lr, extra.seed, extra.steps, extra.measure_every) == (0.3, 7, 800, 10)


def test_tracked_settings_are_plain_data_that_give_the_run_back():
    cfg = check_config(QUICK)
    for r in plan(cfg):
        tracked = tracked_settings(r)  # all but the identity, the checkpoint policy and
        # settings at neutral values
        # (a run's measures are tracked where they are not everything: measure: read)
        assert set(tracked) == ({f.name for f in dataclasses.fields(r)} - set(RUN_IDENTITY)
                                - {k for k, v in NEUTRAL.items() if getattr(r, k) == v}
                                - set(UNTRACKED))
        assert isinstance(tracked["probe_multipliers"], list)  # a list, as YAML and JSON have it
        back = RunConfig.from_dict({**tracked, **{k: getattr(r, k)
                                                  for k in (*RUN_IDENTITY, *UNTRACKED)}})
        assert back == r


def test_the_tracked_settings_of_existing_runs_do_not_move():
    """What Snakemake compares (the repr of the train rule's params) for the quick preset's
    runs is the config's own values in RunConfig's field order: a change to how the plan is
    built must not make finished runs look changed."""
    cfg = check_config(QUICK)
    bn = run_config(cfg, "digits", "vgg", "batchnorm", 0.1, 0)
    keys = [f.name for f in dataclasses.fields(RunConfig)
            if f.name not in RUN_IDENTITY and "neutral" not in f.metadata
            and f.name not in UNTRACKED]
    assert repr(tracked_settings(bn)) == repr({k: cfg[k] for k in keys})


Extended = dataclasses.make_dataclass(
    "Extended",
    [("label_smoothing", float | None,
      dataclasses.field(default=None, metadata={"neutral": 0.0}))],
    bases=(RunConfig,), frozen=True)


def test_a_setting_added_at_its_neutral_value_leaves_tracked_settings_as_they_were():
    """Adding a setting (a RunConfig field whose neutral value computes what runs without it
    computed) leaves every finished run's tracked settings, so Snakemake retrains nothing and
    checkpoints still resume; set to anything else, it is tracked like any setting."""
    cfg = check_config(QUICK)
    before = run_config(cfg, "digits", "vgg", "batchnorm", 0.1, 0)
    after = Extended(**dataclasses.asdict(before), label_smoothing=0.0)
    assert repr(tracked_settings(after)) == repr(tracked_settings(before))
    assert after.fingerprint() == before.fingerprint()
    smooth = dataclasses.replace(after, label_smoothing=0.1)
    assert tracked_settings(smooth) == {**tracked_settings(before), "label_smoothing": 0.1}
    assert smooth.fingerprint() != before.fingerprint()


@pytest.mark.parametrize("model", MODELS)
def test_every_neutral_value_is_its_settings_default(model):
    """A setting's neutral value is what a run gets when the config leaves it unset, for every
    model: otherwise a new default would retrain runs silently or skip runs that changed."""
    assert NEUTRAL  # there are such settings: optimizer, activation, ...
    dataset = "dln" if model == "dln" else "digits"
    run = RunConfig(dataset, model, "standard", 0.1, 0)  # every setting left to its default
    for name, neutral in NEUTRAL.items():
        assert getattr(run, name) == neutral, (model, name)
