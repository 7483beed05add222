"""The paper-scale point: the first-round candidates of the data released with the paper's reference
code (docs/results/released/candidates.csv, made by workflow/scripts/released_data.py), ranked by the
reference code's LS distance at epoch 3 and by the validation perplexity at epoch 3, against their
test perplexity after 100 epochs: the coefficients the study reports and the half each signal keeps,
by the pipeline's own ranking. One training seed and one round: no interval over training seeds
exists; the coefficients' intervals resample the 26 candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lsh.search.ranking import rank
from lsh.study.statistics import coefficient_with_interval, top_quarter_recall

COLUMNS = ("trial", "init", "growth", "death", "redistribution", "death_rate", "ls_distance_e3", "valid_ppl_e3",
           "test_ppl_e3", "final_test_ppl")
SIGNALS = {"ls_distance_e3": "LS distance at epoch 3", "valid_ppl_e3": "validation perplexity at epoch 3"}
OUTCOME = "final_test_ppl"  # the test perplexity after 100 epochs


def kept_half(frame: pd.DataFrame, signal: str) -> list[int]:
    """The trials a round keeps by `signal` (lower is better), as `lsh search rank` orders a pool: the
    better half, ties by the trials' order."""
    ids = [str(t) for t in frame["trial"]]
    order = rank(dict(zip(ids, frame[signal].astype(float))), ids)
    return [int(t) for t in order[: len(order) // 2]]


def released_point(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per signal: Spearman and Pearson with the 100-epoch outcome (95 % intervals resampling the
    candidates), the top-quarter recall, and the half it keeps: its mean outcome and whether the best
    candidate is in it."""
    final = frame[OUTCOME].to_numpy(dtype=float)
    best = int(frame.loc[frame[OUTCOME].idxmin(), "trial"])
    rows = []
    for signal, words in SIGNALS.items():
        x = frame[signal].to_numpy(dtype=float)
        row = {"signal": signal, "words": words, "n": len(frame)}
        for name in ("spearman", "pearson"):
            value, low, high = coefficient_with_interval(x, final, name, seed)
            row.update({name: value, f"{name}_low": low, f"{name}_high": high})
        kept = kept_half(frame, signal)
        row.update({"top_quarter_recall": top_quarter_recall(x, final),
                    "kept_mean_final": float(frame.loc[frame["trial"].isin(kept), OUTCOME].mean()),
                    "keeps_best": best in kept, "kept": " ".join(map(str, kept))})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["all_mean_final"] = float(np.mean(final))
    return out


def beside_the_study(point: pd.DataFrame, settings: list[tuple[pd.DataFrame, str]], ls_signal: str,
                     epoch: int) -> pd.DataFrame:
    """The released point's coefficients and each setting's (an early_signals.csv, or one horizon of
    horizon_signals.csv: pooled over training seeds, at `epoch`) for the LS distance and the validation
    perplexity, one row per setting and signal; `settings` pairs each table with its label."""
    rows = [{"setting": "paper scale (released), epoch 3 of 100", "signal": SIGNALS[s].split(" at ")[0],
             **{k: r[k] for k in ("n", "spearman", "spearman_low", "spearman_high", "pearson", "pearson_low",
                                   "pearson_high")}} for s, r in point.set_index("signal").iterrows()]
    for signals, label in settings:
        pooled = signals[(signals["seeds"].astype(str) == "pooled") & (signals["epoch"] == epoch)].set_index("signal")
        for name, words in ((ls_signal, "LS distance"), ("valid_ppl", "validation perplexity")):
            r = pooled.loc[name]
            rows.append({"setting": label, "signal": words,
                         **{k: r[k] for k in ("n", "spearman", "spearman_low", "spearman_high", "pearson",
                                              "pearson_low", "pearson_high")}})
    return pd.DataFrame(rows)
