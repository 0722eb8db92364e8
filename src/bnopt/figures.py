"""The paper's comparison figures, drawn with seaborn from the runs' Parquet tables.

Every curve is the mean over seeds, with the band of :func:`bnopt.aggregate.seed_interval` (the
95% t-interval of the mean with 3 or more seeds, the range with 2); titles say which. The
scorecard (:mod:`bnopt.verdicts`) uses the same rule. "Train accuracy" is the accuracy
on each step's training batch in training mode (batch statistics, and noise for noisy BN), as
the model sees it while it learns, smoothed with a centred rolling mean over ``steps / 100``
steps. "Test accuracy" is measured in eval mode (BN running statistics) on the full test split.
"""

from __future__ import annotations

from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bnopt.aggregate import (band_label, edge_of_stability, landscape_summary,  # noqa: E402
                             load_table, read_meta, seed_interval)
from bnopt.progress import (BINS_PER_DECADE, MIN_STEPS_PER_BIN, bin_edges,  # noqa: E402
                            binned, smoothed_loss)
from bnopt.variants import VARIANT_INFO, variants_in  # noqa: E402

# labels, colours and the variants each family of figures compares: from the registry
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


def _lineplot(ax, df, y, variants, **kw):
    sns.lineplot(data=df, x="step", y=y, hue="variant", hue_order=variants, palette=PALETTE,
                 estimator="mean", errorbar=seed_interval, ax=ax, **kw)


def _run_notes(metas: list[dict], lr: float, variants: list[str]) -> str:
    """Which runs at ``lr`` diverged or never learned (README, "Outputs"), per variant."""
    notes = []
    for v in variants:
        runs = [m for m in metas if m["variant"] == v and m["lr"] == lr]
        for key, what in (("diverged", "diverged"), ("never_learned", "never learned")):
            d = sum(bool(m.get(key)) for m in runs)
            if d:
                notes.append(f"{LABELS[v]}: {d}/{len(runs)} runs {what}")
    return "\n".join(notes)


def _annotate_runs(ax, metas: list[dict], lr: float, variants: list[str]) -> None:
    """Name the runs that diverged or never learned in a box in ``ax``'s upper left corner."""
    note = _run_notes(metas, lr, variants)
    if note:
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=8, color="0.15",
                bbox=dict(facecolor="#fff4e5", alpha=0.9, edgecolor="#e08000"), zorder=10)


def _stability_line(ax, lr: float, momentum: float):
    """Draw the edge of stability of ``lr`` in ``ax``; returns the line (for a legend)."""
    level = edge_of_stability(lr, momentum)
    what = "2/lr" if momentum == 0 else f"2(1+{momentum:g})/lr"
    return ax.axhline(level, color="0.2", ls="--", lw=1.1, zorder=1,
               label=f"edge of stability {what} = {level:.3g} (lr {lr:g})")


def _subplots(*args, **kwargs):
    """Every figure's preamble: the house style (seaborn's whitegrid), then
    ``plt.subplots(*args, **kwargs)``; with no arguments, an empty figure of ``figsize``."""
    sns.set_theme(style="whitegrid", context="notebook")
    if not args and set(kwargs) <= {"figsize"}:
        return plt.figure(**kwargs)
    return plt.subplots(*args, **kwargs)


def _seeds(metas: list[dict]) -> str:
    """What a figure's bands are (aggregate.band_label) for the seeds among ``metas``."""
    return band_label(len({m["seed"] for m in metas}))


