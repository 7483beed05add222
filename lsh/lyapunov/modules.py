"""The Lyapunov spectrum of a user's own torch.nn.LSTM, GRU or RNN, driven by the inputs the user
gives: the pipeline's QR loop and options on a plain PyTorch module (the library API, docs/api.md)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from lsh.device import float32_precision
from lsh.errors import LshError
from lsh.lyapunov.autograd import AutogradJacobian
from lsh.lyapunov.gru import GRUJacobian
from lsh.lyapunov.lstm import LSTMJacobian
from lsh.lyapunov.qr import (
    LAYOUTS,
    MIN_EXPONENT,
    Tangent,
    check_choice,
    check_floor,
    check_int,
    exponent_count,
    finish,
    qr_loop,
    resolve_dtype,
)
from lsh.lyapunov.qr import log_base as check_log_base
from lsh.lyapunov.rnn import NONLINEARITIES, RNNJacobian
from lsh.lyapunov.spectrum import METHODS, STATES, model_spectrum
from lsh.models import LanguageModel

Module = Union[nn.LSTM, nn.GRU, nn.RNN]
State = Union[Tensor, tuple[Tensor, Tensor], None]


def _kind(module: nn.Module) -> str:
    """The cell's name in messages; refuses what has no single-direction, unprojected step."""
    if isinstance(module, nn.LSTM):
        kind = "LSTM"
    elif isinstance(module, nn.GRU):
        kind = "GRU"
    elif isinstance(module, nn.RNN):
        kind = "RNN"
        if module.nonlinearity not in NONLINEARITIES:
            raise LshError(f"module_spectrum: RNN nonlinearity {module.nonlinearity!r} is not one of "
                           f"{', '.join(NONLINEARITIES)}")
    else:
        raise LshError(f"module_spectrum: expected a torch.nn.LSTM, GRU or RNN, or an lsh.models language model; "
                       f"got {type(module).__name__}")
    if module.bidirectional:
        raise LshError(f"module_spectrum: a bidirectional {kind} has no single time direction (its backward half "
                       "reads the sequence from the end); pass a unidirectional module")
    if getattr(module, "proj_size", 0) > 0:
        raise LshError(f"module_spectrum: an LSTM with proj_size = {module.proj_size} is not supported "
                       "(its h is a projection of the cell output); use proj_size 0")
    return kind


def _time_first(module: Module, inputs: Tensor) -> Tensor:
    """inputs as [T, K, input]: from [T, K, input], [K, T, input] (batch_first) or one sequence [T, input]."""
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        what = f"dtype {inputs.dtype}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise LshError(f"inputs: expected floating-point features, got {what} "
                       "(token ids are for an lsh.models language model)")
    layout = "[K, T, input] (batch_first)" if module.batch_first else "[T, K, input]"
    if inputs.dim() not in (2, 3):
        raise LshError(f"inputs: expected {layout} or one sequence [T, input], got shape {tuple(inputs.shape)}")
    if inputs.shape[-1] != module.input_size:
        raise LshError(f"inputs: {inputs.shape[-1]} features in the last axis of shape {tuple(inputs.shape)}; "
                       f"the module's input_size is {module.input_size}")
    if inputs.dim() == 2:
        return inputs.unsqueeze(1)
    return inputs.transpose(0, 1) if module.batch_first else inputs


