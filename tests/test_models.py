import pytest
import torch

from bnopt.plan.variants import MODELS, num_layers
from bnopt.training.models import VGG_CONVS, build_model
from bnopt.training.normalisers import NoisyBatchNorm, reuse_noise, set_noise_generator


def vgg_param_count(width=1.0, in_ch=3, classes=10, bn=False):
    """Closed form: 13 3x3 convs (weights + bias, + BN scale/shift) and a linear head."""
    chans = [max(1, round(c * width)) for c in VGG_CONVS if c != "M"]
    total, c_in = 0, in_ch
    for c in chans:
        total += 9 * c_in * c + c + (2 * c if bn else 0)
        c_in = c
    return total + c_in * classes + classes


@pytest.mark.parametrize("variant,bn", [("standard", False), ("batchnorm", True),
                                        ("noisy_batchnorm", True)])
def test_vgg_parameter_count_and_output(variant, bn):
    net = build_model("vgg", variant, 3, 32, 10)
    assert sum(p.numel() for p in net.parameters()) == vgg_param_count(bn=bn)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("size,ch", [(32, 3), (28, 1), (8, 1)])
def test_vgg_numbering_has_every_paper_layer(size, ch):
    net = build_model("vgg", "batchnorm", ch, size, 10, width=0.25)
    info = net.layer_info()
    assert [i.index for i in info] == list(range(1, 15))
    assert [i.kind for i in info] == ["conv"] * 13 + ["linear"]
    assert all(i.normalized for i in info[:13]) and not info[13].normalized
    pre = []
    out = net(torch.randn(4, ch, size, size), preacts=pre)
    assert len(pre) == 14 and pre[-1] is out
    assert [p.shape[1] for p in pre] == [i.out_features for i in info]


@pytest.mark.parametrize("model", MODELS)
def test_the_registered_depth_of_each_model_is_the_one_it_builds(model):
    """num_layers (what figure layers are checked against at config time, before anything is
    built) is the number of weight layers the model has."""
    net = build_model(model, "standard", 10 if model == "dln" else 3, 32, 10)
    assert len(net.layers) == num_layers(model)


def test_simple_cnn_is_three_convs_two_linear():
    net = build_model("simple_cnn", "standard", 3, 32, 10)
    assert [i.kind for i in net.layer_info()] == ["conv"] * 3 + ["linear"] * 2
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("init", ["glorot", "kaiming"])
def test_init_bounds_and_same_weights_across_variants(init):
    torch.manual_seed(3)
    a = build_model("vgg", "standard", 3, 32, 10, width=0.25, init=init)
    torch.manual_seed(3)
    b = build_model("vgg", "batchnorm", 3, 32, 10, width=0.25, init=init)
    for wa, wb in zip(a.weight_parameters(), b.weight_parameters()):
        assert torch.equal(wa, wb)
    # conv 16->16 (width .25): U(-b, b) with b = sqrt(6/(fan_in+fan_out)) (Glorot) or
    # sqrt(2) * sqrt(3/fan_in) (He, for ReLU)
    bound = (6 / (9 * 16 + 9 * 16)) ** 0.5 if init == "glorot" else 2 ** 0.5 * (3 / (9 * 16)) ** 0.5
    w = a.weight_parameters()[1]
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("vgg", "bn", 3, 32, 10)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", "standard", 3, 32, 10)


def test_noisy_bn_noise_matches_algorithm_1():
    """Moments of (s, m) against Algorithm 1: mu_t ~ U(-n_mu, n_mu), sigma_t ~ U(1, n_sigma) per
    channel; m ~ U(mu_t +- r_mu), s ~ N(sigma_t, r_sigma) per element (H, W part of the batch)."""
    n_mu, n_sigma, r_mu, r_sigma = 0.5, 1.25, 0.1, 0.1
    mod = NoisyBatchNorm(2000, conv=True, n_mu=n_mu, n_sigma=n_sigma, r_mu=r_mu, r_sigma=r_sigma)
    g = torch.Generator().manual_seed(0)
    mod.generator = g
    s, m = mod.sample_noise(torch.Size((32, 2000, 4, 4)), "cpu", torch.float64)
    mu_t = m.mean(dim=(0, 2, 3))            # per-channel centre of the shift noise
    sigma_t = s.mean(dim=(0, 2, 3))
    # across channels: uniform moments
    assert mu_t.abs().max() <= n_mu + 0.02
    assert abs(mu_t.mean()) < 0.03 and abs(mu_t.var() - n_mu ** 2 / 3) < 0.01
    assert sigma_t.min() >= 1 - 0.02 and sigma_t.max() <= n_sigma + 0.02
    assert abs(sigma_t.mean() - (1 + n_sigma) / 2) < 0.01
    assert abs(sigma_t.var() - (n_sigma - 1) ** 2 / 12) < 0.002
    # within a channel: U(mu_t - r_mu, mu_t + r_mu) and N(sigma_t, r_sigma)
    dm = m - mu_t.view(1, -1, 1, 1)
    assert dm.abs().max() <= r_mu + 0.01
    assert abs(dm.var() - r_mu ** 2 / 3) < 2e-4
    ds = s - sigma_t.view(1, -1, 1, 1)
    assert abs(ds.std() - r_sigma) < 2e-3
    # each channel's per-element spread is the same for every channel: noise is per element
    assert (m.std(dim=(0, 2, 3)) > 0.5 * r_mu / 3 ** 0.5).all()


def test_noisy_bn_applies_s_a_plus_m_in_training_only_and_reuses_on_request():
    torch.manual_seed(0)
    mod = NoisyBatchNorm(8, conv=False)
    mod.generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8)
    rng = torch.get_rng_state()
    y1 = mod(x)
    s, m = mod._noise
    torch.testing.assert_close(y1, s * mod.bn(x) + m)  # (bn in train mode is stateless in output)
    with reuse_noise(mod):
        assert torch.equal(mod(x), y1)
    assert not torch.equal(mod(x), y1)  # fresh noise outside reuse_noise
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG stream untouched
    mod.eval()
    torch.testing.assert_close(mod(x), mod.bn(x))


def test_batchnorm_eval_uses_running_statistics():
    torch.manual_seed(0)
    net = build_model("vgg", "batchnorm", 1, 8, 10, width=0.125)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        x = torch.randn(32, 1, 8, 8) * 2 + 1
        loss = net(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x = torch.randn(6, 1, 8, 8)
    pre = []
    net(x, preacts=pre)
    layer = net.layers[0]
    bn = layer.norm
    conv = layer.weight_layer(x)
    rm, rv = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    expected = (conv - rm) / torch.sqrt(rv + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(pre[0], expected)
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    # eval output of one sample does not depend on the rest of the batch
    torch.testing.assert_close(net(x[:1]), net(x)[:1])


def test_set_noise_generator_reaches_every_noisy_layer():
    net = build_model("vgg", "noisy_batchnorm", 1, 8, 10, width=0.125)
    g = torch.Generator()
    set_noise_generator(net, g)
    noisy = [m for m in net.modules() if isinstance(m, NoisyBatchNorm)]
    assert len(noisy) == 13 and all(m.generator is g for m in noisy)
