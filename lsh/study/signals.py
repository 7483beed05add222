"""Early signals against the final outcome (the paper's supplement Fig. 1, at the table's scale): for
each early epoch, every configuration's LS distance to the dense reference (under each ranker
option), its validation-loss gap to the dense model and its training loss, against its final test
perplexity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from lsh.search.ranking import ls_distances
from lsh.study.statistics import COEFFICIENTS, coefficient_with_interval, top_quarter_recall
from lsh.study.cells import DENSE
from lsh.study.table import Table

# The LS ranker's options the study compares: (embedding, distance, layout, PCA fit). t-SNE only with
# the pooled fit: it needs more points than one candidate's trajectory and the dense one.
LS_OPTIONS = [
    *itertools.product(("pca",), ("l2", "cosine"), ("blocks", "sorted"), ("pair", "pool")),
    *itertools.product(("raw",), ("l2", "cosine"), ("blocks", "sorted"), ("pair",)),
    *itertools.product(("tsne",), ("l2",), ("blocks", "sorted"), ("pool",)),
]


def ls_signal_name(embedding: str, distance: str, layout: str, fit: str) -> str:
    return f"ls:{embedding}-{distance}-{layout}-{fit}"


def signal_points(table: Table, epochs: list[int], seed: int, options: list[tuple] = LS_OPTIONS) -> pd.DataFrame:
    """One row per (configuration, early epoch): every signal's value and the final test perplexity."""
    dense_losses = table.losses(DENSE, seed)
    rows = []
    for E in epochs:
        at = {cid: table.row(cid, seed, E) for cid, _ in table.configs}
        signals: dict[str, dict[str, float]] = {}
        for embedding, distance, layout, fit in options:
            dense = table.trajectory(DENSE, seed, E, layout)
            trajectories = {cid: table.trajectory(cid, seed, E, layout) for cid, _ in table.configs}
            signals[ls_signal_name(embedding, distance, layout, fit)] = ls_distances(
                dense, trajectories, embedding=embedding, distance=distance, fit=fit, seed=seed)
        for cid, _ in table.configs:
            row = at[cid]
            ok = row is not None and row["status"] == "ok"
            loss = float(row["valid_loss"]) if ok else math.inf
            point = {"config": cid, "epoch": E, "final_test_ppl": table.final(cid, seed)["test_ppl"],
                     "loss_gap": loss - dense_losses[E] if ok else math.inf,
                     "valid_ppl": float(row["valid_ppl"]) if ok else math.inf,
                     "train_loss": float(row["train_loss"]) if ok else math.inf}
            point.update({name: values[cid] for name, values in signals.items()})
            rows.append(point)
    return pd.DataFrame(rows)


def signal_table(points: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per signal and early epoch: Pearson, Spearman and Kendall with 95 % bootstrap intervals, and the
    top-quarter recall; n counts the configurations with a finite signal and final perplexity."""
    signals = [c for c in points.columns if c not in ("config", "epoch", "final_test_ppl")]
    rows = []
    for E, at in points.groupby("epoch"):
        y = at["final_test_ppl"].to_numpy(float)
        for name in signals:
            x = at[name].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            row = {"signal": name, "epoch": int(E), "n": int(ok.sum())}
            for coefficient in COEFFICIENTS:
                value, low, high = coefficient_with_interval(x, y, coefficient, seed)
                row.update({coefficient: value, f"{coefficient}_low": low, f"{coefficient}_high": high})
            row["top_quarter_recall"] = top_quarter_recall(x, y)
            rows.append(row)
    return pd.DataFrame(rows)
