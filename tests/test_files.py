"""Atomic writes and the faults of the disk: a full or read-only results folder is one clean line, and
a later --resume continues once the fault is gone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, run_lsh

from lsh import files
from lsh.errors import LshError

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 2 MB (root only: the test is skipped with the reason elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True, capture_output=True)


def test_atomic_write_keeps_the_old_content_when_the_write_fails(tmp_path: Path):
    target = files.write_text(tmp_path / "a.json", "old")

    def half(f):
        f.write(b"new but")
        raise OSError(28, "No space left on device")

    with pytest.raises(LshError, match=f"cannot write {target}: No space left on device"):
        files.atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def train(ptb_small: Path, out: Path, epochs: int, *extra: str):
    return run_lsh("train", "--params", str(SMOKE), "--data", str(ptb_small), "--out", str(out),
                   "--epochs", str(epochs), "--threads", "1",
                   "--set", "data.train_tokens=12000", "--set", "train.eval_tokens=4000", *extra)


def test_a_full_disk_is_one_line_and_resume_continues_once_there_is_room(ptb_small: Path, small_disk: Path):
    out = small_disk / "run"
    first = train(ptb_small, out, 3)  # a smoke checkpoint is about 2.6 MB: the first one does not fit
    assert first.returncode == 2, first.stderr
    line = [x for x in first.stderr.splitlines() if "error" in x]
    assert line == [f"lsh train: error: cannot write {out / 'epoch-000.pt'}: No space left on device "
                    "(free some space, then rerun with --resume)"], first.stderr
    assert "Traceback" not in first.stderr and not list(out.glob("*.pt")) and not list(out.glob(".*tmp"))
    remount(small_disk, "size=64m")
    second = train(ptb_small, out, 2, "--resume")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in out.glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt"]


@pytest.mark.slow
def test_a_read_only_folder_is_one_line_and_resume_continues_when_writable(ptb_small: Path, small_disk: Path):
    remount(small_disk, "size=64m")
    out = small_disk / "run"
    assert train(ptb_small, out, 1).returncode == 0
    remount(small_disk, "ro")
    refused = train(ptb_small, out, 2, "--resume")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"lsh train: error: cannot write {out / 'epoch-002.pt'}: Read-only file system" in refused.stderr
    remount(small_disk, "rw")
    resumed = train(ptb_small, out, 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and (out / "epoch-002.pt").is_file()
