"""The scorecard's verdicts: every check of :mod:`bnopt.scorecard.checks` judged on the runs' values
(:mod:`bnopt.scorecard.values`).

A *check* compares one quantity of a *treatment* variant with a *baseline* (another variant,
or the edge of stability 2/lr) for one family of runs (``net``: the configured dataset and
model; ``dln``: the deep linear network) at one learning rate (and layer). Its effect is taken
per seed, pairing runs of the same seed (same data order): the ratio treatment / baseline for
quantities on a positive scale (loss range, relative ICS, beta, curvature, moment shift, loss),
the difference for accuracies and cosines.

**At the same training loss.** A per-step quantity (the landscape, ICS, moment shift,
curvature: ``Quantity.matched``) is compared where both runs have reached the same training
loss, not at the same step: a net that has converged has small gradients, gradient changes and
loss ranges because it sits near a minimum (:mod:`bnopt.analysis.loss_levels`). Each run's
quantity is read off its own curve against the training loss at fixed levels of the loss; for
each seed, the levels both of its runs support are compared, and the seed's effect is the mean
over them of the per-level effect (log ratio, or difference). Levels are chosen per pair of
runs, so a new seed changes no other seed's effect. A seed whose runs share no level drops out
of the check (``levels`` says which); where none is left the check is ``inconclusive``. The
per-level effects over seeds are the long table ``claims_by_loss.csv``
(:func:`scorecard_by_loss`), so a reader sees whether an effect is uniform over training. The
run-long median effect stays beside it in ``run_median_effect`` (not judged). The
edge-of-stability checks compare one run with 2(1 + mu)/lr and keep their window, "after the
first 10% of steps".

**A verdict is a statistical decision, seeds the unit.** Each seed's effect (the log of a
ratio, or a difference) is one observation; their mean and its 95% t-interval over seeds
are judged against the smallest effect of interest of the check's kind of quantity, ``delta``
(:data:`bnopt.scorecard.checks.SMALLEST_EFFECT`: the same for every claim), by the rules of
:mod:`bnopt.scorecard.decisions`:

- a claim of a difference (``lower``, ``higher``) holds when the interval lies beyond ``delta``
  on the claim's side, and does not hold when it excludes an effect that large there;
- a claim of no difference is a non-inferiority test (``not_lower``: holds when the interval
  lies above -``delta``, does not hold when below it; ``not_higher`` the mirror) or an
  equivalence test (``within``: holds when the interval lies inside (-``delta``, ``delta``),
  does not hold when wholly outside it);
- anything else is ``inconclusive``, with the number of seeds the observed spread would need.

Each one-sided decision errs at most 2.5% of the time at its boundary (a 95% two-sided
interval), at any number of seeds: ``tests/test_claims.py`` checks it by simulation
(:func:`bnopt.scorecard.decisions.decision_rates`).

``not measured``: the check's figure is off in this config, or a compared variant has no run.
``inconclusive`` also: a compared run diverged or never learned (a comparison with a network
that did not train says nothing about the claim), one seed only (no spread to judge against),
a ratio meets a value <= 0.

:func:`scorecard` turns a checked config and finished runs into the table; the rule
``scorecard`` writes it as ``results/tables/claims.csv`` and ``claims.md``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnopt.analysis.aggregate import edge_of_stability
from bnopt.analysis.loss_levels import geometric_mean, level_loss, span
from bnopt.plan.figure_specs import figures_off, needs_text
from bnopt.scorecard.checks import (
    EDGE,
    LATE_FRACTION,
    QUANTITIES,
    SMALLEST_EFFECT,
    Check,
    checks,
)
from bnopt.scorecard.decisions import fmt_values as _fmt
from bnopt.scorecard.decisions import effect_interval, judge_effects
from bnopt.scorecard.values import load_values


SHARE_OF = {"bn_gain_share": "mean_batch_acc"}  # a share's quantity, read from the runs
def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if np.isfinite(values).any() else math.nan


def _failed(runs: pd.DataFrame) -> str:
    """'standard never learned (seeds 0, 1)'-style text for the runs that did not train."""
    failed: dict[tuple, set] = {}
    for v, seed, diverged, never in zip(runs.variant, runs.seed, runs.diverged,
                                        runs.never_learned):
        if diverged or never:
            failed.setdefault((v, "diverged" if diverged else "never learned"), set()).add(seed)
    return "; ".join(f"{v} {what} (seed{'s' if len(s) > 1 else ''} "
                     f"{', '.join(str(x) for x in sorted(s))})"
                     for (v, what), s in failed.items())


def _level_span(levels: dict) -> str:
    """'0.1-1.78 (6 levels)' of a run's levels (``levels``: level -> value)."""
    return span(levels) if levels else "none"


