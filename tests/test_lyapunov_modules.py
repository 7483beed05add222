"""lsh.module_spectrum on a user's torch.nn.LSTM, GRU and RNN and their cells, and lsh.step_spectrum on
any step function: the analytic GRU and RNN Jacobians against autograd of the module's own forward, the
spectrum against the autograd method, against spectrum_of_map and against the pipeline's LSTM path; the
convention (docs/api.md: what is factorised, how samples are averaged, exponents=k, layouts, defaults);
input layouts, devices, options, warnings and refusals."""

from __future__ import annotations

import ast
import copy
import inspect
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from precision import EPS32, EPS64, spectrum_condition, spectrum_rounding, step_jacobians, two_ways
from torch import nn

import lsh
from lsh import bench, config, lyapunov
from lsh.config import Params
from lsh.errors import LshError
from lsh.lyapunov.modules import FEW_STEPS, layer_view, module_tangent
from lsh.models import ModelConfig, build_model

# Most tests drive short runs on purpose (small, fast cases); the warning about them is pinned by
# test_a_run_of_few_steps_after_warm_up_warns_naming_them (pytest.warns records it regardless).
pytestmark = pytest.mark.filterwarnings("ignore:.*steps after .* warm-up steps:UserWarning")

F64 = torch.float64
CPU = torch.device("cpu")
CELLS = ["gru", "rnn_tanh", "rnn_relu"]
TORCH_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
CELL_KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def cell(kind: str, layers: int = 1, *, inp: int = 3, hidden: int = 5, seed: int = 0, alive: bool = False,
         **kwargs) -> nn.Module:
    """A small float64 module with weights scaled up (saturating gates, dead relu units) unless `alive`:
    then small weights and positive biases keep every relu unit on (a well-conditioned Jacobian)."""
    torch.manual_seed(seed)
    if kind == "gru":
        m = nn.GRU(inp, hidden, num_layers=layers, **kwargs)
    elif kind == "lstm":
        m = nn.LSTM(inp, hidden, num_layers=layers, **kwargs)
    else:
        m = nn.RNN(inp, hidden, num_layers=layers, nonlinearity=kind.split("_")[1], **kwargs)
    return scaled(m, alive)


def torch_cell(kind: str, *, inp: int = 3, hidden: int = 5, seed: int = 0, alive: bool = False,
               bias: bool = True) -> nn.Module:
    """A float64 nn.LSTMCell, GRUCell or RNNCell (tanh, relu), weights scaled as `cell`'s."""
    torch.manual_seed(seed)
    if kind == "lstm":
        m = nn.LSTMCell(inp, hidden, bias=bias)
    elif kind == "gru":
        m = nn.GRUCell(inp, hidden, bias=bias)
    else:
        m = nn.RNNCell(inp, hidden, bias=bias, nonlinearity=kind.split("_")[1])
    return scaled(m, alive)


def one_layer(c: nn.Module) -> nn.Module:
    """The one-layer torch.nn module with a copy of cell c's weights (a separate module, not a view)."""
    layer = layer_view(c)
    module = type(layer)(c.input_size, c.hidden_size, 1, bias=c.bias, dtype=F64,
                         **({"nonlinearity": c.nonlinearity} if isinstance(c, nn.RNNCell) else {}))
    module.load_state_dict({f"{name}_l0": p.detach().clone() for name, p in c.named_parameters()})
    return module.eval()


def layer_of(module: nn.Module) -> nn.Module:
    """A cell's one-layer view (num_layers, hidden_size, input_size), a module itself."""
    return layer_view(module) if isinstance(module, TORCH_CELLS) else module


def scaled(m: nn.Module, alive: bool) -> nn.Module:
    """m in float64, eval mode, its weights scaled as `cell` says."""
    m = m.double().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if alive:
                p.mul_(0.3)
                if "bias" in name:
                    p.add_(1.0)
            else:
                p.mul_(2.0)
    return m


