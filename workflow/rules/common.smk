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

from bnopt.config import ConfigError, check_config, run_dir
from bnopt.figures import FIGURES
from bnopt.models import MODELS, VARIANTS
from bnopt.data import DATASETS, TRAIN_SIZES

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
    "hist_every", "checkpoint_every", "keep_checkpoints",
]
# Keys the dln section sets for DLN runs; the DLN is trained by full-batch gradient descent.
DLN_KEYS = ["steps", "init", "eval_every", "log_every", "measure_every", "hist_every",
            "probe_multipliers"]
DLN = config["dln"]

# One training run's folder (wildcards) and its files.
RUN = "results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}"


def run_metas(variants, lrs, family="net"):
    """run.json of each (variant, lr, seed) run: family 'net' is the configured dataset and
    model with config seeds; 'dln' is the deep linear network with dln.seeds."""
    if family == "dln":
        dataset, model, seeds = "dln", "dln", DLN["seeds"]
    else:
        dataset, model, seeds = config["dataset"], config["model"], config["seeds"]
    return [
        f"{run_dir(dataset, model, v, lr, s)}/run.json"
        for v in variants
        for lr in lrs
        for s in seeds
    ]


def train_params(wildcards):
    params = {k: config[k] for k in TRAIN_KEYS}
    if wildcards.model == "dln":
        params.update({k: DLN[k] for k in DLN_KEYS})
        n = TRAIN_SIZES["dln"]
        params.update(batch_size=n, eval_batch_size=n, momentum=0.0, weight_decay=0.0,
                      augment=False, width=1.0)
    return params


def data_params(wildcards):
    """What the prepared data depends on: where a copy lives, or the seed that draws it."""
    if wildcards.dataset == "dln":
        return {"data_seed": DLN["data_seed"]}
    return {"data_root": config["data_root"]}


# Each figure: the runs it needs as (family, variants, lrs) groups, and its plotting arguments.
_BN = ["standard", "batchnorm"]
_ALL = ["standard", "batchnorm", "noisy_batchnorm"]
_LP = ["standard", "batchnorm", "l1", "l2", "linf"]
_LR, _DLR = config["figure_lr"], DLN["figure_lr"]
FIGURE_SPECS = {
    "fig1_accuracy": ([("net", _BN, config["fig1_lrs"])], {"lrs": config["fig1_lrs"]}),
    "fig1_activations": ([("net", _BN, [_LR])], {"lr": _LR, "layers": config["fig1_layers"]}),
    "fig2_noisy_bn": ([("net", _ALL, [_LR])], {"lr": _LR, "layers": config["fig2_layers"]}),
    "fig3_ics": (
        [("net", _BN, config["fig3_lrs"])],
        {"lrs": config["fig3_lrs"], "layers": config["fig3_layers"]},
    ),
    "fig3_ics_dln": (
        [("dln", _BN, DLN["fig3_lrs"])],
        {"lrs": DLN["fig3_lrs"], "layers": DLN["fig3_layers"]},
    ),
    "fig4_landscape": ([("net", _BN, [_LR])], {"lr": _LR}),
    "fig5_lp": ([("net", _LP, [_LR]), ("dln", _LP, [_DLR])], {"lr": _LR, "dln_lr": _DLR}),
    "fig6_lp_activations": ([("net", _LP, [_LR])], {"lr": _LR, "layer": config["fig6_layer"]}),
    "fig8_activation_shift": ([("net", _ALL, [_LR])], {"lr": _LR, "layers": config["fig8_layers"]}),
    "fig9_dln_activations": ([("dln", _BN, [_DLR])], {"lr": _DLR, "layers": DLN["fig9_layers"]}),
    "fig10_dln_landscape": ([("dln", _BN, [_DLR])], {"lr": _DLR}),
    "fig11_gradient_vs_step": ([("net", _BN, [_LR])], {"lr": _LR}),
    "fig12_lp_vgg": ([("net", _LP, [_LR])], {"lr": _LR}),
    "fig13_lp_dln": ([("dln", _LP, [_DLR])], {"lr": _DLR}),
}
assert set(FIGURE_SPECS) == set(FIGURES), "every figure function needs a spec, and vice versa"


# The code that draws figures and tables: they rebuild when it changes (training does not; use
# --forcerun train to retrain after changing the training code).
_PKG = Path(workflow.basedir) / "src" / "bnopt"
TABLE_CODE = [str(_PKG / "aggregate.py")]
FIGURE_CODE = [str(_PKG / "figures.py"), str(_PKG / "aggregate.py")]


def figure_inputs(groups):
    return [m for family, variants, lrs in groups for m in run_metas(variants, lrs, family)]


# The summary covers every run the workflow trains: both sweeps and every figure's runs.
ALL_RUNS = list(
    dict.fromkeys(
        run_metas(config["variants"], config["lrs"])
        + run_metas(DLN["variants"], DLN["lrs"], "dln")
        + [m for groups, _ in FIGURE_SPECS.values() for m in figure_inputs(groups)]
    )
)
