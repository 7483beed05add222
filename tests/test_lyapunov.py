"""Lyapunov spectra: known spectra of linear maps, analytic Jacobians against autograd, the
per-layer and k-column shortcuts against the full computation, and the `lsh spectrum` command."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_lsh
from precision import EPS32, EPS64, accumulated, spectrum_condition, spectrum_rounding, step_jacobians, two_ways

from lsh import bench, config, data, lyapunov, training
from lsh.config import LyapunovConfig, Params
from lsh.device import resolve_device
from lsh.errors import LshError
from lsh.models import ModelConfig, build_model
from lsh.spectra import checkpoint_spectrum
from lsh.training import dense_spec

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
F64 = dict(dtype="float64", device="cpu")


def tiny(kind: str, n: int, *, hidden: int = 6, emb: int = 5, vocab: int = 30, seed: int = 0):
    """A float64 model: n = LSTM layers or RHN depth."""
    torch.manual_seed(seed)
    if kind == "lstm":
        cfg = ModelConfig(type="lstm", vocab=vocab, emb=emb, hidden=hidden, layers=n)
    else:
        cfg = ModelConfig(type="rhn", vocab=vocab, emb=emb, hidden=hidden, depth=n)
    return build_model(cfg).double().eval()


def tokens(T: int, K: int, vocab: int = 30, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (T, K), generator=torch.Generator().manual_seed(seed))


def sgd_trained(model, steps: int = 30, seed: int = 1):
    """A few SGD steps of language modelling on random tokens: weights no longer at their init."""
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    vocab = model.config.vocab
    for _ in range(steps):
        x = torch.randint(0, vocab, (11, 4))
        logits, _ = model(x[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), x[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def terms(model) -> int:
    """The rounded terms an entry of the full Jacobian gathers, per layer (RHN: micro-step) of the chain: the
    pre-activations' sums (emb + hidden terms; hidden + hidden above the first) and up to 4 gate terms of a
    few factors each (8 roundings); the chain multiplies the blocks through hidden-long products."""
    cfg = model.config
    return (cfg.layers if cfg.type == "lstm" else cfg.depth) * (8 + max(cfg.emb, cfg.hidden) + cfg.hidden)


def condition(model, tok: torch.Tensor, warmup: int, *, state: str = "h", per_layer=None, exponents=None,
              qr_every: int = 1) -> float:
    """precision.spectrum_condition of model_spectrum's QR loop on these tokens (its float64 Jacobians)."""
    xs = model.embed(tok).detach().double()
    tangent, k = lyapunov.make_tangent(model, xs, state=state, exponents=exponents, per_layer=per_layer)
    return spectrum_condition(step_jacobians(tangent, warmup, tok.shape[0] - warmup), k, qr_every)


def rounding(model, tok: torch.Tensor, warmup: int, n: int, eps: float = EPS64, **options) -> float:
    """precision.spectrum_rounding of one model_spectrum on these tokens, n rounded terms to an entry in the
    dtype of eps, `options` as for `condition`."""
    return spectrum_rounding(eps, n, condition(model, tok, warmup, **options), tok.shape[0] - warmup, tok.shape[1])


# -----------------------------------------------------------------------------
# Linear maps with known spectra (spectrum_of_map)


def linear(A: torch.Tensor):
    return lambda h, x: h @ A.T


def test_symmetric_map_gives_log_abs_eigenvalues_up_to_the_predicted_transient():
    g = torch.Generator().manual_seed(0)
    s = torch.tensor([3.0, -2.0, 1.5, 1.1, -0.9, 0.6, 0.3, -0.1], dtype=torch.float64)  # |s| sorted, gaps >= 1.2x
    V, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    A = V @ torch.diag(s) @ V.T
    T, K = 300, 2
    lam = lyapunov.spectrum_of_map(linear(A), torch.zeros(K, 8, dtype=torch.float64), torch.zeros(T, K, 1))
    exact = s.abs().log()
    # Q_T spans A^T I_k, whose k-volume is prod_{i<=k} |s_i|^T |det V[:k, :k]| up to (s_{k+1}/s_k)^T
    # (< 1e-20 here): the k-th estimate is off by (log|m_k| - log|m_{k-1}|) / T, m_k = det V[:k, :k].
    logm = torch.tensor([0.0] + [torch.linalg.det(V[:k, :k]).abs().log().item() for k in range(1, 9)],
                        dtype=torch.float64)
    transient = (logm[1:] - logm[:-1]) / T
    # float64, 8-row products and QRs amplified by the loop's measured condition, and the minors' alike
    C = spectrum_condition([A.expand(K, 1, 8, 8)] * T)
    tol = 2 * spectrum_rounding(EPS64, 8, C, T, K, exact.abs().max().item())
    torch.testing.assert_close(lam, exact + transient, rtol=0, atol=tol)
    assert (lam - exact).abs().max() <= transient.abs().max() + tol  # and shrinks like 1/T
    assert (lam - exact).abs().max() > 1e-6  # the transient is real: the check above can fail


