"""Params: validate the YAML file with its `--set key.path=value` overrides (read by lsh/params_file.py).

There is one schema, `workflow/schemas/params.schema.yaml` (reached through the
symlink `lsh/params.schema.yaml`), shared with Snakemake's `validate`. Validation
collects every error and reports each by its dotted key, its value and what is
allowed, before any work starts.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lsh.errors import LshError
from lsh.params_file import (
    FLOAT_TEXT,
    ConfigError,
    SafeLoader,
    apply_overrides,
    check_bounds,
    cut,
    read_yaml,
    show,
    shown_key,
)
from lsh.schedule import plan

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


@cache
def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.load(f, Loader=SafeLoader)  # noqa: S506 (a safe loader)


MAX_PROBLEMS = 10  # lines of one invalid-params message: with their allowed values, within the 2,000 characters


def _describe(error: jsonschema.ValidationError) -> list[str]:
    """One line per problem: `key.path: what is wrong; what is allowed` (values shown capped)."""
    path = ".".join(shown_key(p) for p in error.absolute_path)
    prefix = f"{path}." if path else ""
    where = path or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(map(str, set(error.instance) - set(allowed)))
        return [f"{prefix}{shown_key(key)}: unknown key; allowed keys here: {', '.join(allowed)}" for key in unknown]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [f"{prefix}{key}: missing; this key is required ({_help(schema, key)})" for key in missing]
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return [f"{where}: {show(error.instance)} is not allowed; choose one of: {choices}"]
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [f"{where}: {show(error.instance)} is not of type {' or '.join(kinds)}"]
    if error.validator == "not" and "pattern" in (error.validator_value or {}):
        if not isinstance(error.instance, str):
            return []  # a pattern says nothing of a number: the type error names it
        return [f"{where}: {show(error.instance)} holds a control character (a newline, a tab, ...): a path may not, "
                "since it would break the jobs' shell commands and logs"]
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "less than the minimum of", "maximum": "greater than the maximum of",
                "exclusiveMinimum": "not above", "exclusiveMaximum": "not below"}[error.validator]
        return [f"{where}: {show(error.instance)} is {word} {error.validator_value}"]
    if error.validator == "uniqueItems":
        return [f"{where}: {show(error.instance)} lists a value twice; each may appear once"]
    message = (error.message if len(error.message) <= 300
               else f"{error.message[:300]}... ({len(error.message)} characters)")
    return [f"{where}: {message}"]


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
    lines = model_problems(model.get("type"), model.get("emb"), model.get("hidden"), model.get("layers"),
                           model.get("tied"))
    lines += _space_problems(params)
    if os.path.normpath(params.get("results", "results")) in ("/", "//"):
        lines.append("results: '/' is the root of the file system; give the run a folder of its own (e.g. results)")
    lines += _path_problems(params)
    if "search" in params:  # the schedule must be possible: `lsh params` refuses what `lsh plan` refuses
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


# The params that name folders: a run writes or reads each as a directory; and those that name a file.
FOLDERS = ("results", "data.raw", "data.prepared", "study.cells")
FILES = ("study.shorter",)


def _path_problems(params: dict) -> list[str]:
    """Folders (and files) that no job could use: a folder that exists as a file (a file that exists as a
    folder), a name that starts with a dash (a command reads it as an option), one with braces (Snakemake reads
    {...} in a path as a wildcard)."""
    lines = []
    for dotted in (*FOLDERS, *FILES):
        section, _, key = dotted.rpartition(".")
        value = (params.get(section, {}) if section else params).get(key)
        if not isinstance(value, str):
            continue
        if value.startswith("-"):
            lines.append(f"{dotted}: {show(value)} starts with a dash, which every command reads as an option; "
                         f"write ./{cut(value)} instead")
        elif "{" in value or "}" in value:
            lines.append(f"{dotted}: {show(value)} holds a brace, which Snakemake reads as a wildcard in a path; "
                         f"name the {'file' if dotted in FILES else 'folder'} without {{ and }}")
        elif dotted in FILES and os.path.isdir(value):
            lines.append(f"{dotted}: {show(value)} is a folder, not a file; name a params file")
        elif dotted in FOLDERS and os.path.exists(value) and not os.path.isdir(value):
            lines.append(f"{dotted}: {show(value)} is a file, not a folder; name a folder (it is made if missing)")
    return lines


MAX_CONFIGURATIONS = 1_000_000  # a quantised space larger than this is refused: its grid would not fit in memory


def _space_problems(params: dict) -> list[str]:
    """The death-rate range and the count of configurations against what the search draws from it."""
    space = params.get("space", {})
    rate = space.get("death_rate", {})
    if not rate:
        return []
    lines = []
    low, high, q = rate["low"], rate["high"], rate["q"]
    if low > high:
        return [f"space.death_rate: low {low} is above high {high}"]
    if q:
        steps = (high - low) / q
        if steps + 1 > MAX_CONFIGURATIONS:
            return [f"space.death_rate.q: {q} makes {steps + 1:.3g} death rates between {low} and {high} "
                    f"(at most {MAX_CONFIGURATIONS:,} configurations); use a larger step or null (continuous)"]
        off = [name for name, x in (("low", low), ("high", high)) if abs(x / q - round(x / q)) > 1e-6]
        if off:  # hyperopt's quniform rounds to whole multiples of q: 0.95 with q 0.5 would give 1.0
            lines.append(f"space.death_rate: {' and '.join(f'{n} {rate[n]}' for n in off)} must be a whole multiple "
                         f"of q = {q}, so that every quantised death rate lies in [{low}, {high}]")
        categorical = 1
        for key in ("init", "death", "growth", "redistribution"):
            categorical *= len(space.get(key, []) or [1])
        size = categorical * (int(math.floor(steps + 1e-9)) + 1)
        if size > MAX_CONFIGURATIONS:
            lines.append(f"space: {size:,} configurations, more than the {MAX_CONFIGURATIONS:,} a search can handle; "
                         "use a larger space.death_rate.q")
        elif "search" in params and params["search"]["proposer"] != "grid":
            lines += _count_problems(params, size)
    return lines


def _count_problems(params: dict, size: int) -> list[str]:
    """More distinct candidates than a finite space holds cannot be proposed (the proposer would search forever)."""
    try:
        the_plan = plan(SearchConfig(**params["search"]))
    except LshError:
        return []  # the schedule's own problem is reported by the caller
    wanted = params["search"]["n"] + sum(r.new for r in the_plan.rounds)
    if wanted > size:
        return [f"search.n: the search proposes {wanted} distinct candidates (n = {params['search']['n']} and the "
                f"insertions), but the space holds only {size} configurations; lower search.n or widen the space"]
    return []


def _types(node: dict) -> list[str]:
    kind = node.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def normalise(params: dict, text_numbers: bool = False) -> tuple[dict, list[str]]:
    """Numbers as the schema means them, and the problems only a number's spelling shows.

    A whole float (6.0, 2e4) where the schema wants an integer becomes that integer, from
    files, `--set` and Snakemake's `--config` alike; 6.5 stays and the schema refuses it by
    name. NaN and infinity are refused for every number (1e400 reads as infinity). A string
    that YAML 1.1 read from a number-like spelling (1.0e30, 1e-06) where the schema wants a
    number is a problem that says how to write it, as is an integer too large for a
    floating-point number. With `text_numbers` (Snakemake's `--config`, whose nested values
    arrive as text: `lyapunov={steps: 30}`), such text is read as the number, boolean or
    null the schema wants, as the top-level values are.
    """
    problems: list[str] = []

    def walk(value: Any, node: dict, path: str) -> Any:
        if isinstance(value, dict) and "properties" in node:
            return {k: walk(v, node["properties"].get(k, {}), f"{path}.{shown_key(k)}" if path else shown_key(k))
                    for k, v in value.items()}
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [walk(v, node["items"], f"{path}[{i}]") for i, v in enumerate(value)]
        kinds = _types(node)
        if text_numbers and isinstance(value, str) and set(kinds) & {"integer", "number", "boolean", "null"}:
            value = _from_text(value, kinds)
        if isinstance(value, bool):
            return value
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}: {value} is not allowed: NaN and infinity are not numbers a run can use")
            return value
        if "integer" in kinds and isinstance(value, float) and value.is_integer():
            return int(value)
        if "number" in kinds and isinstance(value, int) and abs(value) > sys.float_info.max:
            problems.append(f"{path}: {value} is too large for a floating-point number")
        if ("number" in kinds or "integer" in kinds) and isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
            mantissa, _, exponent = value.strip().lower().partition("e")
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            sign = "" if exponent[:1] in "+-" else "+"
            problems.append(f"{path}: {value!r} is read as text by YAML; write the number as "
                            f"{mantissa}e{sign}{exponent} (a dot and a signed exponent)")
        return value

    return walk(params, load_schema(), ""), problems


def _from_text(text: str, kinds: list[str]) -> Any:
    """Command-line text as the value the schema wants (unchanged when it is not one)."""
    if FLOAT_TEXT.fullmatch(text.strip()) and ("number" in kinds or "integer" in kinds):
        return float(text)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, float) and "integer" in kinds and value.is_integer():
        return value  # a whole float: normalise makes it the integer, as for top-level values
    wanted = {"integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),)}
    ok = any(isinstance(value, wanted[k]) and not (k != "boolean" and isinstance(value, bool))
             for k in kinds if k in wanted)
    return value if ok else text


def validate(params: dict, source: str = "params", text_numbers: bool = False) -> dict:
    """The params with their numbers normalised (`normalise`); raise ConfigError listing every way
    they break the schema or a rule between keys."""
    check_bounds(params, cut(source, 300))  # Snakemake's --config and configfiles come here unread by read_yaml
    params, lines = normalise(params, text_numbers)
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    lines += [line for e in errors for line in _describe(e)
              if not any(line.startswith(p.split(":")[0] + ":") for p in lines)]
    if not lines:
        lines = _cross_field(params)
    if lines:
        more = len(lines) - MAX_PROBLEMS
        shown = lines[:MAX_PROBLEMS] + ([f"... and {more:,} more problems"] if more > 0 else [])
        body = "\n".join(f"  {line}" for line in shown)
        raise ConfigError(f"invalid params ({cut(source, 300)}):\n{body}")
    return params


def load_params(path: str | os.PathLike = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read, override and validate a params file; the result is safe to use as is."""
    params = apply_overrides(read_yaml(path), overrides)
    source = str(path) + (" with --set " + " ".join(overrides) if overrides else "")
    return validate(params, source)


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys in which two params dicts differ."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def run_params(resolved: str | os.PathLike, path: str | os.PathLike | None,
               overrides: list[str] | tuple[str, ...]) -> dict:
    """The params of an existing run (its resolved-params.yaml): `--params` and `--set` may repeat them,
    never change them, since the run's files were made with these (numerics aside: how, not what)."""
    run = load_params(resolved)
    given = load_params(path if path is not None else resolved, overrides)
    changed = [k for k in differences(run, given) if k != "numerics"]
    if changed:
        def value(params: dict, dotted: str) -> str:
            for part in dotted.split("."):
                params = params.get(part) if isinstance(params, dict) else None
            return show(params)

        shown = "; ".join(f"{k} = {value(given, k)} where the run has {value(run, k)}" for k in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        source = " ".join(filter(None, [f"--params {path}" if path is not None else "",
                                        " ".join(f"--set {o}" for o in overrides)]))
        raise ConfigError(f"{source} conflicts with the run's own params ({resolved}): {shown}{more}. A run is read "
                          "with the params that made it: drop them, or point --results at another run")
    return given


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


@dataclass(frozen=True, kw_only=True)
class DataParams:
    raw: str
    prepared: str
    url: str
    download: bool
    verify: bool
    train_tokens: int | None


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class SparseConfig:
    density: float
    init: str
    death: str
    growth: str
    redistribution: str
    death_rate: float
    decay_epochs: int | None = None  # the full training length; None: final.epochs (Params.sparse resolves it)


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
    age: str = "own"  # own | common: the epoch each candidate is scored at (lsh.search.ranking.scored_epochs)


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    space: str
    seeds: int
    repeats: int
    pools: tuple[int, ...]
    ls_samples: tuple[int, ...]
    cells: str | None = None
    configs: tuple[str, ...] | None = None  # a pre-registered subset of the space's configuration ids
    shorter: str | None = None  # the params file of the same study at a shorter horizon (the horizon comparison)

    @classmethod
    def from_dict(cls, section: dict) -> "StudyConfig":
        configs = section["configs"]
        return cls(space=section["space"], seeds=section["seeds"], repeats=section["repeats"],
                   pools=tuple(section["pools"]), ls_samples=tuple(section["ls_samples"]), cells=section["cells"],
                   configs=None if configs is None else tuple(configs), shorter=section["shorter"])


@dataclass(frozen=True, kw_only=True)
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
            seed=params["seed"], numerics=params["numerics"], results=params["results"],
            data=DataParams(**params["data"]), model=ModelParams.from_dict(params["model"]),
            train=TrainConfig(**params["train"]), sparse=SparseConfig(**sparse),
            lyapunov=LyapunovConfig(**params["lyapunov"]),
            space=SpaceConfig.from_dict(params["space"]), search=SearchConfig(**params["search"]),
            final_epochs=params["final"]["epochs"], correlation_candidates=params["report"]["correlation_candidates"],
            study=StudyConfig.from_dict(params["study"]), raw=params,
        )
