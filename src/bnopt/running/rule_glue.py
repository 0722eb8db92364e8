"""Glue for the Snakemake workflow (``workflow/``): a rule script's log, the warnings printed
at the end of a run, and the check of cluster jobs before their submission."""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

from snakemake.exceptions import WorkflowError

from bnopt.analysis.aggregate import read_meta
from bnopt.analysis.code_versions import mixed_code_note
from bnopt.analysis.outcome import outcome_text
from bnopt.running.cluster import check_requests, sinfo_nodes


@contextlib.contextmanager
def log_to(path):
    """Redirect stdout/stderr (progress bars included) into ``path`` for the block; a crash's
    traceback is written there too, then re-raised so Snakemake marks the job failed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    old = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as f:
        sys.stdout = sys.stderr = f
        try:
            yield f
        except BaseException:
            traceback.print_exc(file=f)
            raise
        finally:
            sys.stdout, sys.stderr = old


def run_warnings(meta_paths) -> list[str]:
    """One warning per finished run (among ``meta_paths`` that exist) that diverged or never
    learned: what the end of a Snakemake run prints, so a comparison against a network that did
    not train cannot go unnoticed."""
    lines = []
    for p in meta_paths:
        if Path(p).exists():
            text = outcome_text(read_meta(p))
            if text:
                lines.append(f"{text} ({p})")
    return lines



def code_warning(meta_paths) -> str:
    """Where the finished runs among ``meta_paths`` were made by different code
    (run.json's ``code_version``), a sentence naming each version's runs; else empty."""
    return mixed_code_note([read_meta(p) for p in meta_paths if Path(p).exists()])


def check_cluster_jobs(workflow) -> None:
    """On a SLURM executor, before the first submission (Snakefile's ``onstart``): refuse
    training jobs that no node of their partition could run (:mod:`bnopt.running.cluster`), instead of
    leaving them PENDING for ever. Does nothing for other executors."""

    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    requests = []
    for job in workflow.dag.needrun_jobs():
        if job.rule.name != "train" or job.is_local:
            continue
        res = job.resources
        requests.append({"mem_mb": int(res.get("mem_mb", 0) or 0),
                         "cpus": int(res.get("cpus_per_task", 0) or job.threads),
                         "gpus": int(res.get("gpu", 0) or 0),
                         "partition": res.get("slurm_partition")})
    unique = [dict(t) for t in dict.fromkeys(tuple(sorted(r.items())) for r in requests)]
    problem = check_requests(unique, sinfo_nodes())
    if problem:
        raise WorkflowError(problem)
