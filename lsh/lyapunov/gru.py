"""The stacked GRU (torch.nn.GRU): its step and h Jacobian, analytically (row scaling)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from lsh.lyapunov.stacked import StackedJacobian


class GRUJacobian(StackedJacobian):
    """torch.nn.GRU's documented step per layer (gate order r, z, n in weight_ih / weight_hh):
        r = s(W_r x + b_ir + U_r h + b_hr),  z = s(W_z x + b_iz + U_z h + b_hz),
        n = tanh(W_n x + b_in + r (U_n h + b_hn)),  h' = (1 - z) n + z h.
    With dn = (1 - z)(1 - n^2) (dh' by n's pre-activation) and gn = U_n h + b_hn,
        a_r = dn gn s'(r),  a_z = (h - n) s'(z)
        dh'/dh = diag(a_r) U_r + diag(a_z) U_z + diag(dn r) U_n + diag(z)
        dh'/dx = diag(a_r) W_r + diag(a_z) W_z + diag(dn) W_n
    (r multiplies U_n h only, not W_n x). The stacking and per-layer blocks are StackedJacobian's.
    """

    gates, fold_hidden_bias = 3, False

    def _cell(self, l: int, gi: Tensor, jacobian: bool) -> Optional[tuple[Tensor, Tensor, Tensor]]:
        H, h = self.H, self.h[l]
        gh = torch.addmm(self.b_hh[l], h, self.Ut[l])  # [K, 3H]: U h + b_hh
        rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        gn = gh[:, 2 * H :]
        n = torch.tanh(torch.addcmul(gi[:, 2 * H :], r, gn))
        self.h[l] = n + z * (h - n)
        if not jacobian:
            return None
        dn = (1.0 - z) * (1.0 - n * n)
        a_r = dn * gn * r * (1.0 - r)
        a_z = (h - n) * z * (1.0 - z)
        aU = torch.stack([a_r, a_z, dn * r], dim=1)  # [K, 3, H]
        aW = torch.stack([a_r, a_z, dn], dim=1)
        return aU, aW, z
