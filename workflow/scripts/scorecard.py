"""Rule scorecard: every claim of the paper judged from the runs (claims.csv and claims.md)."""
from bnopt.claims_text import precision_note, to_markdown
from bnopt.verdicts import scorecard
from bnopt.io import atomic_path, write_csv
from bnopt.rule_glue import log_to


def main(sm):
    table = scorecard(sm.config, list(sm.input.runs))
    write_csv(table, sm.output.csv)
    md = to_markdown(table) + precision_note(list(sm.input.runs))
    with atomic_path(sm.output.md) as tmp:
        tmp.write_text(md)
    print(md)


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
