"""The settings the four earlier experiments need (issue 33): the networks VGG-A (vgg11), the
10-conv VGG (vgg10) and an MLP of configured widths; sigmoid units; Glorot-normal weights; Adam;
MNIST. Each is checked against what it must be by construction or in closed form."""
import math

import numpy as np
import pytest
import torch
import yaml

from bnopt.plan.check import ConfigError, check_config
from bnopt.plan.runs import RunConfig, plan, tracked_settings
from bnopt.plan.variants import VARIANTS, num_layers
from bnopt.training.loop import make_optimizer, train_run
from bnopt.training.models import ACTIVATION_FNS, build_model
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def kinds(net):
    return [(i.kind, i.out_features, i.normalized) for i in net.layer_info()]


def test_vgg_a_is_eight_convs_and_three_linear_layers_normalised_but_the_last():
    net = build_model("vgg11", "batchnorm", 3, 32, 10)
    assert kinds(net) == ([("conv", c, True) for c in (64, 128, 256, 256, 512, 512, 512, 512)]
                          + [("linear", 512, True), ("linear", 512, True), ("linear", 10, False)])
    assert len(net.layers) == num_layers("vgg11") == 11
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("variant", ["batchnorm", "weightnorm", "l2"])
def test_the_10_conv_vgg_normalises_its_convs_only(variant):
    """The blog series' network: BN after each conv, none on the linear layers 512 -> 96 -> 96
    -> 10 (every variant alike, weight normalisation included)."""
    net = build_model("vgg10", variant, 3, 32, 10)
    assert kinds(net) == ([("conv", c, True) for c in (64, 64, 128, 128, 256, 256, 512, 512,
                                                        512, 512)]
                          + [("linear", 96, False), ("linear", 96, False), ("linear", 10, False)])
    assert num_layers("vgg10") == 13


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_an_mlp_of_the_configured_widths(variant):
    """Per-feature forms of every normaliser on fully connected layers; the input flattened."""
    net = build_model("mlp", variant, 1, 28, 10, mlp_widths=(100, 50), activation="sigmoid")
    assert [(k, n) for k, n, _ in kinds(net)] == [("linear", 100), ("linear", 50), ("linear", 10)]
    assert net.layers[0].weight_layer.in_features == 28 * 28
    out = net(torch.randn(8, 1, 28, 28))
    assert out.shape == (8, 10) and torch.isfinite(out).all()


def test_sigmoid_units_apply_the_sigmoid_to_the_pre_activation():
    net = build_model("mlp", "standard", 1, 4, 3, mlp_widths=(5,), activation="sigmoid")
    x = torch.randn(6, 1, 4, 4)
    pre = []
    out = net(x, preacts=pre)
    first, last = net.layers[0].weight_layer, net.layers[1].weight_layer
    torch.testing.assert_close(pre[0], first(x.flatten(1)))
    torch.testing.assert_close(out, last(torch.sigmoid(pre[0])))
    assert set(ACTIVATION_FNS) == {"relu", "sigmoid"}


def test_glorot_normal_weights_have_glorots_variance():
    """Var W = 2 / (fan_in + fan_out), normal: on a 400 x 300 layer the sample variance is
    within 2% of it, and the kurtosis is a normal's 3 (a uniform's is 1.8)."""
    torch.manual_seed(0)
    net = build_model("mlp", "standard", 1, 20, 300, mlp_widths=(400,), init="glorot_normal")
    w = net.layers[1].weight_layer.weight.detach().double()  # 300 x 400
    assert w.var().item() == pytest.approx(2 / (400 + 300), rel=0.02)
    z = (w - w.mean()) / w.std()
    assert (z ** 4).mean().item() == pytest.approx(3.0, abs=0.1)


