"""The speed and precision options change how fast a run goes, not what it computes:
vectorised probes, channels-last, TF32 for unmeasured steps, float64."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call

import bnopt.training.loop as train_mod
import bnopt.training.steps as steps_mod
from bnopt.plan.runs import RunConfig
from bnopt.training.data import DeviceData
from bnopt.training.loop import train_run
from bnopt.training.measure import probe_along_gradient, probing
from bnopt.training.models import build_model
from bnopt.training.normalisers import set_noise_generator
from bnopt.training.objective import criterion
from bnopt.training.precision import matmul_precision

TINY = dict(dataset="synthetic", model="vgg", variant="batchnorm", lr=0.05, seed=0, steps=24,
            batch_size=64, width=0.125, eval_every=12, log_every=6, device="cpu",
            measure_every=6, hist_every=12, probe_multipliers=(0.5, 1.0, 4.0), dtype="float64")


def _tables(cfg, data):
    r = train_run(cfg, data, progress=False)
    r.tables["steps"] = r.tables["steps"].drop(columns="elapsed_s")  # wall clock
    return r.tables


@pytest.mark.parametrize("model,variant", [("vgg", "batchnorm"), ("vgg", "noisy_batchnorm"),
                                           ("vgg", "l1"), ("vgg", "linf"), ("vgg", "standard"),
                                           ("dln", "batchnorm")])
def test_vectorised_probes_equal_the_loop(model, variant):
    torch.manual_seed(0)
    if model == "dln":
        net = build_model("dln", variant, 10, 1, 10).double()
        x, y = torch.randn(200, 10, dtype=torch.float64), torch.randn(200, 10, dtype=torch.float64)
    else:
        net = build_model("vgg", variant, 1, 8, 10, width=0.125).double()
        x, y = torch.randn(32, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (32,))
    set_noise_generator(net, torch.Generator().manual_seed(1))
    criterion(net(x), y).backward()  # draws the step's noise, which the probes reuse
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    steps = [1e-3, 0.02, 0.1]
    with probing(net):
        loop = probe_along_gradient(lambda p: criterion(functional_call(net, p, (x,)), y),
                                    params, grad, steps)
        vec = probe_along_gradient(lambda p: criterion(functional_call(net, p, (x,)), y),
                                   params, grad, steps, vectorize=True)
    for k in loop:
        torch.testing.assert_close(vec[k], loop[k], rtol=1e-10, atol=0)
    assert all(torch.equal(p, params[n]) for n, p in net.named_parameters())


def test_vectorised_probes_leave_the_run_identical(synthetic):
    base = _tables(RunConfig(**TINY), synthetic)
    vec = _tables(RunConfig(**{**TINY, "vmap_probes": True}), synthetic)
    for name in base:
        if name == "probes":
            pd.testing.assert_frame_equal(vec[name], base[name], rtol=1e-10, atol=0)
        else:  # the trajectory and every other measurement are bitwise the same
            pd.testing.assert_frame_equal(vec[name], base[name], check_exact=True)


def test_vmap_probes_with_channels_last_is_refused_before_training(synthetic):
    """The pair crashes inside vmap on CUDA (PyTorch NYI); refused before any step is taken."""
    with pytest.raises(ValueError, match="vmap_probes = true together with channels_last"):
        train_run(RunConfig(**{**TINY, "vmap_probes": True, "channels_last": True}), synthetic,
                  progress=False)


def test_the_channels_last_decision_reaches_model_batches_and_record(synthetic):
    """build_run decides NHWC once for the run's device (auto: off on the CPU, where it is
    mixed and changes results at rounding) and the model's weights, the batches and run.json
    all follow that one decision."""
    from bnopt.training.loop import build_run

    def nhwc(t):  # channels are the innermost dimension (stride 1)
        return t.stride(1) == 1 and t.shape[1] > 1

    assert RunConfig(**TINY).channels_last == "auto"  # the schema's default
    for setting, want in (("auto", False), (True, True), (False, False)):
        cfg = RunConfig(**{**TINY, "dtype": "float32", "channels_last": setting})
        run = build_run(cfg, synthetic, torch.device("cpu"))
        conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
        x, _ = next(run.batches)
        assert (run.channels_last, nhwc(conv.weight), nhwc(x)) == (want, want, want), setting
        meta = train_run(dataclasses.replace(cfg, steps=2, eval_every=2, log_every=2),
                         synthetic, progress=False).meta
        assert meta["channels_last_used"] is want
    with pytest.raises(ValueError, match="channels_last = 'yes'"):
        RunConfig(**{**TINY, "channels_last": "yes"})


def test_auto_never_puts_vmap_probes_on_nhwc():
    """PyTorch's vmap cannot batch BatchNorm over NHWC on CUDA (a crash at the first measured
    step): auto, which turns NHWC on for TF32 runs on a GPU, stays off with vmap_probes."""
    cfg = RunConfig(**{**TINY, "dtype": "float32", "precision": "tf32"})
    assert cfg.uses_channels_last("cuda")
    assert not dataclasses.replace(cfg, vmap_probes=True).uses_channels_last("cuda")


def test_channels_last_gives_the_same_run(synthetic):
    base = _tables(RunConfig(**TINY), synthetic)
    cl = _tables(RunConfig(**{**TINY, "channels_last": True}), synthetic)
    for name in base:  # another memory layout sums in another order: equal to rounding
        pd.testing.assert_frame_equal(cl[name], base[name], rtol=1e-8, atol=1e-12)


def test_device_data_casts_and_lays_out_batches(synthetic):
    d = DeviceData(synthetic, torch.device("cpu"), torch.float64, channels_last=True)
    x = d.normalize(d.x_train[:8])
    assert x.dtype == torch.float64 and x.is_contiguous(memory_format=torch.channels_last)
    x32 = DeviceData(synthetic, torch.device("cpu")).normalize(d.x_train[:8])
    torch.testing.assert_close(x.float(), x32)


def test_float64_run_keeps_float64_throughout(synthetic):
    r = train_run(RunConfig(**{**TINY, "steps": 6, "eval_every": 6}), synthetic, progress=False)
    r32 = train_run(RunConfig(**{**TINY, "steps": 6, "eval_every": 6, "dtype": "float32"}),
                    synthetic, progress=False)
    # the same start to float32 accuracy, but not bitwise: the run really is float64 (later
    # steps are not compared: a BN trajectory amplifies rounding differences)
    np.testing.assert_allclose(r.steps["loss"][:2], r32.steps["loss"][:2], rtol=1e-5)
    assert not np.array_equal(r.steps["loss"], r32.steps["loss"])


@pytest.mark.parametrize("precision, eval_precision", [("tf32", "fp32"), ("fp32", "tf32")])
def test_measured_passes_run_in_ieee_fp32_under_tf32(synthetic, monkeypatch, precision,
                                                     eval_precision):
    """precision tf32 lets only unmeasured training steps use TF32: a measured step (its own
    pass, probes, ICS) and the step after it (moment shift) are IEEE. Evaluations follow
    eval_precision, whatever the training steps do."""
    seen = []

    def recording(out, y, reduction="mean"):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                     reduction))
        return criterion(out, y, reduction)

    monkeypatch.setattr(steps_mod, "criterion", recording)  # training steps
    monkeypatch.setattr(train_mod, "criterion", recording)  # evaluations
    cfg = RunConfig(**{**TINY, "steps": 10, "measure_every": 5, "hist_every": 5, "eval_every": 100,
                       "log_every": 5, "precision": precision, "eval_precision": eval_precision,
                       "dtype": "float32"})
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    train_run(cfg, synthetic, progress=False)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    tf32 = [s for s in seen if s[:2] == (True, True)]
    ieee = [s for s in seen if s[:2] == (False, False)]
    assert len(tf32) + len(ieee) == len(seen)
    steps = [s for s in seen if s[2] == "mean"]
    # steps 2, 3, 4, 7, 8, 9 are neither measured (0, 5) nor right after one (1, 6)
    assert sum(s[:2] == (True, True) for s in steps) == (6 if precision == "tf32" else 0)
    evals = [s for s in seen if s[2] == "sum"]  # at steps 0 and 10, training and test split
    assert len(evals) >= 4 and all(s[:2] == ((eval_precision == "tf32"),) * 2 for s in evals)


def test_gpu_only_speed_options_leave_a_cpu_run_bitwise_the_same(synthetic):
    """precision, eval_precision, cudnn_benchmark and cuda_graph only touch CUDA: on the CPU a
    run with all of them off is the same, bit for bit, as one with all on (the defaults), and
    the global flags are restored."""
    cfg = RunConfig(**{**TINY, "steps": 8, "measure_every": 4, "hist_every": 4, "eval_every": 4,
                       "log_every": 4, "dtype": "float32"})
    flag = torch.backends.cudnn.benchmark
    on = train_run(dataclasses.replace(cfg, precision="tf32", eval_precision="tf32",
                                       cudnn_benchmark=not flag, cuda_graph=True),
                   synthetic, progress=False)
    assert torch.backends.cudnn.benchmark is flag
    assert on.meta["graph_replays"] == 0
    off = train_run(dataclasses.replace(cfg, precision="fp32", eval_precision="fp32",
                                        cudnn_benchmark=flag, cuda_graph=False),
                    synthetic, progress=False)
    for name in ("steps", "eval", "probes", "ics"):
        a, b = on.tables[name].drop(columns="elapsed_s", errors="ignore"), off.tables[name]
        pd.testing.assert_frame_equal(a, b.drop(columns="elapsed_s", errors="ignore"))


def test_precision_names_are_checked():
    with pytest.raises(ValueError, match="precision"):
        with matmul_precision("bf16"):
            pass
    with pytest.raises(ValueError, match="dtype"):
        train_run(RunConfig(**{**TINY, "dtype": "float16"}), None, progress=False)


def _one_measured_step(device, variant, vectorize, channels_last):
    """Loss, gradient, probes and ICS of one measured SGD step of a fixed float32 network on a
    fixed batch, computed on ``device`` (the same parameters and data on every device)."""
    from bnopt.training.measure import layer_parameters, measure_step
    from bnopt.training.precision import ieee_fp32

    torch.manual_seed(0)
    net = build_model("vgg", variant, 3, 32, 10, width=0.125)  # 32x32: signal reaches the top
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    net, x, y = net.to(device), x.to(device), y.to(device)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with ieee_fp32():
        loss = criterion(net(x), y)
        loss.backward()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    torch.optim.SGD(net.parameters(), lr=0.01).step()
    steps = torch.tensor([0.005, 0.02, 0.04], device=device)
    probes, l2, cos = measure_step(net, criterion, x, y, before, grad, steps, vectorize)
    g_norms = torch.stack([grad[n].norm() for n in layer_parameters(net)[1]])
    out = {"step_loss": loss.detach(), "l2": l2, "cos": cos, "g_norms": g_norms, **probes,
           "grad": torch.cat([g.flatten() for g in grad.values()])}
    return {k: v.detach().cpu().double() for k, v in out.items()}


def _assert_steps_close(a, b, rtol=2e-3):
    """Float32 agreement, each quantity against the scale of what it is computed from: the
    step's loss, the probes (loss, gradient change, beta at each point) and layer gradient norms
    relative to themselves; the whole gradient as a vector (the
    bias of a conv before BN has a gradient of pure rounding noise); ICS l2 = ||G - G'||
    relative to ||G|| (a difference of two nearly equal gradients); cosines absolutely. The
    tolerance is what float32 rounding gives between two memory formats on one CPU (ICS l2 of
    the BN net's layer 2: 1.4e-2 at ||G|| = 17, 8e-4 relative)."""
    for k in ("step_loss", "loss", "g_norms", "grad_change", "beta"):
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=0, msg=k)
    assert (a["grad"] - b["grad"]).norm() <= rtol * b["grad"].norm()
    assert ((a["l2"] - b["l2"]).abs() <= rtol * b["g_norms"]).all(), (a["l2"], b["l2"])
    torch.testing.assert_close(a["cos"], b["cos"], rtol=0, atol=rtol, msg="cos")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ["standard", "batchnorm"])
