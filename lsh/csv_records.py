"""CSV files the jobs exchange, each read and written through the record (a dataclass of lsh/records.py)
whose fields are its columns: one definition of the columns, their order and their types.

    read_rows(path, RankingRow)     a small file, a record per row (a round's ranking)
    write_rows(path, rows, cls)
    read_frame(path, Replay)        a large one as a pandas frame, checked column by column
    write_frame(path, frame, cls)   (the study's replays, anytime curves, sensitivity, samples)

A file whose header is not the record's fields, or a cell that is not of its field's type, is one
error naming the file, the line and the column: never a traceback or a silently wrong number.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import types
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

from lsh import files
from lsh.errors import LshError
from lsh.typecheck import Measure, RecordError, build, fail, hints

R = TypeVar("R")
REMAKE = "rerun the stage that makes it"


def _from_text(text: str, hint: Any, where: str) -> Any:
    """A CSV cell as the value the field's type wants (empty: None, or NaN for a Measure)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if text == "" and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if origin is Literal or hint is str:
        return text
    if hint is bool:
        if text not in ("True", "False"):
            raise fail(where, "True or False", text)
        return text == "True"
    try:
        if hint is int:
            return int(text)
        if hint is Measure:
            return math.nan if text == "" else float(text)
        if hint is float:
            return float(text)
    except ValueError:
        raise fail(where, "a number", text) from None
    return text


def read_rows(path: str | os.PathLike, cls: type[R]) -> list[R]:
    """A CSV file whose header is the record's fields, one record per row."""
    text = files.read_text(path, "run the stage that makes it first")
    reader = csv.DictReader(io.StringIO(text))
    names = columns(cls)
    header = reader.fieldnames or []
    missing = [c for c in names if c not in header]
    if missing or len(header) != len(names):
        what = f"lacks the column {missing[0]!r}" if missing else f"has other columns than {', '.join(names)}"
        raise LshError(f"{path} {what}: it is not a file lsh wrote, or was edited; rerun the stage that makes it")
    types_of = hints(cls)
    out = []
    for number, row in enumerate(reader, 2):
        where = f"line {number}"
        try:
            if None in row or any(v is None for v in row.values()):
                raise RecordError(f"{where}: expected {len(names)} values")
            values = {c: _from_text(row[c], types_of[c], f"{where}.{c}") for c in names}
            out.append(build(cls, values, where))
        except RecordError as e:
            raise LshError(f"{path}: {e}: the file is truncated, edited or not one lsh wrote; rerun the stage that "
                           "makes it") from None
    return out


def write_rows(path: str | os.PathLike, rows: list, cls: type) -> Path:
    """Records (or dicts with the record's fields) as CSV with the record's header."""
    names = columns(cls)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = asdict(row) if dataclasses.is_dataclass(row) else row
        writer.writerow({c: _to_text(values[c]) for c in names})
    return files.write_text(path, buffer.getvalue())


def _to_text(value: Any) -> str:
    """A CSV cell: floats as the shortest text that reads back exactly, NaN and None empty (numpy scalars too)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


# -----------------------------------------------------------------------------
# Large files as frames: the same record, its columns checked at once


def columns(cls: type) -> tuple[str, ...]:
    """The CSV header of a record: its fields, in order."""
    return tuple(f.name for f in fields(cls))


def check_frame(table: Any, cls: type, where: str | os.PathLike) -> Any:
    """`table` (a pandas frame) with exactly the record's columns, each of its field's type: whole numbers
    (never blank) for int, numbers for float (blank only for a Measure or an optional field), True/False for
    bool, text (one of the allowed values for a Literal) for str. Returns a typed copy; a wrong cell is an
    LshError naming it."""
    import pandas as pd

    wanted = columns(cls)
    if tuple(table.columns) != wanted:
        missing = [c for c in wanted if c not in table.columns]
        what = (f"lacks the column {missing[0]!r}" if missing
                else f"has the columns {', '.join(map(str, table.columns))}, not {', '.join(wanted)}")
        raise LshError(f"{where} {what}: it is not a file lsh wrote, or was edited; {REMAKE}")
    table = table.reset_index(drop=True).copy()
    for name, hint in hints(cls).items():
        optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
        if optional:
            hint = next(a for a in get_args(hint) if a is not type(None))
        table[name] = _column(table[name], hint, optional, f"{where}", name, pd)
    return table


def _column(values: Any, hint: Any, optional: bool, where: str, name: str, pd: Any) -> Any:
    def bad(i: int, expected: str) -> LshError:
        value = values.iat[i]
        said = "blank" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)
        return LshError(f"{where} line {i + 2}: column {name} is {said}: expected {expected}; {REMAKE}")

    blank = values.isna().to_numpy()
    if hint is bool:
        text = values.astype(str)
        wrong = np.flatnonzero(~text.isin(["True", "False"]).to_numpy() & ~(blank & optional))
        if wrong.size:
            raise bad(int(wrong[0]), "True or False")
        return text.eq("True") if not blank.any() else text.eq("True").astype(object).where(~blank, None)
    if hint in (int, float, Measure):
        numbers = (pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values)
                   else values * np.nan).astype(float)
        blank_ok = hint is Measure or optional
        wrong = np.flatnonzero((blank & (not blank_ok)) | (~blank & numbers.isna().to_numpy()))
        if hint is int:  # whole and finite
            given = numbers.to_numpy()
            whole = np.isfinite(given) & (given == np.round(np.nan_to_num(given)))
            wrong = np.union1d(wrong, np.flatnonzero(~blank & ~whole))
        if hint is float and not blank_ok:
            wrong = np.union1d(wrong, np.flatnonzero(~np.isfinite(numbers.to_numpy()) & ~blank))
        if wrong.size:
            raise bad(int(wrong[0]), "a whole number" if hint is int else "a number")
        return numbers.astype("int64") if hint is int and not blank.any() else numbers
    allowed = get_args(hint) if get_origin(hint) is Literal else None
    text = values.astype(object).where(~blank, None)
    wrong = np.flatnonzero(blank & (not optional))
    if allowed is not None:
        wrong = np.union1d(wrong, np.flatnonzero(~blank & ~values.isin(allowed).to_numpy()))
    if wrong.size:
        expected = f"one of {', '.join(map(str, allowed))}" if allowed is not None else "text"
        raise bad(int(wrong[0]), expected)
    return text


def frame(records: list, cls: type) -> Any:
    """Records of `cls` as a pandas frame with the record's columns (an empty list too)."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in records], columns=list(columns(cls)))


def read_frame(path: str | os.PathLike, cls: type) -> Any:
    """A large CSV file of `cls` records as a typed pandas frame (check_frame)."""
    import pandas as pd

    text = files.read_text(path, f"{REMAKE} first")
    if not text.strip():
        raise LshError(f"{path} is empty: it is truncated or not a file lsh wrote; {REMAKE}")
    text_columns = {name: "str" for name, hint in hints(cls).items() if str in (hint, *get_args(hint))
                    or get_origin(hint) is Literal}
    try:  # only an empty cell is blank: a text "NA" or "None" is text (NaN and None are written empty)
        table = pd.read_csv(io.StringIO(text), dtype=text_columns, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise LshError(f"{path} is not a CSV table lsh wrote ({str(e).splitlines()[0]}); {REMAKE}") from None
    return check_frame(table, cls, path)


def write_frame(path: str | os.PathLike, table: Any, cls: type) -> Path:
    """A frame of `cls` records as CSV, atomically; its columns checked first (a writer's slip is caught here,
    not by the next job)."""
    return files.write_text(path, check_frame(table, cls, path).to_csv(index=False))
