"""The run's report (lsh report, the `report` rule): built from a real smoke run, checked against its JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
import yaml
from conftest import BIN, SMOKE, copy_project, run
from scipy import stats

from lsh import config, params_file
from lsh.config import Params
from lsh.report.correlation import MIN_CORRELATION, distance_table, final_perplexities
from lsh.report.figures import ls_curve_candidates
from lsh.report.run import load_run
from lsh.report.tables import parse_markdown_table
from lsh.schedule import plan
from lsh.stages.report import build_report, report_names

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, ptb_quick: Path) -> dict:
    """The smoke preset run once (on fewer training tokens), with every round-0 candidate trained on
    for the correlation study, and the workflow's `report` rule making results/report/."""
    project = copy_project(tmp_path_factory.mktemp("report"), ptb_quick)
    params = params_file.read_yaml(project / SMOKE)
    params["report"]["correlation_candidates"] = params["search"]["n"]  # at least 5 candidates reach the end
    params["data"]["train_tokens"] = 5000  # quicker epochs; the report's inputs are the same files
    (project / "smoke6.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([str(BIN / "snakemake"), "all", "report", "--cores", "2", "--configfile", "smoke6.yaml"], project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = project / "results"
    return {
        "project": project,
        "params": Params.from_dict(config.load_params(project / "smoke6.yaml")),
        "results": results,
        "report": results / "report",
        "selected": json.loads((results / "final" / "selected.json").read_text()),
    }


def _results_copy(results: Path, dest: Path) -> Path:
    """The run's results without checkpoints (the report reads none)."""
    shutil.copytree(results, dest, ignore=shutil.ignore_patterns("*.pt", "report", "logs"))
    return dest


def test_the_report_rule_writes_every_report_file_from_a_smoke_run(smoke: dict):
    written = sorted(p.name for p in smoke["report"].iterdir() if not p.name.startswith("."))
    assert written == sorted(report_names(has_rounds=True))
    summary = (smoke["report"] / "summary.md").read_text()
    assert smoke["selected"]["candidate"] in summary and "LSH-tpe" in summary
    assert "The correlation is missing" not in summary
    log = (smoke["results"] / "logs" / "report.log").read_text()
    assert "summary.md" in log, "the rule ran `lsh report`"


def test_table1_numbers_equal_selected_json_and_the_dense_summary(smoke: dict):
    table = pd.read_csv(smoke["report"] / "table1.csv").set_index("method")
    assert list(table.index) == ["dense", "LSH-tpe"]
    sel, budget = smoke["selected"], smoke["selected"]["budget"]
    row = table.loc["LSH-tpe"]
    assert row["candidate"] == sel["candidate"]
    assert row["valid_ppl"] == pytest.approx(sel["valid_ppl"], rel=1e-12)
    assert row["test_ppl"] == pytest.approx(sel["test_ppl"], rel=1e-12)
    assert row["candidate_epochs"] == budget["total_candidate_epochs"]
    assert row["wall_seconds"] == pytest.approx(budget["total_wall_seconds"])
    dense = json.loads((smoke["results"] / "dense-final" / "summary.json").read_text())
    assert table.loc["dense", "valid_ppl"] == pytest.approx(dense["best_valid_ppl"], rel=1e-12)
    assert table.loc["dense", "test_ppl"] == pytest.approx(dense["test_ppl"], rel=1e-12)
    assert table.loc["dense", "candidate_epochs"] == dense["epochs"]
    md = parse_markdown_table((smoke["report"] / "table1.md").read_text())
    assert list(md["method"]) == ["dense", "LSH-tpe"]
    assert float(md["test perplexity"][1]) == pytest.approx(sel["test_ppl"], abs=0.005)
    metrics = json.loads((smoke["report"] / "metrics.json").read_text())
    assert metrics["selected_test_ppl"] == sel["test_ppl"] and metrics["dense_test_ppl"] == dense["test_ppl"]
    assert metrics["candidate_epochs_total"] == budget["total_candidate_epochs"]
    assert all(isinstance(v, (int, float)) or v is None for v in metrics.values()), "flat numbers for dvc"


def test_budget_md_equals_the_planned_and_spent_budget(smoke: dict):
    budget = smoke["selected"]["budget"]
    text = (smoke["report"] / "budget.md").read_text()
    table = parse_markdown_table(text).set_index("stage")
    for rnd in budget["rounds"]:
        row = table.loc[f"round {rnd['round']}"]
        assert int(row["pool"]) == rnd["pool"]
        assert int(row["planned candidate-epochs"]) == rnd["planned_candidate_epochs"]
        assert int(row["spent candidate-epochs"]) == rnd["spent_candidate_epochs"]
    the_plan = plan(smoke["params"].search)
    assert [r["pool"] for r in budget["rounds"]] == [r.pool for r in the_plan.rounds]
    assert int(table.loc["selection", "planned candidate-epochs"]) == the_plan.total_candidate_epochs
    assert int(table.loc["selection", "spent candidate-epochs"]) == budget["candidate_epochs"]["selection"]
    assert int(table.loc["final training", "spent candidate-epochs"]) == budget["candidate_epochs"]["final"]
    assert int(table.loc["final training", "pool"]) == len(smoke["selected"]["finalists"])
    assert int(table.loc["total", "spent candidate-epochs"]) == budget["total_candidate_epochs"]
    seconds = parse_markdown_table(text.split("Wall seconds per stage:")[1]).set_index("stage")
    for stage, value in budget["wall_seconds"].items():
        assert float(seconds.loc[stage, "wall seconds"]) == pytest.approx(value, abs=5e-4)
    assert float(seconds.loc["total", "wall seconds"]) == pytest.approx(budget["total_wall_seconds"], abs=5e-4)


def test_correlation_coefficients_equal_scipys_on_the_written_points(smoke: dict):
    points = pd.read_csv(smoke["report"] / "correlation_points.csv")
    table = pd.read_csv(smoke["report"] / "correlation.csv")
    assert points["candidate"].nunique() >= MIN_CORRELATION
    assert sorted(table["epoch"].unique()) == [1, 2], "epoch 1 and, with e0 = 1, the last compared epoch"
    assert set(table["measure"]) == {"distance_blocks", "distance_sorted", "valid_ppl"}
    finals = {f["candidate"]: f["test_ppl"] for f in smoke["selected"]["finalists"]}
    for c, ppl in finals.items():
        assert (points.loc[points["candidate"] == c, "final_test_ppl"] == ppl).all(), "a finalist's own test ppl"
    checked = 0
    for row in table.itertuples():
        at = points[(points["epoch"] == row.epoch)].dropna(subset=[row.measure, "final_test_ppl"])
        assert row.n == len(at)
        if row.n >= 3:
            assert row.pearson == pytest.approx(stats.pearsonr(at[row.measure], at["final_test_ppl"])[0], abs=1e-9)
            assert row.spearman == pytest.approx(stats.spearmanr(at[row.measure], at["final_test_ppl"])[0], abs=1e-9)
            checked += 1
    assert checked >= 2


def test_distance_curves_reproduce_the_rankings_distances(smoke: dict):
    run_ = load_run(smoke["params"], smoke["results"])
    distances = distance_table(run_).set_index(["candidate", "epoch"])["distance"]
    rows = pd.concat(run_.rankings)
    for row in rows.itertuples():
        assert distances[(row.candidate, row.epoch)] == pytest.approx(row.distance, rel=1e-9)
    assert set(distances.index.get_level_values("epoch")) == set(range(run_.plan.last_epoch + 1))


def test_ls_curves_take_the_best_median_and_worst_of_round_0(smoke: dict):
    run_ = load_run(smoke["params"], smoke["results"])
    picks = ls_curve_candidates(run_)
    ranking = run_.rankings[0].sort_values("rank")["candidate"].tolist()
    assert [(name, c.id) for name, c in picks] == [
        ("best", ranking[0]), ("median", ranking[(len(ranking) - 1) // 2]), ("worst", ranking[-1])]


def test_every_png_is_a_valid_image_of_sensible_size(smoke: dict):
    pngs = sorted(smoke["report"].glob("*.png"))
    assert {p.name for p in pngs} == {n for n in report_names(True) if n.endswith(".png")}
    for png in pngs:
        image = mpimg.imread(png)
        height, width = image.shape[:2]
        assert 200 <= height <= 2500 and 400 <= width <= 3000, (png.name, image.shape)
        assert image.std() > 0.01, f"{png.name} is blank"


def test_fewer_than_five_final_candidates_writes_the_rest_and_says_why(smoke: dict, tmp_path: Path):
    results = _results_copy(smoke["results"], tmp_path / "results")
    for folder in sorted((results / "correlation").iterdir())[1:]:
        shutil.rmtree(folder)
    params = Params.from_dict(config.load_params(smoke["project"] / SMOKE))
    out = build_report(params, results, tmp_path / "report")
    assert set(out["files"]) == set(report_names(True))
    for name in report_names(True):
        assert (tmp_path / "report" / name).is_file(), name
    finals = final_perplexities(load_run(params, results))
    assert len(finals) < MIN_CORRELATION
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"The correlation is missing: only {len(finals)} candidates have a final perplexity" in summary
    assert "report.correlation_candidates" in summary
    assert pd.read_csv(tmp_path / "report" / "correlation.csv").empty
    assert "## Correlation" not in summary


def test_a_full_training_run_without_rounds_gets_a_report(smoke: dict, tmp_path: Path):
    results = tmp_path / "results"
    shutil.copytree(smoke["results"] / "final", results / "final", ignore=shutil.ignore_patterns("*.pt"))
    selected = json.loads((results / "final" / "selected.json").read_text())
    selected.update(mode="full", ranker="loss", distance_history=[])
    selected["budget"].update(rounds=[], planned_selection_candidate_epochs=0)
    (results / "final" / "selected.json").write_text(json.dumps(selected))
    params = Params.from_dict(config.load_params(smoke["project"] / SMOKE, ["search.mode=full", "search.ranker=loss"]))
    out = build_report(params, results, tmp_path / "report")
    assert set(out["files"]) == set(report_names(has_rounds=False))
    assert not (tmp_path / "report" / "ls_space.png").exists()
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "are skipped: search.mode is full" in summary and "full-training-tpe" in summary
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    assert list(table["method"]) == ["full-training-tpe"], "no dense reference without dense-final/"
    budget = parse_markdown_table((tmp_path / "report" / "budget.md").read_text())
    assert list(budget["stage"]) == ["final training", "total"]


def test_compared_runs_get_table1_rows_and_this_run_is_not_repeated(smoke: dict, tmp_path: Path):
    results = _results_copy(smoke["results"], tmp_path / "results")
    selected = json.loads((results / "final" / "selected.json").read_text())
    loss = dict(selected, ranker="loss", valid_ppl=1234.5, test_ppl=1200.25,
                budget=dict(selected["budget"], total_candidate_epochs=99, total_wall_seconds=12.5))
    for name, content in (("lsh-tpe", selected), ("loss-tpe", loss)):
        folder = results / "compare" / name / "final"
        folder.mkdir(parents=True)
        (folder / "selected.json").write_text(json.dumps(content))
    build_report(smoke["params"], results, tmp_path / "report",
                 compared=[results / "compare" / "lsh-tpe", results / "compare" / "loss-tpe"])
    table = pd.read_csv(tmp_path / "report" / "table1.csv").set_index("method")
    assert list(table.index) == ["dense", "LSH-tpe", "loss-tpe"]
    assert table.loc["loss-tpe", "test_ppl"] == 1200.25 and table.loc["loss-tpe", "candidate_epochs"] == 99
    assert table.loc["loss-tpe", "wall_seconds"] == 12.5


def test_snakemake_report_embeds_the_figures_and_tables(smoke: dict):
    out = run([str(BIN / "snakemake"), "all", "report", "--report", "results/report.html",
               "--configfile", "smoke6.yaml"], smoke["project"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    html = (smoke["project"] / "results" / "report.html").read_text()
    for name in ("ls_curves.png", "distance_curves.png", "perplexity_curves.png", "ls_space.png",
                 "correlation.png", "table1.csv", "budget.md"):
        assert name in html, name
    assert "Lyapunov spectra" in html, "the captions are in"
    # the first page (the Snakefile's `report:`): the selection against the dense model, links to the figures
    sel = smoke["selected"]
    assert "Selected configuration" in html and f"Candidate <strong>{sel['candidate']}</strong>" in html
    assert f"<td>selected {sel['candidate']}</td>" in html and f"<td>{sel['test_ppl']:.2f}</td>" in html
    assert "<td>dense reference</td>" in html
    assert "showResultInfo('results/report/perplexity_curves.png')" in html


def test_the_summary_lists_the_diverged_candidates_and_an_unselected_run(smoke: dict, tmp_path: Path):
    results = _results_copy(smoke["results"], tmp_path / "results")
    selected = json.loads((results / "final" / "selected.json").read_text())
    selected.update(status="every finalist diverged", candidate=None, config=None, valid_ppl=None, test_ppl=None,
                    diverged=[{"candidate": "c004", "where": "round 0", "epoch": 1,
                               "reason": "the validation perplexity 5e+66 is worse than uniform guessing"}])
    (results / "final" / "selected.json").write_text(json.dumps(selected))
    build_report(smoke["params"], results, tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "No candidate was selected: every finalist diverged." in summary
    assert "- c004 (round 0, epoch 1): the validation perplexity 5e+66 is worse than uniform guessing" in summary