def _matched(check: Check, q: pd.DataFrame, seeds: list):
    """A matched quantity compared at the levels of the training loss each seed's two runs
    both support: (treatment values, baseline values, row fields, per-level rows). A seed's
    value is the geometric mean (ratios) or mean (differences) of its run's values over those
    levels, so its effect is the mean of the per-level effects on the judged scale."""
    ratio = check.comparison == "ratio"
    per_level = q[q.level.notna()]
    values: dict[tuple, dict] = {}
    for v, s, k, x in zip(per_level.variant.to_numpy(), per_level.seed.to_numpy(),
                          per_level.level.to_numpy(), per_level.value.to_numpy()):
        values.setdefault((v, s), {})[int(k)] = float(x)
    tvals, bvals, spans, effects = {}, {}, [], {}
    for s in seeds:
        t, b = values.get((check.treatment, s), {}), values.get((check.baseline, s), {})
        shared = sorted(set(t) & set(b))
        if not shared:
            spans.append(f"seed {s}: none ({check.treatment} {_level_span(t)}, "
                         f"{check.baseline} {_level_span(b)})")
            continue
        spans.append(f"seed {s}: {span(shared)}")
        tv, bv = np.array([t[k] for k in shared]), np.array([b[k] for k in shared])
        if ratio:
            tvals[s], bvals[s] = geometric_mean(tv), geometric_mean(bv)
            with np.errstate(divide="ignore", invalid="ignore"):
                e = np.log(tv / bv)
        else:
            tvals[s], bvals[s] = float(tv.mean()), float(bv.mean())
            e = tv - bv
        for k, x in zip(shared, e):
            effects.setdefault(k, {})[s] = float(x)
    judged = sorted(effects)
    fields = {"progress": f"matched training loss {span(judged)}" if judged else "none shared",
              "levels": "; ".join(spans)}
    level_rows = []
    for k in sorted(judged, reverse=True):  # from high loss to low: the order of training
        per_seed = effects[k]
        m, lo, hi = effect_interval(list(per_seed.values()))
        back = math.exp if ratio else float
        level_rows.append({"loss_level": float(level_loss(k)), "seeds": " / ".join(
            map(str, per_seed)), "seeds_compared": len(per_seed),
            "seed_effects": _fmt([back(x) for x in per_seed.values()]),
            "effect": back(m), "effect_lo": back(lo) if len(per_seed) > 1 else math.nan,
            "effect_hi": back(hi) if len(per_seed) > 1 else math.nan})
    return tvals, bvals, fields, level_rows


