"""Reading a finished run for the report: every candidate gathered over the rounds, the final
training and the correlation study, and the dense reference (all read once, here, through the
records of lsh.records: the report reads each file as the stage that wrote it defined it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import csv_records, records
from lsh import layout as names
from lsh.config import Params
from lsh.layout import Layout
from lsh.records import LAYOUTS, RANKING_COLUMNS, Environment, Epoch, Pool, RankingRow, Selection, Spectra, Summary
from lsh.schedule import Plan
from lsh.schedule import plan as search_plan
from lsh.search.ranking import method_name


@dataclass(kw_only=True)
class Candidate:
    """One candidate as the report sees it, gathered over rounds, final training and correlation study."""

    id: str
    config: dict
    spectra: dict[int, list[float] | None] = field(default_factory=dict)  # epoch -> exponents (None: failed)
    layouts: dict[str, dict[int, list[float] | None]] = field(default_factory=dict)  # both layouts, as spectra
    selection_epochs: int = 0  # the last epoch it reached during the selection rounds
    history: list[Epoch] = field(default_factory=list)  # per-epoch metrics of its latest training (whole history)
    history_source: str = ""  # the folder that history comes from
    round0_rank: int | None = None
    finalist: bool = False
    final: Summary | None = None  # final/fFF/summary.json
    correlation: Summary | None = None  # correlation/cCC/summary.json


@dataclass(frozen=True)
class DenseReference:
    """The dense reference trained to final.epochs, and the summary of its selection epochs (their wall
    seconds count in its cost)."""

    final: Summary  # dense-final/summary.json
    first: Summary | None  # dense/summary.json beside it
    source: Path  # the dense-final folder both were read from


@dataclass(kw_only=True)
class Run:
    """A finished run as the report reads it: the selection, every candidate, the dense reference."""

    params: Params
    root: Path
    plan: Plan
    selected: Selection
    rounds: int  # selection rounds found on disk (0 for search.mode full)
    rankings: list[pd.DataFrame]  # each round's ranking.csv, the columns of records.RankingRow
    candidates: dict[str, Candidate]  # in order of first appearance
    dense_reference: DenseReference | None  # the run's own, else the first compared run's (None: never trained)
    dense_history: list[Epoch]  # per-epoch metrics of the dense reference (dense-final's when it exists)
    dense_spectra: np.ndarray | None  # [epochs 0..last, exponents], in the params' layout
    dense_layouts: dict[str, np.ndarray]  # the same in every layout (lyapunov.LAYOUTS)
    final_pool: Pool
    dense_dir: Path  # the dense reference's training folder (dense-final/ lies beside it)
    compared: list[tuple[Path, Selection]]  # other runs of a comparison set: (results folder, selected.json)
    environment: Environment | None = None  # None: not recorded (a run made by an older lsh)

    @property
    def method(self) -> str:
        """The run's name in tables and titles."""
        return selection_name(self.selected)


def read_metrics(folder: Path) -> list[Epoch]:
    """A training folder's metrics.jsonl, a record per epoch (empty when it has none)."""
    path = Path(folder) / names.METRICS
    if not (path.exists() or path.is_symlink()):
        return []
    return records.read_lines(path, Epoch)


def ranking_frame(rows: list[RankingRow]) -> pd.DataFrame:
    """A round's ranking as a table, one row per RankingRow, in the order of ranking.csv."""
    return pd.DataFrame([asdict(row) for row in rows], columns=list(RANKING_COLUMNS))


def selection_name(selected: Selection) -> str:
    """The selecting search's name (search.ranking.method_name): LSH-tpe, loss-atpe, full-training-grid."""
    return method_name(str(selected.ranker), str(selected.proposer), full=selected.mode == "full",
                       age=str(selected.age))


def _last_epoch(history: list[Epoch]) -> int:
    return max((h.epoch for h in history), default=0)


def _offer_history(cand: Candidate, history: list[Epoch], source: str) -> None:
    """Keep the longest history (earlier offers win ties: final, then correlation, then rounds)."""
    if history and _last_epoch(history) > _last_epoch(cand.history):
        cand.history, cand.history_source = history, source


def _candidate(candidates: dict[str, Candidate], id_: str, config: dict) -> Candidate:
    """The candidate `id_`, added (in order of first appearance) the first time it is seen."""
    if id_ not in candidates:
        candidates[id_] = Candidate(id=id_, config=dict(config))
    return candidates[id_]


def _gather_final(layout: Layout, final_pool: Pool, candidates: dict[str, Candidate]) -> None:
    """The finalists first: their metrics run to final.epochs, so their history is the longest."""
    for f, entry in enumerate(final_pool.slots):
        if entry is None:
            continue
        c = _candidate(candidates, entry.candidate, entry.config)
        c.finalist = True
        folder = layout.final_train(f)
        c.final = records.read_if(folder / names.SUMMARY, Summary)
        _offer_history(c, read_metrics(folder), str(folder))


def _add_spectra(c: Candidate, spectra: Spectra) -> None:
    """A slot's spectra into its candidate's, by epoch and layout (None where the model had diverged)."""
    for epoch, rec in spectra.by_epoch().items():
        ok = rec.status == "ok" and rec.exponents is not None and rec.layouts is not None
        c.spectra[epoch] = rec.exponents if ok else None
        for name in LAYOUTS:
            c.layouts.setdefault(name, {})[epoch] = rec.layouts[name] if ok else None


