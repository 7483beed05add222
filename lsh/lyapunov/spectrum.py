"""A model's spectrum: its tangent dynamics (analytic or autograd, per-layer blocks or the full
Jacobian), the QR loop, both layouts; and the validation sequences it is measured on."""

from __future__ import annotations

import copy
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from lsh.device import float32_precision, resolve_device
from lsh.errors import LshError
from lsh.lyapunov.autograd import AutogradJacobian, lstm_flat_step
from lsh.lyapunov.lstm import LSTMJacobian
from lsh.lyapunov.qr import (
    MIN_EXPONENT,
    Spectrum,
    Tangent,
    check_choice,
    check_int,
    exponent_count,
    finish,
    qr_loop,
    resolve_dtype,
)
from lsh.lyapunov.rhn import RHNJacobian
from lsh.models import LanguageModel, LSTMLanguageModel, RHNLanguageModel

STATES = ("h", "hc")


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


def analytic_tangent(model: LanguageModel, xs: Tensor, state: str, per_layer: bool) -> Tangent:
    """The analytic Jacobians of the LSTM or the RHN."""
    if isinstance(model, LSTMLanguageModel):
        return LSTMJacobian(model, xs, state=state, per_layer=per_layer)
    if isinstance(model, RHNLanguageModel):
        return RHNJacobian(model, xs)
    raise LshError(f"lyapunov.method = 'analytic': no analytic Jacobian for {type(model).__name__}; use autograd")


def autograd_tangent(model: LanguageModel, xs: Tensor, state: str, per_layer: bool) -> Tangent:
    """torch.func Jacobians of the model's one-step transition (diagonal blocks only with per_layer)."""
    K, L = xs.shape[1], state_size(model, state)
    zeros = torch.zeros(K, L, dtype=xs.dtype, device=xs.device)
    if isinstance(model, LSTMLanguageModel):
        aux = zeros.clone() if state == "h" else zeros[:, :0]
        blocks = model.config.layers if per_layer else 1
        return AutogradJacobian(lstm_flat_step(model, state), zeros, aux, xs, blocks)
    s0 = model.init_state(K)
    if not isinstance(s0, Tensor):
        raise LshError(f"method autograd: {type(model).__name__}'s state is not one tensor; "
                       "wrap its step for spectrum_of_map")

    def step(z, aux, x):  # z [B, L] <-> the model's state [B, ...]
        return model.step(z.view(z.shape[0], *s0.shape[1:]), x).reshape(z.shape), aux

    return AutogradJacobian(step, zeros, zeros[:, :0], xs)


# lyapunov.method -> the tangent dynamics (model, embedded inputs, state, per-layer blocks)
METHODS = {"analytic": analytic_tangent, "autograd": autograd_tangent}


def make_tangent(model: LanguageModel, xs: Tensor, *, state: str = "h", method: str = "analytic",
                 exponents: Optional[int] = None, per_layer: Optional[bool] = None) -> tuple[Tangent, int]:
    """The tangent dynamics of `model` driven by embedded inputs xs [T, K, emb], and k.

    per_layer None: per-layer blocks for the LSTM's h state when all exponents are asked for
    (with either method), the full Jacobian otherwise.
    """
    check_choice("lyapunov.method", method, METHODS)
    check_choice("lyapunov.state", state, STATES)
    L = state_size(model, state)
    k = exponent_count(exponents, L, f"{model.config.type} {state}")
    if per_layer is None:
        per_layer = uses_per_layer(model, state, k)
    elif per_layer and not (isinstance(model, LSTMLanguageModel) and state == "h" and k == L):
        raise LshError("per-layer blocks need an LSTM, state h and all exponents "
                       f"(got {model.config.type}, state {state}, {k} of {L} exponents)")
    return METHODS[method](model, xs, state, per_layer), k


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
    dev, dt = resolve_device(device, "lyapunov.device"), resolve_dtype(dtype)
    if tokens.dim() != 2:
        raise LshError(f"tokens must be [steps, samples], got shape {tuple(tokens.shape)}")
    check_int("lyapunov.warmup", warmup, 0)
    steps = tokens.shape[0] - warmup
    if steps < 1:
        raise LshError(f"{tokens.shape[0]} tokens per sample leave no step after {warmup} warm-up steps")
    was_training = model.training
    model.eval()
    try:
        with float32_precision(False):  # IEEE float32 even in a process whose training allowed TF32
            if method == "autograd":
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


@torch.no_grad()
def model_jacobian(model: LanguageModel, tokens: Tensor, *, state: str = "h", method: str = "analytic",
                   dtype: Union[str, torch.dtype] = "float64", device: Union[str, torch.device] = "auto") -> Tensor:
    """The dense step Jacobian [K, L, L] at the last of tokens [T, K] (states from zero): for tests.

    Analytic: the propagation applied to the identity, the same code the spectrum runs.
    """
    dev, dt = resolve_device(device, "lyapunov.device"), resolve_dtype(dtype)
    model = model.eval()
    if method == "autograd":
        model = copy.deepcopy(model).to(device=dev, dtype=dt).requires_grad_(False)
    xs = model.embed(tokens.to(model.embedding.weight.device)).to(device=dev, dtype=dt)
    tangent, L = make_tangent(model, xs, state=state, method=method, per_layer=False)
    for t in range(tokens.shape[0] - 1):
        tangent.advance(t)
    eye = torch.eye(L, dtype=dt, device=dev).expand(tokens.shape[1], 1, L, L).contiguous()
    return tangent.propagate(tokens.shape[0] - 1, eye)[:, 0]


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


