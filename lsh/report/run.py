"""Reading a finished run for the report: every candidate gathered over the rounds, the final
training and the correlation study, and the dense reference (all read once, here)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh import layout as names
from lsh.config import Params
from lsh.files import read_json, read_json_if
from lsh.layout import Layout
from lsh.lyapunov.qr import LAYOUTS
from lsh.search.schedule import Plan, plan as search_plan


@dataclass
class Candidate:
    """One candidate as the report sees it, gathered over rounds, final training and correlation study."""

    id: str
    config: dict
    spectra: dict[int, list[float] | None] = field(default_factory=dict)  # epoch -> exponents (None: failed)
    layouts: dict[str, dict[int, list[float] | None]] = field(default_factory=dict)  # both layouts, as spectra
    selection_epochs: int = 0  # the last epoch it reached during the selection rounds
    history: list[dict] = field(default_factory=list)  # per-epoch metrics of its latest training (whole history)
    history_source: str = ""  # the folder that history comes from
    round0_rank: int | None = None
    finalist: bool = False
    final: dict | None = None  # final/fFF/summary.json
    correlation: dict | None = None  # correlation/cCC/summary.json


@dataclass
class Run:
    params: dict
    root: Path
    plan: Plan
    selected: dict
    rounds: int  # selection rounds found on disk (0 for search.mode full)
    rankings: list[pd.DataFrame]
    candidates: dict[str, Candidate]  # in order of first appearance
    dense_summary: dict | None  # dense/summary.json (the reference's selection epochs)
    dense_final: dict | None  # dense-final/summary.json (the reference trained to final.epochs)
    dense_history: list[dict]  # per-epoch metrics of the dense reference (dense-final's when it exists)
    dense_spectra: np.ndarray | None  # [epochs 0..last, exponents], in the params' layout
    dense_layouts: dict[str, np.ndarray]  # the same in every layout (lyapunov.LAYOUTS)
    final_pool: dict
    dense_dir: Path  # the dense reference's training folder (dense-final/ lies beside it)
    compared: list[tuple[Path, dict]]  # other runs of a comparison set: (results folder, selected.json)
    environment: dict | None = None  # environment.json: numerics, CPU capability, versions (None: not recorded)

    @property
    def method(self) -> str:
        return method_name(self.selected)


def read_metrics(folder: Path) -> list[dict]:
    """A training folder's metrics.jsonl as records (empty when it has none)."""
    path = Path(folder) / names.METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def method_name(selected: dict) -> str:
    """`LSH-TPE`, `loss-ATPE`, `full-training-GRID`: the ranker (or full mode) and the proposer."""
    if selected.get("mode") == "full":
        prefix = "full-training"
    else:
        prefix = {"ls": "LSH", "loss": "loss"}.get(selected.get("ranker"), str(selected.get("ranker")))
    return f"{prefix}-{str(selected.get('proposer', '?')).upper()}"


def _last_epoch(history: list[dict]) -> int:
    return max((int(h["epoch"]) for h in history), default=0)


def _offer_history(cand: Candidate, history: list[dict], source: str) -> None:
    """Keep the longest history (earlier offers win ties: final, then correlation, then rounds)."""
    if history and _last_epoch(history) > _last_epoch(cand.history):
        cand.history, cand.history_source = history, source


def load_run(params: Params, results_dir: str | Path, dense: str | Path | None = None,
             compared: list[str | Path] = ()) -> Run:
    """Everything the report needs from a run's results folder (see README, "The search"); `dense` is the
    dense reference's folder (default the run's own), `compared` the results folders of other runs
    of a comparison set (this run itself is left out of them)."""
    root = Path(results_dir)
    layout = Layout(root)
    dense_dir = Path(dense) if dense is not None else layout.dense
    the_plan = search_plan(params.search)
    selected = read_json(layout.selected)
    final_pool = read_json(layout.final_pool)
    candidates: dict[str, Candidate] = {}

    def cand(entry: dict) -> Candidate:
        c = entry["candidate"]
        if c not in candidates:
            candidates[c] = Candidate(c, dict(entry["config"]))
        return candidates[c]

    # the final training first: its metrics run to final.epochs
    for f, entry in enumerate(final_pool["slots"]):
        if entry is None:
            continue
        c = cand(entry)
        c.finalist = True
        folder = layout.final_train(f)
        c.final = read_json_if(folder / names.SUMMARY)
        _offer_history(c, read_metrics(folder), str(folder))

    rounds = 0
    rankings: list[pd.DataFrame] = []
    for r in range(len(the_plan.rounds)):
        if not (layout.pool(r).is_file() and layout.ranking(r).is_file()):
            break
        rounds += 1
        rankings.append(pd.read_csv(layout.ranking(r)))
        pool = read_json(layout.pool(r))
        for s, entry in enumerate(pool["slots"]):
            if entry is None:
                continue
            c = cand(entry)
            spectra = read_json_if(layout.slot_spectra(r, s)) or {"spectra": {}}
            for epoch, rec in spectra["spectra"].items():
                ok = rec.get("status") == "ok" and rec.get("exponents") is not None
                c.spectra[int(epoch)] = rec["exponents"] if ok else None
                for name in LAYOUTS:
                    c.layouts.setdefault(name, {})[int(epoch)] = rec["layouts"][name] if ok else None
            history = read_metrics(layout.slot_train(r, s))
            c.selection_epochs = max(c.selection_epochs, _last_epoch(history))
            _offer_history(c, history, str(layout.slot_train(r, s)))
    if rankings:
        for _, row in rankings[0].iterrows():
            if row["candidate"] in candidates:
                candidates[row["candidate"]].round0_rank = int(row["rank"])

    # round-0 candidates trained on to final.epochs for the correlation study
    corr_root = layout.correlation_dir
    for folder in sorted(corr_root.glob("c[0-9][0-9]")) if corr_root.is_dir() else []:
        summary = read_json_if(folder / names.SUMMARY)
        if not summary or not summary.get("candidate"):
            continue
        c = cand({"candidate": summary["candidate"], "config": summary.get("config", {})})
        c.correlation = summary
        _offer_history(c, read_metrics(folder), str(folder))

    dense_spectra, dense_layouts = None, {}
    if (dense_dir / names.SPECTRA).is_file():
        spectra = read_json(dense_dir / names.SPECTRA)["spectra"]
        records = [spectra.get(str(e)) for e in range(len(spectra))]
        if records and all(r is not None and r["status"] == "ok" for r in records):
            dense_spectra = np.array([r["exponents"] for r in records], dtype=float)
            dense_layouts = {name: np.array([r["layouts"][name] for r in records], dtype=float) for name in LAYOUTS}
    dense_final = read_json_if(dense_dir.parent / "dense-final" / names.SUMMARY)
    dense_history = read_metrics(dense_dir.parent / "dense-final") or read_metrics(dense_dir)
    others = []
    for folder in map(Path, compared):
        other = read_json(Layout(folder).selected)
        if folder.resolve() != root.resolve() and other != selected:
            others.append((folder, other))
    return Run(
        params=params, root=root, plan=the_plan, selected=selected, rounds=rounds, rankings=rankings,
        candidates=candidates, dense_summary=read_json_if(dense_dir / names.SUMMARY),
        dense_final=dense_final, dense_history=dense_history, dense_spectra=dense_spectra,
        dense_layouts=dense_layouts, final_pool=final_pool, dense_dir=dense_dir, compared=others,
        environment=read_json_if(layout.environment),
    )


def _num(x: Any) -> float:
    """A JSON number (or null) as a float, NaN for null."""
    return float(x) if x is not None else math.nan


