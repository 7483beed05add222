"""The run's report: tables and figures from the files a finished run wrote (results/report/).

Everything here is a pure function of the run's files (read once by `load_run`) and the
params; `build_report` writes every output atomically:

    summary.md            the selection, its perplexities against the dense reference, the budget, notes
    table1.md, table1.csv method, validation and test perplexity, candidate-epochs, wall time (paper Table 1)
    budget.md             pool sizes and candidate-epochs per round, planned against spent (Table 3 style)
    metrics.json          flat final numbers for `dvc metrics show`
    ls_curves.png         spectra of the dense model and three round-0 candidates (paper Fig. 1A)
    distance_curves.png   distance to the dense reference over epochs (Fig. 1B)
    perplexity_curves.png validation perplexity over epochs (Fig. 1C)
    ls_space.png          the dense and the selected trajectory in 2-D PCA LS space (supplement Fig. 2)
    correlation.png, correlation.csv, correlation_points.csv
                          early LS distance and early perplexity against final perplexity (supplement Fig. 1)

The files depend only on the params (`report_files`), so the workflow's outputs are static.
A run without selection rounds (`search.mode: full`) has no spectra: ls_curves,
distance_curves and ls_space are skipped with a note in summary.md (with rounds they are
always written; a figure whose data is missing says why instead). The correlation files
are always written: with fewer than MIN_CORRELATION candidates of known final perplexity
the coefficients table is empty, the figure says why, and so does summary.md.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh import files
from lsh.errors import LshError
from lsh.lyapunov import LAYOUTS
from lsh.search import CONFIG_KEYS, Layout, Plan, ls_distances, plan as search_plan

MIN_CORRELATION = 5  # candidates with a final perplexity needed for the correlation study
DPI = 120

FIGURES_NEEDING_ROUNDS = ("ls_curves.png", "distance_curves.png", "ls_space.png")
ALWAYS = (
    "summary.md", "table1.md", "table1.csv", "budget.md", "metrics.json", "perplexity_curves.png",
    "correlation.png", "correlation.csv", "correlation_points.csv",
)


def report_files(has_rounds: bool) -> list[str]:
    """The files `build_report` writes: all of them for an LSH run, fewer without rounds."""
    return [*ALWAYS, *(FIGURES_NEEDING_ROUNDS if has_rounds else ())]


# -----------------------------------------------------------------------------
# Reading the run


@dataclass
class Candidate:
    """One candidate as the report sees it, gathered over rounds, final training and correlation study."""

    id: str
    config: dict
    spectra: dict[int, list[float] | None] = field(default_factory=dict)  # epoch -> exponents (None: failed)
    layouts: dict[str, dict[int, list[float] | None]] = field(default_factory=dict)  # both layouts, as spectra
    selection_epochs: int = 0  # the last epoch it reached during the selection rounds
    history: list[dict] = field(default_factory=list)  # per-epoch metrics of its latest training (whole history)
    history_source: str = ""  # the folder that history comes from
    round0_rank: int | None = None
    finalist: bool = False
    final: dict | None = None  # final/fFF/summary.json
    correlation: dict | None = None  # correlation/cCC/summary.json


@dataclass
class Run:
    params: dict
    root: Path
    plan: Plan
    selected: dict
    rounds: int  # selection rounds found on disk (0 for search.mode full)
    rankings: list[pd.DataFrame]
    candidates: dict[str, Candidate]  # in order of first appearance
    dense_summary: dict | None  # dense/summary.json (the reference's selection epochs)
    dense_final: dict | None  # dense-final/summary.json (the reference trained to final.epochs)
    dense_history: list[dict]  # per-epoch metrics of the dense reference (dense-final's when it exists)
    dense_spectra: np.ndarray | None  # [epochs 0..last, exponents], in the params' layout
    dense_layouts: dict[str, np.ndarray]  # the same in every layout (lyapunov.LAYOUTS)
    final_pool: dict

    @property
    def method(self) -> str:
        return method_name(self.selected)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise LshError(f"{path} does not exist: the report needs a finished run (run the workflow first)")
    return json.loads(path.read_text())


def _maybe_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def read_metrics(folder: Path) -> list[dict]:
    """A training folder's metrics.jsonl as records (empty when it has none)."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def method_name(selected: dict) -> str:
    """`LSH-TPE`, `loss-ATPE`, `full-training-GRID`: the ranker (or full mode) and the proposer."""
    if selected.get("mode") == "full":
        prefix = "full-training"
    else:
        prefix = {"ls": "LSH", "loss": "loss"}.get(selected.get("ranker"), str(selected.get("ranker")))
    return f"{prefix}-{str(selected.get('proposer', '?')).upper()}"


