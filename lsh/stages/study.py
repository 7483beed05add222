"""The study: every selection strategy replayed on the benchmark table, and what the evidence says.

`replay_all` runs the strategy set (LSH and its loss-based counterpart with every proposer, the
LS ranker's options, Optuna's TPE with Hyperband, with successive halving and with the LS pruner,
random search and the full-training search, at each pool size of `study.pools`) `study.repeats`
times each and writes replays.csv and anytime.csv. `write_study` turns the table and the replays into
<results>/study/: summary.md (the verdict in plain words), early_signals, methods, schedules and
ls_samples as Markdown and CSV, and the figures signals.png, methods.png, anytime.png.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import files
from lsh.layout import checkpoint as checkpoint_of
from lsh.config import Params, SearchConfig
from lsh.errors import LshError
from lsh.search.proposers import TPE_STARTUP
from lsh.search.schedule import plan
from lsh.report.tables import markdown_table
from lsh.study.replay import Outcome, Strategy, lsh_budget, replay
from lsh.study.signals import LABELS_ONLY, LS_OPTIONS, POOLED, ls_signal_name, signal_points, signal_table
from lsh.study.statistics import COEFFICIENTS, summarise_methods
from lsh.study.table import Table

log = logging.getLogger("lsh.stages")

PROPOSERS = ("grid", "tpe", "atpe", "rand")
SCHEDULES = [(e0, ei) for e0 in (1, 2, 3) for ei in (1, 2, 3, 4)]


# The columns the study's report reads from the replays' files (lsh.files.read_frame checks them)
REPLAY_COLUMNS = ("group", "strategy", "kind", "n", "e0", "ei", "repeat", "seed", "config", "test_ppl", "valid_ppl",
                  "regret", "candidate_epochs", "selects_best", "dense_epochs", "candidate_epochs_with_dense",
                  "finalist_epoch", "newcomers_kept")
ANYTIME_COLUMNS = ("strategy", "n", "repeat", "candidate_epoch", "incumbent_test_ppl")
SAMPLES_COLUMNS = ("configuration", "samples", "max", "mean", "variance")


def study_strategies(params: Params, table: Table) -> list[tuple[str, Strategy, int]]:
    """(group, strategy, pool size n): the methods at every n of study.pools; the LS ranker's options
    (with the grid proposer, which leaves the ranker alone to make the difference) and the schedules
    at search.n."""
    base, out = params.search, []
    layout = params.lyapunov.layout
    for n in params.study.pools:
        search = dataclasses.replace(base, n=n, mode="lsh", age="own")
        try:
            last = plan(search).last_epoch
        except LshError as e:
            raise LshError(f"study.pools: n = {n} is not a schedule the search can run ({e})") from None
        if last > table.final_epochs:
            raise LshError(f"study.pools: n = {n} takes the search to epoch {last}, past the table's final.epochs "
                           f"({table.final_epochs}); choose pool sizes whose rounds end by then (`lsh plan --set search.n=N`)")
        out += [("methods", s, n) for s in method_strategies(search, layout, lsh_budget(search, table.final_epochs))]
    search = dataclasses.replace(base, mode="lsh", ranker="ls", proposer="grid")
    for embedding, distance, lay, fit in LS_OPTIONS:
        variant = dataclasses.replace(search, embedding=embedding, distance=distance, pca_fit=fit)
        out.append(("ls_options", Strategy(f"LSH-grid {embedding}-{distance}-{lay}-{fit}", "lsh", variant, layout=lay), base.n))
    for e0, ei in SCHEDULES:
        for ranker, label in (("ls", "LSH"), ("loss", "loss")):
            schedule = dataclasses.replace(base, mode="lsh", ranker=ranker, proposer="grid", e0=e0, ei=ei)
            if plan(schedule).last_epoch > table.final_epochs:  # its rounds would outrun final.epochs
                continue
            out.append(("schedules", Strategy(f"{label}-grid e0={e0} ei={ei}", "lsh", schedule, layout=layout), base.n))
    return out


RANKER_LABELS = {"ls": "LSH", "loss": "loss", "loss_gap": "loss-gap", "tse": "TSE"}


def method_strategies(search: SearchConfig, layout: str, budget: int) -> list[Strategy]:
    """The methods compared at one pool size: every ranker with every proposer (each candidate at its own
    epoch, the paper), every ranker at the pool's common epoch with the run's proposer, i-Epoch, Optuna's
    TPE with Hyperband and successive halving (its default start-up and hyperopt's), Optuna's TPE with
    the LyapunovPruner at the LSH schedule's rungs (hyperopt's start-up), random search at the LSH
    budget, and the full-training search."""
    out = []
    for ranker, label in RANKER_LABELS.items():
        out += [Strategy(f"{label}-{p}", "lsh", dataclasses.replace(search, ranker=ranker, proposer=p), layout=layout)
                for p in PROPOSERS]
        out.append(Strategy(f"{label}-{search.proposer} common-age", "lsh",
                            dataclasses.replace(search, ranker=ranker, age="common"), layout=layout))
    out.append(Strategy("i-Epoch", "iepoch", dataclasses.replace(search, proposer="rand")))
    for pruner, label in (("hyperband", "hyperband"), ("successive_halving", "halving")):
        out.append(Strategy(f"optuna-TPE-{label}", "optuna", search, pruner=pruner, budget=budget))
        out.append(Strategy(f"optuna-TPE-{label} matched", "optuna", search, pruner=pruner, budget=budget,
                            startup=TPE_STARTUP))
    out.append(Strategy("optuna-TPE-lyapunov", "optuna_ls", search, layout=layout, budget=budget, startup=TPE_STARTUP))
    out.append(Strategy("random", "random", search, budget=budget))
    out.append(Strategy("full-training", "full", dataclasses.replace(search, mode="full", ranker="loss", proposer="rand")))
    return out


def load_table(params: Params, table_dir: Path) -> Table:
    """The table (read and validated by Table.load), refused when no verdict can come from it with these
    params: other training seeds than study.seeds, fewer than 2 configurations, nothing finite to rank."""
    table = Table.load(table_dir)
    table.check_study(params.study.seeds)
    return table


def _replay_one(job: tuple) -> list[Outcome]:
    table, strategy, space, repeats, seed, threads = job
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):  # t-SNE's OpenMP threads in every worker would oversubscribe the cores
        return replay(table if isinstance(table, Table) else Table.load(table), strategy, space, repeats, seed)


def replay_all(params: Params, table_dir: Path, replays_out: Path, anytime_out: Path,
               workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay every strategy `study.repeats` times on the table; write the outcomes and the anytime curves."""
    table = load_table(params, table_dir)
    pairs = study_strategies(params, table)
    threads = 1 if workers > 1 else None  # None: the libraries' own default
    source = table_dir if workers > 1 else table  # a worker process reads the table itself
    jobs = [(source, strategy, params.space, params.study.repeats, params.seed, threads) for _, strategy, _ in pairs]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_replay_one, jobs))
    else:
        results = [_replay_one(job) for job in jobs]
    rows, curves = [], []
    for (group, strategy, n), outcomes in zip(pairs, results):
        for o in outcomes:
            best_config, seed_best = table.best(o.seed)
            if group == "methods":  # the anytime curves: of the methods only (the options' would be 10 times more rows)
                curves += [{"strategy": strategy.name, "n": n, "repeat": o.repeat, "candidate_epoch": i + 1,
                            "incumbent_test_ppl": v} for i, v in enumerate(o.incumbent)]
            rows.append({"group": group, "strategy": strategy.name, "kind": strategy.kind, "n": n, "e0": strategy.search.e0,
                         "ei": strategy.search.ei, "repeat": o.repeat, "seed": o.seed, "config": o.config,
                         "test_ppl": o.test_ppl, "valid_ppl": o.valid_ppl, "regret": o.test_ppl - seed_best,
                         "candidate_epochs": o.candidate_epochs, "selects_best": o.config == best_config,
                         "dense_epochs": o.dense_epochs, "candidate_epochs_with_dense": o.candidate_epochs + o.dense_epochs,
                         "finalist_epoch": o.finalist_epoch, "newcomers_kept": o.newcomers_kept})
        log.info("%s (n = %d): %d repeats, mean test ppl %.2f", strategy.name, n, len(outcomes),
                 float(np.mean([o.test_ppl for o in outcomes])))
    replays, anytime = pd.DataFrame(rows), pd.DataFrame(curves)
    files.write_text(Path(replays_out), replays.to_csv(index=False))
    files.write_text(Path(anytime_out), anytime.to_csv(index=False))
    log.info("the table's best configuration: %s, test perplexity %.2f", *table.best(table.seeds[0]))
    return replays, anytime


