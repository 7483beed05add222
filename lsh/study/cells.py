"""Which cells a benchmark table has: its configurations (with their ids) and training seeds, and
the dense reference. Light on imports: the workflow lists the cells when it starts."""

from __future__ import annotations

from lsh.config import Params, SpaceConfig
from lsh.errors import LshError
from lsh.search.space import discrete_space, grid_points

SPACES = ("grid", "quantised")
DENSE = "dense"  # the dense reference's cell


def table_configs(space: SpaceConfig, kind: str, only: tuple[str, ...] | None = None) -> list[tuple[str, dict]]:
    """The table's configurations with their ids: the paper's grid at its fixed death rate (g00..), or
    every quantised configuration of the space, all death rates (q000..); with `only`, those ids alone
    (a subset keeps the ids it has in the whole space, so its cells are the whole table's cells)."""
    if kind == "grid":
        configs = [(f"g{i:02d}", c) for i, c in enumerate(grid_points(space))]
    elif kind == "quantised":
        points = discrete_space(space)
        if points is None:
            raise LshError("study.space: quantised needs a quantised death rate (space.death_rate.q); use grid")
        configs = [(f"q{i:03d}", c) for i, c in enumerate(points)]
    else:
        raise LshError(f"study.space {kind!r}: allowed are {', '.join(SPACES)}")
    if only is None:
        return configs
    ids = [cid for cid, _ in configs]
    if unknown := [cid for cid in only if cid not in ids]:
        raise LshError(f"study.configs: {', '.join(unknown)} not in study.space {kind} "
                       f"({ids[0]}..{ids[-1]}, {len(ids)} configurations)")
    return [(cid, c) for cid, c in configs if cid in only]


def study_configs(params: Params) -> list[tuple[str, dict]]:
    """The configurations of the params' table: study.configs of study.space, or all of it."""
    return table_configs(params.space, params.study.space, params.study.configs)


def training_seeds(params: Params) -> list[int]:
    """The S training seeds: the run's seed first, so that the table holds what a live run trains."""
    return [params.seed + i for i in range(params.study.seeds)]


def cell_ids(params: Params) -> list[str]:
    """Every cell's configuration id, the dense reference first."""
    return [DENSE] + [cid for cid, _ in study_configs(params)]
