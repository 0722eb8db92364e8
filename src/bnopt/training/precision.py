"""Precision and speed switches of a run: the dtype names as torch types, TF32 for float32
convolutions and matrix products (off for every measurement), and cuDNN's autotuner."""

from __future__ import annotations

import contextlib

import torch

from bnopt.plan.runs import DTYPE_NAMES, PRECISIONS

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}  # the config's dtype names


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Inside this block float32 convolutions and matrix products use ``precision``: 'fp32'
    (IEEE) or 'tf32' (TensorFloat-32 tensor cores, a 10-bit mantissa, on Ampere and later GPUs).
    No effect on the CPU or on float64. Restores the previous setting on exit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def ieee_fp32():
    """IEEE fp32 for convolutions and matrix products. PyTorch's default lets cuDNN
    convolutions use TF32, which is harmless for training but not for the probes: they take
    differences of nearly equal gradients."""
    return matmul_precision("fp32")


@contextlib.contextmanager
def cudnn_autotune(on: bool):
    """``torch.backends.cudnn.benchmark`` inside this block: cuDNN times its convolution
    algorithms for each new shape and keeps the fastest. Restores the previous setting."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved
