"""The `lsh` command line: params handling and clean errors, as a user sees them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lsh.cli import build_parser

from conftest import REPO, run_lsh


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
    out = run_lsh("prepare", "--raw", str(ptb_raw), "--out", str(tmp_path), "--set", "data.train_tokens=2000", "--set", "data.download=false")
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
    ("--epochs", "-1", "argument --epochs: '-1' is not allowed: the number of epochs must be a whole number >= 0"),
    ("--threads", "-2", "argument --threads: '-2' is not allowed: the number of threads must be a whole number >= 1"),
])
def test_bad_counts_on_the_command_line_are_named(tmp_path: Path, flag: str, value: str, message: str):
    args = {"--epochs": "1", "--threads": "1", flag: value}
    out = run_lsh("train", "--out", str(tmp_path), "--epochs", args["--epochs"], "--threads", args["--threads"])
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
