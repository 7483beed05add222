"""Selection strategies replayed on a benchmark table, exactly and in seconds.

Every strategy spends candidate-epochs; the table says what each spent epoch would have shown.
The LSH replay runs the very code of a live run (the schedule, the proposers with the same
derived seeds, the same ranking functions on the same spectra and losses), so on a table
trained with the run's settings it selects what the live run selects, round by round.

STRATEGIES maps a strategy's kind to its replay function (table, spec, seed) -> Outcome:

    lsh       the LSH search (search.ranker ls or loss, any proposer, embedding, distance,
              layout, PCA fit and schedule), as `lsh search` runs it
    full      the full-training search: n initial candidates trained to the end
    random    random search at a budget: configurations drawn without replacement, each
              trained to the end, until the budget is spent
    optuna    Optuna's TPESampler with a pruner (HyperbandPruner or SuccessiveHalvingPruner),
              each trial reporting the table's validation loss after every epoch, at a budget
    optuna_ls Optuna's TPESampler with lsh.pruner.LyapunovPruner (LS distance at the LSH
              schedule's rungs), each trial reporting its loss and spectrum every epoch, at a budget

An Outcome holds the selected configuration, its final test perplexity, the candidate-epochs
spent, and the incumbent after every candidate-epoch: the final test perplexity of the
configuration the strategy would select if it stopped then (its best-ranked candidate during
LSH's selection, its best finished candidate otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsh.config import SpaceConfig
from lsh.errors import LshError
from lsh.records import Replay
from lsh.schedule import plan, pool_epochs
from lsh.search.proposers import DIVERGED_SCORE, propose
from lsh.search.ranking import rank, round_scores, scored_epochs
from lsh.search.space import CONFIG_KEYS, candidate_id, derived_seed
from lsh.study.cells import DENSE
from lsh.study.strategies import NEEDS_DENSE, Strategy
from lsh.study.table import Table


@dataclass(kw_only=True)
class Outcome:
    """What one replay of a strategy selected and spent."""

    strategy: str
    repeat: int = 0
    seed: int  # the training seed whose table rows were read
    config: str | None  # the selected configuration's id (None: nothing finished)
    test_ppl: float
    valid_ppl: float
    candidate_epochs: int
    rounds: list[list[str]] = field(default_factory=list)  # lsh: each round's ranking (candidate ids), best first
    incumbent: list[float] = field(default_factory=list)  # after each candidate-epoch: the incumbent's final test ppl
    candidates: dict[str, str] = field(default_factory=dict)  # lsh: candidate id -> the table's configuration id
    dense_epochs: int = 0  # the dense reference's epochs the strategy needs (its LS or loss-gap ranker compares them)
    finalist_epoch: float = math.nan  # lsh: the finalists' mean epoch when the selection ends (their age)
    newcomers_kept: float = math.nan  # lsh: the share of newcomers (inserted after round 0) that survive their round


class Ledger:
    """Candidate-epochs spent, and the incumbent's final test perplexity after each of them."""

    def __init__(self, table: Table, seed: int) -> None:
        self.table, self.seed, self.spent, self.incumbent = table, seed, 0, []
        self.current = math.inf

    def spend(self, epochs: int) -> None:
        self.spent += epochs
        self.incumbent += [self.current] * epochs

    def believe(self, config: str | None) -> None:
        """The strategy's incumbent is now `config` (its final test perplexity from the table), from the
        candidate-epoch just spent on: what that epoch showed is known after it, not one epoch later."""
        self.current = self.table.final(config, self.seed)["test_ppl"] if config else math.inf
        if self.incumbent:
            self.incumbent[-1] = self.current


def _best_finished(table: Table, seed: int, configs: list[str]) -> tuple[str | None, dict]:
    """The selection among configurations trained to the end: best validation perplexity, ties by order."""
    finals = [(table.final(c, seed), i, c) for i, c in enumerate(configs)]
    finals = [(f, i, c) for f, i, c in finals if math.isfinite(f["valid_ppl"])]
    if not finals:
        return None, {"valid_ppl": math.inf, "test_ppl": math.inf}
    f, _, c = min(finals, key=lambda x: (x[0]["valid_ppl"], x[1]))
    return c, f


