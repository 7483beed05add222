"""The study's report in words: the Markdown of its tables and the verdict's sentences, from the
numbers the library computed (lsh/study/verdict.py). No sentence is stronger than its intervals:
a difference between two signals is called established only where their 95 % intervals do not
overlap; between two strategies, only where the 95 % interval of their difference, paired within
training seeds, excludes zero."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lsh.config import Params
from lsh.report.tables import markdown_table
from lsh.study.statistics import COEFFICIENTS
from lsh.study.strategies import KIND_NAMES, method_name, optuna_name
from lsh.study.table import Table
from lsh.study.verdict import Estimate, Verdict


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals, '-' where there is none."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def estimate_words(e: Estimate, digits: int = 2) -> str:
    """`value [low, high]`; the value alone where there is no interval, '-' where there is no value."""
    if not math.isfinite(e.value):
        return "-"
    if not all(math.isfinite(v) for v in e.interval):
        return fmt(e.value, digits)
    return f"{fmt(e.value, digits)} [{fmt(e.low, digits)}, {fmt(e.high, digits)}]"


def interval_column(frame: pd.DataFrame, key: str) -> pd.Series:
    """A column `key` with its `_low` / `_high` bounds, as words."""
    return frame.apply(lambda r: estimate_words(Estimate.of(r, key)), axis=1)


SIGNALS_TEXT = (
    "# Early signals against final test perplexity\n\n"
    "Every signal at every early epoch, per training seed (column `seeds`: the seed) and pooled over the training "
    "seeds (`seeds` = pooled: every configuration and seed as a point). Coefficients with 95 % bootstrap intervals: "
    "for one seed the configurations are resampled (pairs); pooled, whole configurations are resampled, their "
    "seeds together. Top-quarter recall: the share of the truly best quarter a signal keeps in its better half "
    "(pooled: the mean over seeds).\n\n"
    "How much of a signal is more than the configuration's structure: `within_death`, Spearman within the groups "
    "of configurations sharing a death method (the groups' size-weighted mean; configurations resampled within "
    "their group; '-' where the signal is constant within every group); `partial_spearman`, Spearman controlling "
    "for the choices (init, death, growth, redistribution, and the death rate where it varies: both ranks "
    "regressed on them by least squares, the residuals correlated; 0 where the choices explain the signal's ranks "
    "entirely, '-' where they explain the outcome's). `labels_only` is the reference, not an early signal: each "
    "configuration's final test perplexity predicted, leave-one-out, by an additive model of its choices fitted "
    "to the other configurations of the same training seed; it is the same at every epoch, and an early signal "
    "adds to what the configuration's labels alone predict only where it beats it.\n\n")


def signals_markdown(signals: pd.DataFrame) -> str:
    """early_signals.md: every signal's coefficients with their intervals."""
    md = signals.copy()
    for key in (*COEFFICIENTS, "within_death", "partial_spearman"):
        md[key] = interval_column(md, key)
    md = md[["signal", "epoch", "seeds", "n", *COEFFICIENTS, "top_quarter_recall", "within_death", "partial_spearman"]]
    return SIGNALS_TEXT + markdown_table(md, digits={"top_quarter_recall": 2})


def seed_interval_words(seeds: int) -> str:
    """How the methods' intervals were made, or why there are none."""
    if seeds >= 2:
        return (f"mean over the {seeds} training seeds of each seed's mean over its repeats, with a 95 % interval over "
                "training seeds (a bootstrap drawing training seeds, then each drawn seed's proposer repeats)")
    return ("mean over the repeats on the table's one training seed; with one training seed no interval over "
            "training seeds exists, so none is given: repeats of the proposer on one trained table say nothing "
            "of training noise")


def seed_count_words(seeds: int) -> str:
    """The caveat a bootstrap over few training seeds needs: it can only redraw the seeds it has."""
    if seeds < 2 or seeds >= 10:
        return ""
    return (f"A bootstrap over {seeds} training seeds can only redraw those {seeds}, so its intervals are a coarse "
            "guide; the count of seeds on which one strategy beats the other is the plainer evidence.")


