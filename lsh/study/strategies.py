"""The strategies the study compares, as data: what each one is (its kind, its search settings, its
budget), from which its name in the tables is derived, never parsed back.

The study's strategy set has three groups: `methods` (every ranker with every proposer, every ranker
at the pool's common epoch, i-Epoch, Optuna's TPE with Hyperband, successive halving and the
Lyapunov pruner, random search and the full-training search, at each pool size of `study.pools`),
`ls_options` (the LS ranker's options, with the grid proposer so that the ranker alone makes the
difference) and `schedules` (e0 and ei on the grid, paper Table 3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lsh.config import Params, SearchConfig
from lsh.errors import LshError
from lsh.schedule import plan
from lsh.search.proposers import PROPOSERS, TPE_STARTUP
from lsh.search.ranking import FULL_TRAINING, RANKERS, method_name
from lsh.study.signals import LS_OPTIONS

PRUNER_LABELS = {"hyperband": "hyperband", "successive_halving": "halving"}  # Optuna's pruners the study runs
KIND_NAMES = {"iepoch": "i-Epoch", "optuna_ls": "optuna-TPE-lyapunov", "random": "random", "full": FULL_TRAINING}
NEEDS_BUDGET = ("random", "optuna", "optuna_ls")  # kinds that search until a budget of candidate-epochs is spent
NEEDS_DENSE = ("ls", "loss_gap")  # rankers that compare with the dense reference (charged its epochs)
STUDY_PROPOSERS = tuple(sorted(PROPOSERS, key=lambda p: p != "grid"))  # grid first: the tables' order
SCHEDULES = [(e0, ei) for e0 in (1, 2, 3) for ei in (1, 2, 3, 4)]  # paper Table 3
SHOWS = ("", "options", "schedule")  # what an LSH strategy's name spells out beyond its ranker and proposer


def optuna_name(pruner: str, matched: bool = False) -> str:
    """Optuna's TPE with `pruner`; `matched`: its start-up trials set to hyperopt's."""
    return f"optuna-TPE-{PRUNER_LABELS[pruner]}" + (" matched" if matched else "")


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """One strategy of the study: its kind (a key of replay.STRATEGIES), its search settings (the
    schedule n, e0, ei and, for lsh, the ranker, age and proposer), and what its kind needs."""

    kind: str
    search: SearchConfig
    layout: str = "blocks"  # the spectrum layout the LS ranker compares
    pruner: str = ""  # optuna: hyperband | successive_halving (optuna_ls: the LyapunovPruner, always)
    budget: int | None = None  # random, optuna and optuna_ls: the candidate-epochs they may spend
    startup: int | None = None  # optuna, optuna_ls: TPESampler's n_startup_trials (None: the library's default, 10)
    shows: str = ""  # lsh: "options" or "schedule" adds those settings to the name (their groups vary them)

    def __post_init__(self) -> None:
        if self.kind in NEEDS_BUDGET and self.budget is None:
            raise ValueError(f"a {self.kind} strategy searches until its budget is spent: "
                             "give budget (candidate-epochs)")
        if self.kind == "optuna" and self.pruner not in PRUNER_LABELS:
            raise ValueError(f"optuna pruner {self.pruner!r}: allowed are {', '.join(PRUNER_LABELS)}")
        if self.shows not in SHOWS:
            raise ValueError(f"shows {self.shows!r}: allowed are {', '.join(map(repr, SHOWS))}")

    @property
    def ranker(self) -> str:
        return self.search.ranker

    @property
    def proposer(self) -> str:
        return self.search.proposer

    @property
    def name(self) -> str:
        """The name in the tables and figures."""
        s = self.search
        if self.kind == "optuna":
            return optuna_name(self.pruner, matched=self.startup is not None)
        if self.kind != "lsh":
            return KIND_NAMES[self.kind]
        if self.shows == "options":
            return f"{method_name(s.ranker, s.proposer)} {s.embedding}-{s.distance}-{self.layout}-{s.pca_fit}"
        if self.shows == "schedule":
            return f"{method_name(s.ranker, s.proposer)} e0={s.e0} ei={s.ei}"
        return method_name(s.ranker, s.proposer, age=s.age)


def lsh_budget(search: SearchConfig, final_epochs: int) -> int:
    """The candidate-epochs an LSH run spends at most: its selection rounds, then the finalists' training
    to final.epochs, each from the earliest epoch a finalist can have (a candidate inserted in the last
    round is at e0). The budget of the baselines: at least what LSH spends, never less."""
    the_plan = plan(search)
    if not the_plan.rounds:
        return the_plan.final_pool * final_epochs
    earliest = min(search.e0, the_plan.last_epoch) if any(r.new for r in the_plan.rounds) else the_plan.last_epoch
    return the_plan.total_candidate_epochs + the_plan.final_pool * (final_epochs - earliest)


def method_strategies(search: SearchConfig, layout: str, budget: int) -> list[Strategy]:
    """The methods compared at one pool size: every ranker with every proposer (each candidate at its own
    epoch, the paper), every ranker at the pool's common epoch with the run's proposer, i-Epoch, Optuna's
    TPE with Hyperband and successive halving (its default start-up and hyperopt's), Optuna's TPE with
    the LyapunovPruner at the LSH schedule's rungs (hyperopt's start-up), random search at the LSH
    budget, and the full-training search."""
    out = []
    for ranker in RANKERS:
        out += [Strategy(kind="lsh", search=dataclasses.replace(search, ranker=ranker, proposer=p), layout=layout)
                for p in STUDY_PROPOSERS]
        out.append(Strategy(kind="lsh", search=dataclasses.replace(search, ranker=ranker, age="common"), layout=layout))
    out.append(Strategy(kind="iepoch", search=dataclasses.replace(search, proposer="rand")))
    for pruner in PRUNER_LABELS:
        out.append(Strategy(kind="optuna", search=search, pruner=pruner, budget=budget))
        out.append(Strategy(kind="optuna", search=search, pruner=pruner, budget=budget, startup=TPE_STARTUP))
    out.append(Strategy(kind="optuna_ls", search=search, layout=layout, budget=budget, startup=TPE_STARTUP))
    out.append(Strategy(kind="random", search=search, budget=budget))
    out.append(Strategy(kind="full", search=dataclasses.replace(search, mode="full", ranker="loss", proposer="rand")))
    return out


def study_strategies(params: Params, final_epochs: int) -> list[tuple[str, Strategy, int]]:
    """(group, strategy, pool size n) for a table trained to `final_epochs`: the methods at every n of
    study.pools; the LS ranker's options and the schedules at search.n."""
    base, out = params.search, []
    layout = params.lyapunov.layout
    for n in params.study.pools:
        search = dataclasses.replace(base, n=n, mode="lsh", age="own")
        try:
            last = plan(search).last_epoch
        except LshError as e:
            raise LshError(f"study.pools: n = {n} is not a schedule the search can run ({e})") from None
        if last > final_epochs:
            raise LshError(f"study.pools: n = {n} takes the search to epoch {last}, past the table's final.epochs "
                           f"({final_epochs}); choose pool sizes whose rounds end by then "
                           "(`lsh plan --set search.n=N`)")
        out += [("methods", s, n) for s in method_strategies(search, layout, lsh_budget(search, final_epochs))]
    search = dataclasses.replace(base, mode="lsh", ranker="ls", proposer="grid")
    for embedding, distance, lay, fit in LS_OPTIONS:
        variant = dataclasses.replace(search, embedding=embedding, distance=distance, pca_fit=fit)
        out.append(("ls_options", Strategy(kind="lsh", search=variant, layout=lay, shows="options"), base.n))
    for e0, ei in SCHEDULES:
        for ranker in ("ls", "loss"):
            schedule = dataclasses.replace(base, mode="lsh", ranker=ranker, proposer="grid", e0=e0, ei=ei)
            if plan(schedule).last_epoch > final_epochs:  # its rounds would outrun final.epochs
                continue
            out.append(("schedules", Strategy(kind="lsh", search=schedule, layout=layout, shows="schedule"), base.n))
    return out
