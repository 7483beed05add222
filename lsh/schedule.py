"""The LSH search's schedule of rounds (pool sizes and epochs), known before any training.

With pool size P_r, round r trains every candidate (survivors continue for `ei` more
epochs, new candidates start from scratch and train `e0`), ranks them, removes
floor(P_r * eliminate) and, unless the survivors are already at most `final_pool`,
proposes floor(P_r * insert) new ones. P_0 = n. Because the pool sizes follow from the
params alone, the whole workflow DAG is static. (Pure arithmetic: the workflow imports
this module as it loads, so it imports nothing heavy.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from lsh.errors import LshError


class SearchSettings(Protocol):
    """The search params a schedule follows from (lsh.config.SearchConfig has them): named here, not
    imported, since config validates a schedule with plan() and imports this module."""

    mode: str
    n: int
    e0: int
    ei: int
    eliminate: float
    insert: float
    final_pool: int


@dataclass(frozen=True, kw_only=True)
class Round:
    round: int
    pool: int  # candidates trained in this round
    survivors: int  # candidates kept after its elimination
    new: int  # candidates proposed after it (trained in the next round)
    carried: int  # candidates of this round's pool that were survivors of the previous round
    epochs_carried: int  # epochs each carried candidate trains in this round (ei)
    epochs_new: int  # epochs each new candidate trains in this round (e0)
    candidate_epochs: int  # epochs trained in this round, all candidates together
    cumulative_candidate_epochs: int
    max_epoch: int  # the oldest candidate's epoch at the end of this round


@dataclass(frozen=True)
class Plan:
    rounds: tuple[Round, ...]  # empty for `search.mode: full` (no selection rounds)
    final_pool: int  # candidates trained to final.epochs

    @property
    def total_candidate_epochs(self) -> int:
        return self.rounds[-1].cumulative_candidate_epochs if self.rounds else 0

    @property
    def last_epoch(self) -> int:
        """The last epoch any candidate reaches during selection: the dense reference trains this far."""
        return self.rounds[-1].max_epoch if self.rounds else 0

    def to_dict(self) -> dict:
        return {
            "rounds": [asdict(r) for r in self.rounds],
            "total_candidate_epochs": self.total_candidate_epochs,
            "last_epoch": self.last_epoch,
            "final_pool": self.final_pool,
        }


def plan(search: SearchSettings) -> Plan:
    """The rounds that the `search` params imply; an impossible schedule is an LshError."""
    n, e0, ei = search.n, search.e0, search.ei
    if search.mode == "full":
        return Plan((), n)  # every initial candidate trains to the end; no rounds
    eliminate, insert, final_pool = search.eliminate, search.insert, search.final_pool
    if insert >= eliminate:
        raise LshError(
            f"search.insert: {insert} must be less than search.eliminate ({eliminate}), "
            "or the pool never shrinks and the rounds never stop"
        )
    if n <= final_pool:
        raise LshError(f"search.n: {n} must be greater than search.final_pool ({final_pool})")
    rounds: list[Round] = []
    pool, carried, total, max_epoch = n, 0, 0, 0
    while True:
        removed = int(pool * eliminate)
        if removed == 0:
            raise LshError(
                f"search.eliminate: {eliminate} removes no candidate from a pool of {pool}; "
                f"raise it to at least {1 / pool:.3g} or raise search.final_pool"
            )
        survivors = pool - removed
        new = 0 if survivors <= final_pool else int(pool * insert)
        epochs = carried * ei + (pool - carried) * e0
        total += epochs
        max_epoch = e0 if not rounds else max_epoch + ei
        rounds.append(Round(round=len(rounds), pool=pool, survivors=survivors, new=new, carried=carried,
                            epochs_carried=ei, epochs_new=e0, candidate_epochs=epochs,
                            cumulative_candidate_epochs=total, max_epoch=max_epoch))
        if survivors <= final_pool:
            return Plan(tuple(rounds), survivors)
        pool, carried = survivors + new, survivors




def pool_epochs(search: SearchSettings, r: int, survivor_epochs: list[int], newcomers: int,
                final_epochs: int) -> list[tuple[int, int]]:
    """Round r's pool (r = the number of rounds: the final pool) as (epochs before, epochs after) per slot,
    in slot order: the previous round's survivors, best first, continue from their epoch for ei more
    epochs (in the final pool: to final.epochs), then the newcomers train from scratch for e0 (in
    `search.mode: full` the initial candidates train straight to final.epochs). The live search's
    pools and the study's replay are both built with it, so that a replay follows the live run."""
    rounds = len(plan(search).rounds)
    if r == 0:
        return [(0, final_epochs if search.mode == "full" else search.e0)] * newcomers
    if r == rounds:
        return [(e, final_epochs) for e in survivor_epochs]
    return [(e, e + search.ei) for e in survivor_epochs] + [(0, search.e0)] * newcomers
