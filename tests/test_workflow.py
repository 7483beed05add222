"""The Snakemake workflow and the DVC stages, run for real in a copy of the project."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import BIN, REPO, SMALL_RUN, SMOKE, WORKFLOW_RUN, clone_of, copy_project, ok, run

from lsh import config, numerics, params_file
from lsh.config import ModelParams, Params
from lsh.layout import Layout
from lsh.schedule import plan
from lsh.search.space import CONFIG_KEYS, config_key
from lsh.stages import propose, rank


def test_snakemake_lint_is_clean():
    out = run([str(BIN / "snakemake"), "--lint"], REPO)
    assert out.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_dry_run_shows_the_prepare_stage(project: Path):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1"], project)
    assert out.returncode == 0, out.stderr
    assert "prepare" in out.stdout


def test_the_paper_round_preset_plans_one_round_of_paper_size_jobs(project: Path):
    """The README's one-GPU check of the paper-size path: 4 candidates of the 2 x 1500 LSTM on the full
    PTB, one round, 2 finalists, the report (dry run: the jobs and their count, nothing trained)."""
    preset = "workflow/presets/paper-lstm-round.yaml"
    params = yaml.safe_load((REPO / preset).read_text())
    assert (params["model"]["hidden"], params["model"]["layers"], params["data"]["train_tokens"]) == (1500, 2, None)
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", preset], project)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert jobs["train_candidate"] == "4" and jobs["train_final"] == "2" and jobs["report"] == "1", jobs
    assert "rank" in jobs and "propose" not in jobs  # one round: nothing proposed after it


PRESETS = sorted(p.name for p in (REPO / "workflow" / "presets").glob("*.yaml"))


@pytest.mark.parametrize("preset", [*PRESETS, "Snakefile"])
def test_the_command_a_presets_header_shows_plans_without_an_error(project: Path, preset: str):
    """A user copies the line a preset's header (or the Snakefile's) gives: dry-run, it plans (a target
    after `--configfile` would be read as a second config file)."""
    path = REPO / "Snakefile" if preset == "Snakefile" else REPO / "workflow" / "presets" / preset
    header = "\n".join(line.split("  #")[0] for line in path.read_text().splitlines() if line.startswith("#"))
    commands = re.findall(r"(snakemake [^`\n]*?)\s*$", header, flags=re.M)
    assert commands and (preset == "Snakefile" or all(f"workflow/presets/{preset}" in c for c in commands)), header
    for command in commands:
        out = run([str(BIN / "snakemake"), "-n", *shlex.split(command)[1:]], project)
        assert out.returncode == 0, (command, out.stdout[-1500:] + out.stderr[-1500:])


@pytest.mark.parametrize("setting, named", [
    ("seed=-5", "seed: -5 is less than the minimum of 0"),
    ("results=params.yaml", "results: 'params.yaml' is a file, not a folder"),
    ("results=r{x}", "results: 'r{x}' holds a brace"),
    ("results=-r", "results: '-r' starts with a dash"),
])
def test_bad_config_stops_snakemake_before_any_job(project: Path, setting: str, named: str):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", setting], project)
    assert out.returncode != 0
    assert named in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr, out.stderr[-2000:]


COMPARISON = yaml.safe_load((REPO / "workflow" / "comparison.yaml").read_text())


@pytest.mark.slow
@WORKFLOW_RUN
def test_smoke_preset_runs_the_whole_search_and_reruns_nothing(smoke_run: Path, tmp_path: Path):
    project = smoke_run
    meta = json.loads((project / "data" / "prepared" / "meta.json").read_text())
    assert meta["tokens"]["train"] == 20_000, "the preset's data.train_tokens reaches `lsh prepare`"
    params = Params.from_dict(config.load_params(project / SMOKE))
    the_plan = plan(params.search)
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
    environment = json.loads((project / "results" / "environment.json").read_text())
    assert environment["numerics"] == params.numerics == "portable" or numerics.portable_possible() is not None
    assert set(environment["versions"]) == set(numerics.PACKAGES)
    summary = (project / "results" / "report" / "summary.md").read_text()
    assert "## Environment" in summary and f"| numpy | {environment['versions']['numpy']} |" in summary
    # the smoke preset ranks after one epoch of 20,000 tokens: on the unigram plateau, and its report says so
    assert "round 0 (epoch 1, 6 candidates): the ranking could not measure learning" in summary
    assert set(selected["config"]) == set(CONFIG_KEYS)
    assert selected["budget"]["candidate_epochs"]["selection"] == the_plan.total_candidate_epochs
    copy = clone_of(project, tmp_path / "p")  # a dry run still writes in its project, which others read
    for command in (["-n"], ["-n", "--configfile", SMOKE]):  # params.yaml is the preset: either way, nothing
        again = run([str(BIN / "snakemake"), *command, "--cores", "1"], copy)
        assert "Nothing to be done" in again.stdout + again.stderr, command


def test_dvc_shows_the_stages_and_dry_runs_prepare(project: Path):
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    out = run([str(BIN / "dvc"), "repro", "--dry", "prepare"], project)
    assert out.returncode == 0, out.stderr
    assert "Running stage 'prepare'" in out.stdout
    dag = run([str(BIN / "dvc"), "dag"], project)
    assert "prepare" in dag.stdout and "dense" in dag.stdout
    study = run([str(BIN / "dvc"), "stage", "list", "workflow/study/dvc.yaml"], project)
    assert study.returncode == 0, study.stderr
    assert "study-table" in study.stdout and "results/study/table" in study.stdout
    # the study's table starts from the root pipeline's prepared data (a dry run stops where data is missing)
    dry = run([str(BIN / "dvc"), "repro", "--dry", "workflow/study/dvc.yaml:study-table"], project)
    assert "Running stage 'prepare'" in dry.stdout, dry.stdout + dry.stderr


@pytest.mark.slow
@WORKFLOW_RUN
def test_the_loss_rankers_order_a_round_by_the_loss_and_by_its_gap_to_the_dense_model(smoke_run: Path):
    results = smoke_run / "results"
    dense = rank.epoch_losses(results / "dense")
    for ranker in ("loss", "loss_gap"):
        params = Params.from_dict(config.load_params(smoke_run / SMOKE, [f"search.ranker={ranker}"]))
        ranking = rank.rank_round(params, Layout(results), 0)
        losses = [math.log(row.valid_ppl) for row in ranking.itertuples()]
        gaps = [loss - dense[row.epoch] for loss, row in zip(losses, ranking.itertuples())]
        assert list(ranking["score"]) == pytest.approx(losses if ranker == "loss" else gaps, abs=1e-9), ranker
        assert list(ranking["loss_gap"]) == pytest.approx(gaps, abs=1e-9)
        assert list(ranking["score"]) == sorted(ranking["score"])
        assert ranking["kept"].sum() == plan(params.search).rounds[0].survivors
    ls = rank.rank_round(Params.from_dict(config.load_params(smoke_run / SMOKE)), Layout(results), 0)
    assert list(ls["distance"]) == sorted(ls["distance"]), "the LS ranker orders by distance"


@pytest.mark.slow
@WORKFLOW_RUN
def test_history_mode_decides_what_the_proposer_learns_from(smoke_run: Path):
    results = Layout(smoke_run / "results")
    params = Params.from_dict(config.load_params(smoke_run / SMOKE))
    survivors = propose.propose_round(params, results, 0)
    everyone = propose.propose_round(Params.from_dict(config.load_params(smoke_run / SMOKE, ["search.history=all"])),
                                     results, 0)
    first = plan(params.search).rounds[0]
    assert len(survivors["history"]) == first.survivors and len(everyone["history"]) == first.pool
    assert survivors["history_mode"] == "survivors" and everyone["history_mode"] == "all"
    kept = {config_key(h["config"]) for h in survivors["history"]}
    assert kept < {config_key(h["config"]) for h in everyone["history"]}


@pytest.mark.slow
@SMALL_RUN
def test_full_training_search_trains_every_initial_candidate_to_the_end(small_run: Path, tmp_path: Path):
    """The comparison set's `full` method is the small search with search.mode full (ranker loss): it
    trains every initial candidate to the end, with no rounds; alone, it plans no dense reference."""
    full = small_run / "results" / "compare" / "full"
    assert not (full / "rounds").exists() and not (full / "dense").exists()
    selected = json.loads((full / "final" / "selected.json").read_text())
    assert selected["mode"] == "full" and len(selected["finalists"]) == 3
    assert selected["budget"]["candidate_epochs"] == {"selection": 0, "final": 6}
    best = min(selected["finalists"], key=lambda f: f["valid_ppl"])
    assert selected["candidate"] == best["candidate"] and selected["valid_ppl"] == best["valid_ppl"]
    params = params_file.read_yaml(small_run / "small.yaml")
    params["search"].update(mode="full", ranker="loss")
    params["results"] = "alone"
    rules = {rule for rule, _ in planned_jobs(small_run, params, tmp_path)}
    assert "train_final" in rules and not rules & {"train_dense", "spectra_dense", "rank", "pool"}, rules


# -----------------------------------------------------------------------------
# Param changes rerun exactly what depends on them


def planned_jobs(project: Path, params: dict, scratch: Path) -> list[tuple[str, dict]]:
    """The jobs `snakemake -n` would run in a finished project with these params: (rule, wildcards) pairs.
    On a copy in `scratch`: a dry run rewrites the run's resolved-params.yaml, and the project is shared."""
    project = clone_of(project, scratch / "dry")
    (project / "changed.yaml").write_text(yaml.safe_dump(params))
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", "changed.yaml"], project)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs, rule = [], None
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            rule = line.split()[1].rstrip(":")
            jobs.append((rule, {}))
        elif line.startswith("wildcards:") and jobs:
            jobs[-1][1].update(dict(kv.split("=") for kv in line[len("wildcards:"):].replace(" ", "").split(",")))
    return jobs


