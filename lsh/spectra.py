"""The Lyapunov spectra of checkpoints, and the training job's cache of them.

A record holds the spectrum in the params' layout (`exponents`), both layouts (`layouts`),
how many exponents met the floor (`clipped`) and the settings it was computed with, each
measured on the same validation sequences (from the seed). A diverged checkpoint (its
status, or non-finite weights or exponents) gives status "diverged" and no exponents, never
an error. The search's spectra jobs, the dense reference's training, the study's cells and
`lsh spectrum` all measure through these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from lsh import layout, records
from lsh.config import LyapunovConfig
from lsh.errors import LshError
from lsh.records import CachedSpectrum, PoolEntry, Spectra, SpectraCache, Spectrum

log = logging.getLogger("lsh.spectra")

SPECTRUM_KEYS = tuple(f.name for f in fields(Spectrum))  # of a spectrum record, what spectra.json keeps


def spectrum_record(state: dict, source: str, valid: Any, cfg: LyapunovConfig, seed: int) -> dict:
    """The spectrum record of a loaded checkpoint `state` (`source` names it) on the validation split."""
    import torch

    from lsh.device import resolve_device
    from lsh.lyapunov import model_spectra, state_size, uses_per_layer, validation_tokens
    from lsh.lyapunov.qr import exponent_count
    from lsh.training import model_from_checkpoint

    device = resolve_device(cfg.device, "lyapunov.device")
    tokens, offsets = validation_tokens(valid, cfg.samples, cfg.warmup + cfg.steps, seed)
    record: dict[str, Any] = {
        "exponents": None, "layout": cfg.layout, "layouts": None, "clipped": None, "blocks": None,
        "min_exponent": cfg.min_exponent, "method": cfg.method, "samples": cfg.samples, "steps": cfg.steps,
        "warmup": cfg.warmup, "seconds": 0.0, "epoch": state.get("epoch"), "status": state.get("status", "ok"),
        "state": cfg.state, "log_base": cfg.log_base, "dtype": cfg.dtype, "qr_every": cfg.qr_every,
        "n_exponents": cfg.exponents, "per_layer": None, "device": device.type, "checkpoint": source,
        "offsets": [int(o) for o in offsets],
    }
    finite = all(torch.isfinite(v).all() for v in state["model"].values()
                 if torch.is_tensor(v) and v.is_floating_point())
    if record["status"] == "diverged" or not finite:
        record["status"] = "diverged"
        return record
    model = model_from_checkpoint(state, device)
    k = exponent_count(cfg.exponents, state_size(model, cfg.state), f"{model.config.type} {cfg.state}")
    record["per_layer"] = uses_per_layer(model, cfg.state, k)
    start = time.perf_counter()
    spectrum = model_spectra(
        model, tokens.to(device), warmup=cfg.warmup, exponents=cfg.exponents, state=cfg.state, method=cfg.method,
        log_base=cfg.log_base, dtype=cfg.dtype, qr_every=cfg.qr_every, device=device, min_exponent=cfg.min_exponent,
    )
    record["seconds"] = round(time.perf_counter() - start, 4)
    if not all(bool(torch.isfinite(v).all()) for v in spectrum.layouts.values()):
        record["status"] = "diverged"
    else:
        record["layouts"] = {name: v.cpu().tolist() for name, v in spectrum.layouts.items()}
        record["exponents"] = record["layouts"][cfg.layout]
        record["clipped"], record["blocks"] = spectrum.clipped, spectrum.blocks
    return record


def checkpoint_spectrum(checkpoint: str | Path, data_dir: str | Path, cfg: LyapunovConfig, seed: int) -> dict:
    """The record `lsh spectrum` writes: the spectrum of one checkpoint's evaluation weights."""
    from lsh import data
    from lsh.training import load_checkpoint

    state = load_checkpoint(checkpoint)
    corpus = data.load_corpus(data_dir)
    if state["model_config"]["vocab"] != corpus.vocab_size:
        raise LshError(f"checkpoint {checkpoint} was trained on a vocabulary of {state['model_config']['vocab']} "
                       f"words, the data in {data_dir} has {corpus.vocab_size}: give the prepared data it was trained "
                       "on (--data)")
    return spectrum_record(state, str(checkpoint), corpus.valid, cfg, seed)


