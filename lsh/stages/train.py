"""`lsh train`: one training run into a folder, the model the params describe (sparse when the
params' sparse section has density below 1, unless `dense`), with resume and restart."""

from __future__ import annotations

import logging
from pathlib import Path

from lsh import data
from lsh.config import Params
from lsh.records import Summary
from lsh.training import candidate_spec, dense_spec, train

log = logging.getLogger("lsh.stages")


def run(params: Params, data_dir: Path, out: Path, epochs: int, *, dense: bool = False, resume: bool = False,
        restart: bool = False, keep: str = "all", test: bool = False, init: str | None = None,
        spectra: bool = False) -> Summary:
    """Train; with `spectra`, also leave the spectra of every checkpoint in the folder beside them
    (the dense reference's job does, so that its spectra job need not load torch)."""
    corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    spec = dense_spec(params) if dense else candidate_spec(params, {})
    summary = train(spec, corpus, out, epochs, resume=resume, restart=restart, keep=keep, test=test, init=init)
    if spectra:
        from lsh.spectra import write_cache
        from lsh.training import list_checkpoints

        write_cache(out, [e for e in list_checkpoints(out) if e <= epochs], data_dir, params.lyapunov, params.seed)
    log.info("%s: %s after %d epochs, best valid ppl %s (epoch %s)%s", out, summary.status, summary.epochs,
             summary.best_valid_ppl, summary.best_epoch,
             f", test ppl {summary.test_ppl}" if summary.test_ppl is not None else "")
    return summary
