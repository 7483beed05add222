"""The records the stages pass to each other through files, each with its one reader and writer.

Every file one job writes and another reads is a dataclass here: a round's pool, a training's
summary and per-epoch metrics, a slot's spectra, a round's ranking and proposals, the
selection, a study cell's rows. A reader checks the file against the record's fields (their
types, the allowed configuration values, no missing and no unknown keys), so a truncated,
foreign or hand-edited file is one error naming the file, the field and what was expected,
never a traceback or a silently wrong number further on. `to_json` writes the same keys
`from_json` reads. CSV files of these records are read and written by lsh/csv_records.py.

    read(path, Pool)             a JSON file as its record
    read_lines(path, Epoch)      a JSON-lines file, a record per line
    read_cell(path, final)       a study cell's rows.json, checked complete
    write(path, record)          atomically
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from lsh import files
from lsh.errors import LshError
from lsh.typecheck import Measure, RecordError, at, build, fail, lead, show

R = TypeVar("R")

CONFIG_KEYS = ("init", "death", "growth", "redistribution", "death_rate")
STATUSES = ("ok", "diverged", "empty")  # empty: a pool slot without a candidate (a grid smaller than the pool)


# -----------------------------------------------------------------------------
# A candidate's configuration


@cache
def _choices() -> dict[str, tuple]:
    """The allowed value of each categorical configuration key: the schema's sparse section."""
    from lsh.config import load_schema

    sparse = load_schema()["properties"]["sparse"]["properties"]
    return {k: tuple(sparse[k]["enum"]) for k in CONFIG_KEYS[:4]}


def check_config(config: dict, where: str) -> None:
    """A configuration holds exactly the five keys, each an allowed choice, the death rate in (0, 1)."""
    keys = list(config)
    if sorted(keys) != sorted(CONFIG_KEYS):
        missing = [k for k in CONFIG_KEYS if k not in config]
        extra = [k for k in keys if k not in CONFIG_KEYS]
        what = f"lacks {', '.join(missing)}" if missing else f"has the unknown key {show(extra[0])}"
        raise RecordError(f"{lead(where)}a configuration {what} (its keys are {', '.join(CONFIG_KEYS)})")
    for key, allowed in _choices().items():
        if config[key] not in allowed:
            raise fail(at(where, key), "one of " + ", ".join(allowed), config[key])
    rate = config["death_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise fail(at(where, "death_rate"), "a number between 0 and 1", rate)


Config = Annotated[dict, check_config]


# -----------------------------------------------------------------------------
# The records


class Record:
    """from_json / to_json for a record dataclass."""

    @classmethod
    def from_json(cls: type[R], data: Any, where: str = "") -> R:
        return build(cls, data, where)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class PoolEntry(Record):
    """One slot of a round: which candidate trains there, from where, and to which epoch."""

    slot: int
    candidate: str  # c000, c001, ... in order of first appearance
    config: Config  # init, death, growth, redistribution, death_rate
    parent: str | None  # the checkpoint a survivor continues from; None: trained from scratch
    epochs_before: int
    epochs_after: int

    def validate(self, where: str) -> None:
        if not 0 <= self.epochs_before <= self.epochs_after:
            raise RecordError(f"{lead(where)}epochs_before {self.epochs_before} and epochs_after {self.epochs_after} "
                              "must satisfy 0 <= epochs_before <= epochs_after")


@dataclass(frozen=True)
class Tried(Record):
    """A configuration the search has trained (proposals must differ from all of them)."""

    candidate: str
    config: Config


@dataclass(frozen=True, kw_only=True)
class Pool(Record):
    """A round's pool (`round` an int), or the final pool (`round` "final"); empty slots are None."""

    round: int | Literal["final"]
    slots: tuple[PoolEntry | None, ...]
    tried: tuple[Tried, ...]
    next_id: int  # the number of the next new candidate

    def validate(self, where: str) -> None:
        for i, entry in enumerate(self.slots):
            if entry is not None and entry.slot != i:
                raise RecordError(f"{at(where, 'slots')}[{i}]: holds slot {entry.slot}; "
                                  "slot numbers must follow the order")

    @property
    def entries(self) -> list[PoolEntry]:
        return [e for e in self.slots if e is not None]

    def entry(self, slot: int) -> PoolEntry | None:
        """The candidate of slot `slot` (None: an empty slot); a slot the pool does not have is an error."""
        if not 0 <= slot < len(self.slots):
            raise LshError(f"--slot {slot}: the pool of round {self.round} has slots 0 to {len(self.slots) - 1}")
        return self.slots[slot]

    def to_json(self) -> dict:
        return {"round": self.round, "slots": [e.to_json() if e else None for e in self.slots],
                "tried": [t.to_json() for t in self.tried], "next_id": self.next_id}


@dataclass(frozen=True, kw_only=True)
class Summary(Record):
    """A training folder's summary.json: how the run ended and its best epoch."""

    status: Literal["ok", "diverged", "empty"]
    epochs: int  # the last epoch reached
    target_epochs: int | None = None
    valid_ppl: float | None = None  # at the last epoch
    best_epoch: int | None = None
    best_valid_ppl: float | None = None
    reason: str | None = None  # why it diverged
    seconds: float = 0.0
    epochs_trained: int = 0  # by this job (a survivor's earlier epochs were trained before)
    test_ppl: float | None = None  # at the best epoch, with --test
    test_epoch: int | None = None
    candidate: str | None = None  # a search slot's candidate and configuration
    config: Config | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if v is not None or k in ("valid_ppl", "best_epoch", "best_valid_ppl")}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, kw_only=True)
