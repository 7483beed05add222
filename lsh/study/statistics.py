"""The study's statistics: how well an early signal predicts the final perplexity, with bootstrap
intervals, how much of that is more than the configuration's structure (within groups, controlling for
the choices, against what the labels alone predict), and how the strategies compare over training seeds
and repeats. SciPy computes the coefficients and the paired bootstrap of one seed; the bootstraps that
draw whole clusters (training seeds, configurations) are computed here; pandas holds the tables."""

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


def summarise_methods(replays: pd.DataFrame, seed: int, reference: str | None = None) -> pd.DataFrame:
    """Per strategy and pool size: final test perplexity and regret, the mean over training seeds of each
    seed's mean over its repeats, with a 95 % interval from the seed bootstrap (seed_bootstrap_mean: nan
    with one training seed); `seeds` counts the training seeds a row rests on; mean candidate-epochs (and,
    where the replays have them, with the dense model's, the finalists' epoch when selection ends and the
    share of newcomers kept); the share of repeats selecting the table's best. With a `reference` strategy:
    `vs_reference`, the test perplexity minus the reference's at the same pool size, paired within training
    seeds (seed_bootstrap_difference), and `lower_seeds`, the training seeds on which it is the lower. Two
    strategies' own intervals may overlap while their paired difference is clear of zero: the seed's luck,
    shared by both, is in the former and cancels in the latter."""
    rows = []
    for (strategy, n), group in replays.groupby(["strategy", "n"], sort=False):
        training = group["seed"].to_numpy()
        ppl, ppl_low, ppl_high = seed_bootstrap_mean(group["test_ppl"], training, seed)
        regret, reg_low, reg_high = seed_bootstrap_mean(group["regret"], training, seed)
        row = {"strategy": strategy, "n": n, "seeds": int(group.loc[np.isfinite(group["test_ppl"]), "seed"].nunique()),
               "repeats": len(group), "test_ppl": ppl, "test_ppl_low": ppl_low, "test_ppl_high": ppl_high,
               "regret": regret, "regret_low": reg_low, "regret_high": reg_high,
               "candidate_epochs": float(group["candidate_epochs"].mean())}
        if reference is not None:
            ref = replays[(replays["strategy"] == reference) & (replays["n"] == n)]
            gap, low, high, lower = seed_bootstrap_difference(group["test_ppl"], training, ref["test_ppl"],
                                                                 ref["seed"].to_numpy(), seed)
            row.update({"vs_reference": gap, "vs_reference_low": low, "vs_reference_high": high,
                        "lower_seeds": lower})
        for extra in ("candidate_epochs_with_dense", "finalist_epoch", "newcomers_kept"):  # where the replays have them
            if extra in group:
                row[extra] = float(group[extra].mean()) if group[extra].notna().any() else math.nan
        row.update({"selects_best": float(group["selects_best"].mean()),
                    "nothing_selected": int(group["config"].isna().sum())})
        rows.append(row)
    return pd.DataFrame(rows)

# --- what varies: training seeds, configurations, and the configuration's structure ----------------
#
# A bootstrap over clusters (training seeds, or configurations with all their seeds) resamples whole
# clusters: the noise the interval speaks of is the variation between them. Resampled points are
# carried as integer weights (a point drawn twice weighs 2), so every resample is computed at once;
# the weighted coefficients equal the plain ones on the expanded sample.


def _per_seed(values: np.ndarray, groups: np.ndarray) -> dict:
    """Each training seed's finite values."""
    values, groups = np.asarray(values, dtype=float), np.asarray(groups)
    ok = np.isfinite(values)
    return {g: values[ok][groups[ok] == g] for g in np.unique(groups[ok])}


