"""The SLURM profile on a real single-node SLURM cluster (tests/slurm_cluster.py): jobs go
through sbatch and the executor plugin as on a user's cluster. The cluster starts once for the
session and every daemon is stopped by PID however the tests end; the tests skip, saying why,
where the packages are missing or not run as root (`.ci/run` installs them)."""
import atexit
import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, missing

from conftest import ROOT, snakemake_command

pytestmark = pytest.mark.slow  # pytest-xdist runs a file's tests on one worker (--dist loadfile)

# A tiny CPU run; the node has 2 CPUs and 4000 MB, so each job asks for less than that.
TINY = ["dataset=synthetic", "width=0.125", "steps=16", "batch_size=64", "eval_every=8",
        "log_every=4", "device=cpu", "threads=1", "seeds=[0]", "lrs=[0.05]", "figure_lr=0.05",
        "measure_every=4", "hist_every=8", "probe_multipliers=[0.5,2.0]", "checkpoint_every=0",
        "train_mem_mb=1500"]
RUN = "results/runs/synthetic/vgg/batchnorm/lr0.05/seed0"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """One cluster for the session: tests/slurm_cluster.py links its slurm.conf where jobs'
    srun looks (/etc/slurm), so two at once would send one's job steps to the other."""
    why = missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("snakemake_executor_plugin_slurm")
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    atexit.register(c.stop)  # also if the session dies before the fixture's teardown
    c.start()
    yield c
    c.stop()


def slurm_command(cluster, args, workdir) -> tuple[list[str], dict]:
    """(argv, env) of the real snakemake CLI through profiles/slurm on ``cluster``. The first
    status check comes after 2 s instead of the profile's 20, to keep the tests short."""
    argv, env = snakemake_command([*args, "--workflow-profile", str(ROOT / "profiles/slurm"),
                                   "--slurm-init-seconds-before-status-checks", "2"], workdir)
    return argv, {**env, "SLURM_CONF": cluster.env["SLURM_CONF"]}


def slurm_snakemake(cluster, args, workdir, timeout) -> subprocess.CompletedProcess:
    """:func:`slurm_command` run to the end, killed after ``timeout`` seconds."""
    argv, env = slurm_command(cluster, args, workdir)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=workdir)


def job_ids(out: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", out)


def states(cluster, ids) -> list[str]:
    return [row[1] for row in cluster.sacct("-j", ",".join(ids), "-o", "JobID,State")]


def test_a_figure_builds_through_the_slurm_profile(cluster, tmp_path):
    r = slurm_snakemake(cluster, ["results/figures/fig4_landscape.png", "--config", *TINY],
                           tmp_path, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    ids = job_ids(out)
    assert len(ids) == 2  # standard and BN; data and figure ran on this host
    assert states(cluster, ids) == ["COMPLETED", "COMPLETED"]
    assert (tmp_path / "results/figures/fig4_landscape.png").stat().st_size > 10_000
    assert (tmp_path / RUN / "run.json").exists()


def test_a_job_that_fails_inside_says_why_and_is_not_resubmitted(cluster, tmp_path):
    data = tmp_path / "results/data/synthetic.pt"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"not a dataset")  # a corrupt prepared dataset
    r = slurm_snakemake(cluster, [f"{RUN}/run.json", "--config", *TINY], tmp_path,
                           timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    ids = job_ids(out)
    assert len(ids) == 1, out[-3000:]  # a deterministic failure: no retries
    assert states(cluster, ids) == ["FAILED"]
    # the project's own message, not only SLURM's "Reason: Unknown" (show-failed-logs)
    assert "cannot read prepared dataset results/data/synthetic.pt" in out, out[-3000:]
    assert "Delete it and rerun snakemake" in out


def test_a_cancelled_job_fails_promptly_and_a_rerun_resumes_it(cluster, tmp_path):
    # 400 steps: several seconds of training left when the first checkpoint (step 20) appears
    cfg = [*TINY, "steps=400", "eval_every=100", "log_every=10", "checkpoint_every=20",
           "measure_every=100", "hist_every=0", "dln={log_every: 10}"]
    argv, env = slurm_command(cluster, [f"{RUN}/run.json", "--config", *cfg], tmp_path)
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, cwd=tmp_path)
    try:
        checkpoint = tmp_path / RUN / "checkpoint.pt"
        deadline = time.time() + 180
        while not checkpoint.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.3)
        if not checkpoint.exists():
            child.kill()
            pytest.fail("the job reached no checkpoint:\n" + child.communicate()[0][-3000:])
        jobs = cluster._run(["squeue", "-h", "-o", "%i"]).stdout.split()
        assert len(jobs) == 1
        cancelled = time.time()
        cluster._run(["scancel", jobs[0]])
        out, _ = child.communicate(timeout=90)  # the plugin's sacct path would wait for ever
        waited = time.time() - cancelled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert f"SLURM-job '{jobs[0]}' failed, SLURM status is: 'CANCELLED'" in out, out[-3000:]
    assert waited < 60
    r = slurm_snakemake(cluster, [f"{RUN}/run.json", "--config", *cfg], tmp_path,
                           timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    log = Path(tmp_path / "results/logs/train/synthetic/vgg/batchnorm/lr0.05_seed0.log")
    assert "resumed from" in log.read_text()


def test_jobs_no_node_can_run_are_refused_before_submission(cluster, tmp_path):
    before = len(cluster.sacct())
    r = slurm_snakemake(cluster, ["results/figures/fig4_landscape.png", "--config", *TINY,
                                  "train_mem_mb=64000", "threads=16"], tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "leave them PENDING for ever" in out
    assert f"mem_mb=64000 MB is more than any node of partition 'debug' has (at most " \
           f"{cluster.mem_mb} MB): lower the config key train_mem_mb" in out, out[-3000:]
    assert f"cpus=16 is more than any node of partition 'debug' has (at most {cluster.cpus})" \
           in out and "config key threads" in out
    assert len(cluster.sacct()) == before and not job_ids(out)  # nothing was submitted
