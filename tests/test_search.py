"""The search schedule: pool sizes, epochs and the stop rule, known before any training."""

from __future__ import annotations

import json

import pytest

from lsh import search
from lsh.errors import LshError

from conftest import run_lsh


def schedule(n: int, e0: int = 3, ei: int = 3, eliminate: float = 0.5, insert: float = 0.25, final_pool: int = 2) -> search.Plan:
    return search.plan(dict(n=n, e0=e0, ei=ei, eliminate=eliminate, insert=insert, final_pool=final_pool))


def test_paper_schedule_n40_pool_sizes_and_budget():
    p = schedule(40)
    assert [r.pool for r in p.rounds] == [40, 30, 22, 16, 12, 9, 7, 5, 4]
    assert [r.survivors for r in p.rounds] == [20, 15, 11, 8, 6, 5, 4, 3, 2]
    assert [r.new for r in p.rounds] == [10, 7, 5, 4, 3, 2, 1, 1, 0]
    assert p.rounds[0].candidate_epochs == 120 and p.total_candidate_epochs == 435
    assert p.last_epoch == 3 + 8 * 3 and p.final_pool == 2


@pytest.mark.parametrize(
    "n, pools, total",
    [
        (24, [24, 18, 13, 10, 7, 5, 4], 3 * (24 + 18 + 13 + 10 + 7 + 5 + 4)),
        (30, [30, 22, 16, 12, 9, 7, 5, 4], 3 * (30 + 22 + 16 + 12 + 9 + 7 + 5 + 4)),
    ],
)
def test_schedule_for_n24_and_n30(n, pools, total):
    p = schedule(n)
    assert [r.pool for r in p.rounds] == pools
    assert p.total_candidate_epochs == total


def test_epochs_differ_for_new_and_carried_candidates():
    p = schedule(8, e0=6, ei=3)
    r1 = p.rounds[1]
    assert r1.carried == 4 and r1.pool == 6
    assert r1.candidate_epochs == 4 * 3 + 2 * 6
    assert p.last_epoch == 6 + 3 * (len(p.rounds) - 1)


def test_rounds_stop_once_the_survivors_fit_the_final_pool():
    p = schedule(6, final_pool=3)
    assert [(r.pool, r.survivors, r.new) for r in p.rounds] == [(6, 3, 0)]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(insert=0.5), "search.insert: 0.5 must be less than search.eliminate"),
        (dict(n=2), "search.n: 2 must be greater than search.final_pool"),
        (dict(n=5, eliminate=0.1, insert=0.0), "search.eliminate: 0.1 removes no candidate from a pool of 5"),
    ],
)
def test_impossible_schedules_are_refused_by_name(kw, message):
    with pytest.raises(LshError, match=message):
        schedule(**{"n": 8, **kw})


def test_plan_json_has_rounds_and_total():
    out = run_lsh("plan", "--json", "--set", "search.n=40", "--set", "search.e0=3", "--set", "search.ei=3")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["total_candidate_epochs"] == 435
    assert {"round", "pool", "survivors", "new", "candidate_epochs"} <= set(plan["rounds"][0])
    assert [r["pool"] for r in plan["rounds"]][:3] == [40, 30, 22]


def test_plan_table_is_printed_by_default():
    out = run_lsh("plan")
    assert out.returncode == 0
    assert "total candidate-epochs for selection" in out.stdout
