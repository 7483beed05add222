"""Which cells a benchmark table has: its configurations (with their ids) and training seeds, and
the dense reference. Light on imports: the workflow lists the cells when it starts."""

from __future__ import annotations

from lsh.config import Params, SpaceConfig
from lsh.errors import LshError
from lsh.search.space import discrete_space, grid_points

SPACES = ("grid", "quantised")
DENSE = "dense"  # the dense reference's cell


def table_configs(space: SpaceConfig, kind: str) -> list[tuple[str, dict]]:
    """The table's configurations with their ids: the paper's grid at its fixed death rate (g00..), or
    every quantised configuration of the space, all death rates (q000..)."""
    if kind == "grid":
        return [(f"g{i:02d}", c) for i, c in enumerate(grid_points(space))]
    if kind == "quantised":
        configs = discrete_space(space)
        if configs is None:
            raise LshError("study.space: quantised needs a quantised death rate (space.death_rate.q); use grid")
        return [(f"q{i:03d}", c) for i, c in enumerate(configs)]
    raise LshError(f"study.space {kind!r}: allowed are {', '.join(SPACES)}")


def training_seeds(params: Params) -> list[int]:
    """The S training seeds: the run's seed first, so that the table holds what a live run trains."""
    return [params.seed + i for i in range(params.study.seeds)]


def cell_ids(params: Params) -> list[str]:
    """Every cell's configuration id, the dense reference first."""
    return [DENSE] + [cid for cid, _ in table_configs(params.space, params.study.space)]
