"""The code a rule depends on, derived from what its script imports: the import graph of the
bnopt package, read from the source (no module is imported), and the files of every module a
script reaches through it, with the package data each reads (the file beside a module that
shares its name, such as ``plan/schema.yaml``). The rules that draw and tabulate list these as
inputs, so a change to any code they run redraws them (workflow/rules/common.smk); training
lists none (docs/running.md, "What reruns"). tests/test_layers.py checks the package's layering
on the same graph."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import bnopt

PACKAGE = Path(bnopt.__file__).parent  # the package actually imported, wherever installed


def module_file(module: str) -> Path | None:
    """The source file of ``module`` (a dotted bnopt name), or None if it is not one: a
    subpackage's is its ``__init__.py``."""
    parts = module.split(".")
    if parts[0] != "bnopt":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    """The dotted name of a module file inside the package."""
    rel = Path(path).resolve().relative_to(PACKAGE.resolve()).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["bnopt", *parts])


def package_modules() -> list[str]:
    """Every module of the package, subpackages' ``__init__`` included, sorted."""
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """The bnopt modules the source file ``path`` imports anywhere in it (at the top, inside a
    function, under ``TYPE_CHECKING``), with the subpackages they sit in: ``from bnopt.plan import
    runs`` and ``import bnopt.plan.runs`` both give ``bnopt.plan`` and ``bnopt.plan.runs``.
    ``package``: the dotted package of ``path``, for relative imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    raise ValueError(f"{path}: a relative import, but no package given")
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # bnopt.plan, bnopt.plan.runs, ...
                if module_file(".".join(parts[:i])) is not None:
                    out.add(".".join(parts[:i]))
    return out


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Each package module's bnopt imports (:func:`imported_modules`), by module name."""
    graph = {}
    for name in package_modules():
        path = module_file(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = frozenset(imported_modules(path, package) - {name})
    return graph


def reachable(modules) -> set[str]:
    """``modules`` and every bnopt module they import, directly or not."""
    graph, seen, todo = import_graph(), set(), list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def data_files(module: str) -> list[Path]:
    """The package data a module reads: the non-Python files beside it with its name."""
    path = module_file(module)
    if path is None or path.name == "__init__.py":
        return []
    return sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.suffix != ".py")


def code_inputs(script) -> list[str]:
    """The files a rule running ``script`` depends on: the script, each bnopt module it reaches
    through its imports, and their package data, as sorted absolute paths."""
    modules = reachable(imported_modules(Path(script)))
    files = {Path(script).resolve()}
    for m in modules:
        files.add(module_file(m).resolve())
        files.update(p.resolve() for p in data_files(m))
    return sorted(str(p) for p in files)