def _method_table(methods: pd.DataFrame, columns: list[str]) -> str:
    md = methods.copy()
    for key in ("test_ppl", "regret", "vs_reference"):
        if key in md:
            md[key] = interval_column(md, key)
    md = md.rename(columns={"vs_reference": "vs_lsh"})
    columns = [c for c in columns if c in md.columns]
    return markdown_table(md[columns], digits={"candidate_epochs": 1, "candidate_epochs_with_dense": 1,
                                               "finalist_epoch": 1, "newcomers_kept": 2, "selects_best": 2})


def methods_markdown(methods: pd.DataFrame, seeds: int, reference: str) -> str:
    """methods.md: every strategy at each pool size, its budget, its selection's quality, and its difference
    from LSH (`reference`) paired within training seeds."""
    return ("# Methods\n\nBudgets are in candidate-epochs (one candidate trained for one "
            "epoch) and listed per strategy: the strategies do not all spend the same. Final test perplexity "
            "of the selection and its regret against the table's best: "
            f"{seed_interval_words(seeds)}. `vs_lsh`: the strategy's test perplexity minus {reference}'s at the "
            "same n, paired within training seeds (both replayed on each seed's table, so the seed's luck cancels), "
            "with a 95 % interval from the same bootstrap drawing the same seeds for both; negative: it selects "
            "better than LSH; `lower_seeds`: on how many training seeds its mean is the lower. Two strategies' "
            "own intervals may overlap while their paired difference is clear of zero. "
            f"{seed_count_words(seeds)} `seeds`: the training seeds a row rests on; "
            "`candidate_epochs_with_dense`: with the dense reference's epochs the strategy needs (a user "
            "without a dense model pays them); `finalist_epoch`: the finalists' mean epoch when selection "
            "ends (their age); `newcomers_kept`: the share of candidates inserted after the first round that "
            "survive their round; the share of repeats selecting the table's best; the repeats that selected "
            "nothing.\n\n"
            + _method_table(methods, ["strategy", "n", "seeds", "repeats", "test_ppl", "regret", "vs_lsh",
                                      "lower_seeds", "candidate_epochs", "candidate_epochs_with_dense", "finalist_epoch",
                                      "newcomers_kept", "selects_best", "nothing_selected"]))


def options_markdown(variants: pd.DataFrame, seeds: int, n: int) -> str:
    """ls_options.md: LSH with the grid proposer under each of the LS ranker's options."""
    return ("# The LS ranker's options\n\nLSH with the grid proposer (the ranker alone "
            "makes the difference) under each embedding, distance, spectrum layout and PCA fit, at n = "
            f"{n}: final test perplexity and regret, {seed_interval_words(seeds)}.\n\n"
            + _method_table(variants, ["strategy", "seeds", "repeats", "test_ppl", "regret", "selects_best"]))


def schedules_markdown(schedules: pd.DataFrame) -> str:
    """schedules.md (paper Table 3)."""
    return ("# Schedules on the grid (paper Table 3)\n\nCandidate-epochs (selection "
            "and final training) and the share of repeats that select the table's best configuration, for "
            "the LS and the loss ranker with the grid proposer.\n\n"
            + markdown_table(schedules, digits={"candidate_epochs": 1, "selects_best": 2, "test_ppl": 2}))


def samples_markdown(samples: pd.DataFrame) -> str:
    """ls_samples.md (paper Table 4)."""
    return ("# The spectrum from K validation samples (paper Table 4)\n\n"
            + markdown_table(samples, digits={c: 4 for c in samples.columns if c not in ("configuration", "samples")}))


ALTERNATIVES = {KIND_NAMES["random"]: "random search", KIND_NAMES["iepoch"]: "i-Epoch",
                optuna_name("hyperband"): "Optuna's TPE with Hyperband",
                optuna_name("hyperband", matched=True): "Optuna's TPE with Hyperband (start-up matched to hyperopt's)",
                optuna_name("successive_halving"): "Optuna's TPE with successive halving",
                optuna_name("successive_halving", matched=True):
                    "Optuna's TPE with successive halving (start-up matched to hyperopt's)",
                KIND_NAMES["optuna_ls"]: "Optuna's TPE with the Lyapunov pruner (lsh.LyapunovPruner)",
                KIND_NAMES["full"]: "training all n candidates to the end"}


