"""The config check: coerce command-line strings, validate against the JSON schema, fill the
defaults, and check what the schema cannot (dataset files present, batch fits the dataset, figure
layers exist, each run family's settings), with errors that name the key, what is allowed, and
how to fix it. Runs when Snakemake parses the workflow, before any job.
"""

from __future__ import annotations

import copy
import os

from bnopt.plan.datasets import TRAIN_SIZES, dataset_present, missing_data_message
from bnopt.plan.experiments import published
from bnopt.plan.figure_specs import PAPER_LAYERS, figure_layers
from bnopt.plan.runs import RunConfig, checkpoint_problem, train_settings
from bnopt.plan.schema import SCHEMA_PATH, coerce, load_schema, schema_errors
from bnopt.plan.variants import NOISY_BN_DEFAULTS, is_model_path, num_layers


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


def check_config(config: dict, schema_path: str | os.PathLike = SCHEMA_PATH,
                 depth_of=None) -> dict:
    """Return a coerced, validated copy of ``config`` with schema defaults filled in.

    Raises :class:`ConfigError` naming the offending key for anything the workflow cannot run.
    A model by import path is built to be checked (its weight layers are figure layers'
    range): ``depth_of(cfg)`` builds it and returns its depth, or raises ValueError saying why
    it cannot be studied (:func:`bnopt.training.module_net.module_depth`; it needs torch, which
    this module does not import).
    """
    schema = load_schema(schema_path)
    cfg = coerce(copy.deepcopy(dict(config)), schema)
    errors = schema_errors(cfg, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    for k, sub in schema["properties"].items():
        if k not in cfg and "default" in sub:
            cfg[k] = copy.deepcopy(sub["default"])
    if is_model_path(cfg["model"]):
        if depth_of is None:
            raise ConfigError(f"model = {cfg['model']!r} is a module by import path: it is "
                              "checked by building it (check_config(..., depth_of="
                              "bnopt.training.module_net.module_depth))")
        try:
            depth = depth_of(cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    else:
        depth = num_layers(cfg["model"], cfg["mlp_widths"])
    for key in PAPER_LAYERS:  # unset: the model's own (the paper's for the VGG)
        if cfg.get(key) is None:
            cfg[key] = figure_layers(cfg["model"], key, depth)
    # a partial mapping keeps the other defaults
    cfg["noisy_bn"] = {**NOISY_BN_DEFAULTS, **cfg.get("noisy_bn", {})}
    cfg["dln"] = {**schema["properties"]["dln"]["default"], **cfg["dln"]}

    name, root = cfg["dataset"], cfg.get("data_root")
    if root is not None and not dataset_present(name, root):
        raise ConfigError(f"data_root: {missing_data_message(name, root)}")
    if cfg["batch_size"] > TRAIN_SIZES[name]:
        raise ConfigError(f"batch_size = {cfg['batch_size']} is larger than the {name} training set "
                          f"({TRAIN_SIZES[name]} samples); choose batch_size <= {TRAIN_SIZES[name]}.")
    layer_keys = [(cfg, k, cfg["model"], depth) for k in PAPER_LAYERS]
    layer_keys += [(cfg["dln"], k, "dln", num_layers("dln"))
                   for k in ("fig3_layers", "fig9_layers")]
    for section, key, model, n in layer_keys:
        val = section[key]
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
    if cfg["experiment"] is not None:
        if cfg["experiment"] not in published():
            raise ConfigError(f"experiment = {cfg['experiment']!r}: choose one of "
                              f"{', '.join(published())} (an earlier experiment whose published "
                              "findings results/tables/reported.csv compares with), or null")
    return cfg
