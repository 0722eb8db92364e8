rule train:
    """Train one (dataset, model, variant, lr, seed) run; write its Parquet tables."""
    input:
        data="results/data/{dataset}.pt",
    output:
        **{name: f"{RUN}/{name}.parquet" for name in TABLES},
        meta=f"{RUN}/run.json",
    params:
        train=train_params,
        gpu_lock_dir=config["gpu_lock_dir"],
    log:
        "results/logs/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.log",
    threads: config["threads"]
    resources:
        # a CPU run holds no GPU, so `--resources gpu=1` (profiles/default) does not serialise it
        gpu=0 if config["device"] == "cpu" else 1,
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/train.py"
