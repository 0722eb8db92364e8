"""Datasets as whole uint8 tensors, resident on the training device.

``load_dataset`` reads a dataset once (CIFAR-10 through torchvision, Fashion-MNIST from its IDX
files, plain or gzipped; scikit-learn's bundled digits, or a generated synthetic set) into a
:class:`Dataset` of uint8 images (N, C, H, W) and int64 labels. ``DeviceData`` moves it to the
device and serves shuffled batches with device-side indexing (and optional crop + flip
augmentation): no DataLoader, no per-sample Python.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bnopt.plan.datasets import (
    DATASETS,
    DEFAULT_ROOT,
    DLN_DIM,
    DOWNLOADABLE,
    NUM_CLASSES,
    TEST_SIZES,
    TRAIN_SIZES,
    dataset_present,
    expected_files,
    input_shape,
    missing_data_message,
)
from bnopt.running.io import atomic_path


class DataError(RuntimeError):
    """A dataset is missing or unreadable; the message says where we looked and what to do."""


@dataclass
class Dataset:
    """Images: uint8 x (N, C, H, W), int64 class labels, ``num_classes`` > 0.
    Regression (the DLN task): float x (N, D), float targets (N, D_out), ``num_classes`` = 0."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    meta: dict = field(default_factory=dict)  # how the data was made, e.g. the DLN's A and seed

    @property
    def regression(self) -> bool:
        return self.num_classes == 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        return self.y_train.shape[1] if self.regression else self.num_classes

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images, in [0, 1] units: computed once,
        when the dataset is prepared (:meth:`save` keeps them in ``meta``; CIFAR-10's take ~6 s
        in float64), and read from there by every training job."""
        if "channel_stats" in self.meta:
            mean, std = self.meta["channel_stats"]
            return mean, std
        x = self.x_train.double() / 255
        return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float()

    def save(self, path: str | os.PathLike) -> None:
        """Write the dataset atomically, with its images' channel statistics (computed here
        once, the same numbers bit for bit as computing them in each job)."""
        meta = dict(self.meta)
        if self.x_train.dtype == torch.uint8:
            meta["channel_stats"] = self.channel_stats()
        with atomic_path(path) as tmp:
            torch.save({**{k: getattr(self, k) for k in
                           ("name", "x_train", "y_train", "x_test", "y_test", "num_classes")},
                        "meta": meta}, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dataset":
        try:
            return cls(**torch.load(path, weights_only=True))
        except Exception as e:  # corrupt or foreign file
            raise DataError(f"cannot read prepared dataset {path}: {e}. Delete it and rerun "
                            "snakemake to prepare it again.") from e


# --------------------------------------------------------------------------------------------
# Loading

def _synthetic(seed: int = 0, n_train: int = TRAIN_SIZES["synthetic"], n_test: int = 256,
               classes: int = 10, shape=(3, 8, 8)) -> Dataset:
    """Learnable toy images: a fixed random template per class plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand((classes, *shape), generator=g) * 255

    def make(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = templates[y] + torch.randn((n, *shape), generator=g) * 60
        return x.clamp(0, 255).round().to(torch.uint8), y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return Dataset("synthetic", xtr, ytr, xte, yte, classes)


def _dln(seed: int, n: int = TRAIN_SIZES["dln"], dim: int = DLN_DIM) -> Dataset:
    """The paper's DLN task: y = A x with A (dim x dim) i.i.d. N(0, 1) and x ~ N(0, I); n
    training and n test samples, all drawn from ``seed`` (recorded, with A, in ``meta``)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g)
    x_train, x_test = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    return Dataset("dln", x_train, x_train @ a.T, x_test, x_test @ a.T, 0,
                   {"A": a, "data_seed": seed})


def fake_dataset(name: str, seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None, image_size: int | None = None) -> Dataset:
    """Random data of ``name``'s shapes (resized to ``image_size``) and types, and its sizes
    unless ``n_train``/``n_test`` say otherwise (what benchmarks need: the cost of a step does
    not depend on the pixel values). Not for training."""
    g = torch.Generator().manual_seed(seed)
    shape, k = input_shape(name, image_size), NUM_CLASSES[name]

    def split(n):
        if k == 0:
            return torch.randn((n, *shape), generator=g), torch.randn((n, *shape), generator=g)
        return (torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
                torch.randint(0, k, (n,), generator=g))

    return Dataset(name, *split(n_train or TRAIN_SIZES[name]), *split(n_test or TEST_SIZES[name]),
                   k, {"fake": True})


def _digits() -> Dataset:
    # deferred, as torchvision below: only preparing this dataset needs them, not training
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255, (N,1,8,8)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=360, random_state=0,
                                          stratify=d.target)
    return Dataset("digits", torch.from_numpy(xtr), torch.from_numpy(ytr).long(),
                   torch.from_numpy(xte), torch.from_numpy(yte).long(), 10)


def resized(ds: Dataset, size: int) -> Dataset:
    """``ds`` with its images bilinearly resized to ``size`` x ``size`` (still uint8), e.g. to
    give scikit-learn's 8x8 digits the layer geometry of larger inputs: at 8x8 the VGG's last
    eight convs see 1x1 maps, where a 3x3 conv uses only its centre tap (docs/measurements.md,
    "Where we differ from the paper")."""
    def up(x):
        return F.interpolate(x.float(), size=(size, size), mode="bilinear",
                             align_corners=False).round().clamp(0, 255).to(torch.uint8)

    return dataclasses.replace(ds, x_train=up(ds.x_train), x_test=up(ds.x_test),
                               meta={**ds.meta, "resized_to": size})


def _torchvision(name: str, root: str | os.PathLike, download: bool) -> Dataset:
    from torchvision import (
        datasets,  # deferred: ~2 s to import beside torch (2026-12-06,
    )
    # this 2-core box), and only preparing a download needs it

    cls = {"cifar10": datasets.CIFAR10, "fashion_mnist": datasets.FashionMNIST,
           "mnist": datasets.MNIST}[name]
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except Exception as e:  # torchvision raises RuntimeError / URLError / OSError
        raise DataError(missing_data_message(name, root, f"could not be read (torchvision said: "
                                             f"{e})")) from e

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x[:, None]  # NHWC -> NCHW; NHW -> N1HW
        return x.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(ds.targets)).long()

    (xtr, ytr), (xte, yte) = tensors(train), tensors(test)
    return Dataset(name, xtr, ytr, xte, yte, len(train.classes))


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """A uint8 IDX file, the MNIST family's format (two zero bytes, the type 0x08, the rank, the
    sizes as big-endian uint32, then the values), plain or gzipped (a name ending in .gz)."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    rank = data[3] if len(data) >= 4 else 0
    if data[:3] != b"\0\0\x08" or not 1 <= rank <= 3:
        raise DataError(f"{path} is not a uint8 IDX file (it starts {data[:4]!r}); replace it "
                        "with the file as distributed")
    sizes = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    values = data[4 + 4 * rank:]
    if len(values) != math.prod(sizes):
        raise DataError(f"{path} holds {len(values)} values where its header says "
                        f"{' x '.join(map(str, sizes))}: a truncated copy; replace it")
    return torch.frombuffer(bytearray(values), dtype=torch.uint8).view(*sizes)


