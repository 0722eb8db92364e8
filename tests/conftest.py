import os
import shutil
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist every worker, and every process a test starts (snakemake, its jobs, the
# benchmarks), would take one OpenMP thread per core: on CI's 2 cores that oversubscribes them,
# and libgomp's spin-waiting then slows a step by 10-100x (a 12 ms smoke step took 27 s). One
# thread each; a test that means to time threads sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from bnopt.training.data import load_dataset  # noqa: E402 (the installed package: pip install -e .)


@pytest.fixture(scope="session")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def snakemake_command(args, workdir) -> tuple[list[str], dict]:
    """(argv, env) of the real snakemake CLI on this repo's Snakefile with ``workdir`` as its
    working directory (which gets a copy of config.yaml)."""
    shutil.copy(ROOT / "config.yaml", Path(workdir) / "config.yaml")
    env = dict(os.environ)
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            *args], env


def run_snakemake(args, workdir, timeout=600):
    """Run the real snakemake CLI on this repo's Snakefile with ``workdir`` as working dir."""
    argv, env = snakemake_command(args, workdir)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def pytest_collection_modifyitems(items):
    """The files with end-to-end tests (marked slow) first, the longest first, so that
    pytest-xdist (``--dist loadfile``: one file per worker at a time) starts them early and the
    short files fill the other workers around them instead of waiting behind them at the end."""
    slow = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow[item.path] = slow.get(item.path, 0) + 1
    items.sort(key=lambda item: -slow.get(item.path, 0))  # stable: order within a file is kept
