rule summary:
    """One row per run, plus all per-step and eval rows in one Parquet each."""
    localrule: True
    input:
        runs=ALL_RUNS,
        code=TABLE_CODE + [rule_script("summarize.py")],
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
    """An earlier experiment's published findings beside our runs' (bnopt.reported)."""
    localrule: True
    input:
        runs=reported_inputs(),
        code=TABLE_CODE
        + [str(_PKG / "reported.py"), str(_PKG / "reported.yaml"), rule_script("reported.py")],
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
