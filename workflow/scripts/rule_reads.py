"""What each rule of the workflow reads: the params keys (its job reruns when one changes) and the
`lsh` modules its command runs (its job reruns when their code changes).

The one source for both engines: workflow/rules/common.smk hands each rule's keys and code hash to
Snakemake as params (a rerun trigger), and workflow/scripts/dvc_yaml.py lists the same keys as each
DVC stage's params and the same module files as its deps. So a change reruns the same jobs under
`snakemake` and under `dvc repro`.

A command's code is the import closure of the module its `lsh` subcommand runs, every `import` in
it followed (also those inside functions), plus what the command line itself loads at start; the
lazy imports of lsh/cli.py and of package __init__ files are not followed (they serve other
commands). Sources are read from the project folder given, so an edit in a copy of the project is
seen there.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The search keys the schedule (lsh plan) reads: how many rounds, pools and epochs.
SCHEDULE = ("search.mode", "search.n", "search.e0", "search.ei", "search.eliminate", "search.insert",
            "search.final_pool")
# What ranks a round, and what proposes the new candidates.
RANKING = ("search.ranker", "search.age", "search.embedding", "search.distance", "search.pca_fit")
PROPOSING = ("search.proposer", "search.history")
# A candidate's training: its configuration comes from the pool, its epochs from the pool's slot.
CANDIDATE = ("seed", "data.train_tokens", "model", "train", "sparse")
DENSE = ("seed", "data.train_tokens", "model", "train")
TABLE = ("seed", "data.train_tokens", "model", "train", "sparse", "lyapunov", "space", "final")
# Files of the package read at run time besides its modules.
PACKAGE_DATA = ("lsh/params.schema.yaml",)


@dataclass(frozen=True)
class Reads:
    keys: tuple[str, ...]
    module: str  # the module the rule's `lsh` subcommand runs (lsh/cli.py imports it for that command)
    # Keys the rule's other params are computed from (the dense reference's epochs from the schedule):
    # Snakemake sees the computed value, DVC can only list the keys. DVC then asks Snakemake, which
    # reruns nothing when the value did not change.
    derived: tuple[str, ...] = ()


RULES: dict[str, Reads] = {
    "prepare": Reads(("seed", "data"), "lsh.data"),
    "environment": Reads(("numerics",), "lsh.files"),
    # the dense reference's epochs: the last epoch any run's schedule reaches
    "train_dense": Reads(DENSE, "lsh.stages.train", SCHEDULE),
    "spectra_dense": Reads(("seed", "lyapunov"), "lsh.stages.spectra", SCHEDULE),
    "train_dense_final": Reads((*DENSE, "final"), "lsh.stages.train", SCHEDULE),
    # round 0's pool is the proposer's; a later one the previous round's ranking and proposals (inputs)
    "pool": Reads(("seed", "space", "search.proposer", *SCHEDULE), "lsh.stages.pool"),
    "train_candidate": Reads(CANDIDATE, "lsh.stages.slot"),
    "spectra_candidate": Reads(("seed", "lyapunov"), "lsh.stages.spectra"),
    "rank": Reads(("seed", *SCHEDULE, *RANKING), "lsh.stages.rank"),
    "propose": Reads(("seed", "space", *SCHEDULE, *PROPOSING), "lsh.stages.propose"),
    "final_pool": Reads(("seed", "space", "search.proposer", *SCHEDULE, "final.epochs"), "lsh.stages.pool"),
    "train_final": Reads((*CANDIDATE, "final"), "lsh.stages.slot"),
    "select": Reads(("seed", "search", "sparse"), "lsh.stages.select"),
    "train_correlation": Reads((*CANDIDATE, "final"), "lsh.stages.slot"),
    # the report judges each ranking against the unigram perplexity of the training and validation tokens
    "report": Reads(("seed", "model", "sparse", "search", "final", "report", "data.train_tokens", "train.eval_tokens"),
                    "lsh.stages.report"),
    "compare": Reads(("seed", "model", "sparse", "search", "final", "report", "data.train_tokens",
                      "train.eval_tokens"), "lsh.stages.report"),
    "study_cell": Reads((*TABLE, "study.space"), "lsh.stages.table"),
    "study_table": Reads((*TABLE, "study"), "lsh.stages.table"),
    "study_replay": Reads(("seed", "space", "search", "lyapunov.layout", "study"), "lsh.stages.study"),
    # a kept cell (study.cells) has no checkpoint: the best and the worst are trained again for Table 4
    "study_ls_samples": Reads((*TABLE, "study.space", "study.ls_samples", "study.cells"), "lsh.stages.table"),
    "study_report": Reads(("seed", "search", "lyapunov.layout", "study", "model", "data.train_tokens"),
                          "lsh.stages.study"),
    # the horizon comparison (study.shorter): the shorter study's table of these configurations and seeds
    "study_shorter_table": Reads(("study.shorter", "study.configs", "study.seeds"), "lsh.stages.table"),
    "study_horizon": Reads(("seed", "space", "search", "lyapunov.layout", "study"), "lsh.stages.horizon"),
}


def keys(rule: str, params: dict) -> list[str]:
    """The params keys `rule` reads under these params: final.epochs also for a candidate's training
    when it sets the death-rate decay (sparse.decay_epochs null), and for round 0's pool under
    `search.mode: full` (whose pool is the final one)."""
    out = list(RULES[rule].keys)
    # The numerics decide the last bits of every computed output (the prepared data are integers): a
    # change recomputes them all, so a run's environment record always describes its results.
    if rule != "prepare" and "numerics" not in out:
        out.append("numerics")
    if rule == "train_candidate" and params["sparse"]["decay_epochs"] is None:
        out.append("final.epochs")
    if rule == "pool" and params["search"]["mode"] == "full":
        out.append("final.epochs")
    return out


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in `body`, nested ones too: an import is a statement, so the expressions (most
    of a module's nodes) need not be walked. Snakemake asks for this on every start."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, []))


@lru_cache(maxsize=None)
def _imports(root: Path, name: str, path: Path, follow_functions: bool) -> frozenset[str]:
    """The `lsh` modules `path` (module `name`) imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = _statements(tree.body) if follow_functions else iter(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _module_file(root, f"{base}.{alias.name}"))
    return frozenset(m for m in found if m.split(".")[0] == "lsh")


@lru_cache(maxsize=None)
def code_files(root: str, module: str) -> tuple[str, ...]:
    """The package's source files `module`'s command runs, relative to the project folder `root`."""
    base = Path(root)
    seen: set[str] = set()
    todo = ["lsh.cli", "lsh.commands", module]
    while todo:
        name = todo.pop()
        path = _module_file(base, name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the packages it lives in
        lazy = name in ("lsh.cli", "lsh.commands") or path.name == "__init__.py"  # the handlers import their stage
        todo.extend(_imports(base, name, path, follow_functions=not lazy))
    paths = {str(_module_file(base, m).relative_to(base)) for m in seen}
    return tuple(sorted(paths | {f for f in PACKAGE_DATA if (base / f).is_file()}))


@lru_cache(maxsize=None)
def code_hash(root: str, module: str) -> str:
    """One hash of the contents of `code_files(root, module)`."""
    digest = hashlib.sha256()
    for rel in code_files(root, module):
        digest.update(rel.encode() + b"\0" + (Path(root) / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