def ls_samples(params: Params, table_dir: Path, data_dir: Path) -> pd.DataFrame:
    """Table 4: the spectrum's maximum, mean and variance from K = each of study.ls_samples validation
    sequences, for the table's best and worst configuration (their last checkpoints, which the cells
    keep beside the table), and the differences from the first K."""
    from lsh.stages.spectra import checkpoint_spectrum

    samples = list(params.study.ls_samples)
    table = load_table(params, table_dir)
    seed = table.seeds[0]
    finals = sorted((table.final(cid, seed)["test_ppl"], cid) for cid, _ in table.configs
                    if math.isfinite(table.final(cid, seed)["test_ppl"]))
    picks = [("best", finals[0][1]), ("worst", finals[-1][1])]
    rows = []
    for label, cid in picks:
        checkpoint = checkpoint_of(Path(table_dir) / cid / "s0", table.final_epochs)
        stats = {}
        for k in samples:
            record = checkpoint_spectrum(checkpoint, data_dir, dataclasses.replace(params.lyapunov, samples=k), seed)
            values = np.array(record["exponents"], dtype=float)
            stats[k] = {"max": float(values.max()), "mean": float(values.mean()), "variance": float(values.var())}
        for k in samples:
            row = {"configuration": f"{label}: {cid}", "samples": k, **stats[k]}
            row.update({f"{key}_difference": stats[k][key] - stats[samples[0]][key] for key in ("max", "mean", "variance")})
            rows.append(row)
    return pd.DataFrame(rows)


