"""The correlation study of a run: each candidate's distance to the dense reference over epochs
(recomputed from its spectra, in either layout), its perplexity, and early measures against its
final perplexity with Pearson and Spearman coefficients (supplement Fig. 1)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lsh.records import LAYOUTS
from lsh.report.run import Candidate, Run
from lsh.report.tables import number_or_nan
from lsh.search.ranking import ls_distances

MIN_CORRELATION = 5  # candidates with a final perplexity needed for the correlation study


def trajectory(cand: Candidate, upto: int, layout: str | None = None) -> np.ndarray | None:
    """The candidate's spectra of epochs 0..upto (the params' layout, or `layout`), or None when one
    is missing or failed."""
    spectra = cand.spectra if layout is None else cand.layouts.get(layout, {})
    points = [spectra.get(e) for e in range(upto + 1)]
    if any(p is None for p in points):
        return None
    return np.array(points, dtype=float)


def complete_epochs(cand: Candidate, last: int) -> list[int]:
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
    search, seed = run.params.search, run.params.seed
    kw = dict(embedding=search.embedding, distance=search.distance, fit=search.pca_fit, seed=seed)
    last = len(dense) - 1
    epochs = {c: complete_epochs(cand, last) for c, cand in run.candidates.items()}
    rows = []
    if search.pca_fit == "pool":
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


def final_perplexities(run: Run) -> pd.DataFrame:
    """Candidates with a final (test) perplexity: finalists, then correlation candidates, one row per id."""
    rows = []
    for c, cand in run.candidates.items():
        for source, summary in (("final", cand.final), ("correlation", cand.correlation)):
            if summary and summary.ok and summary.test_ppl is not None:
                rows.append({"candidate": c, "source": source, "final_test_ppl": float(summary.test_ppl),
                             "final_valid_ppl": number_or_nan(summary.best_valid_ppl)})
                break  # a finalist's own final training wins over its correlation copy
    return pd.DataFrame(rows, columns=["candidate", "source", "final_test_ppl", "final_valid_ppl"])


def early_epochs(run: Run) -> list[int]:
    """Epoch 1 and search.e0 (the paper's "beginning of training"); with e0 = 1, epoch 1 and the
    last epoch the search compares (when it is later), so that there are two early epochs."""
    e0 = run.params.search.e0
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
        ppl = {h.epoch: number_or_nan(h.valid_ppl) for h in run.candidates[f.candidate].history}
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


