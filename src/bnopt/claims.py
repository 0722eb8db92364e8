"""The reproduction scorecard: every claim of the paper judged from the runs.

A *check* compares one quantity of a *treatment* variant with a *baseline* (another variant,
or the edge of stability 2/lr) for one family of runs (``net``: the configured dataset and
model; ``dln``: the deep linear network) at one learning rate (and layer). Its effect is taken
per seed, pairing runs of the same seed (same data order): the ratio treatment / baseline for
quantities on a positive scale (loss range, ICS, beta, curvature, moment shift), the difference
for accuracies and cosines. Over the seeds the effect gets the band every figure draws
(:func:`bnopt.aggregate.seed_interval`: the 95% t-interval with 3 or more seeds, the range
with 2, none with 1; ratios are averaged and banded on a log scale, i.e. a geometric mean).

The verdict rules are written once, in :func:`judge_effects` and :func:`judge`:

- ``not measured``: the check's figure is off in this config (its measurement is 0), or a
  compared variant has no run at that learning rate;
- ``inconclusive``: a compared run diverged or never learned (a comparison with a network
  that did not train says nothing about the claim), no seed has a finite value on both
  sides, a ratio meets a value <= 0, only one seed (no spread to judge an effect against), or
  the seed interval straddles the claim's threshold;
- otherwise ``holds`` / ``does not hold`` by the claim's direction: ``lower`` (holds when the
  whole interval is below "no effect": 1 for a ratio, 0 for a difference; does not hold when
  it is at or above it), ``higher`` (the mirror), ``not_lower`` (holds when the interval's
  low end is at or above "no effect" minus the margin; does not hold when its high end is
  below it), ``not_higher`` (the mirror), ``within`` (a ratio to 2/lr: holds when the interval
  lies within [1/f, f], does not hold when it lies wholly outside).

:func:`scorecard` turns a checked config and finished runs into the table; the rule
``scorecard`` writes it as ``results/tables/claims.csv`` and ``claims.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bnopt.aggregate import (band_label, landscape_summary, read_meta, run_medians,
                             run_tables, seed_interval)

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")
DIRECTIONS = ("lower", "higher", "not_lower", "not_higher", "within")
EDGE = "2/lr"          # the baseline of the edge-of-stability checks
EDGE_FACTOR = 2.0      # "at the edge": within this factor of 2(1 + mu)/lr
LATE_FRACTION = 0.1    # "after the first 10% of steps"
ALMOST_AS_WELL = 0.05  # Claim 2: "trains almost as well": training accuracy at most this lower


@dataclass(frozen=True)
class Quantity:
    label: str
    comparison: str  # 'ratio' or 'difference'


# What a check can compare: per run, one number (per layer where ``layer`` is given).
QUANTITIES = {
    "final_test_acc": Quantity("test accuracy (eval mode, last step)", "difference"),
    "final_batch_acc": Quantity("training accuracy (batch, training mode, last 1%)", "difference"),
    "mean_batch_acc": Quantity("training accuracy averaged over the run (batch, training mode)",
                               "difference"),
    "trained": Quantity("runs that trained (fraction of seeds)", "difference"),
    "loss_range": Quantity("loss range along the gradient (median)", "ratio"),
    "grad_pred": Quantity("gradient change along the gradient (median of max)", "ratio"),
    "beta_smoothness": Quantity("effective beta-smoothness (median)", "ratio"),
    "ics_l2": Quantity("ICS ||G - G'|| (median)", "ratio"),
    "ics_cos": Quantity("ICS cos(G, G') (median)", "difference"),
    "mean_shift": Quantity("per-unit mean shift between steps (median)", "ratio"),
    "var_shift": Quantity("per-unit variance shift between steps (median)", "ratio"),
    "beta_late": Quantity("effective beta after the first 10% (median)", "ratio"),
    "batch_sharpness_late": Quantity("batch sharpness after the first 10% (median)", "ratio"),
    "lambda_max_late": Quantity("top Hessian eigenvalue after the first 10% (median)", "ratio"),
}
LAYERED = ("ics_l2", "ics_cos", "mean_shift", "var_shift")


@dataclass(frozen=True)
class Check:
    claim: str        # "1".."5" (the paper's), or "EoS", "curvature", "normalisers" (ours)
    statement: str    # the claim, short
    quantity: str     # a key of QUANTITIES
    family: str       # 'net' (the configured dataset and model) or 'dln'
    lr: float | None  # None: the check picks its lr (Claim 1's "trains where standard fails")
    treatment: str
    baseline: str     # a variant, or EDGE
    direction: str    # one of DIRECTIONS
    figure: str       # the figure that shows it: where that figure is off, so is the check
    layer: int = 0
    # not_lower / not_higher: how far past "no effect" still counts (a difference, or a
    # fraction of a ratio); within: the factor around 2/lr
    margin: float = 0.0
    lrs: tuple = ()   # the lrs Claim 1's "trains where standard fails" looks at

    @property
    def comparison(self) -> str:
        return QUANTITIES[self.quantity].comparison


CLAIMS = {
    "1": "BatchNorm trains faster and generalises better",
    "2": "Noisy BN trains almost as well as BN although its inputs are unstable",
    "3": "BN does not reduce internal covariate shift (Definition 2.1)",
    "4": "BN makes the landscape smoother",
    "5": "l_p normalisations smooth the landscape like BN",
    "EoS": "Beyond the paper: SGD holds the curvature along its gradient at 2/lr",
    "curvature": "Beyond the paper: BN lowers the top Hessian eigenvalue after the first 10%",
    "normalisers": "Beyond the paper: LayerNorm, GroupNorm, weight norm are no rougher than BN",
}
LANDSCAPE = ("loss_range", "grad_pred", "beta_smoothness")


def checks(cfg: dict) -> list[Check]:
    """Every check a checked config ``cfg`` asks for, at the figures' learning rates and
    layers (so a check and the figure that shows it always agree)."""
    from bnopt.config import figure_specs

    spec = {fig: kwargs for fig, (_, kwargs) in figure_specs(cfg).items()}
    lr, dlr = cfg["figure_lr"], cfg["dln"]["figure_lr"]
    out = []

    def add(claim, quantity, family, rate, treatment, baseline, direction, figure, **kw):
        out.append(Check(claim, CLAIMS[claim], quantity, family, rate, treatment, baseline,
                         direction, figure, **kw))

    for rate in spec["fig1_accuracy"]["lrs"]:
        add("1", "final_test_acc", "net", rate, "batchnorm", "standard", "higher", "fig1_accuracy")
        # "trains faster": the area under the training curve (the final training accuracy of
        # both nets saturates at 1, where a tie says nothing about speed)
        add("1", "mean_batch_acc", "net", rate, "batchnorm", "standard", "higher",
            "fig1_accuracy")
    add("1", "trained", "net", None, "batchnorm", "standard", "higher", "fig1_accuracy",
        lrs=tuple(spec["fig1_accuracy"]["lrs"]))
    add("2", "final_batch_acc", "net", lr, "noisy_batchnorm", "batchnorm", "not_lower",
        "fig2_noisy_bn", margin=ALMOST_AS_WELL)
    for layer in spec["fig8_activation_shift"]["layers"]:
        for q in ("mean_shift", "var_shift"):
            add("2", q, "net", lr, "noisy_batchnorm", "batchnorm", "higher",
                "fig8_activation_shift", layer=layer)
    for fam, fig in (("net", "fig3_ics"), ("dln", "fig3_ics_dln")):
        for rate in spec[fig]["lrs"]:
            for layer in spec[fig]["layers"]:
                add("3", "ics_l2", fam, rate, "batchnorm", "standard", "not_lower", fig, layer=layer)
                add("3", "ics_cos", fam, rate, "batchnorm", "standard", "not_higher", fig,
                    layer=layer)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for q in LANDSCAPE:
            add("4", q, fam, rate, "batchnorm", "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig12_lp_vgg"), ("dln", dlr, "fig13_lp_dln")):
        for v in ("l1", "l2", "linf"):
            for q in LANDSCAPE:
                add("5", q, fam, rate, v, "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for v in ("standard", "batchnorm"):
            add("EoS", "beta_late", fam, rate, v, EDGE, "within", fig, margin=EDGE_FACTOR)
    for fam, rate in (("net", lr), ("dln", dlr)):
        for v in ("standard", "batchnorm"):
            add("EoS", "batch_sharpness_late", fam, rate, v, EDGE, "within", "fig16_curvature",
                margin=EDGE_FACTOR)
    for fam, rate in (("net", lr), ("dln", dlr)):
        add("curvature", "lambda_max_late", fam, rate, "batchnorm", "standard", "lower",
            "fig16_curvature")
    for fam, rate, fig in (("net", lr, "fig14_normalisers_vgg"),
                           ("dln", dlr, "fig15_normalisers_dln")):
        for v in ("layernorm", "groupnorm", "weightnorm"):
            for q in LANDSCAPE:
                add("normalisers", q, fam, rate, v, "batchnorm", "not_higher", fig)
    return out


def scorecard_runs(cfg: dict) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of every run the checks of ``cfg`` compare, where
    their figure is on: what the rule ``scorecard`` needs."""
    from bnopt.config import family_runs, figure_blockers

    blocked = figure_blockers(cfg)
    runs = []
    for c in checks(cfg):
        if c.figure in blocked:
            continue
        variants = [v for v in (c.treatment, c.baseline) if v != EDGE]
        runs += family_runs(cfg, c.family, variants, c.lrs or [c.lr])
    return list(dict.fromkeys(runs))


