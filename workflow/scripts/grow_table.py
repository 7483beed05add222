"""Grow a study's committed table across sessions: train the cells that study.cells lacks, one job at a
time (one thread: run it in the background beside other work), and copy each finished cell's rows.json
(and its metrics.jsonl, the epochs' times) into study.cells, where the study target reuses it. Commit
that folder as cells arrive.

    python workflow/scripts/grow_table.py --params workflow/presets/study.yaml

Each finished cell's folder also gets environment.json (`lsh environment`: the CPU model, the numerics
mode and the versions it was trained under), since under `numerics: native` the last bits depend on
the machine.

Seed by seed, each cell to the end, so that every finished cell can be committed (a checkpoint is too
large to keep, so a cell left half-trained when the machine goes is trained again). With --until,
every cell is trained only to that epoch first (a quick look at all configurations on one machine); a
later call without it continues each from its last checkpoint. The work folders (checkpoints) are
under <results>/study/grow/; a killed call loses at most the epoch it was training.

Several calls may grow one table side by side (one per core): each claims the cell it trains (a
lock file in the cell's work folder naming its process) and passes over a cell another live call
holds, so they share the cells out instead of training one twice; a lock left by a killed call
is taken over.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lsh import config, files, layout
from lsh.errors import LshError
from lsh.records import read_cell
from lsh.study.cells import cell_ids

LOCK = "grow.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[bool]:
    """Whether this process holds the cell of `folder` (yields False while another live process does);
    released when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
                fresh = time.time() - lock.stat().st_mtime < 60  # an empty lock being written by its maker
            except (OSError, ValueError):
                holder, fresh = 0, False
            if (holder and _alive(holder)) or (not holder and fresh):
                yield False
                return
            lock.unlink(missing_ok=True)  # left by a killed call
    else:
        yield False
        return
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", required=True, help="the study's preset (its study.cells is where cells go)")
    parser.add_argument("--until", type=int, help="train every cell only to this epoch")
    parser.add_argument("--seeds", type=int, nargs="+", help="seed indices (default: 0..study.seeds-1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    params = config.Params.from_dict(config.load_params(args.params))
    if not params.study.cells:
        sys.exit(f"{args.params}: study.cells is null: name the folder the finished cells go to")
    lsh = Path(sys.executable).with_name("lsh")
    work = Path(params.results) / "study" / "grow"
    for k in args.seeds if args.seeds is not None else range(params.study.seeds):
        for cid in cell_ids(params):
            kept = layout.cell_folder(params.study.cells, cid, k) / layout.CELL_ROWS
            if kept.is_file():
                continue
            out = layout.cell_folder(work, cid, k)
            with claimed(out) as mine:
                if not mine:
                    print(f"{out}: another call trains it", flush=True)
                    continue
                if not kept.is_file() and not grow(lsh, args, cid, k, out, kept, params.final_epochs):
                    return 1
    return 0


def grow(lsh: Path, args: argparse.Namespace, cid: str, k: int, out: Path, kept: Path, final_epochs: int) -> bool:
    """Train one cell (to --until, or to the end) and keep it when finished; False when training failed."""
    command = [str(lsh), "study", "cell", "--params", args.params, "--config", cid, "--seed-index", str(k),
               "--out", str(out), "--threads", str(args.threads)]
    if args.until is not None:
        command += ["--until", str(args.until)]
    print(" ".join(command), flush=True)
    if subprocess.run(command).returncode:
        return False
    try:
        read_cell(out / layout.CELL_ROWS, final_epochs)  # complete: to final.epochs or a divergence
    except LshError:
        return True  # trained only --until: not finished
    machine = [str(lsh), "environment", "--params", args.params, "--out", str(kept.parent / layout.ENVIRONMENT)]
    kept.parent.mkdir(parents=True, exist_ok=True)
    if subprocess.run(machine).returncode:
        return False
    for name in (layout.METRICS, layout.CELL_ROWS):  # rows.json last: it marks the cell finished
        files.atomic_write(kept.parent / name, lambda f, src=out / name: f.write(src.read_bytes()))
    print(f"finished: {kept}", flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
