"""The study: the benchmark table, the replays of every strategy on it, and the statistics.

Unit tests run on a synthetic table (no training); the cell test trains on a PTB slice; the slow
test builds a smoke table with Snakemake and checks that a live run and its replay agree."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, REPO, SMOKE, copy_project, run, run_lsh
from precision import EPS64, accumulated, two_ways
from scipy import stats

from lsh import config, data
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import STUDY_REPORT_FILES
from lsh.records import CELL_FIELDS, LAYOUTS
from lsh.report.study import alternatives_words, method_words, sensitivity_words, signal_words, ties_words
from lsh.schedule import plan
from lsh.stages.study import replay_all, write_study
from lsh.study.cells import DENSE, cell_ids, table_configs
from lsh.study.replay import replay
from lsh.study.sensitivity import sensitivity
from lsh.study.signals import signal_points, signal_table
from lsh.study.statistics import (
    SeedTest,
    coefficient_with_interval,
    paired_over_seeds,
    seeds_for_power,
    summarise_methods,
    top_quarter_recall,
)
from lsh.study.strategies import Strategy, lsh_budget, study_strategies
from lsh.study.table import COLUMNS, Table
from lsh.study.verdict import Estimate, Method, Signal, Verdict

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


def synthetic_table(params: Params, diverge: str | None = None, seeds: int = 1, kind: str = "grid",
                    only: tuple[str, ...] | None = None) -> Table:
    """A table of the small grid (8 configurations; with kind "quantised" each at all 6 death rates)
    and the dense reference, epochs 0..4: configuration i ends at test perplexity 100 + 10 i; its
    early validation loss orders the configurations with noise, and its spectrum drifts from the
    dense one by an amount that grows with i. Training seed k (of `seeds`, params.seed + k) adds
    1000 k to every test perplexity, so an outcome shows whose rows it read. With `only`, the table of
    that subset (study.configs), each configuration's rows as in the whole table."""
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
    if only is not None:
        keep = [row["config"] in (DENSE, *only) for row in rows]
        rows, blocks = [r for r, k in zip(rows, keep) if k], [b for b, k in zip(blocks, keep) if k]
        configs = [(cid, c) for cid, c in configs if cid in only]
    spectra = np.array(blocks)
    meta = {"space": kind, "seeds": [params.seed + k for k in range(seeds)], "final_epochs": params.final_epochs,
            "configs": [[cid, c] for cid, c in configs]}
    table = Table(rows=pd.DataFrame(rows, columns=list(COLUMNS)),
                  spectra={"blocks": spectra, "sorted": np.sort(spectra)[:, ::-1]}, meta=meta)
    return table


def coefficient_tol(n: int) -> float:
    """Two float64 computations of a correlation coefficient (at most 1) of n points in other orders: the means,
    the deviations' products and the squares are 3 sums of n terms."""
    return two_ways(EPS64, 3 * n)


# --- statistics ---------------------------------------------------------------------------------


def test_the_vectorised_coefficients_equal_scipys_with_ties():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=24), rng.normal(size=24)
    x[3], y[8] = x[5], y[9]
    for name, reference in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        value, low, high = coefficient_with_interval(x, y, name, seed=1)
        assert value == pytest.approx(reference(x, y)[0], abs=coefficient_tol(24)), name
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
    replays = pd.DataFrame({"strategy": ["a"] * 4, "n": [6] * 4, "seed": [1, 2, 1, 2],
                            "test_ppl": [100.0, 110.0, 104.0, math.inf], "regret": [0.0, 10.0, 4.0, math.inf],
                            "candidate_epochs": [10, 10, 10, 10], "selects_best": [True, False, False, False],
                            "config": ["g00", "g01", "g02", None]})
    row = summarise_methods(replays).iloc[0]
    assert (row["test_ppl"] == 106.0 and row["nothing_selected"] == 1
            and row["test_ppl_low"] < 106 < row["test_ppl_high"])


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
        strategy = Strategy(kind="lsh", search=dataclasses.replace(search, ranker=ranker, proposer=proposer))
        for outcome in replay(table, strategy, params.space, repeats=6, base_seed=params.seed):
            assert (10 + 2 * 2 <= outcome.candidate_epochs <= budget
                    and len(outcome.incumbent) == outcome.candidate_epochs)
            spent.add(outcome.candidate_epochs)
    assert spent == {14, 15}, "a newcomer among the finalists trains from e0, a survivor from epoch 2"
    for strategy, expected in (
        (Strategy(kind="random", search=search, budget=budget), budget // table.final_epochs * table.final_epochs),
        (Strategy(kind="full", search=dataclasses.replace(search, mode="full", proposer="rand")),
         6 * table.final_epochs),
        (Strategy(kind="iepoch", search=dataclasses.replace(search, proposer="rand")), 6 * 1 + 2 * (4 - 1)),
    ):
        for outcome in replay(table, strategy, params.space, repeats=3, base_seed=params.seed):
            assert outcome.candidate_epochs == expected == len(outcome.incumbent), strategy
            assert outcome.config in dict(table.configs), strategy
    for pruner in ("hyperband", "successive_halving"):  # up to the budget; short of it only once the
        for startup in (None, 1):  # sampler keeps proposing configurations it has trained (not paid again)
            strategy = Strategy(kind="optuna", search=search, pruner=pruner, budget=budget, startup=startup)
            for outcome in replay(table, strategy, params.space, repeats=3, base_seed=params.seed):
                assert 0 < outcome.candidate_epochs <= budget and len(outcome.incumbent) == outcome.candidate_epochs
                assert outcome.config in dict(table.configs), strategy


def test_optuna_never_pays_twice_for_an_epoch_of_a_configuration_it_trained():
    """A small space and a large budget: Optuna re-proposes configurations, and the ledger spends at most
    one candidate-epoch per (configuration, epoch) of the table, so it stops at the table's size."""
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6)
    strategy = Strategy(kind="optuna", search=search, pruner="hyperband", budget=1000, startup=1)
    for outcome in replay(table, strategy, params.space, repeats=2, base_seed=params.seed):
        assert outcome.candidate_epochs <= len(table.configs) * table.final_epochs


def test_i_epoch_keeps_the_best_by_validation_loss_at_epoch_i_and_trains_them_to_the_end():
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=8, proposer="grid", e0=2, final_pool=3)
    outcome = replay(table, Strategy(kind="iepoch", search=search), params.space, 1, params.seed)[0]
    seed = table.seeds[0]
    at_two = sorted((table.losses(cid, seed)[2] if table.losses(cid, seed)[2] is not None else math.inf, i, cid)
                    for i, (cid, _) in enumerate(table.configs))
    assert outcome.rounds[0] == [cid for _, _, cid in at_two]
    kept = [cid for _, _, cid in at_two[:3]]
    assert outcome.config == min(kept, key=lambda c: (table.final(c, seed)["valid_ppl"], kept.index(c)))
    assert outcome.candidate_epochs == 8 * 2 + 3 * (table.final_epochs - 2) and outcome.dense_epochs == 0


def test_the_incumbent_after_the_last_candidate_epoch_is_the_selection():
    """The anytime curve ends where the strategy ends: what the last epoch showed counts at that epoch."""
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6)
    budget = lsh_budget(search, table.final_epochs)
    for strategy in (
        Strategy(kind="lsh", search=dataclasses.replace(search, proposer="tpe")),
        Strategy(kind="lsh", search=dataclasses.replace(search, ranker="loss", proposer="grid")),
        Strategy(kind="optuna", search=search, pruner="hyperband", budget=budget),
        Strategy(kind="random", search=search, budget=budget),
        Strategy(kind="full", search=dataclasses.replace(search, mode="full", proposer="rand")),
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
        for outcome in replay(table, Strategy(kind="lsh", search=search), params.space, repeats=4, base_seed=5):
            assert outcome.config in dict(table.configs)  # table.config_id raised otherwise


SUBSET = ("g00", "g02", "g03", "g05", "g06", "g07")  # 6 of the small grid's 8


def subset_strategies(params: Params) -> list[Strategy]:
    search = dataclasses.replace(params.search, n=4)
    budget = lsh_budget(search, params.final_epochs)
    return [
        *(Strategy(kind="lsh", search=dataclasses.replace(search, proposer=p))
          for p in ("tpe", "atpe", "rand", "grid")),
        Strategy(kind="lsh", search=dataclasses.replace(search, ranker="loss")),
        Strategy(kind="iepoch", search=dataclasses.replace(search, proposer="tpe")),
        Strategy(kind="full", search=dataclasses.replace(search, mode="full", proposer="tpe")),
        Strategy(kind="random", search=search, budget=budget),
        Strategy(kind="optuna", search=search, pruner="hyperband", budget=budget, startup=1),
        lyapunov_strategy(params),
    ]


def test_a_pre_registered_subset_is_replayed_with_every_proposal_inside_it():
    """study.configs: the table holds a subset of the space; every strategy's proposer chooses among its
    configurations (table.config_id raises on any other), and each still spends its candidate-epochs."""
    params = small_params()
    table = synthetic_table(params, only=SUBSET)
    assert [cid for cid, _ in table.configs] == list(SUBSET)
    assert len(table.outside(table.replay_space(params.space))) == 8 - len(SUBSET)
    for strategy in subset_strategies(params):
        for outcome in replay(table, strategy, params.space, repeats=4, base_seed=params.seed):
            assert outcome.config in SUBSET and set(outcome.candidates.values()) <= set(SUBSET), strategy.name
            assert 0 < outcome.candidate_epochs == len(outcome.incumbent), strategy.name


def test_the_whole_tables_replays_treat_nothing_as_outside():
    """Without study.configs nothing is excluded, so the replays are those of the whole space."""
    params = small_params()
    table = synthetic_table(params)
    assert table.outside(table.replay_space(params.space)) == []


def test_a_subset_names_its_configurations_by_their_ids_in_the_whole_space():
    params = small_params()
    whole = dict(table_configs(params.space, "grid"))
    subset = table_configs(params.space, "grid", ("g07", "g02"))
    assert subset == [("g02", whole["g02"]), ("g07", whole["g07"])]  # the space's order, the space's ids
    with pytest.raises(LshError, match=r"study.configs: g08, q001 not in study.space grid \(g00..g07, 8"):
        table_configs(params.space, "grid", ("g02", "g08", "q001"))


def test_the_ls_replay_ranks_by_the_spectrum():
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, ranker="ls", n=8)
    outcome = replay(table, Strategy(kind="lsh", search=search), params.space, repeats=1, base_seed=params.seed)[0]
    first = [outcome.candidates[c] for c in outcome.rounds[0]]
    assert sorted(first) == [cid for cid, _ in table.configs]
    # the spectrum drifts from the dense one in proportion to a configuration's index
    assert first[:2] == ["g00", "g01"]
    assert outcome.config == "g00" and outcome.test_ppl == 106.0


