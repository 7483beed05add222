"""The study: the benchmark table, the replays of every strategy on it, and the statistics.

Unit tests run on a synthetic table (no training); the cell test trains on a PTB slice; the slow
test builds a smoke table with Snakemake and checks that a live run and its replay agree."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import BIN, SMOKE, copy_project, run
from lsh import config
from lsh.config import Params
from lsh.layout import STUDY_REPORT_FILES
from lsh.search.schedule import plan
from lsh.stages.study import alternatives_words, study_strategies, ties_words
from lsh.study.cells import DENSE, cell_ids, table_configs
from lsh.study.replay import Strategy, lsh_budget, replay
from lsh.study.signals import signal_points, signal_table
from lsh.study.statistics import coefficient_with_interval, summarise_methods, top_quarter_recall
from lsh.study.table import COLUMNS, Table

SMALL_SPACE = {"init": ["uniform", "ER"], "death": ["magnitude", "SET"], "growth": ["random"],
               "redistribution": ["none", "magnitude"], "death_rate": {"low": 0.4, "high": 0.9, "q": 0.1},
               "grid_death_rate": 0.8}


def small_params(**search) -> Params:
    raw = config.load_params(SMOKE)
    raw["space"] = SMALL_SPACE
    raw["final"]["epochs"] = 4
    raw["search"].update({"n": 6, "e0": 1, "ei": 1, "proposer": "grid", **search})
    raw["study"].update({"pools": [6], "repeats": 3})
    return Params.from_dict(config.validate(raw))


def synthetic_table(params: Params, diverge: str | None = None, seeds: int = 1, kind: str = "grid") -> Table:
    """A table of the small grid (8 configurations; with kind "quantised" each at all 6 death rates)
    and the dense reference, epochs 0..4: configuration i ends at test perplexity 100 + 10 i; its
    early validation loss orders the configurations with noise, and its spectrum drifts from the
    dense one by an amount that grows with i. Training seed k (of `seeds`, params.seed + k) adds
    1000 k to every test perplexity, so an outcome shows whose rows it read."""
    rng = np.random.default_rng(0)
    configs = table_configs(params.space, kind)
    rows, blocks = [], []
    cells = [(-1, (DENSE, {})), *enumerate(configs)]
    for k, (index, (cid, config_)) in [(k, cell) for k in range(seeds) for cell in cells]:
        quality = 0 if cid == DENSE else index + 1
        for epoch in range(params.final_epochs + 1):
            loss = None if epoch == 0 else 5.0 - 0.3 * epoch + 0.02 * quality + 0.01 * rng.normal()
            status = "diverged" if cid == diverge and epoch == 3 else "ok"
            if cid == diverge and epoch > 3:  # a cell stops recording at its diverging epoch
                break
            rows.append({"config": cid, **{key: config_.get(key) for key in COLUMNS[1:6]}, "seed": params.seed + k,
                         "epoch": epoch, "train_loss": loss, "train_ppl": None if loss is None else math.exp(loss),
                         "valid_loss": loss, "valid_ppl": None if loss is None else math.exp(loss),
                         "test_ppl": 100.0 + 10 * quality - epoch + 1000 * k, "status": status, "clipped": 0})
            blocks.append(np.linspace(-1, -3, 6) + 0.05 * quality * epoch + 0.01 * rng.normal(size=6)
                          if status == "ok" else np.full(6, np.nan))
    spectra = np.array(blocks)
    meta = {"space": kind, "seeds": [params.seed + k for k in range(seeds)], "final_epochs": params.final_epochs,
            "configs": [[cid, c] for cid, c in configs]}
    table = Table(pd.DataFrame(rows, columns=list(COLUMNS)), {"blocks": spectra, "sorted": np.sort(spectra)[:, ::-1]}, meta)
    table.index()
    return table


# --- statistics ---------------------------------------------------------------------------------


def test_the_vectorised_coefficients_equal_scipys_with_ties():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=24), rng.normal(size=24)
    x[3], y[8] = x[5], y[9]
    for name, reference in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        value, low, high = coefficient_with_interval(x, y, name, seed=1)
        assert value == pytest.approx(reference(x, y)[0], abs=1e-12), name
        assert low <= value <= high, name


def test_a_bootstrap_interval_is_reproducible_and_narrows_with_more_points():
    rng = np.random.default_rng(4)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    wide = coefficient_with_interval(x[:20], y[:20], "spearman", seed=7)
    narrow = coefficient_with_interval(x, y, "spearman", seed=7)
    assert coefficient_with_interval(x[:20], y[:20], "spearman", seed=7) == wide
    assert narrow[2] - narrow[1] < wide[2] - wide[1]


def test_too_few_points_or_a_constant_signal_give_no_coefficient():
    assert all(math.isnan(v) for v in coefficient_with_interval([1, 2, 3], [3, 2, 1], "pearson", 0))
    assert all(math.isnan(v) for v in coefficient_with_interval([1, 1, 1, 1, 1], [1, 2, 3, 4, 5], "kendall", 0))


def test_top_quarter_recall_counts_the_best_quarter_kept_in_the_better_half():
    final = np.arange(8.0)  # the best quarter: items 0 and 1
    assert top_quarter_recall(final, final) == 1.0
    assert top_quarter_recall(-final, final) == 0.0
    signal = np.array([7.0, 0, 1, 2, 3, 4, 5, 6])  # keeps 1..4: item 1 but not item 0
    assert top_quarter_recall(signal, final) == 0.5
    signal[0] = np.inf  # a diverged signal is never kept
    assert top_quarter_recall(signal, final) == 0.5


def test_method_summaries_count_what_selected_nothing_apart():
    replays = pd.DataFrame({"strategy": ["a"] * 3, "n": [6] * 3, "test_ppl": [100.0, 110.0, math.inf],
                            "regret": [0.0, 10.0, math.inf], "candidate_epochs": [10, 10, 10],
                            "selects_best": [True, False, False], "config": ["g00", "g01", None]})
    row = summarise_methods(replays).iloc[0]
    assert row["test_ppl"] == 105.0 and row["nothing_selected"] == 1 and row["test_ppl_low"] < 105 < row["test_ppl_high"]


# --- the table and the replays ------------------------------------------------------------------


def test_a_run_that_diverged_before_the_end_is_never_a_final_outcome():
    params = small_params()
    table = synthetic_table(params, diverge="g00")
    assert math.isinf(table.final("g00", params.seed)["test_ppl"])
    assert table.final("g00", params.seed, epochs=2)["test_ppl"] == 100.0 + 10 - 2
    assert table.losses("g00", params.seed)[3] is None and table.trajectory("g00", params.seed, 3, "blocks") is None
    assert table.best(params.seed) == ("g01", 100.0 + 20 - 4)


def test_every_strategy_spends_the_budget_it_claims():
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6)
    budget = lsh_budget(search, table.final_epochs)
    the_plan = plan(search)  # 10 in rounds, then 2 finalists to epoch 4, one of them perhaps inserted at e0 = 1
    assert (the_plan.total_candidate_epochs, the_plan.last_epoch, budget) == (10, 2, 10 + 2 * 3)
    spent = set()
    for ranker, proposer in (("ls", "grid"), ("loss", "tpe")):
        strategy = Strategy(ranker, "lsh", dataclasses.replace(search, ranker=ranker, proposer=proposer))
        for outcome in replay(table, strategy, params.space, repeats=6, base_seed=params.seed):
            assert 10 + 2 * 2 <= outcome.candidate_epochs <= budget and len(outcome.incumbent) == outcome.candidate_epochs
            spent.add(outcome.candidate_epochs)
    assert spent == {14, 15}, "a newcomer among the finalists trains from e0, a survivor from epoch 2"
    for strategy, expected in (
        (Strategy("optuna", "optuna", search, pruner="hyperband", budget=budget), budget),
        (Strategy("optuna", "optuna", search, pruner="successive_halving", budget=budget), budget),
        (Strategy("random", "random", search, budget=budget), budget // table.final_epochs * table.final_epochs),
        (Strategy("full", "full", dataclasses.replace(search, mode="full", proposer="rand")), 6 * table.final_epochs),
    ):
        for outcome in replay(table, strategy, params.space, repeats=3, base_seed=params.seed):
            assert outcome.candidate_epochs == expected == len(outcome.incumbent), strategy
            assert outcome.config in dict(table.configs), strategy


def test_the_incumbent_after_the_last_candidate_epoch_is_the_selection():
    """The anytime curve ends where the strategy ends: what the last epoch showed counts at that epoch."""
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6)
    budget = lsh_budget(search, table.final_epochs)
    for strategy in (
        Strategy("LSH", "lsh", dataclasses.replace(search, proposer="tpe")),
        Strategy("loss", "lsh", dataclasses.replace(search, ranker="loss", proposer="grid")),
        Strategy("optuna", "optuna", search, pruner="hyperband", budget=budget),
        Strategy("random", "random", search, budget=budget),
        Strategy("full", "full", dataclasses.replace(search, mode="full", proposer="rand")),
    ):
        for outcome in replay(table, strategy, params.space, repeats=4, base_seed=params.seed):
            assert outcome.config is not None, strategy.name
            assert outcome.incumbent[-1] == outcome.test_ppl, strategy.name


def test_a_replay_proposes_only_the_tables_configurations():
    """A grid table fixes the death rate: TPE, ATPE and random search propose inside it."""
    params = small_params()
    table = synthetic_table(params)
    for proposer in ("tpe", "atpe", "rand"):
        search = dataclasses.replace(params.search, proposer=proposer, n=4)
        for outcome in replay(table, Strategy(proposer, "lsh", search), params.space, repeats=4, base_seed=5):
            assert outcome.config in dict(table.configs)  # table.config_id raised otherwise


def test_the_loss_replay_ranks_by_the_gap_and_the_ls_replay_by_the_spectrum():
    params = small_params()
    table = synthetic_table(params)
    dense_loss = table.losses(DENSE, params.seed)[1]
    for ranker in ("loss", "ls"):
        search = dataclasses.replace(params.search, ranker=ranker, n=8)
        outcome = replay(table, Strategy(ranker, "lsh", search), params.space, repeats=1, base_seed=params.seed)[0]
        first = [outcome.candidates[c] for c in outcome.rounds[0]]
        assert sorted(first) == [cid for cid, _ in table.configs]
        if ranker == "loss":
            gaps = {cid: table.losses(cid, params.seed)[1] - dense_loss for cid in first}
            assert first == sorted(first, key=gaps.get)
        else:  # the spectrum drifts from the dense one in proportion to a configuration's index
            assert first[:2] == ["g00", "g01"]
        assert outcome.config == "g00" and outcome.test_ppl == 106.0


def test_replays_are_reproducible_and_repeats_draw_other_pools():
    params = small_params()
    table = synthetic_table(params)
    strategy = Strategy("lsh", "lsh", dataclasses.replace(params.search, n=4))
    one = replay(table, strategy, params.space, repeats=4, base_seed=params.seed)
    assert one == replay(table, strategy, params.space, repeats=4, base_seed=params.seed)
    pools = {frozenset(o.candidates[c] for c in o.rounds[0]) for o in one}
    assert len(pools) > 1, "each repeat's grid order is its own, so its initial pool too"


def test_repeats_cycle_over_the_training_seeds_and_read_only_that_seeds_rows():
    """With S > 1 training seeds, repeat r replays on seed r mod S: every observation and the outcome
    come from that seed's rows (its test perplexities are 1000 higher per seed index here)."""
    params = small_params()
    table = synthetic_table(params, seeds=2)
    search = dataclasses.replace(params.search, n=6)
    budget = lsh_budget(search, table.final_epochs)
    for strategy in (Strategy("lsh", "lsh", search), Strategy("loss", "lsh", dataclasses.replace(search, ranker="loss")),
                     Strategy("optuna", "optuna", search, pruner="hyperband", budget=budget),
                     Strategy("random", "random", search, budget=budget),
                     Strategy("full", "full", dataclasses.replace(search, mode="full", proposer="rand"))):
        outcomes = replay(table, strategy, params.space, repeats=4, base_seed=params.seed)
        assert [o.seed for o in outcomes] == [params.seed, params.seed + 1] * 2, strategy
        for o in outcomes:
            offset = 1000 * (o.seed - params.seed)
            assert offset <= o.test_ppl < offset + 1000, (strategy, o)
            assert all(offset <= x < offset + 1000 for x in o.incumbent if math.isfinite(x)), (strategy, o)


