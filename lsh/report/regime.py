"""Could each ranking of a run answer? Per round: the regime it ranked in, by the study's calibration
criteria (lsh.study.calibration: off the unigram plateau, still learning, told apart), and what each
other ranker would have kept from the same measurements (ranking.csv holds every ranker's score).

A ranking made while the candidates sit on the unigram plateau orders them by their configuration's
structure, not by how they learn; a ranking whose rankers all keep the same candidates could not have
changed the selection. Both cost no training: they read what the run already measured."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lsh.report.run import Run
from lsh.search.ranking import RANKERS, rank
from lsh.study.calibration import BELOW_UNIGRAM, MEDIAN_FALL, distinct_trajectories, off_plateau

# The ranking.csv column holding each ranker's score (lower is better)
SCORE_COLUMNS = {"ls": "distance", "loss": "loss", "loss_gap": "loss_gap", "tse": "tse"}


def regime_table(run: Run, unigram: float | None) -> pd.DataFrame:
    """One row per round: the candidates' epochs at the ranking, how many sit off the plateau (of how many
    must), the median fall in validation perplexity from the epoch before, how many validation trajectories
    differ, and whether the ranking measured learning (`answers`). Without the unigram perplexity (no
    prepared data) the plateau is not judged."""
    rows = []
    for r, ranking in enumerate(run.rankings):
        alive = ranking[ranking["status"] == "ok"]
        epochs = [int(e) for e in alive["epoch"]]
        curves = [[h.valid_ppl for h in run.candidates[c].history if 1 <= h.epoch <= e]
                  for c, e in zip(alive["candidate"], epochs)]
        at_rank = [curve[-1] if curve else math.nan for curve in curves]
        before = [curve[-2] if len(curve) > 1 else math.nan for curve in curves]
        falls = [1 - a / b for a, b in zip(at_rank, before) if _finite(a) and _finite(b) and b > 0]
        fall = float(np.median(falls)) if falls else math.nan
        distinct, apart = distinct_trajectories([tuple(c) for c in curves])
        left, needed = off_plateau(at_rank, unigram) if unigram is not None else (None, None)
        plateau = left is not None and left < needed
        learning = not (math.isfinite(fall) and fall < MEDIAN_FALL)
        rows.append({"round": r, "epochs": _span(epochs), "candidates": len(alive), "unigram_ppl": unigram,
                     "median_valid_ppl": float(np.median(at_rank)) if at_rank else math.nan,
                     "off_plateau": left, "needed": needed, "median_fall": fall, "distinct": distinct,
                     "distinct_needed": apart, "answers": not plateau and learning and distinct >= apart})
    return pd.DataFrame(rows)


def alternatives_table(run: Run) -> pd.DataFrame:
    """One row per round and ranker: the candidates it would have kept from the round's measurements (as the
    rank step keeps: the same number as the ranker used kept, ties by pool order, diverged last) and how
    many of them the ranker used kept too."""
    used = run.selected.ranker
    rows = []
    for r, ranking in enumerate(run.rankings):
        in_pool = ranking.sort_values("slot")
        ids = [str(c) for c in in_pool["candidate"]]
        keep = int(ranking["kept"].sum())
        kept_used = set(ranking.loc[ranking["kept"], "candidate"])
        for ranker in RANKERS:
            if ranker == used:  # what the run kept, in its ranking's order
                kept = [str(c) for c in ranking.loc[ranking["kept"], "candidate"]]
            else:
                scores = {c: float(s) if _finite(s) else math.inf for c, s in zip(ids, in_pool[SCORE_COLUMNS[ranker]])}
                kept = rank(scores, ids)[:keep]
            rows.append({"round": r, "ranker": ranker, "used": ranker == used, "kept": " ".join(kept),
                         "shared": len(kept_used & set(kept)), "of": keep})
    return pd.DataFrame(rows)


def could_differ(alternatives: pd.DataFrame) -> bool:
    """Whether another ranker would have kept other candidates in some round (and so could have selected
    another configuration)."""
    return bool((alternatives["shared"] < alternatives["of"]).any())


def regime_markdown(regime: pd.DataFrame, alternatives: pd.DataFrame) -> list[str]:
    """summary.md's section: each round's regime and, beside it, what the other rankers would have kept."""
    lines = ["## Could the rankings answer?", ""]
    for row in regime.itertuples():
        lines.append(f"- {regime_words(row)}")
    lines.append("")
    if len(alternatives):
        lines += ["What each ranker would have kept from the same measurements (candidates, best first; "
                  "the ranker used in bold):", "",
                  "| round | " + " | ".join(RANKERS) + " |", "|---|" + "---|" * len(RANKERS)]
        for r, group in alternatives.groupby("round"):
            cells = [f"**{g.kept}**" if g.used else f"{g.kept} ({g.shared} of {g.of} shared)"
                     for g in group.set_index("ranker").loc[list(RANKERS)].itertuples()]
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
        lines += ["", "Another ranker would have kept other candidates in some round, so the selection could have "
                  "differed." if could_differ(alternatives) else "Every ranker keeps the same candidates in every "
                  "round: the choice of ranker could not have changed the selection.", ""]
    return lines


def regime_words(row) -> str:
    """One round's regime in a sentence (the log's line and the summary's)."""
    where = f"round {row.round} (epoch {row.epochs}, {row.candidates} candidates)"
    if row.off_plateau is None:
        plateau = "the unigram plateau is not judged (no prepared data to measure it)"
    else:
        plateau = (f"{row.off_plateau} of {row.candidates} candidates are at least {BELOW_UNIGRAM:.0%} below the "
                   f"unigram perplexity {row.unigram_ppl:.1f} ({row.needed} must be; median validation perplexity "
                   f"{row.median_valid_ppl:.1f})")
    fall = "" if not math.isfinite(row.median_fall) else f"; the median fell {row.median_fall:.1%} in its last epoch"
    apart = f"; {row.distinct} of {row.candidates} validation trajectories differ"
    if row.answers:
        return f"{where}: ranked while learning: {plateau}{fall}{apart}."
    return (f"{where}: the ranking could not measure learning: {plateau}{fall}{apart}. It orders the candidates by "
            "their configuration's structure; more training tokens or updates before search.e0 would fix it "
            "(docs/study.md, the calibration).")


def _span(epochs: list[int]) -> str:
    return "-" if not epochs else str(min(epochs)) if min(epochs) == max(epochs) else f"{min(epochs)}-{max(epochs)}"


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
