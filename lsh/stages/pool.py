"""A round's pool: which candidate trains in which slot, from where, to which epoch.

Round 0 (or, in `search.mode: full`, the final pool) takes the proposer's n configurations;
round r >= 1 takes the previous round's survivors, best first, each continuing from its last
checkpoint for `ei` more epochs, then the proposals, which start from scratch for `e0`;
the final pool takes the last round's survivors on to `final.epochs`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lsh import csv_records, records
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import Layout, checkpoint
from lsh.records import Pool, PoolEntry, Proposals, RankingRow, Tried
from lsh.schedule import plan, pool_epochs
from lsh.search.space import candidate_id, derived_seed

log = logging.getLogger("lsh.stages")


def initial_pool(params: Params) -> Pool:
    """Round 0's pool (or, for `search.mode: full`, the final pool): n configurations from the proposer."""
    from lsh.search.proposers import propose

    search = params.search
    proposals = propose(search.proposer, params.space, [], [], search.n, derived_seed(params.seed, 0))
    full = search.mode == "full"
    after = params.final_epochs if full else search.e0
    slots: list[PoolEntry | None] = [
        PoolEntry(slot=i, candidate=candidate_id(i), config=p.config, parent=None, epochs_before=0, epochs_after=after)
        for i, p in enumerate(proposals)]
    slots += [None] * (search.n - len(slots))  # a grid smaller than n leaves slots empty
    tried = tuple(Tried(e.candidate, e.config) for e in slots if e)
    return Pool(round="final" if full else 0, slots=tuple(slots), tried=tried, next_id=len(tried))


def next_pool(params: Params, layout: Layout, r: int) -> Pool:
    """Round r's pool (r >= 1) or the final pool (r = number of rounds): survivors first, then the new,
    their epochs by the rule the study's replay also follows (schedule.pool_epochs)."""
    search, prev = params.search, r - 1
    rounds = plan(search).rounds
    last = r == len(rounds)
    survivors = sorted((row for row in csv_records.read_rows(layout.ranking(prev), RankingRow) if row.kept),
                       key=lambda row: row.rank)
    proposals = [] if last else list(records.read(layout.proposals(prev), Proposals).proposals)
    epochs = pool_epochs(search, r, [row.epoch for row in survivors], len(proposals), params.final_epochs)
    slots: list[PoolEntry | None] = []
    for row, (before, after) in zip(survivors, epochs):
        parent = str(checkpoint(layout.slot_train(prev, row.slot), before))
        slots.append(PoolEntry(slot=len(slots), candidate=row.candidate, config=row.config, parent=parent,
                               epochs_before=before, epochs_after=after))
    for p, (before, after) in zip(proposals, epochs[len(survivors):]):
        slots.append(PoolEntry(slot=len(slots), candidate=p.candidate, config=p.config, parent=None,
                               epochs_before=before, epochs_after=after))
    pool = records.read(layout.pool(prev), Pool)
    tried = (*pool.tried, *(Tried(p.candidate, p.config) for p in proposals))
    if not last:
        slots += [None] * (rounds[r].pool - len(slots))
    return Pool(round="final" if last else r, slots=tuple(slots), tried=tried, next_id=pool.next_id + len(proposals))


def build(params: Params, layout: Layout, round_: int | str) -> Pool:
    """The pool of round `round_` (a number, or "final")."""
    rounds = len(plan(params.search).rounds)
    r = rounds if round_ == "final" else int(round_)
    if r > rounds:
        which = f"rounds 0 to {rounds - 1} and `final`" if rounds else "only the `final` pool (search.mode: full)"
        raise LshError(f"--round {round_}: the search's plan has {which}")
    return initial_pool(params) if r == 0 else next_pool(params, layout, r)


def write(pool: Pool, out: Path) -> None:
    """pool.json through its record, and the slots in the log."""
    records.write(out, pool)
    log.info("%s: %d slots (%s)", out, len(pool.slots), ", ".join(e.candidate if e else "empty" for e in pool.slots))