def test_a_quantised_table_holds_every_death_rate_and_its_replays_propose_them():
    """study.space: quantised: every configuration of the space at every quantised death rate (q000..);
    the proposers then search the death rate too, within the table."""
    params = small_params()
    grid = table_configs(params.space, "grid")
    quantised = table_configs(params.space, "quantised")
    rates = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert len(quantised) == len(grid) * len(rates) == 48
    assert [cid for cid, _ in quantised] == [f"q{i:03d}" for i in range(48)]
    methods = lambda c: tuple(c[k] for k in ("init", "death", "growth", "redistribution"))  # noqa: E731
    assert {(methods(c), round(c["death_rate"], 6)) for _, c in quantised} == \
        {(methods(c), r) for _, c in grid for r in rates}
    table = synthetic_table(params, kind="quantised")
    search = dataclasses.replace(params.search, n=6, proposer="tpe")
    seen = set()
    for outcome in replay(table, Strategy("lsh", "lsh", search), params.space, repeats=4, base_seed=params.seed):
        assert outcome.config in dict(table.configs)
        seen |= set(outcome.candidates.values())
    assert len({round(dict(table.configs)[cid]["death_rate"], 6) for cid in seen}) > 1, "death rates are searched"
    with pytest.raises(Exception, match="study.space: quantised needs a quantised death rate"):
        table_configs(dataclasses.replace(params.space, death_rate=dataclasses.replace(params.space.death_rate, q=None)),
                      "quantised")


