"""The study's figures: the early signals' correlations with their intervals (pooled over training
seeds), the methods over training seeds, and the anytime curves (the paper's Fig. 3, right)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from lsh.plotting import pyplot, save_figure
from lsh.study.signals import POOLED


def _coefficient_bars(ax, table: pd.DataFrame, signals: list[str], by: str, groups: list, coefficient: str,
                      labels: dict[str, str]) -> None:
    """Each signal's `coefficient` with its 95 % interval, one point per group of column `by`, side by side."""
    width, colors = 0.8 / max(1, len(signals)), pyplot().get_cmap("tab10")
    for i, signal in enumerate(signals):
        rows = table[table["signal"] == signal].set_index(by).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(signals) - 1) / 2) * width
        value = rows[coefficient].to_numpy(float)
        err = np.vstack([value - rows[f"{coefficient}_low"].to_numpy(float),
                         rows[f"{coefficient}_high"].to_numpy(float) - value])
        ax.errorbar(x, value, yerr=np.clip(np.nan_to_num(err, nan=0.0), 0, None), fmt="o", capsize=3, color=colors(i),
                    label=labels.get(signal, signal))
    ax.axhline(0, color="0.5", lw=0.8)


def plot_signals(table: pd.DataFrame, signals: list[str], labels: dict[str, str], path: Path) -> None:
    """Spearman and Pearson (95 % bootstrap intervals) of each early signal against final test perplexity,
    per early epoch: the rows pooled over training seeds where the table has per-seed rows too."""
    n_seeds = 1
    if "seeds" in table.columns:
        n_seeds = table["seeds"].nunique() - 1  # the seeds' own rows and the pooled one
        table = table[table["seeds"] == POOLED]
    over = f"pooled over {n_seeds} training seeds" if n_seeds > 1 else "one training seed"
    plt = pyplot()
    coefficients = ("spearman", "pearson")
    fig, axes = plt.subplots(1, len(coefficients), figsize=(6.2 * len(coefficients), 4.0), sharey=True, squeeze=False)
    epochs = sorted(table["epoch"].unique())
    for ax, coefficient in zip(axes[0], coefficients):
        _coefficient_bars(ax, table, signals, "epoch", epochs, coefficient, labels)
        ax.set_xticks(np.arange(len(epochs)), [f"epoch {e}" for e in epochs])
        ax.set_title(f"{coefficient.capitalize()} with final test perplexity\n({over}; "
                     "95 % bootstrap interval)", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("correlation (higher: the signal predicts better)")
    handles, texts = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def plot_anytime(anytime: pd.DataFrame, strategies: list[str], path: Path, best: float) -> None:
    """The incumbent's final test perplexity against candidate-epochs spent: the median over repeats
    and the band between the 25th and 75th percentiles, per strategy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    colors = plt.get_cmap("tab10")
    for i, strategy in enumerate(strategies):
        at = anytime[anytime["strategy"] == strategy]
        if at.empty:
            continue
        # a repeat that stopped early keeps its selection: carried forward, it stays in the median, and the
        # curve does not jump as repeats of other lengths drop out
        curves = at.pivot_table(index="candidate_epoch", columns="repeat", values="incumbent_test_ppl",
                                aggfunc="first").ffill()
        q = curves.replace([np.inf, -np.inf], np.nan).quantile([0.25, 0.5, 0.75], axis=1).T
        ax.plot(q.index, q[0.5], color=colors(i), lw=1.8, label=strategy)
        ax.fill_between(q.index, q[0.25], q[0.75], color=colors(i), alpha=0.15, lw=0)
    ax.axhline(best, color="black", ls="--", lw=1, label="the table's best configuration")
    ax.set_xlabel("candidate-epochs spent")
    ax.set_ylabel("final test perplexity of the incumbent")
    ax.set_title("Anytime performance: median over repeats, band 25th-75th percentile")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    save_figure(fig, path)


def plot_methods(methods: pd.DataFrame, path: Path) -> None:
    """Mean final test perplexity and its 95 % t interval over training seeds per strategy and pool size, one
    strategy per row (a dozen strategies side by side would squeeze their names); with one training seed
    there is no interval, and the title says so."""
    plt = pyplot()
    pools = sorted(methods["n"].unique())
    strategies = list(dict.fromkeys(methods["strategy"]))
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * len(strategies) + 1.6))
    height = 0.8 / max(1, len(pools))
    colors = plt.get_cmap("viridis")
    for j, n in enumerate(pools):
        rows = methods[methods["n"] == n].set_index("strategy").reindex(strategies)
        y = np.arange(len(strategies)) + (j - (len(pools) - 1) / 2) * height
        value = rows["test_ppl"].to_numpy(float)
        err = np.vstack([value - rows["test_ppl_low"].to_numpy(float), rows["test_ppl_high"].to_numpy(float) - value])
        ax.errorbar(value, y, xerr=np.clip(np.nan_to_num(err, nan=0.0), 0, None), fmt="o", capsize=3,
                    color=colors(j / max(1, len(pools) - 1) * 0.8), label=f"n = {n}")
    ax.set_yticks(np.arange(len(strategies)), strategies)
    ax.invert_yaxis()
    ax.set_xlabel("final test perplexity of the selection (lower is better)")
    one_seed = "seeds" in methods.columns and methods["seeds"].max() < 2
    budgets = "Methods (budgets in candidate-epochs per strategy: methods.md)"
    ax.set_title(f"{budgets}: mean over repeats\none training seed, so no interval over training seeds" if one_seed
                 else f"{budgets}: mean and 95 % t interval\nover training seeds", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save_figure(fig, path)


def plot_settings(table: pd.DataFrame, path: Path) -> None:
    """Spearman and Pearson (95 % intervals) of each signal with the final outcome, per setting (the
    released paper-scale point beside the study's horizons): released.beside_the_study's table."""
    plt = pyplot()
    settings, signals = list(dict.fromkeys(table["setting"])), list(dict.fromkeys(table["signal"]))
    fig, axes = plt.subplots(1, 2, figsize=(12.4, 4.2), sharey=True)
    for ax, coefficient in zip(axes, ("spearman", "pearson")):
        _coefficient_bars(ax, table, signals, "setting", settings, coefficient, {})
        ax.set_xticks(np.arange(len(settings)), [textwrap.fill(s, 16) for s in settings], fontsize=8)
        ax.set_title(f"{coefficient.capitalize()} with the final test perplexity", fontsize=10)
    axes[0].set_ylabel("coefficient (95 % interval)")
    axes[0].legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


def plot_horizon(signals: pd.DataFrame, gaps: pd.DataFrame, labels: dict[str, str], path: Path) -> None:
    """The horizon comparison: left, each signal's Spearman with the final outcome (pooled over training
    seeds, 95 % bootstrap interval) per early epoch, one line style per horizon; right, the LS distance's
    Spearman minus the loss gap's on each training seed (points) with the mean and its 95 % t interval."""
    plt = pyplot()
    horizons = sorted(signals["horizon"].unique())
    epochs = sorted(signals["epoch"].unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.4, 4.4))
    colors, styles = plt.get_cmap("tab10"), ["--", "-", ":", "-."]
    pooled = signals[signals["seeds"] == POOLED]
    step = 0.8 / max(1, len(labels) * len(horizons))
    for i, (signal, label) in enumerate(labels.items()):
        for j, horizon in enumerate(horizons):
            rows = pooled[(pooled["signal"] == signal) & (pooled["horizon"] == horizon)]
            rows = rows.set_index("epoch").reindex(epochs)
            x = np.arange(len(epochs)) + (i * len(horizons) + j - (len(labels) * len(horizons) - 1) / 2) * step
            value = rows["spearman"].to_numpy(float)
            err = np.vstack([value - rows["spearman_low"].to_numpy(float),
                             rows["spearman_high"].to_numpy(float) - value])
            left.errorbar(x, value, yerr=np.clip(np.nan_to_num(err, nan=0.0), 0, None), fmt="o", ls=styles[j % 4],
                          capsize=2, color=colors(i), mfc="white" if j == 0 else colors(i),
                          label=f"{label}, outcome at epoch {horizon}")
    left.axhline(0, color="0.5", lw=0.8)
    left.set_xticks(np.arange(len(epochs)), [f"epoch {e}" for e in epochs])
    left.set_ylabel("Spearman with the final test perplexity")
    left.set_title("Each signal against each horizon's outcome\n(pooled over training seeds; 95 % bootstrap "
                   "interval)", fontsize=10)
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    for j, horizon in enumerate(horizons):
        rows = gaps[gaps["horizon"] == horizon].set_index("epoch").reindex(epochs)
        x = np.arange(len(epochs)) + (j - (len(horizons) - 1) / 2) * 0.3
        for xi, seeds in zip(x, rows["per_seed"].fillna("")):
            per_seed = [float(v) for v in str(seeds).split()]
            right.plot([xi] * len(per_seed), per_seed, "x", color=colors(j + 3), ms=6)
        value = rows["gap"].to_numpy(float)
        err = np.vstack([value - rows["gap_low"].to_numpy(float), rows["gap_high"].to_numpy(float) - value])
        right.errorbar(x, value, yerr=np.clip(np.nan_to_num(err, nan=0.0), 0, None), fmt="o", capsize=3,
                       color=colors(j + 3), label=f"outcome at epoch {horizon}: mean, 95 % t interval; x: each seed")
    right.axhline(0, color="0.5", lw=0.8)
    right.set_ylim(-2.1, 2.1)  # a difference of two Spearman coefficients: a wider t interval is cut at the frame
    right.set_xticks(np.arange(len(epochs)), [f"epoch {e}" for e in epochs])
    right.set_ylabel("Spearman: LS distance minus loss gap")
    right.set_title("The LS distance's Spearman minus the loss gap's, paired within training seeds\n(below 0: the "
                    "loss gap ranks better; intervals past +-2 cut at the frame)", fontsize=10)
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    save_figure(fig, path)
