"""Dynamic sparse training: the pruning methods the hyperpruning search chooses between.

Every weight matrix (not the biases) carries a 0/1 mask, keyed by parameter name; a
tied decoder shares the embedding's. Weights are multiplied by their masks after every
optimizer step, so pruned weights are exactly zero at all times. Once an epoch the
topology changes (Selfish-RNN): each layer prunes by the `death` mode at the current
death rate, the same number is regrown by the `growth` mode, shared between layers by
the `redistribution` mode, so the number of non-zeros never changes. The death rate
decays by a cosine to 0.005 over the full training length. With NT-ASGD active, the
running average of a regrown weight restarts (SNT-ASGD).

Every strategy lives in a name -> function table; unknown names are refused by the
params schema before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lsh.data import Corpus
from lsh.models import LanguageModel

DEATH_RATE_FLOOR = 0.005  # the cosine decay ends here
FILL_CAP = 0.99  # redistribution never fills a layer above this fraction
MOMENTUM_BETA = 0.9  # gradient momentum tracked for the momentum modes (training itself uses plain SGD)
THRESHOLD_TOLERANCE = 0.02  # `threshold` death removes the intended count within 2 %
# The `jacobian` init's data (seed paper 003, section 3): one minibatch of 64 training sequences,
# ||J 1||^2 over the last 4 steps. The sequence length is the usual BPTT window.
JACOBIAN_BATCH, JACOBIAN_STEPS, JACOBIAN_HORIZON = 64, 35, 4


@dataclass(frozen=True)
class SparseConfig:
    density: float
    init: str
    death: str
    growth: str
    redistribution: str
    death_rate: float
    decay_epochs: int | None = None  # the full training length; None: final.epochs (set by the trainer)


# -----------------------------------------------------------------------------
# Helpers: exact counts, random and top-k choices


def _choose_random(candidates: Tensor, count: int) -> Tensor:
    """Exactly `count` positions where `candidates` is true, uniformly at random (the run's torch RNG)."""
    idx = candidates.flatten().nonzero().squeeze(1)
    pick = idx[torch.randperm(len(idx))[:count].to(idx.device)]
    out = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
    out[pick] = True
    return out.view_as(candidates)


def _choose_top(scores: Tensor, candidates: Tensor, count: int, largest: bool = True) -> Tensor:
    """Exactly `count` candidate positions with the largest (or smallest) scores; ties broken at random."""
    idx = candidates.flatten().nonzero().squeeze(1)
    values = scores.flatten()[idx]
    shuffle = torch.randperm(len(idx)).to(idx.device)  # random order, then a stable sort: random ties only
    order = torch.argsort(values[shuffle], descending=largest, stable=True)
    pick = idx[shuffle[order[:count]]]
    out = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    out[pick] = True
    return out.view_as(scores)


def _largest_remainder(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split an integer total in proportion to `shares`, exactly (largest remainder, ties by name)."""
    names = sorted(shares)
    weight = sum(shares.values())
    if weight <= 0:
        shares, weight = {n: 1.0 for n in names}, float(len(names))
    raw = {n: total * shares[n] / weight for n in names}
    out = {n: math.floor(raw[n]) for n in names}
    rest = total - sum(out.values())
    for n in sorted(names, key=lambda n: (-(raw[n] - out[n]), n))[:rest]:
        out[n] += 1
    return out


# -----------------------------------------------------------------------------
# Sparse initialisation: per-layer counts, then positions


def uniform_counts(shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
    """Every layer keeps the same fraction of its entries."""
    return {n: round(density * math.prod(s)) for n, s in shapes.items()}


def er_counts(shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
    """Erdos-Renyi: layer density eps * (rows + cols) / (rows * cols), eps set by the total; a layer that
    would exceed 1 is kept dense and the excess goes to the others."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    target = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        budget = target - sum(sizes[n] for n in dense)
        eps = budget / sum(shapes[n][0] + shapes[n][1] for n in free)
        prob = {n: eps * (shapes[n][0] + shapes[n][1]) / sizes[n] for n in free}
        over = {n for n, p in prob.items() if p > 1}
        if not over:
            break
        dense |= over
    counts = {n: sizes[n] for n in dense}
    counts.update({n: round(prob[n] * sizes[n]) for n in free})
    return counts


def random_masks(weights: dict[str, Tensor], counts: dict[str, int]) -> dict[str, Tensor]:
    return {n: _choose_random(torch.ones_like(w, dtype=torch.bool), counts[n]) for n, w in weights.items()}


def jacobian_sensitivity(model: LanguageModel, tokens: Tensor, approx_tokens: Tensor, horizon: int) -> dict[str, Tensor]:
    """Normalised Jacobian-spectrum sensitivity of every sparsifiable weight (Jacobian-spectrum pruning, Alg. 1).

    d_n = sum over the last `horizon` steps u of |d ||J_{S-u} 1||^2 / d theta_n|, divided by
    |gamma_n|, the gradient of the summed hidden states over an approximate sequence. J is the
    state Jacobian d h_t / d h_{t-1} of `model.step` (the LSTM's c held fixed). tokens: [S, B].
    """
    weights = model.sparsifiable_weights()
    names, params = list(weights), list(weights.values())
    was_training = model.training
    model.eval()

    def split(state: Any) -> tuple[Tensor, Callable[[Tensor], Any]]:
        if isinstance(state, tuple):  # LSTM: (h, c); c is held fixed
            return state[0], lambda h: (h, state[1])
        return state, lambda h: h

    def first(state: Any) -> Tensor:
        return state[0] if isinstance(state, tuple) else state

    S = tokens.size(0)
    states = [model.init_state(tokens.size(1))]  # states[t]: after tokens 0..t-1
    with torch.no_grad():
        for t in range(S - 1):
            states.append(model.step(states[-1], model.embed(tokens[t])))
    delta = [torch.zeros_like(p) for p in params]
    for u in range(1, horizon + 1):
        h_prev, rebuild = split(states[S - u])  # J_{S-u}: the step that reads token S-u
        x = model.embed(tokens[S - u])

        def step_h(h: Tensor) -> Tensor:
            return first(model.step(rebuild(h), x))

        _, jv = torch.autograd.functional.jvp(step_h, h_prev, torch.ones_like(h_prev), create_graph=True)
        chi = (jv**2).sum() / tokens.size(1)
        for d, g in zip(delta, torch.autograd.grad(chi, params, allow_unused=True)):
            if g is not None:
                d += g.abs()

    state, total = model.init_state(approx_tokens.size(1)), 0.0
    for t in range(approx_tokens.size(0)):
        state = model.step(state, model.embed(approx_tokens[t]))
        total = total + first(state).sum()
    gamma = torch.autograd.grad(total / approx_tokens.size(1), params, allow_unused=True)
    model.train(was_training)
    scores = {}
    for name, d, g in zip(names, delta, gamma):
        scale = g.abs() if g is not None else torch.zeros_like(d)
        scores[name] = torch.where(scale > 0, d / scale.clamp(min=1e-30), torch.zeros_like(d)).detach()
    return scores


def jacobian_masks(model: LanguageModel, counts: dict[str, int], corpus: Corpus) -> dict[str, Tensor]:
    """Seed paper 003's criterion: one global top-K of the normalised sensitivity over the weights the
    state Jacobian sees (the recurrent cell's matrices), K being their share of the budget.

    The embedding and the decoder keep their uniform share, at random: the decoder does not enter
    the state Jacobian at all, and the embedding only through the rows of the few tokens in the
    scored steps (at most 64 x 4 of the vocabulary), so a global top-K would all but empty both.
    The sequences start at random offsets of the training split (the run's torch RNG).
    """
    device = next(model.parameters()).device
    weights = model.sparsifiable_weights()
    seen = [n for n in weights if n in model.recurrent_weights()]
    starts = torch.randint(len(corpus.train) - JACOBIAN_STEPS, (JACOBIAN_BATCH,))
    ids = torch.from_numpy(np.ascontiguousarray(corpus.train))
    tokens = torch.stack([ids[o : o + JACOBIAN_STEPS] for o in starts.tolist()], dim=1).to(device)  # [S, B]
    approx = torch.randint(corpus.vocab_size, tokens.shape).to(device)
    scores = jacobian_sensitivity(model, tokens, approx, JACOBIAN_HORIZON)
    masks = random_masks({n: w for n, w in weights.items() if n not in seen}, counts)
    flat = torch.cat([scores[n].flatten() for n in seen])
    chosen = _choose_top(flat, torch.ones_like(flat, dtype=torch.bool), sum(counts[n] for n in seen))
    start = 0
    for n in seen:
        size = weights[n].numel()
        masks[n] = chosen[start : start + size].view_as(weights[n])
        start += size
    return {n: masks[n] for n in weights}


def initial_masks(model: LanguageModel, cfg: SparseConfig, corpus: Corpus) -> dict[str, Tensor]:
    weights = {n: p.detach() for n, p in model.sparsifiable_weights().items()}
    shapes = {n: w.shape for n, w in weights.items()}
    counts = er_counts(shapes, cfg.density) if cfg.init == "ER" else uniform_counts(shapes, cfg.density)
    if cfg.init == "jacobian":
        return jacobian_masks(model, counts, corpus)
    return random_masks(weights, counts)


INIT = ("uniform", "ER", "jacobian")


# -----------------------------------------------------------------------------
# Death (prune): which active weights to remove, per layer


def _per_layer_count(mask: Tensor, rate: float) -> int:
    return math.ceil(rate * int(mask.sum()))


def death_magnitude(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """Each layer removes its ceil(rate * nnz) active weights of smallest |w|."""
    return {n: _choose_top(w.abs(), masks[n], _per_layer_count(masks[n], rate), largest=False) for n, w in weights.items()}


def death_set(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """SET: half from the smallest positive weights, half from the negative weights closest to zero."""
    out = {}
    for n, w in weights.items():
        k = _per_layer_count(masks[n], rate)
        positive, negative = masks[n] & (w >= 0), masks[n] & (w < 0)
        k_pos = min((k + 1) // 2, int(positive.sum()))
        k_neg = min(k - k_pos, int(negative.sum()))
        k_pos = k - k_neg  # a side with too few weights leaves the rest to the other
        out[n] = _choose_top(w, positive, k_pos, largest=False) | _choose_top(w, negative, k_neg, largest=True)
    return out


def death_threshold(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """Remove active weights with |w| below a threshold adapted toward the intended count: doubled or
    halved until the count is bracketed, then bisected until within 2 % (the reference code's version
    barely pruned). If ties make that impossible, the exact magnitude choice is used."""
    out = {}
    for n, w in weights.items():
        active = w.abs()[masks[n]]
        k = _per_layer_count(masks[n], rate)
        tolerance = max(0, math.floor(THRESHOLD_TOLERANCE * k))
        threshold = float(active.mean()) * rate if len(active) else 0.0
        low, high, found = 0.0, math.inf, None
        for _ in range(100):
            count = int((active < threshold).sum())
            if abs(count - k) <= tolerance:
                found = threshold
                break
            if count < k:
                low = threshold
                threshold = threshold * 2 if math.isinf(high) else (low + high) / 2
            else:
                high = threshold
                threshold = (low + high) / 2
        if found is None:
            out[n] = _choose_top(w.abs(), masks[n], k, largest=False)
        else:
            out[n] = masks[n] & (w.abs() < found)
    return out


def death_global_magnitude(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """One |w| threshold across all layers: the ceil(rate * total nnz) smallest active weights go."""
    names = list(weights)
    flat = torch.cat([weights[n].abs().flatten() for n in names])
    active = torch.cat([masks[n].flatten() for n in names])
    chosen = _choose_top(flat, active, math.ceil(rate * int(active.sum())), largest=False)
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = chosen[start : start + size].view_as(masks[n])
        start += size
    return out


DEATH: dict[str, Callable[[dict, dict, float], dict]] = {
    "magnitude": death_magnitude,
    "SET": death_set,
    "threshold": death_threshold,
    "global_magnitude": death_global_magnitude,
}


# -----------------------------------------------------------------------------
# Redistribution: how many each layer regrows (exactly the total pruned, 99 % cap)


def _mean_abs(x: Tensor, mask: Tensor) -> float:
    n = int(mask.sum())
    return float(x.abs()[mask].sum()) / n if n else 0.0


def redistribution_shares(
    mode: str, weights: dict[str, Tensor], masks: dict[str, Tensor], momentum: dict[str, Tensor] | None
) -> dict[str, float] | None:
    """Each layer's share of the regrowth, measured before pruning as Selfish-RNN does (None: `none`,
    every layer regrows what it lost). Measured after pruning, `magnitude` would see only the larger
    survivors and `nonzeros` with `global_magnitude` death the layers' uneven losses."""
    if mode == "none":
        return None
    if mode == "magnitude":
        return {n: _mean_abs(w, masks[n]) for n, w in weights.items()}
    if mode == "nonzeros":
        return {n: float(m.sum()) for n, m in masks.items()}
    if mode == "momentum":
        return {n: _mean_abs(momentum[n], masks[n]) for n in masks}
    raise ValueError(f"sparse.redistribution {mode!r}: allowed are {', '.join(REDISTRIBUTION)}")


def regrowth_counts(removed: dict[str, int], shares: dict[str, float] | None, masks: dict[str, Tensor]) -> dict[str, int]:
    """Per-layer regrowth summing exactly to the number removed, split by `shares` (None: each layer
    regrows what it lost); no layer above 99 % full (`masks`: after pruning)."""
    total = sum(removed.values())
    capacity = {n: max(0, math.floor(FILL_CAP * m.numel()) - int(m.sum())) for n, m in masks.items()}
    counts = dict(removed) if shares is None else _largest_remainder(total, shares)
    full: set[str] = set()
    while True:
        excess = sum(max(0, counts[n] - capacity[n]) for n in counts)
        if excess == 0:
            return counts
        for n in counts:
            if counts[n] >= capacity[n]:
                counts[n] = capacity[n]
                full.add(n)
        free = {n: (shares[n] if shares else float(removed[n]) or 1.0) for n in counts if n not in full}
        if not free:
            raise RuntimeError(f"no layer can take {excess} more weights: density too close to 1")
        for n, extra in _largest_remainder(excess, free).items():
            counts[n] += extra


REDISTRIBUTION = ("none", "magnitude", "nonzeros", "momentum")


# -----------------------------------------------------------------------------
# Growth: which inactive positions each layer regrows


def grow(mode: str, inactive: Tensor, count: int, grad: Tensor | None, momentum: Tensor | None) -> Tensor:
    """Exactly `count` positions among the inactive ones."""
    if mode == "random":
        return _choose_random(inactive, count)
    if mode == "momentum":
        return _choose_top(momentum.abs(), inactive, count)
    if mode == "gradient":
        score = grad.abs() if grad is not None else torch.zeros_like(inactive, dtype=torch.float32)
        return _choose_top(score, inactive, count)
    raise ValueError(f"sparse.growth {mode!r}: allowed are {', '.join(GROWTH)}")


GROWTH = ("random", "momentum", "gradient")


# -----------------------------------------------------------------------------
# The training hook


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

    def set_schedule(self, batches_per_epoch: int, final_epochs: int) -> None:
        """The decay runs over the full training length (sparse.decay_epochs, else final.epochs), also in short runs."""
        self.total_steps = max(1, batches_per_epoch * (self.cfg.decay_epochs or final_epochs))

    @property
    def death_rate(self) -> float:
        """Cosine annealing from the initial rate to 0.005, stepped per mini-batch."""
        progress = min(self.step, self.total_steps) / self.total_steps
        return DEATH_RATE_FLOOR + 0.5 * (self.cfg.death_rate - DEATH_RATE_FLOOR) * (1 + math.cos(math.pi * progress))

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.step += 1
        if self.track_momentum:
            for n, w in self.weights.items():
                if w.grad is not None:
                    self.momentum[n].mul_(MOMENTUM_BETA).add_(w.grad)
        self.apply()

    def nonzeros(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    @torch.no_grad()
    def end_of_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, averager: Any) -> dict:
        """Prune and regrow (not after the last step of the full training); returns the epoch's sparse stats."""
        rate = self.death_rate
        if self.step >= self.total_steps:
            return {"nonzeros": self.nonzeros(), "pruned": 0, "regrown": 0, "death_rate": rate}
        weights = {n: w.detach() for n, w in self.weights.items()}
        shares = redistribution_shares(self.cfg.redistribution, weights, self.masks, self.momentum)
        removed = DEATH[self.cfg.death](weights, self.masks, rate)
        for n, r in removed.items():
            self.masks[n] = self.masks[n] & ~r
        self._refresh()
        self.apply()  # pruned weights are zero now, so one regrown at once starts from zero too
        counts = regrowth_counts({n: int(r.sum()) for n, r in removed.items()}, shares, self.masks)
        for n, w in self.weights.items():
            grown = grow(self.cfg.growth, ~self.masks[n], counts[n], w.grad, self.momentum[n] if self.momentum else None)
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


def sparse_config(params: dict) -> SparseConfig | None:
    section = params.get("sparse")
    if not section or section["density"] >= 1.0:
        return None
    return SparseConfig(**section)


def from_params(model: LanguageModel, params: dict, corpus: Corpus, device: torch.device) -> SparseTraining | None:
    """The sparse-training hook the params describe, with its initial masks applied; None for a dense model."""
    cfg = sparse_config(params)
    if cfg is None:
        return None
    return SparseTraining(model, cfg, initial_masks(model, cfg, corpus))