# The spectra cache. A training job computes the spectra of the epochs it trained while their
# models are at hand (on a GPU, on the device it already holds) and leaves them beside the
# checkpoints with the settings they were made with. The spectra job then only copies them out,
# without importing torch; with other settings (lyapunov changed, so only the spectra rerun) it
# computes them itself. The cache is a shortcut, never a source of other numbers: its records
# are what the spectra job would compute, under the same settings.


def cache_key(cfg: LyapunovConfig, seed: int) -> str:
    return hashlib.sha256(json.dumps({"lyapunov": asdict(cfg), "seed": seed}, sort_keys=True).encode()).hexdigest()[:16]


def _cached(train_dir: Path, epochs: list[int], cfg: LyapunovConfig, seed: int) -> dict[str, Spectrum] | None:
    path = Path(train_dir) / layout.SPECTRA_CACHE
    try:
        cache = records.read_if(path, SpectraCache)
    except LshError as e:  # a cache is a shortcut: a broken one is recomputed, not trusted
        log.warning("%s; computing the spectra instead", e)
        return None
    if cache is None or cache.key != cache_key(cfg, seed):
        return None
    spectra = cache.spectra
    if any(str(e) not in spectra or spectra[str(e)].mtime_ns != layout.checkpoint(train_dir, e).stat().st_mtime_ns
           for e in epochs):
        return None
    return {str(e): Spectrum(**{k: getattr(spectra[str(e)], k) for k in SPECTRUM_KEYS}) for e in epochs}


def write_cache(train_dir: Path, epochs: list[int], data_dir: Path, cfg: LyapunovConfig, seed: int) -> None:
    """Compute and leave the spectra of `epochs` beside the checkpoints (called by a training job)."""
    measured = epochs_spectra(train_dir, epochs, data_dir, cfg, seed, use_cache=False)
    cached = {e: CachedSpectrum(**asdict(s), mtime_ns=layout.checkpoint(train_dir, int(e)).stat().st_mtime_ns)
              for e, s in measured.spectra.items()}
    records.write(Path(train_dir) / layout.SPECTRA_CACHE, SpectraCache(key=cache_key(cfg, seed), spectra=cached))


def epochs_spectra(train_dir: Path, epochs: list[int], data_dir: Path, cfg: LyapunovConfig, seed: int, *,
                   use_cache: bool = True) -> Spectra:
    """The spectra of a training folder's checkpoints `epochs`, and the seconds they took."""
    cached = _cached(train_dir, epochs, cfg, seed) if use_cache else None
    if cached is not None:
        log.info("%s: the spectra of epochs %s from the training job's cache", train_dir, ", ".join(cached))
        return Spectra(spectra=cached, seconds=round(sum(s.seconds for s in cached.values()), 4))
    from lsh import data
    from lsh.training import load_checkpoint

    valid = data.load_split(data_dir, "valid")
    measured: dict[str, Spectrum] = {}
    for epoch in epochs:
        path = layout.checkpoint(train_dir, epoch)
        record = spectrum_record(load_checkpoint(path), str(path), valid, cfg, seed)
        measured[str(epoch)] = Spectrum(**{k: record[k] for k in SPECTRUM_KEYS})
    return Spectra(spectra=measured, seconds=round(sum(s.seconds for s in measured.values()), 4))


def new_epochs(entry: PoolEntry, train_dir: Path) -> list[int]:
    """The epochs a slot's job trained (and epoch 0 of a new candidate): a survivor's earlier epochs
    were measured in earlier rounds."""
    epochs = sorted(int(p.stem.split("-")[1]) for p in Path(train_dir).glob("epoch-*.pt"))
    return [e for e in epochs if not (entry.parent and e <= entry.epochs_before)]