# --- per-run values ----------------------------------------------------------------------------

def _late(df: pd.DataFrame, steps: int) -> pd.DataFrame:
    return df[df.step >= LATE_FRACTION * steps]


def run_values(meta_path) -> list[dict]:
    """Every quantity of QUANTITIES for one finished run: rows of (quantity, layer, value);
    layer 0 for a quantity of the whole network. NaN where the run measured nothing."""
    meta = read_meta(meta_path)
    tables = run_tables(meta_path, ("probes", "ics", "hessian", "activations", "steps"))
    med = run_medians(meta_path, tables)
    land = landscape_summary(tables["probes"])
    hess = tables["hessian"]
    steps = int(meta["steps"])
    rows = [{"quantity": q, "layer": 0, "value": float(med[q])} for q in LANDSCAPE]
    rows += [{"quantity": q, "layer": 0, "value": float(meta[q])}
             for q in ("final_test_acc", "final_batch_acc")]
    acc = tables["steps"].accuracy
    rows.append({"quantity": "mean_batch_acc", "layer": 0,
                 "value": math.nan if meta["diverged"] else float(acc.mean())})
    trained = not (meta["diverged"] or meta["never_learned"])
    rows.append({"quantity": "trained", "layer": 0, "value": float(trained)})
    rows.append({"quantity": "beta_late", "layer": 0,
                 "value": float(_late(land, steps).beta_max.median())})
    late = _late(hess, steps)
    rows.append({"quantity": "batch_sharpness_late", "layer": 0,
                 "value": float(late.batch_sharpness.median())})
    rows.append({"quantity": "lambda_max_late", "layer": 0,
                 "value": float(late.lambda_max.median())})
    ics = tables["ics"].groupby("layer")[["l2", "cos"]].median()
    for layer, r in ics.iterrows():
        rows += [{"quantity": "ics_l2", "layer": int(layer), "value": float(r.l2)},
                 {"quantity": "ics_cos", "layer": int(layer), "value": float(r.cos)}]
    acts = tables["activations"].dropna(subset=["mean_shift"])
    for layer, r in acts.groupby("layer")[["mean_shift", "var_shift"]].median().iterrows():
        rows += [{"quantity": "mean_shift", "layer": int(layer), "value": float(r.mean_shift)},
                 {"quantity": "var_shift", "layer": int(layer), "value": float(r.var_shift)}]
    ident = {"family": "dln" if meta["model"] == "dln" else "net", "dataset": meta["dataset"],
             "model": meta["model"], "variant": meta["variant"], "lr": float(meta["lr"]),
             "seed": int(meta["seed"]), "diverged": bool(meta["diverged"]),
             "never_learned": bool(meta["never_learned"]),
             "momentum": float(meta.get("momentum", 0.0))}
    return [{**ident, **r} for r in rows]


