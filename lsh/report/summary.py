"""summary.md (the selection in plain words, the budget, the correlation, notes) and metrics.json."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lsh.report.run import Run
from lsh.report.tables import _cell, _num, correlation_study_cost, dense_reference, markdown_table
from lsh.search.space import CONFIG_KEYS


def _fmt(x: Any, digits: int = 2) -> str:
    return _cell(_num(x) if isinstance(x, (int, float)) or x is None else x, digits)


def metrics(run: Run, correlation: pd.DataFrame | None) -> dict:
    """A flat JSON of the run's final numbers, for `dvc metrics show`."""
    sel, budget = run.selected, run.selected["budget"]
    dense = dense_reference(run) or {}
    out: dict[str, Any] = {
        "selected_valid_ppl": sel.get("valid_ppl"), "selected_test_ppl": sel.get("test_ppl"),
        "dense_valid_ppl": _json(dense.get("valid_ppl")), "dense_test_ppl": _json(dense.get("test_ppl")),
        "density": sel.get("density"),
        "planned_selection_candidate_epochs": budget["planned_selection_candidate_epochs"],
        "candidate_epochs_selection": budget["candidate_epochs"]["selection"],
        "candidate_epochs_final": budget["candidate_epochs"]["final"],
        "candidate_epochs_total": budget["total_candidate_epochs"],
        "wall_seconds_total": budget["total_wall_seconds"],
    }
    out.update({f"wall_seconds_{k}": v for k, v in budget["wall_seconds"].items()})
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


def summary_markdown(run: Run, budget: pd.DataFrame, seconds: pd.DataFrame, correlation: pd.DataFrame | None,
                     notes: list[str], written: list[str]) -> str:
    sel, p = run.selected, run.params
    dense = dense_reference(run)
    density = sel.get("density", p.sparse.density)
    lines = [f"# Report: {run.method}", ""]
    model = p.model
    size = f"{model.layers} x {model.hidden}" if model.type == "lstm" else f"depth {model.depth}, {model.hidden} units"
    lines += [f"Search mode `{sel.get('mode')}`, ranker `{sel.get('ranker')}`, proposer `{sel.get('proposer')}`; "
              f"model {model.type.upper()} ({size}); density {density} (pruning ratio {1 - density:.2f}); "
              f"seed {p.seed}.", ""]
    lines += ["## Selected configuration", ""]
    if sel.get("candidate"):
        cfg = sel["config"]
        lines += [f"Candidate **{sel['candidate']}**, best epoch {sel.get('best_epoch')} of {p.final_epochs}:", ""]
        lines += ["| " + " | ".join(CONFIG_KEYS) + " |", "| " + " | ".join("---" for _ in CONFIG_KEYS) + " |",
                  "| " + " | ".join(str(cfg.get(k)) for k in CONFIG_KEYS) + " |", ""]
        rows = [("selected " + sel["candidate"], sel.get("valid_ppl"), sel.get("test_ppl"))]
        if dense:
            rows.append(("dense reference", dense["valid_ppl"], dense["test_ppl"]))
            rows.append(("selected - dense", _diff(sel.get("valid_ppl"), dense["valid_ppl"]),
                         _diff(sel.get("test_ppl"), dense["test_ppl"])))
        lines += ["| model | validation perplexity | test perplexity |", "| --- | --- | --- |"]
        lines += [f"| {name} | {_fmt(v)} | {_fmt(t)} |" for name, v, t in rows]
        lines.append("")
        if not dense:
            lines += ["No dense reference trained to final.epochs in this run (dense-final/): nothing to compare with.", ""]
    else:
        lines += [f"No candidate was selected: {sel.get('status')}.", ""]
    if sel.get("diverged"):
        lines += ["## Diverged candidates", "",
                  "Ranked last in their round and never selected while another candidate remained:", ""]
        lines += [f"- {d['candidate']} ({d['where']}, epoch {d['epoch']}): {d.get('reason') or 'diverged'}"
                  for d in sel["diverged"]]
        lines.append("")
    lines += ["## Budget", ""]
    b = run.selected["budget"]
    lines += [f"Candidate-epochs: selection {b['candidate_epochs']['selection']} "
              f"(planned {b['planned_selection_candidate_epochs']}), final training {b['candidate_epochs']['final']}, "
              f"total {b['total_candidate_epochs']}; per round in budget.md.", ""]
    lines.append(markdown_table(seconds, digits={"wall_seconds": 3}, headers={"wall_seconds": "wall seconds"}))
    cost = correlation_study_cost(run)
    if cost[0]:
        lines += [f"The correlation study (report only, not part of the search) trained {cost[0]} more "
                  f"candidate-epochs in {cost[1]} s.", ""]
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
    return _num(a) - _num(b)


FILE_DESCRIPTIONS = {
    "summary.md": "this summary",
    "table1.md": "method, validation and test perplexity, candidate-epochs and wall time (paper Table 1; also table1.csv)",
    "table1.csv": "the same as table1.md, full precision",
    "budget.md": "candidate-epochs per round, planned against spent, and wall seconds per stage",
    "metrics.json": "the final numbers, flat (`dvc metrics show`)",
    "ls_curves.png": "spectra of the dense model and of the best, median and worst round-0 candidate",
    "distance_curves.png": "distance to the dense reference in LS space over epochs",
    "perplexity_curves.png": "validation perplexity over epochs",
    "ls_space.png": "the dense and the selected trajectories in 2-D PCA LS space",
    "correlation.png": "early LS distance (both layouts) and validation perplexity at the same epoch against final perplexity",
    "correlation.csv": "Pearson and Spearman coefficients of correlation.png",
    "correlation_points.csv": "the per-candidate points of correlation.png",
}