class Epoch(Record):
    """One line of a training's metrics.jsonl: the epoch's losses, perplexities and sparse statistics."""

    epoch: int
    train_loss: float | None
    train_ppl: float | None
    valid_loss: float | None
    valid_ppl: float | None
    averaging: bool
    lr: float
    tokens_per_s: float
    status: Literal["ok", "diverged"]
    seconds: float
    reason: str | None = None
    nonzeros: int | None = None  # a sparse candidate's statistics (after the epoch's topology update)
    pruned: int | None = None
    regrown: int | None = None
    death_rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class Spectrum(Record):
    """One checkpoint's spectrum in spectra.json (None exponents: its model diverged)."""

    exponents: list[float] | None
    layouts: dict[str, list[float]] | None
    clipped: int | None
    status: Literal["ok", "diverged"]
    seconds: float


@dataclass(frozen=True, kw_only=True)
class Spectra(Record):
    """spectra.json: a training folder's spectra by epoch (a slot's new epochs, or the dense reference's)."""

    spectra: dict[str, Spectrum]
    seconds: float
    round: int | Literal["final"] | None = None  # a slot's: its round, slot and candidate
    slot: int | None = None
    candidate: str | None = None
    status: Literal["ok", "empty"] = "ok"

    def validate(self, where: str) -> None:
        for epoch in self.spectra:
            if not epoch.isdigit():
                raise RecordError(f"{at(where, 'spectra')}: the key {show(epoch)} is not an epoch number")

    def by_epoch(self) -> dict[int, Spectrum]:
        return {int(e): s for e, s in self.spectra.items()}

    def to_json(self) -> dict[str, Any]:
        slot = {k: getattr(self, k) for k in ("round", "slot", "candidate")} if self.slot is not None else {}
        return {**slot, "spectra": {e: s.to_json() for e, s in self.spectra.items()}, "seconds": self.seconds,
                **({"status": self.status} if slot else {})}


@dataclass(frozen=True, kw_only=True)
class CachedSpectrum(Spectrum):
    mtime_ns: int = 0  # the checkpoint's modification time when its spectrum was computed


@dataclass(frozen=True)
class SpectraCache(Record):
    """spectra-cache.json: the spectra a training job computed while its models were at hand, keyed by
    the settings they were made with (a cache: unreadable is the same as absent)."""

    key: str
    spectra: dict[str, CachedSpectrum]


