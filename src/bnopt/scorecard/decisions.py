"""The scorecard's decision rules, in one place: a check's per-seed effects (log ratios, or
differences; a share of BN's gain against 1) judged by their mean's 95% t-interval over seeds
against the smallest effect of interest of the check's kind of quantity
(:data:`bnopt.scorecard.checks.SMALLEST_EFFECT`), the one-sided p-values behind each decision
(which :mod:`bnopt.scorecard.claim_lines` combines), the seeds an undecided check would need, and
the rules' error rates by simulation (tests/test_claims.py, docs/scorecard.md).
:mod:`bnopt.scorecard.verdicts` applies them to the runs."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from bnopt.scorecard.checks import DIRECTIONS

CONFIDENCE = 0.95  # the two-sided interval every verdict reads: 2.5% error per one-sided decision


def no_effect(comparison: str) -> float:
    """Where "no effect" lies: a ratio of 1, a difference of 0, all of BN's gain (a share of 1)."""
    return 0.0 if comparison == "difference" else 1.0


def delta_of(comparison: str, margin: float) -> float:
    """The smallest effect on the scale the effects are judged on: log(factor) for a ratio."""
    return math.log(margin) if comparison == "ratio" else float(margin)


def band(comparison: str, margin: float) -> tuple[float, float]:
    """The "no effect" band on the effect's own scale: [1/margin, margin] for a ratio,
    [-margin, margin] for a difference."""
    if comparison == "ratio":
        return 1 / margin, margin
    e0 = no_effect(comparison)
    return e0 - margin, e0 + margin


def rule_text(comparison: str, direction: str, margin: float) -> str:
    """Where the 95% interval must lie for the check to hold, in a few symbols: '< 0.8',
    '> 0.02', 'in (0.8, 1.25)'."""
    lo, hi = band(comparison, margin)
    return {"lower": f"< {lo:.3g}", "higher": f"> {hi:.3g}", "not_lower": f"> {lo:.3g}",
            "not_higher": f"< {hi:.3g}", "within": f"in ({lo:.3g}, {hi:.3g})"}[direction]


