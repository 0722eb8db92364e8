"""TensorFloat-32 emulated on the CPU: what ``precision: tf32`` does to a run, studied where no
GPU is at hand (``benchmarks/tf32_fidelity.py --emulate``).

On Ampere and later GPUs a float32 convolution or matrix product with TF32 enabled reads its
two operands rounded to TF32 (float32's 8-bit exponent, 10 of its 23 mantissa bits), multiplies
them exactly and accumulates in float32; the backward pass's two products (gradient of the
input, gradient of the weight) do the same. :func:`emulate_tf32` makes ``F.conv2d`` and
``F.linear`` do exactly that on the CPU, whenever PyTorch's own switch for them is on
(``torch.backends.cudnn.allow_tf32`` for convolutions, ``torch.backends.cuda.matmul.allow_tf32``
for matrix products). Those are the switches :func:`bnopt.training.measure.matmul_precision` sets, so the
training loop runs unchanged: plain steps under ``precision: tf32`` and evaluations under
``eval_precision: tf32`` are rounded, and measured and curvature steps (inside
:func:`bnopt.training.measure.ieee_fp32`) are not.

An emulation, not the hardware: the accumulation order is the CPU's, and cuDNN may pick
algorithms (Winograd, FFT) that round elsewhere. How cuDNN and cuBLAS kernels turn fp32 operands
into TF32 is not documented. The tensor cores' MMA instruction ignores the 13 low mantissa bits
of what it is given (``'truncate'``, toward zero) unless the kernel converts first with PTX's
``cvt.rna.tf32.f32``: to nearest, ties away from zero (``'away'``). A cuBLAS product on an
RTX 3090 (2021) returned 1024.5 x 1 as 1025 (pytorch/pytorch#53635): a tie rounded away from
zero, neither truncated nor to even; and PyTorch's notes were corrected from "truncated" to
"rounded" by NVIDIA's own maintainer (pytorch/pytorch#49625). Hopper's kernels are unchecked.
``'nearest'`` (ties to even) differs from ``'away'`` only on exact ties, about one random float
in 16,000. Use the emulation to ask whether TF32's rounding *can* change a result, and confirm
on a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

ROUNDINGS = ("nearest", "away", "truncate")
TF32_MANTISSA = 10  # explicit mantissa bits of TF32 (float32 has 23)


def round_tf32(x: torch.Tensor, rounding: str = "nearest",
               mantissa: int = TF32_MANTISSA) -> torch.Tensor:
    """``x`` (float32) rounded to TF32's 10 mantissa bits (or ``mantissa`` bits, 1..22), as
    float32: to nearest with ties to even (``'nearest'``) or away from zero (``'away'``, PTX's
    ``cvt.rna``), or toward zero (``'truncate'``). Infinities and NaNs pass unchanged; other
    dtypes are returned as they are."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r}: choose one of {', '.join(ROUNDINGS)}")
    if not 1 <= mantissa <= 22:
        raise ValueError(f"mantissa {mantissa}: keep 1 to 22 of float32's 23 bits")
    if x.dtype != torch.float32:
        return x
    dropped = 23 - mantissa
    bits = x.contiguous().view(torch.int32)
    if rounding == "nearest":  # add half an ulp of the result, minus one unless the kept lsb is odd
        bits = bits + ((1 << (dropped - 1)) - 1 + ((bits >> dropped) & 1))
    elif rounding == "away":  # sign and magnitude: half an ulp more magnitude, then truncate
        bits = bits + (1 << (dropped - 1))
    out = (bits & ~((1 << dropped) - 1)).view(torch.float32)
    return torch.where(torch.isfinite(x), out, x)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, how):
        xr, wr = round_tf32(x, *how), round_tf32(w, *how)
        ctx.save_for_backward(xr, wr)
        ctx.conf = stride, padding, dilation, groups, how, b is not None
        return _ORIGINAL["conv2d"](xr, wr, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        xr, wr = ctx.saved_tensors
        stride, padding, dilation, groups, how, has_bias = ctx.conf
        gr = round_tf32(g, *how)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(xr.shape, wr, gr, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(xr, wr.shape, gr, stride, padding, dilation, groups)
        if has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, how):
        xr, wr = round_tf32(x, *how), round_tf32(w, *how)
        ctx.save_for_backward(xr, wr)
        ctx.conf = how, b is not None
        return _ORIGINAL["linear"](xr, wr, b)

    @staticmethod
    def backward(ctx, g):
        xr, wr = ctx.saved_tensors
        how, has_bias = ctx.conf
        gr = round_tf32(g, *how)
        gx = gr @ wr if ctx.needs_input_grad[0] else None
        gw = (gr.reshape(-1, gr.shape[-1]).T @ xr.reshape(-1, xr.shape[-1])
              if ctx.needs_input_grad[1] else None)
        gb = g.reshape(-1, g.shape[-1]).sum(0) if has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


_ORIGINAL = {"conv2d": F.conv2d, "linear": F.linear}


def _emulated(x, w) -> bool:
    """Whether TF32 would round this call: float32 operands (on the CPU; a GPU has the real
    thing)."""
    return x.dtype == w.dtype == torch.float32 and x.device.type == "cpu"


@contextlib.contextmanager
def emulate_tf32(rounding: str = "nearest", mantissa: int = TF32_MANTISSA):
    """Inside this block, on the CPU, float32 ``F.conv2d`` and ``F.linear`` (and so
    ``nn.Conv2d``, ``nn.Linear`` and ``functional_call`` on them) compute as TF32 tensor cores
    do whenever PyTorch's TF32 switch for them is on: operands of the forward product and of
    both backward products rounded to TF32 (:func:`round_tf32`), float32 accumulation. With the
    switches off (``bnopt.training.measure.ieee_fp32``) every call is the original one, bit for bit.
    ``mantissa`` other than 10 rounds to that many bits instead: a control that tells an effect
    of TF32's rounding size from one of any perturbation. Restores the originals on exit. Not
    thread-safe (it replaces module attributes)."""
    round_tf32(torch.ones(1), rounding, mantissa)  # checks both
    how = (rounding, mantissa)

    def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        if torch.backends.cudnn.allow_tf32 and _emulated(x, w):
            return _Conv2d.apply(x, w, b, stride, padding, dilation, groups, how)
        return _ORIGINAL["conv2d"](x, w, b, stride, padding, dilation, groups)

    def linear(x, w, b=None):
        if torch.backends.cuda.matmul.allow_tf32 and _emulated(x, w):
            return _Linear.apply(x, w, b, how)
        return _ORIGINAL["linear"](x, w, b)

    F.conv2d, F.linear = conv2d, linear
    try:
        yield
    finally:
        F.conv2d, F.linear = _ORIGINAL["conv2d"], _ORIGINAL["linear"]
