"""Training: truncated BPTT with SGD, then non-monotonically triggered averaged SGD.

One loop trains the dense reference, every candidate and the final survivors
(algorithm-notes section 2). After every epoch it validates, decides the NT-ASGD
switch, updates a sparse model's topology, and writes an atomic checkpoint
`epoch-NNN.pt` plus a line of `metrics.jsonl`; `epoch-000.pt` is the initialisation.

What a checkpoint holds, and why in two parts. Validation, the checkpoint's `model` and
`masks`, and everything later read from it (spectra, the loss ranker, test perplexity)
describe the model *as trained* in that epoch, as in Selfish-RNN: the prune-and-regrow
happens after validation and takes effect in the next epoch. A regrown weight starts at
zero, so a model measured after the update would hold only part of its mask's weights.
The state the next epoch starts from, after the update, travels beside it: `weights`
(the raw training weights) and `next_masks` (the topology after the update), with the
optimizer, averaging, sparse and RNG states of that moment. A run resumes bitwise
exactly from its last checkpoint, and a survivor continued from a checkpoint trains
exactly as if it had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from lsh import files
from lsh import sparse as sparse_training
from lsh.data import Corpus
from lsh.errors import LshError
from lsh.models import LanguageModel, ModelConfig, build_model

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("epoch", "status", "model", "model_config", "run_config", "weights", "optimizer", "averaging",
                   "history", "rng")
CHECKPOINT_FORMAT = 2  # 2: `model`/`masks` as trained; `weights`/`next_masks` to resume from
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CURVES = "curves.json"  # the same records as one JSON list: DVC plots cannot read JSON lines
DIVERGENCE_CHECK_EVERY = 20  # batches


# -----------------------------------------------------------------------------
# Configuration from params


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    batch_size: int
    bptt: int
    clip: float
    weight_decay: float
    nonmono: int
    eval_batch_size: int
    eval_tokens: int | None
    device: str


def model_config(params: dict, vocab: int) -> ModelConfig:
    """The ModelConfig the params describe; cross-field problems become clean errors."""
    m = params["model"]
    drop = m["dropout"]
    try:
        return ModelConfig(
            type=m["type"], vocab=vocab, emb=m["emb"], hidden=m["hidden"], layers=m["layers"],
            depth=m["depth"], tied=m["tied"], dropout_input=drop["input"],
            dropout_hidden=drop["hidden"], dropout_output=drop["output"], dropout_words=drop["words"],
        )
    except ValueError as e:
        raise LshError(f"model: {e}") from None


def train_config(params: dict) -> TrainConfig:
    return TrainConfig(**params["train"])


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available; asking for CUDA without one is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LshError("device: cuda was asked for, but torch sees no CUDA device (use auto or cpu)")
    return torch.device(name)


# -----------------------------------------------------------------------------
# Data: batchified streams, as in pytorch/examples word_language_model


def batchify(ids: np.ndarray, batch: int, device: torch.device) -> Tensor:
    """Cut a token stream into `batch` parallel streams: [N] -> [N // batch, batch]."""
    n = len(ids) // batch
    if n < 2:
        raise LshError(f"{len(ids)} tokens are too few for batch size {batch}")
    return torch.from_numpy(ids[: n * batch]).view(batch, n).t().contiguous().to(device)


def windows(source: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(input [T, B], target [T, B]) windows of at most `bptt` steps."""
    for i in range(0, source.size(0) - 1, bptt):
        T = min(bptt, source.size(0) - 1 - i)
        yield source[i : i + T], source[i + 1 : i + 1 + T]


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def _finite(x: float) -> float | None:
    """JSON has no NaN or inf: a non-finite number is written as null."""
    return x if math.isfinite(x) else None


@torch.no_grad()
def evaluate(model: LanguageModel, source: Tensor, bptt: int) -> float:
    """Mean cross-entropy per token over a batchified split, state carried across windows."""
    model.eval()
    state = model.init_state(source.size(1))
    total = torch.zeros((), dtype=torch.float64, device=source.device)
    count = 0
    for x, y in windows(source, bptt):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        count += y.numel()
    return float(total) / count


def divergence(train_loss: float, valid_loss: float, vocab: int) -> str | None:
    """Why an epoch counts as diverged, or None. A finite loss can still mean a blown-up model: a
    validation perplexity worse than uniform guessing over the vocabulary is no language model."""
    if not math.isfinite(train_loss):
        return "the training loss is no longer finite"
    if not math.isfinite(valid_loss) or valid_loss > 700:
        return "the validation loss is no longer finite"
    if perplexity(valid_loss) > vocab:
        return (f"the validation perplexity {perplexity(valid_loss):.4g} is worse than uniform guessing "
                f"over the {vocab}-word vocabulary")
    return None


def should_switch_to_asgd(history: list[float], current: float, nonmono: int) -> bool:
    """NT-ASGD trigger: more than `nonmono` earlier losses and worse than the best before the last `nonmono`."""
    return len(history) > nonmono and current > min(history[:-nonmono])


# -----------------------------------------------------------------------------
# Averaging (the "A" of NT-ASGD)


class Averager:
    """Running average of the weights after the NT-ASGD switch.

    Each entry keeps a step counter; the average weight is mu = 1 for the first two
    steps, then 1 / (step - 1), as torch.optim.ASGD with t0 = 0. A counter may be a
    tensor of the weight's shape: sparse training resets it where a weight is regrown,
    so that weight's average restarts (SNT-ASGD). The averaged weights are what the
    model is evaluated and checkpointed with.
    """

    def __init__(self) -> None:
        self.active = False
        self.avg: dict[str, Tensor] = {}
        self.steps: dict[str, Tensor] = {}

    def start(self, model: nn.Module) -> None:
        self.active = True
        self.avg = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.steps = {n: torch.zeros((), device=p.device) for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """avg <- avg + mu * (w - avg) for every weight; one fused call for the per-tensor counters."""
        scalar: dict[float, tuple[list[Tensor], list[Tensor]]] = {}
        for name, p in model.named_parameters():
            steps = self.steps[name]
            steps += 1
            if steps.dim() == 0:
                k = float(steps)
                avgs, params = scalar.setdefault(1.0 if k <= 2 else 1.0 / (k - 1), ([], []))
                avgs.append(self.avg[name])
                params.append(p.detach())
            else:  # per-weight counters (sparse training restarts regrown weights)
                mu = torch.where(steps <= 2, 1.0, 1.0 / (steps - 1).clamp(min=1))
                self.avg[name].lerp_(p.detach(), mu)
        for mu, (avgs, params) in scalar.items():
            torch._foreach_lerp_(avgs, params, mu)

    @torch.no_grad()
    def restart(self, name: str, where: Tensor) -> None:
        """Restart the average of the entries of `name` where `where` is true (regrown weights)."""
        steps = self.steps[name]
        if steps.dim() == 0:
            steps = self.steps[name] = steps.expand_as(self.avg[name]).clone()
        steps[where] = 0

    @torch.no_grad()
    def mask(self, name: str, keep: Tensor) -> None:
        self.avg[name] *= keep

    def state_dict(self) -> dict:
        return {"active": self.active, "avg": self.avg, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.avg, self.steps = state["active"], state["avg"], state["steps"]


class swapped_in:
    """Context manager: the model holds the averaged weights inside, its own weights after."""

    def __init__(self, model: nn.Module, averager: Averager) -> None:
        self.model, self.averager = model, averager
        self.saved: dict[str, Tensor] = {}

    @torch.no_grad()
    def __enter__(self) -> nn.Module:
        if self.averager.active:
            for name, p in self.model.named_parameters():
                self.saved[name] = p.detach().clone()
                p.copy_(self.averager.avg[name])
        return self.model

    @torch.no_grad()
    def __exit__(self, *exc: object) -> None:
        for name, p in self.model.named_parameters():
            if name in self.saved:
                p.copy_(self.saved[name])
        self.saved.clear()


# -----------------------------------------------------------------------------
# Checkpoints


def checkpoint_path(out: Path, epoch: int) -> Path:
    return out / f"epoch-{epoch:03d}.pt"


def list_checkpoints(out: Path) -> dict[int, Path]:
    found = {}
    for p in out.glob("epoch-*.pt"):
        try:
            found[int(p.stem.split("-")[1])] = p
        except ValueError:
            continue
    return dict(sorted(found.items()))


def save_checkpoint(path: Path, state: dict) -> None:
    files.atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (weights_only); a truncated or foreign file is a clean error naming it."""
    path = Path(path)
    if not path.is_file():
        raise LshError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():  # it holds code or objects a safe load may not build
            first = str(e).split("\n")[0].strip()
            raise LshError(f"checkpoint {path} was refused as unsafe: it holds objects other than tensors and plain "
                           f"data, which torch.load(weights_only=True) will not run ({first}); "
                           "lsh never loads such files") from None
        raise LshError(f"checkpoint {path} is truncated or corrupted (UnpicklingError: {e}); delete it and rerun") from None
    except Exception as e:  # zip and torch errors alike: the file is unusable
        raise LshError(f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: {e}); delete it and rerun") from None
    if not isinstance(state, dict) or "format" not in state:
        raise LshError(f"checkpoint {path} is not an lsh checkpoint (format {CHECKPOINT_FORMAT})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise LshError(f"checkpoint {path} has format {state['format']}, this lsh reads format {CHECKPOINT_FORMAT}: "
                       "delete it (and what was made from it) and rerun")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise LshError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: it is incomplete; delete it and rerun")
    return state


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> LanguageModel:
    """Rebuild the model a checkpoint holds (its evaluation weights: averaged after the switch)."""
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# -----------------------------------------------------------------------------
# The training run


class Trainer:
    """One model's training: the loop, its NT-ASGD switch, and its checkpoint state.

    `sparse` is the optional dynamic-sparse-training hook (lsh.sparse.SparseTraining):
    it masks the weights after every optimizer step and updates the topology once an epoch.
    """

    def __init__(
        self,
        model: LanguageModel,
        cfg: TrainConfig,
        corpus: Corpus,
        device: torch.device,
        sparse: sparse_training.SparseTraining | None = None,
    ) -> None:
        self.model, self.cfg, self.device, self.sparse = model, cfg, device, sparse
        self.train_data = batchify(corpus.train, cfg.batch_size, device)
        valid = corpus.valid if cfg.eval_tokens is None else corpus.valid[: cfg.eval_tokens]
        self.valid_data = batchify(valid, cfg.eval_batch_size, device)
        self.test_ids = corpus.test
        self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.averager = Averager()
        self.epoch = 0
        self.history: list[dict] = []
        self.status = "ok"
        self.evaluated: dict | None = None  # the last epoch's evaluated weights and masks (run_epoch)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil((self.train_data.size(0) - 1) / self.cfg.bptt)

    def train_epoch(self, progress: bool) -> tuple[float, float]:
        """One pass over the training split; returns (mean loss, tokens/s). NaN loss stops early."""
        model, cfg = self.model, self.cfg
        model.train()
        state = model.init_state(cfg.batch_size)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = batch = 0
        start = time.perf_counter()
        bar = tqdm(
            total=self.train_data.size(0) * cfg.batch_size, unit="tok", unit_scale=True,
            desc=f"epoch {self.epoch + 1}", disable=not progress, leave=False, file=sys.stderr,
        )
        for x, y in windows(self.train_data, cfg.bptt):
            state = model.detach_state(state)
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            self.optimizer.step()
            if self.sparse is not None:
                self.sparse.after_step(model, self.optimizer)
            if self.averager.active:
                self.averager.update(model)
            total += loss.detach() * y.numel()
            count += y.numel()
            bar.update(y.numel())
            batch += 1
            # a NaN stays NaN: checking now and then spares a device sync per batch
            if batch % DIVERGENCE_CHECK_EVERY == 0 and not math.isfinite(float(total)):
                break
        bar.close()
        seconds = time.perf_counter() - start
        return float(total) / count, count / seconds

    def run_epoch(self, progress: bool) -> dict:
        """Train, validate, switch, then update the topology: everything that makes one epoch.

        Validation and the NT-ASGD switch see the model as trained; the evaluated weights and
        their masks are kept for the checkpoint (`evaluated`) before the prune-and-regrow,
        which only shapes the next epoch.
        """
        start = time.perf_counter()
        train_loss, tokens_per_s = self.train_epoch(progress)
        self.epoch += 1
        if not math.isfinite(train_loss):
            valid_loss = math.nan
        else:
            with swapped_in(self.model, self.averager) as model:
                valid_loss = evaluate(model, self.valid_data, self.cfg.bptt)
        record = {
            "epoch": self.epoch,
            "train_loss": _finite(train_loss),
            "train_ppl": _finite(perplexity(train_loss)),
            "valid_loss": _finite(valid_loss),
            "valid_ppl": _finite(perplexity(valid_loss)),
            "averaging": self.averager.active,
            "lr": self.cfg.lr,
            "tokens_per_s": round(tokens_per_s, 1),
        }
        reason = divergence(train_loss, valid_loss, self.model.config.vocab)
        if reason:
            self.status = "diverged"
            record["reason"] = reason
        else:
            losses = [h["valid_loss"] for h in self.history]
            if not self.averager.active and should_switch_to_asgd(losses, valid_loss, self.cfg.nonmono):
                log.info("epoch %d: validation loss stopped improving; switching to averaged SGD", self.epoch)
                self.averager.start(self.model)
        self.evaluated = self.evaluated_state()
        if self.sparse is not None and self.status == "ok":
            record.update(self.sparse.end_of_epoch(self.model, self.optimizer, self.averager))
        record["status"] = self.status
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.history.append(record)
        return record

    def evaluated_state(self) -> dict:
        """The weights the model is evaluated with (averaged once averaging) and their masks, copied."""
        with swapped_in(self.model, self.averager) as model:
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"model": weights, "masks": self.sparse.masks_state() if self.sparse is not None else None}

    # -- checkpoint state ------------------------------------------------------

    def state_dict(self, run_config: dict) -> dict:
        """Everything an exact resume needs (see the module docstring for the two parts).

        `model` and `masks`: the weights as trained and validated this epoch (averaged once
        averaging) and their topology. `weights` and `next_masks`: where the next epoch
        starts, after the topology update (`weights` is None when it equals `model`: a dense
        model before averaging).
        """
        evaluated = self.evaluated if self.evaluated is not None else self.evaluated_state()
        raw_differs = self.averager.active or self.sparse is not None
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "status": self.status,
            "model": evaluated["model"],
            "model_config": asdict(self.model.config),
            "run_config": run_config,
            "weights": self.model.state_dict() if raw_differs else None,
            "optimizer": self.optimizer.state_dict(),
            "averaging": self.averager.state_dict(),
            "history": self.history,
            "rng": _rng_state(self.device),
        }
        if self.sparse is not None:
            state["masks"] = evaluated["masks"]
            state["next_masks"] = self.sparse.masks_state()
            state["sparse"] = self.sparse.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"] if state["weights"] is not None else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.averager.load_state_dict(
            {k: ({n: t.to(self.device) for n, t in v.items()} if isinstance(v, dict) else v) for k, v in state["averaging"].items()}
        )
        if self.sparse is not None:
            self.sparse.load_state_dict(state["sparse"], state["next_masks"])
        self.epoch, self.history, self.status = state["epoch"], list(state["history"]), state["status"]
        self.evaluated = {"model": state["model"], "masks": state.get("masks")}
        _set_rng_state(state["rng"], self.device)

    def test_perplexity(self) -> float:
        """Test perplexity of the last epoch's model as it was validated (before any topology update)."""
        evaluated = self.evaluated if self.evaluated is not None else self.evaluated_state()
        model = build_model(self.model.config).to(self.device)
        model.load_state_dict(evaluated["model"])
        test = batchify(self.test_ids, self.cfg.eval_batch_size, self.device)
        return perplexity(evaluate(model, test, self.cfg.bptt))


