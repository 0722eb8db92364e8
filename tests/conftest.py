import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from bnopt.data import load_dataset  # noqa: E402 (the installed package: pip install -e .)


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
