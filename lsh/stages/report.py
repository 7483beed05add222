"""The run's report (results/report/): tables and figures from the files a finished run wrote.

The library (`lsh.report`) reads the run once (`load_run`) and computes tables, the
correlation study and figures from it; this stage writes every output atomically:

    summary.md            the selection, its perplexities against the dense reference, the budget, notes
    page.rst              the first page of the HTML report (`snakemake --report`): the selection again
    ...                   every file is listed, with what it holds, in lsh.layout.REPORT_FILES

The files depend only on the params (`report_names`), so the workflow's outputs are static.
A run without selection rounds (`search.mode: full`) has no spectra: ls_curves,
distance_curves and ls_space are skipped with a note in summary.md (with rounds they are
always written; a figure whose data is missing says why instead). The correlation files
are always written: with fewer than MIN_CORRELATION candidates of known final perplexity
the coefficients table is empty, the figure says why, and so does summary.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lsh import data, files, layout
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import REPORT, REPORT_FILES
from lsh.records import LAYOUTS
from lsh.report.correlation import (
    MIN_CORRELATION,
    correlation_points,
    correlation_table,
    distance_table,
    early_epochs,
    final_perplexities,
)
from lsh.report.figures import (
    ls_space,
    placeholder_figure,
    plot_correlation,
    plot_distance_curves,
    plot_ls_curves,
    plot_ls_space,
    plot_perplexity_curves,
)
from lsh.report.page import page_rst
from lsh.report.regime import alternatives_table, regime_markdown, regime_table, regime_words
from lsh.report.run import Run, load_run
from lsh.report.summary import metrics, summary_markdown
from lsh.report.tables import (
    budget_table,
    correlation_study_cost,
    dense_reference,
    markdown_table,
    seconds_table,
    table1,
)
from lsh.study.calibration import unigram_perplexity

log = logging.getLogger("lsh.stages")

FIGURES_NEEDING_ROUNDS = tuple(f.name for f in REPORT_FILES if f.needs_rounds)


def report_names(has_rounds: bool) -> list[str]:
    """The names of the files `build_report` writes: all of them for an LSH run, fewer without rounds."""
    return [f.name for f in layout.report_files(has_rounds)]


@dataclass
class _Folder:
    """The report folder as it is written: the files so far and the notes summary.md will list."""

    path: Path
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self, name: str, text: str) -> None:
        """A text file of the report, written atomically and listed."""
        files.write_text(self.path / name, text)
        self.written.append(name)


def build_report(params: Params, results_dir: str | Path, out_dir: str | Path, dense: str | Path | None = None,
                 compared: list[str | Path] = (), data_dir: str | Path | None = None) -> dict:
    """Write the report of the run in `results_dir` to `out_dir`; returns {"files": [...], "notes": [...]}.
    `dense`: the dense reference's folder (default the run's own); `compared`: other runs' results folders;
    `data_dir`: the prepared data, whose unigram perplexity each ranking is judged against (default
    data.prepared; without it the plateau is not judged)."""
    run = load_run(params, results_dir, dense, compared)
    out = _Folder(Path(out_dir))
    out.path.mkdir(parents=True, exist_ok=True)
    _write_table1(run, out)
    seconds = seconds_table(run)
    _write_budget(run, budget_table(run), seconds, out)
    if dense_reference(run) is None:
        out.notes.append("No dense reference trained to final.epochs (dense-final/): "
                         "Table 1 and this summary have no dense row.")
    if run.plan.rounds:  # the workflow expects these three whenever the params imply rounds
        _write_ls_figures(run, out)
    else:
        out.notes.append(f"{', '.join(FIGURES_NEEDING_ROUNDS)} are skipped: search.mode is full, so there are no "
                         "selection rounds and no spectra.")
    plot_perplexity_curves(run, out.path / REPORT["perplexity_curves"])
    out.written.append(REPORT["perplexity_curves"])
    correlation = _write_correlation(run, out)
    files.write_json(out.path / REPORT["metrics"], metrics(run, correlation))
    out.written.append(REPORT["metrics"])
    regime = _regime_lines(run, Path(data_dir if data_dir is not None else params.data.prepared))
    listed = sorted({*out.written, REPORT["summary"], REPORT["page"]}, key=_order)
    out.text(REPORT["summary"], summary_markdown(run, seconds, correlation, out.notes, listed, regime))
    out.text(REPORT["page"], page_rst(run, [f for f in REPORT_FILES if f.name in listed]))
    return {"files": listed, "notes": out.notes}


def _regime_lines(run: Run, data_dir: Path) -> list[str]:
    """summary.md's section on whether each ranking could answer; a ranking that could not is also a warning
    in the log (lsh.report.regime)."""
    if not run.rankings:
        return []
    try:
        corpus = data.load_corpus(data_dir, {"train_tokens": run.params.data.train_tokens})
    except LshError as e:
        log.warning("the rankings' regime is judged without the unigram perplexity: %s", e)
        unigram = None
    else:
        eval_tokens = run.params.train.eval_tokens
        valid = corpus.valid if eval_tokens is None else corpus.valid[:eval_tokens]
        unigram = unigram_perplexity(corpus.train, valid, corpus.vocab_size)
    regime = regime_table(run, unigram)
    for row in regime.itertuples():
        if not row.answers:
            log.warning("%s", regime_words(row))
    return regime_markdown(regime, alternatives_table(run))


def _write_table1(run: Run, out: _Folder) -> None:
    """table1.csv at full precision, table1.md rounded for reading."""
    table = table1(run)
    out.text(REPORT["table1"], table.to_csv(index=False))
    out.text(REPORT["table1_md"], "# Table 1\n\n" + markdown_table(
        table.drop(columns=["source"]), digits={"wall_seconds": 1},
        headers={"valid_ppl": "validation perplexity", "test_ppl": "test perplexity",
                 "candidate_epochs": "candidate-epochs", "wall_seconds": "wall seconds"})
        + "\nCandidate-epochs and wall seconds of a search count every stage it ran (for LSH the dense reference's "
          "selection epochs and spectra too); the dense row counts the reference's own epochs and seconds.\n")


def _write_budget(run: Run, budget: pd.DataFrame, seconds: pd.DataFrame, out: _Folder) -> None:
    """budget.md: candidate-epochs per stage planned against spent, wall seconds, the correlation study's cost."""
    cost = correlation_study_cost(run)
    out.text(REPORT["budget"], "# Budget\n\nCandidate-epochs per stage: planned (`lsh plan`; for the final training, "
             "from final/pool.json) against spent.\n\n"
             + markdown_table(budget, headers={"planned": "planned candidate-epochs", "spent": "spent candidate-epochs",
                                               "cumulative": "cumulative spent"})
             + "\nWall seconds per stage:\n\n"
             + markdown_table(seconds, digits={"wall_seconds": 3}, headers={"wall_seconds": "wall seconds"})
             + (f"\nNot part of the search: the correlation study trained {cost[0]} candidate-epochs in {cost[1]} s.\n"
                if cost[0] else ""))


