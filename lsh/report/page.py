"""page.rst: the first page of the HTML report (`snakemake --report`), written by `lsh report` from the run it
has read. The page's template (workflow/report/workflow.rst) only shows this file: nothing reads summary.md
back, and the page says what summary.md says because both are made from the same blocks (lsh.report.summary)."""

from __future__ import annotations

import re

from lsh.layout import REPORT, ReportFile
from lsh.report.run import Run
from lsh.report.summary import search_sentence, selection_blocks
from lsh.report.tables import Block, Table, dense_reference


def inline(text: str) -> str:
    """Markdown's inline code (`x`) as reStructuredText's (``x``); bold (**x**) is the same in both."""
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)


def rst_blocks(blocks: list[Block]) -> list[str]:
    """The lines of `blocks` in reStructuredText: paragraphs, and tables as list-tables."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            lines += [".. list-table::", "   :header-rows: 1", ""]
            for row in (block.header, *block.rows):
                lines += [f"   {'* -' if i == 0 else '  -'} {_cell(c)}" for i, c in enumerate(row)]
        else:
            lines.append(inline(block))
        lines.append("")
    return lines


def _cell(text: str) -> str:
    """A table cell; a lone "-" would start a bullet list, and an empty one needs a placeholder."""
    return "\\-" if text == "-" else inline(text) if text else "\\ "


def _heading(text: str, underline: str) -> list[str]:
    return [text, underline * len(text), ""]


def page_rst(run: Run, written: list[ReportFile]) -> str:
    """The page: the run's title and search, the selected configuration against the dense reference, and the
    report's files that the HTML report shows (`written` with a category), each with what it holds."""
    lines = _heading(inline(f"Report: {run.method}"), "=")
    lines += [inline(search_sentence(run)) + f" Results in ``{run.root}``.", ""]
    lines += _heading("Selected configuration", "-")
    lines += rst_blocks(selection_blocks(run, dense_reference(run)))
    shown = [f for f in written if f.category and f.name != REPORT["summary"]]
    lines += [f"All of the run's numbers are in {REPORT['summary']}_ (also the budget, the diverged candidates, "
              "whether each ranking could answer, and the environment).", ""]
    lines += _heading("Figures and tables", "-")
    lines += [f"- `{f.name}`_: {inline(f.holds)}" for f in shown] + [""]
    return "\n".join(lines)
