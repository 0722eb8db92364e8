rule train:
    """Train one (dataset, model, variant, lr, seed) run; write its Parquet tables."""
    input:
        data="results/data/{dataset}.pt",
    output:
        **{name: f"{RUN}/{name}.parquet" for name in RUN_TABLES},
        meta=f"{RUN}/run.json",
    params:
        # what the run computes: a change retrains it. Scheduling settings (jobs_per_gpu,
        # gpu_lock_dir) are read from the config by the script, so changing them retrains nothing
        train=train_params,
    log:
        "results/logs/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.log",
    benchmark:
        # the whole job, end to end (wall s, memory): to check a projection against (BENCHMARKS.md)
        JOB_BENCHMARK
    threads: config["threads"]
    resources:
        # a CPU run (device: cpu, and the DLN's dln.device: cpu) holds no GPU, so
        # `--resources gpu=1` (profiles/default) does not serialise it behind the GPU jobs
        gpu=gpu_slots,
        # what a cluster profile asks the scheduler for; CPUs are `threads`
        mem_mb=config["train_mem_mb"],
        runtime=config["train_runtime"],
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/train.py"
