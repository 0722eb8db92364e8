"""One training run: a model variant on a dataset at one learning rate and seed.

The step loop keeps everything on the device: batches are gathered from the resident uint8
dataset, per-step metrics are written into a preallocated device buffer, and the host only syncs
once every ``log_every`` steps (to check for divergence and update the progress bar) and at
evaluations' flush. Row ``step`` of the per-step table describes the parameters after ``step``
updates, measured on the batch of step ``step`` (training mode); the eval table's row ``step``
describes the same parameters in eval mode (BN running statistics) on the full splits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bnopt.config import DTYPE_NAMES, RunConfig  # noqa: F401 (RunConfig: re-exported)
from bnopt.data import BatchStream, Dataset, DeviceData
from bnopt.measure import (activation_summary,
                           channel_moments, histogram, ieee_fp32, layer_parameters,
                           matmul_precision, measure_curvature, measure_step, moment_shift,
                           total_norm)
from bnopt.models import build_model, set_noise_generator
from bnopt.outcome import training_outcome
from bnopt.tables import (ACTIVATION_COLUMNS, EVAL_COLUMNS, HESSIAN_COLUMNS,  # noqa: F401
                          HISTOGRAM_COLUMNS, ICS_COLUMNS, INIT_DISTANCE_COLUMNS, QUANTILES,
                          STEP_COLUMNS, TABLES)


@dataclass
class RunResult:
    tables: dict[str, pd.DataFrame]  # keyed like TABLES
    meta: dict

    @property
    def steps(self) -> pd.DataFrame:
        return self.tables["steps"]

    @property
    def evals(self) -> pd.DataFrame:
        return self.tables["eval"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("config device: cuda, but no CUDA device is visible to this job "
                           f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use "
                           "device: auto to fall back to the CPU, or check CUDA_VISIBLE_DEVICES.")
    return torch.device(name)


def derived_seed(seed: int, stream: int) -> int:
    """Independent seeds for the data order and the noisy-BN noise, derived from the run seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def criterion(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for class labels; for regression targets the squared loss
    ||f(x) - y||^2 summed over outputs, averaged (or summed) over samples."""
    if y.dtype == torch.long:
        return F.cross_entropy(out, y, reduction=reduction)
    per_sample = (out - y).square().sum(1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean accuracy for class labels; NaN for regression targets."""
    if y.dtype == torch.long:
        return (out.argmax(1) == y).float().mean()
    return torch.full((), float("nan"), device=out.device)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor,
             batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over (x, y) in eval mode; returns device scalars (no sync)."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    loss = torch.zeros((), device=x.device, dtype=dtype)
    correct = torch.zeros((), device=x.device, dtype=dtype)
    for i in range(0, x.shape[0], batch_size):
        out = model(data.normalize(x[i:i + batch_size]))
        yb = y[i:i + batch_size]
        loss += criterion(out, yb, reduction="sum")
        correct += accuracy(out, yb) * yb.shape[0]
    model.train(was_training)
    n = x.shape[0]
    return loss / n, correct / n


def _to(obj, device):
    """Move the tensors of nested lists/tuples/dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (run.json's ``device_name``; the benchmarks' ``device``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")


DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}  # config.DTYPE_NAMES as torch types


def run_model(cfg: RunConfig, dataset: Dataset, device: torch.device) -> torch.nn.Module:
    """The network of ``cfg`` for ``dataset``'s inputs and outputs, on ``device`` in
    ``cfg.dtype`` and memory format, initialised from the global RNG."""
    c, h = dataset.shape[0], (dataset.shape[1] if len(dataset.shape) > 1 else 1)
    model = build_model(cfg.model, cfg.variant, c, h, dataset.num_outputs, cfg.width,
                        cfg.noisy_bn, cfg.init).to(device, DTYPES[cfg.dtype])
    if cfg.uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return model


def train_run(cfg: RunConfig, dataset: Dataset, progress: bool = True,
              threads: int | None = None, checkpoint_path=None) -> RunResult:
    """Train one run; return its tables (see ``TABLES``) and run metadata.

    Every ``measure_every`` steps (0: never) the step is *measured*: activation statistics of
    its own forward pass, then, after the optimizer step, landscape probes along the step's
    gradient and gradient ICS for every layer, all inside :func:`bnopt.measure.probing` so
    that nothing the training sees changes (parameters, BN running statistics, optimizer state,
    RNG streams). Measured steps snapshot the parameters and gradient once (two flat copies);
    there is no copy of the model.

    With ``checkpoint_path`` and ``cfg.checkpoint_every``, the complete state of the loop
    (:class:`Loop`) is saved (atomically) every ``checkpoint_every`` steps, and a run that
    finds a checkpoint of the same configuration resumes from it; the result equals an
    uninterrupted run's (bitwise on the CPU), wall-clock columns aside. The caller removes the
    checkpoint once outputs exist.

    Precision: with ``cfg.precision='tf32'`` unmeasured steps may use TF32 tensor cores for
    convolutions and matrix products; evaluations use ``cfg.eval_precision``; measured steps
    (their own forward and backward, every probe and ICS pass), curvature steps and the step
    after each measured one (for the moment shift) always run in IEEE arithmetic of
    ``cfg.dtype``. TF32 exists only on GPUs: on the CPU every setting computes the same bits.
    On CUDA with ``cfg.cuda_graph`` the plain steps replay as one CUDA graph
    (:class:`CudaGraphStep`); measured, curvature and evaluation passes stay eager.
    """
    with matmul_precision(cfg.precision), cudnn_autotune(cfg.cudnn_benchmark):
        return _train_run(cfg, dataset, progress, threads, checkpoint_path)


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


def measure_after_step(model, x, y, before: dict, grad: dict, step_sizes=None,
                       vmap_probes: bool = False, hessian: tuple | None = None) -> dict:
    """What a measured step records once the optimizer has stepped, from the step's batch,
    parameters ``before`` and gradient ``grad``: with ``step_sizes``, the probe rows (K, 3:
    loss, gradient change, beta) and ICS rows (L, 3: l2, cos, |G|); with ``hessian`` =
    (iterations, tolerance), the curvature row (4: lambda_max, batch sharpness, iterations,
    residual). Keys are the :class:`Recorder` kinds. Training and ``benchmarks/bench_step.py``
    both call this."""
    out = {}
    if step_sizes is not None:
        pr, l2, cos = measure_step(model, criterion, x, y, before, grad, step_sizes, vmap_probes)
        out["probes"] = torch.stack([pr["loss"], pr["grad_change"], pr["beta"]], 1)
        g_norms = torch.stack([torch.linalg.vector_norm(grad[w]) for w in model.weight_names()])
        out["ics"] = torch.stack([l2, cos, g_norms], 1)
    if hessian is not None:
        c = measure_curvature(model, criterion, x, y, before, grad, *hessian)
        out["hessian"] = torch.cat([
            torch.stack([c["lambda_max"], c["batch_sharpness"]]).to(torch.float64),
            torch.tensor([c["iterations"], c["residual"]], dtype=torch.float64,
                         device=c["lambda_max"].device)])
    return out


class Recorder:
    """Everything a run records, kept on the device until the end: the per-step buffer (loss,
    accuracy, gradient and parameter norms), host wall-clock per step, measured rows as
    (step, device tensor) pairs per kind, the per-unit moments of the last measured step (for
    the moment shift) and the initial weights (for the init distance). ``state_dict`` /
    ``load_state_dict`` carry it through a checkpoint; ``tables`` turns it into the run's
    tables (see ``TABLES``)."""

    KINDS = ("eval", "init_distance", "probes", "ics", "activations", "activation_shift",
             "histograms", "hessian")  # as the tables they fill (the shift joins activations)
    # their names in checkpoints written before 2026-11-26, which still resume
    OLD_KINDS = {"init": "init_distance", "acts": "activations", "shift": "activation_shift",
                 "hist": "histograms"}

    def __init__(self, steps: int, device, dtype, w_init: list[torch.Tensor]):
        self.buf = torch.full((steps, 4), float("nan"), device=device, dtype=dtype)
        self.host_t = np.zeros(steps)
        self.rows: dict[str, list] = {k: [] for k in self.KINDS}
        self.pending_moments: list | None = None
        self.w_init = w_init
        self.quantiles = torch.tensor(QUANTILES, device=device)  # once: a copy in the loop syncs

    def add(self, kind: str, step: int, values: torch.Tensor) -> None:
        self.rows[kind].append((step, values))

    def step(self, step: int | torch.Tensor, loss, out, y, params) -> None:
        """The per-step row: the step's loss and accuracy, |gradient|, |parameters| (before the
        update). ``step`` may be a 1-element device tensor (a CUDA-graphed step's index)."""
        row = torch.stack([loss.detach(), accuracy(out, y),
                           total_norm(p.grad for p in params if p.grad is not None),
                           total_norm(params)])
        if isinstance(step, torch.Tensor):
            self.buf.index_copy_(0, step, row.unsqueeze(0).to(self.buf.dtype))
        else:
            self.buf[step] = row

    def activations(self, step: int, preacts: list, measured: bool, histograms: bool) -> None:
        """Moment shift from the previous measured step; at a measured step, statistics (and
        histograms) of its pre-activations, and its moments for the next step's shift."""
        moments = [channel_moments(z) for z in preacts]
        if self.pending_moments is not None:
            self.add("activation_shift", step - 1, torch.stack(
                [moment_shift(a, b) for a, b in zip(self.pending_moments, moments)]))
            self.pending_moments = None
        if measured:
            self.add("activations", step, torch.stack([activation_summary(z, self.quantiles) for z in preacts]))
            if histograms:
                self.add("histograms", step, torch.stack([histogram(z) for z in preacts]))
            self.pending_moments = moments

    def state_dict(self, upto: int) -> dict:
        return {"buf": self.buf[:upto], "host_t": self.host_t[:upto].copy(), "rows": self.rows,
                "pending_moments": self.pending_moments, "w_init": self.w_init}

    def load_state_dict(self, state: dict) -> int:
        """Restore from :meth:`state_dict`; returns the number of steps it holds."""
        device = self.buf.device
        start = len(state["host_t"])
        self.buf[:start] = state["buf"].to(device)
        self.host_t[:start] = state["host_t"]
        rows = {self.OLD_KINDS.get(k, k): v for k, v in state["rows"].items()}
        self.rows = _to(rows, device)
        self.pending_moments = _to(state["pending_moments"], device)
        self.w_init = _to(state["w_init"], device)
        return start

    def tables(self, done: int, lr: float, multipliers) -> dict[str, pd.DataFrame]:
        """The run's tables (``TABLES``) from its first ``done`` steps."""
        rows, rec = self.buf[:done].float().cpu().numpy(), self.rows  # float32 columns, any dtype
        tables = {
            "steps": pd.DataFrame({
                "step": np.arange(done, dtype=np.int64), "loss": rows[:, 0], "accuracy": rows[:, 1],
                "grad_norm": rows[:, 2], "param_norm": rows[:, 3],
                "lr": np.full(done, lr), "elapsed_s": self.host_t[:done]}),
            "eval": _rows(rec["eval"], done, EVAL_COLUMNS),
            "init_distance": _layer_rows(rec["init_distance"], done, INIT_DISTANCE_COLUMNS),
            "ics": _layer_rows(rec["ics"], done - 1, ICS_COLUMNS),
            "histograms": _histogram_rows(rec["histograms"], done - 1),
            "hessian": _rows(rec["hessian"], done - 1, HESSIAN_COLUMNS).astype({"iterations": "int64"}),
        }
        probes = _layer_rows(rec["probes"], done - 1, ["step", "point", "loss", "grad_change", "beta"])
        k = probes["point"].to_numpy() - 1
        mult = np.asarray(multipliers, dtype=np.float64)
        probes.insert(2, "multiplier", mult[k] if len(k) else np.zeros(0))
        probes.insert(3, "step_size", mult[k] * lr if len(k) else np.zeros(0))
        probes["point"] -= 1
        tables["probes"] = probes
        acts = _layer_rows(rec["activations"], done - 1, ACTIVATION_COLUMNS[:-2])
        shift = _layer_rows(rec["activation_shift"], done - 1, ["step", "layer", "mean_shift", "var_shift"])
        tables["activations"] = acts.merge(shift, on=["step", "layer"], how="left")
        return {k: tables[k][cols] for k, cols in TABLES.items()}


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
    from their own generator: ``generator`` may be a list)."""

    def __init__(self, generator: torch.Generator | list | None = None, warmup: int = 2,
                 step=None):
        self.generators = (list(generator) if isinstance(generator, (list, tuple))
                           else [generator] if generator is not None else [])
        self.step_fn = step or plain_step
        self.warmup, self.eager, self.captures, self.replays = warmup, 0, 0, 0
        self.graph = self.side = None

    def __call__(self, model, opt, params, rec, step: int, x, y) -> None:
        if self.side is None:
            self.side = torch.cuda.Stream(x.device)
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)  # keeps the memory format
            self.step_t = torch.zeros(1, dtype=torch.long, device=x.device)
        self.x.copy_(x)
        self.y.copy_(y)
        self.step_t.fill_(step)
        if self.graph is None and self.eager < self.warmup:
            main = torch.cuda.current_stream(x.device)
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
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
        graph = torch.cuda.CUDAGraph()
        for g in self.generators:
            graph.register_generator_state(g)
        with torch.cuda.graph(graph, stream=self.side):
            self.step_fn(model, opt, params, rec, self.step_t, self.x, self.y)
        self.grads = [p.grad for p in params]  # allocated in the graph's pool: keep them
        self.graph = graph
        self.captures += 1


class Loop:
    """The complete state of a run's step loop: the model, the optimizer, noisy BN's noise
    generator, the batch stream's position, the global torch RNG and everything recorded so
    far. ``state_dict`` is the checkpoint, ``load_state_dict`` restores it; ``next_step`` and
    ``elapsed`` say where the run stands."""

    def __init__(self, cfg: RunConfig, model, opt, noise_gen, batches, rec: Recorder):
        self.cfg, self.model, self.opt, self.noise_gen = cfg, model, opt, noise_gen
        self.batches, self.rec = batches, rec
        self.next_step, self.elapsed = 0, 0.0

    def state_dict(self) -> dict:
        n = self.next_step
        return {"config": self.cfg.fingerprint(), "next_step": n,
                "elapsed": float(self.rec.host_t[n - 1]) if n else 0.0,
                "torch_rng": torch.get_rng_state(), "record": self.rec.state_dict(n),
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "noise_rng": self.noise_gen.get_state(), "batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        device = self.rec.buf.device
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(_to(state["optimizer"], device))
        self.noise_gen.set_state(state["noise_rng"])
        self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        self.next_step = self.rec.load_state_dict(state["record"])
        self.elapsed = state["elapsed"]

    def save(self, path) -> None:
        """Write the checkpoint atomically (a killed write leaves the previous one)."""
        from bnopt.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save(_to(self.state_dict(), "cpu"), tmp)

    def resume(self, path) -> None:
        """Continue from the checkpoint at ``path`` if it was written with this run's config;
        an unreadable one or another config's is ignored (the run starts over), and said so."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # unreadable (another torch version, damaged disk): start over
            print(f"ignoring unreadable {path}: {e}", file=sys.stderr, flush=True)
            return
        if state.get("config") != self.cfg.fingerprint():
            print(f"ignoring {path}: it was written with another configuration",
                  file=sys.stderr, flush=True)
            return
        self.load_state_dict(state)
        print(f"resumed from {path} at step {self.next_step}", file=sys.stderr, flush=True)


def ieee_step(cfg: RunConfig, model, opt, rec: Recorder, step: int, x, y, measured: bool,
              curvature: bool, step_sizes) -> None:
    """A step in IEEE arithmetic: a measured step (activation statistics of its own pass, then
    probes and ICS after the update), a curvature step, or the step after a measured one (the
    per-unit moment shift). Its autograd graph dies when this returns: a live one would keep
    the parameters' AccumulateGrad nodes on this stream, and a CUDA graph captured later
    would fail on them."""
    preacts = [] if (measured or rec.pending_moments is not None) else None
    named = dict(model.named_parameters())
    with ieee_fp32():
        out, loss = forward_backward(model, opt, x, y, preacts)
    with torch.no_grad():
        rec.step(step, loss, out, y, list(named.values()))
        if preacts is not None:
            rec.activations(step, preacts, measured,
                            cfg.hist_every > 0 and step % cfg.hist_every == 0)
        if measured or curvature:  # the step's parameters and gradient: two flat copies
            before = {n: p.detach().clone() for n, p in named.items()}
            grad = {n: p.grad.detach().clone() for n, p in named.items()}
    opt.step()
    if measured or curvature:
        for kind, values in measure_after_step(
                model, x, y, before, grad, step_sizes if measured else None, cfg.vmap_probes,
                (cfg.hessian_iters, cfg.hessian_tol) if curvature else None).items():
            rec.add(kind, step, values)


