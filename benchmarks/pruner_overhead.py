"""The cost of one `trial.should_prune()` with lsh.LyapunovPruner against Optuna's MedianPruner, on one
SQLite storage (what a user's objective pays per epoch beside its training).

    .venv/bin/python benchmarks/pruner_overhead.py > benchmarks/results/pruner.json

Each pruner runs the same study: `trials` trials of `epochs` epochs, each reporting its loss and (for
both pruners, so that the storage holds the same attributes) a spectrum of `exponents` values every
epoch; only the `should_prune()` calls are timed, after an untimed warm-up study per pruner (the first
call imports scikit-learn). The two pruners alternate over the repeats in fresh SQLite files, and the
median per call is reported with the ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from lsh import numerics
from lsh.pruner import LyapunovPruner, report_spectrum


def one_study(pruner: optuna.pruners.BasePruner, path: Path, trials: int, epochs: int, exponents: int) -> float:
    """Seconds per should_prune() over a study of `trials` trials (none is pruned by either: the same work)."""
    rng = np.random.default_rng(0)
    base = np.linspace(-0.1, -3.0, exponents)
    study = optuna.create_study(storage=f"sqlite:///{path}", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    spent, calls = 0.0, 0
    for _ in range(trials):
        trial = study.ask()
        drift = trial.suggest_float("drift", 0.0, 1.0)
        for epoch in range(epochs + 1):
            report_spectrum(trial, base + drift * epoch * 0.01 + rng.normal(0, 1e-3, exponents), epoch)
            if epoch:
                trial.report(drift, epoch)
                start = time.perf_counter()
                trial.should_prune()
                spent += time.perf_counter() - start
                calls += 1
        study.tell(trial, drift)
    return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--exponents", type=int, default=256, help="a 2 x 128 LSTM's spectrum, the demo's size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dense = np.array([np.linspace(-0.1, -3.0, args.exponents)] * (args.epochs + 1))
    # keep 0.999: nobody is pruned, so both pruners see every trial to the end (the same storage traffic)
    pruners = {"lyapunov": lambda: LyapunovPruner(dense, keep=0.999),
               "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=args.trials)}
    times: dict[str, list[float]] = {name: [] for name in pruners}
    with tempfile.TemporaryDirectory() as folder:
        for name, make in pruners.items():  # untimed: the first call's imports (scikit-learn's PCA), SQLite's set-up
            one_study(make(), Path(folder) / f"{name}-warm.db", 2, 2, args.exponents)
        for repeat in range(args.repeats):
            for name, make in pruners.items():
                times[name].append(one_study(make(), Path(folder) / f"{name}-{repeat}.db", args.trials, args.epochs,
                                             args.exponents))
    medians = {name: statistics.median(t) for name, t in times.items()}
    machine = numerics.current()
    print(json.dumps({
        "what": "seconds per trial.should_prune() on SQLite, median over repeats of the study's mean",
        "trials": args.trials, "epochs": args.epochs, "exponents": args.exponents, "repeats": args.repeats,
        "seconds_per_call": medians, "ratio_lyapunov_to_median": medians["lyapunov"] / medians["median"],
        "cpu": machine["cpu"], "vendor": machine["vendor"], "python": platform.python_version(),
        "optuna": optuna.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
