"""workflow/scripts/grow_table.py: growers side by side share the cells out, each cell trained by one."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

from conftest import REPO

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
