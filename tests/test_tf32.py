"""TF32 emulated on the CPU (bnopt.studies.tf32): the rounding against values whose TF32 form is known,
convolutions and matrix products against operands exact in TF32, and the training loop's
precision switches (measured steps stay IEEE)."""
import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bnopt.plan.runs import RunConfig
from bnopt.studies.tf32 import emulate_tf32, round_tf32
from bnopt.training.data import fake_dataset
from bnopt.training.loop import train_run
from bnopt.training.precision import ieee_fp32, matmul_precision

ULP = 2.0 ** -10  # TF32's unit in the last place at 1.0


def test_round_tf32_keeps_ten_mantissa_bits_rounding_ties_to_even():
    x = torch.tensor([1 + ULP, 1 + ULP / 2, 1 + 3 * ULP / 2, 1 + ULP / 2 + 2.0 ** -20,
                      -(1 + 3 * ULP / 2), 2.0 ** -30 * (1 + ULP / 4), 0.0])
    want = [1 + ULP, 1.0, 1 + 2 * ULP, 1 + ULP, -(1 + 2 * ULP), 2.0 ** -30, 0.0]
    assert round_tf32(x).tolist() == want
    assert round_tf32(x, "truncate").tolist() == [1 + ULP, 1.0, 1 + ULP, 1.0, -(1 + ULP),
                                                 2.0 ** -30, 0.0]
    assert round_tf32(x, "away").tolist() == [1 + ULP, 1 + ULP, 1 + 2 * ULP, 1 + ULP,
                                             -(1 + 2 * ULP), 2.0 ** -30, 0.0]
    # what a cuBLAS product on an RTX 3090 gave for 1024.5 x 1 (pytorch/pytorch#53635): 1025
    tie = torch.tensor([1024.5, -1024.5, 1025.5])
    assert round_tf32(tie, "away").tolist() == [1025.0, -1025.0, 1026.0]
    assert round_tf32(tie, "nearest").tolist() == [1024.0, -1024.0, 1026.0]
    assert round_tf32(tie, "truncate").tolist() == [1024.0, -1024.0, 1025.0]
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), torch.finfo().max])
    r = round_tf32(special)
    assert r[:2].tolist() == [float("inf"), -float("inf")] and r[2].isnan()
    assert r[3] == float("inf")  # rounds up past the largest float32, as round-to-nearest does
    assert round_tf32(torch.ones(3, dtype=torch.float64) / 3).dtype == torch.float64  # untouched
    with pytest.raises(ValueError, match="rounding 'up'"):
        round_tf32(x, "up")
    # other widths, for a control: bfloat16's 7 bits round 1 + 2^-8 (a tie) to even
    assert round_tf32(torch.tensor([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8]), mantissa=7).tolist() == [
        1.0, 1 + 2.0 ** -6]
    with pytest.raises(ValueError, match="mantissa 23"):
        round_tf32(x, mantissa=23)


def test_round_tf32_error_is_at_most_half_a_tf32_ulp():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 1e3
    rel = ((round_tf32(x) - x) / x).abs().max()
    assert 2.0 ** -13 < rel <= 2.0 ** -11  # RNE to 11 significant bits: half an ulp at most
    assert ((round_tf32(x, "truncate") - x) / x).abs().max() < 2.0 ** -10
    away = round_tf32(x, "away")
    assert ((away - x) / x).abs().max() <= 2.0 ** -11
    y = torch.randn(1_000_000, generator=torch.Generator().manual_seed(1))
    differ = round_tf32(y, "away") != round_tf32(y)  # on exact ties with an even kept part only:
    assert 0 < differ.sum() < 200  # ~2^-14 of random floats; the dropped 13 bits are 1 then 0s
    assert ((y[differ].view(torch.int32) & 0x3FFF) == 0x1000).all()


def _off(exact: torch.Tensor) -> torch.Tensor:
    """``exact`` (TF32-exact) moved by a quarter of its TF32 ulp or less: a float32 tensor that
    rounds back to ``exact``."""
    off = exact + exact.abs() * 2.0 ** -13
    assert not torch.equal(off, exact) and torch.equal(round_tf32(off), exact)
    return off


LAYERS = {"conv": lambda: nn.Conv2d(2, 3, 3, padding=1), "linear": lambda: nn.Linear(6, 4)}
INPUTS = {"conv": (2, 2, 5, 5), "linear": (3, 6)}


def _forward_backward(layer, x, g):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    out.backward(g)
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    layer.zero_grad(set_to_none=True)
    return [out.detach()] + grads


@pytest.mark.parametrize("kind", LAYERS)
def test_emulation_rounds_the_operands_of_the_forward_and_both_backward_products(kind):
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(round_tf32(p))  # TF32-exact weights
    x = round_tf32(torch.randn(INPUTS[kind]))
    with ieee_fp32():
        g = round_tf32(torch.randn_like(layer(x)))
        exact = _forward_backward(layer, x, g)  # every operand TF32-exact: IEEE computes TF32's
        plain = _forward_backward(layer, _off(x), _off(g))
    with emulate_tf32(), matmul_precision("tf32"):
        emulated = _forward_backward(layer, _off(x), _off(g))
    # the products read the rounded operands, so they equal IEEE products of the exact ones;
    # the bias gradient, a plain sum of the incoming gradient, is no product: not rounded
    for name, e, r, p in zip(["out", "x", "weight", "bias"], emulated, exact, plain):
        torch.testing.assert_close(e, p if name == "bias" else r, rtol=1e-6, atol=1e-7,
                                   msg=name)
    assert not torch.equal(plain[0], exact[0])  # IEEE sees the extra bits


