"""One training run's settings (:class:`RunConfig`), their defaults (the schema's), where a run
writes, and the run plan: every run a checked config trains, each as a complete RunConfig
(:func:`plan`), which the rules, the cost projection and the scorecard read."""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

from bnopt.plan.datasets import TRAIN_SIZES
from bnopt.plan.experiments import experiment_figures, reported_variants
from bnopt.plan.figure_specs import figure_specs, figures_off
from bnopt.plan.reads import ALL, default_measures, ordered
from bnopt.plan.schema import load_schema
from bnopt.plan.variants import (
    ACTIVATIONS,
    MLP_WIDTHS,
    NOISY_BN_DEFAULTS,
    OPTIMIZERS,
    model_folder,
)

PRECISIONS = ("fp32", "tf32")  # of float32 convolutions and matrix products on a GPU
DTYPE_NAMES = ("float32", "float64")
VMAP_CHANNELS_LAST = (
    "vmap_probes = true together with channels_last = true is not supported: PyTorch's vmap "
    "cannot batch BatchNorm over channels-last tensors on CUDA ('NYI: Tensor.clone(memory_format) "
    "inside vmap'), so the first measured step would crash on a GPU. Set vmap_probes: false or "
    "channels_last: false (docs/speed.md).")


def checkpoint_problem(checkpoint_every: int, log_every: int, prefix: str = "") -> str | None:
    """Why a run cannot checkpoint every ``checkpoint_every`` steps with ``log_every`` (None if
    it can): checkpoints are taken at the host syncs. The workflow's config check and training
    with a checkpoint path both ask this."""
    if checkpoint_every and checkpoint_every % log_every:
        return (f"checkpoint_every = {checkpoint_every} must be a multiple of "
                f"{prefix}log_every = {log_every} (checkpoints are taken at host syncs).")
    return None


# Keys the dln section sets for DLN runs; the DLN is trained by full-batch gradient descent.
DLN_KEYS = ("steps", "init", "eval_every", "log_every", "measure_every", "measure_per_decade",
            "hist_every", "hessian_every", "probe_multipliers", "dtype", "vmap_probes", "device")
# What every DLN run is, whatever the config says (paper Section 4: full-batch gradient
# descent on a regression; no conv maps).
DLN_FIXED = {"batch_size": TRAIN_SIZES["dln"], "eval_batch_size": TRAIN_SIZES["dln"],
             "momentum": 0.0, "weight_decay": 0.0, "augment": False, "width": 1.0,
             "channels_last": False, "optimizer": "sgd",
             "activation": "relu",  # unused: the DLN has no nonlinearity
             # plain GD's update is -lr * gradient, which the gradient probes already follow;
             # single units' percentiles are of the networks' nonlinearities (Ioffe & Szegedy)
             "probe_update": False, "units_per_layer": 0}


def measured_steps(steps: int, every: int, per_decade: int = 0) -> list[int]:
    """The steps of a ``steps``-step run that are measured, ascending: every ``every``-th from
    step 0 (``every`` = 0: none), and with ``per_decade`` > 0 also step 0 and ``per_decade``
    steps per decade of the step count, geometrically spaced (round(10 ** (k / per_decade)),
    k = 0, 1, ...: 1, 2, 3, ... while they are closer than one step, then sparser): dense early,
    for runs whose loss falls from the first step; a net whose loss falls late gets few
    measured steps there (the quick preset's standard VGG: docs/configuration.md). The one
    place a run's measured steps are decided (training, the cost projection)."""
    out = set(range(0, steps, every)) if every else set()
    if per_decade:
        out.add(0)
        k = 0
        while (s := round(10 ** (k / per_decade))) < steps:
            out.add(s)
            k += 1
    return sorted(out)


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
    return tuple(out.items())


def model_defaults(model: str) -> dict:
    """Every run setting's default for ``model``: the schema's (the one place they are written;
    the two it requires of a config, ``PAPER_RUN``), and for the DLN the schema's ``dln``
    defaults of ``DLN_KEYS`` (Glorot, float64, 10,000 steps, probes at 1/100..30 x lr, ...) and
    ``DLN_FIXED``, which is what the workflow gives a DLN run."""
    return copy.deepcopy(dict(_run_defaults(model)))


