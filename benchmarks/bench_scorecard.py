"""What the scorecard costs beside the aggregation, on tables of a config's full size.

    python benchmarks/bench_scorecard.py config.yaml --json
    python benchmarks/bench_scorecard.py config.yaml workflow/presets/quick.yaml --json

Merges the CONFIG files in order, as Snakemake's ``--configfile`` does, then writes, under a
temporary folder, one finished run folder per run of the config's sweep
(:func:`bnopt.plan.check.sweep_runs`) with tables of the sizes a real run writes (every step's row,
probes and ICS rows at every ``measure_every`` step, activation rows per layer, curvature rows
at every ``hessian_every`` step; the values are synthetic: a decaying training loss with noise,
positive random measurements), then times the rule ``summary``'s work (the summary table and
the combined steps and eval tables) and the rule ``scorecard``'s (:func:`bnopt.scorecard.verdicts.scorecard`
on the runs its checks compare), each the fastest of ``--repeats``, and with ``--figures`` the
drawing of every figure once (the figure rules' work), and loading every table of every run
with :func:`bnopt.analysis.results.load`. Prints one line per part and,
with ``--json``, one JSON object. Results: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bnopt.analysis.aggregate import load_table, summary_table
from bnopt.analysis.results import load
from bnopt.figures.paper import FIGURES
from bnopt.plan.check import check_config
from bnopt.plan.figure_specs import figure_blockers, figure_specs
from bnopt.plan.runs import family_runs, run_dir, sweep_runs, train_settings
from bnopt.plan.tables import TABLES
from bnopt.plan.variants import num_layers
from bnopt.scorecard.checks import scorecard_runs
from bnopt.scorecard.verdicts import scorecard


def write_run(root: Path, run: tuple, settings: dict, rng) -> Path:
    """A finished run folder of ``run`` = (dataset, model, variant, lr, seed) with tables of the
    real sizes for ``settings`` (its RunConfig fields) and synthetic values."""
    dataset, model, variant, lr, seed = run
    folder = root / run_dir(*run)
    folder.mkdir(parents=True)
    n, layers = settings["steps"], num_layers(model, settings["mlp_widths"])
    step = np.arange(n)
    loss = 2.3 * np.exp(-step / (0.2 * n)) * np.exp(rng.normal(0, 0.2, n)) + 1e-3
    tables = {"steps": {"step": step, "loss": loss, "accuracy": rng.uniform(0, 1, n),
                        "grad_norm": rng.uniform(0, 1, n), "param_norm": rng.uniform(1, 2, n),
                        "lr": np.full(n, lr), "elapsed_s": step * 0.01}}
    every = settings["measure_every"]
    measured = np.arange(0, n, every) if every else np.array([], dtype=int)
    points = len(settings["probe_multipliers"])
    per_layer = {"step": np.repeat(measured, layers), "layer": np.tile(np.arange(1, layers + 1),
                                                                       len(measured))}
    tables["probes"] = {"step": np.repeat(measured, points),
                        "point": np.tile(np.arange(points), len(measured))}
    tables["ics"] = dict(per_layer)
    tables["activations"] = dict(per_layer)
    evals = np.arange(0, n + 1, settings["eval_every"])
    tables["eval"] = {"step": evals}
    tables["init_distance"] = {"step": np.repeat(evals, layers),
                               "layer": np.tile(np.arange(1, layers + 1), len(evals))}
    h = settings["hessian_every"]
    tables["hessian"] = {"step": np.arange(0, n, h) if h else np.array([], dtype=int)}
    hist = np.arange(0, n, settings["hist_every"]) if every and settings["hist_every"] else []
    bins = 64
    tables["histograms"] = {"step": np.repeat(hist, layers * bins),
                            "layer": np.tile(np.repeat(np.arange(1, layers + 1), bins), len(hist)),
                            "bin": np.tile(np.arange(bins), layers * len(hist)),
                            "left": np.tile(np.linspace(-1, 1, bins), layers * len(hist))}
    tables["histograms"]["right"] = tables["histograms"]["left"] + 2 / bins
    for name in TABLES:
        t = tables[name]
        rows = len(t["step"])
        for col in TABLES[name]:
            if col not in t:
                t[col] = rng.uniform(0.1, 1.0, rows)
        pd.DataFrame(t)[TABLES[name]].to_parquet(folder / f"{name}.parquet")
    meta = {"dataset": dataset, "model": model, "variant": variant, "lr": lr, "seed": seed,
            "steps": n, "steps_completed": n, "diverged": False, "never_learned": False,
            "final_batch_loss": float(loss[-1]), "final_batch_acc": 0.9, "final_train_loss": 0.1,
            "final_train_acc": 0.9, "final_test_acc": 0.9, "wall_seconds": 1.0,
            "num_parameters": 1, "num_layers": layers, "chance_acc": 0.1, "initial_loss": 2.3,
            "device_name": "synthetic", **settings}
    (folder / "run.json").write_text(json.dumps(meta))
    return folder / "run.json"


def merge(into: dict, update: dict) -> dict:
    """``update`` merged into ``into``, nested mappings key by key (as ``--configfile``)."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def fastest(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="+", help="the config files whose sweep's tables to build, "
                    "merged in order (config.yaml, then a preset)")
    ap.add_argument("--repeats", type=int, default=3, help="the fastest of this many timings")
    ap.add_argument("--figures", action="store_true",
                    help="also time drawing every figure once (the rest of the aggregation)")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    merged: dict = {}
    for path in a.config:
        merge(merged, yaml.safe_load(Path(path).read_text()))
    cfg = check_config(merged)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        metas = {run: write_run(root, run, train_settings(cfg, run[1]), rng)
                 for run in sweep_runs(cfg)}
        judged = [metas[r] for r in scorecard_runs(cfg)]
        everything = list(metas.values())

        def aggregate():
            load_table(everything, "steps")
            load_table(everything, "eval")
            summary_table(everything)

        blocked = figure_blockers(cfg)

        def figures():  # every figure `snakemake` (all) draws, as the rule plot_figure does
            for name, (groups, kwargs) in figure_specs(cfg).items():
                if name not in blocked:
                    paths = [metas[r] for fam, v, lrs in groups
                             for r in family_runs(cfg, fam, v, lrs)]
                    FIGURES[name](paths, root / f"{name}.png", **kwargs)

        out = {"config": " ".join(a.config), "runs": len(everything), "scorecard_runs": len(judged),
               "summary_s": fastest(aggregate, a.repeats),
               "figures": len(figure_specs(cfg)) - len(blocked),
               "figures_s": fastest(figures, 1) if a.figures else None,
               "scorecard_s": fastest(lambda: scorecard(cfg, judged), a.repeats),
               # every table of every run through the documented loader (docs/outputs.md)
               "load_all_s": fastest(lambda: [load(t, root / "results/runs") for t in TABLES],
                                     a.repeats)}
    out["scorecard_over_summary"] = out["scorecard_s"] / out["summary_s"]
    print(f"{out['runs']} runs: every table of every run loaded in {out['load_all_s']:.2f} s")
    print(f"{out['runs']} runs: summary rule {out['summary_s']:.2f} s; scorecard "
          f"({out['scorecard_runs']} runs) {out['scorecard_s']:.2f} s = "
          f"{out['scorecard_over_summary']:.2f} x the summary")
    if out["figures_s"] is not None:
        out["scorecard_over_aggregation"] = out["scorecard_s"] / (out["summary_s"]
                                                                  + out["figures_s"])
        print(f"{out['figures']} figures {out['figures_s']:.1f} s: the scorecard is "
              f"{out['scorecard_over_aggregation']:.1%} of the summary and figures")
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