def _resampled_means(per_seed: list[np.ndarray], drawn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For every resample (row of `drawn`, the seeds drawn), each drawn seed's mean over its repeats drawn
    with replacement."""
    means = np.empty(drawn.shape)
    for k, v in enumerate(per_seed):
        at = drawn == k
        means[at] = v[rng.integers(0, len(v), size=(int(at.sum()), len(v)))].mean(axis=1)
    return means


def seed_bootstrap_mean(values: np.ndarray, groups: np.ndarray, seed: int,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """The mean over training seeds of each seed's mean, and its 95 % percentile interval from a two-level
    bootstrap: seeds drawn with replacement, then each drawn seed's repeats with replacement. Non-finite
    values are left out; the interval is nan with fewer than 2 seeds, as it cannot speak of training noise."""
    per_seed = list(_per_seed(values, groups).values())
    if not per_seed:
        return math.nan, math.nan, math.nan
    mean = float(np.mean([v.mean() for v in per_seed]))
    if len(per_seed) < 2:
        return mean, math.nan, math.nan
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(per_seed), size=(resamples, len(per_seed)))
    return (mean, *_percentile_interval(_resampled_means(per_seed, drawn, rng).mean(axis=1)))


def seed_bootstrap_difference(values: np.ndarray, groups: np.ndarray, reference: np.ndarray,
                              reference_groups: np.ndarray, seed: int,
                              resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float, int]:
    """A strategy's mean minus a reference's (negative: the strategy's is lower), paired within training
    seeds: both were replayed on the same trained table of each seed, so the seed's luck is shared and
    cancels. Returns the mean over the common seeds of (strategy's seed mean - reference's), its 95 %
    interval from the two-level bootstrap (the same seeds drawn for both, then each one's repeats within them; nan with fewer
    than 2 common seeds), and on how many of the common seeds the strategy's mean is the lower."""
    mine, theirs = _per_seed(values, groups), _per_seed(reference, reference_groups)
    common = [g for g in mine if g in theirs]
    if not common:
        return math.nan, math.nan, math.nan, 0
    a, b = [mine[g] for g in common], [theirs[g] for g in common]
    gaps = np.array([x.mean() - y.mean() for x, y in zip(a, b)])
    lower = int((gaps < 0).sum())
    if len(common) < 2:
        return float(gaps.mean()), math.nan, math.nan, lower
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(common), size=(resamples, len(common)))
    resampled = (_resampled_means(a, drawn, rng) - _resampled_means(b, drawn, rng)).mean(axis=1)
    return (float(gaps.mean()), *_percentile_interval(resampled), lower)


def resample_weights(clusters: np.ndarray, seed: int, strata: np.ndarray | None = None,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """[resamples, points]: how often each point is drawn when whole clusters are drawn with replacement
    (within each stratum, when given: clusters must nest in strata), reproducible from `seed`."""
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    strata = np.zeros(len(codes)) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, codes.max() + 1 if len(codes) else 0))
    for stratum in np.unique(strata):
        members = np.unique(codes[strata == stratum])
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=resamples)
    return counts[:, codes]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of weights (x, y: [points] or [resamples, points]); nan for a constant side."""
    total = w.sum(axis=-1, keepdims=True)
    dx = x - (w * x).sum(axis=-1, keepdims=True) / total
    dy = y - (w * y).sum(axis=-1, keepdims=True) / total
    vx, vy = (w * dx * dx).sum(axis=-1), (w * dy * dy).sum(axis=-1)
    tiny = 1e-20 * np.maximum((w * x * x).sum(axis=-1), (w * y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=-1) / np.sqrt(vx * vy)
    return np.where((vx > tiny) & (vy > tiny), np.clip(r, -1, 1), np.nan)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The average ranks each point would get in the expanded sample of each row of weights."""
    below = (x[:, None] < x[None, :]).astype(float)  # [j, i]: x_j < x_i
    equal = (x[:, None] == x[None, :]).astype(float)
    return w @ below + (w @ equal + 1) / 2


def _weighted_spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _weighted_pearson(_weighted_ranks(x, w), _weighted_ranks(y, w), w)


