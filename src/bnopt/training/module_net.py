"""Your own network: any ``torch.nn.Module`` a factory builds (``"package.module:factory"``,
e.g. ``"torchvision.models:resnet18"``), studied as the built-in networks are.

Its *weight layers* are its Conv2d and Linear modules in the order one forward pass runs them;
they are the layers 1..L of every table and figure, and Definition 2.1's "preceding layers" of
layer i are those earlier in that order. A weight layer's *normaliser* is the normalisation
module that runs right after it (BatchNorm, GroupNorm, LayerNorm, or one of ours), and its
*pre-activation* is that normaliser's output (the weight layer's where it has none; in a
residual block, before the shortcut is added), taken by a forward hook. Each variant is derived from the module as built, with the modules the built-in
networks use (:func:`bnopt.training.normalisers.norm_layer`): ``standard`` removes every
normaliser, ``batchnorm`` keeps BatchNorm (and inserts it after a weight layer that has none),
the others put theirs in its place; ``weightnorm`` removes them and reparametrises the weights.
The last weight layer (the output) is left as the factory made it. Weights are the factory's
own initialisation, drawn after ``torch.manual_seed(seed)``: the same in every variant.

The built-in networks share forward passes between the ICS passes (a prefix of layers); a
module's forward cannot be cut, so its ICS takes one full pass per layer
(:func:`bnopt.training.measure.gradient_ics`).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import torch
import torch.nn as nn

from bnopt.plan.datasets import NUM_CLASSES, input_shape
from bnopt.plan.variants import is_model_path
from bnopt.training.normalisers import NORMALISERS, LpNorm, NoisyBatchNorm, norm_layer

WEIGHT_TYPES = (nn.Conv2d, nn.Linear)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, NoisyBatchNorm, LpNorm)


def is_import_path(model: str) -> bool:
    """Whether ``model`` names a factory (``"package.module:factory"``), not a built-in network."""
    return is_model_path(model)


def import_factory(path: str):
    """The callable ``path`` (``"package.module:factory"``) names; a clear error otherwise."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError(f"model = {path!r}: cannot import {module_name!r} ({type(e).__name__}: "
                         f"{e}). Install it, or put its folder on PYTHONPATH for snakemake and "
                         "its jobs (docs/extending.md)") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model = {path!r}: {module_name} has no callable {attr!r}; name a "
                         "function or class that returns a torch.nn.Module")
    return factory


