"""The paper's comparison figures, drawn with seaborn from the runs' Parquet tables.

Every curve is the mean over seeds, with the band of :func:`bnopt.analysis.aggregate.seed_interval` (the
95% t-interval of the mean with 3 or more seeds, the range with 2); titles say which. The
scorecard (:mod:`bnopt.scorecard.verdicts`) uses the same rule. "Train accuracy" is the accuracy
on each step's training batch in training mode (batch statistics, and noise for noisy BN), as
the model sees it while it learns, smoothed with a centred rolling mean over ``steps / 100``
steps. "Test accuracy" is measured in eval mode (BN running statistics) on the full test split.
"""

from __future__ import annotations

from functools import partial

import matplotlib

matplotlib.use("Agg")  # before pyplot (which seaborn imports): no display needed
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bnopt.analysis.aggregate import (  # noqa: E402
    landscape_summary,
    load_table,
    read_meta,
    seed_interval,
)
from bnopt.figures.activations import (  # noqa: E402
    fig1_activations,
    fig2_noisy_bn,
    fig6_lp_activations,
    fig8_activation_shift,
    fig19_unit_percentiles,
)
from bnopt.figures.earlier import fig17_gradient_norm, fig18_init_distance  # noqa: E402
from bnopt.figures.style import (  # noqa: E402
    BN_PAIR,
    LABELS,
    LP_VARIANTS,
    NORMALISER_VARIANTS,
    PALETTE,
    annotate_runs,
    check_layers,
    first_seed_runs,
    legend,
    lineplot,
    matched_panel,
    read_metas,
    runs_name,
    save,
    seeds_label,
    smooth_downsample,
    stability_line,
    subplots,
    top_panel,
)


