# All of the workflow's Python: config validation, paths, and the helpers rules call.
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from lsh.config import ConfigError, validate as describe_problems
from lsh.errors import LshError
from lsh.search import plan as search_plan


# One schema for Snakemake and the `lsh` command line (lsh/config.py reads the same file).
# The package's check comes first only for its messages: one line per bad key, naming
# the value and what is allowed, before any job runs.
try:
    describe_problems(config, "the Snakemake config")
except ConfigError as e:
    raise WorkflowError(str(e)) from None
validate(config, "../schemas/params.schema.yaml")

# Rules call the `lsh` installed beside this Snakemake, also when Snakemake is started
# as .venv/bin/snakemake without an activated venv.
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")
ENV = "../envs/lsh.yaml"

# The schedule follows from the params alone, so the whole DAG is known up front.
try:
    PLAN = search_plan(config["search"])
except LshError as e:
    raise WorkflowError(str(e)) from None

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
PREPARED = config["data"]["prepared"]
SPLITS = ["train", "valid", "test"]


def lsh_args(*sections):
    """`--set` options that hand Snakemake's effective config sections to `lsh`.

    A rule lists the sections it reads in its params, so Snakemake reruns it exactly
    when one of them changes, and the command sees the same values Snakemake does
    (presets and --config overrides included).
    """
    return " ".join(
        f"--set {shlex.quote(f'{key}={json.dumps(config[key], sort_keys=True)}')}"
        for key in sections
    )


def prepared_files():
    return [
        *expand(f"{PREPARED}/{{split}}.npy", split=SPLITS),
        f"{PREPARED}/vocab.txt",
        f"{PREPARED}/meta.json",
    ]


def dense_checkpoints():
    """Every dense epoch the search compares against: 0 (the initialisation) to the last."""
    return expand(f"{RESULTS}/dense/epoch-{{epoch:03d}}.pt", epoch=range(PLAN.last_epoch + 1))


def train_mem_mb(wildcards, attempt):
    """A generous memory estimate from the model size: weights, gradients, averages, logits."""
    m = config["model"]
    layers = m["layers"] if m["type"] == "lstm" else 2 * m["depth"]
    weights = 10_000 * m["emb"] * 2 + layers * 8 * m["hidden"] ** 2
    return int(1500 + weights * 4 * 8 / 1e6) * attempt


def final_outputs():
    """What `rule all` asks for; grows as the pipeline's stages land."""
    return [*prepared_files(), f"{RESULTS}/dense/summary.json"]
