"""summary.md (the selection in plain words, the budget, the correlation, notes) and metrics.json."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lsh.records import Selection
from lsh.report.run import Run
from lsh.report.tables import correlation_study_cost, dense_reference, format_cell, markdown_table, number_or_nan
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
    lines += [f"- `{name}`: {FILE_DESCRIPTIONS[name]}" for name in written if name in FILE_DESCRIPTIONS]
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _search_lines(run: Run) -> list[str]:
    """The title and the search: mode, ranker, proposer, model, density, seed."""
    sel, p, model = run.selected, run.params, run.params.model
    size = f"{model.layers} x {model.hidden}" if model.type == "lstm" else f"depth {model.depth}, {model.hidden} units"
    return [f"# Report: {run.method}", "",
            f"Search mode `{sel.mode}`, ranker `{sel.ranker}`, proposer `{sel.proposer}`; "
            f"model {model.type.upper()} ({size}); density {sel.density} (pruning ratio {1 - sel.density:.2f}); "
            f"seed {p.seed}.", ""]


def _selection_lines(run: Run, dense: dict | None) -> list[str]:
    """The selected configuration and its perplexities against the dense reference's (or why there are none)."""
    sel = run.selected
    lines = ["## Selected configuration", ""]
    if not sel.candidate:
        return lines + [f"No candidate was selected: {sel.status}.", ""]
    cfg = sel.config or {}
    lines += [f"Candidate **{sel.candidate}**, best epoch {sel.best_epoch} of {run.params.final_epochs}:", ""]
    lines += ["| " + " | ".join(CONFIG_KEYS) + " |", "| " + " | ".join("---" for _ in CONFIG_KEYS) + " |",
              "| " + " | ".join(str(cfg.get(k)) for k in CONFIG_KEYS) + " |", ""]
    rows = [("selected " + sel.candidate, sel.valid_ppl, sel.test_ppl)]
    if dense:
        rows.append(("dense reference", dense["valid_ppl"], dense["test_ppl"]))
        rows.append(("selected - dense", _diff(sel.valid_ppl, dense["valid_ppl"]),
                     _diff(sel.test_ppl, dense["test_ppl"])))
    lines += ["| model | validation perplexity | test perplexity |", "| --- | --- | --- |"]
    lines += [f"| {name} | {_fmt(v)} | {_fmt(t)} |" for name, v, t in rows]
    lines.append("")
    if not dense:
        lines += ["No dense reference trained to final.epochs in this run (dense-final/): nothing to compare with.", ""]
    return lines


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


def environment_markdown(env: dict | None) -> list[str]:
    """What produced the run (environment.json): the numerics, the CPU, the versions."""
    lines = ["## Environment", ""]
    if not env:
        return lines + ["Not recorded (environment.json is missing: a run made by an older lsh).", ""]
    portable = env.get("numerics") == "portable"
    lines += [f"Numerics `{env.get('numerics')}` (CPU capability {env.get('cpu_capability')}, {env.get('cpu')}, "
              f"{env.get('machine')}): " + ("the same seed gives these bits on every x86-64 machine with AVX2."
                                            if portable else "the bits are this CPU capability's."), ""]
    if env.get("cuda"):
        cuda = env["cuda"]
        lines += [f"GPU {cuda.get('device')} (CUDA {cuda.get('cuda')}, cuDNN {cuda.get('cudnn')}): GPU results "
                  "are not bitwise reproducible across GPU models.", ""]
    versions = {"python": env.get("python"), "lsh": env.get("lsh"), **env.get("versions", {})}
    lines += ["| package | version |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in versions.items()] + [""]
    return lines


def _diff(a: Any, b: Any) -> float:
    return number_or_nan(a) - number_or_nan(b)


FILE_DESCRIPTIONS = {
    "summary.md": "this summary",
    "table1.md": "method, validation and test perplexity, candidate-epochs and wall time "
                 "(paper Table 1; also table1.csv)",
    "table1.csv": "the same as table1.md, full precision",
    "budget.md": "candidate-epochs per round, planned against spent, and wall seconds per stage",
    "metrics.json": "the final numbers, flat (`dvc metrics show`)",
    "ls_curves.png": "spectra of the dense model and of the best, median and worst round-0 candidate",
    "distance_curves.png": "distance to the dense reference in LS space over epochs",
    "perplexity_curves.png": "validation perplexity over epochs",
    "ls_space.png": "the dense and the selected trajectories in 2-D PCA LS space",
    "correlation.png": "early LS distance (both layouts) and validation perplexity at the same epoch "
                       "against final perplexity",
    "correlation.csv": "Pearson and Spearman coefficients of correlation.png",
    "correlation_points.csv": "the per-candidate points of correlation.png",
}