def inputs(T: int, K: int, inp: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(T, K, inp, generator=torch.Generator().manual_seed(seed), dtype=F64)


def flat_step(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """h' = step(h, x) on flat states [B, n H] through the module's own forward (time first, one step)."""
    n, H = module.num_layers, module.hidden_size

    def step(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hs = h.reshape(-1, n, H).transpose(0, 1).contiguous()
        return module(x.unsqueeze(0), hs)[1].transpose(0, 1).reshape(-1, n * H)

    return step


def terms(module: nn.Module) -> int:
    """The rounded terms an entry of the full Jacobian gathers, per layer of the chain: the pre-activations'
    sums (input + hidden terms; above layer 0 the input is the hidden size) and up to 4 gate terms of a
    few factors each (8 roundings); the chain multiplies the layers' blocks through hidden-long products."""
    module = layer_of(module)
    return module.num_layers * (8 + max(module.input_size, module.hidden_size) + module.hidden_size)


def rounding(module: nn.Module, xs: torch.Tensor, warmup: int, n: int, eps: float = EPS64, *, state: str = "h",
             exponents=None, h0=None, qr_every: int = 1) -> float:
    """precision.spectrum_rounding of one module_spectrum of `module` on xs [T, K, input] (time first), with
    n rounded terms to an entry in the dtype of eps: the QR loop's condition measured on its float64
    Jacobians (per-layer blocks where module_spectrum takes them: a stack's state h, any k). A cell's h0 as
    the cell takes it."""
    layer = layer_of(module)
    L = layer.num_layers * layer.hidden_size * (2 if state == "hc" else 1)
    k = exponents or L
    if h0 is not None and not isinstance(h0, tuple):
        h0 = (h0, torch.zeros_like(h0))
    shape = (layer.num_layers, xs.shape[1], layer.hidden_size)
    h0 = None if h0 is None else tuple(h.double().reshape(shape) for h in h0)
    tangent = module_tangent(module, xs.double(), state=state, per_layer=layer.num_layers > 1 and state == "h",
                             h0=h0)
    condition = spectrum_condition(step_jacobians(tangent, warmup, xs.shape[0] - warmup), k, qr_every)
    return spectrum_rounding(eps, n, condition, xs.shape[0] - warmup, xs.shape[1])


def all_relu_units_on(module: nn.RNN, xs: torch.Tensor) -> bool:
    """Every unit of every layer positive at every step: no zero row in any Jacobian."""
    module = one_layer(module) if isinstance(module, TORCH_CELLS) else module
    h = None
    for t in range(xs.shape[0]):
        _, h = module(xs[t : t + 1], h)
        if not bool((h > 0).all()):
            return False
    return True


# -----------------------------------------------------------------------------
# Analytic Jacobians against autograd of the module's forward


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("kind", CELLS)
def test_gru_and_rnn_analytic_jacobians_equal_autograd_of_the_modules_forward(kind, layers):
    module = cell(kind, layers)
    n, H, K, T = layers, 5, 3, 7
    xs = inputs(T, K)
    tangent = module_tangent(module, xs, per_layer=False)
    for t in range(T - 1):
        tangent.advance(t)
    eye = torch.eye(n * H, dtype=F64).expand(K, 1, n * H, n * H).contiguous()
    analytic = tangent.propagate(T - 1, eye)[:, 0]  # [K, nH, nH]
    with torch.no_grad():
        _, h = module(xs[: T - 1])  # the state the last step starts from, [n, K, H]
    step = flat_step(module)
    for i in range(K):
        h_i = h[:, i].reshape(-1)
        reference = torch.autograd.functional.jacobian(lambda z, i=i: step(z[None], xs[T - 1, i : i + 1])[0], h_i)
        # float64, the same sums in two orders (see `terms`); a gate term 10 % off moves entries by 3e-3 or more
        tol = two_ways(EPS64, terms(module), reference.abs().max().item())
        torch.testing.assert_close(analytic[i], reference, rtol=0, atol=tol)
    if kind == "rnn_relu":  # the check bites on the relu mask: some units are off
        assert bool((analytic.abs().sum(-1) == 0).any())
    # the per-layer blocks are the full Jacobian's diagonal blocks
    blocks = module_tangent(module, xs, per_layer=True)
    for t in range(T - 1):
        blocks.advance(t)
    diag = blocks.jacobian(T - 1)
    # the same row-scaled sums of up to 4 gate terms (8 roundings) in both paths, vectorised maybe otherwise
    tol = two_ways(EPS64, 8, analytic.abs().max().item())
    for l in range(n):
        torch.testing.assert_close(diag[:, l], analytic[:, l * H : (l + 1) * H, l * H : (l + 1) * H], rtol=0, atol=tol)


def test_gru_without_biases_matches_autograd():
    module = cell("gru", 2, bias=False)
    xs = inputs(5, 2)
    tangent = module_tangent(module, xs)
    for t in range(4):
        tangent.advance(t)
    analytic = tangent.propagate(4, torch.eye(10, dtype=F64).expand(2, 1, 10, 10).contiguous())[:, 0]
    with torch.no_grad():
        _, h = module(xs[:4])
    step = flat_step(module)
    for i in range(2):
        reference = torch.autograd.functional.jacobian(lambda z, i=i: step(z[None], xs[4, i : i + 1])[0],
                                                       h[:, i].reshape(-1))
        tol = two_ways(EPS64, terms(module), reference.abs().max().item())  # float64, as above
        torch.testing.assert_close(analytic[i], reference, rtol=0, atol=tol)


# -----------------------------------------------------------------------------
# Spectra: analytic against autograd, spectrum_of_map and the pipeline


SPECTRUM_CASES = [("gru", 1, "h"), ("gru", 2, "h"), ("rnn_tanh", 1, "h"), ("rnn_tanh", 3, "h"), ("rnn_relu", 1, "h"),
                  ("rnn_relu", 2, "h"), ("lstm", 2, "h"), ("lstm", 2, "hc")]


@pytest.mark.parametrize("kind,layers,state", SPECTRUM_CASES)
def test_module_spectrum_analytic_equals_method_autograd(kind, layers, state):
    module, xs = cell(kind, layers, alive=kind == "rnn_relu"), inputs(40, 3)
    if kind == "rnn_relu":
        assert all_relu_units_on(module, xs)
    for exponents in (None, 4):
        a = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents, method="analytic")
        b = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents, method="autograd")
        assert a.dtype == F64 and a.shape == (exponents or layers * 5 * (2 if state == "hc" else 1),)
        # float64: both Jacobians (see `terms`) and the L-row products and QRs, amplified by the loop's
        # measured condition
        L = layers * 5 * (2 if state == "hc" else 1)
        tol = 2 * rounding(module, xs, 5, terms(module) + L, state=state, exponents=exponents)
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


@pytest.mark.parametrize("kind", CELLS)
def test_module_spectrum_equals_spectrum_of_map_on_the_modules_step_from_h0(kind):
    # one layer: the whole Jacobian either way (a stack's layers are factorised apart, spectrum_of_map's
    # Jacobian whole: they differ by a transient, see test_a_stacks_h_spectrum_is_factorised_layer_by_layer)
    for layers, k in ((1, None), (1, 3)):
        module, xs = cell(kind, layers, alive=kind == "rnn_relu"), inputs(40, 2)
        h0 = 0.5 * torch.randn(layers, 2, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
        ours = lsh.module_spectrum(module, xs, warmup=5, exponents=k, h0=h0)
        ref = lyapunov.spectrum_of_map(flat_step(module), h0.transpose(0, 1).reshape(2, -1), xs, warmup=5, exponents=k)
        # float64, analytic against autograd as above; another h0 moves the spectrum by more than that
        tol = 2 * rounding(module, xs, 5, terms(module) + layers * 5, exponents=k, h0=h0)
        torch.testing.assert_close(ours, ref, rtol=0, atol=tol)
        if kind != "rnn_relu":  # with every relu unit on, J = U at every step: no state has an effect
            assert not torch.allclose(ours, lsh.module_spectrum(module, xs, warmup=5, exponents=k), rtol=0, atol=tol)


def test_lstm_h0_and_c0_start_the_analytic_and_autograd_paths_alike():
    module, xs = cell("lstm", 2), inputs(20, 2)
    g = torch.Generator().manual_seed(2)
    h0 = (torch.randn(2, 2, 5, generator=g, dtype=F64), torch.randn(2, 2, 5, generator=g, dtype=F64))
    for state in ("h", "hc"):
        a = lsh.module_spectrum(module, xs, warmup=2, state=state, h0=h0)
        b = lsh.module_spectrum(module, xs, warmup=2, state=state, h0=h0, method="autograd")
        L = 10 * (2 if state == "hc" else 1)
        tol = 2 * rounding(module, xs, 2, terms(module) + L, state=state, h0=h0)  # float64, as above
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_an_lstm_language_model_is_its_lstms_spectrum_and_the_pipelines_where_the_conventions_meet():
    torch.manual_seed(0)
    model = build_model(ModelConfig(type="lstm", vocab=30, emb=4, hidden=6, layers=2)).double().eval()
    module = nn.LSTM(4, 6, num_layers=2).double()
    module.load_state_dict(model.lstm.state_dict())
    tokens = torch.randint(0, 30, (30, 3), generator=torch.Generator().manual_seed(0))
    xs = model.embed(tokens).detach()
    for state, exponents in (("h", None), ("h", 5), ("hc", None), ("hc", 5)):
        pipeline = lyapunov.model_spectra(model, tokens, warmup=5, state=state, exponents=exponents, dtype="float64",
                                          device="cpu")
        L = 12 * (2 if state == "hc" else 1)
        # the same float64 code on other copies of equal inputs (MKL may take another kernel for other
        # memory alignment), amplified by the loop's measured condition
        tol = 2 * rounding(module, xs, 5, terms(module) + L, state=state, exponents=exponents)
        for layout in ("blocks", "sorted") if state == "h" and exponents is None else ("sorted",):
            ours = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents, layout=layout)
            # the language model with its token ids: its nn.LSTM on the embedded tokens, the very same operations
            direct = lsh.module_spectrum(model, tokens, warmup=5, state=state, exponents=exponents, layout=layout)
            torch.testing.assert_close(direct, lsh.module_spectrum(model.lstm, model.embed(tokens), warmup=5,
                                                                   state=state, exponents=exponents, layout=layout),
                                       rtol=0, atol=0)
            if exponents is None or state == "hc":  # one factorisation: the layers' blocks, or the whole hc Jacobian
                torch.testing.assert_close(ours, pipeline[layout], rtol=0, atol=tol)
                torch.testing.assert_close(direct, pipeline[layout], rtol=0, atol=0)  # the same code: exactly
        if state == "h" and exponents is not None:
            # the pipeline's exponents: k factorise the whole h Jacobian, module_spectrum's the layers' blocks
            whole = lyapunov.qr_loop(module_tangent(module, xs, per_layer=False), 5, 25, 5, 1, F64, CPU)[0]
            torch.testing.assert_close(pipeline["sorted"], whole.sort(descending=True).values.mean(0), rtol=0, atol=tol)
            assert (ours - pipeline["sorted"]).abs().max() > tol


# -----------------------------------------------------------------------------
# Input layouts


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "lstm"])
def test_batch_first_gives_the_same_spectrum_as_time_first(kind):
    time_first, xs = cell(kind, 2), inputs(25, 3)
    batch_first = cell(kind, 2, batch_first=True)
    torch.testing.assert_close(batch_first.state_dict(), time_first.state_dict(), rtol=0, atol=0)  # one seed: equal
    # float64, the same steps on inputs in another layout (kernels may differ by strides), amplified by the
    # loop's measured condition
    tol = 2 * rounding(time_first, xs, 3, terms(time_first) + 10)
    for method in ("analytic", "autograd"):
        a = lsh.module_spectrum(time_first, xs, warmup=3, method=method)
        b = lsh.module_spectrum(batch_first, xs.transpose(0, 1).contiguous(), warmup=3, method=method)
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_one_sequence_equals_a_batch_of_one():
    for kind in ("gru", "lstm"):
        for batch_first in (False, True):  # an unbatched sequence is [T, input] either way, as torch takes it
            module, xs = cell(kind, 2, batch_first=batch_first), inputs(20, 1)
            batched = xs.transpose(0, 1) if batch_first else xs
            one = lsh.module_spectrum(module, xs[:, 0], warmup=2)
            # the same memory seen as [T, 1, input]: the very same operations, exactly
            torch.testing.assert_close(one, lsh.module_spectrum(module, batched, warmup=2), rtol=0, atol=0)
    module, xs = cell("gru", 2), inputs(20, 1)
    h0 = torch.randn(2, 5, generator=torch.Generator().manual_seed(3), dtype=F64)  # [layers, hidden], unbatched
    torch.testing.assert_close(lsh.module_spectrum(module, xs[:, 0], h0=h0),
                               lsh.module_spectrum(module, xs, h0=h0[:, None]), rtol=0, atol=0)