def record_eval(rec: Recorder, model, data: DeviceData, cfg: RunConfig, step: int) -> None:
    """Evaluate (eval mode, the full splits, in ``eval_precision``) and record the distance of
    each weight layer from its initial value."""
    with matmul_precision(cfg.eval_precision):
        tl, ta = evaluate(model, data, data.x_train, data.y_train, cfg.eval_batch_size)
        vl, va = evaluate(model, data, data.x_test, data.y_test, cfg.eval_batch_size)
    rec.add("eval", step, torch.stack([tl, ta, vl, va]))
    named = dict(model.named_parameters())
    with torch.no_grad():
        rec.add("init_distance", step, torch.stack(
            [torch.stack([torch.linalg.vector_norm(named[w] - w0), torch.linalg.vector_norm(w0)])
             for w, w0 in zip(layer_parameters(model)[1], rec.w_init)]))


def sync(rec: Recorder, start: int, stop: int, bar) -> int | None:
    """The one host sync per ``log_every`` steps: the first step in [start, stop) whose loss is
    not finite (None if all are), and the progress bar's update."""
    block = rec.buf[start:stop, 0].cpu()
    bad = (~torch.isfinite(block)).nonzero()
    if bar is not None:
        span = rec.host_t[stop - 1] - (rec.host_t[start - 1] if start else 0)
        bar.set_postfix(loss=f"{float(block[-1]):.4f}",
                        steps_s=f"{(stop - start) / max(span, 1e-9):.1f}", refresh=False)
        bar.update(stop - start)
    return start + int(bad[0]) if len(bad) else None


