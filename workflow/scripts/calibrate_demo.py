"""Calibrate the default demo (params.yaml): in which cheapest setting has every candidate left the
unigram plateau at its first ranking (epoch search.e0)? Issue 40's measurement, kept so it can be rerun.

    python workflow/scripts/calibrate_demo.py [--only b5-100k ...] [--configs g10 g23]

The trainings go under --work (checkpoints: not committed); the table of every setting measured,
calibration.csv, under --out (docs/results/demo-calibration, committed).

Each setting is the demo's params with a few keys changed (tokens an epoch, batch, learning rate, clip,
width). For each, the study's slowest configurations to leave the plateau (g10, g04 and g11 of the
500k-token study, uniform init; g23, the slowest with ER init; --configs picks among them, the committed
table has g10 and g23) are trained to e0 = 2 with `lsh train`
(validation on the demo's 20k tokens each epoch, nothing else) and judged by the study's one definition
of the plateau (lsh.study.calibration.off_plateau). The slowest configurations are the ones a demo's
pool must not leave behind: in the 500k-token study, the grid's others left the plateau before them.

Whether the plateau ends after a number of updates or of tokens decides the cheapest setting: b5-100k
and b10-200k give the same 572 updates an epoch on 100k and 200k tokens, b20-200k half as many on
200k. The committed table:

    python workflow/scripts/calibrate_demo.py --configs g10 g23 --only b20-100k b5-100k b20-100k-clip1 \
        b20-100k-clip1-lr40 b20-100k-h256 b20-200k b10-200k

Trainings are resumable (a killed call loses at most the epoch it was training). No times are
recorded: the trainings ran beside other work; the chosen setting's cost is the demo's own timed run
(README).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from lsh import data, files, layout, records
from lsh.study.calibration import BELOW_UNIGRAM, unigram_perplexity

EVAL_TOKENS = 20_000  # the demo's train.eval_tokens: the validation tokens every ranking sees
CONFIGS = {  # the grid's ids (lsh.study.cells), death rate 0.8
    "g10": {"init": "uniform", "death": "global_magnitude", "redistribution": "nonzeros"},
    "g04": {"init": "uniform", "death": "SET", "redistribution": "nonzeros"},
    "g11": {"init": "uniform", "death": "global_magnitude", "redistribution": "none"},
    "g23": {"init": "ER", "death": "global_magnitude", "redistribution": "none"},
}
# Every setting starts from the demo as it was before this calibration: params.yaml with the death rate
# decaying over 10 epochs (its final.epochs then), which shapes the first epochs' pruning too.
BASE = {"sparse.decay_epochs": 10}
# name: the keys changed from params.yaml (train tokens an epoch, batch, learning rate, clip, width)
SETTINGS: dict[str, dict[str, float]] = {
    "b20-100k": {"data.train_tokens": 100_000},  # the demo before this calibration
    "b5-100k": {"data.train_tokens": 100_000, "train.batch_size": 5},
    "b20-100k-lr40": {"data.train_tokens": 100_000, "train.lr": 40},
    "b20-100k-lr80": {"data.train_tokens": 100_000, "train.lr": 80},
    "b20-100k-clip1": {"data.train_tokens": 100_000, "train.clip": 1.0},
    "b20-100k-clip1-lr40": {"data.train_tokens": 100_000, "train.clip": 1.0, "train.lr": 40},
    "b20-100k-h256": {"data.train_tokens": 100_000, "model.emb": 256, "model.hidden": 256},
    "b20-200k": {"data.train_tokens": 200_000},
    "b10-200k": {"data.train_tokens": 200_000, "train.batch_size": 10},
    "b20-500k": {"data.train_tokens": 500_000},  # the study's calibrated regime, the demo's since
}


def _lsh(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lsh", *args], check=True)


def calibrate(name: str, out: Path, params: str, threads: int, configs: list[str]) -> pd.DataFrame:
    tokens = SETTINGS[name]["data.train_tokens"]
    prepared = out / "prepared" / f"{tokens // 1000}k"
    sets = ["--set", f"data.prepared={prepared}"]
    for key, value in {**BASE, **SETTINGS[name]}.items():
        sets += ["--set", f"{key}={value}"]
    if not (prepared / layout.PREPARED_META).is_file():
        _lsh("prepare", "--params", params, *sets)
    folder = out / name
    rows = []
    for cid in configs:
        methods = [x for key, value in CONFIGS[cid].items() for x in ("--set", f"sparse.{key}={value}")]
        run = folder / cid
        _lsh("train", "--params", params, *sets, *methods, "--set", "sparse.death_rate=0.8", "--epochs", "2",
             "--resume", "--out", str(run), "--threads", str(threads))
        rows += [{"config": cid, "epoch": e.epoch, "valid_ppl": e.valid_ppl, "seconds": e.seconds}
                 for e in records.read_lines(run / layout.METRICS, records.Epoch)]
    frame = pd.DataFrame(rows)
    frame.insert(0, "setting", name)
    corpus = data.load_corpus(prepared)
    frame["unigram"] = unigram_perplexity(corpus.train, corpus.valid[:EVAL_TOKENS], len(corpus.vocab))
    return frame


def summarise(frames: list[pd.DataFrame], out: Path) -> None:
    rows = []
    for frame in frames:
        name = frame.setting.iloc[0]
        setting = SETTINGS[name]
        tokens, batch = setting["data.train_tokens"], setting.get("train.batch_size", 20)
        unigram = float(frame.unigram.iloc[0])
        at = {e: frame[frame.epoch == e].set_index("config").valid_ppl for e in (1, 2)}
        updates = -(-(tokens // batch - 1) // 35)  # bptt windows of one of the batch's streams
        rows.append({"setting": name, "tokens/epoch": tokens, "batch": batch, "lr": setting.get("train.lr", 20),
                     "clip": setting.get("train.clip", 0.25), "hidden": setting.get("model.hidden", 128),
                     "updates/epoch": updates,
                     "unigram": round(unigram, 1),
                     "worst e1": round(at[1].max(), 1), "worst e2": round(at[2].max(), 1),
                     "worst e2 / unigram": round(at[2].max() / unigram, 3),
                     "off plateau at e2": f"{int((at[2] <= (1 - BELOW_UNIGRAM) * unigram).sum())}/{len(at[2])}"})
    table = pd.DataFrame(rows)
    files.write_text(out / "calibration.csv", table.to_csv(index=False))
    # every training's validation perplexity by epoch (its seconds only where nothing else ran: not here)
    files.write_text(out / "curves.csv", pd.concat(frames).drop(columns="seconds").to_csv(index=False))
    print(table.to_string(index=False))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/results/demo-calibration"), help="where calibration.csv goes")
    p.add_argument("--work", type=Path, default=Path("results/demo-calibration"), help="where the trainings go")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="these settings (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=sorted(CONFIGS),
                   help="grid configurations to train (default: %(default)s)")
    args = p.parse_args()
    frames = [calibrate(name, args.work, args.params, args.threads, args.configs) for name in (args.only or SETTINGS)]
    summarise(frames, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
