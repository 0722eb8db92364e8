"""Benchmark a training step, a fully measured step, and the naive measured step.

    python benchmarks/bench_step.py --device cpu --json
    python benchmarks/bench_step.py --device cuda --json
    python benchmarks/bench_step.py --smoke --json          # seconds; what CI runs
    python benchmarks/bench_step.py --device cuda --precision tf32 --channels-last --json
    python benchmarks/bench_step.py --device cuda --profile   # where a measured step's time goes
    python benchmarks/bench_step.py --device cpu --hessian-iters 20 --no-naive --json  # curvature

Default: the paper's VGG (width 1, 32x32x3 inputs, batch 128, BatchNorm) on random uint8 images
resident on the device, built and batched as training does it. (The whole sweep's projection is
``benchmarks/project_sweep.py``.) A *measured* step is a training step plus every probe point (the default
8) and ICS for every layer, through the function training calls
(:func:`bnopt.training.steps.measure_after_step`);
the *naive* one deep-copies the model for each point and layer, as the earlier attempts did
(:mod:`bnopt.studies.naive`). Times are means over ``--steps`` after ``--warmup``, with a device
sync around each timed block. The last line is one JSON object.

Options mirror the config keys: ``--precision tf32`` lets unmeasured steps use TF32 (measured
ones stay IEEE fp32, as in training), ``--dtype``, ``--channels-last``, ``--vmap-probes``,
``--cudnn-benchmark`` (off here unless given; the config's default is on).
``--compile`` times the train step under ``torch.compile`` (not used by training).
``--hessian-iters N`` also times a curvature step as training does it
(:func:`bnopt.training.measure.measure_curvature`) with exactly N Lanczos iterations (tolerance 0), and
reports the cost of one Hessian-vector product in training steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from bnopt.plan.datasets import TRAIN_SIZES
from bnopt.plan.runs import RunConfig
from bnopt.studies.cost import forward_flops
from bnopt.studies.naive import copy_model, naive_measure_step
from bnopt.training.data import DeviceData, fake_dataset
from bnopt.training.loop import device_name, run_model
from bnopt.training.normalisers import set_noise_generator
from bnopt.training.objective import criterion
from bnopt.training.precision import DTYPES, cudnn_autotune, ieee_fp32, matmul_precision
from bnopt.training.recorder import Recorder
from bnopt.training.steps import CudaGraphStep, measure_after_step, plain_step

# Dense fp32 (non-tensor-core) peak of known accelerators, TFLOP/s, for comparison only.
PEAK_FP32 = {"H100": 67.0, "H200": 67.0, "A100": 19.5}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="vgg", choices=["vgg", "simple_cnn", "dln"],
                    help="dln: the 25-layer deep linear network, full batch (--batch-size 1000)")
    ap.add_argument("--variant", default="batchnorm")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-naive", action="store_true", help="skip the (slow) naive measured step")
    ap.add_argument("--train-only", action="store_true",
                    help="time the train step only (no measured or naive step)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32"],
                    help="float32 matmul/conv precision of train steps (measured: always fp32)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="cuDNN times its conv algorithms (config cudnn_benchmark; GPU only)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="the train step replays as one CUDA graph (config cuda_graph; CUDA only)")
    ap.add_argument("--vmap-probes", action="store_true", help="probe points in one vmap pass")
    ap.add_argument("--compile", action="store_true", help="torch.compile the train step's model")
    ap.add_argument("--hessian-iters", type=int, default=0, metavar="N",
                    help="also time a curvature step of exactly N Lanczos iterations (HVPs)")
    ap.add_argument("--profile", action="store_true",
                    help="print torch.profiler's top operators of one measured step")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    if a.smoke:
        a.batch_size, a.width, a.image_size, a.steps, a.warmup = 16, 0.125, 8, 1, 1
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    if a.cuda_graph and device.type != "cuda":
        ap.error("--cuda-graph needs --device cuda (CUDA graphs exist only on NVIDIA GPUs)")
    with matmul_precision(a.precision), cudnn_autotune(a.cudnn_benchmark):
        return bench(a, device)


class StepBench:
    """A run of ``a``'s model and variant, built as training builds it
    (:func:`bnopt.training.loop.run_model`, :class:`bnopt.training.data.DeviceData`) on random data of CIFAR-10's
    shape (the DLN: its task's shape, full batch), and each kind of step it takes."""

    def __init__(self, a, device: torch.device):
        self.a, self.device = a, device
        dln = a.model == "dln"
        self.dataset = "dln" if dln else "cifar10"
        data = fake_dataset(self.dataset, n_train=a.batch_size if dln else 4 * a.batch_size,
                            n_test=a.batch_size, image_size=None if dln else a.image_size)
        cfg = RunConfig(dataset=self.dataset, model=a.model, variant=a.variant,
                        lr=1e-6 if dln else 0.1, seed=0, batch_size=a.batch_size, width=a.width,
                        dtype=a.dtype, channels_last=a.channels_last, device=a.device)
        dtype = DTYPES[cfg.dtype]
        torch.manual_seed(0)
        self.model = run_model(cfg, data, device, cfg.channels_last)
        noise_gen = torch.Generator(device).manual_seed(0)
        set_noise_generator(self.model, noise_gen)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.step_sizes = torch.tensor([m * cfg.lr for m in cfg.probe_multipliers], dtype=dtype,
                                       device=device)
        self.batches = DeviceData(data, device, dtype, cfg.channels_last).train_batches(
            cfg.batch_size, torch.Generator(device).manual_seed(0))
        # the training loop's own plain step (forward, loss, backward, per-step row, update),
        # eager or replayed as one CUDA graph
        self.train_model = torch.compile(self.model) if a.compile else self.model
        self.params = list(self.model.parameters())
        self.rec = Recorder(64, device, dtype, [])
        self.graphed = CudaGraphStep(noise_gen) if a.cuda_graph else None
        self.done = 0

    def batch(self):
        return next(self.batches)

    def train_step(self):
        x, y = self.batch()
        (self.graphed or plain_step)(self.train_model, self.opt, self.params, self.rec,
                                     self.done % 64, x, y)
        self.done += 1

    def ieee_step(self):
        """A training step in IEEE arithmetic; returns its batch, parameters and gradient."""
        x, y = self.batch()
        with ieee_fp32():
            self.opt.zero_grad(set_to_none=True)
            criterion(self.model(x), y).backward()
        named = list(self.model.named_parameters())
        before = {k: p.detach().clone() for k, p in named}
        grad = {k: p.grad.detach().clone() for k, p in named}
        self.opt.step()
        return x, y, before, grad

    def measured_step(self):  # what training does after the step, through the same function
        measure_after_step(self.model, *self.ieee_step(), self.step_sizes, self.a.vmap_probes)

    def curvature_step(self):
        return measure_after_step(self.model, *self.ieee_step(),
                                  hessian=(self.a.hessian_iters, 0.0))

    def naive_step(self):
        x, y = self.batch()
        with ieee_fp32():
            self.opt.zero_grad(set_to_none=True)
            criterion(self.model(x), y).backward()
        copy_before = copy_model(self.model)
        grad = {k: p.grad.detach().clone() for k, p in self.model.named_parameters()}
        self.opt.step()
        naive_measure_step(copy_before, self.model, criterion, x, y, grad, self.step_sizes)

    def timed(self, fn) -> float:
        """Seconds per call of ``fn``: ``a.warmup`` calls, then the mean of ``a.steps``."""
        for _ in range(self.a.warmup):
            fn()
        sync(self.device)
        t = time.perf_counter()
        for _ in range(self.a.steps):
            fn()
        sync(self.device)
        return (time.perf_counter() - t) / self.a.steps

    def print_profile(self):
        """torch.profiler's top operators of one measured step, to stderr."""
        from torch.profiler import ProfilerActivity, profile

        cuda = self.device.type == "cuda"
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            self.measured_step()
            sync(self.device)
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=15), file=sys.stderr)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(a, device: torch.device) -> dict:
    """Time each kind of step of a :class:`StepBench` of ``a``; print and return the summary."""
    b = StepBench(a, device)
    b.model.train()
    train_s = b.timed(b.train_step)
    measured_s = None if a.train_only else b.timed(b.measured_step)
    curvature_s = b.timed(b.curvature_step) if a.hessian_iters else None
    with ieee_fp32():
        naive_s = None if (a.no_naive or a.train_only) else b.timed(b.naive_step)
    if a.profile:
        b.print_profile()
    res = summary(a, b, train_s, measured_s, naive_s, curvature_s)
    for k, v in res.items():
        print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}", file=sys.stderr)
    if a.json:
        print(json.dumps(res))
    return res


