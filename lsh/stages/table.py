"""The benchmark table's jobs: train one cell (a configuration, or the dense reference, with one
training seed) to final.epochs, recording every epoch as it is trained; then gather the cells.

A cell trains one epoch at a time through the ordinary training run (a continuation is bitwise
the same as training straight through) and, after each, records the epoch's losses, its test
perplexity and its spectrum in `rows.json`, rewritten atomically. Only the last and the best
checkpoints are kept. A killed job resumes from its last checkpoint and loses no recorded epoch.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import data, files, layout
from lsh.config import Params
from lsh.errors import LshError
from lsh.search.space import CONFIG_KEYS
from lsh.study.cells import DENSE, cell_ids, table_configs, training_seeds
from lsh.study.table import COLUMNS, LAYOUTS

log = logging.getLogger("lsh.stages")


def cell_spec(params: Params, config_id: str, seed: int):
    """The run a cell is: the dense reference or a configuration of the table, with training seed `seed`
    (the same spec a live run trains for that configuration when `seed` is the run's seed)."""
    from lsh.stages.slot import candidate_spec, dense_spec

    seeded = dataclasses.replace(params, seed=seed)
    if config_id == DENSE:
        return dense_spec(seeded)
    configs = dict(table_configs(params.space, params.study.space))
    if config_id not in configs:
        raise LshError(f"table configuration {config_id!r}: allowed are {DENSE}, {', '.join(configs)}")
    return candidate_spec(seeded, configs[config_id])


def cell_seed(params: Params, seed_index: int) -> int:
    seeds = training_seeds(params)
    if not 0 <= seed_index < len(seeds):
        raise LshError(f"training seed index {seed_index}: study.seeds is {len(seeds)}, so 0..{len(seeds) - 1}")
    return seeds[seed_index]


def train_cell(params: Params, config_id: str, seed_index: int, out: Path, data_dir: Path) -> dict:
    """Train a cell to final.epochs, recording epochs 0..final as they are trained; returns rows.json."""
    from lsh.device import resolve_device
    from lsh.stages.spectra import spectrum_record
    from lsh.training import batchify, evaluate, load_checkpoint, model_from_checkpoint, perplexity, train

    out = Path(out)
    seed = cell_seed(params, seed_index)
    spec = cell_spec(params, config_id, seed)
    corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    rows_path = out / layout.CELL_ROWS
    record = files.read_json_if(rows_path)
    if record is None or (record.get("config"), record.get("seed"), record.get("run")) != (config_id, seed, spec.run_config(corpus)):
        record = {"config": config_id, "seed": seed, "run": spec.run_config(corpus), "rows": {}, "spectra": {}}
    device, test = resolve_device(params.train.device, "train.device"), None
    for epoch in range(params.final_epochs + 1):
        if str(epoch) in record["rows"]:
            continue
        summary = train(spec, corpus, out, epoch, resume=True, restart=epoch == 0, keep="last", progress=False)
        checkpoint = layout.checkpoint(out, epoch)
        if not checkpoint.exists():  # it diverged in an earlier epoch: training stopped there
            break
        state = load_checkpoint(checkpoint)
        history = state["history"][epoch - 1] if epoch else {}
        spectrum = spectrum_record(state, str(checkpoint), corpus.valid, params.lyapunov, seed)
        ok = state["status"] == "ok"
        test_ppl = None
        if ok:
            if test is None:
                test = batchify(corpus.test, params.train.eval_batch_size, device)
            model = model_from_checkpoint(state, device)
            test_ppl = files.finite_or_none(perplexity(evaluate(model, test, params.train.bptt)))
        record["rows"][str(epoch)] = {
            "train_loss": history.get("train_loss"), "train_ppl": history.get("train_ppl"),
            "valid_loss": history.get("valid_loss"), "valid_ppl": history.get("valid_ppl"),
            "test_ppl": test_ppl, "status": state["status"], "clipped": spectrum["clipped"],
        }
        record["spectra"][str(epoch)] = spectrum["layouts"]
        files.write_json(rows_path, record)
        log.info("%s: %s seed %d epoch %d | valid ppl %s | test ppl %s | %s", out, config_id, seed, epoch,
                 history.get("valid_ppl"), test_ppl, summary.status)
        if not ok:
            break
    return record


def build_table(params: Params, cells: list[Path], out: Path) -> pd.DataFrame:
    """Gather the cells' rows.json into the table: table.csv, spectra.npz and table.json in `out`."""
    configs = dict(table_configs(params.space, params.study.space))
    rows, spectra = [], {name: [] for name in LAYOUTS}
    width = None
    for path in cells:
        cell = files.read_json(path)
        config = configs.get(cell["config"], {k: None for k in CONFIG_KEYS})
        for epoch in sorted(cell["rows"], key=int):
            rows.append({"config": cell["config"], **config, "seed": cell["seed"], "epoch": int(epoch),
                         **cell["rows"][epoch]})
            layouts = cell["spectra"][epoch]
            for name in LAYOUTS:
                values = None if layouts is None else layouts[name]
                width = width or (len(values) if values else None)
                spectra[name].append(values)
    if width is None:
        raise LshError("the table has no spectrum: every cell diverged at once")
    arrays = {name: np.array([v if v is not None else [np.nan] * width for v in values], dtype=float)
              for name, values in spectra.items()}
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    out = Path(out)
    files.write_text(out / "table.csv", frame.to_csv(index=False))
    files.atomic_write(out / "spectra.npz", lambda f: np.savez(f, **arrays))
    files.write_json(out / "table.json", {
        "space": params.study.space, "seeds": training_seeds(params), "final_epochs": params.final_epochs,
        "configs": [[cid, c] for cid, c in table_configs(params.space, params.study.space)],
        "lyapunov": dataclasses.asdict(params.lyapunov), "model": dataclasses.asdict(params.model),
        "train": dataclasses.asdict(params.train), "density": params.sparse.density,
        "decay_epochs": params.sparse.decay_epochs, "train_tokens": params.data.train_tokens, "seed": params.seed,
    })
    log.info("%s: %d rows (%d configurations x %d seeds and the dense reference, epochs 0..%d)", out, len(frame),
             len(configs), params.study.seeds, params.final_epochs)
    return frame


def cell_rows(root: str | Path, params: Params) -> list[Path]:
    """Every cell's rows.json, in the table's order: the dense reference first, then each configuration."""
    where = layout.Layout(root)
    return [where.table_cell(cid, k) / layout.CELL_ROWS for cid in cell_ids(params) for k in range(params.study.seeds)]

