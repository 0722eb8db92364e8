"""Rule reported: an earlier experiment's published findings beside our runs' (reported.csv)."""
from bnopt.running.io import write_csv
from bnopt.running.rule_glue import log_to
from bnopt.scorecard.reported import reported_table


def main(sm):
    table = reported_table(sm.params.experiment, list(sm.input.runs))
    write_csv(table, sm.output.csv)
    for row in table.itertuples():
        print(f"{row.finding}\n  published: {row.published}\n  ours: {row.ours}\n"
              f"  {row.verdict}: {row.why}")
    print(f"where our settings differ: {table.differs.iloc[0]}")


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
