"""The study's report in words: the Markdown of its tables and the verdict's sentences, from the
numbers the library computed (lsh/study/verdict.py). No sentence is stronger than the test over
training seeds behind it: a difference between two signals or two strategies is called established
only where the 95 % t interval of the difference paired within training seeds excludes zero, and the
exact sign test's p is given beside it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lsh.config import Params
from lsh.report.tables import markdown_table
from lsh.search.ranking import method_name
from lsh.study.statistics import COEFFICIENTS, SeedTest, reference_test, sign_test_seeds
from lsh.study.strategies import KIND_NAMES, optuna_name
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
        return (f"mean over the {seeds} training seeds of each seed's mean over its repeats, with a 95 % t interval "
                f"over the training seeds ({seeds - 1} degrees of freedom)")
    return ("mean over the repeats on the table's one training seed; with one training seed no interval over "
            "training seeds exists, so none is given: repeats of the proposer on one trained table say nothing "
            "of training noise")


def seed_count_words(seeds: int) -> str:
    """What few training seeds can establish: a t interval that assumes normal scatter, a sign test that
    cannot reach the 5 % level below sign_test_seeds()."""
    if seeds < 2 or seeds >= sign_test_seeds():
        return ""
    return (f"With {seeds} training seeds the t interval is wide and assumes the per-seed differences scatter "
            "normally; the exact sign test, which assumes nothing, cannot reach p < 0.05 with fewer than "
            f"{sign_test_seeds()} seeds, so 'lower on {seeds} of {seeds} seeds' is p = {2 * 0.5 ** seeds:.2f}.")


def test_words(t: SeedTest, digits: int = 2) -> str:
    """`mean [low, high]` of a paired difference over seeds, with the sign test's p."""
    p = f" (sign test p = {t.p_sign:.2f})" if math.isfinite(t.p_sign) else ""
    return f"{estimate_words(Estimate(t.mean, t.low, t.high), digits)}{p}"


def _method_table(methods: pd.DataFrame, columns: list[str]) -> str:
    md = methods.copy()
    for key in ("test_ppl", "regret", "vs_reference"):
        if key in md:
            md[key] = interval_column(md, key)
    md = md.rename(columns={"vs_reference": "vs_lsh", "vs_reference_p_sign": "sign_p",
                            "budget_vs_reference": "budget_vs_lsh"})
    columns = [c for c in columns if c in md.columns]
    return markdown_table(md[columns], digits={"candidate_epochs": 1, "candidate_epochs_with_dense": 1,
                                               "budget_vs_lsh": 1, "finalist_epoch": 1, "newcomers_kept": 2,
                                               "selects_best": 2, "sign_p": 2, "repeat_sd": 2})


def methods_markdown(methods: pd.DataFrame, seeds: int, reference: str) -> str:
    """methods.md: every strategy at each pool size, its budget, its selection's quality, and its difference
    from LSH (`reference`) paired within training seeds."""
    return ("# Methods\n\nBudgets are in candidate-epochs (one candidate trained for one "
            "epoch) and listed per strategy: the strategies do not all spend the same. Final test perplexity "
            "of the selection and its regret against the table's best: "
            f"{seed_interval_words(seeds)}; `repeat_sd`: the standard deviation of the proposer's repeats on one "
            "seed's table (the search's luck, not training noise). `vs_lsh`: the strategy's test perplexity minus "
            f"{reference}'s at the same n, paired within training seeds (both replayed on each seed's table, so "
            "the seed's luck cancels), with the 95 % t interval of the per-seed differences; negative: it selects "
            "better than LSH; `lower_seeds`: on how many training seeds its mean is the lower; `sign_p`: the exact "
            "two-sided sign test's p over those seeds. Two strategies' own intervals may overlap while their "
            f"paired difference is clear of zero. {seed_count_words(seeds)} `seeds`: the training seeds a row "
            "rests on; `candidate_epochs_with_dense`: with the dense reference's epochs the strategy needs (a "
            "user without a dense model pays them); `budget_vs_lsh`: that charged budget minus LSH's (positive: "
            "it spent more); `finalist_epoch`: the finalists' mean epoch when selection "
            "ends (their age); `newcomers_kept`: the share of candidates inserted after the first round that "
            "survive their round; the share of repeats selecting the table's best; the repeats that selected "
            "nothing.\n\n"
            + _method_table(methods, ["strategy", "n", "seeds", "repeats", "test_ppl", "regret", "repeat_sd", "vs_lsh",
                                      "lower_seeds", "sign_p", "candidate_epochs", "candidate_epochs_with_dense",
                                      "budget_vs_lsh", "finalist_epoch", "newcomers_kept", "selects_best",
                                      "nothing_selected"]))


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