def _last_epoch(history: list[dict]) -> int:
    return max((int(h["epoch"]) for h in history), default=0)


def _offer_history(cand: Candidate, history: list[dict], source: str) -> None:
    """Keep the longest history (earlier offers win ties: final, then correlation, then rounds)."""
    if history and _last_epoch(history) > _last_epoch(cand.history):
        cand.history, cand.history_source = history, source


def load_run(params: dict, results_dir: str | Path) -> Run:
    """Everything the report needs from a run's results folder (see README, "The search")."""
    root = Path(results_dir)
    layout = Layout(root)
    the_plan = search_plan(params["search"])
    selected = _read_json(layout.selected)
    final_pool = _read_json(layout.final_pool)
    candidates: dict[str, Candidate] = {}

    def cand(entry: dict) -> Candidate:
        c = entry["candidate"]
        if c not in candidates:
            candidates[c] = Candidate(c, dict(entry["config"]))
        return candidates[c]

    # the final training first: its metrics run to final.epochs
    for f, entry in enumerate(final_pool["slots"]):
        if entry is None:
            continue
        c = cand(entry)
        c.finalist = True
        folder = layout.final_train(f)
        c.final = _maybe_json(folder / "summary.json")
        _offer_history(c, read_metrics(folder), str(folder))

    rounds = 0
    rankings: list[pd.DataFrame] = []
    for r in range(len(the_plan.rounds)):
        if not (layout.pool(r).is_file() and layout.ranking(r).is_file()):
            break
        rounds += 1
        rankings.append(pd.read_csv(layout.ranking(r)))
        pool = _read_json(layout.pool(r))
        for s, entry in enumerate(pool["slots"]):
            if entry is None:
                continue
            c = cand(entry)
            spectra = _maybe_json(layout.slot_spectra(r, s)) or {"spectra": {}}
            for epoch, rec in spectra["spectra"].items():
                ok = rec.get("status") == "ok" and rec.get("exponents") is not None
                c.spectra[int(epoch)] = rec["exponents"] if ok else None
                for name in LAYOUTS:
                    c.layouts.setdefault(name, {})[int(epoch)] = rec["layouts"][name] if ok else None
            history = read_metrics(layout.slot_train(r, s))
            c.selection_epochs = max(c.selection_epochs, _last_epoch(history))
            _offer_history(c, history, str(layout.slot_train(r, s)))
    if rankings:
        for _, row in rankings[0].iterrows():
            if row["candidate"] in candidates:
                candidates[row["candidate"]].round0_rank = int(row["rank"])

    # round-0 candidates trained on to final.epochs for the correlation study
    corr_root = root / "correlation"
    for folder in sorted(corr_root.glob("c[0-9][0-9]")) if corr_root.is_dir() else []:
        summary = _maybe_json(folder / "summary.json")
        if not summary or not summary.get("candidate"):
            continue
        c = cand({"candidate": summary["candidate"], "config": summary.get("config", {})})
        c.correlation = summary
        _offer_history(c, read_metrics(folder), str(folder))

    dense_spectra, dense_layouts = None, {}
    if layout.dense_spectra.is_file():
        spectra = _read_json(layout.dense_spectra)["spectra"]
        records = [spectra.get(str(e)) for e in range(len(spectra))]
        if records and all(r is not None and r["status"] == "ok" for r in records):
            dense_spectra = np.array([r["exponents"] for r in records], dtype=float)
            dense_layouts = {name: np.array([r["layouts"][name] for r in records], dtype=float) for name in LAYOUTS}
    dense_final = _maybe_json(root / "dense-final" / "summary.json")
    dense_history = read_metrics(root / "dense-final") or read_metrics(layout.dense_train)
    return Run(
        params=params, root=root, plan=the_plan, selected=selected, rounds=rounds, rankings=rankings,
        candidates=candidates, dense_summary=_maybe_json(layout.dense_train / "summary.json"),
        dense_final=dense_final, dense_history=dense_history, dense_spectra=dense_spectra,
        dense_layouts=dense_layouts, final_pool=final_pool,
    )


def _num(x: Any) -> float:
    """A JSON number (or null) as a float, NaN for null."""
    return float(x) if x is not None else math.nan


# -----------------------------------------------------------------------------
# Tables


def _budget_numbers(selected: dict) -> tuple[float, float]:
    budget = selected.get("budget") or {}
    return _num(budget.get("total_candidate_epochs")), _num(budget.get("total_wall_seconds"))


