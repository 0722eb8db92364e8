"""One line per claim: the verdict on the claim as a whole, from its primary checks.

A claim is judged on several checks at once (Claim 4: three landscape measures on two
families), and an error rate per check is not one per claim: with six checks each wrong 2.5% of
the time, "one of them does not hold" is wrong ~14% of the time. So the claim-level line
combines only the claim's *primary* checks (the paper's figure learning rate and layers,
``Check.primary``; the other rows are secondary: shown, not combined) and keeps each of its two
answers at the per-check error rate, 2.5%:

- **holds** when every primary check holds. An intersection-union test: the claim is wrong
  only if some check is wrong, and then that check alone says "holds" at most 2.5% of the
  time, so no correction is needed (Berger 1982);
- **does not hold** when at least one primary check does not hold after Holm's correction
  over the primary checks' p-values of "does not hold" (:func:`holm`): the chance that any
  check of a true claim is called false stays at most 2.5% (Holm 1979);
- **inconclusive** otherwise, and **not measured** where no primary check was measured.

``tests/test_claims.py`` checks both error rates by simulation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnopt.scorecard.checks import CLAIMS
from bnopt.scorecard.decisions import CONFIDENCE, p_values

ALPHA = (1 - CONFIDENCE) / 2  # each one-sided decision's error rate: 2.5%
LINE_COLUMNS = ["claim", "statement", "verdict", "primary", "measured", "holds",
                "does_not_hold", "does_not_hold_holm", "why"]


def holm(p, alpha: float = ALPHA) -> np.ndarray:
    """Holm's step-down procedure: which of the hypotheses with p-values ``p`` are rejected at
    family-wise error rate ``alpha`` (NaN counts as 1: no evidence)."""
    p = np.where(np.isnan(np.asarray(p, dtype=float)), 1.0, np.asarray(p, dtype=float))
    order = np.argsort(p, kind="stable")
    m = len(p)
    reject = np.zeros(m, dtype=bool)
    for i, j in enumerate(order):
        if p[j] >= alpha / (m - i):
            break
        reject[j] = True
    return reject


def claim_verdict(p_holds, p_not_holds, alpha: float = ALPHA):
    """The claim-level verdict from its measured primary checks' p-values (the last axis: one
    per check; leading axes broadcast, for simulation): 'holds', 'does not hold' or
    'inconclusive'. Holm rejects at least one hypothesis exactly when the smallest p is below
    alpha / m, which is all "does not hold" needs."""
    p_holds = np.nan_to_num(np.asarray(p_holds, dtype=float), nan=1.0)
    p_not = np.nan_to_num(np.asarray(p_not_holds, dtype=float), nan=1.0)
    m = p_not.shape[-1]
    fails = (p_not.min(-1) < alpha / m) if m else np.zeros(p_not.shape[:-1], bool)
    holds = (p_holds < alpha).all(-1) & (m > 0) & ~fails
    out = np.where(fails, "does not hold", np.where(holds, "holds", "inconclusive"))
    return out[()] if out.ndim else str(out)


def claim_lines(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of a scorecard ``table`` (claims.csv): its verdict from the primary
    checks, how many there are, were measured, hold, do not hold (each alone, and after Holm),
    and why, in the order of the paper."""
    rows = []
    for claim, g in table.groupby("claim", sort=False):
        primary = g[g.primary.astype(bool)]
        measured = primary[primary.verdict != "not measured"]
        holds = int((measured.verdict == "holds").sum())
        fails = int((measured.verdict == "does not hold").sum())
        if measured.empty:
            verdict, holm_fails = "not measured", 0
            why = "no primary check was measured" if len(primary) else "no primary check"
        else:
            reject = holm(measured.p_not_holds.to_numpy(dtype=float))
            holm_fails = int(reject.sum())
            verdict = claim_verdict(measured.p_holds.to_numpy(dtype=float),
                                    measured.p_not_holds.to_numpy(dtype=float))
            why = {"holds": f"all {len(measured)} primary checks hold" if len(measured) > 1
                   else "its one primary check holds",
                   "does not hold": f"{holm_fails} of {len(measured)} primary checks do not hold "
                                    f"after Holm's correction",
                   "inconclusive": f"{holds} of {len(measured)} primary checks hold, {fails} do "
                                   f"not hold ({holm_fails} after Holm's correction)"}[verdict]
            if len(measured) < len(primary):
                why += f"; {len(primary) - len(measured)} not measured"
        rows.append({"claim": claim, "statement": CLAIMS.get(claim, g.statement.iloc[0]),
                     "verdict": verdict, "primary": len(primary), "measured": len(measured),
                     "holds": holds, "does_not_hold": fails, "does_not_hold_holm": holm_fails,
                     "why": why})
    return pd.DataFrame(rows, columns=LINE_COLUMNS)


def simulate_claim(means, sd: float, seeds: int, delta: float, direction: str,
                   reps: int = 20_000, seed: int = 0) -> dict:
    """P(claim holds), P(claim does not hold), P(inconclusive) by simulation: one primary check
    per entry of ``means`` (each seed's effect ~ N(mean, sd), checks independent), all in
    ``direction`` with smallest effect ``delta``, combined by :func:`claim_verdict`."""
    means = np.asarray(means, dtype=float)
    d = np.random.default_rng(seed).normal(means[None, :, None], sd, (reps, len(means), seeds))
    p_holds, p_not = p_values(d.mean(2), d.std(2, ddof=1), seeds, delta, direction)
    verdicts = claim_verdict(p_holds, p_not)
    return {v: float((verdicts == v).mean()) for v in ("holds", "does not hold", "inconclusive")}