def _save(fig, out_path, rect=None, tight=True) -> None:
    """Every figure's epilogue: lay out, write the PNG, free the figure."""
    if tight:
        fig.tight_layout(rect=rect) if rect else fig.tight_layout()
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)


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
    metas = _read_metas(meta_paths)
    variants = [v for v in BN_PAIR if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    evals = load_table(meta_paths, "eval")
    fig, axes = _subplots(2, len(lrs), figsize=(5.2 * len(lrs), 7.6), squeeze=False,
                          sharex=True, sharey="row")
    for j, lr in enumerate(lrs):
        _lineplot(axes[0, j], steps[steps.lr == lr], "accuracy", variants)
        _lineplot(axes[1, j], evals[evals.lr == lr], "test_acc", variants, marker="o", markersize=3)
        axes[0, j].set_title(f"learning rate {lr:g}")
        _annotate_runs(axes[0, j], metas, lr, variants)
        axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel("training accuracy (batch, smoothed)")
    axes[1, 0].set_ylabel("test accuracy")
    for ax in axes.ravel():
        ax.set_ylim(0, 1.02)
    _legend(fig, axes, variants)
    fig.suptitle(f"Figure 1(a,b): {_name(metas)}, standard vs BatchNorm "
                 f"({_seeds(metas)})", fontsize=13)
    _save(fig, out_path, rect=(0, 0.04, 1, 1))


def _first_seed_runs(metas: list[dict], variants, lr) -> tuple[dict, int]:
    """(variant -> run.json path, seed) for the lowest seed at ``lr``: distributions and
    per-step curves are shown for one seed, not averaged."""
    seed = min(m["seed"] for m in metas if m["lr"] == lr)
    return {m["variant"]: m["_path"] for m in metas
            if m["lr"] == lr and m["seed"] == seed and m["variant"] in variants}, seed


def _name(metas) -> str:
    """'VGG on cifar10' or 'deep linear network' for titles."""
    m = metas[0]
    return "deep linear network (y = Ax)" if m["model"] == "dln" else f"{m['model'].upper()} on {m['dataset']}"


def _read_metas(meta_paths) -> list[dict]:
    return [{**read_meta(p), "_path": p} for p in meta_paths]


def _check_layers(metas, layers):
    n = min(m["num_layers"] for m in metas)
    bad = [i for i in layers if i > n]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has layers 1..{n}")


def _fan(ax, acts: pd.DataFrame, color):
    """Percentile bands of a layer's pre-activations over training: 1-99, 5-95, 25-75, median."""
    a = acts.sort_values("step")
    for lo, hi, alpha in (("q01", "q99", 0.15), ("q05", "q95", 0.25), ("q25", "q75", 0.45)):
        ax.fill_between(a.step, a[lo], a[hi], color=color, alpha=alpha, lw=0)
    ax.plot(a.step, a.q50, color=color, lw=1.2)


def _activation_grid(axes, metas, variants, layers, lr):
    runs, seed = _first_seed_runs(metas, variants, lr)
    acts = {v: load_table([p], "activations") for v, p in runs.items()}
    shown = [m for m in metas if m["_path"] in runs.values()]
    for i, layer in enumerate(layers):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            if v in acts:
                _fan(ax, acts[v][acts[v].layer == layer], PALETTE[v])
            if i == 0:
                _annotate_runs(ax, shown, lr, [v])
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
                     what="the values entering each ReLU") -> None:
    """Figure 1(c): distribution of the pre-activations of ``layers`` over training."""
    metas = _read_metas(meta_paths)
    _check_layers(metas, layers)
    variants = BN_PAIR
    fig, axes = _subplots(len(layers), 2, figsize=(11, 3.4 * len(layers)), squeeze=False,
                          sharex=True)
    seed = _activation_grid(axes, metas, variants, layers, lr)
    fig.suptitle(f"{title}: activation distributions over training, "
                 f"{_name(metas)}, lr {lr:g}, seed {seed}\n"
                 f"median, 25-75%, 5-95% and 1-99% of {what}", fontsize=11)
    _save(fig, out_path)


def fig2_noisy_bn(meta_paths, out_path, lr, layers) -> None:
    """Figure 2: training accuracy of standard, BN and noisy BN, and the distributions of
    ``layers``' pre-activations in each (noisy BN's include its noise)."""
    metas = _read_metas(meta_paths)
    _check_layers(metas, layers)
    variants = [v for v in NOISY_VARIANTS
                if any(m["variant"] == v for m in metas)]
    steps = smooth_downsample(load_table(meta_paths, "steps"), "accuracy", ["variant", "lr", "seed"])
    fig = _subplots(figsize=(13, 3.9 + 2.9 * len(layers)))
    gs = fig.add_gridspec(1 + len(layers), len(variants), height_ratios=[1.3] + [1] * len(layers))
    ax = fig.add_subplot(gs[0, :])
    _lineplot(ax, steps, "accuracy", variants)
    ax.set_xlabel("training step")
    ax.set_ylabel("training accuracy\n(batch, smoothed)")
    ax.set_ylim(0, 1.02)
    _annotate_runs(ax, metas, lr, variants)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [LABELS[v] for v in labels], loc="lower right", fontsize=9)
    ax.set_title(f"training accuracy ({_seeds(metas)})", fontsize=10)
    grid = [[fig.add_subplot(gs[1 + i, j]) for j in range(len(variants))] for i in range(len(layers))]
    seed = _activation_grid(grid, metas, variants, layers, lr)
    fig.suptitle(f"Figure 2: noisy BatchNorm trains almost as well as BatchNorm although its "
                 f"activations are unstable\n{metas[0]['model'].upper()} on {metas[0]['dataset']}, "
                 f"lr {lr:g}; distributions: seed {seed}, median, 25-75%, 5-95%, 1-99%",
                 fontsize=11)
    _save(fig, out_path)