def _weighted_kendall(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of weights: every pair of points counted w_i w_j times."""
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    pairs = lambda m: ((w @ m) * w).sum(axis=-1)  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        return pairs(sx * sy) / np.sqrt(pairs(np.abs(sx)) * pairs(np.abs(sy)))


WEIGHTED: dict[str, Callable[..., np.ndarray]] = {"pearson": _weighted_pearson, "spearman": _weighted_spearman,
                                                  "kendall": _weighted_kendall}


def _percentile_interval(statistics: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of the resamples' statistics (a degenerate resample's nan left out)."""
    finite = statistics[np.isfinite(statistics)]
    if not finite.size:
        return math.nan, math.nan
    low, high = np.percentile(finite, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def _finite(x: np.ndarray, y: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok], *(np.asarray(o)[ok] for o in others)


def cluster_coefficient_with_interval(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, name: str,
                                      seed: int) -> tuple[float, float, float]:
    """A coefficient over all points and its 95 % interval from a bootstrap drawing whole clusters (a
    configuration with all its training seeds: points of one cluster are not independent); nan for fewer
    than four finite pairs, fewer than 2 clusters or a constant side."""
    x, y, clusters = _finite(x, y, clusters)
    if len(x) < 4 or len(np.unique(clusters)) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    f = WEIGHTED[name]
    value = float(f(x, y, np.ones((1, len(x))))[0])
    return (value, *_percentile_interval(f(x, y, resample_weights(clusters, seed))))


def _within(x: np.ndarray, y: np.ndarray, groups: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The size-weighted mean of the groups' Spearman coefficients, per row of weights; a group whose
    signal or outcome is constant (in that resample) has none and is left out."""
    sums, sizes = np.zeros(len(w)), np.zeros(len(w))
    for g in np.unique(groups):
        at = groups == g
        if at.sum() < 3:
            continue
        r, size = _weighted_spearman(x[at], y[at], w[:, at]), w[:, at].sum(axis=-1)
        sums, sizes = sums + np.where(np.isfinite(r), r * size, 0), sizes + np.where(np.isfinite(r), size, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, sums / sizes, np.nan)


def within_group_spearman(x: np.ndarray, y: np.ndarray, groups: np.ndarray, clusters: np.ndarray,
                          seed: int) -> tuple[float, float, float]:
    """Spearman within groups (configurations sharing a death method): what a signal ranks beyond the
    group, as the size-weighted mean of the groups' coefficients, with a 95 % interval from a bootstrap
    drawing clusters within their groups. nan where no group of 3 or more varies on both sides."""
    x, y, groups, clusters = _finite(x, y, groups, clusters)
    value = float(_within(x, y, groups, np.ones((1, len(x))))[0])
    if not math.isfinite(value):
        return math.nan, math.nan, math.nan
    return (value, *_percentile_interval(_within(x, y, groups, resample_weights(clusters, seed, strata=groups))))


def one_hot_design(labels: pd.DataFrame) -> np.ndarray:
    """[rows, 1 + dummies]: an intercept and one indicator per level but the first of every column that
    varies (a constant column explains nothing); values compared as text."""
    dummies = pd.get_dummies(labels.astype(str), drop_first=True, dtype=float)
    return np.column_stack([np.ones(len(labels)), dummies.to_numpy(float)])


def _residuals(r: np.ndarray, design: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[resamples, points]: each row of r less its weighted least-squares fit on the design (the
    minimum-norm fit where a resample lacks a level: its fitted values are still the projection)."""
    p = design.shape[1]
    gram = (w @ (design[:, :, None] * design[:, None, :]).reshape(len(design), p * p)).reshape(-1, p, p)
    beta = np.einsum("bpq,bq->bp", np.linalg.pinv(gram, rcond=1e-10), (w * r) @ design)
    return r - beta @ design.T


def _partial(x: np.ndarray, y: np.ndarray, design: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson's r of the residuals of the ranks, per row of weights: 0 where the design explains the
    signal's ranks (nothing beyond the labels), nan where it explains the outcome's (nothing to predict)."""
    rx, ry = _weighted_ranks(x, w), _weighted_ranks(y, w)
    ex, ey = _residuals(rx, design, w), _residuals(ry, design, w)
    spread = lambda r: (w * (r - (w * r).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)) ** 2).sum(-1)  # noqa: E731
    left = lambda e, r: (w * e * e).sum(-1) > 1e-10 * spread(r)  # noqa: E731
    return np.where(~left(ey, ry), np.nan, np.where(left(ex, rx), _weighted_pearson(ex, ey, w), 0.0))


def partial_spearman(x: np.ndarray, y: np.ndarray, design: np.ndarray, clusters: np.ndarray,
                     seed: int) -> tuple[float, float, float]:
    """Spearman controlling for the design (the configuration's categorical choices): ranks regressed on
    the design by least squares, residuals correlated; a 95 % interval from a bootstrap drawing whole
    clusters. nan with no more points than the design has columns plus 2."""
    x, y, design, clusters = _finite(x, y, design, clusters)
    if len(x) < design.shape[1] + 2 or len(np.unique(clusters)) < 2:
        return math.nan, math.nan, math.nan
    value = float(_partial(x, y, design, np.ones((1, len(x))))[0])
    if not math.isfinite(value):
        return math.nan, math.nan, math.nan
    return (value, *_percentile_interval(_partial(x, y, design, resample_weights(clusters, seed))))


def loo_additive_prediction(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's outcome predicted, leave-one-out, by least squares on the design fitted to the other rows
    with a finite outcome: what the configuration's labels alone predict. nan where the others do not
    determine the row's prediction (a level seen in no other row)."""
    design, y = np.asarray(design, dtype=float), np.asarray(y, dtype=float)
    out = np.full(len(y), math.nan)
    for i in range(len(y)):
        train = np.isfinite(y)
        train[i] = False
        if not train.any():
            continue
        X = design[train]
        pinv = np.linalg.pinv(X, rcond=1e-10)
        if np.allclose(design[i] @ pinv @ X, design[i], atol=1e-8):  # in the rows' span: estimable
            out[i] = float(design[i] @ (pinv @ y[train]))
    return out
