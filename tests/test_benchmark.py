"""The benchmark harness in its smoke mode (CI runs only this; results live in BENCHMARKS.md)."""
import json
import subprocess
import sys

import pytest
import yaml

from bnopt.studies.cost import OTHER_WORK_S
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
    # times only: their ratio is a benchmark (BENCHMARKS.md), not a test, since a loaded machine
    # (the suite runs on every core) can stall either timing
    assert res["train_step_s"] > 0 and res["measured_step_s"] > 0


def test_bench_speed_options_and_dln_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_step.py"), "--smoke", "--json",
                        "--model", "dln", "--vmap-probes", "--dtype", "float64", "--precision",
                        "tf32", "--no-naive", "--hessian-iters", "3"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["passes_per_measured_step"] == 1 + 8 + 24 and res["dtype"] == "float64"
    # a curvature step (the training step and 3 Hessian-vector products) was timed; how its
    # time compares with a train step's is a benchmark, not a test (one timing each here, on a
    # machine the suite loads on every core)
    assert res["hessian_iters"] == 3 and res["curvature_step_s"] > 0
    assert res["hvp_over_train"] is not None


def test_bench_projects_a_sweep(tmp_path):
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    quick = yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())
    cfg = tmp_path / "quick.yaml"  # config.yaml updated by the preset, as --configfile does
    # curvature off: its timing runs (up to 20 Hessian-vector products each) are tested in
    # tests/test_cost.py; here the projection of the other 51 runs
    cfg.write_text(yaml.safe_dump({**base, **quick, "hessian_every": 0,
                                   "dln": {**base["dln"], **quick["dln"], "hessian_every": 0}}))
    runs = tmp_path / "results/runs"  # one finished run to compare the projection with
    run = runs / "digits/vgg/batchnorm/lr0.1/seed0"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"dataset": "digits", "model": "vgg", "variant": "batchnorm", '
                                  '"measures": ["activations", "ics", "probes"], '
                                  '"wall_seconds": 30.0, "device_name": "cpu"}')
    # one short timing run per cost (the stable defaults time longer: BENCHMARKS.md)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/project_sweep.py"), str(cfg),
                        "--device", "cpu", "--steps", "1", "--seconds", "0", "--repeats", "1",
                        "--cores", "2", "--compare", str(runs), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["runs"] == 51 and res["pflop"] > 0
    bn = "digits/vgg/batchnorm/activations+ics+probes"  # what Figures 1-4 read of it
    assert set(res["minutes_by_variant"]) >= {bn, "dln/dln/l1/probes"}
    # all on the CPU: no GPU-minutes, and the jobs share the 2 cores (1 thread each)
    assert res["gpu_minutes"] == 0 and res["cpu_job_minutes"] == res["device_minutes"] > 0
    # the CPU jobs run in warm workers (warm_workers): their process start-up is paid once, by
    # the workers, not by each job
    workers = res["worker_startup_minutes"]
    assert workers > 0
    assert res["profile_minutes"] == pytest.approx((res["cpu_job_minutes"]
                                                    + res["other_job_minutes"]) / 2 + workers)
    assert res["serial_minutes"] == pytest.approx(res["cpu_job_minutes"] + workers
                                                  + res["other_job_minutes"])
    seen = res["compare"][bn]
    assert seen["observed_s"] == 30.0 and seen["observed_runs"] == 1
    assert seen["observed_over_projected"] == 30.0 / seen["projected_s"]
    startup = res["costs_s"][bn]["startup_s"]  # the job's stages outside its steps
    stages = res["startup_stages_s"][bn]
    assert startup > 0 and startup == pytest.approx(sum(
        v for k, v in stages.items() if k not in ("checkpoint", "interpreter", "imports")))
    # ... and the other jobs' imports once per worker too (the plotting libraries), not per job
    assert workers * 60 == pytest.approx(max(
        s["interpreter"] + s["imports"] for s in res["startup_stages_s"].values())
        + max(res["other_startup_s"].values()))
    assert res["other_startup_s"]["figures"] > 0
    assert res["other_seconds"] == pytest.approx(
        {k: n * OTHER_WORK_S[k] for k, n in res["other_jobs"].items() if n})
    assert seen["projected_job_s"] - seen["projected_s"] == pytest.approx(startup)
    per_run = res["minutes_by_variant"][bn] * 60 / 3  # 3 seeds
    assert abs(seen["projected_job_s"] - per_run) < 0.1


def test_bench_share_times_k_jobs_started_together():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_share.py"), "--smoke", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["jobs"] for row in res["rows"]] == [1, 2]
    assert all(row["steps_per_s"] > 0 and len(row["job_wall_s"]) == row["jobs"] for row in res["rows"])
    assert res["speedup_over_first"]["1"] == 1.0 and res["device"] == "cpu"


def test_a_cuda_graph_benchmark_needs_cuda():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_step.py"), "--device", "cpu",
                        "--cuda-graph"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--cuda-graph needs --device cuda" in r.stderr

