"""The RHN's step and its Jacobian: the product of the micro-step Jacobians, applied one at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from lsh.lyapunov.qr import Shape, Tangent, row_scaled_sum
from lsh.models import RHNLanguageModel


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


