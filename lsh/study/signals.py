"""Early signals against the final outcome (the paper's supplement Fig. 1, at the table's scale): for
each early epoch and training seed, every configuration's LS distance to the dense reference (under
each ranker option), its validation-loss gap to the dense model and its training loss, against its
final test perplexity; per training seed and pooled over them. Beside each, how much of it is more
than the configuration's structure: within death methods, controlling for the choices, and against
`labels_only`, what the choices alone predict."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from lsh.search.ranking import ls_distances
from lsh.search.space import CONFIG_KEYS
from lsh.study.cells import DENSE
from lsh.study.statistics import (
    COEFFICIENTS,
    cluster_coefficient_with_interval,
    coefficient_with_interval,
    loo_additive_prediction,
    one_hot_design,
    partial_spearman,
    top_quarter_recall,
    within_group_spearman,
)
from lsh.study.table import Table

POOLED = "pooled"  # the `seeds` of a row over every training seed
LABELS_ONLY = "labels_only"  # the reference signal: the configuration's choices alone
NOT_SIGNALS = ("config", "seed", "epoch", "final_test_ppl", *CONFIG_KEYS)

# The LS ranker's options the study compares: (embedding, distance, layout, PCA fit). t-SNE only with
# the pooled fit: it needs more points than one candidate's trajectory and the dense one.
LS_OPTIONS = [
    *itertools.product(("pca",), ("l2", "cosine"), ("blocks", "sorted"), ("pair", "pool")),
    *itertools.product(("raw",), ("l2", "cosine"), ("blocks", "sorted"), ("pair",)),
    *itertools.product(("tsne",), ("l2",), ("blocks", "sorted"), ("pool",)),
]


def ls_signal_name(embedding: str, distance: str, layout: str, fit: str) -> str:
    return f"ls:{embedding}-{distance}-{layout}-{fit}"


def choice_labels(configs: pd.DataFrame) -> pd.DataFrame:
    """The configurations' choices as labels (init, death, growth, redistribution, death_rate rounded):
    the design of the structure controls; one_hot_design drops a choice that does not vary."""
    labels = configs[list(CONFIG_KEYS)].copy()
    labels["death_rate"] = labels["death_rate"].astype(float).round(6)
    return labels


def labels_only(table: Table, seed: int) -> dict[str, float]:
    """Each configuration's final test perplexity (training seed `seed`) predicted, leave-one-out, by an
    additive model of its choices fitted to the other configurations': what the labels alone predict,
    the reference an early signal has to beat."""
    ids = [cid for cid, _ in table.configs]
    design = one_hot_design(choice_labels(pd.DataFrame([c for _, c in table.configs])))
    finals = np.array([table.final(cid, seed)["test_ppl"] for cid in ids], dtype=float)
    return dict(zip(ids, loo_additive_prediction(design, finals).tolist()))


def _seed_points(table: Table, epochs: list[int], seed: int, embedding_seed: int, options: list[tuple]) -> list[dict]:
    """signal_points' rows of one training seed."""
    dense_losses = table.losses(DENSE, seed)
    reference = labels_only(table, seed)
    rows = []
    for E in epochs:
        signals: dict[str, dict[str, float]] = {}
        for embedding, distance, layout, fit in options:
            dense = table.trajectory(DENSE, seed, E, layout)
            trajectories = {cid: table.trajectory(cid, seed, E, layout) for cid, _ in table.configs}
            signals[ls_signal_name(embedding, distance, layout, fit)] = ls_distances(
                dense, trajectories, embedding=embedding, distance=distance, fit=fit, seed=embedding_seed)
        for cid, config in table.configs:
            row = table.row(cid, seed, E)
            ok = row is not None and row["status"] == "ok"
            loss = float(row["valid_loss"]) if ok else math.inf
            point = {"config": cid, "seed": seed, **{k: config[k] for k in CONFIG_KEYS}, "epoch": E,
                     "final_test_ppl": table.final(cid, seed)["test_ppl"],
                     "loss_gap": loss - dense_losses[E] if ok else math.inf,
                     "valid_ppl": float(row["valid_ppl"]) if ok else math.inf,
                     "train_loss": float(row["train_loss"]) if ok else math.inf}
            point.update({name: values[cid] for name, values in signals.items()})
            point[LABELS_ONLY] = reference[cid]
            rows.append(point)
    return rows