def load_values(meta_paths) -> pd.DataFrame:
    """:func:`run_values` of many runs, one row per (run, quantity, layer)."""
    rows = [r for p in meta_paths for r in run_values(p)]
    cols = ["family", "dataset", "model", "variant", "lr", "seed", "diverged", "never_learned",
            "momentum", "quantity", "layer", "value"]
    return pd.DataFrame(rows, columns=cols)


# --- the verdict rules ------------------------------------------------------------------------

def no_effect(comparison: str) -> float:
    return 1.0 if comparison == "ratio" else 0.0


def threshold(comparison: str, direction: str, margin: float = 0.0) -> float | None:
    """The value a claim's seed interval is judged against: "no effect" for lower / higher,
    moved by the margin for not_lower / not_higher (a difference, or a fraction of a ratio);
    None for within (judged against [1/margin, margin])."""
    e0 = no_effect(comparison)
    shift = {"lower": 0.0, "higher": 0.0, "not_lower": -margin, "not_higher": margin}.get(direction)
    if shift is None:
        return None
    return e0 * (1 + shift) if comparison == "ratio" else e0 + shift


def judge_effects(effects, comparison: str, direction: str, margin: float = 0.0) -> dict:
    """The verdict on per-seed ``effects`` (ratios or differences, one per seed), with the
    estimate, its seed interval and the rule that gave it. The one place the rules live."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose one of {', '.join(DIRECTIONS)}")
    e = np.asarray(effects, dtype=float)
    e = e[np.isfinite(e)]
    out = {"seeds_compared": len(e), "effect": math.nan, "effect_lo": math.nan,
           "effect_hi": math.nan, "interval": band_label(len(e)) if len(e) else "none"}
    level = threshold(comparison, direction, margin)
    if direction == "within":
        rule = (f"holds if the seed interval of the ratio lies within [1/{margin:g}, {margin:g}]; "
                "does not hold if it lies wholly outside")
    else:
        side = {"lower": "below", "higher": "above", "not_lower": "at or above",
                "not_higher": "at or below"}[direction]
        what = "ratio" if comparison == "ratio" else "difference"
        rule = (f"holds if the seed interval of the {what} lies {side} {level:g}; does not "
                "hold if it lies wholly on the other side")
    out["rule"] = rule
    if len(e) == 0:
        return {**out, "verdict": "inconclusive", "why": "no seed has a finite value on both sides"}
    if comparison == "ratio" and (e <= 0).any():
        return {**out, "verdict": "inconclusive",
                "why": "a value is <= 0, so the ratio is undefined on a log scale"}
    x = np.log(e) if comparison == "ratio" else e
    lo, hi = seed_interval(x)
    est = float(x.mean())
    if comparison == "ratio":
        est, lo, hi = math.exp(est), math.exp(lo), math.exp(hi)
    out.update(effect=est, effect_lo=lo, effect_hi=hi)
    if len(e) == 1:
        return {**out, "verdict": "inconclusive",
                "why": "1 seed: no spread over seeds to judge the effect against; train 2 or more"}
    if direction == "within":
        holds = 1 / margin <= lo and hi <= margin
        fails = hi < 1 / margin or lo > margin
    else:
        # an upward claim is the mirror of a downward one: judge (-hi, -lo) against -level
        up = direction in ("higher", "not_lower")
        a, b, t = (-hi, -lo, -level) if up else (lo, hi, level)
        if direction in ("lower", "higher"):  # strict: "no effect" itself does not hold
            holds, fails = b < t, a >= t
        else:  # not_lower / not_higher: the threshold itself holds
            holds, fails = b <= t, a > t
    verdict = "holds" if holds else "does not hold" if fails else "inconclusive"
    why = "the seed interval straddles the threshold" if verdict == "inconclusive" else ""
    return {**out, "verdict": verdict, "why": why}


def _fmt(values) -> str:
    return " / ".join(f"{v:.4g}" for v in values)


def _failed(runs: pd.DataFrame) -> str:
    """'standard never learned (seeds 0, 1)'-style text for the runs that did not train."""
    parts = []
    for (variant, what), g in (runs.assign(what=np.where(runs.diverged, "diverged",
                                                         "never learned"))
                               [runs.diverged | runs.never_learned]
                               .groupby(["variant", "what"], sort=False)):
        seeds = ", ".join(str(s) for s in sorted(g.seed.unique()))
        parts.append(f"{variant} {what} (seed{'s' if g.seed.nunique() > 1 else ''} {seeds})")
    return "; ".join(parts)


def judge(check: Check, values: pd.DataFrame, blocked: dict | None = None) -> dict:
    """One scorecard row: ``check`` judged on ``values`` (:func:`load_values`)."""
    row = {"claim": check.claim, "statement": check.statement, "quantity": check.quantity,
           "quantity_label": QUANTITIES[check.quantity].label, "family": check.family,
           "dataset": "", "model": "", "lr": check.lr if check.lr is not None else math.nan,
           "layer": check.layer or "", "treatment": check.treatment, "baseline": check.baseline,
           "comparison": check.comparison, "direction": check.direction,
           "margin": check.margin, "figure": check.figure, "seeds": "",
           "treatment_values": "", "baseline_values": "", "treatment_mean": math.nan,
           "baseline_mean": math.nan}
    if blocked and check.figure in blocked:
        why = blocked[check.figure].split(", but this config")[0]
        return {**row, **judge_effects([], check.comparison, check.direction, check.margin),
                "verdict": "not measured", "why": why}
    if check.quantity == "trained":
        return {**row, **_judge_trained(check, values)}
    fam = values[(values.family == check.family) & (values.lr == check.lr)]
    q = fam[(fam.quantity == check.quantity) & (fam.layer == check.layer)]
    t = q[q.variant == check.treatment].set_index("seed").sort_index()
    b = q[q.variant == check.baseline].set_index("seed").sort_index()
    if len(fam):
        row.update(dataset=fam.dataset.iloc[0], model=fam.model.iloc[0])
    missing = [v for v, d in ((check.treatment, t), (check.baseline, b))
               if v != EDGE and d.empty]
    if missing:
        where = f" layer {check.layer}" if check.layer else ""
        return {**row, **judge_effects([], check.comparison, check.direction, check.margin),
                "verdict": "not measured",
                "why": f"no {' or '.join(missing)} run of {check.family} at lr {check.lr:g}{where}"}
    if check.baseline == EDGE:  # the edge of stability 2(1 + mu)/lr of each run
        b = t.assign(value=2 * (1 + t.momentum) / t.lr, diverged=False, never_learned=False,
                     variant=EDGE)
    seeds = sorted(set(t.index) & set(b.index))
    row.update(seeds=" / ".join(map(str, seeds)), treatment_values=_fmt(t.value.loc[seeds]),
               baseline_values=_fmt(b.value.loc[seeds]),
               treatment_mean=float(t.value.loc[seeds].mean()),
               baseline_mean=float(b.value.loc[seeds].mean()))
    tv, bv = t.value.loc[seeds].to_numpy(), b.value.loc[seeds].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        effects = tv / bv if check.comparison == "ratio" else tv - bv
    out = judge_effects(effects, check.comparison, check.direction, check.margin)
    failed = _failed(pd.concat([t.loc[seeds].reset_index(), b.loc[seeds].reset_index()],
                               ignore_index=True))
    if failed:
        out.update(verdict="inconclusive",
                   why=f"{failed}: a comparison with a network that did not train says "
                       "nothing about the claim")
    return {**row, **out}


def _judge_trained(check: Check, values: pd.DataFrame) -> dict:
    """Claim 1's "BN trains at a learning rate where the standard net does not": at the largest
    lr of ``check.lrs`` where every baseline run diverged or never learned, did every treatment
    run train?"""
    q = values[(values.family == check.family) & (values.quantity == "trained")]
    rule = (f"holds if, at the largest lr of {list(check.lrs)} where every {check.baseline} run "
            f"failed, every {check.treatment} run trained; does not hold if none did")
    base = {"rule": rule, "seeds_compared": 0, "effect": math.nan, "effect_lo": math.nan,
            "effect_hi": math.nan, "interval": "none"}
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
    lo, hi = seed_interval(effects)
    out.update(lr=lr, seeds=" / ".join(map(str, seeds)), treatment_values=_fmt(t.loc[seeds]),
               baseline_values=_fmt(b.loc[seeds]), treatment_mean=float(t.loc[seeds].mean()),
               baseline_mean=float(b.loc[seeds].mean()), seeds_compared=len(seeds),
               effect=float(effects.mean()), effect_lo=lo, effect_hi=hi,
               interval=band_label(len(seeds)))
    if (t == 1).all():
        return {**out, "verdict": "holds", "why": ""}
    if (t == 0).all():
        return {**out, "verdict": "does not hold",
                "why": f"{check.treatment} failed at lr {lr:g} too"}
    return {**out, "verdict": "inconclusive",
            "why": f"{check.treatment} trained in some seeds at lr {lr:g}, not all"}


COLUMNS = ["claim", "statement", "quantity", "quantity_label", "family", "dataset", "model",
           "lr", "layer", "treatment", "baseline", "comparison", "direction", "margin", "seeds",
           "treatment_values", "baseline_values", "treatment_mean", "baseline_mean", "effect",
           "effect_lo", "effect_hi", "interval", "seeds_compared", "verdict", "rule", "why",
           "figure"]


def scorecard(cfg: dict, meta_paths) -> pd.DataFrame:
    """The scorecard of a checked config ``cfg`` from its finished runs (``meta_paths``: their
    run.json files): one row per check, in the order of :func:`checks`."""
    from bnopt.config import figure_blockers

    values = load_values(meta_paths)
    blocked = figure_blockers(cfg)
    return pd.DataFrame([judge(c, values, blocked) for c in checks(cfg)], columns=COLUMNS)


# --- Markdown ---------------------------------------------------------------------------------

def check_label(row) -> str:
    """A row's check in words: 'BN vs standard: test accuracy ..., VGG lr 0.1'."""
    from bnopt.variants import VARIANT_INFO

    def name(v):  # "BatchNorm" for "Standard + BatchNorm"
        return VARIANT_INFO[v].label.removeprefix("Standard + ") if v in VARIANT_INFO else v

    where = "DLN" if row["family"] == "dln" else (str(row["model"]).upper() or "net")
    lr = "" if pd.isna(row["lr"]) else f" lr {row['lr']:g}"
    layer = f" layer {row['layer']}" if str(row["layer"]) not in ("", "0") else ""
    return (f"{name(row['treatment'])} vs {name(row['baseline'])}: "
            f"{QUANTITIES[row['quantity']].label.split(' (')[0]}, {where}{lr}{layer}")