def _top_panel(ax, steps, top, variants):
    """Training accuracy (smoothed, 0..1) or training loss (log scale) vs step."""
    _lineplot(ax, steps, top, variants)
    if top == "accuracy":
        ax.set_ylim(0, 1.02)
        return "training accuracy"
    ax.set_yscale("log")
    return "training loss"


def fig3_ics(meta_paths, out_path, lrs, layers, top="accuracy", title="Figure 3(a)") -> None:
    """Figure 3: gradient ICS (Definition 2.1) of ``layers``, l2 difference and cosine, with
    training accuracy (``top='accuracy'``) or loss, standard vs BN, one column per lr."""
    metas = _read_metas(meta_paths)
    _check_layers(metas, layers)
    variants = BN_PAIR
    steps = smooth_downsample(load_table(meta_paths, "steps"), top, ["variant", "lr", "seed"])
    ics = load_table(meta_paths, "ics")
    with np.errstate(divide="ignore", invalid="ignore"):
        ics = ics.assign(rel=ics.l2 / ics.grad_norm)
    rows = (["acc"] + [("rel", i) for i in layers] + [("cos", i) for i in layers]
            + [("l2", i) for i in layers])
    fig, axes = _subplots(len(rows), len(lrs), figsize=(5.4 * len(lrs), 2.5 * len(rows)),
                          squeeze=False, sharex=True)
    for j, lr in enumerate(lrs):
        for i, row in enumerate(rows):
            ax = axes[i, j]
            if row == "acc":
                ylabel = _top_panel(ax, steps[steps.lr == lr], top, variants)
                ax.set_title(f"learning rate {lr:g}")
                _annotate_runs(ax, metas, lr, variants)
            else:
                kind, layer = row
                d = ics[(ics.lr == lr) & (ics.layer == layer)]
                _lineplot(ax, d, kind, variants)
                if kind in ("l2", "rel"):
                    ax.set_yscale("log")
                    ylabel = (f"layer {layer}: ||G - G'||" if kind == "l2" else
                              f"layer {layer}: ||G - G'|| / ||G||")
                else:  # down to -1 where a cosine is negative, as BN's can be
                    ax.set_ylim(-1.05 if (d["cos"] < -0.05).any() else -0.05, 1.05)
                    ylabel = f"layer {layer}: cos(G, G')"
            ax.set_ylabel(ylabel if j == 0 else "")
        axes[-1, j].set_xlabel("training step")
    _legend(fig, axes, variants)
    fig.suptitle(f"{title}: internal covariate shift in the gradient sense (Definition 2.1)\n"
                 "G' = layer gradient after the layers below take the step's update; relative "
                 "ICS (the scorecard's), cosine, then absolute ICS\n"
                 f"{_name(metas)}, {_seeds(metas)}", fontsize=11)
    _save(fig, out_path, rect=(0, 0.03, 1, 1))