def trace(module: nn.Module, example: torch.Tensor) -> tuple[list, dict, torch.Tensor]:
    """One forward pass of ``example`` (eval mode, no gradient): the leaf modules' names (and
    the weight layers') in the order they ran (a module once per call), each one's output
    shape, and the output."""
    calls, shapes, hooks = [], {}, []

    def seen(name):
        def hook(mod, inputs, output):  # returns None: the output is left as it is
            calls.append(name)
            shapes.setdefault(name, getattr(output, "shape", None))
        return hook

    for name, m in module.named_modules():
        # the leaves, and weight layers a parametrisation (weight normalisation) gave children
        if ((not list(m.children()) or isinstance(m, WEIGHT_TYPES))
                and ".parametrizations." not in f".{name}."):
            hooks.append(m.register_forward_hook(seen(name)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(example)
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return calls, shapes, out


def weight_layers(module: nn.Module, example: torch.Tensor) -> list[tuple[str, str | None]]:
    """(weight layer, its normaliser or None) by name, in forward order."""
    calls, _, _ = trace(module, example)
    out = []
    for k, name in enumerate(calls):
        if isinstance(module.get_submodule(name), WEIGHT_TYPES):
            if any(w == name for w, _ in out):
                raise ValueError(f"weight layer {name!r} runs twice in one forward pass: a "
                                 "shared layer has no place in Definition 2.1's order of layers")
            nxt = calls[k + 1] if k + 1 < len(calls) else None
            norm = nxt if nxt and isinstance(module.get_submodule(nxt), NORM_TYPES) else None
            out.append((name, norm))
    if len(out) < 2:
        raise ValueError("the module has fewer than two Conv2d/Linear layers in its forward "
                         "pass: nothing to normalise or compare")
    return out


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


def derive(module: nn.Module, variant: str, example: torch.Tensor, noisy_bn: dict | None = None
           ) -> nn.Module:
    """``module`` (in place) in ``variant``: every weight layer but the last gets the variant's
    normaliser in place of its own (inserted after it where it has none), or none at all; for
    ``weightnorm`` its weight is reparametrised (w = g v / ||v||) instead."""
    if variant not in NORMALISERS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(NORMALISERS)}")
    layers = weight_layers(module, example)
    _, shapes, _ = trace(module, example)
    for w, norm in layers[:-1]:
        weight = module.get_submodule(w)
        conv = isinstance(weight, nn.Conv2d)
        features = weight.out_channels if conv else weight.out_features
        positions = int(torch.tensor(shapes[w][2:]).prod()) if conv else 1
        if variant == "batchnorm" and norm and isinstance(module.get_submodule(norm),
                                                          nn.modules.batchnorm._BatchNorm):
            continue  # BN as the factory made it
        try:
            new = norm_layer(variant, features, conv, noisy_bn, positions)
        except Exception as e:
            raise ValueError(f"variant {variant} cannot be derived: no {variant} normaliser "
                             f"for weight layer {w!r} ({type(e).__name__}: {e})") from None
        if norm:
            _replace(module, norm, new)
        elif not isinstance(new, nn.Identity):  # no normaliser: one after the weight layer
            _replace(module, w, nn.Sequential(OrderedDict(weight=weight, norm=new)))
        wrap = NORMALISERS[variant].reparam
        if wrap is not None:
            wrap(weight)
    return module


class ModuleNet(nn.Module):
    """A module as the measurements see a :class:`bnopt.training.models.Net`: its weight layers
    (``layers``: their names), ``forward(x, preacts=list)`` collecting each layer's
    pre-activation, the parameters of each layer (weight layer and normaliser:
    :meth:`layer_groups`) and W_1..W_L (:meth:`weight_names`)."""

    def __init__(self, inner: nn.Module, example: torch.Tensor):
        super().__init__()
        self.inner = inner
        pairs = weight_layers(inner, example)
        self.layers = tuple(w for w, _ in pairs)
        self._points = [norm or w for w, norm in pairs]
        self._norms = [norm for _, norm in pairs]

    def forward(self, x: torch.Tensor, preacts: list | None = None) -> torch.Tensor:
        if preacts is None:
            return self.inner(x)
        hooks = [self.inner.get_submodule(p).register_forward_hook(
            lambda m, i, o: preacts.append(o)) for p in self._points]
        try:
            return self.inner(x)
        finally:
            for h in hooks:
                h.remove()

    def layer_groups(self) -> list[list[str]]:
        """Each weight layer's parameter names with its normaliser's (a parameter of neither
        is in no group: ICS never moves it)."""
        names = [n for n, _ in self.named_parameters()]
        groups = []
        for w, norm in zip(self.layers, self._norms):
            prefixes = [f"inner.{w}."] + ([f"inner.{norm}."] if norm else [])
            groups.append([n for n in names if n.startswith(tuple(prefixes))])
        return groups

    def weight_names(self) -> list[str]:
        """W_1..W_L by parameter name (v for a weight-normalised layer)."""
        names = dict(self.named_parameters())
        out = []
        for w in self.layers:
            plain = f"inner.{w}.weight"
            out.append(plain if plain in names else f"inner.{w}.parametrizations.weight.original1")
        return out


def build_module_net(path: str, variant: str, input_shape: tuple, num_outputs: int,
                     kwargs: dict | None = None, noisy_bn: dict | None = None) -> ModuleNet:
    """The factory ``path`` called with ``kwargs``, checked on one example of ``input_shape``
    (a refusal names what to change), derived into ``variant``."""
    net = import_factory(path)(**(kwargs or {}))
    if not isinstance(net, nn.Module):
        raise ValueError(f"model = {path!r} returned a {type(net).__name__}, not a "
                         "torch.nn.Module")
    example = torch.zeros(2, *input_shape)
    try:
        _, _, out = trace(net, example)
    except Exception as e:
        raise ValueError(f"model = {path!r} does not take this dataset's inputs, shape "
                         f"{tuple(input_shape)} ({type(e).__name__}: {e}); set model_kwargs or "
                         "image_size to fit them") from None
    if not isinstance(out, torch.Tensor) or out.shape != (2, num_outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model = {path!r} gives {got} for a batch of 2, not (2, {num_outputs}) "
                         f"(one output per class): set model_kwargs, e.g. "
                         f"{{num_classes: {num_outputs}}}")
    return ModuleNet(derive(net, variant, example, noisy_bn), example)


def module_depth(cfg: dict) -> int:
    """The weight layers of the checked config ``cfg``'s model by import path, built on the
    CPU for its dataset's inputs in every variant (the figures' and the scorecard's runs take
    them all; a variant that cannot be derived, or a module that cannot be studied, is refused
    here: before any job). The workflow's config check calls it (``check_config(...,
    depth_of=module_depth)``)."""
    shape = input_shape(cfg["dataset"], cfg.get("image_size"))
    outputs = NUM_CLASSES[cfg["dataset"]] or shape[0]
    depths = set()
    for variant in NORMALISERS:
        net = build_module_net(cfg["model"], variant, shape, outputs, cfg.get("model_kwargs"),
                               cfg.get("noisy_bn"))
        depths.add(len(net.layers))
    if len(depths) != 1:
        raise ValueError(f"model = {cfg['model']!r}: its variants have different numbers of "
                         f"weight layers ({sorted(depths)}); they cannot be compared layer by layer")
    return depths.pop()
