# bnopt: reproduce Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?"
# Build one figure:   snakemake results/figures/fig1_accuracy.png
# Build everything:   snakemake
# (profiles/default sets --cores all --resources gpu=1; docs/running.md, "Full reproduction (GPU)")
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


onstart:
    from bnopt.running.rule_glue import check_cluster_jobs

    # on SLURM: refuse jobs no node could run before any is submitted (docs/running.md, "Clusters")
    check_cluster_jobs(workflow)


onsuccess:
    from bnopt.running.rule_glue import code_warning, run_warnings

    _bad = run_warnings(ALL_RUNS)
    if _bad:
        print(f"WARNING: {len(_bad)} run(s) diverged or never learned; figures name them, "
              "summary.csv has the columns diverged and never_learned "
              "(docs/outputs.md, 'Runs that did not train'):\n  "
              + "\n  ".join(_bad), file=sys.stderr)
    _mixed = code_warning(ALL_RUNS)
    if _mixed:
        print(f"WARNING: {_mixed}", file=sys.stderr)


rule all:
    default_target: True
    localrule: True
    input:
        # the scorecard first: does the paper hold here (docs/scorecard.md); an earlier
        # experiment's preset builds its own experiment instead
        [] if config["experiment"] else "results/figures/fig0_scorecard.png",
        [] if config["experiment"] else "results/tables/claims.md",
        "results/tables/summary.csv",
        # every figure this config can draw (common.smk: BLOCKED says why one is left out), or
        # an experiment's figures (bnopt.plan.runs.target_figures)
        expand("results/figures/{figure}.png", figure=TARGET_FIGURES),
        # an earlier experiment's preset: its published findings beside ours
        ["results/tables/reported.csv"] if config["experiment"] else [],
