"""benchmarks/gpu_check.sh, the one call a lent GPU box gets, in its CPU mode (same stages, toy
sizes) so that it cannot rot between the sessions that have a GPU."""
import json
import subprocess

import pytest

from bnopt.plan.variants import VARIANTS
from conftest import ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_stage_and_writes_one_summary(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--cpu", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    for stage in ("pytest", "bench_pack", "bench_step", "bench_step_dln", "sweep", "projection"):
        assert f"- **{stage}**: exit 0," in summary, summary
    rows = [json.loads(line) for line in (out / "bench_pack.jsonl").read_text().splitlines()]
    assert {(row["variant"], row["runs"]) for row in rows} == {
        (v, n) for v in ("batchnorm", "standard") for n in (1, 2)}
    assert all(row["train_speedup"] > 0 and row["measured_speedup"] > 0 for row in rows)
    # the sweep trained the three runs it asked for, and the projection, which times every row
    # of the config (every variant: the figures' families included), sets each of their rows
    # beside what its job took
    res = json.loads((out / "projection.json").read_text())
    # (rows by dataset/model/variant/measures: what a run measures is what is read of it)
    assert {k.rsplit("/", 1)[0] for k in res["compare"]} == {
        "synthetic/vgg/batchnorm", "synthetic/vgg/standard", "dln/dln/l1"}
    assert {k.rsplit("/", 1)[0] for k in res["minutes_by_variant"]} >= {
        f"synthetic/vgg/{v}" for v in VARIANTS}
    assert all(row["job_s"] > 0 for row in res["compare"].values())
    assert all(f"| {k} |" in summary for k in res["compare"])
    # start-up by stage: the projection's probe and the sweep's real jobs (run.json)
    assert "start-up by stage, seconds (the projection's job probe)" in summary
    assert "- synthetic/vgg/batchnorm/" in summary and "imports " in summary
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