@pytest.mark.parametrize("age", ["own", "common"])
@pytest.mark.parametrize("ranker", ["loss", "loss_gap", "tse"])
def test_the_loss_replays_rank_a_mixed_age_pool_by_their_signal_at_the_scored_epoch(ranker, age):
    """Round 1 holds survivors at epoch 2 and a newcomer at epoch 1: each is read at its own epoch, or all at 1."""
    params = small_params()
    table = synthetic_table(params)
    seed = params.seed
    search = dataclasses.replace(params.search, ranker=ranker, age=age, n=6, proposer="grid")
    outcome = replay(table, Strategy(kind="lsh", search=search), params.space, repeats=1, base_seed=seed)[0]
    dense = table.losses(DENSE, seed)
    survivors = set(outcome.rounds[0][:3])

    def signal(candidate: str) -> float:
        cid = outcome.candidates[candidate]
        epoch = 1 if age == "common" or candidate not in survivors else 2
        rows = [table.row(cid, seed, e) for e in range(1, epoch + 1)]
        loss = float(rows[-1]["valid_loss"])
        return {"loss": loss, "loss_gap": loss - dense[epoch],
                "tse": sum(float(r["train_loss"]) for r in rows)}[ranker]

    second = outcome.rounds[1]
    assert len(second) == 4 and second == sorted(second, key=lambda c: (signal(c), second.index(c)))


def test_replays_are_reproducible_and_repeats_draw_other_pools():
    params = small_params()
    table = synthetic_table(params)
    strategy = Strategy(kind="lsh", search=dataclasses.replace(params.search, n=4))
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
    for strategy in (Strategy(kind="lsh", search=search),
                     Strategy(kind="lsh", search=dataclasses.replace(search, ranker="loss")),
                     Strategy(kind="optuna", search=search, pruner="hyperband", budget=budget),
                     Strategy(kind="random", search=search, budget=budget),
                     Strategy(kind="full", search=dataclasses.replace(search, mode="full", proposer="rand"))):
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
    for outcome in replay(table, Strategy(kind="lsh", search=search), params.space, repeats=4, base_seed=params.seed):
        assert outcome.config in dict(table.configs)
        seen |= set(outcome.candidates.values())
    assert len({round(dict(table.configs)[cid]["death_rate"], 6) for cid in seen}) > 1, "death rates are searched"
    with pytest.raises(Exception, match="study.space: quantised needs a quantised death rate"):
        table_configs(dataclasses.replace(params.space,
                                          death_rate=dataclasses.replace(params.space.death_rate, q=None)),
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
        strategy = Strategy(kind="optuna", search=search, pruner=pruner, budget=budget)
        runs = [replay(table, strategy, params.space, repeats=6, base_seed=params.seed) for _ in range(3)]
        assert runs[0] == runs[1] == runs[2], pruner


def test_the_study_compares_every_method_at_every_pool_size():
    params = small_params()
    table = synthetic_table(params)
    strategies = study_strategies(params, table.final_epochs)
    methods = {s.name for group, s, n in strategies if group == "methods"}
    rankers = ("LSH", "loss", "loss-gap", "TSE")
    assert methods == {f"{r}-{p}" for r in rankers for p in ("grid", "tpe", "atpe", "rand")} | {
        f"{r}-{params.search.proposer} common-age" for r in rankers} | {
        "i-Epoch", "optuna-TPE-hyperband", "optuna-TPE-halving", "optuna-TPE-hyperband matched",
        "optuna-TPE-halving matched", "optuna-TPE-lyapunov", "random", "full-training"}
    by_name = {s.name: s for group, s, n in strategies if group == "methods"}
    assert by_name["loss-tpe"].search.ranker == "loss" and by_name["loss-gap-tpe"].search.ranker == "loss_gap"
    assert by_name["TSE-grid common-age"].search.age == "common" and by_name["LSH-tpe"].search.age == "own"
    assert by_name["optuna-TPE-halving matched"].startup == 1 and by_name["optuna-TPE-halving"].startup is None
    schedules = {(s.search.e0, s.search.ei) for group, s, n in strategies if group == "schedules"}
    assert (1, 1) in schedules and all(plan(dataclasses.replace(params.search, e0=a, ei=b)).last_epoch <= 4
                                       for a, b in schedules)
    with pytest.raises(Exception, match="study.pools: n = 2"):
        study_strategies(dataclasses.replace(params, study=dataclasses.replace(params.study, pools=(2,))),
                         table.final_epochs)
    with pytest.raises(Exception,
                       match="study.pools: n = 12 takes the search to epoch 5, past the table's final.epochs"):
        study_strategies(dataclasses.replace(params, study=dataclasses.replace(params.study, pools=(12,))),
                         table.final_epochs)


def test_the_summary_judges_alternatives_by_their_paired_difference_from_lsh_beside_their_budgets():
    """Their own intervals all overlap LSH's; what decides is the t interval of the difference paired within
    training seeds; each budget is given with the dense reference charged where it is needed, beside LSH's."""
    def row(strategy, ppl, gap, half, lower, dense=0.0):
        return {"strategy": strategy, "n": 8, "seeds": 3, "test_ppl": ppl, "test_ppl_low": ppl - 10,
                "test_ppl_high": ppl + 10, "candidate_epochs": 40.0, "candidate_epochs_with_dense": 40.0 + dense,
                "budget_vs_reference": dense - 4.0, "vs_reference": gap, "vs_reference_low": gap - half,
                "vs_reference_high": gap + half, "lower_seeds": lower, "vs_reference_p_sign": 0.5,
                "vs_reference_sd": 1.0}
    methods = pd.DataFrame([row("LSH-tpe", 400, 0.0, 0.0, 0, dense=4.0), row("random", 398, -2.0, 3.0, 2),
                            row("TSE-tpe", 399, -1.0, 0.5, 3), row("TSE-grid", 399, 9.0, 0.5, 0),
                            row("optuna-TPE-hyperband", 405, 5.0, 1.0, 0), row("full-training", 397, -3.0, 1.0, 3),
                            row("LSH-tpe", 300, 0.0, 0.0, 0) | {"n": 6}])
    words = alternatives_words(methods, 8, "tpe")
    assert ("random search 398.00 [388.00, 408.00] (40.0 candidate-epochs; 4.0 fewer than LSH; minus LSH's: "
            "-2.00 [-5.00, 1.00] (sign test p = 0.50), lower on 2 of 3 training seeds)") in words
    assert "LSH spent 44.0 candidate-epochs with the dense reference's 4.0." in words
    assert "Worse than LSH, the t interval of the paired difference clear of zero: Optuna's TPE with Hyperband" in words
    assert ("Not distinguishable from LSH (the t interval of the paired difference includes zero): "
            "random search") in words
    assert "successive halving" not in words, "a strategy the study did not replay is not mentioned"
    assert ("Better than LSH, the t interval of the paired difference clear of zero: training-speed estimation (TSE), "
            "training all n candidates to the end") in words, "TSE with LSH's proposer, not another's"
    assert alternatives_words(methods, 10, "tpe") == ""


def test_a_strategys_budget_against_lshs_charges_the_dense_reference_to_whoever_needs_it():
    lsh = seed_replays(0.0).assign(strategy="LSH-tpe", candidate_epochs=24, candidate_epochs_with_dense=28)
    tse = seed_replays(0.0).assign(strategy="TSE-tpe", candidate_epochs=26, candidate_epochs_with_dense=26)
    rows = summarise_methods(pd.concat([lsh, tse]), reference="LSH-tpe").set_index("strategy")
    assert rows.at["TSE-tpe", "budget_vs_reference"] == -2.0 and rows.at["LSH-tpe", "budget_vs_reference"] == 0.0


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
    signals = signal_table(points, seed=1)
    signals = signals[signals["seeds"] == "pooled"].set_index(["signal", "epoch"])
    assert signals.loc[("oracle", 1), "spearman"] == pytest.approx(1.0, abs=coefficient_tol(8))
    assert signals.loc[("oracle", 1), "top_quarter_recall"] == 1.0
    assert signals.loc[("oracle", 1), "n"] == 8
    assert signals.loc[("loss_gap", 2), "spearman"] > 0.5  # the synthetic loss orders them, with noise


# --- reading and validating the study's files ------------------------------------------------------


def save_table(table: Table, folder) -> object:
    """Write an in-memory table as `lsh study table` does: table.csv, spectra.npz, table.json."""
    folder.mkdir(parents=True, exist_ok=True)
    table.rows.to_csv(folder / "table.csv", index=False)
    np.savez(folder / "spectra.npz", **table.spectra)
    (folder / "table.json").write_text(json.dumps(table.meta))
    return folder


def saved(tmp_path, **kwargs) -> tuple[Params, object]:
    params = small_params()
    return params, save_table(synthetic_table(params, **kwargs), tmp_path / "table")


def edit_csv(folder, edit) -> None:
    """Rewrite table.csv through `edit(frame) -> frame`, every cell read as text (blank as '')."""
    frame = pd.read_csv(folder / "table.csv", dtype=str, keep_default_na=False)
    edit(frame).to_csv(folder / "table.csv", index=False)


def edit_json(folder, edit) -> None:
    meta = json.loads((folder / "table.json").read_text())
    edit(meta)
    (folder / "table.json").write_text(json.dumps(meta))


def refused(folder, *words: str) -> str:
    """Table.load's error: an LshError whose one line holds every word (the file's name first of all)."""
    with pytest.raises(LshError) as caught:
        Table.load(folder)
    message = str(caught.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_a_table_written_to_files_loads_back_as_it_was(tmp_path):
    params = small_params()
    for kwargs in ({}, {"diverge": "g03"}, {"seeds": 2}, {"kind": "quantised"}):
        table = synthetic_table(params, **kwargs)
        loaded = Table.load(save_table(table, tmp_path / str(len(kwargs) and next(iter(kwargs.values())))))
        pd.testing.assert_frame_equal(loaded.rows, table.rows, check_dtype=False)
        assert all(np.array_equal(loaded.spectra[k], table.spectra[k], equal_nan=True) for k in LAYOUTS)
        assert loaded.best(params.seed) == table.best(params.seed)


def test_an_empty_table_csv_is_refused_naming_the_file(tmp_path):
    _, folder = saved(tmp_path)
    (folder / "table.csv").write_text("")
    refused(folder, str(folder / "table.csv"), "is empty", "config")


@pytest.mark.parametrize("column", ["config", "valid_ppl", "seed"])
def test_a_table_csv_missing_a_column_is_refused_naming_the_column(tmp_path, column):
    _, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.drop(columns=[column]))
    refused(folder, str(folder / "table.csv"), f"no column {column}")


def test_a_foreign_file_as_table_csv_is_refused_naming_the_file(tmp_path):
    _, folder = saved(tmp_path)
    (folder / "table.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    refused(folder, str(folder / "table.csv"), "not a CSV table")
    (folder / "table.csv").write_text("strategy,n,test_ppl\nrandom,6,100.0\n")  # another of the study's CSVs
    refused(folder, str(folder / "table.csv"), "no column config")


def test_a_non_numeric_value_in_a_numeric_column_is_refused_naming_line_and_column(tmp_path):
    _, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(valid_ppl=f["valid_ppl"].where(f.index != 7, "12,5")))
    refused(folder, str(folder / "table.csv"), "line 9", "column valid_ppl", "'12,5'", "expected a number")


@pytest.mark.parametrize("column", ["seed", "epoch"])
def test_a_blank_seed_or_epoch_is_refused_naming_the_line(tmp_path, column):
    _, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(**{column: f[column].where(f.index != 3, "")}))
    refused(folder, str(folder / "table.csv"), "line 5", f"column {column} is blank")


