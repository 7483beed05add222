"""The dense reference's spectra, epoch by epoch, from a model's checkpoints: what LyapunovPruner
compares trials with, measured as the trials' spectra are (one function, the same probe and options)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from lsh.errors import LshError

Checkpoint = Union[Mapping[str, Tensor], str, Path]
Probe = Union[Tensor, Callable[[nn.Module], tuple[nn.Module, Tensor]]]


def _state_dict(checkpoint: Checkpoint, epoch: int) -> Mapping[str, Tensor]:
    """A state dict, or one read from a file saved by torch.save (weights only: a checkpoint file may
    come from elsewhere); a file holding {"model": state_dict} or {"state_dict": ...} is read too."""
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise LshError(f"dense_spectra: the checkpoint of epoch {epoch}, {path}, does not exist") from None
        except Exception as e:  # unpickling refused or a damaged file: name the file, not torch's internals
            raise LshError(f"dense_spectra: the checkpoint of epoch {epoch}, {path}, cannot be read as weights "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        for key in ("model", "state_dict"):
            if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
        checkpoint = loaded
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise LshError(f"dense_spectra: the checkpoint of epoch {epoch} is a {type(checkpoint).__name__}; expected a "
                       "state dict (name -> tensor) or the path of a file torch.save wrote one to")
    return checkpoint


def dense_spectra(model: nn.Module, checkpoints: Union[Sequence[Checkpoint], Mapping[int, Checkpoint]],
                  probe: Probe, **options: Any) -> dict[int, Tensor]:
    """The spectra {epoch: spectrum} of `model` with each checkpoint's weights loaded (epoch 0: the
    initialisation), for LyapunovPruner(dense=...).

    checkpoints: a sequence (index = epoch) or a mapping epoch -> checkpoint, every epoch from 0 on; a
    checkpoint is a state dict or the path of a file torch.save wrote one to. probe: the inputs of
    lsh.module_spectrum(model, probe), or a function of the loaded model returning (the recurrent
    module to measure, its inputs), e.g. `lambda m: (m.lstm, m.embedding(tokens))` where the inputs
    depend on the weights. options: lsh.module_spectrum's, as the trials' spectra use them (the
    returned tensors carry them, and LyapunovPruner refuses trials measured otherwise). `model` itself
    is left as it is (each checkpoint is loaded into a copy).
    """
    from lsh.lyapunov.modules import module_spectrum  # the public function, as the user's trials call it

    if isinstance(checkpoints, Mapping):
        items = dict(checkpoints)
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, (str, bytes)):
        items = dict(enumerate(checkpoints))
    else:
        raise LshError(f"dense_spectra: checkpoints is a {type(checkpoints).__name__}; expected a list (index = epoch) "
                       "or a mapping epoch -> state dict or file")
    bad = [e for e in items if isinstance(e, bool) or not isinstance(e, int) or e < 0]
    if bad:
        raise LshError(f"dense_spectra: epoch {bad[0]!r} is not a whole number >= 0")
    missing = [e for e in range(max(items, default=-1) + 1) if e not in items]
    if not items or missing:
        raise LshError(f"dense_spectra: no checkpoint of epoch {missing[0] if items else 0} (the dense reference needs "
                       "every epoch from 0, the initialisation, on)")
    if not isinstance(model, nn.Module):
        raise LshError(f"dense_spectra: model is a {type(model).__name__}; expected a torch.nn.Module")
    out = {}
    for epoch in sorted(items):
        loaded = copy.deepcopy(model)
        try:
            loaded.load_state_dict(_state_dict(items[epoch], epoch))
        except RuntimeError as e:  # missing or unexpected keys, shapes that differ
            raise LshError(f"dense_spectra: the checkpoint of epoch {epoch} does not fit the model: "
                           f"{str(e).splitlines()[0]} ...") from None
        if callable(probe) and not isinstance(probe, Tensor):
            with torch.no_grad():
                measured = probe(loaded)
            if not (isinstance(measured, tuple) and len(measured) == 2):
                raise LshError(f"dense_spectra: probe(model) returned a {type(measured).__name__}; expected "
                               "(the recurrent module, its inputs)")
            out[epoch] = module_spectrum(measured[0], measured[1], **options)
        else:
            out[epoch] = module_spectrum(loaded, probe, **options)
    return out
