"""Sparse initialisation: each layer's count of kept weights, then their positions. INIT maps
the params' `sparse.init` to a function (model, counts by ER or uniform, corpus) -> masks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsh.data import Corpus
from lsh.models import LanguageModel
from lsh.sparse.topology import choose_random, choose_top

# The `jacobian` init's data (seed paper 003, section 3): one minibatch of 64 training sequences,
# ||J 1||^2 over the last 4 steps. The sequence length is the usual BPTT window.
JACOBIAN_BATCH, JACOBIAN_STEPS, JACOBIAN_HORIZON = 64, 35, 4


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
    return {n: choose_random(torch.ones_like(w, dtype=torch.bool), counts[n]) for n, w in weights.items()}


def jacobian_sensitivity(model: LanguageModel, tokens: Tensor, approx_tokens: Tensor,
                         horizon: int) -> dict[str, Tensor]:
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

        def step_h(h: Tensor, rebuild=rebuild, x=x) -> Tensor:  # bound now: called within this iteration
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
    chosen = choose_top(flat, torch.ones_like(flat, dtype=torch.bool), sum(counts[n] for n in seen))
    start = 0
    for n in seen:
        size = weights[n].numel()
        masks[n] = chosen[start : start + size].view_as(weights[n])
        start += size
    return {n: masks[n] for n in weights}


def uniform_masks(model: LanguageModel, counts: dict[str, int], corpus: Corpus) -> dict[str, Tensor]:
    """Each layer's count at random positions."""
    return random_masks({n: p.detach() for n, p in model.sparsifiable_weights().items()}, counts)


# sparse.init -> (the per-layer counts, the masks given the counts)
INIT: dict[str, tuple[Callable[[dict[str, torch.Size], float], dict[str, int]],
                      Callable[[LanguageModel, dict[str, int], Corpus], dict[str, Tensor]]]] = {
    "uniform": (uniform_counts, uniform_masks),
    "ER": (er_counts, uniform_masks),
    "jacobian": (uniform_counts, jacobian_masks),
}


def initial_masks(model: LanguageModel, init: str, density: float, corpus: Corpus) -> dict[str, Tensor]:
    """The masks a candidate starts from: `init`'s counts at `density`, then its positions."""
    if init not in INIT:
        raise ValueError(f"sparse.init {init!r}: allowed are {', '.join(INIT)}")
    count, place = INIT[init]
    counts = count({n: p.shape for n, p in model.sparsifiable_weights().items()}, density)
    return place(model, counts, corpus)