@dataclass
class RunParts:
    """What a run trains, built from its config: the model, its optimizer, noisy BN's noise
    generator, the data on the device and the batch stream. :func:`build_run` makes them."""
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    noise_gen: torch.Generator
    data: DeviceData
    batches: BatchStream


def build_run(cfg: RunConfig, dataset: Dataset, device: torch.device) -> RunParts:
    """The model (initialised from ``cfg.seed``), optimizer, noise and batch streams of a run,
    as training builds them: the same seed gives the same initial weights in every variant and
    independent streams for the data order and the noise (:func:`derived_seed`)."""
    data = DeviceData(dataset, device, DTYPES[cfg.dtype], cfg.uses_channels_last(device))
    torch.manual_seed(cfg.seed)  # weights: same seed -> same conv/linear init in every variant
    model = run_model(cfg, dataset, device)
    noise_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 1))
    set_noise_generator(model, noise_gen)
    data_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 2))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    return RunParts(model, opt, noise_gen, data,
                    data.train_batches(cfg.batch_size, data_gen, cfg.augment))


def _train_run(cfg: RunConfig, dataset: Dataset, progress: bool, threads: int | None,
               checkpoint_path) -> RunResult:
    if checkpoint_path is not None and cfg.checkpoint_every and cfg.checkpoint_every % cfg.log_every:
        raise ValueError(f"checkpoint_every = {cfg.checkpoint_every} must be a multiple of "
                         f"log_every = {cfg.log_every} (checkpoints are taken at host syncs)")
    device = resolve_device(cfg.device)
    if threads:
        torch.set_num_threads(threads)
    dtype = DTYPES[cfg.dtype]
    run = build_run(cfg, dataset, device)
    model, opt, noise_gen, data, batches = (run.model, run.opt, run.noise_gen, run.data,
                                            run.batches)
    named = dict(model.named_parameters())
    params = list(named.values())
    rec = Recorder(cfg.steps, device, dtype,
                   [named[w].detach().clone() for w in layer_parameters(model)[1]])
    loop = Loop(cfg, model, opt, noise_gen, batches, rec)
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        loop.resume(checkpoint_path)
    start = loop.next_step
    # on the device once (a copy in the loop is a CUDA sync)
    step_sizes = torch.tensor([m * cfg.lr for m in cfg.probe_multipliers], dtype=dtype,
                              device=device)
    eval_steps = set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.variant} lr={cfg.lr} seed={cfg.seed}",
                   file=sys.stderr, mininterval=2.0, dynamic_ncols=False, ascii=True)
    # unmeasured steps replay as one CUDA graph (built after resuming: it holds the tensors)
    graphed = (CudaGraphStep(noise_gen) if cfg.cuda_graph and device.type == "cuda" else None)
    model.train()
    t0 = time.perf_counter() - loop.elapsed
    done, diverged, flushed = cfg.steps, False, start
    for step in range(start, cfg.steps):
        if step in eval_steps:
            record_eval(rec, model, data, cfg, step)
        measured = cfg.measure_every > 0 and step % cfg.measure_every == 0
        curvature = cfg.hessian_every > 0 and step % cfg.hessian_every == 0
        x, y = next(batches)
        if measured or curvature or rec.pending_moments is not None:
            ieee_step(cfg, model, opt, rec, step, x, y, measured, curvature, step_sizes)
        else:  # a plain step, in the run's precision
            (graphed or plain_step)(model, opt, params, rec, step, x, y)
        rec.host_t[step] = time.perf_counter() - t0
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            bad = sync(rec, flushed, step + 1, bar)
            flushed = loop.next_step = step + 1
            if bad is not None:
                done, diverged = bad, True
                break
            if (checkpoint_path is not None and cfg.checkpoint_every
                    and flushed % cfg.checkpoint_every == 0 and flushed < cfg.steps):
                loop.save(checkpoint_path)
    if not diverged:
        record_eval(rec, model, data, cfg, cfg.steps)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()

    tables = rec.tables(done, cfg.lr, cfg.probe_multipliers)
    meta = _meta(cfg, model, dataset, device, tables, done, diverged, wall)
    meta["graph_replays"] = graphed.replays if graphed else 0  # this process's
    return RunResult(tables, meta)