def summary(a, b: StepBench, train_s, measured_s, naive_s, curvature_s) -> dict:
    """The JSON summary of one benchmark: its settings, step times and their ratios."""
    passes = 1 + len(b.step_sizes) + (len(b.model.layers) - 1)  # step, probes, ICS layers 2..L
    flops = 3 * forward_flops(b.model, b.batch()[0])  # forward + backward ~ 3 x forward
    name = device_name(b.device)
    peak = (next((v for k, v in PEAK_FP32.items() if k in name), None)
            if b.device.type == "cuda" else None)
    return {
        "device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": a.model, "variant": a.variant, "width": a.width, "image_size": a.image_size,
        "batch_size": a.batch_size, "num_parameters": sum(p.numel() for p in b.params),
        "precision": a.precision, "dtype": a.dtype, "channels_last": a.channels_last,
        "cudnn_benchmark": a.cudnn_benchmark, "cuda_graph": a.cuda_graph,
        "vmap_probes": a.vmap_probes, "compile": a.compile,
        "train_step_s": train_s, "measured_step_s": measured_s,
        "passes_per_measured_step": passes, "naive_measured_step_s": naive_s,
        "measured_over_passes_x_train": None if measured_s is None else measured_s / (passes * train_s),
        "naive_over_measured": None if naive_s is None else naive_s / measured_s,
        "hessian_iters": a.hessian_iters, "curvature_step_s": curvature_s,
        # one Hessian-vector product (forward-over-reverse), in training steps
        "hvp_over_train": None if not curvature_s else (curvature_s - train_s) / (a.hessian_iters * train_s),
        "images_per_s": a.batch_size / train_s, "train_tflops": flops / train_s / 1e12,
        "peak_fp32_tflops": peak,
        "epoch_s": TRAIN_SIZES[b.dataset] // a.batch_size * train_s,  # the full training split
    }


if __name__ == "__main__":
    main()
