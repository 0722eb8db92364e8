"""Throughput of K training jobs sharing one GPU (config ``jobs_per_gpu``), each its own process.

    python benchmarks/bench_share.py --jobs 1 4 --json       # K = 1, then K = 4
    nvidia-cuda-mps-control -d                                 # then again, under CUDA MPS
    python benchmarks/bench_share.py --jobs 1 4 --json
    echo quit | nvidia-cuda-mps-control
    python benchmarks/bench_share.py --smoke --json            # CPU, seconds: what CI runs

Each job is a real training run (:func:`bnopt.training.loop.train_run`) of the default config's VGG on
random data of CIFAR-10's shape, with the config's speed settings (TF32, CUDA graph; measured
every 100 steps) unless options say otherwise. The K processes import, build their data and
wait at a barrier; then all start at once, and the throughput is K x steps over the time from
the start to the last job's end. Without MPS the processes' CUDA contexts time-slice the GPU, so
K jobs take about K times as long as one; under MPS their kernels run concurrently. Prints one
line per K, and with ``--json`` a JSON object with steps/s per K and the speed-up over K = 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnopt.running.gpus import mps_active

CHILD = r"""
import dataclasses, json, os, sys, time
import torch
from bnopt.training.data import fake_dataset
from bnopt.plan.runs import RunConfig
from bnopt.training.loop import train_run
a = json.loads(sys.argv[1])
torch.set_num_threads(1)
data = fake_dataset(a["dataset"], n_train=4096, n_test=a["batch_size"], image_size=a["image_size"])
cfg = RunConfig(dataset=a["dataset"], model="vgg", variant=a["variant"], lr=0.05, seed=a["seed"],
                steps=a["steps"], batch_size=a["batch_size"], width=a["width"],
                eval_every=a["steps"], log_every=100, measure_every=a["measure_every"],
                hist_every=0, device=a["device"], precision=a["precision"],
                cuda_graph=a["cuda_graph"], channels_last=a["channels_last"], checkpoint_every=0)
train_run(dataclasses.replace(cfg, steps=20, eval_every=20), data, progress=False)  # warm-up
open(a["ready"], "w").close()
while not os.path.exists(a["go"]):
    time.sleep(0.001)
r = train_run(cfg, data, progress=False)
print(json.dumps({"end": time.time(), "wall_seconds": r.meta["wall_seconds"],
                  "graph_replays": r.meta["graph_replays"]}))
"""


def run_jobs(k: int, settings: dict, timeout: float = 600.0) -> dict:
    """Start ``k`` training processes at once; return their steps/s together."""
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        procs, ready = [], []
        for i in range(k):
            ready.append(Path(tmp) / f"ready{i}")
            child = {**settings, "seed": i, "ready": str(ready[-1]), "go": str(go)}
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(child)],
                                          stdout=subprocess.PIPE, text=True))
        deadline = time.monotonic() + timeout
        while not all(r.exists() for r in ready):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError("a job failed before the start (see its stderr above)")
            time.sleep(0.01)
        start = time.time()
        go.touch()
        outs = [json.loads(p.communicate(timeout=timeout)[0].strip().splitlines()[-1])
                for p in procs]
    span = max(o["end"] for o in outs) - start
    return {"jobs": k, "steps_per_s": k * settings["steps"] / span, "span_s": span,
            "job_wall_s": [round(o["wall_seconds"], 3) for o in outs],
            "graph_replays": outs[0]["graph_replays"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 4], help="K values to time")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--variant", default="batchnorm")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--measure-every", type=int, default=100)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="tf32", choices=["fp32", "tf32"])
    ap.add_argument("--no-cuda-graph", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, for CI")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.jobs, a.steps, a.device, a.width, a.image_size, a.batch_size = [1, 2], 4, "cpu", 0.125, 8, 16
        a.measure_every = 2
    settings = {"dataset": a.dataset, "image_size": a.image_size, "width": a.width,
                "batch_size": a.batch_size, "variant": a.variant, "steps": a.steps,
                "measure_every": a.measure_every, "device": a.device, "precision": a.precision,
                "cuda_graph": not a.no_cuda_graph, "channels_last": a.channels_last}
    mps = mps_active()
    rows = []
    for k in a.jobs:
        rows.append(run_jobs(k, settings))
        print(f"K={k}: {rows[-1]['steps_per_s']:.1f} steps/s together "
              f"({rows[-1]['span_s']:.1f} s)", file=sys.stderr, flush=True)
    base = rows[0]["steps_per_s"]
    res = {"mps": mps, **settings, "rows": rows,
           "speedup_over_first": {r["jobs"]: r["steps_per_s"] / base for r in rows}}
    if a.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
