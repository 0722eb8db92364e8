"""README.md and docs/ cannot drift from the code: every command in their code blocks works as
written (each `snakemake ...` line dry-run (-n) from a copy of the project, each `python ...`
line cheaply (--help) or the test command itself); every link and every reference to a page's
section, in the pages and in the code's messages, resolves; and the pages that list config
keys, table columns and figures list exactly what the code has."""
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

PROJECT = ["Snakefile", "config.yaml", "workflow", "profiles", "src", "benchmarks"]


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """Shell commands of README.md and docs/*.md: every line of their ```bash blocks (comments
    dropped, `&&` split), and every inline `snakemake ...` / `python ...` without a placeholder
    (<file>, ..., a|b)."""
    text = "\n".join(p.read_text() for p in PAGES)
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


def test_every_command_is_one_these_tests_run_and_ci_runs_the_readmes_test_command():
    """The tests below run snakemake and python commands (pip installs are what .ci/run does),
    so a page may show no other kind; and the test command of the README's front page is the
    one CI runs."""
    assert {c.split()[0] for c in COMMANDS} <= {"snakemake", "python", "pip"}, COMMANDS
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if "pytest" in line and not line.lstrip().startswith("#")]
    assert len(ci) == 1 and ci[0] in readme_front_page(), ci


def readme_front_page() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [c.strip() for b in blocks for line in b.splitlines()
            for c in re.sub(r"\s+#.*$", "", line).split("&&") if c.strip()]


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
    if "--lint" in command:
        assert "Lints for" not in out, out[-3000:]
    elif "--unlock" not in command:
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


def test_why_targets_go_first(project):
    """Why every page puts targets first: --resources takes every later word, a target too,
    and fails; the same words with the target first work."""
    r = _run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--resources", "gpu=1",
              "results/figures/fig1_accuracy.png"], project)
    assert r.returncode != 0
    r = _run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
              "results/figures/fig1_accuracy.png", "--resources", "gpu=1"], project)
    assert r.returncode == 0, r.stderr[-2000:]


# ---- links and references to sections ------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path) -> list[str]:
    return [h.strip() for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    """Every relative link of a page names a file that exists, and its #anchor a heading."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in {slug(h) for h in headings(dest)}, f"{page.name}: {target}"


CODE = [p for pat in ("src/bnopt/*.py", "src/bnopt/*.yaml", "workflow/**/*.smk",
                      "workflow/**/*.py", "workflow/**/*.rst", "workflow/**/*.yaml", "Snakefile",
                      "config.yaml", "profiles/**/*.yaml", "benchmarks/*.py", "benchmarks/*.sh")
        for p in sorted(ROOT.glob(pat))]
REFERENCE = re.compile(r"""(README\.md|README|docs/[\w-]+\.md)(?:,\s*\n?\s*#?\s*(["'])([^"'\n]+(?:\n[^"'\n]+)?)\2)?""")


def test_messages_and_comments_point_to_sections_that_exist():
    """What the code's messages, comments and the schema's descriptions send a user to (a page,
    and a section of it) exists, so a page split or renamed cannot leave them pointing nowhere;
    no reference to README's former sections is left."""
    seen = 0
    for path in CODE:
        for m in REFERENCE.finditer(path.read_text()):
            page, section = m[1], m[3]
            where = f"{path.relative_to(ROOT)}: {m[0]!r}"
            target = ROOT / ("README.md" if page.startswith("README") else page)
            assert target.exists(), where
            if section:
                section = " ".join(re.sub(r"\n\s*#?", " ", section).split())
                assert section in headings(target), where
            seen += 1
    assert seen >= 30  # the scan finds the references (a broken pattern would find none)


# ---- pages that list what the code has --------------------------------------------------------


def test_configuration_lists_every_key_of_the_schema_with_its_default():
    from bnopt.plan.schema import load_schema

    props = load_schema()["properties"]
    text = (ROOT / "docs/configuration.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| `")]
    listed = {}
    for row in rows:
        key_cell, default_cell = (c.strip() for c in row.split("|")[1:3])
        for key in re.findall(r"`([a-z_0-9]+)`", key_cell):
            listed[key] = default_cell
    assert set(listed) == set(props), set(listed) ^ set(props)
    for key, cell in listed.items():
        token = re.fullmatch(r"`([^`…]*)`", cell)
        if token and "default" in props[key] and not isinstance(props[key]["default"], dict):
            assert yaml.safe_load(token[1]) == props[key]["default"], (key, cell)
    dln_row = next(r for r in rows if r.startswith("| `dln` |"))
    missing = [k for k in props["dln"]["properties"] if f"`{k}`" not in dln_row]
    assert not missing, missing


def _named(text: str) -> set[str]:
    """Every name in backticks in ``text``, lists in one pair of backticks split."""
    return {w.strip(",").strip() for part in re.findall(r"`([^`]+)`", text) for w in part.split(",")}


def test_outputs_names_every_column_of_every_table():
    from bnopt.analysis.aggregate import SUMMARY_COLUMNS
    from bnopt.plan.tables import OPTIONAL_TABLES, TABLES

    text = (ROOT / "docs/outputs.md").read_text()
    every = TABLES | {name: cols for name, (cols, _) in OPTIONAL_TABLES.items()}
    for name, columns in every.items():
        start = text.index(f"`{name}.parquet`") + len(name) + 10
        region = text[start:text.find("parquet`", start)]
        assert set(columns) <= _named(region), (name, set(columns) - _named(region))
    summary = text[text.index("`results/tables/summary.csv`"):]
    assert set(SUMMARY_COLUMNS) <= _named(summary), set(SUMMARY_COLUMNS) - _named(summary)
    from bnopt.scorecard.reported import COLUMNS as REPORTED

    start = text.index("`results/tables/reported.csv`")
    reported = text[start:text.index("`results/tables/", start + 10)]
    assert set(REPORTED) <= _named(reported), set(REPORTED) - _named(reported)


def test_scorecard_names_every_column_of_claims_csv_and_claims_by_loss_csv():
    from bnopt.scorecard.verdicts import COLUMNS, LEVEL_COLUMNS

    text = (ROOT / "docs/scorecard.md").read_text()
    for start, columns in (("`claims.csv` has, per row:", COLUMNS),
                           ("`claims_by_loss.csv` has, per", LEVEL_COLUMNS)):
        listed = text[text.index(start):]
        listed = " ".join(listed[:listed.index("\n\n")].split())
        named = {w.strip(",") for part in listed.split("`")[1::2] for w in part.split()}
        assert named >= set(columns), set(columns) - named


def test_figures_lists_every_figure_of_the_registry():
    from bnopt.plan.figure_specs import FIGURE_REGISTRY

    text = (ROOT / "docs/figures.md").read_text()
    listed = set(re.findall(r"`results/figures/(\w+)\.png`", text))
    assert listed == set(FIGURE_REGISTRY) | {"fig0_scorecard"}, listed ^ set(FIGURE_REGISTRY)


def test_no_dated_history_in_readme_or_docs():
    """Dated numbers live in BENCHMARKS.md (and the page of a dated run's results, which says
    its machine and command)."""
    for page in PAGES:
        if page.name in ("quick-preset-claims.md", "earlier-experiments-cpu.md"):
            continue
        dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", page.read_text())
        assert not dates, (page.name, dates)
