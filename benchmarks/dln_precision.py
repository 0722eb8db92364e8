"""How much float32 rounding moves the DLN's landscape probes: the same DLN run (same seed,
same data) in float32 and float64, probes at the last measured step, and the wall time of each.

    python benchmarks/dln_precision.py --variant l1 --steps 1000

The DLN's probe steps are tiny (0.01 x lr = 1e-8 at lr 1e-6), so the gradient change they
measure is a difference of nearly equal gradients; in float32 it can be mostly rounding error.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bnopt.plan.runs import RunConfig
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run

MULTIPLIERS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="l1")
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_dataset("dln", data_seed=0)
    out = {}
    for dtype in ("float32", "float64"):
        cfg = RunConfig(dataset="dln", model="dln", variant=a.variant, lr=a.lr, seed=a.seed,
                        steps=a.steps, batch_size=1000, eval_batch_size=1000, eval_every=a.steps,
                        log_every=a.steps, measure_every=100, hist_every=0,
                        probe_multipliers=MULTIPLIERS, device="cpu", dtype=dtype)
        r = train_run(cfg, data, progress=False)
        pr = r.tables["probes"]
        last = pr[pr["step"] == pr["step"].max()]
        out[dtype] = {"step": int(last["step"].iloc[0]), "wall_s": round(r.meta["wall_seconds"], 2),
                      "beta": [round(b, 1) for b in last["beta"]],
                      "effective_beta": round(float(last["beta"].max()), 1)}
        print(f"{dtype}: {out[dtype]}", file=sys.stderr)
    print(json.dumps({"variant": a.variant, "lr": a.lr, "multipliers": MULTIPLIERS, **out}))


if __name__ == "__main__":
    main()
