"""Rank a round: every candidate scored at its epoch against the dense reference at that epoch, by
the params' ranker (`ls`: distance in LS space; `loss`: validation-loss gap), best first; the
first `survivors` (the schedule's) are kept. Diverged candidates rank last; ties by pool order.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh import files, layout as names
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import Layout
from lsh.records import Pool, Summary
from lsh.search.ranking import dense_trajectory, loss_gaps, ls_distances, rank
from lsh.search.schedule import plan

log = logging.getLogger("lsh.stages")

COLUMNS = ("round", "rank", "candidate", "slot", "init", "death", "growth", "redistribution", "death_rate", "epoch",
           "distance", "loss_gap", "valid_ppl", "score", "status", "kept")


def epoch_losses(train_dir: Path) -> dict[int, float | None]:
    """Validation loss (nats per token) by epoch from a training folder's metrics.jsonl."""
    path = Path(train_dir) / names.METRICS
    if not path.is_file():
        raise LshError(f"{path} does not exist: run the training first")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["epoch"]): r.get("valid_loss") for r in records}


def candidate_trajectories(layout: Layout, upto: int, candidates: set[str]) -> dict[str, dict[int, Any]]:
    """Each candidate's spectra by epoch, gathered over the rounds 0..upto it took part in."""
    out: dict[str, dict[int, Any]] = {c: {} for c in candidates}
    for r in range(upto + 1):
        pool = Pool.from_json(files.read_json(layout.pool(r)))
        for entry in pool.entries:
            if entry.candidate not in candidates:
                continue
            for epoch, rec in files.read_json(layout.slot_spectra(r, entry.slot))["spectra"].items():
                out[entry.candidate][int(epoch)] = rec["exponents"] if rec["status"] == "ok" else None
    return out


def rank_round(params: Params, layout: Layout, r: int, dense: Path | None = None) -> pd.DataFrame:
    """The ranking of round r (`dense`: the dense reference's folder, default the run's own)."""
    search = params.search
    dense = Path(dense) if dense is not None else layout.dense
    pool = Pool.from_json(files.read_json(layout.pool(r)))
    entries = pool.entries
    epochs = {e.candidate: e.epochs_after for e in entries}
    summaries = {e.candidate: Summary.from_json(files.read_json(layout.slot_train(r, e.slot) / names.SUMMARY)) for e in entries}
    losses: dict[str, float | None] = {}
    for e in entries:
        finished = summaries[e.candidate].ok and summaries[e.candidate].epochs == e.epochs_after
        losses[e.candidate] = epoch_losses(layout.slot_train(r, e.slot)).get(e.epochs_after) if finished else None
    valid_ppl = {c: math.exp(v) if v is not None and v < 700 else math.inf for c, v in losses.items()}
    gaps = loss_gaps({c: (epochs[c], losses[c]) for c in epochs}, epoch_losses(dense), str(dense / names.METRICS))

    reference = dense_trajectory(files.read_json(dense / names.SPECTRA), max(epochs.values()), str(dense / names.SPECTRA))
    spectra = candidate_trajectories(layout, r, set(epochs))
    trajectories = {}
    for c, E in epochs.items():
        points = [spectra[c].get(e) for e in range(E + 1)]
        ok = math.isfinite(valid_ppl[c]) and all(p is not None for p in points)
        trajectories[c] = np.array(points, dtype=float) if ok else None
    distance = ls_distances(reference, trajectories, embedding=search.embedding, distance=search.distance,
                            fit=search.pca_fit, seed=params.seed)
    scores = distance if search.ranker == "ls" else gaps
    order = rank(scores, [e.candidate for e in entries])
    keep = plan(search).rounds[r].survivors
    by_id = {e.candidate: e for e in entries}
    rows = []
    for position, c in enumerate(order):
        e = by_id[c]
        rows.append({
            "round": r, "rank": position + 1, "candidate": c, "slot": e.slot, **e.config,
            "epoch": epochs[c], "distance": distance[c], "loss_gap": gaps[c], "valid_ppl": valid_ppl[c],
            "score": scores[c], "status": summaries[c].status, "kept": position < keep,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def read_ranking(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise LshError(f"{path} does not exist: run the round's ranking first")
    return pd.read_csv(path)


def write(ranking: pd.DataFrame, out: Path) -> None:
    files.write_text(out, ranking.to_csv(index=False))
    log.info("%s:\n%s", out, ranking[["rank", "candidate", "distance", "loss_gap", "valid_ppl", "kept"]].to_string(index=False))
