"""Measurements against cases whose answers are known in closed form."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

from bnopt.plan.variants import VARIANTS
from bnopt.training.measure import (
    QUANTILES,
    activation_summary,
    channel_moments,
    curvature,
    gradient_ics,
    gradient_ics_layered,
    histogram,
    hvp,
    lanczos_top,
    layer_parameters,
    loss_and_grad,
    measure_curvature,
    moment_shift,
    probe_along_gradient,
    probing,
)
from bnopt.training.models import build_model
from bnopt.training.normalisers import set_noise_generator
from bnopt.training.precision import ieee_fp32


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("vectorize", [False, True])
def test_probes_on_a_quadratic_match_closed_forms(vectorize):
    """L(w) = 0.5 w^T H w: g = Hw; at w' = w - eta g the loss is 0.5 w'^T H w', the gradient
    change is ||H (w' - w)|| = eta ||H g||, and beta = ||H g|| / ||g|| for every eta."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    H = a @ a.T + np.diag(np.arange(1, 7.0))
    w = rng.normal(size=6)
    g = H @ w
    Ht = torch.tensor(H)
    loss_fn = lambda p: 0.5 * p["w"] @ Ht @ p["w"]  # noqa: E731
    etas = [0.01, 0.05, 0.1]
    out = probe_along_gradient(loss_fn, {"w": torch.tensor(w)}, {"w": torch.tensor(g)}, etas,
                               vectorize=vectorize)
    for k, eta in enumerate(etas):
        w2 = w - eta * g
        assert out["loss"][k].item() == pytest.approx(0.5 * w2 @ H @ w2, rel=1e-12)
        assert out["grad_change"][k].item() == pytest.approx(eta * np.linalg.norm(H @ g), rel=1e-10)
        assert out["beta"][k].item() == pytest.approx(np.linalg.norm(H @ g) / np.linalg.norm(g), rel=1e-10)
    # beta never exceeds the true smoothness constant, the largest eigenvalue of H
    assert out["beta"].max().item() <= np.linalg.eigvalsh(H).max() + 1e-9


def _linear_net_case(lr):
    """3-layer linear net f(X) = W3 W2 W1 X, L = ||f(X) - Y||^2 / (2N); one SGD step of size lr."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4, 20)), rng.normal(size=(3, 20))
    W = [rng.normal(size=(5, 4)) * 0.5, rng.normal(size=(5, 5)) * 0.5, rng.normal(size=(3, 5)) * 0.5]
    N = X.shape[1]

    def grads(W1, W2, W3):
        R = (W3 @ W2 @ W1 @ X - Y) / N
        return [(W3 @ W2).T @ R @ X.T, W3.T @ R @ (W1 @ X).T, R @ (W2 @ W1 @ X).T]

    G = grads(*W)
    Wn = [w - lr * g for w, g in zip(W, G)]
    # Definition 2.1 by hand: layer i's gradient after layers < i take their new values
    Gp = [G[0], grads(Wn[0], W[1], W[2])[1], grads(Wn[0], Wn[1], W[2])[2]]
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    loss_fn = lambda p: ((p["W3"] @ p["W2"] @ p["W1"] @ Xt - Yt) ** 2).sum() / (2 * N)  # noqa: E731
    names = ["W1", "W2", "W3"]
    t = lambda ws: {n: torch.tensor(w) for n, w in zip(names, ws)}  # noqa: E731
    _, G_autograd = loss_and_grad(loss_fn, t(W))  # G as the training step computes it
    l2, cos = gradient_ics(loss_fn, t(W), t(Wn), [[n] for n in names], names, G_autograd)
    return G, Gp, l2, cos


def test_ics_on_a_linear_network_matches_hand_computation():
    G, Gp, l2, cos = _linear_net_case(lr=0.3)
    for i in range(3):
        assert l2[i].item() == pytest.approx(np.linalg.norm(G[i] - Gp[i]), rel=1e-10, abs=1e-14)
        c = (G[i] * Gp[i]).sum() / (np.linalg.norm(G[i]) * np.linalg.norm(Gp[i]))
        assert cos[i].item() == pytest.approx(c, rel=1e-10)
    assert l2[0] == 0 and l2[1] > 0 and l2[2] > 0 and cos[2] < 1


def test_ics_cosine_is_undefined_for_a_zero_gradient():
    names = ["a", "b"]
    loss_fn = lambda p: (p["a"] * 0).sum() + (p["b"] ** 2).sum()  # noqa: E731
    t = {"a": torch.ones(3), "b": torch.ones(2)}
    _, g = loss_and_grad(loss_fn, t)
    l2, cos = gradient_ics(loss_fn, t, {n: v * 2 for n, v in t.items()}, [["a"], ["b"]], names, g)
    assert l2[0] == 0 and torch.isnan(cos[0])  # layer a's gradient is identically zero
    assert cos[1].item() == pytest.approx(1.0)


def test_ics_is_zero_when_nothing_moves():
    _, _, l2, cos = _linear_net_case(lr=0.0)
    assert torch.all(l2 == 0)
    torch.testing.assert_close(cos, torch.ones(3), rtol=0, atol=1e-12)


def test_probing_changes_no_state_and_uses_batch_statistics():
    torch.manual_seed(0)
    net = build_model("vgg", "noisy_batchnorm", 1, 8, 10, width=0.125).double()
    set_noise_generator(net, torch.Generator().manual_seed(0))
    x, y = torch.randn(32, 1, 8, 8) * 3 + 1, torch.randint(0, 10, (32,))
    out = net(x)  # the step's own forward: draws noise, updates running stats
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    params = {n: p.detach() for n, p in net.named_parameters()}
    grad = {n: p.grad for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    gen_state = net.layers[0].norm.generator.get_state()
    with probing(net):
        fn = lambda p: torch.nn.functional.cross_entropy(functional_call(net, p, (x,)), y)  # noqa: E731
        res = probe_along_gradient(fn, params, grad, [0.0 + 1e-3, 0.01])
        same = fn(params)
    # at the current point the probe reproduces the training loss: batch stats + the same noise
    assert same.item() == pytest.approx(loss.item(), rel=1e-12)
    assert res["loss"].shape == (2,)
    for k, v in net.state_dict().items():  # running stats and counters bitwise equal
        assert torch.equal(v, state[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(net.layers[0].norm.generator.get_state(), gen_state)
    assert all(m.track_running_stats for m in net.modules() if hasattr(m, "track_running_stats"))


def test_activation_statistics():
    z = torch.randn(64, 8, 5, 5, dtype=torch.float32) * 2 + 3
    s = activation_summary(z)
    assert s.shape == (2 + len(QUANTILES),)
    assert s[0].item() == pytest.approx(z.mean().item()) and s[1].item() == pytest.approx(z.std().item())
    assert s[2 + QUANTILES.index(0.5)].item() == pytest.approx(z.median().item(), abs=0.01)
    m = channel_moments(z)
    torch.testing.assert_close(m[0], z.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(m[1], z.var(dim=(0, 2, 3)))
    shifted = channel_moments(z * 2 + 1)
    torch.testing.assert_close(moment_shift(m, shifted)[0], (m[0] + 1).abs().mean())
    h = histogram(z, bins=16)
    assert h[:, 2].sum().item() == z.numel()
    assert h[0, 0].item() == pytest.approx(z.min().item()) and h[-1, 1].item() == pytest.approx(z.max().item())
    ref, _ = np.histogram(z.numpy().ravel(), bins=16, range=(z.min().item(), z.max().item()))
    assert np.abs(h[:, 2].numpy() - ref).max() <= 2  # edge ties only


# ---- curvature: Lanczos on Hessian-vector products ---------------------------------------

def _symmetric(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


def test_curvature_of_a_quadratic_is_the_top_eigenvalue_and_the_rayleigh_quotient():
    """L(w) = 0.5 w^T A w: H = A, so lambda_max = the top eigenvalue of A and the batch
    sharpness along g = A w is g^T A g / g^T g."""
    A = _symmetric(np.linspace(0.1, 7.0, 12))
    w = np.random.default_rng(1).normal(size=12)
    g = A @ w
    At = torch.tensor(A)
    out = curvature(lambda p: 0.5 * p["w"] @ At @ p["w"], {"w": torch.tensor(w)},
                    {"w": torch.tensor(g)}, iters=12, tol=1e-10)
    assert out["lambda_max"].item() == pytest.approx(7.0, rel=1e-9)
    assert out["batch_sharpness"].item() == pytest.approx(g @ A @ g / (g @ g), rel=1e-12)
    assert out["residual"] <= 1e-10 and out["iterations"] <= 12


def test_curvature_returns_the_largest_algebraic_eigenvalue_not_the_largest_magnitude():
    """A Hessian whose negative eigenvalue (-10) is larger in magnitude than the top one (4):
    power iteration would return -10; Lanczos returns 4."""
    A = _symmetric([-10.0, -3.0, -1.0, 0.1, 0.5, 1.0, 2.0, 4.0], seed=2)
    w = np.random.default_rng(3).normal(size=8)
    At = torch.tensor(A)
    out = curvature(lambda p: 0.5 * p["w"] @ At @ p["w"], {"w": torch.tensor(w)},
                    {"w": torch.tensor(A @ w)}, iters=8, tol=1e-10)
    assert out["lambda_max"].item() == pytest.approx(4.0, rel=1e-9)


def test_curvature_of_a_linear_layer_with_squared_loss_is_twice_the_input_covariance():
    """L(W) = (1/n) sum_i ||W x_i - y_i||^2: the Hessian is 2 X^T X / n for each output row of
    W (block diagonal), so lambda_max = 2 lambda_max(X^T X / n)."""
    rng = np.random.default_rng(4)
    n, d, m = 50, 6, 3
    X = rng.normal(size=(n, d)) * np.linspace(0.5, 2.0, d)
    Y = rng.normal(size=(n, m))
    layer = torch.nn.Linear(d, m, bias=False)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    loss_fn = lambda p: ((functional_call(layer, p, (Xt,)) - Yt) ** 2).sum(1).mean()  # noqa: E731
    params = {n_: p.detach() for n_, p in layer.named_parameters()}
    _, g = loss_and_grad(loss_fn, params)
    out = curvature(loss_fn, params, g, iters=20, tol=1e-10)
    assert out["lambda_max"].item() == pytest.approx(2 * np.linalg.eigvalsh(X.T @ X / n).max(),
                                                     rel=1e-9)
    G = g["weight"].numpy().ravel()  # the block-diagonal Hessian applied to G, row by row
    HG = (2 * g["weight"].numpy() @ (X.T @ X / n)).ravel()
    assert out["batch_sharpness"].item() == pytest.approx(G @ HG / (G @ G), rel=1e-10)


def test_hvp_matches_the_hessian_of_a_small_function():
    """L(a, b) = a^2 b + sin(b): H = [[2b, 2a], [2a, -sin b]]."""
    a, b = torch.tensor(0.7), torch.tensor(-1.3)
    g, hv = hvp(lambda p: p["a"] ** 2 * p["b"] + torch.sin(p["b"]), {"a": a, "b": b},
                {"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert g["a"].item() == pytest.approx(2 * 0.7 * -1.3)
    assert hv["a"].item() == pytest.approx(2 * -1.3 * 1 + 2 * 0.7 * 2)
    assert hv["b"].item() == pytest.approx(2 * 0.7 * 1 - np.sin(-1.3) * 2)


def test_lanczos_residual_is_the_true_residual_of_its_ritz_pair_and_stops_at_tol():
    """With a loose tolerance Lanczos stops early; the recorded residual then bounds the
    distance of its estimate to an eigenvalue of A (|theta - lambda| <= ||A u - theta u||)."""
    A = _symmetric(np.concatenate([np.linspace(0, 1, 40), [1.05, 1.1]]), seed=5)
    At = torch.tensor(A)
    start = torch.tensor(np.random.default_rng(6).normal(size=42))
    out = lanczos_top(lambda v: At @ v, start, iters=40, tol=1e-2)
    assert out["iterations"] < 40 and out["residual"] <= 1e-2
    theta = out["lambda_max"].item()
    assert np.abs(np.linalg.eigvalsh(A) - theta).min() <= out["residual"] * abs(theta) + 1e-12
    assert theta <= 1.1 + 1e-12  # a Ritz value never exceeds the top eigenvalue


@pytest.mark.parametrize("variant,model", [("noisy_batchnorm", "vgg"), ("batchnorm", "dln"),
                                           ("l1", "dln")])
def test_curvature_changes_no_state_and_bounds_the_batch_sharpness(variant, model):
    """Curvature of the training loss with the step's own batch statistics and noise: no
    parameter, running statistic or RNG stream changes; lambda_max >= batch sharpness."""
    torch.manual_seed(0)
    if model == "vgg":
        net = build_model("vgg", variant, 1, 8, 10, width=0.125).double()
        x, y = torch.randn(32, 1, 8, 8) * 3 + 1, torch.randint(0, 10, (32,))
        crit = torch.nn.functional.cross_entropy
    else:
        net = build_model("dln", variant, 10, 1, 10).double()
        x, y = torch.randn(64, 10), torch.randn(64, 10)
        crit = lambda o, t: ((o - t) ** 2).sum(1).mean()  # noqa: E731
    set_noise_generator(net, torch.Generator().manual_seed(0))
    crit(net(x), y).backward()
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.clone() for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    gens = [m.generator.get_state() for m in net.modules() if getattr(m, "generator", None)]
    out = measure_curvature(net, crit, x, y, params, grad, iters=10, tol=1e-6)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    for n, p in net.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, grad[n]), n
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(m.generator.get_state(), s) for m, s in
               zip([m for m in net.modules() if getattr(m, "generator", None)], gens))
    assert out["lambda_max"].item() >= out["batch_sharpness"].item()
    # the batch sharpness is g^T H g / g^T g of the *training* loss (batch statistics, the
    # step's noise): check it with reverse-over-reverse autograd (finite differences are
    # unreliable here: ReLU and |z| kinks lie within 1e-5 of these parameters)
    with probing(net):
        p = {n: t.clone().requires_grad_() for n, t in params.items()}
        g1 = torch.autograd.grad(crit(functional_call(net, p, (x,)), y), list(p.values()),
                                 create_graph=True)
        Hg = torch.autograd.grad(sum((a * grad[n]).sum() for a, n in zip(g1, p)), list(p.values()))
    uHu = sum((h * grad[n]).sum() for h, n in zip(Hg, p)) / sum((grad[n] ** 2).sum() for n in p)
    assert out["batch_sharpness"].item() == pytest.approx(uHu.item(), rel=1e-9)


def test_curvature_of_a_diverged_point_is_nan_not_an_error():
    out = curvature(lambda p: 0.5 * (p["w"] ** 2).sum() * float("inf"),
                    {"w": torch.ones(3)}, {"w": torch.ones(3)}, iters=5, tol=1e-6)
    assert torch.isnan(out["lambda_max"]) and out["iterations"] == 1


@pytest.mark.parametrize("model,variant", [("vgg", v) for v in VARIANTS]
                         + [("simple_cnn", "batchnorm"), ("dln", "batchnorm"), ("dln", "standard")])
def test_layered_ics_shares_the_prefix_passes_and_computes_the_same_bits(model, variant):
    """gradient_ics_layered (what measured steps use: one pass at the updated parameters gives
    every layer's input) against gradient_ics (a whole pass per layer, itself checked on the
    closed forms above): the same values, bit for bit, on the CPU; noisy BN reuses
    the step's noise in both; the model is left as it was."""
    torch.manual_seed(0)
    if model == "dln":
        net = build_model("dln", variant, 10, 1, 10)
        x, y = torch.randn(64, 10), torch.randn(64, 10)
        crit = lambda o, t: ((o - t) ** 2).sum(1).mean()  # noqa: E731
    else:
        net = build_model(model, variant, 3, 16, 10, width=0.125)
        x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
        crit = torch.nn.functional.cross_entropy
    set_noise_generator(net, torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    crit(net(x), y).backward()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt.step()
    after = {n: p.detach() for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    groups, weights = layer_parameters(net)

    def loss_fn(p):
        return crit(functional_call(net, p, (x,)), y)

    with probing(net), ieee_fp32():
        l2, cos = gradient_ics(loss_fn, before, after, groups, weights, grad)
        l2_fast, cos_fast = gradient_ics_layered(net, crit, x, y, before, after, grad)
    assert torch.equal(l2_fast, l2) and torch.equal(cos_fast.nan_to_num(7.0), cos.nan_to_num(7.0))
    assert (l2[1:] > 0).all()  # every layer's G' moved: the comparison is not of zeros
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
