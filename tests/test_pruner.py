"""The library API for a user's own search: lsh.ls_distance and the Optuna LyapunovPruner.

Synthetic spectra make every distance known: the dense reference stays at BASE, and a trial of drift d
is at BASE + d e DIRECTION at epoch e, so the dense trajectory and the trial's lie on one line and the
PCA of both keeps their distance: a trial's LS distance at rung R is d R |DIRECTION|."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from precision import EPS64, accumulated

import lsh
from lsh.errors import LshError
from lsh.pruner import LyapunovPruner, report_spectrum, rung_distances
from lsh.search.ranking import ls_distances

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[1]
BASE = np.linspace(-1.0, -3.0, 6)
DIRECTION = np.linspace(1.0, 2.0, 6)
DENSE = np.array([BASE] * 5)  # the dense reference's spectra of epochs 0..4


def spectrum(drift: float, epoch: int) -> np.ndarray:
    return BASE + drift * epoch * DIRECTION


def known_distance(drift: float, rung: int) -> float:
    return drift * rung * float(np.linalg.norm(DIRECTION))


# A distance is a float64 PCA (an SVD of the centred trajectories: at most 10 points of 6 exponents, each below
# 11 in size) and a norm: 60 terms' rounding (6e-13; a drift of 0.1 at rung 2 is 0.6 away)
DISTANCE_TOL = accumulated(EPS64, 10 * 6, 11.0)


def train(trial: optuna.Trial, drift: float, epochs: int = 4) -> float:
    """A user's objective: report the loss and the spectrum every epoch, and ask the pruner."""
    for epoch in range(epochs + 1):
        report_spectrum(trial, spectrum(drift, epoch), epoch)
        if epoch:
            trial.report(drift, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return drift


def objective(trial: optuna.Trial) -> float:
    return train(trial, trial.suggest_float("drift", 0.0, 1.0))


def run(study: optuna.Study, drifts: list[float]) -> None:
    for d in drifts:
        study.enqueue_trial({"drift": d})
    study.optimize(objective, n_trials=len(drifts))


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


# --- ls_distance --------------------------------------------------------------------------------


def test_ls_distance_is_the_pipelines_distance_of_the_candidate_at_its_epoch():
    rng = np.random.default_rng(0)
    dense, candidate = rng.normal(size=(5, 6)), rng.normal(size=(3, 6))
    for embedding, distance, fit in (("pca", "l2", "pair"), ("raw", "cosine", "pair"), ("pca", "l2", "pool")):
        expected = ls_distances(dense, {"c": candidate}, embedding=embedding, distance=distance, fit=fit, seed=3)["c"]
        assert lsh.ls_distance(dense, candidate, embedding=embedding, distance=distance, fit=fit, seed=3) == expected
    assert lsh.ls_distance(DENSE, [spectrum(0.5, e) for e in range(3)]) == pytest.approx(known_distance(0.5, 2),
                                                                                           abs=DISTANCE_TOL)


def test_ls_distance_accepts_torch_tensors_and_lists():
    import torch

    candidate = np.array([spectrum(0.3, e) for e in range(3)])
    expected = lsh.ls_distance(DENSE, candidate)
    assert lsh.ls_distance(torch.tensor(DENSE), torch.tensor(candidate)) == expected
    assert lsh.ls_distance(DENSE.tolist(), candidate.tolist()) == expected


@pytest.mark.parametrize("dense_shape, candidate_shape, words", [
    ((5, 6), (3, 4), "(shape (5, 6)) have 6 exponents but the candidate's (shape (3, 4)) have 4"),
    ((3, 6), (5, 6), "shape (5, 6)) reach epoch 4 but the dense reference's (shape (3, 6)) only epoch 2"),
    ((5, 6), (6,), "got shape (6,)"),
])
def test_ls_distance_refuses_shapes_that_do_not_match_naming_both(dense_shape, candidate_shape, words):
    with pytest.raises(LshError, match=re_escape(words)):
        lsh.ls_distance(np.zeros(dense_shape), np.zeros(candidate_shape))


def test_ls_distance_refuses_a_spectrum_that_is_not_finite_naming_its_epoch():
    candidate = np.array([spectrum(0.3, e) for e in range(3)])
    candidate[1, 2] = np.nan
    with pytest.raises(LshError, match="candidate spectrum of epoch 1 is not finite"):
        lsh.ls_distance(DENSE, candidate)
    with pytest.raises(LshError, match="dense spectrum of epoch 0 is not finite"):
        lsh.ls_distance(np.full((3, 6), np.inf), candidate)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# --- the pruner ---------------------------------------------------------------------------------


def test_report_spectrum_stores_a_json_list_per_epoch_with_none_where_not_finite():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))
    trial = study.ask()
    report_spectrum(trial, spectrum(0.1, 0), 0)
    with pytest.warns(UserWarning, match=r"trial 0, epoch 1\): 2 of 6 exponents are not finite"):
        report_spectrum(trial, [1.0, math.nan, -math.inf, 0.0, 0.0, 0.0], 1)
    attrs = study.trials[0].user_attrs
    assert attrs["lsh_spectrum_0"] == list(spectrum(0.1, 0))  # the same float64 values, converted to float
    assert attrs["lsh_spectrum_1"] == [1.0, None, None, 0.0, 0.0, 0.0]
    json.dumps(attrs, allow_nan=False)


