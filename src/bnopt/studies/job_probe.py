"""What a training job pays outside its steps, by stage, timed the way a job pays it: a fresh
Python that imports what ``workflow/scripts/train.py`` imports, loads a prepared dataset of the
real size, and runs :func:`bnopt.training.job.train_job` (2 steps, on a small split, so that
its evaluations are short), then trains the same 2 steps again in the same process: the
difference is the first steps' warm-up (kernels, allocator, cuDNN's autotuning, a CUDA graph's
capture). One checkpoint is written and timed too. Its imports are also what a warm worker
process imports once (:data:`bnopt.running.workers.WARM_IMPORTS`, torch's compiler front end,
which torch.optim imports on first use, among them): ``interpreter`` and ``imports`` are what a
process pays, once per job or once per warm worker; the other stages, every job.

    python -m bnopt.studies.job_probe RUN_JSON FULL_DATA SMALL_DATA OUT_DIR THREADS

prints one JSON object of seconds: interpreter, imports, data, setup, warmup, write,
checkpoint. :func:`bnopt.studies.cost.startup_stages` runs it; the projection once per
(dataset, model, device). Its imports are the train script's, written again here (the package
cannot read workflow/scripts/): keep the two lists alike.
"""
from bnopt.running.clock import Stages

STAGES = Stages()  # before the imports: as the train script starts it

import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import bnopt.running.gpus  # noqa: E402,F401  (what the train script imports, for its cost)
import bnopt.running.rule_glue  # noqa: E402,F401
from bnopt.plan.runs import RunConfig  # noqa: E402
from bnopt.plan.tables import TABLES  # noqa: E402
from bnopt.training.data import Dataset  # noqa: E402
from bnopt.training.job import train_job  # noqa: E402
from bnopt.training.loop import build_run, resolve_device, train_run  # noqa: E402
from bnopt.running.workers import WARM_IMPORTS  # noqa: E402

for _name in WARM_IMPORTS:
    importlib.import_module(_name)
STAGES.done("imports")


def main(argv: list[str]) -> dict:
    run_json, full, small, out, threads = argv
    threads = int(threads)
    cfg = RunConfig.from_dict(json.loads(Path(run_json).read_text()))
    Dataset.load(full)
    data_s = STAGES.done("data")  # the job's load: the real size
    out = Path(out)
    first = train_job(cfg, small, {n: out / f"{n}.parquet" for n in TABLES}, out / "run.json",
                      Stages(), threads=threads, progress=False).meta
    again = train_run(cfg, Dataset.load(small), progress=False, threads=threads).meta
    run = build_run(cfg, Dataset.load(small), resolve_device(cfg.device))
    t = time.perf_counter()
    run.save(out / "checkpoint.pt")
    res = {"interpreter": STAGES.seconds.get("interpreter", 0.0),
           "imports": STAGES.seconds["imports"], "data": data_s,
           "setup": first["setup_seconds"],
           "warmup": max(0.0, first["wall_seconds"] - again["wall_seconds"]),
           "write": first["write_seconds"], "checkpoint": time.perf_counter() - t}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
