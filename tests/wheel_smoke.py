"""What a user of a plain (non-editable) install does first, run by tests/test_envs.py in a
folder outside the checkout with only the installed package on the path: a default RunConfig
of each model, a 10-step run of each, and a figure drawn from two finished runs. Prints where
bnopt was imported from, then one line per run, then the figure's path."""
import sys
from pathlib import Path

import bnopt
from bnopt.figures.paper import FIGURES
from bnopt.plan.runs import RunConfig, run_dir
from bnopt.plan.tables import TABLES
from bnopt.plan.variants import MODELS
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run, write_run


def main(out: Path) -> None:
    print(bnopt.__file__)
    metas = []
    for model in MODELS:
        dataset = "dln" if model == "dln" else "digits"
        data = load_dataset(dataset)
        variants = ["standard", "batchnorm"] if model == "vgg" else ["batchnorm"]
        for variant in variants:
            small = {} if model == "dln" else {"batch_size": 8, "width": 0.125}
            cfg = RunConfig(dataset=dataset, model=model, variant=variant, lr=0.1 if model != "dln"
                            else 1e-6, seed=0, steps=10, eval_every=10, log_every=10,
                            measure_every=5, device="cpu", **small)
            result = train_run(cfg, data, progress=False, threads=1)
            folder = out / run_dir(dataset, model, variant, cfg.lr, 0)
            write_run(result, {n: folder / f"{n}.parquet" for n in TABLES}, folder / "run.json")
            print(model, variant, result.meta["steps_completed"], result.meta["final_batch_loss"])
            if model == "vgg":
                metas.append(folder / "run.json")
    figure = out / "fig1_accuracy.png"
    FIGURES["fig1_accuracy"](metas, figure, lrs=[0.1])
    print(figure)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
