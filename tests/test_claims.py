"""The scorecard's verdict rules on constructed effects and run tables whose verdict is known."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from bnopt.aggregate import band_label, seed_interval
from bnopt.claims import (CLAIMS, EDGE, QUANTITIES, VERDICTS, Check, checks, judge,
                          judge_effects, load_values, precision_note, run_values, scorecard_runs,
                          to_markdown)
from bnopt.config import check_config, figure_blockers, sweep_runs
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


# --- the seed interval and judge_effects ------------------------------------------------------

def test_seed_interval_is_the_t_interval_with_three_seeds_the_range_with_two():
    lo, hi = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1: 2 -+ t(0.975, 2) / sqrt(3)
    h = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert (lo, hi) == pytest.approx((2 - h, 2 + h)) and h == pytest.approx(2.4841, abs=1e-4)
    assert seed_interval([5.0, 2.0]) == (2.0, 5.0)
    assert seed_interval([4.0, np.nan]) == (4.0, 4.0)
    assert [band_label(n) for n in (0, 1, 2, 5)] == [
        "no seeds", "1 seed", "mean and range of 2 seeds", "mean of 5 seeds, 95% t-CI"]
    assert all(math.isnan(v) for v in seed_interval([]))


@pytest.mark.parametrize("effects,comparison,direction,margin,verdict", [
    ([0.10, 0.12, 0.11], "ratio", "lower", 0, "holds"),            # a clear win
    ([3.0, 2.5, 4.0], "ratio", "lower", 0, "does not hold"),        # a clear loss
    ([0.5, 1.6, 0.9], "ratio", "lower", 0, "inconclusive"),         # seeds on both sides
    ([0.1], "ratio", "lower", 0, "inconclusive"),                   # one seed
    ([0.02, 0.05], "difference", "higher", 0, "holds"),             # both seeds above 0
    ([-0.02, 0.05], "difference", "higher", 0, "inconclusive"),     # the range straddles 0
    ([-0.03, -0.01], "difference", "not_lower", 0.05, "holds"),     # within the margin
    ([-0.2, -0.1], "difference", "not_lower", 0.05, "does not hold"),
    ([1.2, 1.5, 1.3], "ratio", "not_lower", 0, "holds"),            # "not reduced"
    ([0.5, 0.6], "ratio", "not_lower", 0, "does not hold"),
    ([0.9, 1.1], "ratio", "within", 2.0, "holds"),                  # at the edge of stability
    ([0.01, 0.02], "ratio", "within", 2.0, "does not hold"),
    ([0.3, 1.2], "ratio", "within", 2.0, "inconclusive"),
    ([0.8, 0.9], "ratio", "not_higher", 0, "holds"),
    ([1.1, 1.3], "ratio", "not_higher", 0, "does not hold"),
])
def test_verdicts_on_constructed_effects(effects, comparison, direction, margin, verdict):
    out = judge_effects(effects, comparison, direction, margin)
    assert out["verdict"] == verdict, out
    assert out["verdict"] in VERDICTS and out["rule"]
    assert bool(out["why"]) == (verdict == "inconclusive")


def test_a_t_interval_of_three_seeds_can_straddle_what_their_mean_clears():
    """Differences 1, 2, 3: the mean 2 is above 0, but the 95% t-interval [-0.48, 4.48] is not."""
    out = judge_effects([1.0, 2.0, 3.0], "difference", "higher")
    assert out["effect"] == pytest.approx(2.0)
    assert out["effect_lo"] == pytest.approx(-0.4841, abs=1e-4)
    assert out["verdict"] == "inconclusive" and out["interval"] == "mean of 3 seeds, 95% t-CI"


def test_ratios_are_averaged_and_banded_on_a_log_scale():
    out = judge_effects([2.0, 8.0], "ratio", "higher")
    assert out["effect"] == pytest.approx(4.0)  # geometric mean
    assert (out["effect_lo"], out["effect_hi"]) == pytest.approx((2.0, 8.0))
    assert out["interval"] == "mean and range of 2 seeds" and out["verdict"] == "holds"
    three = judge_effects([1.0, 10.0, 100.0], "ratio", "higher")
    h = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # log10 values 0, 1, 2: sd 1
    assert three["effect"] == pytest.approx(10.0)
    assert three["effect_lo"] == pytest.approx(10 ** (1 - h)) and three["verdict"] == "inconclusive"


def test_a_ratio_of_a_non_positive_value_is_inconclusive():
    out = judge_effects([0.5, -0.2], "ratio", "lower")
    assert out["verdict"] == "inconclusive" and "<= 0" in out["why"]
    assert judge_effects([np.nan, np.nan], "ratio", "lower")["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="direction 'smaller'"):
        judge_effects([1.0], "ratio", "smaller")


# --- judge on constructed run values ----------------------------------------------------------

def values(rows) -> pd.DataFrame:
    """A load_values-like table: rows of (variant, lr, seed, quantity, value[, layer, failed])."""
    out = []
    for r in rows:
        variant, lr, seed, quantity, value, *rest = r
        layer = rest[0] if rest else 0
        failed = rest[1] if len(rest) > 1 else ""
        out.append({"family": "net", "dataset": "digits", "model": "vgg", "variant": variant,
                    "lr": lr, "seed": seed, "diverged": failed == "diverged",
                    "never_learned": failed == "never", "momentum": 0.0, "quantity": quantity,
                    "layer": layer, "value": value})
    return pd.DataFrame(out)


def check(quantity="loss_range", direction="lower", treatment="batchnorm", baseline="standard",
          lr=0.1, **kw):
    return Check("4", CLAIMS["4"], quantity, "net", lr, treatment, baseline, direction,
                 "fig4_landscape", **kw)


def test_judge_pairs_seeds_and_reports_values_means_and_verdict():
    v = values([("batchnorm", 0.1, s, "loss_range", x) for s, x in enumerate([0.1, 0.2, 0.1])]
               + [("standard", 0.1, s, "loss_range", x) for s, x in enumerate([1.0, 2.0, 1.0])])
    row = judge(check(), v)
    assert row["verdict"] == "holds" and row["seeds"] == "0 / 1 / 2"
    assert row["treatment_values"] == "0.1 / 0.2 / 0.1" and row["baseline_mean"] == pytest.approx(4 / 3)
    assert row["effect"] == pytest.approx(0.1) and row["effect_hi"] == pytest.approx(0.1)
    assert row["dataset"] == "digits" and row["comparison"] == "ratio"


def test_a_missing_run_is_not_measured_and_a_failed_baseline_is_inconclusive():
    v = values([("batchnorm", 0.1, 0, "loss_range", 0.1), ("batchnorm", 0.1, 1, "loss_range", 0.1)])
    row = judge(check(), v)
    assert row["verdict"] == "not measured" and "no standard run of net at lr 0.1" in row["why"]
    v = values([("batchnorm", 0.1, s, "loss_range", 0.1) for s in (0, 1)]
               + [("standard", 0.1, 0, "loss_range", 0.0, 0, "never"),
                  ("standard", 0.1, 1, "loss_range", 2.0)])
    row = judge(check(), v)
    assert row["verdict"] == "inconclusive"
    assert row["why"].startswith("standard never learned (seed 0)")
    v = values([("batchnorm", 0.1, s, "final_test_acc", 0.9) for s in (0, 1)]
               + [("standard", 0.1, s, "final_test_acc", np.nan, 0, "diverged") for s in (0, 1)])
    row = judge(check("final_test_acc", "higher"), v)
    assert row["verdict"] == "inconclusive" and "standard diverged (seeds 0, 1)" in row["why"]


def test_a_check_whose_figure_is_off_is_not_measured_with_the_key_to_set():
    cfg = check_config({**BASE, "hessian_every": 0})
    blocked = figure_blockers(cfg)
    c = Check("curvature", CLAIMS["curvature"], "lambda_max_late", "net", 0.1, "batchnorm",
              "standard", "lower", "fig16_curvature")
    row = judge(c, values([]), blocked)
    assert row["verdict"] == "not measured" and "hessian_every" in row["why"]


def test_edge_of_stability_checks_compare_with_2_over_lr_of_each_run():
    v = values([("batchnorm", 0.1, 0, "batch_sharpness_late", 19.0),
                ("batchnorm", 0.1, 1, "batch_sharpness_late", 22.0),
                ("standard", 0.1, 0, "batch_sharpness_late", 0.5),
                ("standard", 0.1, 1, "batch_sharpness_late", 0.4)])
    c = dict(quantity="batch_sharpness_late", direction="within", baseline=EDGE, margin=2.0)
    row = judge(check(**c), v)
    assert row["baseline_values"] == "20 / 20" and row["verdict"] == "holds"
    assert row["effect_lo"] == pytest.approx(0.95) and row["effect_hi"] == pytest.approx(1.1)
    assert judge(check(treatment="standard", **c), v)["verdict"] == "does not hold"


def trained_check(lrs=(0.1, 0.5)):
    return Check("1", CLAIMS["1"], "trained", "net", None, "batchnorm", "standard", "higher",
                 "fig1_accuracy", lrs=lrs)


@pytest.mark.parametrize("bn_at_05,std_at_05,verdict", [
    ([1, 1], [0, 0], "holds"), ([0, 0], [0, 0], "does not hold"),
    ([1, 0], [0, 0], "inconclusive"), ([1, 1], [1, 0], "inconclusive")])
def test_bn_trains_where_the_standard_net_does_not(bn_at_05, std_at_05, verdict):
    v = values([(var, 0.1, s, "trained", 1.0) for var in ("batchnorm", "standard") for s in (0, 1)]
               + [("batchnorm", 0.5, s, "trained", float(x)) for s, x in enumerate(bn_at_05)]
               + [("standard", 0.5, s, "trained", float(x)) for s, x in enumerate(std_at_05)])
    row = judge(trained_check(), v)
    assert row["verdict"] == verdict, row
    if verdict != "inconclusive" or sum(bn_at_05) == 1:
        assert row["lr"] == 0.5
    if std_at_05 == [1, 0]:
        assert "add a larger one to fig1_lrs" in row["why"]


# --- per-run values from a run folder -----------------------------------------------------------

def test_run_values_are_medians_of_the_run_tables(tmp_path):
    """A constructed run: 10 steps, measured at 0, 2, ..., 8, curvature at 0 and 5."""
    meta = {"dataset": "digits", "model": "vgg", "variant": "batchnorm", "lr": 0.1, "seed": 3,
            "steps": 10, "diverged": False, "never_learned": False, "final_test_acc": 0.9,
            "final_batch_acc": 0.95, "momentum": 0.0}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    steps = [0, 2, 4, 6, 8]
    probes = pd.DataFrame([{"step": s, "point": p, "loss": float(s + p), "grad_change": float(p),
                            "beta": float(10 * s + p)} for s in steps for p in (0, 1)])
    probes.to_parquet(tmp_path / "probes.parquet")
    pd.DataFrame([{"step": s, "layer": layer, "l2": float(s * layer), "cos": 1.0 / layer,
                   "grad_norm": 1.0} for s in steps for layer in (1, 2)]
                 ).to_parquet(tmp_path / "ics.parquet")
    pd.DataFrame([{"step": s, "layer": 2, "mean_shift": float(s) if s < 8 else np.nan,
                   "var_shift": 2.0} for s in steps]).to_parquet(tmp_path / "activations.parquet")
    pd.DataFrame({"step": range(10), "accuracy": np.linspace(0.1, 1.0, 10)}
                 ).to_parquet(tmp_path / "steps.parquet")
    pd.DataFrame({"step": [0, 5], "lambda_max": [100.0, 7.0], "batch_sharpness": [-1.0, 3.0]}
                 ).to_parquet(tmp_path / "hessian.parquet")
    got = {(r["quantity"], r["layer"]): r["value"] for r in run_values(tmp_path / "run.json")}
    assert got[("loss_range", 0)] == 1.0                       # max - min over the 2 points
    assert got[("beta_smoothness", 0)] == 41.0                 # median of 1, 21, 41, 61, 81
    assert got[("beta_late", 0)] == 51.0                       # steps >= 1: 21, 41, 61, 81
    assert got[("lambda_max_late", 0)] == 7.0 and got[("batch_sharpness_late", 0)] == 3.0
    assert got[("ics_l2", 2)] == 8.0 and got[("ics_cos", 2)] == 0.5
    assert got[("mean_shift", 2)] == 3.0                       # 0, 2, 4, 6 (step 8: no next)
    assert got[("trained", 0)] == 1.0 and got[("final_test_acc", 0)] == 0.9
    assert got[("mean_batch_acc", 0)] == pytest.approx(0.55)
    assert set(q for q, _ in got) == set(QUANTITIES)
    table = load_values([tmp_path / "run.json"])
    assert (table.family == "net").all() and (table.seed == 3).all()


# --- the checks a config asks for ---------------------------------------------------------------

def test_checks_follow_the_figures_lrs_and_layers_and_their_runs_are_trained_anyway():
    cfg = check_config(BASE)
    cs = checks(cfg)
    ics = [c for c in cs if c.claim == "3" and c.family == "net"]
    assert {(c.lr, c.layer) for c in ics} == {(lr, layer) for lr in cfg["fig3_lrs"]
                                              for layer in cfg["fig3_layers"]}
    assert {c.lr for c in cs if c.quantity == "final_test_acc"} == set(cfg["fig1_lrs"])
    assert {c.claim for c in cs} == set(CLAIMS)
    assert all(c.quantity in QUANTITIES for c in cs)
    # the scorecard never trains a run that `snakemake` (all) would not
    assert set(scorecard_runs(cfg)) <= set(sweep_runs(cfg))
    # curvature is off by default: no run is trained for the curvature checks alone
    on = check_config({**BASE, "hessian_every": 100, "dln": {"hessian_every": 100}})
    assert set(scorecard_runs(on)) == set(scorecard_runs(cfg))


def test_markdown_has_a_tally_and_one_line_per_check():
    v = values([("batchnorm", 0.1, s, "loss_range", 0.1) for s in (0, 1)]
               + [("standard", 0.1, s, "loss_range", 1.0) for s in (0, 1)])
    table = pd.DataFrame([judge(check(), v), judge(check(lr=0.5), v)])
    md = to_markdown(table)
    assert "| 4: BN makes the landscape smoother | VGG on digits | 1 | 0 | 0 | 1 |" in md
    assert "BatchNorm vs Standard: loss range along the gradient, VGG lr 0.1" in md
    assert "× 0.1 [0.1, 0.1] | **holds**" in md
    assert md.count("\n| 4 |") == 2
    ics = Check("3", CLAIMS["3"], "ics_l2", "net", 0.1, "batchnorm", "standard", "not_lower",
                "fig3_ics", layer=5)
    line = to_markdown(pd.DataFrame([judge(ics, v)])).splitlines()[-3]
    assert "ICS \\|\\|G - G'\\|\\|, VGG lr 0.1 layer 5" in line
    assert line.count("|") - line.count("\\|") == 9  # 8 cells

def test_a_scorecard_of_tf32_gpu_runs_says_so_and_one_of_cpu_runs_says_nothing(tmp_path):
    def meta(name, **kw):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"precision": "fp32", "device": "cpu", **kw}))
        return path

    cpu = [meta("a", precision="tf32"), meta("b")]  # TF32 does not exist on the CPU
    assert precision_note(cpu) == ""
    assert precision_note([meta("c", device="cuda"), meta("d", device="cuda:1")]) == ""
    note = precision_note(cpu + [meta("e", device="cuda", precision="tf32")])
    assert "1 of 3 runs trained their unmeasured steps in TF32" in note
    # the default device: auto, resolved at run time and recorded as device_type
    auto = [meta("f", device="auto", device_type="cuda", precision="tf32"),
            meta("g", device="auto", device_type="cpu", precision="tf32")]
    assert "1 of 2 runs trained" in precision_note(auto)
    assert "precision=fp32" in note
