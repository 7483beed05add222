"""The benchmark table: every configuration of a finite space trained once to the end, with what any
selection strategy could observe at every epoch (as the tabular HPO benchmarks NAS-Bench and LCBench
do). A candidate's training depends only on its configuration, the seed and the model, training and
data sections, and a survivor continued from a checkpoint is bitwise one trained straight through,
so a strategy replayed on the table sees exactly what a live run of it would have seen.

One row per (configuration, training seed, epoch 0..final), the dense reference as configuration
`dense`; the spectra of every row, in both layouts, in arrays aligned with the rows:

    config            g00..g23 (the grid), q000.. (every quantised configuration), dense
    init, death, growth, redistribution, death_rate   the configuration (empty for dense)
    seed              the training seed
    epoch             0 (the initialisation) .. final.epochs
    train_loss, train_ppl, valid_loss, valid_ppl, test_ppl   per epoch (no training at epoch 0)
    status            ok | diverged (from the diverging epoch on)
    clipped           exponents of the spectrum at the floor (lyapunov.min_exponent)

The table's files are read through the readers below (read_meta, read_rows, read_spectra; a cell's
rows.json is a record, lsh.records.Cell), and Table.load checks the table's content (check_table)
before anything is replayed on it: an error names the file, the field or row, and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from lsh import files
from lsh.config import DeathRateRange, Params, SpaceConfig
from lsh.errors import LshError
from lsh.layout import TABLE_FILES, TABLE_META, TABLE_ROWS, TABLE_SPECTRA
from lsh.records import CELL_FIELDS, LAYOUTS, CellRow, run_problem
from lsh.search.space import CATEGORICAL, CONFIG_KEYS, config_key, discrete_space
from lsh.study.cells import DENSE, SPACES, study_configs
from lsh.typecheck import hints

# A row: the cell's configuration (its id and values), its training seed and epoch, and that epoch's CellRow
COLUMNS = ("config", *CONFIG_KEYS, "seed", "epoch", *CELL_FIELDS)
TEXT = ("config", *CATEGORICAL, "status")  # read as text: blank is missing, never a number
NUMERIC = tuple(c for c in COLUMNS if c not in TEXT)
WHOLE = ("seed", "epoch")  # never blank, whole numbers
STATUSES = get_args(hints(CellRow)["status"])  # a row's status is its cell row's: ok | diverged
OUTCOMES = ("train_loss", "valid_loss", "valid_ppl", "test_ppl")  # finite on every ok row from epoch 1 on
META_KEYS = ("configs", "seeds", "final_epochs", "space")
REBUILD = "rebuild the table (lsh study table, or snakemake study_table)"


@dataclass(kw_only=True)
class Table:
    """A loaded table: its rows, and the spectra of each row in both layouts."""

    rows: pd.DataFrame
    spectra: dict[str, np.ndarray]  # layout -> [rows, exponents]
    meta: dict
    folder: Path | None = None  # where it was loaded from (named in errors)

    @classmethod
    def load(cls, folder: str | Path) -> "Table":
        """The table in `folder`, read and validated (check_table): a file that is missing, unreadable,
        of another shape or contradicting the others is an LshError naming it, the field and what was expected."""
        folder = Path(folder)
        for name in TABLE_FILES:
            if not (folder / name).is_file():
                raise LshError(f"{folder / name} does not exist: build the table first (snakemake study_table)")
        meta = read_meta(folder / TABLE_META)
        rows = read_rows(folder / TABLE_ROWS)
        spectra = read_spectra(folder / TABLE_SPECTRA)
        check_table(rows, spectra, meta, folder)
        return cls(rows=rows, spectra=spectra, meta=meta, folder=folder)

    def check_study(self, study_seeds: int) -> None:
        """Refuse a table no study verdict can come from: other training seeds than the params' study.seeds,
        fewer than 2 configurations, or a training seed on which no configuration has a finite outcome."""
        where = self.folder / TABLE_META if self.folder else "the table"
        if len(self.seeds) != study_seeds:
            raise LshError(f"{where}: the table was built with {len(self.seeds)} training seed(s) "
                           f"({', '.join(map(str, self.seeds))}) but the params' study.seeds is {study_seeds}: use the "
                           f"params the table was built with, or {REBUILD} with these")
        if len(self.configs) < 2:
            raise LshError(f"{where}: the table has {len(self.configs)} configuration(s) "
                           f"({', '.join(cid for cid, _ in self.configs) or 'none'}): a study ranks configurations, "
                           "so it needs at least 2")
        where = self.folder / TABLE_ROWS if self.folder else "the table"
        for seed in self.seeds:
            if not any(math.isfinite(self.final(cid, seed)["test_ppl"]) for cid, _ in self.configs):
                raise LshError(f"{where}: no configuration has a finite final test perplexity with training "
                               f"seed {seed} (every one diverged before epoch {self.final_epochs}): "
                               "the study cannot rank anything")

    def __post_init__(self) -> None:
        """The lookups every replay makes: (config, seed, epoch) -> row number, and configuration -> id."""
        self._row = {(r.config, int(r.seed), int(r.epoch)): i for i, r in enumerate(self.rows.itertuples())}
        self.ids = {config_key(c): cid for cid, c in self.configs}

    @property
    def configs(self) -> list[tuple[str, dict]]:
        return [(cid, dict(c)) for cid, c in self.meta["configs"]]

    @property
    def seeds(self) -> list[int]:
        return list(self.meta["seeds"])

    @property
    def final_epochs(self) -> int:
        return int(self.meta["final_epochs"])

    def config_id(self, config: dict) -> str:
        try:
            return self.ids[config_key(config)]
        except KeyError:
            raise LshError(f"configuration {config} is not in the table") from None

    def row(self, config: str, seed: int, epoch: int) -> pd.Series | None:
        """The row of an epoch, or None past a divergence (the training stopped there)."""
        i = self._row.get((config, seed, epoch))
        return None if i is None else self.rows.iloc[i]

    def spectrum(self, config: str, seed: int, epoch: int, layout: str) -> np.ndarray | None:
        """The spectrum recorded after an epoch (NaN where it diverged), or None past a divergence."""
        i = self._row.get((config, seed, epoch))
        return None if i is None else self.spectra[layout][i]

    def trajectory(self, config: str, seed: int, upto: int, layout: str) -> np.ndarray | None:
        """Spectra of epochs 0..upto [upto + 1, L], or None when one is missing (a diverged epoch)."""
        rows = [self._row.get((config, seed, e)) for e in range(upto + 1)]
        if any(r is None or self.rows["status"].iat[r] != "ok" for r in rows):
            return None
        points = self.spectra[layout][rows]
        return None if not np.all(np.isfinite(points)) else points

    def losses(self, config: str, seed: int) -> dict[int, float | None]:
        """Validation loss by epoch (None from a divergence on)."""
        out: dict[int, float | None] = {}
        for e in range(1, self.final_epochs + 1):
            row = self.row(config, seed, e)
            ok = row is not None and row["status"] == "ok" and math.isfinite(row["valid_loss"])
            out[e] = float(row["valid_loss"]) if ok else None
        return out

    def observed(self, config: str, seed: int, epoch: int, layout: str):
        """What a live round sees of `config` trained to `epoch` (lsh.search.ranking.Observed)."""
        from lsh.search.ranking import Observed

        valid, train = {}, {}
        for e in range(1, epoch + 1):
            row = self.row(config, seed, e)
            ok = row is not None and row["status"] == "ok"
            valid[e] = float(row["valid_loss"]) if ok and math.isfinite(row["valid_loss"]) else None
            train[e] = float(row["train_loss"]) if ok and math.isfinite(row["train_loss"]) else None
        return Observed(epoch=epoch, valid_loss=valid, train_loss=train,
                        spectra=self.trajectory(config, seed, epoch, layout))

    def final(self, config: str, seed: int, epochs: int | None = None) -> dict:
        """The outcome of training `config` to `epochs` (default final.epochs) as the final training reports
        it: the best validation perplexity and the test perplexity of that epoch; infinite for a run that
        diverged before `epochs`, which a selection never picks."""
        epochs = self.final_epochs if epochs is None else epochs
        best = None
        for e in range(1, epochs + 1):
            row = self.row(config, seed, e)
            if row is None or row["status"] != "ok" or not math.isfinite(row["valid_ppl"]):
                return {"epoch": None, "valid_ppl": math.inf, "test_ppl": math.inf}
            if best is None or row["valid_ppl"] < best["valid_ppl"]:
                best = {"epoch": e, "valid_ppl": float(row["valid_ppl"]), "test_ppl": float(row["test_ppl"])}
        return best or {"epoch": None, "valid_ppl": math.inf, "test_ppl": math.inf}

    def best(self, seed: int) -> tuple[str, float]:
        """The table's best configuration for a training seed: lowest final test perplexity."""
        finals = [(self.final(cid, seed)["test_ppl"], cid) for cid, _ in self.configs]
        test_ppl, cid = min(finals)
        return cid, test_ppl

    def subset(self, ids: list[str]) -> "Table":
        """The table of these configurations (and the dense reference) only: a configuration left out, or a
        pre-registered subset, as if only they had been trained; not tied to a folder."""
        unknown = set(ids) - {cid for cid, _ in self.configs}
        if unknown:
            raise LshError(f"configurations {', '.join(sorted(unknown))} are not in the table")
        keep = self.rows["config"].isin([DENSE, *ids]).to_numpy()
        meta = {**self.meta, "configs": [[cid, c] for cid, c in self.meta["configs"] if cid in ids]}
        return Table(rows=self.rows[keep].reset_index(drop=True), spectra={k: v[keep] for k, v in self.spectra.items()},
                     meta=meta)

    def has(self, config: dict) -> bool:
        return config_key(config) in self.ids

    def outside(self, space: SpaceConfig) -> list[dict]:
        """The configurations of the replay space (`replay_space`) the table lacks: none for a whole
        space; a pre-registered subset (study.configs) lacks the rest. The proposers count them as
        tried, so that they choose among the table's configurations."""
        return [c for c in discrete_space(space) or [] if not self.has(c)]

    def replay_space(self, space: SpaceConfig) -> SpaceConfig:
        """The space the proposers search in a replay: the table's configurations only (a grid table fixes
        the death rate at the grid's)."""
        if self.meta["space"] != "grid":
            return space
        rate = space.grid_death_rate
        return dataclasses.replace(space, death_rate=DeathRateRange(rate, rate, space.death_rate.q))