def _meta(cfg: RunConfig, model, dataset: Dataset, device, tables: dict, done: int,
          diverged: bool, wall: float) -> dict:
    """run.json: the run's settings, how it ended, and where it ran."""
    final = tables["eval"].iloc[-1] if len(tables["eval"]) and not diverged else None
    steps = tables["steps"]
    return {
        **dataclasses.asdict(cfg),
        "probe_multipliers": list(cfg.probe_multipliers),
        "num_layers": len(model.layers),
        "steps_completed": int(done),
        "diverged": bool(diverged),
        "wall_seconds": wall,
        "final_train_loss": float(final["train_loss"]) if final is not None else math.nan,
        "final_train_acc": float(final["train_acc"]) if final is not None else math.nan,
        "final_test_acc": float(final["test_acc"]) if final is not None else math.nan,
        **training_outcome(steps["loss"].to_numpy(), steps["accuracy"].to_numpy(),
                           dataset.num_classes, diverged),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "device_type": device.type,  # where it trained ('device' may say auto)
        "device_name": device_name(device),
        "channels_last_used": cfg.uses_channels_last(device),
        "torch_version": torch.__version__,
    }


def _rows(recs, last_step: int, columns) -> pd.DataFrame:
    """(step, vector) records -> one row per step, dropping steps after ``last_step``."""
    recs = [(s, v) for s, v in recs if s <= last_step]
    if not recs:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "step" else "float64") for c in columns})
    vals = torch.stack([v for _, v in recs]).double().cpu().numpy()
    df = pd.DataFrame(vals, columns=columns[1:])
    df.insert(0, "step", np.array([s for s, _ in recs], dtype=np.int64))
    return df


