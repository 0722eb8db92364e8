"""Which runs something reads, and what of them: the measures of each run with ``measure:
read`` (:mod:`bnopt.plan.reads`), from every figure the config can draw, every check of the
scorecard whose figure it can draw, and an experiment's published findings. The workflow and
the cost projection give it to the run plan (``bnopt.plan.runs.plan(cfg, run_measures(cfg))``)."""

from __future__ import annotations

from bnopt.plan.experiments import finding_reads
from bnopt.plan.figure_specs import FIGURE_REGISTRY, figure_specs, figures_off
from bnopt.plan.reads import ALL, ordered
from bnopt.plan.runs import family_runs
from bnopt.scorecard.checks import QUANTITIES, check_runs, checks


def run_reads(cfg: dict) -> dict[tuple, set[str]]:
    """(dataset, model, variant, lr, seed) of every run that something reads under the checked
    config ``cfg``: the measurements read of it. A figure counts if the config can draw it
    (not only the figures `snakemake` builds: any can be asked for later), a check of the
    scorecard if its figure can be drawn, a finding if the config names its experiment."""
    blocked = figures_off(cfg)
    out: dict[tuple, set[str]] = {}

    def add(runs, kinds):
        for run in runs:
            out.setdefault(run, set()).update(k for k in kinds if k)

    for fig, (groups, _) in figure_specs(cfg).items():
        if fig not in blocked:
            for fam, variants, lrs in groups:
                add(family_runs(cfg, fam, variants, lrs), FIGURE_REGISTRY[fig].reads)
    for c in checks(cfg):
        if c.figure not in blocked:
            add(check_runs(cfg, c), [QUANTITIES[c.quantity].reads])
    if cfg["experiment"]:
        for variant, kinds in finding_reads(cfg["experiment"]).items():
            add(family_runs(cfg, "net", [variant], [cfg["figure_lr"]]), kinds)
    return out


def run_measures(cfg: dict) -> dict[tuple, tuple[str, ...]]:
    """What each run read by something measures under the checked config ``cfg``, keyed like
    :func:`run_reads`: everything with ``measure: all``, what is read of it with ``read``. A run
    not in it (read by nothing, such as noisy BN at lr 0.5 in the default config) measures
    :func:`bnopt.plan.reads.default_measures`."""
    if cfg["measure"] == "all":
        return {run: ALL for run in run_reads(cfg)}
    return {run: ordered(kinds) for run, kinds in run_reads(cfg).items()}