def smoke_params(project: Path) -> dict:
    return params_file.read_yaml(project / SMOKE)


@pytest.mark.slow
@WORKFLOW_RUN
def test_changing_final_epochs_reruns_only_the_final_trainings_and_selection(smoke_run: Path, tmp_path: Path):
    params = smoke_params(smoke_run)
    params["final"]["epochs"] += 1
    rules = {rule for rule, _ in planned_jobs(smoke_run, params, tmp_path)}
    assert {"train_final", "select"} <= rules
    assert rules <= {"final_pool", "train_final", "select", "train_dense_final", "train_correlation", "report", "all"}


@pytest.mark.slow
@WORKFLOW_RUN
def test_changing_search_n_reruns_the_rounds_onward_but_not_data_or_dense(smoke_run: Path, tmp_path: Path):
    params = smoke_params(smoke_run)
    params["search"]["n"] = 5  # still 2 rounds, so the dense reference's epochs do not change
    rules = {rule for rule, _ in planned_jobs(smoke_run, params, tmp_path)}
    assert {"pool", "train_candidate", "spectra_candidate", "rank", "select"} <= rules
    assert not rules & {"prepare", "train_dense", "spectra_dense", "train_dense_final"}


@pytest.mark.slow
@WORKFLOW_RUN
def test_changing_lyapunov_steps_reruns_the_spectra_onward_but_no_earlier_training(smoke_run: Path, tmp_path: Path):
    params = smoke_params(smoke_run)
    params["lyapunov"]["steps"] += 5
    jobs = planned_jobs(smoke_run, params, tmp_path)
    rules = {rule for rule, _ in jobs}
    assert {"spectra_dense", "spectra_candidate", "rank"} <= rules
    assert not rules & {"prepare", "train_dense", "train_dense_final"}
    assert not [w for rule, w in jobs if rule == "train_candidate" and w.get("r") == "00"], "round 0 trains as before"


