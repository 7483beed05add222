"""`lsh search spectra`: the Lyapunov spectra of a slot's new epochs and of the dense reference's
epochs, each one record per epoch in a spectra.json (the measuring is the library's, lsh/spectra.py)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from lsh import layout, records
from lsh.config import Params
from lsh.errors import LshError
from lsh.records import Pool, Spectra, Summary
from lsh.spectra import epochs_spectra, new_epochs

log = logging.getLogger("lsh.stages")


def slot_spectra(params: Params, pool: Pool, slot: int, train_dir: Path, data_dir: Path) -> Spectra:
    """Spectra of every checkpoint this slot trained (and of epoch 0 for a new candidate); a survivor's
    earlier epochs were measured in earlier rounds."""
    entry = pool.entry(slot)
    if entry is None:
        return Spectra(round=pool.round, slot=slot, candidate=None, spectra={}, seconds=0.0, status="empty")
    measured = epochs_spectra(train_dir, new_epochs(entry, train_dir), data_dir, params.lyapunov, params.seed)
    return replace(measured, round=pool.round, slot=slot, candidate=entry.candidate)


def check_dense(params: Params, train_dir: Path, last_epoch: int) -> None:
    """Stop the search with the reason when the dense reference it compares against is unusable."""
    summary_path = Path(train_dir) / layout.SUMMARY
    summary = records.read(summary_path, Summary)
    if summary.status == "diverged":
        raise LshError(
            f"the dense reference diverged at epoch {summary.epochs} ({summary.reason or 'see ' + str(summary_path)}); "
            f"the search needs it at every epoch up to {last_epoch}. The likely cause is the learning rate "
            f"(train.lr = {params.train.lr:g}): lower it and rerun")
    if summary.epochs < last_epoch:
        raise LshError(f"{summary_path}: the dense reference reached epoch {summary.epochs}, the search compares "
                       f"against epochs up to {last_epoch}: train it that far")


def dense_spectra(params: Params, train_dir: Path, data_dir: Path, last_epoch: int) -> Spectra:
    """Spectra of the dense reference at every epoch 0..last the search compares against."""
    check_dense(params, train_dir, last_epoch)
    return epochs_spectra(train_dir, list(range(last_epoch + 1)), data_dir, params.lyapunov, params.seed)


def write(record: Spectra, out: Path) -> None:
    records.write(out, record)
    log.info("%s: %d spectra in %.1f s", out, len(record.spectra), record.seconds)


