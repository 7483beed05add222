"""Jacobians of any one-step transition by torch.func (jacrev, vectorised over the samples with vmap):
the generic path for new cell types, and the check of the analytic ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Union

import torch
from torch import Tensor

from lsh.errors import LshError
from lsh.lyapunov.qr import MIN_EXPONENT, Shape, Tangent, exponent_count, finish, qr_loop, resolve_dtype
from lsh.models import LSTMLanguageModel


class AutogradJacobian(Tangent):
    """Jacobians of any one-step transition by torch.func.jacrev, vectorised over samples with vmap.

    step(z [K, L], aux [K, ...], x [K, ...]) -> (z', aux'): z is the state the spectrum is
    of, aux any further state that advances but is held fixed in the Jacobian (the LSTM's c
    for state h; an empty [K, 0] when there is none). Each sample is differentiated alone,
    through a batch of one, so `step` may be written for batches. `blocks` > 1 keeps only the
    diagonal blocks of J (for block-triangular maps, as the analytic LSTM path does).
    """

    def __init__(self, step: Callable, z0: Tensor, aux0: Tensor, xs: Tensor, blocks: int = 1) -> None:
        self.step, self.z, self.aux, self.xs = step, z0, aux0, xs
        self.samples, L = z0.shape
        if L % blocks:
            raise LshError(f"{blocks} blocks do not divide the state size {L}")
        self.blocks, self.block_size = blocks, L // blocks
        self.dense = True

        def one(z: Tensor, aux: Tensor, x: Tensor):
            z2, aux2 = step(z[None], aux[None], x[None])
            return z2[0], (z2[0], aux2[0])

        self._jac = torch.func.vmap(torch.func.jacrev(one, has_aux=True))

    def check(self, t: int = 0) -> None:
        """Differentiate the first sample at step t once, advancing nothing: a step that torch.func
        cannot differentiate then fails here, before any work, not inside the QR loop."""
        self._jac(self.z[:1], self.aux[:1], self.xs[t][:1])

    def advance(self, t: int) -> None:
        self.z, self.aux = self.step(self.z, self.aux, self.xs[t])

    def jacobian(self, t: int) -> Tensor:
        J, (self.z, self.aux) = self._jac(self.z, self.aux, self.xs[t])  # J [K, L, L]
        K, nb, Lb = self.samples, self.blocks, self.block_size
        if nb > 1:  # diagonal blocks [K, nb, Lb, Lb]
            return J.view(K, nb, Lb, nb, Lb).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2).contiguous()
        return J.unsqueeze(1)

    def products(self, k: int) -> list[tuple[Shape, Shape]]:
        K, nb, Lb = self.samples, self.blocks, self.block_size
        return [] if k == Lb else [((K, nb, Lb, Lb), (K, nb, Lb, k))]


def lstm_flat_step(model: LSTMLanguageModel, state: str) -> Callable:
    """model.step on flat states: h [K, nH] (aux c [K, nH]) or hc [K, 2nH] (aux empty)."""
    n, H = model.config.layers, model.config.hidden

    def unflat(v: Tensor) -> Tensor:  # [K, nH] -> [n, K, H]
        return v.view(-1, n, H).transpose(0, 1)

    def flat(v: Tensor) -> Tensor:  # [n, K, H] -> [K, nH]
        return v.transpose(0, 1).reshape(-1, n * H)

    if state == "h":
        def step(z, aux, x):
            h, c = model.step((unflat(z), unflat(aux)), x)
            return flat(h), flat(c)
    else:
        def step(z, aux, x):
            h, c = model.step((unflat(z[:, : n * H]), unflat(z[:, n * H :])), x)
            return torch.cat([flat(h), flat(c)], dim=1), aux
    return step


def spectrum_of_map(
    step: Callable[[Tensor, Tensor], Tensor],
    h0: Tensor,
    inputs: Tensor,
    warmup: int = 0,
    exponents: Optional[int] = None,
    dtype: Optional[Union[str, torch.dtype]] = None,
    qr_every: int = 1,
    log_base: Union[str, int] = "e",
    min_exponent: float = MIN_EXPONENT,
) -> Tensor:
    """The Lyapunov spectrum [k] (descending, float64) of h_next = step(h, x), by autograd.

    h0 [K, L]: the K initial states; inputs [warmup + T, K, ...]: the first `warmup` only
    advance the state. `step` sees batches (a batch of one when differentiated). The entry
    point for tests and for new cell types. Runs on h0's device.
    """
    dt = h0.dtype if dtype is None else resolve_dtype(dtype)
    if h0.dim() != 2:
        raise LshError(f"h0 must be [samples, state], got shape {tuple(h0.shape)}")
    K, L = h0.shape
    k = exponent_count(exponents, L, "map's")
    steps = inputs.shape[0] - warmup
    if steps < 1 or inputs.shape[1] != K:
        raise LshError(f"inputs of shape {tuple(inputs.shape)} do not give {K} samples "
                       f"with steps after {warmup} warm-up")
    xs = inputs.to(dt) if inputs.is_floating_point() else inputs
    h0 = h0.to(dt)
    tangent = AutogradJacobian(lambda z, aux, x: (step(z, x), aux), h0, h0[:, :0], xs)
    with torch.no_grad():
        per_sample, floored = qr_loop(tangent, warmup, steps, k, qr_every, dt, h0.device, min_exponent)
    return finish(per_sample, floored, 1, log_base)["sorted"]


