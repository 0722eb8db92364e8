"""What every figure shares: the house style, the variants' labels and colours, seed bands,
smoothing, the notes on runs that did not train, the edge-of-stability line and the panels
several figures draw (a training curve, a quantity at matched training loss)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bnopt.analysis.aggregate import (  # noqa: E402
    band_label,
    edge_of_stability,
    load_table,
    read_meta,
    seed_interval,
)
from bnopt.analysis.loss_levels import (  # noqa: E402
    LEVELS_PER_DECADE,
    MIN_STEPS_AT_LEVEL,
    at_levels,
    level_loss,
    smoothed_loss,
)
from bnopt.plan.variants import VARIANT_INFO, model_label, variants_in  # noqa: E402

LABELS = {v: n.label for v, n in VARIANT_INFO.items()}
PALETTE = {v: n.colour for v, n in VARIANT_INFO.items()}
BN_PAIR = variants_in("bn")
NOISY_VARIANTS = variants_in("noisy")
LP_VARIANTS = variants_in("lp")
NORMALISER_VARIANTS = variants_in("normalisers")
MAX_POINTS = 300  # per run and curve, so 15k-step runs plot quickly


def smooth_downsample(df: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    """Per run (``keys``): centred rolling mean of ``column`` over ~1% of the run, then keep at
    most MAX_POINTS evenly spaced rows."""
    out = []
    for _, g in df.groupby(keys, sort=False):
        g = g.sort_values("step")
        window = max(1, len(g) // 100)
        g = g.assign(**{column: g[column].rolling(window, center=True, min_periods=1).mean()})
        stride = max(1, int(np.ceil(len(g) / MAX_POINTS)))
        out.append(g.iloc[::stride])
    return pd.concat(out, ignore_index=True)


def lineplot(ax, df, y, variants, **kw):
    sns.lineplot(data=df, x="step", y=y, hue="variant", hue_order=variants, palette=PALETTE,
                 estimator="mean", errorbar=seed_interval, ax=ax, **kw)


def run_notes(metas: list[dict], lr: float, variants: list[str]) -> str:
    """Which runs at ``lr`` diverged or never learned (docs/outputs.md, "Runs that did not
    train"), per variant."""
    notes = []
    for v in variants:
        runs = [m for m in metas if m["variant"] == v and m["lr"] == lr]
        for key, what in (("diverged", "diverged"), ("never_learned", "never learned")):
            d = sum(bool(m.get(key)) for m in runs)
            if d:
                notes.append(f"{LABELS[v]}: {d}/{len(runs)} runs {what}")
    return "\n".join(notes)


def annotate_runs(ax, metas: list[dict], lr: float, variants: list[str]) -> None:
    """Name the runs that diverged or never learned in a box in ``ax``'s upper left corner."""
    note = run_notes(metas, lr, variants)
    if note:
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=8, color="0.15",
                bbox=dict(facecolor="#fff4e5", alpha=0.9, edgecolor="#e08000"), zorder=10)


def stability_line(ax, lr: float, meta: dict):
    """Draw the edge of stability of ``lr`` for the runs of ``meta``'s settings in ``ax``;
    returns the line (for a legend). SGD's 2(1 + momentum)/lr does not apply to Adam, whose
    step is rescaled per parameter: for an Adam run nothing is drawn, and the legend says why.
    (A run.json written before ``optimizer`` existed trained with SGD, its neutral value.)"""
    if meta.get("optimizer", "sgd") != "sgd":
        return ax.plot([], [], ls="none", label="no edge of stability drawn: 2/lr is SGD's, "
                                                "these runs train with Adam")[0]
    momentum = float(meta["momentum"])
    level = edge_of_stability(lr, momentum)
    what = "2/lr" if momentum == 0 else f"2(1+{momentum:g})/lr"
    return ax.axhline(level, color="0.2", ls="--", lw=1.1, zorder=1,
               label=f"edge of stability {what} = {level:.3g} (lr {lr:g})")


