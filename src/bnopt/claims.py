"""The reproduction scorecard: every claim of the paper judged from the runs.

A *check* compares one quantity of a *treatment* variant with a *baseline* (another variant,
or the edge of stability 2/lr) for one family of runs (``net``: the configured dataset and
model; ``dln``: the deep linear network) at one learning rate (and layer). Its effect is taken
per seed, pairing runs of the same seed (same data order): the ratio treatment / baseline for
quantities on a positive scale (loss range, relative ICS, beta, curvature, moment shift, loss),
the difference for accuracies and cosines.

**At the same stage of training.** A per-step quantity (the landscape, ICS, moment shift,
curvature: ``Quantity.matched``) is compared where both runs have reached the same training
loss, not at the same step: a net that has converged has small gradients, gradient changes and
loss ranges because it sits near a minimum (:mod:`bnopt.progress`). Each run's value is its
median per training-loss bin; the bins judged are those every compared run visits with
``progress.MIN_STEPS_PER_BIN`` or more measured steps; a run's value is the geometric mean
(ratios) or mean (differences) of its bin values over those bins, so the per-seed effect is
the average of the per-bin effects. Runs that share no bin are ``inconclusive``. The run-long
median effect stays beside it in ``run_median_effect`` (not judged). The edge-of-stability
checks compare one run with 2(1 + mu)/lr and keep their window, "after the first 10% of steps".

**The verdict rests on every seed.** ``holds`` when every seed's effect lies on the claim's side
of its threshold, ``does not hold`` when every seed's lies on the other side, ``inconclusive``
otherwise: the band judged is the seed range, so adding a seed whose effect lies inside the
others' range never changes a verdict. (The figures draw the 95% t-interval of the mean over 3
or more seeds, :func:`bnopt.aggregate.seed_interval`; a verdict is stricter about every seed
agreeing and weaker about the mean.) The thresholds:

- ``lower`` / ``higher``: "no effect" (1 for a ratio, 0 for a difference), strictly;
- ``not_lower`` / ``not_higher``: "no effect" moved by the check's ``margin``: for a ratio a
  factor (threshold 1/margin or margin; 0 or 1: none), for a difference an amount;
- ``within``: a ratio to 2/lr within [1/margin, margin].

``not measured``: the check's figure is off in this config, or a compared variant has no run.
``inconclusive`` also: a compared run diverged or never learned (a comparison with a network
that did not train says nothing about the claim), one seed only, a ratio meets a value <= 0.

:func:`scorecard` turns a checked config and finished runs into the table; the rule
``scorecard`` writes it as ``results/tables/claims.csv`` and ``claims.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bnopt.aggregate import edge_of_stability, landscape_summary, read_meta, run_tables
from bnopt.config import RUN_IDENTITY
from bnopt.progress import (MIN_STEPS_PER_BIN, bin_label, binned, geometric_mean, shared_bins,
                            smoothed_loss, span)

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")
DIRECTIONS = ("lower", "higher", "not_lower", "not_higher", "within")
EDGE = "2/lr"          # the baseline of the edge-of-stability checks
EDGE_FACTOR = 2.0      # "at the edge": within this factor of 2(1 + mu)/lr
LATE_FRACTION = 0.1    # "after the first 10% of steps"
ALMOST_AS_WELL = 0.05  # Claims 2, 5 "trains (almost) as well": training accuracy this much lower
LOSS_FACTOR = 1.5      # Claim 5 in the DLN "trains as well": training loss this factor higher
ICS_FACTOR = 2.0       # Claim 3: a "reduction" of ICS is one by this factor or more
COS_MARGIN = 0.1       # Claim 3: a "reduction" in cos(G, G') is a rise by this much or more


@dataclass(frozen=True)
class Quantity:
    label: str
    comparison: str        # 'ratio' or 'difference'
    matched: bool = False  # a per-step quantity, judged at matched training loss


# What a check can compare: per run, one number (per layer for ICS and the moment shift), and
# for a matched quantity one number per training-loss bin as well.
QUANTITIES = {
    "final_test_acc": Quantity("test accuracy (eval mode, last step)", "difference"),
    "mean_batch_acc": Quantity("training accuracy averaged over the run (batch, training mode)",
                               "difference"),
    "run_loss": Quantity("training loss over the run (geometric mean, batch, training mode)",
                         "ratio"),
    "trained": Quantity("runs that trained (fraction of seeds)", "difference"),
    "loss_range": Quantity("loss range along the gradient", "ratio", True),
    "grad_pred": Quantity("gradient change along the gradient (max)", "ratio", True),
    "beta_smoothness": Quantity("effective beta-smoothness", "ratio", True),
    "ics_rel": Quantity("relative ICS ||G - G'|| / ||G||", "ratio", True),
    "ics_cos": Quantity("ICS cos(G, G')", "difference", True),
    "mean_shift": Quantity("per-unit mean shift between steps / the layer's std", "ratio", True),
    "var_shift": Quantity("per-unit variance shift between steps / the layer's variance",
                          "ratio", True),
    "lambda_max": Quantity("top Hessian eigenvalue", "ratio", True),
    "beta_late": Quantity("effective beta after the first 10% (median)", "ratio"),
    "batch_sharpness_late": Quantity("batch sharpness after the first 10% (median)", "ratio"),
}
LAYERED = ("ics_rel", "ics_cos", "mean_shift", "var_shift")


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
    # not_lower / not_higher: how far past "no effect" still counts (a difference, or a factor
    # for a ratio); within: the factor around 2/lr
    margin: float = 0.0
    lrs: tuple = ()   # the lrs Claim 1's "trains where standard fails" looks at

    @property
    def comparison(self) -> str:
        return QUANTITIES[self.quantity].comparison


CLAIMS = {
    "1": "BatchNorm trains faster and generalises better",
    "2": "Noisy BN trains almost as well as BN although its inputs are less stable than "
         "even the standard net's",
    "3": "BN does not reduce internal covariate shift (Definition 2.1)",
    "4": "BN makes the landscape smoother",
    "5": "l_p normalisations train like BN and smooth the landscape",
    "EoS": "Beyond the paper: SGD holds the curvature along its gradient at 2/lr",
    "curvature": "Beyond the paper: BN lowers the top Hessian eigenvalue",
    "normalisers": "Beyond the paper: LayerNorm, GroupNorm, weight norm are no rougher than BN",
}
LANDSCAPE = ("loss_range", "grad_pred", "beta_smoothness")


def checks(cfg: dict) -> list[Check]:
    """Every check a checked config ``cfg`` asks for, at the figures' learning rates and
    layers (so a check and the figure that shows it always agree)."""
    from bnopt.config import figure_specs
    from bnopt.variants import variants_in

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
    # Figure 2: noisy BN's training curve stays close to BN's (over the run, not the saturated
    # final value) although its activations shift more than even the standard net's (Figure 8)
    add("2", "mean_batch_acc", "net", lr, "noisy_batchnorm", "batchnorm", "not_lower",
        "fig2_noisy_bn", margin=ALMOST_AS_WELL)
    for layer in spec["fig8_activation_shift"]["layers"]:
        for q in ("mean_shift", "var_shift"):
            for baseline in ("standard", "batchnorm"):
                add("2", q, "net", lr, "noisy_batchnorm", baseline, "higher",
                    "fig8_activation_shift", layer=layer)
    for fam, fig in (("net", "fig3_ics"), ("dln", "fig3_ics_dln")):
        for rate in spec[fig]["lrs"]:
            for layer in spec[fig]["layers"]:
                add("3", "ics_rel", fam, rate, "batchnorm", "standard", "not_lower", fig,
                    layer=layer, margin=ICS_FACTOR)
                add("3", "ics_cos", fam, rate, "batchnorm", "standard", "not_higher", fig,
                    layer=layer, margin=COS_MARGIN)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for q in LANDSCAPE:
            add("4", q, fam, rate, "batchnorm", "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig12_lp_vgg"), ("dln", dlr, "fig13_lp_dln")):
        for v in variants_in("lp"):
            if v in variants_in("bn"):
                continue
            # Figures 12 and 13's training curves: the l_p net trains at least as well ...
            if fam == "net":
                add("5", "mean_batch_acc", fam, rate, v, "standard", "not_lower", fig,
                    margin=ALMOST_AS_WELL)
            else:  # the DLN's squared loss has no accuracy
                add("5", "run_loss", fam, rate, v, "standard", "not_higher", fig,
                    margin=LOSS_FACTOR)
            for q in LANDSCAPE:  # ... and its landscape is smoother
                add("5", q, fam, rate, v, "standard", "lower", fig)
    for fam, rate, fig in (("net", lr, "fig4_landscape"), ("dln", dlr, "fig10_dln_landscape")):
        for v in variants_in("bn"):
            add("EoS", "beta_late", fam, rate, v, EDGE, "within", fig, margin=EDGE_FACTOR)
    for fam, rate in (("net", lr), ("dln", dlr)):
        for v in variants_in("bn"):
            add("EoS", "batch_sharpness_late", fam, rate, v, EDGE, "within", "fig16_curvature",
                margin=EDGE_FACTOR)
    for fam, rate in (("net", lr), ("dln", dlr)):
        add("curvature", "lambda_max", fam, rate, "batchnorm", "standard", "lower",
            "fig16_curvature")
    for fam, rate, fig in (("net", lr, "fig14_normalisers_vgg"),
                           ("dln", dlr, "fig15_normalisers_dln")):
        for v in variants_in("normalisers"):
            if v in variants_in("bn"):
                continue
            for q in LANDSCAPE:
                add("normalisers", q, fam, rate, v, "batchnorm", "not_higher", fig)
    return out


def scorecard_runs(cfg: dict) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of every run the checks of ``cfg`` compare, where
    their figure is on: what the rule ``scorecard`` needs."""
    from bnopt.config import family_runs, figures_off

    blocked = figures_off(cfg)
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


