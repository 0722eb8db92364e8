"""Per-rule scripts, called directly with a stand-in for Snakemake's ``snakemake`` object."""
import runpy
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd
from PIL import Image

from bnopt.models import NOISY_BN_DEFAULTS

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
TRAIN = dict(steps=12, batch_size=64, momentum=0.0, weight_decay=0.0, width=0.125, init="glorot",
             augment=False, eval_every=6, eval_batch_size=500, log_every=4, device="cpu",
             noisy_bn=NOISY_BN_DEFAULTS)


def script(name):
    return runpy.run_path(str(SCRIPTS / name))["main"]


def test_rule_scripts_chain_on_synthetic_data(tmp_path):
    data = tmp_path / "data" / "synthetic.pt"
    script("prepare_data.py")(NS(wildcards=NS(dataset="synthetic"), params=NS(data_root=None),
                                 output=[str(data)]))
    metas = []
    for variant in ("standard", "batchnorm", "noisy_batchnorm"):
        d = tmp_path / "runs" / variant
        out = NS(steps=str(d / "steps.parquet"), evals=str(d / "eval.parquet"),
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
    steps = pd.read_parquet(tables.steps)
    assert len(steps) == 36 and list(steps.columns[:5]) == ["dataset", "model", "variant", "lr", "seed"]
    for rule, kwargs in (("fig1_accuracy", {"lrs": [0.05]}), ("fig2_noisy_bn", {"lr": 0.05})):
        png = tmp_path / f"{rule}.png"
        script("plot_figure.py")(NS(rule=rule, input=metas, output=[str(png)],
                                    params=NS(kwargs=kwargs)))
        assert Image.open(png).size[0] > 600
