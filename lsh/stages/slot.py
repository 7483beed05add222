"""Train one pool slot's candidate to the epoch its pool entry names.

A new candidate trains from scratch; a survivor continues from its parent checkpoint (the
last epoch of its previous round), bitwise as if it had never stopped. What a candidate's
training depends on is its configuration, the seed and the model, training and data
sections (a `RunSpec`), never its slot, round or run. An empty slot (a grid smaller than
the pool) gets a summary that says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lsh import data, files, layout
from lsh.config import Params
from lsh.errors import LshError
from lsh.records import Pool, PoolEntry, Summary
from lsh.spectra import new_epochs, write_cache
from lsh.training import candidate_spec, train

log = logging.getLogger("lsh.stages")


def train_entry(params: Params, entry: PoolEntry | None, out: Path, data_dir: Path, *, final: bool = False,
                restart: bool = False) -> Summary:
    """Train `entry` into `out`; with `final`, keep only the last and best epochs and measure test perplexity."""
    if entry is None:
        summary = Summary(status="empty", epochs=0)
        files.write_json(out / layout.SUMMARY, summary.to_json())
        return summary
    if entry.epochs_after > params.final_epochs:  # a pool of other params (or edited): it would train past the plan
        raise LshError(f"candidate {entry.candidate} is to train to epoch {entry.epochs_after}, beyond final.epochs = "
                       f"{params.final_epochs}: its pool was not made with these params; rebuild it (lsh search pool)")
    corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    summary = train(candidate_spec(params, entry.config), corpus, out, entry.epochs_after, resume=True, restart=restart,
                    keep="last" if final else "all", test=final, init=entry.parent,
                    candidate=(entry.candidate, entry.config))
    if not final:  # the selection measures its spectra: compute them while the job holds torch (see lsh.spectra)
        write_cache(out, new_epochs(entry, out), data_dir, params.lyapunov, params.seed)
    log.info("%s: %s %s, %d epochs trained", out, entry.candidate, summary.status, summary.epochs_trained)
    return summary


def train_slot(params: Params, pool: Pool, slot: int, out: Path, data_dir: Path, *, final: bool = False,
               restart: bool = False) -> Summary:
    """Train slot `slot` of `pool` (a round's or the final pool)."""
    return train_entry(params, pool.entry(slot), out, data_dir, final=final, restart=restart)


def train_to_final(params: Params, pool: Pool, slot: int, round_train: Path, out: Path, data_dir: Path, *,
                   restart: bool = False) -> Summary:
    """Train a round-0 candidate on from its round-0 checkpoint to final.epochs (the report's correlation study)."""
    entry = pool.entry(slot)
    if entry is not None:
        parent = layout.checkpoint(round_train, entry.epochs_after)
        if not parent.exists():  # it diverged before its last round-0 epoch
            entry = None
        else:
            entry = PoolEntry(slot=slot, candidate=entry.candidate, config=entry.config, parent=str(parent),
                              epochs_before=entry.epochs_after, epochs_after=params.final_epochs)
    return train_entry(params, entry, out, data_dir, final=True, restart=restart)
