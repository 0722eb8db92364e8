"""The unmeasured training step replayed as one CUDA graph (config cuda_graph) computes what the
eager step computes. These tests need a CUDA device; on the CPU the option does nothing (the
bitwise check is in test_speed_options.py)."""

import numpy as np
import pytest
import torch

import bnopt.training.steps as steps_mod
from bnopt.plan.runs import RunConfig
from bnopt.training.loop import train_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# 16 steps, measured at 0 and 8: steps 1 and 9 are the IEEE steps after a measured one, 2-7 and
# 10-15 plain; of those the first two warm up eagerly, 4 is captured and 4-7, 10-15 replay.
CFG = dict(dataset="synthetic", model="vgg", variant="batchnorm", lr=0.05, seed=0, steps=16,
           batch_size=64, width=0.25, momentum=0.9, eval_every=8, log_every=4, device="cuda",
           measure_every=8, hist_every=8, probe_multipliers=(0.5, 2.0), dtype="float32",
           precision="fp32", eval_precision="fp32", cudnn_benchmark=False, cuda_graph=True)
REPLAYS = 10
PER_STEP = ["loss", "accuracy", "grad_norm", "param_norm"]


@pytest.fixture(autouse=True)
def _deterministic_cudnn(monkeypatch):
    """cuDNN's default backward algorithms accumulate with atomics: two eager runs of the same
    config already part at 1e-4 by step 2 and chaotically after. Deterministic ones make the
    graph-against-eager comparison well-posed."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)


def _run(synthetic, **change):
    return train_run(RunConfig(**{**CFG, **change}), synthetic, progress=False)


@pytest.mark.parametrize("variant", ["standard", "batchnorm", "noisy_batchnorm"])
def test_a_graphed_run_computes_the_eager_run(synthetic, variant, monkeypatch):
    """Same kernels, launched by one graph: the per-step rows (written by the graph at a device
    step index), the evaluations and the measured step after the replays (probes, ICS) agree
    with the eager run's to float32 tolerance over the first steps (the horizon over which a
    BN trajectory is well-posed); noisy BN draws the same noise inside the graph. The graph is
    captured once and replayed for every plain step after the warm-up."""
    captures = []
    real = steps_mod.CudaGraphStep._capture
    monkeypatch.setattr(steps_mod.CudaGraphStep, "_capture",
                        lambda self, *a: (captures.append(1), real(self, *a)))
    graphed = _run(synthetic, variant=variant)
    eager = _run(synthetic, variant=variant, cuda_graph=False)
    assert len(captures) == 1 and graphed.meta["graph_replays"] == REPLAYS
    assert eager.meta["graph_replays"] == 0
    g, e = graphed.steps, eager.steps
    assert np.isfinite(g[PER_STEP].to_numpy()).all()
    np.testing.assert_allclose(g.loc[:9, PER_STEP], e.loc[:9, PER_STEP], rtol=1e-4, atol=1e-6)
    ge, ee = graphed.evals.set_index("step"), eager.evals.set_index("step")
    np.testing.assert_allclose(ge.loc[8], ee.loc[8], rtol=1e-3)
    gp, ep = graphed.tables["probes"], eager.tables["probes"]
    at8 = lambda t: t[t.step == 8][["loss", "grad_change"]].to_numpy()  # noqa: E731
    np.testing.assert_allclose(at8(gp), at8(ep), rtol=1e-3)


def test_a_graphed_adam_run_computes_the_eager_run(synthetic):
    """Adam (capturable on CUDA: its step count lives on the device) replays in the graph as
    its eager steps run."""
    adam = {"optimizer": "adam", "momentum": 0.0, "lr": 1e-3, "variant": "batchnorm"}
    graphed, eager = _run(synthetic, **adam), _run(synthetic, **adam, cuda_graph=False)
    assert graphed.meta["graph_replays"] == REPLAYS
    np.testing.assert_allclose(graphed.steps.loc[:9, PER_STEP], eager.steps.loc[:9, PER_STEP],
                               rtol=1e-4, atol=1e-6)


def test_a_graphed_run_resumes_with_a_rebuilt_graph(synthetic, tmp_path):
    """A run resumed from its step-8 checkpoint rebuilds the graph (the saved noise generator,
    momentum buffers and batch order come back first) and continues as the run that wrote it."""
    ck = tmp_path / "checkpoint.pt"
    cfg = {"variant": "noisy_batchnorm", "checkpoint_every": 8}
    first = train_run(
        RunConfig(**{**CFG, **cfg}), synthetic, progress=False, checkpoint_path=ck)
    assert ck.exists()  # written at step 8; train_run leaves it for its caller
    resumed = train_run(RunConfig(**{**CFG, **cfg}), synthetic, progress=False,
                        checkpoint_path=ck)
    assert resumed.meta["graph_replays"] == 4  # steps 12-15: 10, 11 warm up
    np.testing.assert_allclose(resumed.steps.loc[8:13, PER_STEP], first.steps.loc[8:13, PER_STEP],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(resumed.steps.loc[:7, PER_STEP], first.steps.loc[:7, PER_STEP],
                               rtol=0, atol=0)


def test_graph_with_channels_last_and_tf32_trains(synthetic):
    """The combination the defaults choose on a GPU (tf32, cuDNN autotuning, channels-last):
    replays happen and the run learns as the eager one does (a looser check: TF32 rounding)."""
    fast = dict(precision="tf32", cudnn_benchmark=True, channels_last=True, steps=48,
                eval_every=16, measure_every=16, hist_every=16)
    graphed = _run(synthetic, **fast)
    eager = _run(synthetic, **fast, cuda_graph=False)
    assert graphed.meta["graph_replays"] == 48 - 3 * 2 - 2
    assert np.isfinite(graphed.steps["loss"]).all()
    assert graphed.steps["loss"].iloc[-8:].mean() < graphed.steps["loss"].iloc[:8].mean()
    # TF32 with autotuned algorithms: the first TF32 step (2) agrees to TF32 rounding (the
    # batch accuracy can flip a sample, so it is not compared)
    close = ["loss", "grad_norm", "param_norm"]
    np.testing.assert_allclose(graphed.steps.loc[:2, close], eager.steps.loc[:2, close], rtol=1e-2)
