"""The sweep cost projection: run counts and arithmetic against hand counts, and a real
measurement of per-step costs on the CPU."""
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bnopt.config import check_config
from bnopt.cost import measure_costs, projected_seconds, step_counts, sweep_plan

ROOT = Path(__file__).resolve().parents[1]
BASE = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
QUICK = check_config({**yaml.safe_load((ROOT / "config.yaml").read_text()),
                      **yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())})


def test_step_counts_by_hand():
    # the paper's run: steps 0, 100, ..., 14900 measured; evals at 0, 500, ..., 14500 and 15000
    assert step_counts(15000, 100, 500) == {"steps": 15000, "measured_steps": 150,
                                            "curvature_steps": 0, "evals": 31}
    # steps 0..9: measured 0, 3, 6, 9; curvature 0, 5; evals at 0, 4, 8 and the end (10)
    assert step_counts(10, 3, 4, 5) == {"steps": 10, "measured_steps": 4, "curvature_steps": 2,
                                        "evals": 4}
    assert step_counts(10, 0, 10)["measured_steps"] == 0


def test_default_sweep_plan_by_hand():
    plan = sweep_plan(BASE)
    runs = plan["runs"].to_dict()
    for v in ("standard", "batchnorm", "noisy_batchnorm"):
        assert runs[("cifar10", "vgg", v)] == 3 * 3  # 3 lrs x 3 seeds
    for v in ("l1", "l2", "linf"):
        assert runs[("cifar10", "vgg", v)] == 3  # figure_lr only, 3 seeds (Figures 5, 6, 12)
    for v in ("standard", "batchnorm", "l1", "l2", "linf"):
        assert runs[("dln", "dln", v)] == 2 * 3
    vgg = plan.loc[("cifar10", "vgg", "batchnorm")]
    assert (vgg["steps"], vgg["measured_steps"], vgg["evals"], vgg["eval_images"]) == (15000, 150, 31, 60000)
    dln = plan.loc[("dln", "dln", "l1")]
    assert (dln["steps"], dln["measured_steps"], dln["evals"]) == (10000, 100, 21)


def test_projection_arithmetic():
    plan = pd.DataFrame({"runs": [3, 2], "steps": [100, 10], "measured_steps": [10, 0],
                         "evals": [5, 2], "eval_images": [1, 1]},
                        index=pd.MultiIndex.from_tuples([("d", "m", "a"), ("d", "m", "b")],
                                                        names=["dataset", "model", "variant"]))
    costs = {("d", "m", "a"): {"train_s": 1.0, "measured_s": 20.0, "eval_s": 4.0},
             ("d", "m", "b"): {"train_s": 0.5, "measured_s": 99.0, "eval_s": 1.0}}
    sec = projected_seconds(plan, costs)
    assert sec[("d", "m", "a")] == 3 * (90 * 1.0 + 10 * 20.0 + 5 * 4.0)
    assert sec[("d", "m", "b")] == 2 * (10 * 0.5 + 2 * 1.0)
    # curvature steps add their extra over a plain step; one may also be a measured step
    plan["curvature_steps"] = [4, 0]
    costs[("d", "m", "a")]["curvature_s"] = 31.0
    sec = projected_seconds(plan, costs)
    assert sec[("d", "m", "a")] == 3 * (90 * 1.0 + 10 * 20.0 + 4 * 30.0 + 5 * 4.0)


@pytest.mark.parametrize("key", [("digits", "vgg", "batchnorm"), ("dln", "dln", "l1")])
def test_measured_costs_on_the_cpu(key):
    c = measure_costs(QUICK, *key, device="cpu", steps=2)
    assert all(math.isfinite(v) and v > 0 for v in c.values()), c
    # a measured step does 1 + 8 probe passes + L - 1 ICS passes
    assert c["measured_s"] > 3 * c["train_s"], c
    # the quick preset measures curvature: up to hessian_iters Hessian-vector products
    assert c["curvature_s"] > 2 * c["train_s"], c