def per_sample_columns(module: nn.Module, xs: torch.Tensor, warmup: int, *, state: str = "h",
                       per_layer: bool | None = None) -> torch.Tensor:
    """Each sample's exponents by QR column, unsorted ([K, L], block by block), of the run with every column
    (analytic, float64; per-layer blocks as module_spectrum takes them unless `per_layer` says): what
    module_spectrum sorts, keeps the leading k of and averages."""
    layer = layer_of(module)
    per_layer = layer.num_layers > 1 and state == "h" if per_layer is None else per_layer
    L = layer.num_layers * layer.hidden_size * (2 if state == "hc" else 1)
    with torch.no_grad():
        tangent = module_tangent(module, xs, state=state, per_layer=per_layer)
        return lyapunov.qr_loop(tangent, warmup, xs.shape[0] - warmup, L, 1, F64, CPU)[0]


@pytest.mark.parametrize("kind,layers,state,exponents", [("gru", 1, "h", None), ("lstm", 1, "h", None),
                                                         ("gru", 2, "h", None), ("gru", 2, "h", 3),
                                                         ("lstm", 2, "hc", 4), ("lstm_cell", 1, "hc", None)])
def test_samples_are_averaged_after_sorting_each(kind, layers, state, exponents):
    module = torch_cell("lstm", seed=3) if kind == "lstm_cell" else cell(kind, layers, seed=3)
    xs = inputs(30, 3)
    L = layers * 5 * (2 if state == "hc" else 1)
    # float64: a batch of 3 may take other kernels than a batch of 1, amplified by the loop's measured condition
    tol = 2 * rounding(module, xs, 4, terms(module) + L, state=state, exponents=exponents)
    by_layer = layers > 1 and state == "h" and exponents is None
    for layout in ("blocks", "sorted") if by_layer else ("sorted",):
        batched = lsh.module_spectrum(module, xs, warmup=4, state=state, exponents=exponents, layout=layout)
        singles = torch.stack([lsh.module_spectrum(module, xs[:, i], warmup=4, state=state, exponents=exponents,
                                                   layout=layout) for i in range(3)])
        torch.testing.assert_close(batched, singles.mean(0), rtol=0, atol=tol)
    if (kind, layers) == ("lstm", 1):  # here a sample's QR columns cross: the mean of each column, sorted
        columns = per_sample_columns(module, xs, 4)  # afterwards (the other order), is far off
        assert bool((columns.diff(dim=-1) > 0).any())
        by_column = columns.mean(0).sort(descending=True).values
        assert (by_column - batched).abs().max() > 100 * tol


def test_a_float32_module_is_read_in_float64_and_float32_agrees_loosely():
    module = cell("gru", 2).float()
    xs = inputs(30, 2).float()
    f64 = lsh.module_spectrum(module, xs, warmup=3)
    f32 = lsh.module_spectrum(module, xs, warmup=3, dtype="float32")
    assert f64.dtype == f32.dtype == F64 and next(module.parameters()).dtype == torch.float32
    # float32 values read exactly in float64: the same float64 steps on other copies of them (see above)
    tol = 2 * rounding(module, xs, 3, terms(module) + 10)
    torch.testing.assert_close(f64, lsh.module_spectrum(module.double(), xs.double(), warmup=3), rtol=0, atol=tol)
    # the float32 run's rounding, amplified alike (the state's own rounding does not grow: every exponent is
    # negative)
    assert f64.max() < 0
    tol = sum(rounding(module, xs, 3, terms(module) + 10, eps) for eps in (EPS32, EPS64))
    torch.testing.assert_close(f32, f64, rtol=0, atol=tol)


# -----------------------------------------------------------------------------
# Options: k leading exponents, layouts, modes


