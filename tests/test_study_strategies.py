"""The study's strategies as data (lsh/study/strategies.py), the replay's next pool shared with the
live search (lsh/schedule.pool_epochs), and the typed verdict (lsh/study/verdict.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from test_study import small_params, synthetic_table

from lsh.schedule import plan, pool_epochs
from lsh.search.proposers import PROPOSERS
from lsh.search.ranking import RANKER_LABELS, RANKERS, method_name
from lsh.study.replay import replay
from lsh.study.strategies import KIND_NAMES, STUDY_PROPOSERS, Strategy, optuna_name, study_strategies


def test_a_strategy_name_is_derived_from_its_settings():
    search = small_params().search
    lsh = Strategy(kind="lsh", search=dataclasses.replace(search, ranker="loss_gap", proposer="tpe"))
    assert lsh.name == "loss-gap-tpe" and lsh.ranker == "loss_gap" and lsh.proposer == "tpe"
    common = Strategy(kind="lsh", search=dataclasses.replace(search, ranker="tse", age="common", proposer="rand"))
    assert common.name == "TSE-rand common-age"
    option = Strategy(kind="lsh", search=dataclasses.replace(search, ranker="ls", proposer="grid", embedding="raw",
                                                              distance="cosine", pca_fit="pair"),
                      layout="sorted", shows="options")
    assert option.name == "LSH-grid raw-cosine-sorted-pair"
    schedule = Strategy(kind="lsh", search=dataclasses.replace(search, ranker="ls", proposer="grid", e0=3, ei=2),
                        shows="schedule")
    assert schedule.name == "LSH-grid e0=3 ei=2"
    assert Strategy(kind="optuna", search=search, pruner="successive_halving", budget=9).name == "optuna-TPE-halving"
    assert Strategy(kind="optuna", search=search, pruner="hyperband", budget=9, startup=1).name == \
        optuna_name("hyperband", matched=True) == "optuna-TPE-hyperband matched"
    assert Strategy(kind="iepoch", search=search).name == KIND_NAMES["iepoch"] == "i-Epoch"


def test_a_runs_report_and_the_study_name_the_same_search_alike():
    """One name function: a run's Table 1 and the study's tables say the same thing for the same settings."""
    from lsh.records import Budget, Selection
    from lsh.report.run import selection_name

    search = dataclasses.replace(small_params().search, ranker="loss_gap", proposer="atpe", age="common")
    budget = Budget(planned_selection_candidate_epochs=0, candidate_epochs={}, total_candidate_epochs=0,
                    wall_seconds={}, total_wall_seconds=0.0, rounds=[])
    selected = Selection(status="ok", mode="lsh", ranker="loss_gap", proposer="atpe", age="common", density=0.33,
                         candidate=None, config=None, valid_ppl=None, test_ppl=None, best_epoch=None,
                         distance_history=[], finalists=[], diverged=[], budget=budget)
    assert selection_name(selected) == Strategy(kind="lsh", search=search).name == "loss-gap-atpe common-age"


def test_every_label_of_a_search_is_typed_once_where_its_table_defines_it():
    """The names tables and figures show (a ranker's label, a kind's, a pruner's) come from their tables: a
    label typed again elsewhere is a second definition that can drift (LSH-TPE against LSH-tpe)."""
    from conftest import REPO
    from test_layout import CODE, string_literals

    from lsh.search import ranking
    from lsh.study import strategies

    tables = (ranking.RANKER_LABELS, strategies.KIND_NAMES, strategies.PRUNER_LABELS)
    keys = {k for table in tables for k in table} | set(ranking.RANKERS) | set(PROPOSERS)
    labels = {v for table in tables for v in table.values()} - keys  # "random" is a key too: not a label only
    defined = {REPO / "lsh" / "search" / "ranking.py", REPO / "lsh" / "study" / "strategies.py"}
    again = [f"{path.relative_to(REPO)}:{line} {value!r}" for path in CODE if path not in defined
             for line, value in string_literals(path)
             if value in labels or any(value.startswith(f"{label}-") and " " not in value for label in labels)]
    assert labels >= {"LSH", "TSE", "loss-gap", "i-Epoch", ranking.FULL_TRAINING} and again == []


def test_every_ranker_and_proposer_has_its_place_in_the_names():
    assert set(RANKER_LABELS) == set(RANKERS)
    assert set(STUDY_PROPOSERS) == set(PROPOSERS) and STUDY_PROPOSERS[0] == "grid"
    assert method_name("ls", "atpe") == "LSH-atpe"


@pytest.mark.parametrize("kind", ["random", "optuna", "optuna_ls"])
def test_a_strategy_that_spends_a_budget_must_be_given_one(kind):
    with pytest.raises(ValueError, match="give budget"):
        Strategy(kind=kind, search=small_params().search, pruner="hyperband")


def test_an_unknown_optuna_pruner_or_name_detail_is_refused():
    search = small_params().search
    with pytest.raises(ValueError, match="optuna pruner 'median'"):
        Strategy(kind="optuna", search=search, pruner="median", budget=9)
    with pytest.raises(ValueError, match="shows 'everything'"):
        Strategy(kind="lsh", search=search, shows="everything")


def test_the_study_names_every_strategy_once_per_group_and_pool():
    params = small_params()
    keys = [(group, s.name, n) for group, s, n in study_strategies(params, 4)]
    assert len(keys) == len(set(keys))


def test_the_next_pool_continues_survivors_then_starts_newcomers():
    search = dataclasses.replace(small_params().search, n=8, e0=2, ei=1, eliminate=0.5, insert=0.25, final_pool=2)
    rounds = plan(search).rounds
    assert pool_epochs(search, 0, [], 8, 10) == [(0, 2)] * 8
    assert pool_epochs(search, 1, [2, 2, 2, 2], 2, 10) == [(2, 3)] * 4 + [(0, 2)] * 2
    assert pool_epochs(search, len(rounds), [4, 3], 0, 10) == [(4, 10), (3, 10)]
    full = dataclasses.replace(search, mode="full")
    assert pool_epochs(full, 0, [], 3, 10) == [(0, 10)] * 3


def test_a_round_without_newcomers_is_not_the_final_pool():
    """With an insert rate that rounds to no newcomers, the rounds go on (the live pool job's rule): the
    survivors continue for ei, they do not jump to final.epochs after the first round."""
    params = small_params(n=8, e0=1, ei=1, eliminate=0.5, insert=0.1, final_pool=1)
    the_plan = plan(params.search)
    assert len(the_plan.rounds) == 3 and not any(r.new for r in the_plan.rounds)
    table = synthetic_table(params)
    outcome = replay(table, Strategy(kind="lsh", search=params.search), params.space, repeats=1,
                     base_seed=params.seed)[0]
    assert [len(order) for order in outcome.rounds] == [r.pool for r in the_plan.rounds]
    last = the_plan.rounds[-1].max_epoch
    assert outcome.candidate_epochs == the_plan.total_candidate_epochs + (table.final_epochs - last)


def test_a_seed_test_is_clear_of_zero_only_with_both_bounds_known():
    from lsh.study.statistics import SeedTest

    assert SeedTest(mean=-1.0, low=-2.0, high=-0.5, p_sign=0.25, lower=3, seeds=3, sd=0.3).clear_of_zero() is True
    assert SeedTest(mean=1.0, low=0.5, high=2.0, p_sign=0.25, lower=0, seeds=3, sd=0.3).clear_of_zero() is True
    assert SeedTest(mean=-1.0, low=-2.0, high=0.5, p_sign=0.25, lower=3, seeds=3, sd=0.3).clear_of_zero() is False
    assert SeedTest(mean=-1.0, low=math.nan, high=-0.5, p_sign=1.0, lower=1, seeds=1,
                    sd=math.nan).clear_of_zero() is None
