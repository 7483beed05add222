"""
Lyapunov spectra of the recurrent models by the QR method (paper section 3; Vogt et al. 2022).

K sample sequences advance together as one batch, from the zero state. Warm-up steps only
advance the state. Then at every step an orthonormal basis Q (L x k, starting as the first k
columns of the identity) is pushed through the step Jacobian J and re-orthonormalised:

    Q, R = qr(J Q),  signs flipped so that diag(R) > 0,  log diag(R) accumulated.

With `qr_every` m > 1, Q goes through m Jacobians before one QR; diag(R) of that QR is the
product of the m per-step diagonals (R's of a QR of a product multiply), so the result is
the same up to rounding. The exponents of one sample are its accumulated logs divided by
the number of steps T, sorted in descending order; the spectrum is the mean of the K
samples' sorted spectra (eq. 1 of the paper averages by QR column; the two agree once the
columns are ordered). Natural log per step by default; log_base 2 gives the reference
code's unit.

Layouts. With per-layer blocks (below) each exponent belongs to a layer. `layout: blocks`
(the default, as the reference code compares spectra) keeps that: each layer's exponents
sorted within the layer, layers in order. `layout: sorted` sorts all exponents into one
vector. Both are computed from the same run (`Spectrum.layouts`); with one block (an RHN,
a one-layer LSTM, the full Jacobian) they are the same vector.

The floor. A saturated unit (all its gates at exactly 0 or 1) gives a zero row of J and
r = 0: a direction contracted to nothing, log r = -inf. Every per-step factor is floored
at `min_exponent` nats (default -16, about float32's resolution: e^-16 ~ 1e-7), in every
dtype, so that one dead unit costs the same in float32 and float64 and cannot place a
model orders of magnitude away from every other; a direction dead at every step reads
exactly `min_exponent`. How many exponents met the floor is recorded (`clipped`).

Jacobians (J is always the Jacobian d state' / d state, applied as J Q; the reference code
used the transpose for the LSTM):

- analytic, stacked LSTM (`LSTMJacobian`, the one place it lives). State `h`: the h of all
  layers, with the previous c held fixed (supplement B.1, the paper's choice); state `hc`:
  the full (h, c), the LSTM's true state. Every block is a sum of weight matrices whose rows
  are scaled by gate derivatives, built by broadcasting (a[:, None] * U), never as dense
  diagonal matrices.
- analytic, RHN (`RHNJacobian`): the product of the micro-step Jacobians (coupled carry
  gate), applied to Q one micro-step at a time.
- autograd (`AutogradJacobian`): torch.func.jacrev vectorised over the K samples with vmap,
  for any model with a one-step transition; `spectrum_of_map` exposes it for any step
  function h' = step(h, x).

Per-layer blocks. The h-state Jacobian of a stacked LSTM is block lower-triangular (layer
l's new h depends on layer l-1's new h, hence on the old h of layers <= l), so its
spectrum is the union of the spectra of the diagonal blocks J_ll = dh_l'/dh_l. The default
for state `h` with all exponents propagates one H x H basis per layer (for n layers about
n^2 fewer flops in the QR and 2n - 1 times fewer in J Q). Finite runs of the two differ by
a transient that shrinks like 1/T, so the choice is made by the settings, not the method:
the autograd path then keeps only the diagonal blocks of its full Jacobian, and both
methods give the same numbers (`per_layer=False` asks for the full Jacobian). With
`exponents: k` below the state size, or with state `hc`, the full Jacobian is used: the k
leading exponents of the union are not the k leading ones of any fixed set of blocks, and
only a k-column Q over the whole state gives them directly (O(L^2 k) per step instead of
O(L^3)). (The hc Jacobian is block-triangular by layer too, with 2H-blocks; not exploited.)

Where the time goes: per step, J Q and the QR (Householder, O(L k^2)). Jacobian blocks are
built by row scaling from one batched step's gates; the weights are sliced and cast once;
the K samples are one batch throughout. With a dense square Q, Q stays in the factored
form geqrf returns and J Q is one ormqr (see `qr_loop`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from lsh.errors import LshError
from lsh.models import LanguageModel, LSTMLanguageModel, RHNLanguageModel

METHODS = ("analytic", "autograd")
LAYOUTS = ("blocks", "sorted")
MIN_EXPONENT = -16.0  # nats per step: the floor of every per-step factor log r (see the module docstring)
STATES = ("h", "hc")
LOG_BASES = ("e", 2)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("auto", "cpu", "cuda")

Shape = tuple[int, ...]


# -----------------------------------------------------------------------------
# Settings (the params' `lyapunov` section)


@dataclass(frozen=True)
class Settings:
    """The params' `lyapunov` section, checked (the schema checks the file; this checks callers)."""

    samples: int = 2
    steps: int = 35
    warmup: int = 10
    exponents: Optional[int] = None  # k leading exponents; None = all
    state: str = "h"
    method: str = "analytic"
    log_base: Union[str, int] = "e"
    dtype: str = "float32"
    qr_every: int = 1
    device: str = "auto"
    layout: str = "blocks"
    min_exponent: float = MIN_EXPONENT

    def __post_init__(self) -> None:
        for name, low in (("samples", 1), ("steps", 1), ("warmup", 0), ("qr_every", 1)):
            _check_int(f"lyapunov.{name}", getattr(self, name), low)
        if self.exponents is not None:
            _check_int("lyapunov.exponents", self.exponents, 1, "or null (all)")
        _check_choice("lyapunov.state", self.state, STATES)
        _check_choice("lyapunov.method", self.method, METHODS)
        object.__setattr__(self, "log_base", _log_base(self.log_base))
        _check_choice("lyapunov.dtype", self.dtype, tuple(DTYPES))
        _check_choice("lyapunov.device", self.device, DEVICES)
        _check_choice("lyapunov.layout", self.layout, LAYOUTS)
        _check_floor(self.min_exponent)

    @classmethod
    def from_params(cls, params: dict, **overrides: Any) -> "Settings":
        """The params' section, with the overrides that are not None (command-line flags)."""
        section = dict(params["lyapunov"])
        section.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**section)

    def compute_kwargs(self) -> dict:
        """The keyword arguments of `model_spectra` these settings give (the layout picks from its result)."""
        return {
            "warmup": self.warmup, "exponents": self.exponents, "state": self.state,
            "method": self.method, "log_base": self.log_base, "dtype": self.dtype,
            "qr_every": self.qr_every, "device": self.device, "min_exponent": self.min_exponent,
        }