def test_blocks_and_sorted_layouts_hold_the_same_values_blocks_per_layer():
    for kind in ("gru", "rnn_tanh", "lstm"):
        module, xs = cell(kind, 3), inputs(30, 2)
        blocks = lsh.module_spectrum(module, xs, warmup=3)
        ordered = lsh.module_spectrum(module, xs, warmup=3, layout="sorted")
        assert blocks.shape == ordered.shape == (15,)
        for l in range(3):  # each layer's exponents descend within the layer
            part = blocks[l * 5 : (l + 1) * 5]
            assert bool((part[:-1] >= part[1:]).all())
        assert bool((ordered[:-1] >= ordered[1:]).all())
        # mean of per-sample sorts: the same multiset only for one sample; the sums always agree, up to
        # float64 sums of the same 2 x 15 values in other orders
        tol = two_ways(EPS64, 2 + 15, blocks.abs().sum().item())
        torch.testing.assert_close(blocks.sum(), ordered.sum(), rtol=0, atol=tol)
        one = lsh.module_spectrum(module, xs[:, 0], warmup=3)
        # one sample: the same run, its values sorted alike, exactly
        torch.testing.assert_close(one.sort(descending=True).values,
                                   lsh.module_spectrum(module, xs[:, 0], warmup=3, layout="sorted"), rtol=0, atol=0)
        assert not torch.equal(blocks, ordered)


def test_training_mode_is_restored_and_dropout_between_layers_has_no_effect():
    module, xs = cell("gru", 2, dropout=0.5), inputs(2 + FEW_STEPS, 2)  # no warning about a short run either
    reference = lsh.module_spectrum(module, xs, warmup=2)
    tol = 2 * rounding(module, xs, 2, terms(module) + 10)  # float64, analytic against autograd as above
    module.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about the mode
        for method in ("analytic", "autograd"):
            torch.testing.assert_close(lsh.module_spectrum(module, xs, warmup=2, method=method), reference,
                                       rtol=0, atol=tol)
            assert module.training
    with pytest.raises(LshError):
        lsh.module_spectrum(module, xs, layout="columns")
    assert module.training  # restored after a refusal too


def test_the_module_is_only_read():
    module, xs = cell("lstm", 2), inputs(10, 2)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    for method in ("analytic", "autograd"):
        lsh.module_spectrum(module, xs, method=method, dtype="float32")
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == F64 for k in before)
    assert all(p.grad is None and p.requires_grad for p in module.parameters())


def test_analytic_module_path_builds_no_dense_diagonal_matrices(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dense diagonal matrix was built")

    for name in ("diag_embed", "diag", "diagflat"):
        monkeypatch.setattr(torch, name, refuse)
    for kind in CELLS:
        for exponents in (None, 3):
            lsh.module_spectrum(cell(kind, 2), inputs(8, 2), warmup=2, exponents=exponents)


# -----------------------------------------------------------------------------
# Refusals: one LshError naming the problem


def test_a_bidirectional_module_is_refused_naming_the_direction():
    for kind in ("gru", "rnn_tanh", "lstm"):
        with pytest.raises(LshError, match="bidirectional .* no single time direction"):
            lsh.module_spectrum(cell(kind, 1, bidirectional=True), inputs(5, 1))


def test_an_lstm_with_a_projection_is_refused():
    with pytest.raises(LshError, match="proj_size = 2 is not supported"):
        lsh.module_spectrum(nn.LSTM(3, 5, proj_size=2), inputs(5, 1).float())


@pytest.mark.parametrize("bad,message", [
    (torch.zeros(5, 2, 4, dtype=F64),
     r"inputs: 4 features in the last axis of shape \(5, 2, 4\); the module's input_size is 3"),
    (torch.zeros(5, 2, 1, 3, dtype=F64),
     r"inputs: expected \[T, K, input\] or one sequence \[T, input\], got shape \(5, 2, 1, 3\)"),
    (torch.zeros(3, dtype=F64), r"got shape \(3,\)"),
    (torch.zeros(5, 2, 3, dtype=torch.int64), r"inputs: expected floating-point features, got dtype torch.int64"),
    (torch.zeros(4, 2, 3, dtype=F64), r"inputs: 4 steps of 2 samples leave no step after 4 warm-up steps"),
])
def test_inputs_of_the_wrong_size_or_rank_are_refused_naming_the_shape(bad, message):
    with pytest.raises(LshError, match=message):
        lsh.module_spectrum(cell("gru", 1), bad, warmup=4)


@pytest.mark.parametrize("option,value,message", [
    ("layout", "columns", r"layout = 'columns': allowed are blocks, sorted or None \(the default\)"),
    ("layout", "blocks", r"layout = 'blocks': exponents = 3 of 10 are the 3 largest of the 2 layers together"),
    ("device", "tpu", r"device = 'tpu': allowed are auto, cpu, cuda"),
    ("method", "jacfwd", r"method = 'jacfwd': allowed are analytic, autograd"),
    ("state", "c", r"state = 'c': allowed are h, hc"),
    ("dtype", "float16", r"dtype = 'float16': allowed are float32, float64"),
    ("log_base", 10, r"log_base = 10: allowed are e, 2"),
    ("min_exponent", 1.0, r"min_exponent = 1.0: must be a negative number"),
    ("qr_every", 0, r"qr_every = 0: must be an integer >= 1"),
    ("warmup", -1, r"warmup = -1: must be an integer >= 0"),
    ("exponents", 11, r"exponents = 11: the GRU's h state has 10 dimensions; allowed are 1..10 or None \(all\)"),
    ("state", "hc", r"state = 'hc': only an LSTM has a cell state; the GRU has one state vector \(use h\)"),
    ("h0", torch.zeros(2, 5, dtype=F64), r"h0: expected shape \(2, 2, 5\) \(layers, samples, hidden\), got \(2, 5\)"),
])
def test_an_option_value_not_allowed_is_refused_naming_the_option_and_the_allowed_values(option, value, message):
    extra = {"exponents": 3} if (option, value) == ("layout", "blocks") else {}
    with pytest.raises(LshError, match=message):
        lsh.module_spectrum(cell("gru", 2), inputs(6, 2), **{option: value}, **extra)


def test_other_modules_are_refused_naming_what_is_accepted():
    with pytest.raises(LshError, match=r"expected a torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, or an "
                                       r"lsh.models language model \(any other step h' = f\(h, x\): "
                                       r"lsh.step_spectrum\); got Linear"):
        lsh.module_spectrum(nn.Linear(3, 3), inputs(5, 1))
    model = build_model(ModelConfig(type="lstm", vocab=30, emb=4, hidden=6, layers=1))
    with pytest.raises(LshError, match=r"a language model takes token ids \[T, K\]"):
        lsh.module_spectrum(model, inputs(5, 1, inp=4).float())


# -----------------------------------------------------------------------------
# The benchmark's GRU and RNN cases (their code path; timings are not asserted)


def test_bench_spectrum_reports_gru_and_rnn_cases_against_autograd_and_the_floor():
    params = Params.from_dict(config.load_params(REPO / "workflow" / "presets" / "smoke.yaml", [
        "lyapunov.steps=3", "lyapunov.warmup=2", "lyapunov.device=cpu", "lyapunov.dtype=float64"]))
    for name in bench.CELLS:
        result = bench.bench_cell_spectrum(params, name, {"emb": 4, "hidden": 4, "layers": 2}, repeats=1)
        assert result["model"] == {"type": name, "emb": 4, "hidden": 4, "layers": 2} and result["per_layer"] is True
        for key in ("analytic_s", "floor_s", "autograd_s", "autograd_blocks_s", "analytic_full_s"):
            assert result[key] > 0, key
        # relu: units off together at one step leave the basis of the dead directions to rounding, so
        # the trailing exponents of the two methods may differ; not asserted. Otherwise float64, analytic
        # against autograd as above, on the benchmark's own module and inputs
        module, xs = bench._cell_inputs(params, name, {"emb": 4, "hidden": 4, "layers": 2}, CPU, F64)
        tol = 2 * rounding(module, xs, 2, terms(module) + 8) if name != "rnn_relu" else float("inf")
        assert result["max_abs_diff_analytic_autograd"] < tol
        ratios = {"ratio_analytic_over_floor", "ratio_autograd_over_analytic", "ratio_autograd_blocks_over_analytic"}
        assert ratios <= set(result)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch._dynamo loading torch.jit
def test_a_compiled_module_gives_the_spectrum_of_the_module_it_wraps():
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, 2)
    xs = torch.randn(12, 2, 3)
    compiled = torch.compile(module)  # a wrapper until called: nothing is compiled here
    assert torch.equal(lsh.module_spectrum(compiled, xs, warmup=2), lsh.module_spectrum(module, xs, warmup=2))


