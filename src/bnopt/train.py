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

from bnopt.aggregate import training_outcome
from bnopt.config import VMAP_CHANNELS_LAST, RunConfig  # noqa: F401 (RunConfig: re-exported)
from bnopt.data import Dataset, DeviceData
from bnopt.measure import (PRECISIONS, QUANTILES, activation_summary,
                           channel_moments, histogram, ieee_fp32, layer_parameters,
                           matmul_precision, measure_curvature, measure_step, moment_shift,
                           total_norm)
from bnopt.models import build_model, set_noise_generator

STEP_COLUMNS = ["step", "loss", "accuracy", "grad_norm", "param_norm", "lr", "elapsed_s"]
EVAL_COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc"]
PROBE_COLUMNS = ["step", "point", "multiplier", "step_size", "loss", "grad_change", "beta"]
ICS_COLUMNS = ["step", "layer", "l2", "cos", "grad_norm"]
QUANTILE_COLUMNS = [f"q{round(q * 100):02d}" for q in QUANTILES]
ACTIVATION_COLUMNS = ["step", "layer", "mean", "std", *QUANTILE_COLUMNS, "mean_shift", "var_shift"]
HISTOGRAM_COLUMNS = ["step", "layer", "bin", "left", "right", "count"]
INIT_DISTANCE_COLUMNS = ["step", "layer", "distance", "init_norm"]
HESSIAN_COLUMNS = ["step", "lambda_max", "batch_sharpness", "iterations", "residual"]
# Every per-run table, by file stem: steps.parquet, eval.parquet, ...
TABLES = {"steps": STEP_COLUMNS, "eval": EVAL_COLUMNS, "probes": PROBE_COLUMNS,
          "ics": ICS_COLUMNS, "activations": ACTIVATION_COLUMNS, "histograms": HISTOGRAM_COLUMNS,
          "init_distance": INIT_DISTANCE_COLUMNS, "hessian": HESSIAN_COLUMNS}


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


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run_model(cfg: RunConfig, dataset: Dataset, device: torch.device) -> torch.nn.Module:
    """The network of ``cfg`` for ``dataset``'s inputs and outputs, on ``device`` in
    ``cfg.dtype`` and memory format, initialised from the global RNG."""
    c, h = dataset.shape[0], (dataset.shape[1] if len(dataset.shape) > 1 else 1)
    model = build_model(cfg.model, cfg.variant, c, h, dataset.num_outputs, cfg.width,
                        cfg.noisy_bn, cfg.init).to(device, DTYPES[cfg.dtype])
    if cfg.channels_last:
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

    With ``checkpoint_path`` and ``cfg.checkpoint_every``, the complete state of the loop is
    saved (atomically) every ``checkpoint_every`` steps, and a run that finds a checkpoint of the
    same configuration resumes from it; the result equals an uninterrupted run's (bitwise on
    the CPU), wall-clock columns aside. The caller removes the checkpoint once outputs exist.

    Precision: with ``cfg.precision='tf32'`` unmeasured steps may use TF32 tensor cores for
    convolutions and matrix products, and so may evaluations; measured steps (their own forward
    and backward, every probe and ICS pass) and the step after each (for the moment shift)
    always run in IEEE arithmetic of ``cfg.dtype``.
    """
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision = {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype = {cfg.dtype!r}: choose one of {', '.join(DTYPES)}")
    if cfg.vmap_probes and cfg.channels_last:
        raise ValueError(VMAP_CHANNELS_LAST)
    with matmul_precision(cfg.precision):
        return _train_run(cfg, dataset, progress, threads, checkpoint_path)


def _train_run(cfg: RunConfig, dataset: Dataset, progress: bool, threads: int | None,
               checkpoint_path) -> RunResult:
    if checkpoint_path is not None and cfg.checkpoint_every and cfg.checkpoint_every % cfg.log_every:
        raise ValueError(f"checkpoint_every = {cfg.checkpoint_every} must be a multiple of "
                         f"log_every = {cfg.log_every} (checkpoints are taken at host syncs)")
    device = resolve_device(cfg.device)
    if threads:
        torch.set_num_threads(threads)
    dtype = DTYPES[cfg.dtype]
    data = DeviceData(dataset, device, dtype, cfg.channels_last)
    torch.manual_seed(cfg.seed)  # weights: same seed -> same conv/linear init in every variant
    model = run_model(cfg, dataset, device)
    noise_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 1))
    set_noise_generator(model, noise_gen)
    data_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 2))
    named = dict(model.named_parameters())
    params = list(named.values())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    batches = data.train_batches(cfg.batch_size, data_gen, cfg.augment)

    n_layers = len(model.layers)
    _, weight_names = layer_parameters(model)
    w_init = [named[w].detach().clone() for w in weight_names]
    # constants the measured steps need, on the device once (a copy in the loop is a CUDA sync)
    step_sizes = torch.tensor([m * cfg.lr for m in cfg.probe_multipliers], dtype=dtype,
                              device=device)
    quantiles = torch.tensor(QUANTILES, device=device)

    buf = torch.full((cfg.steps, 4), float("nan"), device=device, dtype=dtype)  # loss, acc, |g|, |w|
    host_t = np.zeros(cfg.steps)
    eval_steps = set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps}
    # measured rows: (step, device tensor) pairs, converted once at the end
    rec: dict[str, list] = {k: [] for k in ("eval", "init", "probes", "ics", "acts", "shift", "hist",
                                            "hessian")}
    pending_moments = None  # per-unit moments of the previous measured step, for the shift

    def run_eval(step: int):
        tl, ta = evaluate(model, data, data.x_train, data.y_train, cfg.eval_batch_size)
        vl, va = evaluate(model, data, data.x_test, data.y_test, cfg.eval_batch_size)
        rec["eval"].append((step, torch.stack([tl, ta, vl, va])))
        with torch.no_grad():
            rec["init"].append((step, torch.stack(
                [torch.stack([torch.linalg.vector_norm(named[w] - w0), torch.linalg.vector_norm(w0)])
                 for w, w0 in zip(weight_names, w_init)])))

    start, elapsed_before = 0, 0.0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        try:
            ck = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as e:  # unreadable (another torch version, damaged disk): start over
            print(f"ignoring unreadable {checkpoint_path}: {e}", file=sys.stderr, flush=True)
            ck = {"config": None}
        if ck["config"] == cfg.fingerprint():
            model.load_state_dict(ck["model"])
            opt.load_state_dict(_to(ck["optimizer"], device))
            noise_gen.set_state(ck["noise_rng"])
            batches.load_state_dict(ck["batches"])
            torch.set_rng_state(ck["torch_rng"])
            start, elapsed_before = ck["next_step"], ck["elapsed"]
            buf[:start] = ck["buf"].to(device)
            host_t[:start] = ck["host_t"]
            rec = _to(ck["rec"], device)
            pending_moments = _to(ck["pending_moments"], device)
            w_init = _to(ck["w_init"], device)
            print(f"resumed from {checkpoint_path} at step {start}", file=sys.stderr, flush=True)
        else:
            print(f"ignoring {checkpoint_path}: it was written with another configuration",
                  file=sys.stderr, flush=True)

    def save_checkpoint(next_step: int):
        from bnopt.io import atomic_path

        state = {"config": cfg.fingerprint(), "next_step": next_step,
                 "elapsed": float(host_t[next_step - 1]), "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "noise_rng": noise_gen.get_state(),
                 "batches": batches.state_dict(), "torch_rng": torch.get_rng_state(),
                 "buf": buf[:next_step], "host_t": host_t[:next_step].copy(), "rec": rec,
                 "pending_moments": pending_moments, "w_init": w_init}
        with atomic_path(checkpoint_path) as tmp:
            torch.save(_to(state, "cpu"), tmp)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.variant} lr={cfg.lr} seed={cfg.seed}",
                   file=sys.stderr, mininterval=2.0, dynamic_ncols=False, ascii=True)
    model.train()
    t0 = time.perf_counter() - elapsed_before
    done, diverged, flushed = cfg.steps, False, start
    for step in range(start, cfg.steps):
        if step in eval_steps:
            run_eval(step)
        measured = cfg.measure_every > 0 and step % cfg.measure_every == 0
        curvature = cfg.hessian_every > 0 and step % cfg.hessian_every == 0
        preacts = [] if (measured or pending_moments is not None) else None
        x, y = next(batches)
        # measured and curvature steps, and the step after a measured one (the moment shift),
        # run in IEEE arithmetic
        with ieee_fp32() if (preacts is not None or curvature) else contextlib.nullcontext():
            out = model(x, preacts=preacts)
            loss = criterion(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with torch.no_grad():
            buf[step] = torch.stack([loss.detach(), accuracy(out, y),
                                     total_norm(p.grad for p in params if p.grad is not None),
                                     total_norm(params)])
            if preacts is not None:
                moments = [channel_moments(z) for z in preacts]
                if pending_moments is not None:
                    rec["shift"].append((step - 1, torch.stack(
                        [moment_shift(a, b) for a, b in zip(pending_moments, moments)])))
                    pending_moments = None
                if measured:
                    rec["acts"].append((step, torch.stack([activation_summary(z, quantiles) for z in preacts])))
                    if cfg.hist_every > 0 and step % cfg.hist_every == 0:
                        rec["hist"].append((step, torch.stack([histogram(z) for z in preacts])))
                    pending_moments = moments
            if measured or curvature:
                before = {n: p.detach().clone() for n, p in named.items()}
                grad = {n: p.grad.detach().clone() for n, p in named.items()}
        opt.step()
        if measured:
            pr, l2, cos = measure_step(model, criterion, x, y, before, grad, step_sizes,
                                       cfg.vmap_probes)
            rec["probes"].append((step, torch.stack([pr["loss"], pr["grad_change"], pr["beta"]], 1)))
            g_norms = torch.stack([torch.linalg.vector_norm(grad[w]) for w in weight_names])
            rec["ics"].append((step, torch.stack([l2, cos, g_norms], 1)))
        if curvature:
            c = measure_curvature(model, criterion, x, y, before, grad, cfg.hessian_iters,
                                  cfg.hessian_tol)
            rec["hessian"].append((step, torch.cat([
                torch.stack([c["lambda_max"], c["batch_sharpness"]]).to(torch.float64),
                torch.tensor([c["iterations"], c["residual"]], dtype=torch.float64, device=device)])))
        if measured or curvature:
            del before, grad
        host_t[step] = time.perf_counter() - t0
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            block = buf[flushed:step + 1, 0].cpu()  # the one host sync per log_every steps
            bad = (~torch.isfinite(block)).nonzero()
            if len(bad):
                done, diverged = flushed + int(bad[0]), True
            if bar is not None:
                span = host_t[step] - (host_t[flushed - 1] if flushed else 0)
                bar.set_postfix(loss=f"{float(block[-1]):.4f}",
                                steps_s=f"{(step + 1 - flushed) / max(span, 1e-9):.1f}", refresh=False)
                bar.update(step + 1 - flushed)
            flushed = step + 1
            if diverged:
                break
            if (checkpoint_path is not None and cfg.checkpoint_every
                    and flushed % cfg.checkpoint_every == 0 and flushed < cfg.steps):
                save_checkpoint(flushed)
    if not diverged:
        run_eval(cfg.steps)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()

    rows = buf[:done].float().cpu().numpy()  # the documented float32 columns, whatever dtype
    tables = {
        "steps": pd.DataFrame({
            "step": np.arange(done, dtype=np.int64), "loss": rows[:, 0], "accuracy": rows[:, 1],
            "grad_norm": rows[:, 2], "param_norm": rows[:, 3],
            "lr": np.full(done, cfg.lr), "elapsed_s": host_t[:done]}),
        "eval": _rows(rec["eval"], done, EVAL_COLUMNS),
        "init_distance": _layer_rows(rec["init"], done, INIT_DISTANCE_COLUMNS),
        "ics": _layer_rows(rec["ics"], done - 1, ICS_COLUMNS),
        "histograms": _histogram_rows(rec["hist"], done - 1),
        "hessian": _rows(rec["hessian"], done - 1, HESSIAN_COLUMNS).astype({"iterations": "int64"}),
    }
    probes = _layer_rows(rec["probes"], done - 1, ["step", "point", "loss", "grad_change", "beta"])
    k = probes["point"].to_numpy() - 1
    mult = np.asarray(cfg.probe_multipliers, dtype=np.float64)
    probes.insert(2, "multiplier", mult[k] if len(k) else np.zeros(0))
    probes.insert(3, "step_size", mult[k] * cfg.lr if len(k) else np.zeros(0))
    probes["point"] -= 1
    tables["probes"] = probes
    acts = _layer_rows(rec["acts"], done - 1, ACTIVATION_COLUMNS[:-2])
    shift = _layer_rows(rec["shift"], done - 1, ["step", "layer", "mean_shift", "var_shift"])
    tables["activations"] = acts.merge(shift, on=["step", "layer"], how="left")
    tables = {k: tables[k][cols] for k, cols in TABLES.items()}

    final = tables["eval"].iloc[-1] if len(tables["eval"]) and not diverged else None
    meta = {
        **dataclasses.asdict(cfg),
        "probe_multipliers": list(cfg.probe_multipliers),
        "num_layers": n_layers,
        "steps_completed": int(done),
        "diverged": bool(diverged),
        "wall_seconds": wall,
        "final_train_loss": float(final["train_loss"]) if final is not None else math.nan,
        "final_train_acc": float(final["train_acc"]) if final is not None else math.nan,
        "final_test_acc": float(final["test_acc"]) if final is not None else math.nan,
        **training_outcome(rows[:, 0], rows[:, 1], dataset.num_classes, diverged),
        "num_parameters": sum(p.numel() for p in params),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_version": torch.__version__,
    }
    return RunResult(tables, meta)


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