def _neutral(value):
    """A RunConfig field (default None: the model's default) whose ``value`` computes what runs
    trained before the field existed computed: see :data:`NEUTRAL`."""
    return dataclasses.field(default=None, metadata={"neutral": value})


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
    # speed and precision (see docs/speed.md)
    precision: str | None = None        # float32 convs/matmuls of unmeasured steps: fp32, tf32
    eval_precision: str | None = None   # ... of evaluations (they do not feed back into training)
    cudnn_benchmark: bool | None = None  # cuDNN picks convolution algorithms by timing them
    cuda_graph: bool | None = None      # unmeasured steps on a GPU replay as one CUDA graph
    dtype: str | None = None      # parameters, activations and data: 'float32' or 'float64'
    channels_last: bool | str | None = None  # NHWC for conv nets: true, false, 'auto'
    vmap_probes: bool | None = None    # all probe points in one torch.func.vmap pass
    # curvature (docs/measurements.md, "Curvature"): every hessian_every steps (0: never)
    hessian_every: int | None = None
    hessian_iters: int | None = None  # Lanczos iterations (Hessian-vector products) at most
    hessian_tol: float | None = None  # stop once the top Ritz pair's relative residual is below
    # settings added after runs were trained without them: at their neutral value (their
    # default) they compute what those runs computed and are not tracked (NEUTRAL)
    optimizer: str | None = _neutral("sgd")
    adam_betas: tuple | None = _neutral((0.9, 0.999))
    adam_eps: float | None = _neutral(1e-8)
    activation: str | None = _neutral("relu")  # of every hidden layer
    mlp_widths: tuple | None = _neutral(MLP_WIDTHS)  # model mlp's hidden widths
    units_per_layer: int | None = _neutral(0)  # single units' input percentiles (units.parquet)
    probe_update: bool | None = _neutral(False)  # probes along the update too (update_probes)
    # measured steps per decade of the step count, on top of every measure_every-th
    measure_per_decade: int | None = _neutral(0)
    # a model by import path ("package.module:factory"): the factory's keyword arguments
    model_kwargs: dict | None = _neutral({})
    # what a measured step measures (bnopt.plan.tables.MEASUREMENTS; None: all of it); not a
    # config key: the workflow derives it from the config's ``measure`` (bnopt.plan.reads)
    measures: tuple | None = _neutral(ALL)

    def __post_init__(self):
        for name, value in model_defaults(self.model).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        object.__setattr__(self, "probe_multipliers", tuple(map(float, self.probe_multipliers)))
        object.__setattr__(self, "adam_betas", tuple(map(float, self.adam_betas)))
        object.__setattr__(self, "mlp_widths", tuple(map(int, self.mlp_widths)))
        object.__setattr__(self, "measures", ALL if self.measures is None
                           else ordered(self.measures))
        # what the schema checks for the workflow, checked here for library use (before any
        # data is loaded or GPU time spent)
        for name, allowed in (("precision", PRECISIONS), ("eval_precision", PRECISIONS),
                              ("dtype", DTYPE_NAMES), ("optimizer", OPTIMIZERS),
                              ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} = {getattr(self, name)!r}: choose one of "
                                 f"{', '.join(allowed)}")
        for name in ("measure_every", "measure_per_decade"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be 0 (off) or more")
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last = {self.channels_last!r}: choose true, false or auto")
        if self.vmap_probes and self.channels_last is True:
            raise ValueError(VMAP_CHANNELS_LAST)
        if self.optimizer == "adam" and self.momentum:
            raise ValueError(f"momentum = {self.momentum} with optimizer adam: Adam's beta1 "
                             f"(adam_betas, now {list(self.adam_betas)}) plays momentum's role; "
                             "set momentum: 0, or optimizer: sgd")

    def uses_channels_last(self, device) -> bool:
        """Whether this run keeps activations and weights in NHWC on ``device``:
        ``channels_last`` when true or false; ``auto`` where it measured faster, on a CUDA device
        with ``precision: tf32`` (faster per graphed step there, slower in fp32, BENCHMARKS.md;
        on the CPU mixed, and it changes results at rounding), and never with
        ``vmap_probes`` (PyTorch's vmap cannot batch BatchNorm over NHWC on CUDA)."""
        if self.channels_last != "auto":
            return bool(self.channels_last)
        return (str(device).startswith("cuda") and self.precision == "tf32"
                and not self.vmap_probes)

    def measured_steps(self) -> list[int]:
        """The steps this run measures (:func:`measured_steps`)."""
        return measured_steps(self.steps, self.measure_every, self.measure_per_decade)

    @property
    def folder(self) -> str:
        """This run's folder (:data:`RUN_DIR`)."""
        return run_dir(self.dataset, self.model, self.variant, self.lr, self.seed)

    def fingerprint(self) -> dict:
        """What a checkpoint must match to be resumed (everything but the checkpoint policy)."""
        d = {k: getattr(self, k) for k in RUN_IDENTITY} | tracked_settings(self)
        for k in ("checkpoint_every", "keep_checkpoints", "log_every", "device"):
            d.pop(k, None)
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


# What names a run (its folder); every other RunConfig field is a config key of the same name,
# but those the workflow derives from the config (DERIVED: a run's measures, from ``measure``).
RUN_IDENTITY = ("dataset", "model", "variant", "lr", "seed")
DERIVED = ("measures",)
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig)
                   if f.name not in RUN_IDENTITY + DERIVED)
