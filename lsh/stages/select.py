"""The selection: the finalist with the best validation perplexity (never a diverged one while any
other remains), its distance history over the rounds, every diverged candidate, and the budget
spent against the planned one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsh import csv_records, files, records
from lsh import layout as names
from lsh.config import Params
from lsh.layout import Layout
from lsh.records import Pool, PoolEntry, RankingRow, Selection, Spectra, Summary
from lsh.schedule import plan

log = logging.getLogger("lsh.stages")


def select(params: Params, layout: Layout, dense: Path | None = None) -> dict:
    """selected.json of the run in `layout` (`dense`: the dense reference's folder, default the run's own)."""
    search = params.search
    the_plan = plan(search)
    pool = records.read(layout.final_pool, Pool)
    finals = [(e, records.read(layout.final_train(e.slot) / names.SUMMARY, Summary)) for e in pool.entries]
    finished = [(e, s) for e, s in finals if s.ok and s.best_valid_ppl is not None]
    best = min(finished, key=lambda es: (es[1].best_valid_ppl, es[0].slot)) if finished else None

    distance_history: list[dict] = []
    diverged = [{"candidate": e.candidate, "where": "final", "epoch": s.epochs, "reason": s.reason}
                for e, s in finals if s.status == "diverged"]
    for r in range(len(the_plan.rounds)):
        for row in csv_records.read_rows(layout.ranking(r), RankingRow):
            if row.status == "diverged":
                summary = records.read(layout.slot_train(r, row.slot) / names.SUMMARY, Summary)
                diverged.append({"candidate": row.candidate, "where": f"round {r}", "epoch": summary.epochs,
                                 "reason": summary.reason})
            if best and row.candidate == best[0].candidate:
                distance_history.append({"round": r, "epoch": row.epoch, "distance": files.finite_or_none(row.distance),
                                         "valid_ppl": files.finite_or_none(row.valid_ppl), "rank": row.rank})
    if best:
        status = "ok"
    elif finals and all(s.status == "diverged" for _, s in finals):
        status = "every finalist diverged"
    else:
        status = "no candidate finished"
    return {
        "status": status,
        "mode": search.mode, "ranker": search.ranker, "age": search.age, "proposer": search.proposer,
        "density": params.sparse.density,
        "candidate": best[0].candidate if best else None,
        "config": best[0].config if best else None,
        "valid_ppl": best[1].best_valid_ppl if best else None,
        "test_ppl": best[1].test_ppl if best else None,
        "best_epoch": best[1].best_epoch if best else None,
        "distance_history": distance_history,
        "finalists": [{"candidate": e.candidate, "config": e.config, "status": s.status, "valid_ppl": s.best_valid_ppl,
                       "test_ppl": s.test_ppl} for e, s in finals],
        "diverged": diverged,
        "budget": spent_budget(params, layout, finals, Path(dense) if dense is not None else layout.dense),
    }


def spent_budget(params: Params, layout: Layout, finals: list[tuple[PoolEntry, Summary]], dense: Path) -> dict:
    """Candidate-epochs and wall seconds actually spent, per stage, next to the planned budget."""
    the_plan = plan(params.search)
    epochs = {"selection": 0, "final": 0}
    seconds = {"dense_training": 0.0, "dense_spectra": 0.0, "selection_training": 0.0,
               "selection_spectra": 0.0, "final_training": 0.0}
    per_round = []
    for r, rnd in enumerate(the_plan.rounds):
        pool = records.read(layout.pool(r), Pool)
        spent = 0
        for s, entry in enumerate(pool.slots):
            summary = records.read(layout.slot_train(r, s) / names.SUMMARY, Summary)
            spent += summary.epochs_trained
            seconds["selection_training"] += summary.seconds
            if entry is not None:
                seconds["selection_spectra"] += records.read(layout.slot_spectra(r, s), Spectra).seconds
        epochs["selection"] += spent
        per_round.append({"round": r, "pool": rnd.pool, "planned_candidate_epochs": rnd.candidate_epochs,
                          "spent_candidate_epochs": spent})
    for _, summary in finals:
        epochs["final"] += summary.epochs_trained
        seconds["final_training"] += summary.seconds
    if the_plan.rounds:
        seconds["dense_training"] = records.read(dense / names.SUMMARY, Summary).seconds
        seconds["dense_spectra"] = records.read(dense / names.SPECTRA, Spectra).seconds
    return {
        "planned_selection_candidate_epochs": the_plan.total_candidate_epochs,
        "candidate_epochs": epochs,
        "total_candidate_epochs": epochs["selection"] + epochs["final"],
        "wall_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "total_wall_seconds": round(sum(seconds.values()), 3),
        "rounds": per_round,
    }


def write(selected: dict[str, Any], out: Path) -> None:
    """selected.json through its record: a field the report will read that does not fit stops here."""
    records.write(out, Selection.from_json(selected))
    log.info("selected %s %s: valid ppl %s, test ppl %s", selected["candidate"], selected["config"],
             selected["valid_ppl"], selected["test_ppl"])
