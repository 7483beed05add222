"""The study: every selection strategy replayed on the benchmark table, and what the evidence says.

`replay_all` runs the strategy set (LSH and its loss-based counterpart with every proposer, the
LS ranker's options, Optuna's TPE with Hyperband and with successive halving, random search and
the full-training search, at each pool size of `study.pools`) `study.repeats` times each and
writes replays.csv and anytime.csv. `write_study` turns the table and the replays into
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
from lsh.config import Params
from lsh.errors import LshError
from lsh.search.schedule import plan
from lsh.report.tables import markdown_table
from lsh.study.replay import Outcome, Strategy, lsh_budget, replay
from lsh.study.signals import LS_OPTIONS, ls_signal_name, signal_points, signal_table
from lsh.study.statistics import summarise_methods
from lsh.study.table import Table

log = logging.getLogger("lsh.stages")

PROPOSERS = ("grid", "tpe", "atpe", "rand")
SCHEDULES = [(e0, ei) for e0 in (1, 2, 3) for ei in (1, 2, 3, 4)]


def study_strategies(params: Params, table: Table) -> list[tuple[str, Strategy, int]]:
    """(group, strategy, pool size n): the methods at every n of study.pools; the LS ranker's options
    (with the grid proposer, which leaves the ranker alone to make the difference) and the schedules
    at search.n."""
    base, out = params.search, []
    layout = params.lyapunov.layout
    for n in params.study.pools:
        search = dataclasses.replace(base, n=n, mode="lsh")
        try:
            last = plan(search).last_epoch
        except LshError as e:
            raise LshError(f"study.pools: n = {n} is not a schedule the search can run ({e})") from None
        if last > table.final_epochs:
            raise LshError(f"study.pools: n = {n} takes the search to epoch {last}, past the table's final.epochs "
                           f"({table.final_epochs}); choose pool sizes whose rounds end by then (`lsh plan --set search.n=N`)")
        budget = lsh_budget(search, table.final_epochs)
        for ranker, label in (("ls", "LSH"), ("loss", "loss")):
            for proposer in PROPOSERS:
                out.append(("methods", Strategy(f"{label}-{proposer}", "lsh", dataclasses.replace(search, ranker=ranker, proposer=proposer),
                                     layout=layout), n))
        out.append(("methods", Strategy("optuna-TPE-hyperband", "optuna", search, pruner="hyperband", budget=budget), n))
        out.append(("methods", Strategy("optuna-TPE-halving", "optuna", search, pruner="successive_halving", budget=budget), n))
        out.append(("methods", Strategy("random", "random", search, budget=budget), n))
        out.append(("methods", Strategy("full-training", "full", dataclasses.replace(search, mode="full", ranker="loss",
                                                                          proposer="rand")), n))
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


def _replay_one(job: tuple) -> list[Outcome]:
    table_dir, strategy, space, repeats, seed, threads = job
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):  # t-SNE's OpenMP threads in every worker would oversubscribe the cores
        return replay(Table.load(table_dir), strategy, space, repeats, seed)


def replay_all(params: Params, table_dir: Path, replays_out: Path, anytime_out: Path,
               workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay every strategy `study.repeats` times on the table; write the outcomes and the anytime curves."""
    table = Table.load(table_dir)
    pairs = study_strategies(params, table)
    threads = 1 if workers > 1 else None  # None: the libraries' own default
    jobs = [(table_dir, strategy, params.space, params.study.repeats, params.seed, threads) for _, strategy, _ in pairs]
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
                         "candidate_epochs": o.candidate_epochs, "selects_best": o.config == best_config})
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
    table = Table.load(table_dir)
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
    return f"{_fmt(row[key], digits)} [{_fmt(row[f'{key}_low'], digits)}, {_fmt(row[f'{key}_high'], digits)}]"


