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
    grad_norm_jitter,
    ics_cos,
    ics_l2,
    init_distance_relative,
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


def test_ics_is_the_absolute_l2_at_the_named_layers_over_the_part_of_training(tmp_path):
    """What the sources plot: ||G - G'|| itself. l2 is 1 before step 4 and 5 from it on at
    layer 2, 10x that at layer 3, and 99 at layer 1 (whose ICS is 0 by definition: never read
    where no layers are named); cos is 0.9 at layer 2 and 0.5 at layer 3."""
    rows = [(s, layer, (1.0 if s < 4 else 5.0) * (10 if layer == 3 else 1) if layer > 1 else 99.0,
             {1: 1.0, 2: 0.9, 3: 0.5}[layer], 2.0) for s in range(8) for layer in (1, 2, 3)]
    ics = pd.DataFrame(rows, columns=["step", "layer", "l2", "cos", "grad_norm"])
    run = fake_run(tmp_path, steps=8, tables={"ics": ics})
    assert ics_l2(run, {"part": "early", "layers": [2]}) == 1.0
    assert ics_l2(run, {"part": "late", "layers": [2]}) == 5.0
    assert ics_l2(run, {"part": "all"}) == pytest.approx(np.median([1.0] * 4 + [5.0] * 4
                                                                   + [10.0] * 4 + [50.0] * 4))
    assert ics_cos(run, {"part": "all", "layers": [3, 2]}).tolist() == [0.5, 0.9]


def test_the_distance_from_init_is_read_at_the_named_layers_only(tmp_path):
    d = pd.DataFrame({"step": [0, 0, 8, 8, 8], "layer": [1, 2, 1, 2, 3],
                      "distance": [0.0, 0.0, 1.0, 3.0, 100.0], "init_norm": [2.0] * 5})
    run = fake_run(tmp_path, tables={"init_distance": d})
    assert init_distance_relative(run, {"layers": [1, 2]}).tolist() == [0.5, 1.5]
    assert init_distance_relative(run, {}).tolist() == [0.5, 1.5, 50.0]


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


def seeds(*values):
    return dict(enumerate(values))


@pytest.mark.parametrize("bn,std,verdict", [
    (seeds(0.9, 0.91, 0.92), seeds(0.5, 0.52, 0.51), "reproduced"),
    (seeds(0.4, 0.41, 0.42), seeds(0.5, 0.52, 0.51), "not reproduced"),
    (seeds(0.9, 0.5, 0.7), seeds(0.5, 0.6, 0.55), "inconclusive"),  # the seeds disagree
])
def test_a_finding_is_judged_as_a_scorecard_check_is(bn, std, verdict):
    """The 95% t-interval over seeds of the paired difference against the smallest effect of
    an accuracy (2 points), as the scorecard judges a check."""
    row = judge_finding(HIGHER, {"batchnorm": bn, "standard": std}, [])
    assert row["verdict"] == verdict, row
    assert "batchnorm > standard" in row["why"]


def test_similar_or_worse_is_non_inferiority_with_the_smallest_ratio():
    f = {"finding": "f", "quantity": "ics_l2", "not_lower": [["batchnorm", "standard"]]}
    std = seeds(1.0, 2.0, 4.0)
    similar = {"batchnorm": seeds(0.9, 1.85, 3.7), "standard": std}     # x0.92: above 1 / 1.25
    below = {"batchnorm": seeds(0.5, 1.0, 2.1), "standard": std}        # x0.5: below it
    assert judge_finding(f, similar, [])["verdict"] == "reproduced"
    assert judge_finding(f, below, [])["verdict"] == "not reproduced"


def test_lower_at_every_layer_needs_every_layer():
    f = {"finding": "f", "quantity": "init_distance_relative", "layers": [1, 2, 3],
         "lower_every_layer": [["batchnorm", "standard"]]}
    std = {s: np.array([1.0, 1.0, 1.0]) * (1 + 0.01 * s) for s in range(3)}
    lower = {s: np.array([0.5, 0.5, 0.5]) * (1 + 0.02 * s) for s in range(3)}
    one_not = {s: np.array([0.5, 1.5, 0.5]) * (1 + 0.02 * s) for s in range(3)}
    assert judge_finding(f, {"batchnorm": lower, "standard": std}, [])["verdict"] == "reproduced"
    row = judge_finding(f, {"batchnorm": one_not, "standard": std}, [])
    assert row["verdict"] == "not reproduced" and "at layer 2: does not hold" in row["why"]


