"""LayerNorm, GroupNorm and weight normalisation as variants, and the registry they come from:
forward passes against direct computations, measurements without side effects, one source for
the variant list."""
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from bnopt.figures.paper import FIGURES
from bnopt.figures.style import LABELS, PALETTE
from bnopt.plan.runs import RunConfig
from bnopt.plan.schema import load_schema
from bnopt.plan.variants import DLN_VARIANTS, VARIANTS, variants_in
from bnopt.training.loop import train_run
from bnopt.training.measure import layer_parameters, measure_curvature, measure_step
from bnopt.training.models import build_model
from bnopt.training.normalisers import NORMALISERS, WeightNorm, group_count

ROOT = Path(__file__).resolve().parents[1]
NEW = ["layernorm", "groupnorm", "weightnorm"]


def test_every_registered_variant_is_allowed_built_drawn_and_compared():
    """The schema (a separate text) allows exactly the registry's variants; each one builds a
    network that runs (the VGG, and the DLN where the registry allows it); each has its own
    colour and belongs to a figure family, so some figure shows it."""
    schema = load_schema()
    props = schema["properties"]
    assert props["variants"]["items"]["enum"] == list(VARIANTS)
    assert props["dln"]["properties"]["variants"]["items"]["enum"] == list(DLN_VARIANTS)
    assert len(set(PALETTE.values())) == len(VARIANTS)  # every variant its own colour
    assert all(LABELS[v].startswith("Standard") for v in VARIANTS)
    families = ("bn", "noisy", "lp", "normalisers")
    assert all(any(v in variants_in(f) for f in families) for v in VARIANTS)
    assert variants_in("normalisers") == ["standard", "batchnorm", *NEW]
    assert {"fig14_normalisers_vgg", "fig15_normalisers_dln"} <= set(FIGURES)
    x = torch.randn(4, 1, 8, 8)
    for v in VARIANTS:
        assert build_model("vgg", v, 1, 8, 10, width=0.125)(x).shape == (4, 10), v
    for v in DLN_VARIANTS:
        assert build_model("dln", v, 10, 1, 10)(torch.randn(4, 10)).shape == (4, 10), v


def _direct_norm(z, groups, eps=1e-5):
    """(z - mean) / sqrt(var + eps) per sample over each group of channels (and positions)."""
    n, c = z.shape[:2]
    g = z.reshape(n, groups, -1)
    mean, var = g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True)
    return ((g - mean) / torch.sqrt(var + eps)).reshape(z.shape)


@pytest.mark.parametrize("variant", ["layernorm", "groupnorm"])
@pytest.mark.parametrize("shape", [(8, 64, 4, 4), (8, 16, 1, 1), (32, 10)])
def test_layer_and_group_norm_match_direct_computation(variant, shape):
    torch.manual_seed(0)
    conv = len(shape) == 4
    positions = shape[2] * shape[3] if conv else 1
    mod = NORMALISERS[variant].norm(shape[1], conv, positions, None).double()
    with torch.no_grad():
        mod.weight.copy_(torch.linspace(0.5, 2, shape[1]))
        mod.bias.copy_(torch.linspace(-1, 1, shape[1]))
    z = torch.randn(shape, dtype=torch.float64) * 3 + 1.5
    groups = 1 if variant == "layernorm" else group_count(shape[1], positions)
    view = (1, -1) + (1,) * (len(shape) - 2)
    expect = _direct_norm(z, groups) * mod.weight.view(view) + mod.bias.view(view)
    torch.testing.assert_close(mod(z), expect)
    mod.eval()  # no running statistics: eval mode is the same function of the sample
    torch.testing.assert_close(mod(z), expect)
    # per sample: one sample's output does not depend on the rest of the batch
    torch.testing.assert_close(mod(z[:1]), expect[:1])


def test_group_count_follows_wu_and_he_where_it_can():
    assert group_count(64, 32 * 32) == 32 and group_count(512, 2 * 2) == 32  # the VGG at width 1
    assert group_count(8, 16 * 16) == 8       # width 1/8: fewer channels than 32 groups
    assert group_count(64, 1) == 16           # a 1x1 map: 4 channels (values) per group
    assert group_count(10, 1) == 2            # the DLN's 10 units: groups of 5
    assert group_count(3, 1) == 1 and group_count(1, 1) == 1   # LayerNorm, at the limit


