"""The Lyapunov spectrum of a user's own torch.nn.LSTM, GRU or RNN, of their cells, or of any step
function h' = step(h, x), driven by the inputs the user gives: the pipeline's QR loop and options on
plain PyTorch (the library API; the convention is docs/api.md's "The convention").

Everything is checked and planned first (`_Job`: every refusal before any work, the warning about a
short run before the wait), then run."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from lsh.device import float32_precision, resolve_device
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
from lsh.lyapunov.spectrum import METHODS, STATES, model_spectra, state_size
from lsh.models import LanguageModel, LSTMLanguageModel
from lsh.spectrum_options import tag

Module = Union[nn.LSTM, nn.GRU, nn.RNN]
Cell = Union[nn.LSTMCell, nn.GRUCell, nn.RNNCell]
CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
State = Union[Tensor, tuple[Tensor, Tensor], None]
Device = Union[str, torch.device, None]

# Fewer steps after warm-up than this, and a spectrum comes with a UserWarning. The QR method's
# estimate from T steps carries a start-up transient of about C / T nats per step, C the log of how
# far the starting basis I[:, :k] (and the start state) lies from the settled Lyapunov vectors: about
# 1/2 ln L for L directions in general position, 1.4 to 2.8 nats for L = 16 to 256. Measured on random
# float64 GRUs (hidden 16, 64, 256; normal inputs; leading exponent about -0.45 nats per step), the
# largest error of a run against 2000 steps averaged 0.07 to 0.11 nats per step at 10 steps, 0.04 to
# 0.07 at 20 and 0.03 to 0.05 at 40: below 20 steps it is a sixth of the exponents or more, larger than
# most gaps between them. The pipeline's default (35 steps after 10 of warm-up) is above it.
FEW_STEPS = 20


def _kind(module: nn.Module) -> str:
    """The module's name in messages; refuses what has no single-direction, unprojected step."""
    for cls in (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell):
        if isinstance(module, cls):
            kind = cls.__name__
            break
    else:
        raise LshError(f"module_spectrum: expected a torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, or an "
                       f"lsh.models language model (any other step h' = f(h, x): lsh.step_spectrum); "
                       f"got {type(module).__name__}")
    if kind.startswith("RNN") and module.nonlinearity not in NONLINEARITIES:
        raise LshError(f"module_spectrum: {kind} nonlinearity {module.nonlinearity!r} is not one of "
                       f"{', '.join(NONLINEARITIES)}")
    if isinstance(module, CELLS):
        return kind
    if module.bidirectional:
        raise LshError(f"module_spectrum: a bidirectional {kind} has no single time direction (its backward half "
                       "reads the sequence from the end); pass a unidirectional module")
    if getattr(module, "proj_size", 0) > 0:
        raise LshError(f"module_spectrum: an LSTM with proj_size = {module.proj_size} is not supported "
                       "(its h is a projection of the cell output); use proj_size 0")
    return kind


def layer_view(cell: Cell) -> Module:
    """A one-layer torch.nn.LSTM, GRU or RNN holding the cell's own parameters (shared, not copied): a
    cell's step is such a layer's, so the analytic Jacobians of the stacked modules serve the cells.
    Built on the meta device, so that no weights are allocated before the cell's replace them."""
    cls = {nn.LSTMCell: nn.LSTM, nn.GRUCell: nn.GRU, nn.RNNCell: nn.RNN}[next(c for c in CELLS if isinstance(cell, c))]
    extra = {"nonlinearity": cell.nonlinearity} if isinstance(cell, nn.RNNCell) else {}
    view = cls(cell.input_size, cell.hidden_size, 1, bias=cell.bias, device="meta", **extra)
    for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if cell.bias else ()):
        setattr(view, f"{name}_l0", getattr(cell, name))
    return view.train(cell.training)


