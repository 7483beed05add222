"""The QR method: a batch of tangent dynamics pushed through their Jacobians, re-orthonormalised,
and the logs of diag(R) accumulated; the result in both layouts, with the floor applied."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor

from lsh.errors import LshError

LAYOUTS = ("blocks", "sorted")
MIN_EXPONENT = -16.0  # nats per step: the floor of every per-step factor log r (see the package docstring)
LOG_BASES = ("e", 2)
DTYPES = {"float32": torch.float32, "float64": torch.float64}

Shape = tuple[int, ...]


def check_int(name: str, value: Any, low: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LshError(f"{name} = {value!r}: must be an integer >= {low}{' ' + extra if extra else ''}")


def check_choice(name: str, value: Any, allowed: tuple | dict) -> None:
    if value not in allowed or isinstance(value, bool):
        raise LshError(f"{name} = {value!r}: allowed are {', '.join(map(str, allowed))}")


# `key`: how an error names the option (the params' lyapunov.* keys by default; a library
# function's own argument names otherwise)


def check_floor(value: Any, key: str = "lyapunov.min_exponent") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1e4 <= value < 0:
        raise LshError(f"{key} = {value!r}: must be a negative number of nats per step (default {MIN_EXPONENT})")


def resolve_dtype(dtype: Union[str, torch.dtype], key: str = "lyapunov.dtype") -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise LshError(f"{key} = {dtype}: allowed are {', '.join(DTYPES)}")
        return dtype
    check_choice(key, dtype, tuple(DTYPES))
    return DTYPES[dtype]


def exponent_count(exponents: Optional[int], L: int, what: str, key: str = "lyapunov.exponents",
                   all_: str = "null") -> int:
    if exponents is None:
        return L
    if isinstance(exponents, bool) or not isinstance(exponents, int) or not 1 <= exponents <= L:
        raise LshError(f"{key} = {exponents!r}: the {what} state has {L} dimensions; "
                       f"allowed are 1..{L} or {all_} (all)")
    return exponents


def log_base(value: Any, key: str = "lyapunov.log_base") -> Union[str, int]:
    if value == "e":
        return "e"
    if value in (2, "2") and not isinstance(value, bool):
        return 2
    raise LshError(f"{key} = {value!r}: allowed are e, 2")


def row_scaled_sum(coef: Tensor, mats: Tensor, out: Tensor) -> Tensor:
    """sum_g diag(coef[..., g, :]) @ mats[g], into `out`, without any diagonal matrix.

    coef [..., G, R], mats [G, ..., R, C] (broadcast against coef's leading dims),
    out [..., R, C]. Scaling rows by broadcasting (a[:, None] * M) costs R*C per term;
    a dense diag(a) @ M would cost R*R*C.
    """
    torch.mul(coef[..., 0, :, None], mats[0], out=out)
    for g in range(1, coef.shape[-2]):
        out.addcmul_(coef[..., g, :, None], mats[g])
    return out


def signs_of(d: Tensor) -> Tensor:
    """diag(R) [..., k] -> the column signs [..., 1, k] that make it positive."""
    return torch.where(d < 0, -1.0, 1.0).to(d.dtype).unsqueeze(-2)


class Tangent:
    """A batch of K trajectories and their linearisation, as the QR loop uses it.

    The tangent space is split into `blocks` independent blocks of `block_size` rows each
    (one block unless a block-triangular structure is exploited); Q has shape
    [K, blocks, block_size, k]. A tangent with `dense` set also gives its Jacobian blocks
    as matrices (`jacobian`), which lets the loop apply a square Q in factored form.
    """

    samples: int
    blocks: int
    block_size: int
    dense: bool = False

    def advance(self, t: int) -> None:
        """Step t without a Jacobian (warm-up)."""
        raise NotImplementedError

    def jacobian(self, t: int) -> Tensor:
        """Step t, returning the Jacobian blocks [K, blocks, block_size, block_size] (dense tangents).

        May be a work array that the next call overwrites."""
        raise NotImplementedError

    def propagate(self, t: int, q: Tensor) -> Tensor:
        """Step t, returning J_t Q: q [K, blocks, block_size, k] -> same shape."""
        return torch.matmul(self.jacobian(t), q)

    def products(self, k: int) -> list[tuple[Shape, Shape]]:
        """The matrix products one `propagate` performs (operand shapes), for the benchmark floor.

        Dense tangents with k = block_size perform none: J Q is one ormqr (see qr_loop)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Spectrum:
    """One spectrum in both layouts, descending within each block (float64, the chosen log base).

    `clipped`: exponents, counted over the K samples, with at least one per-step factor at
    the floor; `blocks`: how many independent blocks (layers) the exponents come from.
    """

    layouts: dict[str, Tensor]
    clipped: int
    blocks: int

    def __getitem__(self, layout: str) -> Tensor:
        check_choice("lyapunov.layout", layout, LAYOUTS)
        if layout not in self.layouts:
            raise LshError(f"lyapunov.layout = {layout!r}: these exponents are the leading ones of {self.blocks} "
                           "blocks together, with no fixed number per block; use sorted")
        return self.layouts[layout]


def columns_per_block(blocks: int, block_size: int, k: int) -> int:
    """The columns of each block's Q for k exponents in all: k with one block; with several (the
    diagonal blocks of a block-triangular Jacobian) min(k, block size) each, since the k leading
    exponents of the union may all lie in any one block."""
    return k if blocks == 1 else min(k, block_size)


def _columns_per_block(tangent: Tangent, k: int, qr_every: int, min_exponent: float) -> int:
    """The loop's settings checked once, before the steps; the columns of each block's Q."""
    if not (isinstance(qr_every, int) and qr_every >= 1):
        raise LshError(f"lyapunov.qr_every = {qr_every!r}: must be an integer >= 1")
    check_floor(min_exponent)
    return columns_per_block(tangent.blocks, tangent.block_size, k)


def qr_loop(tangent: Tangent, warmup: int, steps: int, k: int, qr_every: int, dtype: torch.dtype,
            device: torch.device, min_exponent: float = MIN_EXPONENT) -> tuple[Tensor, Tensor]:
    """Per-sample exponents, unsorted, and which met the floor: ([K, m] float64 in natural log
    per step, [K, m] bool), m = k with one block.

    k is the total count; with several blocks each block gets min(k, block size) columns
    (`columns_per_block`), block by block, m = blocks x columns (`finish` keeps each sample's k
    largest). When the tangent gives dense Jacobians and Q is square, Q stays in the
    Householder form geqrf returns and J Q is one ormqr (J times the reflectors): the same product
    without forming Q (householder_product) and then multiplying, about 30 % fewer flops per step.
    Each QR's log r is floored at `min_exponent` per step it covers (see the module docstring).
    """
    k = _columns_per_block(tangent, k, qr_every, min_exponent)
    K, nb, Lb = tangent.samples, tangent.blocks, tangent.block_size
    factored = tangent.dense and k == Lb
    for t in range(warmup):
        tangent.advance(t)
    q = torch.eye(Lb, k, dtype=dtype, device=device).expand(K, nb, Lb, k).contiguous()
    h = tau = signs = None  # Q = householder_product(h, tau) * signs, when factored
    y = None  # J ... J Q since the last QR
    logs = torch.zeros(K, nb, k, dtype=torch.float64, device=device)
    floored = torch.zeros(K, nb, k, dtype=torch.bool, device=device)
    since = 0  # steps since the last QR
    for j in range(steps):
        t = warmup + j
        since += 1
        if not tangent.dense:
            y = tangent.propagate(t, q if y is None else y)
        elif y is not None:
            y = torch.matmul(tangent.jacobian(t), y)
        elif h is None:  # Q = I[:, :k]
            y = tangent.jacobian(t)[..., :k].clone()
        elif factored:
            y = torch.ormqr(h, tau, tangent.jacobian(t), left=False).mul_(signs)
        else:
            y = torch.matmul(tangent.jacobian(t), q)
        if (j + 1) % qr_every == 0 or j == steps - 1:
            h, tau = torch.geqrf(y)
            d = h.diagonal(dim1=-2, dim2=-1)  # [K, nb, k]: diag(R)
            log_r = d.abs().to(torch.float64).log()  # -inf where r = 0 (a dead direction)
            floor = since * min_exponent
            floored |= log_r < floor
            logs += log_r.clamp(min=floor)
            signs = signs_of(d)
            if not factored:
                q = torch.linalg.householder_product(h, tau).mul_(signs)
            y = None
            since = 0
    return logs.reshape(K, nb * k) / steps, floored.reshape(K, nb * k)


def finish(per_sample: Tensor, floored: Tensor, blocks: int, base: Union[str, int],
           count: Optional[int] = None) -> Spectrum:
    """Both layouts from per-sample exponents [K, m] (m / blocks per block, block by block): sort each
    sample (within each block for `blocks`), average over samples, convert the log base.

    `count` below m (blocks that each carry min(k, block size) columns for k exponents in all): each
    sample's `count` largest, sorted, then averaged; the layout `blocks` is then absent, as no fixed
    number of those exponents belongs to each block."""
    K, m = per_sample.shape
    count = m if count is None else count
    scale = 1 / math.log(2) if log_base(base) == 2 else 1.0
    layouts = {}
    if count == m:
        by_block = per_sample.view(K, blocks, m // blocks).sort(dim=-1, descending=True).values.reshape(K, m)
        layouts["blocks"] = by_block.mean(0) * scale
    layouts["sorted"] = per_sample.sort(dim=-1, descending=True).values[:, :count].mean(0) * scale
    return Spectrum(layouts, int(floored.sum()), blocks)
