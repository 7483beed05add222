"""The horizon comparison in words (horizon.md), from the numbers lsh/study/horizon.py computed. As in the
study's report, a difference is called established only where the 95 % t interval of the difference paired
within training seeds excludes zero; the exact sign test's p is given beside it."""

from __future__ import annotations

import pandas as pd

from lsh.config import Params
from lsh.report.study import estimate_words, fmt, interval_column, seed_count_words, test_words
from lsh.report.tables import markdown_table
from lsh.search.ranking import method_name
from lsh.study.signals import POOLED
from lsh.study.statistics import SeedTest
from lsh.study.verdict import Estimate

SIGNAL_WORDS = {"loss_gap": "the validation-loss gap", "valid_ppl": "the validation perplexity"}


def established(t: SeedTest) -> str:
    """Whether a paired difference over training seeds is established, by its t interval."""
    return {True: "the t interval is clear of zero",
            False: "the t interval includes zero: not established",
            None: "no interval (fewer than 2 training seeds): nothing is established"}[t.clear_of_zero()]


def _test(row: pd.Series, key: str, lower: str) -> SeedTest:
    return SeedTest(mean=row[key], low=row[f"{key}_low"], high=row[f"{key}_high"], p_sign=row["p_sign"],
                    lower=int(row[lower]), seeds=int(row["seeds"]), sd=float("nan"))


def signal_sentence(signals: pd.DataFrame, gaps: pd.DataFrame, ls: str, horizon: int, e0: int) -> str:
    """The signals at e0 against one horizon's outcome, and the LS distance's Spearman minus the loss gap's."""
    pooled = signals[(signals["seeds"] == POOLED) & (signals["horizon"] == horizon) & (signals["epoch"] == e0)]
    said = {name: estimate_words(Estimate.of(row, "spearman")) for name, row in pooled.set_index("signal").iterrows()}
    gap = gaps[(gaps["horizon"] == horizon) & (gaps["epoch"] == e0)].iloc[0]
    t = _test(gap, "gap", "ls_lower")
    return (f"Against the outcome at epoch {horizon}, at epoch {e0} (pooled over the training seeds) the LS distance "
            f"ranks the configurations with Spearman {said[ls]}, {SIGNAL_WORDS['loss_gap']} with {said['loss_gap']}, "
            f"{SIGNAL_WORDS['valid_ppl']} with {said['valid_ppl']}. The LS distance's minus the loss gap's, paired "
            f"within training seeds: {test_words(t)}, per seed {gap['per_seed']}; the LS distance's the higher on "
            f"{int(gap['ls_higher'])} of {t.seeds} seeds; {established(t)}.")


def change_sentence(change: pd.DataFrame, e0: int) -> str:
    """How the LS-vs-loss difference at e0 moves from the shorter horizon to the longer."""
    row = change[change["epoch"] == e0].iloc[0]
    t = _test(row, "change", "ls_loses")
    direction = "gains on" if t.mean > 0 else "loses ground to"
    return (f"From the outcome at epoch {int(row['shorter'])} to the outcome at epoch {int(row['longer'])}, the LS "
            f"distance {direction} the loss gap at epoch {e0}: the difference above changes by {test_words(t)}, "
            f"per seed {row['per_seed']}; upward on {int(row['ls_gains'])} of {t.seeds} seeds; {established(t)}.")


def method_sentence(methods: pd.DataFrame, proposer: str, horizon: int) -> str:
    """LSH against the loss-ranked search replayed on one horizon's table, with their budgets."""
    at = methods[methods["horizon"] == horizon].set_index("strategy")
    lsh, loss = at.loc[method_name("ls", proposer)], at.loc[method_name("loss", proposer)]
    t = SeedTest(mean=loss["vs_reference"], low=loss["vs_reference_low"], high=loss["vs_reference_high"],
                 p_sign=loss["vs_reference_p_sign"], lower=int(loss["lower_seeds"]), seeds=int(loss["seeds"]),
                 sd=loss["vs_reference_sd"])
    return (f"Replayed on the table to epoch {horizon}: LSH selects final test perplexity "
            f"{estimate_words(Estimate.of(lsh, 'test_ppl'))} for {lsh['candidate_epochs_with_dense']:.1f} "
            f"candidate-epochs with its dense reference's, the loss-ranked search "
            f"{estimate_words(Estimate.of(loss, 'test_ppl'))} for {loss['candidate_epochs_with_dense']:.1f}; the "
            f"loss-ranked search's minus LSH's, paired within training seeds: {test_words(t)}, per seed "
            f"{loss['per_seed']}; the lower on {t.lower} of {t.seeds} seeds; {established(t)}.")