# -----------------------------------------------------------------------------
# DVC over the same pipeline


def test_committed_dvc_yaml_is_what_the_params_generate():
    out = run([str(BIN / "python"), "workflow/scripts/dvc_yaml.py", "--out", "dvc.yaml", "--check"], REPO)
    assert out.returncode == 0, out.stderr
    study = run([str(BIN / "python"), "workflow/scripts/dvc_yaml.py", "--study", "--check"], REPO)
    assert study.returncode == 0, study.stderr


@pytest.mark.slow
@WORKFLOW_RUN
def test_the_same_seed_gives_the_same_run_under_dvc_repro_from_scratch_and_snakemake_then_has_nothing_to_do(
        smoke_run: Path, tmp_path: Path, ptb_quick: Path):
    """Either engine first, the same result: `dvc repro` in a fresh copy of smoke_run's project computes
    what Snakemake computed there from scratch, bit for bit (every pool, ranking, proposal and the
    selection), and versions it. (dvc exp run -S is in test_dvc's table.)"""
    project = copy_project(tmp_path, ptb_quick)
    for name in ("params.yaml", "dvc.yaml", ".gitignore"):
        shutil.copy2(smoke_run / name, project / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "smoke"]):
        subprocess.run(cmd, cwd=project, check=True)
    ok(run([str(BIN / "dvc"), "repro"], project, timeout=1200))
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {"prepare", "dense", "round-00", "round-01", "final", "report"} <= set(lock["stages"])
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert {"results/dense", "results/rounds/r00", "results/rounds/r01", "results/final"} <= outs
    one, two = smoke_run / "results", project / "results"
    for path in [*sorted(one.glob("rounds/*/*.json")), *sorted(one.glob("rounds/*/ranking.csv")),
                 one / "final" / "pool.json"]:
        assert path.read_text() == (two / path.relative_to(one)).read_text(), path
    a, b = (json.loads((r / "final" / "selected.json").read_text()) for r in (one, two))
    for key in ("candidate", "config", "valid_ppl", "test_ppl", "distance_history", "finalists"):
        assert a[key] == b[key], key
    dry = run([str(BIN / "snakemake"), "-n", "--cores", "1"], project)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    again = run([str(BIN / "dvc"), "repro"], project)
    assert "Data and pipelines are up to date" in again.stdout, again.stdout
    metrics = run([str(BIN / "dvc"), "metrics", "show", "--json"], project)
    assert metrics.returncode == 0 and "valid_ppl" in metrics.stdout
    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], project)
    assert plots.returncode == 0 and "curves.json" in plots.stdout


