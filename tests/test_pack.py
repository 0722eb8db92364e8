"""A packed network (benchmarks/pack.py: the seeds of one setting as one network) computes what
its solo runs compute: in float64 on the CPU, K training steps of a pack equal K solo steps of
each run, for every variant of the registry, and so do the packed measured step's probes, ICS
and curvature."""

import sys

import pytest
import torch

from bnopt.plan.runs import RunConfig
from bnopt.plan.variants import DLN_VARIANTS, VARIANTS
from bnopt.training.data import load_dataset
from bnopt.training.loop import build_run
from bnopt.training.measure import lanczos_top, measure_curvature
from bnopt.training.objective import criterion
from bnopt.training.recorder import Recorder
from bnopt.training.steps import forward_backward, measure_after_step, plain_step
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from pack import (  # noqa: E402
    Pack,
    PackedRecorder,
    lanczos_top_runs,
    packed_curvature,
    packed_forward_backward,
    packed_measure_step,
    packed_step,
)

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)
STEPS = 3
# float64 throughout: a grouped convolution and a batched matrix product sum in another order
# than the solo layers, so the pack agrees to rounding (~1e-15 relative per operation), grown
# over a few steps; 1e-9 relative leaves six orders of margin and catches any real mixing.
# ATOL: for values that are rounding noise around 0 in both (a conv bias before BN, whose
# gradient is 0 in exact arithmetic, sits at ~1e-17).
RTOL, ATOL = 1e-9, 1e-14


def _cfg(model: str, variant: str, seed: int) -> RunConfig:
    if model == "simple_cnn":  # a hidden linear layer with its normaliser (BatchNorm1d, ...)
        return RunConfig(dataset="synthetic", model="simple_cnn", variant=variant, lr=0.05,
                         seed=seed, steps=STEPS, batch_size=16, width=0.25, momentum=0.9,
                         dtype="float64", device="cpu")
    if model == "dln":
        return RunConfig(dataset="dln", model="dln", variant=variant, lr=1e-3, seed=seed,
                         steps=STEPS, batch_size=100, momentum=0.9, weight_decay=1e-3,
                         dtype="float64", init="glorot", device="cpu")
    return RunConfig(dataset="synthetic", model="vgg", variant=variant, lr=0.05, seed=seed,
                     steps=STEPS, batch_size=16, width=0.125, momentum=0.9, weight_decay=1e-3,
                     dtype="float64", device="cpu")


def _solo(cfg, data, steps=STEPS):
    parts = build_run(cfg, data, CPU)
    rec = Recorder(steps, CPU, torch.float64, [])
    params = list(parts.model.parameters())
    for step in range(steps):
        x, y = next(parts.batches)
        plain_step(parts.model, parts.opt, params, rec, step, x, y)
    return parts, rec


def _pack(cfgs, data, steps=STEPS):
    pack = Pack(cfgs, data, CPU)
    rec = PackedRecorder(steps, len(cfgs), CPU, torch.float64)
    for step in range(steps):
        x, y = pack.next_batch()
        packed_step(pack.model, pack.opt, pack.params, rec, step, x, y)
    return pack, rec


def _close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = RTOL) -> None:
    scale = max(float(b.abs().max()), 1e-30)
    err = float((a - b).abs().max())
    assert err <= rtol * scale + ATOL, f"{what}: max |pack - solo| = {err:.3g} (scale {scale:.3g})"


CASES = ([("vgg", v) for v in VARIANTS] + [("dln", v) for v in DLN_VARIANTS]
         + [("simple_cnn", v) for v in ("noisy_batchnorm", "groupnorm", "weightnorm")])


@pytest.mark.parametrize("model,variant", CASES)
def test_a_pack_trains_as_its_solo_runs(model, variant):
    """Parameters, normalisers' running statistics and the per-step rows (loss, accuracy,
    gradient and parameter norms) of each run after K steps of SGD with momentum and weight
    decay: each run its own initialisation, batches and (noisy BN) noise stream."""
    torch.set_default_dtype(torch.float64)
    try:
        data = load_dataset("dln" if model == "dln" else "synthetic")
        cfgs = [_cfg(model, variant, s) for s in SEEDS]
        pack, prec = _pack(cfgs, data)
        for r, cfg in enumerate(cfgs):
            solo, rec = _solo(cfg, data)
            state = pack.run_state(r)
            for k, t in solo.model.state_dict().items():
                _close(state[k], t, f"run {r} {k}")
            rows = prec.buf[:, r]
            finite = ~torch.isnan(rec.buf)  # the DLN's accuracy is NaN in both
            assert torch.equal(finite, ~torch.isnan(rows))
            _close(rows[finite], rec.buf[finite], f"run {r} per-step rows")
        # the runs differ (otherwise equality above would prove little)
        assert not torch.allclose(pack.run_state(0)[solo.model.weight_names()[0]],
                                  pack.run_state(1)[solo.model.weight_names()[0]])
    finally:
        torch.set_default_dtype(torch.float32)