def _time_first(module: Module, inputs: Tensor, cell: bool) -> Tensor:
    """inputs as [T, K, input]: from [T, K, input], [K, T, input] (batch_first) or one sequence [T, input]."""
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        what = f"dtype {inputs.dtype}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise LshError(f"inputs: expected floating-point features, got {what} "
                       "(token ids are for an lsh.models language model)")
    layout = "[K, T, input] (batch_first)" if module.batch_first else "[T, K, input]"
    if inputs.dim() not in (2, 3):
        one = "" if not cell else " (a cell's inputs are time first: it has no batch_first)"
        raise LshError(f"inputs: expected {layout} or one sequence [T, input]{one}, got shape {tuple(inputs.shape)}")
    if inputs.shape[-1] != module.input_size:
        raise LshError(f"inputs: {inputs.shape[-1]} features in the last axis of shape {tuple(inputs.shape)}; "
                       f"the module's input_size is {module.input_size}")
    if inputs.dim() == 2:
        return inputs.unsqueeze(1)
    return inputs.transpose(0, 1) if module.batch_first else inputs


def _initial_state(module: Module, h0: State, K: int, single: bool, dtype: torch.dtype,
                   device: torch.device, cell: bool) -> tuple[Tensor, Tensor]:
    """(h, c) as [n, K, H] each (c zero for a GRU or RNN), from h0 as the module's forward takes it:
    [n, K, H] (or [n, H] with one sequence), an LSTM's a tuple (h0, c0); a cell's [K, H] (or [H])."""
    n, H = module.num_layers, module.hidden_size
    zeros = torch.zeros(n, K, H, dtype=dtype, device=device)
    if h0 is None:
        return zeros, zeros
    lstm = isinstance(module, nn.LSTM)
    if lstm != isinstance(h0, tuple) or (lstm and len(h0) != 2):
        names = ("an LSTMCell", "a GRUCell or RNNCell") if cell else ("an LSTM", "a GRU or RNN")
        raise LshError(f"h0: {names[0]} takes a tuple (h0, c0); {names[1]} one tensor")
    parts = h0 if lstm else (h0,)
    if cell:
        shapes, axes = [(K, H)] + ([(H,)] if single else []), "(samples, hidden)"
    else:
        shapes, axes = [(n, K, H)] + ([(n, H)] if single else []), "(layers, samples, hidden)"
    out = []
    for name, part in zip(("h0", "c0"), parts):
        if not isinstance(part, Tensor) or tuple(part.shape) not in shapes:
            got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
            raise LshError(f"{name}: expected shape {' or '.join(map(str, shapes))} {axes}, got {got}")
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


