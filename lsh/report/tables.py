"""The report's tables: Table 1 (this run, the compared runs, the dense reference), the budget
and the wall seconds per stage, and Markdown without a tabulate dependency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lsh.layout import Layout
from lsh.records import Selection
from lsh.report.run import Run, selection_name


def number_or_nan(x: Any) -> float:
    """A JSON number (or null) as a float, NaN for null: a missing value stays visible as NaN in a table."""
    return float(x) if x is not None else math.nan


def _budget_numbers(selected: Selection) -> tuple[float, float]:
    return (number_or_nan(selected.budget.total_candidate_epochs),
            number_or_nan(selected.budget.total_wall_seconds))


def dense_reference(run: Run) -> dict | None:
    """The dense reference trained to final.epochs: its perplexities, epochs and wall seconds."""
    dense = run.dense_reference
    if dense is None:
        return None
    final = dense.final
    return {
        "valid_ppl": number_or_nan(final.best_valid_ppl), "test_ppl": number_or_nan(final.test_ppl),
        "epochs": final.epochs, "wall_seconds": round((dense.first.seconds if dense.first else 0.0) + final.seconds, 3),
        "source": str(dense.source),
    }


def table1(run: Run) -> pd.DataFrame:
    """Paper Table 1: the dense reference, this run and every compared run."""
    rows = []
    dense = dense_reference(run)
    if dense is not None:
        rows.append({"method": "dense", "candidate": "dense", "valid_ppl": dense["valid_ppl"],
                     "test_ppl": dense["test_ppl"], "candidate_epochs": dense["epochs"],
                     "wall_seconds": dense["wall_seconds"], "source": dense["source"]})
    for folder, selected in [(run.root, run.selected), *run.compared]:
        epochs, seconds = _budget_numbers(selected)
        rows.append({"method": selection_name(selected), "candidate": selected.candidate,
                     "valid_ppl": number_or_nan(selected.valid_ppl), "test_ppl": number_or_nan(selected.test_ppl),
                     "candidate_epochs": epochs, "wall_seconds": seconds,
                     "source": str(Layout(folder).selected)})
    df = pd.DataFrame(rows, columns=["method", "candidate", "valid_ppl", "test_ppl", "candidate_epochs",
                                     "wall_seconds", "source"])
    df["candidate_epochs"] = df["candidate_epochs"].astype("Int64")
    return df


def budget_table(run: Run) -> pd.DataFrame:
    """Candidate-epochs per round (planned by `lsh plan` against spent), the final training, totals."""
    budget = run.selected.budget
    rows, cumulative = [], 0
    for rnd in budget.rounds:
        cumulative += rnd.spent_candidate_epochs
        rows.append({"stage": f"round {rnd.round}", "pool": rnd.pool, "planned": rnd.planned_candidate_epochs,
                     "spent": rnd.spent_candidate_epochs, "cumulative": cumulative})
    selection_planned = budget.planned_selection_candidate_epochs
    if budget.rounds:
        rows.append({"stage": "selection", "pool": None, "planned": selection_planned,
                     "spent": budget.candidate_epochs["selection"], "cumulative": cumulative})
    finals = run.final_pool.entries
    final_planned = sum(e.epochs_after - e.epochs_before for e in finals)
    cumulative += budget.candidate_epochs["final"]
    rows.append({"stage": "final training", "pool": len(finals), "planned": final_planned,
                 "spent": budget.candidate_epochs["final"], "cumulative": cumulative})
    rows.append({"stage": "total", "pool": None, "planned": selection_planned + final_planned,
                 "spent": budget.total_candidate_epochs, "cumulative": cumulative})
    df = pd.DataFrame(rows)
    df["pool"] = df["pool"].astype("Int64")
    return df


def seconds_table(run: Run) -> pd.DataFrame:
    """Wall seconds per stage as selected.json's budget records them, and their total."""
    budget = run.selected.budget
    rows = [{"stage": k, "wall_seconds": v} for k, v in budget.wall_seconds.items()]
    rows.append({"stage": "total", "wall_seconds": budget.total_wall_seconds})
    return pd.DataFrame(rows)


def correlation_study_cost(run: Run) -> tuple[int, float]:
    """Candidate-epochs and seconds of the correlation study (the report's extra, not the search's)."""
    summaries = [c.correlation for c in run.candidates.values() if c.correlation]
    return (sum(s.epochs_trained for s in summaries), round(sum(s.seconds for s in summaries), 3))


def format_cell(x: Any, digits: int) -> str:
    """A table cell as text: floats with `digits` decimals, a missing value (None, NaN, NA) as "-"."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "-"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(df: pd.DataFrame, digits: dict[str, int] | None = None,
                   headers: dict[str, str] | None = None) -> str:
    """A GitHub markdown table (no tabulate dependency); floats with `digits` decimals per column (default 2)."""
    digits, headers = digits or {}, headers or {}
    cols = list(df.columns)
    lines = ["| " + " | ".join(headers.get(c, c) for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(format_cell(row[c], digits.get(c, 2)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class Table:
    """A small table of text cells, for a section that more than one file shows (each in its own markup)."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


Block = str | Table  # a section's parts: a paragraph (Markdown inline markup) or a table


def markdown_blocks(blocks: list[Block]) -> list[str]:
    """The lines of `blocks` in Markdown, each followed by a blank line."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "| " + " | ".join("---" for _ in block.header) + " |"]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
        else:
            lines.append(block)
        lines.append("")
    return lines


def parse_markdown_table(text: str) -> pd.DataFrame:
    """The first markdown table in `text` back as strings (for checks of what the report wrote)."""
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    if len(block) < 2:
        raise ValueError("no markdown table")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
    return pd.DataFrame(cells[2:], columns=cells[0])