def test_training_seeds_start_at_the_runs_seed_and_a_bad_index_is_named():
    from lsh.stages.table import cell_seed
    from lsh.study.cells import training_seeds

    raw = config.load_params(SMOKE)
    raw["study"]["seeds"] = 3
    params = Params.from_dict(config.validate(raw))
    assert training_seeds(params) == [params.seed, params.seed + 1, params.seed + 2]
    assert [cell_seed(params, k) for k in range(3)] == training_seeds(params)
    with pytest.raises(Exception, match="training seed index 3: study.seeds is 3, so 0..2"):
        cell_seed(params, 3)


def test_optuna_replays_are_reproducible_with_either_pruner():
    """Hyperband assigns trials to brackets by a hash of the study's name: an unnamed study gets a random one."""
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6)
    budget = lsh_budget(search, table.final_epochs)
    for pruner in ("hyperband", "successive_halving"):
        strategy = Strategy("optuna", "optuna", search, pruner=pruner, budget=budget)
        runs = [replay(table, strategy, params.space, repeats=6, base_seed=params.seed) for _ in range(3)]
        assert runs[0] == runs[1] == runs[2], pruner


def test_the_study_compares_every_method_at_every_pool_size():
    params = small_params()
    table = synthetic_table(params)
    strategies = study_strategies(params, table)
    methods = {s.name for group, s, n in strategies if group == "methods"}
    assert methods == {"LSH-grid", "LSH-tpe", "LSH-atpe", "LSH-rand", "loss-grid", "loss-tpe", "loss-atpe", "loss-rand",
                       "optuna-TPE-hyperband", "optuna-TPE-halving", "random", "full-training"}
    schedules = {(s.search.e0, s.search.ei) for group, s, n in strategies if group == "schedules"}
    assert (1, 1) in schedules and all(plan(dataclasses.replace(params.search, e0=a, ei=b)).last_epoch <= 4
                                       for a, b in schedules)
    with pytest.raises(Exception, match="study.pools: n = 2"):
        study_strategies(dataclasses.replace(params, study=dataclasses.replace(params.study, pools=(2,))), table)
    with pytest.raises(Exception, match="study.pools: n = 12 takes the search to epoch 5, past the table's final.epochs"):
        study_strategies(dataclasses.replace(params, study=dataclasses.replace(params.study, pools=(12,))), table)


