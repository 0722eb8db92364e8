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
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bnopt.data import Dataset, DeviceData
from bnopt.models import NOISY_BN_DEFAULTS, build_model, set_noise_generator

STEP_COLUMNS = ["step", "loss", "accuracy", "grad_norm", "param_norm", "lr", "elapsed_s"]
EVAL_COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc"]


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    model: str
    variant: str
    lr: float
    seed: int
    steps: int = 15_000
    batch_size: int = 128
    momentum: float = 0.0
    weight_decay: float = 0.0
    width: float = 1.0
    init: str = "glorot"
    augment: bool = False
    eval_every: int = 500
    eval_batch_size: int = 1000
    log_every: int = 100
    device: str = "auto"
    noisy_bn: dict = field(default_factory=lambda: dict(NOISY_BN_DEFAULTS))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class RunResult:
    steps: pd.DataFrame
    evals: pd.DataFrame
    meta: dict


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device: cuda, but no CUDA device is visible to this job "
                           f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use "
                           "device: auto to fall back to the CPU, or check CUDA_VISIBLE_DEVICES.")
    return torch.device(name)


def derived_seed(seed: int, stream: int) -> int:
    """Independent seeds for the data order and the noisy-BN noise, derived from the run seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor,
             batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over (x, y) in eval mode; returns device scalars (no sync)."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], batch_size):
        out = model(data.normalize(x[i:i + batch_size]))
        yb = y[i:i + batch_size]
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = x.shape[0]
    return loss / n, correct / n


def _total_norm(tensors) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def train_run(cfg: RunConfig, dataset: Dataset, progress: bool = True,
              threads: int | None = None) -> RunResult:
    """Train one run and return its per-step and eval tables plus run metadata."""
    device = resolve_device(cfg.device)
    if threads:
        torch.set_num_threads(threads)
    data = DeviceData(dataset, device)
    c, h, _ = dataset.shape

    torch.manual_seed(cfg.seed)  # weights: same seed -> same conv/linear init in every variant
    model = build_model(cfg.model, cfg.variant, c, h, dataset.num_classes, cfg.width,
                        cfg.noisy_bn, cfg.init).to(device)
    noise_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 1))
    set_noise_generator(model, noise_gen)
    data_gen = torch.Generator(device).manual_seed(derived_seed(cfg.seed, 2))
    params = [p for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    batches = data.train_batches(cfg.batch_size, data_gen, cfg.augment)

    buf = torch.full((cfg.steps, 4), float("nan"), device=device)  # loss, acc, |g|, |w|
    host_t = np.zeros(cfg.steps)
    eval_steps = sorted(set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps})
    eval_rows: list[tuple[int, list[torch.Tensor]]] = []

    def run_eval(step: int):
        tl, ta = evaluate(model, data, data.x_train, data.y_train, cfg.eval_batch_size)
        vl, va = evaluate(model, data, data.x_test, data.y_test, cfg.eval_batch_size)
        eval_rows.append((step, [tl, ta, vl, va]))

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, desc=f"{cfg.variant} lr={cfg.lr} seed={cfg.seed}",
                   file=sys.stderr, mininterval=2.0, dynamic_ncols=False, ascii=True)
    model.train()
    t0 = time.perf_counter()
    done, diverged, flushed = cfg.steps, False, 0
    for step in range(cfg.steps):
        if step in eval_steps:
            run_eval(step)
        x, y = next(batches)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            buf[step] = torch.stack([loss.detach(), (out.argmax(1) == y).float().mean(),
                                     _total_norm(p.grad for p in params if p.grad is not None),
                                     _total_norm(params)])
        opt.step()
        host_t[step] = time.perf_counter() - t0
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            block = buf[flushed:step + 1, 0].cpu()  # the one host sync per log_every steps
            bad = (~torch.isfinite(block)).nonzero()
            if len(bad):
                done, diverged = flushed + int(bad[0]), True
            if bar is not None:
                rate = (step + 1 - flushed) / max(host_t[step] - (host_t[flushed - 1] if flushed else 0), 1e-9)
                bar.set_postfix(loss=f"{float(block[-1]):.4f}", steps_s=f"{rate:.1f}", refresh=False)
                bar.update(step + 1 - flushed)
            flushed = step + 1
            if diverged:
                break
    if not diverged:
        run_eval(cfg.steps)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()

    rows = buf[:done].cpu().numpy()
    steps_df = pd.DataFrame({
        "step": np.arange(done, dtype=np.int64), "loss": rows[:, 0], "accuracy": rows[:, 1],
        "grad_norm": rows[:, 2], "param_norm": rows[:, 3],
        "lr": np.full(done, cfg.lr), "elapsed_s": host_t[:done]})
    ev = [(s, [float(v) for v in vals]) for s, vals in eval_rows if s <= done]
    evals_df = pd.DataFrame([[s, *v] for s, v in ev], columns=EVAL_COLUMNS).astype({"step": "int64"})
    final = evals_df.iloc[-1] if len(evals_df) and not diverged else None
    meta = {
        **dataclasses.asdict(cfg),
        "steps_completed": int(done),
        "diverged": bool(diverged),
        "wall_seconds": wall,
        "final_train_loss": float(final["train_loss"]) if final is not None else math.nan,
        "final_train_acc": float(final["train_acc"]) if final is not None else math.nan,
        "final_test_acc": float(final["test_acc"]) if final is not None else math.nan,
        "num_parameters": sum(p.numel() for p in params),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_version": torch.__version__,
    }
    return RunResult(steps_df, evals_df, meta)


def write_run(result: RunResult, steps_path, eval_path, meta_path) -> None:
    """Write the three outputs of a run, each atomically; the metadata JSON goes last."""
    from bnopt.io import write_json, write_parquet

    write_parquet(result.steps, steps_path, metadata=result.meta)
    write_parquet(result.evals, eval_path, metadata=result.meta)
    write_json(result.meta, meta_path)
