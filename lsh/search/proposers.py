"""Proposers: the initial pool and the candidates inserted after each elimination.

PROPOSERS maps the params' `search.proposer` to a function (space, history, seen, k, seed)
-> proposals: hyperopt's TPE, ATPE and random search through their public suggest(), and
the paper's grid. Every proposal records its `source`.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsh.config import SpaceConfig
from lsh.errors import LshError
from lsh.search.space import (
    config_key,
    config_to_vals,
    derived_seed,
    discrete_space,
    grid_points,
    hyperopt_space,
    vals_to_config,
)

DIVERGED_SCORE = 1e12  # a diverged candidate in a history: a large but finite loss, as hyperopt needs numbers
TPE_STARTUP = 1  # TPE's default 20 random start-up trials would ignore a round's history of a few candidates
_EPOCH = datetime.datetime(2000, 1, 1)
FALLBACK = "fallback"  # the source of a proposal drawn at random because the algorithm kept repeating
MAX_ATTEMPTS_PER_PROPOSAL = 50


@dataclass(frozen=True)
class Proposal:
    config: dict
    source: str  # the algorithm's name, or FALLBACK


def history_trials(history: list[tuple[dict, float]], space: SpaceConfig) -> Any:
    """A hyperopt Trials object holding finished trials: (configuration, score), lower is better."""
    from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials
    from hyperopt.fmin import generate_trial

    docs = []
    for tid, (config, score) in enumerate(history):
        doc = generate_trial(tid, config_to_vals(config, space))
        doc["state"] = JOB_STATE_DONE
        doc["result"] = {"loss": float(score), "status": STATUS_OK}
        doc["book_time"] = doc["refresh_time"] = _EPOCH  # ATPE reads trial durations; ours take no time
        docs.append(doc)
    trials = Trials()
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _tpe(domain: Any, trials: Any, tid: int, seed: int) -> list[dict]:
    from hyperopt import tpe

    return tpe.suggest([tid], domain, trials, seed, n_startup_jobs=TPE_STARTUP)


def _atpe(domain: Any, trials: Any, tid: int, seed: int) -> list[dict]:
    from hyperopt import atpe

    random.seed(seed)  # ATPE draws from the global RNGs
    np.random.seed(seed % 2**32)
    return atpe.suggest([tid], domain, trials, seed)


def _rand(domain: Any, trials: Any, tid: int, seed: int) -> list[dict]:
    from hyperopt import rand

    return rand.suggest([tid], domain, trials, seed)


HYPEROPT = {"tpe": _tpe, "atpe": _atpe, "rand": _rand}


def _suggest(proposer: str, space: SpaceConfig, trials: Any, seed: int) -> dict:
    """One proposal from hyperopt's algorithm through its public suggest(), which is then added to
    `trials` as a pending trial, as hyperopt's fmin does with several workers: TPE counts a pending
    trial as not (yet) good, so the next proposal moves elsewhere instead of repeating this one."""
    from hyperopt import Domain

    domain = Domain(lambda cfg: 0.0, hyperopt_space(space))
    doc = HYPEROPT[proposer](domain, trials, len(trials.trials), seed)[0]
    # ATPE needs one finished trial among pending ones; without history it draws at random anyway
    if proposer != "atpe" or any(t["result"].get("loss") is not None for t in trials.trials):
        doc["result"] = {"status": "new", "loss": None}  # pending: ATPE reads a loss key, TPE counts None as +inf
        doc["book_time"] = doc["refresh_time"] = _EPOCH
        trials.insert_trial_docs([doc])
        trials.refresh()
    vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
    return vals_to_config(vals, space)


def propose_hyperopt(proposer: str) -> Callable[..., list[Proposal]]:
    """k proposals from one of hyperopt's algorithms; only when it keeps proposing known configurations
    (a nearly exhausted space) is the rest drawn uniformly from the unused ones, marked `fallback`."""

    def propose_with(space: SpaceConfig, history: list[tuple[dict, float]], seen: set, k: int,
                     seed: int) -> list[Proposal]:
        trials = history_trials(history, space)
        out: list[Proposal] = []
        attempt = 0
        while len(out) < k and attempt < MAX_ATTEMPTS_PER_PROPOSAL * k:
            config = _suggest(proposer, space, trials, derived_seed(seed, attempt))
            attempt += 1
            if config_key(config) not in seen:
                seen.add(config_key(config))
                out.append(Proposal(config, proposer))
        if len(out) < k:
            unused = [c for c in (discrete_space(space) or []) if config_key(c) not in seen]
            rng = np.random.default_rng(derived_seed(seed, 10**6))
            for i in rng.permutation(len(unused))[: k - len(out)]:
                out.append(Proposal(unused[i], FALLBACK))
        return out

    return propose_with


def propose_grid(space: SpaceConfig, history: list[tuple[dict, float]], seen: set, k: int, seed: int) -> list[Proposal]:
    """Unused grid points in a seeded order (the history plays no part: grid search)."""
    points = grid_points(space)
    out: list[Proposal] = []
    for i in np.random.default_rng(seed).permutation(len(points)):
        if len(out) == k:
            break
        if config_key(points[i]) not in seen:
            seen.add(config_key(points[i]))
            out.append(Proposal(points[i], "grid"))
    return out


PROPOSERS: dict[str, Callable[..., list[Proposal]]] = {
    "tpe": propose_hyperopt("tpe"),
    "atpe": propose_hyperopt("atpe"),
    "rand": propose_hyperopt("rand"),
    "grid": propose_grid,
}


def propose(
    proposer: str, space: SpaceConfig, history: list[tuple[dict, float]], tried: list[dict], k: int, seed: int
) -> list[Proposal]:
    """k configurations, distinct from each other and from everything `tried`, learnt from the history
    of (configuration, score) pairs, lower being better (a quantised space can run out: then fewer)."""
    if proposer not in PROPOSERS:
        raise LshError(f"search.proposer {proposer!r}: allowed are {', '.join(PROPOSERS)}")
    return PROPOSERS[proposer](space, history, {config_key(c) for c in tried}, k, seed)
