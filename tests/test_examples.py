"""The examples run as a user runs them (a subprocess, at their tiny size) and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO

# whole programs in subprocesses (a dense model and a search each): the slow tier, as the pipeline runs are
pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "lstm_optuna_lyapunov.py"
TINY = ["--trials", "6", "--epochs", "4", "--hidden", "16", "--tokens", "4000"]


def run_example(*args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_lstm_optuna_example_prints_every_trials_distance_at_every_rung_the_pruned_and_the_best_trial():
    out = run_example(*TINY)
    assert "rungs (epochs at which trials are compared): [2, 4]" in out
    assert "No trial is pruned at a rung before 2 trials were measured there" in out
    lines = re.findall(r"^trial (\d+) \(.*\) \| LS distance rung 2: ([\d.]+), rung 4: ([\d.]+|-) \| (.*)$", out, re.M)
    assert [int(n) for n, *_ in lines] == list(range(6)), out
    pruned = re.search(r"^pruned trials: (\d+(, \d+)*)$", out, re.M)
    assert pruned, out
    for number, _, at_4, end in lines:
        if number in pruned.group(1).split(", "):
            assert re.match(r"pruned after epoch \d: LS distance .* at rung \d", end) and at_4 == "-", out
        else:
            assert end.startswith("finished") and at_4 != "-", out
    best = re.search(r"^best trial: (\d+), validation loss [\d.]+, lr ", out, re.M)
    assert best and lines[int(best.group(1))][3].startswith("finished"), out


def test_two_example_workers_started_at_once_on_one_sqlite_study_share_it(tmp_path):
    """The docs' recipe: the study created once, then two workers side by side with their own --worker."""
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    import optuna

    optuna.create_study(study_name="lstm-lyapunov", storage=storage)
    args = [*TINY[:1], "3", *TINY[2:], "--storage", storage]
    workers = [subprocess.Popen([sys.executable, str(EXAMPLE), *args, "--worker", str(w)], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in (0, 1)]
    outs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outs]
    study = optuna.load_study(study_name="lstm-lyapunov", storage=storage)
    assert len(study.trials) == 6 and {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    firsts = [(t.params["lr"], t.params["dropout"]) for t in study.trials]
    assert len(set(firsts)) == 6, "each worker's sampler proposes its own trials"


def test_the_lstm_optuna_example_trains_on_a_slice_of_ptb(ptb_raw):
    out = run_example("--ptb", str(ptb_raw), "--trials", "3", "--epochs", "2", "--hidden", "16", "--tokens", "3000")
    assert "rungs (epochs at which trials are compared): [2]" in out and re.search(r"^best trial: \d+", out, re.M), out