def fig4_landscape(meta_paths, out_path, lr, variants=BN_PAIR, top=None,
                   title="Figure 4: BatchNorm smooths the loss landscape", log_all=False) -> None:
    """Figure 4: (a) loss range along the gradient (log scale), (b) gradient predictiveness
    range, (c) effective beta-smoothness, averaged over seeds; with ``top`` ('accuracy' or
    'loss') a training-curve panel comes first (Figures 12 and 13). ``log_all`` puts (b) and (c)
    on log scales too (the DLN's values span several decades)."""
    metas = _read_metas(meta_paths)
    variants = [v for v in variants if any(m["variant"] == v for m in metas)]
    land = landscape_summary(load_table(meta_paths, "probes"), ("variant", "seed", "step"))
    if land.empty:
        raise ValueError("these runs measured no step (measure_every = 0), so there is no "
                         "landscape to draw: set measure_every > 0 and rerun their training.")
    mean = land.groupby(["variant", "step"]).mean(numeric_only=True).reset_index()
    mults = metas[0]["probe_multipliers"]
    matched = top is None  # Figures 4 and 10: a fourth panel at matched training loss
    n = 3 + (top is not None) + matched
    fig, axes = _subplots(1, n, figsize=(5.7 * n, 4.8))
    if top is not None:
        steps = smooth_downsample(load_table(meta_paths, "steps"), top, ["variant", "lr", "seed"])
        axes[0].set_ylabel(_top_panel(axes[0], steps, top, variants))
        axes[0].get_legend().remove()
        axes[0].set_title("training curve")
    a, b, c = axes[-4:-1] if matched else axes[-3:]
    for v in variants:
        m = mean[mean.variant == v]
        for ax, lo, hi in ((a, "loss_min", "loss_max"), (b, "grad_pred_min", "grad_pred_max")):
            ax.fill_between(m.step, m[lo], m[hi], color=PALETTE[v], alpha=0.35, lw=0, label=LABELS[v])
            ax.plot(m.step, m[lo], color=PALETTE[v], lw=0.6)
            ax.plot(m.step, m[hi], color=PALETTE[v], lw=0.6)
    _lineplot(c, land, "beta_max", variants)
    c.get_legend().remove()
    c.legend(handles=[_stability_line(c, lr, float(metas[0].get("momentum", 0.0)))],
             loc="best", fontsize=8)
    for ax in (a, b, c) if log_all else (a,):
        ax.set_yscale("log")
    _annotate_runs(axes[0], metas, lr, variants)
    a.set_title("(a) loss landscape: loss along the gradient")
    a.set_ylabel("training loss (min..max over step lengths)")
    b.set_title("(b) gradient predictiveness")
    b.set_ylabel("||grad L(x - eta g) - g|| (min..max)")
    c.set_title("(c) effective beta-smoothness")
    c.set_ylabel("max ||grad L(x') - g|| / ||x' - x||")
    for ax in (a, b, c):
        ax.set_xlabel("training step")
    if matched:
        _matched_panel(axes[-1], meta_paths, land, "loss_range", variants)
        axes[-1].set_title("(d) loss range at matched training loss")
        axes[-1].set_ylabel("loss range along the gradient (max - min)")
    a.legend(loc="upper right", fontsize=9)
    fig.suptitle(f"{title}. {_name(metas)}, lr {lr:g}; probes at eta = {min(mults):g}..{max(mults):g} "
                 f"x lr ({len(mults)} points)\nbands in the landscape panels: seed-mean of min..max "
                 f"over the probe points; other panels: {_seeds(metas)}", fontsize=11)
    _save(fig, out_path)


