"""Params: load the YAML file, apply `--set key.path=value` overrides, validate.

There is one schema, `workflow/schemas/params.schema.yaml` (reached through the
symlink `lsh/params.schema.yaml`), shared with Snakemake's `validate`. Validation
collects every error and reports each by its dotted key, its value and what is
allowed, before any work starts.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lsh.errors import LshError

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(LshError):
    """Bad params: a file that does not parse, a bad override, a value the schema refuses."""


@cache
def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with `yaml.safe_load`, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise ConfigError(f"params file {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except yaml.YAMLError as e:  # one line: where, and what the parser expected
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"params file {path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-typed value (`3`, `0.5`, `true`, `null`, `[a, b]`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, for example search.e0=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {e}") from None
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
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


def _describe(error: jsonschema.ValidationError) -> list[str]:
    """One line per problem: `key.path: what is wrong; what is allowed`."""
    path = ".".join(str(p) for p in error.absolute_path)
    prefix = f"{path}." if path else ""
    where = path or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return [f"{prefix}{key}: unknown key; allowed keys here: {', '.join(allowed)}" for key in unknown]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [f"{prefix}{key}: missing; this key is required ({_help(schema, key)})" for key in missing]
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return [f"{where}: {error.instance!r} is not allowed; choose one of: {choices}"]
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [f"{where}: {error.instance!r} is not of type {' or '.join(kinds)}"]
    return [f"{where}: {error.message}"]


def _help(schema: dict, key: str) -> str:
    return schema.get("properties", {}).get(key, {}).get("description", "see the schema")


def model_problems(kind: Any, emb: Any, hidden: Any, layers: Any, tied: Any) -> list[str]:
    """The model's rules between keys, the one place they live (models.ModelConfig asks here too)."""
    lines = []
    if tied and emb != hidden:
        lines.append(f"model.tied: true needs model.emb == model.hidden (got {emb} and {hidden})")
    if kind == "rhn" and layers != 1:
        lines.append(f"model.layers: {layers} is not allowed for the RHN; use 1 (its depth is model.depth)")
    return lines


def _cross_field(params: dict) -> list[str]:
    """Rules between keys, which a JSON schema cannot state; checked only once the schema passes."""
    model = params.get("model", {})
    lines = model_problems(model.get("type"), model.get("emb"), model.get("hidden"), model.get("layers"), model.get("tied"))
    rate = params.get("space", {}).get("death_rate", {})
    if rate and rate["low"] > rate["high"]:
        lines.append(f"space.death_rate: low {rate['low']} is above high {rate['high']}")
    if "search" in params:  # the schedule must be possible: `lsh params` refuses what `lsh plan` refuses
        from lsh.search.schedule import plan

        try:
            last_epoch = plan(SearchConfig(**params["search"])).last_epoch
        except LshError as e:
            lines.append(str(e))
        else:
            final = params["final"]["epochs"]  # the schema has passed: every section is there
            if final < last_epoch:  # the survivors would already be past the final training's end
                lines.append(f"final.epochs: {final} is below the {last_epoch} epochs the survivors reach during "
                             f"selection (search.e0, search.ei and the rounds); raise it to at least {last_epoch}")
    return lines


def _types(node: dict) -> list[str]:
    kind = node.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def normalise(params: dict) -> tuple[dict, list[str]]:
    """Numbers as the schema means them, and the problems only a number's spelling shows.

    A whole float (6.0, 2e4) where the schema wants an integer becomes that integer, from
    files, `--set` and Snakemake's `--config` alike; 6.5 stays and the schema refuses it by
    name. A string that YAML 1.1 read from a number-like spelling (1.0e30, 1e-06) where the
    schema wants a number is a problem that says how to write it, as is an integer too large
    for a floating-point number.
    """
    problems: list[str] = []

    def walk(value: Any, node: dict, path: str) -> Any:
        if isinstance(value, dict) and "properties" in node:
            return {k: walk(v, node["properties"].get(k, {}), f"{path}.{k}" if path else k) for k, v in value.items()}
        kinds = _types(node)
        if isinstance(value, bool):
            return value
        if "integer" in kinds and isinstance(value, float) and value.is_integer():
            return int(value)
        if "number" in kinds and isinstance(value, int) and abs(value) > sys.float_info.max:
            problems.append(f"{path}: {value} is too large for a floating-point number")
        if ("number" in kinds or "integer" in kinds) and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            mantissa, _, exponent = value.strip().lower().partition("e")
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            sign = "" if exponent[:1] in "+-" else "+"
            problems.append(f"{path}: {value!r} is read as text by YAML; write the number as "
                            f"{mantissa}e{sign}{exponent} (a dot and a signed exponent)")
        return value

    return walk(params, load_schema(), ""), problems


def validate(params: dict, source: str = "params") -> dict:
    """The params with their numbers normalised (`normalise`); raise ConfigError listing every way
    they break the schema or a rule between keys."""
    params, lines = normalise(params)
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    lines += [line for e in errors for line in _describe(e) if not any(line.startswith(p.split(":")[0] + ":") for p in lines)]
    if not lines:
        lines = _cross_field(params)
    if lines:
        body = "\n".join(f"  {line}" for line in lines)
        raise ConfigError(f"invalid params ({source}):\n{body}")
    return params