def cell_step(cell: Cell, state: str = "h") -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The cell's own forward, for AutogradJacobian, on module_step's flat states: z = h [B, H] (an
    LSTMCell's c as aux, held fixed) or, for an LSTMCell's state hc, [h, c] [B, 2H]."""
    if not isinstance(cell, nn.LSTMCell):
        return lambda z, aux, x: (cell(x, z), aux)
    if state == "h":
        return lambda z, aux, x: cell(x, (z, aux))
    H = cell.hidden_size

    def step_hc(z: Tensor, aux: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cat(cell(x, (z[:, :H], z[:, H:])), dim=1), aux
    return step_hc


def module_tangent(module: Union[Module, Cell], xs: Tensor, *, state: str = "h", method: str = "analytic",
                   per_layer: bool = False, h0: Optional[tuple[Tensor, Tensor]] = None) -> Tangent:
    """The tangent dynamics of `module` (eval mode) driven by xs [T, K, input] (time first, xs's dtype
    and device), from the state h0 = (h, c) [n, K, H] each (zero if None). `per_layer`: the diagonal
    blocks only (state h, more than one layer). A cell: analytically as the one-layer module holding
    its weights (`layer_view`), by autograd through its own forward. For module_spectrum and the benchmark."""
    cell = isinstance(module, CELLS)
    layer = layer_view(module) if cell else module
    n, H, K = layer.num_layers, layer.hidden_size, xs.shape[1]
    if h0 is None:
        h0 = (xs.new_zeros(n, K, H), xs.new_zeros(n, K, H))
    if method == "autograd":
        step = cell_step(module, state) if cell else module_step(module, state)
        h, c = _flat(h0[0]), _flat(h0[1])
        z, aux = (h, c) if state == "h" or not isinstance(layer, nn.LSTM) else (torch.cat([h, c], 1), h[:, :0])
        return AutogradJacobian(step, z, aux, xs, n if per_layer else 1)
    if isinstance(layer, nn.LSTM):
        tangent: Tangent = LSTMJacobian(layer, xs, state=state, per_layer=per_layer)
        tangent.c = list(h0[1].unbind(0))
    else:
        tangent = (GRUJacobian if isinstance(layer, nn.GRU) else RNNJacobian)(layer, xs, per_layer=per_layer)
    tangent.h = list(h0[0].unbind(0))
    return tangent


def _layout(layout: Optional[str], layers: int, state: str, k: int, L: int) -> str:
    """The layout to return: by default (None) `blocks` where the exponents are kept by layer (a stack,
    state h, all exponents) and `sorted` elsewhere. `blocks` asked for where a stack's exponents
    belong to no fixed layers is refused; with one block (one layer, a cell, a step function) it is
    that block's exponents sorted, the same as `sorted`."""
    by_layer = layers > 1 and state == "h" and k == L
    if layout is None:
        return "blocks" if by_layer else "sorted"
    if layout == "blocks" and layers > 1 and not by_layer:
        why = (f"exponents = {k} of {L} are the {k} largest of the {layers} layers together, not a fixed number "
               "per layer" if state == "h" else
               f"state 'hc' factorises the whole (h, c) Jacobian of the {layers} layers, so no exponent "
               "belongs to one layer")
        raise LshError(f"layout = 'blocks': {why}; use layout='sorted' (or leave layout unset)")
    return layout


def _checked_options(options: dict[str, Any], dtype_of_h0: bool = False) -> dict[str, Any]:
    """The options, each checked before any work (a bad value is named by its argument, not met
    mid-run), with the dtype and device resolved (a device None stays None: the module's or h0's;
    a dtype None only with `dtype_of_h0`, step_spectrum's default)."""
    if options["layout"] is not None and (options["layout"] not in LAYOUTS or isinstance(options["layout"], bool)):
        raise LshError(f"layout = {options['layout']!r}: allowed are {', '.join(LAYOUTS)} or None (the default)")
    if "method" in options:
        check_choice("method", options["method"], METHODS)
        check_choice("state", options["state"], STATES)
    check_log_base(options["log_base"], "log_base")
    dtype = None if options["dtype"] is None and dtype_of_h0 else resolve_dtype(options["dtype"], "dtype")
    check_floor(options["min_exponent"], "min_exponent")
    check_int("qr_every", options["qr_every"], 1)
    check_int("warmup", options["warmup"], 0)
    device = None if options["device"] is None else resolve_device(options["device"], "device")
    return {**options, "dtype": dtype, "device": device}


def _steps_after_warmup(T: int, K: int, warmup: int) -> int:
    """The steps the exponents accumulate over; none (or no sample) is refused before any work."""
    if T - warmup < 1 or K < 1:
        raise LshError(f"inputs: {T} steps of {K} samples leave no step after {warmup} warm-up steps")
    return T - warmup


@dataclass
class _Job:
    """A checked spectrum, not yet computed: `steps` after warm-up, `run` to compute it, and the options
    that decide what its numbers mean (the layout resolved), which the result carries."""

    steps: int
    run: Callable[[], Tensor]
    meaning: dict[str, Any]


def _module_job(module: Union[Module, Cell], inputs: Tensor, h0: State, options: dict[str, Any]) -> _Job:
    """The QR loop on a torch.nn module's or cell's tangent dynamics. The module runs in eval mode and
    gets its own mode back, whatever happens; on another device it is read there (the analytic path
    copies its weights, the autograd path a copy of it), never moved."""
    state, method, warmup, dt = options["state"], options["method"], options["warmup"], options["dtype"]
    kind = _kind(module)
    cell = isinstance(module, CELLS)
    layer = layer_view(module) if cell else module
    if state != "h" and not kind.startswith("LSTM"):
        raise LshError(f"state = {state!r}: only an LSTM has a cell state; the {kind} has one state vector (use h)")
    xs = _time_first(layer, inputs, cell)
    T, K = xs.shape[:2]
    steps = _steps_after_warmup(T, K, warmup)
    n, H = layer.num_layers, layer.hidden_size
    L = n * H * (2 if state == "hc" else 1)
    k = exponent_count(options["exponents"], L, f"{kind}'s {state}", key="exponents", all_="None")
    layout = _layout(options["layout"], n, state, k, L)
    per_layer = n > 1 and state == "h"  # the block-triangular h Jacobian: each layer's block alone, any k
    device = options["device"] or next(module.parameters()).device
    xs = xs.to(device=device, dtype=dt)
    h0_ = _initial_state(layer, h0, K, inputs.dim() == 2, dt, device, cell)

    def run() -> Tensor:
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), float32_precision(False), plain_rnn_kernels(method == "autograd"):  # IEEE float32
                net = (copy.deepcopy(module).to(device=device, dtype=dt).requires_grad_(False)
                       if method == "autograd" else module)
                tangent = module_tangent(net, xs, state=state, method=method, per_layer=per_layer, h0=h0_)
                per_sample, floored = qr_loop(tangent, warmup, steps, k, options["qr_every"], dt, device,
                                              options["min_exponent"])
        finally:
            module.train(was_training)
        return finish(per_sample, floored, tangent.blocks, options["log_base"], count=k)[layout]

    return _Job(steps, run, {"log_base": options["log_base"], "layout": layout, "state": state})


