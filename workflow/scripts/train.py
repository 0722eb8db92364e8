"""Rule train: one (dataset, model, variant, lr, seed) run."""
from bnopt.running.clock import Stages

STAGES = Stages()  # before the imports below: the job's start-up by stage (run.json)

import dataclasses  # noqa: E402
import json  # noqa: E402

from bnopt.plan.runs import UNTRACKED, RunConfig, model_of, train_settings  # noqa: E402
from bnopt.plan.tables import TABLES  # noqa: E402
from bnopt.running.gpus import lease_gpu, sharing_note  # noqa: E402
from bnopt.running.rule_glue import log_to  # noqa: E402
from bnopt.training.job import train_job  # noqa: E402
from bnopt.training.loop import resolve_device  # noqa: E402

STAGES.done("imports")


def main(sm):
    w = sm.wildcards
    # the tracked settings (params.train) and the checkpoint policy, which is not tracked
    # (UNTRACKED: changing it retrains nothing), from the config as the plan reads it
    policy = train_settings(sm.config, w.model)
    cfg = RunConfig.from_dict({**sm.params.train, **{k: policy[k] for k in UNTRACKED},
                               "dataset": w.dataset, "model": model_of(sm.config, w.model),
                               "variant": w.variant,
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
    train_job(cfg, sm.input.data, {name: getattr(sm.output, name) for name in TABLES},
              sm.output.meta, STAGES, threads=sm.threads)


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
