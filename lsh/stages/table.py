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
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lsh import csv_records, data, files, layout, records
from lsh.config import Params, differences, show
from lsh.errors import LshError
from lsh.records import LAYOUTS, Cell, CellRow, SamplesRow, read_cell
from lsh.search.space import CONFIG_KEYS
from lsh.study.cells import DENSE, cell_ids, study_configs, training_seeds
from lsh.study.table import COLUMNS, Table, check_rows, check_table

log = logging.getLogger("lsh.stages")


def cell_spec(params: Params, config_id: str, seed: int):
    """The run a cell is: the dense reference or a configuration of the table, with training seed `seed`
    (the same spec a live run trains for that configuration when `seed` is the run's seed)."""
    from lsh.training import candidate_spec, dense_spec

    seeded = dataclasses.replace(params, seed=seed)
    if config_id == DENSE:
        return dense_spec(seeded)
    configs = dict(study_configs(params))
    if config_id not in configs:
        raise LshError(f"table configuration {config_id!r}: allowed are {DENSE}, {', '.join(configs)}")
    return candidate_spec(seeded, configs[config_id])


def cell_seed(params: Params, seed_index: int) -> int:
    seeds = training_seeds(params)
    if not 0 <= seed_index < len(seeds):
        raise LshError(f"training seed index {seed_index}: study.seeds is {len(seeds)}, so 0..{len(seeds) - 1}")
    return seeds[seed_index]


def train_cell(params: Params, config_id: str, seed_index: int, out: Path, data_dir: Path,
               until: int | None = None) -> Cell:
    """Train a cell to final.epochs (or only to epoch `until`: a calibration's first epochs, or a table
    grown across sessions; a later call continues it), recording each epoch as it is trained."""
    from lsh.training import train
    from lsh.training.checkpoints import list_checkpoints

    out = Path(out)
    seed = cell_seed(params, seed_index)
    spec = cell_spec(params, config_id, seed)
    corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    rows_path = out / layout.CELL_ROWS
    record = _recorded(rows_path, Cell(config=config_id, seed=seed, rows={}, spectra={}, run=spec.run_config(corpus),
                                       lyapunov=dataclasses.asdict(params.lyapunov)))
    measure = _EpochMeasure(params, corpus, seed)
    last = params.final_epochs if until is None else min(until, params.final_epochs)
    for epoch in range(last + 1):
        if str(epoch) in record.rows:
            continue
        # Rows lost while a later checkpoint is kept (rows.json deleted: Snakemake does so before it
        # reruns the job): the earlier epochs' checkpoints are gone (keep last), so the cell is
        # trained again from the start, to the same rows (one seed).
        later = [e for e in list_checkpoints(out) if e > epoch]
        if later:
            log.warning("%s: no rows for epoch %d but a checkpoint of epoch %d: training the cell again from "
                        "the start", out, epoch, max(later))
        summary = train(spec, corpus, out, epoch, resume=not later, restart=epoch == 0 or bool(later), keep="last",
                        progress=False)
        checkpoint = layout.checkpoint(out, epoch)
        if not checkpoint.exists():  # it diverged in an earlier epoch: training stopped there
            break
        row, record.spectra[str(epoch)] = measure(checkpoint, epoch)
        record.rows[str(epoch)] = row
        records.write(rows_path, record)
        log.info("%s: %s seed %d epoch %d | valid ppl %s | test ppl %s | %s", out, config_id, seed, epoch,
                 row.valid_ppl, row.test_ppl, summary.status)
        if row.status != "ok":
            break
    return record


def _recorded(rows_path: Path, fresh: Cell) -> Cell:
    """The cell's rows.json so far, or `fresh` (no epoch yet) when there is none or it was made otherwise."""
    try:
        record = read_cell(rows_path) if rows_path.is_file() else None
    except LshError as e:
        raise LshError(f"{e} (delete it to train the cell again)") from None
    made = ("config", "seed", "run", "lyapunov")
    if record is None or any(getattr(record, k) != getattr(fresh, k) for k in made):
        return fresh
    return record