def _mnist_folder(name: str, root: str | os.PathLike) -> Dataset:
    """MNIST or Fashion-MNIST from its four IDX files in torchvision's layout, each plain or
    gzipped as distributed (torchvision itself reads only the unpacked ones)."""
    folder = expected_files(name, root)[0].parent

    def read(stem: str) -> torch.Tensor:
        gz = folder / f"{stem}.gz"
        return read_idx(folder / stem if (folder / stem).exists() or not gz.exists() else gz)

    def split(prefix: str):
        return (read(f"{prefix}-images-idx3-ubyte")[:, None],
                read(f"{prefix}-labels-idx1-ubyte").long())

    try:
        (xtr, ytr), (xte, yte) = split("train"), split("t10k")
    except FileNotFoundError as e:
        raise DataError(missing_data_message(name, root, f"is incomplete ({e.filename} is "
                                             "missing)")) from e
    return Dataset(name, xtr, ytr, xte, yte, NUM_CLASSES[name])


def load_dataset(name: str, data_root: str | os.PathLike | None = None,
                 data_seed: int = 0, image_size: int | None = None) -> Dataset:
    """Load ``name``. For torchvision sets, ``data_root`` is an existing copy in torchvision's
    layout; ``None`` downloads (with checksums) into ``resources/`` unless already there.
    ``data_seed`` draws the generated DLN task. ``image_size`` resizes images (bilinear) to
    that square size; None keeps the native size."""
    ds = _load(name, data_root, data_seed)
    if image_size is not None and not ds.regression and ds.shape[-1] != image_size:
        ds = resized(ds, image_size)
    return ds