def fig1_accuracy(meta_paths, out_path, lrs) -> None:
    """Figure 1(a,b): train and test accuracy vs step, standard vs BN, one column per lr."""
    metas = read_metas(meta_paths)
    variants = [v for v in BN_PAIR if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    evals = load_table(meta_paths, "eval")
    fig, axes = subplots(2, len(lrs), figsize=(5.2 * len(lrs), 7.6), squeeze=False,
                          sharex=True, sharey="row")
    for j, lr in enumerate(lrs):
        lineplot(axes[0, j], steps[steps.lr == lr], "accuracy", variants)
        lineplot(axes[1, j], evals[evals.lr == lr], "test_acc", variants, marker="o", markersize=3)
        axes[0, j].set_title(f"learning rate {lr:g}")
        annotate_runs(axes[0, j], metas, lr, variants)
        axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel("training accuracy (batch, smoothed)")
    axes[1, 0].set_ylabel("test accuracy")
    for ax in axes.ravel():
        ax.set_ylim(0, 1.02)
    legend(fig, axes, variants)
    fig.suptitle(f"Figure 1(a,b): {runs_name(metas)}, standard vs BatchNorm "
                 f"({seeds_label(metas)})", fontsize=13)
    save(fig, out_path, rect=(0, 0.04, 1, 1))


def fig3_ics(meta_paths, out_path, lrs, layers, top="accuracy", title="Figure 3(a)") -> None:
    """Figure 3: gradient ICS (Definition 2.1) of ``layers``, l2 difference and cosine, with
    training accuracy (``top='accuracy'``) or loss, standard vs BN, one column per lr."""
    metas = read_metas(meta_paths)
    check_layers(metas, layers)
    variants = BN_PAIR
    steps = smooth_downsample(load_table(meta_paths, "steps"), top, ["variant", "lr", "seed"])
    ics = load_table(meta_paths, "ics")
    with np.errstate(divide="ignore", invalid="ignore"):
        ics = ics.assign(rel=ics.l2 / ics.grad_norm)
    rows = (["acc"] + [("rel", i) for i in layers] + [("cos", i) for i in layers]
            + [("l2", i) for i in layers])
    height = 2.5 * len(rows)  # inches; the title and legend take the same inches at any height
    fig, axes = subplots(len(rows), len(lrs), figsize=(max(5.4 * len(lrs), 9.0), height),
                          squeeze=False, sharex=True)
    for j, lr in enumerate(lrs):
        for i, row in enumerate(rows):
            ax = axes[i, j]
            if row == "acc":
                ylabel = top_panel(ax, steps[steps.lr == lr], top, variants)
                ax.set_title(f"learning rate {lr:g}")
                annotate_runs(ax, metas, lr, variants)
            else:
                kind, layer = row
                d = ics[(ics.lr == lr) & (ics.layer == layer)]
                lineplot(ax, d, kind, variants)
                if kind in ("l2", "rel"):
                    ax.set_yscale("log")
                    ylabel = (f"layer {layer}: ||G - G'||" if kind == "l2" else
                              f"layer {layer}: ||G - G'|| / ||G||")
                else:  # down to -1 where a cosine is negative, as BN's can be
                    ax.set_ylim(-1.05 if (d["cos"] < -0.05).any() else -0.05, 1.05)
                    ylabel = f"layer {layer}: cos(G, G')"
            ax.set_ylabel(ylabel if j == 0 else "")
        axes[-1, j].set_xlabel("training step")
    legend(fig, axes, variants)
    fig.suptitle(f"{title}: internal covariate shift in the gradient sense (Definition 2.1)\n"
                 "G' = layer gradient after the layers below take the step's update; relative "
                 "ICS (the scorecard's), cosine, then absolute ICS\n"
                 f"{runs_name(metas)}, {seeds_label(metas)}", fontsize=11)
    save(fig, out_path, rect=(0, 0.5 / height, 1, 1 - 0.75 / height))


def fig4_landscape(meta_paths, out_path, lr, variants=BN_PAIR, top=None,
                   title="Figure 4: BatchNorm smooths the loss landscape", log_all=False,
                   table="probes") -> None:
    """Figure 4: (a) loss range along the gradient (log scale), (b) gradient predictiveness
    range, (c) effective beta-smoothness, averaged over seeds; with ``top`` ('accuracy' or
    'loss') a training-curve panel comes first (Figures 12 and 13). ``log_all`` puts (b) and (c)
    on log scales too (the DLN's values span several decades). ``table="update_probes"``: the
    same along the update the optimizer made (Figure 4u)."""
    metas = read_metas(meta_paths)
    variants = [v for v in variants if any(m["variant"] == v for m in metas)]
    land = landscape_summary(load_table(meta_paths, table), ("variant", "seed", "step"))
    update = table == "update_probes"
    along = "the update u" if update else "the gradient"
    if land.empty:
        raise ValueError("these runs measured no step (measure_every = 0), so there is no "
                         "landscape to draw: set measure_every > 0 and rerun their training.")
    mean = land.groupby(["variant", "step"]).mean(numeric_only=True).reset_index()
    mults = metas[0]["probe_multipliers"]
    matched = top is None  # Figures 4 and 10: a fourth panel at matched training loss
    n = 3 + (top is not None) + matched
    fig, axes = subplots(1, n, figsize=(5.7 * n, 4.8))
    if top is not None:
        steps = smooth_downsample(load_table(meta_paths, "steps"), top, ["variant", "lr", "seed"])
        axes[0].set_ylabel(top_panel(axes[0], steps, top, variants))
        axes[0].get_legend().remove()
        axes[0].set_title("training curve")
    a, b, c = axes[-4:-1] if matched else axes[-3:]
    for v in variants:
        m = mean[mean.variant == v]
        for ax, lo, hi in ((a, "loss_min", "loss_max"), (b, "grad_pred_min", "grad_pred_max")):
            ax.fill_between(m.step, m[lo], m[hi], color=PALETTE[v], alpha=0.35, lw=0, label=LABELS[v])
            ax.plot(m.step, m[lo], color=PALETTE[v], lw=0.6)
            ax.plot(m.step, m[hi], color=PALETTE[v], lw=0.6)
    lineplot(c, land, "beta_max", variants)
    c.get_legend().remove()
    c.legend(handles=[stability_line(c, lr, metas[0])],
             loc="best", fontsize=8)
    for ax in (a, b, c) if log_all else (a,):
        ax.set_yscale("log")
    annotate_runs(axes[0], metas, lr, variants)
    a.set_title(f"(a) loss landscape: loss along {along}")
    a.set_ylabel("training loss (min..max over step lengths)")
    b.set_title("(b) gradient predictiveness")
    b.set_ylabel(f"||grad L({'x + m u' if update else 'x - eta g'}) - g|| (min..max)")
    c.set_title("(c) effective beta-smoothness")
    c.set_ylabel("max ||grad L(x') - g|| / ||x' - x||")
    for ax in (a, b, c):
        ax.set_xlabel("training step")
    if matched:
        matched_panel(axes[-1], meta_paths, land, "loss_range", variants)
        axes[-1].set_title("(d) loss range at matched training loss")
        axes[-1].set_ylabel(f"loss range along {along} (max - min)")
    a.legend(loc="upper right", fontsize=9)
    points = (f"x + m u, m = {min(mults):g}..{max(mults):g}, u the update the optimizer made"
              if update else f"eta = {min(mults):g}..{max(mults):g} x lr")
    fig.suptitle(f"{title}. {runs_name(metas)}, lr {lr:g}; probes at {points} "
                 f"({len(mults)} points)\nbands in the landscape panels: seed-mean of min..max "
                 f"over the probe points; other panels: {seeds_label(metas)}", fontsize=11)
    save(fig, out_path)


def fig11_gradient_vs_step(meta_paths, out_path, lr, max_curves: int = 12) -> None:
    """Figure 11: l2 change of the gradient vs the step length along the gradient, one curve
    per measured training step (colour = step), standard vs BN, lowest seed."""
    metas = read_metas(meta_paths)
    variants = BN_PAIR
    runs, seed = first_seed_runs(metas, variants, lr)
    fig, axes = subplots(1, 2, figsize=(12, 4.8), sharey=True)
    probes = {v: load_table([p], "probes") for v, p in runs.items()}
    all_steps = sorted(set().union(*(set(p.step) for p in probes.values())))
    pick = all_steps[:: max(1, int(np.ceil(len(all_steps) / max_curves)))]
    norm = matplotlib.colors.Normalize(min(pick), max(pick) if len(pick) > 1 else min(pick) + 1)
    cmap = matplotlib.colormaps["viridis"]
    for ax, v in zip(axes, variants):
        p = probes.get(v)
        for st in pick:
            d = p[p.step == st].sort_values("step_size") if p is not None else None
            if d is not None and len(d):
                ax.plot(d.step_size, d.grad_change, color=cmap(norm(st)), marker="o", ms=3, lw=1.2)
        ax.set_title(LABELS[v])
        ax.set_xlabel("step length eta along the gradient")
        ax.set_yscale("log")
    axes[0].set_ylabel("||grad L(x - eta g) - g||")
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes, label="training step", fraction=0.03, pad=0.02)
    fig.suptitle(f"Figure 11: gradient change vs step length along the gradient, "
                 f"{runs_name(metas)}, lr {lr:g}, seed {seed}",
                 fontsize=11)
    save(fig, out_path, tight=False)  # the colorbar spans both panels