def alternatives(proposer: str) -> dict[str, str]:
    """What a practitioner would run instead of LSH, by strategy name: training-speed estimation with LSH's
    proposer, then the searches that need no ranker of ours."""
    return {method_name("tse", proposer): "training-speed estimation (TSE)", **ALTERNATIVES}


def alternatives_words(methods: pd.DataFrame, n: int, proposer: str) -> str:
    """LSH against what a practitioner would run instead, at the same n: each one's numbers, then which
    are worse, better or not distinguishable from LSH by the 95 % interval of their difference from LSH,
    paired within training seeds (`methods` summarised with LSH as the reference; none with one seed)."""
    m = methods.set_index(["strategy", "n"])
    if (method_name("ls", proposer), n) not in m.index:
        return ""
    lsh = m.loc[(method_name("ls", proposer), n)]
    parts, verdicts = [], {"worse": [], "better": [], "same": [], "unknown": []}
    for strategy, words in alternatives(proposer).items():
        if (strategy, n) not in m.index:
            continue
        row = m.loc[(strategy, n)]
        gap = Estimate.of(row, "vs_reference")
        parts.append(f"{words} {estimate_words(Estimate.of(row, 'test_ppl'))} "
                     f"({row['candidate_epochs']:.1f} candidate-epochs; minus LSH's: {estimate_words(gap)}, "
                     f"lower on {int(row['lower_seeds'])} of {int(row['seeds'])} training seeds)")
        clear = gap.clear_of_zero()
        verdicts[{False: "same", None: "unknown"}.get(clear, "worse" if gap.value > 0 else "better")].append(words)
    if not parts:
        return ""
    said = [f"{kind} {', '.join(names)}" for kind, names in (
        ("worse than LSH, the interval of the paired difference clear of zero:", verdicts["worse"]),
        ("better than LSH, the interval of the paired difference clear of zero:", verdicts["better"]),
        ("not distinguishable from LSH (the interval of the paired difference includes zero):", verdicts["same"]),
        ("not compared with LSH, for want of an interval over training seeds (one training seed, or too few "
         "finite outcomes):", verdicts["unknown"])) if names]
    return ("Against what a practitioner would run instead, at the same n: " + "; ".join(parts)
            + f"; LSH spent {lsh['candidate_epochs']:.1f}. "
            + ". ".join(words[0].upper() + words[1:] for words in said) + ".")


def ties_words(points: pd.DataFrame) -> str:
    """The early epochs at which configurations train identically in groups (what tells them apart acts
    only later, such as the topology update after epoch 1): every signal there takes a few values only."""
    said = []
    for epoch, at in points.groupby("epoch"):
        values = at["valid_ppl"][np.isfinite(at["valid_ppl"])]
        distinct, n = values.round(9).nunique(), len(values)
        if n and distinct <= n // 2:
            said.append(f"at epoch {epoch} the {n} configurations have only {distinct} distinct validation "
                        "perplexities")
    if not said:
        return ""
    return ("Ties: " + "; ".join(said) + ". Configurations that differ only in what acts after that epoch (the "
            "topology update acts from the end of epoch 1) have trained identically, so every signal takes as "
            "few values there and its coefficients say little about ranking within the groups.")


def signal_words(v: Verdict) -> str:
    """The early signals at e0, pooled over the training seeds, and what is more than the structure."""
    ls, gap = v.ls, v.loss_gap
    said = lambda e: estimate_words(e) if math.isfinite(e.value) else "n/a"  # noqa: E731
    pooled = f"pooled over the {v.seeds} training seeds, " if v.seeds > 1 else ""
    return (
        f"At epoch {v.epoch} (e0), {pooled}the LS distance ranks the configurations by their final test perplexity "
        f"with Spearman {estimate_words(ls.spearman)}, the validation-loss gap with "
        f"{estimate_words(gap.spearman)} (Pearson {fmt(ls.pearson, 2)} against "
        f"{fmt(gap.pearson, 2)}; top-quarter recall {fmt(ls.recall, 2)} against {fmt(gap.recall, 2)}). "
        + ("The LS distance is the better early signal here" if ls.spearman.value > gap.spearman.value
           else "The loss gap is the better early signal here")
        + {True: ", but the intervals overlap: at this scale the difference is not established.",
           False: ", and the intervals do not overlap.",
           None: ", but an interval could not be computed (too few finite points): nothing is established."}[
            ls.spearman.overlaps(gap.spearman)]
        + f" Beyond the configuration's structure: within death methods Spearman "
        f"{said(ls.within)} for the LS distance against {said(gap.within)} for the loss gap; controlling for the "
        f"choices {said(ls.partial)} against {said(gap.partial)}; the configuration's labels alone "
        f"(leave-one-out) reach Spearman {said(v.labels_spearman)}."
    )