def judge(check: Check, values: pd.DataFrame, blocked: dict | None = None) -> dict:
    """One scorecard row: ``check`` judged on ``values`` (:func:`load_values`); ``blocked``:
    the figures this config cannot draw, with the settings that are off
    (:func:`bnopt.plan.figure_specs.figures_off`)."""
    row = _blank_row(check)
    empty = judge_effects([], check.comparison, check.direction, check.margin)
    if blocked and check.figure in blocked:

        return {**row, **empty, "verdict": "not measured",
                "why": needs_text(check.figure, blocked[check.figure])}
    if check.quantity == "trained":
        return {**row, **_judge_trained(check, values)}
    if check.quantity == "bn_gain_share":
        return {**row, **_judge_share(check, values)}
    fam = values[(values.family == check.family) & (values.lr == check.lr)]
    q = fam[(fam.quantity == check.quantity) & (fam.layer == check.layer)]
    if len(fam):
        row.update(dataset=fam.dataset.iloc[0], model=fam.model.iloc[0])
    t, b, missing = _compared_runs(check, q)
    if missing:
        return {**row, **empty, "verdict": "not measured", "why": missing}
    seeds = sorted(set(t.index) & set(b.index))
    ratio = check.comparison == "ratio"

    def effects(tv, bv):
        with np.errstate(divide="ignore", invalid="ignore"):
            return tv / bv if ratio else tv - bv

    tv, bv = t.value.loc[seeds].to_numpy(), b.value.loc[seeds].to_numpy()
    if QUANTITIES[check.quantity].matched:
        med = judge_effects(effects(tv, bv), check.comparison, check.direction, check.margin)
        row.update(run_median_effect=med["effect"], run_median_lo=med["effect_lo"],
                   run_median_hi=med["effect_hi"])
        tm, bm, fields, by_level = _matched(check, q, seeds)
        row.update(fields)
        row["by_level"] = [{**{c: row[c] for c in LEVEL_KEYS}, **r} for r in by_level]
        tv = np.array([tm.get(s, math.nan) for s in seeds])
        bv = np.array([bm.get(s, math.nan) for s in seeds])
    else:
        row["progress"] = (f"after the first {LATE_FRACTION:.0%} of steps"
                           if check.quantity.endswith("_late") else
                           "last step" if check.quantity.startswith("final") else "whole run")
    row.update(seeds=" / ".join(map(str, seeds)), treatment_values=_fmt(tv),
               baseline_values=_fmt(bv), treatment_mean=_mean(tv), baseline_mean=_mean(bv))
    out = judge_effects(effects(tv, bv), check.comparison, check.direction, check.margin)
    if row["progress"] == "none shared":
        out.update(verdict="inconclusive",
                   why="the runs share no training loss: no seed's two runs both have measured "
                       "steps near one level of it (levels); measure more often "
                       "(measure_every, measure_per_decade) or train longer")
    failed = _failed(pd.concat([t.loc[seeds].reset_index(), b.loc[seeds].reset_index()],
                               ignore_index=True))
    if failed:
        out.update(verdict="inconclusive",
                   why=f"{failed}: a comparison with a network that did not train says "
                       "nothing about the claim")
    return {**row, **out}


def _blank_row(check: Check) -> dict:
    """A scorecard row with what ``check`` says and nothing measured yet."""
    return {c: "" for c in COLUMNS} | {
        "claim": check.claim, "statement": check.statement, "primary": check.primary,
        "quantity": check.quantity,
        "quantity_label": QUANTITIES[check.quantity].label, "family": check.family,
        "lr": check.lr if check.lr is not None else math.nan, "layer": check.layer or "",
        "treatment": check.treatment, "baseline": check.baseline,
        "comparison": check.comparison, "direction": check.direction, "margin": check.margin,
        "figure": check.figure, "treatment_mean": math.nan, "baseline_mean": math.nan,
        "seeds_needed": math.nan, "p_holds": math.nan, "p_not_holds": math.nan,
        "run_median_effect": math.nan, "run_median_lo": math.nan, "run_median_hi": math.nan}


def _compared_runs(check: Check, q: pd.DataFrame):
    """The run-long values of ``check``'s treatment and baseline, one row per seed, from its
    quantity's rows ``q``; the baseline ``EDGE`` is each treatment run's edge of stability.
    Third: why the check cannot be made (a variant with no run), or ''."""
    whole = q[q.level.isna()]
    t = whole[whole.variant == check.treatment].set_index("seed").sort_index()
    b = whole[whole.variant == check.baseline].set_index("seed").sort_index()
    missing = [v for v, d in ((check.treatment, t), (check.baseline, b))
               if v != EDGE and d.empty]
    if missing:
        where = f" layer {check.layer}" if check.layer else ""
        return t, b, f"no {' or '.join(missing)} run of {check.family} at lr {check.lr:g}{where}"
    if check.baseline == EDGE and (t.optimizer != "sgd").any():
        return t, b, ("the edge of stability 2(1 + momentum)/lr is SGD's; these runs train "
                      "with Adam, whose step is rescaled per parameter (its adaptive edge, "
                      "Cohen et al. 2022, is not measured here)")
    if check.baseline == EDGE:  # the edge of stability 2(1 + mu)/lr of each run
        b = t.assign(value=edge_of_stability(t.lr, t.momentum), diverged=False,
                     never_learned=False, variant=EDGE)
    return t, b, ""