def test_a_dense_reference_that_reaches_no_rung_warns_that_the_pruner_never_prunes():
    with pytest.warns(UserWarning, match=r"no rung \(the dense spectra are of epochs 0..1.*never prunes"):
        assert LyapunovPruner(DENSE[:2]).rungs == []
    assert LyapunovPruner(DENSE[:2], rungs=[1]).rungs == [1]  # a rung the reference reaches: no warning


def test_one_pruner_across_many_studies_decides_as_a_new_pruner_for_each():
    """Studies come and go in memory (their storages' addresses are reused): the shared pruner's cache
    must never give one study's trial another study's distance."""
    shared, rng = LyapunovPruner(DENSE, rungs=[2], min_trials=1, embedding="raw"), np.random.default_rng(0)
    decisions = []
    for _ in range(40):
        drifts = rng.uniform(0.0, 1.0, size=4)
        for pruner in (shared, LyapunovPruner(DENSE, rungs=[2], min_trials=1, embedding="raw")):
            study = optuna.create_study(pruner=pruner)
            for d in drifts[:3]:  # finished without the pruner judging them: distances not stored
                trial = study.ask()
                for epoch in range(3):
                    report_spectrum(trial, spectrum(d, epoch), epoch)
                study.tell(trial, float(d))
            trial = study.ask()
            for epoch in range(3):
                report_spectrum(trial, spectrum(drifts[3], epoch), epoch)
            trial.report(float(drifts[3]), 2)
            decisions.append(trial.should_prune())
            del study, trial
            gc.collect()  # the storage goes: the next study's may take its address
    assert decisions[0::2] == decisions[1::2]
    assert 0 < sum(decisions) < len(decisions)  # both decisions occur: the comparison can tell them apart


def test_a_second_report_of_one_epoch_keeps_the_first_and_warns_as_optuna_does():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))
    trial = study.ask()
    report_spectrum(trial, spectrum(0.1, 0), 0)
    with pytest.warns(UserWarning, match="epoch 0 was reported already"):
        report_spectrum(trial, spectrum(0.5, 0), 0)
    assert study.trials[0].user_attrs["lsh_spectrum_0"] == list(spectrum(0.1, 0))
    trial.report(1.0, 0)
    with pytest.warns(UserWarning):  # Optuna's own, for the value: the same rule
        trial.report(2.0, 0)
    assert study.trials[0].intermediate_values == {0: 1.0}


def test_the_pruner_keeps_the_nearer_half_of_the_trials_measured_at_a_rung():
    """Four trials run side by side to rung 2 (ask and tell): each sees all four, and the two farther go."""
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2]))
    drifts = [0.4, 0.1, 0.3, 0.2]
    trials = [study.ask() for _ in drifts]
    for trial, d in zip(trials, drifts):
        for epoch in range(3):
            report_spectrum(trial, spectrum(d, epoch), epoch)
        trial.report(d, 2)
    pruned = [trial.should_prune() for trial in trials]
    assert pruned == [True, False, True, False]
    for t, d in zip(study.trials, drifts):
        assert rung_distances(t) == {2: pytest.approx(known_distance(d, 2), abs=DISTANCE_TOL)}