@dataclass(frozen=True, kw_only=True)
class Environment(Record):
    """environment.json (and a study cell's): what computed the run (lsh.numerics.record). The numerics and
    the capability decide its last bits; the CPU model and the versions say where to reproduce them."""

    numerics: Literal["portable", "native"]
    cpu_capability: str
    cpu: str
    vendor: str | None = None  # None: recorded by an lsh before 9aeba62 (2026-12-06), which kept neither
    machine: str
    caps: dict[str, str]
    onednn: bool | None = None
    python: str
    lsh: str
    versions: dict[str, str | None]
    cuda: dict[str, Any] | None = None  # the GPU's name and CUDA, cuDNN versions, when one was used

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return out if self.cuda is not None else {k: v for k, v in out.items() if k != "cuda"}


# The study's CSV files, read and written as frames (lsh.csv_records): `lsh replay` writes the replays, the
# anytime curves and the sensitivity, `lsh study ls-samples` the samples; `lsh study report` reads them.


@dataclass(frozen=True, kw_only=True)
class Replay(Record):
    """A row of replays.csv: one replay of a strategy on one training seed's rows of the table."""

    group: str  # the report's part: methods, ls_options or schedules
    strategy: str
    kind: str
    n: int
    e0: int
    ei: int
    repeat: int
    seed: int
    config: str | None  # what it selected (None: nothing finished)
    test_ppl: Measure
    valid_ppl: Measure
    regret: Measure  # test_ppl minus the seed's best
    candidate_epochs: int
    selects_best: bool
    dense_epochs: int
    candidate_epochs_with_dense: int
    finalist_epoch: Measure  # lsh: the finalists' mean age when the selection ends
    newcomers_kept: Measure


@dataclass(frozen=True, kw_only=True)
class AnytimePoint(Record):
    """A row of anytime.csv: a replay's incumbent (its final test perplexity) after a candidate-epoch."""

    strategy: str
    n: int
    repeat: int
    candidate_epoch: int
    incumbent_test_ppl: Measure


@dataclass(frozen=True, kw_only=True)
class Variation(Record):
    """A row of sensitivity.csv: the LSH-against-loss comparison under one variation of the study."""

    kind: str
    setting: str
    post_hoc: bool  # chosen after looking at the data
    seeds: int
    lsh_test_ppl: Measure
    loss_test_ppl: Measure
    loss_vs_lsh: Measure  # paired within training seeds
    loss_vs_lsh_low: Measure
    loss_vs_lsh_high: Measure
    sign_p: Measure
    loss_lower_seeds: int
    lsh_candidate_epochs: Measure
    loss_candidate_epochs: Measure


@dataclass(frozen=True, kw_only=True)
class SamplesRow(Record):
    """A row of ls-samples.csv (paper Table 4): a configuration's spectrum from K validation sequences, and its
    differences from the first K's."""

    configuration: str
    samples: int
    max: float
    mean: float
    variance: float
    max_difference: float
    mean_difference: float
    variance_difference: float


LAYOUTS = ("blocks", "sorted")  # lyapunov.LAYOUTS without importing torch (tests/test_config.py holds them equal)


def run_problem(epochs: list[int], statuses: list[str], final: int) -> str | None:
    """What is wrong with one training's recorded epochs (sorted), or None: they are 0..final, or 0..k ending
    at the first of status diverged (training stopped there). A study cell and the table's runs alike."""
    for expected, epoch in enumerate(epochs):
        if epoch != expected:
            return f"has no row for epoch {expected} (its epochs: {', '.join(map(str, epochs))})"
    if "diverged" in statuses:
        k = statuses.index("diverged")
        if k != len(statuses) - 1:
            return f"has rows after epoch {epochs[k]}, at which it diverged (training stops there)"
        return None
    if not epochs or epochs[-1] != final:
        return (f"stops at epoch {epochs[-1] if epochs else 'none'} with status ok: expected epochs 0..{final} "
                "(final_epochs), or up to one of status diverged; was it trained to the end?")
    return None


