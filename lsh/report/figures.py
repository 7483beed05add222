"""The report's figures (matplotlib, Agg): the paper's Fig. 1A-C, supplement Figs. 1 and 2."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh.plotting import pyplot, save_figure
from lsh.records import Epoch
from lsh.report.correlation import MEASURES, complete_epochs, trajectory
from lsh.report.run import Candidate, Run
from lsh.report.tables import number_or_nan
from lsh.search.space import CONFIG_KEYS


def config_label(config: dict) -> str:
    """A configuration in a legend: its values in CONFIG_KEYS order."""
    parts = [str(config.get(k)) for k in CONFIG_KEYS if k in config]
    return ", ".join(parts)


def _cand_label(cand: Candidate, extra: str = "") -> str:
    return f"{cand.id}{extra} ({config_label(cand.config)})"


def ls_curve_candidates(run: Run) -> list[tuple[str, Candidate]]:
    """The best, median and worst of the round-0 ranking (fewer when the pool is smaller)."""
    if not run.rankings:
        return []
    order = run.rankings[0].sort_values("rank")["candidate"].tolist()
    picks = [("best", 0), ("median", (len(order) - 1) // 2), ("worst", len(order) - 1)]
    seen, out = set(), []
    for name, i in picks:
        if order[i] not in seen and order[i] in run.candidates:
            seen.add(order[i])
            out.append((name, run.candidates[order[i]]))
    return out


def _exponent_axis(run: Run, ax: Any, n: int) -> str:
    """The x-axis label; in the blocks layout each layer's exponents are marked off (layer 1, 2, ...)."""
    model, layout = run.params.model, run.params.lyapunov.layout
    layers = model.layers if model.type == "lstm" else 1
    if layout != "blocks" or layers < 2 or n % layers:
        return "exponent index (all sorted)" if layers > 1 else "exponent index"
    size = n // layers
    for layer in range(layers):
        if layer:
            ax.axvline(layer * size + 0.5, color="0.5", ls=":", lw=1)
        ax.text(layer * size + size / 2, 1.0, f"layer {layer + 1}", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8, color="0.35")
    return "exponent index (sorted within each layer)"


