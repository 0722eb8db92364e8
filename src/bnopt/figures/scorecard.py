"""Figure 0 (ours): the scorecard (``results/tables/claims.csv``, :mod:`bnopt.scorecard.verdicts`) at a
glance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bnopt.figures.style import subplots  # noqa: E402
from bnopt.plan.variants import model_label  # noqa: E402
from bnopt.scorecard.claim_lines import claim_lines
from bnopt.scorecard.text import check_label, verdict_text
from bnopt.scorecard.decisions import band, no_effect

VERDICT_COLOURS = {"holds": "#2ca02c", "does not hold": "#d62728", "inconclusive": "#ff9f1c",
                   "not measured": "0.6"}


def fig0_scorecard(claims_csv, out_path) -> None:
    """Figure 0 (ours): the scorecard (``results/tables/claims.csv``, :mod:`bnopt.scorecard.verdicts`),
    one row per check: the effect with its 95% interval over seeds, coloured by verdict,
    against "no effect" (a dashed line) and the band of effects too small to count; ratios on a
    log axis, differences on a linear one; one panel per claim and kind of comparison, the
    claim's first panel titled with its verdict from its primary checks
    (:mod:`bnopt.scorecard.claim_lines`); a secondary check's label is grey."""
    table = pd.read_csv(claims_csv, keep_default_na=True).fillna(
        {"layer": "", "why": "", "basis": "", "seed_effects": ""})
    table["layer"] = [str(int(x)) if isinstance(x, float) else str(x) for x in table.layer]
    lines = claim_lines(table).set_index("claim")
    sections = list(table.groupby(["claim", "comparison"], sort=False))
    # axes placed in inches: a column of check labels, the effects, a column of verdict notes
    row_h, pad_below, pad_above, top = 0.26, 0.62, 0.62, 0.85
    heights = [len(g) * row_h + 0.25 for _, g in sections]
    total = top + sum(h + pad_below + pad_above for h in heights)
    fig = subplots(figsize=(16.0, total))
    axes, y_top = [], total - top
    for h in heights:
        y_top -= pad_above + h
        axes.append(fig.add_axes((0.37, y_top / total, 0.32, h / total)))
        y_top -= pad_below
    titled = set()
    for ax, ((claim, comparison), g) in zip(axes, sections):
        y = np.arange(len(g))[::-1]
        for yi, (_, r) in zip(y, g.iterrows()):
            _draw_check(ax, yi, r, comparison)
        ax.set_yticks(y, [check_label(r) + ("" if r.primary else " (secondary)")
                          for _, r in g.iterrows()], fontsize=8)
        for tick, (_, r) in zip(ax.get_yticklabels(), g.iterrows()):
            if not r.primary:
                tick.set_color("0.5")
        ax.set_ylim(-0.7, len(g) - 0.3)
        _effect_axis(ax, g, comparison)
        name = (f"Claim {claim}: {g.statement.iloc[0]}" if claim[0].isdigit()
                else g.statement.iloc[0])
        if claim in titled:
            ax.set_title(f"{name} (continued)", fontsize=10, loc="left")
            continue
        titled.add(claim)
        line = lines.loc[claim]
        ax.set_title(f"{name}\nclaim verdict: {line.verdict} ({line.why})", fontsize=10,
                     loc="left", color=VERDICT_COLOURS[line.verdict])
    _legend_and_title(fig, table, total)
    fig.savefig(out_path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _draw_check(ax, yi: float, r, comparison: str) -> None:
    """One check's row at height ``yi``: its effect, 95% interval and seeds, the run-long
    median, the band of no effect (the smallest effect of interest), and its verdict."""
    colour = VERDICT_COLOURS[r.verdict]
    if np.isfinite(r.run_median_effect):  # the run-long median: shown, not judged
        ax.plot(r.run_median_effect, yi, "D", mfc="none", mec="0.45", ms=5, mew=0.9)
    if np.isfinite(r.effect):
        lo, hi = (r.effect_lo, r.effect_hi) if np.isfinite(r.effect_lo) else (r.effect,) * 2
        ax.plot([lo, hi], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
        seeds = [float(x) for x in str(r.seed_effects).split(" / ") if x]
        ax.plot(seeds, [yi] * len(seeds), "|", color="0.15", ms=7, mew=1.0)
        ax.plot(r.effect, yi, "o", color=colour, ms=6, mec="0.15", mew=0.6)
    if r.margin:  # the smallest effect of interest: inside this band is "no effect"
        ax.plot(band(comparison, r.margin), [yi, yi], color="0.5", lw=7, alpha=0.22,
                solid_capstyle="butt")
    note = verdict_text(r) if r.verdict in ("holds", "does not hold") else (
        f"{r.verdict}: {r.why}" if r.why else r.verdict)
    ax.annotate(note[:85] + ("…" if len(note) > 85 else ""), (1.01, yi),
                xycoords=("axes fraction", "data"), va="center", fontsize=7.5,
                color=colour if r.verdict != "not measured" else "0.35")


def _effect_axis(ax, g: pd.DataFrame, comparison: str) -> None:
    """The effect axis of one panel: "no effect" dashed; a ratio on a log scale spanning every
    effect, interval and band, a difference on a linear one."""
    e0 = no_effect(comparison)
    ax.axvline(e0, color="0.2", ls="--", lw=1)
    vals = pd.concat([g.effect, g.effect_lo, g.effect_hi,
                      g.run_median_effect]).to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    if comparison == "ratio":
        ax.set_xscale("log")
        pos = np.concatenate([vals[vals > 0], [e0]])
        margins = g.margin.to_numpy(dtype=float)
        margins = margins[margins > 0]
        pos = np.concatenate([pos, 1 / margins, margins])
        ax.set_xlim(pos.min() / 1.6, pos.max() * 1.6)
        ax.set_xlabel("ratio treatment / baseline (log scale; 1 = no effect)", fontsize=9)
    else:
        margins = g.margin.to_numpy(dtype=float)
        span = np.concatenate([vals, [e0 - 0.05, e0 + 0.05], -margins, margins])
        pad = 0.08 * (span.max() - span.min())
        ax.set_xlim(span.min() - pad, span.max() + pad)
        ax.set_xlabel("share of BN's gain over the standard net kept (1 = all of it)"
                      if comparison == "share" else
                      "difference treatment - baseline (0 = no effect)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)


def _legend_and_title(fig, table: pd.DataFrame, total: float) -> None:
    line = matplotlib.lines.Line2D
    handles = [line([], [], color=c, marker="o", lw=2.2, label=v)
               for v, c in VERDICT_COLOURS.items()]
    handles += [line([], [], color="0.15", marker="|", ls="none", ms=7, label="one seed"),
                line([], [], color="0.45", marker="D", mfc="none", ls="none",
                     label="run-long median (not judged)"),
                line([], [], color="0.5", lw=7, alpha=0.22,
                     label="no effect (smallest effect of interest)"),
                line([], [], color="0.2", ls="--", lw=1, label="no effect")]
    n = int(table.seeds_compared.max()) if len(table) else 0
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.42 / total), fontsize=9)
    net = table[(table.family == "net") & table.dataset.notna()]
    where = (f"{model_label(net.model.iloc[0])} on {net.dataset.iloc[0]}" if len(net)
             else "the network")
    fig.suptitle(f"Figure 0: does the paper hold here? {where} and the deep linear network; "
                 f"effect (mean) and its 95% interval over up to {n} seeds, coloured by verdict; "
                 "per-step quantities at matched training loss", fontsize=12, y=1 - 0.12 / total)
