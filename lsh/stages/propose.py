"""New candidates after a round's elimination: the proposer learns from the survivors' (or, with
`search.history: all`, the whole round's) configurations and scores, lower being better."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from lsh import csv_records, records
from lsh.config import Params
from lsh.layout import Layout
from lsh.records import Pool, Proposals, RankingRow
from lsh.schedule import plan
from lsh.search.proposers import DIVERGED_SCORE, propose
from lsh.search.space import candidate_id, derived_seed

log = logging.getLogger("lsh.stages")



def propose_round(params: Params, layout: Layout, r: int) -> dict:
    """proposals.json of round r: the history handed to the proposer and the new candidates, each with its source."""
    search = params.search
    rows = [row for row in csv_records.read_rows(layout.ranking(r), RankingRow) if search.history == "all" or row.kept]
    history = [(row.config, _finite(row.score)) for row in rows]
    pool = records.read(layout.pool(r), Pool)
    new = propose(search.proposer, params.space, history, [t.config for t in pool.tried], plan(search).rounds[r].new,
                  derived_seed(params.seed, r + 1))
    proposals = [{"candidate": candidate_id(pool.next_id + i), "config": p.config, "source": p.source}
                 for i, p in enumerate(new)]
    return {"round": r, "proposer": search.proposer, "history_mode": search.history,
            "history": [{"config": c, "score": s} for c, s in history], "proposals": proposals}


def _finite(score: float) -> float:
    return score if math.isfinite(score) else DIVERGED_SCORE


def write(proposals: dict, out: Path) -> None:
    """proposals.json through its record, and the newcomers in the log."""
    records.write(out, Proposals.from_json(proposals))
    log.info("%s: %s", out,
             ", ".join(f"{p['candidate']} {p['config']} ({p['source']})" for p in proposals["proposals"]) or "none")
