"""What a run measures, in the plan's terms: a run's ``measures`` (kinds of
:data:`bnopt.plan.tables.MEASUREMENTS`), everything with ``measure: all``, and with ``measure:
read`` (the default) only those that something reads of that run: a figure the config can draw
(its registry entry's ``reads``), a check of the scorecard (its quantity's ``reads``) or, with
an ``experiment``, a published finding (:data:`bnopt.plan.experiments.FINDING_READS`); which
runs those are, :func:`bnopt.scorecard.reads.run_measures` works out (it needs the scorecard's
checks, a layer above the plan). Figure 1's lr 0.5 runs are read for
their accuracy only, noisy BN's for its activations, the l_p nets' for activations and the
landscape; none of those pays for gradient ICS. Measuring changes nothing a run trains (its
steps are the same bits, tested), so a run that measured more than it is asked to still serves:
the train rule then tracks what it measured (:func:`tracked_measures`) and retrains nothing."""

from __future__ import annotations

from bnopt.plan.tables import MEASUREMENTS

ALL = tuple(MEASUREMENTS)  # a run's measures when it measures everything (the neutral value)
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


def default_measures(cfg: dict) -> tuple[str, ...]:
    """What a run that nothing reads measures: everything with ``measure: all``, else nothing
    (its loss, accuracy and evaluations are recorded all the same)."""
    return ALL if cfg["measure"] == "all" else ()


def tracked_measures(needed: tuple[str, ...], meta: dict | None) -> tuple[str, ...]:
    """What the train rule tracks of a run's measurements: ``needed``, unless the run is
    finished (``meta``: its run.json) and measured at least that, in which case what it
    measured, so Snakemake sees no change and retrains nothing (a run.json written before runs
    recorded ``measures`` measured everything). A run that measured less than is now needed
    is tracked with ``needed``: its settings changed, and it retrains."""
    if meta is None:
        return needed
    recorded = ordered(meta.get("measures", ALL))
    return recorded if set(needed) <= set(recorded) else needed
