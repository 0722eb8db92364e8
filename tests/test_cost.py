"""The sweep cost projection: run counts and arithmetic against hand counts, and a real
measurement of per-step costs on the CPU."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.reads import ALL, measures_key
from bnopt.studies.cost import (
    measure_costs,
    observed_seconds,
    other_jobs,
    per_step_seconds,
    projected_seconds,
    step_counts,
    sweep_minutes,
    sweep_plan,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
QUICK = check_config({**yaml.safe_load((ROOT / "config.yaml").read_text()),
                      **yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())})


def test_step_counts_by_hand():
    # the paper's run: steps 0, 100, ..., 14900 measured; evals at 0, 500, ..., 14500 and 15000
    assert step_counts(15000, 100, 500) == {"steps": 15000, "measured_steps": 150,
                                            "curvature_steps": 0, "evals": 31, "checkpoints": 0}
    # steps 0..9: measured 0, 3, 6, 9; curvature 0, 5; evals at 0, 4, 8 and the end (10)
    assert step_counts(10, 3, 4, 5) == {"steps": 10, "measured_steps": 4, "curvature_steps": 2,
                                        "evals": 4, "checkpoints": 0}
    # checkpoints after steps 1000, ..., 14000: none at the end (the outputs are written)
    assert step_counts(15000, 100, 500, checkpoint_every=1000)["checkpoints"] == 14
    assert step_counts(10, 0, 10)["measured_steps"] == 0


def test_default_sweep_plan_by_hand():
    plan = sweep_plan(BASE)
    runs = plan["runs"].groupby(level=["dataset", "model", "variant"]).sum().to_dict()
    for v in ("standard", "batchnorm", "noisy_batchnorm"):
        assert runs[("cifar10", "vgg", v)] == 3 * 3  # 3 lrs x 3 seeds
    for v in ("l1", "l2", "linf"):
        assert runs[("cifar10", "vgg", v)] == 3  # figure_lr only, 3 seeds (Figures 5, 6, 12)
    for v in ("standard", "batchnorm", "l1", "l2", "linf"):
        assert runs[("dln", "dln", v)] == 2 * 3
    # a row per what its runs measure (measure: read): BN at lr 0.1 everything Figures 1-4
    # read, at 0.01 ICS only (Figure 3), at 0.5 nothing (Figure 1's accuracy)
    rows = plan.sort_index().loc[("cifar10", "vgg", "batchnorm")]["runs"].to_dict()
    assert rows == {"activations+ics+probes": 3, "ics": 3, "none": 3}
    vgg = plan.loc[("cifar10", "vgg", "batchnorm", "activations+ics+probes")]
    assert (vgg["steps"], vgg["measured_steps"], vgg["evals"], vgg["eval_images"]) == (15000, 150, 31, 60000)
    dln = plan.loc[("dln", "dln", "l1", "probes")]
    assert (dln["steps"], dln["measured_steps"], dln["evals"]) == (10000, 100, 21)
    # the DLN trains on the CPU (dln.device), the VGG where the config's device says
    assert (vgg["device"], dln["device"]) == ("auto", "cpu")
    # curvature steps where a run measures curvature: Figure 16's runs (standard, BN at lr 0.1)
    curv = sweep_plan({**BASE, "hessian_every": 100,
                       "dln": {**BASE["dln"], "hessian_every": 100}})["curvature_steps"]
    assert set(curv[curv > 0].index.droplevel("measures")) == {
        (d, m, v) for d, m in (("cifar10", "vgg"), ("dln", "dln"))
        for v in ("standard", "batchnorm")}
    assert sweep_plan({**BASE, "measure": "all"}).index.get_level_values("measures").unique(
        ).tolist() == ["activations+ics+probes+hessian"]


def test_projection_arithmetic():
    plan = pd.DataFrame({"runs": [3, 2], "steps": [100, 10], "measured_steps": [10, 0],
                         "evals": [5, 2], "eval_images": [1, 1]},
                        index=pd.MultiIndex.from_tuples([("d", "m", "a"), ("d", "m", "b")],
                                                        names=["dataset", "model", "variant"]))
    costs = {("d", "m", "a"): {"train_s": 1.0, "measured_s": 20.0, "eval_s": 4.0},
             ("d", "m", "b"): {"train_s": 0.5, "measured_s": 99.0, "eval_s": 1.0}}
    sec = projected_seconds(plan, costs)
    assert sec[("d", "m", "a")] == 3 * (90 * 1.0 + 10 * 20.0 + 5 * 4.0)
    assert sec[("d", "m", "b")] == 2 * (10 * 0.5 + 2 * 1.0)
    # curvature steps add their extra over a plain step; one may also be a measured step
    plan["curvature_steps"] = [4, 0]
    costs[("d", "m", "a")]["curvature_s"] = 31.0
    sec = projected_seconds(plan, costs)
    assert sec[("d", "m", "a")] == 3 * (90 * 1.0 + 10 * 20.0 + 4 * 30.0 + 5 * 4.0)
    # a job's start-up, once per run; its checkpoints
    costs[("d", "m", "b")].update(startup_s=6.0, checkpoint_s=0.5)
    plan["checkpoints"] = [0, 3]
    assert projected_seconds(plan, costs)[("d", "m", "b")] == 2 * (10 * 0.5 + 2 * 1.0 + 6.0 + 1.5)


@pytest.mark.parametrize("key", [("digits", "vgg", "batchnorm"), ("dln", "dln", "l1")])
def test_measured_costs_on_the_cpu(key):
    c = measure_costs(QUICK, *key, device="cpu", steps=1, min_seconds=0.2)  # grows N for cheap steps
    assert all(math.isfinite(v) and v > 0 for v in c.values()), c
    # a measured step does 1 + 8 probe passes + L - 1 ICS passes, a curvature step up to
    # hessian_iters Hessian-vector products more: timed beside the other tests, so only that
    # they cost more than a plain step is asserted (their ratios: BENCHMARKS.md)
    assert c["measured_s"] > c["train_s"] and c["curvature_s"] > c["train_s"], c


def test_sweep_minutes_by_hand():
    seconds = pd.Series([600.0, 1200.0, 3000.0])
    devices = pd.Series(["cuda", "cuda", "cpu"])
    # 30 GPU-minutes; 50 CPU job-minutes of 2 threads each on the 16 - 2 cores the GPU job
    # leaves: 7 at once, 50 / 7 = 7.1 minutes, inside the GPU's 30; 2 minutes of figures on
    # one core each, on 16 cores after
    t = sweep_minutes(seconds, devices, cores=16, threads=2, other_seconds=120.0)
    assert t == {"gpu_minutes": 30.0, "cpu_job_minutes": 50.0, "other_job_minutes": 2.0,
                 "worker_startup_minutes": 0.0, "cpu_slots": 7, "serial_minutes": 82.0,
                 "profile_minutes": 30.0 + 2.0 / 16}
    # --cores 1: one job at a time, everything adds up; the profile with 2 jobs a GPU: each
    # GPU job's start-up (60 s of each row here) overlaps the other's steps
    two = sweep_minutes(seconds, devices, cores=16, threads=2,
                        startup=pd.Series([60.0, 60.0, 60.0]), jobs_per_gpu=2)
    assert two["serial_minutes"] == 80.0 and two["cpu_slots"] == 6
    assert two["profile_minutes"] == pytest.approx(30.0 - 2.0 / 2)
    # on 2 cores with no GPU job: the CPU is the sweep's wall time
    cpu = sweep_minutes(seconds, pd.Series(["cpu"] * 3), cores=2)
    assert cpu["gpu_minutes"] == 0 and cpu["cpu_slots"] == 2 and cpu["profile_minutes"] == 40.0
    # the CPU jobs in warm workers that take 6 s to start: once in series, once side by side
    warm = sweep_minutes(seconds, pd.Series(["cpu"] * 3), cores=2, worker_seconds=6.0)
    assert warm["worker_startup_minutes"] == 0.1 and warm["serial_minutes"] == 80.1
    assert warm["profile_minutes"] == pytest.approx(40.1)
    # no CPU training job: the workers start for the other jobs (figures, tables) all the same
    assert sweep_minutes(seconds[:2], devices[:2], cores=16,
                         worker_seconds=6.0)["worker_startup_minutes"] == 0.1


def _linear_wall(setup, per_step, noise=()):
    """wall(n) = setup + n * per_step, plus the next of ``noise`` (then 0) on each call."""
    calls, extra = [], iter(noise)

    def wall(n):
        calls.append(n)
        return setup + n * per_step + next(extra, 0.0)
    return wall, calls


def test_per_step_seconds_recovers_a_linear_cost():
    wall, calls = _linear_wall(setup=0.3, per_step=0.01)
    sec, n = per_step_seconds(wall, steps=2, min_seconds=0.25, repeats=3)
    assert sec == pytest.approx(0.01)
    assert n * 0.01 >= 0.25 and calls[0] == 2  # grown until the difference is 0.25 s; warm-up first
    # 0.05 s of other load swamps a difference of 2 steps (0.02 s): the old way (2 and 4
    # steps, once) makes the cost negative; growing n to 32 and taking the fastest of three
    # runs of each length, one of them slowed by the same load, gives it exactly
    noise = [0, 0, 0.05, 0, 0, 0, 0, 0, 0.05, 0, 0]  # calls: warm-up, (4, 2), (32, 16), (64, 32) x 3
    wall, _ = _linear_wall(0.3, 0.01, noise)
    assert per_step_seconds(wall, 2)[0] == pytest.approx(-0.015)
    wall, calls = _linear_wall(0.3, 0.01, noise)
    assert per_step_seconds(wall, 2, 0.25, repeats=3) == (pytest.approx(0.01), 32)
    assert calls == [2, 4, 2, 32, 16, 64, 32, 64, 32, 64, 32]


def test_observed_seconds_reads_real_runs(tmp_path):
    for variant, seed, wall, measures in [("batchnorm", 0, 10.0, '["ics"]'),
                                          ("batchnorm", 1, 14.0, '["ics"]'),
                                          ("l1", 0, 3.0, None)]:
        run = tmp_path / f"results/runs/dln/dln/{variant}/lr1e-05/seed{seed}"
        run.mkdir(parents=True)
        (run / "run.json").write_text(
            f'{{"dataset": "dln", "model": "dln", "variant": "{variant}",'
            + (f' "measures": {measures},' if measures else "")  # none: before it existed
            + f' "wall_seconds": {wall}, "device_name": "cpu"}}')
    # Snakemake's benchmark of one job (the train rule's `benchmark:` file), start-up included
    bench = tmp_path / "results/benchmarks/train/dln/dln/batchnorm/lr1e-05_seed0.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n13.5\t0:00:13\t900\n")
    seen = observed_seconds(tmp_path / "results/runs")
    bn, l1 = ("dln", "dln", "batchnorm", "ics"), ("dln", "dln", "l1", measures_key(ALL))
    assert seen.loc[bn, "job_s"] == 13.5  # the one job that has one
    assert math.isnan(seen.loc[l1, "job_s"])
    assert seen.loc[bn, "observed_s"] == 12.0
    assert seen.loc[bn, "observed_runs"] == 2
    assert seen.loc[l1, "observed_s"] == 3.0
    with pytest.raises(FileNotFoundError, match="train some runs first"):
        observed_seconds(tmp_path / "nothing")


def test_a_dln_row_is_timed_on_the_cpu_whatever_the_sweep_device():
    """dln.device: cpu keeps the DLN off the GPU in the projection as in training: asking for
    cuda here (no GPU on CI) still times it, on the CPU."""
    on_gpu = {**QUICK, "device": "cuda"}
    c = measure_costs(on_gpu, "dln", "dln", "standard", device="cuda", steps=1, min_seconds=0.1)
    assert all(math.isfinite(v) and v > 0 for v in c.values()), c


def test_forward_flops_counts_conv_and_linear_multiply_adds():
    """2 x (output elements x multiply-adds each): a 3x3 conv 3 -> 4 channels on 8x8 with
    padding (256 outputs x 27) and a linear layer 256 -> 10; ReLU and pooling are not counted."""
    from torch import nn

    from bnopt.studies.cost import forward_flops

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    assert forward_flops(net, torch.zeros(1, 3, 8, 8)) == 2 * 256 * 27 + 2 * 10 * 256
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)  # each output sees 2 of the 4 channels
    assert forward_flops(nn.Sequential(grouped), torch.zeros(1, 4, 8, 8)) == 2 * 256 * 18


def test_a_process_knows_its_age_and_a_job_times_its_stages():
    code = ("import time; time.sleep(0.3)\n"
            "from bnopt.running.clock import Stages\n"
            "s = Stages(); time.sleep(0.2); s.done('nap'); print(s.seconds)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = eval(out.stdout)
    assert 0.3 <= seconds["interpreter"] < 5 and 0.2 <= seconds["nap"] < 1


def test_the_other_jobs_are_those_snakemake_plans():
    # the quick preset: 2 datasets, summary, scorecard and its figure, 19 figures (snakemake -n
    # of the preset: tests/test_presets.py counts the same jobs by rule)
    assert other_jobs(QUICK) == {"prepare_data": 2, "summary": 1, "scorecard": 1,
                                 "fig0_scorecard": 1, "reported": 0, "figures": 19}
    vgg_a = check_config({**yaml.safe_load((ROOT / "config.yaml").read_text()),
                          **yaml.safe_load((ROOT / "workflow/presets/vgg_a.yaml").read_text())})
    assert other_jobs(vgg_a)["reported"] == 1 and other_jobs(vgg_a)["scorecard"] == 0


@pytest.mark.slow
def test_the_projection_counts_every_job_and_step_a_real_sweep_runs(tmp_path):
    """benchmarks/check_projection.py on a small sweep of every kind of job: the small CNN's
    experiment (3 runs on generated data, its figure, reported.csv, the summary) run with
    `snakemake --cores 1 --resources gpu=1` beside its projection. What the projection counts
    is what the sweep ran: its training jobs and every other job by kind (Snakemake's job
    stats), each run's measured steps and evaluations (the runs' tables), and the start-up
    stages a real job records. How close the times come is a benchmark, not a test (within
    20% on an idle machine, 0.92: BENCHMARKS.md, "What a sweep pays"; beside the other tests
    the real sweep slows more than the projection's fastest-of timings: 1.24 and 1.57)."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = {**base, **yaml.safe_load((ROOT / "workflow/presets/small_cnn.yaml").read_text()),
           "dataset": "synthetic", "seeds": [0], "steps": 100, "eval_every": 50,
           "log_every": 50, "measure_every": 50, "hist_every": 100, "checkpoint_every": 100,
           "device": "cpu", "threads": 1, "dln": {**base["dln"], "log_every": 50}}
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "sweep"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/check_projection.py"), str(path),
                        "--workdir", str(work), "--json"], capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    proj, jobs = res["projection"], res["real_jobs"]
    assert jobs["train"] == proj["runs"] == 3
    figures = sum(n for rule, n in jobs.items() if rule.startswith("fig"))
    assert {k: v for k, v in proj["other_jobs"].items() if v} == {
        "prepare_data": jobs["prepare_data"], "summary": jobs["summary"],
        "reported": jobs["reported"], "figures": figures}
    metas = sorted(work.glob("results/runs/*/*/*/*/*/run.json"))
    assert len(metas) == 3
    for meta in metas:
        measures = json.loads(meta.read_text())["measures"]
        key = "/".join([*meta.parts[-6:-3], measures_key(measures)])
        counts = proj["plan"][key]
        evals = pd.read_parquet(meta.with_name("eval.parquet"))
        # the runs measure their activations at least (noisy BN only those: Claim 2's shift)
        assert "activations" in measures
        acts = pd.read_parquet(meta.with_name("activations.parquet"))
        assert acts["step"].nunique() == counts["measured_steps"], key
        assert len(evals) == counts["evals"], key
        stages = json.loads(meta.read_text())["job_stages_s"]
        assert set(stages) <= set(proj["startup_stages_s"][key]), (stages, key)
    assert res["real_seconds"] > 0 and res["projected_serial_seconds"] > 0
