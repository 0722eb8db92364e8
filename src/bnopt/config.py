"""Config checking: coerce command-line strings, validate against the JSON schema, and check
what the schema cannot (dataset files present, batch fits the dataset), with errors that name the
key, what is allowed, and how to fix it. Runs when Snakemake parses the workflow, before any job.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.resources
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonschema
import yaml

from bnopt.datasets import TRAIN_SIZES, dataset_present, missing_data_message
from bnopt.variants import NOISY_BN_DEFAULTS, NUM_LAYERS, variants_in

# package data: the same file in a checkout, a wheel or any install (pyproject's package-data)
SCHEMA_PATH = Path(str(importlib.resources.files("bnopt") / "config.schema.yaml"))


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


PRECISIONS = ("fp32", "tf32")  # of float32 convolutions and matrix products on a GPU
DTYPE_NAMES = ("float32", "float64")
VMAP_CHANNELS_LAST = (
    "vmap_probes = true together with channels_last = true is not supported: PyTorch's vmap "
    "cannot batch BatchNorm over channels-last tensors on CUDA ('NYI: Tensor.clone(memory_format) "
    "inside vmap'), so the first measured step would crash on a GPU. Set vmap_probes: false or "
    "channels_last: false (README, 'Precision and speed').")


# The layers the paper's figures show for its VGG (Figures 1(c), 2, 3(a), 8, 6); for another
# model, a key left unset (or null) spreads the same number of layers over its depth.
PAPER_LAYERS = {"fig1_layers": [3, 11], "fig2_layers": [2, 9, 13], "fig3_layers": [5, 10],
                "fig8_layers": [2, 9, 13], "fig6_layer": 11}


def figure_layers(model: str, key: str) -> list[int] | int:
    """The default of a figure-layer key (``PAPER_LAYERS``) for ``model``: the paper's choice
    for the VGG; otherwise as many layers as the paper shows, evenly spread over layers
    2..L-1 (layer 1's ICS is 0 by definition, layer L gives the logits), rounded half up."""
    paper = PAPER_LAYERS[key]
    if model == "vgg":
        return copy.deepcopy(paper)
    n = NUM_LAYERS[model]
    k = len(paper) if isinstance(paper, list) else 1
    if k == 1:
        spread = [math.floor((2 + n - 1) / 2 + 0.5)]
    else:
        spread = [math.floor(2 + i * (n - 3) / (k - 1) + 0.5) for i in range(k)]
    spread = list(dict.fromkeys(spread))
    return spread if isinstance(paper, list) else spread[0]


def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _types(schema: dict) -> set[str]:
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _coerce_scalar(value, schema: dict):
    """Snakemake's --config gives list items (and some scalars) as strings: turn '0.1' into 0.1
    where the schema wants a number, 'true' into True, 'null' into None. Strings that are not
    numbers stay strings, so the schema still rejects them."""
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool) and "number" in _types(schema):
            return float(value)
        return value
    types, s = _types(schema), value.strip()
    if "null" in types and s.lower() in ("null", "none", "~", ""):
        return None
    if "boolean" in types and s.lower() in ("true", "false"):
        return s.lower() == "true"
    if "integer" in types:
        try:
            return int(s)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(s)
        except ValueError:
            pass
    return value


