"""Is a study regime one where candidates learn before they are ranked? The criteria, measured on the
table's configurations (one training seed) at the first ranking epoch e0:

- most configurations have left the unigram plateau: at least 75 % of them (18 of the paper's 24) at
  least 15 % below the validation perplexity of a unigram model of the training tokens;
- they are still learning: the median configuration's validation perplexity falls at least 10 % from
  epoch e0 - 1 to e0;
- training has told them apart: at least 20 of 24 (83 %) distinct validation trajectories up to e0
  (at epoch 1 of the plateau regime only the initialisation had acted: 2 distinct trajectories).

A regime that fails them ranks candidates by their configuration's structure, not by how they learn.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BELOW_UNIGRAM = 0.15  # at least this far below the unigram perplexity ...
LEFT_PLATEAU_SHARE = 0.75  # ... for at least this share of the configurations
MEDIAN_FALL = 0.10  # the median configuration's fall from epoch e0 - 1 to e0
DISTINCT_SHARE = 20 / 24  # distinct validation trajectories up to e0
DIGITS = 6  # significant digits two trajectories must share to be the same


def unigram_perplexity(train: np.ndarray, valid: np.ndarray, vocab: int) -> float:
    """The perplexity on `valid` of the training tokens' unigram frequencies (add-one smoothed, so a
    word unseen in the slice costs a finite amount): the level a language model starts from."""
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=vocab).astype(float) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(math.exp(-log_p[np.asarray(valid, dtype=np.int64)].mean()))


def off_plateau(valid_ppl: np.ndarray | pd.Series | list[float], unigram: float) -> tuple[int, int]:
    """How many candidates have left the unigram plateau (at least BELOW_UNIGRAM below its perplexity),
    and how many must have for the ranking to measure learning (LEFT_PLATEAU_SHARE of them): the one
    definition of the plateau, for the study's calibration and for every run's rankings."""
    values = np.asarray(valid_ppl, dtype=float)
    return int((values <= (1 - BELOW_UNIGRAM) * unigram).sum()), math.ceil(LEFT_PLATEAU_SHARE * len(values))


def distinct_trajectories(trajectories: list[tuple[float, ...]]) -> tuple[int, int]:
    """How many of the validation trajectories differ (to DIGITS significant digits), and how many must."""
    return (len({tuple(_rounded(v) for v in t) for t in trajectories}),
            math.ceil(DISTINCT_SHARE * len(trajectories)))


def _rounded(x: float) -> float:
    return float(f"{x:.{DIGITS}g}") if x is not None and math.isfinite(x) else float("nan")


def criteria(curves: pd.DataFrame, unigram: float, e0: int) -> pd.DataFrame:
    """Each criterion's measured value, its threshold and whether it holds, from `curves` (one row per
    configuration and epoch, sparse configurations only: config, epoch, valid_ppl)."""
    wide = curves.pivot(index="config", columns="epoch", values="valid_ppl")
    missing = [e for e in range(1, e0 + 1) if e not in wide.columns]
    if missing:
        raise ValueError(f"the calibration needs validation perplexities at epochs 1..{e0}; missing {missing}")
    at_e0 = wide[e0]
    left, needed = off_plateau(at_e0, unigram)
    previous = wide[e0 - 1].median() if e0 > 1 else float("nan")
    fall = float(1 - at_e0.median() / previous) if e0 > 1 else float("nan")
    distinct, apart = distinct_trajectories(list(wide[list(range(1, e0 + 1))].itertuples(index=False, name=None)))
    rows = [
        ("left the plateau", f"configurations at epoch {e0} at least {BELOW_UNIGRAM:.0%} below the unigram "
         f"perplexity ({unigram:.1f})", left, needed, left >= needed),
        ("still learning", f"median configuration's fall in validation perplexity, epoch {e0 - 1} to {e0}",
         round(fall, 4), MEDIAN_FALL, bool(fall >= MEDIAN_FALL)),
        ("told apart", f"distinct validation trajectories up to epoch {e0} ({DIGITS} significant digits)",
         distinct, apart, distinct >= apart),
    ]
    return pd.DataFrame(rows, columns=["criterion", "measure", "value", "threshold", "holds"])
