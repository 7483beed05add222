"""The stacked Elman RNN (torch.nn.RNN, tanh or relu): its step and h Jacobian, analytically."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lsh.errors import LshError
from lsh.lyapunov.stacked import StackedJacobian

NONLINEARITIES = ("tanh", "relu")


class RNNJacobian(StackedJacobian):
    """torch.nn.RNN's documented step per layer l, h' = act(W_l x_l + b_ih + U_l h_l + b_hh), so
        dh'/dh_l = diag(act'(y)) U_l      dh'/dx_l = diag(act'(y)) W_l
    with act' = 1 - h'^2 (tanh) or [y > 0] (relu; 0 at y = 0, as torch's relu gradient).
    The stacking and per-layer blocks are StackedJacobian's.
    """

    gates, fold_hidden_bias = 1, True

    def __init__(self, rnn: nn.RNN, xs: Tensor, *, per_layer: bool = False) -> None:
        if rnn.nonlinearity not in NONLINEARITIES:
            raise LshError(f"nonlinearity = {rnn.nonlinearity!r}: allowed are {', '.join(NONLINEARITIES)}")
        self.relu = rnn.nonlinearity == "relu"
        super().__init__(rnn, xs, per_layer=per_layer)

    def _cell(self, l: int, gi: Tensor, jacobian: bool) -> Optional[tuple[Tensor, Tensor, None]]:
        y = torch.addmm(gi, self.h[l], self.Ut[l])  # [K, H]
        if self.relu:
            h = torch.relu(y)
            self.h[l] = h
            if not jacobian:
                return None
            d = (y > 0).to(y.dtype)
        else:
            h = torch.tanh(y)
            self.h[l] = h
            if not jacobian:
                return None
            d = 1.0 - h * h
        a = d.unsqueeze(1)  # [K, 1, H]
        return a, a, None