@dataclass(frozen=True, kw_only=True)
class CellRow(Record):
    """One epoch of a study cell: what any selection strategy could observe of it (no training at epoch 0,
    so no losses there; non-finite values only on a diverged row)."""

    train_loss: Measure | None
    train_ppl: Measure | None
    valid_loss: Measure | None
    valid_ppl: Measure | None
    test_ppl: Measure | None
    status: Literal["ok", "diverged"]
    clipped: int | None  # exponents of the spectrum at the floor (lyapunov.min_exponent)


CELL_FIELDS = tuple(f.name for f in fields(CellRow))


@dataclass(frozen=True, kw_only=True)
class Cell(Record):
    """A study cell's rows.json: one configuration (or the dense reference) trained with one seed, each
    recorded epoch's row and spectrum in both layouts (None: not computed, a diverged model), and the
    run and lyapunov settings it was made with (so a committed cell is reused only by the same study).
    `lsh study cell` fills it epoch by epoch and rewrites it after each."""

    config: str
    seed: int
    rows: dict[str, CellRow]
    spectra: dict[str, dict[str, list[Measure]] | None]
    run: dict | None = None
    lyapunov: dict | None = None

    def validate(self, where: str) -> None:
        if not self.config.strip():
            raise fail(at(where, "config"), "a configuration id (dense, g00.., q000..)", self.config)
        for epoch in self.rows:
            if not epoch.isdigit():
                raise RecordError(f"{at(where, 'rows')}: the key {show(epoch)} is not an epoch number")
            if epoch not in self.spectra:
                raise RecordError(f"{lead(where)}no spectrum for epoch {epoch} (spectra.{epoch}): every recorded epoch "
                                  "has one, null when it could not be computed")
        for epoch, layouts in self.spectra.items():
            if layouts is None:
                continue
            row = self.rows.get(epoch)
            if row is not None and row.status == "ok" and not all(
                    isinstance(x, (int, float)) and math.isfinite(x) for values in layouts.values() for x in values):
                raise RecordError(f"{at(where, 'spectra')}.{epoch}: a non-finite exponent on a row marked ok "
                                  "(a spectrum is finite, or null with its row diverged)")
            if sorted(layouts) != sorted(LAYOUTS):
                raise RecordError(f"{at(where, 'spectra')}.{epoch}: has {', '.join(layouts) or 'no layout'}: "
                                  f"expected the layouts {' and '.join(LAYOUTS)}")
            if len({len(v) for v in layouts.values()}) > 1 or not layouts[LAYOUTS[0]]:
                raise RecordError(f"{at(where, 'spectra')}.{epoch}: has "
                                  f"{' and '.join(f'{len(layouts[n])} {n}' for n in LAYOUTS)} exponents: expected the "
                                  "same number, at least one, in both layouts")

    @property
    def epochs(self) -> list[str]:
        """The recorded epochs' keys, in order."""
        return sorted(self.rows, key=int)

    def problem(self, final_epochs: int) -> str | None:
        """Why the cell is not complete (trained to final_epochs, or to a divergence), or None."""
        return run_problem([int(e) for e in self.epochs], [self.rows[e].status for e in self.epochs], final_epochs)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "seed": self.seed, "run": self.run, "lyapunov": self.lyapunov,
                "rows": {e: r.to_json() for e, r in self.rows.items()}, "spectra": self.spectra}


@dataclass(frozen=True, kw_only=True)
class RankingRow(Record):
    """One candidate's line of a round's ranking.csv (non-finite scores rank a diverged candidate last)."""

    round: int
    rank: int
    candidate: str
    slot: int
    init: str
    death: str
    growth: str
    redistribution: str
    death_rate: float
    epoch: int
    distance: Measure  # every ranker's score (lower is better), whichever ranked: the report shows what each keeps
    loss_gap: Measure
    loss: Measure
    tse: Measure
    valid_ppl: Measure
    score: Measure
    status: Literal["ok", "diverged", "empty"]
    kept: bool

    def validate(self, where: str) -> None:
        check_config(self.config, where)

    @property
    def config(self) -> dict:
        return {k: getattr(self, k) for k in CONFIG_KEYS}


RANKING_COLUMNS = tuple(f.name for f in fields(RankingRow))


@dataclass(frozen=True)
class HistoryPoint(Record):
    config: Config
    score: float


