"""Per-rule scripts, called directly with a stand-in for Snakemake's ``snakemake`` object."""
import runpy
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd
from PIL import Image

from bnopt.figures import FIGURES
from bnopt.models import NOISY_BN_DEFAULTS
from bnopt.train import TABLES

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
TRAIN = dict(steps=12, batch_size=64, momentum=0.0, weight_decay=0.0, width=0.125, init="glorot",
             augment=False, eval_every=6, eval_batch_size=500, log_every=4, device="cpu",
             noisy_bn=NOISY_BN_DEFAULTS, measure_every=3, probe_multipliers=[0.5, 1.0, 2.0],
             hist_every=6)


def script(name):
    return runpy.run_path(str(SCRIPTS / name))["main"]


def test_rule_scripts_chain_on_synthetic_data(tmp_path):
    data = tmp_path / "data" / "synthetic.pt"
    script("prepare_data.py")(NS(wildcards=NS(dataset="synthetic"), params=NS(data_root=None),
                                 output=[str(data)]))
    metas = []
    for variant in ("standard", "batchnorm", "noisy_batchnorm"):
        d = tmp_path / "runs" / variant
        out = NS(**{("evals" if n == "eval" else n): str(d / f"{n}.parquet") for n in TABLES},
                 meta=str(d / "run.json"))
        script("train.py")(NS(wildcards=NS(dataset="synthetic", model="vgg", variant=variant,
                                           lr="0.05", seed="0"),
                              params=NS(train=TRAIN), input=NS(data=str(data)), output=out,
                              threads=1))
        metas.append(out.meta)
    tables = NS(csv=str(tmp_path / "summary.csv"), steps=str(tmp_path / "steps.parquet"),
                evals=str(tmp_path / "eval.parquet"))
    script("summarize.py")(NS(input=metas, output=tables))
    summary = pd.read_csv(tables.csv)
    assert sorted(summary["variant"]) == ["batchnorm", "noisy_batchnorm", "standard"]
    assert (summary["steps_completed"] == 12).all()
    assert summary[["loss_range", "grad_pred", "beta_smoothness", "ics_l2"]].notna().all().all()
    steps = pd.read_parquet(tables.steps)
    assert len(steps) == 36 and list(steps.columns[:5]) == ["dataset", "model", "variant", "lr", "seed"]
    kwargs = {"fig1_accuracy": {"lrs": [0.05]}, "fig3_ics": {"lrs": [0.05], "layers": [5, 10]},
              "fig1_activations": {"lr": 0.05, "layers": [3, 11]},
              "fig2_noisy_bn": {"lr": 0.05, "layers": [2, 9, 13]},
              "fig8_activation_shift": {"lr": 0.05, "layers": [2, 9, 13]},
              "fig4_landscape": {"lr": 0.05}, "fig11_gradient_vs_step": {"lr": 0.05}}
    assert set(kwargs) == set(FIGURES)
    for fig, kw in kwargs.items():
        png = tmp_path / f"{fig}.png"
        script("plot_figure.py")(NS(input=metas, output=[str(png)],
                                    params=NS(figure=fig, kwargs=kw)))
        assert Image.open(png).size[0] > 600, fig
