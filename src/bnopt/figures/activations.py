"""The paper's figures of activations over training (Figures 1(c), 2, 6, 8 and 9): their
distributions per layer, and how far noisy BN moves their moments; drawn like every figure
(:mod:`bnopt.figures.paper`), from the runs' activation tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot (which seaborn imports): no display needed
import pandas as pd  # noqa: E402

from bnopt.analysis.aggregate import load_table  # noqa: E402
from bnopt.figures.style import (  # noqa: E402
    BN_PAIR,
    LABELS,
    LP_VARIANTS,
    NOISY_VARIANTS,
    PALETTE,
    annotate_runs,
    check_layers,
    first_seed_runs,
    legend,
    lineplot,
    read_metas,
    runs_name,
    save,
    seeds_label,
    smooth_downsample,
    subplots,
)


def _fan(ax, acts: pd.DataFrame, color):
    """Percentile bands of a layer's pre-activations over training: 1-99, 5-95, 25-75, median."""
    a = acts.sort_values("step")
    for lo, hi, alpha in (("q01", "q99", 0.15), ("q05", "q95", 0.25), ("q25", "q75", 0.45)):
        ax.fill_between(a.step, a[lo], a[hi], color=color, alpha=alpha, lw=0)
    ax.plot(a.step, a.q50, color=color, lw=1.2)


def _activation_grid(axes, metas, variants, layers, lr):
    runs, seed = first_seed_runs(metas, variants, lr)
    acts = {v: load_table([p], "activations") for v, p in runs.items()}
    shown = [m for m in metas if m["_path"] in runs.values()]
    for i, layer in enumerate(layers):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            if v in acts:
                _fan(ax, acts[v][acts[v].layer == layer], PALETTE[v])
            if i == 0:
                annotate_runs(ax, shown, lr, [v])
            ax.set_title(f"{LABELS[v]}, layer {layer}", fontsize=10)
            if j == 0:
                ax.set_ylabel("pre-activation value")
            if i == len(layers) - 1:
                ax.set_xlabel("training step")
    for row in axes:  # one y range per layer, so the variants compare at a glance
        lo = min(a.get_ylim()[0] for a in row)
        hi = max(a.get_ylim()[1] for a in row)
        for a in row:
            a.set_ylim(lo, hi)
    return seed


def fig1_activations(meta_paths, out_path, layers, lr, title="Figure 1(c)",
                     what=None) -> None:
    """Figure 1(c): distribution of the pre-activations of ``layers`` over training (``what``:
    how the title names them; by default the inputs of the runs' nonlinearity)."""
    metas = read_metas(meta_paths)
    unit = {"relu": "ReLU", "sigmoid": "sigmoid"}[metas[0].get("activation", "relu")]
    what = what or f"the values entering each {unit}"
    check_layers(metas, layers)
    variants = BN_PAIR
    fig, axes = subplots(len(layers), 2, figsize=(11, 3.4 * len(layers)), squeeze=False,
                          sharex=True)
    seed = _activation_grid(axes, metas, variants, layers, lr)
    fig.suptitle(f"{title}: activation distributions over training, "
                 f"{runs_name(metas)}, lr {lr:g}, seed {seed}\n"
                 f"median, 25-75%, 5-95% and 1-99% of {what}", fontsize=11)
    save(fig, out_path)


def fig2_noisy_bn(meta_paths, out_path, lr, layers) -> None:
    """Figure 2: training accuracy of standard, BN and noisy BN, and the distributions of
    ``layers``' pre-activations in each (noisy BN's include its noise)."""
    metas = read_metas(meta_paths)
    check_layers(metas, layers)
    variants = [v for v in NOISY_VARIANTS
                if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    fig = subplots(figsize=(13, 3.9 + 2.9 * len(layers)))
    gs = fig.add_gridspec(1 + len(layers), len(variants), height_ratios=[1.3] + [1] * len(layers))
    ax = fig.add_subplot(gs[0, :])
    lineplot(ax, steps, "accuracy", variants)
    ax.set_xlabel("training step")
    ax.set_ylabel("training accuracy\n(batch, smoothed)")
    ax.set_ylim(0, 1.02)
    annotate_runs(ax, metas, lr, variants)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [LABELS[v] for v in labels], loc="lower right", fontsize=9)
    ax.set_title(f"training accuracy ({seeds_label(metas)})", fontsize=10)
    grid = [[fig.add_subplot(gs[1 + i, j]) for j in range(len(variants))] for i in range(len(layers))]
    seed = _activation_grid(grid, metas, variants, layers, lr)
    fig.suptitle(f"Figure 2: noisy BatchNorm trains almost as well as BatchNorm although its "
                 f"activations are unstable\n{runs_name(metas)}, "
                 f"lr {lr:g}; distributions: seed {seed}, median, 25-75%, 5-95%, 1-99%",
                 fontsize=11)
    save(fig, out_path)


