# The scorecard: every claim of the paper judged from the runs (bnopt.scorecard: the checks,
# the values they compare, the verdicts, claims.md; docs/scorecard.md).
rule scorecard:
    """One row per check: per-seed values, effect, seed interval, verdict and its rule."""
    localrule: True
    input:
        runs=CLAIM_RUNS,
        code=rule_code("scorecard.py"),
    output:
        csv=report(
            "results/tables/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
        ),
        md="results/tables/claims.md",
        by_loss="results/tables/claims_by_loss.csv",
    log:
        "results/logs/scorecard.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/scorecard.py"


rule fig0_scorecard:
    """Figure 0: the scorecard at a glance."""
    localrule: True
    input:
        claims="results/tables/claims.csv",
        code=rule_code("plot_scorecard.py"),
    output:
        report(
            "results/figures/fig0_scorecard.png",
            caption="../report/fig0_scorecard.rst",
            category="Claims",
        ),
    log:
        "results/logs/figures/fig0_scorecard.log",
    conda:
        "../../envs/bnopt.yaml"
    script:
        "../scripts/plot_scorecard.py"