def test_a_trial_is_pruned_when_farther_than_the_kept_fraction_of_those_measured_before_it():
    """One after another, as study.optimize runs them: m measured at rung 2 keep m - floor(m / 2)."""
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2]))
    run(study, [0.5, 0.6, 0.1, 0.3, 0.9, 0.2])
    # measured: {0.5}: kept; {.5, .6}: .6 goes; {.5, .6, .1}: .1 is 1st of 2 kept; {.5, .6, .1, .3}: .3 2nd of 2;
    # {.., .9}: last of 5; {.., .2}: 2nd of 3 kept
    assert states(study) == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert [t.last_step for t in study.trials] == [4, 2, 4, 4, 2, 4]


def test_the_kept_fraction_and_every_rung_apply():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[1, 3], keep=0.75))
    run(study, [0.1, 0.2, 0.3, 0.4, 0.05])
    # rung 1: of 4 measured 3 are kept, and 0.4 goes; the last (the nearest) is kept at rungs 1 and 3
    assert states(study) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert set(rung_distances(study.trials[3])) == {1} and set(rung_distances(study.trials[4])) == {1, 3}


def test_no_trial_is_pruned_before_min_trials_were_measured_at_the_rung():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2], min_trials=3))
    run(study, [0.1, 0.5, 0.9, 0.95])
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2]))  # the default: 2
    run(study, [0.1, 0.5])
    assert states(study) == ["COMPLETE", "PRUNED"]


def test_the_default_rungs_are_every_second_epoch_as_far_as_the_dense_reference_goes():
    assert LyapunovPruner(DENSE).rungs == [2, 4]
    assert LyapunovPruner(np.array([BASE] * 8)).rungs == [2, 4, 6]
    assert LyapunovPruner({e: BASE for e in range(4)}).rungs == [2]


def test_a_new_pruner_on_the_same_storage_decides_as_one_pruner_throughout(tmp_path):
    """The rung distances live in the storage: a fresh pruner on a loaded study reads them (it computes only
    its own trials' distances) and decides as the pruner of one uninterrupted study does."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    drifts = [0.2, 0.1, 0.3, 0.25, 0.05]
    first = optuna.create_study(study_name="s", storage=storage, pruner=LyapunovPruner(DENSE))
    run(first, drifts[:3])
    fresh = LyapunovPruner(DENSE)
    computed = []
    own = fresh._pair_distance
    fresh._pair_distance = lambda points: computed.append(len(points) - 1) or own(points)
    again = optuna.load_study(study_name="s", storage=storage, pruner=fresh)
    run(again, drifts[3:])
    throughout = optuna.create_study(pruner=LyapunovPruner(DENSE))
    run(throughout, drifts)
    assert states(again) == states(throughout) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE"]
    assert computed == [2, 2, 4], "the new trials' own distances only (0.25 at rung 2; 0.05 at rungs 2 and 4)"
    assert [rung_distances(t) for t in again.trials] == [rung_distances(t) for t in throughout.trials]


def test_a_pruned_trial_says_why_and_is_pruned_whenever_asked_again():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2]))
    run(study, [0.1])
    trial = study.ask()
    for epoch in range(3):
        report_spectrum(trial, spectrum(0.5, epoch), epoch)
    trial.report(0.5, 2)
    assert trial.should_prune() is True and trial.should_prune() is True
    assert study.trials[1].user_attrs["lsh_pruned"] == (f"LS distance {known_distance(0.5, 2):.6g} at rung 2: not "
                                                        "among the nearest 1 of the 2 trials measured there")


WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import optuna
    from lsh.pruner import LyapunovPruner, report_spectrum

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    BASE, DIRECTION = np.linspace(-1.0, -3.0, 6), np.linspace(1.0, 2.0, 6)
    storage, drifts = sys.argv[1], [float(d) for d in sys.argv[2:]]
    study = optuna.create_study(study_name="shared", storage=storage, load_if_exists=True,
                                pruner=LyapunovPruner(np.array([BASE] * 5)))

    def objective(trial):
        drift = trial.suggest_float("drift", 0.0, 1.0)
        for epoch in range(5):
            report_spectrum(trial, BASE + drift * epoch * DIRECTION, epoch)
            if epoch:
                trial.report(drift, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return drift

    before = len(study.trials)
    for d in drifts:
        study.enqueue_trial({"drift": d})
    study.optimize(objective, n_trials=len(drifts))
    for t in study.trials[before:]:
        print(t.params["drift"], t.state.name)
""")


