"""benchmarks/tf32_fidelity.py in its small modes (a file of its own: the suite spreads files
over workers, and these are the longest benchmark tests)."""
import json
import subprocess
import sys

import pandas as pd

from conftest import ROOT


def test_tf32_fidelity_pairs_are_identical_on_the_cpu():
    """TF32 exists only on GPUs: on the CPU the fp32 and tf32 runs of each seed are the same
    computation, so every paired difference is exactly zero (the GPU result is in BENCHMARKS.md)."""
    # a hang guard, not a timing: this trains 8 small runs, ~2 min on a loaded 2-core box
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/tf32_fidelity.py"), "--smoke",
                        "--json"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(res["runs"]) == 2 * 2 * 2 and not res["any_differs"]
    assert all(row["mean_difference"] == 0.0 for row in res["comparison"])
    assert {row["quantity"] for row in res["comparison"]} >= {"final_test_acc", "beta_smoothness",
                                                             "final_train_loss", "ics_l2_late"}


def test_tf32_fidelity_with_tf32_emulated_on_the_cpu_departs(tmp_path):
    fidelity = [sys.executable, str(ROOT / "benchmarks/tf32_fidelity.py"), "--smoke", "--emulate",
                "nearest", "--variants", "standard", "--runs", str(tmp_path / "runs.csv"), "--json"]
    r = subprocess.run(fidelity + ["--seeds", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["emulated_tf32"] == "nearest" and res["mantissa"] == [10]
    diff = {row["quantity"]: row["mean_difference"] for row in res["comparison"]}
    assert diff["final_train_loss"] != 0.0 and diff["loss_range"] != 0.0
    # a second call with a control arm and another seed reuses the three runs it has
    r = subprocess.run(fidelity + ["--seeds", "0", "1", "--mantissa", "10", "16"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res2 = json.loads(r.stdout.strip().splitlines()[-1])
    runs = {(row["seed"], row["precision"]): row for row in res2["runs"]}
    assert set(runs) == {(s, p) for s in (0, 1) for p in ("fp32", "tf32", "16bit")}
    for row in res["runs"]:  # reused, not retrained: even the wall time is the saved one
        assert runs[(0, row["precision"])]["wall_s"] == row["wall_s"]
    assert {row["arm"] for row in res2["comparison"]} == {"tf32", "16bit"}
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 6
    control = {row["quantity"]: row for row in res2["comparison"] if row["arm"] == "16bit"}
    assert control["final_train_loss"]["mean_difference"] != 0.0
    assert control["final_train_loss"]["seeds"] == 2