@dataclass(frozen=True)
class Proposal(Record):
    candidate: str
    config: Config
    source: Literal["tpe", "atpe", "rand", "grid", "fallback"]


@dataclass(frozen=True, kw_only=True)
class Proposals(Record):
    """proposals.json: the history a round's proposer learnt from and the candidates it proposed."""

    round: int
    proposer: str
    history_mode: str
    history: list[HistoryPoint]
    proposals: list[Proposal]


@dataclass(frozen=True, kw_only=True)
class DistancePoint(Record):
    round: int
    epoch: int
    distance: float | None
    valid_ppl: float | None
    rank: int


@dataclass(frozen=True, kw_only=True)
class Finalist(Record):
    candidate: str
    config: Config
    status: Literal["ok", "diverged", "empty"]
    valid_ppl: float | None
    test_ppl: float | None


@dataclass(frozen=True, kw_only=True)
class Diverged(Record):
    candidate: str
    where: str
    epoch: int
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class RoundBudget(Record):
    round: int
    pool: int
    planned_candidate_epochs: int
    spent_candidate_epochs: int


@dataclass(frozen=True, kw_only=True)
class Budget(Record):
    planned_selection_candidate_epochs: int
    candidate_epochs: dict[str, int]
    total_candidate_epochs: int
    wall_seconds: dict[str, float]
    total_wall_seconds: float
    rounds: list[RoundBudget]


@dataclass(frozen=True, kw_only=True)
class Selection(Record):
    """selected.json: the selected candidate (None when none finished), the finalists, the budget."""

    status: str
    mode: str
    ranker: str
    proposer: str
    density: float
    candidate: str | None
    config: Config | None
    valid_ppl: float | None
    test_ppl: float | None
    best_epoch: int | None
    distance_history: list[DistancePoint]
    finalists: list[Finalist]
    diverged: list[Diverged]
    budget: Budget
    age: Literal["own", "common"] = "own"  # the epoch the rounds scored each candidate at (search.age)


# -----------------------------------------------------------------------------
# Readers and writers


def load(data: Any, cls: type[R], path: str | os.PathLike) -> R:
    """`data` (read from `path`) as a `cls` record; what does not fit is an error naming the file."""
    try:
        return cls.from_json(data)  # type: ignore[attr-defined]
    except RecordError as e:
        raise LshError(f"{path}: {e} (a {cls.__name__} record: the file is not one lsh wrote, or was edited; "
                       "rerun the stage that makes it)") from None


def read(path: str | os.PathLike, cls: type[R]) -> R:
    """A JSON file as its record."""
    return load(files.read_json(path), cls, path)


def read_if(path: str | os.PathLike, cls: type[R]) -> R | None:
    """A JSON file as its record, or None when it does not exist (yet)."""
    data = files.read_json_if(path)
    return None if data is None else load(data, cls, path)


def read_lines(path: str | os.PathLike, cls: type[R]) -> list[R]:
    """A JSON-lines file, one record per line."""
    return [load(line, cls, f"{path} line {i}") for i, line in enumerate(files.read_jsonl(path), 1)]


def read_cell(path: str | os.PathLike, final_epochs: int | None = None) -> Cell:
    """A study cell's rows.json; with `final_epochs`, also complete: epochs 0..final_epochs, or up to a
    diverged one."""
    if not Path(path).is_file():
        raise LshError(f"{path} does not exist: train the cell first (lsh study cell, or snakemake study_table)")
    cell = read(path, Cell)
    if final_epochs is not None and (problem := cell.problem(final_epochs)):
        raise LshError(f"{path}: the cell ({cell.config}, seed {cell.seed}) {problem}")
    return cell


def write(path: str | os.PathLike, record: Record) -> Path:
    return files.write_json(path, record.to_json())


def write_lines(path: str | os.PathLike, records: list) -> Path:
    """Rewritten whole, atomically: never half a line."""
    import json

    return files.write_text(path, "".join(json.dumps(r.to_json() if isinstance(r, Record) else r) + "\n"
                                          for r in records))
