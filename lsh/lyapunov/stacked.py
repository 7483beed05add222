"""What the stacked LSTM, GRU and Elman RNN tangents share: a torch.nn recurrent module's weights per layer,
and the layer-by-layer h-state Jacobian (block lower-triangular), per-layer blocks or the full one."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lsh.lyapunov.qr import Shape, Tangent, row_scaled_sum

LayerWeights = tuple[Tensor, Tensor, Tensor, Tensor]


def layer_weights(rnn: nn.RNNBase, dtype: torch.dtype, device: torch.device) -> list[LayerWeights]:
    """Per layer l: (weight_ih [G H, in_l], weight_hh [G H, H], bias_ih [G H], bias_hh [G H]) of a
    unidirectional torch.nn.LSTM, GRU or RNN, detached and cast once; zero biases when bias=False."""
    out = []
    for l in range(rnn.num_layers):
        w_ih, w_hh = (getattr(rnn, f"{n}_l{l}").detach().to(device=device, dtype=dtype)
                      for n in ("weight_ih", "weight_hh"))
        if rnn.bias:
            b_ih, b_hh = (getattr(rnn, f"{n}_l{l}").detach().to(device=device, dtype=dtype)
                          for n in ("bias_ih", "bias_hh"))
        else:
            b_ih = b_hh = w_hh.new_zeros(w_hh.shape[0])
        out.append((w_ih, w_hh, b_ih, b_hh))
    return out


class StackedJacobian(Tangent):
    """A stack of cells driven by inputs xs [T, K, input], and its h Jacobian (an LSTM keeps c itself).

    A subclass gives the cell: `_cell(l, gi, jacobian)` advances layer l from its input
    projection gi = W_l x_l + b [K, G H] and, if asked, returns the row scales
    (aU [K, G, H], aW [K, G, H], d [K, H] or None) of
        dh_l'/dh_l = sum_g diag(aU_g) U_g + diag(d)      dh_l'/dx_l = sum_g diag(aW_g) W_g.
    The state vector is [h_1 .. h_n]; x_l = h_{l-1}' for l > 0, so the Jacobian is block
    lower-triangular, dh_l'/dh_j = (dh_l'/dx_l)(dh_{l-1}'/dh_j) for j < l, applied to Q layer by
    layer: (J Q)_l = J_ll Q_l + (dh_l'/dx_l)(J Q)_{l-1}. With `per_layer` only the diagonal
    blocks J_ll are given, as dense matrices [K, n, H, H] (their spectra are the full one's).
    """

    gates: int  # G: gate blocks (rows of H) in weight_ih and weight_hh
    fold_hidden_bias: bool  # bias_hh added to the input projection (it is not inside a gate product)

    def __init__(self, rnn: nn.RNNBase, xs: Tensor, *, per_layer: bool = False) -> None:
        n, H, G = rnn.num_layers, rnn.hidden_size, self.gates
        self.n, self.H, self.per_layer = n, H, per_layer
        w = layer_weights(rnn, xs.dtype, xs.device)
        self.Wt = [w_ih.t() for w_ih, _, _, _ in w]
        self.Ut = [w_hh.t() for _, w_hh, _, _ in w]
        self.b_in = [b_ih + b_hh if self.fold_hidden_bias else b_ih for _, _, b_ih, b_hh in w]
        self.b_hh = [b_hh for _, _, _, b_hh in w]
        U = [w_hh.view(G, H, H) for _, w_hh, _, _ in w]  # [gate, H, H]
        if per_layer:
            self.U_all = torch.stack(U, dim=1)  # [gate, n, H, H]
        else:
            self.U, self.W = U, [w_ih.view(G, H, -1) for w_ih, _, _, _ in w]
        # the input projection of layer 0 does not depend on the state: one matmul for all steps
        self.x0 = torch.addmm(self.b_in[0], xs.reshape(-1, xs.shape[-1]), self.Wt[0]).view(*xs.shape[:2], G * H)
        K = self.samples = xs.shape[1]
        self.h = [torch.zeros(K, H, dtype=xs.dtype, device=xs.device)] * n  # per layer [K, H]
        self.blocks, self.block_size = (n, H) if per_layer else (1, n * H)
        self.dense = per_layer
        self._buf: dict[str, Tensor] = {}

    def _cell(self, l: int, gi: Tensor, jacobian: bool) -> Optional[tuple[Tensor, Tensor, Optional[Tensor]]]:
        raise NotImplementedError

    def buffer(self, name: str, shape: Shape) -> Tensor:
        """A reused work array (row-scaled blocks): no allocation per step."""
        b = self._buf.get(name)
        if b is None or b.shape != shape:
            b = self._buf[name] = torch.empty(shape, dtype=self.x0.dtype, device=self.x0.device)
        return b

    def _layer_inputs(self, l: int, t: int) -> Tensor:
        return self.x0[t] if l == 0 else torch.addmm(self.b_in[l], self.h[l - 1], self.Wt[l])

    def advance(self, t: int) -> None:
        for l in range(self.n):
            self._cell(l, self._layer_inputs(l, t), False)

    def jacobian(self, t: int) -> Tensor:
        """The diagonal blocks J_ll = dh_l'/dh_l of every layer: [K, n, H, H] (per-layer mode)."""
        if not self.per_layer:
            raise NotImplementedError("dense Jacobian blocks are built in per-layer mode only")
        K, n, H = self.samples, self.n, self.H
        a = self.buffer("a", (K, n, self.gates, H))
        diag = []
        for l in range(n):
            aU, _, d = self._cell(l, self._layer_inputs(l, t), True)
            a[:, l] = aU
            diag.append(d)
        J = row_scaled_sum(a, self.U_all, self.buffer("J", (K, n, H, H)))
        if diag[0] is not None:  # + diag(d): added to the diagonal in place, no diagonal matrix
            J.diagonal(dim1=-2, dim2=-1).add_(torch.stack(diag, dim=1))
        return J

    def propagate(self, t: int, q: Tensor) -> Tensor:
        if self.per_layer:
            return torch.matmul(self.jacobian(t), q)
        H, K = self.H, self.samples
        qv = q[:, 0]  # [K, nH, k]
        out: list[Tensor] = []
        for l in range(self.n):
            aU, aW, d = self._cell(l, self._layer_inputs(l, t), True)
            J = row_scaled_sum(aU, self.U[l], self.buffer("J", (K, H, H)))
            if d is not None:
                J.diagonal(dim1=-2, dim2=-1).add_(d)
            y = torch.matmul(J, qv[:, l * H : (l + 1) * H])  # [K, H, k]
            if l > 0:  # the path through the new h of the layer below
                D = row_scaled_sum(aW, self.W[l], self.buffer("D", (K, H, H)))
                y = torch.baddbmm(y, D, out[-1])
            out.append(y)
        return torch.cat(out, dim=1).unsqueeze(1)

    def products(self, k: int) -> list[tuple[Shape, Shape]]:
        K, n, H = self.samples, self.n, self.H
        if self.per_layer:
            return [] if k == H else [((K, n, H, H), (K, n, H, k))]
        return [((K, H, H), (K, H, k))] * (2 * n - 1)
