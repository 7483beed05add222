"""Every file the stages exchange has one record type and one reader: a truncated, empty, wrong-typed or
foreign file is one error naming the file, the field and what was expected; a good one reads back to
the record it was written from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lsh import csv_records, records
from lsh.errors import LshError
from lsh.records import (
    Cell,
    Environment,
    Epoch,
    Pool,
    Proposals,
    RankingRow,
    Selection,
    Spectra,
    SpectraCache,
    Summary,
)

REPO = Path(__file__).resolve().parents[1]

CONFIG = {"init": "ER", "death": "SET", "growth": "random", "redistribution": "none", "death_rate": 0.8}
SPECTRUM = {"exponents": [-0.1, -0.5], "layouts": {"blocks": [-0.1, -0.5], "sorted": [-0.1, -0.5]}, "clipped": 0,
            "status": "ok", "seconds": 0.01}
GOOD = {
    Pool: {"round": 1, "slots": [{"slot": 0, "candidate": "c000", "config": CONFIG, "parent": "x/epoch-001.pt",
                                  "epochs_before": 1, "epochs_after": 2}, None],
           "tried": [{"candidate": "c000", "config": CONFIG}], "next_id": 1},
    Summary: {"status": "ok", "epochs": 2, "target_epochs": 2, "valid_ppl": 500.0, "best_epoch": 2,
              "best_valid_ppl": 500.0, "seconds": 1.5, "epochs_trained": 1, "candidate": "c000", "config": CONFIG},
    Spectra: {"round": 0, "slot": 0, "candidate": "c000", "spectra": {"0": SPECTRUM, "1": SPECTRUM}, "seconds": 0.02,
              "status": "ok"},
    Proposals: {"round": 0, "proposer": "tpe", "history_mode": "survivors",
                "history": [{"config": CONFIG, "score": 2.5}],
                "proposals": [{"candidate": "c004", "config": {**CONFIG, "death_rate": 0.5}, "source": "tpe"}]},
    Selection: {"status": "ok", "mode": "lsh", "ranker": "ls", "proposer": "tpe", "density": 0.33,
                "candidate": "c000", "config": CONFIG, "valid_ppl": 400.0, "test_ppl": 380.0, "best_epoch": 3,
                "distance_history": [{"round": 0, "epoch": 1, "distance": 2.5, "valid_ppl": 900.0, "rank": 1}],
                "finalists": [{"candidate": "c000", "config": CONFIG, "status": "ok", "valid_ppl": 400.0,
                               "test_ppl": 380.0}],
                "diverged": [],
                "budget": {"planned_selection_candidate_epochs": 10, "candidate_epochs": {"selection": 10, "final": 3},
                           "total_candidate_epochs": 13, "wall_seconds": {"final_training": 7.5},
                           "total_wall_seconds": 7.5,
                           "rounds": [{"round": 0, "pool": 6, "planned_candidate_epochs": 6,
                                       "spent_candidate_epochs": 6}]}},
}
GOOD[SpectraCache] = {"key": "0123456789abcdef", "spectra": {"1": {**SPECTRUM, "mtime_ns": 1765000000000000000}}}
GOOD[Environment] = {"numerics": "native", "cpu_capability": "AVX512", "cpu": "Intel(R) Xeon(R) Processor",
                     "vendor": "GenuineIntel", "machine": "x86_64", "caps": {}, "onednn": True, "python": "3.11.7",
                     "lsh": "0.1.0", "versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6", "snakemake": None}}
CELL_ROW = {"train_loss": 6.6, "train_ppl": 735.1, "valid_loss": 6.5, "valid_ppl": 665.1, "test_ppl": 640.2,
            "status": "ok", "clipped": 0}
GOOD[Cell] = {"config": "g03", "seed": 1111, "run": {"seed": 1111}, "lyapunov": {"steps": 35},
              "rows": {"0": {**CELL_ROW, "train_loss": None, "train_ppl": None, "valid_loss": None, "valid_ppl": None},
                       "1": CELL_ROW, "2": {**CELL_ROW, "valid_loss": math.inf, "status": "diverged"}},
              "spectra": {"0": {"blocks": [-0.1, -0.5], "sorted": [-0.1, -0.5]},
                          "1": {"blocks": [-0.2, -0.4], "sorted": [-0.2, -0.4]}, "2": None}}
EPOCH = {"epoch": 1, "train_loss": 7.5, "train_ppl": 1800.0, "valid_loss": 7.0, "valid_ppl": 1100.0, "averaging": False,
         "lr": 20, "tokens_per_s": 11000.0, "status": "ok", "seconds": 1.9, "nonzeros": 100, "pruned": 10,
         "regrown": 10, "death_rate": 0.4}


@pytest.mark.parametrize("cls", list(GOOD), ids=lambda c: c.__name__)
def test_a_good_file_reads_back_to_the_record_it_was_written_from(tmp_path: Path, cls):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(GOOD[cls]))
    record = records.read(path, cls)
    records.write(tmp_path / "g.json", record)
    assert records.read(tmp_path / "g.json", cls) == record


def test_the_environment_record_holds_what_numerics_records_and_writes_the_same_keys():
    """environment.json is lsh.numerics.record() through the Environment record: a key numerics adds and the
    record lacks would be refused as unknown here, and a GPU's entry appears only when there is one."""
    from lsh import numerics

    current = numerics.current()
    assert Environment.from_json(current).to_json() == current
    with_gpu = {**GOOD[Environment], "cuda": {"device": "NVIDIA H100", "cuda": "12.8", "cudnn": 91000}}
    assert Environment.from_json(with_gpu).to_json() == with_gpu
    older = {k: v for k, v in GOOD[Environment].items() if k not in ("vendor", "onednn")}  # before they were kept
    assert Environment.from_json(older).vendor is None