def test_random_map_exponents_sum_to_log_abs_det():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(10, 10, generator=g, dtype=torch.float64)
    lam = lyapunov.spectrum_of_map(linear(A), torch.zeros(3, 10, dtype=torch.float64), torch.zeros(40, 3, 1))
    # sum_i log r_ii of a QR is log|det|: the per-step sums telescope to log|det A| exactly. A relative
    # rounding E of the 10 x 10 product or QR moves log|det| by tr(A^-1 E) <= 10 cond(A) |E|, per step in
    # the loop (averaged) and once in slogdet's LU
    tol = two_ways(EPS64, 10, 10 * torch.linalg.cond(A).item())
    assert abs(lam.sum().item() - torch.linalg.slogdet(A).logabsdet.item()) < tol
    assert bool((lam[:-1] >= lam[1:]).all())  # descending


def test_orthogonal_map_has_all_zero_exponents():
    g = torch.Generator().manual_seed(2)
    Qm, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    lam = lyapunov.spectrum_of_map(linear(Qm), torch.randn(2, 12, dtype=torch.float64), torch.zeros(25, 2, 1))
    # float64: every r_ii is 1 up to the rounding of a 12-row product and QR (cond 1, no transient)
    assert lam.shape == (12,) and lam.abs().max() < accumulated(EPS64, 12)


def test_warmup_inputs_only_advance_the_state():
    # h' = x * h: each coordinate's exponent is the mean of log|x| over the accumulated steps only
    g = torch.Generator().manual_seed(3)
    x = torch.rand(20, 2, 4, generator=g, dtype=torch.float64) + 0.1
    x[:5] = 1e3  # warm-up inputs: counted, they would dominate
    lam = lyapunov.spectrum_of_map(lambda h, u: u * h, torch.ones(2, 4, dtype=torch.float64), x, warmup=5)
    per_sample = x[5:].log().mean(0).sort(dim=-1, descending=True).values  # [2, 4]
    # a diagonal J: the QR is exact, each log r is log x; float64 sums of 15 logs (|log x| <= 2.3) and
    # the mean of 2 samples, in another order here
    tol = two_ways(EPS64, 15 + 2, x[5:].log().abs().max().item())
    torch.testing.assert_close(lam, per_sample.mean(0), rtol=0, atol=tol)


# -----------------------------------------------------------------------------
# Analytic Jacobians against autograd

CASES = [("lstm", 1, "h"), ("lstm", 2, "h"), ("lstm", 3, "h"), ("lstm", 1, "hc"), ("lstm", 2, "hc"),
         ("lstm", 3, "hc"), ("rhn", 1, "h"), ("rhn", 3, "h")]


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("kind,n,state", CASES)
def test_analytic_jacobian_and_spectrum_equal_autograd(kind, n, state, weights):
    model = tiny(kind, n)
    if weights == "trained":
        model = sgd_trained(model)
    tok = tokens(25, 3)
    Ja = lyapunov.model_jacobian(model, tok[:8], state=state, method="analytic", **F64)
    Jg = lyapunov.model_jacobian(model, tok[:8], state=state, method="autograd", **F64)
    L = lyapunov.state_size(model, state)
    assert Ja.shape == (3, L, L)
    # float64, the same sums in two orders (see `terms`); a gate term 10 % off moves entries by 2e-3 or more
    torch.testing.assert_close(Ja, Jg, rtol=0, atol=two_ways(EPS64, terms(model), Jg.abs().max().item()))
    for per_layer in ([None, False] if kind == "lstm" and n > 1 and state == "h" else [None]):
        a = lyapunov.model_spectrum(model, tok, warmup=5, state=state, method="analytic", per_layer=per_layer, **F64)
        b = lyapunov.model_spectrum(model, tok, warmup=5, state=state, method="autograd", per_layer=per_layer, **F64)
        # those Jacobians and the L-row products and QRs, amplified by the loop's measured condition (2e7 for
        # the trained 3-layer hc state, whose basis aligns slowly: 4e-6); one gate term 10 % off moves 7e-2
        tol = 2 * rounding(model, tok, 5, terms(model) + L, state=state, per_layer=per_layer)
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


