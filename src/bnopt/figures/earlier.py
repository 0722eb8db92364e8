"""Figures of the earlier experiments, drawn from what every run records: the gradient's
magnitude over training (seed 001's visual study) and each layer's distance from its
initialisation (seed 002's blog series)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot (which seaborn imports): no display needed
import seaborn as sns  # noqa: E402

from bnopt.analysis.aggregate import load_table, seed_interval  # noqa: E402
from bnopt.figures.style import (  # noqa: E402
    BN_PAIR,
    NOISY_VARIANTS,
    PALETTE,
    annotate_runs,
    legend,
    lineplot,
    read_metas,
    runs_name,
    save,
    seeds_label,
    smooth_downsample,
    subplots,
)


def fig17_gradient_norm(meta_paths, out_path, lr) -> None:
    """Figure 17 (seed 001's): the l2 norm of the whole network's gradient at every step
    (training mode, the step's batch), standard / BN / noisy BN, raw and smoothed, log scale."""
    metas = read_metas(meta_paths)
    variants = [v for v in NOISY_VARIANTS if any(m["variant"] == v for m in metas)]
    steps = load_table(meta_paths, "steps")
    steps = steps[steps.lr == lr]
    fig, axes = subplots(1, 2, figsize=(12, 4.6), squeeze=False, sharey=True)
    raw = smooth_downsample(steps.assign(g=steps.grad_norm), "g", ["variant", "lr", "seed"])
    lineplot(axes[0, 0], steps[steps.seed == steps.seed.min()], "grad_norm", variants, lw=0.7)
    lineplot(axes[0, 1], raw, "g", variants)
    axes[0, 0].set_title(f"every step, lowest seed ({int(steps.seed.min())})")
    axes[0, 1].set_title(f"smoothed over 1% of the run; {seeds_label(metas)}")
    for ax in axes.ravel():
        ax.set_yscale("log")
        ax.set_xlabel("training step")
    axes[0, 0].set_ylabel("||gradient|| (all parameters)")
    annotate_runs(axes[0, 0], metas, lr, variants)
    legend(fig, axes, variants)
    fig.suptitle("Figure 17: gradient magnitude over training "
                 f"({runs_name(metas)}, lr {lr:g})",
                 fontsize=11)
    save(fig, out_path, rect=(0, 0.06, 1, 1))


def fig18_init_distance(meta_paths, out_path, lr) -> None:
    """Figure 18 (seed 002's): each layer's distance from its initialisation at the end of
    training, ||W_T - W_0|| and relative to ||W_0||, standard vs BN, mean over seeds with their
    band (:func:`bnopt.analysis.aggregate.seed_interval`)."""
    metas = read_metas(meta_paths)
    variants = [v for v in BN_PAIR if any(m["variant"] == v for m in metas)]
    dist = load_table(meta_paths, "init_distance")
    dist = dist[dist.lr == lr]
    last = dist[dist.step == dist.groupby(["variant", "seed"]).step.transform("max")]
    last = last.assign(relative=last.distance / last.init_norm)
    fig, axes = subplots(1, 2, figsize=(13, 4.6), squeeze=False)
    for ax, col, what in ((axes[0, 0], "distance", "||W_T - W_0||"),
                          (axes[0, 1], "relative", "||W_T - W_0|| / ||W_0||")):
        sns.barplot(data=last, x="layer", y=col, hue="variant", hue_order=variants,
                    palette=PALETTE, estimator="mean", errorbar=seed_interval, ax=ax)
        ax.set_ylabel(what)
        ax.set_xlabel("layer (weight layers from the input)")
    annotate_runs(axes[0, 0], metas, lr, variants)
    legend(fig, axes, variants)
    final = int(last.step.max()) if len(last) else 0
    fig.suptitle(f"Figure 18: distance of each layer's weights from their initialisation at "
                 f"step {final} ({runs_name(metas)}, lr "
                 f"{lr:g}; {seeds_label(metas)})", fontsize=11)
    save(fig, out_path, rect=(0, 0.06, 1, 1))
