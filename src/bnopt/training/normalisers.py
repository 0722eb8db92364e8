"""The normalisers each variant puts after a weight layer (z_i = norm_i(W_i x)): BatchNorm,
noisy BatchNorm (the paper's Algorithm 1), l_p normalisation, LayerNorm and GroupNorm, and
weight normalisation, which reparametrises W_i instead. One entry of :data:`NORMALISERS` per
variant of :data:`bnopt.plan.variants.VARIANT_INFO`; :mod:`bnopt.training.models` builds the
networks with them. Noisy BN's noise stream: :func:`set_noise_generator`, :func:`reuse_noise`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from bnopt.plan.variants import NOISY_BN_DEFAULTS, VARIANTS


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
    updating them (what :func:`bnopt.training.measure.probing` relies on).
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
    """How one variant (:data:`bnopt.plan.variants.VARIANT_INFO`) builds its layers:
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
# one entry per variant of bnopt.plan.variants (its label, colour and figure families live there)
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
assert tuple(NORMALISERS) == VARIANTS, "bnopt.plan.variants and NORMALISERS list the same variants"


def norm_layer(variant: str, features: int, conv: bool, noisy_bn: dict, positions: int = 1) -> nn.Module:
    if variant not in NORMALISERS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return NORMALISERS[variant].norm(features, conv, positions, noisy_bn)


def noisy_modules(model: nn.Module) -> list[NoisyBatchNorm]:
    return [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]


def set_noise_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every noisy-BN layer draw from ``generator`` instead of the global RNG."""
    for m in noisy_modules(model):
        m.generator = generator


@contextlib.contextmanager
def own_noise(model: nn.Module, generator: torch.Generator):
    """Inside this block, noisy-BN layers draw fresh noise, as in training, from ``generator``
    (a measurement's own stream, so the training noise stream is not advanced); on leaving,
    each layer has its generator and its last training noise back (the probes after a step
    reuse that noise)."""
    mods = noisy_modules(model)
    saved = [(m.generator, m._noise, m.reuse) for m in mods]
    for m in mods:
        m.generator, m.reuse = generator, False
    try:
        yield
    finally:
        for m, (g, noise, reuse) in zip(mods, saved):
            m.generator, m._noise, m.reuse = g, noise, reuse


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