def test_the_summary_says_which_alternatives_beat_lsh_and_which_it_beats():
    def row(strategy, ppl, half):
        return {"strategy": strategy, "n": 8, "test_ppl": ppl, "test_ppl_low": ppl - half, "test_ppl_high": ppl + half,
                "candidate_epochs": 40.0}
    methods = pd.DataFrame([row("LSH-tpe", 400, 5), row("random", 398, 6), row("optuna-TPE-hyperband", 450, 10),
                            row("full-training", 380, 3), row("LSH-tpe", 300, 1) | {"n": 6}])
    words = alternatives_words(methods, 8, "tpe")
    assert "random search 398.00 [392.00, 404.00] (40.0 candidate-epochs)" in words
    assert "Worse than LSH by more than the intervals: Optuna's TPE with Hyperband" in words
    assert "Better than LSH by more than the intervals: training all n candidates to the end" in words
    assert "Not distinguishable from LSH (overlapping intervals): random search" in words
    assert "successive halving" not in words, "a strategy the study did not replay is not mentioned"
    assert alternatives_words(methods, 10, "tpe") == ""


def test_the_summary_warns_where_early_signals_take_few_values():
    points = pd.DataFrame({"epoch": [1] * 6 + [2] * 6, "valid_ppl": [9.0, 9.0, 9.0, 8.0, 8.0, 8.0] +
                           [9.0, 8.5, 8.0, 7.0, 7.5, math.inf]})
    words = ties_words(points)
    assert "at epoch 1 the 6 configurations have only 2 distinct validation perplexities" in words
    assert "epoch 2" not in words
    assert ties_words(points[points["epoch"] == 2]) == ""


