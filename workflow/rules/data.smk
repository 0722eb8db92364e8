# Read a dataset once (downloading it if needed), or draw the DLN task, into one file. Like
# every rule, a `script:` rule or a `run:` rule running the same script in a warm worker
# (common.smk, WARM and run_rule_script).
PREPARE_DATA = dict(
    output="results/data/{dataset}.pt",
    params={"source": data_params},
    log="results/logs/prepare_data/{dataset}.log",
)


if not WARM:

    rule prepare_data:
        """Read a dataset once (downloading it if needed), or draw the DLN task, into one file."""
        localrule: True
        output:
            PREPARE_DATA["output"],
        params:
            **PREPARE_DATA["params"],
        log:
            PREPARE_DATA["log"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/prepare_data.py"

else:

    rule prepare_data:
        """Read a dataset once (downloading it if needed), or draw the DLN task, into one file."""
        localrule: True
        output:
            PREPARE_DATA["output"],
        params:
            **PREPARE_DATA["params"],
        log:
            PREPARE_DATA["log"],
        run:
            run_rule_script("prepare_data.py", input, output, params, wildcards, threads, log,
                            resources, rule)
