"""The `lsh` command line: params handling and clean errors, as a user sees them."""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_lsh

from lsh.cli import build_parser


def test_python_dash_m_lsh_runs_the_same_command_line():
    out = subprocess.run([sys.executable, "-m", "lsh", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "prepare" in out.stdout


def test_params_prints_the_validated_params_with_overrides():
    out = run_lsh("params", "--set", "data.train_tokens=5000", "--set", "seed=3")
    assert out.returncode == 0, out.stderr
    params = yaml.safe_load(out.stdout)
    assert params["data"]["train_tokens"] == 5000 and params["seed"] == 3


def test_bad_config_exits_2_with_the_key_and_no_traceback():
    out = run_lsh("prepare", "--set", "data.train_tokens=-1", "--set", "data.frobnicate=1")
    assert out.returncode == 2
    assert "data.train_tokens: -1 is less than the minimum of 1000" in out.stderr
    assert "data.frobnicate: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_every_subcommand_accepts_params_and_set(tmp_path: Path):
    preset = REPO / "workflow" / "presets" / "smoke.yaml"
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"params", "prepare", "train", "plan", "bench"} <= set(commands)
    for command, sub in commands.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for name in nested[0].choices if nested else [None]:
            out = run_lsh(command, *([name] if name else []), "--help")
            assert "--params FILE" in out.stdout and "--set KEY.PATH=VALUE" in out.stdout, (command, name)
    out = run_lsh("params", "--params", str(preset))
    assert yaml.safe_load(out.stdout) == yaml.safe_load(preset.read_text())


def test_prepare_writes_the_arrays_from_the_command_line(ptb_raw: Path, tmp_path: Path):
    out = run_lsh("prepare", "--raw", str(ptb_raw), "--out", str(tmp_path), "--set", "data.train_tokens=2000",
                  "--set", "data.download=false")
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["tokens"]["train"] == 2000
    assert "vocabulary: 10000 types" in out.stderr


def test_prepare_checksum_error_is_one_clean_message(ptb_raw: Path, tmp_path: Path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text("hello world\n")
    out = run_lsh("prepare", "--raw", str(tmp_path), "--out", str(tmp_path / "out"))
    assert out.returncode == 2
    assert "sha256 mismatch" in out.stderr and "Traceback" not in out.stderr


def test_plan_reads_a_whole_float_as_the_integer():
    out = run_lsh("plan", "--json", "--set", "search.n=8.0")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rounds"][0]["pool"] == 8


def test_params_exits_2_on_a_schedule_that_plan_refuses():
    for command in ("params", "plan"):
        out = run_lsh(command, "--set", "search.insert=0.6")
        assert out.returncode == 2 and "search.insert: 0.6 must be less than search.eliminate" in out.stderr, command


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "-1", "argument --epochs: '-1' is not allowed: the number of epochs must be a whole number from 0 to "
                       "100000"),
    ("--threads", "-2", "argument --threads: '-2' is not allowed: the number of threads must be a whole number from 1 "
                        "to "),
])
def test_bad_counts_on_the_command_line_are_named(tmp_path: Path, flag: str, value: str, message: str):
    args = {"--epochs": "1", "--threads": "1", flag: value}
    out = run_lsh("train", "--out", str(tmp_path), "--epochs", args["--epochs"], "--threads", args["--threads"])
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


# A new user's bad inputs, each run through the command line in-process: every one must end with
# exit status 2 and a short message naming the key, flag, file or value at fault, never a traceback
# (an exception escaping `main` fails the test). Paths are relative to a small workspace: prepared
# synthetic data, a one-epoch tiny run and broken copies of its checkpoint.
TINY = ["--set", "model.emb=8", "--set", "model.hidden=8", "--set", "data.train_tokens=1000",
        "--set", "train.eval_tokens=1000", "--set", "train.batch_size=4", "--set", "data.verify=false",
        "--set", "data.download=false"]

