"""Parallel efficiency of the workflow: one round's candidate trainings with --cores 2 vs --cores 1.

    .venv/bin/python benchmarks/parallel.py > benchmarks/results/parallel.json

Each training job runs with one torch thread, so two cores run two candidates at once.
The round is the smoke preset's model grown to the demo size (2 x 128) with a pool of 4,
trained e0 = 2 epochs each. Data preparation and the pool are made first and not timed;
the two settings alternate over the repeats in fresh copies of the project, and the
median wall time of each is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PTB = [REPO / "data" / "ptb", REPO.parent / "shared" / "data" / "ptb"]


def project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("Snakefile", "params.yaml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "workflow", dest / "workflow")
    (dest / "data").mkdir()
    (dest / "data" / "ptb").symlink_to(next(p for p in PTB
                                            if (p / "ptb.train.txt.gz").exists() or (p / "ptb.train.txt").exists()))
    params = yaml.safe_load((REPO / "workflow" / "presets" / "smoke.yaml").read_text())
    params["model"].update(emb=128, hidden=128)
    params["search"].update(n=4, e0=2)
    (dest / "bench.yaml").write_text(yaml.safe_dump(params))
    return dest


def snakemake(cwd: Path, *args: str) -> float:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    subprocess.run([str(BIN / "snakemake"), "--configfile", "bench.yaml", *args], cwd=cwd, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main(repeats: int = 2) -> dict:
    targets = [f"results/rounds/r00/s{s:02d}/train/summary.json" for s in range(4)]
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for cores in (1, 2):
                cwd = project(Path(tmp) / f"{cores}-{i}")
                snakemake(cwd, "--cores", "2", "results/rounds/r00/pool.json", "prepare")
                times[cores].append(snakemake(cwd, "--cores", str(cores), *targets))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    return {
        "benchmark": "parallel",
        "jobs": len(targets),
        "model": "lstm 2 x 128, 20k training tokens, 2 epochs per candidate, 1 torch thread per job",
        "repeats": repeats,
        "cores1_s": round(one, 2),
        "cores2_s": round(two, 2),
        "speedup": round(one / two, 3),
        "all_s": {str(k): [round(t, 2) for t in v] for k, v in times.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