def _judge_trained(check: Check, values: pd.DataFrame) -> dict:
    """Claim 1's "BN trains at a learning rate where the standard net does not": at the largest
    lr of ``check.lrs`` where every baseline run diverged or never learned, did every treatment
    run train?"""
    q = values[(values.family == check.family) & (values.quantity == "trained")]
    rule = (f"holds if, at the largest lr of {list(check.lrs)} where every {check.baseline} run "
            f"failed, every {check.treatment} run trained; does not hold if none did")
    base = {"rule": rule, "seeds_compared": 0, "effect": math.nan, "effect_lo": math.nan,
            "effect_hi": math.nan, "interval": "range of 0 seeds", "progress": "whole run",
            "threshold": "every run trained", "basis": ""}
    if not len(q):
        return {**base, "verdict": "not measured", "why": f"no {check.family} runs"}
    out = {**base, "dataset": q.dataset.iloc[0], "model": q.model.iloc[0]}
    per_lr = {lr: (q[(q.lr == lr) & (q.variant == check.treatment)].set_index("seed").value,
                   q[(q.lr == lr) & (q.variant == check.baseline)].set_index("seed").value)
              for lr in sorted(check.lrs)}
    failing = [lr for lr, (t, b) in per_lr.items() if len(b) and (b == 0).all() and len(t)]
    if not failing:
        return {**out, "verdict": "inconclusive",
                "why": f"{check.baseline} trained at some seed of every lr in "
                       f"{sorted(check.lrs)}: no lr to test; add a larger one to fig1_lrs"}
    lr = failing[-1]
    t, b = per_lr[lr]
    seeds = sorted(set(t.index) & set(b.index))
    effects = (t.loc[seeds] - b.loc[seeds]).to_numpy()
    out.update(lr=lr, seeds=" / ".join(map(str, seeds)), treatment_values=_fmt(t.loc[seeds]),
               baseline_values=_fmt(b.loc[seeds]), treatment_mean=float(t.loc[seeds].mean()),
               baseline_mean=float(b.loc[seeds].mean()), seeds_compared=len(seeds),
               effect=float(effects.mean()), effect_lo=float(effects.min()),
               effect_hi=float(effects.max()), seed_effects=_fmt(effects),
               interval=f"range of {len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
               basis=f"{int((t == 1).sum())}/{len(t)} {check.treatment} runs trained")
    if (t == 1).all():
        return {**out, "verdict": "holds", "why": ""}
    if (t == 0).all():
        return {**out, "verdict": "does not hold",
                "why": f"{check.treatment} failed at lr {lr:g} too"}
    return {**out, "verdict": "inconclusive",
            "why": f"{check.treatment} trained in some seeds at lr {lr:g}, not all"}