class _EpochMeasure:
    """What a cell records of a checkpoint: its row (the epoch's losses, its test perplexity, its status)
    and its spectrum in both layouts (None where it could not be computed)."""

    def __init__(self, params: Params, corpus: data.Corpus, seed: int) -> None:
        from lsh.device import resolve_device

        self.params, self.corpus, self.seed = params, corpus, seed
        self.device, self.test = resolve_device(params.train.device, "train.device"), None

    def __call__(self, checkpoint: Path, epoch: int) -> tuple[CellRow, dict | None]:
        from lsh.spectra import spectrum_record
        from lsh.training import batchify, evaluate, load_checkpoint, model_from_checkpoint, perplexity

        params = self.params
        state = load_checkpoint(checkpoint)
        history = state["history"][epoch - 1] if epoch else {}
        spectrum = spectrum_record(state, str(checkpoint), self.corpus.valid, params.lyapunov, self.seed)
        test_ppl = None
        if state["status"] == "ok":
            if self.test is None:
                self.test = batchify(self.corpus.test, params.train.eval_batch_size, self.device)
            model = model_from_checkpoint(state, self.device)
            test_ppl = files.finite_or_none(perplexity(evaluate(model, self.test, params.train.bptt)))
        row = CellRow(train_loss=history.get("train_loss"), train_ppl=history.get("train_ppl"),
                      valid_loss=history.get("valid_loss"), valid_ppl=history.get("valid_ppl"), test_ppl=test_ppl,
                      status=state["status"], clipped=spectrum["clipped"])
        return row, spectrum["layouts"]


def check_cell_run(params: Params, cell: Cell, path: Path, corpus: data.Corpus) -> None:
    """Refuse a cell trained otherwise than these params would train it (a committed cell of another
    study, or of a changed preset), naming the settings that differ."""
    expected = {"run": cell_spec(params, cell.config, cell.seed).run_config(corpus),
                "lyapunov": dataclasses.asdict(params.lyapunov)}
    for part, want in expected.items():
        if getattr(cell, part) is None:
            raise LshError(f"{path}: no record of its {part} settings, so it cannot be checked against these params: "
                           "train it again (lsh study cell)")
        if changed := differences(getattr(cell, part), want, f"{part}."):
            raise LshError(f"{path}: trained otherwise than these params train it ({', '.join(changed[:4])} differ): "
                           "a cell of another study; train it again or point study.cells elsewhere")


def check_cell_identity(cell: Cell, path: Path, config: dict | None) -> None:
    """Refuse a cell whose record says it trained something else than its id and seed name (a rows.json
    copied under another configuration's id): the sparse method it records (none for the dense reference)
    against the configuration's, and the seed. Needs no data, so every table checks it; a cell without a
    record of its run (made by an older lsh) is left to the check against the data."""
    if not cell.run:
        return
    sparse, seed = cell.run.get("sparse"), cell.run.get("seed")
    if seed != cell.seed:
        raise LshError(f"{path}: labelled seed {cell.seed}, but its run records seed {show(seed)}: a relabelled cell")
    if config is None:  # the dense reference
        if sparse is not None:
            raise LshError(f"{path}: labelled {DENSE}, but its run records a sparse training: a relabelled cell")
        return
    recorded = sparse if isinstance(sparse, dict) else {}
    # the death rate comes from the same space on both sides: equal, or a few float64 roundings apart
    differ = [key for key in CONFIG_KEYS if not (
        recorded.get(key) == config[key] or (key == "death_rate" and isinstance(recorded.get(key), float)
                                             and math.isclose(recorded[key], config[key], rel_tol=1e-12)))]
    if differ:
        shown = ", ".join(f"{key} {show(recorded.get(key))} (not {show(config[key])})" for key in differ)
        raise LshError(f"{path}: labelled {cell.config}, but its run records {shown}: a relabelled cell, or one of "
                       "another space")


