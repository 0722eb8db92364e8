"""Does TF32 for unmeasured steps (config ``precision: tf32``) change the science? The same runs
(same seeds, data and settings) with ``precision: fp32`` and ``tf32``, and per variant a
paired t-test over seeds of each of the scorecard's quantities.

    python benchmarks/tf32_fidelity.py --device cuda --json
    python benchmarks/tf32_fidelity.py --emulate nearest --json   # CPU, TF32 emulated
    python benchmarks/tf32_fidelity.py --emulate nearest --mantissa 10 16 --runs runs.csv --json
    python benchmarks/tf32_fidelity.py --smoke --json     # CPU: the two must be identical

Default: scikit-learn's digits at 16x16 (shipped; no download), the VGG at width 0.25, batch
128, lr 0.1, 1,500 steps measured every 100, seeds 0-2, standard and BatchNorm. Measured steps,
the step after each and everything on the CPU are IEEE in both (docs/speed.md).
Per variant and quantity it reports both precisions' means and spreads across seeds and the
paired test's p (``differs``: p < 0.05). ``--emulate`` runs on the CPU with TF32's rounding
emulated (:mod:`bnopt.studies.tf32`): an approximation of the hardware, to be confirmed on a GPU.
``--dataset fashion_mnist --data-root DIR`` uses a local copy of a real dataset. ``--mantissa 10
16`` adds a control arm (16 bits, 64x finer than TF32) against the same fp32 runs: a difference
that any small perturbation of the steps makes is not TF32's. ``--runs CSV`` keeps every finished
run and reuses it on the next call, so a long study survives a kill and grows by seeds.

Besides the scorecard's medians over the whole run, ``*_late`` are the medians over the second
half of training only, and ``final_train_loss`` is the training loss at the end (evaluation
mode, the full split). Evaluations run in IEEE fp32 in both runs (``eval_precision: fp32``), so
they compare the trajectories and not the evaluations' own rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import numpy as np
import pandas as pd
from scipy import stats

from bnopt.analysis.aggregate import run_medians
from bnopt.plan.runs import RunConfig
from bnopt.studies.tf32 import ROUNDINGS, TF32_MANTISSA, emulate_tf32
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run

LANDSCAPE = ["loss_range", "grad_pred", "beta_smoothness", "ics_l2"]
QUANTITIES = (["final_test_acc", "final_train_loss", "mean_batch_acc"] + LANDSCAPE
              + [f"{q}_late" for q in LANDSCAPE])


def run_row(cfg: RunConfig, data) -> dict:
    r = train_run(cfg, data, progress=False)
    med = run_medians(None, r.tables)
    late = run_medians(None, {name: t[t.step >= cfg.steps // 2] for name, t in r.tables.items()
                              if name in ("probes", "ics", "hessian")})
    return {"final_test_acc": r.meta["final_test_acc"],
            "final_train_loss": r.meta["final_train_loss"],
            "mean_batch_acc": float(r.steps["accuracy"].mean()),
            **{q: float(med[q]) for q in LANDSCAPE},
            **{f"{q}_late": float(late[q]) for q in LANDSCAPE},
            "wall_s": r.meta["wall_seconds"], "diverged": r.meta["diverged"]}


def compare(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (variant, arm, quantity), where an arm is every ``precision`` other than fp32 (``tf32``,
    or an emulated control such as ``16bit``): the means over seeds of fp32 and of the arm, the
    mean seed-paired difference, each one's standard deviation across seeds, and the two-sided
    p-value of a paired t-test (1 where every pair is equal). ``differs``: p < ``alpha``.

    Pairing by seed (same weights, same batches) removes the seed-to-seed variation only while
    the two trajectories stay close; once they part (the standard net's plateau exit moves with
    any perturbation of its steps: docs/speed.md) a pair is two independent
    runs and the test is as wide as the spread of both, as it should be."""
    rows = []
    long = runs.melt(["variant", "seed", "precision"], QUANTITIES, "quantity")
    for (variant, q), g in long.groupby(["variant", "quantity"], sort=False):
        w = g.pivot(index="seed", columns="precision", values="value")
        for arm in [c for c in runs["precision"].unique() if c != "fp32"]:
            pair = w[["fp32", arm]].dropna()
            d = pair[arm] - pair["fp32"]
            if (d == 0).all():
                p = 1.0
            elif len(d) > 1:
                p = float(stats.ttest_rel(pair[arm], pair["fp32"]).pvalue)
            else:
                p = float("nan")
            rows.append({"variant": variant, "arm": arm, "quantity": q,
                         "fp32": float(pair["fp32"].mean()), "other": float(pair[arm].mean()),
                         "mean_difference": float(d.mean()), "ratio": _ratio(pair, arm),
                         "seed_sd_fp32": float(pair["fp32"].std(ddof=1)),
                         "seed_sd_other": float(pair[arm].std(ddof=1)), "seeds": len(pair),
                         "p_paired": p, "differs": bool(p < alpha)})
    return pd.DataFrame(rows)


