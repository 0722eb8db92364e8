"""Project a whole sweep's time before spending it: every (dataset, model, variant) of CONFIG's
sweep timed with the real training loop on the device it will train on, times the plan's counts.

    python benchmarks/project_sweep.py config.yaml --device cuda --json
    python benchmarks/project_sweep.py config.yaml --device cuda --compare results/runs --json

Each cost (plain step, measured step, curvature step, evaluation) comes from
:func:`bnopt.studies.cost.measure_costs`: runs of N and 2N steps differenced, N grown from ``--steps``
until they differ by ``--seconds``, the fastest of ``--repeats`` runs of each length. Each job's
start-up (a fresh Python importing torch) is added. Prints per-row minutes, GPU-minutes (one GPU
job at a time), CPU job-minutes and the sweep's wall estimate on one GPU and ``--cores`` CPU
cores; ``--compare results/runs`` sets the projection per run beside what finished runs took.
The last line is one JSON object with ``--json``. Results: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bnopt.studies.cost import project

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"  # the rule scripts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", help="the config whose sweep to project (config.yaml, a preset)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where runs with device: auto train")
    ap.add_argument("--steps", type=int, default=1,
                    help="fewest steps N of a timing run (runs of N and 2N are differenced)")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="N grows until the 2N-run outlasts the N-run by this much")
    ap.add_argument("--repeats", type=int, default=3,
                    help="the fastest of this many runs of each length per cost")
    ap.add_argument("--cores", type=int, help="CPU cores of the sweep's machine (default: "
                    "this one's), for the CPU jobs' share of the wall time")
    ap.add_argument("--compare", metavar="RUNS",
                    help="also show what the real runs under RUNS (results/runs) took")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    res = project(a.config, a.device, a.steps, a.seconds, a.repeats, a.cores, a.compare,
                  scripts=SCRIPTS)
    if a.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
