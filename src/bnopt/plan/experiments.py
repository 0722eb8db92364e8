"""The earlier experiments (docs/earlier-experiments.md): each one's published findings and
settings (``experiments.yaml``, package data beside this module), which variants its findings
compare, and how a finding compares them. What the run plan needs of them, without pandas;
:mod:`bnopt.scorecard.reported` judges the findings against the runs."""

from __future__ import annotations

import importlib.resources
from functools import cache

import yaml

# how a finding compares two variants: the first higher; not lower (non-inferiority with the
# smallest effect of the quantity's kind); lower at every layer; their difference equal to the
# published one within the smallest effect (bnopt.scorecard.reported)
FINDING_KINDS = ("higher", "not_lower", "lower_every_layer", "gap")

# What each quantity a finding compares reads of a run's measured steps (a kind of
# bnopt.plan.tables.MEASUREMENTS; None: only the per-step, eval and init_distance tables, which
# every run writes). One entry per bnopt.scorecard.reported.FINDING_QUANTITIES (tested).
FINDING_READS = {"final_test_acc": None, "grad_norm_jitter": None, "ics_l2": "ics",
                 "ics_cos": "ics", "init_distance_relative": None, "unit_drift": "activations"}


@cache
def published() -> dict:
    """Every experiment's published findings and settings (``experiments.yaml``)."""
    text = importlib.resources.files("bnopt.plan").joinpath("experiments.yaml").read_text()
    return yaml.safe_load(text)


def comparison(finding: dict) -> tuple[str, list[list[str]]]:
    """(kind, [[a, b], ...]) of a finding: a higher than b; a not lower than ``SIMILAR`` x b;
    a lower than b at every layer."""
    kind = next(k for k in FINDING_KINDS if k in finding)
    return kind, finding[kind]


def experiment_figures(experiment: str) -> list[str]:
    """The figures that show ``experiment``'s findings: what `snakemake` builds for it."""
    return list(published()[experiment]["figures"])


def reported_variants(experiment: str) -> list[str]:
    """The variants the findings of ``experiment`` compare."""
    out = []
    for f in published()[experiment]["findings"]:
        for pair in comparison(f)[1]:
            out += [v for v in pair if v not in out]
    return out


def finding_reads(experiment: str) -> dict[str, set[str]]:
    """What the findings of ``experiment`` read of each variant's runs (at figure_lr): variant:
    the measurements (:data:`FINDING_READS`) of the quantities its comparisons compare."""
    out: dict[str, set[str]] = {}
    for f in published()[experiment]["findings"]:
        kind = FINDING_READS[f["quantity"]]
        for pair in comparison(f)[1]:
            for v in pair:
                out.setdefault(v, set()).update([kind] if kind else [])
    return out