def test_weight_norm_is_g_v_over_norm_v_and_starts_at_the_standard_weights():
    torch.manual_seed(3)
    std = build_model("vgg", "standard", 3, 32, 10, width=0.25)
    torch.manual_seed(3)
    wn = build_model("vgg", "weightnorm", 3, 32, 10, width=0.25)
    for a, b in zip(std.layers, wn.layers):  # same weights at init
        torch.testing.assert_close(a.weight_layer.weight, b.weight_layer.weight)
    assert wn.layers[-1].weight_layer.weight is wn.layers[-1].weight_layer._parameters["weight"]
    layer = wn.layers[1].weight_layer
    g = layer.parametrizations.weight.original0
    v = layer.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(torch.linspace(0.5, 2, g.shape[0]).view(-1, 1, 1, 1))
        v.mul_(3.0)
    w = layer.weight
    for j in range(w.shape[0]):  # each output unit's filter has norm g_j, direction v_j
        assert torch.linalg.vector_norm(w[j]).item() == pytest.approx(g[j].item(), rel=1e-5)
        torch.testing.assert_close(w[j] / g[j], v[j] / torch.linalg.vector_norm(v[j]))
    # W_i of the per-layer measurements is v: the tensor of W's shape the optimiser updates
    assert layer_parameters(wn)[1][1] == "layers.1.weight_layer.parametrizations.weight.original1"
    assert all(i.normalized for i in wn.layer_info()[:13]) and not wn.layer_info()[13].normalized
    assert isinstance(layer.parametrizations.weight[0], WeightNorm)


@pytest.mark.parametrize("model", ["vgg", "simple_cnn", "dln"])
@pytest.mark.parametrize("variant", NEW)
def test_every_measurement_runs_without_side_effects(model, variant):
    """Probes, ICS and curvature of the new variants in every model: nothing in the model
    changes, and the probe at the current point reproduces the step's loss."""
    torch.manual_seed(0)
    if model == "dln":
        net = build_model("dln", variant, 10, 1, 10).double()
        x, y = torch.randn(64, 10, dtype=torch.float64), torch.randn(64, 10, dtype=torch.float64)
        crit = lambda o, t: ((o - t) ** 2).sum(1).mean()  # noqa: E731
    else:
        net = build_model(model, variant, 1, 16, 10, width=0.125).double()
        x, y = torch.randn(32, 1, 16, 16, dtype=torch.float64), torch.randint(0, 10, (32,))
        crit = torch.nn.functional.cross_entropy
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = crit(net(x), y)
    loss.backward()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt.step()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    probes, l2, cos = measure_step(net, crit, x, y, before, grad, [0.0, 0.01])
    curv = measure_curvature(net, crit, x, y, before, grad, iters=5, tol=1e-6)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert probes["loss"][0].item() == pytest.approx(loss.item(), rel=1e-6)
    assert l2.shape == (len(net.layers),) and l2[0] == 0 and (l2[1:] > 0).all()
    assert curv["lambda_max"].item() >= curv["batch_sharpness"].item()
    # vmapped probes give the same values
    vm, _, _ = measure_step(net, crit, x, y, before, grad, [0.0, 0.01], vectorize=True)
    torch.testing.assert_close(vm["beta"][1], probes["beta"][1], rtol=1e-7, atol=0)


@pytest.mark.parametrize("variant", NEW)
def test_a_run_of_each_new_variant_learns_and_is_reproducible(synthetic, variant):
    cfg = RunConfig(dataset="synthetic", model="vgg", variant=variant, lr=0.05, seed=0, steps=40,
                    batch_size=64, width=0.125, eval_every=20, log_every=10, device="cpu",
                    measure_every=20, hist_every=20)
    a = train_run(cfg, synthetic, progress=False)
    b = train_run(cfg, synthetic, progress=False)
    cols = ["loss", "accuracy", "grad_norm", "param_norm"]
    assert a.steps[cols].equals(b.steps[cols])
    assert a.steps.loss.iloc[-5:].mean() < a.steps.loss.iloc[:5].mean()
    assert len(a.tables["ics"]) == 2 * 14 and a.tables["init_distance"].distance.notna().all()


def test_functional_call_sees_weight_norm_parameters():
    """The probes substitute g and v by name; the effective weight follows them."""
    net = build_model("dln", "weightnorm", 10, 1, 10).double()
    x = torch.randn(5, 10, dtype=torch.float64)
    params = {n: p.detach() * 1.0 for n, p in net.named_parameters()}
    name = "layers.0.weight_layer.parametrizations.weight.original0"
    params[name] = params[name] * 2  # doubles W_1 and so the (linear) network's output
    torch.testing.assert_close(functional_call(net, params, (x,)), 2 * net(x).detach())