def headline_pool(params: Params) -> int:
    """The pool size of the verdict: search.n when the study compares it, else the first of study.pools."""
    return params.search.n if params.search.n in params.study.pools else params.study.pools[0]


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _interval(row: pd.Series, key: str, digits: int = 2) -> str:
    """`value [low, high]`; the value alone where there is no interval, '-' where there is no value."""
    return _ci_words(row[key], (row[f"{key}_low"], row[f"{key}_high"]), digits)


def _ci_words(value: float, ci: tuple[float, float], digits: int = 2) -> str:
    if not math.isfinite(value):
        return "-"
    if not all(math.isfinite(v) for v in ci):
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def write_study(params: Params, table_dir: Path, replays: pd.DataFrame, anytime: pd.DataFrame, samples: pd.DataFrame,
                out: Path) -> dict:
    """Every study output in `out`; returns the headline numbers."""
    from lsh.study.figures import plot_anytime

    table = load_table(params, table_dir)
    epochs = list(range(1, params.search.e0 + params.search.ei + 1))
    default_ls = ls_signal_name(params.search.embedding, params.search.distance, params.lyapunov.layout,
                                params.search.pca_fit)
    points, signals = _write_signals(params, table, epochs, default_ls, out)
    methods = _write_methods(params, replays, len(table.seeds), out)
    _write_options(params, replays, len(table.seeds), out)
    _write_schedules(replays, out)
    files.write_text(out / "ls_samples.csv", samples.to_csv(index=False))
    files.write_text(out / "ls_samples.md", "# The spectrum from K validation samples (paper Table 4)\n\n"
                     + markdown_table(samples, digits={c: 4 for c in samples.columns if c not in ("configuration", "samples")}))

    best = float(np.mean([table.best(s)[1] for s in table.seeds]))  # as the methods' means: over training seeds
    n0 = headline_pool(params)
    curves = [f"LSH-{params.search.proposer}", f"loss-{params.search.proposer}", "optuna-TPE-hyperband",
              "optuna-TPE-halving", "optuna-TPE-lyapunov", "random", "full-training"]
    plot_anytime(anytime[(anytime["n"] == n0) & anytime["strategy"].isin(curves)], curves, out / "anytime.png", best)
    headline = _verdict(params, signals, methods, default_ls, epochs, best)
    notes = [alternatives_words(methods, n0, params.search.proposer),
             ties_words(points[points["seed"] == table.seeds[0]])]
    files.write_text(out / "summary.md", _summary(params, table, headline, int(replays["repeat"].max()) + 1,
                                                  [n for n in notes if n]))
    return headline


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