def test_nan_weights_or_inputs_give_a_warning_naming_the_cause():
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4)
    xs = torch.randn(8, 2, 3)
    xs[3, 0, 1] = float("nan")
    with pytest.warns(UserWarning, match="exponents are not finite: the module's weights, its inputs or h0"):
        lsh.module_spectrum(module, xs)
    with torch.no_grad():
        module.weight_hh_l0[0, 0] = float("nan")
    with pytest.warns(UserWarning, match="4 of 4 exponents are not finite"):
        assert not torch.isfinite(lsh.module_spectrum(module, xs[:2] * 0 + 1)).any()


# -----------------------------------------------------------------------------
# The convention (docs/api.md): what is factorised, exponents=k, layouts, defaults


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "lstm"])
def test_a_stacks_h_spectrum_is_factorised_layer_by_layer_for_every_exponent_count(kind):
    module, xs = cell(kind, 2, seed=1), inputs(60, 3)
    blocks = per_sample_columns(module, xs, 5)  # [3, 10]: layer 1's 5 columns, then layer 2's
    whole = per_sample_columns(module, xs, 5, per_layer=False)
    for k in (1, 3, 7, 10):
        ours = lsh.module_spectrum(module, xs, warmup=5, exponents=k, layout="sorted")
        # each layer's block with min(k, 5) columns: the first columns of its full run (Householder QR's first
        # columns never see the others); each sample's k largest of the union, sorted, then the mean
        kept = blocks.view(3, 2, 5)[:, :, : min(k, 5)].reshape(3, -1).sort(descending=True).values[:, :k].mean(0)
        # float64, 10-row blocks and products of other widths (see `terms`), amplified by the measured condition
        tol = 2 * rounding(module, xs, 5, terms(module) + 10, exponents=k)
        torch.testing.assert_close(ours, kept, rtol=0, atol=tol)
        # the whole Jacobian's k columns (the pipeline's exponents: k) differ by a transient: the choice is seen
        assert (ours - whole.sort(descending=True).values[:, :k].mean(0)).abs().max() > 100 * tol


def test_an_lstms_hc_spectrum_factorises_the_whole_jacobian():
    module, xs = cell("lstm", 2, seed=1), inputs(60, 3)
    whole = per_sample_columns(module, xs, 5, state="hc")  # [3, 20], one block
    for k in (3, 20):
        ours = lsh.module_spectrum(module, xs, warmup=5, state="hc", exponents=k)
        tol = 2 * rounding(module, xs, 5, terms(module) + 20, state="hc", exponents=k)  # float64, as above
        torch.testing.assert_close(ours, whole[:, :k].sort(descending=True).values.mean(0), rtol=0, atol=tol)


def step_cases() -> list[tuple[str, nn.Module, str]]:
    """(name, module, state): a stack (state h and an LSTM's hc), one layer, and cells."""
    return [("gru2", cell("gru", 2, seed=1), "h"), ("lstm2", cell("lstm", 2, seed=1), "h"),
            ("lstm2", cell("lstm", 2, seed=1), "hc"), ("rnn1", cell("rnn_tanh", 1, seed=1), "h"),
            ("lstm_cell", torch_cell("lstm", seed=1), "hc"), ("gru_cell", torch_cell("gru", seed=1), "h")]


@pytest.mark.parametrize("method", ["analytic", pytest.param("autograd", marks=pytest.mark.slow)])  # autograd: 20 s
def test_exponents_k_are_the_leading_k_of_the_full_result_in_every_path(method):
    xs = inputs(120, 2)  # long enough for every sample's columns to settle in order (asserted below)
    for name, module, state in step_cases():
        layer = layer_of(module)
        n, H = layer.num_layers, layer.hidden_size * (2 if state == "hc" else 1)
        L = n * H
        # the premise: every sample's QR columns have settled in descending order within each block (then the
        # k leading columns of each block hold the block's k largest, and the union's k largest are among them)
        columns = per_sample_columns(module, xs, 5, state=state)
        blocks = n if state == "h" else 1
        assert bool((columns.view(2, blocks, -1).diff(dim=-1) <= 0).all()), name
        full = lsh.module_spectrum(module, xs, warmup=5, state=state, method=method, layout="sorted")
        for k in (k for k in (1, 3, 7) if k < L):  # 7: more than one layer's 5
            lead = lsh.module_spectrum(module, xs, warmup=5, state=state, method=method, exponents=k)
            assert lead.shape == (k,)
            # float64: each run's Jacobians and L-row products and QRs (see `terms`), amplified by the
            # loop's measured condition, for the k-column run and the full one
            tol = sum(rounding(module, xs, 5, terms(module) + L, state=state, exponents=e) for e in (k, None))
            torch.testing.assert_close(lead, full[:k], rtol=0, atol=tol)
    step, h0 = rnn_as_step(cell("rnn_tanh", 1, seed=1)), torch.zeros(2, 5, dtype=F64)
    full = lsh.step_spectrum(step, h0, xs, warmup=5)
    lead = lsh.step_spectrum(step, h0, xs, warmup=5, exponents=3)
    tol = sum(rounding(cell("rnn_tanh", 1, seed=1), xs, 5, terms(cell("rnn_tanh", 1)) + 5, exponents=e)
              for e in (3, None))  # float64, as above
    torch.testing.assert_close(lead, full[:3], rtol=0, atol=tol)


