"""envs/bnopt.yaml (the rules' conda env) matches pyproject.toml's dependencies, and the package
works from a plain install (a wheel), outside the checkout."""
import math
import re
from pathlib import Path

import tomllib
import yaml

from bnopt.plan.variants import MODELS
from conftest import ROOT

CONDA_NAME = {"torch": "pytorch"}
WORKFLOW_ENGINE = {"snakemake"}  # what runs the rules, not what the rules run


def split(req: str):
    m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", req)
    return m[1].lower(), m[2].replace(" ", "")


def test_conda_env_matches_pyproject():
    """The env holds pyproject's dependencies (snakemake aside: it runs the rules), its build
    requirements and pip, which the post-deploy script needs to install bnopt itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"] + project["build-system"]["requires"] + ["pip"]
    want = {CONDA_NAME.get(n, n): spec for n, spec in map(split, deps) if n not in WORKFLOW_ENGINE}
    assert WORKFLOW_ENGINE <= {n for n, _ in map(split, deps)}  # pip install -e . gives snakemake
    env = yaml.safe_load((ROOT / "envs/bnopt.yaml").read_text())
    have = dict(split(d) for d in env["dependencies"] if isinstance(d, str))
    have.pop("python")
    assert have == want


def test_the_conda_envs_post_deploy_script_installs_bnopt_from_this_checkout(tmp_path):
    """Snakemake runs envs/bnopt.post-deploy.sh (the env file's name, .post-deploy.sh) in the
    new env, from whatever folder it runs in: here in a fresh virtual environment standing in
    for the conda env (no conda channel is reachable here), with setuptools as the env file
    gives it. bnopt then imports from this checkout, editable."""
    import os
    import subprocess
    import sys

    script = ROOT / "envs/bnopt.post-deploy.sh"
    assert script.with_name("bnopt.yaml").exists()
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "setuptools>=77"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"  # the env, activated
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run([str(py), "-c", "import bnopt, importlib.metadata as m; "
                        "print(bnopt.__file__); print(m.version('bnopt'))"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    where, version = r.stdout.split()
    assert where == str(ROOT / "src/bnopt/__init__.py")
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_wheel_carries_the_config_schema(tmp_path):
    """A plain (non-editable) install reads the schema from the package: the wheel holds it."""
    import os
    import subprocess
    import sys
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("bnopt-*.whl")
    assert {"bnopt/plan/schema.yaml", "bnopt/plan/experiments.yaml"} <= set(zipfile.ZipFile(wheel).namelist())
    # installed from the wheel (not the checkout), used from another folder: the defaults and
    # the config check read the schema the package carries
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import bnopt, yaml; from bnopt.plan.check import check_config; "
            "from bnopt.plan.runs import RunConfig; import bnopt.plan.runs; "
            "print(bnopt.__file__, bnopt.plan.runs.__file__); "
            "r = RunConfig(dataset='digits', model='vgg', variant='batchnorm', lr=0.1, seed=0, "
            "steps=10, batch_size=8); print(r.measure_every, r.precision); "
            f"print(check_config(yaml.safe_load(open({str(ROOT / 'config.yaml')!r})))['steps']); "
            "from bnopt.plan.experiments import published; print(len(published())); "
            "from bnopt.running.provenance import code_version; print(code_version())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    where, defaults, steps, experiments, code = r.stdout.split("\n")[:5]
    assert all(w.startswith(str(target)) for w in where.split()), where
    assert defaults == "100 tf32" and steps == "15000" and experiments == "4"
    # no checkout around the installed package: its version alone, as run.json records it
    assert code == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # a 10-step run of each model and a figure drawn from two of them, as a user would
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, str(ROOT / "tests/wheel_smoke.py"), str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith(str(target)), lines[0]
    runs = [line.split() for line in lines[1:-1]]
    assert {m for m, *_ in runs} == set(MODELS)
    assert all(n == "10" and math.isfinite(float(loss)) for _, _, n, loss in runs), runs
    assert Path(lines[-1]).stat().st_size > 10_000  # a drawn figure, not an empty file