def test_two_worker_processes_on_one_sqlite_storage_share_the_rungs_distances(tmp_path):
    """The second worker's one trial is the farthest at rung 2: alone it would be kept (min_trials 2); it is
    pruned because the first worker's three trials, in the storage, were measured there."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"

    def worker(*drifts: str) -> str:
        done = subprocess.run([sys.executable, str(script), storage, *drifts], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert worker("0.2", "0.1", "0.15") == "0.2 COMPLETE\n0.1 COMPLETE\n0.15 COMPLETE\n"
    assert worker("0.9") == "0.9 PRUNED\n"
    study = optuna.load_study(study_name="shared", storage=storage)
    assert rung_distances(study.trials[3]) == {2: pytest.approx(known_distance(0.9, 2), abs=DISTANCE_TOL)}


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_the_pruner_works_with_the_random_and_the_tpe_sampler(sampler):
    samplers = {"random": optuna.samplers.RandomSampler(seed=1),
                "tpe": optuna.samplers.TPESampler(seed=1, n_startup_trials=3)}
    study = optuna.create_study(sampler=samplers[sampler], pruner=LyapunovPruner(DENSE))
    study.optimize(objective, n_trials=12)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and study.best_trial.state.name == "COMPLETE"
    for t in study.trials:  # every distance stored is the trial's own at that rung
        for rung, value in rung_distances(t).items():
            assert value == pytest.approx(known_distance(t.params["drift"], rung), abs=DISTANCE_TOL)
    nearest = min(study.trials, key=lambda t: t.params["drift"])
    assert nearest.state.name == "COMPLETE", "the trial nearest the dense reference is never pruned"


def test_the_pool_fit_ranks_the_trials_embedded_together():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2], fit="pool"))
    run(study, [0.5, 0.6, 0.1, 0.3, 0.9, 0.2])
    assert states(study) == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]


def test_a_spectrum_that_is_not_finite_prunes_the_trial_saying_why():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))
    trial = study.ask()
    report_spectrum(trial, spectrum(0.1, 0), 0)
    with pytest.warns(UserWarning, match="6 of 6 exponents are not finite"):
        report_spectrum(trial, np.full(6, np.nan), 1)
    trial.report(1.0, 1)
    assert trial.should_prune() is True
    assert "spectrum of epoch 1 is not finite" in study.trials[0].user_attrs["lsh_pruned"]


def test_a_spectrum_of_the_wrong_length_is_refused_naming_both_lengths():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))
    with pytest.raises(LshError, match="trial 0, epoch 0.*a spectrum of 4 exponents, but the pruner's dense reference "
                                       "has 6"):
        report_spectrum(study.ask(), np.zeros(4), 0)
    with pytest.raises(LshError, match="expected a spectrum, a 1-D array of exponents, got shape \\(2, 3\\)"):
        report_spectrum(study.ask(), np.zeros((2, 3)), 0)


def test_a_rung_without_a_dense_spectrum_is_refused_naming_it():
    with pytest.raises(LshError, match="rung 6 has no dense reference \\(the dense spectra are of epochs 0..4\\)"):
        LyapunovPruner(DENSE, rungs=[2, 6])
    with pytest.raises(LshError, match="the dense reference has no spectrum of epoch 1"):
        LyapunovPruner({0: BASE, 2: BASE})
    with pytest.raises(LshError, match="the dense spectrum of epoch 3 is not finite"):
        LyapunovPruner(np.vstack([DENSE[:3], np.full((1, 6), np.nan)]))


def test_a_rung_reached_without_a_spectrum_of_every_earlier_epoch_is_refused_naming_the_epoch():
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))
    trial = study.ask()
    report_spectrum(trial, spectrum(0.1, 0), 0)
    report_spectrum(trial, spectrum(0.1, 2), 2)
    trial.report(0.1, 2)
    with pytest.raises(LshError, match="trial 0 reached rung 2 but reported no spectrum of epoch 1"):
        trial.should_prune()


@pytest.mark.parametrize("kwargs, words", [
    ({"keep": 1.0}, "keep 1.0 must be a fraction strictly between 0 and 1"),
    ({"min_trials": 0}, "min_trials 0 must be a whole number >= 1"),
    ({"embedding": "umap"}, "embedding 'umap': allowed are pca, raw, tsne"),
    ({"distance": "l1"}, "distance 'l1': allowed are l2, cosine"),
    ({"fit": "all"}, "fit 'all': allowed are pair, pool"),
    ({"rungs": [4, 2]}, "rungs \\[4, 2\\] must be epochs >= 1 in increasing order"),
])
def test_bad_pruner_options_are_refused_naming_the_option(kwargs, words):
    with pytest.raises(LshError, match=words):
        LyapunovPruner(DENSE, **kwargs)


def test_the_public_names_are_listed_and_load_from_lsh_itself():
    import lsh
    from lsh.errors import LshError

    assert set(lsh.__all__) - {"__version__"} <= set(dir(lsh))
    assert lsh.LshError is LshError and {"LshError", "LyapunovPruner", "module_spectrum"} <= set(dir(lsh))
    with pytest.raises(lsh.LshError):
        lsh.ls_distance([[0.0, 1.0]], [[0.0]])  # shapes that do not match


# --- several workers at once, one dense reference -------------------------------------------------


CONCURRENT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from lsh.pruner import LyapunovPruner, report_spectrum

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    BASE, DIRECTION = np.linspace(-1.0, -3.0, 6), np.linspace(1.0, 2.0, 6)
    spec, worker, trials, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    storage = JournalStorage(JournalFileBackend(spec[len("journal:"):])) if spec.startswith("journal:") else spec
    # the recipe of docs/api.md: the study exists already; each worker has its own sampler seed and the same
    # dense reference
    study = optuna.load_study(study_name="shared", storage=storage, sampler=optuna.samplers.RandomSampler(seed=worker),
                              pruner=LyapunovPruner(np.array([BASE] * 7), rungs=[2, 4, 6]))

    def objective(trial):
        trial.set_user_attr("worker", worker)
        drift = trial.suggest_float("drift", 0.0, 1.0)
        for epoch in range(7):
            report_spectrum(trial, BASE + drift * epoch * DIRECTION, epoch)
            time.sleep(0.01)  # an epoch's training: the two workers' trials interleave
            if epoch:
                trial.report(drift, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return drift

    while not os.path.exists(go):  # both start at once
        time.sleep(0.005)
    study.optimize(objective, n_trials=trials)
""")


