"""One model's training loop: truncated BPTT with SGD, the NT-ASGD switch, validation, and the
per-epoch topology update of a sparse candidate, in that order (see the package docstring)."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from lsh.config import TrainConfig
from lsh.data import Corpus
from lsh.device import float32_precision
from lsh.errors import LshError
from lsh.files import finite_or_none
from lsh.models import LanguageModel, build_model
from lsh.training.averaging import Averager, swapped_in
from lsh.training.checkpoints import CHECKPOINT_FORMAT, rng_state, set_rng_state

if TYPE_CHECKING:
    from lsh.sparse import SparseTraining

log = logging.getLogger(__name__)

DIVERGENCE_CHECK_EVERY = 20  # batches


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
# The training run


class SGD:
    """Plain SGD with weight decay, by torch's own update (the functional `torch.optim.sgd.sgd`, the
    very step `torch.optim.SGD` takes without momentum). Building a `torch.optim.SGD` imports
    torch._dynamo, about 2 s in every job that trains; this keeps the same arithmetic without it.
    Plain SGD has no state: its state_dict is its settings."""

    def __init__(self, params: list[nn.Parameter], lr: float, weight_decay: float) -> None:
        self.params, self.lr, self.weight_decay = list(params), lr, weight_decay

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        params = [p for p in self.params if p.grad is not None]
        sgd(params, [p.grad for p in params], [None] * len(params), weight_decay=self.weight_decay, momentum=0.0,
            lr=self.lr, dampening=0.0, nesterov=False, maximize=False)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.weight_decay = state["lr"], state["weight_decay"]


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
        sparse: SparseTraining | None = None,
    ) -> None:
        self.model, self.cfg, self.device, self.sparse = model, cfg, device, sparse
        self.train_data = batchify(corpus.train, cfg.batch_size, device)
        valid = corpus.valid if cfg.eval_tokens is None else corpus.valid[: cfg.eval_tokens]
        self.valid_data = batchify(valid, cfg.eval_batch_size, device)
        self.test_ids = corpus.test
        self.optimizer = SGD(list(model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
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
        with float32_precision(self.cfg.tf32):
            return self._train_epoch(progress)

    def _train_epoch(self, progress: bool) -> tuple[float, float]:
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
            self.optimizer.zero_grad()
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
        which only shapes the next epoch. Float32 arithmetic on CUDA follows `train.tf32`.
        """
        with float32_precision(self.cfg.tf32):
            return self._run_epoch(progress)

    def _run_epoch(self, progress: bool) -> dict:
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
            "train_loss": finite_or_none(train_loss),
            "train_ppl": finite_or_none(perplexity(train_loss)),
            "valid_loss": finite_or_none(valid_loss),
            "valid_ppl": finite_or_none(perplexity(valid_loss)),
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
            "rng": rng_state(self.device),
        }
        if self.sparse is not None:
            state["masks"] = evaluated["masks"]
            state["next_masks"] = self.sparse.masks_state()
            state["sparse"] = self.sparse.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"] if state["weights"] is not None else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.averager.load_state_dict(state["averaging"], self.device)
        if self.sparse is not None:
            self.sparse.load_state_dict(state["sparse"], state["next_masks"])
        self.epoch, self.history, self.status = state["epoch"], list(state["history"]), state["status"]
        self.evaluated = {"model": state["model"], "masks": state.get("masks")}
        set_rng_state(state["rng"], self.device)

    def test_perplexity(self) -> float:
        """Test perplexity of the last epoch's model as it was validated (before any topology update)."""
        evaluated = self.evaluated if self.evaluated is not None else self.evaluated_state()
        model = build_model(self.model.config).to(self.device)
        model.load_state_dict(evaluated["model"])
        test = batchify(self.test_ids, self.cfg.eval_batch_size, self.device)
        with float32_precision(self.cfg.tf32):
            return perplexity(evaluate(model, test, self.cfg.bptt))