def test_layout_blocks_keeps_layers_apart_only_where_a_stack_gives_all_its_h_exponents():
    stack, lstm, xs = cell("gru", 2), cell("lstm", 2), inputs(30, 2)
    # the default: blocks where the layers are kept apart, sorted elsewhere; the same run, so exactly equal
    torch.testing.assert_close(lsh.module_spectrum(stack, xs), lsh.module_spectrum(stack, xs, layout="blocks"),
                               rtol=0, atol=0)
    assert not torch.equal(lsh.module_spectrum(stack, xs), lsh.module_spectrum(stack, xs, layout="sorted"))
    torch.testing.assert_close(lsh.module_spectrum(stack, xs, exponents=3),
                               lsh.module_spectrum(stack, xs, exponents=3, layout="sorted"), rtol=0, atol=0)
    torch.testing.assert_close(lsh.module_spectrum(lstm, xs, state="hc"),
                               lsh.module_spectrum(lstm, xs, state="hc", layout="sorted"), rtol=0, atol=0)
    # blocks asked for where a stack's exponents belong to no fixed layer: refused, naming why
    with pytest.raises(LshError, match=r"layout = 'blocks': exponents = 3 of 10 are the 3 largest of the 2 layers "
                                       r"together, not a fixed number per layer; use layout='sorted'"):
        lsh.module_spectrum(stack, xs, exponents=3, layout="blocks")
    with pytest.raises(LshError, match=r"layout = 'blocks': state 'hc' factorises the whole \(h, c\) Jacobian of "
                                       r"the 2 layers, so no exponent belongs to one layer"):
        lsh.module_spectrum(lstm, xs, state="hc", layout="blocks")
    # one block (one layer, a cell, a step function): blocks is that block sorted, the very same vector
    for module in (cell("gru", 1), torch_cell("lstm")):
        for k in (None, 2):
            torch.testing.assert_close(lsh.module_spectrum(module, xs, exponents=k, layout="blocks"),
                                       lsh.module_spectrum(module, xs, exponents=k, layout="sorted"), rtol=0, atol=0)
    step, h0 = rnn_as_step(cell("rnn_tanh", 1)), torch.zeros(2, 5, dtype=F64)
    torch.testing.assert_close(lsh.step_spectrum(step, h0, xs, layout="blocks"), lsh.step_spectrum(step, h0, xs),
                               rtol=0, atol=0)


def test_a_spectrum_carries_the_options_that_decide_its_meaning_with_the_layout_resolved():
    stack, xs = cell("gru", 2), inputs(30, 2)
    step, h0 = rnn_as_step(cell("rnn_tanh", 1)), torch.zeros(2, 5, dtype=F64)
    assert lsh.module_spectrum(stack, xs).lsh_options == {"log_base": "e", "layout": "blocks", "state": "h",
                                                          "exponents": 10}
    assert lsh.module_spectrum(stack, xs, exponents=3, log_base=2).lsh_options == {
        "log_base": "2", "layout": "sorted", "state": "h", "exponents": 3}
    assert lsh.module_spectrum(cell("lstm", 2), xs, state="hc").lsh_options["layout"] == "sorted"
    assert lsh.step_spectrum(step, h0, xs).lsh_options == {"log_base": "e", "layout": "sorted", "state": "h",
                                                           "exponents": 5}


def documented_defaults() -> list[tuple[str, str, str, str]]:
    """docs/api.md's table of defaults: (option, module_spectrum's, step_spectrum's, the pipeline's)."""
    text = (REPO / "docs" / "api.md").read_text()
    return re.findall(r"^\| `(\w+)` \| `([^`]*)` \| (`[^`]*`|-) \| `([^`]*)` \|", text, re.M)


def test_the_documented_defaults_are_the_signatures_and_the_pipelines_params():
    rows = documented_defaults()
    library = inspect.signature(lsh.module_spectrum).parameters
    step = inspect.signature(lsh.step_spectrum).parameters
    pipeline = yaml.safe_load((REPO / "params.yaml").read_text())["lyapunov"]
    options = {name for name, p in library.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"h0"}
    assert {row[0] for row in rows} == options  # every option, once
    for name, ours, theirs, pipe in rows:
        assert ast.literal_eval(ours) == library[name].default, name
        if theirs == "-":  # not an option of step_spectrum
            assert name not in step, name
        else:
            assert ast.literal_eval(theirs.strip("`")) == step[name].default, name
        assert yaml.safe_load(pipe) == pipeline[name], name
    # the threshold of the warning about short runs, as documented; the pipeline's default run is above it
    assert f"Fewer than {FEW_STEPS} steps after warm-up" in (REPO / "docs" / "api.md").read_text()
    assert pipeline["steps"] >= FEW_STEPS


def test_the_documented_call_on_a_language_models_lstm_takes_the_embedded_probe():
    calls = re.findall(r"module_spectrum\(model\.lstm, ([\w.]+(?:\(\w+\))?)\)",
                       (REPO / "docs" / "api.md").read_text() + (REPO / "README.md").read_text())
    assert calls and "probe" not in calls, calls  # token ids go through the embedding first
    model = build_model(ModelConfig(type="lstm", vocab=30, emb=4, hidden=6, layers=2))
    probe = torch.randint(0, 30, (25, 2), generator=torch.Generator().manual_seed(0))  # token ids [T, K]
    assert lsh.module_spectrum(model.lstm, model.embedding(probe)).shape == (12,)
    with pytest.raises(LshError, match=r"inputs: expected floating-point features, got dtype torch.int64 \(token ids "
                                       r"are for an lsh.models language model\)"):
        lsh.module_spectrum(model.lstm, probe)


# -----------------------------------------------------------------------------
# A short run warns


def test_a_run_of_few_steps_after_warm_up_warns_naming_them():
    module, step, h0 = cell("gru", 1), rnn_as_step(cell("rnn_tanh", 1)), torch.zeros(2, 5, dtype=F64)
    rhn = build_model(ModelConfig(type="rhn", vocab=30, emb=4, hidden=6, depth=2))
    tokens = torch.randint(0, 30, (5 + FEW_STEPS, 2), generator=torch.Generator().manual_seed(0))
    runs = {"module_spectrum": lambda T: lsh.module_spectrum(module, inputs(T, 2), warmup=5),
            "step_spectrum": lambda T: lsh.step_spectrum(step, h0, inputs(T, 2), warmup=5),
            "module_spectrum ": lambda T: lsh.module_spectrum(rhn, tokens[:T], warmup=5)}  # the pipeline's path
    for where, run in runs.items():
        with pytest.warns(UserWarning, match=rf"{where.strip()}: only {FEW_STEPS - 1} steps after 5 warm-up steps: "
                                             rf".*give at least {FEW_STEPS}") as record:
            run(4 + FEW_STEPS)
        assert [w.filename for w in record if "steps after" in str(w.message)] == [__file__]  # the caller's line
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run(5 + FEW_STEPS)  # enough steps: no warning


