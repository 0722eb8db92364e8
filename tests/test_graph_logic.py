"""The CUDA-graph step's logic, checked on any machine: a stand-in for ``torch.cuda`` records a
captured step instead of running it and replays the record, as a CUDA graph does, so warm-up,
capture, replay, the static buffers a replay reads, the gradient buffers it owns, the generator
it registers and the training loop's choice of step are tested where CI runs (tests/
test_cuda_graph.py runs the real graph on a GPU)."""
import contextlib

import numpy as np
import pytest
import torch

import bnopt.training.loop as train_mod
from bnopt.plan.runs import RunConfig
from bnopt.training.loop import graph_step, train_run
from bnopt.training.steps import CudaGraphStep, plain_step


class FakeGraph:
    def __init__(self):
        self.generators, self.recorded, self.replays = [], None, 0

    def register_generator_state(self, generator):
        self.generators.append(generator)

    def replay(self):
        self.replays += 1
        self.recorded()


class FakeStream:
    def wait_stream(self, other):
        pass


class FakeCuda:
    """What CudaGraphStep uses of torch.cuda. Inside ``graph(...)`` a step wrapped by
    :meth:`recording` is recorded (with the very argument objects it was given), not run."""

    def __init__(self):
        self.capturing, self.graphs = None, []

    def Stream(self, device):  # noqa: N802 (torch.cuda's name)
        return FakeStream()

    def current_stream(self, device):
        return FakeStream()

    def stream(self, s):
        return contextlib.nullcontext()

    def CUDAGraph(self):  # noqa: N802
        g = FakeGraph()
        self.graphs.append(g)
        return g

    @contextlib.contextmanager
    def graph(self, g, stream=None):
        self.capturing = g
        try:
            yield
        finally:
            self.capturing = None

    def recording(self, step_fn):
        def step(*args):
            if self.capturing is not None:
                self.capturing.recorded = lambda: step_fn(*args)
                return
            step_fn(*args)
        return step


def test_warm_up_then_one_capture_then_replays_of_the_latest_batch():
    """``warmup`` calls run eagerly, the next captures and replays, every later one replays;
    each replay reads the batch and step index of its own call (copied into the static
    buffers the capture saw)."""
    cuda, seen = FakeCuda(), []
    graphed = CudaGraphStep(warmup=2, cuda=cuda, step=cuda.recording(
        lambda model, opt, params, rec, step, x, y: seen.append((int(step), x.tolist()))))
    p = torch.nn.Parameter(torch.zeros(1))
    for i in range(6):
        graphed(None, None, [p], None, i, torch.tensor([float(i)]), torch.tensor([i]))
    assert seen == [(i, [float(i)]) for i in range(6)]
    assert (graphed.eager, graphed.captures, graphed.replays) == (2, 1, 4)
    assert len(cuda.graphs) == 1 and cuda.graphs[0].replays == 4


def test_a_replay_gets_the_graphs_own_gradient_buffers_back():
    """An eager (measured) step between replays replaces ``.grad``; the graph wrote into the
    gradient tensors it captured, so those are put back before it replays."""
    cuda, grads_at_replay = FakeCuda(), []
    p = torch.nn.Parameter(torch.zeros(2))

    def step(model, opt, params, rec, s, x, y):
        grads_at_replay.append(params[0].grad)

    graphed = CudaGraphStep(warmup=0, cuda=cuda, step=cuda.recording(step))
    p.grad = captured = torch.ones(2)
    graphed(None, None, [p], None, 0, torch.zeros(1), torch.zeros(1))
    p.grad = torch.full((2,), 5.0)  # what an eager step leaves
    graphed(None, None, [p], None, 1, torch.zeros(1), torch.zeros(1))
    assert all(g is captured for g in grads_at_replay) and p.grad is captured


def test_the_noise_generator_is_registered_with_the_graph():
    cuda = FakeCuda()
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    graphed = CudaGraphStep(gens, warmup=0, cuda=cuda, step=cuda.recording(lambda *a: None))
    graphed(None, None, [torch.nn.Parameter(torch.zeros(1))], None, 0, torch.zeros(1),
            torch.zeros(1))
    assert cuda.graphs[0].generators == gens


