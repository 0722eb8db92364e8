"""Warm worker processes (bnopt.running.workers): runs trained back to back in one worker are
bitwise those of fresh processes; a failing job fails alone; a dead worker is replaced; a
worker exits with the process that started it."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace as NS

import pyarrow.parquet as pq
import pytest

from bnopt.plan.runs import run_config, tracked_settings
from bnopt.plan.tables import written_tables
from bnopt.running import workers
from bnopt.running.workers import RuleJob, run_script
from test_scripts import CHECKED, SCRIPTS, prepare

# a worker of the pool below takes every job of this file, one after another
POOL = 1


@pytest.fixture(scope="module", autouse=True)
def _pool_shut_down():
    """This process's pool, shut down after the file's tests (left to the interpreter's exit,
    its watcher thread's clean-up prints an ignored exception)."""
    yield
    if workers._POOL is not None:
        workers._POOL.shutdown()
        workers._POOL = None


def train_job(tmp_path, where, data, dataset, model, variant, lr, tag):
    """Train one run through workflow/scripts/train.py where ``where`` says; its folder."""
    run = run_config(CHECKED, dataset, model, variant, lr, 0)
    small = {"steps": 12, "eval_every": 6, "log_every": 4, "measure_every": 3,
             "hessian_every": 6, "hessian_iters": 3, "probe_multipliers": (0.5, 1.0, 2.0)}
    if model != "dln":
        small |= {"width": 0.125, "batch_size": 64, "eval_batch_size": 500}
    run = dataclasses.replace(run, **small)
    folder = tmp_path / tag / model / variant
    out = NS(**{n: str(folder / f"{n}.parquet") for n in written_tables(CHECKED)},
             meta=str(folder / "run.json"))
    job = RuleJob(input=NS(data=str(data)), output=out, params=NS(train=tracked_settings(run)),
                  wildcards=NS(dataset=dataset, model=model, variant=variant, lr=str(lr),
                               seed="0"),
                  threads=1, log=[str(tmp_path / "logs" / tag / f"{model}_{variant}.log")],
                  config=CHECKED, rule="train")
    run_script(SCRIPTS / "train.py", job, where, POOL)
    return folder


def same_run(a, b):
    """Every table and run.json field of two runs equal, bitwise, but wall-clock ones (and the
    code version, below)."""
    for table in sorted(p.name for p in a.glob("*.parquet")):
        ta, tb = pq.read_table(a / table), pq.read_table(b / table)
        if table == "steps.parquet":
            ta, tb = ta.drop(["elapsed_s"]), tb.drop(["elapsed_s"])
        assert ta.equals(tb), (a, table)
    # and code_version: tests/test_workflow.py edits the package's sources for a moment while
    # other files' tests run, and a process records the code it imported (a warm worker, the
    # code as it was when it started)
    clock = {"wall_seconds", "setup_seconds", "write_seconds", "job_stages_s", "code_version"}
    ma, mb = (json.loads((f / "run.json").read_text()) for f in (a, b))
    assert {k: v for k, v in ma.items() if k not in clock} == \
        {k: v for k, v in mb.items() if k not in clock}


@pytest.mark.slow
def test_runs_back_to_back_in_a_warm_worker_equal_fresh_processes(tmp_path):
    """Noisy BN (its own noise stream), the DLN in float64 and BN (with probes, ICS and
    curvature) one after another in one worker, each then trained again after the others:
    every table bitwise that of the same run in a fresh process. The worker's start-up goes to
    its first job; a later job starts with nothing to import."""
    data = prepare(tmp_path, "synthetic", {"data_root": None})
    dln = prepare(tmp_path, "dln", {"data_seed": 0})
    runs = [("synthetic", "vgg", "noisy_batchnorm", 0.05, data), ("dln", "dln", "l1", 1e-5, dln),
            ("synthetic", "vgg", "batchnorm", 0.05, data)]
    warm = [train_job(tmp_path, "warm", d, ds, m, v, lr, "warm") for ds, m, v, lr, d in runs]
    again = [train_job(tmp_path, "warm", d, ds, m, v, lr, "again")
             for ds, m, v, lr, d in reversed(runs)][::-1]
    fresh = [train_job(tmp_path, "fresh", d, ds, m, v, lr, "fresh") for ds, m, v, lr, d in runs]
    for w, a, f in zip(warm, again, fresh):
        same_run(w, f)
        same_run(a, f)
    stages = [json.loads((f / "run.json").read_text())["job_stages_s"] for f in warm + again]
    assert all(s["interpreter"] == 0.0 for s in stages[1:])  # a warm worker: no process start
    assert all(set(s) == {"interpreter", "imports", "data", "setup"} for s in stages)
    log = (tmp_path / "logs/again/vgg_batchnorm.log").read_text()
    assert "12/12" in log and "done on" in log  # each job's output goes to its own log


def test_a_failing_job_fails_alone_and_a_dead_worker_is_replaced(tmp_path):
    """A script that raises fails its job with its error; a job whose worker dies (killed, out
    of memory) runs once more in a process of its own, and dies there too: it fails with what
    happened, and the next job gets a new worker."""
    fail, die, ok = (tmp_path / f"{n}.py" for n in ("fail", "die", "ok"))
    fail.write_text("raise ValueError('bad key x: set it')\n")
    die.write_text("import os\nos._exit(9)\n")
    ok.write_text("from pathlib import Path\nPath(snakemake.output[0]).write_text(str(__import__('os').getpid()))\n")
    job = RuleJob(input=[], output=[str(tmp_path / "out.txt")], params=NS(), wildcards=NS(),
                  threads=1, log=[str(tmp_path / "job.log")])
    with pytest.raises(ValueError, match="bad key x: set it"):
        run_script(fail, job, "warm", POOL)
    run_script(ok, job, "warm", POOL)
    first = (tmp_path / "out.txt").read_text()
    with pytest.raises(RuntimeError, match=r"process running die.py for this job died, in a "
                       r"warm worker and again in a process of its own"):
        run_script(die, job, "warm", POOL)
    run_script(ok, job, "warm", POOL)
    assert (tmp_path / "out.txt").read_text() != first  # another worker
    with pytest.raises(ValueError, match="where must be warm, fresh or here"):
        run_script(ok, job, "elsewhere", POOL)


def test_a_job_beside_a_worker_that_dies_finishes(tmp_path):
    """A pool that loses a worker fails every job it runs: the job that ran beside the one that
    died runs again in a process of its own and finishes; the one that died fails. (In a
    Python of its own: a pool of two workers, two jobs at once, as Snakemake's threads run
    them; each job waits for the other to start, so they run side by side.)"""
    slow, die = tmp_path / "slow.py", tmp_path / "die.py"
    out, dying = tmp_path / "out.txt", tmp_path / "dying"
    wait = "import os, time\nfrom pathlib import Path\ndef wait(p):\n" \
           "    t = time.time()\n    while not p() and time.time() - t < 60: time.sleep(0.05)\n"
    slow.write_text(wait + "Path(snakemake.output[0] + '.' + str(os.getpid())).touch()\n"
                    f"wait(Path({str(dying)!r}).exists)\ntime.sleep(2)\n"
                    "Path(snakemake.output[0]).write_text('done')\n")
    die.write_text(wait + f"Path({str(dying)!r}).touch()\n"
                   f"wait(lambda: list(Path({str(tmp_path)!r}).glob('out.txt.*')))\n"
                   "os._exit(9)\n")
    code = f"""
import threading
from types import SimpleNamespace as NS
from bnopt.running.workers import RuleJob, run_script
errors = {{}}
def job(script, name):
    try:
        run_script(script, RuleJob([], [{str(out)!r}], NS(), NS(), 1, []), "warm", 2)
    except Exception as e:
        errors[name] = str(e)
jobs = [threading.Thread(target=job, args=(s, n)) for s, n in [({str(slow)!r}, "slow"),
                                                                 ({str(die)!r}, "die")]]
[t.start() for t in jobs]
[t.join() for t in jobs]
print(sorted(errors), errors.get("die", ""))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("['die']"), r.stdout + r.stderr[-2000:]
    assert "died, in a warm worker and again in a process of its own" in r.stdout
    assert out.read_text() == "done"
    assert len(list(tmp_path.glob("out.txt.*"))) == 2  # started in a worker, then on its own


def test_a_worker_exits_with_the_process_that_started_it(tmp_path):
    """Snakemake killed outright (SIGKILL: no handler runs) leaves no worker training on."""
    pid_file = tmp_path / "worker.pid"
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import os, time\nfrom pathlib import Path\n"
                       f"Path({str(pid_file)!r}).write_text(str(os.getpid()))\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", (
        "from types import SimpleNamespace as NS\n"
        "from bnopt.running.workers import RuleJob, run_script\n"
        f"run_script({str(sleeper)!r}, RuleJob([], [], NS(), NS(), 1, []), 'warm', 1)\n")])
    deadline = time.time() + 120
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    worker = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived the process that started it")


def test_the_pool_starts_once_and_holds_at_most_its_workers(tmp_path):
    out = tmp_path / "pid.txt"
    ok = tmp_path / "ok.py"
    ok.write_text("from pathlib import Path\nPath(snakemake.output[0]).write_text(str(__import__('os').getpid()))\n")
    job = RuleJob(input=[], output=[str(out)], params=NS(), wildcards=NS(), threads=1, log=[])
    pids = set()
    for _ in range(3):
        run_script(ok, job, "warm", POOL)
        pids.add(out.read_text())
    assert len(pids) == 1 and workers._POOL is not None
