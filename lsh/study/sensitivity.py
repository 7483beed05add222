"""How much the headline comparison (LSH against the loss-ranked search, at the study's pool size and
proposer) depends on choices a reader could question, each replayed on the same table:

    e0          the epoch of the first ranking, every e0 whose rounds end by final.epochs
    leave_out   each configuration of the table left out, the proposers choosing among the rest: how
                much of the difference one configuration carries
    ranker      the LS ranker's options against the paper's (the raw-cosine distance among them was
                chosen after looking at the study's data, and is labelled so)

Each row is the loss-ranked search's final test perplexity minus LSH's, paired within training seeds
(the seed test of lsh.study.statistics), with both strategies' budgets, the dense reference charged to
LSH."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import csv_records
from lsh.config import Params
from lsh.records import Variation
from lsh.schedule import plan
from lsh.study.replay import Outcome, replay
from lsh.study.statistics import over_seeds, paired_over_seeds
from lsh.study.strategies import Strategy
from lsh.study.table import Table

E0S = (1, 2, 3, 4)
# The LS ranker's options compared with the paper's (PCA, L2, the pair fit). Raw cosine was picked after
# the calibrated study's early_signals.md showed it closest to the loss: its row is post hoc.
RANKER_OPTIONS = (("raw", "cosine", "pair", True), ("raw", "l2", "pair", False), ("pca", "l2", "pool", False))


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One re-run of the comparison: the LSH and the loss-ranked strategy, on the table less `drop`."""

    kind: str
    setting: str
    lsh: Strategy
    loss: Strategy
    drop: str | None = None
    post_hoc: bool = False


def variants(params: Params, table: Table, n: int) -> list[Variant]:
    """The comparison at the headline pool size `n` as the study runs it, then each variation of it."""
    base = dataclasses.replace(params.search, n=n, mode="lsh", age="own")
    layout = params.lyapunov.layout

    def pair(search, **lsh) -> dict[str, Strategy]:
        return {"lsh": Strategy(kind="lsh", search=dataclasses.replace(search, ranker="ls", **lsh), layout=layout),
                "loss": Strategy(kind="lsh", search=dataclasses.replace(search, ranker="loss"), layout=layout)}

    out = [Variant(kind="as run", setting=f"e0 = {base.e0}", **pair(base))]
    for e0 in E0S:
        search = dataclasses.replace(base, e0=e0)
        if e0 != base.e0 and plan(search).last_epoch <= table.final_epochs:
            out.append(Variant(kind="e0", setting=f"e0 = {e0}", **pair(search)))
    for cid, _ in table.configs:
        out.append(Variant(kind="leave_out", setting=f"without {cid}", **pair(base), drop=cid))
    for embedding, distance, fit, post_hoc in RANKER_OPTIONS:
        out.append(Variant(kind="ranker", setting=f"LS {embedding}-{distance}-{fit}",
                           **pair(base, embedding=embedding, distance=distance, pca_fit=fit), post_hoc=post_hoc))
    return out


def _replay_pair(job: tuple) -> tuple[list[Outcome], list[Outcome]]:
    source, variant, space, repeats, seed = job
    from threadpoolctl import threadpool_limits

    table = source if isinstance(source, Table) else Table.load(source)
    if variant.drop is not None:
        table = table.subset([cid for cid, _ in table.configs if cid != variant.drop])
    with threadpool_limits(limits=1):
        return (replay(table, variant.lsh, space, repeats, seed), replay(table, variant.loss, space, repeats, seed))


def _over_seeds(outcomes: list[Outcome]) -> float:
    """The mean over training seeds of each seed's mean final test perplexity, as methods.csv reports it."""
    return over_seeds(np.array([o.test_ppl for o in outcomes]), np.array([o.seed for o in outcomes]))[0]


def _mean_epochs(outcomes: list[Outcome]) -> float:
    """Candidate-epochs with the dense reference's, over the replays."""
    return float(np.mean([o.candidate_epochs + o.dense_epochs for o in outcomes]))


def sensitivity(params: Params, table: Table, n: int, workers: int = 1) -> pd.DataFrame:
    """Every variant's comparison (`variants`), `study.repeats` replays of each strategy."""
    if workers > 1 and table.folder is None:
        raise ValueError("replays in worker processes load the table from its folder: give a loaded table")
    source: Table | Path = table.folder if workers > 1 else table
    todo = variants(params, table, n)
    jobs = [(source, v, params.space, params.study.repeats, params.seed) for v in todo]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_replay_pair, jobs))
    else:
        results = [_replay_pair(job) for job in jobs]
    rows = []
    for v, (lsh, loss) in zip(todo, results):
        test = paired_over_seeds([o.test_ppl for o in loss], np.array([o.seed for o in loss]),
                                 [o.test_ppl for o in lsh], np.array([o.seed for o in lsh]))
        rows.append(Variation(kind=v.kind, setting=v.setting, post_hoc=v.post_hoc, seeds=test.seeds,
                              lsh_test_ppl=_over_seeds(lsh), loss_test_ppl=_over_seeds(loss), loss_vs_lsh=test.mean,
                              loss_vs_lsh_low=test.low, loss_vs_lsh_high=test.high, sign_p=test.p_sign,
                              loss_lower_seeds=test.lower,
                              lsh_candidate_epochs=_mean_epochs(lsh), loss_candidate_epochs=_mean_epochs(loss)))
    return csv_records.frame(rows, Variation)