def decide(lo, hi, delta: float, direction: str):
    """(holds, does not hold) of 95% intervals [lo, hi] on the judged scale (arrays work)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if direction == "lower":
        return hi < -delta, lo > -delta
    if direction == "higher":
        return lo > delta, hi < delta
    if direction == "not_lower":
        return lo > -delta, hi < -delta
    if direction == "not_higher":
        return hi < delta, lo > delta
    return (lo > -delta) & (hi < delta), (lo > delta) | (hi < -delta)  # within


def effect_interval(d) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-seed effects ``d`` (log ratios or differences) and its
    95% t-interval; lo = hi = mean with one seed."""
    d = np.asarray(d, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return m, m - h, m + h


def _distance(m: float, delta: float, direction: str) -> float:
    """How far the mean lies from the boundary the interval must clear to decide."""
    if direction in ("lower", "not_lower"):
        return abs(m + delta)
    if direction in ("higher", "not_higher"):
        return abs(m - delta)
    return abs(delta - abs(m))


def seeds_needed(m: float, sd: float, delta: float, direction: str, cap: int = 1000) -> int | None:
    """The fewest seeds whose 95% interval, at this mean and spread, would clear the boundary
    (decide the check one way or the other); None beyond ``cap``."""
    dist = _distance(m, delta, direction)
    if not dist > 0:
        return None
    if sd == 0:
        return 2
    n = np.arange(2, cap + 1)
    ok = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / np.sqrt(n) < dist
    return int(n[ok][0]) if ok.any() else None


def decision_rates(mean: float, sd: float, seeds: int, delta: float, direction: str,
                   reps: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """(P(holds), P(does not hold)) of the rule when each seed's effect is drawn from
    N(``mean``, ``sd``), by simulation: the error rate where the claim is false and the power
    where it is true (tests/test_claims.py, docs/scorecard.md)."""
    d = np.random.default_rng(seed).normal(mean, sd, (reps, seeds))
    m = d.mean(1)
    h = stats.t.ppf(0.5 + CONFIDENCE / 2, seeds - 1) * d.std(1, ddof=1) / math.sqrt(seeds)
    holds, fails = decide(m - h, m + h, delta, direction)
    return float(holds.mean()), float(fails.mean())


def p_values(m, sd, n: int, delta: float, direction: str):
    """(p of "holds", p of "does not hold"): the one-sided t-tests behind :func:`decide` for
    ``n`` seeds with mean ``m`` and spread ``sd`` on the judged scale (floats or arrays). A
    verdict holds exactly where its p is below (1 - CONFIDENCE) / 2; the claim-level line
    (:mod:`bnopt.scorecard.claim_lines`) combines them. NaN with fewer than 2 seeds."""
    m, sd = np.asarray(m, dtype=float), np.asarray(sd, dtype=float)
    if n < 2:
        return np.full(m.shape, np.nan)[()], np.full(m.shape, np.nan)[()]
    se = sd / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):  # +-inf where the seeds agree exactly
        below, above = (m + delta) / se, (m - delta) / se  # against either boundary
    cdf = lambda z: stats.t.cdf(z, n - 1)  # noqa: E731
    sf = lambda z: stats.t.sf(z, n - 1)  # noqa: E731
    ps = {"lower": (cdf(below), sf(below)), "not_lower": (sf(below), cdf(below)),
          "higher": (sf(above), cdf(above)), "not_higher": (cdf(above), sf(above)),
          "within": (np.maximum(sf(below), cdf(above)), np.minimum(sf(above), cdf(below)))}
    # a mean exactly on a boundary with no spread: no evidence either way
    return tuple(np.where(np.isnan(x) & np.isfinite(m), 1.0, x)[()] for x in ps[direction])


def judge_effects(effects, comparison: str, direction: str, margin: float) -> dict:
    """The verdict on per-seed ``effects`` (ratios or differences, one per seed) against the
    smallest effect of interest ``margin`` (a factor for a ratio, an amount for a difference),
    with the estimate (geometric mean of ratios, mean of differences), its 95% interval, and the
    rule that gave it. The one place the rules live (the module's docstring)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose one of {', '.join(DIRECTIONS)}")
    e = np.asarray(effects, dtype=float)
    e = e[np.isfinite(e)]
    n = len(e)
    need = rule_text(comparison, direction, margin)
    out = {"seeds_compared": n, "effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan,
           "seed_effects": fmt_values(e), "interval": f"95% t-interval of {n} seed{'s' if n != 1 else ''}",
           "threshold": need, "basis": "", "seeds_needed": math.nan, "p_holds": math.nan,
           "p_not_holds": math.nan,
           "rule": f"holds if the 95% interval of the mean {'difference' if comparison == 'difference' else comparison} "
                   f"is {need}; does not hold if it excludes that"}
    if n == 0:
        return {**out, "verdict": "inconclusive",
                "why": "no seed has a finite value on both sides (a run written before this "
                       "quantity was measured has none: retrain it)"}
    if comparison == "ratio" and (e <= 0).any():
        return {**out, "verdict": "inconclusive",
                "why": "a value is <= 0, so the ratio is undefined on a log scale"}
    d = np.log(e) if comparison == "ratio" else e - no_effect(comparison)
    m, lo, hi = effect_interval(d)
    back = np.exp if comparison == "ratio" else (lambda x: x + no_effect(comparison))
    out.update(effect=float(back(m)), effect_lo=float(back(lo)), effect_hi=float(back(hi)))
    if n == 1:
        return {**out, "verdict": "inconclusive",
                "why": "1 seed: no spread over seeds to judge the effect against; train 3 or more"}
    delta = delta_of(comparison, margin)
    holds, fails = (bool(x) for x in decide(lo, hi, delta, direction))
    out["p_holds"], out["p_not_holds"] = (float(x) for x in p_values(
        m, float(d.std(ddof=1)), n, delta, direction))
    out["basis"] = f"95% interval [{back(lo):.3g}, {back(hi):.3g}], needs {need}"
    if holds or fails:
        return {**out, "verdict": "holds" if holds else "does not hold", "why": ""}
    more = seeds_needed(m, float(d.std(ddof=1)), delta, direction)
    out["seeds_needed"] = float(more) if more else math.nan
    return {**out, "verdict": "inconclusive",
            "why": f"the 95% interval [{back(lo):.3g}, {back(hi):.3g}] is not {need} and does not "
                   f"exclude it; at this spread about {more} seeds would decide"
                   if more else f"the 95% interval [{back(lo):.3g}, {back(hi):.3g}] straddles "
                   f"the boundary and its mean sits on it: no number of seeds would decide"}


def fmt_values(values) -> str:
    """'0.1 / 0.2' (per seed); empty where no value is finite."""
    values = np.asarray(values, dtype=float)
    return " / ".join(f"{v:.4g}" for v in values) if np.isfinite(values).any() else ""