def replay_lsh(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int) -> Outcome:
    """The LSH search on the table, as `lsh search` would run it (candidate ids, pools, rankings)."""
    run = _LshReplay(table, strategy, space, seed)
    search, rounds = strategy.search, plan(strategy.search).rounds
    pool = run.next_pool(0, [], run.propose([], search.n, derived_seed(proposer_seed, 0)))
    for r, rnd in enumerate(rounds):
        order, scores, epochs = run.rank(pool)
        survivors = order[: rnd.survivors]
        if r > 0:
            run.count_newcomers(pool, survivors)
        fresh = []
        if rnd.new:
            history = [(run.ids[c], scores[c] if math.isfinite(scores[c]) else DIVERGED_SCORE)
                       for c in (order if search.history == "all" else survivors)]
            fresh = run.propose(history, rnd.new, derived_seed(proposer_seed, r + 1))
        pool = run.next_pool(r + 1, [(c, epochs[c]) for c in survivors], fresh)
    return run.finish(pool, bool(rounds))


class _LshReplay:
    """The state of one LSH replay: the candidates proposed so far, the candidate-epochs spent, the
    rankings, and the counts its Outcome reports."""

    def __init__(self, table: Table, strategy: Strategy, space: SpaceConfig, seed: int) -> None:
        self.table, self.strategy, self.space, self.seed = table, strategy, space, seed
        self.ledger = Ledger(table, seed)
        self.ids: dict[str, dict] = {}  # candidate id -> configuration, in the order proposed
        self.rounds: list[list[str]] = []
        self.dense_upto, self.newcomers, self.kept_newcomers = 0, 0, 0
        self.dense_losses = table.losses(DENSE, seed)
        self.outside = table.outside(space)  # a subset table: the proposer chooses among its configurations

    def propose(self, history: list[tuple[dict, float]], k: int, seed: int) -> list[str]:
        """k new candidates from the proposer, ids continuing the run's numbering."""
        new = propose(self.strategy.proposer, self.space, history, [*self.ids.values(), *self.outside], k, seed)

        start = len(self.ids)
        for i, p in enumerate(new):
            self.ids[candidate_id(start + i)] = p.config
        return [candidate_id(start + i) for i in range(len(new))]

    def next_pool(self, r: int, survivors: list[tuple[str, int]], fresh: list[str]) -> list[tuple[str, int, int]]:
        """(candidate, epochs before, epochs after) of round r's pool, as the live pool job builds it."""
        epochs = pool_epochs(self.strategy.search, r, [e for _, e in survivors], len(fresh), self.table.final_epochs)
        return [(c, *span) for c, span in zip([c for c, _ in survivors] + fresh, epochs)]

    def rank(self, pool: list[tuple[str, int, int]]) -> tuple[list[str], dict[str, float], dict[str, int]]:
        """Train the pool (spend its epochs) and rank it as the live rank job does: the order, the scores
        and each candidate's epoch."""
        table, strategy, seed, search = self.table, self.strategy, self.seed, self.strategy.search
        for _, before, after in pool:
            self.ledger.spend(after - before)
        epochs = {c: after for c, _, after in pool}
        cid = {c: table.config_id(self.ids[c]) for c in epochs}
        seen = {c: table.observed(cid[c], seed, epochs[c], strategy.layout) for c in epochs}
        if search.ranker in NEEDS_DENSE:
            self.dense_upto = max(self.dense_upto, *scored_epochs(epochs, search.age).values())
        scores = round_scores(search.ranker, search.age, seen, self.dense_losses,
                              table.trajectory(DENSE, seed, max(epochs.values()), strategy.layout),
                              embedding=search.embedding, distance=search.distance, fit=search.pca_fit, seed=seed,
                              source="the table's dense rows")
        order = rank(scores, [c for c, _, _ in pool])
        self.rounds.append(order)
        self.ledger.believe(cid[order[0]])
        return order, scores, epochs

    def count_newcomers(self, pool: list[tuple[str, int, int]], survivors: list[str]) -> None:
        fresh = [c for c, before, _ in pool if before == 0]
        self.newcomers += len(fresh)
        self.kept_newcomers += len(set(fresh) & set(survivors))

    def finish(self, pool: list[tuple[str, int, int]], had_rounds: bool) -> Outcome:
        """Train the final pool to the end, epoch by epoch, and select the best finished."""
        table, seed = self.table, self.seed
        finished: list[str] = []
        for c, before, after in pool:
            for _ in range(after - before):
                self.ledger.spend(1)
            finished.append(table.config_id(self.ids[c]))
            self.ledger.believe(_best_finished(table, seed, finished)[0])
        selected, final = _best_finished(table, seed, finished)
        return Outcome(
            strategy=self.strategy.name, seed=seed, config=selected, test_ppl=final["test_ppl"],
            valid_ppl=final["valid_ppl"], candidate_epochs=self.ledger.spent, rounds=self.rounds,
            incumbent=self.ledger.incumbent, candidates={c: table.config_id(cfg) for c, cfg in self.ids.items()},
            dense_epochs=self.dense_upto,
            finalist_epoch=float(np.mean([before for _, before, _ in pool])) if had_rounds else math.nan,
            newcomers_kept=self.kept_newcomers / self.newcomers if self.newcomers else math.nan)


