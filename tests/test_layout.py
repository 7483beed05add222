"""lsh/layout.py names every file the jobs exchange, once: the code and the rules use its names, so a
renamed file cannot leave a writer and a reader disagreeing."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO

from lsh import layout

CODE = [*REPO.glob("lsh/**/*.py"), *REPO.glob("workflow/**/*.smk"), *REPO.glob("workflow/scripts/*.py"),
        REPO / "Snakefile"]


def layout_names() -> set[str]:
    """Every file name layout.py defines: its constants, the run's and the study's report files."""
    names = {v for k, v in vars(layout).items()
             if k.isupper() and isinstance(v, str) and re.fullmatch(r"[\w.{}-]+\.\w+", v)}
    return names | {f.name for f in layout.REPORT_FILES} | set(layout.STUDY_REPORT_FILES) | set(layout.TABLE_FILES)


def string_literals(path: Path) -> Iterator[tuple[int, str]]:
    """(line, content) of each string literal, an f-string's literal parts each on its own (`f"{root}/x.json"`
    gives "/x.json"); in a Snakemake file, the quoted text of each line."""
    text = path.read_text()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield node.lineno, node.value
    else:
        for number, line in enumerate(text.splitlines(), 1):
            for m in re.finditer(r'"([^"\n]*)"|\'([^\'\n]*)\'', line):
                yield number, m.group(1) or m.group(2) or ""


def typed_again(names: set[str], code: list[Path], root: Path = REPO) -> dict[str, list[str]]:
    """Where a name is written as a literal (alone, or as a path's last part) outside layout.py. Prose (a
    literal with a space: docstrings, messages) may mention a file; code must use the layout's name."""
    found: dict[str, list[str]] = {}
    for path in code:
        if path == root / "lsh" / "layout.py":
            continue
        for line, value in string_literals(path):
            if " " not in value:
                for name in names:
                    if value == name or value.endswith("/" + name):
                        found.setdefault(name, []).append(f"{path.relative_to(root)}:{line}")
    return found


def test_no_file_name_of_the_layout_is_typed_again_in_the_code_or_the_rules():
    assert typed_again(layout_names(), CODE) == {}


def test_the_literal_check_finds_a_name_typed_in_an_f_string_or_a_rule_but_not_in_prose(tmp_path: Path):
    code = tmp_path / "lsh" / "stage.py"
    code.parent.mkdir()
    code.write_text('"""Writes summary.md and metrics.json."""\nout = f"{root}/metrics.json"\nname = "summary.md"\n')
    rule = tmp_path / "workflow" / "rules" / "x.smk"
    rule.parent.mkdir(parents=True)
    rule.write_text('rule x:\n    output:\n        f"{REPORT}/table1.md",\n    # table1.csv\n')
    assert typed_again({"summary.md", "metrics.json", "table1.md", "table1.csv"}, [code, rule], tmp_path) == {
        "metrics.json": ["lsh/stage.py:2"], "summary.md": ["lsh/stage.py:3"], "table1.md": ["workflow/rules/x.smk:3"]}


def test_the_html_pages_template_reads_the_files_by_the_layouts_names():
    template = (REPO / "workflow" / "report" / "workflow.rst").read_text()
    assert f'"{layout.REPORT["summary"]}"' in template and f'"{layout.REPORT["page"]}"' in template