def build_table(params: Params, cells: list[Path], out: Path, data_dir: Path | None = None) -> pd.DataFrame:
    """Gather the cells' rows.json into the table: table.csv, spectra.npz and table.json in `out`. With
    `data_dir`, each cell's recorded run is checked against what these params train on that data."""
    configs = dict(study_configs(params))
    seeds = training_seeds(params)
    corpus = None if data_dir is None else data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    rows, spectra = [], {name: [] for name in LAYOUTS}
    for path in cells:
        cell = read_cell(path, params.final_epochs)  # checked, and complete: 0..final.epochs or up to a divergence
        if cell.config != DENSE and cell.config not in configs:
            raise LshError(f"{path}: config {cell.config!r} is not a configuration of this table (study.space "
                           f"{params.study.space}: {DENSE}, {', '.join(list(configs)[:3])}, ..): "
                           "a cell of another study")
        if cell.seed not in seeds:
            raise LshError(f"{path}: seed {cell.seed} is not a training seed of these params "
                           f"({', '.join(map(str, seeds))}): a cell of another study")
        check_cell_identity(cell, path, configs.get(cell.config))
        if corpus is not None:
            check_cell_run(params, cell, path, corpus)
        config = configs.get(cell.config, {k: None for k in CONFIG_KEYS})
        for epoch in cell.epochs:
            rows.append({"config": cell.config, **config, "seed": cell.seed, "epoch": int(epoch),
                         **cell.rows[epoch].to_json()})
            for name in LAYOUTS:
                spectra[name].append((path, epoch, None if cell.spectra[epoch] is None else cell.spectra[epoch][name]))
    arrays = _spectra_arrays(spectra)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    out = Path(out)
    meta = {
        "space": params.study.space, "seeds": seeds, "final_epochs": params.final_epochs,
        "configs": [[cid, c] for cid, c in study_configs(params)],
        "lyapunov": dataclasses.asdict(params.lyapunov), "model": dataclasses.asdict(params.model),
        "train": dataclasses.asdict(params.train), "density": params.sparse.density,
        "decay_epochs": params.sparse.decay_epochs, "train_tokens": params.data.train_tokens, "seed": params.seed,
    }
    try:  # what Table.load will check: refused here, before anything is written
        check_table(check_rows(frame, out / layout.TABLE_ROWS), arrays, meta, out)
    except LshError as e:
        raise LshError(f"the {len(cells)} cells do not make a valid table, so none is written: {e}") from None
    files.write_text(out / layout.TABLE_ROWS, frame.to_csv(index=False))
    files.atomic_write(out / layout.TABLE_SPECTRA, lambda f: np.savez(f, **arrays))
    files.write_json(out / layout.TABLE_META, meta)
    log.info("%s: %d rows (%d configurations x %d seeds and the dense reference, epochs 0..%d)", out, len(frame),
             len(configs), params.study.seeds, params.final_epochs)
    return frame


def _spectra_arrays(spectra: dict[str, list[tuple[Path, str, list | None]]]) -> dict[str, np.ndarray]:
    """Each layout's spectra, row by row, as one array (NaN where a row has none); every spectrum of one width."""
    width = None
    for path, epoch, values in (item for items in spectra.values() for item in items):
        if values and width and len(values) != width:
            raise LshError(f"{path}: the spectrum of epoch {epoch} has {len(values)} exponents, the cells "
                           f"before it {width}: every cell's spectra come from the same lyapunov settings")
        width = width or (len(values) if values else None)
    if width is None:
        raise LshError("the table has no spectrum: every cell diverged at once")
    return {name: np.array([v if v is not None else [np.nan] * width for _, _, v in items], dtype=float)
            for name, items in spectra.items()}


def cell_rows(root: str | Path, params: Params) -> list[Path]:
    """Every cell's rows.json, in the table's order: the dense reference first, then each configuration."""
    where = layout.Layout(root)
    return [where.table_cell(cid, k) / layout.CELL_ROWS for cid in cell_ids(params) for k in range(params.study.seeds)]