def _measured(model, variant):
    """One measured step after K plain steps, solo and packed: (pack results, solo results)."""
    data = load_dataset("dln" if model == "dln" else "synthetic")
    cfgs = [_cfg(model, variant, s) for s in SEEDS]
    sizes = torch.tensor([m * cfgs[0].lr for m in (0.5, 2.0, 4.0)], dtype=torch.float64)
    pack, _ = _pack(cfgs, data)
    x, y = pack.next_batch()
    packed_forward_backward(pack.model, pack.opt, x, y, len(cfgs))
    named = dict(pack.model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    grad = {n: p.grad.detach().clone() for n, p in named.items()}
    pack.opt.step()
    probes, ics = packed_measure_step(pack.model, x, y, len(cfgs), before, grad, sizes)
    curv = packed_curvature(pack.model, x, y, len(cfgs), before, grad, 12, 1e-4)
    solos = []
    for cfg in cfgs:
        solo, _ = _solo(cfg, data)
        m, opt = solo.model, solo.opt
        xs, ys = next(solo.batches)
        forward_backward(m, opt, xs, ys)
        b = {n: p.detach().clone() for n, p in m.named_parameters()}
        g = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        opt.step()
        out = measure_after_step(m, xs, ys, b, g, sizes)
        out["curvature"] = measure_curvature(m, criterion, xs, ys, b, g, 12, 1e-4)
        solos.append(out)
    return (probes, ics, curv), solos


@pytest.mark.parametrize("model,variant", [("vgg", "batchnorm"), ("vgg", "noisy_batchnorm"),
                                           ("vgg", "weightnorm"), ("vgg", "groupnorm"),
                                           ("dln", "l2")])
def test_the_packed_measured_step_is_each_runs_own(model, variant):
    """Probes along each run's own gradient (loss, gradient change, beta), ICS per run and layer
    (l2, cos, |G|) and the curvature per run block (lambda_max, batch sharpness, Lanczos
    iterations) equal the solo measured step's."""
    torch.set_default_dtype(torch.float64)
    try:
        (probes, ics, curv), solos = _measured(model, variant)
    finally:
        torch.set_default_dtype(torch.float32)
    for r, solo in enumerate(solos):
        _close(probes[:, r], solo["probes"], f"run {r} probes", 1e-8)
        finite = ~torch.isnan(solo["ics"])  # cos is NaN where a gradient is 0
        _close(ics[:, r][finite], solo["ics"][finite], f"run {r} ICS", 1e-8)
        c = solo["curvature"]
        assert curv[r]["iterations"] == c["iterations"], (r, curv[r]["iterations"], c["iterations"])
        _close(curv[r]["lambda_max"], c["lambda_max"], f"run {r} lambda_max", 1e-8)
        _close(curv[r]["batch_sharpness"], c["batch_sharpness"], f"run {r} sharpness", 1e-8)
    assert not torch.allclose(probes[:, 0], probes[:, 1])


def test_lanczos_per_block_finds_each_blocks_top_eigenvalue_and_stops_on_its_own():
    """Two symmetric blocks with known spectra: block 0 of rank 2 (top eigenvalue 200; its
    Krylov space is exhausted after a few products) and block 1 with eigenvalues 1..20. Each
    block's top eigenvalue is found, and each block stops where the solo iteration on that block
    alone stops (block 0 long before block 1): mixing would show, the tops differ by 10x."""
    gen = torch.Generator().manual_seed(0)
    p = 20
    q0, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    q1, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    e0 = torch.zeros(p, dtype=torch.float64)
    e0[:2] = torch.tensor([200.0, -3.0])
    e1 = torch.arange(1, p + 1, dtype=torch.float64)
    a = torch.stack([q0 @ torch.diag(e0) @ q0.T, q1 @ torch.diag(e1) @ q1.T])
    start = torch.randn(2, p, generator=gen, dtype=torch.float64)
    out = lanczos_top_runs(lambda v: torch.einsum("npq,nq->np", a, v), start, 20, 1e-10)
    assert abs(float(out[0]["lambda_max"]) - 200.0) < 1e-9
    assert abs(float(out[1]["lambda_max"]) - 20.0) < 1e-9
    assert out[0]["iterations"] <= 3 < out[1]["iterations"]
    for r in range(2):
        solo = lanczos_top(lambda v: a[r] @ v, start[r], 20, 1e-10)
        assert out[r]["iterations"] == solo["iterations"]
        s = start[r]  # batch sharpness: the start's Rayleigh quotient in its own block
        assert abs(float(out[r]["batch_sharpness"]) - float(s @ a[r] @ s / (s @ s))) < 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ["batchnorm", "noisy_batchnorm"])
def test_a_graphed_pack_computes_the_eager_pack(variant, monkeypatch):
    """The packed step captured by training's CudaGraphStep (two eager warm-up steps, a capture,
    replays) writes the per-step rows and reaches the parameters of the eager packed step, to
    float32 tolerance over 8 steps (deterministic cuDNN, IEEE fp32); noisy BN's per-run
    generators advance inside the graph as they do eagerly."""
    from bnopt.training.steps import CudaGraphStep

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    data = load_dataset("synthetic")
    cfgs = [RunConfig(dataset="synthetic", model="vgg", variant=variant, lr=0.05, seed=s,
                      steps=8, batch_size=32, width=0.25, momentum=0.9, device="cuda",
                      precision="fp32", channels_last=False) for s in SEEDS]
    results = []
    for graphed in (False, True):
        pack = Pack(cfgs, data, torch.device("cuda"))
        rec = PackedRecorder(8, len(cfgs), pack.device, torch.float32)
        step_fn = CudaGraphStep(pack.generators, step=packed_step) if graphed else packed_step
        for step in range(8):
            x, y = pack.next_batch()
            step_fn(pack.model, pack.opt, pack.params, rec, step, x, y)
        if graphed:
            assert step_fn.captures == 1 and step_fn.replays == 6  # steps 2-7
        results.append((rec.buf.cpu(), [p.detach().cpu() for p in pack.params]))
    (rows_e, params_e), (rows_g, params_g) = results
    torch.testing.assert_close(rows_g, rows_e, rtol=1e-4, atol=1e-5)
    for a, b in zip(params_g, params_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
