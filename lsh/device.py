"""Where torch work runs: the one place `auto`, `cpu` and `cuda` are resolved."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

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
    if name == "cuda" and not torch.cuda.is_available():
        raise LshError(f"{key}: cuda was asked for, but torch sees no CUDA device (use auto or cpu)")
    device = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)
    if device.type == "cuda":
        _note_gpu_numerics()
    return device


@functools.cache
def _note_gpu_numerics() -> None:
    """Said once per process: what `numerics: portable` does not reach."""
    logging.getLogger("lsh.numerics").warning(
        "numerics: computing on %s; the portable caps hold for CPU kernels only: GPU results repeat on the same GPU "
        "model, driver and library versions at best (cuDNN's RNN kernels are not deterministic)",
        torch.cuda.get_device_name(0))


@contextmanager
def float32_precision(tf32: bool) -> Iterator[None]:
    """Matmuls and cuDNN RNNs in float32 as IEEE float32 (`tf32` false) or on TF32 tensor cores,
    restored on exit. torch's own defaults differ by backend (cuDNN RNNs allow TF32 since torch 2.9,
    matmuls do not), so the choice is explicit: training follows `train.tf32`, spectra are always
    IEEE. Only the new fp32_precision API is touched (mixing it with allow_tf32 makes torch refuse
    to read either). No effect on the CPU."""
    mode = "tf32" if tf32 else "ieee"
    matmul, rnn = torch.backends.cuda.matmul, torch.backends.cudnn.rnn
    saved = matmul.fp32_precision, rnn.fp32_precision
    matmul.fp32_precision, rnn.fp32_precision = mode, mode
    try:
        yield
    finally:
        matmul.fp32_precision, rnn.fp32_precision = saved
