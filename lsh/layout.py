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
STUDY_REPORT_FILES = (  # the study's report: the verdict, then each part as Markdown, CSV and a figure
    "summary.md", "early_signals.md", "early_signals.csv", "early_signals_points.csv", "signals.png", "methods.md",
    "methods.csv", "methods.png", "anytime.png", "ls_options.md", "ls_options.csv", "schedules.md", "schedules.csv",
    "ls_samples.md", "ls_samples.csv", "sensitivity.md", "sensitivity.csv",
)


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


def checkpoint(folder: str | Path, epoch: int) -> Path:
    """A training folder's checkpoint of `epoch`."""
    return Path(folder) / CHECKPOINT.format(epoch=epoch)


def cell_folder(table: str | os.PathLike, config: str, seed_index: int | str) -> Path:
    """A benchmark-table cell's folder under a table (a run's, or the finished cells kept in study.cells)."""
    return Path(table) / config / f"s{seed_index}"
