"""A training run in a folder: train a model until N epochs in total, checkpointing every epoch,
resuming or continuing where a run left off, and never deleting finished work unasked."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lsh import files, layout, numerics, records
from lsh.config import ModelParams, Params, SparseConfig, TrainConfig
from lsh.data import Corpus
from lsh.device import resolve_device
from lsh.errors import LshError
from lsh.models import ModelConfig, build_model, check_fits
from lsh.records import Summary
from lsh.training.checkpoints import (
    checkpoint_path,
    describe_difference,
    fingerprint,
    list_checkpoints,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from lsh.training.loop import Trainer, batchify, evaluate, perplexity

log = logging.getLogger("lsh.training")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What a training depends on, and nothing else: not its folder, slot, round or run. A candidate
    trained twice from the same spec and data is the same model, bit for bit on the CPU."""

    seed: int
    model: ModelParams
    train: TrainConfig
    sparse: SparseConfig | None = None  # None (or density 1): the dense model; decay_epochs resolved

    def run_config(self, corpus: Corpus) -> dict:
        """The record a checkpoint keeps of it (and of the data), so a resume never continues another run."""
        return {"seed": self.seed, "model": asdict(self.model), "train": asdict(self.train),
                "sparse": asdict(self.sparse) if self.sparse is not None and self.sparse.density < 1 else None,
                "corpus": fingerprint(corpus)}


def candidate_spec(params: Params, config: dict) -> RunSpec:
    """The run a candidate of a search or a study is: the params' model and training, its configuration
    in the sparse section."""
    return RunSpec(seed=params.seed, model=params.model, train=params.train, sparse=replace(params.sparse, **config))


def dense_spec(params: Params) -> RunSpec:
    """The dense reference: the same model and training, no sparse section."""
    return RunSpec(seed=params.seed, model=params.model, train=params.train, sparse=None)


def train(
    spec: RunSpec,
    corpus: Corpus,
    out: str | os.PathLike,
    epochs: int,
    *,
    resume: bool = False,
    restart: bool = False,
    keep: str = "all",
    test: bool = False,
    progress: bool | None = None,
    init: str | os.PathLike | None = None,
    candidate: tuple[str, dict] | None = None,
) -> Summary:
    """Train the spec's model until `epochs` epochs in total are done, checkpointing every epoch.

    The model is sparse (dynamic sparse training) when the spec has a sparse config with
    density below 1, else dense (the dense reference). `init` continues a
    run from a checkpoint in another folder (a search survivor's next round, or its final
    training), as if it were this folder's own last checkpoint. Finished work is never
    deleted unasked: `resume` continues the folder's own run (a no-op once it has reached
    `epochs`) and refuses another run's checkpoints; only `restart` deletes them (and, without
    `resume`, any checkpoints) to start over. Returns the summary, also `out/summary.json`
    (with `candidate`, a search slot's id and configuration, in it).
    """
    out = Path(out)
    _check_request(keep, epochs)
    device = resolve_device(spec.train.device, "train.device")
    config = spec.run_config(corpus)
    trainer = build_trainer(spec, corpus, device)

    start, continued = _starting_point(out, config, init, resume=resume, restart=restart)
    if start is not None:
        state = load_checkpoint(start, map_location=device)
        trainer.load_state_dict(state)
        log.info("%s from %s (epoch %d)", "continuing" if continued else "resuming", start, trainer.epoch)
        if trainer.epoch < epochs:  # only work still to do can come out with other bits
            numerics.check_continuation(state.get("environment"), numerics.current(), f"checkpoint {start}")
    if trainer.epoch > epochs and continued:
        raise LshError(f"--init {init} is already at epoch {trainer.epoch}, past --epochs {epochs}")
    if trainer.epoch >= epochs and start is not None and not continued:
        log.info("%s is already trained to epoch %d (--epochs %d): nothing to train", out, trainer.epoch, epochs)
        return finish_summary(out, trainer, epochs, test, seconds=0.0, trained=0, candidate=candidate)
    if trainer.epoch == 0:
        save_checkpoint(checkpoint_path(out, 0), trainer.state_dict(config))
    started, first_epoch = time.perf_counter(), trainer.epoch
    run_epochs(trainer, out, epochs, config, keep, sys.stderr.isatty() if progress is None else progress)
    return finish_summary(out, trainer, epochs, test, seconds=time.perf_counter() - started,
                          trained=trainer.epoch - first_epoch, candidate=candidate)


