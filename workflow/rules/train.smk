rule train:
    """Train one (dataset, model, variant, lr, seed) run; write its Parquet tables."""
    input:
        data="results/data/{dataset}.pt",
    output:
        steps=f"{RUN}/steps.parquet",
        evals=f"{RUN}/eval.parquet",
        probes=f"{RUN}/probes.parquet",
        ics=f"{RUN}/ics.parquet",
        activations=f"{RUN}/activations.parquet",
        histograms=f"{RUN}/histograms.parquet",
        init_distance=f"{RUN}/init_distance.parquet",
        hessian=f"{RUN}/hessian.parquet",
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
