"""The report library (lsh.report, lsh.stages.report) and the HTML report's first page, on a synthetic run:
a small results folder written here through the records' own writers (pools, rankings, spectra, metrics,
summaries, the selection), laid out as the smoke preset's plan has it (rounds of 6 and 4 candidates, a
final pool of 2, final.epochs 3). Fast tier: no training, no Snakemake."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jinja2
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SMOKE
from docutils.core import publish_parts
from precision import EPS64, accumulated

from lsh import config, csv_records, records
from lsh.config import Params
from lsh.layout import REPORT_FILES, Layout
from lsh.records import (
    Budget,
    DistancePoint,
    Diverged,
    Epoch,
    Finalist,
    Pool,
    PoolEntry,
    RankingRow,
    RoundBudget,
    Selection,
    Spectra,
    Spectrum,
    Summary,
    Tried,
)
from lsh.report.correlation import MIN_CORRELATION, correlation_points, early_epochs, final_perplexities
from lsh.report.run import load_run, selection_name
from lsh.report.summary import metrics
from lsh.report.tables import budget_table, parse_markdown_table, table1
from lsh.stages.report import build_report, report_names

EXPONENTS = 8  # 2 layers x 4 (the blocks layout marks the layers off)
CONFIGS = {
    "c000": dict(init="uniform", death="magnitude", growth="random", redistribution="none", death_rate=0.5),
    "c001": dict(init="ER", death="SET", growth="random", redistribution="magnitude", death_rate=0.6),
    "c002": dict(init="ER", death="threshold", growth="random", redistribution="nonzeros", death_rate=0.4),
    "c003": dict(init="uniform", death="global_magnitude", growth="random", redistribution="none", death_rate=0.7),
    "c004": dict(init="uniform", death="SET", growth="random", redistribution="nonzeros", death_rate=0.8),
    "c005": dict(init="ER", death="magnitude", growth="random", redistribution="magnitude", death_rate=0.9),
    "c006": dict(init="ER", death="global_magnitude", growth="random", redistribution="none", death_rate=0.5),
}
OFFSET = {c: 0.1 * (i + 1) for i, c in enumerate(CONFIGS)}  # distance of a candidate's spectra from the dense
SELECTED = dict(candidate="c002", valid_ppl=105.25, test_ppl=101.5)
DENSE_FINAL = dict(best_valid_ppl=90.0, test_ppl=88.125, seconds=5.0)
FINAL_TEST = {"c002": 101.5, "c000": 120.0}  # the final pool's test perplexities
CORRELATION_TEST = {"c001": 130.0, "c003": 140.0, "c004": 150.0, "c000": 999.0}  # c000: also a finalist


@pytest.fixture(scope="module")
def params() -> Params:
    return Params.from_dict(config.load_params(REPO / SMOKE))


def _ppl(candidate: str, epoch: int) -> float:
    return 400.0 * (1 + OFFSET[candidate]) * 0.8 ** epoch


def _epochs(ppls: dict[int, float | None]) -> list[Epoch]:
    """metrics.jsonl lines: a None perplexity is a diverged epoch."""
    return [Epoch(epoch=e, train_loss=None if p is None else math.log(p) + 0.1,
                  train_ppl=None if p is None else p * 1.1,
                  valid_loss=None if p is None else math.log(p), valid_ppl=p, averaging=False, lr=20.0,
                  tokens_per_s=1000.0, status="ok" if p is not None else "diverged", seconds=1.0)
            for e, p in ppls.items()]


def _training(folder: Path, ppls: dict[int, float | None], *, test_ppl: float | None = None,
              candidate: str | None = None, trained: int = 1, seconds: float = 2.0) -> None:
    """A training folder: metrics.jsonl and summary.json."""
    folder.mkdir(parents=True, exist_ok=True)
    records.write_lines(folder / "metrics.jsonl", _epochs(ppls))
    finite = {e: p for e, p in ppls.items() if p is not None}
    best = min(finite, key=finite.get) if finite else None
    last = max(ppls)
    records.write(folder / "summary.json", Summary(
        status="ok" if ppls[last] is not None else "diverged", epochs=last, valid_ppl=ppls[last], best_epoch=best,
        best_valid_ppl=finite.get(best), seconds=seconds, epochs_trained=trained, test_ppl=test_ppl,
        test_epoch=best if test_ppl is not None else None, candidate=candidate,
        config=CONFIGS.get(candidate or "")))


def _spectrum(offset: float | None, epoch: int) -> Spectrum:
    if offset is None:
        return Spectrum(exponents=None, layouts=None, clipped=None, status="diverged", seconds=0.01)
    exponents = list(np.linspace(0.0, -4.0, EXPONENTS) - 0.1 * epoch + offset * (1 + 0.5 * epoch))
    return Spectrum(exponents=exponents, layouts={"blocks": exponents, "sorted": sorted(exponents, reverse=True)},
                    clipped=0, status="ok", seconds=0.01)


def _spectra(path: Path, epochs: range, offset: float | None, slot: tuple[int, int, str] | None = None) -> None:
    """spectra.json of a slot (round, slot, candidate) or of the dense reference (slot None)."""
    by_epoch = {str(e): _spectrum(None if offset is None and e > 0 else (offset or 0.0), e) for e in epochs}
    where = dict(zip(("round", "slot", "candidate"), slot)) if slot else {}
    records.write(path, Spectra(spectra=by_epoch, seconds=0.5, **where))


def _ranking(path: Path, r: int, order: list[tuple[str, int, int]], kept: int, diverged: set[str] = frozenset()):
    """ranking.csv: (candidate, slot, epoch) best first."""
    rows = []
    for rank, (c, slot, epoch) in enumerate(order, 1):
        distance = math.inf if c in diverged else OFFSET[c]
        loss = math.inf if c in diverged else math.log(_ppl(c, epoch))
        tse = math.inf if c in diverged else sum(math.log(_ppl(c, e)) + 0.1 for e in range(1, epoch + 1))
        rows.append(RankingRow(round=r, rank=rank, candidate=c, slot=slot, **CONFIGS[c], epoch=epoch, distance=distance,
                               loss_gap=distance, loss=loss, tse=tse,
                               valid_ppl=math.inf if c in diverged else _ppl(c, epoch), score=distance,
                               status="diverged" if c in diverged else "ok", kept=rank <= kept))
    csv_records.write_rows(path, rows, RankingRow)


def _selection() -> Selection:
    return Selection(
        status="ok", mode="lsh", ranker="ls", proposer="tpe", density=0.33, candidate=SELECTED["candidate"],
        config=CONFIGS["c002"], valid_ppl=SELECTED["valid_ppl"], test_ppl=SELECTED["test_ppl"], best_epoch=3,
        distance_history=[DistancePoint(round=0, epoch=1, distance=OFFSET["c002"], valid_ppl=_ppl("c002", 1), rank=1),
                          DistancePoint(round=1, epoch=2, distance=OFFSET["c002"], valid_ppl=_ppl("c002", 2), rank=1)],
        finalists=[Finalist(candidate=c, config=CONFIGS[c], status="ok", valid_ppl=_ppl(c, 3), test_ppl=t)
                   for c, t in FINAL_TEST.items()],
        diverged=[Diverged(candidate="c005", where="round 0", epoch=1, reason="the validation loss is not finite")],
        budget=Budget(planned_selection_candidate_epochs=10, candidate_epochs={"selection": 9, "final": 2},
                      total_candidate_epochs=11,
                      wall_seconds={"dense_training": 3.0, "dense_spectra": 0.5, "selection_training": 18.0,
                                    "selection_spectra": 5.0, "final_training": 4.0},
                      total_wall_seconds=30.5,
                      rounds=[RoundBudget(round=0, pool=6, planned_candidate_epochs=6, spent_candidate_epochs=6),
                              RoundBudget(round=1, pool=4, planned_candidate_epochs=4, spent_candidate_epochs=3)]))


def write_synthetic_run(root: Path) -> Path:
    """A finished smoke-sized run: round 0 of c000..c005 (c005 diverges), round 1 of its three survivors and
    the newcomer c006, the final pool c002 (selected) and c000, four candidates trained on for the
    correlation study (c000 among them), and the dense reference."""
    layout = Layout(root)
    round0 = list(CONFIGS)[:6]
    slots = [PoolEntry(slot=s, candidate=c, config=CONFIGS[c], parent=None, epochs_before=0, epochs_after=1)
             for s, c in enumerate(round0)]
    records.write(layout.pool(0), Pool(round=0, slots=tuple(slots), tried=tuple(Tried(c, CONFIGS[c]) for c in round0),
                                       next_id=6))
    for s, c in enumerate(round0):
        diverged = c == "c005"
        _training(layout.slot_train(0, s), {1: None if diverged else _ppl(c, 1)})
        _spectra(layout.slot_spectra(0, s), range(2), None if diverged else OFFSET[c], (0, s, c))
    _ranking(layout.ranking(0), 0, [("c002", 2, 1), ("c000", 0, 1), ("c001", 1, 1), ("c003", 3, 1), ("c004", 4, 1),
                                    ("c005", 5, 1)], kept=3, diverged={"c005"})
    survivors = [("c002", 2), ("c000", 0), ("c001", 1)]
    slots = [PoolEntry(slot=s, candidate=c, config=CONFIGS[c], parent=str(layout.slot_train(0, old) / "epoch-001.pt"),
                       epochs_before=1, epochs_after=2)
             for s, (c, old) in enumerate(survivors)] + [
        PoolEntry(slot=3, candidate="c006", config=CONFIGS["c006"], parent=None, epochs_before=0, epochs_after=1)]
    records.write(layout.pool(1), Pool(round=1, slots=tuple(slots), tried=tuple(Tried(c, CONFIGS[c]) for c in CONFIGS),
                                       next_id=7))
    for s, (c, _) in enumerate(survivors):
        _training(layout.slot_train(1, s), {1: _ppl(c, 1), 2: _ppl(c, 2)})
        _spectra(layout.slot_spectra(1, s), range(2, 3), OFFSET[c], (1, s, c))
    _training(layout.slot_train(1, 3), {1: _ppl("c006", 1)})
    _spectra(layout.slot_spectra(1, 3), range(2), OFFSET["c006"], (1, 3, "c006"))
    _ranking(layout.ranking(1), 1, [("c002", 0, 2), ("c000", 1, 2), ("c001", 2, 2), ("c006", 3, 1)], kept=2)

    finals = [PoolEntry(slot=f, candidate=c, config=CONFIGS[c], parent=str(layout.slot_train(1, f) / "epoch-002.pt"),
                        epochs_before=2, epochs_after=3)
              for f, c in enumerate(FINAL_TEST)]
    records.write(layout.final_pool, Pool(round="final", slots=tuple(finals),
                                          tried=tuple(Tried(c, CONFIGS[c]) for c in CONFIGS), next_id=7))
    for f, (c, test) in enumerate(FINAL_TEST.items()):
        ppls = {e: _ppl(c, e) for e in (1, 2, 3)}
        if c == SELECTED["candidate"]:
            ppls[3] = SELECTED["valid_ppl"]
        _training(layout.final_train(f), ppls, test_ppl=test, candidate=c)
    for k, (c, test) in enumerate(CORRELATION_TEST.items()):
        _training(layout.correlation_train(k), {e: _ppl(c, e) * 1.01 for e in (1, 2, 3)}, test_ppl=test, candidate=c,
                  trained=2, seconds=3.0)
    records.write(layout.selected, _selection())

    _training(layout.dense, {1: 300.0, 2: 250.0}, seconds=3.0, trained=2)
    _spectra(layout.dense_spectra, range(3), 0.0)
    _training(layout.dense_final, {1: 300.0, 2: 250.0, 3: DENSE_FINAL["best_valid_ppl"]},
              test_ppl=DENSE_FINAL["test_ppl"], seconds=DENSE_FINAL["seconds"], trained=3)
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("synthetic") / "results")


@pytest.fixture
def results(synthetic: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic run that a test may change."""
    return Path(shutil.copytree(synthetic, tmp_path / "results"))


