# All of the workflow's Python: config validation, the runs and their schedules, the paths
# (from lsh.layout, the one definition of the results folder), and the helpers rules call.
import json
import os
import re
import shlex
import sys
from copy import deepcopy
from functools import cached_property
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from lsh.config import Params, SearchConfig, load_params, validate as describe_problems, write_resolved
from lsh.params_file import ConfigError
from lsh.errors import LshError
from lsh.layout import (CELL_ROWS, CURVES, HORIZON_REPORT_FILES, METRICS, PREPARED_META, SPECTRA, SPLIT_IDS,
                        STUDY_REPORT_FILES, SUMMARY, TABLE_FILES, VOCAB, Layout, cell_folder, report_files, two)
from lsh.layout import REPORT
from lsh.schedule import plan as search_plan
from lsh.study.cells import cell_ids

sys.path.insert(0, os.path.join(workflow.current_basedir, "..", "scripts"))
# what each job reads (params keys, code), shared with the DVC stages
import rule_reads


# One schema for Snakemake and the `lsh` command line (lsh/config.py reads the same file).
# The package's check comes first only for its messages: one line per bad key, naming
# the value and what is allowed, before any job runs. It also gives back the numbers as
# the schema means them (6.0 for an integer key is 6), from presets and --config alike.
try:
    config.update(describe_problems(config, "the Snakemake config", text_numbers=True))
except ConfigError as e:
    raise WorkflowError(str(e)) from None
validate(config, "../schemas/params.schema.yaml")

# Rules call the `lsh` installed beside this Snakemake, also when Snakemake is started
# as .venv/bin/snakemake without an activated venv.
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")
ENV = "../envs/lsh.yaml"

PROJECT = os.path.abspath(os.path.join(workflow.current_basedir, "..", ".."))  # the package's sources: PROJECT/lsh
PREPARED = config["data"]["prepared"]
SPLITS = ["train", "valid", "test"]
MAIN = Layout(config["results"])
LOGS = MAIN.logs
# The comparison set of the paper's Table 1 (`snakemake compare`): each method a run of
# its own under <results>/compare/<method>/, the search section overridden as given.
COMPARISON = yaml.safe_load(Path(workflow.current_basedir, "..", "comparison.yaml").read_text())


class Run:
    """One run of the workflow: the main one, or a method of the comparison set. Every job
    reads the run's validated params from one file, written once its first job is planned
    (and left untouched when it has not changed): the preset, --config overrides and all,
    and nothing from ./params.yaml. It is no rule's input, so writing it reruns nothing."""

    def __init__(self, params):
        self.params = params
        self.layout = Layout(params["results"])
        try:
            self.plan = search_plan(SearchConfig(**params["search"]))
        except LshError as e:
            raise WorkflowError(str(e)) from None

    @cached_property
    def resolved(self):
        return write_resolved(self.params, self.layout.resolved_params)

    def reads(self, *keys):
        """The params a job reads, as one canonical string (Snakemake reruns a job when it changes)."""
        return json.dumps({key: lookup(self.params, key) for key in keys}, sort_keys=True)


def lookup(params, dotted):
    """params["a"]["b"] for "a.b"."""
    for part in dotted.split("."):
        params = params[part]
    return params


def method_params(method):
    if method not in COMPARISON:
        raise WorkflowError(f"comparison method {method!r}: allowed are {', '.join(COMPARISON)}")
    params = deepcopy(config)
    params["search"].update(COMPARISON[method])
    params["results"] = str(MAIN.compare(method).root)
    params["report"]["correlation_candidates"] = 0
    return params


RUNS = {str(MAIN.root): Run(config), **{str(MAIN.compare(m).root): Run(method_params(m)) for m in COMPARISON}}
PLAN = RUNS[str(MAIN.root)].plan
# The dense reference is shared: the comparison set differs from the run only in its search, so
# every run with rounds compares against the same epochs (a `full` run has none).
DENSE, DENSE_EPOCHS = MAIN.dense, max(run_.plan.last_epoch for run_ in RUNS.values())

# Path patterns: {root} is a run's results folder, {r}, {s}, {f}, {c} two-digit numbers.
P = Layout("{root}")


def run_of(wildcards):
    return RUNS[getattr(wildcards, "root", str(MAIN.root))]