def _language_model_job(model: LanguageModel, tokens: Tensor, h0: State, options: dict[str, Any]) -> _Job:
    """An lsh.models language model on token ids [T, K] or [T]: an LSTM's is its nn.LSTM's spectrum on
    the embedded tokens (this module's path, so that every option means the same as for a torch.nn
    LSTM); an RHN's is the pipeline's own (one block: its micro-steps make one Jacobian)."""
    if h0 is not None:
        raise LshError("h0: a language model of this project starts from the zero state; h0 is for torch.nn modules")
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() not in (1, 2):
        what = (f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, Tensor)
                else type(tokens).__name__)
        raise LshError(f"inputs: a language model takes token ids [T, K] or one sequence [T]; got {what}")
    tokens = tokens.reshape(tokens.shape[0], -1)
    if isinstance(model, LSTMLanguageModel):
        with torch.no_grad():
            xs = model.embed(tokens.to(model.embedding.weight.device))
        return _module_job(model.lstm, xs, None, options)
    warmup, state = options["warmup"], options["state"]
    steps = _steps_after_warmup(tokens.shape[0], tokens.shape[1], warmup)
    L = state_size(model, state)
    k = exponent_count(options["exponents"], L, f"{model.config.type} {state}", key="exponents", all_="None")
    layout = _layout(options["layout"], 1, state, k, L)
    device = options["device"] or next(model.parameters()).device
    keys = ("warmup", "exponents", "state", "method", "log_base", "dtype", "qr_every", "min_exponent")
    return _Job(steps,
                lambda: model_spectra(model, tokens, device=device, **{key: options[key] for key in keys})[layout],
                {"log_base": options["log_base"], "layout": layout, "state": state})


def _run(job: _Job, where: str, warmup: int) -> Tensor:
    """Warn about a short run (before the wait) and about a result that is not finite (after it); the
    warnings point at the caller of module_spectrum or step_spectrum. The result carries the options
    that decide what its numbers mean (lsh.spectrum_options), for the LS distance and the pruner."""
    if job.steps < FEW_STEPS:
        warnings.warn(f"{where}: only {job.steps} steps after {warmup} warm-up steps: so short a run's exponents "
                      f"are dominated by its start (a transient of about 1/T nats per step); give at least "
                      f"{FEW_STEPS} (longer inputs or less warm-up)", UserWarning, stacklevel=3)
    result = job.run()
    not_finite = int((~torch.isfinite(result)).sum())
    if not_finite:
        cause = "the module's weights, its inputs or h0" if where == "module_spectrum" else "the step, its inputs or h0"
        warnings.warn(f"{where}: {not_finite} of {result.numel()} exponents are not finite: {cause} hold a NaN "
                      "or an infinity", UserWarning, stacklevel=3)
    return tag(result, job.meaning)


