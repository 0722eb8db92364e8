rule prepare_data:
    """Read a dataset once (downloading it if needed), or draw the DLN task, into one file."""
    localrule: True
    output:
        "results/data/{dataset}.pt",
    params:
        source=data_params,
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/prepare_data.py"