# --- reading and validating the study's files ------------------------------------------------------
#
# The table's three files are read here and nowhere else (Table.load); a cell's rows.json is a
# record (lsh.records.read_cell). An error names the file, the field and what was expected.


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if _is_real(value) else type(value).__name__)


def _ids(ids: list[str]) -> str:
    """Configuration ids in a message: all of a few, the first and last of many."""
    return ", ".join(ids) if len(ids) <= 6 else f"{ids[0]}, {ids[1]}, .., {ids[-1]}"


def _cause(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _read_json(path: Path, what: str) -> object:
    """A JSON file's content, or an LshError naming the file and what it should hold."""
    try:
        return files.read_json(path)
    except LshError as e:
        raise LshError(f"{e} (expected {what})") from None


def read_meta(path: str | Path) -> dict:
    """table.json: the table's description (configs, seeds, final_epochs, space and the settings)."""
    path = Path(path)
    meta = _read_json(path, f"the table's description (an object with {', '.join(META_KEYS)}); {REBUILD}")
    check_meta(meta, path)
    return meta


def check_meta(meta: object, where: str | Path) -> None:
    """The description's keys and their types: configs [[id, {init, death, growth, redistribution,
    death_rate}], ..], seeds [distinct whole numbers], final_epochs (>= 1), space (grid | quantised)."""
    if not isinstance(meta, dict):
        raise LshError(f"{where}: {_kind(meta)}, expected an object with {', '.join(META_KEYS)}; {REBUILD}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise LshError(f"{where}: no key {', '.join(missing)}: the table's description has {', '.join(META_KEYS)}; "
                       f"{REBUILD}")
    if meta["space"] not in SPACES:
        raise LshError(f"{where}: space is {meta['space']!r}: allowed are {', '.join(SPACES)}")
    final = meta["final_epochs"]
    if not _is_int(final) or final < 1:
        raise LshError(f"{where}: final_epochs is {final!r}: expected a whole number >= 1 (final.epochs)")
    seeds = meta["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(map(_is_int, seeds)) or len(set(seeds)) < len(seeds):
        raise LshError(f"{where}: seeds is {seeds!r}: expected a non-empty list of distinct whole numbers "
                       "(the training seeds)")
    configs = meta["configs"]
    if not isinstance(configs, list):
        raise LshError(f"{where}: configs is {_kind(configs)}: expected a list of [id, configuration]")
    expected = f"[id, {{{', '.join(CONFIG_KEYS)}}}]"
    seen_ids: set[str] = set()
    seen: set[tuple] = set()
    for i, item in enumerate(configs):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict)):
            raise LshError(f"{where}: configs[{i}] is {item!r}: expected {expected}")
        cid, config = item
        if not cid.strip() or cid == DENSE or cid in seen_ids:
            raise LshError(f"{where}: configs[{i}] has the id {cid!r}: expected a distinct id other than {DENSE!r} "
                           "(g00.., q000..)")
        for key in CONFIG_KEYS:
            value = config.get(key)
            ok = _is_real(value) and math.isfinite(value) if key == "death_rate" else isinstance(value, str) and value
            if not ok:
                raise LshError(f"{where}: configs[{i}] ({cid}) has {key} {value!r}: expected "
                               + ("a finite number" if key == "death_rate" else "a method's name"))
        if config_key(config) in seen:
            raise LshError(f"{where}: configs[{i}] ({cid}) repeats an earlier configuration: {config}")
        seen_ids.add(cid)
        seen.add(config_key(config))


