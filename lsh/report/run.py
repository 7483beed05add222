"""Reading a finished run for the report: every candidate gathered over the rounds, the final
training and the correlation study, and the dense reference (all read once, here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh import layout as names, records
from lsh.config import Params
from lsh.files import read_json_if
from lsh.layout import Layout
from lsh.records import RANKING_COLUMNS, Epoch, Pool, RankingRow, Selection, Spectra, Summary
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
    """A training folder's metrics.jsonl as plain records (empty when it has none)."""
    path = Path(folder) / names.METRICS
    if not (path.exists() or path.is_symlink()):
        return []
    return [e.to_json() for e in records.read_lines(path, Epoch)]


def summary_dict(path: Path) -> dict | None:
    """A training folder's summary.json as a plain dict, None when it does not exist (yet)."""
    summary = records.read_if(path, Summary)
    return None if summary is None else summary.to_json()


def method_name(selected: dict) -> str:
    """`LSH-TPE`, `loss-ATPE`, `full-training-GRID`: the ranker (or full mode) and the proposer."""
    if selected.get("mode") == "full":
        prefix = "full-training"
    else:
        prefix = {"ls": "LSH", "loss": "loss", "loss_gap": "loss-gap", "tse": "TSE"}.get(
            selected.get("ranker"), str(selected.get("ranker")))
    age = " common-age" if selected.get("age") == "common" and selected.get("mode") != "full" else ""
    return f"{prefix}-{str(selected.get('proposer', '?')).upper()}{age}"


def _last_epoch(history: list[dict]) -> int:
    return max((int(h["epoch"]) for h in history), default=0)


def _offer_history(cand: Candidate, history: list[dict], source: str) -> None:
    """Keep the longest history (earlier offers win ties: final, then correlation, then rounds)."""
    if history and _last_epoch(history) > _last_epoch(cand.history):
        cand.history, cand.history_source = history, source


def load_run(params: Params, results_dir: str | Path, dense: str | Path | None = None,
             compared: list[str | Path] = ()) -> Run:
    """Everything the report needs from a run's results folder (see docs/method.md, "The search"); `dense` is the
    dense reference's folder (default the run's own), `compared` the results folders of other runs
    of a comparison set (this run itself is left out of them)."""
    root = Path(results_dir)
    layout = Layout(root)
    dense_dir = Path(dense) if dense is not None else layout.dense
    the_plan = search_plan(params.search)
    selected = records.read(layout.selected, Selection).to_json()
    final_pool = records.read(layout.final_pool, Pool).to_json()
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
        c.final = summary_dict(folder / names.SUMMARY)
        _offer_history(c, read_metrics(folder), str(folder))

    rounds = 0
    rankings: list[pd.DataFrame] = []
    for r in range(len(the_plan.rounds)):  # a finished selection ran every round: each one's files must be there
        rounds += 1
        rows = records.read_rows(layout.ranking(r), RankingRow)
        rankings.append(pd.DataFrame([asdict(row) for row in rows], columns=list(RANKING_COLUMNS)))
        pool = records.read(layout.pool(r), Pool)
        for s, entry in enumerate(pool.slots):
            if entry is None:
                continue
            c = cand(entry.to_json())
            for epoch, rec in records.read(layout.slot_spectra(r, s), Spectra).by_epoch().items():
                ok = rec.status == "ok" and rec.exponents is not None and rec.layouts is not None
                c.spectra[epoch] = rec.exponents if ok else None
                for name in LAYOUTS:
                    c.layouts.setdefault(name, {})[epoch] = rec.layouts[name] if ok else None
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
        summary = summary_dict(folder / names.SUMMARY)
        if not summary or not summary.get("candidate"):
            continue
        c = cand({"candidate": summary["candidate"], "config": summary.get("config", {})})
        c.correlation = summary
        _offer_history(c, read_metrics(folder), str(folder))

    dense_spectra, dense_layouts = None, {}
    dense_record = records.read_if(dense_dir / names.SPECTRA, Spectra)
    if dense_record is not None:
        spectra = dense_record.by_epoch()
        found = [spectra.get(e) for e in range(len(spectra))]
        if found and all(r is not None and r.status == "ok" and r.layouts is not None for r in found):
            dense_spectra = np.array([r.exponents for r in found], dtype=float)
            dense_layouts = {name: np.array([r.layouts[name] for r in found], dtype=float) for name in LAYOUTS}
    dense_final = summary_dict(dense_dir.parent / "dense-final" / names.SUMMARY)
    dense_history = read_metrics(dense_dir.parent / "dense-final") or read_metrics(dense_dir)
    others = []
    for folder in map(Path, compared):
        other = records.read(Layout(folder).selected, Selection).to_json()
        if folder.resolve() != root.resolve() and other != selected:
            others.append((folder, other))
    return Run(
        params=params, root=root, plan=the_plan, selected=selected, rounds=rounds, rankings=rankings,
        candidates=candidates, dense_summary=summary_dict(dense_dir / names.SUMMARY),
        dense_final=dense_final, dense_history=dense_history, dense_spectra=dense_spectra,
        dense_layouts=dense_layouts, final_pool=final_pool, dense_dir=dense_dir, compared=others,
        environment=read_json_if(layout.environment),
    )


def _num(x: Any) -> float:
    """A JSON number (or null) as a float, NaN for null."""
    return float(x) if x is not None else math.nan