def load_params(path: str | os.PathLike = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read, override and validate a params file; the result is safe to use as is."""
    params = apply_overrides(read_yaml(path), overrides)
    source = str(path) + (" with --set " + " ".join(overrides) if overrides else "")
    return validate(params, source)


def dump(params: dict) -> str:
    """The params as YAML that reads back to the same values (PyYAML writes 1e-06 as 1.0e-06)."""
    return yaml.safe_dump(params, sort_keys=False)


def write_resolved(params: dict, path: str | os.PathLike) -> Path:
    """Write the run's validated params for its jobs; an unchanged file is left alone (its time too)."""
    from lsh import files

    path, text = Path(path), dump(params)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        files.write_text(path, text)
    return path


# -----------------------------------------------------------------------------
# The validated params as frozen per-section dataclasses: what the stages hand the library.
# Choices are not repeated here: the schema defines them, and the library's name -> function
# tables refuse a name they do not hold.


@dataclass(frozen=True)
class DataParams:
    raw: str
    prepared: str
    url: str
    download: bool
    verify: bool
    train_tokens: int | None


@dataclass(frozen=True)
class ModelParams:
    """The model section; `models.ModelConfig` adds the vocabulary size the data gives."""

    type: str
    emb: int
    hidden: int
    layers: int
    depth: int
    tied: bool
    dropout_input: float
    dropout_hidden: float
    dropout_output: float
    dropout_words: float

    @classmethod
    def from_dict(cls, section: dict) -> "ModelParams":
        drop = section["dropout"]
        return cls(type=section["type"], emb=section["emb"], hidden=section["hidden"], layers=section["layers"],
                   depth=section["depth"], tied=section["tied"], dropout_input=drop["input"],
                   dropout_hidden=drop["hidden"], dropout_output=drop["output"], dropout_words=drop["words"])


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    batch_size: int
    bptt: int
    clip: float
    weight_decay: float
    nonmono: int
    eval_batch_size: int
    eval_tokens: int | None
    device: str
    tf32: bool = False


@dataclass(frozen=True)
class SparseConfig:
    density: float
    init: str
    death: str
    growth: str
    redistribution: str
    death_rate: float
    decay_epochs: int | None = None  # the full training length; None: final.epochs (Params.sparse resolves it)


@dataclass(frozen=True)
class LyapunovConfig:
    """How a spectrum is computed (the params' `lyapunov` section; defaults for library callers)."""

    samples: int = 2
    steps: int = 35
    warmup: int = 10
    exponents: int | None = None  # k leading exponents; None = all
    state: str = "h"
    method: str = "analytic"
    log_base: str | int = "e"
    dtype: str = "float32"
    qr_every: int = 1
    device: str = "auto"
    layout: str = "blocks"
    min_exponent: float = -16.0


@dataclass(frozen=True)
class DeathRateRange:
    low: float
    high: float
    q: float | None


@dataclass(frozen=True)
class SpaceConfig:
    init: tuple[str, ...]
    death: tuple[str, ...]
    growth: tuple[str, ...]
    redistribution: tuple[str, ...]
    death_rate: DeathRateRange
    grid_death_rate: float

    @classmethod
    def from_dict(cls, section: dict) -> "SpaceConfig":
        return cls(init=tuple(section["init"]), death=tuple(section["death"]), growth=tuple(section["growth"]),
                   redistribution=tuple(section["redistribution"]), death_rate=DeathRateRange(**section["death_rate"]),
                   grid_death_rate=section["grid_death_rate"])


@dataclass(frozen=True)
class SearchConfig:
    mode: str
    ranker: str
    embedding: str
    distance: str
    pca_fit: str
    proposer: str
    history: str
    n: int
    e0: int
    ei: int
    eliminate: float
    insert: float
    final_pool: int


@dataclass(frozen=True)
class StudyConfig:
    space: str
    seeds: int
    repeats: int
    pools: tuple[int, ...]
    ls_samples: tuple[int, ...]

    @classmethod
    def from_dict(cls, section: dict) -> "StudyConfig":
        return cls(space=section["space"], seeds=section["seeds"], repeats=section["repeats"],
                   pools=tuple(section["pools"]), ls_samples=tuple(section["ls_samples"]))


@dataclass(frozen=True)
class Params:
    """The whole validated params, section by section (`Params.from_dict` of a validated dict)."""

    seed: int
    numerics: str  # portable | native (lsh.numerics), applied before torch is imported
    results: str
    data: DataParams
    model: ModelParams
    train: TrainConfig
    sparse: SparseConfig  # decay_epochs resolved: final.epochs when the params leave it null
    lyapunov: LyapunovConfig
    space: SpaceConfig
    search: SearchConfig
    final_epochs: int
    correlation_candidates: int
    study: StudyConfig
    raw: dict = field(repr=False, compare=False)  # the validated dict itself, for writing it back out

    @classmethod
    def from_dict(cls, params: dict) -> "Params":
        sparse = dict(params["sparse"])
        if sparse["decay_epochs"] is None:
            sparse["decay_epochs"] = params["final"]["epochs"]
        return cls(
            seed=params["seed"], numerics=params["numerics"], results=params["results"], data=DataParams(**params["data"]),
            model=ModelParams.from_dict(params["model"]), train=TrainConfig(**params["train"]),
            sparse=SparseConfig(**sparse), lyapunov=LyapunovConfig(**params["lyapunov"]),
            space=SpaceConfig.from_dict(params["space"]), search=SearchConfig(**params["search"]),
            final_epochs=params["final"]["epochs"], correlation_candidates=params["report"]["correlation_candidates"],
            study=StudyConfig.from_dict(params["study"]), raw=params,
        )