def _initial_state(module: Module, h0: State, K: int, single: bool, dtype: torch.dtype,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """(h, c) as [n, K, H] each (c zero for a GRU or RNN), from h0 as the module's forward takes it:
    [n, K, H] (or [n, H] with one sequence), an LSTM's a tuple (h0, c0)."""
    n, H = module.num_layers, module.hidden_size
    zeros = torch.zeros(n, K, H, dtype=dtype, device=device)
    if h0 is None:
        return zeros, zeros
    lstm = isinstance(module, nn.LSTM)
    if lstm != isinstance(h0, tuple) or (lstm and len(h0) != 2):
        raise LshError("h0: an LSTM takes a tuple (h0, c0); a GRU or RNN one tensor")
    parts = h0 if lstm else (h0,)
    shapes = [(n, K, H)] + ([(n, H)] if single else [])
    out = []
    for name, part in zip(("h0", "c0"), parts):
        if not isinstance(part, Tensor) or tuple(part.shape) not in shapes:
            got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
            raise LshError(f"{name}: expected shape {' or '.join(map(str, shapes))} (layers, samples, hidden), got {got}")
        out.append(part.reshape(n, K, H).to(device=device, dtype=dtype))
    return out[0], (out[1] if lstm else zeros)


@contextmanager
def plain_rnn_kernels(active: bool) -> Iterator[None]:
    """cuDNN and oneDNN (mkldnn) off while `active` (method autograd): the module's forward then runs
    torch's own cell ops, which torch.func can batch and differentiate (cuDNN's RNN differentiates in
    training mode only; oneDNN's float32 LSTM has no batching rule and fails under vmap). Only the
    `enabled` switches are touched: cudnn.flags() also reads the legacy TF32 flag, which torch refuses
    once float32_precision has set the new one."""
    backends = (torch.backends.cudnn, torch.backends.mkldnn)
    saved = [b.enabled for b in backends]
    try:
        if active:
            for b in backends:
                b.enabled = False
        yield
    finally:
        for b, value in zip(backends, saved):
            b.enabled = value


def _flat(v: Tensor) -> Tensor:
    """[n, K, H] -> [K, nH]: the state vector [h_1 .. h_n] of each sample."""
    return v.transpose(0, 1).reshape(v.shape[1], -1)


def module_step(module: Module, state: str = "h") -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The module's own forward over one time step, on flat states, for AutogradJacobian:
    step(z [B, L], aux [B, ...], x [B, input]) -> (z', aux'). z is [h_1 .. h_n] (aux the c's, held
    fixed) or, for an LSTM's state hc, [h_1 .. h_n, c_1 .. c_n] (aux empty). The module must be in
    eval mode (dropout between layers off)."""
    n, H = module.num_layers, module.hidden_size

    def unflat(v: Tensor) -> Tensor:  # [B, nH] -> [n, B, H]
        return v.reshape(v.shape[0], n, H).transpose(0, 1).contiguous()

    def run(x: Tensor, s: Any):
        return module(x.unsqueeze(1) if module.batch_first else x.unsqueeze(0), s)[1]

    if not isinstance(module, nn.LSTM):
        return lambda z, aux, x: (_flat(run(x, unflat(z))), aux)
    if state == "h":
        def step_h(z: Tensor, aux: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
            h, c = run(x, (unflat(z), unflat(aux)))
            return _flat(h), _flat(c)
        return step_h

    def step_hc(z: Tensor, aux: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        h, c = run(x, (unflat(z[:, : n * H]), unflat(z[:, n * H :])))
        return torch.cat([_flat(h), _flat(c)], dim=1), aux
    return step_hc


def module_tangent(module: Module, xs: Tensor, *, state: str = "h", method: str = "analytic",
                   per_layer: bool = False, h0: Optional[tuple[Tensor, Tensor]] = None) -> Tangent:
    """The tangent dynamics of `module` (eval mode) driven by xs [T, K, input] (time first, xs's dtype
    and device), from the state h0 = (h, c) [n, K, H] each (zero if None). `per_layer`: the diagonal
    blocks only (state h, more than one layer). For module_spectrum and the benchmark."""
    n, H, K = module.num_layers, module.hidden_size, xs.shape[1]
    if h0 is None:
        h0 = (xs.new_zeros(n, K, H), xs.new_zeros(n, K, H))
    if method == "autograd":
        step = module_step(module, state)
        h, c = _flat(h0[0]), _flat(h0[1])
        z, aux = (h, c) if state == "h" or not isinstance(module, nn.LSTM) else (torch.cat([h, c], 1), h[:, :0])
        return AutogradJacobian(step, z, aux, xs, n if per_layer else 1)
    if isinstance(module, nn.LSTM):
        tangent: Tangent = LSTMJacobian(module, xs, state=state, per_layer=per_layer)
        tangent.c = list(h0[1].unbind(0))
    else:
        tangent = (GRUJacobian if isinstance(module, nn.GRU) else RNNJacobian)(module, xs, per_layer=per_layer)
    tangent.h = list(h0[0].unbind(0))
    return tangent


def _language_model_spectrum(model: LanguageModel, tokens: Tensor, h0: State, **options: Any) -> Tensor:
    """An lsh.models language model: the pipeline's own path (model_spectra) on token ids [T, K] or [T]."""
    if h0 is not None:
        raise LshError("h0: a language model of this project starts from the zero state; h0 is for torch.nn modules")
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() not in (1, 2):
        what = f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise LshError(f"inputs: a language model takes token ids [T, K] or one sequence [T]; got {what}")
    device = next(model.parameters()).device
    return model_spectrum(model, tokens.reshape(tokens.shape[0], -1), device=device, **options)


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """module_spectrum's options, each checked before any work (a bad value is named by its argument,
    not met mid-run), with the dtype resolved."""
    check_choice("layout", options["layout"], LAYOUTS)
    check_choice("method", options["method"], METHODS)
    check_choice("state", options["state"], STATES)
    check_log_base(options["log_base"], "log_base")
    dtype = resolve_dtype(options["dtype"], "dtype")
    check_floor(options["min_exponent"], "min_exponent")
    check_int("qr_every", options["qr_every"], 1)
    check_int("warmup", options["warmup"], 0)
    return {**options, "dtype": dtype}


def _module_qr(module: Module, inputs: Tensor, h0: State, options: dict[str, Any]) -> tuple[Tensor, Tensor, int]:
    """The QR loop on a torch.nn module's tangent dynamics: (per-sample exponents, which met the floor,
    blocks), for `finish`. The module runs in eval mode and gets its own mode back, whatever happens."""
    state, method, warmup, dt = options["state"], options["method"], options["warmup"], options["dtype"]
    kind = _kind(module)
    if state != "h" and kind != "LSTM":
        raise LshError(f"state = {state!r}: only an LSTM has a cell state; the {kind} has one state vector (use h)")
    xs = _time_first(module, inputs)
    T, K = xs.shape[:2]
    steps = T - warmup
    if steps < 1 or K < 1:
        raise LshError(f"inputs: {T} steps of {K} samples leave no step after {warmup} warm-up steps")
    n, H = module.num_layers, module.hidden_size
    L = n * H * (2 if state == "hc" else 1)
    k = exponent_count(options["exponents"], L, f"{kind}'s {state}", key="exponents", all_="None")
    per_layer = n > 1 and state == "h" and k == L  # as the pipeline: the diagonal blocks give all exponents
    device = next(module.parameters()).device
    xs = xs.to(device=device, dtype=dt)
    h0_ = _initial_state(module, h0, K, inputs.dim() == 2, dt, device)
    was_training = module.training
    module.eval()
    try:
        with float32_precision(False), plain_rnn_kernels(method == "autograd"):  # IEEE float32 on a GPU
            net = copy.deepcopy(module).to(dtype=dt).requires_grad_(False) if method == "autograd" else module
            tangent = module_tangent(net, xs, state=state, method=method, per_layer=per_layer, h0=h0_)
            per_sample, floored = qr_loop(tangent, warmup, steps, k, options["qr_every"], dt, device,
                                          options["min_exponent"])
    finally:
        module.train(was_training)
    return per_sample, floored, tangent.blocks


@torch.no_grad()
def module_spectrum(
    module: Union[Module, LanguageModel], inputs: Tensor, *, exponents: Optional[int] = None, warmup: int = 0,
    qr_every: int = 1, dtype: Union[str, torch.dtype] = "float64", min_exponent: float = MIN_EXPONENT,
    layout: str = "blocks", state: str = "h", method: str = "analytic", log_base: Union[str, int] = "e",
    h0: State = None,
) -> Tensor:
    """The Lyapunov spectrum of a torch.nn.LSTM, GRU or RNN (tanh or relu; any number of layers;
    batch_first or not) driven by `inputs`, by the pipeline's QR method.

    inputs: [T, K, input] ([K, T, input] when batch_first) or one sequence [T, input]: K samples,
    each starting from h0 (zero by default; as the module's forward takes it: [layers, K, hidden],
    an LSTM's a tuple (h0, c0)). The first `warmup` steps only advance the state.

    Returns a float64 tensor [k] on the module's device: the mean over the K samples of each
    sample's exponents, in nats per step (bits with log_base 2); k = `exponents` (default all:
    layers x hidden, twice that for an LSTM's state hc). layout `blocks`: with several layers,
    state h and all exponents, each layer's exponents (the diagonal blocks of the block-triangular
    Jacobian), sorted within the layer, layers in order; otherwise (one layer, k leading
    exponents, state hc: the full Jacobian) one descending vector, the same as `sorted`.
    `sorted`: all exponents in one descending vector. state (LSTM only): `h`, the h of all layers
    with c held fixed in the Jacobian (the paper's), or `hc`, the full (h, c). method: `analytic`
    Jacobians or `autograd` (torch.func through the module's own forward). dtype: float64 or
    float32 (the weights are cast; exponents accumulate in float64). Per-step factors are floored
    at `min_exponent` nats; `qr_every` m re-orthonormalises every m steps.

    A torch.compile'd module is read through the module it wraps. A spectrum that is not finite
    (NaN weights, inputs or h0) is returned with a UserWarning.

    The module is only read (no gradients): in training mode it is evaluated in eval mode, and its
    mode is restored afterwards; dropout between layers acts in training only, so it has no effect.
    Refused with an LshError: a bidirectional module (no single time direction), an LSTM with
    proj_size > 0, inputs of the wrong rank or feature size, an option value not allowed.

    An lsh.models language model is accepted as well, with token ids [T, K] (or [T]) as inputs:
    the pipeline's own spectrum of it (lsh.lyapunov.model_spectrum, on the model's device).
    """
    options = _checked_options(dict(exponents=exponents, warmup=warmup, qr_every=qr_every, dtype=dtype,
                                    min_exponent=min_exponent, layout=layout, state=state, method=method,
                                    log_base=log_base))
    module = getattr(module, "_orig_mod", module)  # torch.compile's wrapper: the same parameters, uncompiled
    if isinstance(module, LanguageModel):
        result = _language_model_spectrum(module, inputs, h0, **options)
    else:
        per_sample, floored, blocks = _module_qr(module, inputs, h0, options)
        result = finish(per_sample, floored, blocks, log_base)[layout]
    not_finite = int((~torch.isfinite(result)).sum())
    if not_finite:
        warnings.warn(f"module_spectrum: {not_finite} of {result.numel()} exponents are not "
                      "finite: the module's weights, its inputs or h0 hold a NaN or an infinity", UserWarning,
                      stacklevel=2)
    return result