def _same_run(run: Run, folder: Path, selected: dict) -> bool:
    return folder.resolve() == run.root.resolve() or selected == run.selected


def compare_runs(run: Run) -> list[tuple[Path, dict]]:
    """Other runs of a comparison set: results/compare/*/final/selected.json, this run itself left out."""
    out = []
    for path in sorted((run.root / "compare").glob("*/final/selected.json")):
        selected = json.loads(path.read_text())
        folder = path.parents[1]
        if not _same_run(run, folder, selected):
            out.append((folder, selected))
    return out


def dense_reference(run: Run) -> dict | None:
    """The dense reference trained to final.epochs: its perplexities, epochs and wall seconds."""
    final = run.dense_final
    source = run.root / "dense-final"
    if final is None:  # e.g. a full-training run: take a compared run's reference if one has it
        for folder, _ in compare_runs(run):
            final = _maybe_json(folder / "dense-final" / "summary.json")
            if final is not None:
                source = folder / "dense-final"
                break
    if final is None:
        return None
    first = _maybe_json(source.parent / "dense" / "summary.json") or {}
    return {
        "valid_ppl": _num(final.get("best_valid_ppl")), "test_ppl": _num(final.get("test_ppl")),
        "epochs": final.get("epochs"), "wall_seconds": round(first.get("seconds", 0.0) + final.get("seconds", 0.0), 3),
        "source": str(source),
    }


def table1(run: Run) -> pd.DataFrame:
    """Paper Table 1: the dense reference, this run and every compared run."""
    rows = []
    dense = dense_reference(run)
    if dense is not None:
        rows.append({"method": "dense", "candidate": "dense", "valid_ppl": dense["valid_ppl"],
                     "test_ppl": dense["test_ppl"], "candidate_epochs": dense["epochs"],
                     "wall_seconds": dense["wall_seconds"], "source": dense["source"]})
    for folder, selected in [(run.root, run.selected), *compare_runs(run)]:
        epochs, seconds = _budget_numbers(selected)
        rows.append({"method": method_name(selected), "candidate": selected.get("candidate"),
                     "valid_ppl": _num(selected.get("valid_ppl")), "test_ppl": _num(selected.get("test_ppl")),
                     "candidate_epochs": epochs, "wall_seconds": seconds,
                     "source": str(folder / "final" / "selected.json")})
    df = pd.DataFrame(rows, columns=["method", "candidate", "valid_ppl", "test_ppl", "candidate_epochs",
                                     "wall_seconds", "source"])
    df["candidate_epochs"] = df["candidate_epochs"].astype("Int64")
    return df


def budget_table(run: Run) -> pd.DataFrame:
    """Candidate-epochs per round (planned by `lsh plan` against spent), the final training, totals."""
    budget = run.selected["budget"]
    rows, cumulative = [], 0
    for rnd in budget["rounds"]:
        cumulative += rnd["spent_candidate_epochs"]
        rows.append({"stage": f"round {rnd['round']}", "pool": rnd["pool"],
                     "planned": rnd["planned_candidate_epochs"], "spent": rnd["spent_candidate_epochs"],
                     "cumulative": cumulative})
    selection_planned = budget["planned_selection_candidate_epochs"]
    if budget["rounds"]:
        rows.append({"stage": "selection", "pool": None, "planned": selection_planned,
                     "spent": budget["candidate_epochs"]["selection"], "cumulative": cumulative})
    finals = [e for e in run.final_pool["slots"] if e is not None]
    final_planned = sum(e["epochs_after"] - e["epochs_before"] for e in finals)
    cumulative += budget["candidate_epochs"]["final"]
    rows.append({"stage": "final training", "pool": len(finals), "planned": final_planned,
                 "spent": budget["candidate_epochs"]["final"], "cumulative": cumulative})
    rows.append({"stage": "total", "pool": None, "planned": selection_planned + final_planned,
                 "spent": budget["total_candidate_epochs"], "cumulative": cumulative})
    df = pd.DataFrame(rows)
    df["pool"] = df["pool"].astype("Int64")
    return df


def seconds_table(run: Run) -> pd.DataFrame:
    budget = run.selected["budget"]
    rows = [{"stage": k, "wall_seconds": v} for k, v in budget["wall_seconds"].items()]
    rows.append({"stage": "total", "wall_seconds": budget["total_wall_seconds"]})
    return pd.DataFrame(rows)


