# All of the workflow's Python: config validation, paths, and the helpers rules call.
import glob
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from lsh.config import ConfigError, validate as describe_problems, write_resolved
from lsh.errors import LshError
from lsh.search import COMPARISON
from lsh.search import plan as search_plan


# One schema for Snakemake and the `lsh` command line (lsh/config.py reads the same file).
# The package's check comes first only for its messages: one line per bad key, naming
# the value and what is allowed, before any job runs. It also gives back the numbers as
# the schema means them (6.0 for an integer key is 6), from presets and --config alike.
try:
    config.update(describe_problems(config, "the Snakemake config"))
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

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
PREPARED = config["data"]["prepared"]
SPLITS = ["train", "valid", "test"]

# Every job reads the run's validated params from one file, written here once per run
# (left untouched when it has not changed): the preset, --config overrides and all, and
# nothing from ./params.yaml. It is not an input of any rule, so writing it reruns nothing.
RESOLVED = str(write_resolved(config, f"{RESULTS}/resolved-params.yaml"))


def lsh_params(*sections):
    """A rule's params for a job that runs `lsh`: `cfg` hands it the run's resolved params
    file, `reads` holds the sections it reads, so Snakemake reruns it exactly when one of
    them changes (params are a rerun trigger)."""
    reads = json.dumps({key: lookup_key(key) for key in sections}, sort_keys=True)  # key order is no change
    return {"cfg": f"--params {shlex.quote(RESOLVED)}", "reads": reads}


def lookup_key(dotted):
    """config["a"]["b"] for "a.b"."""
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def prepared_files():
    return [
        *expand(f"{PREPARED}/{{split}}.npy", split=SPLITS),
        f"{PREPARED}/vocab.txt",
        f"{PREPARED}/meta.json",
    ]


def train_mem_mb(wildcards, attempt):
    """A generous memory estimate from the model size: weights, gradients, averages, logits."""
    m = config["model"]
    layers = m["layers"] if m["type"] == "lstm" else 2 * m["depth"]
    weights = 10_000 * m["emb"] * 2 + layers * 8 * m["hidden"] ** 2
    return int(1500 + weights * 4 * 8 / 1e6) * attempt


# Rounds, slots and final slots are two-digit wildcards: r00, s03, f01.
ROUND = f"{RESULTS}/rounds/r{{r}}"
SLOT = f"{RESULTS}/rounds/r{{r}}/s{{s}}"
FINAL = f"{RESULTS}/final"


def two(i):
    return f"{int(i):02d}"


def round_slots(r):
    return range(PLAN.rounds[int(r)].pool)


def slot_train_summaries(r):
    """A slot's training is marked done by its summary.json, written last; its checkpoints live beside it."""
    return [f"{RESULTS}/rounds/r{two(r)}/s{two(s)}/train/summary.json" for s in round_slots(r)]


def slot_spectra_files(r):
    return [f"{RESULTS}/rounds/r{two(r)}/s{two(s)}/spectra.json" for s in round_slots(r)]


def candidate_sections():
    """What a candidate's training reads; final.epochs only when it sets the death-rate decay."""
    return ["seed", "data.train_tokens", "model", "train", "sparse",
            *(["final"] if config["sparse"]["decay_epochs"] is None else [])]


def pool_inputs(wildcards):
    """Round 0's pool needs nothing; a later pool needs the previous round's ranking and proposals."""
    r = int(wildcards.r)
    if r == 0:
        return []
    return [f"{RESULTS}/rounds/r{two(r - 1)}/ranking.csv", f"{RESULTS}/rounds/r{two(r - 1)}/proposals.json"]


def parent_summaries(wildcards):
    """A survivor continues from a checkpoint of the previous round: that round's trainings are inputs."""
    r = int(wildcards.r)
    return slot_train_summaries(r - 1) if r > 0 else []


def rank_inputs(wildcards):
    r = int(wildcards.r)
    return {
        "pool": f"{RESULTS}/rounds/r{two(r)}/pool.json",
        "train": slot_train_summaries(r),
        "spectra": [f for q in range(r + 1) for f in slot_spectra_files(q)],
        "dense": f"{RESULTS}/dense/spectra.json",
        "dense_metrics": f"{RESULTS}/dense/metrics.jsonl",
    }


def final_pool_inputs(wildcards):
    if not PLAN.rounds:
        return []  # search.mode full: the initial pool goes straight to the final training
    last = len(PLAN.rounds) - 1
    return [f"{RESULTS}/rounds/r{two(last)}/ranking.csv", *slot_train_summaries(last)]


def final_train_summaries():
    return [f"{FINAL}/f{two(f)}/summary.json" for f in range(PLAN.final_pool)]


def select_inputs(wildcards):
    inputs = {"pool": f"{FINAL}/pool.json", "final": final_train_summaries()}
    if PLAN.rounds:
        inputs["rankings"] = [f"{RESULTS}/rounds/r{two(r)}/ranking.csv" for r in range(len(PLAN.rounds))]
        inputs["dense"] = f"{RESULTS}/dense/spectra.json"
    return inputs


def correlation_summaries():
    """Initial candidates trained to the end for the report's correlation (report.correlation_candidates)."""
    if not PLAN.rounds:
        return []
    k = min(config["report"]["correlation_candidates"], PLAN.rounds[0].pool)
    return [f"{RESULTS}/correlation/c{two(c)}/summary.json" for c in range(k)]


def report_inputs(wildcards):
    """The finished run: selection, final pool and trainings, correlation study, and with
    selection rounds the dense reference and every round's pool, ranking, trainings and spectra."""
    inputs = {
        "selected": f"{FINAL}/selected.json",
        "pool": f"{FINAL}/pool.json",
        "final": final_train_summaries(),
        "correlation": correlation_summaries(),
        "compare": sorted(glob.glob(f"{RESULTS}/compare/*/final/selected.json")),
    }
    if PLAN.rounds:
        inputs["dense"] = [f"{RESULTS}/dense/summary.json", f"{RESULTS}/dense/spectra.json"]
        inputs["dense_final"] = f"{RESULTS}/dense-final/summary.json"
        inputs["rounds"] = [
            f
            for r in range(len(PLAN.rounds))
            for f in (
                f"{RESULTS}/rounds/r{two(r)}/pool.json",
                f"{RESULTS}/rounds/r{two(r)}/ranking.csv",
                *slot_train_summaries(r),
                *slot_spectra_files(r),
            )
        ]
    return inputs


def comparison_overrides(method):
    """`--set` options that turn this run's params into one comparison method's (own results folder)."""
    if method not in COMPARISON:
        raise WorkflowError(f"comparison method {method!r}: allowed are {', '.join(COMPARISON)}")
    sets = {f"search.{k}": v for k, v in COMPARISON[method].items()}
    sets.update({"results": f"{RESULTS}/compare/{method}", "report.correlation_candidates": 0})
    return " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in sets.items())


def compare_inputs(wildcards):
    """Every comparison run, and this run's own results (its report's rows)."""
    return {
        **report_inputs(wildcards),
        "runs": expand(f"{RESULTS}/compare/{{method}}/final/selected.json", method=COMPARISON),
    }


def final_outputs():
    """What `rule all` asks for."""
    dense_final = [f"{RESULTS}/dense-final/summary.json"] if PLAN.rounds else []
    return [f"{FINAL}/selected.json", *dense_final, *correlation_summaries()]