# Settings added after runs were trained without them, each with the value that computes what
# those runs computed (its default, tested): a field declared with
# ``dataclasses.field(default=None, metadata={"neutral": value})``. At that value a setting is
# left out of the train rule's tracked settings and of a checkpoint's fingerprint.
NEUTRAL = {f.name: f.metadata["neutral"] for f in dataclasses.fields(RunConfig)
           if "neutral" in f.metadata}


def train_settings(cfg: dict, model: str) -> dict:
    """The RunConfig fields (all but dataset, model, variant, lr, seed) of a run of ``model``
    under the checked config ``cfg``."""
    settings = {k: cfg[k] for k in TRAIN_KEYS}
    if model == "dln":
        settings.update(dln_settings(cfg["dln"]))
        if settings["device"] == "auto":  # dln.device auto: the top-level device
            settings["device"] = cfg["device"]
    # what a run does not use stays at its neutral value, so a change to it retrains no run
    # that ignores it (the MLP's widths for other models, Adam's constants for SGD)
    if model != "mlp":
        settings["mlp_widths"] = list(NEUTRAL["mlp_widths"])
    if settings["optimizer"] != "adam":
        settings.update(adam_betas=list(NEUTRAL["adam_betas"]), adam_eps=NEUTRAL["adam_eps"])
    return settings


# Settings that cannot change what a run computes (its checkpoint policy): not tracked, so
# changing them retrains nothing (as the scheduling settings jobs_per_gpu and gpu_lock_dir,
# which are not run settings at all)
UNTRACKED = ("checkpoint_every", "keep_checkpoints")


def tracked_settings(run: RunConfig) -> dict:
    """The settings of ``run`` that the train rule tracks (its ``params``: a change retrains
    the run), as plain data: every ``TRAIN_KEYS`` field but those at their neutral value
    (:data:`NEUTRAL`), so that adding a setting whose default changes nothing leaves every
    finished run's tracked settings, and so Snakemake's verdict on it, as they were; nor the
    :data:`UNTRACKED` ones. ``RunConfig.from_dict`` of them (with the run's identity and its
    untracked settings) gives ``run`` back."""
    out = {}
    for field in dataclasses.fields(run):
        value = getattr(run, field.name)
        if (field.name in RUN_IDENTITY or field.name in UNTRACKED
                or value == field.metadata.get("neutral", _NONE)):
            continue
        out[field.name] = list(value) if isinstance(value, tuple) else copy.deepcopy(value)
    return out


_NONE = object()  # no neutral value


def lr_str(lr) -> str:
    """Canonical text of a learning rate in paths (0.1 -> '0.1', 1e-06 -> '1e-06')."""
    return repr(float(lr))


