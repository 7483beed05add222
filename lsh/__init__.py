"""LS-based hyperpruning (LSH) of recurrent language models.

The package holds all the logic; the Snakemake rules and DVC stages only call the
`lsh` command line (`lsh.cli`). The library's public API (docs/api.md) is importable from
here and loaded on first use, so that `import lsh` imports neither torch nor numpy (the
command line sets the numerics caps before they load):

    lsh.module_spectrum   the Lyapunov spectrum of a torch.nn.LSTM, GRU or RNN or their cells (lsh.lyapunov.modules)
    lsh.step_spectrum     the Lyapunov spectrum of any step function h' = step(h, x) (lsh.lyapunov.modules)
    lsh.ls_distance       a candidate's LS distance to a dense reference (lsh.search.ranking)
    lsh.LyapunovPruner    an Optuna pruner eliminating trials by that distance (lsh.pruner)
    lsh.report_spectrum   a trial's spectrum at an epoch, for the pruner (lsh.pruner)
    lsh.dense_spectra     the dense reference's spectra by epoch from its checkpoints (lsh.lyapunov.reference)
    lsh.LshError          what every refused input raises: one line naming the key, file or value (lsh.errors)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "module_spectrum": "lsh.lyapunov.modules",
    "step_spectrum": "lsh.lyapunov.modules",
    "ls_distance": "lsh.search.ranking",
    "LyapunovPruner": "lsh.pruner",
    "report_spectrum": "lsh.pruner",
    "dense_spectra": "lsh.lyapunov.reference",
    "LshError": "lsh.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __dir__() -> list[str]:
    """The public names too, though they load on first use (so that `dir(lsh)` and completion show them)."""
    return sorted({*globals(), *_PUBLIC})


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lsh' has no attribute {name!r}")
