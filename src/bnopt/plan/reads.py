"""What each run measures: with ``measure: all`` every measurement a measured step can take
(:data:`bnopt.plan.tables.MEASUREMENTS`), with ``measure: read`` (the default) only those that
something reads of that run: a figure the config can draw (its registry entry's ``reads``), a
check of the scorecard (its quantity's ``reads``) or, with an ``experiment``, a published
finding (:data:`bnopt.plan.experiments.FINDING_READS`). Figure 1's lr 0.5 runs are read for
their accuracy only, noisy BN's for its activations, the l_p nets' for activations and the
landscape; none of those pays for gradient ICS. Measuring changes nothing a run trains (its
steps are the same bits, tested), so a run that measured more than it is asked to still serves:
the train rule then tracks what it measured (:func:`tracked_measures`) and retrains nothing."""

from __future__ import annotations

from bnopt.plan.experiments import finding_reads
from bnopt.plan.figure_specs import FIGURE_REGISTRY, figure_specs, figures_off
from bnopt.plan.tables import MEASUREMENTS

ALL = tuple(MEASUREMENTS)  # a run's measures when it measures everything (the neutral value)
MEASURE_MODES = ("read", "all")  # the config key ``measure``


NONE = "none"  # the measures of a run that measures nothing, in words


def measures_key(measures) -> str:
    """A run's measures in words: 'activations+ics+probes+hessian', or 'none' (summary.csv's
    ``measures``; a row's key in the cost projection)."""
    return "+".join(ordered(measures)) or NONE


def key_measures(key: str) -> tuple[str, ...]:
    """The measures of :func:`measures_key`'s words."""
    return () if key == NONE else ordered(key.split("+"))


def ordered(kinds) -> tuple[str, ...]:
    """``kinds`` in the order of :data:`MEASUREMENTS`, once each; an unknown one is an error."""
    kinds = set(kinds)
    unknown = sorted(kinds - set(ALL))
    if unknown:
        raise ValueError(f"measures: unknown measurement{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; choose from {', '.join(ALL)}")
    return tuple(k for k in ALL if k in kinds)


def run_reads(cfg: dict) -> dict[tuple, set[str]]:
    """(dataset, model, variant, lr, seed) of every run that something reads under the checked
    config ``cfg``: the measurements read of it. A figure counts if the config can draw it
    (not only the figures `snakemake` builds: any can be asked for later), a check of the
    scorecard if its figure can be drawn, a finding if the config names its experiment."""
    # here, not at the top: the scorecard's checks import the run plan, which imports this
    from bnopt.plan.runs import family_runs
    from bnopt.scorecard.checks import EDGE, QUANTITIES, checks

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
            variants = [v for v in (c.treatment, c.baseline) if v != EDGE]
            add(family_runs(cfg, c.family, variants, c.lrs or [c.lr]),
                [QUANTITIES[c.quantity].reads])
    if cfg["experiment"]:
        for variant, kinds in finding_reads(cfg["experiment"]).items():
            add(family_runs(cfg, "net", [variant], [cfg["figure_lr"]]), kinds)
    return out


def run_measures(cfg: dict) -> dict[tuple, tuple[str, ...]]:
    """What each run read by something measures under the checked config ``cfg``, keyed like
    :func:`run_reads`: everything with ``measure: all``, what is read of it with ``read``. A run
    not in it (read by nothing, such as noisy BN at lr 0.5 in the default config) measures
    :func:`default_measures`."""
    if cfg["measure"] == "all":
        return {run: ALL for run in run_reads(cfg)}
    return {run: ordered(kinds) for run, kinds in run_reads(cfg).items()}


def default_measures(cfg: dict) -> tuple[str, ...]:
    """What a run that nothing reads measures: everything with ``measure: all``, else nothing
    (its loss, accuracy and evaluations are recorded all the same)."""
    return ALL if cfg["measure"] == "all" else ()


def covers(recorded, needed) -> bool:
    """Whether a run that measured ``recorded`` has everything ``needed``."""
    return set(needed) <= set(recorded)


def tracked_measures(needed: tuple[str, ...], meta: dict | None) -> tuple[str, ...]:
    """What the train rule tracks of a run's measurements: ``needed``, unless the run is
    finished (``meta``: its run.json) and measured at least that, in which case what it
    measured, so Snakemake sees no change and retrains nothing (a run.json written before runs
    recorded ``measures`` measured everything). A run that measured less than is now needed
    is tracked with ``needed``: its settings changed, and it retrains."""
    if meta is None:
        return needed
    recorded = ordered(meta.get("measures", ALL))
    return recorded if covers(recorded, needed) else needed
