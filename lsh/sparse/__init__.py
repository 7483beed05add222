"""Dynamic sparse training: the pruning methods the hyperpruning search chooses between.

Every weight matrix (not the biases) carries a 0/1 mask, keyed by parameter name; a
tied decoder shares the embedding's. Weights are multiplied by their masks after every
optimizer step, so pruned weights are exactly zero at all times. Once an epoch, after
validation, the topology changes (Selfish-RNN): each layer prunes by the `death` mode at
the current death rate, the same number is regrown by the `growth` mode, shared between
layers by the `redistribution` mode, so the number of non-zeros never changes. The death
rate decays by a cosine to 0.005 over the full training length. With NT-ASGD active, the
running average of a regrown weight restarts (SNT-ASGD).

    init.py       the initial masks (INIT: uniform, ER, jacobian)
    topology.py   death, redistribution and growth (DEATH, REDISTRIBUTION, GROWTH)
    here          the training hook that applies them (SparseTraining)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lsh.config import SparseConfig
from lsh.data import Corpus
from lsh.models import LanguageModel
from lsh.sparse.init import INIT, initial_masks
from lsh.sparse.topology import DEATH, GROWTH, REDISTRIBUTION, grow, redistribution_shares, regrowth_counts

DEATH_RATE_FLOOR = 0.005  # the cosine decay ends here
MOMENTUM_BETA = 0.9  # gradient momentum tracked for the momentum modes (training itself uses plain SGD)

__all__ = ["SparseTraining", "from_config", "INIT", "DEATH", "GROWTH", "REDISTRIBUTION", "SparseConfig"]


def death_function(name: str):
    if name not in DEATH:
        raise ValueError(f"sparse.death {name!r}: allowed are {', '.join(DEATH)}")
    return DEATH[name]


class SparseTraining:
    """Masks and topology updates of one model, called by lsh.training.Trainer.

    after_step: mask the weights (and track momentum when a mode needs it), every batch;
    end_of_epoch: prune and regrow, then restart the averages of regrown weights.
    """

    def __init__(self, model: LanguageModel, cfg: SparseConfig, masks: dict[str, Tensor]) -> None:
        self.cfg = cfg
        self.weights = model.sparsifiable_weights()
        self.masks = masks
        self.target = sum(int(m.sum()) for m in masks.values())
        self.step = 0
        self.total_steps = 1
        self.track_momentum = "momentum" in (cfg.growth, cfg.redistribution)
        self.momentum = {n: torch.zeros_like(w) for n, w in self.weights.items()} if self.track_momentum else None
        self._refresh()
        self.apply()

    def _refresh(self) -> None:
        self._float_masks = [self.masks[n].to(w.dtype) for n, w in self.weights.items()]
        self._params = list(self.weights.values())

    @torch.no_grad()
    def apply(self) -> None:
        torch._foreach_mul_(self._params, self._float_masks)

    def set_schedule(self, batches_per_epoch: int) -> None:
        """The decay runs over the full training length (sparse.decay_epochs), also in short runs."""
        self.total_steps = max(1, batches_per_epoch * self.cfg.decay_epochs)

    @property
    def death_rate(self) -> float:
        """Cosine annealing from the initial rate to 0.005, stepped per mini-batch."""
        progress = min(self.step, self.total_steps) / self.total_steps
        return DEATH_RATE_FLOOR + 0.5 * (self.cfg.death_rate - DEATH_RATE_FLOOR) * (1 + math.cos(math.pi * progress))

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: Any) -> None:
        self.step += 1
        if self.track_momentum:
            for n, w in self.weights.items():
                if w.grad is not None:
                    self.momentum[n].mul_(MOMENTUM_BETA).add_(w.grad)
        self.apply()

    def nonzeros(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    @torch.no_grad()
    def end_of_epoch(self, model: nn.Module, optimizer: Any, averager: Any) -> dict:
        """Prune and regrow (not after the last step of the full training); returns the epoch's sparse stats."""
        rate = self.death_rate
        if self.step >= self.total_steps:
            return {"nonzeros": self.nonzeros(), "pruned": 0, "regrown": 0, "death_rate": rate}
        weights = {n: w.detach() for n, w in self.weights.items()}
        shares = redistribution_shares(self.cfg.redistribution, weights, self.masks, self.momentum)
        removed = death_function(self.cfg.death)(weights, self.masks, rate)
        for n, r in removed.items():
            self.masks[n] = self.masks[n] & ~r
        self._refresh()
        self.apply()  # pruned weights are zero now, so one regrown at once starts from zero too
        counts = regrowth_counts({n: int(r.sum()) for n, r in removed.items()}, shares, self.masks)
        for n, w in self.weights.items():
            grown = grow(self.cfg.growth, ~self.masks[n], counts[n], w.grad,
                         self.momentum[n] if self.momentum else None)
            self.masks[n] = self.masks[n] | grown
            if averager.active:
                averager.restart(n, grown)
                averager.mask(n, self.masks[n].to(w.dtype))
            if self.momentum is not None:
                self.momentum[n] *= self.masks[n]
        self._refresh()
        pruned = sum(int(r.sum()) for r in removed.values())
        return {"nonzeros": self.nonzeros(), "pruned": pruned, "regrown": sum(counts.values()), "death_rate": rate}

    def masks_state(self) -> dict[str, Tensor]:
        return {n: m.clone() for n, m in self.masks.items()}

    def state_dict(self) -> dict:
        return {"step": self.step, "total_steps": self.total_steps, "target": self.target, "momentum": self.momentum}

    def load_state_dict(self, state: dict, masks: dict[str, Tensor]) -> None:
        device = next(iter(self.weights.values())).device
        self.masks = {n: m.to(device) for n, m in masks.items()}
        self.step, self.total_steps, self.target = state["step"], state["total_steps"], state["target"]
        if state["momentum"] is not None:
            self.momentum = {n: m.to(device) for n, m in state["momentum"].items()}
        self._refresh()


def from_config(model: LanguageModel, cfg: SparseConfig | None, corpus: Corpus) -> SparseTraining | None:
    """The sparse-training hook of a candidate, its initial masks applied; None for a dense model
    (no section, or density 1). `cfg.decay_epochs` must be resolved (config.Params does it)."""
    if cfg is None or cfg.density >= 1.0:
        return None
    return SparseTraining(model, cfg, initial_masks(model, cfg.init, cfg.density, corpus))