def build_trainer(spec: RunSpec, corpus: Corpus, device: torch.device) -> Trainer:
    """The model the spec describes, from its seed (weights, then masks), in a fresh Trainer."""
    from lsh import sparse as sparse_training

    config = ModelConfig.from_params(spec.model, corpus.vocab_size)
    check_fits(config, spec.train.batch_size, spec.train.bptt, device)
    torch.manual_seed(spec.seed)
    model = build_model(config).to(device)
    hook = sparse_training.from_config(model, spec.sparse, corpus)
    trainer = Trainer(model, spec.train, corpus, device, hook)
    if hook is not None:
        hook.set_schedule(trainer.batches_per_epoch)
    return trainer


def _starting_point(out: Path, config: dict, init: str | os.PathLike | None, *, resume: bool,
                    restart: bool) -> tuple[Path | None, bool]:
    """The checkpoint a run starts from and whether it is `init` (continued from elsewhere): the
    folder's own last one, `init`, or None (from scratch).

    Checkpoints of another run in `out` (other params or data, or not continuing `init`) are
    refused unless `restart` says to delete them.
    """
    if init is not None:  # before anything is deleted: a parent of other params is an error either way
        init = _existing_init(init, config["train"]["lr"])
        changed = describe_difference(load_checkpoint(init, map_location="cpu")["run_config"], config)
        if changed:
            raise LshError(f"--init {init} was trained with other params ({', '.join(changed)} differ)")
    existing = list_checkpoints(out)
    if existing and not (resume or restart):
        raise LshError(f"{out} already holds checkpoints (up to epoch {max(existing)}); pass --resume to continue "
                       "them, or --restart to delete them and start over")
    if existing:
        last = existing[max(existing)]
        state = load_checkpoint(last, map_location="cpu")
        changed = describe_difference(state["run_config"], config)
        other = f"{', '.join(changed)} differ" if changed else None
        if other is None and init is not None:
            parent = load_checkpoint(init, map_location="cpu")["history"]
            if state["history"][: len(parent)] != parent:
                other = f"they do not continue {init}"
        if other is None and resume:
            return last, False
        if other is not None and not restart:
            raise LshError(f"{out} holds the checkpoints of another run ({other}); pass --restart to delete them "
                           "and start over, or train into another folder")
        log.warning("%s: deleting the checkpoints up to epoch %d (%s) and starting over", out, max(existing),
                    other or "--restart")
        _clear(out, existing)
    return (init, True) if init is not None else (None, False)


def _existing_init(init: str | os.PathLike, lr: float) -> Path:
    """`init` as a path, or an error that says why it is missing (its run diverged before it, most
    likely from too high a learning rate: the run continued from it has the same `lr`)."""
    init = Path(init)
    if not (init.exists() or init.is_symlink()):
        path = init.parent / layout.SUMMARY
        done = records.read_if(path, Summary)
        if done is not None and done.status == "diverged":
            raise LshError(f"--init {init} does not exist: that run diverged at epoch {done.epochs} "
                           f"({done.reason or 'see ' + str(path)}). The likely cause is the learning "
                           f"rate (train.lr = {lr:g}): lower it and rerun")
    return init


def run_epochs(trainer: Trainer, out: Path, epochs: int, config: dict, keep: str, progress: bool) -> None:
    """Train until `epochs` (or divergence), writing a checkpoint and the metrics after every epoch."""
    while trainer.epoch < epochs and trainer.status == "ok":
        record = trainer.run_epoch(progress)
        save_checkpoint(checkpoint_path(out, trainer.epoch), trainer.state_dict(config))
        write_metrics(out, trainer.history)
        if keep == "last":
            _prune_checkpoints(out, trainer.history)
        log.info(
            "epoch %3d | train ppl %8.2f | valid ppl %8.2f | %s%.0f tok/s | %.1f s",
            record["epoch"], record["train_ppl"] or math.inf, record["valid_ppl"] or math.inf,
            "averaging | " if record["averaging"] else "", record["tokens_per_s"], record["seconds"],
        )
        if trainer.status == "diverged":
            log.warning("epoch %d: %s; the run stops as diverged", trainer.epoch, record["reason"])