def _gather_rounds(layout: Layout, the_plan: Plan, candidates: dict[str, Candidate]) -> list[list[RankingRow]]:
    """Every round's ranking, and each slot's spectra and metrics into its candidate. A finished
    selection ran every round of the plan: each one's files must be there."""
    rankings = []
    for r in range(len(the_plan.rounds)):
        rankings.append(csv_records.read_rows(layout.ranking(r), RankingRow))
        pool = records.read(layout.pool(r), Pool)
        for s, entry in enumerate(pool.slots):
            if entry is None:
                continue
            c = _candidate(candidates, entry.candidate, entry.config)
            _add_spectra(c, records.read(layout.slot_spectra(r, s), Spectra))
            history = read_metrics(layout.slot_train(r, s))
            c.selection_epochs = max(c.selection_epochs, _last_epoch(history))
            _offer_history(c, history, str(layout.slot_train(r, s)))
    return rankings


def _set_round0_ranks(round0: list[RankingRow], candidates: dict[str, Candidate]) -> None:
    """Each candidate's rank in round 0 (the spectra figure shows its best, median and worst)."""
    for row in round0:
        if row.candidate in candidates:
            candidates[row.candidate].round0_rank = row.rank


def _gather_correlation(layout: Layout, candidates: dict[str, Candidate]) -> None:
    """Round-0 candidates trained on to final.epochs for the correlation study (correlation/cCC/)."""
    corr_root = layout.correlation_dir
    for folder in sorted(corr_root.glob("c[0-9][0-9]")) if corr_root.is_dir() else []:
        summary = records.read_if(folder / names.SUMMARY, Summary)
        if summary is None or not summary.candidate:
            continue
        c = _candidate(candidates, summary.candidate, summary.config or {})
        c.correlation = summary
        _offer_history(c, read_metrics(folder), str(folder))


def _dense_spectra(dense_dir: Path) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The dense reference's spectra of epochs 0..last, in the params' layout and in each layout;
    (None, {}) unless every epoch has one."""
    record = records.read_if(dense_dir / names.SPECTRA, Spectra)
    if record is None:
        return None, {}
    spectra = record.by_epoch()
    found = [spectra.get(e) for e in range(len(spectra))]
    if not found or not all(r is not None and r.status == "ok" and r.layouts is not None for r in found):
        return None, {}
    return (np.array([r.exponents for r in found], dtype=float),
            {name: np.array([r.layouts[name] for r in found], dtype=float) for name in LAYOUTS})


def _dense_reference(dense_dir: Path, compared: list[tuple[Path, Selection]]) -> DenseReference | None:
    """The run's dense-final/ (beside its dense reference's folder), else the first compared run's that
    has one (a full-training run trains none)."""
    for folder in [dense_dir.parent, *(f for f, _ in compared)]:
        where = Layout(folder)
        final = records.read_if(where.dense_final / names.SUMMARY, Summary)
        if final is not None:
            return DenseReference(final, records.read_if(where.dense / names.SUMMARY, Summary), where.dense_final)
    return None


def _compared_selections(root: Path, selected: Selection, compared: list[str | Path]) -> list[tuple[Path, Selection]]:
    """The other runs' selections (a comparison set lists this run too: it is left out)."""
    others = []
    for folder in map(Path, compared):
        other = records.read(Layout(folder).selected, Selection)
        if folder.resolve() != root.resolve() and other != selected:
            others.append((folder, other))
    return others


def load_run(params: Params, results_dir: str | Path, dense: str | Path | None = None,
             compared: list[str | Path] = ()) -> Run:
    """Everything the report needs from a run's results folder (see docs/method.md, "The search"); `dense` is the
    dense reference's folder (default the run's own), `compared` the results folders of other runs
    of a comparison set (this run itself is left out of them)."""
    root = Path(results_dir)
    layout = Layout(root)
    dense_dir = Path(dense) if dense is not None else layout.dense
    the_plan = search_plan(params.search)
    selected = records.read(layout.selected, Selection)
    final_pool = records.read(layout.final_pool, Pool)
    candidates: dict[str, Candidate] = {}
    _gather_final(layout, final_pool, candidates)
    rankings = _gather_rounds(layout, the_plan, candidates)
    if rankings:
        _set_round0_ranks(rankings[0], candidates)
    _gather_correlation(layout, candidates)
    dense_spectra, dense_layouts = _dense_spectra(dense_dir)
    others = _compared_selections(root, selected, compared)
    return Run(
        params=params, root=root, plan=the_plan, selected=selected, rounds=len(rankings),
        rankings=[ranking_frame(rows) for rows in rankings],
        candidates=candidates, dense_reference=_dense_reference(dense_dir, others),
        dense_history=read_metrics(Layout(dense_dir.parent).dense_final) or read_metrics(dense_dir),
        dense_spectra=dense_spectra, dense_layouts=dense_layouts, final_pool=final_pool, dense_dir=dense_dir,
        compared=others, environment=records.read_if(layout.environment, Environment),
    )