def replayed_decision(study: optuna.Study, trial: optuna.trial.FrozenTrial, rung: int, keep: float = 0.5,
                      n_min_trials: int = 2) -> bool:
    """Whether `trial` had to be pruned at `rung`, from the trials its decision there measured (recorded by the
    pruner) and their distances there (as every trial's own judgement stored them)."""
    measured = trial.user_attrs[f"lsh_measured_{rung}"]
    assert trial.number in measured
    distances = {n: rung_distances(study.trials[n])[rung] for n in measured}
    kept = len(measured) - math.floor(len(measured) * (1 - keep) + 1e-9)
    order = sorted(measured, key=lambda n: (distances[n], n))
    return len(measured) >= n_min_trials and order.index(trial.number) >= kept


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_at_once_lose_nothing_and_decide_every_rung_as_the_trials_they_measured_say(kind, tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    script, go, per_worker = tmp_path / "worker.py", tmp_path / "go", 10
    script.write_text(CONCURRENT)
    if kind == "sqlite":
        spec = storage = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        spec, storage = (f"journal:{tmp_path / 'journal.log'}",
                         JournalStorage(JournalFileBackend(str(tmp_path / "journal.log"))))
    optuna.create_study(study_name="shared", storage=storage)  # once, before the workers (docs/api.md)
    workers = [subprocess.Popen([sys.executable, str(script), spec, str(w), str(per_worker), str(go)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    go.touch()
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.trials
    assert len(trials) == 2 * per_worker and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert sorted(t.user_attrs["worker"] for t in trials) == [0] * per_worker + [1] * per_worker
    spans = {w: [(t.datetime_start, t.datetime_complete) for t in trials if t.user_attrs["worker"] == w]
             for w in (0, 1)}
    assert min(s for s, _ in spans[1]) < max(e for _, e in spans[0]) and \
        min(s for s, _ in spans[0]) < max(e for _, e in spans[1]), "the two workers ran at the same time"
    decisions = 0
    for t in trials:
        pruned_at = (int(t.user_attrs["lsh_pruned"].split(" at rung ")[1].split(":")[0]) if t.state.name == "PRUNED"
                     else None)
        for rung, distance in rung_distances(t).items():
            assert distance == pytest.approx(known_distance(t.params["drift"], rung), abs=DISTANCE_TOL)
            assert replayed_decision(study, t, rung) == (rung == pruned_at), (t.number, rung)
            decisions += 1
        assert pruned_at is None or pruned_at in rung_distances(t)
    assert decisions >= 2 * per_worker and any(t.state.name == "PRUNED" for t in trials)
    # the other worker's trials counted: some decision measured trials of both
    assert any({trials[n].user_attrs["worker"] for n in t.user_attrs.get("lsh_measured_2", [])} == {0, 1}
               for t in trials)


def test_a_worker_with_another_dense_reference_is_refused_naming_both_fingerprints():
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(study_name="s", storage=storage, pruner=LyapunovPruner(DENSE))
    run(first, [0.1, 0.2, 0.3])
    again = optuna.load_study(study_name="s", storage=storage, pruner=LyapunovPruner(DENSE))
    run(again, [0.4])  # the same reference: accepted
    other = optuna.load_study(study_name="s", storage=storage, pruner=LyapunovPruner(DENSE + 0.01))
    with pytest.raises(LshError, match="is pruned against another dense reference \\(fingerprint [0-9a-f]{16}, "
                                       "5 epochs of 6 exponents.*than this pruner's \\(fingerprint [0-9a-f]{16}"):
        run(other, [0.5])
    for options in ({"embedding": "raw"}, {"random_state": 1}):  # the distance's options are the reference's too
        with pytest.raises(LshError, match="another dense reference"):
            run(optuna.load_study(study_name="s", storage=storage, pruner=LyapunovPruner(DENSE, **options)), [0.5])


def test_no_trial_is_pruned_before_n_startup_trials_completed():
    drifts = [0.1, 0.9, 0.2, 0.8]
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2], n_startup_trials=2))
    run(study, drifts)
    # 0.9 is judged when one trial completed: kept, though the farther of two; 0.8, after three, is the farther half
    assert states(study) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert [set(rung_distances(t)) for t in study.trials] == [{2}] * 4, "every trial measured, pruned or not"
    study = optuna.create_study(pruner=LyapunovPruner(DENSE, rungs=[2]))
    run(study, drifts)
    assert states(study) == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]


