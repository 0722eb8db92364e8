# Config validation and helpers shared by all rules.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The science lives in the bnopt package under src/; make it importable here and in rule scripts
# (which inherit this process's environment) whether or not it was pip-installed. This sets
# PYTHONPATH on every parse, cluster jobs included; it requires nothing from the user.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
)

from bnopt.config import ConfigError, check_config, lr_str, run_dir
from bnopt.figures import FIGURES
from bnopt.models import MODELS, VARIANTS
from bnopt.data import DATASETS
from bnopt.train import TABLES

try:
    _checked = check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as e:
    raise WorkflowError(f"Config error: {e}") from None
config.clear()
config.update(_checked)
validate(config, "../schemas/config.schema.yaml")


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    variant="|".join(VARIANTS),
    lr=r"[0-9.]+(e[+-]?[0-9]+)?",
    seed=r"\d+",


# Every key of config that changes what a training run computes (rerun when one changes).
TRAIN_KEYS = [
    "steps", "batch_size", "momentum", "weight_decay", "width", "init", "augment", "eval_every",
    "eval_batch_size", "log_every", "device", "noisy_bn", "measure_every", "probe_multipliers",
    "hist_every",
]

# One training run's folder (wildcards) and its files.
RUN = "results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}"

# Each figure: (variants, learning rates) of the runs it needs, and its plotting arguments.
_BN = ["standard", "batchnorm"]
_ALL = ["standard", "batchnorm", "noisy_batchnorm"]
_LR = config["figure_lr"]
FIGURE_SPECS = {
    "fig1_accuracy": (_BN, config["fig1_lrs"], {"lrs": config["fig1_lrs"]}),
    "fig1_activations": (_BN, [_LR], {"lr": _LR, "layers": config["fig1_layers"]}),
    "fig2_noisy_bn": (_ALL, [_LR], {"lr": _LR, "layers": config["fig2_layers"]}),
    "fig3_ics": (_BN, config["fig3_lrs"], {"lrs": config["fig3_lrs"], "layers": config["fig3_layers"]}),
    "fig4_landscape": (_BN, [_LR], {"lr": _LR}),
    "fig8_activation_shift": (_ALL, [_LR], {"lr": _LR, "layers": config["fig8_layers"]}),
    "fig11_gradient_vs_step": (_BN, [_LR], {"lr": _LR}),
}
assert set(FIGURE_SPECS) == set(FIGURES), "every figure function needs a spec, and vice versa"


def run_metas(variants, lrs, seeds=None):
    """run.json of each (variant, lr, seed) run of the configured dataset and model."""
    seeds = config["seeds"] if seeds is None else seeds
    return [
        f"{run_dir(config['dataset'], config['model'], v, lr, s)}/run.json"
        for v in variants
        for lr in lrs
        for s in seeds
    ]


def train_params(wildcards):
    return {k: config[k] for k in TRAIN_KEYS}