def lsh_params(rule):
    """A rule's params for a job that runs `lsh`: `cfg` hands it its run's resolved params
    file, `reads` the params keys the rule reads (workflow/scripts/rule_reads.py) and `code` a
    hash of the package sources its command runs, so that Snakemake reruns it exactly when one
    of them changes (params are a rerun trigger), as DVC reruns its stage.

    `cfg` is the flag and the shell-quoted path, so the rules write {params.cfg} without :q.
    It takes `output` (unused) so that Snakemake counts it as derived and leaves it out of the
    rerun trigger: the path names the results folder, and a new `results:` must not rerun what
    does not depend on it (the shared prepared data). What a job reads is `reads`."""
    keys = rule_reads.keys(rule, config)
    return {
        "cfg": lambda wildcards, output: f"--params {shlex.quote(str(run_of(wildcards).resolved))}",
        "reads": lambda w: run_of(w).reads(*keys),
        "code": rule_reads.code_hash(PROJECT, rule_reads.RULES[rule].module),
    }


def kept_if_failed(outputs):
    """Outputs flagged update(): Snakemake deletes a job's existing outputs before it runs and again
    when it fails ("possibly corrupted"); these stay in place while it runs, are backed up, and are
    restored if it fails (`lsh` writes every file atomically, so none is ever half-written).

    Used where the outputs are the finished work itself: the prepared data, shared by every run.
    Not elsewhere, for a catch: Snakemake records a restored output as made by the failed job (its
    params, code and input), so the next run takes it as current. For the prepared data, a training
    refuses data that another data.train_tokens made (lsh.data.check_prepared). A training's, a cell's
    or a spectrum's work (checkpoints and spectra beside them) is no declared output, so Snakemake
    never deletes it, and a restored summary taken as current would hide a rerun from the jobs after."""
    return update(outputs)


def prepared_files():
    return [
        *(f"{PREPARED}/{SPLIT_IDS.format(split=split)}" for split in SPLITS),
        f"{PREPARED}/{VOCAB}",
        f"{PREPARED}/{PREPARED_META}",
    ]


def train_mem_mb(wildcards, attempt):
    """A generous memory estimate from the model size: weights, gradients, averages, logits."""
    m = config["model"]
    layers = m["layers"] if m["type"] == "lstm" else 2 * m["depth"]
    weights = 10_000 * m["emb"] * 2 + layers * 8 * m["hidden"] ** 2
    return int(1500 + weights * 4 * 8 / 1e6) * attempt


def slot_train_summaries(run, r):
    """A slot's training is marked done by its summary.json, written last; its checkpoints live beside it."""
    return [str(run.layout.slot_train(r, s) / SUMMARY) for s in range(run.plan.rounds[int(r)].pool)]


def slot_spectra_files(run, r):
    return [str(run.layout.slot_spectra(r, s)) for s in range(run.plan.rounds[int(r)].pool)]


def dense_outputs():
    return {"spectra": str(DENSE / SPECTRA), "metrics": str(DENSE / METRICS), "curves": str(DENSE / CURVES),
            "summary": str(DENSE / SUMMARY)}


def pool_inputs(wildcards):
    """Round 0's pool needs nothing; a later pool needs the previous round's ranking and proposals."""
    run, r = run_of(wildcards), int(wildcards.r)
    return [] if r == 0 else [str(run.layout.ranking(r - 1)), str(run.layout.proposals(r - 1))]


def parent_summaries(wildcards):
    """A survivor continues from a checkpoint of the previous round: that round's trainings are inputs."""
    r = int(wildcards.r)
    return slot_train_summaries(run_of(wildcards), r - 1) if r > 0 else []


def rank_inputs(wildcards):
    run, r = run_of(wildcards), int(wildcards.r)
    return {
        "pool": str(run.layout.pool(r)),
        "train": slot_train_summaries(run, r),
        "spectra": [f for q in range(r + 1) for f in slot_spectra_files(run, q)],
        "dense": str(DENSE / SPECTRA),
        "dense_metrics": str(DENSE / METRICS),
    }


def final_pool_inputs(wildcards):
    run = run_of(wildcards)
    if not run.plan.rounds:
        return []  # search.mode full: the initial pool goes straight to the final training
    last = len(run.plan.rounds) - 1
    return [str(run.layout.ranking(last)), *slot_train_summaries(run, last)]


def final_train_summaries(run):
    return [str(run.layout.final_train(f) / SUMMARY) for f in range(run.plan.final_pool)]


def select_inputs(wildcards):
    run = run_of(wildcards)
    inputs = {"pool": str(run.layout.final_pool), "final": final_train_summaries(run)}
    if run.plan.rounds:
        inputs["rankings"] = [str(run.layout.ranking(r)) for r in range(len(run.plan.rounds))]
        inputs["dense"] = str(DENSE / SPECTRA)
    return inputs


