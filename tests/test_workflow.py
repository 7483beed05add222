"""The Snakemake workflow and the DVC stages, run for real in a copy of the project."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lsh import config, search

from conftest import BIN, REPO, copy_project


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def project(tmp_path: Path, ptb_raw: Path) -> Path:
    return copy_project(tmp_path, ptb_raw)


def test_snakemake_lint_is_clean():
    out = run([str(BIN / "snakemake"), "--lint"], REPO)
    assert out.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_dry_run_shows_the_prepare_stage(project: Path):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1"], project)
    assert out.returncode == 0, out.stderr
    assert "prepare" in out.stdout


def test_bad_config_stops_snakemake_before_any_job(project: Path):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", "seed=-5"], project)
    assert out.returncode != 0
    assert "seed: -5 is less than the minimum of 0" in out.stdout + out.stderr


SMOKE = "workflow/presets/smoke.yaml"


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory, ptb_raw: Path) -> list[Path]:
    """The smoke preset run twice from scratch, in two copies of the project (same seed)."""
    runs = []
    for name in ("one", "two"):
        project = copy_project(tmp_path_factory.mktemp(name), ptb_raw)
        out = run([str(BIN / "snakemake"), "--cores", "2", "--configfile", SMOKE], project)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        runs.append(project)
    return runs


def test_smoke_preset_runs_the_whole_search_and_reruns_nothing(smoke_runs: list[Path]):
    project = smoke_runs[0]
    meta = json.loads((project / "data" / "prepared" / "meta.json").read_text())
    assert meta["tokens"]["train"] == 20_000, "the preset's data.train_tokens reaches `lsh prepare`"
    params = config.load_params(project / SMOKE)
    the_plan = search.plan(params["search"])
    dense = project / "results" / "dense"
    assert json.loads((dense / "summary.json").read_text())["epochs"] == the_plan.last_epoch
    assert sorted(p.name for p in dense.glob("*.pt")) == [f"epoch-{e:03d}.pt" for e in range(the_plan.last_epoch + 1)]
    for r, rnd in enumerate(the_plan.rounds):
        rdir = project / "results" / "rounds" / f"r{r:02d}"
        pool = json.loads((rdir / "pool.json").read_text())
        assert len(pool["slots"]) == rnd.pool
        ranking = (rdir / "ranking.csv").read_text().splitlines()
        assert len(ranking) == rnd.pool + 1 and ranking[0].startswith("round,rank,candidate")
    selected = json.loads((project / "results" / "final" / "selected.json").read_text())
    assert selected["status"] == "ok" and selected["valid_ppl"] > 0 and selected["test_ppl"] > 0
    assert set(selected["config"]) == set(search.CONFIG_KEYS)
    assert selected["budget"]["candidate_epochs"]["selection"] == the_plan.total_candidate_epochs
    again = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", SMOKE], project)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_same_seed_gives_the_same_pools_rankings_and_selection(smoke_runs: list[Path]):
    one, two = (p / "results" for p in smoke_runs)
    for path in sorted(one.glob("rounds/*/*.json")) + [one / "final" / "pool.json"]:
        assert json.loads(path.read_text()) == json.loads((two / path.relative_to(one)).read_text()), path
    for path in sorted(one.glob("rounds/*/ranking.csv")):
        assert path.read_text() == (two / path.relative_to(one)).read_text(), path
    a, b = (json.loads((r / "final" / "selected.json").read_text()) for r in (one, two))
    for key in ("candidate", "config", "valid_ppl", "test_ppl", "distance_history", "finalists"):
        assert a[key] == b[key], key


def test_dvc_shows_the_stages_and_dry_runs_prepare(project: Path):
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    out = run([str(BIN / "dvc"), "repro", "--dry", "prepare"], project)
    assert out.returncode == 0, out.stderr
    assert "Running stage 'prepare'" in out.stdout
    dag = run([str(BIN / "dvc"), "dag"], project)
    assert "prepare" in dag.stdout and "dense" in dag.stdout