NAMES = tuple(QUANTITIES)  # a quantity's code in the tables below: its index here


def _long(df: pd.DataFrame, columns) -> list[np.ndarray]:
    """[step, quantity code, layer, value] arrays of ``df``'s ``columns`` (a cheap melt)."""
    n, k = len(df), len(columns)
    layer = df["layer"].to_numpy(dtype=np.int64) if "layer" in df else np.zeros(n, np.int64)
    return [np.tile(df["step"].to_numpy(dtype=np.int64), k),
            np.repeat([NAMES.index(c) for c in columns], n), np.tile(layer, k),
            np.concatenate([df[c].to_numpy(dtype=float) for c in columns])]


def per_step_values(tables: dict, land: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every matched quantity of a run at each of its measured steps: rows of (step, quantity,
    layer, value) from its probes, ics, activations and hessian tables (layer 0: the whole
    network; quantity: its code, the index in ``NAMES``). Relative ICS is ||G - G'|| / ||G||
    of the layer's weight gradient G; the moment shifts are on the layer's own scale, the mean
    shift over its std and the variance shift over its variance at that step (a standard net's
    deep layers can have variances far from a normalised layer's 1, so absolute shifts compare
    scales, not stability). Non-finite values are left out."""
    land = (landscape_summary(tables["probes"]) if land is None else land).rename(
        columns={"grad_pred_max": "grad_pred", "beta_max": "beta_smoothness"})
    ics = tables["ics"]
    acts = tables["activations"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ics = ics.assign(ics_rel=ics.l2 / ics.grad_norm, ics_cos=ics.cos)
        acts = acts.assign(mean_shift=acts.mean_shift / acts["std"],
                           var_shift=acts.var_shift / acts["std"] ** 2)
    parts = [_long(land, LANDSCAPE), _long(ics, ("ics_rel", "ics_cos")),
             _long(acts, ("mean_shift", "var_shift")), _long(tables["hessian"], ("lambda_max",))]
    step, code, layer, value = (np.concatenate(c) for c in zip(*parts))
    keep = np.isfinite(value)
    return pd.DataFrame({"step": step[keep], "quantity": code[keep], "layer": layer[keep],
                         "value": value[keep]})


# the columns of a run's tables that run_values reads
RUN_COLUMNS = {"probes": ["step", "loss", "grad_change", "beta"],
               "ics": ["step", "layer", "l2", "cos", "grad_norm"],
               "activations": ["step", "layer", "std", "mean_shift", "var_shift"],
               "hessian": ["step", "lambda_max", "batch_sharpness"],
               "steps": ["step", "loss", "accuracy"]}


def _run_values(meta_path) -> tuple[dict, pd.DataFrame]:
    """A run's identity and its rows of (quantity code, layer, bin, count, value)."""
    meta = read_meta(meta_path)
    tables = run_tables(meta_path, tuple(RUN_COLUMNS), RUN_COLUMNS)
    steps = int(meta["steps"])
    diverged = bool(meta["diverged"])
    land = landscape_summary(tables["probes"])
    per_step = per_step_values(tables, land)
    g = per_step.groupby(["quantity", "layer"])["value"]
    whole = pd.DataFrame({"value": g.median(), "count": g.size()}).reset_index()
    per_bin = binned(per_step, smoothed_loss(tables["steps"]), ("quantity", "layer"))
    one = {"final_test_acc": meta["final_test_acc"],
           "mean_batch_acc": math.nan if diverged else tables["steps"].accuracy.mean(),
           "run_loss": math.nan if diverged else geometric_mean(tables["steps"].loss),
           "trained": not (diverged or meta["never_learned"]),
           "beta_late": _late(land, steps).beta_max.median(),
           "batch_sharpness_late": _late(tables["hessian"], steps).batch_sharpness.median()}
    cols = {"quantity": [whole["quantity"], per_bin["quantity"], [NAMES.index(q) for q in one]],
            "layer": [whole["layer"], per_bin["layer"], np.zeros(len(one))],
            "bin": [np.full(len(whole), np.nan), per_bin["bin"], np.full(len(one), np.nan)],
            "count": [whole["count"], per_bin["count"], np.ones(len(one))],
            "value": [whole["value"], per_bin["value"], list(one.values())]}
    types = {"quantity": np.int64, "layer": np.int64, "bin": float, "count": np.int64,
             "value": float}
    rows = pd.DataFrame({k: np.concatenate([np.asarray(p, dtype=types[k]) for p in parts])
                         for k, parts in cols.items()})
    ident = {"family": "dln" if meta["model"] == "dln" else "net",
             **{k: meta[k] for k in RUN_IDENTITY}, "lr": float(meta["lr"]),
             "seed": int(meta["seed"]), "diverged": diverged,
             "never_learned": bool(meta["never_learned"]),
             "momentum": float(meta.get("momentum", 0.0))}
    return ident, rows


def run_values(meta_path) -> pd.DataFrame:
    """Every quantity of QUANTITIES for one finished run: rows of (quantity, layer, bin, count,
    value) after the run's identity (``VALUE_COLUMNS``); layer 0 for a quantity of the whole
    network. Each quantity has a run-long row (bin NaN: the median over the measured steps for
    a matched quantity); a matched quantity also has one row per training-loss bin
    (:func:`bnopt.progress.binned`). NaN where the run measured nothing."""
    return load_values([meta_path])


# a run's identity in the scorecard: its family, the run identity, what decides whether it
# counts (diverged, never learned) and the momentum its edge of stability needs
IDENTITY = ["family", *RUN_IDENTITY, "diverged", "never_learned", "momentum"]
VALUE_COLUMNS = [*IDENTITY, "quantity", "layer", "bin", "count", "value"]
CATEGORIES = ("family", "dataset", "model", "variant")  # every check filters by them


def load_values(meta_paths) -> pd.DataFrame:
    """:func:`run_values` of many runs, one row per (run, quantity, layer, bin); the text
    columns are categories."""
    runs = [_run_values(p) for p in meta_paths]
    if not runs:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    rows = pd.concat([r for _, r in runs], ignore_index=True)
    which = np.repeat(np.arange(len(runs)), [len(r) for _, r in runs])
    out = {}
    for k in IDENTITY:
        per_run = [ident[k] for ident, _ in runs]
        out[k] = (pd.Categorical(per_run)[which] if k in CATEGORIES
                  else np.asarray(per_run)[which])
    out["quantity"] = pd.Categorical.from_codes(rows["quantity"].to_numpy(), NAMES)
    for k in ("layer", "bin", "count", "value"):
        out[k] = rows[k].to_numpy()
    return pd.DataFrame(out)[VALUE_COLUMNS]


# --- the verdict rules ------------------------------------------------------------------------

def no_effect(comparison: str) -> float:
    return 1.0 if comparison == "ratio" else 0.0


def threshold(comparison: str, direction: str, margin: float = 0.0) -> float | None:
    """The value every seed's effect is judged against: "no effect" for lower / higher, moved
    by the margin for not_lower / not_higher (an amount for a difference; a factor for a ratio,
    none where it is 0 or 1); None for within (judged against [1/margin, margin])."""
    if direction not in ("lower", "higher", "not_lower", "not_higher"):
        return None
    sign = {"lower": 0, "higher": 0, "not_lower": -1, "not_higher": 1}[direction]
    if comparison == "ratio":
        return max(margin, 1.0) ** sign
    return sign * margin


def rule_text(comparison: str, direction: str, margin: float = 0.0) -> str:
    """Where every seed's effect must lie for the check to hold, in a few symbols: '> 0',
    '>= 0.5', 'in [0.5, 2]'."""
    if direction == "within":
        return f"in [{1 / margin:.3g}, {margin:.3g}]"
    op = {"lower": "<", "higher": ">", "not_lower": ">=", "not_higher": "<="}[direction]
    return f"{op} {threshold(comparison, direction, margin):.3g}"


def _on_side(e: np.ndarray, comparison: str, direction: str, margin: float):
    """Per seed: whether its effect lies on the claim's side, and whether it lies on the other
    (for within: inside the band, outside it)."""
    if direction == "within":
        inside = (1 / margin <= e) & (e <= margin)
        return inside, ~inside
    t = threshold(comparison, direction, margin)
    if direction == "lower":
        return e < t, e >= t
    if direction == "higher":
        return e > t, e <= t
    if direction == "not_lower":
        return e >= t, e < t
    return e <= t, e > t


def judge_effects(effects, comparison: str, direction: str, margin: float = 0.0) -> dict:
    """The verdict on per-seed ``effects`` (ratios or differences, one per seed), with the
    estimate (geometric mean of ratios, mean of differences), the seed range it rests on, and
    the rule that gave it. The one place the rules live: every seed on the claim's side of the
    threshold holds, every seed on the other side does not hold, anything else (or one seed) is
    inconclusive. Adding a seed whose effect lies within the others' range never changes it."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose one of {', '.join(DIRECTIONS)}")
    e = np.asarray(effects, dtype=float)
    e = e[np.isfinite(e)]
    n = len(e)
    need = rule_text(comparison, direction, margin)
    out = {"seeds_compared": n, "effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan,
           "seed_effects": _fmt(e), "interval": f"range of {n} seed{'s' if n != 1 else ''}",
           "threshold": need, "basis": "",
           "rule": f"holds if every seed's {'ratio' if comparison == 'ratio' else 'difference'} "
                   f"is {need}; does not hold if none is"}
    if n == 0:
        return {**out, "verdict": "inconclusive", "why": "no seed has a finite value on both sides"}
    if comparison == "ratio" and (e <= 0).any():
        return {**out, "verdict": "inconclusive",
                "why": "a value is <= 0, so the ratio is undefined on a log scale"}
    est = float(np.exp(np.log(e).mean())) if comparison == "ratio" else float(e.mean())
    out.update(effect=est, effect_lo=float(e.min()), effect_hi=float(e.max()))
    agree, against = _on_side(e, comparison, direction, margin)
    out["basis"] = f"{int(agree.sum())}/{n} seeds {need}"
    if n == 1:
        return {**out, "verdict": "inconclusive",
                "why": "1 seed: no spread over seeds to judge the effect against; train 2 or more"}
    verdict = "holds" if agree.all() else "does not hold" if against.all() else "inconclusive"
    why = (f"seeds disagree: {out['basis']}" if verdict == "inconclusive" else "")
    return {**out, "verdict": verdict, "why": why}


def _fmt(values) -> str:
    """'0.1 / 0.2' (per seed); empty where no value is finite."""
    values = np.asarray(values, dtype=float)
    return " / ".join(f"{v:.4g}" for v in values) if np.isfinite(values).any() else ""


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


def _bin_steps(counts: dict, runs: list[tuple], judged: list[int]) -> str:
    """How many measured steps each run has in each bin any of them visits, from high loss to
    low: '1-3.16*: standard 12/10, batchnorm 3/4; ...' (``counts``: bin -> {(variant, seed):
    steps}; ``runs``: (variant, seed) in order; * marks a judged bin)."""
    parts = []
    for k in sorted(counts, reverse=True):
        per_variant = {}
        for v, seed in runs:
            per_variant.setdefault(v, []).append(str(counts[k].get((v, seed), 0)))
        parts.append(f"{bin_label(k)}{'*' if k in judged else ''}: "
                     + ", ".join(f"{v} {'/'.join(n)}" for v, n in per_variant.items()))
    return "; ".join(parts)


def _matched(check: Check, q: pd.DataFrame, seeds: list) -> tuple[dict, dict, dict]:
    """A matched quantity's per-seed values over the training-loss bins every compared run
    visits with enough measured steps: (treatment values, baseline values, row fields)."""
    runs = [(v, s) for v in (check.baseline, check.treatment) for s in seeds]
    per_bin = q[q.bin.notna()]
    counts: dict[int, dict] = {}
    values: dict[tuple, dict] = {}
    for v, s, k, n, x in zip(per_bin.variant.to_numpy(), per_bin.seed.to_numpy(),
                             per_bin.bin.to_numpy(), per_bin["count"].to_numpy(),
                             per_bin.value.to_numpy()):
        if (v, s) in runs:
            counts.setdefault(int(k), {})[(v, s)] = int(n)
            values.setdefault((v, s), {})[int(k)] = float(x)
    bins = shared_bins([{k: c.get(r, 0) for k, c in counts.items()} for r in runs])
    fields = {"progress": f"matched training loss {span(bins)}" if bins else "none shared",
              "bins": " / ".join(bin_label(k) for k in sorted(bins, reverse=True)),
              "bin_steps": _bin_steps(counts, runs, bins)}
    if not bins:
        return {}, {}, fields
    agg = geometric_mean if check.comparison == "ratio" else (lambda x: float(np.mean(x)))
    per_seed = {r: agg([values[r][k] for k in bins]) for r in runs}
    return ({s: per_seed[(check.treatment, s)] for s in seeds},
            {s: per_seed[(check.baseline, s)] for s in seeds}, fields)


def judge(check: Check, values: pd.DataFrame, blocked: dict | None = None) -> dict:
    """One scorecard row: ``check`` judged on ``values`` (:func:`load_values`); ``blocked``:
    the figures this config cannot draw, with the settings that are off
    (:func:`bnopt.config.figures_off`)."""
    row = {c: "" for c in COLUMNS} | {
        "claim": check.claim, "statement": check.statement, "quantity": check.quantity,
        "quantity_label": QUANTITIES[check.quantity].label, "family": check.family,
        "lr": check.lr if check.lr is not None else math.nan, "layer": check.layer or "",
        "treatment": check.treatment, "baseline": check.baseline,
        "comparison": check.comparison, "direction": check.direction, "margin": check.margin,
        "figure": check.figure, "treatment_mean": math.nan, "baseline_mean": math.nan,
        "run_median_effect": math.nan, "run_median_lo": math.nan, "run_median_hi": math.nan}
    empty = judge_effects([], check.comparison, check.direction, check.margin)
    if blocked and check.figure in blocked:
        from bnopt.config import needs_text

        return {**row, **empty, "verdict": "not measured",
                "why": needs_text(check.figure, blocked[check.figure])}
    if check.quantity == "trained":
        return {**row, **_judge_trained(check, values)}
    fam = values[(values.family == check.family) & (values.lr == check.lr)]
    q = fam[(fam.quantity == check.quantity) & (fam.layer == check.layer)]
    whole = q[q.bin.isna()]
    t = whole[whole.variant == check.treatment].set_index("seed").sort_index()
    b = whole[whole.variant == check.baseline].set_index("seed").sort_index()
    if len(fam):
        row.update(dataset=fam.dataset.iloc[0], model=fam.model.iloc[0])
    missing = [v for v, d in ((check.treatment, t), (check.baseline, b))
               if v != EDGE and d.empty]
    if missing:
        where = f" layer {check.layer}" if check.layer else ""
        return {**row, **empty, "verdict": "not measured",
                "why": f"no {' or '.join(missing)} run of {check.family} at lr {check.lr:g}{where}"}
    if check.baseline == EDGE:  # the edge of stability 2(1 + mu)/lr of each run
        b = t.assign(value=edge_of_stability(t.lr, t.momentum), diverged=False,
                     never_learned=False, variant=EDGE)
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
        tm, bm, fields = _matched(check, q, seeds)
        row.update(fields)
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
                   why=f"the runs share no stage of training: no training-loss bin holds "
                       f"{MIN_STEPS_PER_BIN} or more measured steps of every run (bin_steps); "
                       "measure more often (measure_every) or train longer")
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


COLUMNS = ["claim", "statement", "quantity", "quantity_label", "family", "dataset", "model",
           "lr", "layer", "treatment", "baseline", "comparison", "direction", "margin",
           "threshold", "progress", "bins", "bin_steps", "seeds", "treatment_values",
           "baseline_values", "treatment_mean", "baseline_mean", "seed_effects", "effect",
           "effect_lo", "effect_hi", "interval", "seeds_compared", "verdict", "basis", "rule",
           "why", "run_median_effect", "run_median_lo", "run_median_hi", "figure"]


def scorecard(cfg: dict, meta_paths) -> pd.DataFrame:
    """The scorecard of a checked config ``cfg`` from its finished runs (``meta_paths``: their
    run.json files): one row per check, in the order of :func:`checks`."""
    from bnopt.config import figures_off

    values = load_values(meta_paths)
    blocked = figures_off(cfg)
    # each check reads one (family, quantity, lr, layer), or for "trained" one (family,
    # quantity): split the table once, not once per check
    keys = ["family", "quantity", "lr", "layer"]
    parts = dict(iter(values.groupby(keys, sort=False, observed=True)))
    parts |= dict(iter(values.groupby(keys[:2], sort=False, observed=True)))
    empty = values.iloc[:0]

    def part(c: Check) -> pd.DataFrame:
        key = (c.family, c.quantity) if c.lr is None else (c.family, c.quantity, c.lr, c.layer)
        return parts.get(key, empty)

    return pd.DataFrame([judge(c, part(c), blocked) for c in checks(cfg)], columns=COLUMNS)


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


def _number(x: float, comparison: str) -> str:
    return f"× {x:.3g}" if comparison == "ratio" else f"Δ {x:+.3g}"


def _effect_text(row, key="effect", lo="effect_lo", hi="effect_hi") -> str:
    if pd.isna(row[key]):
        return "–"
    txt = _number(row[key], row["comparison"])
    if row["seeds_compared"] >= 2 and not pd.isna(row[lo]):
        txt += f" [{row[lo]:.3g}, {row[hi]:.3g}]"
    return txt


def verdict_text(row) -> str:
    """'holds (2/2 seeds >= 0.5)': the verdict and what it rests on."""
    basis = row.get("basis", "")
    return f"{row['verdict']} ({basis})" if isinstance(basis, str) and basis else row["verdict"]


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
    line per check: where in training it was judged, the per-seed values, the effect and seed
    range, the run-long median effect beside it, and the verdict with what it rests on."""
    lines = ["| claim | runs | " + " | ".join(VERDICTS) + " |", "|---|---|" + "---|" * len(VERDICTS)]
    for (claim, family), g in table.groupby(["claim", "family"], sort=False):
        named = g[g.model.fillna("") != ""]
        runs = ("deep linear network" if family == "dln" else
                f"{str(named.model.iloc[0]).upper()} on {named.dataset.iloc[0]}" if len(named)
                else "network")
        counts = g.verdict.value_counts()
        lines.append(f"| {claim}: {g.statement.iloc[0]} | {runs} | "
                     + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines += ["", "| claim | check | judged over | seeds | treatment | baseline | effect [seed "
              "range] | run-long median | verdict (seeds on the claim's side) | why |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cells = [r["claim"], check_label(r), r["progress"] or "–", r["seeds"] or "–",
                 r["treatment_values"] or "–", r["baseline_values"] or "–", _effect_text(r),
                 _effect_text(r, "run_median_effect", "run_median_lo", "run_median_hi"),
                 verdict_text(r).replace(r["verdict"], f"**{r['verdict']}**", 1), r["why"]]
        # a '|' inside a cell (||G - G'||) would end it
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Effect: × ratio (treatment / baseline, geometric mean over seeds), Δ "
              "difference (treatment − baseline, mean over seeds), [the seeds' range]. A "
              "verdict holds when every seed's effect lies on the claim's side of the threshold "
              "it names, does not hold when none does. Per-step quantities are judged at matched "
              "training loss (the bins of `claims.csv`); the run-long median is shown, not "
              "judged (README, 'Scorecard')."]
    return "\n".join(lines) + "\n"