def module_spectrum(
    module: Union[Module, Cell, LanguageModel], inputs: Tensor, *, exponents: Optional[int] = None, warmup: int = 0,
    qr_every: int = 1, dtype: Union[str, torch.dtype] = "float64", min_exponent: float = MIN_EXPONENT,
    layout: Optional[str] = None, state: str = "h", method: str = "analytic", log_base: Union[str, int] = "e",
    h0: State = None, device: Device = None,
) -> Tensor:
    """The Lyapunov spectrum of a torch.nn.LSTM, GRU or RNN (tanh or relu; any number of layers;
    batch_first or not), or of an LSTMCell, GRUCell or RNNCell, driven by `inputs`, by the
    pipeline's QR method. docs/api.md states the convention with its mathematics.

    inputs: [T, K, input] ([K, T, input] when batch_first; a cell's always time first) or one
    sequence [T, input]: K samples, each starting from h0 (zero by default; as the module's forward
    takes it: [layers, K, hidden], an LSTM's a tuple (h0, c0); a cell's [K, hidden], an LSTMCell's a
    tuple). The first `warmup` steps only advance the state; fewer than FEW_STEPS steps after them
    give a UserWarning (so short a run says little).

    Returns a float64 tensor [k] on `device` (default None: the module's device; otherwise computed
    there from copies, the module is not moved): per sample the exponents (nats per step, bits with
    log_base 2), sorted, then the mean over the K samples; k = `exponents` (default all: layers x
    hidden, twice that for an LSTM's state hc). What is factorised: with several layers and state h,
    each layer's diagonal block of the block-triangular Jacobian on its own (min(k, hidden) columns
    each; each sample's k largest of the union are kept); otherwise (one layer, a cell, state hc) the
    whole Jacobian with k columns. So `exponents=k` gives the k QR columns that lead the full run and,
    once those are in order, its leading k. layout: None (default) keeps a stack's layers apart
    (`blocks`) where it gives all exponents for state h and is `sorted` otherwise; `blocks`: each
    layer's exponents sorted within the layer, layers in order (refused where a stack's exponents
    belong to no fixed layer: k below the total, state hc); `sorted`: one descending vector. state
    (LSTM only): `h`, c held fixed in the Jacobian (the paper's), or `hc`, the full (h, c). method:
    `analytic` Jacobians or `autograd` (torch.func through the module's own forward). dtype: float64
    or float32 (the weights are cast; exponents accumulate in float64). Per-step factors are floored
    at `min_exponent` nats; `qr_every` m re-orthonormalises every m steps.

    A torch.compile'd module is read through the module it wraps. A spectrum that is not finite
    (NaN weights, inputs or h0) is returned with a UserWarning.

    The module is only read (no gradients): in training mode it is evaluated in eval mode, and its
    mode is restored afterwards; dropout between layers acts in training only, so it has no effect.
    Refused with an LshError: a bidirectional module (no single time direction), an LSTM with
    proj_size > 0, inputs of the wrong rank or feature size, an option value not allowed.

    An lsh.models language model is accepted as well, with token ids [T, K] (or [T]) as inputs: an
    LSTM's is its nn.LSTM's spectrum on the embedded tokens, an RHN's the pipeline's own
    (lsh.lyapunov.model_spectra, one block).
    """
    options = _checked_options(dict(exponents=exponents, warmup=warmup, qr_every=qr_every, dtype=dtype,
                                    min_exponent=min_exponent, layout=layout, state=state, method=method,
                                    log_base=log_base, device=device))
    module = getattr(module, "_orig_mod", module)  # torch.compile's wrapper: the same parameters, uncompiled
    if isinstance(module, LanguageModel):
        job = _language_model_job(module, inputs, h0, options)
    else:
        job = _module_job(module, inputs, h0, options)
    return _run(job, "module_spectrum", warmup)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def step_spectrum(
    step: Callable[[Tensor, Tensor], Tensor], h0: Tensor, inputs: Tensor, *, exponents: Optional[int] = None,
    warmup: int = 0, qr_every: int = 1, dtype: Union[str, torch.dtype, None] = None,
    min_exponent: float = MIN_EXPONENT, layout: Optional[str] = None, log_base: Union[str, int] = "e",
    device: Device = None,
) -> Tensor:
    """The Lyapunov spectrum of the map h' = step(h, x) (a user's own cell), by torch.func Jacobians,
    with module_spectrum's QR loop, options and convention (one block: the whole Jacobian).

    step(h [B, L], x [B, ...]) -> h' [B, L]: a batch of states and inputs, row i of h' from row i of
    h and x alone. It is called on the whole batch (K samples) in warm-up and on batches of one
    (under torch.func.vmap) when differentiated, so it must be written in torch operations on its
    arguments: no .item(), .numpy(), in-place writes into h or x, or Python branches on their values.
    h0: [K, L] (K samples) or one state [L]; inputs: [T, K, ...] ([T, ...] with one state h0 [L]);
    floating inputs are cast to dtype, others (token ids) passed as they are.

    dtype: default None, h0's dtype (float32 or float64), since the step's own tensors (the weights
    it closes over) cannot be cast from here; device: default None, h0's device, and the step's own
    tensors must be there. Returns a float64 tensor [k] on that device; layout None or `sorted` (or
    `blocks`: the one block, the same). Refused with an LshError before any work: a step that fails
    on h0 and the first input, that returns anything but a floating tensor of h's shape and dtype,
    or that torch.func cannot differentiate.
    """
    options = _checked_options(dict(exponents=exponents, warmup=warmup, qr_every=qr_every, dtype=dtype,
                                    min_exponent=min_exponent, layout=layout, log_base=log_base, device=device),
                               dtype_of_h0=True)
    if not callable(step):
        raise LshError(f"step: expected a function step(h, x) -> h', got {type(step).__name__}")
    if not isinstance(h0, Tensor) or not h0.is_floating_point() or h0.dim() not in (1, 2) or h0.shape[-1] < 1:
        what = f"shape {tuple(h0.shape)}, dtype {h0.dtype}" if isinstance(h0, Tensor) else type(h0).__name__
        raise LshError(f"h0: expected floating-point states [K, L] or one state [L], got {what}")
    dt = options["dtype"] or resolve_dtype(h0.dtype, "h0's dtype")
    single = h0.dim() == 1
    z0 = h0.reshape(1, -1) if single else h0
    K, L = z0.shape
    if not isinstance(inputs, Tensor) or inputs.dim() < (1 if single else 2) or (not single and inputs.shape[1] != K):
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        want = "[T, ...] for one state h0 [L]" if single else f"[T, {K}, ...] for h0 of {K} samples"
        raise LshError(f"inputs: expected {want}, got {got}")
    xs = inputs.unsqueeze(1) if single else inputs
    steps = _steps_after_warmup(xs.shape[0], K, warmup)
    k = exponent_count(exponents, L, "step's", key="exponents", all_="None")
    layout_ = _layout(options["layout"], 1, "h", k, L)
    dev = options["device"] or h0.device
    z0 = z0.to(device=dev, dtype=dt)
    xs = xs.to(device=dev, dtype=dt) if xs.is_floating_point() else xs.to(dev)
    with torch.no_grad():
        try:
            out = step(z0, xs[0])
        except Exception as err:  # the user's code: one line naming it, not its traceback
            raise LshError(f"step: step(h, x) on h of shape {tuple(z0.shape)} ({dt}) and the first input x of shape "
                           f"{tuple(xs[0].shape)} raised {_first_line(err)}") from None
    if not isinstance(out, Tensor) or out.shape != z0.shape or out.dtype != dt:
        got = f"shape {tuple(out.shape)}, dtype {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
        raise LshError(f"step: returned {got} for h of shape {tuple(z0.shape)}, dtype {dt}; it must return h' of "
                       "h's shape and dtype")
    tangent = AutogradJacobian(lambda z, aux, x: (step(z, x), aux), z0, z0[:, :0], xs)
    try:
        tangent.check(0)
    except Exception as err:
        raise LshError(f"step: torch.func cannot differentiate it ({_first_line(err)}); write it in torch "
                       "operations on h and x: no .item(), .numpy(), in-place writes into h or x, or Python "
                       "branches on their values") from None

    def run() -> Tensor:
        with torch.no_grad(), float32_precision(False):
            per_sample, floored = qr_loop(tangent, warmup, steps, k, qr_every, dt, dev, min_exponent)
        return finish(per_sample, floored, 1, log_base, count=k)[layout_]

    return _run(_Job(steps, run, {"log_base": log_base, "layout": layout_, "state": "h"}), "step_spectrum", warmup)