def method_words(v: Verdict) -> str:
    """LSH against the loss-based search at the headline pool, with their budgets."""
    lsh, loss = v.lsh, v.loss
    unknown = (" (one training seed: no interval over training seeds exists, so whether the difference exceeds "
               "training noise is unknown)." if v.seeds < 2 else " (an interval could not be computed).")
    return (
        f"With n = {v.n} and proposer {v.proposer}, LSH ({lsh.candidate_epochs:.1f} candidate-epochs) selects a "
        f"configuration of final test perplexity {estimate_words(lsh.test_ppl)} on average (regret "
        f"{fmt(lsh.regret, 2)}), the loss-based search ({loss.candidate_epochs:.1f} candidate-epochs) "
        f"{estimate_words(loss.test_ppl)} (regret {fmt(loss.regret, 2)}); the table's best is "
        f"{v.best:.2f}" + (" (the mean over training seeds of each seed's best)" if v.seeds > 1 else "") + ". "
        + ("LSH does better" if lsh.test_ppl.value < loss.test_ppl.value else "LSH does not do better")
        + f": paired within training seeds, the loss-based search's selection minus LSH's is "
        f"{estimate_words(v.loss_vs_lsh)} in test perplexity, the loss-based search's the lower on "
        f"{v.loss_lower_seeds} of {v.seeds} training seeds"
        + {True: "; the interval of the difference is clear of zero.",
           False: "; the interval of the difference includes zero: the difference is not established.",
           None: unknown}[v.loss_vs_lsh.clear_of_zero()]
        + (f" {caveat}" if (caveat := seed_count_words(v.seeds)) else "")
    )


def summary_markdown(params: Params, table: Table, v: Verdict, repeats: int, notes: list[str]) -> str:
    """summary.md: what the table is, the verdict in words, and the files beside it."""
    meta = table.meta
    lines = [
        "# Study: does ranking by the Lyapunov spectrum pick better pruned models than ranking by the loss?", "",
        f"Table: {len(table.configs)} configurations ({meta['space']} space), {len(table.seeds)} training seed(s), "
        f"epochs 0..{table.final_epochs}, model {params.model.type.upper()} {params.model.layers} x {params.model.hidden}, "
        f"{params.data.train_tokens or 'all'} training tokens; every strategy replayed {repeats} times.", "",
        "## Verdict", "", signal_words(v), "", method_words(v), "", *[line for note in notes for line in (note, "")],
        "## Files", "",
        "- `early_signals.md` / `.csv`: every signal (the LS distance under each ranker option, the validation-loss gap, "
        "the training loss, the validation perplexity, and the labels-only reference) at each early epoch, per training "
        "seed and pooled, Pearson, Spearman and Kendall with 95 % bootstrap intervals, top-quarter recall, and Spearman "
        "within death methods and controlling for the choices; `signals.png`",
        "- `methods.md` / `.csv`: every strategy at each pool size, its candidate-epochs, mean final test perplexity "
        "and regret with 95 % intervals over training seeds (none with one seed), and its difference from LSH paired "
        "within training seeds (`vs_lsh`); `methods.png`; `anytime.png` (the "
        "incumbent against candidate-epochs)",
        "- `ls_options.md` / `.csv`: the LS ranker's options (embedding, distance, layout, PCA fit) with the grid proposer",
        "- `schedules.md` / `.csv`: e0 in 1..3 and ei in 1..4 on the grid (paper Table 3)",
        "- `ls_samples.md` / `.csv`: the spectrum from K validation samples (paper Table 4)",
        "- `../replays.csv`, `../anytime.csv`: every replay's outcome, and the methods' incumbent after each "
        "candidate-epoch", "",
    ]
    return "\n".join(lines)