def fig5_lp(meta_paths, out_path, lr, dln_lr) -> None:
    """Figure 5: l_p normalisation, (a) network training accuracy, (b) DLN training loss;
    standard, BN, l1, l2, l-inf."""
    metas = read_metas(meta_paths)
    groups = {"net": [m["_path"] for m in metas if m["model"] != "dln"],
              "dln": [m["_path"] for m in metas if m["model"] == "dln"]}
    fig, axes = subplots(1, 2, figsize=(13, 4.9))
    for ax, (key, top, rate, label) in zip(axes, (("net", "accuracy", lr, "(a)"),
                                                  ("dln", "loss", dln_lr, "(b)"))):
        paths = groups[key]
        steps = smooth_downsample(load_table(paths, "steps"), top, ["variant", "lr", "seed"])
        variants = [v for v in LP_VARIANTS if v in set(steps.variant)]
        ax.set_ylabel(top_panel(ax, steps, top, variants))
        ax.set_xlabel("training step")
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [LABELS[v] for v in labels], fontsize=8,
                  loc="lower right" if top == "accuracy" else "upper right")
        ax.set_title(f"{label} {runs_name([read_meta(paths[0])])}, lr {rate:g}", fontsize=11)
        annotate_runs(ax, [m for m in metas if m["_path"] in paths], rate, variants)
    fig.suptitle(f"Figure 5: l_p normalisations train like BatchNorm ({seeds_label(metas)})",
                 fontsize=12)
    save(fig, out_path)