def _effect_text(row) -> str:
    if pd.isna(row["effect"]):
        return "–"
    sym = "×" if row["comparison"] == "ratio" else "Δ"
    txt = f"{sym} {row['effect']:.3g}" if sym == "×" else f"Δ {row['effect']:+.3g}"
    if row["seeds_compared"] >= 2:
        txt += f" [{row['effect_lo']:.3g}, {row['effect_hi']:.3g}]"
    return txt


def precision_note(meta_paths) -> str:
    """A paragraph for claims.md saying how many runs trained their unmeasured steps in TF32 on
    a GPU (``precision: tf32``, the default; measurements are IEEE whatever it says), so a
    reader knows the arithmetic behind the verdicts. Empty where none did: on the CPU
    ``precision`` changes nothing."""
    metas = [read_meta(p) for p in meta_paths]
    tf32 = [m for m in metas  # device_type: where it trained (device may say auto)
            if m.get("precision") == "tf32"
            and str(m.get("device_type", m.get("device", ""))).startswith("cuda")]
    if not tf32:
        return ""
    return (f"\n{len(tf32)} of {len(metas)} runs trained their unmeasured steps in TF32 "
            "(`precision: tf32`); every measurement is IEEE fp32. README, 'Precision and speed', "
            "measures what TF32 changes; `--config precision=fp32` trains in IEEE "
            "throughout.\n")


