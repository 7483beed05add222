"""The examples run as a user runs them (a subprocess, at their tiny size) and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

EXAMPLE = REPO / "examples" / "lstm_optuna_lyapunov.py"
TINY = ["--trials", "6", "--epochs", "4", "--hidden", "16", "--tokens", "4000"]


def run_example(*args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_lstm_optuna_example_prints_the_trials_the_lyapunov_pruner_pruned_and_the_best_trial():
    out = run_example(*TINY)
    assert "rungs (epochs at which trials were compared): [2, 4]" in out
    pruned = re.search(r"^pruned trials: (\d+(, \d+)*)$", out, re.M)
    assert pruned, out
    for number in pruned.group(1).split(", "):
        assert re.search(rf"^trial {number} \(.*\): pruned after epoch \d: LS distance .* at rung \d", out, re.M), out
    best = re.search(r"^best trial: (\d+), validation loss [\d.]+, lr ", out, re.M)
    assert best and re.search(rf"^trial {best.group(1)} \(.*\): finished", out, re.M), out


def test_the_lstm_optuna_example_trains_on_a_slice_of_ptb(ptb_raw):
    out = run_example("--ptb", str(ptb_raw), "--trials", "3", "--epochs", "2", "--hidden", "16", "--tokens", "3000")
    assert "rungs (epochs at which trials were compared): [2]" in out and re.search(r"^best trial: \d+", out, re.M), out
