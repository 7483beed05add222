"""The search space: a candidate's configuration, its identity, the paper's grid, and the same
space as hyperopt expressions (the proposers' view of it)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from lsh.config import SpaceConfig

CONFIG_KEYS = ("init", "death", "growth", "redistribution", "death_rate")
CATEGORICAL = CONFIG_KEYS[:4]


def candidate_id(index: int) -> str:
    return f"c{index:03d}"


def config_key(config: dict) -> tuple:
    """A hashable identity of a configuration (death rate rounded: 0.6000000000000001 is 0.6)."""
    return tuple(round(config[k], 6) if k == "death_rate" else config[k] for k in CONFIG_KEYS)


def round_rate(value: float, space: SpaceConfig) -> float:
    """A death rate on the space's grid of q (hyperopt's quniform returns 0.6000000000000001)."""
    q = space.death_rate.q
    return round(round(value / q) * q, 6) if q else round(float(value), 6)


def hyperopt_space(space: SpaceConfig) -> dict:
    """The params' `space` as hyperopt expressions, one label per configuration key."""
    from hyperopt import hp

    rate = space.death_rate
    out = {k: hp.choice(k, list(getattr(space, k))) for k in CATEGORICAL}
    if rate.low == rate.high:  # a fixed death rate (a grid table's replay) is not searched
        out["death_rate"] = rate.low
    elif rate.q:
        out["death_rate"] = hp.quniform("death_rate", rate.low, rate.high, rate.q)
    else:
        out["death_rate"] = hp.uniform("death_rate", rate.low, rate.high)
    return out


def config_to_vals(config: dict, space: SpaceConfig) -> dict:
    """hyperopt's representation of a configuration: choice index per categorical key."""
    vals = {k: getattr(space, k).index(config[k]) for k in CATEGORICAL}
    if space.death_rate.low != space.death_rate.high:
        vals["death_rate"] = float(config["death_rate"])
    return vals


def vals_to_config(vals: dict, space: SpaceConfig) -> dict:
    config = {k: getattr(space, k)[int(vals[k])] for k in CATEGORICAL}
    config["death_rate"] = round_rate(vals.get("death_rate", space.death_rate.low), space)
    return config


def grid_points(space: SpaceConfig) -> list[dict]:
    """Every methodological combination at the fixed grid death rate (2 x 4 x 3 = 24 in the paper)."""
    combos = itertools.product(*(getattr(space, k) for k in CATEGORICAL))
    return [dict(zip(CATEGORICAL, c), death_rate=space.grid_death_rate) for c in combos]


def discrete_space(space: SpaceConfig) -> list[dict] | None:
    """All configurations, when the death rate is quantised; None for a continuous death rate."""
    rate = space.death_rate
    if not rate.q:
        return None
    steps = int(math.floor((rate.high - rate.low) / rate.q + 1e-9)) + 1
    rates = [round_rate(rate.low + i * rate.q, space) for i in range(steps)]
    combos = itertools.product(*(getattr(space, k) for k in CATEGORICAL), rates)
    return [dict(zip(CONFIG_KEYS, c)) for c in combos]


def derived_seed(seed: int, *keys: int) -> int:
    """Independent, reproducible seeds for each round and attempt from the one run seed."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


