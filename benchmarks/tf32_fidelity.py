"""Does TF32 for unmeasured steps (config ``precision: tf32``) change the science? The same runs
(same seeds, data and settings) with ``precision: fp32`` and ``tf32``, and per variant the
seed-paired differences of the scorecard's quantities against their seed-to-seed spread.

    python benchmarks/tf32_fidelity.py --device cuda --json
    python benchmarks/tf32_fidelity.py --smoke --json     # CPU: the two must be identical

Default: scikit-learn's digits at 16x16 (shipped; no download), the VGG at width 0.25, batch
128, lr 0.1, 1,500 steps measured every 100, seeds 0-2, standard and BatchNorm. Measured steps,
the step after each and everything on the CPU are IEEE in both (README, "Precision and speed").
A quantity is "within spread" when the mean paired difference is at most the standard
deviation across seeds of the fp32 runs.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from bnopt.aggregate import run_medians
from bnopt.data import load_dataset
from bnopt.train import RunConfig, train_run

QUANTITIES = ["final_test_acc", "mean_batch_acc", "loss_range", "grad_pred", "beta_smoothness",
              "ics_l2"]


def run_row(cfg: RunConfig, data) -> dict:
    r = train_run(cfg, data, progress=False)
    med = run_medians(None, r.tables)
    return {"final_test_acc": r.meta["final_test_acc"],
            "mean_batch_acc": float(r.steps["accuracy"].mean()),
            **{q: float(med[q]) for q in QUANTITIES[2:]},
            "wall_s": r.meta["wall_seconds"], "diverged": r.meta["diverged"]}


def compare(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, quantity): mean of fp32 and tf32 over seeds, the mean seed-paired
    difference, the fp32 runs' standard deviation across seeds, and whether |difference| <= sd."""
    rows = []
    for (variant, q), g in runs.melt(["variant", "seed", "precision"], QUANTITIES,
                                      "quantity").groupby(["variant", "quantity"], sort=False):
        w = g.pivot(index="seed", columns="precision", values="value")
        diff = float((w["tf32"] - w["fp32"]).mean())
        sd = float(w["fp32"].std(ddof=1)) if len(w) > 1 else float("nan")
        rows.append({"variant": variant, "quantity": q, "fp32": float(w["fp32"].mean()),
                     "tf32": float(w["tf32"].mean()), "mean_difference": diff,
                     "seed_sd_fp32": sd, "within_spread": bool(abs(diff) <= sd) or diff == 0.0})
    return pd.DataFrame(rows)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variants", nargs="+", default=["standard", "batchnorm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--smoke", action="store_true", help="CPU, a few steps, for CI")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.device, a.steps, a.width, a.seeds, a.batch_size = "cpu", 12, 0.125, [0, 1], 32
    data = load_dataset("digits", image_size=a.image_size)
    every = max(1, a.steps // 15)
    rows = []
    for variant in a.variants:
        for seed in a.seeds:
            for precision in ("fp32", "tf32"):
                cfg = RunConfig(dataset="digits", model="vgg", variant=variant, lr=a.lr,
                                seed=seed, steps=a.steps, batch_size=a.batch_size, width=a.width,
                                eval_every=a.steps, log_every=every, measure_every=every,
                                hist_every=0, device=a.device, precision=precision,
                                checkpoint_every=0)
                rows.append({"variant": variant, "seed": seed, "precision": precision,
                             **run_row(cfg, data)})
                print(rows[-1], file=sys.stderr, flush=True)
    runs = pd.DataFrame(rows)
    table = compare(runs)
    print(table.to_string(index=False), file=sys.stderr)
    res = {"device": a.device, "steps": a.steps, "width": a.width, "seeds": a.seeds,
           "runs": runs.to_dict("records"), "comparison": table.to_dict("records"),
           "all_within_spread": bool(table["within_spread"].all()),
           "wall_s": {p: float(np.sum(runs.wall_s[runs.precision == p])) for p in ("fp32", "tf32")}}
    if a.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
