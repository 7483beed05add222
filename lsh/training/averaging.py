"""The averaging of NT-ASGD: the running average of the weights after the switch, and a context
that swaps the averaged weights in for evaluation."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Averager:
    """Running average of the weights after the NT-ASGD switch.

    Each entry keeps a step counter; the average weight is mu = 1 for the first two
    steps, then 1 / (step - 1), as torch.optim.ASGD with t0 = 0. A counter may be a
    tensor of the weight's shape: sparse training resets it where a weight is regrown,
    so that weight's average restarts (SNT-ASGD). The averaged weights are what the
    model is evaluated and checkpointed with. A scalar counter lives on the CPU whatever the
    device: reading it each step would otherwise wait for the GPU once per weight and batch.
    """

    def __init__(self) -> None:
        self.active = False
        self.avg: dict[str, Tensor] = {}
        self.steps: dict[str, Tensor] = {}

    def start(self, model: nn.Module) -> None:
        self.active = True
        self.avg = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.steps = {n: torch.zeros(()) for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """avg <- avg + mu * (w - avg) for every weight; one fused call for the per-tensor counters."""
        scalar: dict[float, tuple[list[Tensor], list[Tensor]]] = {}
        for name, p in model.named_parameters():
            steps = self.steps[name]
            steps += 1
            if steps.dim() == 0:
                k = float(steps)
                avgs, params = scalar.setdefault(1.0 if k <= 2 else 1.0 / (k - 1), ([], []))
                avgs.append(self.avg[name])
                params.append(p.detach())
            else:  # per-weight counters (sparse training restarts regrown weights)
                mu = torch.where(steps <= 2, 1.0, 1.0 / (steps - 1).clamp(min=1))
                self.avg[name].lerp_(p.detach(), mu)
        for mu, (avgs, params) in scalar.items():
            torch._foreach_lerp_(avgs, params, mu)

    @torch.no_grad()
    def restart(self, name: str, where: Tensor) -> None:
        """Restart the average of the entries of `name` where `where` is true (regrown weights)."""
        steps = self.steps[name]
        if steps.dim() == 0:
            steps = self.steps[name] = steps.to(self.avg[name].device).expand_as(self.avg[name]).clone()
        steps[where] = 0

    @torch.no_grad()
    def mask(self, name: str, keep: Tensor) -> None:
        self.avg[name] *= keep

    def state_dict(self) -> dict:
        return {"active": self.active, "avg": self.avg, "steps": self.steps}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        """Averages and per-weight counters on `device` (default: where they were saved), scalar counters on the CPU."""
        self.active = state["active"]
        self.avg = {n: t.to(device) if device else t for n, t in state["avg"].items()}
        self.steps = {n: t.cpu() if t.dim() == 0 else (t.to(device) if device else t)
                      for n, t in state["steps"].items()}


class swapped_in:
    """Context manager: the model holds the averaged weights inside, its own weights after."""

    def __init__(self, model: nn.Module, averager: Averager) -> None:
        self.model, self.averager = model, averager
        self.saved: dict[str, Tensor] = {}

    @torch.no_grad()
    def __enter__(self) -> nn.Module:
        if self.averager.active:
            for name, p in self.model.named_parameters():
                self.saved[name] = p.detach().clone()
                p.copy_(self.averager.avg[name])
        return self.model

    @torch.no_grad()
    def __exit__(self, *exc: object) -> None:
        for name, p in self.model.named_parameters():
            if name in self.saved:
                p.copy_(self.saved[name])
        self.saved.clear()