def to_markdown(table: pd.DataFrame) -> str:
    """The scorecard as Markdown: a tally of verdicts per claim and family of runs, then one
    line per check."""
    lines = ["| claim | runs | " + " | ".join(VERDICTS) + " |", "|---|---|" + "---|" * len(VERDICTS)]
    for (claim, family), g in table.groupby(["claim", "family"], sort=False):
        named = g[g.model.fillna("") != ""]
        runs = ("deep linear network" if family == "dln" else
                f"{str(named.model.iloc[0]).upper()} on {named.dataset.iloc[0]}" if len(named)
                else "network")
        counts = g.verdict.value_counts()
        lines.append(f"| {claim}: {g.statement.iloc[0]} | {runs} | "
                     + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines += ["", "| claim | check | seeds | treatment | baseline | effect [seed interval] "
              "| verdict | why |", "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cells = [r["claim"], check_label(r), r["seeds"] or "–", r["treatment_values"] or "–",
                 r["baseline_values"] or "–", _effect_text(r), f"**{r['verdict']}**", r["why"]]
        # a '|' inside a cell (||G - G'||) would end it
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    n = table.seeds_compared.max() if len(table) else 0
    lines += ["", f"Effect: × ratio (treatment / baseline, geometric mean over seeds), Δ "
              "difference (treatment − baseline, mean over seeds); interval: "
              f"{band_label(int(n)) if n == n else 'no seeds'} (README, 'Scorecard')."]
    return "\n".join(lines) + "\n"