def _ratio(pair: pd.DataFrame, arm: str) -> float:
    """The arm's mean over fp32's, where fp32's mean is not zero."""
    base = float(pair["fp32"].mean())
    return float(pair[arm].mean()) / base if base else float("nan")


def arm_name(mantissa: int | None) -> str:
    """``tf32`` for the hardware or TF32's 10 bits emulated; ``<n>bit`` for an emulated control."""
    return "tf32" if mantissa in (None, TF32_MANTISSA) else f"{mantissa}bit"


def load_runs(path: str | None) -> pd.DataFrame:
    """The runs saved by an earlier call with ``--runs PATH`` (none if it does not exist yet)."""
    if path and os.path.exists(path):
        return pd.read_csv(path)
    return pd.DataFrame()


def save_runs(runs: pd.DataFrame, path: str | None) -> None:
    """Write every run so far, atomically: a killed study keeps what it has computed."""
    if path:
        tmp = f"{path}.tmp"
        runs.to_csv(tmp, index=False)
        os.replace(tmp, path)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variants", nargs="+", default=["standard", "batchnorm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="default: 0 1 2 (with --smoke: 0 1)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-root", default=None,
                    help="a local copy of a torchvision dataset (see docs/configuration.md, data_root)")
    ap.add_argument("--emulate", choices=ROUNDINGS, default=None,
                    help="on the CPU, emulate TF32 with this rounding of fp32 to TF32 (away: "
                         "ties away from zero, as PTX's cvt.rna; nearest: ties to even; the two "
                         "differ on exact ties only; see bnopt.studies.tf32)")
    ap.add_argument("--mantissa", type=int, nargs="+", default=[TF32_MANTISSA],
                    help="with --emulate: mantissa bits kept, one arm each against the same fp32 "
                         "runs (TF32: 10; more, e.g. 16: a control for any small perturbation)")
    ap.add_argument("--runs", default=None, metavar="CSV",
                    help="keep every finished run in this CSV and reuse the runs already in it "
                         "(same setting), so a long study can be stopped and resumed")
    ap.add_argument("--smoke", action="store_true", help="CPU, a few steps, for CI")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.device, a.steps, a.width, a.batch_size = "cpu", 45, 0.125, 32
    a.seeds = a.seeds or ([0, 1] if a.smoke else [0, 1, 2])
    if a.emulate:
        a.device = "cpu"
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    runs = pd.DataFrame(all_runs(a))
    table = compare(runs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False), file=sys.stderr)
    res = {"device": a.device, "emulated_tf32": a.emulate,
           "mantissa": a.mantissa if a.emulate else None, "dataset": a.dataset,
           "image_size": a.image_size, "lr": a.lr, "steps": a.steps, "width": a.width,
           "seeds": a.seeds,
           "runs": runs.to_dict("records"), "comparison": table.to_dict("records"),
           "any_differs": bool(table["differs"].any()),
           "wall_s": {p: float(np.sum(runs.wall_s[runs.precision == p]))
                      for p in runs["precision"].unique()}}
    if a.json:
        print(json.dumps(res))
    return res


def all_runs(a) -> list[dict]:
    """One row per (variant, seed, arm) of ``a``: fp32 and each TF32 arm (emulated where
    ``a.emulate``), reusing and extending the ``a.runs`` CSV."""
    data = load_dataset(a.dataset, a.data_root, image_size=a.image_size)
    every = max(1, a.steps // 15)
    setting = {"dataset": a.dataset, "image_size": a.image_size, "width": a.width, "lr": a.lr,
               "steps": a.steps, "batch_size": a.batch_size, "device": a.device,
               "emulate": a.emulate or "none"}
    arms = [(None, None)] + [(arm_name(m), m) for m in (a.mantissa if a.emulate else [None])]
    saved = load_runs(a.runs)
    rows = []
    for variant in a.variants:
        for seed in a.seeds:
            for arm, mantissa in arms:
                key = {**setting, "variant": variant, "seed": seed, "precision": arm or "fp32"}
                if not saved.empty:
                    hit = saved[(saved[list(key)] == pd.Series(key)).all(axis=1)]
                    if len(hit):
                        rows.append(hit.iloc[0].to_dict())
                        continue
                cfg = RunConfig(dataset=a.dataset, model="vgg", variant=variant, lr=a.lr,
                                seed=seed, steps=a.steps, batch_size=a.batch_size, width=a.width,
                                eval_every=a.steps, log_every=every, measure_every=every,
                                hist_every=0, device=a.device, precision="tf32" if arm else "fp32",
                                eval_precision="fp32", channels_last=False,  # TF32 alone
                                checkpoint_every=0)
                emulation = (emulate_tf32(a.emulate, mantissa) if a.emulate and arm
                             else contextlib.nullcontext())
                with emulation:
                    rows.append({**key, **run_row(cfg, data)})
                print(rows[-1], file=sys.stderr, flush=True)
                if a.runs:
                    saved = pd.concat([saved, pd.DataFrame(rows[-1:])], ignore_index=True)
                    save_runs(saved, a.runs)
    return rows


if __name__ == "__main__":
    main()