def correlation_study_cost(run: Run) -> tuple[int, float]:
    """Candidate-epochs and seconds of the correlation study (the report's extra, not the search's)."""
    summaries = [c.correlation for c in run.candidates.values() if c.correlation]
    return (sum(s.get("epochs_trained", 0) for s in summaries), round(sum(s.get("seconds", 0.0) for s in summaries), 3))


def _cell(x: Any, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "-"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(df: pd.DataFrame, digits: dict[str, int] | None = None, headers: dict[str, str] | None = None) -> str:
    """A GitHub markdown table (no tabulate dependency); floats with `digits` decimals per column (default 2)."""
    digits, headers = digits or {}, headers or {}
    cols = list(df.columns)
    lines = ["| " + " | ".join(headers.get(c, c) for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(row[c], digits.get(c, 2)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def parse_markdown_table(text: str) -> pd.DataFrame:
    """The first markdown table in `text` back as strings (for checks of what the report wrote)."""
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    if len(block) < 2:
        raise ValueError("no markdown table")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
    return pd.DataFrame(cells[2:], columns=cells[0])


# -----------------------------------------------------------------------------
# Distances and perplexities over epochs


def trajectory(cand: Candidate, upto: int, layout: str | None = None) -> np.ndarray | None:
    """The candidate's spectra of epochs 0..upto (the params' layout, or `layout`), or None when one
    is missing or failed."""
    spectra = cand.spectra if layout is None else cand.layouts.get(layout, {})
    points = [spectra.get(e) for e in range(upto + 1)]
    if any(p is None for p in points):
        return None
    return np.array(points, dtype=float)


def _complete_epochs(cand: Candidate, last: int) -> list[int]:
    """Epochs E <= last for which the spectra of 0..E all exist (a candidate's trajectory so far)."""
    out = []
    for e in range(last + 1):
        if cand.spectra.get(e) is None:
            break
        out.append(e)
    return out


def distance_table(run: Run, layout: str | None = None) -> pd.DataFrame:
    """Distance of every candidate to the dense reference at each of its epochs, recomputed with
    `ls_distances` on its trajectory 0..E and the params' embedding, distance and PCA fit
    (`pair`: per candidate; `pool`: per epoch with every candidate that has that epoch), with the
    spectra in the params' layout or in `layout`."""
    columns = ["candidate", "epoch", "distance"]
    dense = run.dense_spectra if layout is None else run.dense_layouts.get(layout)
    if dense is None or not run.candidates:
        return pd.DataFrame(columns=columns)
    search, seed = run.params["search"], run.params["seed"]
    kw = dict(embedding=search["embedding"], distance=search["distance"], fit=search["pca_fit"], seed=seed)
    last = len(dense) - 1
    epochs = {c: _complete_epochs(cand, last) for c, cand in run.candidates.items()}
    rows = []
    if search["pca_fit"] == "pool":
        for E in range(last + 1):
            group = {c: trajectory(run.candidates[c], E, layout) for c, es in epochs.items() if E in es}
            if group:
                for c, d in ls_distances(dense, group, **kw).items():
                    rows.append({"candidate": c, "epoch": E, "distance": d})
    else:
        for c, es in epochs.items():
            for E in es:
                d = ls_distances(dense, {c: trajectory(run.candidates[c], E, layout)}, **kw)[c]
                rows.append({"candidate": c, "epoch": E, "distance": d})
    df = pd.DataFrame(rows, columns=columns)
    df["distance"] = df["distance"].astype(float).replace([np.inf, -np.inf], np.nan)
    return df.sort_values(["candidate", "epoch"], kind="stable").reset_index(drop=True)


def perplexity_table(run: Run) -> pd.DataFrame:
    """Validation perplexity of every candidate per epoch, from its latest metrics.jsonl."""
    rows = []
    for c, cand in run.candidates.items():
        for h in cand.history:
            rows.append({"candidate": c, "epoch": int(h["epoch"]), "valid_ppl": _num(h.get("valid_ppl"))})
    return pd.DataFrame(rows, columns=["candidate", "epoch", "valid_ppl"])


# -----------------------------------------------------------------------------
# The correlation study: early measures against final perplexity


def final_perplexities(run: Run) -> pd.DataFrame:
    """Candidates with a final (test) perplexity: finalists, then correlation candidates, one row per id."""
    rows = []
    for c, cand in run.candidates.items():
        for source, summary in (("final", cand.final), ("correlation", cand.correlation)):
            if summary and summary.get("status") == "ok" and summary.get("test_ppl") is not None:
                rows.append({"candidate": c, "source": source, "final_test_ppl": float(summary["test_ppl"]),
                             "final_valid_ppl": _num(summary.get("best_valid_ppl"))})
                break  # a finalist's own final training wins over its correlation copy
    return pd.DataFrame(rows, columns=["candidate", "source", "final_test_ppl", "final_valid_ppl"])


def early_epochs(run: Run) -> list[int]:
    """Epoch 1 and search.e0 (the paper's "beginning of training"); with e0 = 1, epoch 1 and the
    last epoch the search compares (when it is later), so that there are two early epochs."""
    e0 = run.params["search"]["e0"]
    second = e0 if e0 >= 2 else run.plan.last_epoch  # last_epoch is 0 without rounds
    return sorted({1, second} if second >= 1 else {1})


def correlation_points(run: Run, distances: dict[str, pd.DataFrame], epochs: list[int]) -> pd.DataFrame:
    """One row per candidate with a final perplexity and early epoch E: its LS distance at E in each layout
    (`distances`: layout -> distance_table) and its validation perplexity at E (the value at epoch E, as
    the loss ranker reads it, not the best of epochs 1..E)."""
    finals = final_perplexities(run)
    columns = ["candidate", "source", "epoch", *MEASURES, "final_test_ppl", "final_valid_ppl"]
    dist = {name: {(r.candidate, int(r.epoch)): r.distance for r in df.itertuples()} for name, df in distances.items()}
    rows = []
    for f in finals.itertuples():
        ppl = {int(h["epoch"]): _num(h.get("valid_ppl")) for h in run.candidates[f.candidate].history}
        for E in epochs:
            row = {"candidate": f.candidate, "source": f.source, "epoch": E}
            row.update({f"distance_{name}": dist.get(name, {}).get((f.candidate, E), math.nan) for name in LAYOUTS})
            row.update({"valid_ppl": ppl.get(E, math.nan), "final_test_ppl": f.final_test_ppl,
                        "final_valid_ppl": f.final_valid_ppl})
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


MEASURES = {
    "distance_blocks": "LS distance (blocks layout)",
    "distance_sorted": "LS distance (sorted layout)",
    "valid_ppl": "validation perplexity",
}


def correlation_table(points: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman coefficients of each early measure against the final test perplexity."""
    rows = []
    for E in sorted(points["epoch"].unique()):
        at = points[points["epoch"] == E]
        for measure in MEASURES:
            ok = at[np.isfinite(at[measure]) & np.isfinite(at["final_test_ppl"])]
            x, y = ok[measure].astype(float), ok["final_test_ppl"].astype(float)
            enough = len(ok) >= 3 and x.nunique() > 1 and y.nunique() > 1
            rows.append({"measure": measure, "epoch": int(E), "n": len(ok),
                         "pearson": x.corr(y, method="pearson") if enough else math.nan,
                         "spearman": x.corr(y, method="spearman") if enough else math.nan})
    return pd.DataFrame(rows, columns=["measure", "epoch", "n", "pearson", "spearman"])


# -----------------------------------------------------------------------------
# Figures (matplotlib, Agg)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    files.atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight", dpi=DPI))
    _plt().close(fig)


def config_label(config: dict) -> str:
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


def plot_ls_curves(run: Run, path: Path) -> None:
    """Paper Fig. 1A: spectra at epochs 0, 1 and the last compared epoch, one panel per epoch."""
    plt = _plt()
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
        ax.set_title("initialisation (epoch 0)" if E == 0 else f"epoch {E}")
        ax.set_xlabel("exponent index")
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
    selected_id = run.selected.get("candidate")
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

    plt = _plt()
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
    search = run.params["search"]
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ms=2.5, **ELIMINATED))
    labels.append("eliminated during selection")
    ax.legend(handles, labels, title="final pool (survivors)", loc="upper left", bbox_to_anchor=(1.02, 1),
              fontsize=8, title_fontsize=9, frameon=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{search['distance']} distance to the dense reference")
    positive = distances["distance"][distances["distance"] > 0]
    if len(positive) and positive.max() > 30 * positive.min():
        # a candidate with a dead unit (its exponent at the floor) lies orders of magnitude away
        ax.set_yscale("log")
        ax.set_ylabel(f"{search['distance']} distance to the dense reference (log scale)")
    ax.set_title(f"Distance in LS space ({search['embedding']}, {search['pca_fit']} fit)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_perplexity_curves(run: Run, path: Path) -> None:
    """Fig. 1C: validation perplexity over epochs; the final pool highlighted, the dense reference in black."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter

    plt = _plt()
    styles = _survivor_styles(run)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    extended = False
    for c, cand in run.candidates.items():
        h = [(int(r["epoch"]), _num(r.get("valid_ppl"))) for r in cand.history]
        h = [(e, p) for e, p in h if math.isfinite(p)]
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
    handles, labels = ax.get_legend_handles_labels()
    dense = [(int(r["epoch"]), _num(r.get("valid_ppl"))) for r in run.dense_history]
    dense = [(e, p) for e, p in dense if math.isfinite(p)]
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
    if run.rounds and run.plan.last_epoch > 0:
        ax.axvline(run.plan.last_epoch, color="0.3", ls="-.", lw=0.8)
        ax.text(run.plan.last_epoch, 0.98, " end of\n selection", transform=ax.get_xaxis_transform(),
                fontsize=8, va="top", ha="left", color="0.3")
    ax.legend(handles, labels, title="final pool" if run.rounds else "candidates", loc="upper left",
              bbox_to_anchor=(1.02, 1), fontsize=8, title_fontsize=9, frameon=False)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))  # 1200, not 1.2 x 10^3
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="y", which="both", labelsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_title("Validation perplexity over training")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)


def ls_space(run: Run) -> dict | None:
    """The dense and the selected candidate's trajectories in a 2-D PCA fit on both (epochs both have)."""
    from sklearn.decomposition import PCA

    cand = run.candidates.get(run.selected.get("candidate") or "")
    if cand is None or run.dense_spectra is None:
        return None
    epochs = _complete_epochs(cand, len(run.dense_spectra) - 1)
    if not epochs:
        return None
    E = epochs[-1]
    dense, pruned = run.dense_spectra[: E + 1], trajectory(cand, E)
    points = np.concatenate([dense, pruned])
    pca = PCA(n_components=min(2, *points.shape), random_state=run.params["seed"])
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

    plt = _plt()
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 70)), ha="center", va="center", fontsize=10)
    save_figure(fig, path)


