"""Checkpoints: atomic, safely loaded (weights_only), with what an exact resume needs.

A checkpoint `epoch-NNN.pt` holds the model as trained and validated in that epoch
(`model`, `masks`) and, beside it, where the next epoch starts (`weights`, `next_masks`,
optimizer, averaging, sparse and RNG states): see the package docstring. `run_config`
records what the run depends on, so a resume never continues another run's checkpoints.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from lsh import files, layout, numerics, params_file
from lsh.config import differences as describe_difference  # noqa: F401  (the dotted keys two run configs differ in)
from lsh.data import Corpus
from lsh.errors import LshError
from lsh.models import LanguageModel, ModelConfig, build_model, check_fits

CHECKPOINT_KEYS = ("epoch", "status", "model", "model_config", "run_config", "weights", "optimizer", "averaging",
                   "history", "rng")
CHECKPOINT_FORMAT = 2  # 2: `model`/`masks` as trained; `weights`/`next_masks` to resume from


def checkpoint_path(out: str | os.PathLike, epoch: int) -> Path:
    return layout.checkpoint(out, epoch)


def list_checkpoints(out: str | os.PathLike) -> dict[int, Path]:
    found = {}
    for p in Path(out).glob("epoch-*.pt"):
        try:
            found[int(p.stem.split("-")[1])] = p
        except ValueError:
            continue
    return dict(sorted(found.items()))


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically, with the environment that made it (numerics, CPU capability,
    versions), so a run continued elsewhere can say what changed."""
    state = {**state, "environment": state.get("environment") or numerics.current()}
    files.atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (weights_only); a truncated or foreign file is a clean error naming it."""
    path = Path(path)
    problem = files.not_a_file(path)
    if problem:
        raise LshError(f"checkpoint {path} {problem}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():  # it holds code or objects a safe load may not build
            first = str(e).split("\n")[0].strip()
            raise LshError(f"checkpoint {path} was refused as unsafe: it holds objects other than tensors and plain "
                           f"data, which torch.load(weights_only=True) will not run ({first}); "
                           "lsh never loads such files") from None
        raise LshError(f"checkpoint {path} is truncated or corrupted (UnpicklingError: {e}); "
                       "delete it and rerun") from None
    except Exception as e:  # zip and torch errors alike: the file is unusable
        raise LshError(f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: {e}); "
                       "delete it and rerun") from None
    if not isinstance(state, dict) or "format" not in state:
        raise LshError(f"checkpoint {path} is not an lsh checkpoint (format {CHECKPOINT_FORMAT})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise LshError(f"checkpoint {path} has format {state['format']}, this lsh reads format {CHECKPOINT_FORMAT}: "
                       "delete it (and what was made from it) and rerun")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise LshError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: it is incomplete; "
                       "delete it and rerun")
    model_config(state, path)
    _check_fields(state, path)
    return state


CHECKPOINT_STATUSES = ("ok", "diverged")


def _check_fields(state: dict, path: Path) -> None:
    """The fields every reader takes as they are written: a crafted or foreign value is named here, not met as a
    traceback inside the reader (a string for the environment record, a list for the weights, a status of none
    of the training loop's)."""
    def wrong(field: str, what: str) -> LshError:
        value = state.get(field)
        found = params_file.show(value) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"
        return LshError(f"checkpoint {path}: {field} is {found}, not {what}: it is not a checkpoint lsh wrote; "
                        "delete it and rerun")

    if not isinstance(state["status"], str) or state["status"] not in CHECKPOINT_STATUSES:
        raise wrong("status", f"one of {', '.join(CHECKPOINT_STATUSES)}")
    for field in ("model", "weights"):
        value = state[field]
        if value is None and field == "weights":  # a dense model before averaging resumes from `model`
            continue
        if not (isinstance(value, dict)
                and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())):
            raise wrong(field, "a mapping of parameter names to tensors")
    environment = state.get("environment")
    if environment is not None and not (isinstance(environment, dict)
                                        and isinstance(environment.get("versions", {}), dict)):
        raise wrong("environment", "a record of the numerics, the CPU and the versions")


def model_config(state: dict, path: str | os.PathLike) -> ModelConfig:
    """The checkpoint's model description, checked field by field (a crafted or foreign one is named)."""
    from lsh.typecheck import RecordError, build

    try:
        return build(ModelConfig, state["model_config"], "model_config")
    except (RecordError, ValueError) as e:
        raise LshError(f"checkpoint {path}: {e}: it is not a checkpoint lsh wrote; delete it and rerun") from None


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> LanguageModel:
    """Rebuild the model a checkpoint holds (its evaluation weights: averaged after the switch)."""
    config = ModelConfig(**state["model_config"])
    check_fits(config, 1, 1, torch.device(device), "the checkpoint's model")
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:  # tensors of other shapes or names than its model_config says
        raise LshError(f"a checkpoint's weights do not fit its model_config ({str(e).splitlines()[0]}): it is not a "
                       "checkpoint lsh wrote") from None
    return model.to(device)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def fingerprint(corpus: Corpus) -> str:
    """A short hash of the training and validation ids: checkpoints of other data are not resumed."""
    digest = hashlib.sha256(np.ascontiguousarray(corpus.train).tobytes())
    digest.update(np.ascontiguousarray(corpus.valid).tobytes())
    return digest.hexdigest()[:16]
