"""The earlier experiments scored against what their authors reported
(results/tables/reported.csv, docs/earlier-experiments.md): each published finding
(:mod:`bnopt.plan.experiments`) as comparisons between variants of the quantity its source
reported, at the layers it names, our runs' value of it per seed, and a verdict by the
scorecard's statistics (:mod:`bnopt.scorecard.decisions`): each comparison a 95% t-interval over
seeds against the smallest effect of the quantity's kind, the comparisons of a finding combined
as a claim's primary checks are (:mod:`bnopt.scorecard.claim_lines`). A finding that does not
reproduce is a result, and the table says so with the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bnopt.analysis.aggregate import read_meta, read_table
from bnopt.analysis.outcome import outcome_text
from bnopt.plan.experiments import comparison, published
from bnopt.scorecard.checks import KINDS, SMALLEST_EFFECT
from bnopt.scorecard.claim_lines import claim_verdict
from bnopt.scorecard.decisions import judge_effects

COLUMNS = ["experiment", "finding", "quantity", "published", "ours", "seeds", "verdict", "why",
           "their_settings", "our_settings", "differs"]
SETTINGS = ("dataset", "model", "optimizer", "steps", "width")
APPROXIMATED = ("dataset", "steps", "width")  # where ours may differ from theirs, and say so
VERDICT_WORDS = {"holds": "reproduced", "does not hold": "not reproduced",
                 "inconclusive": "inconclusive"}


def final_test_acc(meta_path, finding=None) -> float:
    """Test accuracy at the end of training, as a PyTorch ``model.eval()`` gives it: BN with
    its running statistics, noisy BN drawing no noise (none of the sources says otherwise)."""
    return float(read_meta(meta_path)["final_test_acc"])


def grad_norm_jitter(meta_path, finding=None) -> float:
    """How unstable the gradient's magnitude is from step to step: the median over steps of
    |log ||g_{t+1}|| - log ||g_t|||| (0 for a constant norm; log 2 for one that halves and
    doubles in turn)."""
    g = read_table(meta_path, "steps", ["grad_norm"]).grad_norm
    logs = np.log(g.to_numpy(dtype=np.float64))
    jumps = np.abs(np.diff(logs[np.isfinite(logs)]))
    return float(np.median(jumps)) if len(jumps) else float("nan")


def _ics(meta_path, finding: dict) -> pd.DataFrame:
    """The ICS rows a finding speaks of: its ``layers`` (every layer but the first where it
    names none: layer 1's ICS is 0 by definition), over its ``part`` of the run (``early``:
    the first half of the steps, ``late``: the second, ``all``)."""
    ics = read_table(meta_path, "ics", ["step", "layer", "l2", "cos"])
    layers = finding.get("layers")
    ics = ics[ics.layer.isin(layers)] if layers else ics[ics.layer >= 2]
    half = read_meta(meta_path)["steps_completed"] / 2
    part = finding.get("part", "all")
    return {"all": ics, "early": ics[ics.step < half], "late": ics[ics.step >= half]}[part]


def ics_l2(meta_path, finding: dict) -> float:
    """Absolute gradient ICS ||G - G'|| (as the sources plot it), the median over the measured
    steps of the finding's part of training and over its layers."""
    ics = _ics(meta_path, finding)
    return float(ics.l2.median()) if len(ics) else float("nan")


def ics_cos(meta_path, finding: dict) -> np.ndarray:
    """cos(G, G') per layer of the finding (in its order), the median over the measured steps
    of its part of training; NaN at a layer with none."""
    ics = _ics(meta_path, finding)
    med = ics.groupby("layer").cos.median()
    return np.array([med.get(layer, np.nan) for layer in finding["layers"]], dtype=float)


def init_distance_relative(meta_path, finding: dict) -> np.ndarray:
    """Each of the finding's layers' ||W_T - W_0|| / ||W_0|| at the run's last evaluation (every
    layer where it names none)."""
    d = read_table(meta_path, "init_distance")
    last = d[d.step == d.step.max()].set_index("layer").sort_index()
    rel = last.distance / last.init_norm
    layers = finding.get("layers") or list(rel.index)
    return np.array([rel.get(layer, np.nan) for layer in layers], dtype=float)


def unit_drift(meta_path, finding=None) -> float:
    """How far the followed units of the last hidden layer drift over training: per unit,
    |median at the last measured step - median at the first| over the unit's 15..85th
    percentile spread (its mean over the measured steps), averaged over the units. NaN where
    the run followed none."""
    path = Path(meta_path).with_name("units.parquet")
    u = read_table(meta_path, "units") if path.exists() else pd.DataFrame()
    if u.empty:
        return float("nan")
    u = u[u.layer == u.layer.max() - 1]  # the logits' layer is last
    first, last = (u[u.step == s].set_index("unit") for s in (u.step.min(), u.step.max()))
    spread = (u.q85 - u.q15).groupby(u.unit).mean()
    return float(((last.q50 - first.q50).abs() / spread).mean())


# each quantity and its kind of quantity (bnopt.scorecard.checks.SMALLEST_EFFECT: its smallest
# effect and whether it is compared as a ratio or a difference)
FINDING_QUANTITIES = {f.__name__: (f, kind) for f, kind in (
    (final_test_acc, "accuracy"), (grad_norm_jitter, "ratio"), (ics_l2, "ratio"),
    (ics_cos, "cosine"), (init_distance_relative, "ratio"), (unit_drift, "ratio"))}