@pytest.fixture(scope="module")
def report(synthetic: Path, params: Params, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("report")
    return {"out": out, **build_report(params, synthetic, out)}


# -----------------------------------------------------------------------------
# Reading the run


def test_candidates_are_gathered_once_each_finalists_first(synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    assert list(run.candidates) == ["c002", "c000", "c001", "c003", "c004", "c005", "c006"]
    assert [c for c, cand in run.candidates.items() if cand.finalist] == ["c002", "c000"]
    assert all(cand.config == CONFIGS[c] for c, cand in run.candidates.items())
    assert run.rounds == 2 and run.final_pool.round == "final" and run.selected.candidate == "c002"


def test_a_candidates_history_is_its_longest_training_and_its_selection_epochs_those_of_the_rounds(
        synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    layout = Layout(synthetic)
    c000, c001, c006 = run.candidates["c000"], run.candidates["c001"], run.candidates["c006"]
    assert c000.history_source == str(layout.final_train(1)), "the final training beats its correlation copy (a tie)"
    assert c001.history_source == str(layout.correlation_train(0)), "trained on to final.epochs for the correlation"
    assert [h.epoch for h in c001.history] == [1, 2, 3]
    assert (c000.selection_epochs, c001.selection_epochs, c006.selection_epochs) == (2, 2, 1)
    assert c006.history_source == str(layout.slot_train(1, 3))
    assert [h.valid_ppl for h in run.dense_history] == [300.0, 250.0, DENSE_FINAL["best_valid_ppl"]], "dense-final's"


def test_spectra_of_a_diverged_slot_are_none_and_round_0_ranks_are_kept(synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    assert run.candidates["c005"].spectra[1] is None and run.candidates["c005"].spectra[0] is not None
    assert sorted(run.candidates["c002"].spectra) == [0, 1, 2], "epochs gathered over both rounds"
    assert sorted(run.candidates["c002"].layouts) == ["blocks", "sorted"]
    assert {c: cand.round0_rank for c, cand in run.candidates.items()} == {
        "c002": 1, "c000": 2, "c001": 3, "c003": 4, "c004": 5, "c005": 6, "c006": None}
    assert run.dense_spectra.shape == (3, EXPONENTS)


def test_rankings_hold_the_csv_rows_a_diverged_distance_infinite(synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    first = run.rankings[0].set_index("candidate")
    assert list(run.rankings[0].columns) == [f for f in RankingRow.__dataclass_fields__]
    assert math.isinf(first.loc["c005", "distance"]) and first.loc["c005", "status"] == "diverged"
    assert list(first["kept"]) == [True, True, True, False, False, False]
    assert first.loc["c003", "distance"] == OFFSET["c003"], "floats read back exactly"
    assert list(run.rankings[1]["candidate"]) == ["c002", "c000", "c001", "c006"]


# -----------------------------------------------------------------------------
# Tables and the correlation


def test_table1_has_the_dense_reference_then_this_run_with_selected_json_numbers(synthetic: Path, params: Params):
    table = table1(load_run(params, synthetic)).set_index("method")
    assert list(table.index) == ["dense", "LSH-tpe"]
    assert table.loc["LSH-tpe", "candidate"] == "c002"
    assert table.loc["LSH-tpe", "test_ppl"] == SELECTED["test_ppl"]
    assert table.loc["LSH-tpe", "candidate_epochs"] == 11 and table.loc["LSH-tpe", "wall_seconds"] == 30.5
    assert table.loc["dense", "test_ppl"] == DENSE_FINAL["test_ppl"]
    assert table.loc["dense", "candidate_epochs"] == 3, "the reference's own epochs"
    assert table.loc["dense", "wall_seconds"] == 3.0 + DENSE_FINAL["seconds"], "dense/ and dense-final/ together"


def test_the_budget_plans_the_final_training_from_the_final_pool(synthetic: Path, params: Params):
    budget = budget_table(load_run(params, synthetic)).set_index("stage")
    assert list(budget.index) == ["round 0", "round 1", "selection", "final training", "total"]
    assert list(budget["spent"]) == [6, 3, 9, 2, 11]
    assert list(budget["cumulative"]) == [6, 9, 9, 11, 11]
    assert budget.loc["final training", "planned"] == 2, "two finalists from epoch 2 to 3"
    assert budget.loc["final training", "pool"] == 2 and pd.isna(budget.loc["selection", "pool"])
    assert budget.loc["total", "planned"] == 12


def test_a_finalists_own_test_perplexity_wins_over_its_correlation_copy(synthetic: Path, params: Params):
    finals = final_perplexities(load_run(params, synthetic)).set_index("candidate")
    assert list(finals.index) == ["c002", "c000", "c001", "c003", "c004"]
    assert finals.loc["c000", "final_test_ppl"] == FINAL_TEST["c000"] and finals.loc["c000", "source"] == "final"
    assert finals.loc["c003", "source"] == "correlation" and finals.loc["c003", "final_test_ppl"] == 140.0


def test_correlation_points_take_each_measure_at_the_early_epoch_itself(synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    assert early_epochs(run) == [1, 2], "e0 = 1: epoch 1 and the last compared epoch"
    points = correlation_points(run, {"blocks": pd.DataFrame({"candidate": ["c002"], "epoch": [2], "distance": [0.5]})},
                                [1, 2]).set_index(["candidate", "epoch"])
    assert points.loc[("c002", 2), "distance_blocks"] == 0.5
    assert (math.isnan(points.loc[("c002", 1), "distance_blocks"])
            and math.isnan(points.loc[("c002", 2), "distance_sorted"]))
    # the same float64 expression written to metrics.jsonl and read back exactly (JSON keeps every bit)
    assert points.loc[("c003", 2), "valid_ppl"] == _ppl("c003", 2) * 1.01, "epoch 2's, not the best"
    assert points.loc[("c002", 1), "final_test_ppl"] == SELECTED["test_ppl"]


def test_metrics_json_is_flat_with_non_finite_coefficients_as_null(synthetic: Path, params: Params):
    run = load_run(params, synthetic)
    correlation = pd.DataFrame([{"measure": "valid_ppl", "epoch": 1, "n": 5, "pearson": math.nan, "spearman": 0.5}])
    out = metrics(run, correlation)
    assert out["pearson_valid_ppl_epoch1"] is None and out["spearman_valid_ppl_epoch1"] == 0.5
    assert out["selected_test_ppl"] == SELECTED["test_ppl"] and out["dense_test_ppl"] == DENSE_FINAL["test_ppl"]
    assert out["candidate_epochs_total"] == 11 and out["wall_seconds_final_training"] == 4.0
    assert all(v is None or isinstance(v, (int, float)) for v in out.values())


def test_method_names_follow_ranker_proposer_age_and_mode():
    selection = _selection()
    name = lambda **kw: selection_name(Selection.from_json({**selection.to_json(), **kw}))  # noqa: E731
    assert name() == "LSH-tpe"
    assert name(ranker="loss", proposer="atpe") == "loss-atpe"
    assert name(ranker="loss_gap", age="common") == "loss-gap-tpe common-age"
    assert name(mode="full", ranker="loss", proposer="grid", age="common") == "full-training-grid"


# -----------------------------------------------------------------------------
# The report stage


def test_the_report_writes_exactly_the_files_it_lists(report: dict):
    written = sorted(p.name for p in report["out"].iterdir())
    assert written == sorted(report["files"]) == sorted(report_names(has_rounds=True))
    for png in report["out"].glob("*.png"):
        image = mpimg.imread(png)
        assert image.shape[0] >= 200 and image.std() > 0.01, f"{png.name} is blank"
    assert report["notes"] == [], "a complete run has nothing to explain"


def test_the_summary_compares_the_selection_with_the_dense_model(report: dict):
    summary = (report["out"] / "summary.md").read_text()
    assert summary.startswith("# Report: LSH-tpe\n")
    assert "Candidate **c002**, best epoch 3 of 3:" in summary
    assert "| ER | threshold | random | nonzeros | 0.4 |" in summary
    assert "| selected c002 | 105.25 | 101.50 |" in summary
    assert "| dense reference | 90.00 | 88.12 |" in summary
    assert "| selected - dense | 15.25 | 13.38 |" in summary
    assert "- c005 (round 0, epoch 1): the validation loss is not finite" in summary
    assert "trained 8 more candidate-epochs in 12.0 s" in summary, "the correlation study's cost"
    assert "## Correlation with final perplexity" in summary
    assert "Not recorded (environment.json is missing" in summary


def test_the_budget_and_table1_markdown_round_what_the_csv_keeps(report: dict):
    table = parse_markdown_table((report["out"] / "table1.md").read_text()).set_index("method")
    assert table.loc["LSH-tpe", "test perplexity"] == "101.50" and table.loc["dense", "wall seconds"] == "8.0"
    assert pd.read_csv(report["out"] / "table1.csv").loc[0, "test_ppl"] == DENSE_FINAL["test_ppl"]
    budget = (report["out"] / "budget.md").read_text()
    assert "the correlation study trained 8 candidate-epochs in 12.0 s" in budget
    seconds = parse_markdown_table(budget.split("Wall seconds per stage:")[1]).set_index("stage")
    assert seconds.loc["total", "wall seconds"] == "30.500"


def test_fewer_than_five_final_perplexities_leave_the_correlation_empty_and_say_why(results: Path, params: Params,
                                                                                     tmp_path: Path):
    for folder in sorted((results / "correlation").iterdir())[1:]:
        shutil.rmtree(folder)
    out = build_report(params, results, tmp_path / "report")
    assert len(final_perplexities(load_run(params, results))) == 3 < MIN_CORRELATION
    assert set(out["files"]) == set(report_names(True))
    assert pd.read_csv(tmp_path / "report" / "correlation.csv").empty
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert ("The correlation is missing: only 3 candidates have a final perplexity (5 needed): 2 of the final pool "
            "and 1 more from the correlation study (report.correlation_candidates: 0).") in summary
    assert "## Correlation" not in summary
    assert json.loads((tmp_path / "report" / "metrics.json").read_text()).keys() >= {"selected_test_ppl"}


def test_without_dense_final_table1_has_no_dense_row_and_the_summary_says_so(results: Path, params: Params,
                                                                             tmp_path: Path):
    shutil.rmtree(results / "dense-final")
    out = build_report(params, results, tmp_path / "report")
    assert list(pd.read_csv(tmp_path / "report" / "table1.csv")["method"]) == ["LSH-tpe"]
    assert out["notes"][0].startswith("No dense reference trained to final.epochs")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "nothing to compare with" in summary and "| dense reference |" not in summary


def test_a_compared_run_is_a_table1_row_and_this_run_is_not_repeated(results: Path, params: Params, tmp_path: Path):
    selection = _selection()
    loss = Selection.from_json({**selection.to_json(), "ranker": "loss", "test_ppl": 111.0})
    for name, record in (("lsh-tpe", selection), ("loss-tpe", loss)):
        records.write(Layout(results / "compare" / name).selected, record)
    run = load_run(params, results, compared=[results / "compare" / "lsh-tpe", results / "compare" / "loss-tpe"])
    assert [folder.name for folder, _ in run.compared] == ["loss-tpe"]
    table = table1(run).set_index("method")
    assert list(table.index) == ["dense", "LSH-tpe", "loss-tpe"] and table.loc["loss-tpe", "test_ppl"] == 111.0


def test_a_run_without_its_own_dense_final_takes_the_first_compared_runs(results: Path, params: Params):
    """A full-training run of a comparison set trains no dense-final/: Table 1's dense row comes from the
    first compared run that has one, its wall seconds those of that run's dense/ and dense-final/."""
    shutil.rmtree(results / "dense-final")
    other = results / "compare" / "loss-tpe"
    records.write(Layout(other).selected, Selection.from_json({**_selection().to_json(), "ranker": "loss"}))
    _training(Layout(other).dense, {1: 310.0}, seconds=4.0)
    _training(Layout(other).dense_final, {1: 300.0, 2: 95.0}, test_ppl=93.5, seconds=6.0, trained=2)
    run = load_run(params, results, compared=[other])
    assert run.dense_reference.source == Layout(other).dense_final
    dense = table1(run).set_index("method").loc["dense"]
    assert (dense["test_ppl"], dense["candidate_epochs"], dense["wall_seconds"]) == (93.5, 2, 10.0)
    assert dense["source"] == str(Layout(other).dense_final)


def test_a_run_without_rounds_skips_the_ls_figures_and_says_why(tmp_path: Path):
    full = Params.from_dict(config.load_params(REPO / SMOKE, ["search.mode=full", "search.ranker=loss"]))
    results = tmp_path / "results"
    layout = Layout(results)
    entries = [PoolEntry(slot=f, candidate=c, config=CONFIGS[c], parent=None, epochs_before=0, epochs_after=3)
               for f, c in enumerate(FINAL_TEST)]
    records.write(layout.final_pool, Pool(round="final", slots=tuple(entries),
                                          tried=tuple(Tried(c, CONFIGS[c]) for c in FINAL_TEST), next_id=2))
    for f, (c, test) in enumerate(FINAL_TEST.items()):
        _training(layout.final_train(f), {e: _ppl(c, e) for e in (1, 2, 3)}, test_ppl=test, candidate=c, trained=3)
    selection = _selection().to_json()
    selection.update(mode="full", ranker="loss", distance_history=[], diverged=[])
    selection["budget"].update(rounds=[], planned_selection_candidate_epochs=0)
    records.write(layout.selected, Selection.from_json(selection))
    out = build_report(full, results, tmp_path / "report")
    assert set(out["files"]) == set(report_names(has_rounds=False))
    assert not (tmp_path / "report" / "ls_space.png").exists()
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert summary.startswith("# Report: full-training-tpe")
    assert "ls_curves.png, distance_curves.png, ls_space.png are skipped: search.mode is full" in summary
    assert list(parse_markdown_table((tmp_path / "report" / "budget.md").read_text())["stage"]) == [
        "final training", "total"]


# -----------------------------------------------------------------------------
# The HTML report's first page (workflow/report/workflow.rst, the Snakefile's `report:`)

DESCRIPTION = REPO / "workflow" / "report" / "workflow.rst"
# Snakemake appends these targets to the description before rendering it (snakemake/report/__init__.py)
SNAKEMAKE_LINKS = textwrap.dedent("""

    .. _Workflow: javascript:show_panel('workflow')
    .. _Statistics: javascript:show_panel('statistics')
    {% for res in files %}
    .. _{{ res.target }}: javascript:app.showResultInfo('{{ res.path|urlencode }}')
    {% endfor %}
    """)
SHOWN = tuple(f.name for f in REPORT_FILES if f.category)  # report() in report.smk


def render_description(report_dir: Path | None) -> str:
    """The description as Snakemake renders it: Jinja2 (with its `files` and `snakemake.config`), then RST to HTML;
    an RST error above a warning raises."""
    files = [SimpleNamespace(target=name, path=report_dir / name) for name in SHOWN] if report_dir else []
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    rst = env.from_string(DESCRIPTION.read_text() + SNAKEMAKE_LINKS).render(
        snakemake=SimpleNamespace(config={"results": "results"}), categories={}, files=files)
    return publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["html_body"]


def test_the_report_opens_on_the_selection_against_the_dense_model_and_links_the_figures(report: dict):
    html = render_description(report["out"])
    assert '<h1 class="title">Report: LSH-tpe</h1>' in html
    assert "Candidate <strong>c002</strong>" in html
    for cell in ("ER", "threshold", "nonzeros", "0.4", "selected c002", "105.25", "101.50", "dense reference",
                 "88.12", "selected - dense", "13.38"):
        assert f"<td>{cell}</td>" in html, cell
    for name in ("perplexity_curves.png", "ls_curves.png", "distance_curves.png", "ls_space.png", "correlation.png",
                 "summary.md"):
        assert f"app.showResultInfo('{report['out'] / name}')\">{name}</a>" in html.replace("%2F", "/"), name
    assert ">table1.md</a>" not in html and ">metrics.json</a>" not in html, "only files that are in the HTML report"
    assert "README.md" in html and "docs/results/study/summary.md" in html, "where the study's verdict is"


def test_the_report_of_an_unselected_run_opens_on_why(results: Path, params: Params, tmp_path: Path):
    selection = _selection().to_json()
    selection.update(status="every finalist diverged", candidate=None, config=None, valid_ppl=None, test_ppl=None)
    records.write(Layout(results).selected, Selection.from_json(selection))
    build_report(params, results, tmp_path / "report")
    html = render_description(tmp_path / "report")
    assert "No candidate was selected: every finalist diverged." in html and "<table" not in html


def test_the_report_description_without_a_run_says_how_to_make_one():
    html = render_description(None)
    assert "This report has no result yet" in html and "snakemake <span class=\"pre\">--cores</span> all" in html


# --- could each ranking answer? (lsh.report.regime) ----------------------------------------------


def test_a_ranking_on_the_unigram_plateau_is_said_to_measure_structure_and_one_below_it_to_measure_learning(
        tmp_path, params):
    from lsh.report.regime import regime_table, regime_words

    run = load_run(params, write_synthetic_run(tmp_path / "results"))
    ppls = [r.valid_ppl for ranking in run.rankings for r in ranking.itertuples() if math.isfinite(r.valid_ppl)]
    plateau = regime_table(run, unigram=min(ppls))  # every candidate above 85 % of it: none has left the plateau
    assert list(plateau["off_plateau"]) == [0, 0] and not plateau["answers"].any()
    assert "round 0 (epoch 1, 5 candidates): the ranking could not measure learning: 0 of 5" in regime_words(
        next(plateau.itertuples()))
    learning = regime_table(run, unigram=max(ppls) / 0.8)  # 85 % of it lies above every candidate
    assert list(learning["off_plateau"]) == list(learning["candidates"]) and learning["answers"].all()
    assert "ranked while learning" in regime_words(next(learning.itertuples()))
    # round 1's survivors fell 20 % in their last epoch (_ppl's 0.8 a step); the newcomer has no previous epoch.
    # Six roundings (the two perplexities, their ratio, 1 minus it), the subtraction amplifying them 0.8 / 0.2
    assert learning.loc[1, "median_fall"] == pytest.approx(0.2, rel=accumulated(EPS64, 6, scale=4))
    unjudged = regime_table(run, unigram=None)
    assert unjudged["off_plateau"].isna().all() and "is not judged" in regime_words(next(unjudged.itertuples()))


def test_the_other_rankers_keep_what_their_scores_rank_first_and_say_whether_the_selection_could_differ(
        tmp_path, params):
    from lsh.report.regime import alternatives_table, could_differ, regime_markdown, regime_table

    root = write_synthetic_run(tmp_path / "results")
    run = load_run(params, root)
    table = alternatives_table(run).set_index(["round", "ranker"])
    # round 0: the LS distance kept c002, c000, c001; the validation loss ranks by perplexity, which _ppl
    # orders as the offsets do, the diverged c005 last
    assert table.loc[(0, "ls"), "kept"] == "c002 c000 c001" and table.loc[(0, "ls"), "used"]
    by_ppl = sorted((c for c in ("c000", "c001", "c002", "c003", "c004")), key=lambda c: _ppl(c, 1))[:3]
    assert table.loc[(0, "loss"), "kept"] == " ".join(by_ppl)
    assert table.loc[(0, "loss"), "shared"] == len(set(by_ppl) & {"c002", "c000", "c001"})
    assert could_differ(alternatives_table(run)) == any(
        table.loc[(r, k), "shared"] < table.loc[(r, k), "of"] for r, k in table.index)
    section = "\n".join(regime_markdown(regime_table(run, None), alternatives_table(run)))
    assert "## Could the rankings answer?" in section and "**c002 c000 c001**" in section