def write_study(params: Params, table_dir: Path, replays: pd.DataFrame, anytime: pd.DataFrame, samples: pd.DataFrame,
                out: Path) -> dict:
    """Every study output in `out`; returns the headline numbers."""
    from lsh.study.figures import plot_anytime, plot_methods, plot_signals

    table = Table.load(table_dir)
    seed = table.seeds[0]
    epochs = list(range(1, params.search.e0 + params.search.ei + 1))
    default_ls = ls_signal_name(params.search.embedding, params.search.distance, params.lyapunov.layout,
                                params.search.pca_fit)
    points = signal_points(table, epochs, seed)
    signals = signal_table(points, params.seed)
    files.write_text(out / "early_signals_points.csv", points.to_csv(index=False))
    files.write_text(out / "early_signals.csv", signals.to_csv(index=False))
    shown = [default_ls, "loss_gap", "train_loss"]
    labels = {default_ls: f"LS distance ({default_ls[3:]})", "loss_gap": "validation-loss gap to the dense model",
              "train_loss": "training loss"}
    plot_signals(signals, shown, labels, out / "signals.png")
    signal_md = signals.copy()
    for key in ("pearson", "spearman", "kendall"):
        signal_md[key] = signal_md.apply(lambda r, k=key: _interval(r, k), axis=1)
    signal_md = signal_md[["signal", "epoch", "n", "pearson", "spearman", "kendall", "top_quarter_recall"]]
    files.write_text(out / "early_signals.md", "# Early signals against final test perplexity\n\n"
                     "Coefficients with 95 % bootstrap intervals (pairs resampled); top-quarter recall: the share "
                     "of the truly best quarter a signal keeps in its better half.\n\n"
                     + markdown_table(signal_md, digits={"top_quarter_recall": 2}))

    main = replays[replays["group"] == "methods"]
    methods = summarise_methods(main)
    files.write_text(out / "methods.csv", methods.to_csv(index=False))
    methods_md = methods.copy()
    methods_md["test_ppl"] = methods_md.apply(lambda r: _interval(r, "test_ppl"), axis=1)
    methods_md["regret"] = methods_md.apply(lambda r: _interval(r, "regret"), axis=1)
    methods_md = methods_md[["strategy", "n", "repeats", "test_ppl", "regret", "candidate_epochs", "selects_best",
                             "nothing_selected"]]
    files.write_text(out / "methods.md", "# Methods at equal budget\n\nFinal test perplexity of the selection and its "
                     "regret against the table's best, mean and 95 % interval over repeats; candidate-epochs spent; "
                     "the share of repeats selecting the table's best.\n\n"
                     + markdown_table(methods_md, digits={"candidate_epochs": 1, "selects_best": 2}))
    plot_methods(methods, out / "methods.png")

    variants = summarise_methods(replays[replays["group"] == "ls_options"])
    files.write_text(out / "ls_options.csv", variants.to_csv(index=False))
    options_md = variants.copy()
    options_md["test_ppl"] = options_md.apply(lambda r: _interval(r, "test_ppl"), axis=1)
    options_md["regret"] = options_md.apply(lambda r: _interval(r, "regret"), axis=1)
    files.write_text(out / "ls_options.md", "# The LS ranker's options\n\nLSH with the grid proposer (the ranker alone "
                     "makes the difference) under each embedding, distance, spectrum layout and PCA fit, at n = "
                     f"{params.search.n}: final test perplexity and regret, mean and 95 % interval over repeats.\n\n"
                     + markdown_table(options_md[["strategy", "repeats", "test_ppl", "regret", "selects_best"]],
                                      digits={"selects_best": 2}))
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
    files.write_text(out / "ls_samples.csv", samples.to_csv(index=False))
    files.write_text(out / "ls_samples.md", "# The spectrum from K validation samples (paper Table 4)\n\n"
                     + markdown_table(samples, digits={c: 4 for c in samples.columns if c not in ("configuration", "samples")}))

    best = table.best(seed)[1]
    n0 = headline_pool(params)
    curves = [f"LSH-{params.search.proposer}", f"loss-{params.search.proposer}", "optuna-TPE-hyperband",
              "optuna-TPE-halving", "random", "full-training"]
    plot_anytime(anytime[(anytime["n"] == n0) & anytime["strategy"].isin(curves)], curves, out / "anytime.png", best)
    headline = _verdict(params, signals, methods, default_ls, epochs, best)
    notes = [alternatives_words(methods, n0, params.search.proposer), ties_words(points)]
    files.write_text(out / "summary.md", _summary(params, table, headline, int(replays["repeat"].max()) + 1,
                                                  [n for n in notes if n]))
    return headline