def coerce(value, schema: dict):
    """Coerce ``value`` recursively following ``schema`` (objects, arrays, scalars)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: coerce(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, str) and "array" in _types(schema) and value.strip().startswith("["):
        value = yaml.safe_load(value)  # --config lrs=[0.1,0.5] without quotes around items
    if isinstance(value, list):
        return [coerce(v, schema.get("items", {})) for v in value]
    return _coerce_scalar(value, schema)


def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<config>"


def _describe(err: jsonschema.ValidationError, schema: dict) -> str:
    key = _key(err.absolute_path)
    sub = schema
    for p in err.absolute_path:
        if isinstance(p, str):
            sub = sub.get("properties", {}).get(p, {})
    about = f" ({sub['description'].strip()})" if isinstance(sub.get("description"), str) else ""
    v, inst = err.validator, err.instance
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(inst) - set(allowed))
        where = f" in {key}" if err.absolute_path else ""
        return (f"unknown config key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
                f"{where}. Allowed keys: {', '.join(allowed)}. Check the spelling, or see README.md.")
    if v == "enum":
        return f"{key} = {inst!r} is not allowed; choose one of: {', '.join(map(str, err.validator_value))}."
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{key} = {inst!r} has the wrong type: expected {want}{about}."
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key} = {inst!r} is out of range: must be {op} {err.validator_value}{about}."
    if v == "required":
        return f"missing config key: {err.message}. Add it to your config file."
    if v in ("minItems", "uniqueItems"):
        return f"{key} = {inst!r}: {err.message}{about}."
    return f"{key}: {err.message}{about}."


def check_config(config: dict, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """Return a coerced, validated copy of ``config`` with schema defaults filled in.

    Raises :class:`ConfigError` naming the offending key for anything the workflow cannot run.
    """
    schema = load_schema(schema_path)
    cfg = coerce(copy.deepcopy(dict(config)), schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        msgs = [_describe(e, schema) for e in errors]
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(dict.fromkeys(msgs)))
    for k, sub in schema["properties"].items():
        if k not in cfg and "default" in sub:
            cfg[k] = copy.deepcopy(sub["default"])
    for key in PAPER_LAYERS:  # unset: the model's own (the paper's for the VGG)
        if cfg.get(key) is None:
            cfg[key] = figure_layers(cfg["model"], key)
    # a partial mapping keeps the other defaults
    cfg["noisy_bn"] = {**NOISY_BN_DEFAULTS, **cfg.get("noisy_bn", {})}
    cfg["dln"] = {**schema["properties"]["dln"]["default"], **cfg["dln"]}

    name, root = cfg["dataset"], cfg.get("data_root")
    if root is not None and not dataset_present(name, root):
        raise ConfigError(f"data_root: {missing_data_message(name, root)}")
    if cfg["batch_size"] > TRAIN_SIZES[name]:
        raise ConfigError(f"batch_size = {cfg['batch_size']} is larger than the {name} training set "
                          f"({TRAIN_SIZES[name]} samples); choose batch_size <= {TRAIN_SIZES[name]}.")
    layer_keys = [(cfg, k, cfg["model"]) for k in PAPER_LAYERS]
    layer_keys += [(cfg["dln"], k, "dln") for k in ("fig3_layers", "fig9_layers")]
    for section, key, model in layer_keys:
        n, val = NUM_LAYERS[model], section[key]
        bad = [i for i in (val if isinstance(val, list) else [val]) if i > n]
        if bad:
            name = key if section is cfg else f"dln.{key}"
            raise ConfigError(f"{name} = {val}: model {model} has layers 1..{n} only "
                              f"(not {', '.join(map(str, bad))}); choose layers in 1..{n}.")
    for model, name in ((cfg["model"], ""), ("dln", "dln.")):
        try:  # what a run checks of its own settings (RunConfig), for a run of each family
            RunConfig(cfg["dataset"] if model != "dln" else "dln", model, "standard", 0.1, 0,
                      **train_settings(cfg, model))
        except ValueError as e:
            raise ConfigError(f"{'dln section: ' if name else ''}{e}") from None
    for section, name in ((cfg, ""), (cfg["dln"], "dln.")):
        problem = checkpoint_problem(cfg["checkpoint_every"], section["log_every"], name)
        if problem:
            raise ConfigError(problem)
        if section["measure_every"] and section["hist_every"] % section["measure_every"]:
            raise ConfigError(f"{name}hist_every = {section['hist_every']} must be a multiple of "
                              f"{name}measure_every = {section['measure_every']} (histograms are "
                              "taken at measured steps).")
    return cfg


def checkpoint_problem(checkpoint_every: int, log_every: int, prefix: str = "") -> str | None:
    """Why a run cannot checkpoint every ``checkpoint_every`` steps with ``log_every`` (None if
    it can): checkpoints are taken at the host syncs. The workflow's config check and training
    with a checkpoint path both ask this."""
    if checkpoint_every and checkpoint_every % log_every:
        return (f"checkpoint_every = {checkpoint_every} must be a multiple of "
                f"{prefix}log_every = {log_every} (checkpoints are taken at host syncs).")
    return None


# Keys the dln section sets for DLN runs; the DLN is trained by full-batch gradient descent.
DLN_KEYS = ("steps", "init", "eval_every", "log_every", "measure_every", "hist_every",
            "hessian_every", "probe_multipliers", "dtype", "vmap_probes", "device")
# What every DLN run is, whatever the config says (paper Section 4: full-batch gradient
# descent on a regression; no conv maps).
DLN_FIXED = {"batch_size": TRAIN_SIZES["dln"], "eval_batch_size": TRAIN_SIZES["dln"],
             "momentum": 0.0, "weight_decay": 0.0, "augment": False, "width": 1.0,
             "channels_last": False}


def dln_settings(dln: dict) -> dict:
    """What a DLN run takes from a config's ``dln`` section (``DLN_KEYS``) and what every DLN
    run is (``DLN_FIXED``): the one place the DLN's overrides are applied."""
    return {**{k: dln[k] for k in DLN_KEYS}, **DLN_FIXED}