def _matched_panel(ax, meta_paths, per_step: pd.DataFrame, column: str, variants) -> None:
    """``column`` of ``per_step`` (rows of variant, seed, step) against the training loss: each
    run's median in each training-loss bin where it has enough measured steps, the seed mean
    with its band, loss falling to the right. What the scorecard compares (bnopt.progress)."""
    steps = load_table(meta_paths, "steps")
    rows = []
    for (v, s), g in steps.groupby(["variant", "seed"]):
        vals = per_step[(per_step.variant == v) & (per_step.seed == s)]
        b = binned(vals[["step", column]].rename(columns={column: "value"}), smoothed_loss(g))
        rows.append(b[b["count"] >= MIN_STEPS_PER_BIN].assign(variant=v, seed=s))
    df = pd.concat(rows, ignore_index=True)
    df["loss"] = [np.sqrt(np.prod(bin_edges(int(k)))) for k in df["bin"]]
    sns.lineplot(data=df, x="loss", y="value", hue="variant", hue_order=variants, palette=PALETTE,
                 estimator="mean", errorbar=seed_interval, marker="o", ax=ax, legend=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(f"training loss (smoothed; bins of 1/{BINS_PER_DECADE} decade, "
                  f">= {MIN_STEPS_PER_BIN} steps per run)")


def fig8_activation_shift(meta_paths, out_path, lr, layers) -> None:
    """Figure 8: change of the per-unit mean and variance of ``layers``' pre-activations
    between consecutive steps (averaged over units), standard / BN / noisy BN."""
    metas = _read_metas(meta_paths)
    _check_layers(metas, layers)
    variants = NOISY_VARIANTS
    acts = load_table(meta_paths, "activations").dropna(subset=["mean_shift"])
    fig, axes = _subplots(2, len(layers), figsize=(5 * len(layers), 7.2), squeeze=False,
                          sharex=True)
    for j, layer in enumerate(layers):
        d = acts[acts.layer == layer]
        for i, (col, what) in enumerate((("mean_shift", "|change of mean|"),
                                         ("var_shift", "|change of variance|"))):
            _lineplot(axes[i, j], d, col, variants)
            axes[i, j].set_yscale("log")
            axes[i, j].set_ylabel(what if j == 0 else "")
        axes[0, j].set_title(f"layer {layer}")
        axes[1, j].set_xlabel("training step")
    _annotate_runs(axes[0, 0], metas, lr, variants)
    _legend(fig, axes, variants)
    fig.suptitle("Figure 8: change of the activation moments between consecutive steps "
                 f"(per unit, averaged over units)\n{metas[0]['model'].upper()} on "
                 f"{metas[0]['dataset']}, lr {lr:g}, {_seeds(metas)}",
                 fontsize=11)
    _save(fig, out_path, rect=(0, 0.04, 1, 1))


def fig11_gradient_vs_step(meta_paths, out_path, lr, max_curves: int = 12) -> None:
    """Figure 11: l2 change of the gradient vs the step length along the gradient, one curve
    per measured training step (colour = step), standard vs BN, lowest seed."""
    metas = _read_metas(meta_paths)
    variants = BN_PAIR
    runs, seed = _first_seed_runs(metas, variants, lr)
    fig, axes = _subplots(1, 2, figsize=(12, 4.8), sharey=True)
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
                 f"{metas[0]['model'].upper()} on {metas[0]['dataset']}, lr {lr:g}, seed {seed}",
                 fontsize=11)
    _save(fig, out_path, tight=False)  # the colorbar spans both panels




def fig5_lp(meta_paths, out_path, lr, dln_lr) -> None:
    """Figure 5: l_p normalisation, (a) network training accuracy, (b) DLN training loss;
    standard, BN, l1, l2, l-inf."""
    metas = _read_metas(meta_paths)
    groups = {"net": [m["_path"] for m in metas if m["model"] != "dln"],
              "dln": [m["_path"] for m in metas if m["model"] == "dln"]}
    fig, axes = _subplots(1, 2, figsize=(13, 4.9))
    for ax, (key, top, rate, label) in zip(axes, (("net", "accuracy", lr, "(a)"),
                                                  ("dln", "loss", dln_lr, "(b)"))):
        paths = groups[key]
        steps = smooth_downsample(load_table(paths, "steps"), top, ["variant", "lr", "seed"])
        variants = [v for v in LP_VARIANTS if v in set(steps.variant)]
        ax.set_ylabel(_top_panel(ax, steps, top, variants))
        ax.set_xlabel("training step")
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [LABELS[v] for v in labels], fontsize=8,
                  loc="lower right" if top == "accuracy" else "upper right")
        ax.set_title(f"{label} {_name([read_meta(paths[0])])}, lr {rate:g}", fontsize=11)
        _annotate_runs(ax, [m for m in metas if m["_path"] in paths], rate, variants)
    fig.suptitle(f"Figure 5: l_p normalisations train like BatchNorm ({_seeds(metas)})",
                 fontsize=12)
    _save(fig, out_path)


def fig6_lp_activations(meta_paths, out_path, lr, layer) -> None:
    """Figure 6: histogram of one layer's pre-activations at the last snapshot, per variant."""
    metas = _read_metas(meta_paths)
    _check_layers(metas, [layer])
    runs, seed = _first_seed_runs(metas, LP_VARIANTS, lr)
    fig, axes = _subplots(1, len(runs), figsize=(3.6 * len(runs), 3.6), squeeze=False)
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
                 f"{_name(metas)}, lr {lr:g}, seed {seed}. l_p normalisations do not make them "
                 "Gaussian-like", fontsize=11)
    _save(fig, out_path)














