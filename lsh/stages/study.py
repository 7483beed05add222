"""The study's jobs: every selection strategy replayed on the benchmark table, and the report of
what the evidence says.

`replay_all` runs the strategy set (lsh/study/strategies.py) `study.repeats` times each and writes
replays.csv, anytime.csv and sensitivity.csv. `write_study` turns the table and the replays into <results>/study/:
summary.md (the verdict in plain words), early_signals, methods, schedules and ls_samples as
Markdown and CSV, and the figures signals.png, methods.png, anytime.png.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import csv_records, files
from lsh.config import Params
from lsh.layout import STUDY_REPORT, SUMMARY_MD
from lsh.records import AnytimePoint, Replay, SamplesRow, Variation
from lsh.report import study as words
from lsh.search.ranking import RANKER_LABELS, method_name
from lsh.study.replay import replay_record, replay_strategies
from lsh.study.sensitivity import sensitivity
from lsh.study.signals import LABELS_ONLY, ls_signal_name, signal_points, signal_table
from lsh.study.statistics import summarise_methods
from lsh.study.strategies import KIND_NAMES, Strategy, optuna_name, study_strategies
from lsh.study.table import Table, load_table
from lsh.study.verdict import build_verdict, headline_pool

log = logging.getLogger("lsh.stages")

# The replays' files: what `lsh replay` writes and the study's report reads, each through its record
INPUTS = {"replays": Replay, "anytime": AnytimePoint, "sensitivity": Variation, "samples": SamplesRow}


def replay_all(params: Params, table_dir: Path, replays_out: Path, anytime_out: Path, sensitivity_out: Path,
               workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay every strategy `study.repeats` times on the table; write the outcomes, the anytime curves and
    the headline comparison's variations (lsh.study.sensitivity)."""
    table = load_table(params, table_dir)
    groups = study_strategies(params, table.final_epochs)
    results = replay_strategies(table, [s for _, s, _ in groups], params.space, params.study.repeats, params.seed,
                                workers)
    rows, curves = [], []
    for (group, strategy, n), outcomes in zip(groups, results):
        for o in outcomes:
            if group == "methods":  # the anytime curves: of the methods only (the options' would be 10 times more rows)
                curves += [AnytimePoint(strategy=strategy.name, n=n, repeat=o.repeat, candidate_epoch=i + 1,
                                        incumbent_test_ppl=v) for i, v in enumerate(o.incumbent)]
            rows.append(replay_record(table, group, strategy, n, o))
        log.info("%s (n = %d): %d repeats, mean test ppl %.2f", strategy.name, n, len(outcomes),
                 float(np.mean([o.test_ppl for o in outcomes])))
    replays, anytime = csv_records.frame(rows, Replay), csv_records.frame(curves, AnytimePoint)
    csv_records.write_frame(replays_out, replays, Replay)
    csv_records.write_frame(anytime_out, anytime, AnytimePoint)
    log.info("the table's best configuration: %s, test perplexity %.2f", *table.best(table.seeds[0]))
    variations = sensitivity(params, table, headline_pool(params), workers)
    csv_records.write_frame(sensitivity_out, variations, Variation)
    log.info("%s: %d variations of the headline comparison", sensitivity_out, len(variations))
    return replays, anytime


def write_study(params: Params, table_dir: Path, out: Path, *, replays: pd.DataFrame, anytime: pd.DataFrame,
                sensitivity: pd.DataFrame, samples: pd.DataFrame) -> dict:
    """Every study output in `out`, from the table and the replays' files (INPUTS, by name); returns the
    verdict's numbers."""
    variations = sensitivity
    table = load_table(params, table_dir)
    epochs = list(range(1, params.search.e0 + params.search.ei + 1))
    default_ls = ls_signal_name(params.search.embedding, params.search.distance, params.lyapunov.layout,
                                params.search.pca_fit)
    points, signals = _write_signals(params, table, epochs, default_ls, out)
    methods = _write_methods(params, replays, len(table.seeds), out)
    _write_options(params, replays, len(table.seeds), out)
    _write_schedules(params, table, replays, out)
    csv_records.write_frame(out / STUDY_REPORT["ls_samples_csv"], samples, SamplesRow)
    files.write_text(out / STUDY_REPORT["ls_samples_md"], words.samples_markdown(samples))
    csv_records.write_frame(out / STUDY_REPORT["sensitivity_csv"], variations, Variation)
    files.write_text(out / STUDY_REPORT["sensitivity_md"], words.sensitivity_markdown(variations))
    best = float(np.mean([table.best(s)[1] for s in table.seeds]))  # as the methods' means: over training seeds
    _plot_anytime(params, anytime, best, out)
    verdict = build_verdict(params, signals, methods, default_ls, best)
    notes = [words.alternatives_words(methods, headline_pool(params), params.search.proposer),
             words.sensitivity_words(variations, points, default_ls, params.search.e0),
             words.ties_words(points[points["seed"] == table.seeds[0]])]
    files.write_text(out / SUMMARY_MD,
                     words.summary_markdown(params, table, verdict, int(replays["repeat"].max()) + 1,
                                            [n for n in notes if n]))
    return verdict.numbers()


