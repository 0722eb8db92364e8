"""The benchmark harness in its smoke mode (CI runs only this; results live in BENCHMARKS.md)."""
import json
import subprocess
import sys

from conftest import ROOT


def test_bench_step_smoke_prints_the_summary_json():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_step.py"), "--smoke", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("train_step_s", "measured_step_s", "passes_per_measured_step",
                "naive_measured_step_s"):
        assert key in res
    assert res["passes_per_measured_step"] == 1 + 8 + 13  # step + probe points + ICS layers 2..14
    assert res["train_step_s"] > 0 and res["measured_step_s"] > res["train_step_s"]
