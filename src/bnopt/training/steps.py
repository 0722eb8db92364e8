"""One training step and what a measured step adds to it: the unmeasured step (eager
or replayed as one CUDA graph), the IEEE step that measures, and the measurements taken after
the optimizer steps. :mod:`bnopt.training.loop` runs them in its loop; benchmarks call them directly."""

from __future__ import annotations

import torch

from bnopt.plan.runs import RunConfig
from bnopt.training.measure import (
    measure_curvature,
    measure_step,
    probe_along_update,
    probe_moments,
    probe_shift,
)
from bnopt.training.objective import criterion
from bnopt.training.precision import ieee_fp32
from bnopt.training.recorder import Recorder


def forward_backward(model, opt, x, y, preacts: list | None = None):
    """The step's forward pass and loss, and its gradient in each parameter's ``.grad``."""
    out = model(x, preacts=preacts)
    loss = criterion(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return out, loss


def plain_step(model, opt, params, rec: Recorder, step, x, y) -> None:
    """An unmeasured training step: forward, loss, backward, the per-step row, the update."""
    out, loss = forward_backward(model, opt, x, y)
    with torch.no_grad():
        rec.step(step, loss, out, y, params)
    opt.step()


class CudaGraphStep:
    """:func:`plain_step` captured once as a CUDA graph and replayed: one launch instead of a
    few hundred kernels (under TF32 the step is launch-bound). Called like ``plain_step``.

    Every call copies the batch into static buffers and the step index into a device tensor
    (the per-step row's position). The first ``warmup`` calls run that very step eagerly on the
    side stream the graph is captured on (cuDNN autotuning, lazily loaded kernels, workspaces,
    the optimizer's momentum buffers), as PyTorch's whole-network capture recipe asks; the
    next call captures and every later one replays. Noisy BN's noise is drawn inside the graph
    from ``generator``, registered with the graph, so it advances by the same offsets as eager
    draws (and its saved state stays right for checkpoints). Eager measured steps in between
    replace ``.grad``; the graph keeps its own gradient buffers and puts them back before a
    replay. Build it after any checkpoint is loaded: the graph holds the parameter and
    optimizer tensors. ``step``: the step captured, called like ``plain_step`` (default
    ``plain_step``; ``benchmarks/pack.py`` captures a packed step, whose runs each draw noise
    from their own generator: ``generator`` may be a list). ``cuda``: the ``torch.cuda`` API it
    uses (``Stream``, ``current_stream``, ``stream``, ``CUDAGraph``, ``graph``); the tests
    pass a stand-in that records and replays, to check this logic on a CPU."""

    def __init__(self, generator: torch.Generator | list | None = None, warmup: int = 2,
                 step=None, cuda=torch.cuda):
        self.generators = (list(generator) if isinstance(generator, (list, tuple))
                           else [generator] if generator is not None else [])
        self.step_fn = step or plain_step
        self.warmup, self.eager, self.captures, self.replays = warmup, 0, 0, 0
        self.graph = self.side = None
        self.cuda = cuda

    def __call__(self, model, opt, params, rec, step: int, x, y) -> None:
        if self.side is None:
            self.side = self.cuda.Stream(x.device)
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)  # keeps the memory format
            self.step_t = torch.zeros(1, dtype=torch.long, device=x.device)
        self.x.copy_(x)
        self.y.copy_(y)
        self.step_t.fill_(step)
        if self.graph is None and self.eager < self.warmup:
            main = self.cuda.current_stream(x.device)
            self.side.wait_stream(main)
            with self.cuda.stream(self.side):
                self.step_fn(model, opt, params, rec, self.step_t, self.x, self.y)
            main.wait_stream(self.side)
            self.eager += 1
            return
        if self.graph is None:
            try:
                self._capture(model, opt, params, rec)
            except Exception as e:  # the RNG state is no longer usable: stop, say what to do
                raise RuntimeError(
                    f"capturing the training step as a CUDA graph failed at step {step} "
                    f"({type(e).__name__}: {e}). Set cuda_graph: false in the config to train "
                    "eagerly (the run resumes from its last checkpoint).") from e
        if params[0].grad is not self.grads[0]:  # an eager step since the last replay
            for p, g in zip(params, self.grads):
                p.grad = g
        self.graph.replay()
        self.replays += 1

    def _capture(self, model, opt, params, rec) -> None:
        graph = self.cuda.CUDAGraph()
        for g in self.generators:
            graph.register_generator_state(g)
        with self.cuda.graph(graph, stream=self.side):
            self.step_fn(model, opt, params, rec, self.step_t, self.x, self.y)
        self.grads = [p.grad for p in params]  # allocated in the graph's pool: keep them
        self.graph = graph
        self.captures += 1

