"""The search schedule: pool sizes, epochs and the stop rule, known before any training."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from conftest import run_lsh

from lsh.config import DeathRateRange, Params, SearchConfig, SpaceConfig
from lsh.errors import LshError
from lsh.layout import Layout
from lsh.records import Pool, PoolEntry, Spectra
from lsh.schedule import Plan, plan
from lsh.search import proposers, ranking
from lsh.search import space as space_
from lsh.search.proposers import propose
from lsh.stages import pool as stage_pool
from lsh.stages.select import select


def schedule(n: int, e0: int = 3, ei: int = 3, eliminate: float = 0.5, insert: float = 0.25,
             final_pool: int = 2) -> Plan:
    return plan(SearchConfig(mode="lsh", ranker="ls", embedding="pca", distance="l2", pca_fit="pair", proposer="tpe",
                             history="survivors", n=n, e0=e0, ei=ei, eliminate=eliminate, insert=insert,
                             final_pool=final_pool))


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
    out = run_lsh("plan", "--json", "--set", "search.n=40", "--set", "search.e0=3", "--set", "search.ei=3",
                  "--set", "final.epochs=100")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["total_candidate_epochs"] == 435
    assert {"round", "pool", "survivors", "new", "candidate_epochs"} <= set(plan["rounds"][0])
    assert [r["pool"] for r in plan["rounds"]][:3] == [40, 30, 22]


def test_plan_table_is_printed_by_default():
    out = run_lsh("plan")
    assert out.returncode == 0
    assert "total candidate-epochs for selection" in out.stdout


# -----------------------------------------------------------------------------
# Ranking on synthetic spectra whose answer is known

import numpy as np  # noqa: E402
from conftest import REPO  # noqa: E402
from precision import EPS64, accumulated, two_ways  # noqa: E402

from lsh import config  # noqa: E402


def synthetic_spectra(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A dense trajectory over epochs 0..3 and candidates at growing, direction-changing offsets."""
    rng = np.random.default_rng(seed)
    dense = np.cumsum(rng.normal(size=(4, 12)), axis=0) - 5.0
    candidates = {}
    for name, scale in (("near", 0.05), ("mid", 1.5), ("far", 6.0)):
        offset = scale * rng.normal(size=12)
        candidates[name] = dense + offset * np.linspace(0.5, 1.0, 4)[:, None]
    return dense, candidates


@pytest.mark.parametrize("embedding", ["pca", "raw"])
@pytest.mark.parametrize("distance", ["l2", "cosine"])
@pytest.mark.parametrize("fit", ["pair", "pool"])
def test_ls_ranking_orders_candidates_by_their_distance_to_dense(embedding, distance, fit):
    dense, candidates = synthetic_spectra()
    scores = ranking.ls_distances(dense, candidates, embedding=embedding, distance=distance, fit=fit, seed=0)
    assert ranking.rank(scores, list(candidates)) == ["near", "mid", "far"], scores


def test_tsne_pooled_ranking_keeps_the_nearest_candidate_first():
    """t-SNE keeps neighbourhoods, not distances: with the pool embedded together, the candidate
    whose trajectory overlaps the dense one ends nearest and the far one farthest."""
    dense, candidates = synthetic_spectra()
    scores = ranking.ls_distances(dense, candidates, embedding="tsne", distance="l2", fit="pool", seed=0)
    assert ranking.rank(scores, list(candidates)) == ["near", "mid", "far"], scores


def test_raw_l2_distance_is_the_plain_distance_at_the_last_epoch():
    dense, candidates = synthetic_spectra()
    scores = ranking.ls_distances(dense, {"c": candidates["mid"][:3]}, embedding="raw", distance="l2")
    # float64: a difference, 12 squares summed and a root, each rounding relative to the result
    assert scores["c"] == pytest.approx(np.linalg.norm(dense[2] - candidates["mid"][2]), rel=two_ways(EPS64, 14), abs=0)