def fig16_curvature(meta_paths, out_path, lr, dln_lr) -> None:
    """Figure 16 (ours): curvature of the training loss, standard vs BN, network (at ``lr``) and
    DLN (at ``dln_lr``): the top Hessian eigenvalue lambda_max and the batch sharpness
    g^T H g / g^T g along the step's gradient, with the paper's effective beta on the same
    axes and the edge of stability 2/lr; mean over seeds with bands, log scale."""
    metas = _read_metas(meta_paths)
    families = [(f, [m for m in metas if (m["model"] == "dln") == (f == "dln")], rate)
                for f, rate in (("net", lr), ("dln", dln_lr))]
    families = [(f, ms, rate) for f, ms, rate in families if ms]
    fig, axes = _subplots(len(BN_PAIR), len(families), figsize=(6.4 * len(families), 8.4),
                          squeeze=False, sharex="col", sharey="col")
    styles = (("lambda_max", "top Hessian eigenvalue lambda_max", "-"),
              ("batch_sharpness", "batch sharpness g'Hg / g'g", "--"),
              ("beta_max", "effective beta (paper, Fig. 4c)", ":"))
    for j, (fam, ms, rate) in enumerate(families):
        paths = [m["_path"] for m in ms]
        hess = load_table(paths, "hessian")
        if hess.empty:
            raise ValueError(f"the {_name(ms)} runs measured no curvature (hessian_every = 0"
                             f"{' in dln' if fam == 'dln' else ''}): set it > 0 and rerun their "
                             "training (README, 'Curvature').")
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
            handles.append(_stability_line(ax, rate, float(ms[0].get("momentum", 0.0))))
            ax.legend(handles=handles, fontsize=7.5, loc="best")
            ax.set_yscale("log", nonpositive="mask")
            neg = d[(d.quantity == "batch_sharpness") & (d.value <= 0)]
            if len(neg):  # negative curvature along g: the log scale cannot show it
                n_all = int((d.quantity == "batch_sharpness").sum())
                ax.text(0.98, 0.02, f"batch sharpness <= 0 at {len(neg)} of {n_all} (seed, step):"
                        "\nnot on the log scale (seed means <= 0 leave gaps)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5,
                        color="0.25")
            ax.set_title(f"{_name(ms)}: {LABELS[v]}, lr {rate:g}", fontsize=10)
            ax.set_ylabel("curvature (log scale)" if j == 0 else "")
            _annotate_runs(ax, ms, rate, [v])
        axes[-1, j].set_xlabel("training step")
    fig.suptitle("Figure 16: curvature of the training loss (training-mode BN, each step's batch): "
                 "top Hessian eigenvalue (Lanczos)\nand batch sharpness along the gradient, with "
                 f"the paper's effective beta; {_seeds(metas)}; dashed black: 2/lr",
                 fontsize=11)
    _save(fig, out_path)


# Every figure's draw function, by the name of its registry entry (bnopt.config.FIGURE_REGISTRY,
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
}


VERDICT_COLOURS = {"holds": "#2ca02c", "does not hold": "#d62728", "inconclusive": "#ff9f1c",
                   "not measured": "0.6"}


