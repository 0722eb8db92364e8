"""Check the sweep projection against a real sweep: run `snakemake --cores 1 --resources gpu=1`
(every job one at a time, as the paper's reproduction command does) on CONFIG in a fresh
folder, time it, project the same config (`bnopt.studies.cost.project`) and compare the
projection's serial total with the real wall time.

    python benchmarks/check_projection.py CONFIG --device cpu --json

The last line (with --json) is one JSON object: the real wall seconds, the projected serial
seconds, their ratio, the sweep's jobs by rule, and the projection's summary (with its plan).
Results: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnopt.studies.cost import project

ROOT = Path(__file__).resolve().parents[1]


def job_counts(stdout: str) -> dict:
    """Snakemake's "Job stats" table: jobs by rule."""
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def real_sweep(config: Path, workdir: Path) -> tuple[float, dict]:
    """Seconds of `snakemake --cores 1 --resources gpu=1` (rule all) on ``config`` in
    ``workdir``, which gets a copy of config.yaml as a checkout has, and its jobs by rule."""
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d",
                        str(workdir), "--configfile", str(config), "--cores", "1",
                        "--resources", "gpu=1"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise RuntimeError(f"the sweep failed:\n{r.stderr[-3000:]}")
    return wall, job_counts(r.stdout + r.stderr)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", help="a whole config (config.yaml and the changes, merged)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seconds", type=float, default=0.2,
                    help="the projection's timing runs differ by at least this much")
    ap.add_argument("--repeats", type=int, default=1, help="the projection's repeats")
    ap.add_argument("--workdir", help="run the sweep in this (new) folder and keep it "
                    "(default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    a = ap.parse_args(argv)
    config = Path(a.config).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        wall, jobs = real_sweep(config, work)
        res = project(config, a.device, 1, a.seconds, a.repeats, cores=1,
                      compare=work / "results" / "runs", scripts=ROOT / "workflow" / "scripts")
    out = {"real_seconds": wall, "projected_serial_seconds": res["serial_minutes"] * 60,
           "real_over_projected": wall / (res["serial_minutes"] * 60), "real_jobs": jobs,
           "projection": res}
    print(f"real {wall:.1f} s, projected {out['projected_serial_seconds']:.1f} s "
          f"(--cores 1): real / projected = {out['real_over_projected']:.2f}", file=sys.stderr)
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
