"""summary.md (the selection in plain words, the budget, the correlation, notes) and metrics.json."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lsh.layout import REPORT_FILES
from lsh.records import Environment, Selection
from lsh.report.run import Run
from lsh.report.tables import (
    Block,
    Table,
    correlation_study_cost,
    dense_reference,
    format_cell,
    markdown_blocks,
    markdown_table,
    number_or_nan,
)
from lsh.search.space import CONFIG_KEYS


def _fmt(x: Any, digits: int = 2) -> str:
    return format_cell(number_or_nan(x) if isinstance(x, (int, float)) or x is None else x, digits)


def metrics(run: Run, correlation: pd.DataFrame | None) -> dict:
    """A flat JSON of the run's final numbers, for `dvc metrics show`."""
    sel, budget = run.selected, run.selected.budget
    dense = dense_reference(run) or {}
    out: dict[str, Any] = {
        "selected_valid_ppl": sel.valid_ppl, "selected_test_ppl": sel.test_ppl,
        "dense_valid_ppl": _json(dense.get("valid_ppl")), "dense_test_ppl": _json(dense.get("test_ppl")),
        "density": sel.density,
        "planned_selection_candidate_epochs": budget.planned_selection_candidate_epochs,
        "candidate_epochs_selection": budget.candidate_epochs["selection"],
        "candidate_epochs_final": budget.candidate_epochs["final"],
        "candidate_epochs_total": budget.total_candidate_epochs,
        "wall_seconds_total": budget.total_wall_seconds,
    }
    out.update({f"wall_seconds_{k}": v for k, v in budget.wall_seconds.items()})
    if correlation is not None:
        for row in correlation.itertuples():
            for coef in ("pearson", "spearman"):
                out[f"{coef}_{row.measure}_epoch{row.epoch}"] = _json(getattr(row, coef))
    return out


def _json(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summary_markdown(run: Run, seconds: pd.DataFrame, correlation: pd.DataFrame | None, notes: list[str],
                     written: list[str], regime: list[str] = ()) -> str:
    """summary.md: what was searched, the selection against the dense reference, whether each ranking could
    answer (`regime`, lsh.report.regime's section), the budget, the correlation, the environment, the files
    and the notes (why a part of the report is missing)."""
    lines = _search_lines(run)
    lines += _selection_lines(run, dense_reference(run))
    lines += list(regime)
    lines += _diverged_lines(run.selected)
    lines += _budget_lines(run, seconds)
    if correlation is not None and len(correlation):
        lines += ["## Correlation with final perplexity", ""]
        lines.append(markdown_table(correlation, digits={"pearson": 3, "spearman": 3}))
    lines += environment_markdown(run.environment)
    lines += ["## Files", ""]
    lines += [f"- `{f.name}`: {f.holds}" for f in REPORT_FILES if f.name in written]
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _search_lines(run: Run) -> list[str]:
    """The title and the search: mode, ranker, proposer, model, density, seed."""
    return [f"# Report: {run.method}", "", search_sentence(run), ""]


def search_sentence(run: Run) -> str:
    """What was searched, in one sentence (Markdown inline code): mode, ranker, proposer, model, density, seed."""
    sel, p, model = run.selected, run.params, run.params.model
    size = f"{model.layers} x {model.hidden}" if model.type == "lstm" else f"depth {model.depth}, {model.hidden} units"
    return (f"Search mode `{sel.mode}`, ranker `{sel.ranker}`, proposer `{sel.proposer}`; "
            f"model {model.type.upper()} ({size}); density {sel.density} (pruning ratio {1 - sel.density:.2f}); "
            f"seed {p.seed}.")


def _selection_lines(run: Run, dense: dict | None) -> list[str]:
    return ["## Selected configuration", "", *markdown_blocks(selection_blocks(run, dense))]


def selection_blocks(run: Run, dense: dict | None) -> list[Block]:
    """The selected configuration and its perplexities against the dense reference's (or why there are none):
    summary.md's section and the HTML report's first page, each in its own markup."""
    sel = run.selected
    if not sel.candidate:
        return [f"No candidate was selected: {sel.status}."]
    cfg = sel.config or {}
    rows = [("selected " + sel.candidate, sel.valid_ppl, sel.test_ppl)]
    if dense:
        rows.append(("dense reference", dense["valid_ppl"], dense["test_ppl"]))
        rows.append(("selected - dense", _diff(sel.valid_ppl, dense["valid_ppl"]),
                     _diff(sel.test_ppl, dense["test_ppl"])))
    blocks: list[Block] = [
        f"Candidate **{sel.candidate}**, best epoch {sel.best_epoch} of {run.params.final_epochs}:",
        Table(header=CONFIG_KEYS, rows=[tuple(str(cfg.get(k)) for k in CONFIG_KEYS)]),
        Table(header=("model", "validation perplexity", "test perplexity"),
              rows=[(name, _fmt(v), _fmt(t)) for name, v, t in rows]),
    ]
    if not dense:
        blocks.append("No dense reference trained to final.epochs in this run (dense-final/): nothing to compare with.")
    return blocks


def _diverged_lines(sel: Selection) -> list[str]:
    """Every diverged candidate, where and why (nothing when none diverged)."""
    if not sel.diverged:
        return []
    return (["## Diverged candidates", "",
             "Ranked last in their round and never selected while another candidate remained:", ""]
            + [f"- {d.candidate} ({d.where}, epoch {d.epoch}): {d.reason or 'diverged'}" for d in sel.diverged]
            + [""])


def _budget_lines(run: Run, seconds: pd.DataFrame) -> list[str]:
    """Candidate-epochs spent against planned, wall seconds per stage, and the correlation study's extra cost."""
    b = run.selected.budget
    lines = ["## Budget", "",
             f"Candidate-epochs: selection {b.candidate_epochs['selection']} "
             f"(planned {b.planned_selection_candidate_epochs}), final training {b.candidate_epochs['final']}, "
             f"total {b.total_candidate_epochs}; per round in budget.md.", ""]
    lines.append(markdown_table(seconds, digits={"wall_seconds": 3}, headers={"wall_seconds": "wall seconds"}))
    cost = correlation_study_cost(run)
    if cost[0]:
        lines += [f"The correlation study (report only, not part of the search) trained {cost[0]} more "
                  f"candidate-epochs in {cost[1]} s.", ""]
    return lines


def environment_markdown(env: Environment | None) -> list[str]:
    """What produced the run (environment.json): the numerics, the CPU, the versions."""
    lines = ["## Environment", ""]
    if env is None:
        return lines + ["Not recorded (environment.json is missing: a run made by an older lsh).", ""]
    portable = env.numerics == "portable"
    lines += [f"Numerics `{env.numerics}` (CPU capability {env.cpu_capability}, {env.cpu}, {env.machine}): "
              + ("the same seed gives these bits on every x86-64 machine with AVX2."
                 if portable else "the bits are this CPU capability's."), ""]
    if env.cuda:
        lines += [f"GPU {env.cuda.get('device')} (CUDA {env.cuda.get('cuda')}, cuDNN {env.cuda.get('cudnn')}): GPU "
                  "results are not bitwise reproducible across GPU models.", ""]
    versions = {"python": env.python, "lsh": env.lsh, **env.versions}
    lines += ["| package | version |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in versions.items()] + [""]
    return lines


def _diff(a: Any, b: Any) -> float:
    return number_or_nan(a) - number_or_nan(b)