def test_optunas_option_names_and_the_earlier_ones_make_the_same_pruner():
    pairs = [({"n_min_trials": 3}, {"min_trials": 3}), ({"random_state": 4}, {"seed": 4}),
             ({"reduction_factor": 4}, {"keep": 0.25}), ({"n_warmup_steps": 1, "interval_steps": 3}, {"rungs": [1, 4]})]
    drifts = [0.3, 0.1, 0.8, 0.5, 0.9, 0.2, 0.6]
    for optuna_names, lsh_names in pairs:
        outcomes = []
        for kwargs in (optuna_names, lsh_names):
            study = optuna.create_study(pruner=LyapunovPruner(DENSE, **kwargs))
            run(study, drifts)
            outcomes.append([(t.state.name, t.user_attrs.get("lsh_pruned")) for t in study.trials])
        assert outcomes[0] == outcomes[1], optuna_names
        assert any(state == "PRUNED" for state, _ in outcomes[0]), optuna_names
    assert LyapunovPruner(DENSE, n_warmup_steps=1, interval_steps=3).rungs == [1, 4]
    assert LyapunovPruner(DENSE).rungs == [2, 4]


@pytest.mark.parametrize("kwargs, words", [
    ({"min_trials": 2, "n_min_trials": 2}, "n_min_trials and min_trials are one option"),
    ({"seed": 1, "random_state": 1}, "random_state and seed are one option"),
    ({"keep": 0.5, "reduction_factor": 2}, "give reduction_factor \\(keep 1/reduction_factor\\) or keep, not both"),
    ({"rungs": [2], "n_warmup_steps": 2}, "give rungs, or n_warmup_steps and interval_steps, not both"),
    ({"reduction_factor": 1}, "reduction_factor 1 must be above 1"),
    ({"keep": "half"}, "keep 'half' must be a number"),
    ({"rungs": 2}, "rungs 2 must be a list of epochs"),
    ({"n_min_trials": 1.5}, "n_min_trials 1.5 must be a whole number >= 1"),
    ({"interval_steps": 0}, "interval_steps 0 must be a whole number >= 1"),
    ({"n_startup_trials": -1}, "n_startup_trials -1 must be a whole number >= 0"),
])
def test_option_values_of_the_wrong_type_or_both_names_are_refused_naming_them(kwargs, words):
    with pytest.raises(LshError, match=words):
        LyapunovPruner(DENSE, **kwargs)