def read_rows(path: str | Path) -> pd.DataFrame:
    """table.csv: the rows, with their columns checked and typed (check_rows)."""
    path = Path(path)
    try:  # pandas 3 parses floats round-trip exactly: what a live run reads
        rows = pd.read_csv(path, dtype={c: "str" for c in TEXT})
    except pd.errors.EmptyDataError:
        raise LshError(f"{path} is empty: expected a header with the columns {', '.join(COLUMNS)} and one row per "
                       f"configuration, training seed and epoch; {REBUILD}") from None
    except (ValueError, pd.errors.ParserError) as e:  # UnicodeDecodeError is a ValueError
        raise LshError(f"{path} is not a CSV table ({_cause(e)}): {REBUILD}") from None
    return check_rows(rows, path)


def check_rows(rows: pd.DataFrame, where: str | Path) -> pd.DataFrame:
    """The rows with every column present and typed: numbers in the numeric columns, whole seeds and epochs
    (never blank), a configuration id on every row, a status of ok or diverged. Returns a typed copy."""
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise LshError(f"{where}: no column {', '.join(missing)}: a table has the columns {', '.join(COLUMNS)}; "
                       f"{REBUILD}")
    rows = rows.reset_index(drop=True).copy()
    for col in NUMERIC:
        values = rows[col]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            parsed = (pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values)
                      else values * np.nan)
            bad = np.flatnonzero(values.notna() & parsed.isna())
            if bad.size:
                i = int(bad[0])
                raise LshError(f"{where} line {i + 2}: column {col} is {values.iat[i]!r}: expected a number")
            rows[col] = parsed.astype(float)
    for col in WHOLE:
        values = rows[col].to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            i = int(bad[0])
            said = "blank" if math.isnan(values[i]) else repr(float(values[i]))
            raise LshError(f"{where} line {i + 2}: column {col} is {said}: every row names its training seed and "
                           "epoch, as whole numbers")
        rows[col] = values.astype("int64")
    blank = np.flatnonzero(rows["config"].fillna("").astype(str).str.strip().eq("").to_numpy())
    if blank.size:
        raise LshError(f"{where} line {int(blank[0]) + 2}: the configuration id (column config) is blank: expected "
                       f"{DENSE} or an id of table.json's configs")
    bad = np.flatnonzero(~rows["status"].isin(STATUSES).to_numpy())
    if bad.size:
        i = int(bad[0])
        value = rows["status"].iat[i]
        raise LshError(f"{where} line {i + 2}: column status is {'blank' if pd.isna(value) else repr(value)}: "
                       f"allowed are {', '.join(STATUSES)}")
    return rows


