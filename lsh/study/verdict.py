"""The study's verdict as numbers: the early signals at e0 pooled over the training seeds and their
difference paired within seeds, and LSH against the loss-based search at the headline pool size, each
with its interval and the test over training seeds the comparison rests on. The report module
(lsh/report/study.py) turns it into words; nothing here decides how strongly to say it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from lsh.config import Params
from lsh.search.ranking import method_name
from lsh.study.signals import LABELS_ONLY, POOLED
from lsh.study.statistics import SeedTest, reference_test, seed_test, seeds_for_power


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval (nan bounds: no interval)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @classmethod
    def of(cls, row: pd.Series, key: str) -> Estimate:
        return cls(row[key], row[f"{key}_low"], row[f"{key}_high"])

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True, kw_only=True)
class Signal:
    """One early signal at e0, pooled over the training seeds."""

    spearman: Estimate
    pearson: float
    recall: float  # top-quarter recall
    within: Estimate  # Spearman within death methods
    partial: Estimate  # partial Spearman controlling for the choices

    @classmethod
    def of(cls, row: pd.Series) -> Signal:
        return cls(spearman=Estimate.of(row, "spearman"), pearson=row["pearson"], recall=row["top_quarter_recall"],
                   within=Estimate.of(row, "within_death"), partial=Estimate.of(row, "partial_spearman"))


@dataclass(frozen=True, kw_only=True)
class Method:
    """One strategy at the headline pool: its selection's final test perplexity, regret and budget."""

    test_ppl: Estimate
    regret: float
    candidate_epochs: float
    charged: float  # with the dense reference's epochs, where the strategy needs them

    @classmethod
    def of(cls, row: pd.Series) -> Method:
        return cls(test_ppl=Estimate.of(row, "test_ppl"), regret=row["regret"],
                   candidate_epochs=row["candidate_epochs"],
                   charged=row.get("candidate_epochs_with_dense", row["candidate_epochs"]))


@dataclass(frozen=True, kw_only=True)
class Verdict:
    epoch: int  # e0
    seeds: int  # training seeds
    ls: Signal  # the LS distance with the params' ranker options
    loss_gap: Signal
    labels_spearman: Estimate  # the labels-only reference
    lsh: Method
    loss: Method
    signal_gap: SeedTest  # the LS distance's Spearman at e0 minus the loss gap's, paired within training seeds
    loss_vs_lsh: SeedTest  # the loss-based search's test perplexity minus LSH's, paired within training seeds
    seeds_for_one: int | None  # training seeds a paired t test needs to resolve 1 test perplexity (80 % power)
    best: float  # the table's best final test perplexity (the mean over seeds of each seed's best)
    n: int
    proposer: str

    def numbers(self) -> dict:
        """The verdict as one flat record (for a log line)."""
        def flat(prefix: str, value: object) -> dict:
            if isinstance(value, dict):
                return {k: v for key, item in value.items() for k, v in flat(f"{prefix}_{key}", item).items()}
            return {prefix: value}
        return {k: v for key, value in asdict(self).items() for k, v in flat(key, value).items()}


def headline_pool(params: Params) -> int:
    """The pool size of the verdict: search.n when the study compares it, else the first of study.pools."""
    return params.search.n if params.search.n in params.study.pools else params.study.pools[0]


def build_verdict(params: Params, signals: pd.DataFrame, methods: pd.DataFrame, default_ls: str,
                  best: float) -> Verdict:
    """The headline numbers: the signals pooled over training seeds at e0, the methods at the headline pool
    (`methods` summarised with LSH as the reference, so the loss row's difference is against LSH)."""
    at = signals[signals["seeds"] == POOLED].set_index(["signal", "epoch"])
    e0 = params.search.e0
    m = methods.set_index(["strategy", "n"])
    n0, proposer = headline_pool(params), params.search.proposer
    loss = m.loc[(method_name("loss", proposer), n0)]  # its vs_reference: against LSH (summarise_methods' reference)
    loss_vs_lsh = reference_test(loss)
    per_seed = signals[(signals["seeds"] != POOLED) & (signals["epoch"] == e0)]
    spearman = {name: per_seed[per_seed["signal"] == name].set_index("seeds")["spearman"]
                for name in (default_ls, "loss_gap")}
    return Verdict(
        epoch=e0, seeds=int(signals.loc[signals["seeds"] != POOLED, "seeds"].nunique()),
        ls=Signal.of(at.loc[(default_ls, e0)]), loss_gap=Signal.of(at.loc[("loss_gap", e0)]),
        labels_spearman=Estimate.of(at.loc[(LABELS_ONLY, e0)], "spearman"),
        signal_gap=seed_test((spearman[default_ls] - spearman["loss_gap"]).to_numpy()),
        lsh=Method.of(m.loc[(method_name("ls", proposer), n0)]), loss=Method.of(loss),
        loss_vs_lsh=loss_vs_lsh, seeds_for_one=seeds_for_power(loss_vs_lsh.sd),
        best=best, n=n0, proposer=proposer)