def fig16_curvature(meta_paths, out_path, lr, dln_lr) -> None:
    """Figure 16 (ours): curvature of the training loss, standard vs BN, network (at ``lr``) and
    DLN (at ``dln_lr``): the top Hessian eigenvalue lambda_max and the batch sharpness
    g^T H g / g^T g along the step's gradient, with the paper's effective beta on the same
    axes and the edge of stability 2/lr; mean over seeds with bands, log scale."""
    metas = read_metas(meta_paths)
    families = [(f, [m for m in metas if (m["model"] == "dln") == (f == "dln")], rate)
                for f, rate in (("net", lr), ("dln", dln_lr))]
    families = [(f, ms, rate) for f, ms, rate in families if ms]
    fig, axes = subplots(len(BN_PAIR), len(families), figsize=(6.4 * len(families), 8.4),
                          squeeze=False, sharex="col", sharey="col")
    styles = (("lambda_max", "top Hessian eigenvalue lambda_max", "-"),
              ("batch_sharpness", "batch sharpness g'Hg / g'g", "--"),
              ("beta_max", "effective beta (paper, Fig. 4c)", ":"))
    for j, (fam, ms, rate) in enumerate(families):
        paths = [m["_path"] for m in ms]
        hess = load_table(paths, "hessian")
        if hess.empty:
            raise ValueError(f"the {runs_name(ms)} runs measured no curvature (hessian_every = 0"
                             f"{' in dln' if fam == 'dln' else ''}): set it > 0 and rerun their "
                             "training (docs/measurements.md, 'Curvature').")
        beta = landscape_summary(load_table(paths, "probes"), ("variant", "seed", "step"))
        both = hess.melt(id_vars=["variant", "seed", "step"],
                         value_vars=["lambda_max", "batch_sharpness"], var_name="quantity")
        both = pd.concat([both, beta.assign(quantity="beta_max", value=beta.beta_max)[
            ["variant", "seed", "step", "quantity", "value"]]], ignore_index=True)
        for i, v in enumerate(BN_PAIR):
            ax = axes[i, j]
            d = both[both.variant == v]  # all values: the seed mean may still be > 0
            for q, label, ls in styles:
                dq = d[d.quantity == q]
                if len(dq):
                    sns.lineplot(data=dq, x="step", y="value", estimator="mean",
                                 errorbar=seed_interval,
                                 color=PALETTE[v], ls=ls, ax=ax, label=label,
                                 marker="o" if q != "beta_max" else None, markersize=3)
            handles = ax.get_legend_handles_labels()[0] if ax.get_legend() else []
            handles.append(stability_line(ax, rate, ms[0]))
            ax.legend(handles=handles, fontsize=7.5, loc="best")
            ax.set_yscale("log", nonpositive="mask")
            neg = d[(d.quantity == "batch_sharpness") & (d.value <= 0)]
            if len(neg):  # negative curvature along g: the log scale cannot show it
                n_all = int((d.quantity == "batch_sharpness").sum())
                ax.text(0.98, 0.02, f"batch sharpness <= 0 at {len(neg)} of {n_all} (seed, step):"
                        "\nnot on the log scale (seed means <= 0 leave gaps)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5,
                        color="0.25")
            ax.set_title(f"{runs_name(ms)}: {LABELS[v]}, lr {rate:g}", fontsize=10)
            ax.set_ylabel("curvature (log scale)" if j == 0 else "")
            annotate_runs(ax, ms, rate, [v])
        axes[-1, j].set_xlabel("training step")
    fig.suptitle("Figure 16: curvature of the training loss (training-mode BN, each step's batch): "
                 "top Hessian eigenvalue (Lanczos)\nand batch sharpness along the gradient, with "
                 f"the paper's effective beta; {seeds_label(metas)}; dashed black: 2/lr",
                 fontsize=11)
    save(fig, out_path)