def _verdict(params: Params, signals: pd.DataFrame, methods: pd.DataFrame, default_ls: str, epochs: list[int],
             best: float) -> dict:
    at = signals.set_index(["signal", "epoch"])
    E = params.search.e0
    ls, loss = at.loc[(default_ls, E)], at.loc[("loss_gap", E)]
    m = methods.set_index(["strategy", "n"])
    n0, proposer = headline_pool(params), params.search.proposer
    lsh, base = m.loc[(f"LSH-{proposer}", n0)], m.loc[(f"loss-{proposer}", n0)]
    return {
        "epoch": E, "ls_spearman": ls["spearman"], "ls_spearman_ci": (ls["spearman_low"], ls["spearman_high"]),
        "loss_spearman": loss["spearman"], "loss_spearman_ci": (loss["spearman_low"], loss["spearman_high"]),
        "ls_pearson": ls["pearson"], "loss_pearson": loss["pearson"],
        "ls_recall": ls["top_quarter_recall"], "loss_recall": loss["top_quarter_recall"],
        "lsh_test_ppl": lsh["test_ppl"], "lsh_ci": (lsh["test_ppl_low"], lsh["test_ppl_high"]),
        "loss_test_ppl": base["test_ppl"], "loss_ci": (base["test_ppl_low"], base["test_ppl_high"]),
        "lsh_regret": lsh["regret"], "loss_regret": base["regret"], "best": best, "n": n0, "proposer": proposer,
    }


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """Whether two intervals overlap; None when either is unknown."""
    if not all(math.isfinite(v) for v in (*a, *b)):
        return None
    return not (a[0] > b[1] or b[0] > a[1])


ALTERNATIVES = {"random": "random search", "optuna-TPE-hyperband": "Optuna's TPE with Hyperband",
                "optuna-TPE-halving": "Optuna's TPE with successive halving",
                "full-training": "training all n candidates to the end"}


def alternatives_words(methods: pd.DataFrame, n: int, proposer: str) -> str:
    """LSH against what a practitioner would run instead, at the same n: each one's numbers, then which
    are worse, better or not distinguishable from LSH by their 95 % intervals."""
    m = methods.set_index(["strategy", "n"])
    if (f"LSH-{proposer}", n) not in m.index:
        return ""
    lsh = m.loc[(f"LSH-{proposer}", n)]
    parts, verdicts = [], {"worse": [], "better": [], "same": []}
    for strategy, words in ALTERNATIVES.items():
        if (strategy, n) not in m.index:
            continue
        row = m.loc[(strategy, n)]
        parts.append(f"{words} {row['test_ppl']:.2f} [{row['test_ppl_low']:.2f}, {row['test_ppl_high']:.2f}] "
                     f"({row['candidate_epochs']:.1f} candidate-epochs)")
        overlap = _overlap((lsh["test_ppl_low"], lsh["test_ppl_high"]), (row["test_ppl_low"], row["test_ppl_high"]))
        verdicts["same" if overlap in (True, None) else "worse" if row["test_ppl"] > lsh["test_ppl"] else "better"] \
            .append(words)
    if not parts:
        return ""
    said = [f"{kind} {', '.join(names)}" for kind, names in (
        ("worse than LSH by more than the intervals:", verdicts["worse"]),
        ("better than LSH by more than the intervals:", verdicts["better"]),
        ("not distinguishable from LSH (overlapping intervals):", verdicts["same"])) if names]
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


