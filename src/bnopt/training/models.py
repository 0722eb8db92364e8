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
normalised. Every variant is one entry of :data:`bnopt.plan.variants.VARIANT_INFO` (its name, figure
label and colour, figure families; no torch, so the workflow parses without it) and one of
:data:`bnopt.training.normalisers.NORMALISERS` (how it builds its layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnopt.plan.variants import (
    ACTIVATIONS,
    DLN_DEPTH,
    INITS,
    MLP_WIDTHS,
    MODELS,
)
from bnopt.training.normalisers import NORMALISERS, norm_layer

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


def build_model(model: str, variant: str, in_channels: int, image_size: int, num_classes: int,
                width: float = 1.0, noisy_bn: dict | None = None, init: str = "glorot",
                activation: str = "relu", mlp_widths=MLP_WIDTHS) -> Net:
    """Build ``model`` (:data:`bnopt.plan.variants.MODELS`) in ``variant`` for square inputs of
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
                            norm_layer(variant, out, True, noisy_bn, size * size),
                            act=activation, pool=False, flatten=False))
        c = out
    features = c * size * size
    for i, h in enumerate(layout.hidden):
        out = scale(h)
        norm = (norm_layer(variant, out, False, noisy_bn) if layout.normalise_linear
                else norm_layer("standard", out, False, noisy_bn))
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
                    norm_layer(variant, dim_in, False, noisy_bn) if i < DLN_DEPTH - 1 else nn.Identity(),
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
