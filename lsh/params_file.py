"""Reading params safely: a params file and `--set` values, each bounded before it costs anything (size,
nesting, values once aliases are expanded, digits of an integer), a key given twice refused, and every
value a message echoes cut to a readable length. What the values mean is lsh/config.py's to check.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from lsh.errors import LshError

# A number in exponent notation: YAML 1.1 reads 1e-06 (no dot) as text; as a params value it means a number
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(LshError):
    """Bad params: a file that does not parse, a bad override, a value the schema refuses."""


# libyaml's safe loader where PyYAML was built with it: the same safe constructors (no tags that build
# objects) over a parser in C, twenty times faster on the schema; every job and Snakemake start reads both.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Bounds on what a params file or a --set value may hold, checked before the work they would cost: a
# params file is a few kilobytes and nests four levels; a file of millions of keys, a list of megabytes,
# an alias chain that expands a thousandfold or a 5,000-digit integer is a mistake or an attack.
MAX_PARAMS_BYTES = 1_000_000
MAX_OVERRIDE_CHARACTERS = 10_000
MAX_VALUES = 100_000  # keys and values, aliases counted as often as they are used
MAX_DEPTH = 32
MAX_DIGITS = 100


def check_bounds(data: Any, source: str) -> None:
    """Refuse a parsed params mapping (or --set value) that nests deeper than MAX_DEPTH or holds more than
    MAX_VALUES values once its aliases are expanded (a recursive alias never ends: it is refused too).
    Iterative, so that nothing here recurses as deep as the data does."""
    stack, seen = [(data, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{source} holds more than {MAX_VALUES:,} keys and values once its aliases are "
                              "expanded: more than any params file (a YAML alias chain?)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source} nests deeper than {MAX_DEPTH} levels: params nest four")
        if isinstance(node, dict):
            seen += len(node)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


class _UniqueKeyLoader(SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML keeps the last, silently) and an
    integer longer than any params value (Python refuses to convert one of over 4,300 digits anyway)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_DIGITS:
            raise ConfigError(f"an integer of {digits} digits at line {node.start_mark.line + 1}: more than any "
                              f"params value has (at most {MAX_DIGITS})")
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"key {show(key)} is given twice (lines {seen[key]} and {line}); keep one")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping safely (no tags that build objects), with errors that name the file."""
    from lsh.files import not_a_file

    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise ConfigError(f"params file {path} {problem}")
    try:
        size = path.stat().st_size
        if size > MAX_PARAMS_BYTES:
            raise ConfigError(f"{size:,} bytes: more than any params file (at most {MAX_PARAMS_BYTES:,}); is it the "
                              "right file?")
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except ConfigError as e:
        raise ConfigError(f"params file {path}: {e}") from None
    except RecursionError:  # PyYAML without libyaml recurses as deep as the file nests
        raise ConfigError(f"params file {path} nests deeper than YAML can be read here; "
                          "params nest four levels") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"params file {path} is not UTF-8 text (byte {e.start}: {e.reason}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as e:  # one line: where, and what the parser expected
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"params file {path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except OSError as e:
        raise ConfigError(f"params file {path} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of keys, not {type(data).__name__}")
    check_bounds(data, f"params file {path}")
    return data


SHOWN = 80  # characters of a value echoed in a message: a YAML alias chain can expand to megabytes


def show(value: Any, limit: int = SHOWN) -> str:
    """A value as a message shows it: repr (invisible characters escaped), cut to `limit` characters."""
    return cut(ascii(value) if isinstance(value, str) and not value.isprintable() else repr(value), limit)


def cut(text: str, limit: int = SHOWN) -> str:
    """Text as a message shows it: cut to `limit` characters, with its length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown_key(key: Any) -> str:
    """A key as a message shows it: as written when printable, escaped otherwise (a zero-width space)."""
    key = str(key)
    return cut(key if key.isprintable() else ascii(key))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-typed value (`3`, `0.5`, `true`, `null`, `[a, b]`)."""
    if len(text) > MAX_OVERRIDE_CHARACTERS:
        raise ConfigError(f"--set {show(text)}: longer than any params value (at most {MAX_OVERRIDE_CHARACTERS:,} "
                          "characters)")
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {show(text)}: expected KEY.PATH=VALUE, for example search.e0=3")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None  # noqa: S506 (a safe loader)
        check_bounds(value, "the value")
    except ConfigError as e:
        raise ConfigError(f"--set {show(text)}: {e}") from None
    except RecursionError:
        raise ConfigError(f"--set {show(text)}: the value nests deeper than YAML can be read here") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {show(text)}: the value is not valid YAML: {cut(str(e), 300)}") from None
    if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e9 (no dot) as a string; on a command line it means a number
    return key.split("."), value


def apply_overrides(params: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of `params` with each `key.path=value` set (an unknown key is caught by validation)."""
    params = copy.deepcopy(params)
    for text in overrides:
        path, value = parse_override(text)
        node = params
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text!r}: {where} is {child!r}, not a section with keys")
            node = child
        node[path[-1]] = value
    return params
