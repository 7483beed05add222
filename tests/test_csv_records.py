"""lsh/csv_records.py: the study's large CSV files through their records, checked column by column."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from lsh import csv_records
from lsh.errors import LshError
from lsh.records import AnytimePoint, Replay, Variation


def replay(**changes: object) -> Replay:
    fields = dict(group="methods", strategy="LSH-tpe", kind="lsh", n=6, e0=2, ei=2, repeat=0, seed=1111,
                  config="g21", test_ppl=153.25, valid_ppl=188.5, regret=0.0, candidate_epochs=24, selects_best=True,
                  dense_epochs=4, candidate_epochs_with_dense=28, finalist_epoch=4.5, newcomers_kept=math.nan)
    return Replay(**{**fields, **changes})


def test_a_frame_of_records_reads_back_with_its_types_and_its_blanks(tmp_path: Path):
    rows = [replay(), replay(repeat=1, config=None, test_ppl=math.inf, selects_best=False, newcomers_kept=0.5)]
    path = tmp_path / "replays.csv"
    csv_records.write_frame(path, csv_records.frame(rows, Replay), Replay)
    back = csv_records.read_frame(path, Replay)
    assert list(back.columns) == list(csv_records.columns(Replay))
    assert back["n"].dtype == "int64" and back["selects_best"].tolist() == [True, False]
    assert back["config"].tolist() == ["g21", None] and back["test_ppl"].tolist() == [153.25, math.inf]
    assert back["newcomers_kept"].isna().tolist() == [True, False]
    assert Replay(**back.to_dict("records")[1]) == rows[1]  # every value exactly (row 0 holds a NaN, unequal to itself)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop(columns="regret"), "lacks the column 'regret'"),
    (lambda f: f.assign(extra=1), "has the columns .*extra, not group"),
    (lambda f: f.assign(n=[6, 6.5]), "line 3: column n is 6.5: expected a whole number"),
    (lambda f: f.assign(seed=[1111, None]), "line 3: column seed is blank: expected a whole number"),
    (lambda f: f.assign(repeat=[0, float("inf")]), "line 3: column repeat is inf: expected a whole number"),
    (lambda f: f.assign(test_ppl=["x", 1.0]), "line 2: column test_ppl is 'x': expected a number"),
    (lambda f: f.assign(selects_best=["yes", "True"]), "line 2: column selects_best is 'yes': expected True or False"),
    (lambda f: f.assign(strategy=[None, "LSH-tpe"]), "line 2: column strategy is blank: expected text"),
])
def test_a_file_of_other_columns_or_a_cell_of_another_type_is_one_line_naming_it(tmp_path: Path, edit, message):
    path = tmp_path / "replays.csv"
    edit(csv_records.frame([replay(), replay(repeat=1)], Replay)).to_csv(path, index=False)
    with pytest.raises(LshError, match=message):
        csv_records.read_frame(path, Replay)


def test_a_writer_that_builds_another_frame_is_stopped_before_the_file_is_written(tmp_path: Path):
    path = tmp_path / "anytime.csv"
    wrong = pd.DataFrame([{"strategy": "LSH-tpe", "n": 6, "repeat": 0, "candidate_epoch": 1}])
    with pytest.raises(LshError, match="lacks the column 'incumbent_test_ppl'"):
        csv_records.write_frame(path, wrong, AnytimePoint)
    assert not path.exists()


def test_an_empty_list_of_records_is_a_frame_with_the_records_columns(tmp_path: Path):
    path = tmp_path / "sensitivity.csv"
    csv_records.write_frame(path, csv_records.frame([], Variation), Variation)
    assert path.read_text().strip() == ",".join(csv_records.columns(Variation))
    assert len(csv_records.read_frame(path, Variation)) == 0


def test_text_that_reads_like_a_missing_value_stays_text_and_an_optional_field_may_be_blank(tmp_path: Path):
    """Only an empty cell is blank: a configuration id "NA" or "None" is text. Every kind of optional field
    (text, number, flag) reads a blank as None or NaN, and a flag reads back as True or False."""
    from dataclasses import dataclass

    from lsh.records import Record

    @dataclass(frozen=True, kw_only=True)
    class Row(Record):
        name: str
        note: str | None
        count: int | None
        best: bool | None

    path = tmp_path / "rows.csv"
    rows = [Row(name="NA", note="None", count=3, best=True), Row(name="n/a", note=None, count=None, best=None)]
    csv_records.write_frame(path, csv_records.frame(rows, Row), Row)
    back = csv_records.read_frame(path, Row)
    assert back["name"].tolist() == ["NA", "n/a"] and back["note"].tolist() == ["None", None]
    assert back["count"].iloc[0] == 3 and math.isnan(back["count"].iloc[1])
    assert back["best"].tolist() == [True, None]