def subplots(*args, **kwargs):
    """Every figure's preamble: the house style (seaborn's whitegrid), then
    ``plt.subplots(*args, **kwargs)``; with no arguments, an empty figure of ``figsize``."""
    sns.set_theme(style="whitegrid", context="notebook")
    if not args and set(kwargs) <= {"figsize"}:
        return plt.figure(**kwargs)
    return plt.subplots(*args, **kwargs)


def seeds_label(metas: list[dict]) -> str:
    """What a figure's bands are (aggregate.band_label) for the seeds among ``metas``."""
    return band_label(len({m["seed"] for m in metas}))


def save(fig, out_path, rect=None, tight=True) -> None:
    """Every figure's epilogue: lay out, write the PNG, free the figure."""
    if tight:
        fig.tight_layout(rect=rect) if rect else fig.tight_layout()
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def legend(fig, axes, variants):
    handles, labels = None, None
    for ax in np.ravel(axes):
        if ax.get_legend() is not None:
            h, lab = ax.get_legend_handles_labels()
            if handles is None or len(h) > len(handles):
                handles, labels = h, lab
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, [LABELS.get(v, v) for v in labels], loc="lower center",
                   ncol=len(variants), frameon=False, bbox_to_anchor=(0.5, -0.01))


def first_seed_runs(metas: list[dict], variants, lr) -> tuple[dict, int]:
    """(variant -> run.json path, seed) for the lowest seed at ``lr``: distributions and
    per-step curves are shown for one seed, not averaged."""
    seed = min(m["seed"] for m in metas if m["lr"] == lr)
    return {m["variant"]: m["_path"] for m in metas
            if m["lr"] == lr and m["seed"] == seed and m["variant"] in variants}, seed


def runs_name(metas) -> str:
    """'VGG on cifar10' or 'deep linear network' for titles."""
    m = metas[0]
    return "deep linear network (y = Ax)" if m["model"] == "dln" else f"{model_label(m['model'])} on {m['dataset']}"


def read_metas(meta_paths) -> list[dict]:
    return [{**read_meta(p), "_path": p} for p in meta_paths]


def check_layers(metas, layers):
    n = min(m["num_layers"] for m in metas)
    bad = [i for i in layers if i > n]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has layers 1..{n}")


def top_panel(ax, steps, top, variants):
    """Training accuracy (smoothed, 0..1) or training loss (log scale) vs step."""
    lineplot(ax, steps, top, variants)
    if top == "accuracy":
        ax.set_ylim(0, 1.02)
        return "training accuracy"
    ax.set_yscale("log")
    return "training loss"


def matched_panel(ax, meta_paths, per_step: pd.DataFrame, column: str, variants) -> None:
    """``column`` of ``per_step`` (rows of variant, seed, step; a positive quantity) against the
    training loss: each run's value read at the levels of the loss it supports (on a log scale),
    the seed mean with its band, loss falling to the right. What the scorecard compares
    (bnopt.analysis.loss_levels)."""
    steps = load_table(meta_paths, "steps")
    rows = []
    for (v, s), g in steps.groupby(["variant", "seed"]):
        vals = per_step[(per_step.variant == v) & (per_step.seed == s)]
        b = at_levels(vals[["step", column]].rename(columns={column: "value"}),
                      smoothed_loss(g), log=True)
        rows.append(b.assign(variant=v, seed=s))
    df = pd.concat(rows, ignore_index=True)
    df["loss"] = level_loss(df["level"].to_numpy(dtype=float))
    sns.lineplot(data=df, x="loss", y="value", hue="variant", hue_order=variants, palette=PALETTE,
                 estimator="mean", errorbar=seed_interval, marker="o", ax=ax, legend=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(f"training loss (smoothed; {LEVELS_PER_DECADE} levels a decade, each with "
                  f">= {MIN_STEPS_AT_LEVEL} measured steps nearby)")
