"""The topology update of dynamic sparse training: which weights die, how many each layer
regrows, and where. Every strategy is a name -> function table (DEATH, REDISTRIBUTION,
GROWTH) whose keys are the params schema's choices; a test holds the two equal.

Counts are exact: a layer loses exactly ceil(rate x its non-zeros) (the global modes
that many in total), and regrows exactly what the redistribution gives it, so the
number of non-zeros never changes. Choices among equal scores are random (the run's
torch RNG), never by position.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

FILL_CAP = 0.99  # redistribution never fills a layer above this fraction
THRESHOLD_TOLERANCE = 0.02  # `threshold` death removes the intended count within 2 %


# -----------------------------------------------------------------------------
# Exact counts, random and top-k choices


def choose_random(candidates: Tensor, count: int) -> Tensor:
    """Exactly `count` positions where `candidates` is true, uniformly at random (the run's torch RNG)."""
    idx = candidates.flatten().nonzero().squeeze(1)
    pick = idx[torch.randperm(len(idx))[:count].to(idx.device)]
    out = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
    out[pick] = True
    return out.view_as(candidates)


def choose_top(scores: Tensor, candidates: Tensor, count: int, largest: bool = True) -> Tensor:
    """Exactly `count` candidate positions with the largest (or smallest) scores; ties broken at random."""
    idx = candidates.flatten().nonzero().squeeze(1)
    values = scores.flatten()[idx]
    shuffle = torch.randperm(len(idx)).to(idx.device)  # random order, then a stable sort: random ties only
    order = torch.argsort(values[shuffle], descending=largest, stable=True)
    pick = idx[shuffle[order[:count]]]
    out = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    out[pick] = True
    return out.view_as(scores)


def largest_remainder(total: int, shares: dict[str, float]) -> dict[str, int]:
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
# Death (prune): which active weights to remove, per layer


def _per_layer_count(mask: Tensor, rate: float) -> int:
    return math.ceil(rate * int(mask.sum()))


def death_magnitude(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """Each layer removes its ceil(rate * nnz) active weights of smallest |w|."""
    return {n: choose_top(w.abs(), masks[n], _per_layer_count(masks[n], rate), largest=False)
            for n, w in weights.items()}


def death_set(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """SET: half from the smallest positive weights, half from the negative weights closest to zero."""
    out = {}
    for n, w in weights.items():
        k = _per_layer_count(masks[n], rate)
        positive, negative = masks[n] & (w >= 0), masks[n] & (w < 0)
        k_pos = min((k + 1) // 2, int(positive.sum()))
        k_neg = min(k - k_pos, int(negative.sum()))
        k_pos = k - k_neg  # a side with too few weights leaves the rest to the other
        out[n] = choose_top(w, positive, k_pos, largest=False) | choose_top(w, negative, k_neg, largest=True)
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
            out[n] = choose_top(w.abs(), masks[n], k, largest=False)
        else:
            out[n] = masks[n] & (w.abs() < found)
    return out


def death_global_magnitude(weights: dict[str, Tensor], masks: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
    """One |w| threshold across all layers: the ceil(rate * total nnz) smallest active weights go."""
    names = list(weights)
    flat = torch.cat([weights[n].abs().flatten() for n in names])
    active = torch.cat([masks[n].flatten() for n in names])
    chosen = choose_top(flat, active, math.ceil(rate * int(active.sum())), largest=False)
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = chosen[start : start + size].view_as(masks[n])
        start += size
    return out


DEATH: dict[str, Callable[[dict[str, Tensor], dict[str, Tensor], float], dict[str, Tensor]]] = {
    "magnitude": death_magnitude,
    "SET": death_set,
    "threshold": death_threshold,
    "global_magnitude": death_global_magnitude,
}


# -----------------------------------------------------------------------------
# Redistribution: each layer's share of the regrowth, measured before pruning


def _mean_abs(x: Tensor, mask: Tensor) -> float:
    n = int(mask.sum())
    return float(x.abs()[mask].sum()) / n if n else 0.0


Shares = dict[str, float]


def shares_magnitude(weights: dict[str, Tensor], masks: dict[str, Tensor],
                     momentum: dict[str, Tensor] | None) -> Shares:
    """In proportion to each layer's mean |w| over its active weights."""
    return {n: _mean_abs(w, masks[n]) for n, w in weights.items()}


def shares_nonzeros(weights: dict[str, Tensor], masks: dict[str, Tensor], momentum: dict[str, Tensor] | None) -> Shares:
    """In proportion to each layer's count of active weights."""
    return {n: float(m.sum()) for n, m in masks.items()}


def shares_momentum(weights: dict[str, Tensor], masks: dict[str, Tensor], momentum: dict[str, Tensor] | None) -> Shares:
    """In proportion to each layer's mean |momentum| over its active weights."""
    return {n: _mean_abs(momentum[n], masks[n]) for n in masks}


# sparse.redistribution -> each layer's share of the regrowth (None: every layer regrows what it lost)
REDISTRIBUTION: dict[str, Callable[..., Shares] | None] = {
    "none": None,
    "magnitude": shares_magnitude,
    "nonzeros": shares_nonzeros,
    "momentum": shares_momentum,
}


def redistribution_shares(
    mode: str, weights: dict[str, Tensor], masks: dict[str, Tensor], momentum: dict[str, Tensor] | None
) -> Shares | None:
    """Each layer's share of the regrowth, measured before pruning as Selfish-RNN does. Measured
    after pruning, `magnitude` would see only the larger survivors and `nonzeros` with
    `global_magnitude` death the layers' uneven losses."""
    if mode not in REDISTRIBUTION:
        raise ValueError(f"sparse.redistribution {mode!r}: allowed are {', '.join(REDISTRIBUTION)}")
    shares = REDISTRIBUTION[mode]
    return None if shares is None else shares(weights, masks, momentum)


def regrowth_counts(removed: dict[str, int], shares: dict[str, float] | None,
                    masks: dict[str, Tensor]) -> dict[str, int]:
    """Per-layer regrowth summing exactly to the number removed, split by `shares` (None: each layer
    regrows what it lost); no layer above 99 % full (`masks`: after pruning)."""
    total = sum(removed.values())
    capacity = {n: max(0, math.floor(FILL_CAP * m.numel()) - int(m.sum())) for n, m in masks.items()}
    counts = dict(removed) if shares is None else largest_remainder(total, shares)
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
        for n, extra in largest_remainder(excess, free).items():
            counts[n] += extra



# -----------------------------------------------------------------------------
# Growth: which inactive positions each layer regrows


def grow_random(inactive: Tensor, count: int, grad: Tensor | None, momentum: Tensor | None) -> Tensor:
    """Uniformly among the inactive positions."""
    return choose_random(inactive, count)


def grow_momentum(inactive: Tensor, count: int, grad: Tensor | None, momentum: Tensor | None) -> Tensor:
    """The largest |momentum| (SNFS)."""
    return choose_top(momentum.abs(), inactive, count)


def grow_gradient(inactive: Tensor, count: int, grad: Tensor | None, momentum: Tensor | None) -> Tensor:
    """The largest |gradient| (RigL)."""
    score = grad.abs() if grad is not None else torch.zeros_like(inactive, dtype=torch.float32)
    return choose_top(score, inactive, count)


GROWTH: dict[str, Callable[[Tensor, int, Tensor | None, Tensor | None], Tensor]] = {
    "random": grow_random,
    "momentum": grow_momentum,
    "gradient": grow_gradient,
}


def grow(mode: str, inactive: Tensor, count: int, grad: Tensor | None, momentum: Tensor | None) -> Tensor:
    """Exactly `count` positions among the inactive ones, by the growth mode."""
    if mode not in GROWTH:
        raise ValueError(f"sparse.growth {mode!r}: allowed are {', '.join(GROWTH)}")
    return GROWTH[mode](inactive, count, grad, momentum)
