rule train:
    """Train one (dataset, model, variant, lr, seed) run; write per-step and eval Parquet."""
    input:
        data="results/data/{dataset}.pt",
    output:
        steps="results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}/steps.parquet",
        evals="results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}/eval.parquet",
        meta="results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}/run.json",
    params:
        train=train_params,
    log:
        "results/logs/train/{dataset}/{model}/{variant}/lr{lr}_seed{seed}.log",
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/train.py"
