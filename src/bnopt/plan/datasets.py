"""What each dataset is, without loading it (and without torch): names, sizes, input shapes,
classes, and where the downloadable ones live on disk. The config check and the Snakemake
rules need these at parse time; :mod:`bnopt.training.data` loads the data itself."""

from __future__ import annotations

import os
from pathlib import Path

DATASETS = ("cifar10", "fashion_mnist", "mnist", "digits", "synthetic", "dln")
# Training-set sizes, known before loading, so a too-large batch is rejected at config time.
TRAIN_SIZES = {"cifar10": 50_000, "fashion_mnist": 60_000, "mnist": 60_000, "digits": 1_437,
               "synthetic": 1_024, "dln": 1_000}
DLN_DIM = 10  # the paper's deep linear network task: y = A x, A 10x10, 1000 samples
# Test-set sizes, input shapes and classes (0: regression), for cost projections before loading.
TEST_SIZES = {"cifar10": 10_000, "fashion_mnist": 10_000, "mnist": 10_000, "digits": 360,
              "synthetic": 256, "dln": 1_000}
INPUT_SHAPES = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28), "mnist": (1, 28, 28),
                "digits": (1, 8, 8), "synthetic": (3, 8, 8), "dln": (DLN_DIM,)}
NUM_CLASSES = {"cifar10": 10, "fashion_mnist": 10, "mnist": 10, "digits": 10, "synthetic": 10,
               "dln": 0}
DEFAULT_ROOT = "resources"


# --------------------------------------------------------------------------------------------
# Where the torchvision datasets live on disk

_EXPECTED = {
    "cifar10": ("cifar-10-batches-py", ["data_batch_1", "data_batch_5", "test_batch"]),
    "fashion_mnist": ("FashionMNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "mnist": ("MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
}
DOWNLOADABLE = tuple(_EXPECTED)  # the torchvision sets; the others are made or shipped


def expected_files(name: str, root: str | os.PathLike) -> list[Path]:
    sub, files = _EXPECTED[name]
    return [Path(root) / sub / f for f in files]


def dataset_present(name: str, root: str | os.PathLike) -> bool:
    """True if ``root`` holds ``name`` in torchvision's layout (or the dataset needs no files)."""
    if name not in _EXPECTED:
        return True
    return all(p.exists() or p.with_name(p.name + ".gz").exists() for p in expected_files(name, root))


def missing_data_message(name: str, root: str | os.PathLike, problem: str = "not found") -> str:
    sub, _ = _EXPECTED[name]
    return (f"dataset {name!r} {problem} in data_root={str(root)!r} (looked for "
            f"{Path(root) / sub}/). Either point data_root at a copy in torchvision's layout "
            f"(the folder that contains '{sub.split('/')[0]}'), or set data_root: null to "
            f"download it with checksums into '{DEFAULT_ROOT}/' (needs internet).")


def input_shape(name: str, image_size: int | None = None) -> tuple[int, ...]:
    """The shape of one input of ``name``, resized to ``image_size`` if given (images only)."""
    shape = INPUT_SHAPES[name]
    if image_size is None or len(shape) == 1:
        return shape
    return (shape[0], image_size, image_size)