def _judge_share(check: Check, values: pd.DataFrame) -> dict:
    """Claim 2's "noisy BN trains almost as well as BN", as the share of BN's gain over the
    standard net (training accuracy averaged over the run) that ``check.treatment`` keeps, per
    seed: (treatment - standard) / (BN - standard). A share is undefined where BN's own gain is
    below the smallest effect of an accuracy: then there is no gain to keep."""
    q = values[values.level.isna() & (values.lr == check.lr)]
    runs = {v: q[q.variant == v].set_index("seed").sort_index()
            for v in (check.treatment, check.baseline, "standard")}
    empty = judge_effects([], check.comparison, check.direction, check.margin)
    missing = [v for v, d in runs.items() if d.empty]
    if missing:
        return {**empty, "verdict": "not measured",
                "why": f"no {' or '.join(missing)} run of {check.family} at lr {check.lr:g}"}
    seeds = sorted(set.intersection(*(set(d.index) for d in runs.values())))
    t, b, s = (runs[v].value.loc[seeds].to_numpy(dtype=float)
               for v in (check.treatment, check.baseline, "standard"))
    gain = b - s
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(gain >= SMALLEST_EFFECT["accuracy"], (t - s) / gain, np.nan)
    out = judge_effects(shares, check.comparison, check.direction, check.margin)
    out.update(seeds=" / ".join(map(str, seeds)), treatment_values=_fmt(t),
               baseline_values=_fmt(b), treatment_mean=_mean(t), baseline_mean=_mean(b),
               progress="whole run", dataset=q.dataset.iloc[0], model=q.model.iloc[0])
    small = [str(x) for x, g in zip(seeds, gain) if not g >= SMALLEST_EFFECT["accuracy"]]
    if small:
        out["why"] = (f"BN's gain over the standard net is below "
                      f"{SMALLEST_EFFECT['accuracy']:g} in seed{'s' if len(small) > 1 else ''} "
                      f"{', '.join(small)}: no gain to share there. " + out["why"]).strip()
    failed = _failed(pd.concat([d.loc[seeds].reset_index() for d in runs.values()],
                               ignore_index=True))
    if failed:
        out.update(verdict="inconclusive",
                   why=f"{failed}: a comparison with a network that did not train says "
                       "nothing about the claim")
    return out


COLUMNS = ["claim", "statement", "primary", "quantity", "quantity_label", "family", "dataset",
           "model", "lr", "layer", "treatment", "baseline", "comparison", "direction", "margin",
           "threshold", "progress", "levels", "seeds", "treatment_values", "baseline_values",
           "treatment_mean", "baseline_mean", "seed_effects", "effect", "effect_lo", "effect_hi",
           "interval", "seeds_compared", "verdict", "basis", "rule", "why", "seeds_needed",
           "p_holds", "p_not_holds", "run_median_effect", "run_median_lo", "run_median_hi",
           "figure"]
# claims_by_loss.csv: a matched check's effect at each level of the training loss
LEVEL_KEYS = ["claim", "quantity", "family", "dataset", "model", "lr", "layer", "treatment",
              "baseline", "comparison", "direction", "margin"]
LEVEL_COLUMNS = [*LEVEL_KEYS, "loss_level", "seeds", "seeds_compared", "seed_effects", "effect",
                 "effect_lo", "effect_hi"]


def judge_all(cfg: dict, meta_paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scorecard of a checked config ``cfg`` from its finished runs (``meta_paths``: their
    run.json files): one row per check, in the order of :func:`checks` (``claims.csv``), and
    the matched checks' effects per level of the training loss (``claims_by_loss.csv``)."""
    values = load_values(meta_paths)
    blocked = figures_off(cfg)
    # each check reads one (family, quantity, lr, layer), or for "trained" one (family,
    # quantity): split the table once, not once per check
    keys = ["family", "quantity", "lr", "layer"]
    parts = dict(iter(values.groupby(keys, sort=False, observed=True)))
    parts |= dict(iter(values.groupby(keys[:2], sort=False, observed=True)))
    empty = values.iloc[:0]

    def part(c: Check) -> pd.DataFrame:
        quantity = SHARE_OF.get(c.quantity, c.quantity)  # what a share is taken of
        key = (c.family, quantity) if c.lr is None else (c.family, quantity, c.lr, c.layer)
        return parts.get(key, empty)

    rows = [judge(c, part(c), blocked) for c in checks(cfg)]
    by_level = [r for row in rows for r in row.get("by_level", [])]
    return (pd.DataFrame(rows, columns=COLUMNS),
            pd.DataFrame(by_level, columns=LEVEL_COLUMNS))


def scorecard(cfg: dict, meta_paths) -> pd.DataFrame:
    """``claims.csv``: the first table of :func:`judge_all`."""
    return judge_all(cfg, meta_paths)[0]


def scorecard_by_loss(cfg: dict, meta_paths) -> pd.DataFrame:
    """``claims_by_loss.csv``: the second table of :func:`judge_all`."""
    return judge_all(cfg, meta_paths)[1]
