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
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lsh import training
from lsh.data import Corpus
from lsh.models import LanguageModel

# Model sizes measured: the demo's own model and the paper's 2 x 1500 LSTM.
PAPER_LSTM = {"type": "lstm", "emb": 1500, "hidden": 1500, "layers": 2, "depth": 1, "tied": False}


def _synthetic_corpus(tokens: int, vocab: int, seed: int) -> Corpus:
    """Random token ids: speed does not depend on the text, and the benchmark needs no download."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=tokens, dtype=np.int64)
    return Corpus(ids, ids[:2000], ids[:2000], [f"w{i}" for i in range(vocab)])


def bare_loop(model: LanguageModel, data: torch.Tensor, bptt: int, cfg: training.TrainConfig) -> float:
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
    return count / (time.perf_counter() - start)


def _interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def bench_train_size(params: dict, model_params: dict, steps: int, repeats: int, sparse_factory=None) -> dict:
    """tokens/s of the bare loop and of the Trainer (SGD and averaging phases) for one model size."""
    params = copy.deepcopy(params)
    params["model"].update(model_params)
    params["train"]["device"] = params["train"].get("device", "auto")
    cfg = training.train_config(params)
    device = training.resolve_device(cfg.device)
    vocab = 10_000
    corpus = _synthetic_corpus((steps * cfg.bptt + 1) * cfg.batch_size, vocab, params["seed"])
    torch.manual_seed(params["seed"])
    init = training.build_model(training.model_config(params, vocab)).to(device)

    bare_model = copy.deepcopy(init)
    data = training.batchify(corpus.train, cfg.batch_size, device)

    def trainer(averaging: bool, sparse: bool) -> training.Trainer:
        model = copy.deepcopy(init)
        s = sparse_factory(model, params, corpus, device) if sparse else None
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
    if sparse_factory is not None:
        sparse = trainer(False, True)
        runs["sparse"] = lambda: sparse.train_epoch(progress=False)[1]
    for run in runs.values():  # warm-up: allocator, kernels, caches
        run()
    medians = _interleaved(runs, repeats)
    n_params = sum(p.numel() for p in init.parameters())
    out = {
        "model": {k: params["model"][k] for k in ("type", "emb", "hidden", "layers", "depth", "tied")},
        "parameters": n_params,
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
    return out


def bench_train(params: dict, *, demo_steps: int = 40, paper_steps: int = 5, repeats: int = 5, paper: bool = True,
                sparse_factory=None) -> dict:
    """The training benchmark at the params' (demo) size and, unless `paper` is false, the paper's 2 x 1500 LSTM."""
    sizes = {"demo": ({}, demo_steps)}
    if paper:
        sizes["paper"] = (PAPER_LSTM, paper_steps)
    result = {
        "benchmark": "train",
        "device": training.resolve_device(params["train"]["device"]).type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "sizes": {},
    }
    for name, (model_params, steps) in sizes.items():
        result["sizes"][name] = bench_train_size(params, model_params, steps, repeats, sparse_factory)
    return result
