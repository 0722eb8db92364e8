"""Rule summary: summary.csv (one row per run) and combined per-step / eval Parquet."""
from bnopt.analysis.aggregate import load_table, summary_table
from bnopt.running.io import write_csv, write_parquet
from bnopt.running.rule_glue import code_warning, log_to, run_warnings


def main(sm):
    metas = list(sm.input.runs)
    write_parquet(load_table(metas, "steps"), sm.output.steps)
    write_parquet(load_table(metas, "eval"), sm.output.evals)
    summary = summary_table(metas)
    write_csv(summary, sm.output.csv)
    print(summary.to_string())
    for line in run_warnings(metas):
        print(f"WARNING: {line}")
    if code_warning(metas):
        print(f"WARNING: {code_warning(metas)}")


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
