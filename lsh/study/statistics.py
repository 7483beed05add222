"""The study's statistics: how well an early signal predicts the final perplexity, with bootstrap
intervals, how much of that is more than the configuration's structure (within groups, controlling for
the choices, against what the labels alone predict), and how the strategies compare over training seeds
and repeats. SciPy computes the coefficients and the paired bootstrap of one seed; the bootstraps that
draw whole clusters (training seeds, configurations) are computed here; pandas holds the tables."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

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


def summarise_methods(replays: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Per strategy and pool size: final test perplexity and regret, the mean over training seeds of each
    seed's mean over its repeats, with a 95 % t interval over the training seeds (`over_seeds`: nan with one
    seed); `seeds` counts the training seeds a row rests on; `repeat_sd`, the spread of the proposer's
    repeats on one trained table (the mean over seeds of their standard deviation: it describes the search's
    luck, not training noise); mean candidate-epochs (and, where the replays have them, with the dense
    model's, the finalists' epoch when selection ends and the share of newcomers kept); the share of repeats
    selecting the table's best. With a `reference` strategy: `vs_reference`, the test perplexity minus the
    reference's at the same pool size, paired within training seeds, with its t interval over seeds and the
    exact sign test's p (`paired_over_seeds`); `lower_seeds`, the seeds on which it is the lower;
    `budget_vs_reference`, its candidate-epochs minus the reference's, each with the dense model's epochs
    charged where it needs them. Two strategies' own intervals may overlap while their paired difference is
    clear of zero: the seed's luck, shared by both, is in the former and cancels in the latter."""
    rows = []
    for (strategy, n), group in replays.groupby(["strategy", "n"], sort=False):
        training = group["seed"].to_numpy()
        ppl, ppl_low, ppl_high = over_seeds(group["test_ppl"], training)
        regret, reg_low, reg_high = over_seeds(group["regret"], training)
        row = {"strategy": strategy, "n": n, "seeds": int(group.loc[np.isfinite(group["test_ppl"]), "seed"].nunique()),
               "repeats": len(group), "test_ppl": ppl, "test_ppl_low": ppl_low, "test_ppl_high": ppl_high,
               "regret": regret, "regret_low": reg_low, "regret_high": reg_high,
               "repeat_sd": repeat_spread(group["test_ppl"], training),
               "candidate_epochs": float(group["candidate_epochs"].mean())}
        if reference is not None:
            ref = replays[(replays["strategy"] == reference) & (replays["n"] == n)]
            test = paired_over_seeds(group["test_ppl"], training, ref["test_ppl"], ref["seed"].to_numpy())
            row.update({"vs_reference": test.mean, "vs_reference_low": test.low, "vs_reference_high": test.high,
                        "vs_reference_p_sign": test.p_sign, "lower_seeds": test.lower, "vs_reference_sd": test.sd})
            if "candidate_epochs_with_dense" in group:
                row["budget_vs_reference"] = float(group["candidate_epochs_with_dense"].mean()
                                                   - ref["candidate_epochs_with_dense"].mean())
        for extra in ("candidate_epochs_with_dense", "finalist_epoch", "newcomers_kept"):  # where the replays have them
            if extra in group:
                row[extra] = float(group[extra].mean()) if group[extra].notna().any() else math.nan
        row.update({"selects_best": float(group["selects_best"].mean()),
                    "nothing_selected": int(group["config"].isna().sum())})
        rows.append(row)
    return pd.DataFrame(rows)

# --- what varies: training seeds, configurations, and the configuration's structure ----------------
#
# Training seeds are few (3 in the study), so a comparison over them uses tests valid for that number:
# a t interval over the seeds' paired differences (which assumes they scatter normally) and the exact
# sign test (which assumes nothing, and cannot reach p < 0.05 with fewer than 6 seeds). A bootstrap
# that redraws 3 seeds cannot be wider than their spread, so none is used over seeds.
#
# A bootstrap over configurations (with all their seeds) resamples whole clusters: the noise the
# interval speaks of is the variation between them. Resampled points are carried as integer weights
# (a point drawn twice weighs 2), so every resample is computed at once; the weighted coefficients
# equal the plain ones on the expanded sample.


