# Config validation and helpers shared by all rules.
import dataclasses
import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The science lives in the bnopt package (src/bnopt), installed with `pip install .` or
# `pip install -e .` (README.md, "Quick start"); rule scripts and cluster jobs import it from the
# same environment, and its config schema comes with it (package data). Parsing
# imports only its light modules (names, settings, the scorecard's runs): no torch, no seaborn.
try:
    import bnopt
except ImportError:
    raise WorkflowError(
        "the bnopt package is not installed in this Python environment: run `pip install -e .` "
        f"(or `pip install .`) in {workflow.basedir} (README.md, 'Quick start')"
    ) from None

from bnopt.plan.check import ConfigError, check_config
from bnopt.plan.datasets import DATASETS
from bnopt.plan.experiments import reported_variants
from bnopt.plan.figure_specs import figure_blockers, figure_specs
from bnopt.plan.reads import tracked_measures
from bnopt.plan.runs import (
    JOB_BENCHMARK,
    RUN_DIR,
    family_runs,
    model_of,
    plan,
    run_config,
    run_dir,
    target_figures,
    tracked_settings,
)
from bnopt.plan.tables import written_tables
from bnopt.plan.variants import MODELS, VARIANTS, model_folder
from bnopt.running.code_inputs import code_inputs
from bnopt.running.workers import RuleJob, run_script
from bnopt.scorecard.checks import scorecard_runs
from bnopt.scorecard.reads import run_measures

# check_config coerces command-line strings, validates against the schema, fills defaults and
# checks what the schema cannot; the config every rule sees is its result.
def _module_depth(cfg):
    # a model by import path is built (torch) to be checked: only then
    from bnopt.training.module_net import module_depth

    return module_depth(cfg)


try:
    _checked = check_config(config, depth_of=_module_depth)  # bnopt's own schema (package data)
except ConfigError as e:
    raise WorkflowError(f"Config error: {e}") from None
config.clear()
config.update(_checked)


wildcard_constraints:
    dataset="|".join(DATASETS),
    # the registry's networks, and a model by import path's folder (bnopt.plan.variants.model_folder)
    model="|".join([*MODELS, re.escape(model_folder(config["model"]))]),
    variant="|".join(VARIANTS),
    lr=r"[0-9.]+(e[+-]?[0-9]+)?",
    seed=r"\d+",


DLN = config["dln"]

# One training run's folder (wildcards) and its files (train.smk: one per table it writes:
# every TABLES entry, and the optional tables this config turns on).
RUN = RUN_DIR
RUN_TABLES = written_tables(config)


def run_metas(variants, lrs, family="net"):
    """run.json of each (variant, lr, seed) run: family 'net' is the configured dataset and
    model with config seeds; 'dln' is the deep linear network with dln.seeds."""
    return [f"{run_dir(*run)}/run.json" for run in family_runs(config, family, variants, lrs)]


# What each run measures (measure: read, only what a figure, check or finding reads of it)
MEASURES = run_measures(config)


def wildcard_run(wildcards):
    """The complete settings (RunConfig) of the run these wildcards name: the plan's for a
    planned run, and the same function's for a run asked for by its path."""
    return run_config(config, wildcards.dataset, model_of(config, wildcards.model),
                      wildcards.variant, wildcards.lr, wildcards.seed, measures=MEASURES)


def finished_meta(run):
    """The run.json of a finished run (None if there is none yet)."""
    path = Path(run.folder) / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def train_params(wildcards):
    """What a training job tracks of its settings (bnopt.plan.runs.tracked_settings): rerun when one
    changes; a setting added at its neutral value changes nothing. A finished run that measured
    more than is read of it is tracked with what it measured (bnopt.plan.reads.tracked_measures):
    measuring changes nothing it trained, so it is not retrained."""
    run = wildcard_run(wildcards)
    measures = tracked_measures(run.measures, finished_meta(run))
    return tracked_settings(dataclasses.replace(run, measures=measures))


def gpu_slots(wildcards):
    """GPUs a training job holds: none where its run trains on the CPU."""
    return 0 if wildcard_run(wildcards).device == "cpu" else 1