def epochs_words(epochs: pd.DataFrame, machines: pd.DataFrame, seeds: list[int], shorter: int) -> str:
    """How far the longer cells' first epochs are from the shorter cells', by the machine that trained them."""
    frame = epochs.copy()
    if not machines.empty:
        cpu = {(r.config, seeds[r.seed_index]): r.cpu for r in machines.itertuples() if r.seed_index < len(seeds)}
        frame["cpu"] = [cpu.get((c, s), "not recorded") for c, s in zip(frame["config"], frame["seed"])]
    else:
        frame["cpu"] = "not recorded"
    parts = []
    for cpu, at in frame.groupby("cpu", sort=True):
        cells = at[["config", "seed"]].drop_duplicates().shape[0]
        same = [f"epoch {e}: {int(g['identical'].sum())}" for e, g in at.groupby("epoch")]
        parts.append(f"{cells} cells trained on {cpu} (identical cells per epoch, {', '.join(same)})")
    differ = frame[~frame["identical"]]
    largest = (f"; where they differ, the largest relative difference in a loss or perplexity is "
               f"{fmt(differ['max_rel_diff'].max(), 4)} and the median {fmt(differ['max_rel_diff'].median(), 4)}"
               if len(differ) else "")
    return (f"Epochs 0 to {shorter} of each longer cell against the shorter study's cell of the same configuration "
            f"and seed (identical: every loss and perplexity equal to the last bit): " + "; ".join(parts) + largest
            + f". The spectra, computed after each epoch from its weights, differ by at most "
            f"{fmt(frame['spectra_max_diff'].max(), 6)} nats in an exponent (at epoch 0, from the same initial "
            f"weights: {fmt(frame.loc[frame['epoch'] == 0, 'spectra_max_diff'].max(), 6)}).")