def _write_signals(params: Params, table: Table, epochs: list[int], default_ls: str,
                   out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """early_signals_points.csv, early_signals.csv / .md and signals.png; returns the points and the signals."""
    from lsh.study.figures import plot_signals

    points = signal_points(table, epochs)
    signals = signal_table(points, params.seed)
    files.write_text(out / "early_signals_points.csv", points.to_csv(index=False))
    files.write_text(out / "early_signals.csv", signals.to_csv(index=False))
    shown = [default_ls, "loss_gap", "train_loss", LABELS_ONLY]
    labels = {default_ls: f"LS distance ({default_ls[3:]})", "loss_gap": "validation-loss gap to the dense model",
              "train_loss": "training loss", LABELS_ONLY: "configuration labels only (leave-one-out, reference)"}
    plot_signals(signals, shown, labels, out / "signals.png")
    signal_md = signals.copy()
    interval_columns = (*COEFFICIENTS, "within_death", "partial_spearman")
    for key in interval_columns:
        signal_md[key] = signal_md.apply(lambda r, k=key: _interval(r, k), axis=1)
    signal_md = signal_md[["signal", "epoch", "seeds", "n", *COEFFICIENTS, "top_quarter_recall", "within_death",
                           "partial_spearman"]]
    files.write_text(out / "early_signals.md",
                     SIGNALS_TEXT + markdown_table(signal_md, digits={"top_quarter_recall": 2}))
    return points, signals


def _seed_interval_words(seeds: int) -> str:
    """How the methods' intervals were made, or why there are none."""
    if seeds >= 2:
        return (f"mean over the {seeds} training seeds of each seed's mean over its repeats, with a 95 % interval over "
                "training seeds (a bootstrap drawing training seeds, then each drawn seed's proposer repeats)")
    return ("mean over the repeats on the table's one training seed; with one training seed no interval over "
            "training seeds exists, so none is given: repeats of the proposer on one trained table say nothing "
            "of training noise")


def _method_table(methods: pd.DataFrame, columns: list[str]) -> str:
    md = methods.copy()
    for key in ("test_ppl", "regret"):
        md[key] = md.apply(lambda r, k=key: _interval(r, k), axis=1)
    columns = [c for c in columns if c in md.columns]
    return markdown_table(md[columns], digits={"candidate_epochs": 1, "candidate_epochs_with_dense": 1,
                                               "finalist_epoch": 1, "newcomers_kept": 2, "selects_best": 2})


def _write_methods(params: Params, replays: pd.DataFrame, seeds: int, out: Path) -> pd.DataFrame:
    """methods.csv / .md and methods.png: the strategies over training seeds and repeats."""
    from lsh.study.figures import plot_methods

    methods = summarise_methods(replays[replays["group"] == "methods"], params.seed)
    files.write_text(out / "methods.csv", methods.to_csv(index=False))
    files.write_text(out / "methods.md", "# Methods\n\nBudgets are in candidate-epochs (one candidate trained for one "
                     "epoch) and listed per strategy: the strategies do not all spend the same. Final test perplexity "
                     "of the selection and its regret against the table's best: "
                     f"{_seed_interval_words(seeds)}. `seeds`: the training seeds a row rests on; "
                     "`candidate_epochs_with_dense`: with the dense reference's epochs the strategy needs (a user "
                     "without a dense model pays them); `finalist_epoch`: the finalists' mean epoch when selection "
                     "ends (their age); `newcomers_kept`: the share of candidates inserted after the first round that "
                     "survive their round; the share of repeats selecting the table's best; the repeats that selected "
                     "nothing.\n\n"
                     + _method_table(methods, ["strategy", "n", "seeds", "repeats", "test_ppl", "regret",
                                               "candidate_epochs", "candidate_epochs_with_dense", "finalist_epoch",
                                               "newcomers_kept", "selects_best", "nothing_selected"]))
    plot_methods(methods, out / "methods.png")
    return methods


def _write_options(params: Params, replays: pd.DataFrame, seeds: int, out: Path) -> None:
    """ls_options.csv / .md: LSH with the grid proposer under each of the LS ranker's options."""
    variants = summarise_methods(replays[replays["group"] == "ls_options"], params.seed)
    files.write_text(out / "ls_options.csv", variants.to_csv(index=False))
    files.write_text(out / "ls_options.md", "# The LS ranker's options\n\nLSH with the grid proposer (the ranker alone "
                     "makes the difference) under each embedding, distance, spectrum layout and PCA fit, at n = "
                     f"{params.search.n}: final test perplexity and regret, {_seed_interval_words(seeds)}.\n\n"
                     + _method_table(variants, ["strategy", "seeds", "repeats", "test_ppl", "regret", "selects_best"]))


def _write_schedules(replays: pd.DataFrame, out: Path) -> None:
    """schedules.csv / .md (paper Table 3)."""
    schedule_rows = []
    for (strategy, e0, ei), group in replays[replays["group"] == "schedules"].groupby(
            ["strategy", "e0", "ei"], sort=False):
        schedule_rows.append({"ranker": strategy.split("-")[0], "e0": e0, "ei": ei,
                              "candidate_epochs": float(group["candidate_epochs"].mean()),
                              "selects_best": float(group["selects_best"].mean()),
                              "test_ppl": float(group["test_ppl"].mean())})
    schedules = pd.DataFrame(schedule_rows)
    files.write_text(out / "schedules.csv", schedules.to_csv(index=False))
    files.write_text(out / "schedules.md", "# Schedules on the grid (paper Table 3)\n\nCandidate-epochs (selection "
                     "and final training) and the share of repeats that select the table's best configuration, for "
                     "the LS and the loss ranker with the grid proposer.\n\n"
                     + markdown_table(schedules, digits={"candidate_epochs": 1, "selects_best": 2, "test_ppl": 2}))


def _verdict(params: Params, signals: pd.DataFrame, methods: pd.DataFrame, default_ls: str, epochs: list[int],
             best: float) -> dict:
    """The headline numbers: the signals pooled over training seeds at e0, the methods at the headline pool."""
    at = signals[signals["seeds"] == POOLED].set_index(["signal", "epoch"])
    E = params.search.e0
    ls, loss, labels = at.loc[(default_ls, E)], at.loc[("loss_gap", E)], at.loc[(LABELS_ONLY, E)]
    m = methods.set_index(["strategy", "n"])
    n0, proposer = headline_pool(params), params.search.proposer
    lsh, base = m.loc[(f"LSH-{proposer}", n0)], m.loc[(f"loss-{proposer}", n0)]
    ci = lambda row, key: (row[f"{key}_low"], row[f"{key}_high"])  # noqa: E731
    return {
        "epoch": E, "seeds": int(signals.loc[signals["seeds"] != POOLED, "seeds"].nunique()),
        "ls_spearman": ls["spearman"], "ls_spearman_ci": ci(ls, "spearman"),
        "loss_spearman": loss["spearman"], "loss_spearman_ci": ci(loss, "spearman"),
        "ls_pearson": ls["pearson"], "loss_pearson": loss["pearson"],
        "ls_recall": ls["top_quarter_recall"], "loss_recall": loss["top_quarter_recall"],
        "ls_within": ls["within_death"], "ls_within_ci": ci(ls, "within_death"),
        "loss_within": loss["within_death"], "loss_within_ci": ci(loss, "within_death"),
        "ls_partial": ls["partial_spearman"], "ls_partial_ci": ci(ls, "partial_spearman"),
        "loss_partial": loss["partial_spearman"], "loss_partial_ci": ci(loss, "partial_spearman"),
        "labels_spearman": labels["spearman"], "labels_spearman_ci": ci(labels, "spearman"),
        "lsh_test_ppl": lsh["test_ppl"], "lsh_ci": ci(lsh, "test_ppl"),
        "loss_test_ppl": base["test_ppl"], "loss_ci": ci(base, "test_ppl"),
        "lsh_regret": lsh["regret"], "loss_regret": base["regret"],
        "lsh_epochs": lsh["candidate_epochs"], "loss_epochs": base["candidate_epochs"],
        "best": best, "n": n0, "proposer": proposer,
    }


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """Whether two intervals overlap; None when either is unknown."""
    if not all(math.isfinite(v) for v in (*a, *b)):
        return None
    return not (a[0] > b[1] or b[0] > a[1])


ALTERNATIVES = {"random": "random search", "optuna-TPE-hyperband": "Optuna's TPE with Hyperband",
                "optuna-TPE-halving": "Optuna's TPE with successive halving",
                "optuna-TPE-lyapunov": "Optuna's TPE with the Lyapunov pruner (lsh.LyapunovPruner)",
                "full-training": "training all n candidates to the end"}


def alternatives_words(methods: pd.DataFrame, n: int, proposer: str) -> str:
    """LSH against what a practitioner would run instead, at the same n: each one's numbers, then which
    are worse, better or not distinguishable from LSH by their 95 % intervals (none with one training seed)."""
    m = methods.set_index(["strategy", "n"])
    if (f"LSH-{proposer}", n) not in m.index:
        return ""
    lsh = m.loc[(f"LSH-{proposer}", n)]
    parts, verdicts = [], {"worse": [], "better": [], "same": [], "unknown": []}
    for strategy, words in ALTERNATIVES.items():
        if (strategy, n) not in m.index:
            continue
        row = m.loc[(strategy, n)]
        parts.append(f"{words} {_interval(row, 'test_ppl')} ({row['candidate_epochs']:.1f} candidate-epochs)")
        overlap = _overlap((lsh["test_ppl_low"], lsh["test_ppl_high"]), (row["test_ppl_low"], row["test_ppl_high"]))
        worse = "worse" if row["test_ppl"] > lsh["test_ppl"] else "better"
        verdicts[{True: "same", None: "unknown"}.get(overlap, worse)].append(words)
    if not parts:
        return ""
    said = [f"{kind} {', '.join(names)}" for kind, names in (
        ("worse than LSH by more than the intervals:", verdicts["worse"]),
        ("better than LSH by more than the intervals:", verdicts["better"]),
        ("not distinguishable from LSH (overlapping intervals):", verdicts["same"]),
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


def _signal_words(h: dict) -> str:
    """The early signals at e0, pooled over the training seeds, and what is more than the structure."""
    overlap = _overlap(h["ls_spearman_ci"], h["loss_spearman_ci"])
    said = lambda key: _ci_words(h[key], h[f"{key}_ci"]) if math.isfinite(h[key]) else "n/a"  # noqa: E731
    pooled = f"pooled over the {h['seeds']} training seeds, " if h["seeds"] > 1 else ""
    return (
        f"At epoch {h['epoch']} (e0), {pooled}the LS distance ranks the configurations by their final test perplexity "
        f"with Spearman {_ci_words(h['ls_spearman'], h['ls_spearman_ci'])}, the validation-loss gap with "
        f"{_ci_words(h['loss_spearman'], h['loss_spearman_ci'])} (Pearson {_fmt(h['ls_pearson'], 2)} against "
        f"{_fmt(h['loss_pearson'], 2)}; top-quarter recall {_fmt(h['ls_recall'], 2)} against {_fmt(h['loss_recall'], 2)}). "
        + ("The LS distance is the better early signal here" if h["ls_spearman"] > h["loss_spearman"]
           else "The loss gap is the better early signal here")
        + {True: ", but the intervals overlap: at this scale the difference is not established.",
           False: ", and the intervals do not overlap.",
           None: ", but an interval could not be computed (too few finite points): nothing is established."}[overlap]
        + f" Beyond the configuration's structure: within death methods Spearman "
        f"{said('ls_within')} for the LS distance against {said('loss_within')} for the loss gap; controlling for the "
        f"choices {said('ls_partial')} against {said('loss_partial')}; the configuration's labels alone "
        f"(leave-one-out) reach Spearman {said('labels_spearman')}."
    )


def _method_words(h: dict) -> str:
    """LSH against the loss-based search at the headline pool, with their budgets."""
    overlap = _overlap(h["lsh_ci"], h["loss_ci"])
    unknown = (" (one training seed: no interval over training seeds exists, so whether the difference exceeds "
               "training noise is unknown)." if h["seeds"] < 2 else " (an interval could not be computed).")
    return (
        f"With n = {h['n']} and proposer {h['proposer']}, LSH ({h['lsh_epochs']:.1f} candidate-epochs) selects a "
        f"configuration of final test perplexity {_ci_words(h['lsh_test_ppl'], h['lsh_ci'])} on average (regret "
        f"{_fmt(h['lsh_regret'], 2)}), the loss-based search ({h['loss_epochs']:.1f} candidate-epochs) "
        f"{_ci_words(h['loss_test_ppl'], h['loss_ci'])} (regret {_fmt(h['loss_regret'], 2)}); the table's best is "
        f"{h['best']:.2f}" + (" (the mean over training seeds of each seed's best)" if h["seeds"] > 1 else "") + ". "
        + ("LSH does better" if h["lsh_test_ppl"] < h["loss_test_ppl"] else "LSH does not do better")
        + {True: ", within overlapping intervals: the difference is not established.",
           False: ", by more than the intervals.", None: unknown}[overlap]
    )


def _summary(params: Params, table: Table, h: dict, repeats: int, notes: list[str]) -> str:
    meta = table.meta
    lines = [
        "# Study: does ranking by the Lyapunov spectrum pick better pruned models than ranking by the loss?", "",
        f"Table: {len(table.configs)} configurations ({meta['space']} space), {len(table.seeds)} training seed(s), "
        f"epochs 0..{table.final_epochs}, model {params.model.type.upper()} {params.model.layers} x {params.model.hidden}, "
        f"{params.data.train_tokens or 'all'} training tokens; every strategy replayed {repeats} times.", "",
        "## Verdict", "", _signal_words(h), "", _method_words(h), "", *[line for note in notes for line in (note, "")],
        "## Files", "",
        "- `early_signals.md` / `.csv`: every signal (the LS distance under each ranker option, the validation-loss gap, "
        "the training loss, the validation perplexity, and the labels-only reference) at each early epoch, per training "
        "seed and pooled, Pearson, Spearman and Kendall with 95 % bootstrap intervals, top-quarter recall, and Spearman "
        "within death methods and controlling for the choices; `signals.png`",
        "- `methods.md` / `.csv`: every strategy at each pool size, its candidate-epochs, mean final test perplexity "
        "and regret with 95 % intervals over training seeds (none with one seed); `methods.png`; `anytime.png` (the "
        "incumbent against candidate-epochs)",
        "- `ls_options.md` / `.csv`: the LS ranker's options (embedding, distance, layout, PCA fit) with the grid proposer",
        "- `schedules.md` / `.csv`: e0 in 1..3 and ei in 1..4 on the grid (paper Table 3)",
        "- `ls_samples.md` / `.csv`: the spectrum from K validation samples (paper Table 4)",
        "- `../replays.csv`, `../anytime.csv`: every replay's outcome, and the methods' incumbent after each "
        "candidate-epoch", "",
    ]
    return "\n".join(lines)