def _summary(params: Params, table: Table, h: dict, repeats: int, notes: list[str]) -> str:
    better_signal = h["ls_spearman"] > h["loss_spearman"]
    overlap = _overlap(h["ls_spearman_ci"], h["loss_spearman_ci"])
    lsh_better = h["lsh_test_ppl"] < h["loss_test_ppl"]
    methods_overlap = _overlap(h["lsh_ci"], h["loss_ci"])
    signal_words = (
        f"At epoch {h['epoch']} (e0) the LS distance ranks the configurations by their final test perplexity with "
        f"Spearman {h['ls_spearman']:.2f} [{h['ls_spearman_ci'][0]:.2f}, {h['ls_spearman_ci'][1]:.2f}], the "
        f"validation-loss gap with {h['loss_spearman']:.2f} [{h['loss_spearman_ci'][0]:.2f}, "
        f"{h['loss_spearman_ci'][1]:.2f}] (Pearson {h['ls_pearson']:.2f} against {h['loss_pearson']:.2f}; top-quarter "
        f"recall {h['ls_recall']:.2f} against {h['loss_recall']:.2f}). "
        + ("The LS distance is the better early signal here" if better_signal else "The loss gap is the better early signal here")
        + {True: ", but the intervals overlap: at this scale the difference is not established.",
           False: ", and the intervals do not overlap.",
           None: ", but an interval could not be computed (too few finite points): nothing is established."}[overlap]
    )
    method_words = (
        f"At equal budget (n = {h['n']}, proposer {h['proposer']}), LSH selects a configuration of final test "
        f"perplexity {h['lsh_test_ppl']:.2f} [{h['lsh_ci'][0]:.2f}, {h['lsh_ci'][1]:.2f}] on average (regret "
        f"{h['lsh_regret']:.2f}), the loss-based search {h['loss_test_ppl']:.2f} [{h['loss_ci'][0]:.2f}, "
        f"{h['loss_ci'][1]:.2f}] (regret {h['loss_regret']:.2f}); the table's best is {h['best']:.2f}. "
        + ("LSH does better" if lsh_better else "LSH does not do better")
        + {True: ", within overlapping intervals: the difference is not established.",
           False: ", by more than the intervals.", None: " (an interval could not be computed)."}[methods_overlap]
    )
    meta = table.meta
    lines = [
        "# Study: does ranking by the Lyapunov spectrum pick better pruned models than ranking by the loss?", "",
        f"Table: {len(table.configs)} configurations ({meta['space']} space), {len(table.seeds)} training seed(s), "
        f"epochs 0..{table.final_epochs}, model {params.model.type.upper()} {params.model.layers} x {params.model.hidden}, "
        f"{params.data.train_tokens or 'all'} training tokens; every strategy replayed {repeats} times.", "",
        "## Verdict", "", signal_words, "", method_words, "", *[line for note in notes for line in (note, "")],
        "## Files", "",
        "- `early_signals.md` / `.csv`: every signal (the LS distance under each ranker option, the validation-loss gap, "
        "the training loss, the validation perplexity) at each early epoch, Pearson, Spearman and Kendall with 95 % "
        "bootstrap intervals and top-quarter recall; `signals.png`",
        "- `methods.md` / `.csv`: every strategy at each pool size, mean final test perplexity and regret with 95 % "
        "intervals, candidate-epochs; `methods.png`; `anytime.png` (the incumbent against candidate-epochs)",
        "- `ls_options.md` / `.csv`: the LS ranker's options (embedding, distance, layout, PCA fit) with the grid proposer",
        "- `schedules.md` / `.csv`: e0 in 1..3 and ei in 1..4 on the grid (paper Table 3)",
        "- `ls_samples.md` / `.csv`: the spectrum from K validation samples (paper Table 4)",
        "- `../replays.csv`, `../anytime.csv`: every replay's outcome, and the methods' incumbent after each "
        "candidate-epoch", "",
    ]
    return "\n".join(lines)