def _fmt(v) -> str:
    if np.ndim(v):
        return "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
    return f"{v:.4g}"


def _checks(finding: dict, values: dict):
    """The finding's comparisons as (label, per-seed effects, direction, margin shift): one per
    pair, or per pair and layer for ``lower_every_layer``; a ``gap`` compares our per-seed
    difference with the published one."""
    kind, pairs = comparison(finding)
    for a, b in pairs:
        seeds = sorted(set(values[a]) & set(values[b]))
        x = np.array([np.atleast_1d(values[a][s]) for s in seeds], dtype=float)
        y = np.array([np.atleast_1d(values[b][s]) for s in seeds], dtype=float)
        if kind == "gap":
            pub = finding["published"]
            yield f"{a} - {b} = {pub[a] - pub[b]:+.3g} (theirs)", (x - y)[:, 0] - (pub[a] - pub[b]), "within"
        elif kind == "lower_every_layer":
            for i, layer in enumerate(finding.get("layers") or range(1, x.shape[1] + 1)):
                yield f"{a} < {b} at layer {layer}", (x[:, i], y[:, i]), "lower"
        else:
            yield f"{a} {'>' if kind == 'higher' else 'not below'} {b}", (x[:, 0], y[:, 0]), kind


def judge_finding(finding: dict, values: dict, failed: list[str]) -> dict:
    """The verdict on one finding from ``values`` (variant -> seed -> value): each comparison
    judged as a scorecard check (:func:`bnopt.scorecard.decisions.judge_effects`, the smallest
    effect of the quantity's kind), combined as a claim's primary checks: *reproduced* where
    every comparison holds, *not reproduced* where one does not after Holm's correction,
    *inconclusive* otherwise or where a compared run did not train (``failed``)."""
    kind, pairs = comparison(finding)
    missing = sorted({v for pair in pairs for v in pair} - set(values))
    if missing:
        return {"verdict": "not measured", "why": f"no runs of {', '.join(missing)}"}
    if failed:  # first: a net that did not train may leave a quantity undefined (NaN)
        return {"verdict": "inconclusive", "why": "; ".join(failed)}
    if any(np.isnan(np.asarray(x, dtype=float)).all() for v in values.values()
           for x in v.values()):
        return {"verdict": "not measured",
                "why": f"{finding['quantity']} is not recorded by these runs"}
    qkind = FINDING_QUANTITIES[finding["quantity"]][1]
    comparison_kind, margin = KINDS[qkind], SMALLEST_EFFECT[qkind]
    rows = []
    for label, effects, direction in _checks(finding, values):
        if direction == "within":  # our gap minus theirs: within the smallest accuracy effect
            r = judge_effects(effects, "difference", "within", margin)
        else:
            x, y = effects
            with np.errstate(divide="ignore", invalid="ignore"):
                e = x / y if comparison_kind == "ratio" else x - y
            r = judge_effects(e, comparison_kind, direction, margin)
        rows.append((label, r))
    verdict = claim_verdict([r["p_holds"] for _, r in rows], [r["p_not_holds"] for _, r in rows])
    why = "; ".join(f"{label}: {r['verdict']} ({r['basis'] or r['why']})" for label, r in rows)
    return {"verdict": VERDICT_WORDS[verdict], "why": why}


def reported_table(experiment: str, meta_paths) -> pd.DataFrame:
    """One row per published finding of ``experiment`` (a key of
    :func:`~bnopt.plan.experiments.published`): what they
    reported, our runs' values (seed mean and each seed), the verdict and why, and both
    settings with where ours differ. ``meta_paths``: run.json of the runs it compares."""
    if experiment not in published():
        raise ValueError(f"experiment {experiment!r}: choose one of {', '.join(published())}")
    exp = published()[experiment]
    metas = [{**read_meta(p), "_path": p} for p in meta_paths]
    ours = {k: sorted({str(m[k]) for m in metas}) for k in SETTINGS}
    theirs = exp["settings"]
    differs = "; ".join(f"{k}: ours {'/'.join(ours[k])}, theirs {theirs[k]}" for k in APPROXIMATED
                        if [str(theirs[k])] != ours[k])
    rows = []
    for f in exp["findings"]:
        variants = {v for pair in comparison(f)[1] for v in pair}
        runs = [m for m in metas if m["variant"] in variants]
        values: dict[str, dict] = {}
        for m in runs:
            values.setdefault(m["variant"], {})[m["seed"]] = \
                FINDING_QUANTITIES[f["quantity"]][0](m["_path"], f)
        failed = [t for t in (outcome_text(m) for m in runs) if t]
        pub = f["published"]
        rows.append({
            "experiment": experiment, "finding": f["finding"], "quantity": f["quantity"],
            "published": ", ".join(f"{v} {x:g}" for v, x in pub.items())
            if isinstance(pub, dict) else pub,
            "ours": ", ".join(f"{v} {_fmt(np.mean(list(s.values()), 0))} (seeds "
                              f"{', '.join(_fmt(x) for x in s.values())})"
                              for v, s in sorted(values.items())),
            "seeds": len({m["seed"] for m in runs}),
            **judge_finding(f, values, failed),
            "their_settings": ", ".join(f"{k} {v}" for k, v in theirs.items()),
            "our_settings": ", ".join(f"{k} {'/'.join(v)}" for k, v in ours.items()),
            "differs": differs or "none"})
    return pd.DataFrame(rows, columns=COLUMNS)