def plot_ls_curves(run: Run, path: Path) -> None:
    """Paper Fig. 1A: spectra at epochs 0, 1 and the last compared epoch, one panel per epoch."""
    plt = pyplot()
    last = len(run.dense_spectra) - 1
    epochs = sorted({e for e in (0, 1, last) if e <= last})
    picks = ls_curve_candidates(run)
    n_round0 = len(run.rankings[0])
    colors = {"best": "tab:green", "median": "tab:orange", "worst": "tab:red"}
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.2 * len(epochs), 3.8), sharey=True, squeeze=False)
    handles = {}
    for ax, E in zip(axes[0], epochs):
        dense = run.dense_spectra[E]
        idx = np.arange(1, len(dense) + 1)
        (h,) = ax.plot(idx, dense, color="black", lw=2, label="dense reference")
        handles["dense"] = h
        missing = []
        for name, cand in picks:
            spectrum = cand.spectra.get(E)
            if spectrum is None:
                missing.append(cand.id)
                continue
            (h,) = ax.plot(np.arange(1, len(spectrum) + 1), spectrum, color=colors[name], lw=1.5,
                           label=f"{name} of round 0 (rank {cand.round0_rank}/{n_round0}): " + _cand_label(cand))
            handles[name] = h
        if missing:
            ax.text(0.03, 0.04, "not trained to this epoch\n(eliminated earlier): " + ", ".join(missing),
                    transform=ax.transAxes, fontsize=8, va="bottom", ha="left",
                    bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
        ax.set_title("initialisation (epoch 0)" if E == 0 else f"epoch {E}", pad=14)
        ax.set_xlabel(_exponent_axis(run, ax, len(dense)))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Lyapunov exponent")
    order = [k for k in ("dense", "best", "median", "worst") if k in handles]
    fig.legend([handles[k] for k in order], [handles[k].get_label() for k in order], loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=1, fontsize=9, frameon=False)
    fig.suptitle("Lyapunov spectra of the dense reference and three round-0 candidates")
    fig.tight_layout()
    save_figure(fig, path)


SURVIVOR_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan"]


def _survivor_styles(run: Run) -> dict[str, dict]:
    """Line styles of the final pool: a color and a legend entry each, the selected one thickest.
    A pool too large for a readable legend (a full-training run) keeps colors for the selected one only."""
    finalists = [c for c in run.candidates.values() if c.finalist]
    selected_id = run.selected.candidate
    styles, many, labelled = {}, len(finalists) > len(SURVIVOR_COLORS), False
    for i, cand in enumerate(finalists):
        selected = cand.id == selected_id
        if many and not selected:
            styles[cand.id] = dict(color="tab:orange", lw=1.0, alpha=0.6, zorder=2,
                                   label=None if labelled else "other candidates of the final pool")
            labelled = True
            continue
        styles[cand.id] = dict(color=SURVIVOR_COLORS[i % len(SURVIVOR_COLORS)], lw=2.6 if selected else 1.6,
                               zorder=4 if selected else 3,
                               label=_cand_label(cand, " (selected)" if selected else ""))
    if many and selected_id in styles:
        styles[selected_id]["color"] = "tab:blue"
    return styles


ELIMINATED = dict(color="0.6", lw=0.9, alpha=0.7, zorder=1)


def plot_distance_curves(run: Run, distances: pd.DataFrame, path: Path) -> None:
    """Fig. 1B: distance to the dense reference over epochs, the final pool highlighted."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    styles = _survivor_styles(run)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for c, group in distances.groupby("candidate", sort=False):
        g = group.dropna(subset=["distance"])
        if g.empty:
            continue
        if c in styles:
            ax.plot(g["epoch"], g["distance"], marker="o", ms=4, **styles[c])
        else:
            ax.plot(g["epoch"], g["distance"], marker="o", ms=2.5, **ELIMINATED)
    search = run.params.search
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ms=2.5, **ELIMINATED))
    labels.append("eliminated during selection")
    ax.legend(handles, labels, title="final pool (survivors)", loc="upper left", bbox_to_anchor=(1.02, 1),
              fontsize=8, title_fontsize=9, frameon=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{search.distance} distance to the dense reference")
    positive = distances["distance"][distances["distance"] > 0]
    if len(positive) and positive.max() > 30 * positive.min():
        # a candidate with a dead unit (its exponent at the floor) lies orders of magnitude away
        ax.set_yscale("log")
        ax.set_ylabel(f"{search.distance} distance to the dense reference (log scale)")
    ax.set_title(f"Distance in LS space ({search.embedding}, {search.pca_fit} fit)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_perplexity_curves(run: Run, path: Path) -> None:
    """Fig. 1C: validation perplexity over epochs; the final pool highlighted, the dense reference in black."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    extended = _plot_candidate_perplexities(ax, run, _survivor_styles(run))
    handles, labels = ax.get_legend_handles_labels()
    _add_perplexity_legend_extras(ax, run, extended, handles, labels)
    if run.rounds and run.plan.last_epoch > 0:
        ax.axvline(run.plan.last_epoch, color="0.3", ls="-.", lw=0.8)
        ax.text(run.plan.last_epoch, 0.98, " end of\n selection", transform=ax.get_xaxis_transform(),
                fontsize=8, va="top", ha="left", color="0.3")
    ax.legend(handles, labels, title="final pool" if run.rounds else "candidates", loc="upper left",
              bbox_to_anchor=(1.02, 1), fontsize=8, title_fontsize=9, frameon=False)
    _log_perplexity_axis(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_title("Validation perplexity over training")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)


def _finite_perplexities(history: list[Epoch]) -> list[tuple[int, float]]:
    """(epoch, validation perplexity) of the epochs that have a finite one."""
    points = [(h.epoch, number_or_nan(h.valid_ppl)) for h in history]
    return [(e, p) for e, p in points if math.isfinite(p)]


def _plot_candidate_perplexities(ax: Any, run: Run, styles: dict[str, dict]) -> bool:
    """Each candidate's curve: the final pool in its style, the others gray up to their elimination and
    dotted beyond it where the correlation study trained them on (returns whether any was)."""
    extended = False
    for c, cand in run.candidates.items():
        h = _finite_perplexities(cand.history)
        if not h:
            continue
        e, p = map(np.array, zip(*h))
        if c in styles:
            ax.plot(e, p, **styles[c])
        else:
            sel = e <= max(cand.selection_epochs, 1) if run.rounds else np.ones_like(e, dtype=bool)
            ax.plot(e[sel], p[sel], marker="o", ms=2.5, **ELIMINATED)
            if (~sel).any():  # trained on for the correlation study
                first = max(int(np.argmax(~sel)) - 1, 0)
                ax.plot(e[first:], p[first:], ls=":", **ELIMINATED)
                extended = True
    return extended


def _add_perplexity_legend_extras(ax: Any, run: Run, extended: bool, handles: list, labels: list) -> None:
    """The dense reference's curve (first in the legend) and the legend entries of the gray lines."""
    from matplotlib.lines import Line2D

    dense = _finite_perplexities(run.dense_history)
    if dense:
        (line,) = ax.plot(*zip(*dense), color="black", lw=1.8, ls="--", zorder=5)
        handles.insert(0, line)
        labels.insert(0, "dense reference")
    if run.rounds:
        handles.append(Line2D([], [], marker="o", ms=2.5, **ELIMINATED))
        labels.append("eliminated during selection")
    if extended:
        handles.append(Line2D([], [], ls=":", **ELIMINATED))
        labels.append("trained on for the correlation study")


def _log_perplexity_axis(ax: Any) -> None:
    """A log y-axis labelled with plain numbers (1200, not 1.2 x 10^3)."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="y", which="both", labelsize=9)


def ls_space(run: Run) -> dict | None:
    """The dense and the selected candidate's trajectories in a 2-D PCA fit on both (epochs both have)."""
    from sklearn.decomposition import PCA

    cand = run.candidates.get(run.selected.candidate or "")
    if cand is None or run.dense_spectra is None:
        return None
    epochs = complete_epochs(cand, len(run.dense_spectra) - 1)
    if not epochs:
        return None
    E = epochs[-1]
    dense, pruned = run.dense_spectra[: E + 1], trajectory(cand, E)
    points = np.concatenate([dense, pruned])
    pca = PCA(n_components=min(2, *points.shape), random_state=run.params.seed)
    emb = pca.fit_transform(points)
    if emb.shape[1] < 2:
        emb = np.hstack([emb, np.zeros((len(emb), 2 - emb.shape[1]))])
    ratio = list(pca.explained_variance_ratio_) + [0.0] * (2 - len(pca.explained_variance_ratio_))
    return {"candidate": cand, "epochs": epochs, "dense": emb[: E + 1], "pruned": emb[E + 1 :], "variance": ratio}


def plot_ls_space(run: Run, space: dict, path: Path) -> None:
    """Supplement Fig. 2: each dot a model at one epoch, arrows along training
    (the pruned model blue to green, the dense black to gray)."""
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    epochs = space["epochs"]
    t = np.linspace(0, 1, len(epochs)) if len(epochs) > 1 else np.zeros(1)
    maps = {"dense": LinearSegmentedColormap.from_list("dense", ["black", "0.7"]),
            "pruned": LinearSegmentedColormap.from_list("pruned", ["tab:blue", "tab:green"])}
    for key in ("dense", "pruned"):
        pts, cmap = space[key], maps[key]
        for i in range(len(pts) - 1):
            ax.annotate("", xy=pts[i + 1], xytext=pts[i],
                        arrowprops=dict(arrowstyle="-|>", color=cmap(t[i + 1]), lw=1.4, shrinkA=5, shrinkB=5))
        ax.scatter(pts[:, 0], pts[:, 1], c=[cmap(x) for x in t], s=60, zorder=3, edgecolors="white", linewidths=0.8,
                   marker="o" if key == "pruned" else "s")
        step = math.ceil(len(epochs) / 8)  # at most about eight epoch labels per trajectory
        for i, (e, (x, y)) in enumerate(zip(epochs, pts)):
            if i % step and i != len(epochs) - 1:
                continue
            ax.annotate(str(e), (x, y), textcoords="offset points", xytext=(7, -4) if key == "dense" else (-7, 4),
                        ha="left" if key == "dense" else "right", fontsize=9, color=cmap(0.4),
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    cand = space["candidate"]
    handles = [
        Line2D([], [], marker="s", ls="-", color="black", mfc="black", label="dense reference (black to gray)"),
        Line2D([], [], marker="o", ls="-", color="tab:blue", mfc="tab:blue",
               label=f"selected {cand.id} (blue to green)\n{config_label(cand.config)}"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False,
              title="numbers: epochs", title_fontsize=8)
    ax.set_xlabel(f"PC 1 ({100 * space['variance'][0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * space['variance'][1]:.0f} % of variance)")
    ax.set_title(f"LS space: epochs 0 to {epochs[-1]}")
    ax.set_aspect("equal", adjustable="datalim")  # distances in the plane as the ranking measures them
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    save_figure(fig, path)


def placeholder_figure(path: Path, message: str) -> None:
    """A small figure that says why the real one is missing (the workflow's outputs are static)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 70)), ha="center", va="center", fontsize=10)
    save_figure(fig, path)


def plot_correlation(points: pd.DataFrame, table: pd.DataFrame, path: Path, missing: str | None = None) -> None:
    """Supplement Fig. 1: early distance in each layout (top rows) and early perplexity (bottom) against
    final perplexity."""
    plt = pyplot()
    if missing:
        placeholder_figure(path, "No correlation figure: " + missing)
        return
    epochs = sorted(points["epoch"].unique())
    rows = len(MEASURES)
    fig, axes = plt.subplots(rows, len(epochs), figsize=(4.3 * len(epochs), 3.4 * rows), squeeze=False)
    markers = {"final": ("tab:orange", "final pool"), "correlation": ("tab:blue", "round-0 candidate trained on")}
    for j, E in enumerate(epochs):
        at = points[points["epoch"] == E]
        for i, measure in enumerate(MEASURES):
            ax = axes[i][j]
            row = table[(table["measure"] == measure) & (table["epoch"] == E)].iloc[0]
            for source, (color, label) in markers.items():
                s = at[(at["source"] == source) & np.isfinite(at[measure])]
                ax.scatter(s[measure], s["final_test_ppl"], color=color, s=30, label=label, edgecolors="white",
                           linewidths=0.5)
            r, rho = row["pearson"], row["spearman"]
            stats = f"Pearson {r:.2f}, Spearman {rho:.2f}" if math.isfinite(r) else "too few points for coefficients"
            ax.set_title(f"epoch {E}: {stats}, n = {row['n']}", fontsize=9)
            ax.set_xlabel(f"{MEASURES[measure]} at epoch {E}")
            ax.grid(alpha=0.3)
        for i in range(rows):
            axes[i][j].set_ylabel("final test perplexity")
    handles, labels = axes[-1][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=9, frameon=False)
    fig.suptitle("Early measures against final perplexity")
    fig.tight_layout()
    save_figure(fig, path)