def ls_samples(params: Params, table_dir: Path, data_dir: Path) -> pd.DataFrame:
    """Table 4: the spectrum's maximum, mean and variance from K = each of study.ls_samples validation
    sequences, for the table's best and worst configuration (their last checkpoints with the first
    training seed), and the differences from the first K."""
    from lsh.spectra import checkpoint_spectrum

    samples = list(params.study.ls_samples)
    table = Table.load(table_dir)
    table.check_study(params.study.seeds)
    check_built_with(params, table, table_dir)
    seed = table.seeds[0]
    finals = sorted((test_ppl, cid) for cid, _ in table.configs
                    if math.isfinite(test_ppl := table.final(cid, seed)["test_ppl"]))
    rows = []
    for label, cid in [("best", finals[0][1]), ("worst", finals[-1][1])]:
        checkpoint = final_checkpoint(params, table_dir, cid, data_dir)
        stats = {}
        for k in samples:
            record = checkpoint_spectrum(checkpoint, data_dir, dataclasses.replace(params.lyapunov, samples=k), seed)
            values = np.array(record["exponents"], dtype=float)
            stats[k] = {"max": float(values.max()), "mean": float(values.mean()), "variance": float(values.var())}
        for k in samples:
            rows.append(SamplesRow(configuration=f"{label}: {cid}", samples=k, **stats[k],
                                   **{f"{key}_difference": stats[k][key] - stats[samples[0]][key]
                                      for key in ("max", "mean", "variance")}))
    return csv_records.frame(rows, SamplesRow)


def check_built_with(params: Params, table: Table, table_dir: Path) -> None:
    """Refuse params other than the table's for work on its models (Table 4 reads a cell's checkpoint, or
    trains the cell again): with another model or corpus it would report a model of another study."""
    want = {"model": dataclasses.asdict(params.model), "train": dataclasses.asdict(params.train),
            "density": params.sparse.density, "decay_epochs": params.sparse.decay_epochs,
            "train_tokens": params.data.train_tokens, "seed": params.seed, "final_epochs": params.final_epochs}
    if changed := differences({key: table.meta.get(key) for key in want}, want):
        raise LshError(f"{table_dir}: built with other params than these ({', '.join(changed[:4])} differ): its models "
                       "are another study's; use the params the table was built with")


def final_checkpoint(params: Params, table_dir: Path, config_id: str, data_dir: Path) -> Path:
    """The last checkpoint of a cell with the first training seed, in its folder beside the table. A cell
    kept with the project (study.cells) comes without one (too large to commit): it is trained again
    there, the same seed giving the same model, and its rows are compared with the kept ones."""
    from lsh.training.checkpoints import load_checkpoint

    folder = layout.cell_folder(table_dir, config_id, 0)
    checkpoint = layout.checkpoint(folder, params.final_epochs)
    if checkpoint.exists():
        corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
        want = cell_spec(params, config_id, cell_seed(params, 0)).run_config(corpus)
        if changed := differences(load_checkpoint(checkpoint)["run_config"], want):
            raise LshError(f"{checkpoint}: not {config_id}'s checkpoint as these params train it on this data "
                           f"({', '.join(changed[:4])} differ): a file of another run; delete it (the cell is "
                           "trained again)")
        return checkpoint
    log.info("%s: no checkpoint of epoch %d (a kept cell keeps none): training %s again", folder, params.final_epochs,
             config_id)
    trained = train_cell(params, config_id, 0, folder, data_dir)
    kept = layout.cell_folder(params.study.cells, config_id, 0) / layout.CELL_ROWS if params.study.cells else None
    if kept is not None and kept.is_file() and read_cell(kept).rows != trained.rows:
        log.warning("%s: trained again, the cell's rows differ from the kept %s (another machine or library "
                    "version?): Table 4 uses the model trained here", folder, kept)
    if not checkpoint.exists():
        raise LshError(f"{folder}: {config_id} has no checkpoint of epoch {params.final_epochs} after training")
    return checkpoint