@pytest.mark.parametrize("key, value, words", [
    ("lsh_spectrum_1", "tampered", "trial 0's user attribute 'lsh_spectrum_1' is not a list of numbers"),
    ("lsh_spectrum_1", [1.0, "x", 0, 0, 0, 0], "trial 0's user attribute 'lsh_spectrum_1' is not a list of numbers"),
    ("lsh_distance_2", "far", "trial 0's user attribute 'lsh_distance_2' is 'far', not a distance"),
])
def test_attributes_changed_in_the_storage_outside_lsh_are_refused_naming_them(key, value, words):
    study = optuna.create_study(pruner=LyapunovPruner(DENSE))

    def to_rung_2(drift: float) -> optuna.Trial:
        trial = study.ask()
        for epoch in range(3):
            report_spectrum(trial, spectrum(drift, epoch), epoch)
        trial.report(drift, 2)
        return trial

    first = to_rung_2(0.1)
    if key.startswith("lsh_spectrum_"):  # read when the trial itself is judged
        study._storage.set_trial_user_attr(first._trial_id, key, value)
        with pytest.raises(LshError, match=words):
            first.should_prune()
        return
    assert first.should_prune() is False  # judged: its distance at rung 2 stored
    study._storage.set_trial_user_attr(first._trial_id, key, value)  # still running: the second trial reads it
    with pytest.raises(LshError, match=words):
        to_rung_2(0.2).should_prune()


def test_spectra_carrying_other_options_are_refused_by_the_distance_and_the_pruner():
    import torch

    from lsh.spectrum_options import tag

    nats = {"log_base": "e", "layout": "blocks", "state": "h"}
    bits = {**nats, "log_base": 2}

    def tagged(rows: np.ndarray, options: dict) -> list:
        return [tag(torch.tensor(r), options) for r in rows]

    candidate = np.array([spectrum(0.3, e) for e in range(3)])
    assert lsh.ls_distance(tagged(DENSE, nats), tagged(candidate, nats)) == lsh.ls_distance(DENSE, candidate)
    assert lsh.ls_distance(tagged(DENSE, nats), candidate) == lsh.ls_distance(DENSE, candidate), \
        "a bare array: no check"
    with pytest.raises(LshError, match="the dense spectra were computed with log_base 'e'.* but the candidate with "
                                       "log_base '2'.*they differ in log_base"):
        lsh.ls_distance(tagged(DENSE, nats), tagged(candidate, bits))
    with pytest.raises(LshError, match="candidate: its spectra were computed with different options"):
        lsh.ls_distance(DENSE, tagged(candidate[:1], nats) + tagged(candidate[1:], {**nats, "layout": "sorted"}))
    pruner = LyapunovPruner(dict(enumerate(tagged(DENSE, nats))))
    assert pruner.options == {**nats, "exponents": 6}
    study = optuna.create_study(pruner=pruner)
    report_spectrum(study.ask(), tag(torch.tensor(spectrum(0.1, 0)), nats), 0)
    with pytest.raises(LshError, match="trial 1, epoch 0\\): the dense reference's spectra were computed with "
                                       "log_base 'e', layout 'blocks', state 'h', exponents 6 but the trial's with "
                                       "log_base '2'"):
        report_spectrum(study.ask(), tag(torch.tensor(spectrum(0.1, 0)), bits), 0)
