"""Rule scorecard: every claim of the paper judged from the runs (claims.csv and claims.md), and
the matched checks' effects per level of the training loss (claims_by_loss.csv)."""
from bnopt.running.io import atomic_path, write_csv
from bnopt.running.rule_glue import log_to
from bnopt.scorecard.text import code_note, precision_note, to_markdown
from bnopt.scorecard.verdicts import judge_all


def main(sm):
    table, by_loss = judge_all(sm.config, list(sm.input.runs))
    write_csv(table, sm.output.csv)
    write_csv(by_loss, sm.output.by_loss)
    runs = list(sm.input.runs)
    md = to_markdown(table) + precision_note(runs) + code_note(runs)
    with atomic_path(sm.output.md) as tmp:
        tmp.write_text(md)
    print(md)


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