ALTERNATIVES = {KIND_NAMES["random"]: "random search", KIND_NAMES["iepoch"]: "i-Epoch (Egele et al., 2023)",
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


def budget_words(own: float, charged: float) -> str:
    """A strategy's candidate-epochs, the dense reference's charged where it needs them (`charged`)."""
    return (f"{charged:.1f} candidate-epochs with the dense reference's {charged - own:.1f}" if charged > own
            else f"{own:.1f} candidate-epochs")


def charges(row: pd.Series) -> tuple[float, float]:
    """A methods row's candidate-epochs, without and with the dense reference's (where it has them)."""
    return row["candidate_epochs"], row.get("candidate_epochs_with_dense", row["candidate_epochs"])


def alternatives_words(methods: pd.DataFrame, n: int, proposer: str) -> str:
    """LSH against what a practitioner would run instead, at the same n: each one's numbers and budget
    beside LSH's, then which are worse, better or not distinguishable from LSH by the 95 % t interval of
    their difference from LSH paired within training seeds (`methods` summarised with LSH as the
    reference; none with one seed)."""
    m = methods.set_index(["strategy", "n"])
    if (method_name("ls", proposer), n) not in m.index:
        return ""
    lsh = m.loc[(method_name("ls", proposer), n)]
    parts, verdicts = [], {"worse": [], "better": [], "same": [], "unknown": []}
    for strategy, words in alternatives(proposer).items():
        if (strategy, n) not in m.index:
            continue
        row = m.loc[(strategy, n)]
        test = reference_test(row)
        budget = row.get("budget_vs_reference", math.nan)
        more = "" if not math.isfinite(budget) else (
            "the same budget as LSH" if abs(budget) < 0.05
            else f"{abs(budget):.1f} {'more' if budget > 0 else 'fewer'} than LSH")
        parts.append(f"{words} {estimate_words(Estimate.of(row, 'test_ppl'))} ({budget_words(*charges(row))}"
                     f"{'; ' + more if more else ''}; minus LSH's: {test_words(test)}, lower on "
                     f"{test.lower} of {test.seeds} training seeds)")
        clear = test.clear_of_zero()
        verdicts[{False: "same", None: "unknown"}.get(clear, "worse" if test.mean > 0 else "better")].append(words)
    if not parts:
        return ""
    said = [f"{kind} {', '.join(names)}" for kind, names in (
        ("worse than LSH, the t interval of the paired difference clear of zero:", verdicts["worse"]),
        ("better than LSH, the t interval of the paired difference clear of zero:", verdicts["better"]),
        ("not distinguishable from LSH (the t interval of the paired difference includes zero):", verdicts["same"]),
        ("not compared with LSH, for want of an interval over training seeds (one training seed, or too few "
         "finite outcomes):", verdicts["unknown"])) if names]
    return ("Against what a practitioner would run instead, at the same n: " + "; ".join(parts)
            + f"; LSH spent {budget_words(*charges(lsh))}. "
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
        + f": paired within training seeds, the LS distance's Spearman minus the loss gap's is "
        f"{test_words(v.signal_gap)}, the LS distance's the higher on "
        f"{v.signal_gap.seeds - v.signal_gap.lower} of {v.signal_gap.seeds} seeds"
        + {True: "; the t interval of the difference is clear of zero" + (
                 f" (the t test establishes it; the sign test cannot with {v.signal_gap.seeds} seeds)."
                 if v.signal_gap.seeds < sign_test_seeds() else "."),
           False: "; the t interval of the difference includes zero: the difference is not established.",
           None: "; no interval over training seeds (fewer than 2 seeds with both coefficients): nothing is "
                 "established."}[v.signal_gap.clear_of_zero()]
        + f" Beyond the configuration's structure: within death methods Spearman "
        f"{said(ls.within)} for the LS distance against {said(gap.within)} for the loss gap; controlling for the "
        f"choices {said(ls.partial)} against {said(gap.partial)}. For reference, not an early signal: the "
        f"configuration's labels alone, an additive model of its choices fitted leave-one-out to the other "
        f"configurations' final outcomes, reach Spearman {said(v.labels_spearman)}."
    )


def method_words(v: Verdict) -> str:
    """LSH against the loss-based search at the headline pool, with their budgets."""
    lsh, loss, t = v.lsh, v.loss, v.loss_vs_lsh
    unknown = (" (one training seed: no interval over training seeds exists, so whether the difference exceeds "
               "training noise is unknown)." if v.seeds < 2 else " (an interval could not be computed).")
    power = "" if v.seeds_for_one is None else (
        f" From the per-seed differences' spread (standard deviation {t.sd:.2f}), a paired t test at the 5 % level "
        f"would need {v.seeds_for_one} training seeds to detect a true difference of 1 test perplexity with 80 % "
        "power.")
    return (
        f"With n = {v.n} and proposer {v.proposer}, LSH ({budget_words(lsh.candidate_epochs, lsh.charged)}) selects a "
        f"configuration of final test perplexity {estimate_words(lsh.test_ppl)} on average (regret "
        f"{fmt(lsh.regret, 2)}), the loss-based search ({budget_words(loss.candidate_epochs, loss.charged)}) "
        f"{estimate_words(loss.test_ppl)} (regret {fmt(loss.regret, 2)}); the table's best is "
        f"{v.best:.2f}" + (" (the mean over training seeds of each seed's best)" if v.seeds > 1 else "") + ". "
        + ("LSH does better" if lsh.test_ppl.value < loss.test_ppl.value else "LSH does not do better")
        + f": paired within training seeds, the loss-based search's selection minus LSH's is "
        f"{test_words(t)}, the loss-based search's the lower on {t.lower} of {t.seeds} "
        "training seeds"
        + {True: "; the t interval of the difference is clear of zero.",
           False: "; the t interval of the difference includes zero: the difference is not established.",
           None: unknown}[t.clear_of_zero()]
        + (f" {caveat}" if (caveat := seed_count_words(v.seeds)) else "") + power
    )



def summary_markdown(params: Params, table: Table, v: Verdict, repeats: int, notes: list[str]) -> str:
    """summary.md: what the table is, the verdict in words, and the files beside it."""
    meta = table.meta
    lines = [
        "# Study: does ranking by the Lyapunov spectrum pick better pruned models than ranking by the loss?", "",
        f"Table: {len(table.configs)} configurations ({meta['space']} space), {len(table.seeds)} training seed(s), "
        f"epochs 0..{table.final_epochs}, "
        f"model {params.model.type.upper()} {params.model.layers} x {params.model.hidden}, "
        f"{params.data.train_tokens or 'all'} training tokens; every strategy replayed {repeats} times.", "",
        "## Verdict", "", signal_words(v), "", method_words(v), "", *[line for note in notes for line in (note, "")],
        "## Files", "",
        "- `early_signals.md` / `.csv`: every signal (the LS distance under each ranker option, the validation-loss "
        "gap, the training loss, the validation perplexity, and the labels-only reference) at each early epoch, per "
        "training seed and pooled, Pearson, Spearman and Kendall with 95 % bootstrap intervals, top-quarter recall, "
        "and Spearman within death methods and controlling for the choices; `signals.png`",
        "- `methods.md` / `.csv`: every strategy at each pool size, its candidate-epochs, mean final test perplexity "
        "and regret with 95 % intervals over training seeds (none with one seed), and its difference from LSH paired "
        "within training seeds (`vs_lsh`); `methods.png`; `anytime.png` (the "
        "incumbent against candidate-epochs)",
        "- `ls_options.md` / `.csv`: the LS ranker's options (embedding, distance, layout, PCA fit) "
        "with the grid proposer",
        "- `schedules.md` / `.csv`: e0 in 1..3 and ei in 1..4 on the grid (paper Table 3)",
        "- `ls_samples.md` / `.csv`: the spectrum from K validation samples (paper Table 4)",
        "- `sensitivity.md` / `.csv`: the LSH-against-loss comparison under each variation (the first ranking's "
        "epoch, each configuration left out, the ranker's options), paired within training seeds",
        "- `../replays.csv`, `../anytime.csv`, `../sensitivity.csv`, `../ls-samples.csv` (in the run's study "
        "folder; a copy of this report kept elsewhere comes without them, and the study target writes them "
        "again): every replay's outcome, the methods' incumbent after each candidate-epoch, the variations and "
        "Table 4, as `lsh study report` reads them", "",
    ]
    return "\n".join(lines)


SENSITIVITY_TEXT = (
    "# Sensitivity of the comparison\n\n"
    "The loss-ranked search's final test perplexity minus LSH's (negative: the loss ranking selects better), "
    "paired within training seeds, with the 95 % t interval over the seeds and the exact sign test's p, each "
    "variation replayed on the same table with the study's repeats: `as run` is the study's own comparison; `e0`, "
    "the first ranking at another epoch; `leave_out`, one configuration left out of the table (the proposers "
    "choose among the rest): how much of the difference it carries; `ranker`, LSH with other options of its LS "
    "ranker (`post_hoc`: chosen after looking at the study's data, so not a test of anything). Budgets in "
    "candidate-epochs, LSH's with the dense reference's.\n\n")


def sensitivity_markdown(frame: pd.DataFrame) -> str:
    """sensitivity.md: every variation of the headline comparison."""
    md = frame.copy()
    md["loss_vs_lsh"] = interval_column(md, "loss_vs_lsh")
    md = md[["kind", "setting", "post_hoc", "seeds", "lsh_test_ppl", "loss_test_ppl", "loss_vs_lsh", "sign_p",
             "loss_lower_seeds", "lsh_candidate_epochs", "loss_candidate_epochs"]]
    return SENSITIVITY_TEXT + markdown_table(md, digits={"lsh_test_ppl": 2, "loss_test_ppl": 2, "sign_p": 2,
                                                         "lsh_candidate_epochs": 1, "loss_candidate_epochs": 1})


def _ranks(points: pd.DataFrame, column: str, epoch: int, cid: str) -> list[int]:
    """`cid`'s rank (1 = best, the lowest value) by `column` among the configurations at `epoch`, per seed."""
    at = points[points["epoch"] == epoch]
    return [int(group[column].rank(method="min")[group["config"] == cid].iloc[0])
            for _, group in at.groupby("seed") if cid in set(group["config"])]


def _span(ranks: list[int]) -> str:
    return "-" if not ranks else f"{min(ranks)}" if min(ranks) == max(ranks) else f"{min(ranks)} to {max(ranks)}"


def sensitivity_words(frame: pd.DataFrame, points: pd.DataFrame, default_ls: str, e0: int) -> str:
    """The summary's sentences on the sensitivity: the comparison at each e0, the configuration whose absence
    moves it most (and where the signals rank it), and the post hoc ranker, labelled so."""
    if frame.empty:
        return ""
    said = lambda r: f"{estimate_words(Estimate.of(r, 'loss_vs_lsh'))}"  # noqa: E731
    parts = []
    by_e0 = frame[frame["kind"].isin(["as run", "e0"])].copy()
    by_e0["e0"] = by_e0["setting"].str.extract(r"e0 = (\d+)", expand=False).astype(int)
    parts.append("Sensitivity (`sensitivity.md`): the loss-ranked search minus LSH at "
                 + "; ".join(f"e0 = {int(r['e0'])} {said(r)} "
                             f"(lower on {int(r['loss_lower_seeds'])} of {int(r['seeds'])} seeds)"
                             for _, r in by_e0.sort_values("e0").iterrows()) + ".")
    base = frame[frame["kind"] == "as run"].iloc[0]
    out = frame[frame["kind"] == "leave_out"]
    if len(out):
        moved = (out["loss_vs_lsh"] - base["loss_vs_lsh"]).abs()
        top = out.loc[moved.idxmax()]
        cid = top["setting"].removeprefix("without ")
        parts.append(
            f"Leaving one configuration out moves the difference between {out['loss_vs_lsh'].min():.2f} and "
            f"{out['loss_vs_lsh'].max():.2f} (as run: {base['loss_vs_lsh']:.2f}); most of all {cid} ({said(top)} "
            f"without it). Over the training seeds {cid} ranks {_span(_ranks(points, 'final_test_ppl', e0, cid))} by "
            f"final test perplexity; at e0 = {e0} the LS distance ranks it "
            f"{_span(_ranks(points, default_ls, e0, cid))} "
            f"and the loss gap {_span(_ranks(points, 'loss_gap', e0, cid))}"
            + (f", at epoch {e0 + 2} the LS distance {_span(_ranks(points, default_ls, e0 + 2, cid))}"
               if (points["epoch"] == e0 + 2).any() else "") + ".")
    post = frame[(frame["kind"] == "ranker") & frame["post_hoc"]]
    for _, r in post.iterrows():
        parts.append(f"With the {r['setting'].removeprefix('LS ')} LS ranker, chosen after looking at this study's "
                     f"data (so it tests nothing): {said(r)}, lower on {int(r['loss_lower_seeds'])} of "
                     f"{int(r['seeds'])} seeds.")
    return " ".join(parts)


def released_words(ls: pd.Series, ppl: pd.Series) -> str:
    """The two signals' coefficients with the 100-epoch outcome, and the halves they keep."""
    said = lambda r, k: estimate_words(Estimate.of(r, k))  # noqa: E731
    better = lambda k: "the LS distance" if ls[k] > ppl[k] else "the validation perplexity"  # noqa: E731
    agree = better("spearman") == better("pearson")
    keeps = (ls["keeps_best"], ppl["keeps_best"])
    best = {(True, True): "both keep the best candidate", (False, False): "neither keeps the best candidate",
            (True, False): "only the LS distance's keeps the best candidate",
            (False, True): "only the validation perplexity's keeps the best candidate"}[keeps]
    return (f"By Spearman {better('spearman')} ranks the outcome better (the LS distance {said(ls, 'spearman')}, the "
            f"validation perplexity {said(ppl, 'spearman')}); "
            f"by Pearson {'so does it' if agree else 'the order reverses'} "
            f"({said(ls, 'pearson')} against {said(ppl, 'pearson')}). The half each keeps, as a round of the pipeline "
            f"ranks it: the LS distance's has a mean outcome of {ls['kept_mean_final']:.2f}, the validation "
            f"perplexity's {ppl['kept_mean_final']:.2f} (all {int(ls['n'])}: {ls['all_mean_final']:.2f}); {best}; "
            f"top-quarter recall {fmt(ls['top_quarter_recall'], 2)} against {fmt(ppl['top_quarter_recall'], 2)}.")


def released_markdown(point: pd.DataFrame, beside: pd.DataFrame, source: str, horizon: bool = False) -> str:
    """docs/results/released/summary.md: the paper-scale point in words, its table, and the study beside it."""
    ls, ppl = (point.set_index("signal").loc[s] for s in ("ls_distance_e3", "valid_ppl_e3"))
    md = point.drop(columns=["words"]).copy()
    for key in ("spearman", "pearson"):
        md[key] = interval_column(md, key)
    md = md[["signal", "n", "spearman", "pearson", "top_quarter_recall", "kept_mean_final", "keeps_best", "kept"]]
    side = beside.copy()
    for key in ("spearman", "pearson"):
        side[key] = interval_column(side, key)
    side = side[["setting", "signal", "n", "spearman", "pearson"]]
    return "\n".join([
        "# The paper-scale point: the data released with the reference code", "",
        f"Source: {source}. The first round of the paper's LSTM search on PTB (2 x 1500 units): {int(ls['n'])} "
        "distinct configurations TPE evaluated, each trained 3 epochs, then each trained to 100 epochs. The "
        "candidates' spectra were not released, so the LS distance is the reference code's own value at epoch 3 "
        "(what its TPE minimised); the outcome is the test perplexity after 100 epochs. One training seed and one "
        "round: the intervals resample the candidates, and nothing here speaks of training noise.", "",
        released_words(ls, ppl), "",
        markdown_table(md, digits={"top_quarter_recall": 2, "kept_mean_final": 2}), "",
        "## Beside the study", "",
        "The same two signals against the final outcome in the study (`docs/results/study/`, pooled over its 3 "
        "training seeds: n = 24 configurations x 3 seeds; ranked at a third of the training)"
        + ("; and in the horizon study (`docs/results/study-horizon/`): its pre-registered configurations with the "
           "same seeds, against the outcome at epoch 6 (ranked at a third) and at epoch 12 (ranked at a sixth). "
           if horizon else "; the horizon study (`docs/results/study-horizon/`, ranked at a sixth) joins this table "
           "when its cells are complete. ")
        + "`settings.png` draws it.", "",
        markdown_table(side), "",
    ])
