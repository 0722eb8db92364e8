"""The package's layering (bnopt.LAYERS): every import points down or within its subpackage,
no imports form a cycle, and the light subpackages (bnopt.LIGHT, what parsing the workflow
imports) import neither torch nor matplotlib. On the package's own import graph, read from the
source (bnopt.running.code_inputs), which is tested here on files whose imports are known."""
import subprocess
import sys

import bnopt
from bnopt.running.code_inputs import (
    PACKAGE,
    code_inputs,
    import_graph,
    imported_modules,
    module_file,
    package_modules,
)

from conftest import ROOT

HEAVY = ("torch", "torchvision", "matplotlib", "seaborn")


def layer(module: str) -> int:
    """The index in bnopt.LAYERS of the subpackage ``module`` sits in."""
    return bnopt.LAYERS.index(module.split(".")[1])


def upward_imports(graph) -> list[str]:
    return sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                  if layer(d) > layer(m))


def import_cycles(graph) -> list[list[str]]:
    """The cycles of ``graph`` (module -> modules it imports), one path per cycle found by a
    depth-first search."""
    cycles, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_every_module_sits_in_one_layer():
    modules = [m for m in package_modules() if m != "bnopt"]
    assert {m.split(".")[1] for m in modules} == set(bnopt.LAYERS)
    assert all(m.count(".") == 2 or m == f"bnopt.{m.split('.')[1]}" for m in modules), modules


def test_no_import_points_up():
    assert upward_imports(import_graph()) == []


def test_no_imports_form_a_cycle():
    assert import_cycles(import_graph()) == []


def test_the_checks_find_an_upward_import_and_a_cycle():
    graph = {"bnopt.plan.runs": {"bnopt.training.loop"}, "bnopt.training.loop": {"bnopt.plan.runs"},
             "bnopt.analysis.a": {"bnopt.plan.runs"}}
    assert upward_imports(graph) == ["bnopt.plan.runs imports bnopt.training.loop"]
    assert import_cycles(graph) == [["bnopt.plan.runs", "bnopt.training.loop", "bnopt.plan.runs"]]


def test_subpackage_inits_hold_a_docstring_only():
    for m in package_modules():
        if module_file(m).name == "__init__.py" and m != "bnopt":
            src = module_file(m).read_text()
            assert src.startswith('"""') and src.rstrip().endswith('"""') and src.count('"""') == 2, m


def test_the_light_subpackages_import_neither_torch_nor_matplotlib():
    light = [m for m in package_modules() if m != "bnopt" and m.split(".")[1] in bnopt.LIGHT]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in light)
            + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_training_job_imports_no_plotting_or_statistics_library():
    """A training job's start-up is paid once per run (84 times a default sweep): its script's
    modules pull in torch and pandas (its tables), not the figures' or the scorecard's
    libraries (Snakemake itself is there anyway: it runs the script)."""
    script = ROOT / "workflow/scripts/train.py"
    code = ("import sys, runpy\n"
            f"runpy.run_path({str(script)!r})\n"  # its imports; main runs only under Snakemake
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'matplotlib', 'seaborn', 'scipy', 'sklearn', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_imports_are_read_wherever_they_sit(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "import bnopt.plan.runs as r\n"
        "from bnopt.analysis import outcome\n"
        "from . import loss_levels\n"          # relative, inside bnopt.analysis
        "if TYPE_CHECKING:\n    from bnopt.training.recorder import Recorder\n"
        "def f():\n    from bnopt.figures.style import LABELS\n")
    assert imported_modules(src, "bnopt.analysis") == {
        "bnopt.plan", "bnopt.plan.runs", "bnopt.analysis", "bnopt.analysis.outcome",
        "bnopt.analysis.loss_levels", "bnopt.training", "bnopt.training.recorder",
        "bnopt.figures", "bnopt.figures.style"}


def test_a_scripts_code_inputs_follow_its_imports(tmp_path):
    script = tmp_path / "draw.py"
    script.write_text("from bnopt.figures.style import LABELS\n")
    files = code_inputs(script)
    # the style draws with the variants' labels and colours, and bins by training loss
    for rel in ("figures/style.py", "plan/variants.py", "analysis/loss_levels.py",
                "figures/__init__.py"):
        assert str((PACKAGE / rel).resolve()) in files, rel
    assert not [f for f in files if "/training/" in f or "/scorecard/" in f]
    assert str(script.resolve()) in files
    # package data beside the module that reads it, with its name
    script.write_text("from bnopt.plan.check import check_config\n")
    files = code_inputs(script)
    assert {str((PACKAGE / f"plan/{n}").resolve()) for n in ("schema.yaml", "experiments.yaml")} <= set(files)