def signal_points(table: Table, epochs: list[int], seed: int | None = None, options: list[tuple] = LS_OPTIONS,
                  seeds: list[int] | None = None) -> pd.DataFrame:
    """One row per (configuration, training seed, early epoch): the configuration's choices, every signal's
    value and that seed's final test perplexity. `seeds`: the training seeds (default: all the table's);
    `seed` seeds the embeddings (default: each training seed its own, as a replay on that seed embeds)."""
    rows = [point for s in (table.seeds if seeds is None else seeds)
            for point in _seed_points(table, epochs, s, s if seed is None else seed, options)]
    return pd.DataFrame(rows)


def _named(name: str, estimate: tuple[float, float, float]) -> dict[str, float]:
    value, low, high = estimate
    return {name: value, f"{name}_low": low, f"{name}_high": high}


def _within_seed(values: pd.Series, seeds: pd.Series) -> np.ndarray:
    """Each seed's finite values centred and scaled (z-scores): a selection compares candidates within one
    training seed, so what one seed adds to every value (a luckier run of all) is no signal."""
    out = values.to_numpy(float).copy()
    for s in seeds.unique():
        at = (seeds == s).to_numpy() & np.isfinite(out)
        if at.sum() > 1:
            spread = out[at].std()
            out[at] = (out[at] - out[at].mean()) / (spread if spread > 0 else 1.0)
    return out


def _signal_row(at: pd.DataFrame, name: str, seed: int, pooled: bool) -> dict:
    """One signal at one epoch over the points `at` (one training seed's, or every seed's when pooled:
    then signal and outcome are z-scored within each seed, and the intervals draw whole configurations,
    their seeds together)."""
    x, y = at[name].to_numpy(float), at["final_test_ppl"].to_numpy(float)
    if pooled:
        x, y = _within_seed(at[name], at["seed"]), _within_seed(at["final_test_ppl"], at["seed"])
    configs = at["config"].to_numpy()
    row: dict = {"n": int((np.isfinite(x) & np.isfinite(y)).sum())}
    for coefficient in COEFFICIENTS:
        row.update(_named(coefficient, cluster_coefficient_with_interval(x, y, configs, coefficient, seed) if pooled
                          else coefficient_with_interval(x, y, coefficient, seed)))
    # a selection ranks within one training seed: the pooled recall is the seeds' mean
    row["top_quarter_recall"] = float(np.mean([top_quarter_recall(one[name], one["final_test_ppl"])
                                               for _, one in at.groupby("seed")]))
    row.update(_named("within_death", within_group_spearman(x, y, at["death"].to_numpy(str), configs, seed)))
    design = one_hot_design(choice_labels(at))
    row.update(_named("partial_spearman", partial_spearman(x, y, design, configs, seed)))
    return row


def signal_table(points: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per signal, early epoch and training seed (column seeds: the seed, or pooled over every seed):
    Pearson, Spearman and Kendall with 95 % bootstrap intervals, the top-quarter recall, and what is more
    than the configuration's structure: Spearman within death methods (within_death) and controlling for
    the choices (partial_spearman), with intervals. n counts the points with a finite signal and outcome."""
    signals = [c for c in points.columns if c not in NOT_SIGNALS]
    rows = []
    for E, at in points.groupby("epoch"):
        for name in signals:
            for s, one in at.groupby("seed"):
                rows.append({"signal": name, "epoch": int(E), "seeds": str(s), **_signal_row(one, name, seed, False)})
            rows.append({"signal": name, "epoch": int(E), "seeds": POOLED, **_signal_row(at, name, seed, True)})
    return pd.DataFrame(rows)
