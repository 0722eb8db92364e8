"""The models and their variants as names and facts, without torch: what the config schema,
the Snakemake rules and the figures need to know (labels, colours, which figure families compare
a variant, whether the deep linear network may use it). The modules that build each variant
are in :mod:`bnopt.training.models`, one entry per name here.

Figure families: "bn" standard vs BN (Figures 1, 3, 4, 9-11, 16), "noisy" adds noisy BN (2, 8),
"lp" the l_p normalisations (5, 6, 12, 13), "normalisers" the ones that replaced BN (14, 15).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODELS = ("vgg", "simple_cnn", "vgg11", "vgg10", "mlp", "dln")
INITS = ("glorot", "kaiming", "glorot_normal")
ACTIVATIONS = ("relu", "sigmoid")
OPTIMIZERS = ("sgd", "adam")
DLN_DEPTH = 25
MLP_WIDTHS = (100, 100, 100)  # Ioffe & Szegedy's Figure 1 network; the config's mlp_widths
# weight layers, any input size (the MLP's: its hidden widths and the output, num_layers)
NUM_LAYERS = {"vgg": 14, "simple_cnn": 5, "vgg11": 11, "vgg10": 13, "dln": DLN_DEPTH}


# a model by import path, "package.module:factory" (bnopt.training.module_net)
MODEL_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


def is_model_path(model: str) -> bool:
    """Whether ``model`` names a factory by import path rather than a network of the registry."""
    return re.match(MODEL_PATH, str(model)) is not None


def model_folder(model: str) -> str:
    """The folder of ``model``'s runs (results/runs/<dataset>/<folder>/...): its name, or for a
    model by import path the path with its ':' as '.' (no colon in a path)."""
    return model.replace(":", ".") if is_model_path(model) else model


def model_label(model: str) -> str:
    """How figures and the scorecard name ``model``: VGG, or a factory's name (RESNET18)."""
    return str(model).rsplit(":", 1)[-1].upper()


def num_layers(model: str, mlp_widths=MLP_WIDTHS) -> int:
    """Weight layers of ``model``: fixed for every model but the MLP, whose depth is its hidden
    widths (the config's ``mlp_widths``) plus the output layer."""
    return len(mlp_widths) + 1 if model == "mlp" else NUM_LAYERS[model]
NOISY_BN_DEFAULTS = {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}


@dataclass(frozen=True)
class Variant:
    """How figures show a variant and where it belongs: ``groups`` names the figure families
    that compare it (:func:`variants_in`); ``dln``: whether the deep linear network may use it."""
    label: str
    colour: str
    groups: tuple[str, ...]
    dln: bool = True


_ALL = ("bn", "noisy", "lp", "normalisers")
VARIANT_INFO: dict[str, Variant] = {
    "standard": Variant("Standard", "#1f77b4", _ALL),
    "batchnorm": Variant("Standard + BatchNorm", "#d62728", _ALL),
    "noisy_batchnorm": Variant("Standard + \"Noisy\" BatchNorm", "#2ca02c", ("noisy",), dln=False),
    "l1": Variant("Standard + l1 norm", "#9467bd", ("lp",)),
    "l2": Variant("Standard + l2 norm", "#8c564b", ("lp",)),
    "linf": Variant("Standard + l-inf norm", "#e377c2", ("lp",)),
    "layernorm": Variant("Standard + LayerNorm", "#ff7f0e", ("normalisers",)),
    "groupnorm": Variant("Standard + GroupNorm", "#17becf", ("normalisers",)),
    "weightnorm": Variant("Standard + weight norm", "#7f7f7f", ("normalisers",)),
}
VARIANTS = tuple(VARIANT_INFO)
DLN_VARIANTS = tuple(v for v, n in VARIANT_INFO.items() if n.dln)


def variants_in(group: str) -> list[str]:
    """The variants a figure family compares, in registry order (standard first)."""
    return [v for v, n in VARIANT_INFO.items() if group in n.groups]