def test_a_published_gap_is_reproduced_within_the_smallest_accuracy_effect():
    f = {"finding": "f", "quantity": "final_test_acc", "gap": [["batchnorm", "standard"]],
         "published": {"batchnorm": 0.85, "standard": 0.80}}
    std = seeds(0.80, 0.81, 0.79)
    same = {"batchnorm": seeds(0.851, 0.859, 0.842), "standard": std}   # gaps 0.051, 0.049, 0.052
    wider = {"batchnorm": seeds(0.98, 0.99, 0.97), "standard": std}     # gaps 0.18
    assert judge_finding(f, same, [])["verdict"] == "reproduced"
    row = judge_finding(f, wider, [])
    assert row["verdict"] == "not reproduced" and "+0.05 (theirs)" in row["why"]


def test_a_run_that_did_not_train_or_a_missing_quantity_decides_nothing():
    vals = {"batchnorm": {0: 0.9}, "standard": {0: 0.1}}
    row = judge_finding(HIGHER, vals, ["standard lr=0.1 seed=0 never learned"])
    assert row == {"verdict": "inconclusive", "why": "standard lr=0.1 seed=0 never learned"}
    nan = judge_finding(HIGHER, {"batchnorm": {0: np.nan}, "standard": {0: 0.1}}, [])
    assert nan["verdict"] == "not measured"


def test_the_table_sets_published_beside_ours_and_names_what_differs(tmp_path):
    def tables(rel, linear):
        """No ICS recorded; each conv's distance from init rel x its norm, the two linear
        layers' (no BN there) ``linear`` x."""
        return {"ics": pd.DataFrame(columns=["step", "layer", "l2", "cos", "grad_norm"],
                                    dtype=float),
                "init_distance": pd.DataFrame({"step": [8] * 12, "layer": range(1, 13),
                                               "distance": [rel] * 10 + [linear] * 2,
                                               "init_norm": [1.0] * 12})}
    runs = [fake_run(tmp_path / f"{v}{s}", variant=v, seed=s, acc=a, tables=tables(d, lin))
            for v, s, a, d, lin in (("batchnorm", 0, 0.9, 0.25, 9.0), ("batchnorm", 1, 0.8, 0.3, 9.0),
                                    ("standard", 0, 0.7, 0.5, 0.5), ("standard", 1, 0.6, 0.6, 0.6))]
    table = reported_table("vgg10_momentum", runs)
    acc, gap = table[table.quantity == "final_test_acc"].itertuples()
    assert acc.published == "batchnorm 0.85, standard 0.8"
    assert acc.ours == "batchnorm 0.85 (seeds 0.9, 0.8), standard 0.65 (seeds 0.7, 0.6)"
    assert acc.verdict == "reproduced" and acc.seeds == 2  # 0.2 higher in both seeds
    assert gap.verdict == "not reproduced"  # ours 20 points, theirs 5
    assert "dataset: ours digits, theirs cifar10" in acc.differs
    assert "steps: ours 8, theirs 15210" in acc.differs
    # the conv layers only: BN's linear layers (no BN there) moved far, and are not read
    dist = table[table.quantity == "init_distance_relative"].iloc[0]
    assert dist.verdict == "reproduced" and "batchnorm [0.275" in dist.ours  # x0.5 in both seeds
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


def test_a_findings_layers_exist_and_its_ics_layers_are_the_presets_figure_3_layers():
    """The layers a source names, in our numbering: within the preset's network, and for ICS
    the layers its Figure 3 draws (the same fact in both files, checked here)."""
    from bnopt.plan.variants import num_layers

    for name, exp in published().items():
        cfg = check_config({**BASE, **PRESETS[name]})
        depth = num_layers(cfg["model"], cfg["mlp_widths"])
        for f in exp["findings"]:
            layers = f.get("layers", [])
            assert all(1 <= layer <= depth for layer in layers), (name, f["finding"])
            if f["quantity"].startswith("ics") and layers:
                assert layers == cfg["fig3_layers"], (name, f["finding"])