def _write_ls_figures(run: Run, out: _Folder) -> None:
    """ls_curves, distance_curves and ls_space: each drawn, or a placeholder that says why it cannot be
    (the workflow's outputs are static), with a note."""
    if run.rounds and run.dense_spectra is not None:
        plot_ls_curves(run, out.path / REPORT["ls_curves"])
        plot_distance_curves(run, distance_table(run), out.path / REPORT["distance_curves"])
    else:
        why = "the run has no finished selection rounds or dense spectra"
        out.notes.append(f"{REPORT['ls_curves']} and {REPORT['distance_curves']} are empty: {why}.")
        for key in ("ls_curves", "distance_curves"):
            placeholder_figure(out.path / REPORT[key], why)
    space = ls_space(run)
    if space is not None:
        plot_ls_space(run, space, out.path / REPORT["ls_space"])
    else:
        why = "the selected candidate has no spectra (did no candidate finish?)"
        out.notes.append(f"{REPORT['ls_space']} is empty: {why}.")
        placeholder_figure(out.path / REPORT["ls_space"], why)
    out.written += list(FIGURES_NEEDING_ROUNDS)


def _write_correlation(run: Run, out: _Folder) -> pd.DataFrame | None:
    """correlation.png, .csv and _points.csv; the coefficients (None: too few candidates, with a note why)."""
    by_layout = {name: distance_table(run, name) for name in LAYOUTS}
    points = correlation_points(run, by_layout, early_epochs(run))
    finals = final_perplexities(run)
    correlation: pd.DataFrame | None = None
    if len(finals) >= MIN_CORRELATION:
        correlation = correlation_table(points)
        plot_correlation(points, correlation, out.path / REPORT["correlation"])
    else:
        missing, fix = _too_few_final_perplexities(run, finals)
        out.notes.append(f"The correlation is missing: {missing} {fix}")
        plot_correlation(points, pd.DataFrame(), out.path / REPORT["correlation"], missing=missing)
    out.written.append(REPORT["correlation"])
    out.text(REPORT["correlation_table"],
             (correlation if correlation is not None else correlation_table(points.iloc[0:0])).to_csv(index=False))
    out.text(REPORT["correlation_points"], points.to_csv(index=False))
    if correlation is not None and not run.rounds:
        out.notes.append("Without selection rounds there are no early LS distances: the correlation has the early "
                         "validation perplexity only.")
    return correlation


def _too_few_final_perplexities(run: Run, finals: pd.DataFrame) -> tuple[str, str]:
    """Why the correlation is missing (how many candidates have a final perplexity, from where), and the fix."""
    params = run.params
    missing = (f"only {len(finals)} candidates have a final perplexity ({MIN_CORRELATION} needed): "
               f"{(finals['source'] == 'final').sum()} of the final pool and "
               f"{(finals['source'] == 'correlation').sum()} more from the correlation study "
               f"(report.correlation_candidates: {params.correlation_candidates}).")
    if run.plan.rounds:
        fix = ("The study answers this question with confidence intervals over a whole grid of configurations "
               "(`snakemake --cores all study`, docs/study.md, its results in docs/results/); "
               f"for this run's own points, raise report.correlation_candidates (up to search.n = {params.search.n}) "
               "to train more round-0 candidates to final.epochs.")
    else:
        fix = "In search.mode full every initial candidate trains to the end: raise search.n."
    return missing, fix


def _order(name: str) -> int:
    everything = [f.name for f in REPORT_FILES]
    return everything.index(name) if name in everything else len(everything)
