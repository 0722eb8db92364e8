# The runs' tables gathered into one, and an earlier experiment's reported findings beside
# ours. Each rule is a `script:` rule or a `run:` rule running the same script in a warm worker
# (common.smk, WARM and run_rule_script); its directives are written once, in a dict.
SUMMARY = dict(
    input={"runs": ALL_RUNS, "code": rule_code("summarize.py")},
    output={
        "csv": report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        "steps": "results/tables/steps.parquet",
        "evals": "results/tables/eval.parquet",
    },
    log="results/logs/summary.log",
)
REPORTED = dict(
    input={"runs": reported_inputs(), "code": rule_code("reported.py")},
    output={
        "csv": report(
            "results/tables/reported.csv",
            caption="../report/reported.rst",
            category="Tables",
        )
    },
    params={"experiment": config["experiment"]},
    log="results/logs/reported.log",
)


if not WARM:

    rule summary:
        """One row per run, plus all per-step and eval rows in one Parquet each."""
        localrule: True
        input:
            **SUMMARY["input"],
        output:
            **SUMMARY["output"],
        log:
            SUMMARY["log"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/summarize.py"

    rule reported:
        """An earlier experiment's published findings beside our runs' (bnopt.scorecard.reported)."""
        localrule: True
        input:
            **REPORTED["input"],
        output:
            **REPORTED["output"],
        params:
            **REPORTED["params"],
        log:
            REPORTED["log"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/reported.py"

else:

    rule summary:
        """One row per run, plus all per-step and eval rows in one Parquet each."""
        localrule: True
        input:
            **SUMMARY["input"],
        output:
            **SUMMARY["output"],
        log:
            SUMMARY["log"],
        run:
            run_rule_script("summarize.py", input, output, params, wildcards, threads, log,
                            resources, rule)

    rule reported:
        """An earlier experiment's published findings beside our runs' (bnopt.scorecard.reported)."""
        localrule: True
        input:
            **REPORTED["input"],
        output:
            **REPORTED["output"],
        params:
            **REPORTED["params"],
        log:
            REPORTED["log"],
        run:
            run_rule_script("reported.py", input, output, params, wildcards, threads, log,
                            resources, rule)
