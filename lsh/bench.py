"""Benchmarks behind the README's performance figures, measured side by side in one run.

`lsh bench train --json` compares tokens/s of a bare loop (forward, loss, backward,
clip, SGD step on the same model and batches) with `lsh train`'s own loop
(`Trainer.train_epoch`: the same steps plus its bookkeeping: state detaching, loss
accumulation, divergence checks, progress, averaging and masks where active). The
two are interleaved over several repeats and the median of each is reported, so that
the ratio is not skewed by the machine's state drifting between them.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lsh import sparse as sparse_training
from lsh import training
from lsh.config import LyapunovConfig, ModelParams, Params, TrainConfig
from lsh.data import Corpus
from lsh.device import float32_precision, resolve_device
from lsh.models import LanguageModel, ModelConfig, build_model, check_fits

if TYPE_CHECKING:  # imported where used: lsh.lyapunov is not needed to benchmark training
    from lsh.lyapunov import Tangent

# Model sizes measured: the demo's own model and the paper's 2 x 1500 LSTM.
PAPER_LSTM = {"type": "lstm", "emb": 1500, "hidden": 1500, "layers": 2, "depth": 1, "tied": False}


def _synthetic_corpus(tokens: int, vocab: int, seed: int) -> Corpus:
    """Random token ids: speed does not depend on the text, and the benchmark needs no download."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=tokens, dtype=np.int64)
    return Corpus(train=ids, valid=ids[:2000], test=ids[:2000], vocab=[f"w{i}" for i in range(vocab)])