def test_pca_pair_distance_uses_the_dense_reference_at_the_candidates_epoch():
    dense, candidates = synthetic_spectra()
    from sklearn.decomposition import PCA

    traj = candidates["mid"][:2]  # the candidate is at epoch 1
    points = np.concatenate([dense[:2], traj])
    emb = PCA(n_components=2, random_state=0).fit_transform(points)
    scores = ranking.ls_distances(dense, {"c": traj}, embedding="pca", distance="l2", fit="pair")
    # float64 PCA: an SVD of 4 points of 12 exponents (48 terms' rounding, on the points' size) and a norm
    tol = two_ways(EPS64, 4 * 12, float(np.linalg.norm(points)))
    assert scores["c"] == pytest.approx(np.linalg.norm(emb[1] - emb[3]), abs=tol)


def test_diverged_candidates_rank_last_and_ties_break_by_pool_order():
    dense, candidates = synthetic_spectra()
    bad = candidates["near"].copy()
    bad[2, 3] = np.nan
    scores = ranking.ls_distances(dense, {"nan": bad, "none": None, **candidates}, embedding="raw")
    assert scores["nan"] == scores["none"] == float("inf")
    order = ranking.rank(scores, ["none", "nan", "far", "mid", "near"])
    assert order == ["near", "mid", "far", "none", "nan"]
    assert ranking.rank({"b": 1.0, "a": 1.0, "c": 0.5}, ["b", "a", "c"]) == ["c", "b", "a"]


# -----------------------------------------------------------------------------
# Proposers

SPACE = SpaceConfig.from_dict(config.load_params(REPO / "params.yaml")["space"])


def test_grid_has_24_points_and_inserts_unused_ones_until_exhausted():
    points = space_.grid_points(SPACE)
    assert len(points) == 24 and len({space_.config_key(p) for p in points}) == 24
    assert {p["death_rate"] for p in points} == {SPACE.grid_death_rate}
    first = [p.config for p in propose("grid", SPACE, [], [], 20, seed=1)]
    more = propose("grid", SPACE, [], first, 10, seed=1)
    assert len(more) == 4, "only 4 grid points are left"
    assert {p.source for p in more} == {"grid"}
    assert {space_.config_key(c) for c in first + [p.config for p in more]} == {space_.config_key(p) for p in points}


@pytest.mark.parametrize("proposer", ["tpe", "atpe", "rand"])
def test_proposals_are_distinct_unseen_and_valid(proposer):
    tried = [p.config for p in propose("rand", SPACE, [], [], 6, seed=3)]
    history = [(c, float(i)) for i, c in enumerate(tried)]
    proposals = propose(proposer, SPACE, history, tried, 5, seed=4)
    new = [p.config for p in proposals]
    keys = [space_.config_key(c) for c in new]
    assert len(new) == 5 and len(set(keys)) == 5
    assert not set(keys) & {space_.config_key(c) for c in tried}
    for c in new:
        assert all(c[k] in getattr(SPACE, k) for k in space_.CATEGORICAL)
        assert 0.4 <= c["death_rate"] <= 0.9 and round(c["death_rate"] * 10, 6) == round(c["death_rate"] * 10)
    assert propose(proposer, SPACE, history, tried, 5, seed=4) == proposals, "the same seed proposes the same"


def test_a_continuous_death_rate_is_allowed():
    space = dataclasses.replace(SPACE, death_rate=DeathRateRange(0.4, 0.9, None))
    new = propose("tpe", space, [], [], 4, seed=0)
    assert all(0.4 <= p.config["death_rate"] <= 0.9 for p in new)


def test_tpe_concentrates_where_the_history_is_good_more_than_random():
    space = dataclasses.replace(SPACE, death_rate=DeathRateRange(0.4, 0.9, None))
    good = [dict(init="ER", death=d, growth="random", redistribution="nonzeros", death_rate=0.5 + 0.02 * i)
            for i, d in enumerate(["magnitude", "SET", "threshold", "global_magnitude"])]
    bad = [dict(good[i], init="uniform", redistribution=r, death_rate=0.8 + 0.01 * i)
           for i, r in enumerate(["magnitude", "none"] * 2)]
    history = [(c, 0.1 * (i + 1)) for i, c in enumerate(good)] + [(c, 5.0 + i) for i, c in enumerate(bad)]
    tried = [c for c, _ in history]

    def share(proposer: str) -> float:
        hits = total = 0
        for seed in range(12):
            for p in propose(proposer, space, history, tried, 3, seed=seed):
                hits += p.config["init"] == "ER" and p.config["redistribution"] == "nonzeros"
                total += 1
        return hits / total

    assert share("tpe") > share("rand") + 0.2