BAD_INPUTS = [
    # params through --set: ranges, types, choices, unknown keys, cross-field rules
    (["params", "--set", "seed=-1"], "seed: -1 is less than the minimum of 0"),
    (["params", "--set", "seed=abc"], "seed: 'abc'"),
    (["params", "--set", "seed=1.5"], "seed: 1.5"),
    (["params", "--set", "results=1"], "results: 1"),
    (["params", "--set", "data.train_tokens=10"], "data.train_tokens: 10 is less than the minimum of 1000"),
    (["params", "--set", "data.download=maybe"], "data.download: 'maybe'"),
    (["params", "--set", "model.type=gru"], "model.type: 'gru'"),
    (["params", "--set", "model.layers=0"], "model.layers: 0"),
    (["params", "--set", "model.hidden=0"], "model.hidden: 0"),
    (["params", "--set", "model.emb=-3"], "model.emb: -3"),
    (["params", "--set", "model.tied=true", "--set", "model.emb=64"], "model.tied"),
    (["params", "--set", "model.dropout.input=1.5"], "model.dropout.input: 1.5"),
    (["params", "--set", "model.dropout.hidden=-0.1"], "model.dropout.hidden: -0.1"),
    (["params", "--set", "model.frob=1"], "model.frob: unknown key"),
    (["params", "--set", "frob=1"], "frob: unknown key"),
    (["params", "--set", "train.lr=0"], "train.lr: 0"),
    (["params", "--set", "train.lr=-1"], "train.lr: -1"),
    (["params", "--set", "train.lr=fast"], "train.lr: 'fast'"),
    (["params", "--set", "train.batch_size=0"], "train.batch_size: 0"),
    (["params", "--set", "train.bptt=0"], "train.bptt: 0"),
    (["params", "--set", "train.clip=-1"], "train.clip: -1"),
    (["params", "--set", "train.device=tpu"], "train.device: 'tpu'"),
    (["params", "--set", "train.nonmono=-1"], "train.nonmono: -1"),
    (["params", "--set", "train.weight_decay=-1e-6"], "train.weight_decay: -1e-06"),
    (["params", "--set", "sparse.density=0"], "sparse.density: 0"),
    (["params", "--set", "sparse.density=1.5"], "sparse.density: 1.5"),
    (["params", "--set", "sparse.init=random"], "sparse.init: 'random'"),
    (["params", "--set", "sparse.death=foo"], "sparse.death: 'foo'"),
    (["params", "--set", "sparse.growth=foo"], "sparse.growth: 'foo'"),
    (["params", "--set", "sparse.redistribution=foo"], "sparse.redistribution: 'foo'"),
    (["params", "--set", "sparse.death_rate=2"], "sparse.death_rate: 2"),
    (["params", "--set", "sparse.decay_epochs=0"], "sparse.decay_epochs: 0"),
    (["params", "--set", "lyapunov.samples=0"], "lyapunov.samples: 0"),
    (["params", "--set", "lyapunov.steps=0"], "lyapunov.steps: 0"),
    (["params", "--set", "lyapunov.state=c"], "lyapunov.state: 'c'"),
    (["params", "--set", "lyapunov.method=numeric"], "lyapunov.method: 'numeric'"),
    (["params", "--set", "lyapunov.log_base=10"], "lyapunov.log_base: 10"),
    (["params", "--set", "lyapunov.dtype=float16"], "lyapunov.dtype: 'float16'"),
    (["params", "--set", "lyapunov.qr_every=0"], "lyapunov.qr_every: 0"),
    (["params", "--set", "lyapunov.exponents=0"], "lyapunov.exponents: 0"),
    (["params", "--set", "lyapunov.layout=flat"], "lyapunov.layout: 'flat'"),
    (["params", "--set", "lyapunov.min_exponent=5"], "lyapunov.min_exponent: 5"),
    (["params", "--set", "space.init=[]"], "space.init: []"),
    (["params", "--set", "space.init=[foo]"], "space.init"),
    (["params", "--set", "space.death_rate={low: 0.9, high: 0.4, q: 0.1}"], "space.death_rate"),
    (["params", "--set", "space.grid_death_rate=1.5"], "space.grid_death_rate: 1.5"),
    (["params", "--set", "search.mode=exhaustive"], "search.mode: 'exhaustive'"),
    (["params", "--set", "search.ranker=ppl"], "search.ranker: 'ppl'"),
    (["params", "--set", "search.embedding=umap"], "search.embedding: 'umap'"),
    (["params", "--set", "search.distance=l1"], "search.distance: 'l1'"),
    (["params", "--set", "search.proposer=bayes"], "search.proposer: 'bayes'"),
    (["params", "--set", "search.n=1"], "search.n: 1"),
    (["params", "--set", "search.n=6.5"], "search.n: 6.5"),
    (["params", "--set", "search.eliminate=0"], "search.eliminate: 0"),
    (["params", "--set", "search.eliminate=1.5"], "search.eliminate: 1.5"),
    (["params", "--set", "search.insert=-0.1"], "search.insert: -0.1"),
    (["params", "--set", "search.final_pool=0"], "search.final_pool: 0"),
    (["params", "--set", "search.e0=0"], "search.e0: 0"),
    (["plan", "--set", "final.epochs=1"], "final.epochs"),
    (["params", "--set", "study.space=full"], "study.space: 'full'"),
    (["params", "--set", "study.pools=[]"], "study.pools: []"),
    (["params", "--set", "study.repeats=0"], "study.repeats: 0"),
    (["params", "--set", "report.correlation_candidates=-1"], "report.correlation_candidates: -1"),
    # --set itself and the params file
    (["params", "--set", "seed"], "--set 'seed'"),
    (["params", "--set", "seed.x=1"], "seed"),
    (["params", "--params", "missing.yaml"], "missing.yaml"),
    (["params", "--params", "{ws}/not-yaml.yaml"], "not-yaml.yaml"),
    (["params", "--params", "{ws}/a-list.yaml"], "a-list.yaml"),
    (["params", "--params", "{ws}/latin1.yaml"], "latin1.yaml"),
    (["params", "--params", "{ws}/empty.yaml"], "empty.yaml"),
    (["params", "--params", "{ws}/lr-as-text.yaml"], "train.lr"),
    # flags
    (["train", "--out", "{ws}/x", "--epochs", "0.5"], "argument --epochs"),
    (["train", "--out", "{ws}/x", "--epochs", "x"], "argument --epochs"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--threads", "0"], "argument --threads"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--keep", "none"], "argument --keep"),
    (["spectrum", "--checkpoint", "{ws}/run/epoch-001.pt", "--out", "{ws}/s.json", "--samples", "0"],
     "argument --samples"),
    (["spectrum", "--checkpoint", "{ws}/run/epoch-001.pt", "--out", "{ws}/s.json", "--exponents", "0"],
     "argument --exponents"),
    (["spectrum", "--checkpoint", "{ws}/run/epoch-001.pt", "--out", "{ws}/s.json", "--method", "numeric"],
     "argument --method"),
    (["bench", "memory"], "argument what"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["search", "pool", "--round", "x", "--out", "{ws}/p.json"], "--round"),
    (["search", "pool", "--round", "9", "--results", "{ws}/no-run", "--out", "{ws}/p.json", *TINY], "--round 9"),
    # files: data, checkpoints, results folders
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/nowhere", *TINY],
     "nowhere/meta.json does not exist"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/prepared", *TINY, "--set", "data.train_tokens=1500"],
     "data.train_tokens = 1000"),
    (["train", "--out", "{ws}/run", "--epochs", "2", "--resume", "--data", "{ws}/prepared", *TINY,
      "--set", "train.lr=5"], "train.lr"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--init", "{ws}/none.pt", "--data", "{ws}/prepared", *TINY],
     "none.pt"),
    (["spectrum", "--checkpoint", "{ws}/none.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY], "none.pt"),
    (["spectrum", "--checkpoint", "{ws}/truncated.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "truncated.pt"),
    (["spectrum", "--checkpoint", "{ws}/text.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY], "text.pt"),
    (["spectrum", "--checkpoint", "{ws}/code.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY], "code.pt"),
    (["spectrum", "--checkpoint", "{ws}/no-model.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "no-model.pt"),
    (["prepare", "--raw", "{ws}/empty-raw", "--out", "{ws}/p2", *TINY], "ptb.train.txt"),
    (["prepare", "--raw", "{ws}/bad-gzip", "--out", "{ws}/p2", *TINY], "ptb.train.txt.gz"),
    (["prepare", "--raw", "{ws}/raw", "--out", "{ws}/p2", *TINY, "--set", "data.verify=true"], "sha256 mismatch"),
    (["prepare", "--raw", "{ws}/unseen-raw", "--out", "{ws}/p2", *TINY], "ptb.valid.txt"),
    (["search", "rank", "--round", "0", "--results", "{ws}/no-results", "--out", "{ws}/r.json", *TINY], "no-results"),
    (["search", "select", "--results", "{ws}/no-results", "--out", "{ws}/sel.json", *TINY], "no-results"),
    (["report", "--results", "{ws}/no-results", "--out", "{ws}/rep", *TINY], "no-results"),
    (["replay", "--table", "{ws}/no-table", "--replays", "{ws}/r.csv", "--anytime", "{ws}/a.csv", "--sensitivity",
      "{ws}/s.csv", *TINY], "no-table"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lsh.cli import main
    ws = tmp_path_factory.mktemp("hostile")
    raw = ws / "raw"
    raw.mkdir()
    words = [f"w{i}" for i in range(30)]
    for split, lines in (("train", 300), ("valid", 60), ("test", 60)):
        (raw / f"ptb.{split}.txt").write_text(
            "".join(" ".join(words[(i * 7 + j) % 30] for j in range(6)) + "\n" for i in range(lines)))
    assert main(["prepare", "--raw", str(raw), "--out", str(ws / "prepared"), *TINY]) == 0
    assert main(["train", "--out", str(ws / "run"), "--epochs", "1", "--data", str(ws / "prepared"), *TINY]) == 0
    good = (ws / "run" / "epoch-001.pt").read_bytes()
    (ws / "truncated.pt").write_bytes(good[: len(good) // 2])
    (ws / "text.pt").write_text("not a checkpoint\n")

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    import torch
    torch.save({"model": Payload()}, ws / "code.pt")
    checkpoint = torch.load(ws / "run" / "epoch-001.pt", weights_only=True)
    del checkpoint["model"]
    torch.save(checkpoint, ws / "no-model.pt")
    (ws / "not-yaml.yaml").write_text("seed: [1, 2\n")
    (ws / "a-list.yaml").write_text("- 1\n- 2\n")
    (ws / "latin1.yaml").write_bytes("seed: 1  # caf\xe9\n".encode("latin-1"))
    (ws / "empty.yaml").write_text("")
    (ws / "lr-as-text.yaml").write_text((REPO / "params.yaml").read_text().replace("lr: 20 ", "lr: 1.0e30 "))
    (ws / "empty-raw").mkdir()
    (ws / "bad-gzip").mkdir()
    for split in ("train", "valid", "test"):
        (ws / "bad-gzip" / f"ptb.{split}.txt.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    shutil.copytree(raw, ws / "unseen-raw")
    (ws / "unseen-raw" / "ptb.valid.txt").write_text("w1 w2 neverseen\n")
    return ws


def exit_status(argv: list[str]) -> int:
    """`lsh` run in-process: its exit status, argparse's own refusals (usage and one error line) included."""
    from lsh.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv, named", BAD_INPUTS, ids=[" ".join(a[:4]) for a, _ in BAD_INPUTS])
def test_a_new_users_bad_input_is_one_short_message_naming_what_is_wrong(workspace: Path, capsys, argv: list[str],
                                                                          named: str):
    status = exit_status([a.replace("{ws}", str(workspace)) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert named.replace("{ws}", str(workspace)) in err, err
    assert "Traceback" not in err and "payload ran" not in err
    problems = [line for line in err.splitlines() if not line.startswith(("usage:", " "*7)) and line.strip()]
    assert len(problems) <= 2, err


# The second round of hostile inputs (issue 21): files the stages exchange, truncated, emptied,
# mistyped or foreign; a finished run read with other params; values that would train or propose
# nonsense; counts and sizes that cannot work; messages that must stay short and visible. Each case
# runs in-process against a tiny finished round 0 (`finished`), or a broken copy of it.
RUN = "{ws}/run"  # a finished round 0 of the smoke preset at TINY size
POOL, RANKING = f"{RUN}/rounds/r00/pool.json", f"{RUN}/rounds/r00/ranking.csv"
SLOT = ["--data", "{ws}/prepared", "--out", "{ws}/slot-out"]

ROUND_TWO = [
    # the files of a round, broken (each in a copy of the finished run: {ws}/<case>/...)
    (["search", "rank", "--round", "0", "--results", "{ws}/pool-not-json"],
     "pool-not-json/rounds/r00/pool.json is not valid JSON"),
    (["search", "rank", "--round", "0", "--results", "{ws}/pool-no-slots"], "field 'slots' is missing"),
    (["search", "rank", "--round", "0", "--results", "{ws}/spectra-truncated"], "s01/spectra.json is not valid JSON"),
    (["search", "rank", "--round", "0", "--results", "{ws}/metrics-truncated"],
     "metrics.jsonl line 1 is not valid JSON"),
    (["search", "rank", "--round", "0", "--results", "{ws}/summary-truncated"],
     "s02/train/summary.json is not valid JSON"),
    (["search", "rank", "--round", "0", "--results", "{ws}/summary-a-list"], "expected an object (Summary)"),
    (["search", "propose", "--round", "0", "--results", "{ws}/ranking-text"],
     "ranking.csv: line 2.distance: expected a number"),
    (["search", "propose", "--round", "0", "--results", "{ws}/ranking-empty"], "ranking.csv lacks the column 'round'"),
    (["search", "pool", "--round", "1", "--results", "{ws}/proposals-truncated"], "proposals.json is not valid JSON"),
    (["search", "train", "--pool", "{ws}/pool-unknown-key/rounds/r00/pool.json", "--slot", "0", *SLOT],
     "has the unknown key 'colour'"),
    (["search", "train", "--pool", "{ws}/pool-rate-5/rounds/r00/pool.json", "--slot", "0", *SLOT],
     "config.death_rate: expected a number between 0 and 1, found 5.0"),
    (["search", "train", "--pool", "{ws}/pool-epochs-1e9/rounds/r00/pool.json", "--slot", "0", *SLOT],
     "beyond final.epochs"),
    (["search", "train", "--pool", POOL, "--slot", "99", *SLOT], "--slot 99: the pool of round 0 has slots 0 to 5"),
    (["search", "spectra", "--pool", POOL, "--slot", "99", "--train", "{ws}/x", *SLOT], "--slot 99"),
    (["report", "--results", "{ws}/pool-not-json", "--out", "{ws}/rep"], "pool-not-json"),
    # a finished run is read with the params that made it
    (["report", "--results", RUN, "--out", "{ws}/rep", "--set", "model.hidden=32"],
     "model.hidden = 32 where the run has 8"),
    (["search", "pool", "--round", "final", "--results", RUN, "--out", "{ws}/p.json", "--set", "search.n=4"],
     "search.n = 4 where the run has 6"),
    (["search", "rank", "--round", "0", "--results", RUN, "--out", "{ws}/r.csv", "--params", "params.yaml"],
     "conflicts with the run's own params"),
    # prepared data and checkpoints
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/meta-broken", *TINY],
     "meta-broken/meta.json is not valid JSON"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/vocab-truncated", *TINY], "outside the vocabulary"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/ids-too-large", *TINY], "token id 99999 is outside"),
    (["spectrum", "--checkpoint", "{ws}/type-gru.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "type-gru.pt: ModelConfig.type = 'gru'"),
    (["spectrum", "--checkpoint", "{ws}/extra-key.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "unknown field 'colour'"),
    (["spectrum", "--checkpoint", "{ws}/hidden-text.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "model_config.hidden: expected a whole number, found 'eight'"),
    (["spectrum", "--checkpoint", "{ws}/run/dense/epoch-001.pt", "--out", "{ws}/s.json", "--data", "{ws}/other-vocab",
      *TINY], "was trained on a vocabulary of 31 words"),
    (["spectrum", "--checkpoint", "{ws}/run", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "is a directory"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--init", "{ws}/a-fifo", "--data", "{ws}/prepared", *TINY],
     "is a FIFO"),
    # values that would train or propose nonsense; counts and sizes that cannot work
    (["params", "--set", "train.lr=.nan"], "train.lr: nan is not allowed"),
    (["params", "--set", "train.lr=1e400"], "train.lr: inf is not allowed"),
    (["params", "--set", "space.death_rate={low: .nan, high: 0.9, q: null}"],
     "space.death_rate.low: nan is not allowed"),
    (["params", "--set", "space.death_rate={low: 0.8, high: 0.95, q: 0.5}"], "must be a whole multiple of q = 0.5"),
    (["params", "--set", "search.n=300", "--set", "search.proposer=tpe", "--set", "final.epochs=40"],
     "but the space holds only 144 configurations"),
    (["params", "--set", "search.n=200000"], "search.n: 200000 is greater than the maximum of 1000"),
    (["params", "--set", "study.seeds=2000000000"], "study.seeds: 2000000000 is greater than the maximum of 100"),
    (["params", "--set", "space.death_rate.q=1e-10"], "space.death_rate.q: 1e-10 makes"),
    (["params", "--set", "study.pools=[6, 6]"], "study.pools: [6, 6] lists a value twice"),
    (["params", "--set", "model.hidden=100000"], "model.hidden: 100000 is greater than the maximum of 65536"),
    (["train", "--out", "{ws}/x", "--epochs", "1", "--data", "{ws}/prepared", *TINY, "--set", "model.hidden=60000",
      "--set", "model.emb=60000"], "training needs at least"),
    (["params", "--params", "{ws}/dup-key.yaml"], "key 'seed' is given twice (lines 1 and 2)"),
    (["params", "--params", "{ws}/dup-section.yaml"], "key 'train' is given twice"),
    # messages that stay short and name the thing
    (["params", "--params", "{ws}/anchors.yaml"], "once its aliases are expanded"),
    (["params", "--params", "/proc/self/mem"], "params file /proc/self/mem cannot be read: Input/output error"),
    (["params", "--params", "{ws}"], "is a directory, not a file"),
    (["params", "--params", "{ws}/a-fifo"], "is a FIFO (named pipe), not a file"),
    (["params", "--params", "{ws}/loop.yaml"], "is a symbolic link loop"),
    (["params", "--params", "{ws}/zero-width.yaml"], "'seed\\u200b': unknown key"),
    (["params", "--set", "results=/"], "results: '/' is the root of the file system"),
    (["params", "--set", 'results="a\\nb"'], "results: 'a\\nb' holds a control character"),
]


def _finished_round(ws: Path) -> Path:
    """Round 0 of the smoke preset at TINY size, made by the commands the workflow's jobs run."""
    from lsh import config
    from lsh.cli import main

    run = ws / "run"
    params = config.load_params(REPO / "workflow/presets/smoke.yaml",
                                [*(o for o in TINY if o != "--set"), f"results={run}", "final.epochs=3", "train.lr=2"])
    resolved = config.write_resolved(params, run / "resolved-params.yaml")
    common = ["--params", str(resolved), "--data", str(ws / "prepared")]
    assert main(["train", *common, "--dense", "--out", str(run / "dense"), "--epochs", "2", "--test"]) == 0
    assert main(["search", "dense-spectra", *common, "--train", str(run / "dense"), "--epochs", "2",
                 "--out", str(run / "dense" / "spectra.json")]) == 0
    r0 = run / "rounds" / "r00"
    assert main(["search", "pool", "--params", str(resolved), "--round", "0", "--results", str(run),
                 "--out", str(r0 / "pool.json")]) == 0
    for s in range(6):
        slot = r0 / f"s{s:02d}"
        assert main(["search", "train", *common, "--pool", str(r0 / "pool.json"), "--slot", str(s),
                     "--out", str(slot / "train")]) == 0
        assert main(["search", "spectra", *common, "--pool", str(r0 / "pool.json"), "--slot", str(s),
                     "--train", str(slot / "train"), "--out", str(slot / "spectra.json")]) == 0
    for step, out in (("rank", "ranking.csv"), ("propose", "proposals.json")):
        assert main(["search", step, "--params", str(resolved), "--round", "0", "--results", str(run),
                     "--out", str(r0 / out)]) == 0
    return run


def _broken_copy(ws: Path, name: str, relative: str, damage) -> None:
    """A copy of the finished run (its resolved params pointing at the copy) with one file damaged."""
    run = ws / "run"
    copy = ws / name
    shutil.copytree(run, copy)
    resolved = copy / "resolved-params.yaml"
    resolved.write_text(resolved.read_text().replace(str(run), str(copy)))
    path = copy / relative
    damage(path)


@pytest.fixture(scope="module")
def finished(workspace: Path) -> Path:
    import os

    import numpy as np
    import torch

    ws = workspace
    _finished_round(ws)
    r0 = "rounds/r00"
    half = lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])  # noqa: E731

    def edit_pool(change):
        def damage(p: Path) -> None:
            pool = json.loads(p.read_text())
            change(pool)
            p.write_text(json.dumps(pool))
        return damage

    _broken_copy(ws, "pool-not-json", f"{r0}/pool.json", half)
    _broken_copy(ws, "pool-no-slots", f"{r0}/pool.json", edit_pool(lambda p: p.pop("slots")))
    _broken_copy(ws, "pool-unknown-key", f"{r0}/pool.json",
                 edit_pool(lambda p: p["slots"][0]["config"].update(colour=1)))
    _broken_copy(ws, "pool-rate-5", f"{r0}/pool.json",
                 edit_pool(lambda p: p["slots"][0]["config"].update(death_rate=5.0)))
    _broken_copy(ws, "pool-epochs-1e9", f"{r0}/pool.json",
                 edit_pool(lambda p: p["slots"][0].update(epochs_after=10**9)))
    _broken_copy(ws, "spectra-truncated", f"{r0}/s01/spectra.json", half)
    _broken_copy(ws, "metrics-truncated", f"{r0}/s00/train/metrics.jsonl", lambda p: p.write_text(p.read_text()[:40]))
    _broken_copy(ws, "summary-truncated", f"{r0}/s02/train/summary.json", half)
    _broken_copy(ws, "summary-a-list", f"{r0}/s02/train/summary.json", lambda p: p.write_text("[1, 2]"))
    def distance_as_text(p: Path) -> None:  # the first candidate's distance (column 10) spelt out
        header, first, *rest = p.read_text().splitlines()
        cells = first.split(",")
        cells[10] = "far"
        p.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")

    _broken_copy(ws, "ranking-text", f"{r0}/ranking.csv", distance_as_text)
    _broken_copy(ws, "ranking-empty", f"{r0}/ranking.csv", lambda p: p.write_text(""))
    _broken_copy(ws, "proposals-truncated", f"{r0}/proposals.json", half)

    prepared = ws / "prepared"
    for name, damage in (("meta-broken", lambda d: half(d / "meta.json")),
                         ("vocab-truncated", lambda d: (d / "vocab.txt").write_text("w0\nw1\n")),
                         ("ids-too-large", lambda d: np.save(d / "train.npy", np.full(1000, 99999, dtype=np.int64)))):
        shutil.copytree(prepared, ws / name)
        damage(ws / name)
    other = ws / "other-raw"
    shutil.copytree(ws / "raw", other)
    (other / "ptb.train.txt").write_text((other / "ptb.train.txt").read_text() + "extra words here\n" * 300)
    assert __import__("lsh.cli", fromlist=["main"]).main(
        ["prepare", "--raw", str(other), "--out", str(ws / "other-vocab"), *TINY]) == 0

    good = torch.load(ws / "run" / "dense" / "epoch-001.pt", weights_only=True)
    for name, change in (("type-gru", {"type": "gru"}), ("extra-key", {"colour": 1}),
                         ("hidden-text", {"hidden": "eight"})):
        torch.save({**good, "model_config": {**good["model_config"], **change}}, ws / f"{name}.pt")
    os.mkfifo(ws / "a-fifo")
    (ws / "loop.yaml").symlink_to(ws / "loop.yaml")
    (ws / "dup-key.yaml").write_text("seed: 1\nseed: 2\n")
    (ws / "dup-section.yaml").write_text("train:\n  lr: 1\ntrain:\n  lr: 2\n")
    # an alias chain under a known key: 10^7 x's when printed in full
    chain = "{a: &a [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdef", "bcdefg")) + "}"
    (ws / "anchors.yaml").write_text((REPO / "params.yaml").read_text().replace("seed: 1111", f"seed: {chain}", 1))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["seed\u200b"] = 1
    (ws / "zero-width.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return ws


@pytest.mark.parametrize("argv, named", ROUND_TWO, ids=[" ".join(a[:4]) for a, _ in ROUND_TWO])
def test_a_broken_file_or_impossible_value_is_one_short_message_naming_it(finished: Path, capsys, argv: list[str],
                                                                           named: str):
    from lsh.cli import main

    ws = str(finished)
    argv = [a.replace("{ws}", ws) for a in argv]
    if "--out" not in argv and argv[0] == "search":
        argv += ["--out", f"{ws}/out.json"]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert named.replace("{ws}", ws) in err, err
    assert "Traceback" not in err and len(err) < 1500, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2, err


# The third round (issue 39): inputs that cost more than they are worth before the first message (a
# deep nest, a huge integer, a megabyte file, an alias chain, flags past the schema's maxima) and
# checkpoints whose fields have the right names and the wrong kinds. Each is one line, never a traceback.
DEEP = "[" * 10_000 + "]" * 10_000
ROUND_THREE = [
    (["params", "--params", "{ws}/deep.yaml"], "deep.yaml"),
    (["params", "--params", "{ws}/shallow-deep.yaml"], "nests deeper than 32 levels"),
    (["params", "--set", f"seed={DEEP}"], "--set"),
    (["params", "--set", "seed=" + "1" * 5000], "more than any params value"),
    (["params", "--params", "{ws}/big-integer.yaml"], "an integer of 5000 digits at line 1"),
    (["plan", "--params", "{ws}/big-integer.yaml"], "an integer of 5000 digits"),
    (["prepare", "--params", "{ws}/big-integer.yaml"], "an integer of 5000 digits"),
    (["params", "--params", "{ws}/megabyte.yaml"], "more than any params file"),
    (["params", "--params", "{ws}/many-keys.yaml"], "more problems"),
    (["params", "--params", "{ws}/alias-bomb.yaml"], "alias chain"),
    (["params", "--params", "{ws}/recursive-alias.yaml"], "nests deeper than 32 levels"),  # it never ends
    (["train", "--out", "{ws}/t", "--epochs", "1000000000"], "from 0 to 100000"),
    (["train", "--out", "{ws}/t", "--epochs", "1" * 5000], "characters) is not allowed"),
    (["replay", "--table", "{ws}/t", "--replays", "r", "--anytime", "a", "--sensitivity", "s",
      "--repeats", "100000000"], "from 1 to 100000"),
    (["replay", "--table", "{ws}/t", "--replays", "r", "--anytime", "a", "--sensitivity", "s", "--workers", "100000"],
     "the cores this process may use"),
    (["spectrum", "--checkpoint", "{ws}/c.pt", "--out", "o", "--samples", "5000"], "from 1 to 4096"),
    (["spectrum", "--checkpoint", "{ws}/c.pt", "--out", "o", "--exponents", "9" * 5000], "characters): expected"),
    (["study", "cell", "--config", "g00", "--out", "o", "--seed-index", "100"], "from 0 to 99"),
    (["spectrum", "--checkpoint", "{ws}/environment-string.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared",
      *TINY], "environment is 'AVX2', not a record"),
    (["spectrum", "--checkpoint", "{ws}/model-list.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "model is a list, not a mapping of parameter names to tensors"),
    (["spectrum", "--checkpoint", "{ws}/status-weird.pt", "--out", "{ws}/s.json", "--data", "{ws}/prepared", *TINY],
     "status is 'weird', not one of ok, diverged"),
    (["train", "--out", "{ws}/resumed", "--epochs", "2", "--init", "{ws}/environment-string.pt", "--data",
      "{ws}/prepared", *TINY], "environment-string.pt"),
    (["params", "--set", "results={ws}/deep.yaml"], "is a file, not a folder"),
    (["params", "--set", "results=-results"], "starts with a dash"),
    (["params", "--set", "data.prepared=data/{x}"], "holds a brace"),
    (["params", "--set", "study.cells={ws}/deep.yaml"], "study.cells:"),
    (["params", "--set", "study.shorter={ws}"], "study.shorter: "),  # a folder, not a params file
    (["params", "--set", "study.shorter=-study.yaml"], "study.shorter: '-study.yaml' starts with a dash"),
    (["params", "--set", "study.shorter=s{x}.yaml"], "study.shorter: 's{x}.yaml' holds a brace"),
]


@pytest.fixture(scope="module")
def third_round(workspace: Path) -> Path:
    """The workspace with the third round's files: oversized and overnested params, crafted checkpoints."""
    import torch

    ws = workspace
    (ws / "deep.yaml").write_text(f"seed: {DEEP}\n")
    (ws / "shallow-deep.yaml").write_text("seed: " + "[" * 40 + "]" * 40 + "\n")  # within libyaml's depth, past ours
    (ws / "big-integer.yaml").write_text("seed: " + "1" * 5000 + "\n")
    (ws / "megabyte.yaml").write_text("seed: 1\n" + "# a long comment\n" * 70_000)
    (ws / "many-keys.yaml").write_text((REPO / "params.yaml").read_text()
                                       + "".join(f"k{i}: {i}\n" for i in range(5000)))
    chain = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
        f"*a{i - 1}, *a{i - 1}]\n" for i in range(1, 8))
    (ws / "alias-bomb.yaml").write_text(chain)  # 10^8 values once expanded
    (ws / "recursive-alias.yaml").write_text("seed: &s [1, *s]\n")
    good = torch.load(ws / "run" / "epoch-001.pt", weights_only=True)
    for name, change in (("environment-string", {"environment": "AVX2"}), ("model-list", {"model": [1, 2]}),
                         ("status-weird", {"status": "weird"})):
        torch.save({**good, **change}, ws / f"{name}.pt")
    return ws


@pytest.mark.parametrize("argv, named", ROUND_THREE, ids=[" ".join(a[:4])[:60] for a, _ in ROUND_THREE])
def test_an_input_that_costs_more_than_it_is_worth_is_one_line_before_any_work(third_round: Path, capsys,
                                                                                argv: list[str], named: str):
    from lsh.cli import MESSAGE_CHARACTERS

    ws = str(third_round)
    status = exit_status([a.replace("{ws}", ws) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err[-3000:]
    assert named.replace("{ws}", ws) in err, err[-3000:]
    assert "Traceback" not in err and len(err) < MESSAGE_CHARACTERS + 1500, err[-3000:]
    problems = [line for line in err.splitlines() if not line.startswith(("usage:", " " * 7)) and line.strip()]
    assert len(problems) <= 2 or "more problems" in err, err[-3000:]


def test_a_message_never_runs_past_its_bound_whatever_a_value_expands_to():
    from lsh import config, params_file

    long = "x" * 100_000
    assert len(params_file.cut(long)) < 120 and "100,000 characters" in params_file.cut(long)
    assert params_file.show(long).startswith("'xxx") and len(params_file.show(long)) < 120
    with pytest.raises(params_file.ConfigError) as refused:
        config.validate({f"k{i}": i for i in range(1000)})
    lines = str(refused.value).splitlines()
    assert len(lines) == 1 + config.MAX_PROBLEMS + 1 and lines[-1].strip().startswith("... and ")


# -----------------------------------------------------------------------------
# Choices: the command line offers what the library has, from the one definition


def _choices(parser: argparse.ArgumentParser, command: str = "") -> dict[str, list]:
    """Every option's choices in the parser, by command and option: {"spectrum --method": [...]}."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_choices(sub, f"{command} {name}".strip()))
        elif action.choices is not None:
            found[f"{command} {(action.option_strings or [action.dest])[0]}"] = list(action.choices)
    return found


def test_the_command_lines_choices_are_the_librarys_tables():
    from lsh import config, device, layout, lyapunov

    choices = _choices(build_parser())
    assert choices["spectrum --method"] == list(lyapunov.METHODS)
    assert choices["train --keep"] == list(layout.KEEP)
    assert choices["bench --device"] == list(device.DEVICES)
    # --device sets both benchmarks' devices: one list serves both keys
    assert config.load_schema()["properties"]["lyapunov"]["properties"]["device"]["enum"] == list(device.DEVICES)


def test_the_command_lines_choices_follow_the_schema_not_a_typed_copy(monkeypatch):
    """A choice list typed into the parser would drift from the library: the parser reads the schema's
    (torch-free; tests/test_config.py holds the library's tables equal to it), so changing it changes them."""
    from lsh import config

    schema = copy.deepcopy(config.load_schema())
    for section, key in (("lyapunov", "method"), ("train", "device")):
        schema["properties"][section]["properties"][key]["enum"].append("added")
    monkeypatch.setattr(config, "load_schema", lambda: schema)
    choices = _choices(build_parser())
    assert choices["spectrum --method"][-1] == "added" and choices["bench --device"][-1] == "added"