def run_config(params: dict, corpus: Corpus | None = None) -> dict:
    """What a training run depends on (params and data): a resume must see the same."""
    config = {key: params.get(key) for key in ("seed", "model", "train", "sparse")}
    sparse = params.get("sparse")
    if sparse and sparse["density"] < 1 and sparse.get("decay_epochs") is None:
        config["decay_epochs"] = params["final"]["epochs"]  # the death-rate decay's length
    if corpus is not None:
        config["corpus"] = fingerprint(corpus)
    return config


def fingerprint(corpus: Corpus) -> str:
    """A short hash of the training and validation ids: checkpoints of other data are not resumed."""
    digest = hashlib.sha256(np.ascontiguousarray(corpus.train).tobytes())
    digest.update(np.ascontiguousarray(corpus.valid).tobytes())
    return digest.hexdigest()[:16]


def _describe_difference(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _describe_difference(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def train(
    params: dict,
    corpus: Corpus,
    out: str | os.PathLike,
    epochs: int,
    *,
    resume: bool = False,
    restart: bool = False,
    keep: str = "all",
    test: bool = False,
    progress: bool | None = None,
    dense: bool = False,
    init: str | os.PathLike | None = None,
) -> dict:
    """Train the params' model until `epochs` epochs in total are done, checkpointing every epoch.

    The model is sparse (dynamic sparse training) when the params have a `sparse` section
    with density below 1, unless `dense` is set (the dense reference). `init` continues a
    run from a checkpoint in another folder (a search survivor's next round, or its final
    training), as if it were this folder's own last checkpoint. Finished work is never
    deleted unasked: `resume` continues the folder's own run (a no-op once it has reached
    `epochs`) and refuses another run's checkpoints; only `restart` deletes them (and, without
    `resume`, any checkpoints) to start over. Returns the summary, also `out/summary.json`.
    """
    out = Path(out)
    if keep not in ("all", "last"):
        raise LshError(f"--keep {keep!r}: allowed are all, last")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise LshError(f"--epochs {epochs!r}: must be a whole number of epochs >= 0")
    cfg = train_config(params)
    device = resolve_device(cfg.device)
    if dense:
        params = {k: v for k, v in params.items() if k != "sparse"}
    config = run_config(params, corpus)

    torch.manual_seed(params["seed"])
    model = build_model(model_config(params, corpus.vocab_size)).to(device)
    sparse = sparse_training.from_params(model, params, corpus, device)
    trainer = Trainer(model, cfg, corpus, device, sparse)
    if sparse is not None:
        sparse.set_schedule(trainer.batches_per_epoch, params["final"]["epochs"])

    start = _starting_point(out, config, init, resume=resume, restart=restart)
    if start is not None:
        trainer.load_state_dict(load_checkpoint(start, map_location=device))
        log.info("%s from %s (epoch %d)", "continuing" if start == init else "resuming", start, trainer.epoch)
    if trainer.epoch > epochs and start == init:
        raise LshError(f"--init {init} is already at epoch {trainer.epoch}, past --epochs {epochs}")
    if trainer.epoch >= epochs and start is not None and start != init:
        log.info("%s is already trained to epoch %d (--epochs %d): nothing to train", out, trainer.epoch, epochs)
        return finish_summary(out, trainer, epochs, test, seconds=0.0, trained=0)
    if trainer.epoch == 0:
        save_checkpoint(checkpoint_path(out, 0), trainer.state_dict(config))
    started, first_epoch = time.perf_counter(), trainer.epoch
    run_epochs(trainer, out, epochs, config, keep, sys.stderr.isatty() if progress is None else progress)
    return finish_summary(out, trainer, epochs, test, seconds=time.perf_counter() - started,
                          trained=trainer.epoch - first_epoch)


def _starting_point(out: Path, config: dict, init: str | os.PathLike | None, *, resume: bool,
                    restart: bool) -> Path | None:
    """The checkpoint a run starts from: the folder's own last one, `init`, or None (from scratch).

    Checkpoints of another run in `out` (other params or data, or not continuing `init`) are
    refused unless `restart` says to delete them.
    """
    if init is not None:  # before anything is deleted: a parent of other params is an error either way
        init = _existing_init(init)
        changed = _describe_difference(load_checkpoint(init, map_location="cpu")["run_config"], config)
        if changed:
            raise LshError(f"--init {init} was trained with other params ({', '.join(changed)} differ)")
    existing = list_checkpoints(out)
    if existing and not (resume or restart):
        raise LshError(f"{out} already holds checkpoints (up to epoch {max(existing)}); pass --resume to continue "
                       "them, or --restart to delete them and start over")
    if existing:
        last = existing[max(existing)]
        state = load_checkpoint(last, map_location="cpu")
        changed = _describe_difference(state["run_config"], config)
        other = f"{', '.join(changed)} differ" if changed else None
        if other is None and init is not None:
            parent = load_checkpoint(init, map_location="cpu")["history"]
            if state["history"][: len(parent)] != parent:
                other = f"they do not continue {init}"
        if other is None and resume:
            return last
        if other is not None and not restart:
            raise LshError(f"{out} holds the checkpoints of another run ({other}); pass --restart to delete them "
                           "and start over, or train into another folder")
        log.warning("%s: deleting the checkpoints up to epoch %d (%s) and starting over", out, max(existing),
                    other or "--restart")
        _clear(out, existing)
    return init


def _existing_init(init: str | os.PathLike) -> Path:
    """`init` as a path, or an error that says why it is missing (its run diverged before it)."""
    init = Path(init)
    if not init.is_file():
        summary = init.parent / SUMMARY
        if summary.is_file():
            done = json.loads(summary.read_text())
            if done.get("status") == "diverged":
                raise LshError(f"--init {init} does not exist: that run diverged at epoch {done.get('epochs')} "
                               f"({done.get('reason', 'see ' + str(summary))})")
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


def finish_summary(out: Path, trainer: Trainer, epochs: int, test: bool, *, seconds: float, trained: int) -> dict:
    """Write and return summary.json of the run's first `epochs` epochs (all of them, normally)."""
    history = trainer.history[:epochs]
    status = history[-1]["status"] if history else trainer.status
    summary = summarize(history, status, epochs)
    summary["seconds"] = round(seconds, 3)
    summary["epochs_trained"] = trained
    if test and summary["best_epoch"] is not None:
        summary["test_ppl"] = _finite(best_test_perplexity(out, summary["best_epoch"], trainer))
        summary["test_epoch"] = summary["best_epoch"]
    if not (out / METRICS).exists():
        write_metrics(out, trainer.history)
    files.write_json(out / SUMMARY, summary)
    return summary


def _clear(out: Path, checkpoints: dict[int, Path]) -> None:
    for path in checkpoints.values():
        path.unlink()
    for name in (METRICS, CURVES, SUMMARY):
        (out / name).unlink(missing_ok=True)


def write_metrics(out: Path, history: list[dict]) -> None:
    """Per-epoch records, as JSON lines and as one JSON list (rewritten whole: never half a line)."""
    files.write_text(out / METRICS, "".join(json.dumps(h) + "\n" for h in history))
    files.write_json(out / CURVES, history)


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


def summarize(history: list[dict], status: str, epochs: int) -> dict:
    """The run's outcome; the best epoch is among the epochs that did not diverge."""
    finite = [h for h in history if h["valid_ppl"] is not None and h.get("status", "ok") == "ok"]
    best = min(finite, key=lambda h: h["valid_ppl"]) if finite else None
    summary = {
        "status": status,
        "epochs": history[-1]["epoch"] if history else 0,
        "target_epochs": epochs,
        "valid_ppl": history[-1]["valid_ppl"] if history else None,
        "best_epoch": best["epoch"] if best else None,
        "best_valid_ppl": best["valid_ppl"] if best else None,
    }
    if status == "diverged" and history:
        summary["reason"] = history[-1].get("reason")
    return summary


def _prune_checkpoints(out: Path, history: list[dict]) -> None:
    """`--keep last`: keep only the last and the best epoch's checkpoints."""
    best = summarize(history, "ok", 0)["best_epoch"]
    last = history[-1]["epoch"]
    for epoch, path in list_checkpoints(out).items():
        if epoch not in (last, best):
            path.unlink()