# Every figure's draw function, by the name of its registry entry (bnopt.plan.figure_specs.FIGURE_REGISTRY,
# which says which runs and arguments it gets); the figures that are another one's panels for
# other runs or variants are that one with its arguments bound.
FIGURES = {
    "fig1_accuracy": fig1_accuracy,
    "fig1_activations": fig1_activations,
    "fig2_noisy_bn": fig2_noisy_bn,
    "fig3_ics": fig3_ics,
    # Figure 3(b): gradient ICS in the deep linear network, with its training loss
    "fig3_ics_dln": partial(fig3_ics, top="loss", title="Figure 3(b)"),
    "fig4_landscape": fig4_landscape,
    "fig5_lp": fig5_lp,
    "fig6_lp_activations": fig6_lp_activations,
    "fig8_activation_shift": fig8_activation_shift,
    # Figure 9: activation distributions of the deep linear network over training
    "fig9_dln_activations": partial(fig1_activations, title="Figure 9",
                                    what="each layer's output (after its normalisation)"),
    # Figure 10: Figure 4 for the deep linear network
    "fig10_dln_landscape": partial(fig4_landscape, title="Figure 10: loss landscape of the DLN",
                                   log_all=True),
    "fig11_gradient_vs_step": fig11_gradient_vs_step,
    # Figures 12 and 13: Figure 4's panels plus training accuracy (network) or loss (DLN) for
    # the l_p variants
    "fig12_lp_vgg": partial(fig4_landscape, variants=LP_VARIANTS, top="accuracy",
                            title="Figure 12: l_p normalisations also smooth the landscape"),
    "fig13_lp_dln": partial(fig4_landscape, variants=LP_VARIANTS, top="loss", log_all=True,
                            title="Figure 13: l_p normalisations in the deep linear network"),
    # Figures 14 and 15 (ours): the same for the normalisers that replaced BN in practice:
    # standard, BN, LayerNorm, GroupNorm and weight normalisation
    "fig14_normalisers_vgg": partial(
        fig4_landscape, variants=NORMALISER_VARIANTS, top="accuracy",
        title="Figure 14: LayerNorm, GroupNorm and weight normalisation"),
    "fig15_normalisers_dln": partial(
        fig4_landscape, variants=NORMALISER_VARIANTS, top="loss", log_all=True,
        title="Figure 15: LayerNorm, GroupNorm and weight normalisation in the DLN"),
    "fig16_curvature": fig16_curvature,
    # Figures 17 and 18 (the earlier experiments'): gradient magnitude, distance from init
    "fig17_gradient_norm": fig17_gradient_norm,
    "fig18_init_distance": fig18_init_distance,
    # Figure 19 (Ioffe & Szegedy's Figure 1(b, c)): single units' input percentiles
    "fig19_unit_percentiles": fig19_unit_percentiles,
    # Figure 4u: Figure 4 along the update the optimizer made (Adam's), not the gradient
    "fig4u_update_landscape": partial(
        fig4_landscape, table="update_probes",
        title="Figure 4u: the loss landscape along the update the optimizer made"),
}