def test_adams_first_two_steps_on_a_quadratic_are_its_closed_form():
    """On L(x) = 1/2 x^T A x: m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2, and
    x_t = x - lr (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps), with the config's betas
    and eps (not PyTorch's defaults, which would hide a setting not passed through)."""
    a = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    cfg = RunConfig(dataset="synthetic", model="vgg", variant="standard", lr=0.1, seed=0,
                    optimizer="adam", adam_betas=(0.8, 0.9), adam_eps=1e-3)
    opt = make_optimizer(cfg, [x], torch.device("cpu"))
    want, m, v = x.detach().clone(), torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for t in (1, 2):
        g = a @ want
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        want = want - 0.1 * (m / (1 - 0.8 ** t)) / ((v / (1 - 0.9 ** t)).sqrt() + 1e-3)
        opt.zero_grad()
        (0.5 * x @ a @ x).backward()
        opt.step()
        torch.testing.assert_close(x.detach(), want, rtol=1e-12, atol=1e-12)


def test_momentum_with_adam_is_refused_before_any_job():
    with pytest.raises(ConfigError, match=r"momentum = 0.9 with optimizer adam: Adam's beta1"):
        check_config({**BASE, "optimizer": "adam", "momentum": 0.9})


def test_the_mlps_depth_comes_from_its_widths():
    """Its figure layers spread over its own depth, and a layer it does not have is refused."""
    cfg = check_config({**BASE, "model": "mlp", "mlp_widths": [50, 50, 50, 50], "dataset": "mnist"})
    assert cfg["fig3_layers"] == [2, 4] and cfg["fig2_layers"] == [2, 3, 4]
    with pytest.raises(ConfigError, match=r"fig3_layers = \[6\]: model mlp has layers 1..5"):
        check_config({**BASE, "model": "mlp", "mlp_widths": [50] * 4, "fig3_layers": [6]})


def test_settings_a_run_does_not_use_do_not_retrain_it():
    """Adam's constants do not touch an SGD run, nor the MLP's widths a VGG's, nor the
    top-level optimizer and activation the deep linear network (plain GD, no nonlinearity)."""
    base = {r.folder: tracked_settings(r) for r in plan(check_config(BASE))}
    changed = check_config({**BASE, "adam_betas": [0.5, 0.5], "adam_eps": 0.1,
                            "mlp_widths": [7]})
    assert {r.folder: tracked_settings(r) for r in plan(changed)} == base
    adam = check_config({**BASE, "optimizer": "adam", "activation": "sigmoid"})
    for r in plan(adam):
        if r.model == "dln":
            assert tracked_settings(r) == base[r.folder]
        else:
            assert tracked_settings(r)["optimizer"] == "adam"
            assert tracked_settings(r)["activation"] == "sigmoid"


def test_an_adam_run_resumes_bitwise(tmp_path, synthetic, capsys):
    """Adam's moments and step count are in the checkpoint: a run resumed from step 10 ends
    where the uninterrupted one does (its single units and update probes too)."""
    cfg = RunConfig(dataset="synthetic", model="vgg11", variant="batchnorm", lr=1e-3, seed=0,
                    steps=20, batch_size=32, width=0.125, eval_every=10, log_every=5,
                    measure_every=5, hist_every=0, device="cpu", optimizer="adam",
                    checkpoint_every=10, units_per_layer=2, probe_update=True)
    ck = tmp_path / "checkpoint.pt"
    whole = train_run(cfg, synthetic, progress=False)
    part = train_run(cfg, synthetic, progress=False, checkpoint_path=ck)  # writes it at step 10
    assert ck.exists() and torch.load(ck, weights_only=False)["next_step"] == 10
    capsys.readouterr()
    resumed = train_run(cfg, synthetic, progress=False, checkpoint_path=ck)  # from step 10
    assert "resumed from" in capsys.readouterr().err
    for t in (part, resumed):
        for name in whole.tables:
            a, b = (x.tables[name].drop(columns=["elapsed_s"], errors="ignore").to_numpy()
                    for x in (t, whole))
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert math.isfinite(whole.meta["final_batch_loss"])
