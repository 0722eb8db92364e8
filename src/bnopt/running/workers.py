"""Rule scripts run in warm worker processes: one process runs many jobs.

A job's start-up is a fresh Python importing what its script needs: torch (and, at a training
run's optimizer, torch's compiler front end), 3-5 s on a CPU, as long as a quick run's
training; pandas, matplotlib and seaborn, about 2.5 s, for a figure that takes a second to
draw. A local Snakemake run (with the workflow profile) instead runs each job's script in one
of as many worker processes as training jobs can run at once (all started with the first
job); they import the training path once when they start, the plotting libraries at
their first figure, and then take one job after another. The script is the same file, run as
Snakemake would run it (``__main__``, with a ``snakemake`` object holding the job's input,
output, params, wildcards, threads, log, resources and config), so what a job computes does
not depend on where it ran (``tests/test_workers.py`` trains runs back to back in one worker
and compares them bitwise with fresh processes; ``tests/test_workflow.py`` compares the
figures and tables of warm and fresh jobs byte for byte). A worker exits when the Snakemake
process that started it is gone.

A job that holds a GPU runs its script in a fresh process of its own instead (its GPU lease and
CUDA context end with the process), and where Snakemake runs each job in a Snakemake process of
its own (no ``--force-use-threads``, which the workflow profile sets), in that process. On a
cluster and under conda every rule is a plain ``script:`` rule (workflow/rules/*.smk)."""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
import runpy
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bnopt.running import clock

# What a worker imports before its first job: the training path, torch's compiler front end
# (which torch.optim imports on first use) included.
WARM_IMPORTS = ("torch", "torch._dynamo", "bnopt.training.job", "bnopt.training.loop",
                "bnopt.running.gpus", "bnopt.running.rule_glue")

_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


@dataclass
class RuleJob:
    """What a rule script reads of ``snakemake`` (Snakemake's own object is built only for a
    script it starts itself): the job's files, settings and log, picklable."""

    input: object
    output: object
    params: object
    wildcards: object
    threads: int
    log: object
    resources: object = None
    config: dict = field(default_factory=dict)
    rule: str = ""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the Snakemake process died: so does its job
            os._exit(1)


def _warm_up(parent: int, modules: tuple) -> None:
    """A worker's initializer: exit with its parent, import ``modules``, and hand the
    worker's start-up to its first job's clock (:data:`bnopt.running.clock.PENDING_STARTUP`)."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    for name in modules:
        importlib.import_module(name)
    clock.PENDING_STARTUP = clock.process_age() or 0.0


def _run_script(path: str, job: RuleJob, warm: bool) -> None:
    """Run the rule script at ``path`` as its ``__main__`` with ``job`` as ``snakemake``."""
    if warm:
        clock.WARM = True
    runpy.run_path(path, init_globals={"snakemake": job}, run_name="__main__")


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up, initargs=(os.getpid(), WARM_IMPORTS))
            # Start every worker with the first job, before the pool's watcher thread, as the
            # pool does under fork. Started on demand, a worker can be missing from what that
            # thread watches until it next wakes (CPython 3.9-3.13: it wakes, then the worker
            # is added), so its death would go unnoticed, its job hanging, until another job
            # ends (tests/test_workers.py).
            _POOL._safe_to_dynamically_spawn_children = False
        return _POOL


def _drop_pool(pool) -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is pool:
            _POOL = None


def run_script(script, job: RuleJob, where: str, workers: int = 1) -> None:
    """Run rule script ``script`` for ``job``: ``where`` = ``warm`` (in a worker of this
    process's pool of at most ``workers``), ``fresh`` (in a new process of its own, as
    Snakemake's ``script:`` would) or ``here`` (in this process: a Snakemake process that runs
    this one job). A failure in the script raises here, so Snakemake marks the job failed; a
    warm job whose pool broke (a worker died) runs once more in a process of its own."""
    path = str(Path(script).resolve())
    if where == "here":
        _run_script(path, job, warm=False)
        return
    if where == "fresh":
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up, initargs=(os.getpid(), ())) as one:
            one.submit(_run_script, path, job, False).result()
        return
    if where != "warm":
        raise ValueError(f"where must be warm, fresh or here, not {where!r}")
    pool = _pool(workers)
    try:
        pool.submit(_run_script, path, job, True).result()
        return
    except concurrent.futures.process.BrokenProcessPool:
        _drop_pool(pool)  # the next job starts a new pool
    # A worker died (killed, out of memory), and a process pool that loses a worker fails
    # every job it was running, this job's worker or another's: run this job once more, in a
    # process of its own. A job that ran beside the one that died finishes (a training run
    # from its last checkpoint); the one that killed its worker dies again, and fails.
    try:
        run_script(script, job, "fresh")
    except concurrent.futures.process.BrokenProcessPool as e:
        raise RuntimeError(
            f"the process running {Path(script).name} for this job died, in a warm worker and "
            f"again in a process of its own (killed, out of memory?); its log: "
            f"{job.log[0] if job.log else 'none'}.") from e