# -----------------------------------------------------------------------------
# Cells: nn.LSTMCell, GRUCell, RNNCell


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_a_cell_gives_exactly_the_spectrum_of_the_one_layer_module_with_its_weights(kind):
    lstm = kind == "lstm"
    g = torch.Generator().manual_seed(4)
    h, c = (0.5 * torch.randn(3, 5, generator=g, dtype=F64) for _ in range(2))
    for bias in (True, False):
        module = torch_cell(kind, bias=bias, alive=kind == "rnn_relu")
        layer, xs = one_layer(module), inputs(30, 3)
        for state in ("h", "hc") if lstm else ("h",):
            for exponents in (None, 2):
                ours = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents,
                                           h0=(h, c) if lstm else h)
                theirs = lsh.module_spectrum(layer, xs, warmup=5, state=state, exponents=exponents,
                                             h0=(h[None], c[None]) if lstm else h[None])
                # the same analytic code on equal weights and inputs: exactly
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        # one sequence [T, input] with a state [H] as the cell takes it unbatched: a batch of one, exactly
        one = lsh.module_spectrum(module, xs[:, 0], warmup=5, h0=(h[0], c[0]) if lstm else h[0])
        batch = lsh.module_spectrum(layer, xs[:, :1], warmup=5, h0=(h[None, :1], c[None, :1]) if lstm else h[None, :1])
        torch.testing.assert_close(one, batch, rtol=0, atol=0)
    if kind != "rnn_relu":  # h0 has an effect (with every relu unit on, J = U at every step: none)
        module, xs = torch_cell(kind), inputs(30, 3)
        tol = 2 * rounding(module, xs, 5, terms(module) + 5)  # float64, as above
        started = lsh.module_spectrum(module, xs, warmup=5, h0=(h, c) if lstm else h)
        assert (started - lsh.module_spectrum(module, xs, warmup=5)).abs().max() > tol


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_a_cells_analytic_spectrum_equals_autograd_through_its_own_forward(kind):
    module, xs = torch_cell(kind, alive=kind == "rnn_relu"), inputs(40, 3)
    if kind == "rnn_relu":
        assert all_relu_units_on(module, xs)
    for state in ("h", "hc") if kind == "lstm" else ("h",):
        for exponents in (None, 2):
            a = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents)
            b = lsh.module_spectrum(module, xs, warmup=5, state=state, exponents=exponents, method="autograd")
            L = 5 * (2 if state == "hc" else 1)
            # float64: the analytic Jacobian against torch.func through the cell's forward (see `terms`), and the
            # L-row products and QRs, amplified by the loop's measured condition
            tol = 2 * rounding(module, xs, 5, terms(module) + L, state=state, exponents=exponents)
            torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_a_cell_is_read_through_its_own_parameters_never_copied_or_changed():
    module, xs = torch_cell("lstm"), inputs(30, 2)
    view = layer_view(module)
    assert view.num_layers == 1 and view.weight_ih_l0 is module.weight_ih and view.bias_hh_l0 is module.bias_hh
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    for method in ("analytic", "autograd"):
        lsh.module_spectrum(module, xs, method=method, dtype="float32")
        assert module.training
    assert all(torch.equal(before[k], v) and v.dtype == F64 for k, v in module.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("module,kwargs,message", [
    (torch_cell("gru"), {"h0": torch.zeros(1, 3, 5, dtype=F64)},
     r"h0: expected shape \(3, 5\) \(samples, hidden\), got \(1, 3, 5\)"),
    (torch_cell("lstm"), {"h0": torch.zeros(3, 5, dtype=F64)},
     r"h0: an LSTMCell takes a tuple \(h0, c0\); a GRUCell or RNNCell one tensor"),
    (torch_cell("gru"), {"state": "hc"}, r"state = 'hc': only an LSTM has a cell state; the GRUCell has one state"),
    (torch_cell("rnn_tanh"), {"inputs": torch.zeros(30, 3, 1, 3, dtype=F64)},
     r"inputs: expected \[T, K, input\] or one sequence \[T, input\] \(a cell's inputs are time first"),
    (torch_cell("lstm"), {"exponents": 6}, r"exponents = 6: the LSTMCell's h state has 5 dimensions"),
])
def test_a_cells_bad_state_or_inputs_are_refused_naming_what_it_takes(module, kwargs, message):
    xs = kwargs.pop("inputs", inputs(30, 3))
    with pytest.raises(LshError, match=message):
        lsh.module_spectrum(module, xs, **kwargs)


# -----------------------------------------------------------------------------
# A user's step function: lsh.step_spectrum


def rnn_as_step(module: nn.RNN) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A one-layer tanh torch.nn.RNN written out: h' = tanh(W x + b_ih + U h + b_hh)."""
    W, U = module.weight_ih_l0.detach(), module.weight_hh_l0.detach()
    b = (module.bias_ih_l0 + module.bias_hh_l0).detach()
    return lambda h, x: torch.tanh(x @ W.T + h @ U.T + b)


def gru_as_step(module: nn.GRU) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A one-layer torch.nn.GRU written out from its documented equations (gates r, z, n)."""
    (Wr, Wz, Wn), (Ur, Uz, Un) = (getattr(module, f"weight_{w}_l0").detach().chunk(3) for w in ("ih", "hh"))
    (bir, biz, bin_), (bhr, bhz, bhn) = (getattr(module, f"bias_{w}_l0").detach().chunk(3) for w in ("ih", "hh"))

    def step(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r = torch.sigmoid(x @ Wr.T + bir + h @ Ur.T + bhr)
        z = torch.sigmoid(x @ Wz.T + biz + h @ Uz.T + bhz)
        n = torch.tanh(x @ Wn.T + bin_ + r * (h @ Un.T + bhn))
        return (1 - z) * n + z * h

    return step


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru"])
def test_step_spectrum_of_a_module_written_as_a_step_equals_module_spectrum(kind):
    module, xs = cell(kind, 1), inputs(40, 3)
    step = rnn_as_step(module) if kind == "rnn_tanh" else gru_as_step(module)
    h0 = 0.5 * torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    for exponents in (None, 2):
        ours = lsh.step_spectrum(step, h0, xs, warmup=5, exponents=exponents)
        reference = lsh.module_spectrum(module, xs, warmup=5, exponents=exponents, h0=h0[None])
        # float64: torch.func through the written-out step against the analytic Jacobian (see `terms`), and the
        # 5-row products and QRs, amplified by the loop's measured condition
        tol = 2 * rounding(module, xs, 5, terms(module) + 5, exponents=exponents, h0=h0[None])
        torch.testing.assert_close(ours, reference, rtol=0, atol=tol)
        assert ours.dtype == F64 and ours.shape == (exponents or 5,)
    # one state [L] and one sequence [T, input]: a batch of one, the very same operations
    torch.testing.assert_close(lsh.step_spectrum(step, h0[0], xs[:, 0], warmup=5),
                               lsh.step_spectrum(step, h0[:1], xs[:, :1], warmup=5), rtol=0, atol=0)


def test_step_spectrum_takes_token_ids_and_computes_in_h0s_dtype():
    torch.manual_seed(0)
    emb, rnn = nn.Embedding(30, 3), nn.RNNCell(3, 5)  # float32 weights: h0 float32 computes in float32
    tokens = torch.randint(0, 30, (30, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = lsh.step_spectrum(lambda h, x: rnn(emb(x), h), torch.zeros(2, 5), tokens, warmup=5)
        reference = lsh.module_spectrum(rnn, emb(tokens), warmup=5, dtype="float32")
    # both in float32 (the embedding read alike): torch.func against the analytic Jacobian, amplified by the
    # loop's condition measured in float64
    tol = 2 * rounding(copy.deepcopy(rnn).double(), emb(tokens).double().detach(), 5, terms(rnn) + 5, EPS32)
    torch.testing.assert_close(ours, reference, rtol=0, atol=tol)


@pytest.mark.parametrize("step,kwargs,message", [
    (lambda h, x: h.sum(1), {}, r"step: returned shape \(3,\), dtype torch.float64 for h of shape \(3, 5\), dtype "
                                r"torch.float64; it must return h' of h's shape and dtype"),
    (lambda h, x: h.float(), {}, r"step: returned shape \(3, 5\), dtype torch.float32 for h of shape \(3, 5\)"),
    (lambda h, x: (h, h), {}, r"step: returned tuple for h of shape \(3, 5\)"),
    (lambda h, x: h @ torch.ones(4, 4, dtype=F64), {},
     r"step: step\(h, x\) on h of shape \(3, 5\) \(torch.float64\) and the first input x of shape \(3, 3\) raised "
     r"RuntimeError: "),
    (lambda h, x: torch.from_numpy(np.tanh(h.numpy())), {}, r"step: torch.func cannot differentiate it "
                                                            r"\(RuntimeError: .*numpy"),
    (lambda h, x: h * h.detach().sum().item(), {}, r"step: torch.func cannot differentiate it \(RuntimeError: "),
    (3, {}, r"step: expected a function step\(h, x\) -> h', got int"),
    (torch.tanh, {"h0": torch.zeros(3, 5, dtype=torch.int64)},
     r"h0: expected floating-point states \[K, L\] or one state \[L\], got shape \(3, 5\), dtype torch.int64"),
    (torch.tanh, {"h0": torch.zeros(3, 5, dtype=torch.float16)}, r"h0's dtype = torch.float16: allowed are float32"),
    (torch.tanh, {"inputs": torch.zeros(30, 2, 3, dtype=F64)},
     r"inputs: expected \[T, 3, \.\.\.\] for h0 of 3 samples, got \(30, 2, 3\)"),
    (torch.tanh, {"exponents": 6}, r"exponents = 6: the step's state has 5 dimensions; allowed are 1..5 or None"),
    (torch.tanh, {"warmup": 30}, r"inputs: 30 steps of 3 samples leave no step after 30 warm-up steps"),
    (torch.tanh, {"layout": "columns"}, r"layout = 'columns': allowed are blocks, sorted or None"),
])
def test_step_spectrum_refuses_a_step_or_input_it_cannot_use_naming_it(step, kwargs, message):
    h0, xs = kwargs.pop("h0", torch.zeros(3, 5, dtype=F64)), kwargs.pop("inputs", inputs(30, 3))
    step = (lambda h, x: torch.tanh(h)) if step is torch.tanh else step
    with pytest.raises(LshError, match=message):
        lsh.step_spectrum(step, h0, xs, **kwargs)


# -----------------------------------------------------------------------------
# Devices


def test_device_cpu_computes_on_the_cpu_and_the_result_lives_there():
    module, c, xs = cell("gru", 2), torch_cell("lstm"), inputs(25, 2)
    step, h0 = rnn_as_step(cell("rnn_tanh", 1)), torch.zeros(2, 5, dtype=F64)
    devices = ["cpu", torch.device("cpu")] + ([] if torch.cuda.is_available() else ["auto"])
    for method in ("analytic", "autograd"):
        for m in (module, c):
            default = lsh.module_spectrum(m, xs, warmup=3, method=method)
            for device in devices:
                out = lsh.module_spectrum(m, xs, warmup=3, method=method, device=device)
                assert out.device == CPU
                torch.testing.assert_close(out, default, rtol=0, atol=0)  # the very same operations
    for device in devices:
        torch.testing.assert_close(lsh.step_spectrum(step, h0, xs, device=device), lsh.step_spectrum(step, h0, xs),
                                   rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where torch sees no CUDA device")
def test_device_cuda_without_a_cuda_device_is_refused_naming_it():
    with pytest.raises(LshError,
                       match=r"device: cuda was asked for, but torch sees no CUDA device \(use auto or cpu\)"):
        lsh.module_spectrum(cell("gru", 1), inputs(25, 2), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_spectrum_equals_the_cpu_one_and_leaves_the_module_where_it_was():
    xs = inputs(25, 2)
    for module in (cell("gru", 2), cell("lstm", 2), torch_cell("lstm")):
        L = 5 * layer_of(module).num_layers
        # float64 on another device: other kernels, other summation orders, amplified by the loop's condition
        tol = 2 * rounding(module, xs, 3, terms(module) + L)
        for method in ("analytic", "autograd"):
            cpu = lsh.module_spectrum(module, xs, warmup=3, method=method)
            gpu = lsh.module_spectrum(module, xs, warmup=3, method=method, device="cuda")
            assert gpu.device.type == "cuda" and all(p.device == CPU for p in module.parameters())
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=tol)
            on_gpu = copy.deepcopy(module).cuda()  # a module on the GPU: computed there by default
            out = lsh.module_spectrum(on_gpu, xs.cuda(), warmup=3, method=method)
            assert out.device.type == "cuda"
            torch.testing.assert_close(out.cpu(), cpu, rtol=0, atol=tol)
    rnn = cell("rnn_tanh", 1)
    step, gpu_step = rnn_as_step(rnn), rnn_as_step(copy.deepcopy(rnn).cuda())
    h0 = torch.zeros(2, 5, dtype=F64)
    out = lsh.step_spectrum(gpu_step, h0, xs, device="cuda")
    assert out.device.type == "cuda"
    tol = 2 * rounding(rnn, xs, 0, terms(rnn) + 5)  # float64, as above
    torch.testing.assert_close(out.cpu(), lsh.step_spectrum(step, h0, xs), rtol=0, atol=tol)