def _load(name: str, data_root, data_seed: int) -> Dataset:
    if name == "synthetic":
        return _synthetic()
    if name == "dln":
        return _dln(data_seed)
    if name == "digits":
        return _digits()
    if name not in DOWNLOADABLE:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_root is None:
        return _torchvision(name, DEFAULT_ROOT, download=True)
    if not dataset_present(name, data_root):
        raise DataError(missing_data_message(name, data_root))
    if name in ("fashion_mnist", "mnist"):
        return _mnist_folder(name, data_root)
    return _torchvision(name, data_root, download=False)


# --------------------------------------------------------------------------------------------
# On the device

def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, batched on x's device."""
    n, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    rows = (dy + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx + torch.arange(w, device=dev))[:, None, None, :]
    out = xp[torch.arange(n, device=dev)[:, None, None, None],
             torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class DeviceData:
    """A :class:`Dataset` on ``device``: uint8 storage, normalisation to ``dtype`` per batch
    (in the channels-last memory format if asked). Float (regression) data is stored in
    ``dtype``, targets included."""

    def __init__(self, ds: Dataset, device: torch.device, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False):
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        self.num_classes = ds.num_classes
        self.images = ds.x_train.dtype == torch.uint8
        if self.images:
            mean, std = ds.channel_stats()
            self.mean = mean.view(1, -1, 1, 1).to(device, dtype)
            self.std = std.view(1, -1, 1, 1).to(device, dtype)

        def put(t):
            return t.to(device, dtype) if t.is_floating_point() else t.to(device)

        self.x_train, self.y_train = put(ds.x_train), put(ds.y_train)
        self.x_test, self.y_test = put(ds.x_test), put(ds.y_test)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> standardised floats; float (regression) inputs pass through."""
        if not self.images:
            return x
        x = (x.to(self.dtype) / 255 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_batches(self, batch_size: int, generator: torch.Generator,
                      augment: bool = False) -> "BatchStream":
        """Endless stream of (x, y) training batches: a fresh device-side permutation per epoch,
        the last incomplete batch of each epoch dropped (50,000 / 128 -> 390 steps)."""
        return BatchStream(self, batch_size, generator, augment)


class BatchStream:
    """Training batches as an iterator whose position can be saved and restored exactly
    (``state_dict`` / ``load_state_dict``), so a resumed run sees the same batches."""

    def __init__(self, data: DeviceData, batch_size: int, generator: torch.Generator,
                 augment: bool = False):
        n = data.x_train.shape[0]
        if n // batch_size == 0:
            raise ValueError(f"batch_size={batch_size} exceeds the training set ({n} samples)")
        self.data, self.batch_size, self.generator, self.augment = data, batch_size, generator, augment
        self.per_epoch = n // batch_size
        self.full_batch = batch_size == n and not augment  # gradient descent: no shuffling
        self.perm: torch.Tensor | None = None
        self.pos = self.per_epoch  # start of an epoch: draw a permutation first

    def __iter__(self):
        return self

    def __next__(self):
        d = self.data
        if self.full_batch:
            return d.normalize(d.x_train), d.y_train
        if self.pos == self.per_epoch:
            self.perm = torch.randperm(d.x_train.shape[0], device=d.device, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]
        self.pos += 1
        x = d.x_train[idx]
        if self.augment:
            x = random_crop_flip(x, 4 if x.shape[-1] >= 16 else 1, self.generator)
        return d.normalize(x), d.y_train[idx]

    def state_dict(self) -> dict:
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm = None if state["perm"] is None else state["perm"].to(self.data.device)
        self.pos = state["pos"]
        self.generator.set_state(state["generator"])