@pytest.mark.parametrize("options", [{}, {"vectorize": True}, {"channels_last": True}])
def test_a_measured_step_on_the_gpu_equals_the_cpu_one(variant, options):
    """Well-posed: the same parameters and batch give the same loss, gradient, probes and ICS on
    both devices to float32 tolerance (IEEE fp32 on both, although PyTorch's own default would
    let cuDNN use TF32), with each speed option. A whole BN trajectory is not compared: BN's
    training is chaotic, and float32 rounding differences between devices grow to 1e-1 within
    10 steps (measured on an H100), as they would between two CPUs."""
    opts = {"vectorize": False, "channels_last": False, **options}
    cpu = _one_measured_step("cpu", variant, **opts)
    gpu = _one_measured_step("cuda", variant, **opts)
    _assert_steps_close(gpu, cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_the_gpu_starts_where_the_cpu_one_does(synthetic):
    """Only what is well-posed across devices: step 0 (the same initial parameters, drawn on
    the CPU from the seed, and the same full batch, in IEEE fp32 on both) gives the same loss,
    accuracy and gradient and parameter norms, and so does the step-0 evaluation; the parameter
    norm stays within 1e-3 over the run (12 steps at lr 0.05 move it by a few hundredths). Later
    per-step values are not compared: float32 rounding differences between devices grow, and
    the He-initialised standard net's full-batch grad_norm departs from the CPU's by 1e-3 at
    step 4 and 6% at step 9 (H200, issue 20), as it would between two CPUs."""
    cfg = RunConfig(**{**TINY, "variant": "standard", "dtype": "float32", "steps": 12,
                       "batch_size": 1024, "eval_batch_size": 1024, "precision": "fp32",
                       "eval_precision": "fp32"})
    cpu = _tables(cfg, synthetic)
    gpu = _tables(dataclasses.replace(cfg, device="cuda"), synthetic)
    assert len(gpu["steps"]) == len(cpu["steps"]) == 12
    assert np.isfinite(gpu["steps"].loss).all()
    first = ["loss", "accuracy", "grad_norm", "param_norm"]
    pd.testing.assert_frame_equal(gpu["steps"].loc[:0, first], cpu["steps"].loc[:0, first],
                                  rtol=1e-4, atol=0)
    pd.testing.assert_frame_equal(gpu["eval"].loc[:0], cpu["eval"].loc[:0], rtol=1e-4, atol=0)
    np.testing.assert_allclose(gpu["steps"].param_norm, cpu["steps"].param_norm, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("vectorize", [False, True])
def test_a_measured_step_never_syncs_the_gpu(vectorize):
    """Probes, ICS and activation statistics stay on the device: CUDA's sync debug mode raises
    on any host synchronisation (an .item(), a device-to-host copy, a pageable upload)."""
    from bnopt.training.measure import (
        QUANTILES,
        activation_summary,
        channel_moments,
        histogram,
        measure_step,
    )

    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = build_model("vgg", "noisy_batchnorm", 3, 8, 10, width=0.125).to(dev)
    set_noise_generator(net, torch.Generator(dev).manual_seed(0))
    x, y = torch.randn(32, 3, 8, 8, device=dev), torch.randint(0, 10, (32,), device=dev)
    steps, q = torch.tensor([0.01, 0.05], device=dev), torch.tensor(QUANTILES, device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    preacts = []
    criterion(net(x, preacts=preacts), y).backward()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    opt.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        measure_step(net, criterion, x, y, before, grad, steps, vectorize)
        for z in preacts:
            activation_summary(z, q), channel_moments(z), histogram(z)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("variant", ["standard", "batchnorm"])
@pytest.mark.parametrize("options", [{"vectorize": True}, {"channels_last": True}])
def test_a_measured_step_is_the_same_with_each_speed_option_on_the_cpu(variant, options):
    """The CPU half of the GPU comparison above: each speed option gives the plain step's
    numbers to the tolerance that test allows between devices."""
    plain = _one_measured_step("cpu", variant, vectorize=False, channels_last=False)
    fast = _one_measured_step("cpu", variant, **{"vectorize": False, "channels_last": False, **options})
    _assert_steps_close(fast, plain)