def _plot_anytime(params: Params, anytime: pd.DataFrame, best: float, out: Path) -> None:
    """anytime.png: the incumbent against candidate-epochs, for the methods a practitioner chooses among."""
    from lsh.study.figures import plot_anytime

    proposer = params.search.proposer
    curves = [method_name("ls", proposer), method_name("loss", proposer), optuna_name("hyperband"),
              optuna_name("successive_halving"), KIND_NAMES["optuna_ls"], KIND_NAMES["random"], KIND_NAMES["full"]]
    n0 = headline_pool(params)
    plot_anytime(anytime[(anytime["n"] == n0) & anytime["strategy"].isin(curves)], curves,
                 out / STUDY_REPORT["anytime_png"], best)


def _write_signals(params: Params, table: Table, epochs: list[int], default_ls: str,
                   out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """early_signals_points.csv, early_signals.csv / .md and signals.png; returns the points and the signals."""
    from lsh.study.figures import plot_signals

    points = signal_points(table, epochs)
    signals = signal_table(points, params.seed)
    files.write_text(out / STUDY_REPORT["early_signals_points_csv"], points.to_csv(index=False))
    files.write_text(out / STUDY_REPORT["early_signals_csv"], signals.to_csv(index=False))
    shown = [default_ls, "loss_gap", "train_loss", LABELS_ONLY]
    labels = {default_ls: f"LS distance ({default_ls[3:]})", "loss_gap": "validation-loss gap to the dense model",
              "train_loss": "training loss", LABELS_ONLY: "configuration labels only (leave-one-out, reference)"}
    plot_signals(signals, shown, labels, out / STUDY_REPORT["signals_png"])
    files.write_text(out / STUDY_REPORT["early_signals_md"], words.signals_markdown(signals))
    return points, signals


def _write_methods(params: Params, replays: pd.DataFrame, seeds: int, out: Path) -> pd.DataFrame:
    """methods.csv / .md and methods.png: the strategies over training seeds and repeats."""
    from lsh.study.figures import plot_methods

    reference = method_name("ls", params.search.proposer)
    methods = summarise_methods(replays[replays["group"] == "methods"], reference=reference)
    files.write_text(out / STUDY_REPORT["methods_csv"], methods.to_csv(index=False))
    files.write_text(out / STUDY_REPORT["methods_md"], words.methods_markdown(methods, seeds, reference))
    plot_methods(methods, out / STUDY_REPORT["methods_png"])
    return methods


def _write_options(params: Params, replays: pd.DataFrame, seeds: int, out: Path) -> None:
    """ls_options.csv / .md: LSH with the grid proposer under each of the LS ranker's options."""
    variants = summarise_methods(replays[replays["group"] == "ls_options"])
    files.write_text(out / STUDY_REPORT["ls_options_csv"], variants.to_csv(index=False))
    files.write_text(out / STUDY_REPORT["ls_options_md"], words.options_markdown(variants, seeds, params.search.n))


def _write_schedules(params: Params, table: Table, replays: pd.DataFrame, out: Path) -> None:
    """schedules.csv / .md (paper Table 3); each strategy's ranker from the strategy itself, not its name."""
    strategies: dict[str, Strategy] = {s.name: s for group, s, _ in study_strategies(params, table.final_epochs)
                                       if group == "schedules"}
    schedule_rows = []
    for (name, e0, ei), group in replays[replays["group"] == "schedules"].groupby(["strategy", "e0", "ei"], sort=False):
        schedule_rows.append({"ranker": RANKER_LABELS[strategies[name].ranker], "e0": e0, "ei": ei,
                              "candidate_epochs": float(group["candidate_epochs"].mean()),
                              "selects_best": float(group["selects_best"].mean()),
                              "test_ppl": float(group["test_ppl"].mean())})
    schedules = pd.DataFrame(schedule_rows)
    files.write_text(out / STUDY_REPORT["schedules_csv"], schedules.to_csv(index=False))
    files.write_text(out / STUDY_REPORT["schedules_md"], words.schedules_markdown(schedules))