# The run settings a config must choose (the schema requires them, so it has no default):
# the paper's, for a RunConfig made from the library.
PAPER_RUN = {"steps": 15_000, "batch_size": 128}


@functools.lru_cache(maxsize=None)
def _run_defaults(model: str) -> tuple:
    props = load_schema()["properties"]
    out = {k: copy.deepcopy(props[k]["default"]) for k in TRAIN_KEYS if "default" in props[k]}
    out.update(PAPER_RUN, noisy_bn=dict(NOISY_BN_DEFAULTS))
    if model == "dln":
        out.update(dln_settings(props["dln"]["default"]))
    out["probe_multipliers"] = tuple(float(m) for m in out["probe_multipliers"])
    return tuple(out.items())


def model_defaults(model: str) -> dict:
    """Every run setting's default for ``model``: the schema's (the one place they are written;
    the two it requires of a config, ``PAPER_RUN``), and for the DLN the schema's ``dln``
    defaults of ``DLN_KEYS`` (Glorot, float64, 10,000 steps, probes at 1/100..30 x lr, ...) and
    ``DLN_FIXED``, which is what the workflow gives a DLN run."""
    return copy.deepcopy(dict(_run_defaults(model)))


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what one training run computes. The config keys of the same
    names (``TRAIN_KEYS``) are these fields. A setting left ``None`` takes its model's default
    (:func:`model_defaults`), read from the config schema, so the library and the workflow
    share one set of defaults: ``RunConfig(dataset="dln", model="dln", ...)`` gets the deep
    linear network's Glorot init, float64 and full batch, as the workflow gives it."""
    dataset: str
    model: str
    variant: str
    lr: float
    seed: int
    # None: the model's default (model_defaults: the schema's, the DLN's for the DLN)
    steps: int | None = None
    batch_size: int | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    width: float | None = None
    init: str | None = None
    augment: bool | None = None
    eval_every: int | None = None
    eval_batch_size: int | None = None
    log_every: int | None = None
    device: str | None = None
    noisy_bn: dict | None = None
    measure_every: int | None = None
    probe_multipliers: tuple | None = None
    hist_every: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: bool | None = None
    # speed and precision (see README, "Precision and speed")
    precision: str | None = None        # float32 convs/matmuls of unmeasured steps: fp32, tf32
    eval_precision: str | None = None   # ... of evaluations (they do not feed back into training)
    cudnn_benchmark: bool | None = None  # cuDNN picks convolution algorithms by timing them
    cuda_graph: bool | None = None      # unmeasured steps on a GPU replay as one CUDA graph
    dtype: str | None = None      # parameters, activations and data: 'float32' or 'float64'
    channels_last: bool | str | None = None  # NHWC for conv nets: true, false, 'auto'
    vmap_probes: bool | None = None    # all probe points in one torch.func.vmap pass
    # curvature (README, "Curvature"): every hessian_every steps (0: never)
    hessian_every: int | None = None
    hessian_iters: int | None = None  # Lanczos iterations (Hessian-vector products) at most
    hessian_tol: float | None = None  # stop once the top Ritz pair's relative residual is below

    def __post_init__(self):
        for name, value in model_defaults(self.model).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        # what the schema checks for the workflow, checked here for library use (before any
        # data is loaded or GPU time spent)
        for name, allowed in (("precision", PRECISIONS), ("eval_precision", PRECISIONS),
                              ("dtype", DTYPE_NAMES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} = {getattr(self, name)!r}: choose one of "
                                 f"{', '.join(allowed)}")
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last = {self.channels_last!r}: choose true, false or auto")
        if self.vmap_probes and self.channels_last is True:
            raise ValueError(VMAP_CHANNELS_LAST)

    def uses_channels_last(self, device) -> bool:
        """Whether this run keeps activations and weights in NHWC on ``device``:
        ``channels_last`` when true or false; ``auto`` where it measured faster, on a CUDA device
        with ``precision: tf32`` (a graphed BN VGG step 4.09 -> 2.98 ms on an H200, but 2-6%
        slower in fp32; on the CPU it is mixed and changes results at rounding), and never with
        ``vmap_probes`` (PyTorch's vmap cannot batch BatchNorm over NHWC on CUDA)."""
        if self.channels_last != "auto":
            return bool(self.channels_last)
        return (str(device).startswith("cuda") and self.precision == "tf32"
                and not self.vmap_probes)

    def fingerprint(self) -> dict:
        """What a checkpoint must match to be resumed (everything but the checkpoint policy)."""
        d = dataclasses.asdict(self)
        for k in ("checkpoint_every", "keep_checkpoints", "log_every", "device"):
            d.pop(k)
        d["probe_multipliers"] = [float(m) for m in d["probe_multipliers"]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A RunConfig from a mapping of its fields; an unknown key is an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown run setting{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; a run has {', '.join(sorted(names))}")
        return cls(**d)


# What names a run (its folder); every other RunConfig field is a config key of the same name.
RUN_IDENTITY = ("dataset", "model", "variant", "lr", "seed")
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in RUN_IDENTITY)


def train_settings(cfg: dict, model: str) -> dict:
    """The RunConfig fields (all but dataset, model, variant, lr, seed) of a run of ``model``
    under the checked config ``cfg``."""
    settings = {k: cfg[k] for k in TRAIN_KEYS}
    if model == "dln":
        settings.update(dln_settings(cfg["dln"]))
        if settings["device"] == "auto":  # dln.device auto: the top-level device
            settings["device"] = cfg["device"]
    return settings


def lr_str(lr) -> str:
    """Canonical text of a learning rate in paths (0.1 -> '0.1', 1e-06 -> '1e-06')."""
    return repr(float(lr))


# One training run's folder; also the Snakemake wildcard pattern of the train rule (common.smk).
RUN_DIR = "results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}"
# Snakemake's benchmark of one training job, the whole job (train.smk's `benchmark:`)
JOB_BENCHMARK = "results/benchmarks/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.tsv"


def run_dir(dataset: str, model: str, variant: str, lr, seed) -> str:
    return RUN_DIR.format(dataset=dataset, model=model, variant=variant, lr=lr_str(lr),
                          seed=int(seed))


@dataclass(frozen=True)
class Figure:
    """One figure, its whole entry: the runs it shows, as (family, variant family, lrs) groups
    of the checked config (family 'net': the configured dataset and model, or 'dln'; variant
    family: :func:`bnopt.variants.variants_in`), the keyword arguments of its draw function,
    and the settings its runs must have on (> 0), by family, or they record nothing for it.
    ``bnopt.figures.FIGURES[name]`` draws it and ``workflow/report/<name>.rst`` is its caption
    (both tested); the rules, ``all``, the refusal of a figure whose measurement is off and the
    report derive from this entry."""
    runs: Callable[[dict], list[tuple]]
    kwargs: Callable[[dict], dict]
    needs: tuple[tuple[str, str], ...] = ()


_MEASURED = (("net", "measure_every"),)
_MEASURED_DLN = (("dln", "measure_every"),)


def _lr(c):
    return [c["figure_lr"]]


def _dlr(c):
    return [c["dln"]["figure_lr"]]


FIGURE_REGISTRY: dict[str, Figure] = {
    "fig1_accuracy": Figure(lambda c: [("net", "bn", c["fig1_lrs"])],
                            lambda c: {"lrs": c["fig1_lrs"]}),
    "fig1_activations": Figure(lambda c: [("net", "bn", _lr(c))],
                               lambda c: {"lr": c["figure_lr"], "layers": c["fig1_layers"]},
                               _MEASURED),
    "fig2_noisy_bn": Figure(lambda c: [("net", "noisy", _lr(c))],
                            lambda c: {"lr": c["figure_lr"], "layers": c["fig2_layers"]},
                            _MEASURED),
    "fig3_ics": Figure(lambda c: [("net", "bn", c["fig3_lrs"])],
                       lambda c: {"lrs": c["fig3_lrs"], "layers": c["fig3_layers"]}, _MEASURED),
    "fig3_ics_dln": Figure(lambda c: [("dln", "bn", c["dln"]["fig3_lrs"])],
                           lambda c: {"lrs": c["dln"]["fig3_lrs"],
                                      "layers": c["dln"]["fig3_layers"]}, _MEASURED_DLN),
    "fig4_landscape": Figure(lambda c: [("net", "bn", _lr(c))],
                             lambda c: {"lr": c["figure_lr"]}, _MEASURED),
    "fig5_lp": Figure(lambda c: [("net", "lp", _lr(c)), ("dln", "lp", _dlr(c))],
                      lambda c: {"lr": c["figure_lr"], "dln_lr": c["dln"]["figure_lr"]}),
    "fig6_lp_activations": Figure(lambda c: [("net", "lp", _lr(c))],
                                  lambda c: {"lr": c["figure_lr"], "layer": c["fig6_layer"]},
                                  (("net", "measure_every"), ("net", "hist_every"))),
    "fig8_activation_shift": Figure(lambda c: [("net", "noisy", _lr(c))],
                                    lambda c: {"lr": c["figure_lr"], "layers": c["fig8_layers"]},
                                    _MEASURED),
    "fig9_dln_activations": Figure(lambda c: [("dln", "bn", _dlr(c))],
                                   lambda c: {"lr": c["dln"]["figure_lr"],
                                              "layers": c["dln"]["fig9_layers"]}, _MEASURED_DLN),
    "fig10_dln_landscape": Figure(lambda c: [("dln", "bn", _dlr(c))],
                                  lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN),
    "fig11_gradient_vs_step": Figure(lambda c: [("net", "bn", _lr(c))],
                                     lambda c: {"lr": c["figure_lr"]}, _MEASURED),
    "fig12_lp_vgg": Figure(lambda c: [("net", "lp", _lr(c))],
                           lambda c: {"lr": c["figure_lr"]}, _MEASURED),
    "fig13_lp_dln": Figure(lambda c: [("dln", "lp", _dlr(c))],
                           lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN),
    "fig14_normalisers_vgg": Figure(lambda c: [("net", "normalisers", _lr(c))],
                                    lambda c: {"lr": c["figure_lr"]}, _MEASURED),
    "fig15_normalisers_dln": Figure(lambda c: [("dln", "normalisers", _dlr(c))],
                                    lambda c: {"lr": c["dln"]["figure_lr"]}, _MEASURED_DLN),
    "fig16_curvature": Figure(lambda c: [("net", "bn", _lr(c)), ("dln", "bn", _dlr(c))],
                              lambda c: {"lr": c["figure_lr"], "dln_lr": c["dln"]["figure_lr"]},
                              (("net", "hessian_every"), ("dln", "hessian_every"))),
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
               if not (cfg["dln"] if fam == "dln" else cfg)[key]]
        if off:
            out[fig] = off
    return out


def needs_text(figure: str, off: list[str]) -> str:
    """'results/figures/F.png needs hessian_every > 0': why ``figure`` is off, in words."""
    return f"results/figures/{figure}.png needs {' and '.join(off)} > 0"


def figure_blockers(cfg: dict) -> dict[str, str]:
    """Figures the checked config ``cfg`` cannot draw (:func:`figures_off`), each with a message
    that names the settings to turn on. ``snakemake`` (all) leaves them out; asking for one is
    an error raised while the DAG is built, before any training."""
    out = {}
    for fig, off in figures_off(cfg).items():
        top = [f"{k}=100" for k in off if not k.startswith("dln.")]
        dln = [f"{k[4:]}: 100" for k in off if k.startswith("dln.")]
        example = " ".join(top + ([f"dln='{{{', '.join(dln)}}}'"] if dln else []))
        them = "them" if len(off) > 1 else "it"
        out[fig] = (f"{needs_text(fig, off)}, but this config sets {them} to 0, so its runs "
                    f"record nothing to draw. Set {them} in your config file or on the command "
                    f"line, e.g. `--config {example}`; runs trained without are retrained, since "
                    "their settings change.")
    return out


def family_runs(cfg: dict, family: str, variants, lrs) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of each run of ``family`` ('net' or 'dln')."""
    if family == "dln":
        dataset, model, seeds = "dln", "dln", cfg["dln"]["seeds"]
    else:
        dataset, model, seeds = cfg["dataset"], cfg["model"], cfg["seeds"]
    return [(dataset, model, v, float(lr), int(s)) for v in variants for lr in lrs for s in seeds]


def sweep_runs(cfg: dict) -> list[tuple]:
    """Every run the whole workflow trains, once each: the two sweeps (variants x lrs x seeds
    of the top level and of ``dln``) and every run a figure it can draw needs."""
    runs = family_runs(cfg, "net", cfg["variants"], cfg["lrs"])
    runs += family_runs(cfg, "dln", cfg["dln"]["variants"], cfg["dln"]["lrs"])
    blocked = figure_blockers(cfg)
    runs += [r for fig, (groups, _) in figure_specs(cfg).items() if fig not in blocked
             for fam, v, lrs in groups for r in family_runs(cfg, fam, v, lrs)]
    return list(dict.fromkeys(runs))