def _layer_rows(recs, last_step: int, columns) -> pd.DataFrame:
    """(step, (L, F) tensor) records -> long rows (step, layer 1..L, F values). The second
    column is named by ``columns[1]`` ('layer', or 'point' for probe points)."""
    recs = [(s, v) for s, v in recs if s <= last_step]
    if not recs:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("step", "layer", "point") else "float64")
                             for c in columns})
    vals = torch.stack([v for _, v in recs]).double().cpu().numpy()  # (S, L, F)
    s, n, f = vals.shape
    df = pd.DataFrame(vals.reshape(s * n, f), columns=columns[2:])
    df.insert(0, columns[1], np.tile(np.arange(1, n + 1, dtype=np.int64), s))
    df.insert(0, "step", np.repeat(np.array([st for st, _ in recs], dtype=np.int64), n))
    return df


def _histogram_rows(recs, last_step: int) -> pd.DataFrame:
    recs = [(s, v) for s, v in recs if s <= last_step]
    if not recs:
        return _layer_rows([], 0, HISTOGRAM_COLUMNS[:2] + HISTOGRAM_COLUMNS[3:]).assign(
            bin=pd.Series(dtype="int64"))[HISTOGRAM_COLUMNS]
    vals = torch.stack([v for _, v in recs]).double().cpu().numpy()  # (S, L, B, 3)
    s, n, b, _ = vals.shape
    return pd.DataFrame({
        "step": np.repeat(np.array([st for st, _ in recs], dtype=np.int64), n * b),
        "layer": np.tile(np.repeat(np.arange(1, n + 1, dtype=np.int64), b), s),
        "bin": np.tile(np.arange(b, dtype=np.int64), s * n),
        "left": vals[..., 0].ravel(), "right": vals[..., 1].ravel(), "count": vals[..., 2].ravel()})


def write_run(result: RunResult, paths: dict, meta_path) -> None:
    """Write each table to ``paths[name]`` atomically, then the metadata JSON last."""
    from bnopt.io import write_json, write_parquet

    for name, df in result.tables.items():
        write_parquet(df, paths[name], metadata=result.meta)
    write_json(result.meta, meta_path)
