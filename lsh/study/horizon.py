"""The horizon comparison (docs/results/study-horizon/PREREGISTRATION.md): one table trained to a longer
horizon and a shorter study's table of the same configurations and training seeds. Does the LS distance's
standing against the loss change when the first ranking falls earlier in the training?

For each horizon: the early signals against that horizon's final outcome (per training seed and pooled),
the LS distance's Spearman minus the loss gap's paired within training seeds, and LSH against the
loss-ranked search replayed on that table, paired within seeds; and, since the longer cells repeat the
shorter ones' first epochs, how far apart those epochs are."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lsh import csv_records
from lsh.config import Params
from lsh.errors import LshError
from lsh.records import LAYOUTS, Replay
from lsh.search.ranking import method_name
from lsh.study.cells import DENSE
from lsh.study.replay import replay_record, replay_strategies
from lsh.study.signals import POOLED, ls_signal_name, signal_points, signal_table
from lsh.study.statistics import seed_test, summarise_methods
from lsh.study.strategies import Strategy
from lsh.study.table import Table

SIGNALS = ("loss_gap", "valid_ppl")  # beside the LS distance (the validation perplexity: the released data's signal)
COMPARED = ("train_loss", "valid_loss", "valid_ppl", "test_ppl")  # the epoch columns the first-epochs check compares


def shorter_subset(longer: Table, shorter: Table) -> Table:
    """The shorter table restricted to the longer one's configurations: refused unless it has each of them
    with the same choices, the same training seeds, and a shorter horizon."""
    where = shorter.folder or "the shorter table"
    if shorter.final_epochs >= longer.final_epochs:
        raise LshError(f"{where}: trained to epoch {shorter.final_epochs}, not shorter than the table's "
                       f"{longer.final_epochs}: study.shorter names the study at the shorter horizon")
    if shorter.seeds != longer.seeds:
        raise LshError(f"{where}: training seeds {shorter.seeds}, the table's {longer.seeds}: the horizons are "
                       "compared seed by seed, so both need the same seeds")
    theirs = dict(shorter.configs)
    for cid, config in longer.configs:
        if cid not in theirs:
            raise LshError(f"{where}: has no configuration {cid}: the shorter study must hold every configuration "
                           "of the table")
        if theirs[cid] != config:
            raise LshError(f"{where}: configuration {cid} is {theirs[cid]} there and {config} here: not the same "
                           "configuration")
    return shorter.subset([cid for cid, _ in longer.configs])


def horizon_signals(tables: list[Table], params: Params, epochs: list[int]) -> pd.DataFrame:
    """The LS distance (the params' ranker options), the loss gap and the validation perplexity against each
    table's own final outcome at each early epoch: signal_table's rows with the table's horizon."""
    option = (params.search.embedding, params.search.distance, params.lyapunov.layout, params.search.pca_fit)
    keep = [ls_signal_name(*option), *SIGNALS]
    out = []
    for table in tables:
        points = signal_points(table, epochs, options=[option])
        points = points[[c for c in points.columns if c not in ("train_loss", "labels_only")]]
        rows = signal_table(points, params.seed)
        out.append(rows[rows["signal"].isin(keep)].assign(horizon=table.final_epochs))
    return pd.concat(out, ignore_index=True)


def signal_gaps(signals: pd.DataFrame, ls_signal: str, against: str = "loss_gap") -> pd.DataFrame:
    """Per horizon and early epoch: the LS distance's Spearman minus `against`'s, per training seed, and
    their seed_test (t interval over the seeds, exact sign test); `ls_lower`, the seeds on which the LS
    distance's is the lower."""
    rows = []
    per_seed = signals[signals["seeds"] != POOLED]
    for (horizon, epoch), at in per_seed.groupby(["horizon", "epoch"], sort=True):
        s = {name: at[at["signal"] == name].set_index("seeds")["spearman"] for name in (ls_signal, against)}
        gaps = (s[ls_signal] - s[against]).dropna()
        t = seed_test(gaps.to_numpy())
        rows.append({"horizon": int(horizon), "epoch": int(epoch), "against": against, "gap": t.mean,
                     "gap_low": t.low, "gap_high": t.high, "p_sign": t.p_sign, "ls_lower": t.lower,
                     "ls_higher": int((gaps > 0).sum()), "seeds": t.seeds,
                     "per_seed": " ".join(f"{g:+.3f}" for g in gaps.to_numpy())})
    return pd.DataFrame(rows)


def horizon_change(signals: pd.DataFrame, ls_signal: str, against: str = "loss_gap") -> pd.DataFrame:
    """Per early epoch: how the LS distance's Spearman minus `against`'s changes from the shorter horizon to
    the longer, paired within training seeds (the longer's gap minus the shorter's on each seed); positive:
    the LS distance gains on `against` with the horizon."""
    per_seed = signals[signals["seeds"] != POOLED]
    shorter, longer = sorted(per_seed["horizon"].unique())
    rows = []
    for epoch, at in per_seed.groupby("epoch", sort=True):
        gap = {h: (at[(at["horizon"] == h) & (at["signal"] == ls_signal)].set_index("seeds")["spearman"]
                   - at[(at["horizon"] == h) & (at["signal"] == against)].set_index("seeds")["spearman"])
               for h in (shorter, longer)}
        change = (gap[longer] - gap[shorter]).dropna()
        t = seed_test(change.to_numpy())
        rows.append({"epoch": int(epoch), "against": against, "shorter": int(shorter), "longer": int(longer),
                     "change": t.mean, "change_low": t.low, "change_high": t.high, "p_sign": t.p_sign,
                     "ls_loses": t.lower, "ls_gains": int((change > 0).sum()), "seeds": t.seeds,
                     "per_seed": " ".join(f"{g:+.3f}" for g in change.to_numpy())})
    return pd.DataFrame(rows)


def horizon_strategies(params: Params) -> list[Strategy]:
    """LSH and the loss-ranked search at the params' pool size and proposer, each candidate at its own epoch."""
    search = dataclasses.replace(params.search, mode="lsh", age="own")
    return [Strategy(kind="lsh", search=dataclasses.replace(search, ranker=r), layout=params.lyapunov.layout)
            for r in ("ls", "loss")]


def horizon_replays(table: Table, params: Params) -> pd.DataFrame:
    """LSH and the loss-ranked search replayed study.repeats times each on `table` (replays.csv's rows)."""
    strategies = horizon_strategies(params)
    outcomes = replay_strategies(table, strategies, params.space, params.study.repeats, params.seed)
    return csv_records.frame([replay_record(table, "methods", s, s.search.n, o)
                              for s, results in zip(strategies, outcomes) for o in results], Replay)


def horizon_methods(replays: dict[int, pd.DataFrame], params: Params) -> pd.DataFrame:
    """Per horizon: summarise_methods of its replays, LSH the reference (the loss-ranked search's
    `vs_reference` is its test perplexity minus LSH's, paired within training seeds); `per_seed`, that
    difference on each seed."""
    reference = method_name("ls", params.search.proposer)
    out = []
    for horizon, frame in sorted(replays.items()):
        methods = summarise_methods(frame, reference=reference).assign(horizon=horizon)
        means = frame.groupby(["strategy", "seed"])["test_ppl"].mean()
        methods["per_seed"] = [" ".join(f"{d:+.2f}" for d in (means[s] - means[reference]).to_numpy())
                               for s in methods["strategy"]]
        out.append(methods)
    return pd.concat(out, ignore_index=True)


def first_epochs(longer: Table, shorter: Table) -> pd.DataFrame:
    """Every cell's epochs 0..the shorter horizon in both tables: `identical` where each compared column (the
    losses and perplexities) agrees to the last bit, else their largest relative difference (`max_rel_diff`);
    the spectra's largest absolute difference in nats (`spectra_max_diff`, both layouts) apart, since the
    spectrum is computed after the epoch from the same weights; the validation perplexities side by side."""
    rows = []
    for cid in [DENSE, *(cid for cid, _ in longer.configs)]:
        for seed in longer.seeds:
            for epoch in range(shorter.final_epochs + 1):
                a, b = longer.row(cid, seed, epoch), shorter.row(cid, seed, epoch)
                row = {"config": cid, "seed": seed, "epoch": epoch, "identical": False, "max_rel_diff": np.nan,
                       "spectra_max_diff": np.nan, "valid_ppl_longer": np.nan, "valid_ppl_shorter": np.nan}
                if a is not None and b is not None:
                    x = np.array([a[c] for c in COMPARED], dtype=float)
                    y = np.array([b[c] for c in COMPARED], dtype=float)
                    both = np.isfinite(x) & np.isfinite(y)
                    rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(y[both]), np.finfo(float).tiny)
                    spectra = [np.abs(longer.spectrum(cid, seed, epoch, k) - shorter.spectrum(cid, seed, epoch, k))
                               for k in LAYOUTS]
                    spectra = np.concatenate([d[np.isfinite(d)] for d in spectra])
                    row.update({"identical": bool(np.array_equal(x, y, equal_nan=True)),
                                "max_rel_diff": float(rel.max()) if rel.size else np.nan,
                                "spectra_max_diff": float(spectra.max()) if spectra.size else np.nan,
                                "valid_ppl_longer": float(a["valid_ppl"]), "valid_ppl_shorter": float(b["valid_ppl"])})
                rows.append(row)
    return pd.DataFrame(rows)