def bare_loop(model: LanguageModel, data: torch.Tensor, bptt: int, cfg: TrainConfig) -> float:
    """The least a training step must do: forward, loss, backward, clip, SGD step (with the run's
    weight decay, which is part of the algorithm, not overhead). Returns tokens/s."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = model.init_state(data.size(1))
    count = 0
    start = time.perf_counter()
    for x, y in training.windows(data, bptt):
        state = model.detach_state(state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        count += y.numel()
    _sync(data.device)  # on a GPU the clock stops when the queued kernels have run
    return count / (time.perf_counter() - start)


def _interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def _train_runs(params: Params, init: LanguageModel, corpus: Corpus,
                device: torch.device) -> dict[str, Callable[[], float]]:
    """The loops measured, each on its own copy of `init` (so none trains another's weights): the bare loop,
    the Trainer in its SGD and averaging phases and, with the params' sparse section, the sparse Trainer."""
    cfg = params.train
    bare_model = copy.deepcopy(init)
    data = training.batchify(corpus.train, cfg.batch_size, device)

    def trainer(averaging: bool, sparse: bool) -> training.Trainer:
        model = copy.deepcopy(init)
        s = sparse_training.from_config(model, params.sparse, corpus) if sparse else None
        t = training.Trainer(model, cfg, corpus, device, s)
        if s is not None:
            s.set_schedule(t.batches_per_epoch)
        if averaging:
            t.averager.start(model)
        return t

    dense, dense_avg = trainer(False, False), trainer(True, False)
    runs = {
        "bare": lambda: bare_loop(bare_model, data, cfg.bptt, cfg),
        "dense": lambda: dense.train_epoch(progress=False)[1],
        "dense_asgd": lambda: dense_avg.train_epoch(progress=False)[1],
    }
    if params.sparse.density < 1:  # the params' candidate, at the run's density
        sparse = trainer(False, True)
        runs["sparse"] = lambda: sparse.train_epoch(progress=False)[1]
    return runs


def _train_record(model: ModelParams, init: LanguageModel, vocab: int, cfg: TrainConfig, steps: int, repeats: int,
                  medians: dict[str, float]) -> dict:
    """One size's figures: the medians (tokens/s) and the Trainer's cost over the bare loop."""
    out = {
        "model": {k: getattr(model, k) for k in ("type", "emb", "hidden", "layers", "depth", "tied")},
        "parameters": sum(p.numel() for p in init.parameters()),
        "vocab": vocab,
        "batch_size": cfg.batch_size,
        "bptt": cfg.bptt,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "bare_tokens_per_s": round(medians["bare"], 1),
        "dense_tokens_per_s": round(medians["dense"], 1),
        "dense_asgd_tokens_per_s": round(medians["dense_asgd"], 1),
        "dense_overhead": round(1 - medians["dense"] / medians["bare"], 4),
    }
    if "sparse" in medians:
        out["sparse_tokens_per_s"] = round(medians["sparse"], 1)
        out["sparse_over_dense"] = round(medians["sparse"] / medians["dense"], 4)
        out["sparse_over_bare"] = round(medians["sparse"] / medians["bare"], 4)
    return out


def bench_train_size(params: Params, model_params: dict, steps: int, repeats: int) -> dict:
    """tokens/s of the bare loop and of the Trainer (SGD and averaging phases) for one model size."""
    model = dataclasses.replace(params.model, **model_params)
    cfg = params.train
    device = resolve_device(cfg.device, "train.device")
    vocab = 10_000
    corpus = _synthetic_corpus((steps * cfg.bptt + 1) * cfg.batch_size, vocab, params.seed)
    config = ModelConfig.from_params(model, vocab)
    check_fits(config, cfg.batch_size, cfg.bptt, device)
    torch.manual_seed(params.seed)
    init = build_model(config).to(device)
    runs = _train_runs(params, init, corpus, device)
    for run in runs.values():  # warm-up: allocator, kernels, caches
        run()
    return _train_record(model, init, vocab, cfg, steps, repeats, _interleaved(runs, repeats))


def bench_train(params: Params, *, demo_steps: int = 40, paper_steps: int | None = None, repeats: int = 5,
                paper: bool = True) -> dict:
    """The training benchmark at the params' (demo) size and, unless `paper` is false, the paper's 2 x 1500
    LSTM: 5 batches per repeat on a CPU (about 4 s), 100 on a GPU (where 5 would be a few milliseconds)."""
    if paper_steps is None:
        paper_steps = 100 if resolve_device(params.train.device, "train.device").type == "cuda" else 5
    sizes = {"demo": ({}, demo_steps)}
    if paper:
        sizes["paper"] = (PAPER_LSTM, paper_steps)
    result = {
        "benchmark": "train",
        **device_fields(resolve_device(params.train.device, "train.device")),
        **numerics_fields(),
        "tf32": params.train.tf32,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "sizes": {},
    }
    for name, (model_params, steps) in sizes.items():
        result["sizes"][name] = bench_train_size(params, model_params, steps, repeats)
    return result


# -----------------------------------------------------------------------------
# Lyapunov spectrum: analytic Jacobians against the generic autograd path and the floor

SPECTRUM_SIZE = {"type": "lstm", "emb": 256, "hidden": 256, "layers": 2, "depth": 1, "tied": False}


def _spectrum_model(model_params: dict, vocab: int, seed: int) -> LanguageModel:
    keys = ("type", "emb", "hidden", "layers", "depth", "tied")
    config = ModelConfig(vocab=vocab, **{k: model_params[k] for k in keys})
    check_fits(config, 1, 1, torch.device("cpu"))
    torch.manual_seed(seed)
    return build_model(config).eval()


def device_fields(device: torch.device) -> dict:
    """The device a benchmark ran on, named: GPU figures are meaningless without the GPU's name."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": device.type, "device_name": name}


def numerics_fields() -> dict:
    """The numerics a benchmark ran under: portable (AVX2-capped) kernels or the machine's own."""
    from lsh import numerics

    return {"numerics": numerics.effective_mode(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """run() -> its wall time in seconds (device work included)."""

    def timed() -> float:
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        return time.perf_counter() - start

    return timed


class _FloorTangent:
    """Random stand-ins for a tangent's linear algebra, run through the same QR loop.

    Dense tangents: fixed random Jacobian blocks of the same shape (the loop then does exactly
    the same geqrf and ormqr / matmul calls). Other tangents: the same list of matrix products
    on fixed random operands, and Q passed on (a copy) to the same QR. The costs of matmul and
    Householder QR do not depend on the values.
    """

    def __init__(self, tangent, k: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> None:
        import math

        from lsh.lyapunov.qr import columns_per_block

        g = torch.Generator(device="cpu").manual_seed(seed)

        def rand(shape: tuple) -> torch.Tensor:
            return (torch.randn(shape, generator=g, dtype=dtype) / math.sqrt(shape[-1])).to(device)

        self.samples, self.blocks, self.block_size = tangent.samples, tangent.blocks, tangent.block_size
        self.dense = tangent.dense
        Lb = self.block_size
        self.J = rand((self.samples, self.blocks, Lb, Lb)) if self.dense else None
        self.mats = [(rand(a), rand(b)) for a, b in tangent.products(columns_per_block(self.blocks, Lb, k))]

    def advance(self, t: int) -> None:
        pass

    def jacobian(self, t: int) -> torch.Tensor:
        return self.J

    def propagate(self, t: int, q: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return torch.matmul(self.J, q)
        for a, b in self.mats:
            torch.matmul(a, b)
        return q.clone()


def spectrum_floor(tangent: Tangent, k: int, steps: int, qr_every: int, dtype: torch.dtype,
                   device: torch.device) -> Callable[[], object]:
    """The linear algebra a spectrum cannot skip: `steps` steps of the QR loop with the J Q products
    (same count and shapes) and QR factorisations of `tangent`, on random matrices."""
    from lsh.lyapunov import qr_loop

    floor = _FloorTangent(tangent, k, dtype, device)
    return lambda: qr_loop(floor, 0, steps, k, qr_every, dtype, device)


def _spectrum_inputs(model_params: dict, ly: LyapunovConfig, seed: int,
                     device: torch.device) -> tuple[LanguageModel, torch.Tensor]:
    """The model at this size and random token ids [warmup + T, K] on `device`: speed does not depend
    on the text."""
    vocab = 10_000
    model = _spectrum_model(model_params, vocab, seed)
    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(rng.integers(0, vocab, size=(ly.warmup + ly.steps, ly.samples), dtype=np.int64))
    return model, tokens.to(device)


def _model_spectrum_call(model: LanguageModel, tokens: torch.Tensor, ly: LyapunovConfig,
                         device: torch.device) -> Callable[..., Callable[[], object]]:
    """spectrum(**extra) -> a call of model_spectrum with the params' lyapunov settings, `extra` overriding."""
    from lsh import lyapunov

    kwargs = dict(warmup=ly.warmup, exponents=ly.exponents, state=ly.state, log_base=ly.log_base, dtype=ly.dtype,
                  qr_every=ly.qr_every, device=device, min_exponent=ly.min_exponent)

    def spectrum(**extra) -> Callable[[], object]:
        return lambda: lyapunov.model_spectrum(model, tokens, **{**kwargs, **extra})

    return spectrum


def _timings(medians: dict[str, float]) -> dict:
    """The medians in seconds (4 significant digits) and the analytic path over its floor."""
    out = {f"{name}_s": float(f"{v:.4g}") for name, v in medians.items()}
    out["ratio_analytic_over_floor"] = round(medians["analytic"] / medians["floor"], 3)
    return out


def _methods_agree(spectrum: Callable[..., Callable[[], object]], medians: dict[str, float]) -> dict:
    """With the same settings the two methods compute the same quantity: their spectra agree; and the
    autograd paths' cost over the analytic one."""
    out = {"max_abs_diff_analytic_autograd": float((spectrum(method="analytic")() - spectrum(method="autograd")())
                                                   .abs().max()),
           "ratio_autograd_over_analytic": round(medians["autograd"] / medians["analytic"], 3)}
    if "autograd_blocks" in medians:
        out["ratio_autograd_blocks_over_analytic"] = round(medians["autograd_blocks"] / medians["analytic"], 3)
    return out


def bench_spectrum_size(params: Params, model_params: dict, repeats: int, *, compare: bool = True,
                        warm: bool = True) -> dict:
    """Seconds per spectrum at one model size: the analytic path and the floor (the same products and
    QRs on random matrices, on the same device) and, with `compare`, the generic autograd path (full
    Jacobian), autograd with the analytic path's per-layer blocks (what `--method autograd` runs on a
    stacked LSTM) and the analytic path on the full Jacobian; interleaved, medians of `repeats`, after
    one warm-up run of each unless `warm` is false."""
    from lsh import lyapunov

    ly = params.lyapunov
    device = resolve_device(ly.device, "lyapunov.device")
    dtype = lyapunov.resolve_dtype(ly.dtype)
    model, tokens = _spectrum_inputs(model_params, ly, params.seed, device)
    spectrum = _model_spectrum_call(model, tokens, ly, device)
    k = ly.exponents or lyapunov.state_size(model, ly.state)
    per_layer = lyapunov.uses_per_layer(model, ly.state, k)
    xs = model.embed(tokens.cpu()).to(device=device, dtype=dtype)
    tangent, _ = lyapunov.make_tangent(model, xs, state=ly.state, method="analytic", exponents=ly.exponents)
    runs = {
        "analytic": _timed(spectrum(method="analytic"), device),
        "floor": _timed(spectrum_floor(tangent, k, ly.steps, ly.qr_every, dtype, device), device),
    }
    if compare:
        # the generic path knows nothing of the LSTM's layers: full Jacobian, one basis
        runs["autograd"] = _timed(spectrum(method="autograd", per_layer=False), device)
        if per_layer:
            # what `--method autograd` runs on this LSTM: autograd Jacobians, the same per-layer blocks
            runs["autograd_blocks"] = _timed(spectrum(method="autograd"), device)
            runs["analytic_full"] = _timed(spectrum(method="analytic", per_layer=False), device)
    if warm:
        for run in runs.values():  # warm-up: allocator, kernels, caches
            run()
    medians = _interleaved(runs, repeats)
    out = {"model": {k_: model_params[k_] for k_ in ("type", "emb", "hidden", "layers", "depth")},
           "hidden": model_params["hidden"], "layers": model_params["layers"], "samples": ly.samples,
           "steps": ly.steps, "warmup": ly.warmup, "exponents": k, "state": ly.state, "dtype": ly.dtype,
           "qr_every": ly.qr_every, "per_layer": per_layer, "repeats": repeats, **_timings(medians)}
    return {**out, **_methods_agree(spectrum, medians)} if compare else out


# torch.nn cells measured beside the LSTM language model (module_spectrum): name -> (class, keyword arguments)
CELLS = {"gru": ("GRU", {}), "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
         "rnn_relu": ("RNN", {"nonlinearity": "relu"})}


def _cell_inputs(params: Params, cell: str, model_params: dict, device: torch.device,
                 dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    """The torch.nn cell at this size (eval mode) and standard normal inputs [warmup + T, K, emb]."""
    ly, emb = params.lyapunov, model_params["emb"]
    name, extra = CELLS[cell]
    torch.manual_seed(params.seed)
    module = getattr(nn, name)(emb, model_params["hidden"], num_layers=model_params["layers"], **extra)
    module = module.to(device).eval()
    g = torch.Generator().manual_seed(params.seed)
    xs = torch.randn(ly.warmup + ly.steps, ly.samples, emb, generator=g).to(device=device, dtype=dtype)
    return module, xs


def _cell_tangent(module: nn.Module, xs: torch.Tensor, method: str, blocks: bool, dtype: torch.dtype) -> Tangent:
    """The tangent module_spectrum builds (autograd: on a copy in `dtype`), with per_layer chosen."""
    from lsh.lyapunov import modules

    net = copy.deepcopy(module).to(dtype=dtype).requires_grad_(False) if method == "autograd" else module
    return modules.module_tangent(net, xs, method=method, per_layer=blocks)


def _cell_loop(module: nn.Module, xs: torch.Tensor, method: str, blocks: bool, k: int, ly: LyapunovConfig,
               dtype: torch.dtype, device: torch.device) -> Callable[[], object]:
    """What module_spectrum runs, with per_layer chosen (module_spectrum itself chooses it)."""
    from lsh import lyapunov
    from lsh.lyapunov import modules

    def run() -> object:
        with torch.no_grad(), float32_precision(False), modules.plain_rnn_kernels(method == "autograd"):
            tangent = _cell_tangent(module, xs, method, blocks, dtype)
            return lyapunov.qr_loop(tangent, ly.warmup, ly.steps, k, ly.qr_every, dtype, device, ly.min_exponent)

    return run


def bench_cell_spectrum(params: Params, cell: str, model_params: dict, repeats: int) -> dict:
    """Seconds per spectrum of a torch.nn GRU or RNN (lsh.module_spectrum) at one size, as
    bench_spectrum_size measures the LSTM: the analytic path, its floor (the same J Q products and QRs
    on random matrices), the generic autograd path (full Jacobian) and, for a stack (any exponents),
    autograd with the same per-layer blocks and the analytic path on the full Jacobian; interleaved,
    medians of `repeats` after one warm-up run each. Inputs: standard normal [warmup + T, K, emb].
    State h (the cells have no other); k = the params' exponents, capped at the state size."""
    from lsh import lyapunov

    ly = params.lyapunov
    device = resolve_device(ly.device, "lyapunov.device")
    dtype = lyapunov.resolve_dtype(ly.dtype)
    module, xs = _cell_inputs(params, cell, model_params, device, dtype)
    emb, H, n = model_params["emb"], model_params["hidden"], model_params["layers"]
    k = min(ly.exponents or n * H, n * H)
    per_layer = n > 1  # module_spectrum's choice for state h (any k: min(k, H) columns per layer)
    kwargs = dict(warmup=ly.warmup, exponents=k, dtype=ly.dtype, qr_every=ly.qr_every, min_exponent=ly.min_exponent,
                  log_base=ly.log_base)

    def spectrum(method: str) -> Callable[[], object]:
        return lambda: lyapunov.module_spectrum(module, xs, method=method, **kwargs)

    tangent = _cell_tangent(module, xs, "analytic", per_layer, dtype)
    floor = spectrum_floor(tangent, k, ly.steps, ly.qr_every, dtype, device)
    runs = {
        "analytic": _timed(spectrum("analytic"), device),
        "floor": _timed(floor, device),
        "autograd": _timed(_cell_loop(module, xs, "autograd", False, k, ly, dtype, device), device),  # full Jacobian
    }
    if per_layer:
        runs["autograd_blocks"] = _timed(spectrum("autograd"), device)  # method autograd: the same blocks
        runs["analytic_full"] = _timed(_cell_loop(module, xs, "analytic", False, k, ly, dtype, device), device)
    for run in runs.values():  # warm-up: allocator, kernels, caches
        run()
    medians = _interleaved(runs, repeats)
    out = {"model": {"type": cell, "emb": emb, "hidden": H, "layers": n}, "exponents": k, "per_layer": per_layer}
    return {**out, **_timings(medians), **_methods_agree(spectrum, medians)}


def bench_spectrum(params: Params, *, repeats: int = 5, paper: bool = True, size: dict | None = None) -> dict:
    """`lsh bench spectrum`: analytic vs autograd vs floor at hidden 256 x 2 layers (or `size`), for the
    LSTM language model and (`cells`) a torch.nn GRU and RNN (tanh, relu) of the same size, plus
    seconds per spectrum at the params' (demo) model size and at the paper's 2 x 1500 LSTM (one
    run: about 10 s on 2 cores), all with the params' lyapunov settings (K, T, warm-up, dtype)."""
    ly = params.lyapunov
    main = bench_spectrum_size(params, {**SPECTRUM_SIZE, **(size or {})}, repeats)
    result = {
        "benchmark": "spectrum",
        **device_fields(resolve_device(ly.device, "lyapunov.device")),
        **numerics_fields(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        **{k: main[k] for k in ("hidden", "layers", "samples", "steps", "warmup", "exponents", "state", "dtype",
                                "qr_every", "per_layer", "repeats")},
        **{k: v for k, v in main.items() if k.endswith("_s") or k.startswith(("ratio_", "max_abs"))},
    }
    sizes = {"demo": (dataclasses.asdict(params.model), repeats)}
    if paper:  # one run on a CPU (seconds each), the medians of `repeats` on a GPU
        sizes["paper"] = (PAPER_LSTM, repeats if result["device"] == "cuda" else 1)
    for name, (model_params, n) in sizes.items():
        warm = name == "demo" or result["device"] == "cuda"  # one paper-size run on the CPU takes seconds
        measured = bench_spectrum_size(params, model_params, n, compare=False, warm=warm)
        result[name] = {k: measured[k]
                        for k in ("model", "samples", "steps", "warmup", "exponents", "per_layer", "repeats")}
        result[name]["seconds_per_spectrum"] = measured["analytic_s"]
        result[name]["floor_seconds"] = measured["floor_s"]
        result[name]["ratio_over_floor"] = measured["ratio_analytic_over_floor"]
    # nested, not beside the LSTM's keys: benchmarks/check.py's targets are the LSTM's
    result["cells"] = {cell: bench_cell_spectrum(params, cell, {**SPECTRUM_SIZE, **(size or {})}, repeats)
                       for cell in CELLS}
    return result


# -----------------------------------------------------------------------------
# Numerics: the cost of portable (AVX2-capped) kernels against this machine's native ones

NUMERICS_MEASURES = {  # (benchmark, path in its JSON, higher is faster)
    "train_dense_tokens_per_s": ("train", ("sizes", "demo", "dense_tokens_per_s"), True),
    "train_sparse_tokens_per_s": ("train", ("sizes", "demo", "sparse_tokens_per_s"), True),
    "train_paper_dense_tokens_per_s": ("train", ("sizes", "paper", "dense_tokens_per_s"), True),
    "train_paper_sparse_tokens_per_s": ("train", ("sizes", "paper", "sparse_tokens_per_s"), True),
    "spectrum_256_s": ("spectrum", ("analytic_s",), False),
    "spectrum_demo_s": ("spectrum", ("demo", "seconds_per_spectrum"), False),
    "spectrum_paper_s": ("spectrum", ("paper", "seconds_per_spectrum"), False),
}


def bench_numerics(params_file: str, overrides: list[str], *, repeats: int = 3, threads: int | None = None) -> dict:
    """Portable against native, side by side: the caps take effect only when a process loads its
    libraries, so each measurement is a fresh `lsh bench` process, the two modes alternating
    `repeats` times. Each process measures training at the demo's and the paper's size (its own
    medians) and a spectrum at both; the result is each measure's median per mode and the
    portable/native speed ratio (above 1: portable is faster)."""
    import json
    import subprocess
    import sys

    from lsh import numerics

    measured: dict[str, dict[str, list[float]]] = {mode: {k: [] for k in NUMERICS_MEASURES} for mode in numerics.MODES}
    info: dict[str, dict] = {}
    for _ in range(repeats):
        for mode in numerics.MODES:
            for what in ("train", "spectrum"):
                cmd = [sys.executable, "-m", "lsh", "-q", "bench", what, "--json", "--repeats", "3",
                       "--params", params_file, *(f"--set={o}" for o in overrides), f"--set=numerics={mode}",
                       *(["--threads", str(threads)] if threads else [])]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode:
                    raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")
                result = json.loads(out.stdout)
                info[mode] = {"cpu_capability": result.get("cpu_capability"), "numerics": result.get("numerics")}
                for key, (bench, path, _) in NUMERICS_MEASURES.items():
                    if bench == what:
                        value = result
                        for part in path:
                            value = value.get(part, {}) if isinstance(value, dict) else {}
                        if isinstance(value, (int, float)):
                            measured[mode][key].append(float(value))
    result = {"benchmark": "numerics", "repeats": repeats, "modes": info, "machine": platform.machine(),
              "cpu": numerics.cpu_model(), "vendor": numerics.cpu_vendor(), "threads": threads, "medians": {},
              "portable_speed_over_native": {}}
    for key, (_, _, higher_faster) in NUMERICS_MEASURES.items():
        if not all(measured[m][key] for m in numerics.MODES):
            continue
        med = {m: statistics.median(measured[m][key]) for m in numerics.MODES}
        result["medians"][key] = {m: float(f"{v:.4g}") for m, v in med.items()}
        ratio = med["portable"] / med["native"] if higher_faster else med["native"] / med["portable"]
        result["portable_speed_over_native"][key] = round(ratio, 3)
    return result
