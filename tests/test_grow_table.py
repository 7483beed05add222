"""workflow/scripts/grow_table.py: growers side by side share the cells out, each cell trained by one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import BIN, REPO, SMOKE

from lsh import config, layout, numerics

spec = importlib.util.spec_from_file_location("grow_table", REPO / "workflow" / "scripts" / "grow_table.py")
grow_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grow_table)


def test_a_cell_another_live_grower_holds_is_passed_over_and_free_again_once_released(tmp_path):
    folder = tmp_path / "g03" / "s1"
    with grow_table.claimed(folder) as first:
        assert first and (folder / grow_table.LOCK).read_text() == str(os.getpid())
        with grow_table.claimed(folder) as second:
            assert not second, "the lock's process is alive: the cell is taken"
    assert not (folder / grow_table.LOCK).exists()
    with grow_table.claimed(folder) as again:
        assert again


def test_a_lock_left_by_a_killed_grower_is_taken_over(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "g03" / "s1"
    folder.mkdir(parents=True)
    (folder / grow_table.LOCK).write_text(str(gone.pid))
    with grow_table.claimed(folder) as mine:
        assert mine
    assert not (folder / grow_table.LOCK).exists()


def test_an_empty_lock_just_made_is_held_by_the_grower_writing_it(tmp_path):
    folder = tmp_path / "g03" / "s1"
    folder.mkdir(parents=True)
    (folder / grow_table.LOCK).write_text("")  # created, its maker's pid not written yet
    with grow_table.claimed(folder) as mine:
        assert not mine
    old = time.time() - 3600
    os.utime(folder / grow_table.LOCK, (old, old))  # an empty lock an hour old: its maker died
    with grow_table.claimed(folder) as mine:
        assert mine


@pytest.mark.slow
def test_a_grown_subset_keeps_each_finished_cell_with_the_machine_it_was_trained_on(tmp_path, ptb_quick_small,
                                                                                    monkeypatch):
    """The grower trains the cells of study.configs (and the dense reference), two epochs each here, and keeps
    each finished cell's rows.json and metrics.jsonl in study.cells with environment.json beside them."""
    raw = config.load_params(SMOKE)
    raw["final"]["epochs"] = raw["sparse"]["decay_epochs"] = 2  # the smoke schedule's rounds reach epoch 2
    raw["data"].update(train_tokens=12_000, prepared=str(ptb_quick_small))  # ptb_quick_small's
    raw["results"] = str(tmp_path / "results")
    raw["study"].update(configs=["g00", "g07"], seeds=1, cells=str(tmp_path / "kept"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config.validate(raw)))
    monkeypatch.setattr(sys, "argv", ["grow_table.py", "--params", str(tmp_path / "params.yaml")])
    monkeypatch.setattr(grow_table.sys, "executable", str(BIN / "python"))
    assert grow_table.main() == 0
    kept = sorted(p.parent.parent.name for p in (tmp_path / "kept").glob("*/s0/rows.json"))
    assert kept == ["dense", "g00", "g07"], "the subset and the dense reference, nothing else"
    for cid in kept:
        folder = tmp_path / "kept" / cid / "s0"
        environment = json.loads((folder / layout.ENVIRONMENT).read_text())
        assert environment["numerics"] == raw["numerics"] and environment["cpu"] == numerics.current()["cpu"]
        assert (folder / layout.METRICS).is_file()
