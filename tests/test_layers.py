"""The layers of docs/architecture.md, read from the sources' imports (ast): cli -> stages -> the
library. A stage that imports another stage, or library code that reaches up into a stage or the
CLI, puts shared code in the wrong place; a private name used across modules is an API nobody
declared. And a dataclass of more than three fields is built by keyword only: by position, two
fields of one type swapped read as a good record."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lsh"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(module: str, type_only: bool = False) -> list[tuple[str, str]]:
    """(imported lsh module, imported name or '') for every run-time import of `module`, at any depth
    (a function's import counts: it runs when the function does); with `type_only`, the imports under
    TYPE_CHECKING too."""
    tree = ast.parse(MODULES[module].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if not type_only and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "lsh"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.split(".")[0] != "lsh":
                continue
            for alias in node.names:  # `from lsh import files` imports the module lsh.files
                sub = f"{base}.{alias.name}"
                out.append((sub, "") if sub in MODULES else (base, alias.name))
    return out


def layer(module: str) -> str:
    if module in ("lsh.cli", "lsh.commands", "lsh.__main__"):
        return "cli"
    if module.startswith("lsh.stages"):
        return "stages"
    return "library"


def test_a_stage_imports_no_other_stage():
    found = [f"{m} imports {dep}" for m in MODULES if layer(m) == "stages" and m != "lsh.stages"
             for dep, _ in imports(m) if layer(dep) == "stages" and dep not in (m, "lsh.stages")]
    assert not found, "shared code belongs in the library:\n" + "\n".join(found)


def test_the_library_imports_neither_a_stage_nor_the_cli():
    found = [f"{m} imports {dep}" for m in MODULES if layer(m) == "library"
             for dep, _ in imports(m) if layer(dep) != "library"]
    assert not found, "\n".join(found)


def test_no_private_name_is_imported_from_another_module():
    found = [f"{m} imports {name} from {dep}" for m in MODULES for dep, name in imports(m)
             if name.startswith("_") and not name.startswith("__") and dep != m]
    assert not found, "\n".join(found)


def cycles() -> list[list[str]]:
    graph = {m: sorted({dep for dep, _ in imports(m) if dep in MODULES and dep != m}) for m in MODULES}
    # a package's __init__ re-exports its modules, and they import their siblings: only cycles
    # between modules that are not each other's package count
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if related(node, nxt):
                continue
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    return found


def test_no_import_cycle_between_modules():
    assert not cycles(), "\n".join(" -> ".join(c) for c in cycles())


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def floors() -> list[tuple[str, list[str]]]:
    """docs/architecture.md's floors, highest first: (name, the modules and packages on it)."""
    text = ARCHITECTURE.read_text().split("## Floors", 1)[1].split("\n## ", 1)[0]
    found = [re.match(r"(\d+)\. ([^:]+): (.+)", line) for line in text.splitlines()]
    return [(m.group(2), m.group(3).split()) for m in found if m]


def floor_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The index of the floor whose longest name is `module` or a package holding it."""
    best = None
    for index, (_, names) in enumerate(table):
        for name in names:
            if (module == name or (name != "lsh" and module.startswith(name + "."))) and (
                    best is None or len(name) > len(best[1])):
                best = (index, name)
    return None if best is None else best[0]


def test_the_floors_of_the_architecture_page_place_every_module():
    table = floors()
    assert len(table) >= 5, f"{ARCHITECTURE} has no list of floors under '## Floors'"
    unplaced = [m for m in MODULES if floor_of(m, table) is None]
    assert not unplaced, f"name these modules' floor in {ARCHITECTURE}: {', '.join(unplaced)}"
    named = [n for _, names in table for n in names]
    unknown = [n for n in named if n not in MODULES]
    assert not unknown, f"{ARCHITECTURE} names modules that do not exist: {', '.join(unknown)}"


def test_no_module_imports_from_a_floor_above_its_own_even_lazily_or_for_type_hints():
    table = floors()
    found = [f"{m} ({table[floor_of(m, table)][0]}) imports {dep} ({table[floor_of(dep, table)][0]})"
             for m in MODULES for dep, _ in imports(m, type_only=True)
             if dep in MODULES and floor_of(dep, table) < floor_of(m, table)]
    assert not found, "an arrow back up; move the shared code down a floor:\n" + "\n".join(sorted(set(found)))


def test_the_architecture_page_names_every_module_file():
    """Its tree lists every file of the package by name (so a new module is placed, or the page fails)."""
    text = ARCHITECTURE.read_text()
    missing = [str(p.relative_to(PACKAGE)) for p in MODULES.values()
               if p.name not in ("__init__.py", "__main__.py") and not re.search(rf"\b{re.escape(p.name)}\b", text)]
    assert not missing, f"{ARCHITECTURE} does not name: {', '.join(missing)}"


@pytest.mark.parametrize("source", [
    "def f():\n    from lsh.stages import pool\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lsh.stages.pool import read\n",
])
def test_an_import_up_inside_a_function_or_for_type_hints_is_an_arrow_back_up(tmp_path, monkeypatch, source):
    """The floor check reads what the layer checks read, and type-only imports too."""
    monkeypatch.setitem(MODULES, "lsh.files", tmp_path / "fake.py")
    (tmp_path / "fake.py").write_text(source)
    with pytest.raises(AssertionError, match="lsh.files .* imports lsh.stages.pool"):
        test_no_module_imports_from_a_floor_above_its_own_even_lazily_or_for_type_hints()


@pytest.mark.parametrize("source", [
    "from lsh.stages.pool import read\n",
    "def f():\n    from lsh.stages import pool\n",
    "from . import pool\n",
])
def test_the_reader_sees_a_stage_import_at_any_depth(tmp_path, monkeypatch, source):
    """The checks above are only as good as this reader: a nested or relative import of a stage is seen."""
    monkeypatch.setitem(MODULES, "lsh.stages.fake", tmp_path / "fake.py")
    (tmp_path / "fake.py").write_text(source)
    assert "lsh.stages.pool" in [dep for dep, _ in imports("lsh.stages.fake")]


def test_an_import_under_type_checking_is_not_a_run_time_import(tmp_path, monkeypatch):
    monkeypatch.setitem(MODULES, "lsh.fake", tmp_path / "fake.py")
    (tmp_path / "fake.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from lsh.config import Params\n")
    assert imports("lsh.fake") == []


def package_dataclasses() -> list[type]:
    """Every dataclass defined at the top of a module of lsh (lsh.__main__ left out: importing it runs the CLI)."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import lsh

    out = []
    for info in pkgutil.walk_packages(lsh.__path__, "lsh."):
        if info.name == "lsh.__main__":
            continue
        module = importlib.import_module(info.name)
        out += [c for c in vars(module).values()
                if inspect.isclass(c) and dataclasses.is_dataclass(c) and c.__module__ == info.name]
    return out


def test_every_dataclass_of_more_than_three_fields_takes_keywords_only():
    """No constructor of more than three arguments is called by position (a subclass's own fields too)."""
    from dataclasses import fields

    classes = package_dataclasses()
    assert {"Params", "Pool", "Corpus"} <= {c.__name__ for c in classes}, "the scan finds the package's dataclasses"
    found = [f"{c.__module__}.{c.__qualname__} (positional: {', '.join(f.name for f in fields(c) if not f.kw_only)})"
             for c in classes if len(fields(c)) > 3 and not all(f.kw_only for f in fields(c))]
    assert not found, "give these @dataclass(..., kw_only=True):\n" + "\n".join(found)


def test_ruff_finds_nothing():
    """make lint's Python half (the rule set and why: pyproject.toml), run here so that CI runs it."""
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run([str(ruff), "check", "--no-cache", str(PACKAGE.parent)], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stdout + out.stderr