def calibrate(params: Params, cells_root: Path, seed_index: int, data_dir: Path, out: Path) -> pd.DataFrame:
    """The calibration of a study regime (lsh.study.calibration) from the cells under `cells_root`
    trained at least to epoch search.e0 (`lsh study cell --until`): calibration.csv (each cell's
    validation perplexity and seconds per epoch), criteria.csv and calibration.md in `out`."""
    from lsh.study.calibration import criteria, unigram_perplexity

    corpus = data.load_corpus(data_dir, {"train_tokens": params.data.train_tokens})
    valid = corpus.valid if params.train.eval_tokens is None else corpus.valid[: params.train.eval_tokens]
    unigram = unigram_perplexity(corpus.train, valid, len(corpus.vocab))
    frame, missing = _calibration_curves(params, cells_root, seed_index)
    table = criteria(frame[(frame.config != DENSE) & (frame.epoch > 0)], unigram, params.search.e0)
    out = Path(out)
    files.write_text(out / "calibration.csv", frame.to_csv(index=False))
    files.write_text(out / "criteria.csv", table.to_csv(index=False))
    files.write_text(out / "calibration.md", _calibration_markdown(params, seed_index, frame, table, unigram, missing))
    held = "holds" if table["holds"].all() else "fails"
    log.info("%s: the regime %s the criteria%s (%s)", out, held,
             f" so far ({len(missing)} cells not trained yet)" if missing else "",
             "; ".join(f"{r.criterion} {r.value} vs {r.threshold}" for r in table.itertuples()))
    return table


def _calibration_curves(params: Params, cells_root: Path, seed_index: int) -> tuple[pd.DataFrame, list[str]]:
    """Every cell's validation perplexity and seconds by epoch, and the cells not (yet) trained to e0."""
    curves, missing = [], []
    for cid in cell_ids(params):
        folder = layout.cell_folder(cells_root, cid, seed_index)
        if not (folder / layout.CELL_ROWS).is_file():
            missing.append(cid)  # not trained yet: the calibration so far, said to be partial
            continue
        cell = read_cell(folder / layout.CELL_ROWS)
        if str(params.search.e0) not in cell.rows and not any(r.status == "diverged" for r in cell.rows.values()):
            missing.append(cid)  # still training towards e0
            continue
        metrics = folder / layout.METRICS  # the epochs' times, where the cell's folder kept them
        seconds = {e.epoch: e.seconds for e in records.read_lines(metrics, records.Epoch)} if metrics.is_file() else {}
        curves += [{"config": cid, "epoch": int(e), "valid_ppl": cell.rows[e].valid_ppl, "seconds": seconds.get(int(e))}
                   for e in cell.epochs]
    if len(set(cell_ids(params)) - set(missing) - {DENSE}) < 2:
        raise LshError(f"{cells_root}: fewer than 2 configurations have cells with seed index {seed_index}: "
                       "train them first (lsh study cell --until E)")
    return pd.DataFrame(curves), missing


def _calibration_markdown(params: Params, seed_index: int, frame: pd.DataFrame, table: pd.DataFrame, unigram: float,
                          missing: list[str]) -> str:
    """calibration.md: the regime, the criteria against their thresholds, and every cell's curve."""
    from lsh.report.tables import markdown_table

    wide = frame[frame.epoch > 0].pivot(index="config", columns="epoch", values="valid_ppl")
    per_epoch = frame[(frame.epoch > 0) & (frame.config != DENSE)]["seconds"]
    lines = [
        f"# Calibration: {params.data.train_tokens:,} training tokens an epoch, {params.model.layers} x "
        f"{params.model.hidden} {params.model.type.upper()}, density {params.sparse.density}, seed index {seed_index}",
        "",
        f"Unigram perplexity of the training tokens on the validation tokens: {unigram:.1f}. Seconds per "
        f"sparse epoch: median {per_epoch.median():.1f} (min {per_epoch.min():.1f}, max {per_epoch.max():.1f}).",
        "",
        *([f"**Partial**: {len(missing)} of {len(cell_ids(params))} cells not trained yet ({', '.join(missing)}); "
           "the thresholds are shares of the configurations present.", ""] if missing else []),
        markdown_table(table, digits={"value": 3, "threshold": 3}),
        "",
        "Validation perplexity by epoch:",
        "",
        markdown_table(wide.reset_index().rename(columns=lambda c: f"epoch {c}" if isinstance(c, int) else c),
                       digits={f"epoch {e}": 1 for e in wide.columns}),
        "",
    ]
    return "\n".join(lines)
