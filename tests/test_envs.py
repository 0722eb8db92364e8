"""envs/bnopt.yaml (the rules' conda env) matches pyproject.toml's dependencies."""
import re
import tomllib

import yaml

from conftest import ROOT

CONDA_NAME = {"torch": "pytorch"}
WORKFLOW_ENGINE = {"snakemake"}  # what runs the rules, not what the rules run


def split(req: str):
    m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", req)
    return m[1].lower(), m[2].replace(" ", "")


def test_conda_env_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    want = {CONDA_NAME.get(n, n): spec for n, spec in map(split, deps) if n not in WORKFLOW_ENGINE}
    assert WORKFLOW_ENGINE <= {n for n, _ in map(split, deps)}  # pip install -e . gives snakemake
    env = yaml.safe_load((ROOT / "envs/bnopt.yaml").read_text())
    have = dict(split(d) for d in env["dependencies"] if isinstance(d, str))
    have.pop("python")
    assert have == want
