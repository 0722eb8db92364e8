rule summary:
    """One row per run, plus all per-step and eval rows in one Parquet each."""
    localrule: True
    input:
        runs=ALL_RUNS,
        code=rule_code("summarize.py"),
    output:
        csv=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        steps="results/tables/steps.parquet",
        evals="results/tables/eval.parquet",
    log:
        "results/logs/summary.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/summarize.py"


rule reported:
    """An earlier experiment's published findings beside our runs' (bnopt.scorecard.reported)."""
    localrule: True
    input:
        runs=reported_inputs(),
        code=rule_code("reported.py"),
    output:
        csv=report(
            "results/tables/reported.csv",
            caption="../report/reported.rst",
            category="Tables",
        ),
    params:
        experiment=config["experiment"],
    log:
        "results/logs/reported.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/reported.py"