def measure_after_step(model, x, y, before: dict, grad: dict, step_sizes=None,
                       vmap_probes: bool = False, hessian: tuple | None = None,
                       update_sizes=None, ics: bool | None = None) -> dict:
    """What a measured step records once the optimizer has stepped, from the step's batch,
    parameters ``before`` and gradient ``grad``: with ``step_sizes``, the probe rows (K, 3:
    loss, gradient change, beta); with ``ics`` (default: with ``step_sizes``), the ICS rows
    (L, 3: l2, cos, |G|); with ``hessian`` = (iterations, tolerance), the curvature row (4:
    lambda_max, batch sharpness, iterations, residual); with ``update_sizes`` (multiples of the
    update made), the probe rows along it (K, 4: distance, loss, gradient change, beta). Keys
    are the :class:`Recorder` kinds. Training and ``benchmarks/bench_step.py`` both call this."""
    out = {}
    ics = step_sizes is not None if ics is None else ics
    if step_sizes is not None or ics:
        pr, l2, cos = measure_step(model, criterion, x, y, before, grad, step_sizes, vmap_probes,
                                   ics=ics)
        if pr is not None:
            out["probes"] = torch.stack([pr["loss"], pr["grad_change"], pr["beta"]], 1)
        if ics:
            g_norms = torch.stack([torch.linalg.vector_norm(grad[w])
                                   for w in model.weight_names()])
            out["ics"] = torch.stack([l2, cos, g_norms], 1)
    if update_sizes is not None:
        up = probe_along_update(model, criterion, x, y, before, grad, update_sizes, vmap_probes)
        out["update_probes"] = torch.stack([up["distance"], up["loss"], up["grad_change"],
                                            up["beta"]], 1)
    if hessian is not None:
        c = measure_curvature(model, criterion, x, y, before, grad, *hessian)
        out["hessian"] = torch.cat([
            torch.stack([c["lambda_max"], c["batch_sharpness"]]).to(torch.float64),
            torch.tensor([c["iterations"], c["residual"]], dtype=torch.float64,
                         device=c["lambda_max"].device)])
    return out


def ieee_step(cfg: RunConfig, model, opt, rec: Recorder, step: int, x, y, measured: bool,
              curvature: bool, step_sizes, update_sizes=None, probe=None) -> None:
    """A step in IEEE arithmetic: a measured step, a curvature step, or the step after a
    measured one. A measured step takes what ``cfg.measures`` names: activation statistics of
    its own pass (with ``probe`` = (fixed probe batch, its noise generator), the per-unit moment
    shift the update makes on that batch; on the next step, the per-unit moment shift between
    the two steps' batches), probes (and those along the update, with ``update_sizes``) and ICS
    after the update; a curvature step, the curvature where ``cfg.measures`` has it. Every such
    step runs in IEEE arithmetic whatever it measures, so what a run trains does not depend on
    what it measures (on a GPU under TF32 too). Its autograd graph dies when this returns: a
    live one would keep the parameters' AccumulateGrad nodes on this stream, and a CUDA graph
    captured later would fail on them."""
    acts, probes, ics = (k in cfg.measures for k in ("activations", "probes", "ics"))
    curvature = curvature and "hessian" in cfg.measures
    preacts = [] if (measured and acts) or rec.pending_moments is not None else None
    named = dict(model.named_parameters())
    with ieee_fp32():
        out, loss = forward_backward(model, opt, x, y, preacts)
    after = (measured and (probes or ics)) or curvature  # measurements after the update
    with torch.no_grad():
        rec.step(step, loss, out, y, list(named.values()))
        if preacts is not None:
            rec.activations(step, preacts, measured,
                            cfg.hist_every > 0 and step % cfg.hist_every == 0)
        if after:  # the step's parameters and gradient: two flat copies
            before = {n: p.detach().clone() for n, p in named.items()}
            grad = {n: p.grad.detach().clone() for n, p in named.items()}
        shift = measured and acts and probe is not None
        if shift:  # the same inputs before and after the update
            with ieee_fp32():
                moments = probe_moments(model, *probe, halves=True)
    opt.step()
    if shift:
        with ieee_fp32():
            rec.add("probe_shift", step, probe_shift(moments, probe_moments(model, *probe)))
    if after:
        for kind, values in measure_after_step(
                model, x, y, before, grad, step_sizes if measured and probes else None,
                cfg.vmap_probes, (cfg.hessian_iters, cfg.hessian_tol) if curvature else None,
                update_sizes if measured and probes else None, ics=measured and ics).items():
            rec.add(kind, step, values)