def fig0_scorecard(claims_csv, out_path) -> None:
    """Figure 0 (ours): the scorecard (``results/tables/claims.csv``, :mod:`bnopt.verdicts`),
    one row per check: the effect with its seed interval, coloured by verdict, against "no
    effect" (a dashed line); ratios on a log axis, differences on a linear one; one panel per
    claim and kind of comparison."""
    from bnopt.claims_text import check_label, verdict_text
    from bnopt.verdicts import no_effect, threshold

    table = pd.read_csv(claims_csv, keep_default_na=True).fillna(
        {"layer": "", "why": "", "basis": "", "seed_effects": ""})
    table["layer"] = [str(int(x)) if isinstance(x, float) else str(x) for x in table.layer]
    sections = list(table.groupby(["claim", "comparison"], sort=False))
    # axes placed in inches: a column of check labels, the effects, a column of verdict notes
    row_h, pad_below, pad_above, top = 0.26, 0.62, 0.42, 0.85
    heights = [len(g) * row_h + 0.25 for _, g in sections]
    total = top + sum(h + pad_below + pad_above for h in heights)
    width = 16.0
    fig = _subplots(figsize=(width, total))
    axes, y_top = [], total - top
    for h in heights:
        y_top -= pad_above + h
        axes.append(fig.add_axes((0.37, y_top / total, 0.32, h / total)))
        y_top -= pad_below
    for ax, ((claim, comparison), g) in zip(axes, sections):
        y = np.arange(len(g))[::-1]
        e0 = no_effect(comparison)
        ratio = comparison == "ratio"
        for yi, (_, r) in zip(y, g.iterrows()):
            colour = VERDICT_COLOURS[r.verdict]
            if np.isfinite(r.run_median_effect):  # the run-long median: shown, not judged
                ax.plot(r.run_median_effect, yi, "D", mfc="none", mec="0.45", ms=5, mew=0.9)
            if np.isfinite(r.effect):
                lo, hi = (r.effect_lo, r.effect_hi) if np.isfinite(r.effect_lo) else (r.effect,) * 2
                ax.plot([lo, hi], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
                seeds = [float(x) for x in str(r.seed_effects).split(" / ") if x]
                ax.plot(seeds, [yi] * len(seeds), "|", color="0.15", ms=7, mew=1.0)
                ax.plot(r.effect, yi, "o", color=colour, ms=6, mec="0.15", mew=0.6)
            if r.direction == "within":
                ax.plot([1 / r.margin, r.margin], [yi, yi], color="0.5", lw=6, alpha=0.2,
                        solid_capstyle="butt")
            elif r.margin:
                level = threshold(comparison, r.direction, r.margin)
                ax.plot([level] * 2, [yi - 0.4, yi + 0.4], color="0.3", lw=1.2, ls=":")
            note = verdict_text(r) if r.verdict in ("holds", "does not hold") else (
                f"{r.verdict}: {r.why}" if r.why else r.verdict)
            ax.annotate(note[:85] + ("…" if len(note) > 85 else ""), (1.01, yi),
                        xycoords=("axes fraction", "data"), va="center", fontsize=7.5,
                        color=colour if r.verdict != "not measured" else "0.35")
        ax.axvline(e0, color="0.2", ls="--", lw=1)
        ax.set_yticks(y, [check_label(r) for _, r in g.iterrows()], fontsize=8)
        ax.set_ylim(-0.7, len(g) - 0.3)
        vals = pd.concat([g.effect, g.effect_lo, g.effect_hi,
                          g.run_median_effect]).to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if ratio:
            ax.set_xscale("log")
            pos = np.concatenate([vals[vals > 0], [e0]])
            within = g[g.direction == "within"].margin.to_numpy(dtype=float)
            pos = np.concatenate([pos, 1 / within, within])
            ax.set_xlim(pos.min() / 1.6, pos.max() * 1.6)
            ax.set_xlabel("ratio treatment / baseline (log scale; 1 = no effect)", fontsize=9)
        else:
            span = np.concatenate([vals, [e0 - 0.05, e0 + 0.05]])
            pad = 0.08 * (span.max() - span.min())
            ax.set_xlim(span.min() - pad, span.max() + pad)
            ax.set_xlabel("difference treatment - baseline (0 = no effect)", fontsize=9)
        ax.set_title(f"Claim {claim}: {g.statement.iloc[0]}" if claim[0].isdigit()
                     else g.statement.iloc[0], fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=8)
    line = matplotlib.lines.Line2D
    handles = [line([], [], color=c, marker="o", lw=2.2, label=v)
               for v, c in VERDICT_COLOURS.items()]
    handles += [line([], [], color="0.15", marker="|", ls="none", ms=7, label="one seed"),
                line([], [], color="0.45", marker="D", mfc="none", ls="none",
                     label="run-long median (not judged)"),
                line([], [], color="0.3", ls=":", lw=1.2, label="threshold"),
                line([], [], color="0.2", ls="--", lw=1, label="no effect")]
    n = int(table.seeds_compared.max()) if len(table) else 0
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.42 / total), fontsize=9)
    net = table[(table.family == "net") & table.dataset.notna()]
    where = (f"{str(net.model.iloc[0]).upper()} on {net.dataset.iloc[0]}" if len(net)
             else "the network")
    fig.suptitle(f"Figure 0: does the paper hold here? {where} and the deep linear network; "
                 f"effect (mean) and the range of up to {n} seeds, coloured by verdict; "
                 "per-step quantities at matched training loss", fontsize=12, y=1 - 0.12 / total)
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)
