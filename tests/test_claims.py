"""The scorecard (bnopt.scorecard: checks, values, verdicts, text): its verdict rules on
constructed effects and run tables whose verdict is known."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from bnopt.analysis.aggregate import band_label, seed_interval
from bnopt.analysis.loss_levels import MIN_STEPS_AT_LEVEL, smoothed_loss
from bnopt.plan.check import check_config
from bnopt.plan.figure_specs import figures_off
from bnopt.plan.runs import sweep_runs
from bnopt.scorecard.checks import (
    CLAIMS,
    DIRECTIONS,
    EDGE,
    QUANTITIES,
    SMALLEST_EFFECT,
    VERDICTS,
    Check,
    checks,
    scorecard_runs,
)
from bnopt.scorecard.decisions import decision_rates, judge_effects, seeds_needed
from bnopt.scorecard.text import precision_note, to_markdown
from bnopt.scorecard.values import load_values, run_values
from bnopt.scorecard.verdicts import judge
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


RATIO, ACC = SMALLEST_EFFECT["ratio"], SMALLEST_EFFECT["accuracy"]


@pytest.mark.parametrize("effects,comparison,direction,margin,verdict", [
    ([0.10, 0.12, 0.11], "ratio", "lower", RATIO, "holds"),             # a clear win
    ([3.0, 2.5, 4.0], "ratio", "lower", RATIO, "does not hold"),         # a clear loss
    ([0.5, 1.6, 0.9], "ratio", "lower", RATIO, "inconclusive"),          # too spread
    ([0.1], "ratio", "lower", RATIO, "inconclusive"),                    # one seed
    ([0.05, 0.06, 0.055], "difference", "higher", ACC, "holds"),
    ([0.0, 0.01, 0.005], "difference", "higher", ACC, "does not hold"),  # below the smallest effect
    ([-0.02, 0.05], "difference", "higher", ACC, "inconclusive"),
    ([-0.01, -0.005, -0.008], "difference", "not_lower", ACC, "holds"),  # within the margin
    ([-0.2, -0.1, -0.15], "difference", "not_lower", ACC, "does not hold"),
    ([1.0, 1.02, 0.98], "ratio", "within", RATIO, "holds"),              # at the edge of stability
    ([0.01, 0.02, 0.015], "ratio", "within", RATIO, "does not hold"),
    ([0.3, 1.2, 3.0], "ratio", "within", RATIO, "inconclusive"),
    ([0.9, 0.95, 0.92], "ratio", "not_higher", RATIO, "holds"),
    ([2.0, 2.2, 2.1], "ratio", "not_higher", RATIO, "does not hold"),
    ([0.6, 0.62, 0.61], "ratio", "not_lower", RATIO, "does not hold"),   # reduced by 40%
    # every seed above 0, but the 95% interval of three so spread reaches below it
    ([1.0, 2.0, 3.0], "difference", "higher", ACC, "inconclusive"),
])
def test_verdicts_on_constructed_effects(effects, comparison, direction, margin, verdict):
    out = judge_effects(effects, comparison, direction, margin)
    assert out["verdict"] == verdict, out
    assert out["verdict"] in VERDICTS and out["rule"]
    assert bool(out["why"]) == (verdict == "inconclusive")


def test_the_verdict_reads_the_t_interval_of_the_mean_and_says_so():
    out = judge_effects([1.0, 2.0, 3.0], "difference", "higher", ACC)
    h = stats.t.ppf(0.975, 2) / math.sqrt(3)  # mean 2, sd 1
    assert out["effect"] == pytest.approx(2.0)
    assert (out["effect_lo"], out["effect_hi"]) == pytest.approx((2 - h, 2 + h))
    assert out["interval"] == "95% t-interval of 3 seeds" and out["threshold"] == "> 0.02"
    assert out["seed_effects"] == "1 / 2 / 3"
    # ratios on a log scale: the geometric mean, and an interval symmetric in log
    r = judge_effects([2.0, 8.0, 4.0], "ratio", "higher", RATIO)
    assert r["effect"] == pytest.approx(4.0)
    assert r["effect_lo"] * r["effect_hi"] == pytest.approx(16.0)


def test_an_undecided_check_says_how_many_seeds_its_spread_would_need():
    out = judge_effects([0.5, 0.6], "ratio", "lower", RATIO)  # 2 seeds: t(1) = 12.7
    assert out["verdict"] == "inconclusive" and out["seeds_needed"] == 3
    assert "about 3 seeds would decide" in out["why"]
    m, sd = np.log([0.5, 0.6]).mean(), np.log([0.5, 0.6]).std(ddof=1)
    three = np.exp(m + sd * np.array([-1.0, 0.0, 1.0]))  # the same mean and spread
    assert judge_effects(three, "ratio", "lower", RATIO)["verdict"] == "holds"
    # a mean on the boundary: no number of seeds decides
    assert seeds_needed(-math.log(RATIO), 0.1, math.log(RATIO), "lower") is None


def test_a_ratio_of_a_non_positive_value_is_inconclusive():
    out = judge_effects([0.5, -0.2], "ratio", "lower", RATIO)
    assert out["verdict"] == "inconclusive" and "<= 0" in out["why"]
    assert judge_effects([np.nan, np.nan], "ratio", "lower", RATIO)["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="direction 'smaller'"):
        judge_effects([1.0], "ratio", "smaller", RATIO)


# where each claim is false (the mean effect, in units of the smallest effect delta), and where
# it is true; at the boundary (+-1) both
FALSE = {"lower": (-1, -0.5, 0, 0.5, 2), "higher": (1, 0.5, 0, -0.5, -2),
         "not_lower": (-1, -2), "not_higher": (1, 2), "within": (-2, -1, 1, 2)}
TRUE = {"lower": (-1, -2), "higher": (1, 2), "not_lower": (-1, -0.5, 0, 0.5, 2),
        "not_higher": (1, 0.5, 0, -0.5, -2), "within": (-1, -0.5, 0, 0.5, 1)}
REPS = 20_000
LIMIT = 0.05 + 3 * math.sqrt(0.05 * 0.95 / REPS)  # 5% plus three Monte-Carlo errors


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_verdict_is_wrong_at_most_5_percent_of_the_time_at_any_seed_count(direction):
    """Synthetic per-seed effects N(mean, sd), 2 to 10 seeds, spreads of half to twice the
    smallest effect: where the claim is false it "holds" at most 5% of the time (Monte-Carlo
    error aside), and where it is true it "does not hold" at most 5%. The earlier rule (every
    seed on the claim's side of "no effect") fails this: 2 seeds at a true effect of 0 pass
    "lower" one time in four."""
    delta = 1.0
    for n in range(2, 11):
        for sd in (0.5, 1.0, 2.0):
            for mean in FALSE[direction]:
                holds, _ = decision_rates(mean * delta, sd * delta, n, delta, direction, REPS)
                assert holds <= LIMIT, (direction, n, sd, mean, holds)
            for mean in TRUE[direction]:
                _, fails = decision_rates(mean * delta, sd * delta, n, delta, direction, REPS)
                assert fails <= LIMIT, (direction, n, sd, mean, fails)
    # ... and it has power: a true effect of twice the smallest, 10 seeds, spread delta / 2
    if direction in ("lower", "higher"):
        sign = 1 if direction == "higher" else -1
        assert decision_rates(2 * sign, 0.5, 10, delta, direction, REPS)[0] > 0.95


def test_the_power_table_in_the_docs_is_what_the_rule_gives():
    text = (ROOT / "docs/scorecard.md").read_text()
    assert power_table() in text, power_table()


def power_table() -> str:
    """docs/scorecard.md's table: P(holds) of a claim of a difference at a true effect of 2 and
    3 smallest effects, and of a claim of no difference at a true effect of 0, by seeds and
    spread (in smallest effects)."""
    rows = ["| true effect | spread (sd over seeds) | 3 seeds | 5 seeds | 10 seeds |",
            "|---|---|---|---|---|"]
    for label, mean, direction in (("2 δ (a difference)", 2.0, "higher"),
                                   ("3 δ (a difference)", 3.0, "higher"),
                                   ("0 (no difference)", 0.0, "within")):
        for sd in (0.5, 1.0):
            cells = [f"{decision_rates(mean, sd, n, 1.0, direction, REPS)[0]:.0%}"
                     for n in (3, 5, 10)]
            rows.append(f"| {label} | {sd:g} δ | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- judge on constructed run values ----------------------------------------------------------

def values(rows) -> pd.DataFrame:
    """A load_values-like table: rows of (variant, lr, seed, quantity, value[, layer, failed]).
    A matched quantity gets its run-long row and the same value at one level of the training
    loss (0) with enough measured steps, so every run shares that training loss."""
    out = []
    for r in rows:
        variant, lr, seed, quantity, value, *rest = r
        layer = rest[0] if rest else 0
        failed = rest[1] if len(rest) > 1 else ""
        row = {"family": "net", "dataset": "digits", "model": "vgg", "variant": variant,
               "lr": lr, "seed": seed, "diverged": failed == "diverged",
               "never_learned": failed == "never", "momentum": 0.0, "optimizer": "sgd",
               "quantity": quantity,
               "layer": layer, "level": math.nan, "count": 1, "value": value}
        out.append(row)
        if QUANTITIES[quantity].matched:
            out.append({**row, "level": 0.0, "count": MIN_STEPS_AT_LEVEL})
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
    blocked = figures_off(cfg)
    c = Check("curvature", CLAIMS["curvature"], "lambda_max", "net", 0.1, "batchnorm",
              "standard", "lower", "fig16_curvature")
    row = judge(c, values([]), blocked)
    assert row["verdict"] == "not measured"
    # the base config leaves dln.hessian_every at 0 too: both keys, made from the data
    assert row["why"] == ("results/figures/fig16_curvature.png needs hessian_every and "
                          "dln.hessian_every > 0")


def test_edge_of_stability_checks_compare_with_2_over_lr_of_each_run():
    v = values([("batchnorm", 0.1, s, "batch_sharpness_late", x)
                for s, x in enumerate((19.5, 20.5, 20.0))]
               + [("standard", 0.1, s, "batch_sharpness_late", x)
                  for s, x in enumerate((0.5, 0.4, 0.45))])
    c = dict(quantity="batch_sharpness_late", direction="within", baseline=EDGE)
    row = judge(check(**c), v)
    assert row["baseline_values"] == "20 / 20 / 20" and row["verdict"] == "holds"
    assert 1 / RATIO < row["effect_lo"] < 1 < row["effect_hi"] < RATIO
    assert judge(check(treatment="standard", **c), v)["verdict"] == "does not hold"


def test_an_adam_run_is_not_judged_against_sgds_edge_of_stability():
    """2(1 + momentum)/lr is SGD's; Adam rescales its step per parameter, so the same rows
    of Adam runs are 'not measured', with the reason, instead of judged against 2/lr."""
    v = values([("batchnorm", 0.1, s, "batch_sharpness_late", 20.0) for s in (0, 1)])
    v["optimizer"] = "adam"
    c = dict(quantity="batch_sharpness_late", direction="within", baseline=EDGE)
    row = judge(check(**c), v)
    assert row["verdict"] == "not measured" and "Adam" in row["why"]
    assert row["effect"] != row["effect"]  # NaN: nothing was compared


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
    """A constructed run: 10 steps at training loss 2, measured at 0, 2, ..., 8, curvature at
    0 and 5."""
    meta = {"dataset": "digits", "model": "vgg", "variant": "batchnorm", "lr": 0.1, "seed": 3,
            "steps": 10, "diverged": False, "never_learned": False, "final_test_acc": 0.9,
            "final_batch_acc": 0.95, "momentum": 0.0}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    steps = [0, 2, 4, 6, 8]
    probes = pd.DataFrame([{"step": s, "point": p, "loss": float(s + p), "grad_change": float(p),
                            "beta": float(10 * s + p)} for s in steps for p in (0, 1)])
    probes.to_parquet(tmp_path / "probes.parquet")
    pd.DataFrame([{"step": s, "layer": layer, "l2": float(s * layer), "cos": 1.0 / layer,
                   "grad_norm": 2.0} for s in steps for layer in (1, 2)]
                 ).to_parquet(tmp_path / "ics.parquet")
    pd.DataFrame([{"step": s, "layer": 2, "std": 2.0, "mean_shift": 9.0, "var_shift": 9.0,
                   "probe_mean_shift": s / 2 if s < 8 else np.nan, "probe_var_shift": 0.5}
                  for s in steps]).to_parquet(tmp_path / "activations.parquet")
    pd.DataFrame({"step": range(10), "loss": np.full(10, 2.0),
                  "accuracy": np.linspace(0.1, 1.0, 10)}).to_parquet(tmp_path / "steps.parquet")
    pd.DataFrame({"step": [0, 5], "lambda_max": [100.0, 7.0], "batch_sharpness": [-1.0, 3.0]}
                 ).to_parquet(tmp_path / "hessian.parquet")
    rows = run_values(tmp_path / "run.json").to_dict("records")
    got = {(r["quantity"], r["layer"]): r["value"] for r in rows if math.isnan(r["level"])}
    assert got[("loss_range", 0)] == 1.0                       # max - min over the 2 points
    assert got[("beta_smoothness", 0)] == 41.0                 # median of 1, 21, 41, 61, 81
    assert got[("beta_late", 0)] == 51.0                       # steps >= 1: 21, 41, 61, 81
    assert got[("lambda_max", 0)] == 53.5 and got[("batch_sharpness_late", 0)] == 3.0
    assert got[("ics_rel", 2)] == 4.0 and got[("ics_cos", 2)] == 0.5  # (2 s) / 2
    # the fixed probe batch's shifts (not the consecutive batches'): 0, 1, 2, 3 (step 8: NaN)
    assert got[("mean_shift", 2)] == 1.5 and got[("var_shift", 2)] == 0.5
    assert got[("trained", 0)] == 1.0 and got[("final_test_acc", 0)] == 0.9
    assert got[("mean_batch_acc", 0)] == pytest.approx(0.55)
    assert got[("run_loss", 0)] == pytest.approx(2.0)
    assert set(q for q, _ in got) == set(QUANTITIES) - {"bn_gain_share"}  # of three runs
    # a training loss that never moves draws no curve against it: no level is read
    assert all(math.isnan(r["level"]) for r in rows)
    # a run written before the probe batch's shift was measured has none (not an error)
    acts = pd.read_parquet(tmp_path / "activations.parquet")
    acts.drop(columns=["probe_mean_shift", "probe_var_shift"]).to_parquet(
        tmp_path / "activations.parquet")
    old = {(r["quantity"], r["layer"]) for r in run_values(tmp_path / "run.json").to_dict("records")}
    assert ("mean_shift", 2) not in old and ("ics_rel", 2) in old
    table = load_values([tmp_path / "run.json"])
    assert (table.family == "net").all() and (table.seed == 3).all()


# --- matched training progress, on constructed runs whose answer is known -----------------------

def write_run(folder, variant, seed, loss, per_step, every=5):
    """A finished run of ``len(loss)`` steps with training loss ``loss`` (per step), measured
    every ``every`` steps; the quantities at a measured step are ``per_step(x)`` of the training
    loss the scorecard matches on there (the smoothed loss): a dict of loss_range and ics_rel
    (layer 5)."""
    folder.mkdir(parents=True)
    n = len(loss)
    meta = {"dataset": "digits", "model": "vgg", "variant": variant, "lr": 0.1, "seed": seed,
            "steps": n, "diverged": False, "never_learned": False, "final_test_acc": 0.9,
            "momentum": 0.0}
    (folder / "run.json").write_text(json.dumps(meta))
    steps = pd.DataFrame({"step": np.arange(n), "loss": loss, "accuracy": np.full(n, 0.9)})
    steps.to_parquet(folder / "steps.parquet")
    progress = smoothed_loss(steps).to_numpy()
    measured = np.arange(0, n, every)
    q = [per_step(progress[s]) for s in measured]
    pd.DataFrame([{"step": s, "point": p, "loss": loss[s] + p * v["loss_range"],
                   "grad_change": 1.0, "beta": 1.0} for s, v in zip(measured, q) for p in (0, 1)]
                 ).to_parquet(folder / "probes.parquet")
    pd.DataFrame([{"step": s, "layer": 5, "l2": v["ics_rel"] * 3.0, "cos": 0.5,
                   "grad_norm": 3.0} for s, v in zip(measured, q)]
                 ).to_parquet(folder / "ics.parquet")
    pd.DataFrame(columns=["step", "layer", "std", "mean_shift", "var_shift"]
                 ).to_parquet(folder / "activations.parquet")
    pd.DataFrame(columns=["step", "lambda_max", "batch_sharpness"]
                 ).to_parquet(folder / "hessian.parquet")
    return folder / "run.json"


def matched_scorecard(tmp_path, bn_loss, std_loss, per_step, bn_factor=1.0, seeds=(0, 1, 2)):
    """The loss-range (Claim 4) and relative-ICS (Claim 3) rows for three seeds of a BN and a
    standard run with the given loss curves; BN's quantities are ``bn_factor`` x the standard
    net's at the same training loss."""
    metas = []
    for seed in seeds:
        jitter = 1 + 0.01 * seed
        metas.append(write_run(tmp_path / f"std{seed}", "standard", seed, std_loss * jitter,
                               per_step))
        metas.append(write_run(tmp_path / f"bn{seed}", "batchnorm", seed, bn_loss * jitter,
                               lambda x: {k: bn_factor * v for k, v in per_step(x).items()}))
    values = load_values(metas)
    range_check = check()  # Claim 4: BN's loss range lower
    ics_check = Check("3", CLAIMS["3"], "ics_rel", "net", 0.1, "batchnorm", "standard",
                      "not_lower", "fig3_ics", layer=5)
    return judge(range_check, values), judge(ics_check, values)


# the training loss falls from 3 to 0.01; each quantity is proportional to it, so two nets at
# the same loss have the same values
STANDARD = np.geomspace(3.0, 0.01, 1000)                            # trains over the whole run
EARLY_BN = np.r_[np.geomspace(3.0, 0.01, 150), np.full(850, 0.01)]  # converges early, then sits


def same_at_same_loss(x):
    return {"loss_range": 0.1 * x, "ics_rel": 0.5 * x}


def test_a_net_that_converged_early_is_compared_at_the_standard_nets_loss(tmp_path):
    """Both nets have the same loss range and relative ICS at every training loss: the effect
    is 1 at every level of the loss, while the run-long medians, dominated by BN's converged
    steps, say BN's are ~17x smaller."""
    land, ics = matched_scorecard(tmp_path, EARLY_BN, STANDARD, same_at_same_loss)
    for row in (land, ics):
        assert row["effect"] == pytest.approx(1.0, rel=1e-9), row
        assert row["run_median_effect"] < 0.1
        assert row["progress"].startswith("matched training loss ")
        assert len(row["by_level"]) >= 8   # 1.78 down to 0.0178: 2.25 decades, 4 a decade
        for level in row["by_level"]:
            assert level["effect"] == pytest.approx(1.0, rel=1e-9)
            assert level["seeds_compared"] == 3
    assert land["verdict"] == "does not hold"   # a ratio of 1 is not "smoother"
    assert ics["verdict"] == "holds"            # and ICS is not reduced
    # the levels each seed's pair of runs shares are in the row
    assert land["levels"].startswith("seed 0: ") and land["levels"].count("seed ") == 3


def test_runs_that_cross_the_loss_at_different_speeds_are_compared_at_the_same_loss(tmp_path):
    """BN falls through a decade of the loss in 20 steps, then slowly; the standard net slowly,
    then in 20 steps. Neither speed changes the effect of a quantity proportional to the loss:
    1 at every level (half-decade bins gave the ratio of where each run's steps fell in them)."""
    fast_then_slow = np.r_[np.geomspace(3.0, 0.3, 20), np.geomspace(0.3, 0.01, 600)]
    slow_then_fast = np.r_[np.geomspace(3.0, 0.1, 600), np.geomspace(0.1, 0.01, 20)]
    land, ics = matched_scorecard(tmp_path, fast_then_slow, slow_then_fast, same_at_same_loss)
    for row in (land, ics):
        assert row["effect"] == pytest.approx(1.0, rel=1e-9)
        assert all(x["effect"] == pytest.approx(1.0, rel=1e-9) for x in row["by_level"])


def test_a_real_effect_at_matched_loss_is_found_whatever_the_stage(tmp_path):
    land, ics = matched_scorecard(tmp_path, EARLY_BN, STANDARD, same_at_same_loss, bn_factor=0.25)
    assert land["effect"] == pytest.approx(0.25, rel=1e-9) and land["verdict"] == "holds"
    assert ics["verdict"] == "does not hold"    # reduced 4x: more than the smallest effect
    assert land["basis"] == "95% interval [0.25, 0.25], needs < 0.8"
    assert ics["basis"] == "95% interval [0.25, 0.25], needs > 0.8"


def test_runs_that_share_no_training_loss_are_inconclusive(tmp_path):
    high = np.geomspace(3.0, 1.0, 300)
    low = np.geomspace(0.01, 0.003, 300)
    land, ics = matched_scorecard(tmp_path, low, high, lambda x: {"loss_range": 1.0,
                                                                  "ics_rel": 1.0})
    for row in (land, ics):
        assert row["verdict"] == "inconclusive" and "share no training loss" in row["why"]
        assert row["progress"] == "none shared" and row["treatment_values"] == ""
        assert row["run_median_effect"] == pytest.approx(1.0, rel=0.02)
        assert row["by_level"] == []
    assert land["levels"].startswith("seed 0: none (batchnorm 0.00316-0.00562 (2 levels), "
                                     "standard 1.78 (1 level)); seed 1: none")


def test_a_seed_whose_runs_share_no_loss_drops_out_and_leaves_the_others_unchanged(tmp_path):
    """Levels are chosen per pair of seeds: a third seed whose BN run never reaches the
    standard net's losses changes neither the other seeds' effects nor their levels."""
    two, _ = matched_scorecard(tmp_path, EARLY_BN, STANDARD, same_at_same_loss,
                               bn_factor=0.5, seeds=(0, 1))
    metas = [tmp_path / d / "run.json" for d in ("std0", "bn0", "std1", "bn1")]
    metas += [write_run(tmp_path / "std2", "standard", 2, np.geomspace(3.0, 1.0, 300),
                        same_at_same_loss),
              write_run(tmp_path / "bn2", "batchnorm", 2, np.geomspace(0.01, 0.003, 300),
                        same_at_same_loss)]
    three = judge(check(), load_values(metas))
    assert three["seeds"] == "0 / 1 / 2" and three["seeds_compared"] == 2
    assert three["effect"] == pytest.approx(two["effect"], rel=1e-12)
    assert three["levels"].split("; ")[:2] == two["levels"].split("; ")
    assert three["levels"].split("; ")[2].startswith("seed 2: none")


# --- the checks a config asks for ---------------------------------------------------------------

def test_checks_follow_the_figures_lrs_and_layers_and_their_runs_are_trained_anyway():
    cfg = check_config(BASE)
    cs = checks(cfg)
    ics = [c for c in cs if c.claim == "3" and c.family == "net"]
    assert {(c.lr, c.layer) for c in ics} == {(lr, layer) for lr in cfg["fig3_lrs"]
                                              for layer in cfg["fig3_layers"]}
    assert {c.quantity for c in ics} == {"ics_rel", "ics_cos"}
    assert {c.lr for c in cs if c.quantity == "final_test_acc"} == set(cfg["fig1_lrs"])
    assert {c.claim for c in cs} == set(CLAIMS)
    assert all(c.quantity in QUANTITIES for c in cs)
    # the scorecard never trains a run that `snakemake` (all) would not
    assert set(scorecard_runs(cfg)) <= set(sweep_runs(cfg))
    # curvature is off by default: no run is trained for the curvature checks alone
    on = check_config({**BASE, "hessian_every": 100, "dln": {"hessian_every": 100}})
    assert set(scorecard_runs(on)) == set(scorecard_runs(cfg))


def test_claims_2_and_5_test_training_as_well_as_stability_and_smoothness():
    cs = checks(check_config(BASE))
    two = [c for c in cs if c.claim == "2"]
    acc = [c for c in two if c.quantity == "mean_batch_acc"]
    assert [(c.treatment, c.baseline, c.direction, c.margin) for c in acc] == [
        ("noisy_batchnorm", "batchnorm", "not_lower", ACC),   # within 2 points of BN (secondary)
        ("noisy_batchnorm", "standard", "higher", ACC)]       # still better than standard
    share = [c for c in two if c.quantity == "bn_gain_share"]  # keeps almost all of BN's gain
    assert [(c.treatment, c.baseline, c.direction, c.margin, c.primary) for c in share] == [
        ("noisy_batchnorm", "batchnorm", "not_lower", SMALLEST_EFFECT["share"], True)]
    shifts = {(c.quantity, c.layer, c.baseline) for c in two if c.quantity.endswith("_shift")}
    assert shifts == {(q, layer, b) for q in ("mean_shift", "var_shift") for layer in (2, 9, 13)
                      for b in ("standard", "batchnorm")}
    five = [c for c in cs if c.claim == "5"]
    trains = {(c.family, c.treatment, c.quantity, c.baseline, c.direction) for c in five
              if c.quantity in ("mean_batch_acc", "run_loss")}
    lp = ("l1", "l2", "linf")
    assert trains == ({("net", v, "mean_batch_acc", "batchnorm", "not_lower") for v in lp}
                      | {("net", v, "mean_batch_acc", "standard", "higher") for v in lp}
                      | {("dln", v, "run_loss", "batchnorm", "not_higher") for v in lp}
                      | {("dln", v, "run_loss", "standard", "lower") for v in lp})
    assert all(c.baseline == "standard" for c in five if c.quantity in ("loss_range", "grad_pred",
                                                                        "beta_smoothness"))
    # one smallest effect per kind of quantity, whatever the claim
    for c in cs:
        assert c.margin == SMALLEST_EFFECT.get(QUANTITIES[c.quantity].kind, 0.0)


def test_markdown_has_a_tally_and_one_line_per_check():
    v = values([("batchnorm", 0.1, s, "loss_range", 0.1) for s in (0, 1)]
               + [("standard", 0.1, s, "loss_range", 1.0) for s in (0, 1)])
    table = pd.DataFrame([judge(check(), v), judge(check(lr=0.5), v)])
    md = to_markdown(table)
    assert "| 4: BN makes the landscape smoother | VGG on digits | 1 | 0 | 0 | 1 |" in md
    # the claim's line: its one measured primary check holds (the other is not measured)
    assert ("| 4: BN makes the landscape smoother | **holds** | 1 / 0 (0) / 1 | its one primary "
            "check holds; 1 not measured |") in md
    assert "BatchNorm vs Standard: loss range along the gradient, VGG lr 0.1" in md
    assert ("| matched training loss 1 (1 level) | 0 / 1 | 0.1 / 0.1 | 1 / 1 | "
            "× 0.1 [0.1, 0.1] | × 0.1 [0.1, 0.1] | **holds** (95% interval [0.1, 0.1], needs "
            "< 0.8) |") in md
    assert md.count("\n| 4 |") == 2
    ics = Check("3", CLAIMS["3"], "ics_rel", "net", 0.1, "batchnorm", "standard", "not_lower",
                "fig3_ics", layer=5)
    v = values([(var, 0.1, s, "ics_rel", x, 5) for s in (0, 1)
                for var, x in (("batchnorm", 0.6), ("standard", 1.0))])
    line = next(x for x in to_markdown(pd.DataFrame([judge(ics, v)])).splitlines()
                if x.startswith("| 3 |"))
    assert "relative ICS \\|\\|G - G'\\|\\| / \\|\\|G\\|\\|, VGG lr 0.1 layer 5" in line
    # BN's ICS 0.6x the standard net's: reduced by more than the smallest effect
    assert "**does not hold** (95% interval [0.6, 0.6], needs > 0.8)" in line
    assert line.count("|") - line.count("\\|") == 11  # 10 cells


def test_a_scorecard_of_tf32_gpu_runs_says_so_and_one_of_cpu_runs_says_nothing(tmp_path):
    def meta(name, **kw):
        path = tmp_path / f"{name}.json"
        where = str(kw.get("device", "cpu")).split(":")[0]  # what run.json records
        path.write_text(json.dumps({"precision": "fp32", "device": "cpu", "device_type": where,
                                    **kw}))
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


@pytest.mark.parametrize("noisy, bn, verdict, why", [
    ((0.88, 0.89, 0.87), (0.9, 0.9, 0.9), "holds", ""),                  # share ~0.95
    ((0.6, 0.62, 0.58), (0.9, 0.9, 0.9), "does not hold", ""),           # share ~0.25
    ((0.88, 0.89, 0.87), (0.9, 0.51, 0.9), "holds", "no gain to share there")])  # 2 seeds left
def test_noisy_bn_keeps_a_share_of_bns_gain_over_the_standard_net(noisy, bn, verdict, why):
    """Claim 2's "almost as well as BN": (noisy - standard) / (BN - standard) per seed, judged
    against 1 (all of BN's gain) with a smallest effect of a quarter; a seed where BN gains
    less than 2 points over the standard net has no gain to share."""
    v = values([("standard", 0.1, s, "mean_batch_acc", 0.5) for s in range(3)]
               + [("batchnorm", 0.1, s, "mean_batch_acc", x) for s, x in enumerate(bn)]
               + [("noisy_batchnorm", 0.1, s, "mean_batch_acc", x) for s, x in enumerate(noisy)])
    c = Check("2", CLAIMS["2"], "bn_gain_share", "net", 0.1, "noisy_batchnorm", "batchnorm",
              "not_lower", "fig2_noisy_bn")
    row = judge(c, v)
    assert row["verdict"] == verdict and why in row["why"], row
    shares = [(n - 0.5) / (b - 0.5) for n, b in zip(noisy, bn) if b - 0.5 >= 0.02]
    assert row["effect"] == pytest.approx(np.mean(shares))
    assert row["threshold"] == "> 0.75" and row["comparison"] == "share"