def plot_correlation(points: pd.DataFrame, table: pd.DataFrame, path: Path, missing: str | None = None) -> None:
    """Supplement Fig. 1: early distance in each layout (top rows) and early perplexity (bottom) against
    final perplexity."""
    plt = _plt()
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


# -----------------------------------------------------------------------------
# summary.md and metrics.json


def _fmt(x: Any, digits: int = 2) -> str:
    return _cell(_num(x) if isinstance(x, (int, float)) or x is None else x, digits)


def metrics(run: Run, correlation: pd.DataFrame | None) -> dict:
    """A flat JSON of the run's final numbers, for `dvc metrics show`."""
    sel, budget = run.selected, run.selected["budget"]
    dense = dense_reference(run) or {}
    out: dict[str, Any] = {
        "selected_valid_ppl": sel.get("valid_ppl"), "selected_test_ppl": sel.get("test_ppl"),
        "dense_valid_ppl": _json(dense.get("valid_ppl")), "dense_test_ppl": _json(dense.get("test_ppl")),
        "density": sel.get("density"),
        "planned_selection_candidate_epochs": budget["planned_selection_candidate_epochs"],
        "candidate_epochs_selection": budget["candidate_epochs"]["selection"],
        "candidate_epochs_final": budget["candidate_epochs"]["final"],
        "candidate_epochs_total": budget["total_candidate_epochs"],
        "wall_seconds_total": budget["total_wall_seconds"],
    }
    out.update({f"wall_seconds_{k}": v for k, v in budget["wall_seconds"].items()})
    if correlation is not None:
        for row in correlation.itertuples():
            for coef in ("pearson", "spearman"):
                out[f"{coef}_{row.measure}_epoch{row.epoch}"] = _json(getattr(row, coef))
    return out


