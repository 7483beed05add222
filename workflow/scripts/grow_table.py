"""Grow a study's committed table across sessions: train the cells that study.cells lacks, one job at a
time (one thread: run it in the background beside other work), and copy each finished cell's rows.json
(and its metrics.jsonl, the epochs' times) into study.cells, where the study target reuses it. Commit
that folder as cells arrive.

    python workflow/scripts/grow_table.py --params workflow/presets/study.yaml

Seed by seed, each cell to the end, so that every finished cell can be committed (a checkpoint is too
large to keep, so a cell left half-trained when the machine goes is trained again). With --until,
every cell is trained only to that epoch first (a quick look at all configurations on one machine); a
later call without it continues each from its last checkpoint. The work folders (checkpoints) are
under <results>/study/grow/; a killed call loses at most the epoch it was training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from lsh import config, files, layout
from lsh.errors import LshError
from lsh.records import read_cell
from lsh.study.cells import cell_ids


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
            command = [str(lsh), "study", "cell", "--params", args.params, "--config", cid, "--seed-index", str(k),
                       "--out", str(out), "--threads", str(args.threads)]
            if args.until is not None:
                command += ["--until", str(args.until)]
            print(" ".join(command), flush=True)
            if subprocess.run(command).returncode:
                return 1
            try:
                read_cell(out / layout.CELL_ROWS, params.final_epochs)  # complete: to final.epochs or a divergence
            except LshError:
                continue  # trained only --until: not finished
            for name in (layout.METRICS, layout.CELL_ROWS):  # rows.json last: it marks the cell finished
                files.atomic_write(kept.parent / name, lambda f, src=out / name: f.write(src.read_bytes()))
            print(f"finished: {kept}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