def _check_request(keep: str, epochs: int) -> None:
    """Refuse a bad request before any checkpoint is touched."""
    if keep not in layout.KEEP:
        raise LshError(f"--keep {keep!r}: allowed are {', '.join(layout.KEEP)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise LshError(f"--epochs {epochs!r}: must be a whole number of epochs >= 0")


def finish_summary(out: Path, trainer: Trainer, epochs: int, test: bool, *, seconds: float, trained: int,
                   candidate: tuple[str, dict] | None = None) -> Summary:
    """Write and return summary.json of the run's first `epochs` epochs (all of them, normally), with the
    search candidate's id and configuration when it is one (written once, by this job)."""
    history = trainer.history[:epochs]
    status = history[-1]["status"] if history else trainer.status
    summary = summarize(history, status, epochs)
    test_ppl = None
    if test and summary.best_epoch is not None:
        test_ppl = files.finite_or_none(best_test_perplexity(out, summary.best_epoch, trainer))
    summary = Summary(**{**asdict(summary), "seconds": round(seconds, 3), "epochs_trained": trained,
                         "test_ppl": test_ppl, "test_epoch": summary.best_epoch if test_ppl is not None else None,
                         "candidate": candidate[0] if candidate else None,
                         "config": candidate[1] if candidate else None})
    if not (out / layout.METRICS).exists():
        write_metrics(out, trainer.history)
    files.write_json(out / layout.SUMMARY, summary.to_json())
    return summary


def _clear(out: Path, checkpoints: dict[int, Path]) -> None:
    for path in checkpoints.values():
        path.unlink()
    for name in (layout.METRICS, layout.CURVES, layout.SUMMARY):
        (out / name).unlink(missing_ok=True)


def write_metrics(out: Path, history: list[dict]) -> None:
    """Per-epoch records, as JSON lines and as one JSON list (rewritten whole: never half a line)."""
    records.write_lines(out / layout.METRICS, history)  # the lines records.read_lines(.., Epoch) reads
    files.write_json(out / layout.CURVES, history)


def best_test_perplexity(out: Path, best_epoch: int, trainer: Trainer) -> float:
    """Test perplexity of the best validation epoch (its checkpoint; the current model if it is the last)."""
    if best_epoch == trainer.epoch:
        return trainer.test_perplexity()
    path = checkpoint_path(out, best_epoch)
    if not path.exists():  # continued from elsewhere: the best epoch lies in the parent's folder
        log.warning("best epoch %d has no checkpoint in %s; test perplexity of the last epoch instead", best_epoch, out)
        return trainer.test_perplexity()
    model = model_from_checkpoint(load_checkpoint(path, map_location=trainer.device), trainer.device)
    test = batchify(trainer.test_ids, trainer.cfg.eval_batch_size, trainer.device)
    return perplexity(evaluate(model, test, trainer.cfg.bptt))


def summarize(history: list[dict], status: str, epochs: int) -> Summary:
    """The run's outcome; the best epoch is among the epochs that did not diverge."""
    finite = [h for h in history if h["valid_ppl"] is not None and h.get("status", "ok") == "ok"]
    best = min(finite, key=lambda h: h["valid_ppl"]) if finite else None
    return Summary(
        status=status, epochs=history[-1]["epoch"] if history else 0, target_epochs=epochs,
        valid_ppl=history[-1]["valid_ppl"] if history else None,
        best_epoch=best["epoch"] if best else None, best_valid_ppl=best["valid_ppl"] if best else None,
        reason=history[-1].get("reason") if status == "diverged" and history else None,
    )


def _prune_checkpoints(out: Path, history: list[dict]) -> None:
    """`--keep last`: keep only the last and the best epoch's checkpoints."""
    best = summarize(history, "ok", 0).best_epoch
    last = history[-1]["epoch"]
    for epoch, path in list_checkpoints(out).items():
        if epoch not in (last, best):
            path.unlink()