def replay_iepoch(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int) -> Outcome:
    """i-Epoch (Egele et al., 2023): n configurations from the proposer (random by default) trained for
    i = search.e0 epochs each, the best final_pool by validation loss at epoch i trained to the end; the
    selection is the best finished by validation perplexity. No dense reference, no rounds."""
    search, i = strategy.search, strategy.search.e0
    ledger = Ledger(table, seed)
    configs = [table.config_id(p.config) for p in
               propose(search.proposer, space, [], table.outside(space), search.n, derived_seed(proposer_seed, 0))]
    losses = {}
    for position, cid in enumerate(configs):
        ledger.spend(i)
        loss = table.losses(cid, seed).get(i)
        losses[position] = loss if loss is not None else math.inf
        ledger.believe(configs[min(losses, key=lambda p: (losses[p], p))])
    order = sorted(losses, key=lambda p: (losses[p], p))
    kept = [configs[p] for p in order[: search.final_pool]]
    finished: list[str] = []
    for cid in kept:
        ledger.spend(table.final_epochs - i)
        finished.append(cid)
        ledger.believe(_best_finished(table, seed, finished)[0])
    selected, final = _best_finished(table, seed, finished)
    return Outcome(strategy=strategy.name, seed=seed, config=selected, test_ppl=final["test_ppl"],
                   valid_ppl=final["valid_ppl"], candidate_epochs=ledger.spent, rounds=[[configs[p] for p in order]],
                   incumbent=ledger.incumbent, finalist_epoch=float(i))


def replay_random(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int) -> Outcome:
    """Random search at a budget: configurations without replacement, each trained to the end."""
    ledger = Ledger(table, seed)
    configs = [cid for cid, _ in table.configs]
    order = np.random.default_rng(proposer_seed).permutation(len(configs))
    finished: list[str] = []
    for i in order:
        if ledger.spent + table.final_epochs > strategy.budget:
            break
        ledger.spend(table.final_epochs)
        finished.append(configs[i])
        ledger.believe(_best_finished(table, seed, finished)[0])
    selected, final = _best_finished(table, seed, finished)
    return Outcome(strategy=strategy.name, seed=seed, config=selected, test_ppl=final["test_ppl"],
                   valid_ppl=final["valid_ppl"], candidate_epochs=ledger.spent, incumbent=ledger.incumbent)


def replay_optuna(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int) -> Outcome:
    """Optuna's TPE with a pruner, as a practitioner would run it: each trial trains a configuration,
    reporting the table's validation loss after every epoch, until the pruner stops it or it reaches
    final.epochs; trials run until the budget of candidate-epochs is spent. The selection is the best
    finished trial by validation perplexity (a run in which no trial finished selects nothing)."""
    import optuna

    pruners = {
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=table.final_epochs),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
    }
    ledger = Ledger(table, seed)
    _, finished = _run_optuna(table, strategy, space, seed, proposer_seed, pruners[strategy.pruner](), ledger)
    selected, final = _best_finished(table, seed, finished)
    return Outcome(strategy=strategy.name, seed=seed, config=selected, test_ppl=final["test_ppl"],
                   valid_ppl=final["valid_ppl"], candidate_epochs=ledger.spent, incumbent=ledger.incumbent)