def horizon_markdown(params: Params, signals: pd.DataFrame, gaps: pd.DataFrame, change: pd.DataFrame,
                     methods: pd.DataFrame, epochs: pd.DataFrame, machines: pd.DataFrame, ls: str,
                     horizons: tuple[int, int], decays: tuple[int | None, int | None] = (None, None)) -> str:
    """horizon.md: what is compared, the signals and the searches at each horizon, and the first epochs;
    `decays`, each study's death-rate decay in epochs (the shorter's, this one's), as their tables record it."""
    shorter, longer = horizons
    e0, seeds = params.search.e0, sorted(epochs["seed"].unique().tolist())
    configs = sorted(set(epochs["config"]) - {"dense"})
    gap_md = gaps.copy()
    gap_md["gap"] = interval_column(gap_md, "gap")
    change_md = change.copy()
    change_md["change"] = interval_column(change_md, "change")
    sig_md = signals[signals["seeds"] == POOLED].copy()
    for key in ("spearman", "pearson"):
        sig_md[key] = interval_column(sig_md, key)
    meth_md = methods.copy()
    for key in ("test_ppl", "vs_reference"):
        meth_md[key] = interval_column(meth_md, key)
    meth_md = meth_md.rename(columns={"vs_reference": "vs_lsh", "vs_reference_p_sign": "sign_p"})
    per_epoch = epochs.groupby("epoch").agg(cells=("identical", "size"), identical=("identical", "sum"),
                                            max_rel_diff=("max_rel_diff", "max"),
                                            spectra_max_diff=("spectra_max_diff", "max")).reset_index()
    per_epoch = per_epoch.astype(object)  # whole counts stay whole in the table (a float row would show 20.00)
    return "\n".join([
        f"# The horizon comparison: ranked at epoch {e0} of {shorter} and of {longer}", "",
        f"The same {len(configs)} configurations ({', '.join(configs)}) and the dense reference, with the same "
        f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}): this study's table trained to epoch {longer}, "
        f"the shorter study's (`{params.study.shorter}`) to epoch {shorter}. The first ranking (e0 = {e0}) falls at "
        f"{e0}/{shorter} of the shorter training and {e0}/{longer} of the longer. Each signal is scored against its "
        f"own table's final outcome (the test perplexity at the best validation epoch), and each table's signals are "
        f"its own"
        + (f": the death rate decays over {decays[0]} epochs in the shorter study and {decays[1]} in this one, so "
           "after the first topology update the two studies' cells train differently (the last section), and a "
           "change between the horizons is the horizon's and that of the training together. " if decays[0] != decays[1]
           else ". ")
        + f"The searches are LSH and the loss-ranked search, n = "
        f"{params.search.n}, proposer {params.search.proposer}, {params.study.repeats} replays each, choosing among "
        f"these configurations.", "",
        signal_sentence(signals, gaps, ls, shorter, e0), "",
        signal_sentence(signals, gaps, ls, longer, e0), "",
        change_sentence(change, e0), "",
        method_sentence(methods, params.search.proposer, shorter), "",
        method_sentence(methods, params.search.proposer, longer),
        *(["", caveat] if (caveat := seed_count_words(len(seeds))) else []), "",
        epochs_words(epochs, machines, seeds, shorter), "",
        "## The LS distance's Spearman minus the loss gap's, per early epoch and horizon", "",
        "Paired within training seeds: mean and 95 % t interval over the seeds, the exact sign test's p, the seeds "
        "on which the LS distance's is the lower (`horizon_gaps.csv`).", "",
        markdown_table(gap_md[["horizon", "epoch", "gap", "p_sign", "ls_lower", "ls_higher", "seeds", "per_seed"]],
                       digits={"p_sign": 2}), "",
        "## Its change from the shorter horizon to the longer", "",
        "The longer horizon's difference minus the shorter's on each seed (`horizon_change.csv`); positive: the LS "
        "distance gains on the loss gap when the outcome lies further ahead.", "",
        markdown_table(change_md[["epoch", "shorter", "longer", "change", "p_sign", "ls_loses", "ls_gains", "seeds",
                                  "per_seed"]],
                       digits={"p_sign": 2}), "",
        "## The signals, pooled over training seeds", "",
        "Spearman and Pearson with each horizon's final outcome, 95 % bootstrap intervals resampling whole "
        "configurations (`horizon_signals.csv` has each seed's too). `horizon.png` draws them and the paired "
        "differences.", "",
        markdown_table(sig_md[["horizon", "epoch", "signal", "n", "spearman", "pearson", "top_quarter_recall"]],
                       digits={"top_quarter_recall": 2}), "",
        "## The searches at each horizon", "",
        "Mean over the training seeds of each seed's mean over the replays, 95 % t interval over the seeds; "
        "`vs_lsh`: the test perplexity minus LSH's, paired within seeds (`horizon_methods.csv`).", "",
        markdown_table(meth_md[["horizon", "strategy", "n", "test_ppl", "regret", "candidate_epochs",
                                "candidate_epochs_with_dense", "vs_lsh", "sign_p", "per_seed", "selects_best"]],
                       digits={"regret": 2, "candidate_epochs": 1, "candidate_epochs_with_dense": 1, "sign_p": 2,
                               "selects_best": 2}), "",
        "## The first epochs at both horizons", "",
        "Cells whose losses and perplexities at an epoch are identical in both tables, the largest relative "
        "difference of a loss or perplexity, and the spectra's largest difference in nats (`first_epochs.csv`: "
        "every cell and epoch).", "",
        markdown_table(per_epoch, digits={"max_rel_diff": 4, "spectra_max_diff": 6}), "",
    ])
