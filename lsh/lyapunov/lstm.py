"""The stacked LSTM's step and its Jacobian, analytically (row scaling, no diagonal matrices)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from lsh.errors import LshError
from lsh.lyapunov.qr import Shape, row_scaled_sum
from lsh.lyapunov.stacked import StackedJacobian
from lsh.models import LSTMLanguageModel


class LSTMJacobian(StackedJacobian):
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
    and the stacking, the per-layer blocks and the block lower-triangular h-state Jacobian
    are StackedJacobian's (a cell with aU = aW = a and no diagonal term).
    With state hc the rows of c' are added (dc'/dh_l = sum_g diag(b_g) U_g,
    dc'/dc = diag(s(f)), dh'/dc = diag(dtc s(f))); the state vector is
    [h_1 .. h_n, c_1 .. c_n].

    `model`: a language model of this project or a unidirectional torch.nn.LSTM without
    projection (proj_size 0); xs [T, K, input] are its inputs (the embedded tokens).
    """

    gates, fold_hidden_bias = 4, True

    def __init__(self, model: Union[LSTMLanguageModel, nn.LSTM], xs: Tensor, *, state: str = "h",
                 per_layer: bool = False) -> None:
        lstm = model.lstm if isinstance(model, LSTMLanguageModel) else model
        if per_layer and state != "h":
            raise LshError(f"per-layer blocks need state h, not {state!r}")
        super().__init__(lstm, xs, per_layer=per_layer)
        self.state_kind = state
        self.c = [torch.zeros_like(self.h[0])] * self.n
        if state == "hc":  # rows of h' and c' share the operand: stack each matrix twice, [gate, 2H, H]
            self.U2 = [torch.cat([u, u], dim=1) for u in self.U]
            self.W2 = [torch.cat([v, v], dim=1) for v in self.W]
            self.block_size = 2 * self.n * self.H

    def _gates(self, l: int, y_in: Tensor, jacobian: bool) -> Optional[tuple[Tensor, Tensor, Tensor, Tensor]]:
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

    def _cell(self, l: int, gi: Tensor, jacobian: bool) -> Optional[tuple[Tensor, Tensor, None]]:
        out = self._gates(l, gi, jacobian)
        return None if out is None else (out[0], out[0], None)

    def propagate(self, t: int, q: Tensor) -> Tensor:
        return self._propagate_hc(t, q) if self.state_kind == "hc" else super().propagate(t, q)

    def _propagate_hc(self, t: int, q: Tensor) -> Tensor:
        """Full (h, c) Jacobian: q [K, 1, 2nH, k], rows [h_1 .. h_n, c_1 .. c_n]."""
        H, K, n = self.H, self.samples, self.n
        qv = q[:, 0]
        out_h, out_c = [], []
        for l in range(n):
            a, b, f, dtc = self._gates(l, self._layer_inputs(l, t), True)
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
        if self.state_kind == "hc":
            K, n, H = self.samples, self.n, self.H
            return [((K, 2 * H, H), (K, H, k))] * (2 * n - 1)
        return super().products(k)