# -----------------------------------------------------------------------------
# A run killed mid-round resumes and ends as if it had never stopped


@pytest.mark.slow
@WORKFLOW_RUN
def test_sigkill_in_the_middle_of_a_round_then_the_same_command_finishes_reusing_finished_jobs(smoke_run: Path,
                                                                                               tmp_path: Path):
    import signal
    import time

    # The finished run without its last round and what follows it: the data, the dense reference and
    # round 0 stay. Round 1 trains four candidates, three of them continuing round 0's checkpoints.
    project = clone_of(smoke_run, tmp_path / "p")
    for folder in ("rounds/r01", "final", "correlation", "report"):
        shutil.rmtree(project / "results" / folder, ignore_errors=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2", "--configfile", SMOKE], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    round1 = project / "results" / "rounds" / "r01"
    deadline = time.monotonic() + 300
    while len(list(round1.glob("s*/train/summary.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started
    proc.wait()
    done = [p.parent for p in round1.glob("s*/train/summary.json")]
    assert 2 <= len(done) < 4, "killed in the middle of round 1"
    finished = {p: p.stat().st_mtime_ns for d in done for p in d.glob("epoch-*.pt")}
    assert not (project / "results" / "final" / "selected.json").exists()

    # A lock left by a killed Snakemake is Snakemake's to judge: it asks for --unlock (the README says so).
    # What the workflow's default profile fixes: the very same command reruns the incomplete jobs.
    assert run([str(BIN / "snakemake"), "--unlock", "--configfile", SMOKE], project).returncode == 0
    out = run([str(BIN / "snakemake"), "--cores", "2", "--configfile", SMOKE], project)  # the very same command
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for path, mtime in finished.items():  # the finished trainings' checkpoints are reused, not retrained
        assert path.stat().st_mtime_ns == mtime, f"{path} was trained again"
    a, b = (json.loads((p / "results" / "final" / "selected.json").read_text()) for p in (smoke_run, project))
    for key in ("candidate", "config", "valid_ppl", "test_ppl"):
        assert a[key] == b[key], key


# -----------------------------------------------------------------------------
# The comparison set


@pytest.mark.slow
@SMALL_RUN
def test_compare_runs_every_method_into_its_folder_and_tables_them_together(small_run: Path):
    project = small_run  # the small search (one round each: the set is seven runs), `snakemake compare`ed
    compare = project / "results" / "compare"
    modes = {}
    for method in COMPARISON:
        selected = json.loads((compare / method / "final" / "selected.json").read_text())
        assert selected["status"] == "ok", method
        modes[method] = (selected["mode"], selected["ranker"], selected["proposer"])
        assert json.loads((compare / method / "final" / "pool.json").read_text())["slots"]
    assert modes["lsh-atpe"] == ("lsh", "ls", "atpe") and modes["loss-grid"] == ("lsh", "loss", "grid")
    assert modes["full"][0] == "full"
    table = (compare / "report" / "table1.csv").read_text()
    assert table.count("\n") >= 1 + 1 + 1 + len(COMPARISON), table  # header, dense, this run, the set


# -----------------------------------------------------------------------------
# What every job reads: the run's resolved params, numbers as written


@pytest.mark.slow
def test_every_section_of_a_preset_and_its_floats_reach_the_jobs_unchanged(project: Path):
    params = params_file.read_yaml(project / SMOKE)
    params.update(seed=7, results="out", numerics="native")
    params["data"]["train_tokens"] = 15000
    params["model"].update(emb=24, hidden=24)
    params["train"].update(weight_decay=1e-6, clip=1e16, lr=15)
    params["sparse"]["death_rate"] = 1e-5
    params["lyapunov"]["steps"] = 20
    params["space"]["grid_death_rate"] = 0.7
    params["search"]["n"] = 5
    params["final"]["epochs"] = 2
    params["report"]["correlation_candidates"] = 1
    params["study"]["repeats"] = 3
    defaults = params_file.read_yaml(project / "params.yaml")
    assert all(params[k] != defaults[k] for k in defaults), "the preset differs from params.yaml in every section"
    (project / "preset.yaml").write_text(config.dump(params))
    assert "1.0e-06" in (project / "preset.yaml").read_text() and "1.0e+16" in (project / "preset.yaml").read_text()
    out = run([str(BIN / "snakemake"), "out/dense/spectra.json", "--cores", "2", "--configfile", "preset.yaml"],
              project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert config.load_params(project / "out" / "resolved-params.yaml") == params
    assert json.loads((project / "data" / "prepared" / "meta.json").read_text())["tokens"]["train"] == 15000
    state = torch.load(project / "out" / "dense" / "epoch-001.pt", weights_only=True)
    assert state["run_config"]["seed"] == params["seed"]
    assert state["run_config"]["model"] == dataclasses.asdict(ModelParams.from_dict(params["model"]))
    assert state["run_config"]["train"] == params["train"]
    assert state["run_config"]["train"]["weight_decay"] == 1e-6 and state["run_config"]["train"]["clip"] == 1e16
    assert state["environment"]["numerics"] == "native"
    assert not (project / "results").exists(), "nothing came from ./params.yaml"


def test_snakemakes_config_gives_whole_floats_as_integers(project: Path):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", SMOKE, "--config", "seed=5.0"], project)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert yaml.safe_load((project / "results" / "resolved-params.yaml").read_text())["seed"] == 5


def test_snakemakes_nested_config_values_reach_the_schema_as_numbers(project: Path):
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", SMOKE, "--config",
               "lyapunov={steps: 30, warmup: 5, qr_every: 1, samples: 2}"], project)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert yaml.safe_load((project / "results" / "resolved-params.yaml").read_text())["lyapunov"]["steps"] == 30


@pytest.mark.slow
def test_a_diverged_dense_reference_stops_the_run_naming_the_divergence_and_the_learning_rate(project: Path):
    params = params_file.read_yaml(project / SMOKE)
    params["train"].update(lr=1e15, clip=1e15)
    (project / "blowup.yaml").write_text(config.dump(params))
    out = run([str(BIN / "snakemake"), "--cores", "2", "--configfile", "blowup.yaml"], project)
    assert out.returncode != 0
    assert "MissingOutputException" not in out.stdout + out.stderr
    dense = project / "results" / "dense"
    summary = json.loads((dense / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["reason"]
    assert (dense / "epoch-000.pt").is_file(), "the dense outputs are kept"
    # the first job to need it stops the run: the dense spectra, or the dense reference's final training
    logs = {p.name: p.read_text() for p in (project / "results" / "logs" / "dense").glob("*.log")}
    stopped = [text for name, text in logs.items() if name in ("spectra.log", "final.log") and "error:" in text]
    assert stopped, logs
    for log in stopped:
        assert "diverged at epoch 1" in log and "train.lr = 1e+15" in log and "lower it" in log, log


REFERENCE = REPO / "tests" / "data" / "smoke_reference.json"
# What the recorded reference keeps of a record: the machine named (not compared), what decides the bits.
REFERENCE_MACHINE = ("cpu", "vendor")


def reference_of(results: Path) -> dict:
    """What tests/data/smoke_reference.json records of a smoke run: the environment that made it, its data
    (conftest's quick corpus), the pools, every ranking's rows (floats as written), the proposals and the selection."""
    environment = json.loads((results / "environment.json").read_text())
    slot_keys = ("candidate", "config", "epochs_before", "epochs_after")
    pools = {str(p.relative_to(results)): [None if e is None else {k: e[k] for k in slot_keys}
                                           for e in json.loads(p.read_text())["slots"]]
             for p in [*sorted(results.glob("rounds/*/pool.json")), results / "final" / "pool.json"]}
    rankings = {str(p.relative_to(results)): [{"candidate": r["candidate"], "rank": int(r["rank"]),
                                               "kept": r["kept"] == "True", "distance": r["distance"],
                                               "valid_ppl": r["valid_ppl"]}
                                              for r in csv.DictReader(p.open())]
                for p in sorted(results.glob("rounds/*/ranking.csv"))}
    proposals = {str(p.relative_to(results)): json.loads(p.read_text())["proposals"]
                 for p in sorted(results.glob("rounds/*/proposals.json"))}
    selected = json.loads((results / "final" / "selected.json").read_text())
    meta = json.loads((results.parent / "data" / "prepared" / "meta.json").read_text())
    return {"environment": {k: environment.get(k) for k in (*REFERENCE_MACHINE, *numerics.PINNED, "versions")},
            "data": {"vocab_size": meta["vocab_size"], "sha256": meta["sha256"]},
            "pools": pools, "rankings": rankings, "proposals": proposals,
            "selected": {k: selected[k] for k in ("candidate", "config", "valid_ppl", "test_ppl")}}


@pytest.mark.slow
@WORKFLOW_RUN
def test_a_smoke_run_selects_what_the_recorded_reference_run_selected(smoke_run: Path):
    """The smoke preset's pools, rankings, proposals and selection against a run recorded earlier, on the
    machine its environment names (LSH_WRITE_SMOKE_REFERENCE=1 records this run instead). Where both ran
    in portable numerics with the same pins and versions, every bit must agree: the pins leave nothing to
    the CPU (test_numerics shows which kernels move and that the pins hold them). Elsewhere (native
    numerics, a GPU, other versions) only what the last bits cannot move is compared: the round-0 pool,
    which the seed alone draws; then every ranking's order and the selection, which a search amplifying
    other roundings may change, so a failure there says which environments differ."""
    found = reference_of(smoke_run / "results")
    if os.environ.get("LSH_WRITE_SMOKE_REFERENCE"):
        REFERENCE.write_text(json.dumps(found, indent=1) + "\n")
    reference = json.loads(REFERENCE.read_text())
    assert found["data"] == reference["data"], "the reference was made on other data than conftest's ptb_quick"
    made, here = reference["environment"], found["environment"]
    differ = [k for k in (*numerics.PINNED, "versions") if made.get(k) != here.get(k)]
    where = (f"reference made on {made.get('cpu')} ({made.get('vendor')}, {made.get('numerics')}), "
             f"this run on {here.get('cpu')} ({here.get('vendor')}, {here.get('numerics')})")
    if not differ and here["numerics"] == "portable":
        for part in ("pools", "rankings", "proposals", "selected"):
            for key, value in reference[part].items():
                assert found[part].get(key) == value, f"{part} {key} differs in portable numerics: {where}"
        return
    why = f"bits not compared, as {', '.join(differ) or 'the numerics'} differ: {where}"
    first = "rounds/r00/pool.json"
    assert found["pools"][first] == reference["pools"][first], f"the round-0 pool differs ({why})"
    for path, rows in reference["rankings"].items():
        order = [(r["candidate"], r["rank"], r["kept"]) for r in found["rankings"][path]]
        assert order == [(r["candidate"], r["rank"], r["kept"]) for r in rows], f"{path}'s order differs ({why})"
    assert found["selected"]["candidate"] == reference["selected"]["candidate"], f"another selection ({why})"
    assert found["selected"]["config"] == reference["selected"]["config"], f"another selection ({why})"
