rule summary:
    """One row per run, plus all per-step and eval rows in one Parquet each."""
    localrule: True
    input:
        runs=ALL_RUNS,
        code=TABLE_CODE,
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