@pytest.fixture(scope="module")
def trained_run(ptb_quick_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of a 2 x 16 LSTM on the small PTB: a real checkpoint (epoch-001.pt)."""
    params = Params.from_dict(config.load_params(SMOKE, ["model.emb=16", "model.hidden=16", "train.eval_tokens=2000",
                                                         "train.device=cpu"]))
    out = tmp_path_factory.mktemp("spectrum_run")
    corpus = data.load_corpus(ptb_quick_small)
    training.train(dense_spec(params), corpus, out, 1, progress=False)
    return out


def test_analytic_equals_autograd_on_a_trained_checkpoint(trained_run: Path, ptb_quick_small: Path):
    model = training.model_from_checkpoint(training.load_checkpoint(trained_run / "epoch-001.pt")).double()
    tok, _ = lyapunov.validation_tokens(data.load_split(ptb_quick_small, "valid"), 2, 30, seed=5)
    for state in ("h", "hc"):
        a = lyapunov.model_spectrum(model, tok, warmup=10, state=state, method="analytic", **F64)
        b = lyapunov.model_spectrum(model, tok, warmup=10, state=state, method="autograd", **F64)
        # float64, as in test_analytic_jacobian_and_spectrum_equal_autograd
        tol = 2 * rounding(model, tok, 10, terms(model) + lyapunov.state_size(model, state), state=state)
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
    assert a.shape == (64,) and bool(torch.isfinite(a).all())


def test_analytic_path_builds_no_dense_diagonal_matrices(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dense diagonal matrix was built")

    for name in ("diag_embed", "diag", "diagflat"):
        monkeypatch.setattr(torch, name, refuse)
    for kind, n, state in CASES:
        lyapunov.model_spectrum(tiny(kind, n), tokens(8, 2), warmup=2, state=state, **F64)


# -----------------------------------------------------------------------------
# Shortcuts against the full computation


def test_per_layer_blocks_agree_with_the_full_jacobian_with_a_transient_like_1_over_T():
    # The h Jacobian is block lower-triangular: its spectrum is the union of the layers'. Finite
    # runs differ by a transient C / T (the change of basis between the two Q's); C is measured
    # at the short T and the long run must be within 2 C / T_long: it shrinks like 1/T.
    model = tiny("lstm", 2, seed=0)
    with torch.no_grad():  # stronger recurrence, so that the blocks' spectra interleave
        for name, p in model.lstm.named_parameters():
            if "weight_hh" in name:
                p.mul_(4)
    tok = tokens(10 + 3200, 2, seed=0)
    xs = model.embed(tok).detach()
    conds = [torch.stack([torch.linalg.cond(J) for J in step_jacobians(tangent, 10, 3200)]).amax((1, 2))
             for tangent, _ in (lyapunov.make_tangent(model, xs, per_layer=p) for p in (True, False))]  # [T] each
    diffs = {}
    for T in (200, 3200):
        blocks = lyapunov.model_spectrum(model, tok[: 10 + T], warmup=10, per_layer=True, layout="sorted", **F64)
        full = lyapunov.model_spectrum(model, tok[: 10 + T], warmup=10, per_layer=False, layout="sorted", **F64)
        # exact at any T: both sums are log|det J| per step (det of a block-triangular matrix). float64: a
        # relative rounding E of a 12-row product or QR moves log|det J| by tr(J^-1 E) <= 12 cond(J) |E|, and
        # 12 exponents of T logs each (up to 16) are summed
        tol = sum(spectrum_rounding(EPS64, 12, 12 * c[:T].mean().item(), T + 12, 2, 12 * 16) for c in conds)
        assert abs(blocks.sum().item() - full.sum().item()) < tol
        diffs[T] = (blocks - full).abs().max().item()
    C = 200 * diffs[200]
    assert diffs[3200] <= 2 * C / 3200, diffs
    assert diffs[3200] < 5e-3


def test_k_columns_give_exactly_the_first_k_of_the_full_run():
    for kind, n, state in [("lstm", 2, "h"), ("lstm", 2, "hc"), ("rhn", 3, "h")]:
        model = tiny(kind, n)
        xs = model.embed(tokens(30, 2)).detach()
        L = lyapunov.state_size(model, state)
        runs = {}
        for k in (3, L):
            tangent, k = lyapunov.make_tangent(model, xs, state=state, exponents=k, per_layer=False)
            runs[k] = lyapunov.qr_loop(tangent, 5, 25, k, 1, torch.float64, torch.device("cpu"))[0]
        # Householder QR's first k columns do not see the others: the same per-column values, up to the
        # rounding of L-row products of another width (float64), amplified by those 3 columns' condition
        tangent, _ = lyapunov.make_tangent(model, xs, state=state, per_layer=False)
        tol = 2 * spectrum_rounding(EPS64, L, spectrum_condition(step_jacobians(tangent, 5, 25), 3), 25, 2)
        torch.testing.assert_close(runs[3], runs[L][:, :3], rtol=0, atol=tol)
    # through the public entry point, once the columns are in order (long enough T)
    model = tiny("lstm", 2)
    tok = tokens(400, 2)
    full = lyapunov.model_spectrum(model, tok, warmup=5, per_layer=False, **F64)
    lead = lyapunov.model_spectrum(model, tok, warmup=5, exponents=4, **F64)
    tol = 2 * rounding(model, tok, 5, 12, exponents=4)  # as above, 12 rows and 4 columns
    torch.testing.assert_close(lead, full[:4], rtol=0, atol=tol)


def test_batched_samples_equal_the_mean_of_single_sample_runs():
    for kind, n in [("lstm", 2), ("rhn", 2)]:
        model = tiny(kind, n)
        tok = tokens(30, 3)
        batched = lyapunov.model_spectrum(model, tok, warmup=4, **F64)
        singles = torch.stack([lyapunov.model_spectrum(model, tok[:, i : i + 1], warmup=4, **F64) for i in range(3)])
        # float64: a batch of 3 may take other matmul kernels than a batch of 1 (L rows of products and QRs),
        # amplified by the loop's measured condition; averaging before sorting would move 1e-2
        L = lyapunov.state_size(model)
        tol = 2 * rounding(model, tok, 4, L)
        torch.testing.assert_close(batched, singles.mean(0), rtol=0, atol=tol)


class _Recorded(lyapunov.Tangent):
    """One layer's and one sample's Jacobian blocks, recorded from a batched run: [1, 1, H, H] per step."""

    dense, samples, blocks = True, 1, 1

    def __init__(self, mats: list[torch.Tensor]) -> None:
        self.mats, self.block_size = mats, mats[0].shape[-1]

    def advance(self, t: int) -> None:
        pass

    def jacobian(self, t: int) -> torch.Tensor:
        return self.mats[t]


@pytest.mark.parametrize("qr_every", [1, 3])
def test_one_qr_over_every_layer_and_sample_equals_each_block_alone(qr_every):
    """The device path factors all K x layers blocks in one batched QR per step ([K, layers, H, H]):
    each block's exponents equal those of its own QR loop over the same Jacobian blocks (float64)."""
    model = tiny("lstm", 3, hidden=7, seed=3)
    K, n, H, W, T = 3, 3, 7, 4, 24
    xs = model.embed(tokens(W + T, K, seed=3)).detach()
    cpu = torch.device("cpu")
    tangent, k = lyapunov.make_tangent(model, xs, state="h", exponents=None, per_layer=True)
    assert (tangent.samples, tangent.blocks, tangent.block_size, k) == (K, n, H, n * H)
    batched = lyapunov.qr_loop(tangent, W, T, k, qr_every, torch.float64, cpu)[0]  # [K, n * H]
    recorder, _ = lyapunov.make_tangent(model, xs, state="h", exponents=None, per_layer=True)
    for t in range(W):
        recorder.advance(t)
    mats = [recorder.jacobian(W + j).clone() for j in range(T)]  # [K, n, H, H] each
    assert mats[0].shape == (K, n, H, H)
    # float64, the same matrices: only a batched product or QR of H rows may round otherwise, amplified by
    # the loop's measured condition; another block's exponents differ by 1e-2 and more
    tol = 2 * spectrum_rounding(EPS64, H, spectrum_condition(mats, qr_every=qr_every), T, K)
    for i in range(K):
        for l in range(n):
            alone = _Recorded([m[i : i + 1, l : l + 1] for m in mats])
            single = lyapunov.qr_loop(alone, 0, T, H, qr_every, torch.float64, cpu)[0][0]
            torch.testing.assert_close(batched[i, l * H : (l + 1) * H], single, rtol=0, atol=tol)
            assert not torch.equal(single, batched[(i + 1) % K, l * H : (l + 1) * H])  # the blocks differ


def test_log_base_2_is_natural_log_over_ln_2():
    model, tok = tiny("lstm", 2), tokens(20, 2)
    e = lyapunov.model_spectrum(model, tok, warmup=3, **F64)
    two = lyapunov.model_spectrum(model, tok, warmup=3, log_base=2, **F64)
    # the same run, then x * (1 / ln 2) there and x / ln 2 here: 3 float64 roundings
    torch.testing.assert_close(two, e / math.log(2), rtol=accumulated(EPS64, 3), atol=0)


def test_qr_every_m_equals_qr_every_step_on_a_well_conditioned_map():
    # the R's of a QR of a product multiply: QR every m steps gives the same diagonals
    model, tok = tiny("lstm", 2), tokens(33, 2)
    for per_layer in (True, False):
        one = lyapunov.model_spectrum(model, tok, warmup=3, per_layer=per_layer, **F64)
        for m in (2, 4, 7):  # 7 leaves a partial group at the end
            every = lyapunov.model_spectrum(model, tok, warmup=3, per_layer=per_layer, qr_every=m, **F64)
            # float64, 12-row products and QRs, each run amplified by its measured condition: the QR of a
            # product of 7 Jacobians loses eps e^(7 (lambda_1 - lambda_12)) (1e-7 here); a group's missing
            # factor or floor would move 1e-2
            tol = sum(rounding(model, tok, 3, 12, per_layer=per_layer, qr_every=q) for q in (1, m))
            torch.testing.assert_close(every, one, rtol=0, atol=tol)


def test_float32_and_float64_agree_loosely():
    model, tok = tiny("lstm", 2, hidden=16), tokens(40, 2)
    f64 = lyapunov.model_spectrum(model, tok, warmup=5, **F64)
    f32 = lyapunov.model_spectrum(model, tok, warmup=5, dtype="float32", device="cpu")
    assert f32.dtype == torch.float64 and f32.shape == f64.shape  # accumulated in float64
    # the float32 run's rounding: its Jacobians (see `terms`) and 32-row products and QRs, amplified by the
    # loop's measured condition (the state's own rounding does not grow: every exponent is negative)
    assert f64.max() < 0
    tol = sum(rounding(model, tok, 5, terms(model) + 32, eps) for eps in (EPS32, EPS64))
    torch.testing.assert_close(f32, f64, rtol=0, atol=tol)
    assert not torch.equal(f32, f64)


# -----------------------------------------------------------------------------
# Devices and bad input


def test_explicit_cpu_device_keeps_everything_on_the_cpu():
    lam = lyapunov.model_spectrum(tiny("lstm", 2), tokens(10, 2), warmup=2, device=torch.device("cpu"))
    assert lam.device.type == "cpu"
    lam = lyapunov.spectrum_of_map(lambda h, x: 0.5 * h, torch.ones(2, 3), torch.zeros(5, 2, 1))
    tol = accumulated(EPS32, 3, math.log(2))  # float32 (h0's dtype): J = 0.5 I, 3-row products and QRs
    assert lam.device.type == "cpu" and torch.allclose(lam, torch.full((3,), math.log(0.5), dtype=torch.float64),
                                                       rtol=0, atol=tol)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto means CUDA on this machine")
def test_auto_device_resolves_to_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    lam = lyapunov.model_spectrum(tiny("rhn", 2), tokens(10, 2), warmup=2, device="auto")
    assert lam.device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clean_error():
    with pytest.raises(LshError, match="lyapunov.device: cuda was asked for, but torch sees no CUDA device"):
        lyapunov.model_spectrum(tiny("lstm", 1), tokens(5, 1), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_spectrum_equals_cpu_spectrum():
    model, tok = tiny("lstm", 2), tokens(20, 2)
    cpu = lyapunov.model_spectrum(model, tok, warmup=3, **F64)
    gpu = lyapunov.model_spectrum(model, tok, warmup=3, dtype="float64", device="cuda")
    assert gpu.device.type == "cuda"
    # float64 on other kernels: the Jacobians (see `terms`) and 12-row products and QRs, amplified by the
    # loop's measured condition
    tol = 2 * rounding(model, tok, 3, terms(model) + 12)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=tol)


def test_bad_settings_are_clean_errors_naming_the_value():
    model, tok = tiny("lstm", 2), tokens(6, 1)
    with pytest.raises(LshError, match=r"lyapunov.method = 'jacfwd': allowed are analytic, autograd"):
        lyapunov.model_spectrum(model, tok, method="jacfwd")
    with pytest.raises(LshError,
                       match=r"lyapunov.exponents = 13: the lstm h state has 12 dimensions; allowed are 1..12"):
        lyapunov.model_spectrum(model, tok, exponents=13)
    with pytest.raises(LshError, match="only the LSTM has a cell state"):
        lyapunov.model_spectrum(tiny("rhn", 1), tok, state="hc")
    with pytest.raises(LshError, match="log_base = 10"):
        lyapunov.model_spectrum(model, tok, log_base=10)
    with pytest.raises(LshError, match="per-layer blocks need"):
        lyapunov.model_spectrum(model, tok, exponents=3, per_layer=True)
    with pytest.raises(LshError, match="checkpoint .*missing.pt does not exist"):
        checkpoint_spectrum("missing.pt", "nowhere", LyapunovConfig(), 0)


def test_offsets_are_sorted_seeded_and_fit_the_split():
    a = lyapunov.sample_offsets(1000, 5, 45, seed=7)
    assert list(a) == sorted(a) and len(set(a)) == 5 and a.min() >= 0 and a.max() <= 1000 - 45
    assert np.array_equal(a, lyapunov.sample_offsets(1000, 5, 45, seed=7))
    assert not np.array_equal(a, lyapunov.sample_offsets(1000, 5, 45, seed=8))
    seqs, offsets = lyapunov.validation_tokens(np.arange(1000), 5, 45, seed=7)
    assert (seqs.shape == (45, 5) and seqs[0].tolist() == offsets.tolist()
            and seqs[-1].tolist() == (offsets + 44).tolist())
    with pytest.raises(LshError, match="too few for 3 sequences of 45"):
        lyapunov.sample_offsets(46, 3, 45, seed=0)


# -----------------------------------------------------------------------------
# The command line

KEYS = {"exponents", "method", "samples", "steps", "warmup", "seconds", "epoch", "status", "state", "log_base", "dtype"}


def spectrum_cli(ckpt: Path, data_dir: Path, out: Path, *extra: str):
    result = run_lsh("spectrum", "--params", str(SMOKE), "--checkpoint", str(ckpt), "--data", str(data_dir),
                     "--out", str(out), "--threads", "1", *extra)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(out.read_text())


def test_spectrum_cli_writes_the_documented_keys(trained_run: Path, ptb_quick_small: Path, tmp_path: Path):
    rec = spectrum_cli(trained_run / "epoch-001.pt", ptb_quick_small, tmp_path / "ls.json",
                       "--samples", "3", "--steps", "12", "--warmup", "4")
    assert KEYS <= set(rec)
    assert rec["status"] == "ok" and rec["epoch"] == 1 and rec["method"] == "analytic"
    assert (rec["samples"], rec["steps"], rec["warmup"]) == (3, 12, 4)
    assert (rec["state"], rec["log_base"], rec["dtype"]) == ("h", "e", "float32")
    assert len(rec["exponents"]) == 32 and rec["layout"] == "blocks" and rec["blocks"] == 2
    for layer in (rec["exponents"][:16], rec["exponents"][16:]):  # sorted within each layer
        assert layer == sorted(layer, reverse=True)
    assert rec["layouts"]["blocks"] == rec["exponents"]
    assert rec["layouts"]["sorted"] == sorted(rec["layouts"]["sorted"], reverse=True)
    assert rec["clipped"] == 0 and rec["min_exponent"] == -16.0
    assert rec["per_layer"] is True and len(rec["offsets"]) == 3 and rec["seconds"] >= 0
    # the flags override the params; the same numbers as the library on the same sequences
    model = training.model_from_checkpoint(training.load_checkpoint(trained_run / "epoch-001.pt"))
    tok, offsets = lyapunov.validation_tokens(data.load_split(ptb_quick_small, "valid"), 3, 16, seed=1111)
    assert offsets.tolist() == rec["offsets"]
    lam = lyapunov.model_spectrum(model, tok, warmup=4, device="cpu")
    # the same float32 code on 1 thread there and maybe more here, where MKL may split the gates' 16 + 16-term
    # sums and the 16-row products and QRs otherwise; amplified by the loop's measured condition (2e-3 here:
    # a warm-up off by one moves 3e-2)
    tol = 2 * rounding(model, tok, 4, 16 + 16 + 16, EPS32)
    np.testing.assert_allclose(rec["exponents"], lam.numpy(), rtol=0, atol=tol)


@pytest.mark.slow
def test_same_seed_gives_the_same_offsets_and_identical_spectra(trained_run: Path, ptb_quick_small: Path,
                                                                tmp_path: Path):
    ckpt = trained_run / "epoch-001.pt"
    a = spectrum_cli(ckpt, ptb_quick_small, tmp_path / "a.json", "--steps", "10", "--exponents", "5",
                     "--method", "autograd")
    b = spectrum_cli(ckpt, ptb_quick_small, tmp_path / "b.json", "--steps", "10", "--exponents", "5",
                     "--method", "autograd")
    assert a["offsets"] == b["offsets"] and a["exponents"] == b["exponents"] and len(a["exponents"]) == 5
    assert a["method"] == "autograd" and a["per_layer"] is False
    other = checkpoint_spectrum(ckpt, ptb_quick_small, LyapunovConfig(steps=10, exponents=5), seed=2)
    assert other["offsets"] != a["offsets"] and other["exponents"] != a["exponents"]


def test_diverged_checkpoint_gives_status_diverged_not_a_crash(trained_run: Path, ptb_quick_small: Path,
                                                               tmp_path: Path):
    state = training.load_checkpoint(trained_run / "epoch-001.pt")
    marked = dict(state, status="diverged")
    torch.save(marked, tmp_path / "marked.pt")
    nan = dict(state, model={k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                             for k, v in state["model"].items()})
    torch.save(nan, tmp_path / "nan.pt")
    for name in ("marked", "nan"):
        rec = spectrum_cli(tmp_path / f"{name}.pt", ptb_quick_small, tmp_path / f"{name}.json")
        assert rec["status"] == "diverged" and rec["exponents"] is None and KEYS <= set(rec), name
    # finite weights whose Jacobian is singular are not diverged: every exponent sits at the floor
    zero = dict(state, model={k: torch.zeros_like(v) if "weight_hh" in k else v for k, v in state["model"].items()})
    torch.save(zero, tmp_path / "zero.pt")
    rec = checkpoint_spectrum(tmp_path / "zero.pt", ptb_quick_small, LyapunovConfig(steps=5), seed=0)
    assert rec["status"] == "ok" and rec["exponents"] == [lyapunov.MIN_EXPONENT] * 32
    assert rec["clipped"] == 2 * 32, "every exponent of both samples met the floor"


def test_missing_checkpoint_is_one_clean_message(ptb_quick_small: Path, tmp_path: Path):
    out = run_lsh("spectrum", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(ptb_quick_small),
                  "--out", str(tmp_path / "x.json"))
    assert out.returncode == 2 and "nope.pt does not exist" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.json").exists()


# -----------------------------------------------------------------------------
# The benchmark (its code path and its check; the timings themselves are not asserted)


def test_bench_spectrum_reports_times_ratios_and_passes_through_check():
    params = Params.from_dict(config.load_params(SMOKE, ["model.emb=8", "model.hidden=8", "lyapunov.steps=3",
                                                         "lyapunov.warmup=2", "lyapunov.device=cpu"]))
    result = bench.bench_spectrum(params, repeats=1, paper=False, size={"emb": 8, "hidden": 8})
    assert result["benchmark"] == "spectrum" and result["hidden"] == 8 and result["per_layer"] is True
    for key in ("analytic_s", "autograd_s", "floor_s", "analytic_full_s", "autograd_blocks_s"):
        assert result[key] > 0, key
    # the record rounds each time to 4 significant digits (relative 5e-4 each, 1.1e-3 for their quotient)
    # and the ratio to 3 decimals (5e-4)
    ratio = result["autograd_s"] / result["analytic_s"]
    assert result["ratio_autograd_over_analytic"] == pytest.approx(ratio, abs=5e-4 + 1.1e-3 * ratio)
    # float32 (the preset's): both methods' Jacobians (see `terms`) and 16-row products and QRs, amplified
    # by the loop's measured condition on the benchmark's own model and tokens
    model, tok = bench._spectrum_inputs({**bench.SPECTRUM_SIZE, "emb": 8, "hidden": 8}, params.lyapunov,
                                        params.seed, torch.device("cpu"))
    tol = 2 * rounding(model, tok, params.lyapunov.warmup, terms(model) + 16, EPS32)
    assert result["max_abs_diff_analytic_autograd"] < tol
    assert result["demo"]["seconds_per_spectrum"] > 0
    spec = importlib.util.spec_from_file_location("check", REPO / "benchmarks" / "check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    lines = check.check(dict(result, ratio_autograd_over_analytic=2.0, ratio_analytic_over_floor=1.1))
    assert any(line.startswith("FAIL") and "ratio_autograd_over_analytic" in line for line in lines)
    assert any(line.startswith("ok") and "ratio_analytic_over_floor" in line for line in lines)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_row_of_the_jacobian_is_clipped_at_the_floor_in_every_dtype(dtype):
    """A saturated unit makes J singular: its exponent reads exactly min_exponent (not -inf, not the
    dtype's smallest normal number), the same in float32 and float64, and it is counted as clipped."""
    A = torch.diag(torch.tensor([0.5, 2.0, 0.0], dtype=dtype))
    step = lambda h, x: h @ A.T  # noqa: E731
    h0 = torch.zeros(1, 3, dtype=dtype)
    exps = lyapunov.spectrum_of_map(step, h0, torch.zeros(20, 1, 1), dtype=dtype)
    # 3-row products and QRs in the dtype (exact here: J is diagonal), and 20 float64 logs summed
    tol = accumulated(torch.finfo(dtype).eps, 3, math.log(2)) + accumulated(EPS64, 20, math.log(2))
    assert exps[0] == pytest.approx(math.log(2.0), abs=tol) and exps[1] == pytest.approx(math.log(0.5), abs=tol)
    assert exps[2] == lyapunov.MIN_EXPONENT == -16.0
    assert lyapunov.spectrum_of_map(step, h0, torch.zeros(20, 1, 1), dtype=dtype, min_exponent=-5.0)[2] == -5.0
    tangent = lyapunov.AutogradJacobian(lambda z, aux, x: (step(z, x), aux), h0, h0[:, :0], torch.zeros(20, 1, 1))
    per_sample, floored = lyapunov.qr_loop(tangent, 0, 20, 3, 1, dtype, torch.device("cpu"))
    assert lyapunov.finish(per_sample, floored, 1, "e").clipped == 1


def test_blocks_layout_sorts_within_each_layer_and_sorted_sorts_all():
    per_sample = torch.tensor([[1.0, 0.0, 0.5, 0.2], [0.1, 0.0, 2.0, 1.0]],  # 2 samples, 2 layers of 2
                              dtype=torch.float64)
    spectrum = lyapunov.finish(per_sample, torch.zeros_like(per_sample, dtype=torch.bool), 2, "e")
    tol = accumulated(EPS64, 3, 2.0)  # float64 means of 2 values up to 2, and the decimals' own rounding
    assert spectrum["blocks"].tolist() == pytest.approx([0.55, 0.0, 1.25, 0.6], abs=tol)
    assert spectrum["sorted"].tolist() == pytest.approx([1.5, 0.75, 0.15, 0.0], abs=tol)
    assert spectrum.clipped == 0 and spectrum.blocks == 2


def test_the_default_layout_keeps_a_stacked_lstms_layers_apart():
    model, tok = tiny("lstm", 2), tokens(30, 2)
    both = lyapunov.model_spectra(model, tok, warmup=4, **F64)
    H = model.config.hidden
    assert both.blocks == 2
    blocks = both["blocks"]
    for layer in range(2):  # each layer's exponents descend within the layer
        part = blocks[layer * H : (layer + 1) * H]
        assert torch.all(part[:-1] >= part[1:])
    # float64 sums of the same 2 x 12 per-sample values, averaged and added in other orders
    tol = two_ways(EPS64, 2 + 2 * H, blocks.abs().sum().item())
    torch.testing.assert_close(blocks.sort(descending=True).values.sum(), both["sorted"].sum(), rtol=0, atol=tol)
    assert torch.equal(lyapunov.model_spectrum(model, tok, warmup=4, **F64), blocks)
