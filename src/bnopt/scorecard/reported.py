"""The earlier experiments scored against what their authors reported
(results/tables/reported.csv, docs/earlier-experiments.md): each published finding
(:mod:`bnopt.plan.experiments`) as comparisons between variants of one quantity, our runs'
value of it per seed, and a verdict. A finding that does not reproduce is a result, and the
table says so with the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bnopt.analysis.aggregate import read_meta
from bnopt.analysis.outcome import outcome_text
from bnopt.plan.experiments import comparison, published

# "similar or worse" holds where the first variant's seed mean is at least this fraction of the
# second's (within 20% below counts as similar)
SIMILAR = 0.8
COLUMNS = ["experiment", "finding", "quantity", "published", "ours", "seeds", "verdict", "why",
           "their_settings", "our_settings", "differs"]
SETTINGS = ("dataset", "model", "optimizer", "steps", "width")
APPROXIMATED = ("dataset", "steps", "width")  # where ours may differ from theirs, and say so


def _folder(meta_path) -> Path:
    return Path(meta_path).parent


def final_test_acc(meta_path) -> float:
    """Test accuracy at the end of training (eval mode, the whole test split)."""
    return float(read_meta(meta_path)["final_test_acc"])


def grad_norm_jitter(meta_path) -> float:
    """How unstable the gradient's magnitude is from step to step: the median over steps of
    |log ||g_{t+1}|| - log ||g_t|||| (0 for a constant norm; log 2 for one that halves and
    doubles in turn)."""
    g = pd.read_parquet(_folder(meta_path) / "steps.parquet", columns=["grad_norm"]).grad_norm
    logs = np.log(g.to_numpy(dtype=np.float64))
    jumps = np.abs(np.diff(logs[np.isfinite(logs)]))
    return float(np.median(jumps)) if len(jumps) else float("nan")


def _ics_relative(meta_path, part: str) -> float:
    ics = pd.read_parquet(_folder(meta_path) / "ics.parquet").query("layer >= 2")
    half = read_meta(meta_path)["steps_completed"] / 2
    ics = {"all": ics, "early": ics[ics.step < half], "late": ics[ics.step >= half]}[part]
    return float((ics.l2 / ics.grad_norm).median()) if len(ics) else float("nan")


def ics_relative(meta_path) -> float:
    """Gradient ICS relative to the gradient, ||G - G'|| / ||G||, median over the measured steps
    and layers 2..L (layer 1's is 0 by definition)."""
    return _ics_relative(meta_path, "all")


def ics_relative_early(meta_path) -> float:
    """:func:`ics_relative` over the first half of the run's steps."""
    return _ics_relative(meta_path, "early")


def ics_relative_late(meta_path) -> float:
    """:func:`ics_relative` over the second half of the run's steps."""
    return _ics_relative(meta_path, "late")


def init_distance_relative(meta_path) -> np.ndarray:
    """Each layer's ||W_T - W_0|| / ||W_0|| at the run's last evaluation, by layer."""
    d = pd.read_parquet(_folder(meta_path) / "init_distance.parquet")
    last = d[d.step == d.step.max()].sort_values("layer")
    return (last.distance / last.init_norm).to_numpy(dtype=np.float64)


def unit_drift(meta_path) -> float:
    """How far the followed units of the last hidden layer drift over training: per unit,
    |median at the last measured step - median at the first| over the unit's 15..85th
    percentile spread (its mean over the measured steps), averaged over the units. NaN where
    the run followed none."""
    u = pd.read_parquet(_folder(meta_path) / "units.parquet") \
        if (_folder(meta_path) / "units.parquet").exists() else pd.DataFrame()
    if u.empty:
        return float("nan")
    u = u[u.layer == u.layer.max() - 1]  # the logits' layer is last
    first, last = (u[u.step == s].set_index("unit") for s in (u.step.min(), u.step.max()))
    spread = (u.q85 - u.q15).groupby(u.unit).mean()
    return float(((last.q50 - first.q50).abs() / spread).mean())


FINDING_QUANTITIES = {f.__name__: f for f in (final_test_acc, grad_norm_jitter, ics_relative,
                                      ics_relative_early, ics_relative_late,
                                      init_distance_relative, unit_drift)}


def _pair_status(a: dict, b: dict, kind: str) -> tuple[str, bool]:
    """('holds' | 'fails' | 'mixed', whether the seed means satisfy it) of one comparison of
    per-seed values ``a`` against ``b`` (paired by seed)."""
    def ok(x, y):
        if kind == "higher":
            return np.all(x > y)
        if kind == "not_lower":
            return np.all(x >= SIMILAR * y)
        return np.all(np.asarray(x) < np.asarray(y))  # lower_every_layer
    seeds = sorted(set(a) & set(b))
    per_seed = [bool(ok(a[s], b[s])) for s in seeds]
    mean_ok = bool(ok(np.mean([a[s] for s in seeds], 0), np.mean([b[s] for s in seeds], 0)))
    status = "holds" if all(per_seed) and mean_ok else (
        "fails" if not any(per_seed) and not mean_ok else "mixed")
    return status, mean_ok


def _fmt(v) -> str:
    if np.ndim(v):
        return "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
    return f"{v:.4g}"


def judge_finding(finding: dict, values: dict, failed: list[str]) -> dict:
    """The verdict on one finding from ``values`` (variant -> seed -> value): reproduced where
    every comparison holds in the seed means and in every seed, not reproduced where every one
    fails so, inconclusive otherwise or where a compared run did not train (``failed``)."""
    kind, pairs = comparison(finding)
    missing = sorted({v for pair in pairs for v in pair} - set(values))
    if missing:
        return {"verdict": "not measured", "why": f"no runs of {', '.join(missing)}"}
    if failed:  # first: a net that did not train may leave a quantity undefined (NaN)
        return {"verdict": "inconclusive", "why": "; ".join(failed)}
    if any(np.isnan(np.asarray(x, dtype=float)).any() for v in values.values() for x in v.values()):
        return {"verdict": "not measured",
                "why": f"{finding['quantity']} is not recorded by these runs"}
    word = {"higher": ">", "not_lower": f">= {SIMILAR:g} x", "lower_every_layer":
            "< at every layer"}[kind]
    statuses = []
    for a, b in pairs:
        status, _ = _pair_status(values[a], values[b], kind)
        statuses.append((f"{a} {word} {b}", status))
    why = "; ".join(f"{text}: {status} ({'every seed' if status != 'mixed' else 'seeds differ'})"
                    for text, status in statuses)
    verdict = ("reproduced" if all(s == "holds" for _, s in statuses) else
               "not reproduced" if all(s == "fails" for _, s in statuses) else "inconclusive")
    return {"verdict": verdict, "why": why}


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
            values.setdefault(m["variant"], {})[m["seed"]] = FINDING_QUANTITIES[f["quantity"]](m["_path"])
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

