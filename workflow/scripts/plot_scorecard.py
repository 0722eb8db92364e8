"""Rule fig0_scorecard: draw the scorecard table as Figure 0."""
from bnopt.figures.scorecard import fig0_scorecard
from bnopt.running.rule_glue import log_to


def main(sm):
    fig0_scorecard(sm.input.claims, sm.output[0])


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
