"""Where everything of a run lives under its results folder: the one definition of every path.

The stages, the report, the workflow rules (`workflow/rules/common.smk`) and the DVC
generator all ask here. Round, slot and final-slot numbers are two digits (r00, s03,
f01); a string is used as it is, so that a rule can pass its wildcard (`"{r}"`).

    <root>/resolved-params.yaml          the run's validated params, read by every job
    <root>/environment.json              what produced the run: numerics, CPU capability, versions
    <root>/dense/                        the dense reference: epoch-NNN.pt, metrics.jsonl, summary.json, spectra.json
    <root>/dense-final/                  the dense reference trained on to final.epochs
    <root>/rounds/rNN/pool.json          round NN's candidates, slot by slot
    <root>/rounds/rNN/sSS/train/         a slot's training (checkpoints, metrics, summary)
    <root>/rounds/rNN/sSS/spectra.json   its spectra, epoch by epoch
    <root>/rounds/rNN/ranking.csv        the round's ranking
    <root>/rounds/rNN/proposals.json     the candidates proposed after it
    <root>/final/pool.json, fFF/         the final pool and each finalist's training
    <root>/final/selected.json           the selection
    <root>/correlation/cCC/              round-0 candidates trained on for the report's correlation
    <root>/report/                       the report
    <root>/compare/<method>/             a run of the comparison set, laid out the same way
    <root>/study/table/<config>/sK/      a benchmark-table cell: one configuration, training seed K (rows.json)
    <root>/study/table/table.csv, spectra.npz, table.json    the table
    <root>/study/replays.csv, anytime.csv, sensitivity.csv, ls-samples.csv     the replays, the headline
                                         comparison's variations and the LS sample-size check
    <root>/study/report/                 the study's summary.md, tables and figures
    <root>/logs/                         the jobs' logs
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# File names inside a training folder and a round
CHECKPOINT = "epoch-{epoch:03d}.pt"
KEEP = ("all", "last")  # the checkpoints a training folder keeps: every epoch, or the last and the best
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CURVES = "curves.json"  # the same records as one JSON list: DVC plots cannot read JSON lines
SPECTRA = "spectra.json"
SPECTRA_CACHE = "spectra-cache.json"  # spectra the training job computed while its model was at hand
POOL = "pool.json"
RANKING = "ranking.csv"
PROPOSALS = "proposals.json"
SELECTED = "selected.json"
RESOLVED_PARAMS = "resolved-params.yaml"
ENVIRONMENT = "environment.json"
CELL_ROWS = "rows.json"  # a table cell's epochs, recorded as they are trained
TABLE_ROWS, TABLE_SPECTRA, TABLE_META = "table.csv", "spectra.npz", "table.json"  # the benchmark table
TABLE_FILES = (TABLE_ROWS, TABLE_SPECTRA, TABLE_META)
SPLIT_IDS, VOCAB, PREPARED_META = "{split}.npy", "vocab.txt", "meta.json"  # the prepared data (lsh prepare)
SUMMARY_MD = "summary.md"  # a report's words: the run's, the study's, the released data's


@dataclass(frozen=True, kw_only=True)
class ReportFile:
    """A file of the run's report (`lsh report`): its name, its output's name in the `report` rule, its
    HTML-report category (None: not shown there) and caption (workflow/report/<key>.rst), and what it holds."""

    name: str
    key: str
    category: str | None
    holds: str
    needs_rounds: bool = False  # the LS figures: only a search with selection rounds has spectra


_RESULT, _SEARCH, _CORRELATION = "1. Result", "2. Search", "3. Correlation"
REPORT_FILES = (  # in the order summary.md lists them
    ReportFile(name=SUMMARY_MD, key="summary", category=_RESULT, holds="this summary"),
    ReportFile(name="table1.md", key="table1_md", category=None,
               holds="method, validation and test perplexity, candidate-epochs and wall time (paper Table 1; "
                     "also table1.csv)"),
    ReportFile(name="table1.csv", key="table1", category=_RESULT, holds="the same as table1.md, full precision"),
    ReportFile(name="budget.md", key="budget", category=_RESULT,
               holds="candidate-epochs per round, planned against spent, and wall seconds per stage"),
    ReportFile(name="metrics.json", key="metrics", category=None,
               holds="the final numbers, flat (`dvc metrics show`)"),
    ReportFile(name="perplexity_curves.png", key="perplexity_curves", category=_SEARCH,
               holds="validation perplexity over epochs"),
    ReportFile(name="correlation.png", key="correlation", category=_CORRELATION,
               holds="early LS distance (both layouts) and validation perplexity at the same epoch against final "
                     "perplexity"),
    ReportFile(name="correlation.csv", key="correlation_table", category=_CORRELATION,
               holds="Pearson and Spearman coefficients of correlation.png"),
    ReportFile(name="correlation_points.csv", key="correlation_points", category=_CORRELATION,
               holds="the per-candidate points of correlation.png"),
    ReportFile(name="ls_curves.png", key="ls_curves", category=_SEARCH, needs_rounds=True,
               holds="spectra of the dense model and of the best, median and worst round-0 candidate"),
    ReportFile(name="distance_curves.png", key="distance_curves", category=_SEARCH, needs_rounds=True,
               holds="distance to the dense reference in LS space over epochs"),
    ReportFile(name="ls_space.png", key="ls_space", category=_SEARCH, needs_rounds=True,
               holds="the dense and the selected trajectories in 2-D PCA LS space"),
    ReportFile(name="page.rst", key="page", category=None,
               holds="the first page of `snakemake --report` (workflow/report/workflow.rst shows it)"),
)
REPORT = {f.key: f.name for f in REPORT_FILES}  # the report's file names by key: REPORT["summary"]


def report_files(has_rounds: bool) -> tuple[ReportFile, ...]:
    """The files `lsh report` writes: all of them for an LSH run, the LS figures only with rounds."""
    return tuple(f for f in REPORT_FILES if has_rounds or not f.needs_rounds)


STUDY_REPORT_FILES = (  # the study's report: the verdict, then each part as Markdown, CSV and a figure
    SUMMARY_MD, "early_signals.md", "early_signals.csv", "early_signals_points.csv", "signals.png", "methods.md",
    "methods.csv", "methods.png", "anytime.png", "ls_options.md", "ls_options.csv", "schedules.md", "schedules.csv",
    "ls_samples.md", "ls_samples.csv", "sensitivity.md", "sensitivity.csv",
)
STUDY_REPORT = {name.replace(".", "_"): name for name in STUDY_REPORT_FILES}  # STUDY_REPORT["methods_csv"]
HORIZON_REPORT_FILES = (  # the horizon comparison (study.shorter): the words, then each part
    "horizon.md", "horizon_signals.csv", "horizon_gaps.csv", "horizon_change.csv", "horizon_methods.csv",
    "first_epochs.csv", "horizon.png",
)
HORIZON_REPORT = {name.replace(".", "_"): name for name in HORIZON_REPORT_FILES}  # HORIZON_REPORT["horizon_md"]


def two(number: int | str) -> str:
    """A round or slot number as two digits; a string (a wildcard) as it is."""
    return number if isinstance(number, str) else f"{number:02d}"


@dataclass(frozen=True)
class Layout:
    """The paths of one run, rooted at its results folder."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def resolved_params(self) -> Path:
        return self.root / RESOLVED_PARAMS

    @property
    def environment(self) -> Path:
        return self.root / ENVIRONMENT

    # the dense reference
    @property
    def dense(self) -> Path:
        return self.root / "dense"

    @property
    def dense_spectra(self) -> Path:
        return self.dense / SPECTRA

    @property
    def dense_final(self) -> Path:
        return self.root / "dense-final"

    # the selection rounds
    def round_dir(self, r: int | str) -> Path:
        return self.root / "rounds" / f"r{two(r)}"

    def pool(self, r: int | str) -> Path:
        return self.round_dir(r) / POOL

    def slot(self, r: int | str, s: int | str) -> Path:
        return self.round_dir(r) / f"s{two(s)}"

    def slot_train(self, r: int | str, s: int | str) -> Path:
        return self.slot(r, s) / "train"

    def slot_spectra(self, r: int | str, s: int | str) -> Path:
        return self.slot(r, s) / SPECTRA

    def ranking(self, r: int | str) -> Path:
        return self.round_dir(r) / RANKING

    def proposals(self, r: int | str) -> Path:
        return self.round_dir(r) / PROPOSALS

    # the final training and the selection
    @property
    def final_dir(self) -> Path:
        return self.root / "final"

    @property
    def final_pool(self) -> Path:
        return self.final_dir / POOL

    def final_train(self, f: int | str) -> Path:
        return self.final_dir / f"f{two(f)}"

    @property
    def selected(self) -> Path:
        return self.final_dir / SELECTED

    # extras
    def correlation_train(self, c: int | str) -> Path:
        return self.root / "correlation" / f"c{two(c)}"

    @property
    def correlation_dir(self) -> Path:
        return self.root / "correlation"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def compare(self, method: str) -> "Layout":
        """The layout of one run of the comparison set."""
        return Layout(self.root / "compare" / method)

    @property
    def compare_report(self) -> Path:
        return self.root / "compare" / "report"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    # the study
    @property
    def study(self) -> Path:
        return self.root / "study"

    @property
    def table(self) -> Path:
        return self.study / "table"

    def table_cell(self, config: str, seed_index: int | str) -> Path:
        return cell_folder(self.table, config, seed_index)

    @property
    def replays(self) -> Path:
        return self.study / "replays.csv"

    @property
    def anytime(self) -> Path:
        return self.study / "anytime.csv"

    @property
    def sensitivity(self) -> Path:
        return self.study / "sensitivity.csv"

    @property
    def ls_samples(self) -> Path:
        return self.study / "ls-samples.csv"

    @property
    def study_report(self) -> Path:
        return self.study / "report"

    @property
    def shorter_table(self) -> Path:
        """The shorter study's table of this study's configurations (study.shorter)."""
        return self.study / "shorter-table"

    @property
    def horizon_report(self) -> Path:
        return self.study / "horizon"


def checkpoint(folder: str | Path, epoch: int) -> Path:
    """A training folder's checkpoint of `epoch`."""
    return Path(folder) / CHECKPOINT.format(epoch=epoch)


def cell_folder(table: str | os.PathLike, config: str, seed_index: int | str) -> Path:
    """A benchmark-table cell's folder under a table (a run's, or the finished cells kept in study.cells)."""
    return Path(table) / config / f"s{seed_index}"