def test_a_blank_configuration_id_is_refused_naming_the_line(tmp_path):
    _, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(config=f["config"].where(f.index != 10, "")))
    refused(folder, str(folder / "table.csv"), "line 12", "configuration id (column config) is blank")


def test_a_truncated_spectra_npz_is_refused_naming_the_file(tmp_path):
    _, folder = saved(tmp_path)
    data = (folder / "spectra.npz").read_bytes()
    (folder / "spectra.npz").write_bytes(data[: len(data) // 2])
    refused(folder, str(folder / "spectra.npz"), "truncated or not a zip archive")
    (folder / "spectra.npz").write_bytes(b"")
    refused(folder, str(folder / "spectra.npz"), "truncated or not a zip archive")


def test_a_spectra_npz_that_is_no_archive_of_arrays_is_refused_naming_the_file(tmp_path):
    _, folder = saved(tmp_path)
    (folder / "spectra.npz").write_text("config,seed\ng00,1\n")  # a foreign file: numpy would unpickle it
    refused(folder, str(folder / "spectra.npz"), "is not an .npz archive")
    with open(folder / "spectra.npz", "wb") as f:  # a lone .npy under the archive's name
        np.save(f, np.zeros((45, 6)))
    refused(folder, str(folder / "spectra.npz"), "a single array")


def test_a_spectra_npz_missing_a_layout_array_is_refused_naming_it(tmp_path):
    _, folder = saved(tmp_path)
    with np.load(folder / "spectra.npz") as arrays:
        blocks = arrays["blocks"]
    np.savez(folder / "spectra.npz", blocks=blocks)
    refused(folder, str(folder / "spectra.npz"), "no array sorted")


def test_a_spectra_npz_holding_an_object_or_text_array_is_refused_naming_it(tmp_path):
    _, folder = saved(tmp_path)
    with np.load(folder / "spectra.npz") as arrays:
        blocks = arrays["blocks"]
    np.savez(folder / "spectra.npz", blocks=blocks, sorted=np.array([[1.0], "x", None], dtype=object))
    refused(folder, str(folder / "spectra.npz"), "array sorted holds Python objects")
    np.savez(folder / "spectra.npz", blocks=blocks, sorted=blocks.astype(str))
    refused(folder, str(folder / "spectra.npz"), "array sorted is of dtype <U")


def test_spectra_with_another_row_count_than_table_csv_are_refused(tmp_path):
    _, folder = saved(tmp_path)
    with np.load(folder / "spectra.npz") as arrays:
        spectra = {k: arrays[k][:-1] for k in LAYOUTS}
    np.savez(folder / "spectra.npz", **spectra)
    refused(folder, str(folder / "spectra.npz"), "array blocks has 44 rows", "table.csv has 45")


def test_a_table_json_that_is_not_json_is_refused_naming_the_file(tmp_path):
    _, folder = saved(tmp_path)
    text = (folder / "table.json").read_text()
    (folder / "table.json").write_text(text[: len(text) // 2])
    refused(folder, str(folder / "table.json"), "is not valid JSON")
    (folder / "table.json").write_text("")
    refused(folder, str(folder / "table.json"), "the file is empty")
    (folder / "table.json").write_text("[1, 2]")
    refused(folder, str(folder / "table.json"), "a list, expected an object with configs, seeds")


@pytest.mark.parametrize("key", ["configs", "seeds", "final_epochs", "space"])
def test_a_table_json_missing_a_key_is_refused_naming_it(tmp_path, key):
    _, folder = saved(tmp_path)
    edit_json(folder, lambda meta: meta.pop(key))
    refused(folder, str(folder / "table.json"), f"no key {key}")


@pytest.mark.parametrize("key, value, words", [
    ("seeds", "1", "seeds is '1': expected a non-empty list of distinct whole numbers"),
    ("seeds", [1, 1], "seeds is [1, 1]"),
    ("final_epochs", "4", "final_epochs is '4': expected a whole number"),
    ("space", "random", "space is 'random': allowed are grid, quantised"),
    ("configs", {"g00": {}}, "configs is an object: expected a list"),
    ("configs", [["g00", {"init": "ER"}]], "configs[0] (g00) has death None"),
    ("configs", [["dense", {}]], "configs[0] has the id 'dense'"),
])
def test_a_table_json_with_a_wrongly_typed_key_is_refused_naming_it(tmp_path, key, value, words):
    _, folder = saved(tmp_path)
    edit_json(folder, lambda meta: meta.update({key: value}))
    refused(folder, str(folder / "table.json"), words)


def test_a_table_with_a_duplicated_row_is_refused_naming_the_row(tmp_path):
    """A later row used to win silently: a fake final row made g07 the best at test perplexity 1.0."""
    params, folder = saved(tmp_path)
    def fake(frame):
        last = frame[(frame["config"] == "g07") & (frame["epoch"] == "4")].assign(test_ppl="1.0", valid_ppl="1.0")
        return pd.concat([frame, last], ignore_index=True)
    edit_csv(folder, fake)
    refused(folder, str(folder / "table.csv"), f"the row (g07, seed {params.seed}, epoch 4) appears 2 times",
            "lines 46, 47")


def test_a_configuration_outside_table_json_is_refused_naming_it(tmp_path):
    _, folder = saved(tmp_path)
    edit_json(folder, lambda meta: meta.update(configs=meta["configs"][:-1]))  # g07's rows stay in table.csv
    refused(folder, str(folder / "table.csv"), "configuration 'g07' is not in", "table.json's configs")


def test_a_table_missing_rows_of_a_configuration_seed_or_epoch_is_refused_naming_them(tmp_path):
    params, folder = saved(tmp_path)
    original = (folder / "table.csv").read_text()
    edit_csv(folder, lambda f: f[f["config"] != "g03"])
    refused(folder, str(folder / "table.csv"), f"no rows for g03 with training seed {params.seed}")
    (folder / "table.csv").write_text(original)
    edit_csv(folder, lambda f: f[~((f["config"] == "g03") & (f["epoch"] == "2"))])
    refused(folder, str(folder / "table.csv"), f"g03 with training seed {params.seed} has no row for epoch 2")
    (folder / "table.csv").write_text(original)
    edit_csv(folder, lambda f: f[~((f["config"] == "g03") & (f["epoch"] == "4"))])
    refused(folder, str(folder / "table.csv"), "g03", "stops at epoch 3 with status ok")
    edit_json(folder, lambda meta: meta.update(seeds=[params.seed, params.seed + 1]))
    (folder / "table.csv").write_text(original)
    refused(folder, str(folder / "table.csv"), f"no rows for dense with training seed {params.seed + 1}")


def test_rows_after_a_divergence_are_refused(tmp_path):
    params, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(status=f["status"].where(~((f["config"] == "g02") & (f["epoch"] == "2")),
                                                                  "diverged")))
    refused(folder, str(folder / "table.csv"), "g02", "has rows after epoch 2, at which it diverged")


def test_configuration_columns_that_contradict_table_json_are_refused_naming_the_row(tmp_path):
    params, folder = saved(tmp_path)
    original = (folder / "table.csv").read_text()
    g02 = dict(table_configs(params.space, "grid"))["g02"]
    other = "SET" if g02["death"] == "magnitude" else "magnitude"
    edit_csv(folder, lambda f: f.assign(death=f["death"].where(~((f["config"] == "g02") & (f["epoch"] == "1")), other)))
    refused(folder, str(folder / "table.csv"), f"(g02, seed {params.seed}, epoch 1)", f"column death is '{other}'",
            f"expected '{g02['death']}'")
    (folder / "table.csv").write_text(original)
    edit_csv(folder, lambda f: f.assign(death_rate=f["death_rate"].where(f["config"] != "g05", "0.5")))
    refused(folder, str(folder / "table.csv"), "(g05, seed", "column death_rate is 0.5", "expected 0.8")
    (folder / "table.csv").write_text(original)
    edit_csv(folder, lambda f: f.assign(init=f["init"].where(f["config"] != DENSE, "ER")))
    refused(folder, str(folder / "table.csv"), "(dense, seed", "column init is 'ER'", "expected blank")


def test_a_non_finite_outcome_on_an_ok_row_is_refused_naming_the_row(tmp_path):
    params, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(valid_loss=f["valid_loss"].where(
        ~((f["config"] == "g04") & (f["epoch"] == "3")), "inf")))
    refused(folder, str(folder / "table.csv"), f"(g04, seed {params.seed}, epoch 3)", "valid_loss is inf",
            "status ok")


def test_all_nan_test_perplexities_are_refused_naming_the_first_row(tmp_path):
    params, folder = saved(tmp_path)
    edit_csv(folder, lambda f: f.assign(test_ppl="nan"))
    refused(folder, str(folder / "table.csv"), f"line 3 (dense, seed {params.seed}, epoch 1)", "test_ppl is blank",
            "status ok")


def test_a_diverged_row_may_lack_its_outcomes(tmp_path):
    params, folder = saved(tmp_path, diverge="g01")
    edit_csv(folder, lambda f: f.assign(test_ppl=f["test_ppl"].where(f["status"] == "ok", ""),
                                        valid_loss=f["valid_loss"].where(f["status"] == "ok", "")))
    table = Table.load(folder)
    assert math.isinf(table.final("g01", params.seed)["test_ppl"])


def test_a_table_where_every_configuration_diverged_cannot_support_a_verdict(tmp_path):
    params = small_params()
    table = synthetic_table(params)
    rows = table.rows
    keep = ((rows["config"] == DENSE) | (rows["epoch"] <= 2)).to_numpy()
    rows = rows[keep].reset_index(drop=True)
    rows.loc[(rows["config"] != DENSE) & (rows["epoch"] == 2),
             ["status", "test_ppl", "valid_ppl"]] = ["diverged", None, None]
    folder = save_table(Table(rows=rows, spectra={k: v[keep] for k, v in table.spectra.items()}, meta=table.meta),
                        tmp_path / "table")
    loaded = Table.load(folder)  # a valid table...
    with pytest.raises(LshError, match=f"table.csv: no configuration has a finite final test perplexity with "
                                       f"training seed {params.seed}"):
        loaded.check_study(1)  # ... that can rank nothing
    with pytest.raises(LshError, match="no configuration has a finite final test perplexity"):
        replay_all(params, folder, tmp_path / "replays.csv", tmp_path / "anytime.csv", tmp_path / "sensitivity.csv")


def test_a_seeds_mismatch_is_refused_naming_both(tmp_path):
    params = small_params()
    one = save_table(synthetic_table(params), tmp_path / "one")
    two = save_table(synthetic_table(params, seeds=2), tmp_path / "two")
    three = dataclasses.replace(params, study=dataclasses.replace(params.study, seeds=3))
    with pytest.raises(LshError,
                       match=r"one/table.json: the table was built with 1 training seed\(s\) .* study.seeds is 3"):
        replay_all(three, one, tmp_path / "replays.csv", tmp_path / "anytime.csv", tmp_path / "sensitivity.csv")
    with pytest.raises(LshError,
                       match=r"two/table.json: the table was built with 2 training seed\(s\) .* study.seeds is 1"):
        replay_all(params, two, tmp_path / "replays.csv", tmp_path / "anytime.csv", tmp_path / "sensitivity.csv")
    with pytest.raises(LshError, match=r"built with 2 training seed"):  # the report refuses it alike
        write_study(params, two, tmp_path / "report", replays=pd.DataFrame(), anytime=pd.DataFrame(),
                    sensitivity=pd.DataFrame(), samples=pd.DataFrame())
    assert not (tmp_path / "replays.csv").exists() and not (tmp_path / "report").exists()


def test_a_one_configuration_table_is_refused(tmp_path):
    params = small_params()
    table = synthetic_table(params)
    keep = table.rows["config"].isin([DENSE, "g00"]).to_numpy()
    one = Table(rows=table.rows[keep].reset_index(drop=True), spectra={k: v[keep] for k, v in table.spectra.items()},
                meta={**table.meta, "configs": table.meta["configs"][:1]})
    folder = save_table(one, tmp_path / "table")
    Table.load(folder)  # a valid table, of one configuration
    with pytest.raises(LshError, match=r"table.json: the table has 1 configuration\(s\) \(g00\): .* at least 2"):
        replay_all(params, folder, tmp_path / "replays.csv", tmp_path / "anytime.csv", tmp_path / "sensitivity.csv")


def write_cells(table: Table, folder) -> list:
    """The table as its cells' rows.json (what `lsh study cell` writes), in the table's row order."""
    paths = []
    for (cid, seed), cell in table.rows.groupby(["config", "seed"], sort=False):
        rows, spectra = {}, {}
        for i, r in cell.iterrows():
            rows[str(r["epoch"])] = {k: None if pd.isna(r[k]) else r[k] if k == "status" else
                                     int(r[k]) if k == "clipped" else float(r[k]) for k in CELL_FIELDS}
            spectra[str(r["epoch"])] = ({k: table.spectra[k][i].tolist() for k in LAYOUTS} if r["status"] == "ok"
                                        else None)
        path = folder / cid / f"s{seed - table.seeds[0]}" / "rows.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"config": cid, "seed": int(seed), "run": {}, "rows": rows, "spectra": spectra}))
        paths.append(path)
    return paths


def test_cells_gathered_into_a_table_load_back_as_they_were(tmp_path):
    from lsh.stages.table import build_table

    params = small_params()
    table = synthetic_table(params, diverge="g02")
    build_table(params, write_cells(table, tmp_path / "cells"), tmp_path / "table")
    loaded = Table.load(tmp_path / "table")
    pd.testing.assert_frame_equal(loaded.rows, table.rows, check_dtype=False)
    assert all(np.array_equal(loaded.spectra[k], table.spectra[k], equal_nan=True) for k in LAYOUTS)


@pytest.mark.parametrize("damage, words", [
    (lambda cell: "{\"config\": \"g01\", \"se", "is not valid JSON"),
    (lambda cell: "", "the file is empty"),
    (lambda cell: {k: v for k, v in cell.items() if k != "spectra"}, "field 'spectra' is missing"),
    (lambda cell: {**cell, "spectra": {k: v for k, v in cell["spectra"].items() if k != "2"}},
     "no spectrum for epoch 2"),
    (lambda cell: {**cell, "rows": {**cell["rows"],
                                    "1": {k: v for k, v in cell["rows"]["1"].items() if k != "test_ppl"}}},
     "rows.1: field 'test_ppl' is missing"),
    (lambda cell: {**cell, "rows": {**cell["rows"], "1": {**cell["rows"]["1"], "valid_ppl": "12.5"}}},
     "rows.1.valid_ppl: expected a number, found '12.5'"),
    (lambda cell: {**cell, "rows": {k: v for k, v in cell["rows"].items() if k != "4"}},
     "stops at epoch 3 with status ok"),
    (lambda cell: {**cell, "config": "g99"}, "config 'g99' is not a configuration of this table"),
    (lambda cell: {**cell, "seed": 12345}, "seed 12345 is not a training seed of these params"),
])
def test_a_damaged_cell_is_refused_naming_its_rows_json(tmp_path, damage, words):
    from lsh.stages.table import build_table

    params = small_params()
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    bad = cells[3]
    damaged = damage(json.loads(bad.read_text()))
    bad.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(LshError) as caught:
        build_table(params, cells, tmp_path / "table")
    assert str(bad) in str(caught.value) and words in str(caught.value), str(caught.value)
    assert not (tmp_path / "table").exists(), "nothing is written"


def test_cells_missing_from_the_table_are_refused_before_it_is_written(tmp_path):
    from lsh.stages.table import build_table

    params = small_params()
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    with pytest.raises(LshError, match=f"do not make a valid table, so none is written: .*no rows for g02 "
                                       f"with training seed {params.seed}"):
        build_table(params, [c for c in cells if c.parent.parent.name != "g02"], tmp_path / "table")
    assert not (tmp_path / "table").exists()


def test_a_cell_trained_otherwise_than_the_params_say_is_refused_when_the_table_checks_runs(tmp_path, ptb_quick_small):
    """A kept cell (study.cells) is reused only if it was trained as these params train it: its recorded
    run (seed, model, training, sparse settings, data) and lyapunov settings must match."""
    from lsh.stages.table import build_table, cell_spec

    raw = config.load_params(SMOKE)
    raw["space"], raw["final"]["epochs"], raw["data"]["train_tokens"] = SMALL_SPACE, 4, 12_000
    params = Params.from_dict(config.validate(raw))
    corpus = data.load_corpus(ptb_quick_small)
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    for path in cells:
        cell = json.loads(path.read_text())
        cell.update(run=cell_spec(params, cell["config"], cell["seed"]).run_config(corpus),
                    lyapunov=dataclasses.asdict(params.lyapunov))
        path.write_text(json.dumps(cell))
    build_table(params, cells, tmp_path / "table", ptb_quick_small)  # every cell matches
    other = json.loads(cells[4].read_text())
    other["run"]["model"]["hidden"] += 1
    other["lyapunov"]["steps"] += 1
    cells[4].write_text(json.dumps(other))
    with pytest.raises(LshError, match=r"rows.json: trained otherwise than these params train it "
                                       r"\(run.model.hidden differ\)"):
        build_table(params, cells, tmp_path / "again", ptb_quick_small)
    other["run"]["model"]["hidden"] -= 1
    cells[4].write_text(json.dumps(other))
    with pytest.raises(LshError, match=r"\(lyapunov.steps differ\)"):
        build_table(params, cells, tmp_path / "again", ptb_quick_small)
    cells[4].write_text(json.dumps({k: v for k, v in other.items() if k != "lyapunov"}))
    with pytest.raises(LshError, match=r"no record of its lyapunov settings"):
        build_table(params, cells, tmp_path / "again", ptb_quick_small)
    assert not (tmp_path / "again").exists()
    build_table(params, cells, tmp_path / "unchecked")  # without the data, no check: the run's own table


def test_a_cell_relabelled_as_another_configuration_or_seed_is_refused_without_the_data(tmp_path):
    """What a cell's record says it trained (its sparse method, none for the dense reference, and its seed)
    must be what its id and seed name, whether or not the table checks runs against the data."""
    from lsh.stages.table import build_table

    params = small_params()
    configs = dict(table_configs(params.space, params.study.space))
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    for path in cells:  # each cell's run as lsh study cell records it, in the part that needs no data
        cell = json.loads(path.read_text())
        sparse = None if cell["config"] == DENSE else {"density": 0.33, **configs[cell["config"]], "decay_epochs": 4}
        path.write_text(json.dumps({**cell, "run": {"seed": cell["seed"], "sparse": sparse}}))
    build_table(params, cells, tmp_path / "table")
    by_config = {json.loads(p.read_text())["config"]: p for p in cells}
    original = by_config["g01"].read_text()
    for change, words in ((lambda c: c.update(config="g02"), "labelled g02, but its run records"),
                          (lambda c: c["run"].update(seed=c["seed"] + 1),
                           "labelled seed 1111, but its run records seed 1112"),
                          (lambda c: c.update(config=DENSE), "labelled dense, but its run records a sparse training")):
        cell = json.loads(original)
        change(cell)
        by_config["g01"].write_text(json.dumps(cell))
        with pytest.raises(LshError, match=words):
            build_table(params, cells, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_a_spectrum_that_is_not_finite_on_a_row_marked_ok_is_refused(tmp_path):
    from lsh.records import read_cell

    params = small_params()
    path = write_cells(synthetic_table(params), tmp_path / "cells")[1]
    cell = json.loads(path.read_text())
    epoch = next(e for e, row in cell["rows"].items() if row["status"] == "ok" and cell["spectra"][e])
    cell["spectra"][epoch][LAYOUTS[0]][0] = math.nan
    path.write_text(json.dumps(cell))
    with pytest.raises(LshError, match=rf"spectra.{epoch}: a non-finite exponent on a row marked ok"):
        read_cell(path)


def test_a_replay_with_another_space_than_the_tables_is_refused(tmp_path):
    params, folder = saved(tmp_path)
    narrower = dataclasses.replace(params, space=dataclasses.replace(params.space, death=params.space.death[:1]))
    with pytest.raises(LshError, match="the table holds other configurations than these params' space"):
        replay_all(narrower, folder, tmp_path / "r.csv", tmp_path / "a.csv", tmp_path / "s.csv")
    assert not (tmp_path / "r.csv").exists()


def test_table_4_refuses_other_params_than_the_tables_and_a_foreign_checkpoint(tmp_path, ptb_quick_small):
    """Table 4 reads the best and worst cells' last checkpoints beside the table, or trains them again: with
    another model than the table's it would report another study's model, and a checkpoint of another
    configuration placed there is not the cell's."""
    import shutil

    from lsh import layout
    from lsh.stages.table import build_table, check_built_with, final_checkpoint, train_cell

    params = dataclasses.replace(small_params(), data=dataclasses.replace(small_params().data, train_tokens=12_000))
    table_dir = tmp_path / "table"
    build_table(params, write_cells(synthetic_table(params), tmp_path / "cells"), table_dir)
    table = Table.load(table_dir)
    check_built_with(params, table, table_dir)
    wider = dataclasses.replace(params, model=dataclasses.replace(params.model, hidden=params.model.hidden * 2))
    with pytest.raises(LshError, match=r"built with other params than these \(model.hidden differ\)"):
        check_built_with(wider, table, table_dir)
    train_cell(params, "g01", 0, tmp_path / "g01", ptb_quick_small, until=0)  # the initialisation's checkpoint
    for cid in ("g00", "g01"):
        target = layout.checkpoint(layout.cell_folder(table_dir, cid, 0), params.final_epochs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(layout.checkpoint(tmp_path / "g01", 0), target)
    with pytest.raises(LshError, match=r"not g00's checkpoint as these params train it on this data \(sparse\."):
        final_checkpoint(params, table_dir, "g00", ptb_quick_small)
    assert final_checkpoint(params, table_dir, "g01", ptb_quick_small).name == f"epoch-{params.final_epochs:03d}.pt"


def replay_cli(folder, tmp_path, *extra: str):
    return run_lsh("replay", "--params", SMOKE, *extra, "--table", str(folder), "--replays", str(tmp_path / "r.csv"),
                   "--anytime", str(tmp_path / "a.csv"), "--sensitivity", str(tmp_path / "s.csv"), "--repeats", "1")


@pytest.mark.parametrize("damage, file, words", [
    ("truncate", "spectra.npz", "truncated or not a zip archive"),
    ("duplicate", "table.csv", "appears 2 times"),
    ("seeds", "table.json", "study.seeds is 3"),
])
def test_the_command_line_names_a_broken_table_in_one_line(tmp_path, damage, file, words):
    _, folder = saved(tmp_path)
    extra = ()
    if damage == "truncate":
        (folder / file).write_bytes((folder / file).read_bytes()[:100])
    elif damage == "duplicate":
        edit_csv(folder, lambda f: pd.concat([f, f.iloc[[20]]], ignore_index=True))
    else:
        extra = ("--set", "study.seeds=3")
    out = replay_cli(folder, tmp_path, *extra)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and str(folder / file) in out.stderr and words in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("lsh replay: error: "), out.stderr
    assert not (tmp_path / "r.csv").exists()


def test_the_command_line_names_a_damaged_cell_in_one_line(tmp_path):
    params = small_params()
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    cells[2].write_text(cells[2].read_text()[:50])
    out = run_lsh("study", "table", "--params", SMOKE, "--set", "final.epochs=4", "--set",
                  f"space={json.dumps(SMALL_SPACE)}", "--results", str(tmp_path), "--cells", *map(str, cells),
                  "--out", str(tmp_path / "table"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"{cells[2]} is not valid JSON" in out.stderr, out.stderr


def test_the_table_of_given_cells_ignores_a_run_in_the_working_folders_results(tmp_path):
    """`lsh study table --cells` reads no run: a results/ of other params where it is called is not its."""
    params = small_params()
    cells = write_cells(synthetic_table(params), tmp_path / "cells")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "resolved-params.yaml").write_text((REPO / "params.yaml").read_text())
    out = subprocess.run([str(BIN / "lsh"), "study", "table", "--params", str(REPO / SMOKE), "--set", "final.epochs=4",
                          "--set", f"space={json.dumps(SMALL_SPACE)}", "--cells", *map(str, cells),
                          "--out", str(tmp_path / "table")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "table" / "table.json").is_file()


# --- a cell, and the table against a live run -----------------------------------------------------


@pytest.mark.slow
def test_a_finished_cell_whose_rows_were_deleted_is_trained_again_to_the_same_rows(ptb_quick_small, tmp_path):
    """Snakemake deletes a job's rows.json before it reruns it; the cell keeps only its last checkpoint,
    so it cannot continue: it trains again from the start, never ends without its rows."""
    from lsh.stages.table import train_cell

    raw = config.load_params(SMOKE)
    raw["final"]["epochs"] = 2
    raw["data"]["train_tokens"] = 12_000  # ptb_quick_small's
    params = Params.from_dict(config.validate(raw))
    first = train_cell(params, "g05", 0, tmp_path / "cell", ptb_quick_small)
    (tmp_path / "cell" / "rows.json").unlink()
    again = train_cell(params, "g05", 0, tmp_path / "cell", ptb_quick_small)
    assert (tmp_path / "cell" / "rows.json").is_file()
    assert again.rows == first.rows and again.spectra == first.spectra


@pytest.mark.slow
def test_a_cell_continued_after_a_kill_records_what_one_trained_straight_through_records(ptb_quick_small, tmp_path):
    """A cell stopped after its first epoch (`--until 1`, or killed: rows.json lists epochs 0 and 1)
    resumes from the kept checkpoint and ends with the rows and spectra of a cell never stopped."""
    from lsh.stages.table import train_cell

    raw = config.load_params(SMOKE)
    raw["final"]["epochs"] = 2
    raw["data"]["train_tokens"] = 12_000  # ptb_quick_small's
    params = Params.from_dict(config.validate(raw))
    straight = train_cell(params, "g05", 0, tmp_path / "straight", ptb_quick_small)
    first = train_cell(params, "g05", 0, tmp_path / "killed", ptb_quick_small, until=1)  # or killed after epoch 1
    assert first.epochs == ["0", "1"]
    resumed = train_cell(params, "g05", 0, tmp_path / "killed", ptb_quick_small)
    assert resumed == straight
    kept = {p.name for p in (tmp_path / "killed").glob("*.pt")}  # the last and the best validation epoch's
    assert "epoch-002.pt" in kept and "epoch-000.pt" not in kept and len(kept) <= 2
    assert straight.rows["2"].test_ppl > 0 and len(straight.spectra["2"]["blocks"]) == 2 * 32


@pytest.mark.slow
def test_table_4_trains_a_kept_cell_again_to_the_same_rows_when_its_checkpoint_was_not_kept(
        ptb_quick_small, tmp_path, caplog):
    """Cells kept with the project (study.cells) come without checkpoints: Table 4 trains its best and worst
    configuration again beside the table, to the very rows kept, and a second call trains nothing."""
    import logging
    import shutil

    from lsh import layout
    from lsh.records import read_cell
    from lsh.stages.table import build_table, ls_samples, train_cell

    raw = config.load_params(SMOKE)
    raw["space"], raw["final"]["epochs"], raw["data"]["train_tokens"] = SMALL_SPACE, 2, 12_000
    raw["study"].update({"seeds": 1, "ls_samples": [2, 3], "cells": str(tmp_path / "kept")})
    params = Params.from_dict(config.validate(raw))
    kept = [layout.cell_folder(tmp_path / "kept", cid, 0) / layout.CELL_ROWS for cid in cell_ids(params)]
    for cid, path in zip(cell_ids(params), kept):
        train_cell(params, cid, 0, tmp_path / "grow" / cid, ptb_quick_small)
        path.parent.mkdir(parents=True)
        shutil.copy(tmp_path / "grow" / cid / layout.CELL_ROWS, path)
    table_dir = tmp_path / "study" / "table"
    build_table(params, kept, table_dir, ptb_quick_small)
    with caplog.at_level(logging.INFO, logger="lsh"):
        frame = ls_samples(params, table_dir, ptb_quick_small)
    picked = [c.split(": ")[1] for c in frame["configuration"].unique()]
    assert len(picked) == 2 and frame["samples"].tolist() == [2, 3, 2, 3]
    for cid in picked:
        again = layout.cell_folder(table_dir, cid, 0)
        assert layout.checkpoint(again, 2).exists()
        assert read_cell(again / layout.CELL_ROWS).rows == read_cell(kept[cell_ids(params).index(cid)]).rows
    assert caplog.text.count("a kept cell keeps none") == 2 and "differ" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lsh"):
        pd.testing.assert_frame_equal(ls_samples(params, table_dir, ptb_quick_small), frame)
    assert "a kept cell keeps none" not in caplog.text and "epoch 1" not in caplog.text, "nothing trained again"


@pytest.mark.slow
def test_a_live_grid_run_and_its_replay_on_the_table_select_alike_round_by_round(tmp_path, ptb_quick):
    """The smoke preset on a small grid with the grid proposer, run live by Snakemake, and the study's
    table of the same params: the replay's repeat 0 ranks every round as the live run did and selects
    the same configuration. Then `snakemake study` writes the whole report, and has nothing left to do."""
    project = copy_project(tmp_path, ptb_quick)
    raw = config.load_params(project / SMOKE)
    raw["space"] = SMALL_SPACE
    raw["data"]["train_tokens"] = 8_000  # the live run and the table are compared with each other only: short epochs
    raw["search"].update({"proposer": "grid", "n": 6})
    raw["study"].update({"pools": [6], "repeats": 2})
    (project / "small.yaml").write_text(config.dump(raw))
    params = Params.from_dict(config.validate(raw))
    out = run([str(BIN / "snakemake"), "all", "study", "--cores", "2", "--configfile", "small.yaml"], project,
              timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    results = project / "results"
    table = Table.load(results / "study" / "table")
    assert [cid for cid, _ in table.configs] == cell_ids(params)[1:] and len(table.configs) == 8
    outcome = replay(table, Strategy(kind="lsh", search=params.search), params.space, repeats=1,
                     base_seed=params.seed)[0]
    for r in range(len(plan(params.search).rounds)):
        live = list(csv.DictReader(open(results / "rounds" / f"r{r:02d}" / "ranking.csv")))
        assert [row["candidate"] for row in live] == outcome.rounds[r], f"round {r}"
        configs = {row["candidate"]: table.config_id({k: row[k] if k != "death_rate" else float(row[k])
                                                      for k in COLUMNS[1:6]}) for row in live}
        assert all(outcome.candidates[c] == cid for c, cid in configs.items()), f"round {r}"
    selected = json.loads((results / "final" / "selected.json").read_text())
    assert outcome.config == table.config_id(selected["config"])
    # what the report says each other ranker would have kept in round 0 is what the replay of that ranker keeps
    # there (the same pool: the grid proposer's)
    from lsh.report.regime import alternatives_table
    from lsh.report.run import load_run

    others = alternatives_table(load_run(params, results)).set_index(["round", "ranker"])
    survivors = plan(params.search).rounds[0].survivors
    for ranker in ("loss", "loss_gap", "tse"):
        search = dataclasses.replace(params.search, ranker=ranker)
        other = replay(table, Strategy(kind="lsh", search=search), params.space, repeats=1, base_seed=params.seed)[0]
        assert others.loc[(0, ranker), "kept"].split() == other.rounds[0][:survivors], ranker
    # the same perplexity of bitwise the same training (lsh.study.table) through two records: at most a rounding
    # or two apart (JSON keeps every bit)
    assert outcome.valid_ppl == pytest.approx(selected["valid_ppl"], rel=accumulated(EPS64, 2), abs=0)

    report = results / "study" / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted(STUDY_REPORT_FILES)
    summary = (report / "summary.md").read_text()
    assert "## Verdict" in summary and "Spearman" in summary and "replayed 2 times" in summary
    replays = pd.read_csv(results / "study" / "replays.csv")
    assert set(replays["group"]) == {"methods", "ls_options", "schedules"} and (replays["repeat"].max() == 1)
    again = run([str(BIN / "snakemake"), "all", "study", "-n", "--cores", "1", "--configfile", "small.yaml"], project)
    assert "Nothing to be done" in again.stdout + again.stderr

    # the age-fair option: a live run scoring everyone at the pool's common epoch, replayed on the same table
    raw["search"].update({"age": "common", "ranker": "loss_gap"})
    raw["results"] = "common"
    (project / "common.yaml").write_text(config.dump(raw))
    fair = Params.from_dict(config.validate(raw))
    out = run([str(BIN / "snakemake"), "all", "--cores", "2", "--configfile", "common.yaml"], project, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    outcome = replay(table, Strategy(kind="lsh", search=fair.search), fair.space, repeats=1, base_seed=fair.seed)[0]
    rankings = [list(csv.DictReader(open(project / "common" / "rounds" / f"r{r:02d}" / "ranking.csv")))
                for r in range(len(plan(fair.search).rounds))]
    assert len({row["epoch"] for row in rankings[-1]}) > 1, "the last round mixes ages"
    assert [[row["candidate"] for row in live] for live in rankings] == outcome.rounds
    selected = json.loads((project / "common" / "final" / "selected.json").read_text())
    assert outcome.config == table.config_id(selected["config"])


# --- statistics over what varies: training seeds, configurations, their structure ------------------


def seed_replays(spread: float, noise: float = 1.0, seeds: int = 3, repeats: int = 20) -> pd.DataFrame:
    """Replays of one strategy whose training seeds' means lie `spread` apart, repeats scattered by `noise`."""
    rng = np.random.default_rng(11)
    seed = np.arange(seeds * repeats) % seeds
    ppl = 100 + spread * seed + noise * rng.normal(size=len(seed))
    return pd.DataFrame({"strategy": "a", "n": 6, "repeat": np.arange(len(seed)), "seed": 1111 + seed,
                         "test_ppl": ppl, "regret": ppl - 100, "candidate_epochs": 14, "selects_best": False,
                         "config": "g00"})


def test_one_training_seed_gives_no_interval_over_seeds():
    row = summarise_methods(seed_replays(5.0, seeds=1)).iloc[0]
    assert row["seeds"] == 1 and math.isfinite(row["test_ppl"]) and math.isfinite(row["regret"])
    assert all(math.isnan(row[k]) for k in ("test_ppl_low", "test_ppl_high", "regret_low", "regret_high"))


def test_the_interval_over_seeds_is_the_t_interval_of_the_seeds_means():
    replays = seed_replays(5.0)
    row = summarise_methods(replays).iloc[0]
    means = replays.groupby("seed")["test_ppl"].mean().to_numpy()
    low, high = stats.t.interval(0.95, len(means) - 1, loc=means.mean(), scale=stats.sem(means))
    # float64: the same 60 perplexities near 110 summed per seed and over seeds in other orders, then
    # the t quantile times a standard error of about 3 (the tolerance on the bounds: the mean's, and
    # the standard error's relative rounding carried through the quantile 4.3)
    tol = accumulated(EPS64, len(replays) + 3, 120.0)
    assert row["seeds"] == 3 and row["test_ppl"] == pytest.approx(means.mean(), abs=tol)
    assert (row["test_ppl_low"] == pytest.approx(low, abs=10 * tol)
            and row["test_ppl_high"] == pytest.approx(high, abs=10 * tol))


def test_the_interval_over_seeds_widens_when_the_training_seeds_disagree_more():
    width = lambda r: (r["test_ppl_high"] - r["test_ppl_low"]).iat[0]  # noqa: E731
    agree, disagree = (summarise_methods(seed_replays(spread)) for spread in (0.5, 20.0))
    assert width(disagree) > 10 * width(agree)
    assert disagree["test_ppl_low"].iat[0] < disagree["test_ppl"].iat[0] < disagree["test_ppl_high"].iat[0]


def test_repeat_sd_is_the_proposers_scatter_on_one_seeds_table():
    """Seeds of equal means, repeats scattered by `noise`: repeat_sd reads the noise (20 draws per seed, so
    within a third of it), and grows with it; it is a description, not the interval."""
    quiet, noisy = (summarise_methods(seed_replays(0.0, noise=noise)).iloc[0] for noise in (0.1, 10.0))
    assert 0.1 * 2 / 3 < quiet["repeat_sd"] < 0.1 * 4 / 3 and 10 * 2 / 3 < noisy["repeat_sd"] < 10 * 4 / 3


def test_the_paired_difference_over_seeds_sees_what_each_seeds_luck_hides_in_the_means():
    """Seeds 20 apart shared by both strategies: their own intervals overlap, their paired difference's t
    interval does not reach zero, the better one is the lower on every seed, and with 3 seeds the sign
    test's p is 2 / 2**3."""
    lsh = seed_replays(20.0, noise=0.5).assign(strategy="LSH-tpe")
    other = seed_replays(20.0, noise=0.5).assign(strategy="loss-tpe", test_ppl=lambda f: f["test_ppl"] - 1.5)
    rows = summarise_methods(pd.concat([lsh, other]), reference="LSH-tpe").set_index("strategy")
    assert rows.at["loss-tpe", "test_ppl_low"] < rows.at["LSH-tpe", "test_ppl_high"], "the means' intervals overlap"
    # float64: 1.5 taken from perplexities below 150, then means of 60 paired differences per seed and of the seeds
    tol = accumulated(EPS64, 2 * len(lsh) + 2, 150.0)
    assert rows.at["loss-tpe", "vs_reference"] == pytest.approx(-1.5, abs=tol)
    assert rows.at["loss-tpe", "vs_reference_high"] < 0
    assert rows.at["loss-tpe", "lower_seeds"] == 3 and rows.at["loss-tpe", "vs_reference_p_sign"] == 0.25
    itself = rows.loc["LSH-tpe"]  # every difference exactly 0: no seed lower, no sign test
    assert (itself["vs_reference"], itself["vs_reference_low"], itself["vs_reference_high"]) == (0, 0, 0)
    assert itself["lower_seeds"] == 0 and math.isnan(itself["vs_reference_p_sign"])
    assert "vs_reference" not in summarise_methods(lsh), "no reference, no difference"


def test_the_paired_difference_has_no_interval_with_one_training_seed():
    lsh = seed_replays(0.0, seeds=1).assign(strategy="LSH-tpe")
    other = lsh.assign(strategy="random", test_ppl=lambda f: f["test_ppl"] + 2.0)
    row = summarise_methods(pd.concat([lsh, other]), reference="LSH-tpe").set_index("strategy").loc["random"]
    tol = accumulated(EPS64, 2 * len(lsh) + 2, 150.0)  # as above: 2.0 added to perplexities near 100, then means
    assert row["vs_reference"] == pytest.approx(2.0, abs=tol) and row["lower_seeds"] == 0
    assert math.isnan(row["vs_reference_low"]) and math.isnan(row["vs_reference_high"])
    assert row["vs_reference_p_sign"] == 1.0, "one seed, one sign: p = 1"


def test_the_seed_test_of_the_studys_three_gaps_is_the_t_interval_and_the_sign_test():
    """The per-seed gaps the calibrated study measured (loss-tpe minus LSH-tpe): a t interval over 3 seeds
    that includes zero, and 'lower on 3 of 3' is p = 0.25."""
    from lsh.study.statistics import seed_test

    gaps = np.array([-1.25, -0.55, -1.87])
    t = seed_test(gaps)
    low, high = stats.t.interval(0.95, 2, loc=gaps.mean(), scale=stats.sem(gaps))
    tol = accumulated(EPS64, 6, 2.0)  # float64 sums of 3 numbers below 2, through the same formulas
    assert t.mean == pytest.approx(gaps.mean(), abs=tol) and t.seeds == 3 and t.lower == 3
    assert (t.low, t.high) == pytest.approx((low, high), abs=10 * tol) and t.low < 0 < t.high
    assert t.p_sign == 0.25 and t.clear_of_zero() is False


def test_seeds_for_power_is_where_a_simulated_paired_t_test_first_reaches_80_percent():
    """The noncentral t against a simulation: at the seeds it names, 20,000 simulated experiments detect a
    difference of 1 at least 78 % of the time (the simulation's own standard error is 0.3 %), one seed fewer
    below 80 %."""
    from lsh.study.statistics import sign_test_seeds

    rng = np.random.default_rng(2)

    def simulated(s: int, sd: float) -> float:
        gaps = 1.0 + sd * rng.normal(size=(20_000, s))
        t = gaps.mean(axis=1) / (gaps.std(axis=1, ddof=1) / math.sqrt(s))
        return float((np.abs(t) > stats.t.ppf(0.975, s - 1)).mean())

    for sd in (0.66, 1.5):
        s = seeds_for_power(sd)
        assert s is not None and simulated(s, sd) > 0.78 and simulated(s - 1, sd) < 0.8, sd
    assert seeds_for_power(float("nan")) is None and seeds_for_power(0.0) is None
    assert sign_test_seeds() == 6 and stats.binomtest(6, 6).pvalue < 0.05 < stats.binomtest(5, 5).pvalue


def verdict_with(gap: SeedTest, seeds: int = 3, signal_gap: SeedTest | None = None) -> Verdict:
    signal = Signal(spearman=Estimate(0.5, 0.1, 0.8), pearson=0.5, recall=0.5, within=Estimate(0.4),
                    partial=Estimate(0.1))
    return Verdict(epoch=2, seeds=seeds, ls=signal, loss_gap=signal, labels_spearman=Estimate(0.7),
                   signal_gap=signal_gap or SeedTest(mean=-0.4, low=-0.9, high=0.1, p_sign=0.25, lower=3, seeds=seeds,
                                                     sd=0.2),
                   lsh=Method(test_ppl=Estimate(191.0, 190.0, 192.5), regret=4.0, candidate_epochs=24.8, charged=28.8),
                   loss=Method(test_ppl=Estimate(190.0, 189.0, 191.0), regret=3.0, candidate_epochs=24.0, charged=24.0),
                   loss_vs_lsh=gap, seeds_for_one=seeds_for_power(gap.sd), best=187.0, n=6, proposer="tpe")


def test_the_verdict_on_lsh_against_the_loss_search_rests_on_the_t_interval_over_seeds():
    clear = method_words(verdict_with(SeedTest(mean=-1.2, low=-2.1, high=-0.4, p_sign=0.25, lower=3, seeds=3, sd=0.3)))
    assert "LSH does not do better: paired within training seeds, the loss-based search's selection minus LSH's " \
           "is -1.20 [-2.10, -0.40] (sign test p = 0.25)" in clear
    assert "the lower on 3 of 3 training seeds; the t interval of the difference is clear of zero." in clear
    assert "cannot reach p < 0.05 with fewer than 6 seeds, so 'lower on 3 of 3 seeds' is p = 0.25" in clear
    assert "LSH (28.8 candidate-epochs with the dense reference's 4.0)" in clear, "the dense reference is charged"
    assert f"would need {seeds_for_power(0.3)} training seeds to detect a true difference of 1" in clear
    unclear = method_words(verdict_with(SeedTest(mean=-1.0, low=-2.0, high=0.5, p_sign=0.5, lower=2, seeds=3, sd=0.6)))
    assert "the t interval of the difference includes zero: the difference is not established." in unclear
    one = method_words(verdict_with(SeedTest(mean=-1.0, low=math.nan, high=math.nan, p_sign=1.0, lower=1, seeds=1,
                                             sd=math.nan), seeds=1))
    assert "no interval over training seeds exists" in one and "sign test cannot" not in one and "power" not in one
    assert "cannot reach" not in method_words(verdict_with(
        SeedTest(mean=-1.0, low=-2.0, high=0.5, p_sign=0.1, lower=7, seeds=10, sd=1.0), seeds=10))


def test_the_early_signals_are_compared_by_their_difference_paired_within_seeds():
    """Not by whether their own intervals overlap: the per-seed difference of the Spearman coefficients."""
    words = signal_words(verdict_with(SeedTest(mean=-1.0, low=-2.0, high=0.5, p_sign=0.5, lower=2, seeds=3, sd=0.6),
                                      signal_gap=SeedTest(mean=-0.44, low=-0.6, high=-0.3, p_sign=0.25, lower=3,
                                                          seeds=3, sd=0.06)))
    assert ("paired within training seeds, the LS distance's Spearman minus the loss gap's is -0.44 [-0.60, -0.30] "
            "(sign test p = 0.25), the LS distance's the higher on 0 of 3 seeds; the t interval of the difference is "
            "clear of zero (the t test establishes it; the sign test cannot with 3 seeds).") in words
    unclear = signal_words(verdict_with(SeedTest(mean=-1.0, low=-2.0, high=0.5, p_sign=0.5, lower=2, seeds=3, sd=0.6),
                                        signal_gap=SeedTest(mean=-0.2, low=-0.9, high=0.5, p_sign=1.0, lower=2,
                                                            seeds=3, sd=0.3)))
    assert "the LS distance's the higher on 1 of 3 seeds; the t interval of the difference includes zero" in unclear


def test_method_summaries_report_candidate_epochs_with_dense_where_the_replays_have_it():
    replays = seed_replays(1.0)
    assert "candidate_epochs_with_dense" not in summarise_methods(replays)
    row = summarise_methods(replays.assign(candidate_epochs_with_dense=18.0)).iloc[0]
    assert row["candidate_epochs_with_dense"] == 18.0 and row["candidate_epochs"] == 14.0


@pytest.mark.parametrize("name, reference", [("pearson", stats.pearsonr), ("spearman", stats.spearmanr),
                                             ("kendall", stats.kendalltau)])
def test_weighted_coefficients_equal_scipys_on_the_sample_the_weights_expand_to(name, reference):
    from lsh.study.statistics import WEIGHTED

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=12), rng.normal(size=12)
    x[3] = x[4]
    w = rng.integers(0, 4, size=(3, 12)).astype(float)
    got = WEIGHTED[name](x, y, w)
    for row, value in zip(w, got):
        keep = np.repeat(np.arange(12), row.astype(int))
        assert value == pytest.approx(reference(x[keep], y[keep])[0], abs=coefficient_tol(len(keep)))


def test_the_pooled_interval_draws_a_configuration_with_all_its_seeds():
    """Seeds that repeat their configuration exactly add no independent evidence: the pooled interval is
    that of one seed, where a bootstrap of points would have narrowed it."""
    from lsh.study.statistics import cluster_coefficient_with_interval

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=10), rng.normal(size=10)
    ids = np.array([f"g{i:02d}" for i in range(10)])
    one = cluster_coefficient_with_interval(x, y, ids, "spearman", seed=2)
    twice = cluster_coefficient_with_interval(np.tile(x, 2), np.tile(y, 2), np.tile(ids, 2), "spearman", seed=2)
    assert twice == pytest.approx(one, abs=coefficient_tol(20))  # the same coefficients, of 20 points and of 10
    points = cluster_coefficient_with_interval(np.tile(x, 2), np.tile(y, 2), np.arange(20), "spearman", seed=2)
    assert points[2] - points[1] < one[2] - one[1]


def two_seed_signals() -> tuple[Table, pd.DataFrame, pd.DataFrame]:
    params = small_params()
    table = synthetic_table(params, seeds=2)
    points = signal_points(table, [1, 2], options=[("pca", "l2", "blocks", "pair")])
    return table, points, signal_table(points, seed=1)


def test_every_signal_has_a_row_per_training_seed_and_a_pooled_row_at_every_epoch():
    table, points, signals = two_seed_signals()
    assert set(points["seed"]) == set(table.seeds)
    for (cid, seed), final in points.groupby(["config", "seed"])["final_test_ppl"]:
        assert set(final) == {table.final(cid, seed)["test_ppl"]}
    expected = {str(s) for s in table.seeds} | {"pooled"}
    for (name, epoch), rows in signals.groupby(["signal", "epoch"]):
        assert set(rows["seeds"]) == expected and len(rows) == 3, (name, epoch)
        assert rows.set_index("seeds")["n"].to_dict() == {**{str(s): 8 for s in table.seeds}, "pooled": 16}
    assert set(signals["signal"]) >= {"loss_gap", "train_loss", "valid_ppl", "ls:pca-l2-blocks-pair", "labels_only"}
    assert set(signals["epoch"]) == {1, 2}


def test_what_a_seed_adds_to_every_value_is_no_pooled_signal():
    """Two seeds that agree within themselves, the second a much luckier run of all: pooled over seeds the
    signal agrees as well as within each (a selection compares candidates within one seed)."""
    rng = np.random.default_rng(3)
    final = rng.normal(300, 20, size=8)
    one = pd.DataFrame({"config": [f"g{i:02d}" for i in range(8)], "epoch": 1, "death": ["SET", "magnitude"] * 4,
                        "init": "uniform", "growth": "random", "redistribution": "none", "death_rate": 0.8,
                        "final_test_ppl": final, "probe": final * 0.01 + rng.normal(0, 0.02, size=8)})
    points = pd.concat([one.assign(seed=1), one.assign(seed=2, final_test_ppl=final - 1000, probe=one["probe"] + 5)])
    signals = signal_table(points, seed=1).set_index(["signal", "seeds"])
    within = signals.loc[("probe", "1"), "pearson"]
    # pooled, each seed's values are z-scored: their float64 rounding is relative to the values' size (up to 1e3),
    # that is the spread within a seed times this factor
    spread = max(points[c].abs().max() / points.groupby("seed")[c].std().min() for c in ("final_test_ppl", "probe"))
    tol = two_ways(EPS64, 3 * len(points), spread)
    assert within > 0.9 and signals.loc[("probe", "pooled"), "pearson"] == pytest.approx(within, abs=tol)


def test_a_per_seed_row_is_the_signal_table_of_that_seed_alone():
    table, points, signals = two_seed_signals()
    second = table.seeds[1]
    alone = signal_table(points[points["seed"] == second], seed=1)
    alone = alone[alone["seeds"] == str(second)].reset_index(drop=True)
    mine = signals[signals["seeds"] == str(second)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, alone)


def structured_points(signal) -> pd.DataFrame:
    """The small grid's 8 configurations, one seed, one epoch: a final perplexity driven by the death method
    plus a part no additive model of the choices explains, and a signal computed from each point."""
    params = small_params()
    table = synthetic_table(params)
    points = signal_points(table, [1], options=[])
    rest = np.array([0.0, 7.0, 3.0, 1.0, 6.0, 2.0, 5.0, 4.0])  # not additive in init, death, redistribution
    points["final_test_ppl"] = 100 + 50 * (points["death"] == "SET") + rest
    points["probe"] = [signal(p) for _, p in points.iterrows()]
    return points


def probe_row(points: pd.DataFrame) -> pd.Series:
    signals = signal_table(points, seed=1)
    return signals[(signals["signal"] == "probe") & (signals["seeds"] == "pooled")].iloc[0]


def test_a_signal_that_is_a_function_of_the_death_method_adds_nothing_beyond_the_structure():
    row = probe_row(structured_points(lambda p: {"magnitude": 1.0, "SET": 2.0}[p["death"]]))
    assert row["spearman"] > 0.8, "it ranks the groups, which is all it knows"
    # no coefficient where a group's signal is constant, and 0 by construction where the design explains the
    # signal's ranks (lsh.study.statistics._partial): exact
    assert math.isnan(row["within_death"]) or row["within_death"] == 0.0
    assert row["partial_spearman"] == 0.0


def test_a_signal_equal_to_the_outcome_keeps_partial_spearman_one_where_the_choices_leave_something():
    row = probe_row(structured_points(lambda p: p["final_test_ppl"]))
    one = pytest.approx(1.0, abs=coefficient_tol(8))  # a coefficient of 8 equal pairs
    assert row["spearman"] == one and row["within_death"] == one
    assert row["partial_spearman"] == one
    assert row["partial_spearman_low"] == one and row["partial_spearman_high"] == one


def least_squares_tol(table: Table, seed: int) -> float:
    """labels_only's float64 rounding: leave-one-out least squares on the one-hot design (rows x columns terms)
    amplified by the design's condition number (the worst left-out row), on outcomes of this size."""
    from lsh.study.signals import choice_labels
    from lsh.study.statistics import one_hot_design

    design = one_hot_design(choice_labels(pd.DataFrame([c for _, c in table.configs])))
    cond = max(np.linalg.cond(np.delete(design, i, axis=0)) for i in range(len(design)))
    finals = [table.final(cid, seed)["test_ppl"] for cid, _ in table.configs]
    return accumulated(EPS64, design.size, cond * max(finals))


def test_labels_only_is_exact_on_an_additive_table():
    from lsh.study.signals import labels_only

    params = small_params()
    table = synthetic_table(params)  # configuration i ends at 106 + 10 i: additive in init, death, redistribution
    predicted = labels_only(table, params.seed)
    tol = least_squares_tol(table, params.seed)
    for cid, _ in table.configs:
        assert predicted[cid] == pytest.approx(table.final(cid, params.seed)["test_ppl"], abs=tol)


def test_labels_only_predicts_a_configuration_without_its_own_outcome():
    from lsh.study.signals import labels_only

    params = small_params()
    table = synthetic_table(params)
    before = labels_only(table, params.seed)
    tol = least_squares_tol(table, params.seed)  # the same least squares on the same numbers, maybe other kernels
    table.rows.loc[table.rows["config"] == "g03", "test_ppl"] += 57.0
    after = labels_only(table, params.seed)
    assert after["g03"] == pytest.approx(before["g03"], abs=tol)
    assert any(abs(after[c] - before[c]) > 1 for c in before if c != "g03"), "the others learn from g03"


def study_replays(params: Params, seeds: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Replays, anytime curves, the sensitivity (replayed on the synthetic table) and ls_samples as the
    study's report reads them, of a few strategies."""
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for group, name in [("methods", s) for s in ("LSH-grid", "loss-grid", "random", "full-training")] + \
            [("ls_options", "LSH-grid pca-l2-blocks-pair"), ("schedules", "LSH-grid e0=1 ei=1")]:
        for r in range(6):
            offset, ppl = 1000 * (r % seeds), 110 + 5 * rng.normal()
            rows.append({"group": group, "strategy": name, "kind": "lsh", "n": 6, "e0": 1, "ei": 1, "repeat": r,
                         "seed": params.seed + r % seeds, "config": "g01", "test_ppl": offset + ppl,
                         "valid_ppl": ppl, "regret": ppl - 106, "candidate_epochs": 14, "selects_best": r == 0})
            curves += [{"strategy": name, "n": 6, "repeat": r, "candidate_epoch": e, "incumbent_test_ppl": offset + ppl}
                       for e in range(1, 15) if group == "methods"]
    samples = pd.DataFrame({"configuration": ["best: g00"], "samples": [2], "max": [0.1], "mean": [0.0],
                            "variance": [1.0], "max_difference": [0.0], "mean_difference": [0.0],
                            "variance_difference": [0.0]})
    variations = sensitivity(params, synthetic_table(params, seeds=seeds), 6)
    return pd.DataFrame(rows), pd.DataFrame(curves), variations, samples


@pytest.mark.parametrize("seeds", [1, 2])
def test_the_report_gives_signals_per_seed_and_pooled_and_methods_over_training_seeds(tmp_path, monkeypatch, seeds):
    import functools

    from lsh.stages import study

    params = small_params()
    params = dataclasses.replace(params, study=dataclasses.replace(params.study, seeds=seeds))
    default = (params.search.embedding, params.search.distance, params.lyapunov.layout, params.search.pca_fit)
    monkeypatch.setattr(study, "signal_points", functools.partial(signal_points, options=[default]))  # no t-SNE
    folder = save_table(synthetic_table(params, seeds=seeds), tmp_path / "table")
    replays, anytime, sensitivity, samples = study_replays(params, seeds)
    headline = write_study(params, folder, tmp_path / "report", replays=replays, anytime=anytime,
                           sensitivity=sensitivity, samples=samples)
    report = tmp_path / "report"
    signals = pd.read_csv(report / "early_signals.csv", dtype={"seeds": str})
    assert {"seeds", "within_death", "within_death_low", "within_death_high", "partial_spearman",
            "partial_spearman_low", "partial_spearman_high", "top_quarter_recall"} <= set(signals.columns)
    assert set(signals["seeds"]) == {str(params.seed + k) for k in range(seeds)} | {"pooled"}
    assert "labels_only" in set(signals["signal"])
    methods = pd.read_csv(report / "methods.csv")
    assert set(methods["seeds"]) == {seeds} and methods["test_ppl_low"].isna().all() == (seeds == 1)
    text = (report / "methods.md").read_text()
    assert text.startswith("# Methods\n") and "equal budget" not in text and "candidate-epochs" in text
    assert ("no interval over training seeds exists" in text) == (seeds == 1)
    assert ("95 % t interval over the training seeds" in text) == (seeds > 1) and "| seeds |" in text
    assert headline["seeds"] == seeds and math.isfinite(headline["ls_spearman_value"])
    summary = (report / "summary.md").read_text()
    assert "labels alone" in summary and "Sensitivity (`sensitivity.md`)" in summary
    assert (report / "sensitivity.md").read_text().startswith("# Sensitivity of the comparison")


def test_the_sensitivity_replays_the_comparison_at_each_e0_without_each_configuration_and_with_other_rankers():
    params = small_params()  # n = 6, e0 = ei = 1, the grid proposer, 4 epochs
    table = synthetic_table(params, seeds=2)
    frame = sensitivity(params, table, 6)
    assert list(frame["kind"].unique()) == ["as run", "e0", "leave_out", "ranker"]
    assert plan(dataclasses.replace(params.search, e0=4)).last_epoch == 5, "e0 = 4's rounds run past the 4 epochs"
    assert list(frame.loc[frame["kind"] == "e0", "setting"]) == ["e0 = 2", "e0 = 3"]
    assert list(frame.loc[frame["kind"] == "leave_out", "setting"]) == [f"without {cid}" for cid, _ in table.configs]
    ranker = frame[frame["kind"] == "ranker"].set_index("setting")
    assert list(ranker.index[ranker["post_hoc"]]) == ["LS raw-cosine-pair"], "only the option chosen from the data"
    # the study's own comparison, as the replays give it
    search = dataclasses.replace(params.search, n=6, mode="lsh", age="own")
    lsh, loss = (replay(table, Strategy(kind="lsh", search=dataclasses.replace(search, ranker=r)), params.space,
                        params.study.repeats, params.seed) for r in ("ls", "loss"))
    test = paired_over_seeds([o.test_ppl for o in loss], np.array([o.seed for o in loss]),
                             [o.test_ppl for o in lsh], np.array([o.seed for o in lsh]))
    run = frame[frame["kind"] == "as run"].iloc[0]
    assert (run["loss_vs_lsh"], run["loss_lower_seeds"], run["seeds"]) == (test.mean, test.lower, 2)
    assert run["lsh_candidate_epochs"] == np.mean([o.candidate_epochs + o.dense_epochs for o in lsh]) > \
        run["loss_candidate_epochs"], "LSH is charged its dense reference"


def test_a_left_out_configuration_is_never_proposed_nor_selected():
    from lsh.study.sensitivity import _replay_pair, variants

    params = small_params()
    table = synthetic_table(params)
    for variant in [v for v in variants(params, table, 6) if v.drop in ("g00", "g05")]:
        for outcomes in _replay_pair((table, variant, params.space, 4, params.seed)):
            for o in outcomes:
                assert o.config != variant.drop and variant.drop not in o.candidates.values()


def test_the_sensitivity_words_name_the_configuration_that_moves_the_difference_most():
    def row(kind, setting, gap, post_hoc=False):
        return {"kind": kind, "setting": setting, "post_hoc": post_hoc, "seeds": 3, "lsh_test_ppl": 191.0,
                "loss_test_ppl": 191.0 + gap, "loss_vs_lsh": gap, "loss_vs_lsh_low": gap - 1,
                "loss_vs_lsh_high": gap + 1, "sign_p": 0.25, "loss_lower_seeds": 3, "lsh_candidate_epochs": 28.8,
                "loss_candidate_epochs": 24.0}
    frame = pd.DataFrame([row("as run", "e0 = 2", -1.2), row("e0", "e0 = 1", -0.3), row("e0", "e0 = 3", 0.2),
                          row("leave_out", "without g00", -1.1), row("leave_out", "without g01", -0.4),
                          row("ranker", "LS raw-cosine-pair", 0.1, post_hoc=True),
                          row("ranker", "LS raw-l2-pair", -1.0)])
    points = pd.DataFrame([{"config": c, "seed": s, "epoch": e, "final_test_ppl": f, "loss_gap": g, "ls": ls}
                           for s in (1, 2, 3) for e in (1, 2, 3, 4)
                           for c, f, g, ls in (("g00", 190, 0.3, 1.0), ("g01", 185, 0.1, 9.0 if e == 2 else 0.5),
                                               ("g02", 195, 0.2, 5.0))])
    words = sensitivity_words(frame, points, "ls", 2)
    assert "at e0 = 1 -0.30 [-1.30, 0.70] (lower on 3 of 3 seeds); e0 = 2 -1.20 [-2.20, -0.20]" in words
    assert "most of all g01 (-0.40 [-1.40, 0.60] without it)" in words
    assert ("g01 ranks 1 by final test perplexity; at e0 = 2 the LS distance ranks it 3 and the loss gap 1, "
            "at epoch 4 the LS distance 1.") in words
    assert ("With the raw-cosine-pair LS ranker, chosen after looking at this study's data "
            "(so it tests nothing)") in words
    assert "raw-l2" not in words, "only the post hoc option is in the summary; the rest are in sensitivity.md"


def test_a_replay_records_the_dense_epochs_it_needs_its_finalists_age_and_the_newcomers_it_kept():
    params = small_params()
    table = synthetic_table(params)
    search = dataclasses.replace(params.search, n=6, proposer="grid")  # round 0: 6 -> 3 (+1 new); round 1: 4 -> 2
    for ranker, needs_dense in (("ls", True), ("loss_gap", True), ("loss", False), ("tse", False)):
        for age in ("own", "common"):
            strategy = Strategy(kind="lsh", search=dataclasses.replace(search, ranker=ranker, age=age))
            outcome = replay(table, strategy, params.space, repeats=1, base_seed=params.seed)[0]
            newcomer = set(outcome.rounds[1]) - set(outcome.rounds[0])
            assert len(newcomer) == 1, outcome.rounds
            kept = newcomer <= set(outcome.rounds[1][:2])
            assert outcome.newcomers_kept == (1.0 if kept else 0.0), (ranker, age)
            # the mean of 2 small whole epochs: exact in float64
            assert outcome.finalist_epoch == ((1 + 2) / 2 if kept else 2.0), (ranker, age)
            scored = 2 if age == "own" else 1  # round 1 mixes epochs 2 (survivors) and 1 (the newcomer)
            assert outcome.dense_epochs == (scored if needs_dense else 0), (ranker, age)


# --- Optuna's TPE with the Lyapunov pruner (lsh.pruner) ---------------------------------------------


def lyapunov_strategy(params: Params, **kwargs) -> Strategy:
    search = dataclasses.replace(params.search, n=6)  # rounds at epochs 1 and 2: the pruner's rungs
    budget = kwargs.pop("budget", lsh_budget(search, params.final_epochs))
    return Strategy(kind="optuna_ls", search=search, budget=budget, **{"startup": 1, **kwargs})


def test_the_lyapunov_pruned_optuna_replay_spends_at_most_its_budget_and_compares_the_dense_epochs_of_its_rungs():
    params = small_params()
    table = synthetic_table(params)
    strategy = lyapunov_strategy(params)
    for outcome in replay(table, strategy, params.space, repeats=4, base_seed=params.seed):
        assert 0 < outcome.candidate_epochs <= strategy.budget == 16
        assert len(outcome.incumbent) == outcome.candidate_epochs and outcome.config in dict(table.configs)
        assert outcome.dense_epochs == 2, "the last rung compared: the LSH schedule's last round"
    generous = lyapunov_strategy(params, budget=1000)  # the space runs out: no configuration's epoch paid twice
    for outcome in replay(table, generous, params.space, repeats=2, base_seed=params.seed):
        assert outcome.candidate_epochs <= len(table.configs) * table.final_epochs


def test_the_lyapunov_pruned_optuna_replay_is_reproducible():
    params = small_params()
    table = synthetic_table(params)
    strategy = lyapunov_strategy(params, startup=None)
    runs = [replay(table, strategy, params.space, repeats=3, base_seed=params.seed) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_the_lyapunov_pruned_optuna_replay_prunes_the_trials_farther_from_the_dense_spectra(monkeypatch):
    """On the synthetic table a configuration's spectrum drifts from the dense one in proportion to its
    index: the distances at a rung follow the index, and a trial is pruned there exactly when it is not
    among the nearer half of the trials measured there before it."""
    import optuna

    from lsh.pruner import rung_distances

    studies = []
    create = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda **kw: studies.append(create(**kw)) or studies[-1])
    params = small_params()
    table = synthetic_table(params)
    replay(table, lyapunov_strategy(params, budget=40), params.space, repeats=2, base_seed=params.seed)
    index = lambda t: int(table.config_id(t.params)[1:])  # noqa: E731
    pruned_by_ls = 0
    for study in studies:
        trials = study.trials
        assert all(set(rung_distances(t)) <= {1, 2} for t in trials)
        at_one = {index(t): rung_distances(t)[1] for t in trials if 1 in rung_distances(t)}
        assert len(at_one) >= 4 and stats.spearmanr(list(at_one), list(at_one.values()))[0] > 0.9
        for rung in (1, 2):
            measured = []
            for t in trials:
                if f"lsh_spectrum_{rung}" not in t.user_attrs:
                    continue
                measured.append((rung_distances(t)[rung], t.number))
                kept = len(measured) - len(measured) // 2
                beyond = len(measured) >= 2 and sorted(measured).index(measured[-1]) >= kept
                by_ls = f"at rung {rung}:" in t.user_attrs.get("lsh_pruned", "")
                assert beyond == by_ls, (rung, t.number, measured)
                pruned_by_ls += by_ls
    assert pruned_by_ls > 0


def test_the_summary_names_the_lyapunov_pruned_optuna_search_among_the_alternatives():
    row = lambda strategy, ppl: {"strategy": strategy, "n": 6, "seeds": 3, "test_ppl": ppl,  # noqa: E731
                                 "test_ppl_low": ppl - 1, "test_ppl_high": ppl + 1, "candidate_epochs": 16.0,
                                 "vs_reference": ppl - 110, "vs_reference_low": ppl - 111,
                                 "vs_reference_high": ppl - 109, "lower_seeds": 0, "vs_reference_p_sign": 0.25,
                                 "vs_reference_sd": 0.5}
    words = alternatives_words(pd.DataFrame([row("LSH-grid", 110), row("optuna-TPE-lyapunov", 120)]), 6, "grid")
    assert ("Worse than LSH, the t interval of the paired difference clear of zero: Optuna's TPE with the Lyapunov "
            "pruner") in words
