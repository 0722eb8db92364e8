"""The earlier experiments scored against what they reported (bnopt.scorecard.reported,
results/tables/reported.csv): each quantity against a case whose answer is known, the verdict
rules, and the published findings' file against the presets and the registries."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from bnopt.plan.check import ConfigError, check_config
from bnopt.plan.experiments import FINDING_KINDS, comparison, published
from bnopt.plan.variants import VARIANTS
from bnopt.scorecard.reported import (
    FINDING_QUANTITIES,
    SIMILAR,
    grad_norm_jitter,
    ics_relative_early,
    ics_relative_late,
    judge_finding,
    reported_table,
    unit_drift,
)
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())
PRESETS = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "workflow/presets").glob("*.yaml")}


def fake_run(folder, variant="standard", seed=0, steps=8, acc=0.5, never_learned=False,
             tables=None):
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": "digits", "model": "mlp", "variant": variant, "lr": 0.1, "seed": seed,
            "optimizer": "sgd", "steps": steps, "width": 0.125, "steps_completed": steps,
            "final_test_acc": acc, "diverged": False, "never_learned": never_learned,
            "final_batch_acc": acc, "chance_acc": 0.1}
    for name, df in (tables or {}).items():
        df.to_parquet(folder / f"{name}.parquet")
    (folder / "run.json").write_text(json.dumps(meta))
    return folder / "run.json"


def test_gradient_jitter_is_the_median_jump_of_the_log_norm(tmp_path):
    steady = fake_run(tmp_path / "a", tables={"steps": pd.DataFrame({"grad_norm": [3.0] * 6})})
    flip = fake_run(tmp_path / "b", tables={"steps": pd.DataFrame({"grad_norm": [1.0, 2.0] * 3})})
    assert grad_norm_jitter(steady) == 0.0
    assert grad_norm_jitter(flip) == pytest.approx(np.log(2))


def test_ics_early_and_late_split_the_run_at_half_its_steps(tmp_path):
    """Layer 1 is left out (its ICS is 0 by definition); l2 / grad_norm is 0.1 before step 4
    and 0.5 from it on."""
    rows = [(s, layer, (0.1 if s < 4 else 0.5) * 2.0, 9.0 if layer == 1 else 2.0)
            for s in range(8) for layer in (1, 2, 3)]
    ics = pd.DataFrame(rows, columns=["step", "layer", "l2", "grad_norm"])
    run = fake_run(tmp_path, steps=8, tables={"ics": ics})
    assert ics_relative_early(run) == pytest.approx(0.1)
    assert ics_relative_late(run) == pytest.approx(0.5)


def test_unit_drift_is_the_medians_move_over_the_units_spread(tmp_path):
    """The last hidden layer (layer 2 of 3) only: a unit whose median moves 0 -> 3 with a
    15..85 spread of 2 drifts 1.5; one that stays drifts 0; the mean is 0.75."""
    rows = []
    for step, m in ((0, 0.0), (5, 1.0), (10, 3.0)):
        rows += [(step, 2, 0, m - 1, m, m + 1), (step, 2, 7, -1.0, 0.0, 1.0),
                 (step, 1, 0, 50.0, 60.0, 70.0), (step, 3, 0, -9.0, 9.0, 99.0)]
    units = pd.DataFrame(rows, columns=["step", "layer", "unit", "q15", "q50", "q85"])
    assert unit_drift(fake_run(tmp_path / "a", tables={"units": units})) == pytest.approx(0.75)
    assert np.isnan(unit_drift(fake_run(tmp_path / "b")))  # followed no unit


HIGHER = {"finding": "f", "quantity": "final_test_acc", "higher": [["batchnorm", "standard"]]}


@pytest.mark.parametrize("bn,std,verdict", [
    ({0: 0.9, 1: 0.8}, {0: 0.5, 1: 0.6}, "reproduced"),
    ({0: 0.4, 1: 0.5}, {0: 0.5, 1: 0.6}, "not reproduced"),
    ({0: 0.9, 1: 0.5}, {0: 0.5, 1: 0.6}, "inconclusive"),  # the seeds disagree
])
def test_a_finding_is_reproduced_only_where_every_seed_and_the_mean_agree(bn, std, verdict):
    row = judge_finding(HIGHER, {"batchnorm": bn, "standard": std}, [])
    assert row["verdict"] == verdict, row


def test_similar_or_worse_allows_the_stated_margin_below():
    f = {**HIGHER, "higher": None, "not_lower": [["batchnorm", "standard"]]}
    del f["higher"]
    just = {"batchnorm": {0: SIMILAR * 1.0 + 1e-9}, "standard": {0: 1.0}}
    below = {"batchnorm": {0: SIMILAR * 0.99}, "standard": {0: 1.0}}
    assert judge_finding(f, just, [])["verdict"] == "reproduced"
    assert judge_finding(f, below, [])["verdict"] == "not reproduced"


def test_lower_at_every_layer_needs_every_layer():
    f = {"finding": "f", "quantity": "init_distance_relative",
         "lower_every_layer": [["batchnorm", "standard"]]}
    std = {0: np.array([1.0, 1.0, 1.0])}
    assert judge_finding(f, {"batchnorm": {0: np.array([0.5, 0.5, 0.5])}, "standard": std},
                         [])["verdict"] == "reproduced"
    assert judge_finding(f, {"batchnorm": {0: np.array([0.5, 1.5, 0.5])}, "standard": std},
                         [])["verdict"] == "not reproduced"  # one layer is not lower


def test_a_run_that_did_not_train_or_a_missing_quantity_decides_nothing():
    vals = {"batchnorm": {0: 0.9}, "standard": {0: 0.1}}
    row = judge_finding(HIGHER, vals, ["standard lr=0.1 seed=0 never learned"])
    assert row == {"verdict": "inconclusive", "why": "standard lr=0.1 seed=0 never learned"}
    nan = judge_finding(HIGHER, {"batchnorm": {0: np.nan}, "standard": {0: 0.1}}, [])
    assert nan["verdict"] == "not measured"


def test_the_table_sets_published_beside_ours_and_names_what_differs(tmp_path):
    def tables(rel):  # no ICS recorded; every layer's distance from init rel x its norm
        return {"ics": pd.DataFrame(columns=["step", "layer", "l2", "grad_norm"], dtype=float),
                "init_distance": pd.DataFrame({"step": [8, 8], "layer": [1, 2],
                                               "distance": [rel, rel], "init_norm": [1.0, 1.0]})}
    runs = [fake_run(tmp_path / f"{v}{s}", variant=v, seed=s, acc=a, tables=tables(d))
            for v, s, a, d in (("batchnorm", 0, 0.9, 0.2), ("batchnorm", 1, 0.8, 0.3),
                               ("standard", 0, 0.7, 0.5), ("standard", 1, 0.6, 0.6))]
    table = reported_table("vgg10_momentum", runs)
    acc = table[table.quantity == "final_test_acc"].iloc[0]
    assert acc.published == "batchnorm 0.85, standard 0.8"
    assert acc.ours == "batchnorm 0.85 (seeds 0.9, 0.8), standard 0.65 (seeds 0.7, 0.6)"
    assert acc.verdict == "reproduced" and acc.seeds == 2
    assert "dataset: ours digits, theirs cifar10" in acc.differs
    assert "steps: ours 8, theirs 15210" in acc.differs
    dist = table[table.quantity == "init_distance_relative"].iloc[0]
    assert dist.verdict == "reproduced" and "batchnorm [0.25, 0.25]" in dist.ours
    # the fake runs recorded no ICS: those findings are not measured, not guessed
    assert set(table[table.quantity.str.startswith("ics")].verdict) == {"not measured"}


def test_every_published_finding_is_one_the_code_can_judge():
    for name, exp in published().items():
        assert PRESETS[name]["experiment"] == name  # its preset names it
        assert set(exp["settings"]) == {"dataset", "model", "optimizer", "steps", "width"}
        for f in exp["findings"]:
            kind, pairs = comparison(f)
            assert kind in FINDING_KINDS and f["quantity"] in FINDING_QUANTITIES and f["published"], f
            assert {v for p in pairs for v in p} <= set(VARIANTS), f
    assert {n for n, p in PRESETS.items() if p.get("experiment")} == set(published())


def test_an_unknown_experiment_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"experiment = 'vgg16': choose one of vgg_a, "
                                          r"vgg10_momentum, small_cnn, ioffe_mnist"):
        check_config({**BASE, "experiment": "vgg16"})


def test_without_an_experiment_the_table_is_refused_before_any_job(tmp_path):
    from conftest import run_snakemake

    r = run_snakemake(["results/tables/reported.csv", "-n", "--cores", "1"], tmp_path)
    assert r.returncode != 0
    assert "this config names none: run it with that experiment's preset" in r.stdout + r.stderr
    ok = run_snakemake(["results/tables/reported.csv", "-n", "--cores", "1", "--configfile",
                        str(ROOT / "workflow/presets/small_cnn.yaml")], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # standard, BN and noisy BN at figure_lr, three seeds each
    assert ok.stdout.count("rule train:") == 9 and "rule reported:" in ok.stdout
