"""Rank a round: every candidate scored by the params' ranker (lsh.search.ranking.round_scores: the LS
distance to the dense reference, the validation loss, its gap to the dense model's, or the sum of
training losses) at its own epoch or the pool's common one (search.age), best first; the first
`survivors` (the schedule's) are kept. Diverged candidates rank last; ties by pool order. Every ranker's
score goes into ranking.csv beside the one used: the report shows what each would have kept.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh import csv_records, records
from lsh import layout as names
from lsh.config import Params
from lsh.layout import Layout
from lsh.records import RANKING_COLUMNS, Epoch, Pool, RankingRow, Spectra, Summary
from lsh.schedule import plan
from lsh.search.ranking import RANKERS, Observed, dense_trajectory, rank, round_scores

log = logging.getLogger("lsh.stages")


def epoch_losses(train_dir: Path) -> dict[int, float | None]:
    """Validation loss (nats per token) by epoch from a training folder's metrics.jsonl."""
    return {e.epoch: e.valid_loss for e in records.read_lines(Path(train_dir) / names.METRICS, Epoch)}


def candidate_trajectories(layout: Layout, upto: int, candidates: set[str]) -> dict[str, dict[int, Any]]:
    """Each candidate's spectra by epoch, gathered over the rounds 0..upto it took part in."""
    out: dict[str, dict[int, Any]] = {c: {} for c in candidates}
    for r in range(upto + 1):
        pool = records.read(layout.pool(r), Pool)
        for entry in pool.entries:
            if entry.candidate not in candidates:
                continue
            for epoch, rec in records.read(layout.slot_spectra(r, entry.slot), Spectra).by_epoch().items():
                out[entry.candidate][epoch] = rec.exponents if rec.status == "ok" else None
    return out


def observed(layout: Layout, r: int, pool: Pool) -> dict[str, Observed]:
    """What round r sees of each candidate: its losses by epoch (the slot's metrics.jsonl holds every
    epoch, those of its earlier rounds too) and its spectra of epochs 0..its epoch."""
    spectra = candidate_trajectories(layout, r, {e.candidate for e in pool.entries})
    out = {}
    for e in pool.entries:
        folder = layout.slot_train(r, e.slot)
        summary = records.read(folder / names.SUMMARY, Summary)
        history = (records.read_lines(folder / names.METRICS, Epoch) if summary.ok and summary.epochs == e.epochs_after
                   else [])
        points = [spectra[e.candidate].get(epoch) for epoch in range(e.epochs_after + 1)]
        out[e.candidate] = Observed(
            epoch=e.epochs_after, valid_loss={h.epoch: h.valid_loss for h in history},
            train_loss={h.epoch: h.train_loss for h in history},
            spectra=np.array(points, dtype=float) if history and all(p is not None for p in points) else None)
    return out


def rank_round(params: Params, layout: Layout, r: int, dense: Path | None = None) -> pd.DataFrame:
    """The ranking of round r (`dense`: the dense reference's folder, default the run's own)."""
    search = params.search
    dense = Path(dense) if dense is not None else layout.dense
    pool = records.read(layout.pool(r), Pool)
    entries = pool.entries
    seen = observed(layout, r, pool)
    epochs = {c: o.epoch for c, o in seen.items()}
    losses = {c: o.valid_loss.get(o.epoch) for c, o in seen.items()}
    valid_ppl = {c: math.exp(v) if v is not None and v < 700 else math.inf for c, v in losses.items()}
    reference = dense_trajectory(records.read(dense / names.SPECTRA, Spectra).by_epoch(), max(epochs.values()),
                                 str(dense / names.SPECTRA))
    score = functools.partial(round_scores, age=search.age, observed=seen, dense_loss=epoch_losses(dense),
                              dense_spectra=reference, embedding=search.embedding, distance=search.distance,
                              fit=search.pca_fit, seed=params.seed, source=str(dense / names.METRICS))
    every = {ranker: score(ranker) for ranker in RANKERS}  # the report shows what each would have kept
    scores = every[search.ranker]
    summaries = {e.candidate: records.read(layout.slot_train(r, e.slot) / names.SUMMARY, Summary) for e in entries}
    order = rank(scores, [e.candidate for e in entries])
    keep = plan(search).rounds[r].survivors
    by_id = {e.candidate: e for e in entries}
    rows = []
    for position, c in enumerate(order):
        e = by_id[c]
        rows.append({
            "round": r, "rank": position + 1, "candidate": c, "slot": e.slot, **e.config,
            "epoch": epochs[c], "distance": every["ls"][c], "loss_gap": every["loss_gap"][c], "loss": every["loss"][c],
            "tse": every["tse"][c], "valid_ppl": valid_ppl[c],
            "score": scores[c], "status": summaries[c].status, "kept": position < keep,
        })
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def write(ranking: pd.DataFrame, out: Path) -> None:
    """ranking.csv through its record (records.RankingRow: the columns, and floats that read back exactly)."""
    csv_records.write_rows(out, ranking.to_dict("records"), RankingRow)
    log.info("%s:\n%s", out,
             ranking[["rank", "candidate", "distance", "loss_gap", "valid_ppl", "kept"]].to_string(index=False))
