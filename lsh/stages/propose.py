"""New candidates after a round's elimination: the proposer learns from the survivors' (or, with
`search.history: all`, the whole round's) configurations and scores, lower being better."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from lsh import files
from lsh.config import Params
from lsh.layout import Layout
from lsh.records import Pool
from lsh.search.proposers import propose
from lsh.search.schedule import plan
from lsh.search.space import CONFIG_KEYS, candidate_id, derived_seed
from lsh.stages.pool import read_ranking_rows

log = logging.getLogger("lsh.stages")

DIVERGED_SCORE = 1e12  # a diverged candidate in the history: a large but finite loss, as hyperopt needs numbers


def propose_round(params: Params, layout: Layout, r: int) -> dict:
    """proposals.json of round r: the history handed to the proposer and the new candidates, each with its source."""
    search = params.search
    rows = [row for row in read_ranking_rows(layout.ranking(r)) if search.history == "all" or row["kept"]]
    history = [({k: row[k] for k in CONFIG_KEYS}, _finite(float(row["score"]))) for row in rows]
    pool = Pool.from_json(files.read_json(layout.pool(r)))
    new = propose(search.proposer, params.space, history, [t.config for t in pool.tried], plan(search).rounds[r].new,
                  derived_seed(params.seed, r + 1))
    proposals = [{"candidate": candidate_id(pool.next_id + i), "config": p.config, "source": p.source}
                 for i, p in enumerate(new)]
    return {"round": r, "proposer": search.proposer, "history_mode": search.history,
            "history": [{"config": c, "score": s} for c, s in history], "proposals": proposals}


def _finite(score: float) -> float:
    return score if math.isfinite(score) else DIVERGED_SCORE


def write(proposals: dict, out: Path) -> None:
    files.write_json(out, proposals)
    log.info("%s: %s", out, ", ".join(f"{p['candidate']} {p['config']} ({p['source']})" for p in proposals["proposals"]) or "none")