def _check_int(name: str, value: Any, low: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LshError(f"{name} = {value!r}: must be an integer >= {low}{' ' + extra if extra else ''}")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed or isinstance(value, bool):
        raise LshError(f"{name} = {value!r}: allowed are {', '.join(map(str, allowed))}")


def _check_floor(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1e4 <= value < 0:
        raise LshError(f"lyapunov.min_exponent = {value!r}: must be a negative number of nats per step (default {MIN_EXPONENT})")


def _log_base(value: Any) -> Union[str, int]:
    if value == "e":
        return "e"
    if value in (2, "2") and not isinstance(value, bool):
        return 2
    raise LshError(f"lyapunov.log_base = {value!r}: allowed are e, 2")


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise LshError(f"lyapunov.dtype = {dtype}: allowed are {', '.join(DTYPES)}")
        return dtype
    _check_choice("lyapunov.dtype", dtype, tuple(DTYPES))
    return DTYPES[dtype]


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """`auto` is CUDA when available; asking for CUDA without one is an error, not a CPU run."""
    if isinstance(device, torch.device):
        name = device.type
    else:
        name = device
        _check_choice("lyapunov.device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LshError("lyapunov.device = 'cuda': torch sees no CUDA device here (allowed: auto, cpu)")
    return device if isinstance(device, torch.device) else torch.device(name)


# -----------------------------------------------------------------------------
# Shared pieces


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


def _signs(d: Tensor) -> Tensor:
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
        _check_choice("lyapunov.layout", layout, LAYOUTS)
        return self.layouts[layout]


def qr_loop(tangent: Tangent, warmup: int, steps: int, k: int, qr_every: int, dtype: torch.dtype,
            device: torch.device, min_exponent: float = MIN_EXPONENT) -> tuple[Tensor, Tensor]:
    """Per-sample exponents, unsorted, and which met the floor: ([K, k] float64 in natural log
    per step, [K, k] bool).

    k is the total count; with several blocks (all exponents) each block gets k / blocks columns,
    block by block. When the tangent gives dense Jacobians and Q is square, Q stays in the
    Householder form geqrf returns and J Q is one ormqr (J times the reflectors): the same product
    without forming Q (householder_product) and then multiplying, about 30 % fewer flops per step.
    Each QR's log r is floored at `min_exponent` per step it covers (see the module docstring).
    """
    if not (isinstance(qr_every, int) and qr_every >= 1):
        raise LshError(f"lyapunov.qr_every = {qr_every!r}: must be an integer >= 1")
    _check_floor(min_exponent)
    K, nb, Lb = tangent.samples, tangent.blocks, tangent.block_size
    if nb > 1:
        assert k == nb * Lb, "per-block propagation gives all exponents only"
        k = Lb
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
            signs = _signs(d)
            if not factored:
                q = torch.linalg.householder_product(h, tau).mul_(signs)
            y = None
            since = 0
    return logs.reshape(K, nb * k) / steps, floored.reshape(K, nb * k)


def finish(per_sample: Tensor, floored: Tensor, blocks: int, log_base: Union[str, int]) -> Spectrum:
    """Both layouts from per-sample exponents [K, k] (k / blocks per block, block by block):
    sort each sample (within each block for `blocks`), average over samples, convert the log base."""
    K, k = per_sample.shape
    scale = 1 / math.log(2) if _log_base(log_base) == 2 else 1.0
    by_block = per_sample.view(K, blocks, k // blocks).sort(dim=-1, descending=True).values.reshape(K, k)
    layouts = {
        "blocks": by_block.mean(0) * scale,
        "sorted": per_sample.sort(dim=-1, descending=True).values.mean(0) * scale,
    }
    return Spectrum(layouts, int(floored.sum()), blocks)


# -----------------------------------------------------------------------------
# The stacked LSTM, analytically


class LSTMJacobian(Tangent):
    """The stacked LSTM's step and its Jacobian, from one batched step's gates.

    Per layer l, gates y = W_l x_l + U_l h_l + b (PyTorch order i, f, g, o; x_0 the
    embedding, x_l = h_{l-1}' for l > 0) and
        c' = s(f) c + s(i) tanh(g),   h' = s(o) tanh(c').
    With dtc = s(o) (1 - tanh(c')^2), the derivatives of c' and h' by the pre-activations
    are the row scales
        b = [s'(i) tanh(g), s'(f) c, s(i) (1 - tanh(g)^2), 0]   (dc'/dy, gates i f g o)
        a = [dtc b_i, dtc b_f, dtc b_g, s'(o) tanh(c')]          (dh'/dy)
    so that, with c held fixed (state h),
        dh_l'/dh_l = sum_g diag(a_g) U_g      dh_l'/dx_l = sum_g diag(a_g) W_g
    and the full h-state Jacobian is block lower-triangular with
        dh_l'/dh_j = (dh_l'/dx_l) (dh_{l-1}'/dh_j),  j < l,
    applied to Q layer by layer: (J Q)_l = J_ll Q_l + (dh_l'/dx_l) (J Q)_{l-1}.
    With state hc the rows of c' are added (dc'/dh_l = sum_g diag(b_g) U_g,
    dc'/dc = diag(s(f)), dh'/dc = diag(dtc s(f))); the state vector is
    [h_1 .. h_n, c_1 .. c_n].
    """

    def __init__(self, model: LSTMLanguageModel, xs: Tensor, *, state: str = "h", per_layer: bool = False) -> None:
        cfg = model.config
        self.n, self.H = n, H = cfg.layers, cfg.hidden
        self.state_kind, self.per_layer = state, per_layer
        if per_layer and state != "h":
            raise LshError(f"per-layer blocks need state h, not {state!r}")
        dtype, device = xs.dtype, xs.device
        w = {k: v.detach().to(device=device, dtype=dtype) for k, v in model.recurrent_weights().items()}
        # step operands, transposed views: gates [K, 4H] = x @ W^T + h @ U^T + b
        self.Ut = [w[f"lstm.weight_hh_l{l}"].t() for l in range(n)]
        self.Wt = [w[f"lstm.weight_ih_l{l}"].t() for l in range(n)]
        self.bias = [w[f"lstm.bias_ih_l{l}"] + w[f"lstm.bias_hh_l{l}"] for l in range(n)]
        U = [w[f"lstm.weight_hh_l{l}"].view(4, H, H) for l in range(n)]  # [gate, H, H]
        W = [w[f"lstm.weight_ih_l{l}"].view(4, H, -1) for l in range(n)]  # [gate, H, in_l]
        if per_layer:
            self.U_all = torch.stack(U, dim=1)  # [gate, n, H, H]
        elif state == "h":
            self.U, self.W = U, W
        else:  # rows of h' and c' share the operand: stack each matrix twice, [gate, 2H, H]
            self.U2 = [torch.cat([u, u], dim=1) for u in U]
            self.W2 = [torch.cat([v, v], dim=1) for v in W]
        # the input projection of layer 0 does not depend on the state: one matmul for all steps
        self.x0 = torch.addmm(self.bias[0], xs.reshape(-1, xs.shape[-1]), self.Wt[0]).view(*xs.shape[:2], 4 * H)
        K = self.samples = xs.shape[1]
        zeros = torch.zeros(K, H, dtype=dtype, device=device)
        self.h = [zeros] * n  # per layer [K, H]
        self.c = [zeros] * n
        self.blocks, self.block_size = (n, H) if per_layer else (1, n * H * (2 if state == "hc" else 1))
        self.dense = per_layer
        self._buf: dict[str, Tensor] = {}

    def buffer(self, name: str, shape: Shape) -> Tensor:
        """A reused work array (row-scaled blocks): no allocation per step."""
        b = self._buf.get(name)
        if b is None or b.shape != shape:
            b = self._buf[name] = torch.empty(shape, dtype=self.x0.dtype, device=self.x0.device)
        return b

    def _cell(self, l: int, y_in: Tensor, jacobian: bool):
        """Layer l at one step: y_in = W x + b [K, 4H] -> h', c' and, if asked, a, b, s(f), dtc."""
        H, h, c = self.H, self.h[l], self.c[l]
        y = torch.addmm(y_in, h, self.Ut[l])  # [K, 4H]
        sig = torch.sigmoid(y)  # the g quarter is unused
        i, f, o = sig[:, :H], sig[:, H : 2 * H], sig[:, 3 * H :]
        g = torch.tanh(y[:, 2 * H : 3 * H])
        c_new = f * c + i * g
        tc = torch.tanh(c_new)
        h_new = o * tc
        self.h[l], self.c[l] = h_new, c_new
        if not jacobian:
            return None
        dtc = o * (1.0 - tc * tc)
        b = torch.stack([i * (1.0 - i) * g, f * (1.0 - f) * c, i * (1.0 - g * g)], dim=1)  # [K, 3, H]
        a = torch.cat([b * dtc.unsqueeze(1), (o * (1.0 - o) * tc).unsqueeze(1)], dim=1)  # [K, 4, H]
        return a, b, f, dtc

    def _layer_inputs(self, l: int, t: int) -> Tensor:
        return self.x0[t] if l == 0 else torch.addmm(self.bias[l], self.h[l - 1], self.Wt[l])

    def advance(self, t: int) -> None:
        for l in range(self.n):
            self._cell(l, self._layer_inputs(l, t), False)

    def propagate(self, t: int, q: Tensor) -> Tensor:
        if self.per_layer:
            return torch.matmul(self.jacobian(t), q)
        if self.state_kind == "h":
            return self._propagate_h(t, q)
        return self._propagate_hc(t, q)

    def jacobian(self, t: int) -> Tensor:
        """The diagonal blocks J_ll = dh_l'/dh_l of every layer: [K, n, H, H] (per-layer mode)."""
        if not self.per_layer:
            raise NotImplementedError("dense Jacobian blocks are built in per-layer mode only")
        K, n, H = self.samples, self.n, self.H
        a = self.buffer("a", (K, n, 4, H))
        for l in range(n):
            a[:, l] = self._cell(l, self._layer_inputs(l, t), True)[0]
        return row_scaled_sum(a, self.U_all, self.buffer("J", (K, n, H, H)))

    def _propagate_h(self, t: int, q: Tensor) -> Tensor:
        """Full h-state Jacobian, block row by block row: q [K, 1, nH, k]."""
        H, K = self.H, self.samples
        qv = q[:, 0]  # [K, nH, k]
        out = []
        for l in range(self.n):
            a = self._cell(l, self._layer_inputs(l, t), True)[0]
            J = row_scaled_sum(a, self.U[l], self.buffer("J", (K, H, H)))
            y = torch.matmul(J, qv[:, l * H : (l + 1) * H])  # [K, H, k]
            if l > 0:  # the path through the new h of the layer below
                D = row_scaled_sum(a, self.W[l], self.buffer("D", (K, H, H)))
                y = torch.baddbmm(y, D, out[-1])
            out.append(y)
        return torch.cat(out, dim=1).unsqueeze(1)

    def _propagate_hc(self, t: int, q: Tensor) -> Tensor:
        """Full (h, c) Jacobian: q [K, 1, 2nH, k], rows [h_1 .. h_n, c_1 .. c_n]."""
        H, K, n = self.H, self.samples, self.n
        qv = q[:, 0]
        out_h, out_c = [], []
        for l in range(n):
            a, b, f, dtc = self._cell(l, self._layer_inputs(l, t), True)
            coef = torch.cat([a, torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)], dim=-1)  # [K, 4, 2H]
            J = row_scaled_sum(coef, self.U2[l], self.buffer("J", (K, 2 * H, H)))  # [d h'; d c'] / d h_l
            y = torch.matmul(J, qv[:, l * H : (l + 1) * H])  # [K, 2H, k]
            if l > 0:
                D = row_scaled_sum(coef, self.W2[l], self.buffer("D", (K, 2 * H, H)))
                y = torch.baddbmm(y, D, out_h[-1])
            qc = qv[:, (n + l) * H : (n + l + 1) * H]  # [K, H, k]: the c_l rows
            yh, yc = y[:, :H], y[:, H:]
            yh.addcmul_((dtc * f).unsqueeze(-1), qc)  # dh'/dc = diag(dtc s(f))
            yc.addcmul_(f.unsqueeze(-1), qc)  # dc'/dc = diag(s(f))
            out_h.append(yh)
            out_c.append(yc)
        return torch.cat(out_h + out_c, dim=1).unsqueeze(1)

    def products(self, k: int) -> list[tuple[Shape, Shape]]:
        K, n, H = self.samples, self.n, self.H
        if self.per_layer:
            return [] if k == H else [((K, n, H, H), (K, n, H, k))]
        rows = H if self.state_kind == "h" else 2 * H
        return [((K, rows, H), (K, H, k))] + [((K, rows, H), (K, H, k))] * (2 * (n - 1))


# -----------------------------------------------------------------------------
# The RHN, analytically


class RHNJacobian(Tangent):
    """The RHN's step and its Jacobian: the product of the micro-step Jacobians.

    Micro-layer l: [a_H; a_T] = W x [l == 0] + R_l s + b_l, h = tanh(a_H), t = s(a_T),
    s' = h t + s (1 - t) (coupled carry gate), so
        ds'/ds = diag(t (1 - h^2)) R_H + diag((h - s) t (1 - t)) R_T + diag(1 - t),
    applied to Q micro-step by micro-step (depth products of H x H by H x k; forming the
    product matrix would cost depth H^3).
    """

    def __init__(self, model: RHNLanguageModel, xs: Tensor) -> None:
        cfg = model.config
        H = cfg.hidden
        self.H, self.depth = H, cfg.depth
        dtype, device = xs.dtype, xs.device
        w = {k: v.detach().to(device=device, dtype=dtype) for k, v in model.recurrent_weights().items()}
        self.Rt = [w[f"R.{l}.weight"].t() for l in range(self.depth)]  # [H, 2H]
        self.R = [w[f"R.{l}.weight"].view(2, H, H) for l in range(self.depth)]  # [H or T, H, H]
        self.bias = [w[f"R.{l}.bias"] for l in range(self.depth)]
        self.wx = (xs.reshape(-1, xs.shape[-1]) @ w["W.weight"].t()).view(*xs.shape[:2], 2 * H)  # [T, K, 2H]
        K = self.samples = xs.shape[1]
        self.s = torch.zeros(K, H, dtype=dtype, device=device)
        self.blocks, self.block_size = 1, H
        self._J = torch.empty(K, H, H, dtype=dtype, device=device)

    def _micro(self, l: int, t: int) -> tuple[Tensor, Tensor, Tensor]:
        s, H = self.s, self.H
        a = torch.addmm(self.bias[l], s, self.Rt[l])  # [K, 2H]
        if l == 0:
            a = a + self.wx[t]
        h, g = torch.tanh(a[:, :H]), torch.sigmoid(a[:, H:])
        self.s = s + g * (h - s)
        return h, g, s

    def advance(self, t: int) -> None:
        for l in range(self.depth):
            self._micro(l, t)

    def propagate(self, t: int, q: Tensor) -> Tensor:
        qv = q[:, 0]  # [K, H, k]
        for l in range(self.depth):
            h, g, s = self._micro(l, t)
            coef = torch.stack([g * (1.0 - h * h), (h - s) * g * (1.0 - g)], dim=1)  # [K, 2, H]
            M = row_scaled_sum(coef, self.R[l], self._J)  # [K, H, H]
            qv = torch.baddbmm(qv * (1.0 - g).unsqueeze(-1), M, qv)  # M Q + diag(1 - t) Q
        return qv.unsqueeze(1)

    def products(self, k: int) -> list[tuple[Shape, Shape]]:
        K, H = self.samples, self.H
        return [((K, H, H), (K, H, k))] * self.depth


# -----------------------------------------------------------------------------
# Any step function, by automatic differentiation


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


def _lstm_flat_step(model: LSTMLanguageModel, state: str) -> Callable:
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


# -----------------------------------------------------------------------------
# Public entry points


def state_size(model: LanguageModel, state: str = "h") -> int:
    """Dimension L of the state whose spectrum is computed."""
    cfg = model.config
    if isinstance(model, LSTMLanguageModel):
        return cfg.layers * cfg.hidden * (2 if state == "hc" else 1)
    if state != "h":
        raise LshError(f"lyapunov.state = {state!r}: only the LSTM has a cell state; "
                       f"the {cfg.type.upper()} has one state vector (use h)")
    return cfg.hidden


def uses_per_layer(model: LanguageModel, state: str, k: int) -> bool:
    """The default: per-layer blocks for a stacked LSTM's h state when all exponents are asked for."""
    return (isinstance(model, LSTMLanguageModel) and model.config.layers > 1 and state == "h"
            and k == state_size(model, state))


def _exponent_count(exponents: Optional[int], L: int, what: str) -> int:
    if exponents is None:
        return L
    if isinstance(exponents, bool) or not isinstance(exponents, int) or not 1 <= exponents <= L:
        raise LshError(f"lyapunov.exponents = {exponents!r}: the {what} state has {L} dimensions; "
                       f"allowed are 1..{L} or null (all)")
    return exponents


def make_tangent(model: LanguageModel, xs: Tensor, *, state: str = "h", method: str = "analytic",
                 exponents: Optional[int] = None, per_layer: Optional[bool] = None) -> tuple[Tangent, int]:
    """The tangent dynamics of `model` driven by embedded inputs xs [T, K, emb], and k.

    per_layer None: per-layer blocks for the LSTM's h state when all exponents are asked for
    (with either method), the full Jacobian otherwise.
    """
    _check_choice("lyapunov.method", method, METHODS)
    _check_choice("lyapunov.state", state, STATES)
    L = state_size(model, state)
    k = _exponent_count(exponents, L, f"{model.config.type} {state}")
    is_lstm = isinstance(model, LSTMLanguageModel)
    if per_layer is None:
        per_layer = uses_per_layer(model, state, k)
    elif per_layer and not (is_lstm and state == "h" and k == L):
        raise LshError("per-layer blocks need an LSTM, state h and all exponents "
                       f"(got {model.config.type}, state {state}, {k} of {L} exponents)")
    if method == "analytic":
        if is_lstm:
            return LSTMJacobian(model, xs, state=state, per_layer=per_layer), k
        if isinstance(model, RHNLanguageModel):
            return RHNJacobian(model, xs), k
        raise LshError(f"lyapunov.method = 'analytic': no analytic Jacobian for {type(model).__name__}; use autograd")
    K = xs.shape[1]
    zeros = torch.zeros(K, L, dtype=xs.dtype, device=xs.device)
    if is_lstm:
        aux = zeros.clone() if state == "h" else zeros[:, :0]
        blocks = model.config.layers if per_layer else 1
        return AutogradJacobian(_lstm_flat_step(model, state), zeros, aux, xs, blocks), k
    s0 = model.init_state(K)
    if not isinstance(s0, Tensor):
        raise LshError(f"method autograd: {type(model).__name__}'s state is not one tensor; wrap its step for spectrum_of_map")

    def step(z, aux, x):  # z [B, L] <-> the model's state [B, ...]
        return model.step(z.view(z.shape[0], *s0.shape[1:]), x).reshape(z.shape), aux

    return AutogradJacobian(step, zeros, zeros[:, :0], xs), k


@torch.no_grad()
def model_spectra(
    model: LanguageModel,
    tokens: Tensor,
    *,
    warmup: int = 0,
    exponents: Optional[int] = None,
    state: str = "h",
    method: str = "analytic",
    log_base: Union[str, int] = "e",
    dtype: Union[str, torch.dtype] = "float32",
    qr_every: int = 1,
    device: Union[str, torch.device] = "auto",
    per_layer: Optional[bool] = None,
    min_exponent: float = MIN_EXPONENT,
) -> Spectrum:
    """The Lyapunov spectrum of `model` driven by tokens [warmup + T, K], in both layouts.

    States start at zero; dropout is off (`step` has none). The model is not modified: its
    weights are copied to `device` and `dtype`.
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if tokens.dim() != 2:
        raise LshError(f"tokens must be [steps, samples], got shape {tuple(tokens.shape)}")
    _check_int("lyapunov.warmup", warmup, 0)
    steps = tokens.shape[0] - warmup
    if steps < 1:
        raise LshError(f"{tokens.shape[0]} tokens per sample leave no step after {warmup} warm-up steps")
    was_training = model.training
    model.eval()
    try:
        if method == "autograd":
            import copy

            model = copy.deepcopy(model).to(device=dev, dtype=dt).requires_grad_(False)
        xs = model.embed(tokens.to(model.embedding.weight.device)).to(device=dev, dtype=dt)  # [T, K, emb]
        tangent, k = make_tangent(model, xs, state=state, method=method, exponents=exponents, per_layer=per_layer)
        per_sample, floored = qr_loop(tangent, warmup, steps, k, qr_every, dt, dev, min_exponent)
    finally:
        model.train(was_training)
    return finish(per_sample, floored, tangent.blocks, log_base)


def model_spectrum(model: LanguageModel, tokens: Tensor, *, layout: str = "blocks", **kwargs: Any) -> Tensor:
    """The Lyapunov spectrum [k] (float64) of `model` in one layout; see `model_spectra` for the arguments."""
    return model_spectra(model, tokens, **kwargs)[layout]


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
    k = _exponent_count(exponents, L, "map's")
    steps = inputs.shape[0] - warmup
    if steps < 1 or inputs.shape[1] != K:
        raise LshError(f"inputs of shape {tuple(inputs.shape)} do not give {K} samples with steps after {warmup} warm-up")
    xs = inputs.to(dt) if inputs.is_floating_point() else inputs
    h0 = h0.to(dt)
    tangent = AutogradJacobian(lambda z, aux, x: (step(z, x), aux), h0, h0[:, :0], xs)
    with torch.no_grad():
        per_sample, floored = qr_loop(tangent, warmup, steps, k, qr_every, dt, h0.device, min_exponent)
    return finish(per_sample, floored, 1, log_base)["sorted"]


@torch.no_grad()
def model_jacobian(model: LanguageModel, tokens: Tensor, *, state: str = "h", method: str = "analytic",
                   dtype: Union[str, torch.dtype] = "float64", device: Union[str, torch.device] = "auto") -> Tensor:
    """The dense step Jacobian [K, L, L] at the last of tokens [T, K] (states from zero): for tests.

    Analytic: the propagation applied to the identity, the same code the spectrum runs.
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    model = model.eval()
    if method == "autograd":
        import copy

        model = copy.deepcopy(model).to(device=dev, dtype=dt).requires_grad_(False)
    xs = model.embed(tokens.to(model.embedding.weight.device)).to(device=dev, dtype=dt)
    tangent, L = make_tangent(model, xs, state=state, method=method, per_layer=False)
    for t in range(tokens.shape[0] - 1):
        tangent.advance(t)
    eye = torch.eye(L, dtype=dt, device=dev).expand(tokens.shape[1], 1, L, L).contiguous()
    return tangent.propagate(tokens.shape[0] - 1, eye)[:, 0]


# -----------------------------------------------------------------------------
# Spectra of checkpoints on validation sequences


def sample_offsets(n_tokens: int, samples: int, length: int, seed: int) -> np.ndarray:
    """Start positions of the K sequences: the same for every model with this seed, so spectra compare."""
    positions = n_tokens - length + 1
    if positions < samples:
        raise LshError(f"the validation split has {n_tokens} tokens: too few for {samples} sequences of {length} "
                       "(lyapunov.samples x (warmup + steps))")
    return np.sort(np.random.default_rng(seed).choice(positions, size=samples, replace=False))


def validation_tokens(valid: np.ndarray, samples: int, length: int, seed: int) -> tuple[Tensor, np.ndarray]:
    """The K sequences [length, K] (token ids) and their offsets."""
    offsets = sample_offsets(len(valid), samples, length, seed)
    seqs = np.stack([valid[o : o + length] for o in offsets], axis=1)  # [length, K]
    return torch.from_numpy(seqs.astype(np.int64)), offsets


def _finite_weights(weights: dict) -> bool:
    return all(torch.isfinite(v).all() for v in weights.values() if torch.is_tensor(v) and v.is_floating_point())


def checkpoint_spectrum(checkpoint: Union[str, Path], data_dir: Union[str, Path], settings: Settings,
                        seed: int) -> dict:
    """The record `lsh spectrum` writes: the spectrum of a checkpoint's evaluation weights.

    `exponents` is the spectrum in the settings' layout; `layouts` holds both (the report
    compares them), `clipped` how many exponents met the floor. A diverged checkpoint
    (status or non-finite weights), or non-finite exponents, gives status "diverged" and
    exponents null instead of an error.
    """
    from lsh import data, training

    state = training.load_checkpoint(checkpoint)
    device = resolve_device(settings.device)
    valid = data.load_split(data_dir, "valid")
    length = settings.warmup + settings.steps
    tokens, offsets = validation_tokens(valid, settings.samples, length, seed)
    record: dict[str, Any] = {
        "exponents": None,
        "layout": settings.layout,
        "layouts": None,
        "clipped": None,
        "blocks": None,
        "min_exponent": settings.min_exponent,
        "method": settings.method,
        "samples": settings.samples,
        "steps": settings.steps,
        "warmup": settings.warmup,
        "seconds": 0.0,
        "epoch": state.get("epoch"),
        "status": state.get("status", "ok"),
        "state": settings.state,
        "log_base": settings.log_base,
        "dtype": settings.dtype,
        "qr_every": settings.qr_every,
        "n_exponents": settings.exponents,
        "per_layer": None,
        "device": device.type,
        "checkpoint": str(checkpoint),
        "offsets": [int(o) for o in offsets],
    }
    if record["status"] == "diverged" or not _finite_weights(state["model"]):
        record["status"] = "diverged"
        return record
    model = training.model_from_checkpoint(state, device)
    L = state_size(model, settings.state)
    k = _exponent_count(settings.exponents, L, f"{model.config.type} {settings.state}")
    record["per_layer"] = uses_per_layer(model, settings.state, k)
    start = time.perf_counter()
    spectrum = model_spectra(model, tokens.to(device), **settings.compute_kwargs())
    record["seconds"] = round(time.perf_counter() - start, 4)
    if not all(bool(torch.isfinite(v).all()) for v in spectrum.layouts.values()):
        record["status"] = "diverged"
    else:
        record["layouts"] = {name: v.cpu().tolist() for name, v in spectrum.layouts.items()}
        record["exponents"] = record["layouts"][settings.layout]
        record["clipped"], record["blocks"] = spectrum.clipped, spectrum.blocks
    return record


__all__ = [
    "Settings", "Spectrum", "model_spectrum", "model_spectra", "finish", "spectrum_of_map", "model_jacobian", "checkpoint_spectrum",
    "sample_offsets", "validation_tokens", "state_size", "make_tangent", "qr_loop",
    "row_scaled_sum", "resolve_device", "resolve_dtype", "uses_per_layer", "LSTMJacobian", "RHNJacobian",
    "AutogradJacobian",
]
