"""The scorecard as text: a check in words, its effect and verdict, and the table as Markdown
(``results/tables/claims.md``)."""

from __future__ import annotations

import pandas as pd

from bnopt.analysis.aggregate import read_meta
from bnopt.analysis.code_versions import mixed_code_note
from bnopt.plan.variants import VARIANT_INFO, model_label
from bnopt.scorecard.checks import QUANTITIES, VERDICTS
from bnopt.scorecard.claim_lines import claim_lines


def check_label(row) -> str:
    """A row's check in words: 'BN vs standard: test accuracy ..., VGG lr 0.1'."""
    def name(v):  # "BatchNorm" for "Standard + BatchNorm"
        return VARIANT_INFO[v].label.removeprefix("Standard + ") if v in VARIANT_INFO else v

    where = "DLN" if row["family"] == "dln" else (model_label(row["model"]) or "net")
    lr = "" if pd.isna(row["lr"]) else f" lr {row['lr']:g}"
    layer = f" layer {row['layer']}" if str(row["layer"]) not in ("", "0") else ""
    return (f"{name(row['treatment'])} vs {name(row['baseline'])}: "
            f"{QUANTITIES[row['quantity']].label.split(' (')[0]}, {where}{lr}{layer}")


def _number(x: float, comparison: str) -> str:
    return {"ratio": f"× {x:.3g}", "share": f"share {x:.3g}"}.get(comparison, f"Δ {x:+.3g}")


def _effect_text(row, key="effect", lo="effect_lo", hi="effect_hi") -> str:
    if pd.isna(row[key]):
        return "–"
    txt = _number(row[key], row["comparison"])
    if row["seeds_compared"] >= 2 and not pd.isna(row[lo]):
        txt += f" [{row[lo]:.3g}, {row[hi]:.3g}]"
    return txt


def verdict_text(row) -> str:
    """'holds (95% interval [0.1, 0.3], needs < 0.8)': the verdict and what it rests on."""
    basis = row.get("basis", "")
    return f"{row['verdict']} ({basis})" if isinstance(basis, str) and basis else row["verdict"]


def precision_note(meta_paths) -> str:
    """A paragraph for claims.md saying how many runs trained their unmeasured steps in TF32 on
    a GPU (``precision: tf32``, the default; measurements are IEEE whatever it says), so a
    reader knows the arithmetic behind the verdicts. Empty where none did: on the CPU
    ``precision`` changes nothing."""
    metas = [read_meta(p) for p in meta_paths]
    tf32 = [m for m in metas  # device_type: where it trained (device may say auto)
            if m["precision"] == "tf32" and m["device_type"] == "cuda"]
    if not tf32:
        return ""
    return (f"\n{len(tf32)} of {len(metas)} runs trained their unmeasured steps in TF32 "
            "(`precision: tf32`); every measurement is IEEE fp32. docs/speed.md "
            "measures what TF32 changes; `--config precision=fp32` trains in IEEE "
            "throughout.\n")


def code_note(meta_paths) -> str:
    """A paragraph for claims.md where the compared runs were made by different versions of
    the code (run.json's ``code_version``), naming the runs of each; empty where all agree."""
    note = mixed_code_note([read_meta(p) for p in meta_paths])
    return f"\n**Mixed code.** {note}\n" if note else ""


def to_markdown(table: pd.DataFrame) -> str:
    """The scorecard as Markdown: one line per claim (its verdict from its primary checks,
    :mod:`bnopt.scorecard.claim_lines`), a tally of verdicts per claim and family of runs, then
    one line per check: where in training it was judged, the per-seed values, the effect and
    its 95% interval, the run-long median effect beside it, and the verdict with what it rests
    on; a secondary check says so."""
    lines = ["| claim | verdict | primary checks: hold / do not hold (after Holm) / measured | "
             "why |", "|---|---|---|---|"]
    for _, c in claim_lines(table).iterrows():
        lines.append(f"| {c.claim}: {c.statement} | **{c.verdict}** | {c.holds} / "
                     f"{c.does_not_hold} ({c.does_not_hold_holm}) / {c.measured} | {c.why} |")
    lines += ["", "| claim | runs | " + " | ".join(VERDICTS) + " |",
              "|---|---|" + "---|" * len(VERDICTS)]
    for (claim, family), g in table.groupby(["claim", "family"], sort=False):
        named = g[g.model.fillna("") != ""]
        runs = ("deep linear network" if family == "dln" else
                f"{model_label(named.model.iloc[0])} on {named.dataset.iloc[0]}" if len(named)
                else "network")
        counts = g.verdict.value_counts()
        lines.append(f"| {claim}: {g.statement.iloc[0]} | {runs} | "
                     + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines += ["", "| claim | check | judged over | seeds | treatment | baseline | effect [95% "
              "interval] | run-long median | verdict (its interval, the rule) | why |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        label = check_label(r) + ("" if r["primary"] else " (secondary)")
        cells = [r["claim"], label, r["progress"] or "–", r["seeds"] or "–",
                 r["treatment_values"] or "–", r["baseline_values"] or "–", _effect_text(r),
                 _effect_text(r, "run_median_effect", "run_median_lo", "run_median_hi"),
                 verdict_text(r).replace(r["verdict"], f"**{r['verdict']}**", 1), r["why"]]
        # a '|' inside a cell (||G - G'||) would end it
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Claim verdict: holds when every primary check holds; does not hold when one "
              "does after Holm's correction over the claim's primary checks; each errs at most "
              "2.5% of the time. Primary checks: the paper's figure learning rate and layers; "
              "the others are secondary (shown, not combined).", "", "Effect: × ratio (treatment / baseline, geometric mean over seeds), Δ "
              "difference (treatment − baseline, mean over seeds), [its 95% t-interval over "
              "seeds]. A verdict holds when that interval lies where the rule says (beyond the "
              "smallest effect of interest on the claim's side, or inside it for a claim of no "
              "difference), does not hold when it excludes that, and is inconclusive otherwise, "
              "with the seeds the spread would need. Per-step quantities are judged at matched "
              "training loss (the levels of `claims.csv`; each level's effect in "
              "`claims_by_loss.csv`); the run-long median is shown, not judged "
              "(docs/scorecard.md)."]
    return "\n".join(lines) + "\n"