# One training run's folder; also the Snakemake wildcard pattern of the train rule (common.smk).
RUN_DIR = "results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}"
# Snakemake's benchmark of one training job, the whole job (train.smk's `benchmark:`)
JOB_BENCHMARK = "results/benchmarks/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.tsv"


def run_dir(dataset: str, model: str, variant: str, lr, seed) -> str:
    return RUN_DIR.format(dataset=dataset, model=model_folder(model), variant=variant,
                          lr=lr_str(lr), seed=int(seed))


def model_of(cfg: dict, folder: str) -> str:
    """The model whose runs' folder is ``folder`` (:func:`model_folder`) under the checked
    config ``cfg``: its ``model`` where that is a model by import path, else the name itself."""
    return cfg["model"] if folder == model_folder(cfg["model"]) else folder


def run_config(cfg: dict, dataset: str, model: str, variant: str, lr, seed,
               measures: dict | None = None) -> RunConfig:
    """The complete, frozen settings of one run under the checked config ``cfg``: its model's
    (the DLN's overrides applied by :func:`train_settings`), every default filled in, and what
    it measures: from ``measures``, what the workflow gives it
    (:func:`bnopt.scorecard.reads.run_measures` of ``cfg``; a run not in it,
    :func:`bnopt.plan.reads.default_measures`), or everything where that is None. What is left
    to decide is what only the machine that trains it knows (``device: auto`` becomes the GPU
    it leases; ``channels_last: auto`` follows that device, ``train.build_run``)."""
    run = (dataset, model, variant, float(lr), int(seed))
    return RunConfig(*run, **train_settings(cfg, model),
                     measures=ALL if measures is None else measures.get(run, default_measures(cfg)))


def plan(cfg: dict, measures: dict | None = None) -> list[RunConfig]:
    """The run plan: every run the workflow trains under the checked config ``cfg``
    (:func:`sweep_runs`), each as its :func:`run_config` with ``measures`` (the workflow's:
    :func:`bnopt.scorecard.reads.run_measures`; None: every run measures everything), once
    each. The rules' targets, the train rule's parameters and the cost projection read it."""
    return [run_config(cfg, *run, measures=measures) for run in sweep_runs(cfg)]


def family_runs(cfg: dict, family: str, variants, lrs) -> list[tuple]:
    """(dataset, model, variant, lr, seed) of each run of ``family`` ('net' or 'dln')."""
    if family == "dln":
        dataset, model, seeds = "dln", "dln", cfg["dln"]["seeds"]
    else:
        dataset, model, seeds = cfg["dataset"], cfg["model"], cfg["seeds"]
    return [(dataset, model, v, float(lr), int(s)) for v in variants for lr in lrs for s in seeds]


def target_figures(cfg: dict) -> list[str]:
    """The figures `snakemake` (rule all) builds: with an ``experiment`` (an earlier
    experiment's preset), the figures that show its findings; otherwise every figure the
    config can draw."""
    if cfg["experiment"]:
        return experiment_figures(cfg["experiment"])
    blocked = figures_off(cfg)
    return [fig for fig in figure_specs(cfg) if fig not in blocked]


def sweep_runs(cfg: dict) -> list[tuple]:
    """Every run the whole workflow (rule all) trains, once each: the sweep of the top level
    (variants x lrs x seeds) and every run its target figures need (:func:`target_figures`);
    without an ``experiment``, the deep linear network's sweep (``dln``) too, and with one, the
    runs its published findings compare (results/tables/reported.csv) instead."""
    runs = family_runs(cfg, "net", cfg["variants"], cfg["lrs"])
    if cfg["experiment"]:
        runs += family_runs(cfg, "net", reported_variants(cfg["experiment"]), [cfg["figure_lr"]])
    else:
        runs += family_runs(cfg, "dln", cfg["dln"]["variants"], cfg["dln"]["lrs"])
    specs = figure_specs(cfg)
    runs += [r for fig in target_figures(cfg) for fam, v, lrs in specs[fig][0]
             for r in family_runs(cfg, fam, v, lrs)]
    return list(dict.fromkeys(runs))
