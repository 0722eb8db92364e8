# Train one (dataset, model, variant, lr, seed) run; write its Parquet tables. Its script,
# workflow/scripts/train.py, runs where run_rule_script says (common.smk): a local run's CPU
# job in a warm worker process that imported torch once, a GPU job in a fresh process
# (bnopt.running.workers). On a cluster, under conda or with warm_workers false it is a plain
# script rule (a process a job). Every rule is written this way: its directives once, in a
# dict, and a `script:` and a `run:` form.
TRAIN = dict(
    input={"data": "results/data/{dataset}.pt"},
    output={**{name: f"{RUN}/{name}.parquet" for name in RUN_TABLES}, "meta": f"{RUN}/run.json"},
    log="results/logs/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.log",
    # a CPU run (device: cpu, and the DLN's dln.device: cpu) holds no GPU, so
    # `--resources gpu=1` (profiles/default) does not serialise it behind the GPU jobs;
    # mem_mb and runtime: what a cluster profile asks the scheduler for; CPUs are `threads`
    resources={"gpu": gpu_slots, "mem_mb": config["train_mem_mb"],
               "runtime": config["train_runtime"]},
)


if not WARM:

    rule train:
        """Train one (dataset, model, variant, lr, seed) run; write its Parquet tables."""
        input:
            **TRAIN["input"],
        output:
            **TRAIN["output"],
        params:
            # what the run computes: a change retrains it (scheduling settings, warm_workers
            # included, are read from the config, so changing them retrains nothing)
            train=train_params,
        log:
            TRAIN["log"],
        benchmark:
            # the whole job, end to end (wall s): to check a projection against (BENCHMARKS.md)
            JOB_BENCHMARK
        threads: config["threads"]
        resources:
            **TRAIN["resources"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/train.py"

else:

    rule train:
        """Train one (dataset, model, variant, lr, seed) run; write its Parquet tables."""
        input:
            **TRAIN["input"],
        output:
            **TRAIN["output"],
        params:
            train=train_params,
        log:
            TRAIN["log"],
        benchmark:
            # wall s as above; its memory and CPU columns are those of Snakemake's process
            # and all its workers
            JOB_BENCHMARK
        threads: config["threads"]
        resources:
            **TRAIN["resources"],
        run:
            run_rule_script("train.py", input, output, params, wildcards, threads, log,
                            resources, rule, gpus=gpu_slots(wildcards))
