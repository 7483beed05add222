"""Checking a JSON value against a dataclass's type hints: what lets every record (lsh.records, and a
checkpoint's run spec) be read back as what it was written as, or refused with one line naming the
field and what was expected, never a traceback or a silently wrong number further on."""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import fields
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from lsh.errors import LshError

R = TypeVar("R")


class RecordError(LshError):
    """A value that does not fit its record: `field` names where, the message what was expected."""


def show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Measure(float):
    """Marks a float field that may be infinite or NaN (a diverged candidate's distance in a CSV)."""


def at(where: str, name: str) -> str:
    """A field's place below `where` (the top of the file when `where` is empty)."""
    return f"{where}.{name}" if where else name


def lead(where: str) -> str:
    return f"{where}: " if where else ""


def fail(where: str, expected: str, value: Any) -> RecordError:
    return RecordError(f"{lead(where)}expected {expected}, found {show(value)}")


def _check_annotated(value: Any, args: tuple, where: str) -> Any:
    """Annotated[T, check, ...]: the value as T, then each callable's own check (a range, a pattern)."""
    value = check(value, args[0], where)
    for extra in args[1:]:
        if callable(extra):
            extra(value, where)
    return value


def _check_union(value: Any, args: tuple, where: str) -> Any:
    """The first option the value fits; one option's own message when there is only one to name."""
    if value is None and type(None) in args:
        return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return check(value, option, where)
        except RecordError as e:
            errors.append(e)
    raise errors[0] if len(errors) == 1 else fail(where, " or ".join(_name(a) for a in args), value)


def _check_scalar(value: Any, hint: type, where: str) -> Any:
    """bool, int, float (finite unless a Measure) or str; JSON's true is not a number here."""
    if hint is bool:
        if not isinstance(value, bool):
            raise fail(where, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, "a whole number", value)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise fail(where, "text", value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, "a number", value)
    if hint is float and not math.isfinite(value):
        raise fail(where, "a finite number", value)
    return float(value)


def _check_dict(value: Any, args: tuple, where: str) -> dict:
    """A JSON object; for dict[K, V] each key and value checked, a value's place named by its key."""
    if not isinstance(value, dict):
        raise fail(where, "an object", value)
    if not args:
        return value
    return {check(k, args[0], f"{where} key"): check(v, args[1], at(where, k)) for k, v in value.items()}


def _check_list(value: Any, origin: type, args: tuple, where: str) -> list | tuple:
    """A JSON list, as a list or (for a tuple hint) a tuple, each item checked."""
    if not isinstance(value, list):
        raise fail(where, "a list", value)
    item = args[0] if args else Any
    checked = [check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(checked) if origin is tuple else checked


def check(value: Any, hint: Any, where: str) -> Any:
    """`value` as the type `hint` describes it, or a RecordError naming `where`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _check_annotated(value, args, where)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        return _check_union(value, args, where)
    if origin is Literal:
        if value not in args:
            raise fail(where, "one of " + ", ".join(map(str, args)), value)
        return value
    if hint in (bool, int, float, Measure, str):
        return _check_scalar(value, hint, where)
    if hint is dict or origin is dict:
        return _check_dict(value, args, where)
    if origin in (list, tuple):
        return _check_list(value, origin, args, where)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    raise TypeError(f"no check for {hint!r}")  # a record with a field type this module does not know


def _name(hint: Any) -> str:
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "an object",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


@cache
def hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def build(cls: type[R], data: Any, where: str) -> R:
    """An instance of the dataclass `cls` from a JSON object, every field checked against its type."""
    if not isinstance(data, dict):
        raise fail(where, f"an object ({cls.__name__})", data)
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise RecordError(f"{lead(where)}unknown field {show(unknown[0])} (a {cls.__name__} has "
                          f"{', '.join(known)})")
    values = {}
    for name, f in known.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{lead(where)}field {name!r} is missing")
            continue
        values[name] = check(data[name], hints(cls)[name], at(where, name))
    record = cls(**values)
    validate = getattr(record, "validate", None)
    if validate is not None:
        validate(where)
    return record