def test_emulation_is_off_where_the_switches_are_and_restores_the_functions():
    conv, lin = F.conv2d, F.linear
    torch.manual_seed(0)
    layer = LAYERS["conv"]()
    x = torch.randn(INPUTS["conv"])
    g = torch.randn(2, 3, 5, 5)
    with ieee_fp32():
        before = _forward_backward(layer, x, g)
        with emulate_tf32():
            inside = _forward_backward(layer, x, g)
    assert all(torch.equal(a, b) for a, b in zip(before, inside))  # bit for bit
    assert F.conv2d is conv and F.linear is lin
    with emulate_tf32(), matmul_precision("tf32"):
        rounded = _forward_backward(layer, x, g)
    assert not torch.equal(rounded[0], before[0])
    torch.testing.assert_close(rounded[0], before[0], rtol=2e-3, atol=1e-3)
    with pytest.raises(ValueError, match="rounding 'up'"), emulate_tf32("up"):
        pass


def test_an_emulated_tf32_run_departs_while_its_first_measured_step_stays_ieee():
    data = fake_dataset("cifar10", n_train=96, n_test=32, image_size=8)
    cfg = RunConfig(dataset="cifar10", model="simple_cnn", variant="batchnorm", lr=0.1, seed=0,
                    steps=6, batch_size=16, width=0.25, eval_every=6, log_every=3,
                    measure_every=3, hist_every=0, device="cpu", checkpoint_every=0,
                    precision="fp32")
    fp32 = train_run(cfg, data, progress=False)
    with emulate_tf32():
        tf32 = train_run(dataclasses.replace(cfg, precision="tf32"), data, progress=False)
        fp32_emulated = train_run(cfg, data, progress=False)
    # precision fp32 switches TF32 off around everything but evaluations (eval_precision)
    assert fp32_emulated.steps["loss"].equals(fp32.steps["loss"])
    # step 0 is measured (IEEE) and starts from the same weights: the same loss and probes
    assert tf32.steps["loss"].iloc[0] == fp32.steps["loss"].iloc[0]
    first = lambda r: r.tables["probes"][r.tables["probes"].step == 0]  # noqa: E731
    assert first(tf32)["loss"].tolist() == first(fp32)["loss"].tolist()
    # step 1 is IEEE too (the moment shift); step 2 is the first TF32 step, and it changes step 3
    assert tf32.steps["loss"].iloc[3] != fp32.steps["loss"].iloc[3]
    assert abs(tf32.steps["loss"].iloc[3] / fp32.steps["loss"].iloc[3] - 1) < 1e-2


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tf32_gpu(kind: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x`` times ``w`` on the GPU with TF32 allowed: a matrix product (cuBLAS) or the same
    product as a 1x1 convolution (cuDNN), back on the CPU."""
    x, w = x.cuda(), w.cuda()
    with matmul_precision("tf32"):
        if kind == "linear":
            y = F.linear(x, w)
        else:
            y = F.conv2d(x[:, :, None, None], w[:, :, None, None])[:, :, 0, 0]
    return y.cpu()


@CUDA
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_the_gpu_rounds_tf32_operands_as_an_emulated_rounding_does(kind):
    """A product with the identity returns its operand as the tensor cores read it, so the
    hardware's rounding shows bit for bit: it must be one of :data:`bnopt.studies.tf32.ROUNDINGS`."""
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    x[0, :4] = torch.tensor([1024.5, -1024.5, 1025.5, 1 + 2.0 ** -11])  # ties
    y = _tf32_gpu(kind, x, torch.eye(256))
    if torch.equal(y, x):
        pytest.skip(f"this GPU's {kind} kernel for a 256x256 product did not use TF32")
    modes = [m for m in ("nearest", "away", "truncate") if torch.equal(y, round_tf32(x, m))]
    assert modes, f"the GPU's TF32 reading of x matches no emulated rounding: {y[0, :4]}"
    print(f"{torch.cuda.get_device_name()}: {kind} rounds TF32 operands as {modes}")


@CUDA
def test_the_emulation_reproduces_a_gpu_tf32_product_up_to_summation_order():
    """Emulated TF32 and the hardware's round the same operands: they agree far more closely
    than either agrees with IEEE fp32 (what remains is the order of the fp32 sums)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(512, 256, generator=g), torch.randn(128, 256, generator=g)
    gpu = _tf32_gpu("linear", x, w).double()
    with ieee_fp32():
        ieee = F.linear(x, w).double()
    emulated = {m: F.linear(round_tf32(x, m), round_tf32(w, m)).double()
                for m in ("nearest", "away")}
    tf32_error = (gpu - ieee).norm()
    assert tf32_error > 1e-5 * ieee.norm()  # TF32 was used: the product is not IEEE's
    for m, e in emulated.items():
        assert (gpu - e).norm() < 0.05 * tf32_error, m