# Where each job's script runs (bnopt.running.workers): every job runs it from Snakemake's
# process, with run_rule_script. Where jobs' code runs in Snakemake's own threads (the
# workflow profile: force-use-threads), in one of at most WORKERS warm worker processes (as
# many as training jobs can run at once, all started with the first job; each imports torch once,
# about 0.7 GB, and a figure job's plotting libraries once), except a training job that holds a GPU, which gets a fresh process (its
# lease and CUDA context end with it); where each job gets a Snakemake process of its own (no
# threads), in that process. On a cluster, under conda and with warm_workers false each job
# is a plain script job instead (a process a job).
CONDA = any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method)
WARM = config["warm_workers"] and not workflow.remote_exec and not CONDA


def _cores():
    try:
        return workflow.cores  # --cores (the profile: all); raises where none is set
    except WorkflowError:
        return 1


WORKERS = max(1, _cores() // config["threads"])


def run_rule_script(script, input, output, params, wildcards, threads, log, resources, rule,
                    gpus=0):
    """Run workflow/scripts/``script`` for this job (a `run:` rule's body; see above): in a
    warm worker, or, for a job that holds ``gpus``, in a fresh process."""
    where = "here" if workflow.subprocess_exec else "fresh" if gpus else "warm"
    run_script(SCRIPTS / script, RuleJob(input, output, params, wildcards, threads, log,
                                         resources, config, rule), where, WORKERS)


def data_params(wildcards):
    """What the prepared data depends on: where a copy lives, or the seed that draws it."""
    if wildcards.dataset == "dln":
        return {"data_seed": DLN["data_seed"]}
    return {"data_root": config["data_root"], "image_size": config["image_size"]}


# Each figure: the runs it needs as (family, variants, lrs) groups, and its plotting arguments.
# (tests/test_workflow.py: the same figures as bnopt.figures.paper.FIGURES draws)
FIGURE_SPECS = figure_specs(config)
# Figures this config cannot draw (a measurement they need is off), with the fix; `all` skips
# them and asking for one fails before any job runs.
BLOCKED = figure_blockers(config)
# What a plain `snakemake` draws: every figure it can draw, or an experiment's own.
TARGET_FIGURES = target_figures(config)


# The code that draws figures and tables, as their inputs: each rule that draws or tabulates
# lists its script and every bnopt module the script reaches through its imports, with their
# package data (bnopt.running.code_inputs, from the import graph of the package actually
# imported), and reruns when one changes in content. Training lists none: a code change
# retrains nothing (use --forcerun train for that), and run.json records which code made a run
# (code_version). The profiles drop Snakemake's `code` rerun trigger, which reruns a job whose
# outputs are older than its script's modification time: a `git pull` that touches a script
# would otherwise retrain every finished run.
SCRIPTS = Path(str(workflow.current_basedir)).parent / "scripts"  # beside this folder


def rule_code(script):
    """workflow/scripts/``script`` and the bnopt code it runs, as the inputs of its rule."""
    return code_inputs(SCRIPTS / script)


def figure_inputs(figure, groups):
    """The run.json of every run ``figure`` needs; for a blocked figure, an input function
    that stops the DAG with the reason."""
    if figure in BLOCKED:

        def blocked(wildcards):
            raise WorkflowError(f"Config error: {BLOCKED[figure]}")

        return blocked
    return [m for family, variants, lrs in groups for m in run_metas(variants, lrs, family)]


# The run plan: every run the workflow trains (both sweeps and every figure's runs), each
# with its complete settings. The summary covers them all.
PLAN = plan(config, MEASURES)
ALL_RUNS = [f"{run.folder}/run.json" for run in PLAN]
# The scorecard's runs: those its checks compare (a subset of the figures' runs).
CLAIM_RUNS = [f"{run_dir(*run)}/run.json" for run in scorecard_runs(config)]


def reported_inputs():
    """The runs results/tables/reported.csv compares (its experiment's variants at figure_lr);
    without an experiment, an input function that stops the DAG with the fix."""
    if config["experiment"] is None:

        def no_experiment(wildcards):
            raise WorkflowError(
                "Config error: results/tables/reported.csv compares an earlier experiment's "
                "published findings with its runs, and this config names none: run it with "
                "that experiment's preset, e.g. `--configfile workflow/presets/small_cnn.yaml` "
                "(docs/earlier-experiments.md), or set experiment"
            )

        return no_experiment
    return run_metas(reported_variants(config["experiment"]), [config["figure_lr"]])
