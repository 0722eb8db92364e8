"""The figure registry: each figure's runs, plot arguments and the measurements it needs, and
the layers the paper's figures show; what the workflow's rules, ``all``, the scorecard's refusals
and the report derive from."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

from bnopt.plan.schema import load_schema
from bnopt.plan.variants import num_layers, variants_in

# The layers the paper's figures show for its VGG (Figures 1(c), 2, 3(a), 8, 6); for another
# model, a key left unset (or null) spreads the same number of layers over its depth.
PAPER_LAYERS = {"fig1_layers": [3, 11], "fig2_layers": [2, 9, 13], "fig3_layers": [5, 10],
                "fig8_layers": [2, 9, 13], "fig6_layer": 11}


def figure_layers(model: str, key: str, n: int | None = None) -> list[int] | int:
    """The default of a figure-layer key (``PAPER_LAYERS``) for ``model`` of ``n`` weight
    layers (default: its registered depth, :func:`bnopt.plan.variants.num_layers`): the paper's
    choice for the VGG; otherwise as many layers as the paper shows, evenly spread over layers
    2..L-1 (layer 1's ICS is 0 by definition, layer L gives the logits), rounded half up."""
    paper = PAPER_LAYERS[key]
    if model == "vgg":
        return copy.deepcopy(paper)
    n = n or num_layers(model)
    k = len(paper) if isinstance(paper, list) else 1
    if k == 1:
        spread = [math.floor((2 + n - 1) / 2 + 0.5)]
    else:
        spread = [math.floor(2 + i * (n - 3) / (k - 1) + 0.5) for i in range(k)]
    spread = list(dict.fromkeys(spread))
    return spread if isinstance(paper, list) else spread[0]


@dataclass(frozen=True)
class Figure:
    """One figure, its whole entry: the runs it shows, as (family, variant family, lrs) groups
    of the checked config (family 'net': the configured dataset and model, or 'dln'; variant
    family: :func:`bnopt.plan.variants.variants_in`), the keyword arguments of its draw function,
    the settings its runs must have on (> 0), by family, or they record nothing for it, and
    what it reads of its runs' measured steps (``reads``: kinds of
    :data:`bnopt.plan.tables.MEASUREMENTS`; with ``measure: read`` a run measures only what some
    figure or check reads, :func:`bnopt.scorecard.reads.run_measures`).
    ``bnopt.figures.paper.FIGURES[name]`` draws it and ``workflow/report/<name>.rst`` is its caption
    (both tested); the rules, ``all``, the refusal of a figure whose measurement is off and the
    report derive from this entry."""
    runs: Callable[[dict], list[tuple]]
    kwargs: Callable[[dict], dict]
    needs: tuple[tuple[str, str], ...] = ()
    reads: tuple[str, ...] = ()


_MEASURED = (("net", "measure_every"),)
_MEASURED_DLN = (("dln", "measure_every"),)
# what a figure reads of its runs' measured steps (bnopt.plan.tables.MEASUREMENTS)
_ACTS, _ICS, _PROBES = ("activations",), ("ics",), ("probes",)


def _lr(c):
    return [c["figure_lr"]]


def _dlr(c):
    return [c["dln"]["figure_lr"]]


FIGURE_REGISTRY: dict[str, Figure] = {
    "fig1_accuracy": Figure(lambda c: [("net", "bn", c["fig1_lrs"])],
                            lambda c: {"lrs": c["fig1_lrs"]}),
    "fig1_activations": Figure(lambda c: [("net", "bn", _lr(c))],
                               lambda c: {"lr": c["figure_lr"], "layers": c["fig1_layers"]},
                               _MEASURED, _ACTS),
    "fig2_noisy_bn": Figure(lambda c: [("net", "noisy", _lr(c))],
                            lambda c: {"lr": c["figure_lr"], "layers": c["fig2_layers"]},
                            _MEASURED, _ACTS),
    "fig3_ics": Figure(lambda c: [("net", "bn", c["fig3_lrs"])],
                       lambda c: {"lrs": c["fig3_lrs"], "layers": c["fig3_layers"]}, _MEASURED,
                       _ICS),
    "fig3_ics_dln": Figure(lambda c: [("dln", "bn", c["dln"]["fig3_lrs"])],
                           lambda c: {"lrs": c["dln"]["fig3_lrs"],
                                      "layers": c["dln"]["fig3_layers"]}, _MEASURED_DLN, _ICS),
    "fig4_landscape": Figure(lambda c: [("net", "bn", _lr(c))],
                             lambda c: {"lr": c["figure_lr"]}, _MEASURED, _PROBES),
    "fig5_lp": Figure(lambda c: [("net", "lp", _lr(c)), ("dln", "lp", _dlr(c))],
                      lambda c: {"lr": c["figure_lr"], "dln_lr": c["dln"]["figure_lr"]}),
    "fig6_lp_activations": Figure(lambda c: [("net", "lp", _lr(c))],
                                  lambda c: {"lr": c["figure_lr"], "layer": c["fig6_layer"]},
                                  (("net", "measure_every"), ("net", "hist_every")), _ACTS),
    "fig8_activation_shift": Figure(lambda c: [("net", "noisy", _lr(c))],
                                    lambda c: {"lr": c["figure_lr"], "layers": c["fig8_layers"]},
                                    _MEASURED, _ACTS),
    "fig9_dln_activations": Figure(lambda c: [("dln", "bn", _dlr(c))],
                                   lambda c: {"lr": c["dln"]["figure_lr"],
                                              "layers": c["dln"]["fig9_layers"]}, _MEASURED_DLN,
                                   _ACTS),
    "fig10_dln_landscape": Figure(lambda c: [("dln", "bn", _dlr(c))],
                                  lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN,
                                  _PROBES),
    "fig11_gradient_vs_step": Figure(lambda c: [("net", "bn", _lr(c))],
                                     lambda c: {"lr": c["figure_lr"]}, _MEASURED, _PROBES),
    "fig12_lp_vgg": Figure(lambda c: [("net", "lp", _lr(c))],
                           lambda c: {"lr": c["figure_lr"]}, _MEASURED, _PROBES),
    "fig13_lp_dln": Figure(lambda c: [("dln", "lp", _dlr(c))],
                           lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN, _PROBES),
    "fig14_normalisers_vgg": Figure(lambda c: [("net", "normalisers", _lr(c))],
                                    lambda c: {"lr": c["figure_lr"]}, _MEASURED, _PROBES),
    "fig15_normalisers_dln": Figure(lambda c: [("dln", "normalisers", _dlr(c))],
                                    lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN,
                                    _PROBES),
    # the curvature, with the paper's effective beta (the probes) beside it
    "fig16_curvature": Figure(lambda c: [("net", "bn", _lr(c)), ("dln", "bn", _dlr(c))],
                              lambda c: {"lr": c["figure_lr"], "dln_lr": c["dln"]["figure_lr"]},
                              (("net", "hessian_every"), ("dln", "hessian_every")),
                              ("hessian", "probes")),
    "fig17_gradient_norm": Figure(lambda c: [("net", "noisy", _lr(c))],
                                  lambda c: {"lr": c["figure_lr"]}),
    "fig18_init_distance": Figure(lambda c: [("net", "bn", _lr(c))],
                                  lambda c: {"lr": c["figure_lr"]}),
    "fig19_unit_percentiles": Figure(lambda c: [("net", "bn", _lr(c))],
                                     lambda c: {"lr": c["figure_lr"]},
                                     (("net", "measure_every"), ("net", "units_per_layer")),
                                     _ACTS),
    "fig4u_update_landscape": Figure(lambda c: [("net", "bn", _lr(c))],
                                     lambda c: {"lr": c["figure_lr"]},
                                     (("net", "measure_every"), ("net", "probe_update")),
                                     _PROBES),
}
# The settings each figure's runs must have on, by figure (from the registry)
FIGURE_NEEDS = {name: list(f.needs) for name, f in FIGURE_REGISTRY.items() if f.needs}


def figure_specs(cfg: dict) -> dict:
    """Each figure of the registry for the checked config ``cfg``: the runs it needs as
    (family, variants, lrs) groups, and the keyword arguments of its plot."""
    return {name: ([(fam, variants_in(group), lrs) for fam, group, lrs in f.runs(cfg)],
                   f.kwargs(cfg)) for name, f in FIGURE_REGISTRY.items()}


def figures_off(cfg: dict) -> dict[str, list[str]]:
    """Figures the checked config ``cfg`` cannot draw, each with the settings it needs that
    ``cfg`` sets to 0 (``dln.``-prefixed for the DLN's): the one place this is decided."""
    out = {}
    for fig, needs in FIGURE_NEEDS.items():
        off = [f"{'dln.' if fam == 'dln' else ''}{key}" for fam, key in needs
               if not _on(cfg["dln"] if fam == "dln" else cfg, key)]
        if off:
            out[fig] = off
    return out


def _on(section: dict, key: str) -> bool:
    """Whether ``key`` is on in a config section; a run measures steps when measure_every or
    measure_per_decade is on (:func:`bnopt.plan.runs.measured_steps`)."""
    return bool(section[key] or (key == "measure_every" and section.get("measure_per_decade")))


def _switch(key: str) -> bool:
    """Whether the setting ``key`` ('dln.'-prefixed or not) is on/off (a boolean in the
    schema: on is ``true``) rather than a count (on is > 0)."""
    props = load_schema()["properties"]
    if key.startswith("dln."):
        props, key = props["dln"]["properties"], key[4:]
    return props[key].get("type") == "boolean"


def needs_text(figure: str, off: list[str]) -> str:
    """'results/figures/F.png needs hessian_every > 0': why ``figure`` is off, in words (a
    boolean setting: 'needs probe_update: true')."""
    counts = [k for k in off if not _switch(k)]
    parts = ([f"{' and '.join(counts)} > 0"] if counts else []) + [
        f"{k}: true" for k in off if _switch(k)]
    return f"results/figures/{figure}.png needs {' and '.join(parts)}"


def figure_blockers(cfg: dict) -> dict[str, str]:
    """Figures the checked config ``cfg`` cannot draw (:func:`figures_off`), each with a message
    that names the settings to turn on. ``snakemake`` (all) leaves them out; asking for one is
    an error raised while the DAG is built, before any training."""
    out = {}
    for fig, off in figures_off(cfg).items():
        on = {k: "true" if _switch(k) else "100" for k in off}
        top = [f"{k}={v}" for k, v in on.items() if not k.startswith("dln.")]
        dln = [f"{k[4:]}: {v}" for k, v in on.items() if k.startswith("dln.")]
        example = " ".join(top + ([f"dln='{{{', '.join(dln)}}}'"] if dln else []))
        them = "them" if len(off) > 1 else "it"
        out[fig] = (f"{needs_text(fig, off)}, but this config turns {them} off, so its runs "
                    f"record nothing to draw. Set {them} in your config file or on the command "
                    f"line, e.g. `--config {example}`; runs trained without are retrained, since "
                    "their settings change.")
    return out
