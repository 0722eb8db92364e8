"""Per-rule scripts, called directly with a stand-in for Snakemake's ``snakemake`` object."""
import json
import runpy
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd
import yaml
from PIL import Image

from bnopt.figures.paper import FIGURES
from bnopt.plan.check import check_config
from bnopt.plan.tables import written_tables
from bnopt.plan.variants import DLN_VARIANTS, NOISY_BN_DEFAULTS, VARIANTS
from conftest import ROOT

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
TRAIN = dict(steps=12, batch_size=64, momentum=0.0, weight_decay=0.0, width=0.125, init="glorot",
             augment=False, eval_every=6, eval_batch_size=500, log_every=4, device="cpu",
             noisy_bn=NOISY_BN_DEFAULTS, measure_every=3, probe_multipliers=[0.5, 1.0, 2.0],
             hist_every=6, checkpoint_every=4, keep_checkpoints=False, hessian_every=6,
             hessian_iters=4, units_per_layer=2, probe_update=True)
DLN_TRAIN = {**TRAIN, "batch_size": 1000, "eval_batch_size": 1000,
             "probe_multipliers": [0.01, 1.0, 30.0], "units_per_layer": 0, "probe_update": False}
# the config the rules see: it turns on the optional tables, which the rule then declares
CONFIG = {"units_per_layer": 2, "probe_update": True}
# ... and gives the train script the checkpoint policy, which its params do not track
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())
CHECKED = check_config({**BASE, **CONFIG, "checkpoint_every": 4, "log_every": 4,
                        "dln": {**BASE["dln"], "log_every": 4}})


def script(name):
    return runpy.run_path(str(SCRIPTS / name))["main"]


def prepare(tmp_path, dataset, source):
    out = tmp_path / "data" / f"{dataset}.pt"
    script("prepare_data.py")(NS(wildcards=NS(dataset=dataset), params=NS(source=source),
                                 output=[str(out)]))
    return out


def train(tmp_path, data, dataset, model, variant, lr, params):
    d = tmp_path / "runs" / model / variant
    out = NS(**{n: str(d / f"{n}.parquet") for n in written_tables(CONFIG)},
             meta=str(d / "run.json"))
    script("train.py")(NS(wildcards=NS(dataset=dataset, model=model, variant=variant, lr=lr,
                                       seed="0"),
                          params=NS(train=params), input=NS(data=str(data)), output=out,
                          config=CHECKED, threads=1))
    return out.meta


def test_rule_scripts_chain_on_generated_data(tmp_path):
    data = prepare(tmp_path, "synthetic", {"data_root": None})
    dln_data = prepare(tmp_path, "dln", {"data_seed": 0})
    metas = [train(tmp_path, data, "synthetic", "vgg", v, "0.05", TRAIN)
             for v in VARIANTS]
    dln = [train(tmp_path, dln_data, "dln", "dln", v, "1e-05", DLN_TRAIN) for v in DLN_VARIANTS]
    tables = NS(csv=str(tmp_path / "summary.csv"), steps=str(tmp_path / "steps.parquet"),
                evals=str(tmp_path / "eval.parquet"))
    script("summarize.py")(NS(input=NS(runs=metas + dln), output=tables))
    summary = pd.read_csv(tables.csv)
    assert len(summary) == 9 + 8 and (summary["steps_completed"] == 12).all()
    # each job's start-up is on record by stage (the train script's clock starts before its
    # imports), with its setup before the first step and its tables' writing
    meta = json.loads(Path(metas[0]).read_text())
    assert set(meta["job_stages_s"]) == {"interpreter", "imports", "data", "setup"}
    assert all(v >= 0 for v in meta["job_stages_s"].values())
    assert meta["write_seconds"] > 0 and meta["setup_seconds"] == meta["job_stages_s"]["setup"]
    assert not list(tmp_path.rglob("checkpoint.pt"))  # finished runs delete their checkpoints
    assert summary[["loss_range", "grad_pred", "beta_smoothness", "ics_l2", "lambda_max",
                    "batch_sharpness"]].notna().all().all()
    assert (summary.lambda_max >= summary.batch_sharpness * (1 - 1e-6)).all()
    steps = pd.read_parquet(tables.steps)
    assert len(steps) == 17 * 12
    assert list(steps.columns[:5]) == ["dataset", "model", "variant", "lr", "seed"]
    layers = {"fig1_activations": [3, 11], "fig2_noisy_bn": [2, 9, 13],
              "fig8_activation_shift": [2, 9, 13]}
    kwargs = {"fig1_accuracy": (metas, {"lrs": [0.05]}),
              "fig3_ics": (metas, {"lrs": [0.05], "layers": [5, 10]}),
              "fig4_landscape": (metas, {"lr": 0.05}),
              "fig11_gradient_vs_step": (metas, {"lr": 0.05}),
              "fig12_lp_vgg": (metas, {"lr": 0.05}),
              "fig6_lp_activations": (metas, {"lr": 0.05, "layer": 11}),
              "fig5_lp": (metas + dln, {"lr": 0.05, "dln_lr": 1e-5}),
              "fig3_ics_dln": (dln, {"lrs": [1e-5], "layers": [9, 17]}),
              "fig9_dln_activations": (dln, {"lr": 1e-5, "layers": [1, 11, 24]}),
              "fig10_dln_landscape": (dln, {"lr": 1e-5}),
              "fig13_lp_dln": (dln, {"lr": 1e-5}),
              "fig14_normalisers_vgg": (metas, {"lr": 0.05}),
              "fig15_normalisers_dln": (dln, {"lr": 1e-5}),
              "fig16_curvature": (metas + dln, {"lr": 0.05, "dln_lr": 1e-5}),
              "fig17_gradient_norm": (metas, {"lr": 0.05}),
              "fig18_init_distance": (metas, {"lr": 0.05}),
              "fig19_unit_percentiles": (metas, {"lr": 0.05}),
              "fig4u_update_landscape": (metas, {"lr": 0.05}),
              **{f: (metas, {"lr": 0.05, "layers": ls}) for f, ls in layers.items()}}
    assert set(kwargs) == set(FIGURES)
    for fig, (inputs, kw) in kwargs.items():
        png = tmp_path / f"{fig}.png"
        script("plot_figure.py")(NS(input=NS(runs=inputs), output=[str(png)],
                                    params=NS(figure=fig, kwargs=kw)))
        assert Image.open(png).size[0] > 600, fig


def test_out_of_memory_names_the_keys_to_lower(tmp_path, monkeypatch):
    import pytest
    import torch

    import bnopt.training.job

    data = prepare(tmp_path, "synthetic", {"data_root": None})

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bnopt.training.job, "train_run", oom)
    with pytest.raises(RuntimeError, match=r"lower batch_size \(now 64\) or width \(now 0.125\)"):
        train(tmp_path, data, "synthetic", "vgg", "standard", "0.05", TRAIN)
    assert not (tmp_path / "runs" / "vgg" / "standard" / "run.json").exists()