def _json(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summary_markdown(run: Run, budget: pd.DataFrame, seconds: pd.DataFrame, correlation: pd.DataFrame | None,
                     notes: list[str], written: list[str]) -> str:
    sel, p = run.selected, run.params
    dense = dense_reference(run)
    density = sel.get("density", p["sparse"]["density"])
    lines = [f"# Report: {run.method}", ""]
    model = p["model"]
    size = f"{model['layers']} x {model['hidden']}" if model["type"] == "lstm" else f"depth {model['depth']}, {model['hidden']} units"
    lines += [f"Search mode `{sel.get('mode')}`, ranker `{sel.get('ranker')}`, proposer `{sel.get('proposer')}`; "
              f"model {model['type'].upper()} ({size}); density {density} (pruning ratio {1 - density:.2f}); "
              f"seed {p['seed']}.", ""]
    lines += ["## Selected configuration", ""]
    if sel.get("candidate"):
        cfg = sel["config"]
        lines += [f"Candidate **{sel['candidate']}**, best epoch {sel.get('best_epoch')} of {p['final']['epochs']}:", ""]
        lines += ["| " + " | ".join(CONFIG_KEYS) + " |", "| " + " | ".join("---" for _ in CONFIG_KEYS) + " |",
                  "| " + " | ".join(str(cfg.get(k)) for k in CONFIG_KEYS) + " |", ""]
        rows = [("selected " + sel["candidate"], sel.get("valid_ppl"), sel.get("test_ppl"))]
        if dense:
            rows.append(("dense reference", dense["valid_ppl"], dense["test_ppl"]))
            rows.append(("selected - dense", _diff(sel.get("valid_ppl"), dense["valid_ppl"]),
                         _diff(sel.get("test_ppl"), dense["test_ppl"])))
        lines += ["| model | validation perplexity | test perplexity |", "| --- | --- | --- |"]
        lines += [f"| {name} | {_fmt(v)} | {_fmt(t)} |" for name, v, t in rows]
        lines.append("")
        if not dense:
            lines += ["No dense reference trained to final.epochs in this run (dense-final/): nothing to compare with.", ""]
    else:
        lines += [f"No candidate was selected: {sel.get('status')}.", ""]
    if sel.get("diverged"):
        lines += ["## Diverged candidates", "",
                  "Ranked last in their round and never selected while another candidate remained:", ""]
        lines += [f"- {d['candidate']} ({d['where']}, epoch {d['epoch']}): {d.get('reason') or 'diverged'}"
                  for d in sel["diverged"]]
        lines.append("")
    lines += ["## Budget", ""]
    b = run.selected["budget"]
    lines += [f"Candidate-epochs: selection {b['candidate_epochs']['selection']} "
              f"(planned {b['planned_selection_candidate_epochs']}), final training {b['candidate_epochs']['final']}, "
              f"total {b['total_candidate_epochs']}; per round in budget.md.", ""]
    lines.append(markdown_table(seconds, digits={"wall_seconds": 3}, headers={"wall_seconds": "wall seconds"}))
    cost = correlation_study_cost(run)
    if cost[0]:
        lines += [f"The correlation study (report only, not part of the search) trained {cost[0]} more "
                  f"candidate-epochs in {cost[1]} s.", ""]
    if correlation is not None and len(correlation):
        lines += ["## Correlation with final perplexity", ""]
        lines.append(markdown_table(correlation, digits={"pearson": 3, "spearman": 3}))
    lines += ["## Files", ""]
    lines += [f"- `{name}`: {FILE_DESCRIPTIONS[name]}" for name in written if name in FILE_DESCRIPTIONS]
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _diff(a: Any, b: Any) -> float:
    return _num(a) - _num(b)


FILE_DESCRIPTIONS = {
    "summary.md": "this summary",
    "table1.md": "method, validation and test perplexity, candidate-epochs and wall time (paper Table 1; also table1.csv)",
    "table1.csv": "the same as table1.md, full precision",
    "budget.md": "candidate-epochs per round, planned against spent, and wall seconds per stage",
    "metrics.json": "the final numbers, flat (`dvc metrics show`)",
    "ls_curves.png": "spectra of the dense model and of the best, median and worst round-0 candidate",
    "distance_curves.png": "distance to the dense reference in LS space over epochs",
    "perplexity_curves.png": "validation perplexity over epochs",
    "ls_space.png": "the dense and the selected trajectories in 2-D PCA LS space",
    "correlation.png": "early LS distance (both layouts) and validation perplexity at the same epoch against final perplexity",
    "correlation.csv": "Pearson and Spearman coefficients of correlation.png",
    "correlation_points.csv": "the per-candidate points of correlation.png",
}


# -----------------------------------------------------------------------------
# The entry point


def build_report(params: dict, results_dir: str | Path, out_dir: str | Path) -> dict:
    """Write the report of the run in `results_dir` to `out_dir`; returns {"files": [...], "notes": [...]}."""
    run = load_run(params, results_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    written: list[str] = []

    def put_text(name: str, text: str) -> None:
        files.write_text(out / name, text)
        written.append(name)

    table = table1(run)
    put_text("table1.csv", table.to_csv(index=False))
    put_text("table1.md", "# Table 1\n\n" + markdown_table(
        table.drop(columns=["source"]), digits={"wall_seconds": 1},
        headers={"valid_ppl": "validation perplexity", "test_ppl": "test perplexity",
                 "candidate_epochs": "candidate-epochs", "wall_seconds": "wall seconds"})
        + "\nCandidate-epochs and wall seconds of a search count every stage it ran (for LSH the dense reference's "
          "selection epochs and spectra too); the dense row counts the reference's own epochs and seconds.\n")
    budget, seconds = budget_table(run), seconds_table(run)
    cost = correlation_study_cost(run)
    put_text("budget.md", "# Budget\n\nCandidate-epochs per stage: planned (`lsh plan`; for the final training, "
             "from final/pool.json) against spent.\n\n"
             + markdown_table(budget, headers={"planned": "planned candidate-epochs", "spent": "spent candidate-epochs",
                                               "cumulative": "cumulative spent"})
             + "\nWall seconds per stage:\n\n"
             + markdown_table(seconds, digits={"wall_seconds": 3}, headers={"wall_seconds": "wall seconds"})
             + (f"\nNot part of the search: the correlation study trained {cost[0]} candidate-epochs in {cost[1]} s.\n"
                if cost[0] else ""))
    if dense_reference(run) is None:
        notes.append("No dense reference trained to final.epochs (dense-final/): Table 1 and this summary have no dense row.")

    distances = distance_table(run)
    by_layout = {name: distance_table(run, name) for name in LAYOUTS}
    if run.plan.rounds:  # the workflow expects these three whenever the params imply rounds
        if run.rounds and run.dense_spectra is not None:
            plot_ls_curves(run, out / "ls_curves.png")
            plot_distance_curves(run, distances, out / "distance_curves.png")
        else:
            why = "the run has no finished selection rounds or dense spectra"
            notes.append(f"ls_curves.png and distance_curves.png are empty: {why}.")
            for name in ("ls_curves.png", "distance_curves.png"):
                placeholder_figure(out / name, why)
        space = ls_space(run)
        if space is not None:
            plot_ls_space(run, space, out / "ls_space.png")
        else:
            why = "the selected candidate has no spectra (did no candidate finish?)"
            notes.append(f"ls_space.png is empty: {why}.")
            placeholder_figure(out / "ls_space.png", why)
        written += list(FIGURES_NEEDING_ROUNDS)
    else:
        notes.append(f"{', '.join(FIGURES_NEEDING_ROUNDS)} are skipped: search.mode is full, so there are no "
                     "selection rounds and no spectra.")
    plot_perplexity_curves(run, out / "perplexity_curves.png")
    written.append("perplexity_curves.png")

    epochs = early_epochs(run)
    points = correlation_points(run, by_layout, epochs)
    finals = final_perplexities(run)
    correlation: pd.DataFrame | None = None
    if len(finals) >= MIN_CORRELATION:
        correlation = correlation_table(points)
        plot_correlation(points, correlation, out / "correlation.png")
    else:
        k = params["report"]["correlation_candidates"]
        missing = (f"only {len(finals)} candidates have a final perplexity ({MIN_CORRELATION} needed): "
                   f"{(finals['source'] == 'final').sum()} of the final pool and "
                   f"{(finals['source'] == 'correlation').sum()} more from the correlation study "
                   f"(report.correlation_candidates: {k}).")
        if run.plan.rounds:
            fix = (f"Raise report.correlation_candidates (up to the initial pool, search.n = {params['search']['n']}) "
                   "to train more round-0 candidates to final.epochs.")
        else:
            fix = "In search.mode full every initial candidate trains to the end: raise search.n."
        notes.append(f"The correlation is missing: {missing} {fix}")
        plot_correlation(points, pd.DataFrame(), out / "correlation.png", missing=missing)
    written.append("correlation.png")
    put_text("correlation.csv", (correlation if correlation is not None else correlation_table(points.iloc[0:0])).to_csv(index=False))
    put_text("correlation_points.csv", points.to_csv(index=False))
    if correlation is not None and not run.rounds:
        notes.append("Without selection rounds there are no early LS distances: the correlation has the early "
                     "validation perplexity only.")

    files.write_json(out / "metrics.json", metrics(run, correlation))
    written.append("metrics.json")
    listed = sorted({*written, "summary.md"}, key=_order)
    put_text("summary.md", summary_markdown(run, budget, seconds, correlation, notes, listed))
    return {"files": listed, "notes": notes}


def _order(name: str) -> int:
    everything = [*ALWAYS, *FIGURES_NEEDING_ROUNDS]
    return everything.index(name) if name in everything else len(everything)
