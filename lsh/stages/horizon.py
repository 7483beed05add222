"""The horizon comparison's job (`lsh study horizon`): this study's table and the shorter study's table of
the same configurations (study.shorter), compared as the pre-registration of the horizon study says
(lsh/study/horizon.py); writes HORIZON_REPORT_FILES to one folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from lsh import files, records
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import CELL_ROWS, ENVIRONMENT, HORIZON_REPORT
from lsh.records import Environment
from lsh.report import horizon as words
from lsh.search.ranking import method_name
from lsh.study.horizon import (
    first_epochs,
    horizon_change,
    horizon_methods,
    horizon_replays,
    horizon_signals,
    shorter_subset,
    signal_gaps,
)
from lsh.study.signals import ls_signal_name
from lsh.study.table import Table, load_table

log = logging.getLogger("lsh.stages")


def cell_machines(cells: list[Path]) -> pd.DataFrame:
    """The CPU each of this study's cells trained on, from the environment.json beside its rows.json
    ("not recorded" for a cell without one)."""
    rows = []
    for path in cells:
        folder = Path(path).parent
        if not re.fullmatch(r"s\d+", folder.name):
            raise LshError(f"--cells {path}: not a cell's rows.json (<config>/s<K>/{CELL_ROWS})")
        record = records.read_if(folder / ENVIRONMENT, Environment)
        cpu, numerics = (record.cpu, record.numerics) if record else ("not recorded", "not recorded")
        rows.append({"config": folder.parent.name, "seed_index": int(folder.name[1:]), "cpu": cpu,
                     "numerics": numerics})
    return pd.DataFrame(rows)


def write_horizon(params: Params, table_dir: Path, shorter_dir: Path, out: Path, cells: list[Path] = ()) -> dict:
    """The comparison of this study's table (`table_dir`, trained to final.epochs) with the shorter study's
    (`shorter_dir`), in `out`; `cells`, this table's cells' rows.json, name the machines they trained on.
    Returns the headline numbers: each horizon's signal gap and method gap at e0."""
    longer = load_table(params, table_dir)
    shorter = shorter_subset(longer, Table.load(shorter_dir))
    epochs = list(range(1, params.search.e0 + params.search.ei + 1))
    ls = ls_signal_name(params.search.embedding, params.search.distance, params.lyapunov.layout, params.search.pca_fit)
    log.info("the signals at epochs %s against epoch %d's and epoch %d's outcome", epochs, shorter.final_epochs,
             longer.final_epochs)
    signals = horizon_signals([shorter, longer], params, epochs)
    gaps, change = signal_gaps(signals, ls), horizon_change(signals, ls)
    log.info("replaying LSH and the loss-ranked search %d times on each table", params.study.repeats)
    methods = horizon_methods({t.final_epochs: horizon_replays(t, params) for t in (shorter, longer)}, params)
    epoch_rows = first_epochs(longer, shorter)
    machines = cell_machines(list(cells))
    files.write_text(out / HORIZON_REPORT["horizon_signals_csv"], signals.to_csv(index=False))
    files.write_text(out / HORIZON_REPORT["horizon_gaps_csv"], gaps.to_csv(index=False))
    files.write_text(out / HORIZON_REPORT["horizon_change_csv"], change.to_csv(index=False))
    files.write_text(out / HORIZON_REPORT["horizon_methods_csv"], methods.to_csv(index=False))
    files.write_text(out / HORIZON_REPORT["first_epochs_csv"], epoch_rows.to_csv(index=False))
    _plot(signals, gaps, ls, out / HORIZON_REPORT["horizon_png"])
    files.write_text(out / HORIZON_REPORT["horizon_md"],
                     words.horizon_markdown(params, signals, gaps, change, methods, epoch_rows, machines, ls,
                                            (shorter.final_epochs, longer.final_epochs),
                                            (shorter.meta.get("decay_epochs"), longer.meta.get("decay_epochs"))))
    headline = gaps[gaps["epoch"] == params.search.e0].set_index("horizon")["gap"].to_dict()
    loss = methods[methods["strategy"] == method_name("loss", params.search.proposer)]
    loss = loss.set_index("horizon")["vs_reference"].to_dict()
    return {"signal_gap": headline, "loss_vs_lsh": loss}


def _plot(signals: pd.DataFrame, gaps: pd.DataFrame, ls: str, path: Path) -> None:
    from lsh.study.figures import plot_horizon

    # the validation perplexity ranks as the loss gap within a seed (the dense loss is the seed's constant)
    plot_horizon(signals, gaps, {ls: "LS distance", "loss_gap": "validation-loss gap"}, path)