def replay_optuna_ls(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int) -> Outcome:
    """Optuna's TPE with the LyapunovPruner (lsh.pruner), as a user of `lsh` would run it: each trial
    reports the table's validation loss and spectrum (in the strategy's layout) after every epoch, its
    spectrum of epoch 0 before training; at the rungs of the LSH schedule (e0, e0 + ei, .., the last
    round's epoch) a trial is pruned when its LS distance to the table's dense reference (the search's
    embedding, distance and PCA fit) is beyond the fraction 1 - search.eliminate of the distances of the
    trials measured there (at least 2). Charged as replay_optuna (per epoch, never twice for a
    configuration's epoch), at its budget; `dense_epochs` is the last rung at which a trial was compared."""
    from lsh.pruner import LyapunovPruner, report_spectrum, rung_distances

    search = strategy.search
    rungs = [r.max_epoch for r in plan(search).rounds]
    dense = table.trajectory(DENSE, seed, max(rungs, default=0), strategy.layout)
    if dense is None:
        raise LshError(f"the table's dense rows of seed {seed} have no finite spectra of every epoch 0.."
                       f"{max(rungs, default=0)}: the LS pruner has no reference")
    pruner = LyapunovPruner(dense, rungs=rungs, keep=1.0 - search.eliminate, embedding=search.embedding,
                            distance=search.distance, fit=search.pca_fit, random_state=seed)
    nan = np.full(dense.shape[1], np.nan)

    def report(trial, cid: str, epoch: int) -> None:
        points = table.trajectory(cid, seed, epoch, strategy.layout)  # None past a divergence
        report_spectrum(trial, nan if points is None else points[-1], epoch)

    ledger = Ledger(table, seed)
    study, finished = _run_optuna(table, strategy, space, seed, proposer_seed, pruner, ledger, report)
    compared = [r for t in study.trials for r in rung_distances(t)]
    selected, final = _best_finished(table, seed, finished)
    return Outcome(strategy=strategy.name, seed=seed, config=selected, test_ppl=final["test_ppl"],
                   valid_ppl=final["valid_ppl"], candidate_epochs=ledger.spent, incumbent=ledger.incumbent,
                   dense_epochs=max(compared, default=0))