def test_initial_pool_has_n_distinct_candidates_from_the_proposer():
    params = Params.from_dict(config.load_params(REPO / "params.yaml"))
    pool = stage_pool.initial_pool(params)
    assert len(pool.slots) == params.search.n
    assert [e.candidate for e in pool.slots] == [space_.candidate_id(i) for i in range(params.search.n)]
    assert all(e.parent is None and e.epochs_after == params.search.e0 for e in pool.slots)
    assert len({space_.config_key(e.config) for e in pool.slots}) == params.search.n
    assert stage_pool.initial_pool(params) == pool


# The survivors' history of one round of the paper's space: the best one is (ER, nonzeros).
SURVIVORS = [
    (dict(init="ER", death="magnitude", growth="random", redistribution="nonzeros", death_rate=0.5), 0.1),
    (dict(init="uniform", death="SET", growth="random", redistribution="none", death_rate=0.8), 1.0),
    (dict(init="uniform", death="threshold", growth="random", redistribution="magnitude", death_rate=0.9), 1.2),
    (dict(init="uniform", death="global_magnitude", growth="random", redistribution="none", death_rate=0.7), 1.5),
]


def test_tpe_proposes_k_new_configurations_itself_from_a_survivors_history_of_four():
    """Each proposal is added to the trials as pending before the next is asked for, so TPE does not
    repeat itself: all 5 come from TPE (none from the random fallback), and they concentrate in the
    favoured region more than random search's do."""
    tried = [c for c, _ in SURVIVORS]
    favoured = {}
    for proposer in ("tpe", "rand"):
        hits = total = 0
        for seed in range(12):
            proposals = propose(proposer, SPACE, SURVIVORS, tried, 5, seed=seed)
            assert [p.source for p in proposals] == [proposer] * 5, "no fallback on the paper's space"
            hits += sum(p.config["init"] == "ER" and p.config["redistribution"] == "nonzeros" for p in proposals)
            total += len(proposals)
        favoured[proposer] = hits / total
    assert favoured["tpe"] > favoured["rand"] + 0.2, favoured


def test_atpe_proposals_come_from_atpe_without_fallback():
    proposals = propose("atpe", SPACE, SURVIVORS, [c for c, _ in SURVIVORS], 5, seed=0)
    assert [p.source for p in proposals] == ["atpe"] * 5


def test_a_nearly_exhausted_space_gives_its_last_configurations_then_none():
    space = dataclasses.replace(SPACE, init=("ER",), death=("magnitude",), redistribution=("none",),
                                death_rate=DeathRateRange(0.4, 0.6, 0.1))
    tried = [dict(init="ER", death="magnitude", growth="random", redistribution="none", death_rate=0.4)]
    proposals = propose("tpe", space, [(tried[0], 1.0)], tried, 3, seed=0)
    assert sorted(p.config["death_rate"] for p in proposals) == [0.5, 0.6], "the two unused configurations, no more"
    assert propose("tpe", space, [(tried[0], 1.0)], tried + [p.config for p in proposals], 2, seed=0) == []


def test_an_algorithm_that_only_repeats_is_filled_at_random_and_marked_fallback(monkeypatch):
    tried = [c for c, _ in SURVIVORS]
    monkeypatch.setattr(proposers, "_suggest", lambda proposer, space, trials, seed: dict(tried[0]))
    proposals = propose("tpe", SPACE, SURVIVORS, tried, 3, seed=0)
    assert [p.source for p in proposals] == ["fallback"] * 3
    assert not {space_.config_key(p.config) for p in proposals} & {space_.config_key(c) for c in tried}


