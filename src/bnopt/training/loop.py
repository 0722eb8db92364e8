"""One training run: a model variant on a dataset at one learning rate and seed.

The step loop keeps everything on the device: batches are gathered from the resident uint8
dataset, per-step metrics are written into a preallocated device buffer, and the host only syncs
once every ``log_every`` steps (to check for divergence and update the progress bar) and at
evaluations' flush. Row ``step`` of the per-step table describes the parameters after ``step``
updates, measured on the batch of step ``step`` (training mode); the eval table's row ``step``
describes the same parameters in eval mode (BN running statistics) on the full splits.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bnopt.analysis.outcome import training_outcome
from bnopt.plan.runs import RunConfig, checkpoint_problem
from bnopt.plan.tables import OPTIONAL_TABLES
from bnopt.running.io import atomic_path, write_json, write_parquet
from bnopt.running.provenance import code_version
from bnopt.training.data import BatchStream, Dataset, DeviceData
from bnopt.training.measure import layer_parameters
from bnopt.training.module_net import build_module_net, is_import_path
from bnopt.training.models import build_model
from bnopt.training.normalisers import set_noise_generator
from bnopt.training.objective import accuracy, criterion
from bnopt.training.precision import DTYPES, cudnn_autotune, matmul_precision
from bnopt.training.recorder import Recorder, to_device
from bnopt.training.steps import CudaGraphStep, ieee_step, plain_step


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
    """Independent seeds derived from the run seed: 1 noisy BN's noise, 2 the data order, 3 the
    fixed probe batch, 4 noisy BN's noise on the probe batch."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


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


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (run.json's ``device_name``; the benchmarks' ``device``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")


def run_model(cfg: RunConfig, dataset: Dataset, device: torch.device,
              channels_last: bool) -> torch.nn.Module:
    """The network of ``cfg`` for ``dataset``'s inputs and outputs, on ``device`` in
    ``cfg.dtype`` (NHWC with ``channels_last``), initialised from the global RNG."""
    if is_import_path(cfg.model):  # your own network (bnopt.training.module_net)
        model = build_module_net(cfg.model, cfg.variant, tuple(dataset.shape),
                                 dataset.num_outputs, cfg.model_kwargs,
                                 cfg.noisy_bn).to(device, DTYPES[cfg.dtype])
        return model.to(memory_format=torch.channels_last) if channels_last else model
    c, h = dataset.shape[0], (dataset.shape[1] if len(dataset.shape) > 1 else 1)
    model = build_model(cfg.model, cfg.variant, c, h, dataset.num_outputs, cfg.width,
                        cfg.noisy_bn, cfg.init, cfg.activation,
                        cfg.mlp_widths).to(device, DTYPES[cfg.dtype])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def train_run(cfg: RunConfig, dataset: Dataset, progress: bool = True,
              threads: int | None = None, checkpoint_path=None) -> RunResult:
    """Train one run; return its tables (see ``TABLES``) and run metadata.

    At the steps :meth:`RunConfig.measured_steps` names (every ``measure_every``-th, and
    ``measure_per_decade`` per decade) the step is *measured*: activation statistics of
    its own forward pass, then, after the optimizer step, landscape probes along the step's
    gradient and gradient ICS for every layer (those of them ``cfg.measures`` names), all inside :func:`bnopt.training.measure.probing` so
    that nothing the training sees changes (parameters, BN running statistics, optimizer state,
    RNG streams). Measured steps snapshot the parameters and gradient once (two flat copies);
    there is no copy of the model.

    With ``checkpoint_path`` and ``cfg.checkpoint_every``, the complete state of the loop
    (:class:`Run`) is saved (atomically) every ``checkpoint_every`` steps, and a run that
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


class Run:
    """A run's complete state, built from its config by :func:`build_run`: the model, its
    optimizer, noisy BN's noise generator, the data on the device and the batch stream, whether
    the model and the batches are NHWC (``channels_last``, decided once for the device), what
    the run has recorded (:class:`Recorder`) and where its loop stands (``next_step``,
    ``elapsed`` seconds). ``state_dict`` is the checkpoint (with the global torch RNG),
    ``load_state_dict`` restores it, ``save`` and ``resume`` write and read it."""

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 noise_gen: torch.Generator, data: DeviceData, batches: BatchStream,
                 channels_last: bool, rec: Recorder, probe: tuple):
        self.cfg, self.model, self.opt, self.noise_gen = cfg, model, opt, noise_gen
        self.data, self.batches, self.channels_last, self.rec = data, batches, channels_last, rec
        self.probe = probe  # (the fixed probe batch, its noisy-BN noise generator)
        self.next_step, self.elapsed = 0, 0.0

    def state_dict(self) -> dict:
        n = self.next_step
        return {"config": self.cfg.fingerprint(), "next_step": n,
                "elapsed": float(self.rec.host_t[n - 1]) if n else 0.0,
                "torch_rng": torch.get_rng_state(), "record": self.rec.state_dict(n),
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "noise_rng": self.noise_gen.get_state(), "batches": self.batches.state_dict(),
                "probe_rng": self.probe[1].get_state()}

    def load_state_dict(self, state: dict) -> None:
        device = self.rec.buf.device
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(to_device(state["optimizer"], device))
        self.noise_gen.set_state(state["noise_rng"])
        self.probe[1].set_state(state["probe_rng"])
        self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        self.next_step = self.rec.load_state_dict(state["record"])
        self.elapsed = state["elapsed"]

    def save(self, path) -> None:
        """Write the checkpoint atomically (a killed write leaves the previous one)."""
        with atomic_path(path) as tmp:
            torch.save(to_device(self.state_dict(), "cpu"), tmp)

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
        if set(state["record"]["rows"]) != set(Recorder.ROW_KINDS):
            print(f"ignoring {path}: it was written by another version of bnopt (it records "
                  f"{', '.join(sorted(state['record']['rows']))})", file=sys.stderr, flush=True)
            return
        self.load_state_dict(state)
        print(f"resumed from {path} at step {self.next_step}", file=sys.stderr, flush=True)


def build_run(cfg: RunConfig, dataset: Dataset, device: torch.device) -> Run:
    """A run at step 0, as training builds it: the model (initialised from ``cfg.seed``), its
    optimizer, noise and batch streams, and an empty record. The same seed gives the same
    initial weights in every variant and independent streams for the data order and the noise
    (:func:`derived_seed`)."""
    channels_last = cfg.uses_channels_last(device)  # the one place a run decides it
    dtype = DTYPES[cfg.dtype]
    data = DeviceData(dataset, device, dtype, channels_last)
    torch.manual_seed(cfg.seed)  # weights: same seed -> same conv/linear init in every variant
    model = run_model(cfg, dataset, device, channels_last)
    noise_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 1))
    set_noise_generator(model, noise_gen)
    data_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 2))
    opt = make_optimizer(cfg, model.parameters(), device)
    probe = (probe_batch(data, cfg.batch_size, derived_seed(cfg.seed, 3)),
             torch.Generator(device).manual_seed(derived_seed(cfg.seed, 4)))
    named = dict(model.named_parameters())
    rec = Recorder(cfg.steps, device, dtype,
                   [named[w].detach().clone() for w in layer_parameters(model)[1]],
                   cfg.units_per_layer)
    return Run(cfg, model, opt, noise_gen, data,
               data.train_batches(cfg.batch_size, data_gen, cfg.augment), channels_last, rec,
               probe)


def probe_batch(data: DeviceData, batch_size: int, seed: int) -> torch.Tensor:
    """The run's fixed probe batch: ``batch_size`` training inputs drawn once with their own
    seed (no stream of the run's is touched), normalised as training batches are, without
    augmentation. The moment shift of Claim 2 compares every layer's pre-activations on it
    before and after a measured step's update."""
    n = data.x_train.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size]
    return data.normalize(data.x_train[idx.to(data.x_train.device)])


def make_optimizer(cfg: RunConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """The run's optimizer: SGD (with ``momentum``) or Adam (``adam_betas``, ``adam_eps``; its
    weight decay is L2 added to the gradient, as SGD's). Adam on a GPU keeps its step count on
    the device (``capturable``), so its step can be captured in a CUDA graph."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
                                weight_decay=cfg.weight_decay,
                                capturable=device.type == "cuda")
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _train_run(cfg: RunConfig, dataset: Dataset, progress: bool, threads: int | None,
               checkpoint_path) -> RunResult:
    problem = checkpoint_problem(cfg.checkpoint_every, cfg.log_every)
    if checkpoint_path is not None and problem:
        raise ValueError(problem)
    t_setup = time.perf_counter()
    device = resolve_device(cfg.device)
    if threads:
        torch.set_num_threads(threads)
    dtype = DTYPES[cfg.dtype]
    run = build_run(cfg, dataset, device)
    model, opt, data, batches, rec = run.model, run.opt, run.data, run.batches, run.rec
    params = list(model.parameters())
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        run.resume(checkpoint_path)
    start = run.next_step
    # on the device once (a copy in the loop is a CUDA sync)
    step_sizes = torch.tensor([m * cfg.lr for m in cfg.probe_multipliers], dtype=dtype,
                              device=device)
    update_sizes = (torch.tensor(cfg.probe_multipliers, dtype=dtype, device=device)
                    if cfg.probe_update else None)  # multiples of the update made
    eval_steps = set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps}
    measure_steps = set(cfg.measured_steps())
    bar = progress_bar(cfg, start) if progress else None
    # unmeasured steps replay as one CUDA graph (built after resuming: it holds the tensors)
    graphed = graph_step(cfg, device, run.noise_gen)
    model.train()
    setup = time.perf_counter() - t_setup
    t0 = time.perf_counter() - run.elapsed
    done, diverged, flushed = cfg.steps, False, start
    for step in range(start, cfg.steps):
        if step in eval_steps:
            record_eval(rec, model, data, cfg, step)
        measured = step in measure_steps
        curvature = cfg.hessian_every > 0 and step % cfg.hessian_every == 0
        x, y = next(batches)
        # the steps measured, with curvature, and after a measured one run in IEEE arithmetic,
        # whatever cfg.measures takes of them: what a run trains is the same for any measures
        if measured or curvature or step - 1 in measure_steps:
            ieee_step(cfg, model, opt, rec, step, x, y, measured, curvature, step_sizes,
                      update_sizes, run.probe)
        else:  # a plain step, in the run's precision
            (graphed or plain_step)(model, opt, params, rec, step, x, y)
        rec.host_t[step] = time.perf_counter() - t0
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            bad = sync(rec, flushed, step + 1, bar)
            flushed = run.next_step = step + 1
            if bad is not None:
                done, diverged = bad, True
                break
            if (checkpoint_path is not None and cfg.checkpoint_every
                    and flushed % cfg.checkpoint_every == 0 and flushed < cfg.steps):
                run.save(checkpoint_path)
    if not diverged:
        record_eval(rec, model, data, cfg, cfg.steps)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()

    tables = rec.tables(done, cfg.lr, cfg.probe_multipliers)
    meta = _meta(cfg, run, dataset, device, tables, done, diverged, wall)
    meta["graph_replays"] = graphed.replays if graphed else 0  # this process's
    meta["setup_seconds"] = setup  # build, resume: before the first step (this process's)
    return RunResult(tables, meta)


def graph_step(cfg: RunConfig, device: torch.device, noise_gen) -> CudaGraphStep | None:
    """The graphed plain step of a run (``cuda_graph`` on a CUDA device), or None: eager."""
    return CudaGraphStep(noise_gen) if cfg.cuda_graph and device.type == "cuda" else None


def progress_bar(cfg: RunConfig, start: int):
    """The run's progress bar on stderr (the job's log), from step ``start``."""
    return tqdm(total=cfg.steps, initial=start, desc=f"{cfg.variant} lr={cfg.lr} seed={cfg.seed}",
                file=sys.stderr, mininterval=2.0, dynamic_ncols=False, ascii=True)


def _meta(cfg: RunConfig, run: Run, dataset: Dataset, device, tables: dict, done: int,
          diverged: bool, wall: float) -> dict:
    """run.json: the run's settings, how it ended, and where it ran."""
    final = tables["eval"].iloc[-1] if len(tables["eval"]) and not diverged else None
    steps = tables["steps"]
    return {
        **dataclasses.asdict(cfg),
        "probe_multipliers": list(cfg.probe_multipliers),
        "num_layers": len(run.model.layers),
        "steps_completed": int(done),
        "diverged": bool(diverged),
        "wall_seconds": wall,
        "final_train_loss": float(final["train_loss"]) if final is not None else math.nan,
        "final_train_acc": float(final["train_acc"]) if final is not None else math.nan,
        "final_test_acc": float(final["test_acc"]) if final is not None else math.nan,
        **training_outcome(steps["loss"].to_numpy(), steps["accuracy"].to_numpy(),
                           dataset.num_classes, diverged),
        "num_parameters": sum(p.numel() for p in run.model.parameters()),
        "device_type": device.type,  # where it trained ('device' may say auto)
        "device_name": device_name(device),
        "channels_last_used": run.channels_last,
        "torch_version": torch.__version__,
        "code_version": code_version(),  # which bnopt made it: version, and git revision
    }


def write_run(result: RunResult, paths: dict, meta_path) -> None:
    """Write each table to ``paths[name]`` atomically, then the metadata JSON last. A table
    of ``OPTIONAL_TABLES`` that ``paths`` does not name goes beside the metadata as
    ``<name>.parquet`` (empty where the run did not record it): the train rule declares it an
    output only where the config turns it on. run.json gets ``write_seconds``, the tables'."""
    folder = Path(meta_path).parent
    paths = {**{name: folder / f"{name}.parquet" for name in OPTIONAL_TABLES}, **paths}
    t = time.perf_counter()
    for name, df in result.tables.items():
        write_parquet(df, paths[name], metadata=result.meta)
    result.meta["write_seconds"] = time.perf_counter() - t  # the tables (run.json's own: ~0)
    write_json(result.meta, meta_path)