def _run_optuna(table: Table, strategy: Strategy, space: SpaceConfig, seed: int, proposer_seed: int, pruner,
                ledger: Ledger, report: Callable | None = None) -> tuple:
    """Optuna's TPESampler with `pruner`, trial after trial until the budget is spent (or the space is
    exhausted); each trial reports the table's validation loss after every epoch and, with `report`
    (trial, configuration id, epoch), whatever else the pruner reads, from epoch 0 on. Returns the study
    and the configurations trained to the end, in order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # named by the seed: Hyperband assigns trials to brackets by a hash of the name, random if unnamed
    startup = {} if strategy.startup is None else {"n_startup_trials": strategy.startup}
    study = optuna.create_study(study_name=f"lsh-replay-{proposer_seed}", direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=proposer_seed % 2**32, **startup),
                                pruner=pruner)
    choices = {k: list(getattr(space, k)) for k in CONFIG_KEYS[:4]}
    rates = sorted({c["death_rate"] for _, c in table.configs})
    finished: list[str] = []
    trained: dict[str, int] = {}  # epochs already trained per configuration: a repeated one is not paid again

    def objective(trial: "optuna.Trial") -> float:
        config = {k: trial.suggest_categorical(k, v) for k, v in choices.items()}
        config["death_rate"] = trial.suggest_categorical("death_rate", rates)
        if not table.has(config):  # outside a subset table (study.configs): stopped before it trains, free
            raise optuna.TrialPruned()
        cid = table.config_id(config)
        losses = table.losses(cid, seed)
        value = math.inf
        if report is not None:
            report(trial, cid, 0)
        for epoch in range(1, table.final_epochs + 1):
            if epoch > trained.get(cid, 0):
                if ledger.spent >= strategy.budget:
                    raise optuna.TrialPruned()
                ledger.spend(1)
                trained[cid] = epoch
            value = losses[epoch] if losses[epoch] is not None else DIVERGED_SCORE
            trial.report(value, epoch)
            if report is not None:
                report(trial, cid, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if cid not in finished:
            finished.append(cid)
        ledger.believe(_best_finished(table, seed, finished)[0])
        return value

    stalled = 0
    while ledger.spent < strategy.budget and stalled < STALL_TRIALS:
        spent = ledger.spent
        study.optimize(objective, n_trials=1)
        stalled = stalled + 1 if ledger.spent == spent else 0
    return study, finished


STALL_TRIALS = 200  # optuna: trials in a row that train nothing new (the space is exhausted) end the search

STRATEGIES: dict[str, Callable[[Table, Strategy, SpaceConfig, int, int], Outcome]] = {
    "lsh": replay_lsh,
    "iepoch": replay_iepoch,
    "full": replay_lsh,  # search.mode full: the same code without rounds
    "random": replay_random,
    "optuna": replay_optuna,
    "optuna_ls": replay_optuna_ls,
}


def replay(table: Table, strategy: Strategy, space: SpaceConfig, repeats: int, base_seed: int) -> list[Outcome]:
    """`repeats` replays with independent proposer seeds, cycling over the table's training seeds. Repeat 0
    uses `base_seed` itself, so that it is the live run of the params with that seed."""
    if strategy.kind not in STRATEGIES:
        raise ValueError(f"strategy kind {strategy.kind!r}: allowed are {', '.join(STRATEGIES)}")
    seeds, space = table.seeds, table.replay_space(space)
    out = []
    for r in range(repeats):
        proposer_seed = base_seed if r == 0 else derived_seed(base_seed, 7919, r)
        outcome = STRATEGIES[strategy.kind](table, strategy, space, seeds[r % len(seeds)], proposer_seed)
        out.append(dataclasses.replace(outcome, repeat=r))
    return out


def _replay_one(job: tuple) -> list[Outcome]:
    table, strategy, space, repeats, seed, threads = job
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):  # t-SNE's OpenMP threads in every worker would oversubscribe the cores
        return replay(table if isinstance(table, Table) else Table.load(table), strategy, space, repeats, seed)


def replay_strategies(table: Table, strategies: list[Strategy], space: SpaceConfig, repeats: int, base_seed: int,
                      workers: int = 1) -> list[list[Outcome]]:
    """Every strategy's replays (`replay`), in `workers` processes (each loads the table from its folder
    and runs its libraries on one thread), in the strategies' order."""
    threads = 1 if workers > 1 else None  # None: the libraries' own default
    if workers > 1 and table.folder is None:
        raise ValueError("replays in worker processes load the table from its folder: give a loaded table")
    source: Table | Path = table.folder if workers > 1 else table
    jobs = [(source, strategy, space, repeats, base_seed, threads) for strategy in strategies]
    if workers <= 1:
        return [_replay_one(job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_replay_one, jobs))


def replay_record(table: Table, group: str, strategy: Strategy, n: int, o: Outcome) -> Replay:
    """A replay's row of replays.csv: what it selected, its regret against the seed's best, its budget."""
    best_config, seed_best = table.best(o.seed)
    return Replay(group=group, strategy=strategy.name, kind=strategy.kind, n=n, e0=strategy.search.e0,
                  ei=strategy.search.ei, repeat=o.repeat, seed=o.seed, config=o.config, test_ppl=o.test_ppl,
                  valid_ppl=o.valid_ppl, regret=o.test_ppl - seed_best, candidate_epochs=o.candidate_epochs,
                  selects_best=o.config == best_config, dense_epochs=o.dense_epochs,
                  candidate_epochs_with_dense=o.candidate_epochs + o.dense_epochs,
                  finalist_epoch=o.finalist_epoch, newcomers_kept=o.newcomers_kept)
