"""Every command in README.md's code blocks works as written: each `snakemake ...` line is
dry-run (-n) from a copy of the project, each `python ...` line runs cheaply (--help) or is the
test command itself, so the README cannot drift from the code."""
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PROJECT = ["Snakefile", "config.yaml", "workflow", "profiles", "src", "benchmarks"]


def readme_commands() -> list[str]:
    """Shell commands of README.md: every line of its ```bash blocks (comments dropped, `&&`
    split), and every inline `snakemake ...` / `python ...` without a placeholder (<file>,
    ..., a|b)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands += [c.strip() for c in line.split("&&")]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for inline in re.findall(r"`((?:snakemake|python)\s[^`]*)`", prose):  # may span lines
        if not re.search(r"<|\.\.\.|\|", inline):
            commands.append(" ".join(inline.split()))
    return list(dict.fromkeys(commands))


COMMANDS = readme_commands()
SLURM_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
SNAKEMAKE = [c for c in COMMANDS if c.startswith("snakemake")]
PYTHON = [c for c in COMMANDS if c.startswith("python ")]


def test_readme_shows_the_commands_users_need():
    assert {c.split()[0] for c in COMMANDS} <= {"snakemake", "python", "pip"}, COMMANDS
    assert "snakemake results/figures/fig1_accuracy.png" in SNAKEMAKE  # the headline command
    assert "python -m pytest -q" in PYTHON  # the test command .ci/run runs
    assert "python -m pytest -q" in (ROOT / ".ci/run").read_text()
    assert any("--unlock" in c for c in SNAKEMAKE) and any("--report" in c for c in SNAKEMAKE)
    assert len(SNAKEMAKE) >= 8


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, as a user's checkout: commands run from its root."""
    root = tmp_path_factory.mktemp("checkout")
    for name in PROJECT:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root


def _run(argv, cwd, timeout=300):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def _dry_run_argv(command: str) -> list[str]:
    """The command exactly as written, with -n inserted right after `snakemake` (an option
    appended at the end could be eaten by --config/--resources, which take every later word)."""
    argv = shlex.split(command)
    if "--report" in argv:
        # a report needs finished runs: check that the command line parses and resolves the DAG
        argv = [a for a in argv if a != "--report" and not a.endswith(".html")]
    return [sys.executable, "-m", "snakemake", "-n", *argv[1:]]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Every README snakemake command dry-run, each in its own copy of the project, as many at
    once as there are CPU cores (each is one single-threaded Snakemake parse)."""
    from concurrent.futures import ThreadPoolExecutor

    # folders made here, not in the threads: pytest creates its base folder on first use, and
    # two threads doing that at once collide
    roots = [tmp_path_factory.mktemp(f"dry{i}") for i in range(len(SNAKEMAKE))]

    def one(i_command):
        i, command = i_command
        if "profiles/slurm" in command and not SLURM_PLUGIN:
            return command, None  # skipped by the test
        root = roots[i]
        for name in PROJECT:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
        return command, _run(_dry_run_argv(command), root)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(one, enumerate(SNAKEMAKE)))


@pytest.mark.parametrize("command", SNAKEMAKE)
def test_readme_snakemake_command_dry_runs_as_written(command, dry_runs):
    if "profiles/slurm" in command and not SLURM_PLUGIN:
        pytest.skip("the SLURM executor plugin is not installed (pip install -e '.[cluster]')")
    r = dry_runs[command]
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{command}\n{out[-3000:]}"
    if "--unlock" not in command:
        assert "Job stats:" in out or "Nothing to be done" in out, out[-2000:]


@pytest.mark.parametrize("command", PYTHON)
def test_readme_python_command_runs(command, project):
    argv = shlex.split(command)
    if argv[1:3] == ["-m", "pytest"]:
        pytest.skip("the test command itself: .ci/run runs it")
    # the benchmarks train or need a GPU: run --help, and every option the line uses must be one
    # the script accepts
    r = _run([sys.executable, argv[1], "--help"], project)
    assert r.returncode == 0, r.stderr[-2000:]
    for option in (a for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", r.stdout), f"{command}: {option} unknown"


def test_why_resources_before_a_target_fails(project):
    """The one-line reason README gives: --resources takes every later word, a target too."""
    r = _run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--resources", "gpu=1",
              "results/figures/fig1_accuracy.png"], project)
    assert r.returncode != 0
    assert "--resources gpu=1 <target>" in (ROOT / "README.md").read_text()
