"""Deep linear network and l_p normalisation against direct computations."""
import math

import numpy as np
import pytest
import torch

from bnopt.plan.runs import RunConfig
from bnopt.plan.variants import DLN_DEPTH
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run
from bnopt.training.measure import probing
from bnopt.training.models import build_model
from bnopt.training.normalisers import LpNorm


def direct_lp(z, p, eps=1e-5):
    """y = (z - mean) / (average l_p norm before the shift + eps), per unit over the batch."""
    dims = [d for d in range(z.dim()) if d != 1]
    shape = (1, -1) + (1,) * (z.dim() - 2)
    n = z.numel() // z.shape[1]
    zc = z.transpose(0, 1).reshape(z.shape[1], -1)  # (C, everything else)
    if p == 1:
        norm = zc.abs().sum(1) / n
    elif p == 2:
        norm = (zc ** 2).sum(1).div(n).sqrt()
    else:
        norm = zc.abs().max(1).values
    return (z - z.mean(dim=dims).view(shape)) / (norm.view(shape) + eps)


@pytest.mark.parametrize("p", [1, 2, math.inf])
@pytest.mark.parametrize("shape", [(64, 6), (16, 5, 4, 3)])
def test_lp_norm_matches_direct_computation(p, shape):
    torch.manual_seed(0)
    z = torch.randn(shape, dtype=torch.float64) * 3 + 1.5
    mod = LpNorm(shape[1], p, conv=len(shape) == 4).double()
    with torch.no_grad():
        mod.weight.copy_(torch.linspace(0.5, 2, shape[1]))
        mod.bias.copy_(torch.linspace(-1, 1, shape[1]))
    out = mod(z)
    view = (1, -1) + (1,) * (len(shape) - 2)
    expect = direct_lp(z, p) * mod.weight.view(view) + mod.bias.view(view)
    torch.testing.assert_close(out, expect)
    # running statistics move 10% of the way to the batch's, and eval mode uses them
    dims = [d for d in range(z.dim()) if d != 1]
    torch.testing.assert_close(mod.running_mean, 0.1 * z.mean(dim=dims))
    mod.eval()
    rm, rn = mod.running_mean.view(view), mod.running_norm.view(view)
    torch.testing.assert_close(mod(z), (z - rm) / (rn + 1e-5) * mod.weight.view(view) + mod.bias.view(view))


def test_lp_running_stats_frozen_while_probing():
    net = build_model("vgg", "linf", 1, 8, 10, width=0.125)
    net(torch.randn(16, 1, 8, 8))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with probing(net):
        net(torch.randn(16, 1, 8, 8) * 5)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_standard_dln_is_the_product_of_its_matrices():
    net = build_model("dln", "standard", 10, 1, 10).double()
    assert len(net.layers) == DLN_DEPTH == 25
    assert all(layer.weight_layer.bias is None and layer.act is None for layer in net.layers)
    prod = torch.eye(10, dtype=torch.float64)
    for w in net.weight_parameters():
        prod = w @ prod
    x = torch.randn(7, 10, dtype=torch.float64)
    torch.testing.assert_close(net(x), x @ prod.T)
    bn = build_model("dln", "batchnorm", 10, 1, 10)
    assert sum(layer.norm.__class__.__name__ == "BatchNorm1d" for layer in bn.layers) == 24


def test_dln_task_is_drawn_from_its_seed_and_recorded():
    a, b, c = load_dataset("dln", data_seed=3), load_dataset("dln", data_seed=3), load_dataset("dln")
    assert a.x_train.shape == (1000, 10) and a.y_train.shape == (1000, 10) and a.regression
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    torch.testing.assert_close(a.y_train, a.x_train @ a.meta["A"].T)
    torch.testing.assert_close(a.y_test, a.x_test @ a.meta["A"].T)
    assert a.meta["data_seed"] == 3 and a.num_outputs == 10


def test_dln_full_batch_gradient_descent():
    ds = load_dataset("dln")
    cfg = RunConfig("dln", "dln", "standard", 1e-5, 0, steps=30, batch_size=1000,
                    eval_every=10, eval_batch_size=1000, log_every=10, device="cpu",
                    measure_every=10, hist_every=10, probe_multipliers=(0.01, 1.0, 30.0),
                    init="glorot")
    r = train_run(cfg, ds, progress=False)
    steps, evals = r.steps, r.evals
    assert steps.accuracy.isna().all() and evals.train_acc.isna().all()
    # full batch: the step's loss is the training-set loss (eval mode = train mode without BN)
    merged = steps.merge(evals, on="step")
    np.testing.assert_allclose(merged.loss, merged.train_loss, rtol=1e-5)
    assert steps.loss.iloc[-1] < steps.loss.iloc[0]  # gradient descent descends
    torch.manual_seed(0)
    net = build_model("dln", "standard", 10, 1, 10)
    expect = ((net(ds.x_train) - ds.y_train) ** 2).sum(1).mean().item()
    assert steps.loss.iloc[0] == pytest.approx(expect, rel=1e-6)  # loss = mean ||f(x) - y||^2
    assert len(r.tables["ics"]) == 3 * 25 and len(r.tables["probes"]) == 3 * 3


def test_a_default_dln_from_the_library_trains():
    """The library's defaults for the DLN (Glorot, float64, full batch): the loss starts near
    its Glorot scale (102.6) and falls, where He init, the conv nets' default, starts at
    2.7e7 and diverges (seed 3, lr 1e-5)."""
    r = train_run(RunConfig(dataset="dln", model="dln", variant="standard", lr=1e-5, seed=3,
                            steps=31), load_dataset("dln"), progress=False)
    loss = r.steps.loss.to_numpy()
    assert len(loss) == 31 and np.isfinite(loss).all()
    assert loss[0] < 1e3 and loss[-1] < loss[0]
    assert not r.meta["diverged"]
