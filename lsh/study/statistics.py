"""The study's statistics: how well an early signal predicts the final perplexity, with bootstrap
intervals, and how the strategies compare over their repeats. SciPy computes every coefficient and
interval; pandas holds the tables."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

def _pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.pearsonr(x, y, axis=axis).statistic


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return _pearson(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis)


def _kendall(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b over the last axis, for every resample at once (scipy's kendalltau takes one
    pair of vectors at a time, which makes a bootstrap of thousands of resamples take minutes)."""
    x, y = np.moveaxis(np.asarray(x, dtype=float), axis, -1), np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    dx = np.sign(x[..., :, None] - x[..., None, :])
    dy = np.sign(y[..., :, None] - y[..., None, :])
    concordance = (dx * dy).sum(axis=(-1, -2))
    pairs_x, pairs_y = np.abs(dx).sum(axis=(-1, -2)), np.abs(dy).sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return concordance / np.sqrt(pairs_x * pairs_y)


# Each takes paired samples along an axis (the bootstrap's resamples in the other axes)
COEFFICIENTS: dict[str, Callable[..., np.ndarray]] = {"pearson": _pearson, "spearman": _spearman, "kendall": _kendall}
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def coefficient_with_interval(x: np.ndarray, y: np.ndarray, name: str, seed: int) -> tuple[float, float, float]:
    """A correlation coefficient and its 95 % percentile bootstrap interval (pairs resampled); nan for
    fewer than four finite pairs or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    f = COEFFICIENTS[name]
    with warnings.catch_warnings():  # a resample may hold one value only: its coefficient is nan, as it should
        warnings.simplefilter("ignore")
        value = float(f(x, y))
        result = stats.bootstrap((x, y), f, paired=True, vectorized=True, confidence_level=CONFIDENCE,
                                 n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=seed)
    low, high = result.confidence_interval
    return value, float(low), float(high)


def top_quarter_recall(signal: np.ndarray, final: np.ndarray) -> float:
    """Of the truly best quarter (lowest final perplexity), the share a signal keeps in its better half:
    what one elimination of the LSH schedule needs."""
    signal, final = np.asarray(signal, dtype=float), np.asarray(final, dtype=float)
    n = len(final)
    best = set(np.argsort(final, kind="stable")[: max(1, n // 4)])
    kept = set(np.argsort(np.where(np.isfinite(signal), signal, np.inf), kind="stable")[: n - n // 2])
    return len(best & kept) / len(best)


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t interval of the mean (nan for fewer than two finite values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return (float(values.mean()) if len(values) else math.nan), math.nan, math.nan
    mean, sem = float(values.mean()), float(stats.sem(values))
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def summarise_methods(replays: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and pool size: mean and 95 % interval of final test perplexity and regret, mean
    candidate-epochs, and the share of repeats that selected the table's best configuration."""
    rows = []
    for (strategy, n), group in replays.groupby(["strategy", "n"], sort=False):
        ppl, ppl_low, ppl_high = mean_interval(group["test_ppl"])
        regret, reg_low, reg_high = mean_interval(group["regret"])
        rows.append({"strategy": strategy, "n": n, "repeats": len(group), "test_ppl": ppl, "test_ppl_low": ppl_low,
                     "test_ppl_high": ppl_high, "regret": regret, "regret_low": reg_low, "regret_high": reg_high,
                     "candidate_epochs": float(group["candidate_epochs"].mean()),
                     "selects_best": float(group["selects_best"].mean()),
                     "nothing_selected": int(group["config"].isna().sum())})
    return pd.DataFrame(rows)
