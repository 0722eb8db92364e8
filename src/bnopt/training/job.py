"""One training job as the train rule runs it, after its run's settings are known: the prepared
data loaded, the run trained (resuming from its checkpoint), its tables and run.json written,
and the job's start-up on record by stage (run.json's ``job_stages_s``: ``interpreter``,
``imports``, ``data``, ``setup``; the loop is ``wall_seconds``, the tables' writing
``write_seconds``). ``workflow/scripts/train.py`` calls it; the cost projection times a job the
same way (:func:`bnopt.studies.cost.startup_stages`)."""

from __future__ import annotations

from pathlib import Path

import torch

from bnopt.analysis.outcome import outcome_text
from bnopt.plan.runs import RunConfig
from bnopt.running.clock import Stages
from bnopt.training.data import Dataset
from bnopt.training.loop import RunResult, train_run, write_run


def train_job(cfg: RunConfig, data_path, paths: dict, meta_path, stages: Stages,
              threads: int | None = None, progress: bool = True) -> RunResult:
    """Train ``cfg`` on the prepared data at ``data_path`` and write its tables to ``paths``
    (name -> file) and run.json to ``meta_path``; its checkpoint lives beside run.json and is
    removed once the outputs exist (unless ``keep_checkpoints``). ``stages`` has timed the
    job up to here (the script's imports); the data and the setup are added."""
    data = Dataset.load(data_path)
    stages.done("data")
    checkpoint = Path(meta_path).with_name("checkpoint.pt")
    try:
        result = train_run(cfg, data, progress=progress, threads=threads,
                           checkpoint_path=checkpoint)
    except torch.OutOfMemoryError as e:
        raise RuntimeError(
            f"out of memory on {cfg.device}: lower batch_size (now {cfg.batch_size}) or width "
            f"(now {cfg.width}) in the config; a measured step also holds two extra copies of "
            f"the parameters. The checkpoint, if any, is kept. ({e})") from None
    m = result.meta
    m["job_stages_s"] = {**stages.seconds, "setup": m["setup_seconds"]}
    print(f"done on {m['device_name']}: {m['steps_completed']} steps in {m['wall_seconds']:.1f} s, "
          f"diverged={m['diverged']}, never_learned={m['never_learned']}, final batch acc "
          f"{m['final_batch_acc']:.4f}, final test acc {m['final_test_acc']:.4f}; start-up "
          + ", ".join(f"{k} {v:.1f} s" for k, v in m["job_stages_s"].items()), flush=True)
    warning = outcome_text(m)
    if warning:
        print(f"WARNING: {warning}; comparisons with this run are against a network that did "
              "not train (docs/outputs.md, 'Runs that did not train').", flush=True)
    write_run(result, paths, meta_path)
    if not cfg.keep_checkpoints:
        checkpoint.unlink(missing_ok=True)
    return result
