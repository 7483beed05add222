"""The stacked LSTM's step and its Jacobian, analytically (row scaling, no diagonal matrices)."""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from lsh.errors import LshError
from lsh.lyapunov.qr import Shape, Tangent, row_scaled_sum
from lsh.lyapunov.stacked import layer_weights
from lsh.models import LSTMLanguageModel


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

    `model`: a language model of this project or a unidirectional torch.nn.LSTM without
    projection (proj_size 0); xs [T, K, input] are its inputs (the embedded tokens).
    """

    def __init__(self, model: Union[LSTMLanguageModel, nn.LSTM], xs: Tensor, *, state: str = "h",
                 per_layer: bool = False) -> None:
        lstm = model.lstm if isinstance(model, LSTMLanguageModel) else model
        self.n, self.H = n, H = lstm.num_layers, lstm.hidden_size
        self.state_kind, self.per_layer = state, per_layer
        if per_layer and state != "h":
            raise LshError(f"per-layer blocks need state h, not {state!r}")
        dtype, device = xs.dtype, xs.device
        w = layer_weights(lstm, dtype, device)  # per layer (weight_ih, weight_hh, bias_ih, bias_hh)
        # step operands, transposed views: gates [K, 4H] = x @ W^T + h @ U^T + b
        self.Ut = [w_hh.t() for _, w_hh, _, _ in w]
        self.Wt = [w_ih.t() for w_ih, _, _, _ in w]
        self.bias = [b_ih + b_hh for _, _, b_ih, b_hh in w]
        U = [w_hh.view(4, H, H) for _, w_hh, _, _ in w]  # [gate, H, H]
        W = [w_ih.view(4, H, -1) for w_ih, _, _, _ in w]  # [gate, H, in_l]
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


