"""Rule train: one (dataset, model, variant, lr, seed) run."""
import dataclasses
import json
from pathlib import Path

import torch

from bnopt.analysis.outcome import outcome_text
from bnopt.plan.runs import UNTRACKED, RunConfig, train_settings
from bnopt.plan.tables import TABLES
from bnopt.running.gpus import lease_gpu, sharing_note
from bnopt.running.rule_glue import log_to
from bnopt.training.data import Dataset
from bnopt.training.loop import resolve_device, train_run, write_run


def main(sm):
    w = sm.wildcards
    # the tracked settings (params.train) and the checkpoint policy, which is not tracked
    # (UNTRACKED: changing it retrains nothing), from the config as the plan reads it
    policy = train_settings(sm.config, w.model)
    cfg = RunConfig.from_dict({**sm.params.train, **{k: policy[k] for k in UNTRACKED},
                               "dataset": w.dataset, "model": w.model, "variant": w.variant,
                               "lr": float(w.lr), "seed": int(w.seed)})
    if resolve_device(cfg.device).type == "cuda":
        # snakemake counts GPUs but does not assign them: lease a distinct one for this job
        # scheduling settings: from the config, not params (a change must retrain nothing)
        lease = lease_gpu(sm.config["gpu_lock_dir"], slots=sm.config["jobs_per_gpu"])
        print(f"leased GPU {lease.device_id} as {lease.device} ({lease.lock_path})", flush=True)
        note = sharing_note(sm.config["jobs_per_gpu"])
        if note:
            print(f"NOTE: {note}", flush=True)
        cfg = dataclasses.replace(cfg, device=lease.device)
    print("run config:", json.dumps(cfg.__dict__, sort_keys=True), flush=True)
    checkpoint = Path(sm.output.meta).with_name("checkpoint.pt")
    try:
        result = train_run(cfg, Dataset.load(sm.input.data), threads=sm.threads,
                           checkpoint_path=checkpoint)
    except torch.OutOfMemoryError as e:
        raise RuntimeError(
            f"out of memory on {cfg.device}: lower batch_size (now {cfg.batch_size}) or width "
            f"(now {cfg.width}) in the config; a measured step also holds two extra copies of "
            f"the parameters. The checkpoint, if any, is kept. ({e})") from None
    m = result.meta
    print(f"done on {m['device_name']}: {m['steps_completed']} steps in {m['wall_seconds']:.1f} s, "
          f"diverged={m['diverged']}, never_learned={m['never_learned']}, final batch acc "
          f"{m['final_batch_acc']:.4f}, final test acc {m['final_test_acc']:.4f}")
    warning = outcome_text(m)
    if warning:
        print(f"WARNING: {warning}; comparisons with this run are against a network that did "
              "not train (docs/outputs.md, 'Runs that did not train').", flush=True)
    paths = {name: getattr(sm.output, name) for name in TABLES}
    write_run(result, paths, sm.output.meta)
    if not cfg.keep_checkpoints:
        checkpoint.unlink(missing_ok=True)


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