def test_a_failed_capture_says_how_to_train_without_the_graph():
    def fails(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    graphed = CudaGraphStep(warmup=0, cuda=FakeCuda(), step=fails)
    with pytest.raises(RuntimeError, match=r"step 7 .*cuda_graph: false"):
        graphed(None, None, [torch.nn.Parameter(torch.zeros(1))], None, 7, torch.zeros(1),
                torch.zeros(1))


def test_only_a_cuda_run_with_cuda_graph_gets_a_graphed_step():
    cfg = RunConfig(dataset="synthetic", model="vgg", variant="standard", lr=0.1, seed=0)
    gen = torch.Generator()
    assert isinstance(graph_step(cfg, torch.device("cuda"), gen), CudaGraphStep)
    assert graph_step(cfg, torch.device("cpu"), gen) is None
    off = RunConfig(**{**cfg.__dict__, "cuda_graph": False})
    assert graph_step(off, torch.device("cuda"), gen) is None


CFG = dict(dataset="synthetic", model="vgg", variant="noisy_batchnorm", lr=0.05, seed=0,
           steps=16, batch_size=32, width=0.125, momentum=0.9, eval_every=8, log_every=4,
           device="cpu", measure_every=8, hist_every=8, probe_multipliers=(0.5, 2.0),
           cuda_graph=True)


@pytest.fixture
def recorded_graph(monkeypatch):
    """Training's graphed step, on the CPU, with the recording stand-in for torch.cuda."""
    made, real = [], train_mod.graph_step

    def fake_graph_step(cfg, device, noise_gen):
        if real(cfg, torch.device("cuda"), noise_gen) is None:  # as if on a GPU
            return None
        cuda = FakeCuda()
        made.append(CudaGraphStep(noise_gen, cuda=cuda, step=cuda.recording(plain_step)))
        return made[-1]

    monkeypatch.setattr(train_mod, "graph_step", fake_graph_step)
    return made


@pytest.mark.parametrize("optimizer", [{}, {"optimizer": "adam", "momentum": 0.0, "lr": 1e-3}],
                         ids=["sgd", "adam"])
def test_the_loop_replays_plain_steps_only_and_computes_the_eager_run(synthetic, recorded_graph,
                                                                     optimizer):
    """In a 16-step run measured at 0 and 8, steps 1 and 9 are the IEEE steps after a measured
    one and the rest plain: two warm up eagerly, the next is captured, and 10 replay. The
    replayed steps (batch, step index, noise, gradient buffers, the optimizer's state) compute
    the eager run bitwise, with SGD and with Adam."""
    cfg = {**CFG, **optimizer}
    graphed = train_run(RunConfig(**cfg), synthetic, progress=False)
    (step,) = recorded_graph
    assert (step.eager, step.captures, graphed.meta["graph_replays"]) == (2, 1, 10)
    eager = train_run(RunConfig(**{**cfg, "cuda_graph": False}), synthetic, progress=False)
    assert eager.meta["graph_replays"] == 0
    for name in graphed.tables:  # everything but the wall clock
        g, e = (t.tables[name].drop(columns=["elapsed_s"], errors="ignore")
                for t in (graphed, eager))
        np.testing.assert_array_equal(g.to_numpy(), e.to_numpy(), err_msg=name)


def test_a_resumed_run_rebuilds_its_graph(synthetic, recorded_graph, tmp_path):
    """Resumed from its step-8 checkpoint, a run builds a new graph after the checkpoint's
    state is back (10 and 11 warm up, 12 is captured, 12-15 replay) and continues bitwise."""
    ck = tmp_path / "checkpoint.pt"
    cfg = RunConfig(**{**CFG, "checkpoint_every": 8})
    first = train_run(cfg, synthetic, progress=False, checkpoint_path=ck)
    resumed = train_run(cfg, synthetic, progress=False, checkpoint_path=ck)
    assert resumed.meta["graph_replays"] == 4 and recorded_graph[-1].captures == 1
    np.testing.assert_array_equal(resumed.steps.drop(columns="elapsed_s").to_numpy(),
                                  first.steps.drop(columns="elapsed_s").to_numpy())