def _per_seed(values: np.ndarray, groups: np.ndarray) -> dict:
    """Each training seed's finite values."""
    values, groups = np.asarray(values, dtype=float), np.asarray(groups)
    ok = np.isfinite(values)
    return {g: values[ok][groups[ok] == g] for g in np.unique(groups[ok])}


def over_seeds(values: np.ndarray, groups: np.ndarray) -> tuple[float, float, float]:
    """The mean over training seeds of each seed's mean over its finite values, and the 95 % t interval of
    that mean over the seeds (nan with fewer than 2 seeds: nothing can be said of training noise)."""
    return mean_interval(np.array([v.mean() for v in _per_seed(values, groups).values()]))


def repeat_spread(values: np.ndarray, groups: np.ndarray) -> float:
    """The mean over training seeds of the standard deviation of their repeats (nan where none has 2)."""
    sds = [v.std(ddof=1) for v in _per_seed(values, groups).values() if len(v) > 1]
    return float(np.mean(sds)) if sds else math.nan


@dataclass(frozen=True, kw_only=True)
class SeedTest:
    """A difference paired within training seeds: its mean over the seeds, the 95 % t interval (df = seeds
    - 1; nan with fewer than 2), the exact two-sided sign test's p over the seeds whose difference is not
    zero, the seeds on which it is negative, and the differences' standard deviation."""

    mean: float
    low: float
    high: float
    p_sign: float
    lower: int
    seeds: int
    sd: float

    def clear_of_zero(self) -> bool | None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return None
        return self.low > 0 or self.high < 0


def reference_test(row: pd.Series) -> SeedTest:
    """The paired test against the reference that summarise_methods recorded in a row of its table."""
    return SeedTest(mean=row["vs_reference"], low=row["vs_reference_low"], high=row["vs_reference_high"],
                    p_sign=row["vs_reference_p_sign"], lower=int(row["lower_seeds"]), seeds=int(row["seeds"]),
                    sd=row["vs_reference_sd"])


def seed_test(gaps: np.ndarray) -> SeedTest:
    """The paired test of per-seed differences `gaps` (one per training seed; non-finite left out)."""
    gaps = np.asarray(gaps, dtype=float)
    gaps = gaps[np.isfinite(gaps)]
    mean, low, high = mean_interval(gaps)
    lower, higher = int((gaps < 0).sum()), int((gaps > 0).sum())
    p_sign = float(stats.binomtest(lower, lower + higher, 0.5).pvalue) if lower + higher else math.nan
    sd = float(gaps.std(ddof=1)) if len(gaps) > 1 else math.nan
    return SeedTest(mean=mean, low=low, high=high, p_sign=p_sign, lower=lower, seeds=len(gaps), sd=sd)


def paired_over_seeds(values: np.ndarray, groups: np.ndarray, reference: np.ndarray,
                      reference_groups: np.ndarray) -> SeedTest:
    """A strategy's mean minus a reference's (negative: the strategy's is lower), paired within training
    seeds: both were replayed on the same trained table of each seed, so the seed's luck is shared and
    cancels. The seed_test of the per-seed differences of their means over repeats."""
    mine, theirs = _per_seed(values, groups), _per_seed(reference, reference_groups)
    return seed_test(np.array([mine[g].mean() - theirs[g].mean() for g in mine if g in theirs]))


def seeds_for_power(sd: float, difference: float = 1.0, power: float = 0.8, most: int = 10_000) -> int | None:
    """The fewest training seeds at which a two-sided paired t test at the 5 % level detects a true
    `difference` with probability `power`, when per-seed differences scatter with standard deviation `sd`
    (the noncentral t distribution); None when `sd` is unknown or `most` do not suffice."""
    if not (math.isfinite(sd) and sd > 0):
        return None
    for s in range(2, most + 1):
        crit = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, s - 1)
        shift = difference / (sd / math.sqrt(s))
        if stats.nct.sf(crit, s - 1, shift) + stats.nct.cdf(-crit, s - 1, shift) >= power:
            return s
    return None


def sign_test_seeds() -> int:
    """The fewest seeds at which the exact two-sided sign test can reach p < 0.05 (all seeds agreeing)."""
    s = 1
    while 2 * 0.5**s >= 1 - CONFIDENCE:
        s += 1
    return s


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
