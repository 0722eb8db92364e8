"""Figure rules: draw the figure named in params.figure from its runs."""
from bnopt.figures.paper import FIGURES
from bnopt.running.rule_glue import log_to


def main(sm):
    FIGURES[sm.params.figure](list(sm.input.runs), sm.output[0], **sm.params.kwargs)


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
