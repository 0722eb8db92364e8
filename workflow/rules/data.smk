rule prepare_data:
    """Read a dataset once (downloading it if needed) into one uint8 tensor file."""
    output:
        "results/data/{dataset}.pt",
    params:
        data_root=config["data_root"],
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/prepare_data.py"
