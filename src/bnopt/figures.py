"""The paper's comparison figures, drawn with seaborn from the runs' Parquet tables.

Every curve is the mean over seeds with a 95% bootstrap band. "Train accuracy" is the accuracy
on each step's training batch in training mode (batch statistics, and noise for noisy BN), as
the model sees it while it learns, smoothed with a centred rolling mean over ``steps / 100``
steps. "Test accuracy" is measured in eval mode (BN running statistics) on the full test split.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bnopt.aggregate import load_table, read_meta  # noqa: E402

LABELS = {"standard": "Standard", "batchnorm": "Standard + BatchNorm",
          "noisy_batchnorm": "Standard + \"Noisy\" BatchNorm"}
PALETTE = {"standard": "#1f77b4", "batchnorm": "#d62728", "noisy_batchnorm": "#2ca02c"}
MAX_POINTS = 300  # per run and curve, so bootstrap bands stay fast for 15k-step runs


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


def _lineplot(ax, df, y, variants, **kw):
    sns.lineplot(data=df, x="step", y=y, hue="variant", hue_order=variants, palette=PALETTE,
                 estimator="mean", errorbar=("ci", 95), n_boot=200, seed=0, ax=ax, **kw)


def _diverged_note(metas: list[dict], lr: float, variants: list[str]) -> str:
    notes = []
    for v in variants:
        runs = [m for m in metas if m["variant"] == v and m["lr"] == lr]
        d = sum(m["diverged"] for m in runs)
        if d:
            notes.append(f"{LABELS[v]}: {d}/{len(runs)} runs diverged")
    return "\n".join(notes)


def _legend(fig, axes, variants):
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


def fig1_accuracy(meta_paths, out_path, lrs) -> None:
    """Figure 1(a,b): train and test accuracy vs step, standard vs BN, one column per lr."""
    metas = [read_meta(p) for p in meta_paths]
    variants = [v for v in ("standard", "batchnorm") if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    evals = load_table(meta_paths, "eval")
    ds = metas[0]["dataset"]
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(2, len(lrs), figsize=(5.2 * len(lrs), 7.6), squeeze=False,
                             sharex=True, sharey="row")
    for j, lr in enumerate(lrs):
        _lineplot(axes[0, j], steps[steps.lr == lr], "accuracy", variants)
        _lineplot(axes[1, j], evals[evals.lr == lr], "test_acc", variants, marker="o", markersize=3)
        axes[0, j].set_title(f"learning rate {lr:g}")
        note = _diverged_note(metas, lr, variants)
        if note:
            axes[0, j].text(0.02, 0.98, note, transform=axes[0, j].transAxes, va="top", fontsize=8,
                            bbox=dict(facecolor="white", alpha=0.8, edgecolor="0.8"))
        axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel("training accuracy (batch, smoothed)")
    axes[1, 0].set_ylabel("test accuracy")
    for ax in axes.ravel():
        ax.set_ylim(0, 1.02)
    _legend(fig, axes, variants)
    nseeds = len({m["seed"] for m in metas})
    fig.suptitle(f"Figure 1(a,b): {metas[0]['model'].upper()} on {ds}, standard vs BatchNorm "
                 f"(mean of {nseeds} seeds, 95% CI)", fontsize=13)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def fig2_noisy_bn(meta_paths, out_path, lr) -> None:
    """Figure 2 (accuracy panel): training accuracy of standard, BN and noisy BN at one lr."""
    metas = [read_meta(p) for p in meta_paths]
    variants = [v for v in ("standard", "batchnorm", "noisy_batchnorm")
                if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    _lineplot(ax, steps, "accuracy", variants)
    ax.set_xlabel("training step")
    ax.set_ylabel("training accuracy (batch, smoothed)")
    ax.set_ylim(0, 1.02)
    note = _diverged_note(metas, lr, variants)
    if note:
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [LABELS[v] for v in labels], loc="upper center", fontsize=9, ncol=2,
              bbox_to_anchor=(0.5, -0.14), frameon=False)
    nseeds = len({m["seed"] for m in metas})
    ax.set_title(f"Figure 2: noisy BatchNorm trains almost as well as BatchNorm\n"
                 f"{metas[0]['model'].upper()} on {metas[0]['dataset']}, lr {lr:g} "
                 f"(mean of {nseeds} seeds, 95% CI)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)


FIGURES = {"fig1_accuracy": fig1_accuracy, "fig2_noisy_bn": fig2_noisy_bn}
