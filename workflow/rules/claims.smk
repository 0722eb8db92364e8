# The scorecard: every claim of the paper judged from the runs (bnopt.scorecard: the checks,
# the values they compare, the verdicts, claims.md; docs/scorecard.md). Each rule is a
# `script:` rule or a `run:` rule running the same script in a warm worker (common.smk, WARM
# and run_rule_script); its directives are written once, in a dict.
SCORECARD = dict(
    input={"runs": CLAIM_RUNS, "code": rule_code("scorecard.py")},
    output={
        "csv": report(
            "results/tables/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
        ),
        "md": "results/tables/claims.md",
        "by_loss": "results/tables/claims_by_loss.csv",
    },
    log="results/logs/scorecard.log",
)
FIG0 = dict(
    input={"claims": "results/tables/claims.csv", "code": rule_code("plot_scorecard.py")},
    output=report(
        "results/figures/fig0_scorecard.png",
        caption="../report/fig0_scorecard.rst",
        category="Claims",
    ),
    log="results/logs/figures/fig0_scorecard.log",
)


if not WARM:

    rule scorecard:
        """One row per check: per-seed values, effect, seed interval, verdict and its rule."""
        localrule: True
        input:
            **SCORECARD["input"],
        output:
            **SCORECARD["output"],
        log:
            SCORECARD["log"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/scorecard.py"

    rule fig0_scorecard:
        """Figure 0: the scorecard at a glance."""
        localrule: True
        input:
            **FIG0["input"],
        output:
            FIG0["output"],
        log:
            FIG0["log"],
        conda:
            "../../envs/bnopt.yaml"
        script:
            "../scripts/plot_scorecard.py"

else:

    rule scorecard:
        """One row per check: per-seed values, effect, seed interval, verdict and its rule."""
        localrule: True
        input:
            **SCORECARD["input"],
        output:
            **SCORECARD["output"],
        log:
            SCORECARD["log"],
        run:
            run_rule_script("scorecard.py", input, output, params, wildcards, threads, log,
                            resources, rule)

    rule fig0_scorecard:
        """Figure 0: the scorecard at a glance."""
        localrule: True
        input:
            **FIG0["input"],
        output:
            FIG0["output"],
        log:
            FIG0["log"],
        run:
            run_rule_script("plot_scorecard.py", input, output, params, wildcards, threads,
                            log, resources, rule)