def test_a_signal_that_is_the_outcome_gets_perfect_scores():
    params = small_params()
    table = synthetic_table(params)
    points = signal_points(table, [1, 2], params.seed, options=[("pca", "l2", "blocks", "pair")])
    points["oracle"] = points["final_test_ppl"]
    signals = signal_table(points, seed=1).set_index(["signal", "epoch"])
    assert signals.loc[("oracle", 1), "spearman"] == pytest.approx(1.0)
    assert signals.loc[("oracle", 1), "top_quarter_recall"] == 1.0
    assert signals.loc[("oracle", 1), "n"] == 8
    assert signals.loc[("loss_gap", 2), "spearman"] > 0.5  # the synthetic loss orders them, with noise


# --- a cell, and the table against a live run -----------------------------------------------------


@pytest.mark.slow
def test_a_cell_continued_after_a_kill_records_what_one_trained_straight_through_records(ptb_small, tmp_path):
    """A cell killed after its first epoch (rows.json lists epochs 0 and 1) resumes from the kept
    checkpoint and ends with the rows and spectra of a cell that was never stopped."""
    from lsh.stages.table import train_cell

    raw = config.load_params(SMOKE)
    raw["final"]["epochs"] = 2
    raw["data"]["train_tokens"] = 12_000  # ptb_small's
    params = Params.from_dict(config.validate(raw))
    straight = train_cell(params, "g05", 0, tmp_path / "straight", ptb_small)
    short = dataclasses.replace(params, final_epochs=1)
    first = train_cell(short, "g05", 0, tmp_path / "killed", ptb_small)
    assert sorted(first["rows"], key=int) == ["0", "1"]
    resumed = train_cell(params, "g05", 0, tmp_path / "killed", ptb_small)
    assert resumed == straight
    kept = {p.name for p in (tmp_path / "killed").glob("*.pt")}  # the last and the best validation epoch's
    assert "epoch-002.pt" in kept and "epoch-000.pt" not in kept and len(kept) <= 2
    assert straight["rows"]["2"]["test_ppl"] > 0 and len(straight["spectra"]["2"]["blocks"]) == 2 * 32


@pytest.mark.slow
def test_a_live_grid_run_and_its_replay_on_the_table_select_alike_round_by_round(tmp_path, ptb_raw):
    """The smoke preset on a small grid with the grid proposer, run live by Snakemake, and the study's
    table of the same params: the replay's repeat 0 ranks every round as the live run did and selects
    the same configuration. Then `snakemake study` writes the whole report, and has nothing left to do."""
    project = copy_project(tmp_path, ptb_raw)
    raw = config.load_params(project / SMOKE)
    raw["space"] = SMALL_SPACE
    raw["search"].update({"proposer": "grid", "n": 6})
    raw["study"].update({"pools": [6], "repeats": 2})
    (project / "small.yaml").write_text(config.dump(raw))
    params = Params.from_dict(config.validate(raw))
    out = run([str(BIN / "snakemake"), "all", "study", "--cores", "2", "--configfile", "small.yaml"], project, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    results = project / "results"
    table = Table.load(results / "study" / "table")
    assert [cid for cid, _ in table.configs] == cell_ids(params)[1:] and len(table.configs) == 8
    outcome = replay(table, Strategy("LSH-grid", "lsh", params.search), params.space, repeats=1, base_seed=params.seed)[0]
    for r in range(len(plan(params.search).rounds)):
        live = list(csv.DictReader(open(results / "rounds" / f"r{r:02d}" / "ranking.csv")))
        assert [row["candidate"] for row in live] == outcome.rounds[r], f"round {r}"
        configs = {row["candidate"]: table.config_id({k: row[k] if k != "death_rate" else float(row[k])
                                                      for k in COLUMNS[1:6]}) for row in live}
        assert all(outcome.candidates[c] == cid for c, cid in configs.items()), f"round {r}"
    selected = json.loads((results / "final" / "selected.json").read_text())
    assert outcome.config == table.config_id(selected["config"])
    assert outcome.valid_ppl == pytest.approx(selected["valid_ppl"], rel=1e-12)

    report = results / "study" / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted(STUDY_REPORT_FILES)
    summary = (report / "summary.md").read_text()
    assert "## Verdict" in summary and "Spearman" in summary and "replayed 2 times" in summary
    replays = pd.read_csv(results / "study" / "replays.csv")
    assert set(replays["group"]) == {"methods", "ls_options", "schedules"} and (replays["repeat"].max() == 1)
    again = run([str(BIN / "snakemake"), "all", "study", "-n", "--cores", "1", "--configfile", "small.yaml"], project)
    assert "Nothing to be done" in again.stdout + again.stderr
