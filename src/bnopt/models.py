"""Networks studied: the paper's VGG, seed 001's small CNN, VGG-A (``vgg11``), the blog
series' 10-conv VGG (``vgg10``), Ioffe & Szegedy's MLP and the deep linear network, each in
several variants.

Every network is a flat sequence of *weight layers* numbered 1..L from the input. Layer i is

    z_i = norm_i(W_i x_{i-1})          (the pre-activation: what enters the nonlinearity)
    x_i = pool_i(act(z_i))             (ReLU or sigmoid; none on the last layer, the logits)

and that numbering is the one used in every output table and figure. ``norm_i`` is the identity
(``standard``), BatchNorm (``batchnorm``), BatchNorm followed by the time-varying noise of the
paper's Algorithm 1 (``noisy_batchnorm``), an l_p normalisation (``l1``, ``l2``, ``linf``),
LayerNorm or GroupNorm; ``weightnorm`` reparametrises W_i instead. The last layer is never
normalised. Every variant is one entry of :data:`bnopt.variants.VARIANT_INFO` (its name, figure
label and colour, figure families; no torch, so the workflow parses without it) and one of
:data:`NORMALISERS` here (how it builds its layers).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnopt.variants import (
    ACTIVATIONS,
    DLN_DEPTH,
    INITS,
    MLP_WIDTHS,
    MODELS,
    NOISY_BN_DEFAULTS,
    VARIANTS,
)

# VGG-16 layout adapted to 32x32 inputs (13 convs then one linear classifier): 14 weight layers,
# so every layer number the paper plots (up to 13) is a conv layer followed by BN in the BN net.
VGG_CONVS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@dataclass(frozen=True)
class Layout:
    """A network's shape: conv widths ("M": a 2x2 max-pool), hidden linear widths, and whether
    the hidden linear layers are normalised too (the variant's normaliser; never the last)."""
    convs: tuple
    hidden: tuple
    normalise_linear: bool = True


LAYOUTS = {
    "vgg": Layout(tuple(VGG_CONVS), ()),
    # seed 001's network: 3 convs + 2 linear layers
    "simple_cnn": Layout((32, "M", 64, "M", 128, "M"), (256,)),
    # VGG-A (VGG-11's convs), its three linear layers narrowed for 32x32 inputs (512, 512,
    # classes: seed 000 says only "reduced"), BN after every layer but the last
    "vgg11": Layout((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), (512, 512)),
    # the blog series' (seed 002) 10 convs and linear 512 -> 96 -> 96 -> 10, BN on convs only
    "vgg10": Layout((64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
                    (96, 96), normalise_linear=False),
}
ACTIVATION_FNS = {"relu": F.relu, "sigmoid": torch.sigmoid}
assert tuple(ACTIVATION_FNS) == ACTIVATIONS


class NoisyBatchNorm(nn.Module):
    """BatchNorm followed by the paper's Algorithm 1 noise (training mode only).

    For unit j at step t:   mu_t ~ U(-n_mu, n_mu),  sigma_t ~ U(1, n_sigma)
    per sample i, unit j:   m ~ U(mu_t - r_mu, mu_t + r_mu),  s ~ N(sigma_t, r_sigma)
    and the activation becomes s * a + m. For conv layers height and width count as part of the
    batch: mu_t and sigma_t are drawn per channel, m and s per (sample, position, channel).

    A fresh sample is drawn on every training-mode forward pass, unless the module is inside
    :func:`reuse_noise`, where the last sample is reused (probes need the step's own noise).
    Draws come from ``self.generator`` (set by :func:`set_noise_generator`), so they never touch
    the global RNG stream.
    """

    def __init__(self, num_features: int, conv: bool, **noise: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features) if conv else nn.BatchNorm1d(num_features)
        unknown = set(noise) - set(NOISY_BN_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown noisy_bn constants {sorted(unknown)}; the constants are "
                             f"{', '.join(NOISY_BN_DEFAULTS)}")
        noise = {**NOISY_BN_DEFAULTS, **noise}
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = (noise[k] for k in NOISY_BN_DEFAULTS)
        self.generator: torch.Generator | None = None
        self.reuse = False
        self._noise: tuple[torch.Tensor, torch.Tensor] | None = None

    def sample_noise(self, shape: torch.Size, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (s, m) for an activation tensor of ``shape``; channels are dim 1."""
        g, c = self.generator, shape[1]
        unit = (1, c) + (1,) * (len(shape) - 2)
        mu_t = (torch.rand(c, generator=g, device=device, dtype=dtype) * 2 - 1) * self.n_mu
        sigma_t = 1 + torch.rand(c, generator=g, device=device, dtype=dtype) * (self.n_sigma - 1)
        m = mu_t.view(unit) + (torch.rand(shape, generator=g, device=device, dtype=dtype) * 2 - 1) * self.r_mu
        s = sigma_t.view(unit) + torch.randn(shape, generator=g, device=device, dtype=dtype) * self.r_sigma
        return s, m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)
        if not self.training:
            return x
        if not (self.reuse and self._noise is not None and self._noise[0].shape == x.shape):
            self._noise = self.sample_noise(x.shape, x.device, x.dtype)
        s, m = self._noise
        return s * x + m


class LpNorm(nn.Module):
    """The paper's l_p normalisation (Section 3.3), p in {1, 2, inf}: per unit, subtract the
    batch mean as BN does, then divide by the average l_p norm of the unit's values over the
    batch taken *before* the mean shift, then apply a learnable scale and shift:

        y = gamma * (z - mean(z)) / (norm_p(z) + eps) + beta,
        norm_1 = mean |z|,  norm_2 = sqrt(mean z^2),  norm_inf = max |z|

    over the batch (and positions, for conv maps). Like BN, eval mode uses running averages of
    the mean and the norm, and ``track_running_stats = False`` uses batch statistics without
    updating them (what :func:`bnopt.measure.probing` relies on).
    """

    def __init__(self, num_features: int, p: float, conv: bool, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.p, self.conv, self.eps, self.momentum = p, conv, eps, momentum
        self.track_running_stats = True
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_norm", torch.ones(num_features))

    def batch_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit batch mean and average l_p norm (before the mean shift)."""
        dims = [d for d in range(z.dim()) if d != 1]
        n = z.numel() // z.shape[1]
        mean = z.mean(dim=dims)
        norm = torch.linalg.vector_norm(z, ord=self.p, dim=dims)
        if self.p != float("inf"):
            norm = norm / n ** (1 / self.p)  # the average: (mean |z|^p)^(1/p)
        return mean, norm

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, norm = self.batch_stats(z)
            if self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_norm.lerp_(norm, self.momentum)
        else:
            mean, norm = self.running_mean, self.running_norm
        # gamma (z - mean) / (norm + eps) + beta as one fused z * scale + shift
        scale = self.weight / (norm + self.eps)
        shift = self.bias - mean * scale
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return torch.addcmul(shift.view(shape), z, scale.view(shape))


@dataclass
class LayerInfo:
    index: int          # 1..L from the input
    kind: str           # "conv" or "linear"
    in_features: int
    out_features: int
    normalized: bool


class Layer(nn.Module):
    """One weight layer with its normalisation, nonlinearity (``act``: a name of
    :data:`ACTIVATION_FNS`, or None) and optional 2x2 max-pool."""

    def __init__(self, weight: nn.Module, norm: nn.Module, act: str | None, pool: bool,
                 flatten: bool):
        super().__init__()
        self.weight_layer = weight
        self.norm = norm
        self.act = act
        self.pool = pool
        self.flatten = flatten


class Net(nn.Module):
    """A feed-forward stack of :class:`Layer`. ``forward(x, preacts=list)`` also collects z_i."""

    def __init__(self, layers: list[Layer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, preacts: list | None = None, start: int = 0,
                stop: int | None = None) -> torch.Tensor:
        """The network, or layers ``start`` .. ``stop`` - 1 of it (0-based) applied to ``x``, the
        input of layer ``start``: running [0, i) then [i, L) computes what one pass computes."""
        for layer in self.layers[start:stop]:
            if layer.flatten:
                x = x.flatten(1)
            z = layer.norm(layer.weight_layer(x))
            if preacts is not None:
                preacts.append(z)
            x = ACTIVATION_FNS[layer.act](z) if layer.act else z
            if layer.pool:
                x = F.max_pool2d(x, 2)
        return x

    def layer_info(self) -> list[LayerInfo]:
        out = []
        for i, layer in enumerate(self.layers, start=1):
            w = layer.weight_layer
            conv = isinstance(w, nn.Conv2d)
            out.append(LayerInfo(i, "conv" if conv else "linear",
                                 w.in_channels if conv else w.in_features,
                                 w.out_channels if conv else w.out_features,
                                 not isinstance(layer.norm, nn.Identity)
                                 or nn.utils.parametrize.is_parametrized(w)))
        return out

    def weight_names(self) -> list[str]:
        """Parameter names of W_1..W_L, the tensors the per-layer measurements refer to: the
        weight, or v for a weight-normalised layer (w = g v / ||v||): the tensor of W's shape
        that the optimiser updates."""
        names = dict(self.named_parameters())
        out = []
        for i in range(len(self.layers)):
            plain = f"layers.{i}.weight_layer.weight"
            out.append(plain if plain in names
                       else f"layers.{i}.weight_layer.parametrizations.weight.original1")
        return out

    def weight_parameters(self) -> list[nn.Parameter]:
        """W_1..W_L as parameters (see :meth:`weight_names`)."""
        names = dict(self.named_parameters())
        return [names[n] for n in self.weight_names()]


GN_GROUPS = 32       # GroupNorm's group count (Wu & He 2018) where the layer is wide enough
GN_MIN_VALUES = 4    # ... and fewer groups where a group would hold fewer values than this


def group_count(channels: int, positions: int = 1) -> int:
    """GroupNorm's groups for a layer of ``channels`` units over ``positions`` spatial positions
    (1 for a linear layer): the largest divisor of ``channels`` that is at most GN_GROUPS and
    leaves each group at least GN_MIN_VALUES values per sample. A narrower layer (small
    ``width``, 1x1 maps, the DLN's 10 units) gets fewer, larger groups, down to one (LayerNorm):
    a group of 2 values would normalise them to +-1 whatever they are."""
    ok = [g for g in range(1, min(GN_GROUPS, channels) + 1)
          if channels % g == 0 and (channels // g) * positions >= GN_MIN_VALUES]
    return max(ok, default=1)


@dataclass(frozen=True)
class Normaliser:
    """How one variant (:data:`bnopt.variants.VARIANT_INFO`) builds its layers:
    ``norm(features, conv, positions, noisy_bn)`` returns the module applied to W_i x
    (``positions``: spatial positions of a conv layer's output, 1 for a linear layer);
    ``reparam``, if set, wraps the weight layer itself (weight normalisation)."""
    norm: Callable[..., nn.Module]
    reparam: Callable[[nn.Module], nn.Module] | None = None


def _bn(features, conv, positions, noisy_bn):
    return nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)


def _lp(p):
    return lambda features, conv, positions, noisy_bn: LpNorm(features, p, conv)


class WeightNorm(nn.Module):
    """w = g v / ||v|| per output unit (Salimans & Kingma 2016), as a parametrisation of a
    weight with its output units in dim 0. The formula of ``nn.utils.parametrizations.
    weight_norm``, written with plain ops: its fused kernel has no forward-mode derivative, which
    the curvature measurement (Hessian-vector products) needs."""

    def forward(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, v.dim()))
        return g * v / torch.linalg.vector_norm(v, dim=dims, keepdim=True)

    def right_inverse(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.linalg.vector_norm(w, dim=tuple(range(1, w.dim())), keepdim=True), w


def _weight_norm(layer: nn.Module) -> nn.Module:
    """Weight-normalise ``layer`` through PyTorch's parametrisation machinery: its parameters
    become g (``...parametrizations.weight.original0``, shape (out, 1, ...)) and v
    (``original1``, W's shape; W_i for the per-layer measurements), with g = ||v|| at init so
    the initial weights equal the standard net's."""
    nn.utils.parametrize.register_parametrization(layer, "weight", WeightNorm(), unsafe=True)
    return layer


_IDENTITY = lambda features, conv, positions, noisy_bn: nn.Identity()  # noqa: E731
# one entry per variant of bnopt.variants (its label, colour and figure families live there)
NORMALISERS: dict[str, Normaliser] = {
    "standard": Normaliser(_IDENTITY),
    "batchnorm": Normaliser(_bn),
    "noisy_batchnorm": Normaliser(
        lambda features, conv, positions, noisy_bn: NoisyBatchNorm(features, conv, **(noisy_bn or {}))),
    "l1": Normaliser(_lp(1)),
    "l2": Normaliser(_lp(2)),
    "linf": Normaliser(_lp(float("inf"))),
    # per sample over all of the layer's units (channels and positions), per-channel affine
    "layernorm": Normaliser(lambda features, conv, positions, noisy_bn: nn.GroupNorm(1, features)),
    "groupnorm": Normaliser(
        lambda features, conv, positions, noisy_bn: nn.GroupNorm(group_count(features, positions),
                                                                 features)),
    "weightnorm": Normaliser(_IDENTITY, reparam=_weight_norm),
}
assert tuple(NORMALISERS) == VARIANTS, "bnopt.variants and NORMALISERS list the same variants"


def _norm(variant: str, features: int, conv: bool, noisy_bn: dict, positions: int = 1) -> nn.Module:
    if variant not in NORMALISERS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return NORMALISERS[variant].norm(features, conv, positions, noisy_bn)


def build_model(model: str, variant: str, in_channels: int, image_size: int, num_classes: int,
                width: float = 1.0, noisy_bn: dict | None = None, init: str = "glorot",
                activation: str = "relu", mlp_widths=MLP_WIDTHS) -> Net:
    """Build ``model`` (:data:`bnopt.variants.MODELS`) in ``variant`` for square inputs of
    ``image_size`` (for 'dln': vectors of ``in_channels`` features; ``num_classes`` outputs).

    Max-pools are skipped once the feature map is 1x1, so 8x8 and 28x28 inputs work with the
    same layer count as 32x32. ``width`` multiplies every hidden width (the MLP's too). Weights
    are Glorot-uniform as in the paper (``init='glorot'``), Glorot-normal (``'glorot_normal'``)
    or He-uniform for ReLU (``'kaiming'``); biases are zero. ``activation`` is every hidden
    layer's nonlinearity; ``mlp_widths`` the MLP's hidden widths (it flattens its input).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if activation not in ACTIVATION_FNS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(ACTIVATION_FNS)}")
    if model == "dln":
        return _deep_linear(variant, in_channels, num_classes, noisy_bn, init)
    if model == "mlp":
        layout = Layout((), tuple(mlp_widths))
    elif model in LAYOUTS:
        layout = LAYOUTS[model]
    else:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    scale = lambda c: max(1, round(c * width))  # noqa: E731

    layers: list[Layer] = []
    c, size = in_channels, image_size
    for item in layout.convs:
        if item == "M":
            if size >= 2:
                layers[-1].pool = True
                size //= 2
            continue
        out = scale(item)
        layers.append(Layer(nn.Conv2d(c, out, 3, padding=1),
                            _norm(variant, out, True, noisy_bn, size * size),
                            act=activation, pool=False, flatten=False))
        c = out
    features = c * size * size
    for i, h in enumerate(layout.hidden):
        out = scale(h)
        norm = (_norm(variant, out, False, noisy_bn) if layout.normalise_linear
                else _norm("standard", out, False, noisy_bn))
        layers.append(Layer(nn.Linear(features, out), norm, act=activation, pool=False,
                            flatten=(i == 0)))
        features = out
    layers.append(Layer(nn.Linear(features, num_classes), nn.Identity(), act=None, pool=False,
                        flatten=not layout.hidden))
    net = _init(Net(layers), init)
    return _reparametrise(net, variant, len(layers) - 1 if layout.normalise_linear
                          else sum(isinstance(m.weight_layer, nn.Conv2d) for m in layers))


def _deep_linear(variant: str, dim_in: int, dim_out: int, noisy_bn, init: str) -> Net:
    """The paper's deep linear network: DLN_DEPTH square linear layers without bias or
    nonlinearity; the normalisation of ``variant`` follows every layer but the last."""
    if dim_in != dim_out:
        raise ValueError(f"the deep linear network is square: input {dim_in} != output {dim_out}")
    layers = [Layer(nn.Linear(dim_in, dim_in, bias=False),
                    _norm(variant, dim_in, False, noisy_bn) if i < DLN_DEPTH - 1 else nn.Identity(),
                    act=None, pool=False, flatten=(i == 0)) for i in range(DLN_DEPTH)]
    return _reparametrise(_init(Net(layers), init), variant, DLN_DEPTH - 1)


def _reparametrise(net: Net, variant: str, normalised: int) -> Net:
    """Apply the variant's weight reparametrisation (after init) to the first ``normalised``
    layers: every layer the variant normalises (never the last, which gives the logits)."""
    wrap = NORMALISERS[variant].reparam
    if wrap is not None:
        for layer in net.layers[:normalised]:
            layer.weight_layer = wrap(layer.weight_layer)
    return net


def _init(net: Net, init: str) -> Net:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "glorot":
                nn.init.xavier_uniform_(m.weight)
            elif init == "glorot_normal":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def noisy_modules(model: nn.Module) -> list[NoisyBatchNorm]:
    return [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]


def set_noise_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every noisy-BN layer draw from ``generator`` instead of the global RNG."""
    for m in noisy_modules(model):
        m.generator = generator


@contextlib.contextmanager
def reuse_noise(model: nn.Module):
    """Inside this block, noisy-BN layers reuse the noise of their last training forward pass."""
    mods = noisy_modules(model)
    for m in mods:
        m.reuse = True
    try:
        yield
    finally:
        for m in mods:
            m.reuse = False