def _broken(cls) -> dict[str, tuple[str, str]]:
    """name -> (file text, what the error must say)."""
    good = json.dumps(GOOD[cls])
    first = next(iter(GOOD[cls]))
    wrong = {**GOOD[cls], first: {"a": "dict"}}
    return {
        "truncated": (good[: len(good) // 2], "is not valid JSON"),
        "empty": ("", "is not valid JSON (the file is empty)"),
        "wrong-typed": (json.dumps(wrong), f"{first}: expected"),
        "foreign": (json.dumps({"hello": "world"}), "unknown field 'hello'"),
        "a list": ("[1, 2]", "expected an object"),
    }


@pytest.mark.parametrize("cls", list(GOOD), ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", ["truncated", "empty", "wrong-typed", "foreign", "a list"])
def test_a_broken_file_is_one_error_naming_the_file_and_the_field(tmp_path: Path, cls, case: str):
    text, said = _broken(cls)[case]
    path = tmp_path / f"{cls.__name__}.json"
    path.write_text(text)
    with pytest.raises(LshError) as error:
        records.read(path, cls)
    assert str(path) in str(error.value) and said in str(error.value), str(error.value)
    assert len(str(error.value)) < 600


@pytest.mark.parametrize("change, said", [
    ({"death_rate": 5.0}, "config.death_rate: expected a number between 0 and 1, found 5.0"),
    ({"init": "random"}, "config.init: expected one of uniform, ER, jacobian, found 'random'"),
    ({"colour": "red"}, "has the unknown key 'colour'"),
])
def test_a_pool_entry_with_a_configuration_outside_the_schema_is_refused(tmp_path: Path, change: dict, said: str):
    pool = json.loads(json.dumps(GOOD[Pool]))
    pool["slots"][0]["config"].update(change)
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool))
    with pytest.raises(LshError, match=said.replace("(", r"\(").replace(")", r"\)")):
        records.read(path, Pool)


def test_a_configuration_missing_a_key_names_it(tmp_path: Path):
    pool = json.loads(json.dumps(GOOD[Pool]))
    del pool["slots"][0]["config"]["growth"]
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    with pytest.raises(LshError, match="slots\\[0\\].config: a configuration lacks growth"):
        records.read(tmp_path / "pool.json", Pool)


def test_a_slot_the_pool_does_not_have_is_named():
    pool = Pool.from_json(GOOD[Pool])
    assert pool.entry(1) is None  # an empty slot
    with pytest.raises(LshError, match="--slot 99: the pool of round 1 has slots 0 to 1"):
        pool.entry(99)


def test_metrics_lines_read_one_record_each_and_a_broken_line_is_named(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(EPOCH) + "\n" + json.dumps({**EPOCH, "epoch": 2}) + "\n")
    assert [e.epoch for e in records.read_lines(path, Epoch)] == [1, 2]
    path.write_text(json.dumps(EPOCH) + "\n" + json.dumps(EPOCH)[:30] + "\n")
    with pytest.raises(LshError, match="metrics.jsonl line 2 is not valid JSON"):
        records.read_lines(path, Epoch)
    path.write_text(json.dumps({**EPOCH, "valid_ppl": "high"}) + "\n")
    with pytest.raises(LshError, match="metrics.jsonl line 1: valid_ppl: expected a finite number or null|"
                                       "metrics.jsonl line 1: valid_ppl: expected a number"):
        records.read_lines(path, Epoch)


ROW = dict(round=0, rank=1, candidate="c000", slot=0, **CONFIG, epoch=1, distance=2.5, loss_gap=math.inf,
           loss=7.003, tse=7.1, valid_ppl=1100.0, score=2.5, status="ok", kept=True)


def test_a_ranking_reads_back_exactly_with_its_infinities_and_a_non_numeric_cell_is_named(tmp_path: Path):
    path = tmp_path / "ranking.csv"
    rows = [RankingRow(**ROW), RankingRow(**{**ROW, "rank": 2, "candidate": "c001", "slot": 1, "distance": math.inf,
                                              "valid_ppl": math.inf, "score": math.inf, "status": "diverged",
                                              "kept": False})]
    csv_records.write_rows(path, rows, RankingRow)
    assert csv_records.read_rows(path, RankingRow) == rows
    text = path.read_text().replace("2.5,inf", "far,inf", 1)
    path.write_text(text)
    with pytest.raises(LshError, match="ranking.csv: line 2.distance: expected a number, found 'far'"):
        csv_records.read_rows(path, RankingRow)
    path.write_text("round,rank\n0,1\n")
    with pytest.raises(LshError, match="ranking.csv lacks the column 'candidate'"):
        csv_records.read_rows(path, RankingRow)
    path.write_text(text.splitlines()[0] + "\n0,1,c000\n")
    with pytest.raises(LshError, match="ranking.csv: line 2: expected 18 values"):
        csv_records.read_rows(path, RankingRow)


@pytest.mark.parametrize("what", ["a directory", "a FIFO", "a link loop", "missing"])
def test_a_path_that_is_no_file_says_what_it_is(tmp_path: Path, what: str):
    import os

    path = tmp_path / "summary.json"
    if what == "a directory":
        path.mkdir()
    elif what == "a FIFO":
        os.mkfifo(path)
    elif what == "a link loop":
        path.symlink_to(path)
    said = {"a directory": "is a directory", "a FIFO": "is a FIFO", "a link loop": "symbolic link loop",
            "missing": "does not exist"}[what]
    with pytest.raises(LshError, match=said):
        records.read(path, Summary)



def test_every_committed_study_cell_reads_as_its_record_and_writes_back_byte_for_byte(tmp_path: Path):
    """The cells committed under docs/results/study/cells were written before the record existed: the
    record must read each of them and write the very same bytes (a grown table stays one format)."""
    cells = sorted((REPO / "docs" / "results" / "study" / "cells").glob("*/*/rows.json"))
    assert cells, "no committed cell"
    for path in cells:
        cell = records.read_cell(path)
        records.write(tmp_path / "rows.json", cell)
        assert (tmp_path / "rows.json").read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize("change, said", [
    (lambda c: c["rows"].pop("1"), "has no row for epoch 1 (its epochs: 0, 2)"),
    (lambda c: c["rows"]["2"].update(status="ok", valid_loss=1.0),
     "stops at epoch 2 with status ok: expected epochs 0..3"),
    (lambda c: c["rows"].update({"3": CELL_ROW}) or c["spectra"].update({"3": None}),
     "has rows after epoch 2, at which it diverged"),
])
def test_an_incomplete_cell_is_refused_naming_what_is_missing(tmp_path: Path, change, said: str):
    cell = json.loads(json.dumps(GOOD[Cell]))
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(cell))
    assert records.read_cell(path, 3).config == "g03"  # diverged at epoch 2: complete
    change(cell)
    path.write_text(json.dumps(cell))
    records.read_cell(path)  # well-formed: only incomplete
    with pytest.raises(LshError) as error:
        records.read_cell(path, 3)
    assert f"{path}: the cell (g03, seed 1111) {said}" in str(error.value), str(error.value)


@pytest.mark.parametrize("change, said", [
    (lambda c: c["spectra"].pop("1"), "no spectrum for epoch 1 (spectra.1)"),
    (lambda c: c["spectra"]["1"].pop("sorted"), "spectra.1: has blocks: expected the layouts blocks and sorted"),
    (lambda c: c["spectra"]["1"]["sorted"].pop(), "spectra.1: has 2 blocks and 1 sorted exponents"),
    (lambda c: c["rows"].update({"x": CELL_ROW}), "rows: the key 'x' is not an epoch number"),
    (lambda c: c.update(config=" "), "config: expected a configuration id"),
])
def test_a_cell_whose_spectra_do_not_match_its_rows_is_refused(tmp_path: Path, change, said: str):
    cell = json.loads(json.dumps(GOOD[Cell]))
    change(cell)
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(cell))
    with pytest.raises(LshError) as error:
        records.read_cell(path)
    assert str(path) in str(error.value) and said in str(error.value), str(error.value)


def test_a_cell_not_trained_yet_says_how_to_train_it(tmp_path: Path):
    with pytest.raises(LshError, match="rows.json does not exist: train the cell first"):
        records.read_cell(tmp_path / "rows.json")