def read_spectra(path: str | Path) -> dict[str, np.ndarray]:
    """spectra.npz: the float arrays `blocks` and `sorted` [rows, exponents], read without unpickling."""
    path = Path(path)
    expected = f"expected the .npz archive of the float arrays {' and '.join(LAYOUTS)} [rows, exponents]; {REBUILD}"
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise LshError(f"{path} is truncated or not a zip archive ({_cause(e)}): {expected}") from None
    except ValueError:  # neither a zip nor a .npy file: numpy would have to unpickle it
        raise LshError(f"{path} is not an .npz archive (neither a zip archive nor a NumPy array): {expected}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LshError(f"{path} holds a single array, not an archive of arrays: {expected}")
    out = {}
    with archive:
        missing = [name for name in LAYOUTS if name not in archive.files]
        if missing:
            raise LshError(f"{path}: no array {', '.join(missing)} (it holds {', '.join(archive.files) or 'none'}): "
                           f"{expected}")
        for name in LAYOUTS:
            try:
                array = archive[name]
            except ValueError as e:
                said = ("holds Python objects (dtype object), which are never unpickled" if "bject" in str(e)
                        else f"cannot be read ({_cause(e)})")
                raise LshError(f"{path}: array {name} {said}: {expected}") from None
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
                raise LshError(f"{path}: array {name} is truncated or corrupt ({_cause(e)}): {expected}") from None
            numeric = np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            if array.ndim != 2 or not numeric:
                raise LshError(f"{path}: array {name} is of dtype {array.dtype} and shape {array.shape}: {expected}")
            out[name] = array.astype(float, copy=False)
    return out


def check_table(rows: pd.DataFrame, spectra: dict[str, np.ndarray], meta: dict, folder: str | Path) -> None:
    """The table's content, as Table.load reads it (so every replay and the report rely on it): the spectra
    aligned with the rows; one row per (config, seed, epoch); every configuration of table.json (and the dense
    reference) with every training seed at epochs 0..final_epochs, or up to a diverged epoch, and no other;
    each row's configuration columns those of its configuration; finite losses and perplexities on every row
    of status ok from epoch 1 on. `rows` as check_rows returns them; names the files in `folder`."""
    folder = Path(folder)
    files = _TableFiles(csv=folder / TABLE_ROWS, npz=folder / TABLE_SPECTRA, js=folder / TABLE_META, rows=rows)
    final, seeds = int(meta["final_epochs"]), list(meta["seeds"])
    configs = {cid: config for cid, config in meta["configs"]}
    _check_keys(rows, files, list(configs), seeds, final)
    _check_config_columns(rows, files, configs)
    _check_runs(rows, files, list(configs), seeds, final)
    _check_outcomes(rows, files)
    _check_spectra_shapes(rows, spectra, files)


@dataclass(kw_only=True)
class _TableFiles:
    """The table's files as its checks name them, and where in table.csv a row is."""

    csv: Path
    npz: Path
    js: Path
    rows: pd.DataFrame

    def __post_init__(self) -> None:
        rows = self.rows
        self.config, self.seed, self.epoch = (rows["config"].to_numpy(object), rows["seed"].to_numpy(),
                                              rows["epoch"].to_numpy())

    def at(self, i: int) -> str:
        return f"{self.csv} line {i + 2} ({self.config[i]}, seed {self.seed[i]}, epoch {self.epoch[i]})"


def _first(mask) -> int | None:
    hits = np.flatnonzero(np.asarray(mask))
    return int(hits[0]) if hits.size else None


def _check_keys(rows: pd.DataFrame, f: _TableFiles, ids: list[str], seeds: list[int], final: int) -> None:
    """Every row of a known configuration and training seed, at an epoch of the table, once."""
    config, seed, epoch = f.config, f.seed, f.epoch
    if (i := _first(~rows["config"].isin([DENSE, *ids]))) is not None:
        raise LshError(f"{f.csv} line {i + 2}: configuration {config[i]!r} is not in {f.js}'s configs "
                       f"({_ids(ids) or 'none'}) nor {DENSE}: the rows and the description are of different tables; "
                       f"{REBUILD}")
    if (i := _first(~rows["seed"].isin(seeds))) is not None:
        raise LshError(f"{f.at(i)}: training seed {seed[i]} is not among {f.js}'s seeds ({', '.join(map(str, seeds))})")
    if (i := _first((epoch < 0) | (epoch > final))) is not None:
        raise LshError(f"{f.at(i)}: epoch {epoch[i]} is outside 0..{final} ({f.js}'s final_epochs)")
    duplicated = rows.duplicated(["config", "seed", "epoch"], keep=False).to_numpy()
    if (i := _first(duplicated)) is not None:
        same = np.flatnonzero(duplicated & (config == config[i]) & (seed == seed[i]) & (epoch == epoch[i]))
        raise LshError(f"{f.csv}: the row ({config[i]}, seed {seed[i]}, epoch {epoch[i]}) appears {same.size} times "
                       f"(lines {', '.join(str(j + 2) for j in same)}): a table has one row per configuration, "
                       f"training seed and epoch, so which one holds is unknown; {REBUILD}")


def _check_config_columns(rows: pd.DataFrame, f: _TableFiles, configs: dict[str, dict]) -> None:
    """Each row's configuration columns are its configuration's (blank for the dense reference)."""
    for key in CONFIG_KEYS:
        expected = rows["config"].map({cid: c[key] for cid, c in configs.items()})  # blank for the dense reference
        actual = rows[key]
        if key == "death_rate":
            expected, actual = expected.astype(float).round(6), actual.astype(float).round(6)
        same = (actual == expected).fillna(False).to_numpy(bool) | (actual.isna() & expected.isna()).to_numpy(bool)
        if (i := _first(~same)) is not None:
            value = rows[key].iat[i]
            value = "blank" if pd.isna(value) else repr(float(value) if key == "death_rate" else str(value))
            want = ("blank (the dense reference has no configuration)" if f.config[i] == DENSE
                    else f"{configs[f.config[i]][key]!r}, as {f.js} gives {f.config[i]}")
            raise LshError(f"{f.at(i)}: column {key} is {value}, expected {want}")


def _check_runs(rows: pd.DataFrame, f: _TableFiles, ids: list[str], seeds: list[int], final: int) -> None:
    """Every configuration and the dense reference, with every training seed, at epochs 0..final or up to
    a diverged epoch."""
    status = rows["status"].to_numpy(object)
    runs = rows.groupby(["config", "seed"], sort=False).indices
    for cid in [DENSE, *ids]:
        for s in seeds:
            where = runs.get((cid, s))
            if where is None:
                raise LshError(f"{f.csv}: no rows for {cid} with training seed {s}: every configuration of {f.js} "
                               f"and {DENSE} have rows for every training seed ({', '.join(map(str, seeds))}) at "
                               f"epochs 0..{final}; {REBUILD} once every cell is trained")
            order = where[np.argsort(f.epoch[where], kind="stable")]
            problem = run_problem([int(e) for e in f.epoch[order]], list(status[order]), final)
            if problem:
                raise LshError(f"{f.csv}: {cid} with training seed {s} {problem}")


def _check_outcomes(rows: pd.DataFrame, f: _TableFiles) -> None:
    """Finite losses and perplexities on every row of status ok from epoch 1 on."""
    values = rows[list(OUTCOMES)].to_numpy(float)
    trained_ok = ((rows["status"].to_numpy(object) == "ok") & (f.epoch >= 1))[:, None]
    bad = np.argwhere(trained_ok & ~np.isfinite(values))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        value = "blank" if math.isnan(values[i, j]) else repr(float(values[i, j]))
        raise LshError(f"{f.at(i)}: {OUTCOMES[j]} is {value} on a row of status ok: an epoch that trained has finite "
                       "losses and perplexities, and one that did not has status diverged")


def _check_spectra_shapes(rows: pd.DataFrame, spectra: dict[str, np.ndarray], f: _TableFiles) -> None:
    """Both layouts' arrays aligned with the rows, of one shape."""
    shapes = {name: spectra[name].shape for name in LAYOUTS}
    for name, shape in shapes.items():
        if shape[0] != len(rows):
            raise LshError(f"{f.npz}: array {name} has {shape[0]} rows but {f.csv} has {len(rows)}: the spectra are "
                           f"aligned with the rows; {REBUILD}")
    if len(set(shapes.values())) > 1:
        raise LshError(f"{f.npz}: the arrays {' and '.join(f'{n} {s}' for n, s in shapes.items())} differ in shape: "
                       "expected both [rows, exponents]")


def load_table(params: Params, table_dir: Path) -> Table:
    """The table (read and validated by Table.load), refused when no verdict can come from it with these
    params: other training seeds than study.seeds, fewer than 2 configurations, nothing finite to rank."""
    table = Table.load(table_dir)
    table.check_study(params.study.seeds)
    expected, found = dict(study_configs(params)), {cid: dict(c) for cid, c in table.configs}
    if expected != found:  # a replay proposes from params.space: it must be the space the table was trained on
        differ = sorted(set(expected) ^ set(found)) or [cid for cid in expected if expected[cid] != found[cid]]
        raise LshError(f"{table_dir}: the table holds other configurations than these params' space and study.configs "
                       f"give ({', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''} differ): replay it with the "
                       "params it was built with, or build the table of this space")
    return table
