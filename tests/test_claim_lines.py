"""The claim-level line (bnopt.scorecard.claim_lines): Holm's correction, the verdict from a
claim's primary checks, its error rates by simulation, and which checks are primary."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from bnopt.plan.check import check_config
from bnopt.scorecard.checks import checks
from bnopt.scorecard.claim_lines import ALPHA, claim_lines, claim_verdict, holm, simulate_claim
from bnopt.scorecard.decisions import decide, effect_interval, p_values
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())
REPS = 20_000
LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)  # 2.5% plus three Monte-Carlo errors


def test_holm_steps_down_and_stops_at_the_first_p_it_cannot_reject():
    # m = 4: 0.001 < 0.025/4; 0.01 >= 0.025/3, so it and every larger p stay
    assert holm([0.02, 0.001, 0.5, 0.01]).tolist() == [False, True, False, False]
    assert holm([0.001, 0.005, 0.0125, 0.024]).tolist() == [True] * 4  # /4, /3, /2, /1
    assert holm([np.nan, 0.001]).tolist() == [False, True] and not holm([]).any()


@pytest.mark.parametrize("direction", ["lower", "higher", "not_lower", "not_higher", "within"])
def test_p_values_decide_exactly_as_the_interval_does(direction):
    """A check holds where its interval says so, and exactly there its p of "holds" is below
    2.5% (the same for "does not hold"): the claim line and the rows never disagree."""
    rng = np.random.default_rng(1)
    for n in (2, 3, 5):
        d = rng.normal(rng.uniform(-3, 3, (2000, 1)), rng.uniform(0.1, 2, (2000, 1)), (2000, n))
        m, lo, hi = (np.array(x) for x in zip(*map(effect_interval, d)))
        holds, fails = decide(lo, hi, 1.0, direction)
        p_holds, p_not = p_values(m, d.std(1, ddof=1), n, 1.0, direction)
        assert ((p_holds < ALPHA) == holds).all() and ((p_not < ALPHA) == fails).all()


def test_a_claim_line_is_wrong_at_most_2_5_percent_of_the_time():
    """Six primary checks of a claim of "lower", 3 or 5 seeds. At the claim's boundary where
    it is true (every check's effect exactly the smallest effect), the line says "does not
    hold" at most 2.5% of the time; uncorrected, "any check does not hold" would say it about
    14% of the time. Where it is false in one check only (that effect exactly at the boundary,
    the others far beyond it) the line says "holds" at most 2.5%."""
    for seeds, sd in ((3, 1.0), (5, 0.5), (10, 2.0)):
        true = simulate_claim([-1.0] * 6, sd, seeds, 1.0, "lower", REPS)
        assert true["does not hold"] <= LIMIT, (seeds, sd, true)
        false = simulate_claim([-1.0] + [-6.0] * 5, sd, seeds, 1.0, "lower", REPS)
        assert false["holds"] <= LIMIT, (seeds, sd, false)
    # without the correction: one check's 2.5%, six times over
    d = np.random.default_rng(0).normal(-1.0, 1.0, (REPS, 6, 3))
    _, p_not = p_values(d.mean(2), d.std(2, ddof=1), 3, 1.0, "lower")
    assert (p_not < ALPHA).any(1).mean() > 0.12
    # ... and the line has power: every check twice the smallest effect, 10 seeds
    assert simulate_claim([-2.0] * 6, 0.5, 10, 1.0, "lower", REPS)["holds"] > 0.9


def table(rows):
    """A claims.csv-like table: (claim, primary, verdict, p_holds, p_not_holds) per row."""
    return pd.DataFrame(rows, columns=["claim", "primary", "verdict", "p_holds", "p_not_holds"]
                        ).assign(statement="")


def test_claim_lines_combine_the_primary_checks_only():
    t = table([("4", True, "holds", 0.001, 0.9), ("4", True, "holds", 0.01, 0.99),
               ("4", False, "does not hold", 0.99, 0.0001),       # secondary: shown, not combined
               ("3", True, "does not hold", 0.9, 0.02),           # 0.02 >= 0.025 / 2: Holm keeps it
               ("3", True, "inconclusive", 0.5, 0.3),
               ("1", True, "does not hold", 0.9, 0.001), ("1", True, "holds", 0.001, 0.9),
               ("5", True, "not measured", np.nan, np.nan)])
    lines = claim_lines(t).set_index("claim")
    assert list(lines.index) == ["4", "3", "1", "5"]
    assert lines.loc["4", "verdict"] == "holds" and lines.loc["4", "why"] == "all 2 primary checks hold"
    assert lines.loc["3", "verdict"] == "inconclusive"
    assert lines.loc["3", "why"] == ("0 of 2 primary checks hold, 1 do not hold (0 after Holm's "
                                     "correction)")
    assert lines.loc["1", "verdict"] == "does not hold" and lines.loc["1", "does_not_hold_holm"] == 1
    assert lines.loc["5", "verdict"] == "not measured"
    assert claim_verdict([0.001, np.nan], [0.9, np.nan]) == "inconclusive"  # one undecided


def test_primary_checks_are_the_papers_figure_lr_and_layers():
    cfg = check_config(BASE)
    cs = checks(cfg)
    for c in cs:
        figure_lr = cfg["figure_lr"] if c.family == "net" else cfg["dln"]["figure_lr"]
        if c.lr != figure_lr:
            assert not c.primary, c
    # Claim 2 is about the standard net's stability: noisy BN vs BN's shift is secondary
    two = [c for c in cs if c.claim == "2" and c.quantity.endswith("_shift")]
    assert {c.baseline for c in two if c.primary} == {"standard"}
    assert any(not c.primary for c in two)
    # Claim 1's "trains where standard fails" picks its own lr: secondary
    assert not next(c for c in cs if c.quantity == "trained").primary
    # every claim has primary checks
    assert {c.claim for c in cs if c.primary} == {c.claim for c in cs}