def fig8_activation_shift(meta_paths, out_path, lr, layers) -> None:
    """Figure 8: how far one update moves ``layers``' pre-activations: the change of each
    unit's mean (over its std) and variance (over its variance) on the run's fixed probe
    batch, before and after a measured step's update (median over units), standard / BN /
    noisy BN; dashed, the sampling floor: the same between two different batches with no update
    (what a comparison of consecutive steps' batches measures before any update moves a unit)."""
    metas = read_metas(meta_paths)
    check_layers(metas, layers)
    variants = NOISY_VARIANTS
    acts = load_table(meta_paths, "activations")
    if "probe_mean_shift" not in acts or acts.probe_mean_shift.isna().all():
        raise ValueError("these runs have no probe_mean_shift (they were trained before the "
                         "probe batch's shift was measured): retrain them, e.g. delete their "
                         "folders under results/runs/ and run snakemake again")
    acts = acts.dropna(subset=["probe_mean_shift"])
    fig, axes = subplots(2, len(layers), figsize=(5 * len(layers), 7.2), squeeze=False,
                          sharex=True)
    for j, layer in enumerate(layers):
        d = acts[acts.layer == layer]
        for i, (col, floor, what) in enumerate(
                (("probe_mean_shift", "floor_mean_shift", "|change of mean| / std"),
                 ("probe_var_shift", "floor_var_shift", "|change of variance| / variance"))):
            lineplot(axes[i, j], d, col, variants)
            # the floor: its seed mean only, dashed (a band would hide the shifts' own)
            floors = d.groupby(["variant", "step"], observed=True)[floor].mean().reset_index()
            for v in variants:
                f = floors[floors.variant == v]
                axes[i, j].plot(f.step, f[floor], color=PALETTE[v], ls="--", lw=1)
            axes[i, j].set_yscale("log")
            axes[i, j].set_ylabel(what if j == 0 else "")
        axes[0, j].set_title(f"layer {layer}")
        axes[1, j].set_xlabel("training step")
    annotate_runs(axes[0, 0], metas, lr, variants)
    legend(fig, axes, variants)
    fig.suptitle("Figure 8: change of each unit's moments on a fixed batch over one update "
                 "(median over units; dashed: two different batches, no update)\n"
                 f"{runs_name(metas)}, lr {lr:g}, "
                 f"{seeds_label(metas)}", fontsize=11)
    save(fig, out_path, rect=(0, 0.04, 1, 1))


def fig6_lp_activations(meta_paths, out_path, lr, layer) -> None:
    """Figure 6: histogram of one layer's pre-activations at the last snapshot, per variant."""
    metas = read_metas(meta_paths)
    check_layers(metas, [layer])
    runs, seed = first_seed_runs(metas, LP_VARIANTS, lr)
    fig, axes = subplots(1, len(runs), figsize=(3.6 * len(runs), 3.6), squeeze=False)
    for ax, (v, p) in zip(axes[0], runs.items()):
        h = load_table([p], "histograms")
        h = h[(h.layer == layer) & (h.step == h.step.max())]
        width = h.right - h.left
        ax.bar(h.left, h["count"] / (h["count"].sum() * width), width=width, align="edge",
               color=PALETTE[v], alpha=0.8, lw=0)
        ax.set_title(f"{LABELS[v]}\nstep {int(h.step.max()) if len(h) else '-'}", fontsize=10)
        ax.set_xlabel("pre-activation value")
    axes[0][0].set_ylabel("density")
    fig.suptitle(f"Figure 6: layer {layer} activations at the last histogram snapshot, "
                 f"{runs_name(metas)}, lr {lr:g}, seed {seed}. l_p normalisations do not make them "
                 "Gaussian-like", fontsize=11)
    save(fig, out_path)


def fig19_unit_percentiles(meta_paths, out_path, lr) -> None:
    """Figure 19 (Ioffe & Szegedy's Figure 1(b, c)): the 15th, 50th and 85th percentiles over
    the batch of single units' inputs to their nonlinearity in the last hidden layer, over
    training: one row per variant (standard, BN), one column per followed unit, lowest seed.
    Without BN they drift; with it they stay put."""
    metas = read_metas(meta_paths)
    variants = [v for v in BN_PAIR if any(m["variant"] == v for m in metas)]
    runs, seed = first_seed_runs(metas, variants, lr)
    units = {v: load_table([p], "units") for v, p in runs.items()}
    if any(u.empty for u in units.values()):
        raise ValueError("these runs followed no unit (units_per_layer = 0 or measure_every = "
                         "0): set units_per_layer > 0 and rerun their training.")
    layer = int(max(u.layer.max() for u in units.values())) - 1  # the logits' layer is last
    followed = sorted(set(units[variants[0]].query("layer == @layer").unit))
    fig, axes = subplots(len(variants), len(followed), figsize=(4.2 * len(followed) + 1,
                                                                 3.2 * len(variants) + 1.2),
                         squeeze=False, sharex=True, sharey=True)
    for i, v in enumerate(variants):
        u = units[v].query("layer == @layer").sort_values("step")
        for j, unit in enumerate(followed):
            ax, one = axes[i, j], u[u.unit == unit]
            ax.fill_between(one.step, one.q15, one.q85, color=PALETTE[v], alpha=0.3, lw=0)
            for q, ls in (("q15", ":"), ("q50", "-"), ("q85", "--")):
                ax.plot(one.step, one[q], color=PALETTE[v], lw=1.2, ls=ls,
                        label=f"{q[1:]}th percentile")
            ax.set_title(f"{LABELS[v]}: unit {unit}", fontsize=10)
            if i == len(variants) - 1:
                ax.set_xlabel("training step")
        axes[i, 0].set_ylabel("input to the nonlinearity")
    axes[0, 0].legend(loc="best", fontsize=8)
    annotate_runs(axes[0, -1], metas, lr, variants)
    unit = {"relu": "ReLU", "sigmoid": "sigmoid"}[metas[0].get("activation", "relu")]
    fig.suptitle(f"Figure 19: inputs to single {unit} units of the last hidden layer (layer "
                 f"{layer}) over training, 15th / 50th / 85th percentiles over the batch\n"
                 f"{runs_name(metas)}, lr {lr:g}, seed {seed}", fontsize=11)
    save(fig, out_path)
