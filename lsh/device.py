"""Where torch work runs: the one place `auto`, `cpu` and `cuda` are resolved."""

from __future__ import annotations

import torch

from lsh.errors import LshError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device, key: str = "device") -> torch.device:
    """`auto` is CUDA when torch sees one; asking for CUDA without one is an error naming `key`,
    not a silent CPU run."""
    if isinstance(name, torch.device):
        if name.type == "cuda" and not torch.cuda.is_available():
            raise LshError(f"{key}: cuda was asked for, but torch sees no CUDA device (use auto or cpu)")
        return name
    if name not in DEVICES:
        raise LshError(f"{key} = {name!r}: allowed are {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LshError(f"{key}: cuda was asked for, but torch sees no CUDA device (use auto or cpu)")
    return torch.device(name)
