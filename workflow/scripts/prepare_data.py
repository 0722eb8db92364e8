"""Rule prepare_data: read (or download) a dataset once into results/data/{dataset}.pt."""
from bnopt.running.rule_glue import log_to
from bnopt.training.data import load_dataset


def main(sm):
    ds = load_dataset(sm.wildcards.dataset, **sm.params.source)
    print(f"{ds.name}: train {tuple(ds.x_train.shape)}, test {tuple(ds.x_test.shape)}, "
          f"{ds.num_classes} classes")
    ds.save(sm.output[0])


if __name__ == "__main__" and "snakemake" in globals():
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
