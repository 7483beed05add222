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


def test_snakemake_runs_the_smoke_preset_and_reruns_nothing(project: Path):
    smoke = "workflow/presets/smoke.yaml"
    out = run([str(BIN / "snakemake"), "--cores", "2", "--configfile", smoke], project)
    assert out.returncode == 0, out.stderr
    meta = json.loads((project / "data" / "prepared" / "meta.json").read_text())
    assert meta["tokens"]["train"] == 20_000, "the preset's data.train_tokens reaches `lsh prepare`"
    last = search.plan(config.load_params(project / smoke)["search"]).last_epoch
    dense = project / "results" / "dense"
    assert json.loads((dense / "summary.json").read_text())["epochs"] == last
    assert sorted(p.name for p in dense.glob("*.pt")) == [f"epoch-{e:03d}.pt" for e in range(last + 1)]
    again = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", smoke], project)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_dvc_shows_the_stages_and_dry_runs_prepare(project: Path):
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    out = run([str(BIN / "dvc"), "repro", "--dry", "prepare"], project)
    assert out.returncode == 0, out.stderr
    assert "Running stage 'prepare'" in out.stdout
    dag = run([str(BIN / "dvc"), "dag"], project)
    assert "prepare" in dag.stdout and "dense" in dag.stdout