def test_the_loss_ranker_compares_each_candidate_with_the_dense_model_at_its_own_epoch():
    """A survivor at epoch 4 has a lower raw loss than a newcomer at epoch 2, but the newcomer is
    closer to where the dense model was at epoch 2: it outranks the survivor."""
    dense = {1: 6.0, 2: 5.5, 3: 5.2, 4: 5.0}
    gaps = ranking.loss_gaps({"survivor": (4, 5.3), "newcomer": (2, 5.6), "diverged": (2, None)}, dense, "dense")
    # float64 differences of losses below 6, and the decimals' own rounding
    assert gaps == pytest.approx({"survivor": 0.3, "newcomer": 0.1, "diverged": float("inf")},
                                 abs=accumulated(EPS64, 2, 6.0))
    assert ranking.rank(gaps, ["survivor", "newcomer", "diverged"]) == ["newcomer", "survivor", "diverged"]
    with pytest.raises(LshError, match="no validation loss of epoch 5"):
        ranking.loss_gaps({"late": (5, 4.0)}, dense, "dense/metrics.jsonl")


def test_ranking_refuses_a_dense_reference_shorter_than_the_candidate():
    dense, candidates = synthetic_spectra()
    with pytest.raises(LshError, match="dense reference has spectra of epochs 0..1 only"):
        ranking.ls_distances(dense[:2], {"c": candidates["mid"][:3]}, embedding="raw")
    record = Spectra.from_json({"spectra": {e: {"exponents": [0.0], "layouts": {"blocks": [0.0], "sorted": [0.0]},
                                               "clipped": 0, "status": "ok", "seconds": 0.1} for e in ("0", "2")},
                                "seconds": 0.2}).by_epoch()
    with pytest.raises(LshError, match="no dense spectrum of epoch 1"):
        ranking.dense_trajectory(record, 2, "dense/spectra.json")
    assert ranking.dense_trajectory(record, 0, "x").tolist() == [[0.0]]


# -----------------------------------------------------------------------------
# Selection never names a blown-up model


def final_run(root, outcomes: list[tuple[str, float | None]]) -> dict:
    """A full-training run's final pool on disk: (status, best validation perplexity) per finalist."""
    params = Params.from_dict(config.load_params(REPO / "params.yaml", ["search.mode=full", "search.ranker=loss",
                                                                        f"search.n={len(outcomes)}"]))
    layout = Layout(root)
    slots = tuple(PoolEntry(slot=f, candidate=space_.candidate_id(f), config=dict(SURVIVORS[f][0]), parent=None,
                            epochs_before=0, epochs_after=10) for f in range(len(outcomes)))
    root.joinpath("final").mkdir(parents=True)
    layout.final_pool.write_text(json.dumps(Pool(round="final", slots=slots, tried=(), next_id=len(slots)).to_json()))
    for f, (status, ppl) in enumerate(outcomes):
        summary = {"status": status, "epochs": 3 if status == "diverged" else 10, "best_valid_ppl": ppl,
                   "best_epoch": 2, "test_ppl": ppl, "seconds": 1.0, "epochs_trained": 3,
                   **({"reason": "the validation perplexity 5e+66 is worse than uniform guessing"}
                      if status == "diverged" else {})}
        layout.final_train(f).mkdir(parents=True)
        (layout.final_train(f) / "summary.json").write_text(json.dumps(summary))
    return select(params, layout)


def test_a_diverged_finalist_is_never_selected_while_another_remains(tmp_path):
    selected = final_run(tmp_path, [("ok", 300.0), ("diverged", 120.0), ("ok", 250.0)])
    assert selected["status"] == "ok" and selected["candidate"] == "c002" and selected["valid_ppl"] == 250.0
    assert [(d["candidate"], d["where"]) for d in selected["diverged"]] == [("c001", "final")]
    assert "worse than uniform guessing" in selected["diverged"][0]["reason"]


def test_when_every_finalist_diverged_the_selection_says_so(tmp_path):
    selected = final_run(tmp_path, [("diverged", 120.0), ("diverged", None)])
    assert selected["status"] == "every finalist diverged"
    assert selected["candidate"] is None and selected["config"] is None and selected["valid_ppl"] is None


@pytest.mark.parametrize("proposer", ["tpe", "atpe", "rand"])
def test_an_initial_pool_without_history_comes_from_the_proposer(proposer):
    proposals = propose(proposer, SPACE, [], [], 6, seed=2)
    assert len({space_.config_key(p.config) for p in proposals}) == 6 and {p.source for p in proposals} == {proposer}


# --- the rankers and the age option (lsh.search.ranking.round_scores) -------------------------------

from lsh.search.ranking import Observed, round_scores, scored_epochs  # noqa: E402