def correlation_summaries():
    """Initial candidates trained to the end for the report's correlation (report.correlation_candidates)."""
    if not PLAN.rounds:
        return []
    k = min(config["report"]["correlation_candidates"], PLAN.rounds[0].pool)
    return [str(MAIN.correlation_train(c) / SUMMARY) for c in range(k)]


def report_inputs(wildcards=None):
    """The finished run: selection, final pool and trainings, correlation study, and with
    selection rounds the dense reference and every round's pool, ranking, trainings and spectra."""
    run = RUNS[str(MAIN.root)]
    inputs = {
        "data": prepared_files(),  # the unigram perplexity each ranking is judged against (lsh.report.regime)
        "environment": str(MAIN.environment),
        "selected": str(MAIN.selected),
        "pool": str(MAIN.final_pool),
        "final": final_train_summaries(run),
        "correlation": correlation_summaries(),
    }
    if PLAN.rounds:
        inputs["dense"] = [str(DENSE / SUMMARY), str(DENSE / SPECTRA)]
        inputs["dense_final"] = str(MAIN.dense_final / SUMMARY)
        inputs["rounds"] = [
            f
            for r in range(len(PLAN.rounds))
            for f in (str(MAIN.pool(r)), str(MAIN.ranking(r)), *slot_train_summaries(run, r), *slot_spectra_files(run, r))
        ]
    return inputs


def compare_inputs(wildcards):
    """Every comparison run's selection, and this run's own results (its report's rows)."""
    return {**report_inputs(wildcards), "runs": [str(MAIN.compare(m).selected) for m in COMPARISON]}


def root_pattern():
    """The results folders a {root} wildcard may stand for: this run and its comparison runs."""
    return "|".join(re.escape(root) for root in RUNS)


def final_outputs():
    """What `rule all` asks for."""
    dense_final = [str(MAIN.dense_final / SUMMARY)] if PLAN.rounds else []
    return [str(MAIN.environment), str(MAIN.selected), *dense_final, *correlation_summaries()]


def study_cells(wildcards=None):
    """Every cell of the study's benchmark table (the main run's params): rows.json, recorded last.
    An input function, so that a study setting the space cannot satisfy fails the study only."""
    params = Params.from_dict(config)
    try:
        ids = cell_ids(params)
    except LshError as e:
        raise WorkflowError(str(e)) from None
    def cell(cid, k):  # a finished cell kept with the project (study.cells) is used as it is
        kept = params.study.cells and cell_folder(params.study.cells, cid, k) / CELL_ROWS
        return str(kept) if kept and kept.is_file() else str(MAIN.table_cell(cid, k) / CELL_ROWS)

    return [cell(cid, k) for cid in ids for k in range(params.study.seeds)]


def shorter_study():
    """The params of the study at the shorter horizon (study.shorter), validated; None without one."""
    path = config["study"]["shorter"]
    if path is None:
        return None
    try:
        return Params.from_dict(load_params(path))
    except (ConfigError, LshError) as e:
        raise WorkflowError(f"study.shorter: {e}") from None


def shorter_cells(wildcards=None):
    """The shorter study's committed cells of this study's configurations and training seeds: the horizon
    comparison trains nothing, so a missing one is an error naming it."""
    shorter, params = shorter_study(), Params.from_dict(config)
    if shorter is None:
        raise WorkflowError("study.shorter is null: the horizon comparison needs the shorter study's params file")
    if shorter.study.cells is None:
        raise WorkflowError(f"study.shorter: {config['study']['shorter']} has no study.cells: the horizon "
                            "comparison reads the shorter study's finished cells from there")
    cells = [cell_folder(shorter.study.cells, cid, k) / CELL_ROWS for cid in cell_ids(params)
             for k in range(params.study.seeds)]
    if missing := [str(c) for c in cells if not c.is_file()]:
        raise WorkflowError(f"study.shorter: {len(missing)} of the shorter study's cells are not there "
                            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): the horizon "
                            "comparison needs every configuration of this study with the same training seeds")
    return [str(c) for c in cells]


def shorter_overrides():
    """The shorter study's params narrowed to this study's configurations and seeds (`lsh --set`)."""
    sets = [f"study.seeds={config['study']['seeds']}"]
    if config["study"]["configs"] is not None:
        sets.append("study.configs=[" + ",".join(config["study"]["configs"]) + "]")
    return " ".join(f"--set {shlex.quote(s)}" for s in sets)


def study_outputs():
    """What the study target makes: the report, and the horizon comparison when study.shorter names one."""
    made = [str(MAIN.study_report / name) for name in STUDY_REPORT_FILES]
    if config["study"]["shorter"] is None:
        return made
    return made + [str(MAIN.horizon_report / name) for name in HORIZON_REPORT_FILES]
