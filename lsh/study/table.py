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
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lsh.config import DeathRateRange, SpaceConfig
from lsh.errors import LshError
from lsh.layout import TABLE_FILES
from lsh.search.space import CONFIG_KEYS, config_key
from lsh.study.cells import DENSE

COLUMNS = ("config", *CONFIG_KEYS, "seed", "epoch", "train_loss", "train_ppl", "valid_loss", "valid_ppl", "test_ppl",
           "status", "clipped")
LAYOUTS = ("blocks", "sorted")


@dataclass
class Table:
    """A loaded table: its rows, and the spectra of each row in both layouts."""

    rows: pd.DataFrame
    spectra: dict[str, np.ndarray]  # layout -> [rows, exponents]
    meta: dict

    @classmethod
    def load(cls, folder: str | Path) -> "Table":
        folder = Path(folder)
        for name in TABLE_FILES:
            if not (folder / name).is_file():
                raise LshError(f"{folder / name} does not exist: build the table first (snakemake study_table)")
        rows = pd.read_csv(folder / "table.csv")  # pandas 3 parses floats round-trip exactly: what a live run reads
        with np.load(folder / "spectra.npz") as arrays:
            spectra = {layout: arrays[layout] for layout in LAYOUTS}
        table = cls(rows, spectra, json.loads((folder / "table.json").read_text()))
        table.index()
        return table

    def index(self) -> None:
        """Lookups by (config, seed, epoch) -> row number, and configuration -> id."""
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

    def replay_space(self, space: SpaceConfig) -> SpaceConfig:
        """The space the proposers search in a replay: the table's configurations only (a grid table fixes
        the death rate at the grid's)."""
        if self.meta["space"] != "grid":
            return space
        rate = space.grid_death_rate
        return dataclasses.replace(space, death_rate=DeathRateRange(rate, rate, space.death_rate.q))