def _observed(epoch: int, valid: list[float], train: list[float], width: int = 3, shift: float = 0.0) -> Observed:
    spectra = np.array([[(1 + shift) * e + k for k in range(width)] for e in range(epoch + 1)], dtype=float)
    return Observed(epoch=epoch, valid_loss=dict(enumerate(valid, 1)), train_loss=dict(enumerate(train, 1)),
                    spectra=spectra)


def _pool() -> dict[str, Observed]:
    """A survivor at epoch 4 (its loss fell with age) and a newcomer at epoch 2."""
    return {"old": _observed(4, [6.0, 5.5, 5.0, 4.5], [6.5, 6.0, 5.6, 5.2], shift=0.5),
            "new": _observed(2, [5.8, 5.3], [6.3, 5.9], shift=0.2)}


DENSE_LOSS = {1: 5.0, 2: 4.6, 3: 4.3, 4: 4.0}
DENSE_SPECTRA = np.array([[e + k for k in range(3)] for e in range(5)], dtype=float)


def test_each_candidate_is_scored_at_its_own_epoch_or_at_the_pools_youngest():
    assert scored_epochs({"old": 4, "new": 2}, "own") == {"old": 4, "new": 2}
    assert scored_epochs({"old": 4, "new": 2}, "common") == {"old": 2, "new": 2}
    with pytest.raises(LshError, match="search.age 'young': allowed are own, common"):
        scored_epochs({"a": 1}, "young")


@pytest.mark.parametrize("age, expected", [
    ("own", {"loss": {"old": 4.5, "new": 5.3}, "loss_gap": {"old": 0.5, "new": 0.7},
             "tse": {"old": 23.3, "new": 12.2}}),
    ("common", {"loss": {"old": 5.5, "new": 5.3}, "loss_gap": {"old": 0.9, "new": 0.7},
                "tse": {"old": 12.5, "new": 12.2}}),
])
def test_the_loss_rankers_read_the_loss_the_gap_and_the_training_losses_at_the_scored_epoch(age, expected):
    for ranker, want in expected.items():
        got = round_scores(ranker, age, _pool(), DENSE_LOSS, DENSE_SPECTRA)
        # float64 sums and differences of up to 4 losses (23.3 at most), and the decimals' own rounding
        assert got == pytest.approx(want, abs=accumulated(EPS64, 4, 25.0)), ranker


def test_the_common_age_ls_distance_is_the_distance_of_the_truncated_trajectory():
    pool = _pool()
    own = round_scores("ls", "own", pool, DENSE_LOSS, DENSE_SPECTRA, embedding="raw")
    common = round_scores("ls", "common", pool, DENSE_LOSS, DENSE_SPECTRA, embedding="raw")
    truncated = ranking.ls_distances(DENSE_SPECTRA, {"old": pool["old"].spectra[:3], "new": pool["new"].spectra},
                             embedding="raw")
    # float64 raw distances: a difference, 3 squares summed and a root, each rounding relative to the result
    rel = two_ways(EPS64, 5)
    assert common == pytest.approx(truncated, rel=rel, abs=0)
    assert own["new"] == pytest.approx(common["new"], rel=rel, abs=0)
    assert own["old"] != pytest.approx(common["old"], rel=rel, abs=0)


@pytest.mark.parametrize("ranker", ["ls", "loss", "loss_gap", "tse"])
@pytest.mark.parametrize("age", ["own", "common"])
def test_a_candidate_that_diverged_by_its_own_epoch_ranks_last_under_every_ranker(ranker, age):
    pool = _pool()
    pool["old"] = Observed(epoch=4, valid_loss={1: 6.0, 2: 5.5, 3: None, 4: None},
                           train_loss={1: 6.5, 2: 6.0, 3: None, 4: None}, spectra=None)
    scores = round_scores(ranker, age, pool, DENSE_LOSS, DENSE_SPECTRA, embedding="raw")
    assert scores["old"] == math.inf and math.isfinite(scores["new"])


def test_an_unknown_ranker_is_named():
    with pytest.raises(LshError, match="search.ranker 'accuracy': allowed are ls, loss, loss_gap, tse"):
        round_scores("accuracy", "own", _pool(), DENSE_LOSS, DENSE_SPECTRA)
