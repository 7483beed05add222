"""The `lsh` command line: its subcommands, every flag with its type and bound, and the dispatch to the
handlers of lsh/commands.py (one per subcommand, each calling a stage).

Every subcommand takes `--params FILE` (default `params.yaml`) and repeated
`--set key.path=value`; both are validated against the one schema before any work. An
`LshError` (or a file-system error) is printed as one clean message (exit status 2), never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lsh import commands, config, layout, numerics, params_file, serve
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import Layout

log = logging.getLogger("lsh")


def _cores() -> int:
    """The cores this process may run on (a SLURM job's allocation, not the node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _schema_maximum(section: str, key: str) -> int:
    """A params key's maximum as the schema defines it: a flag that overrides the key has the same bound."""
    return int(config.load_schema()["properties"][section]["properties"][key]["maximum"])


def _count(low: int, what: str, high: int | Callable[[], int] | None = None, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from low to high (a callable: known when the flag is read), refused
    by name otherwise, before any work: a count beyond any real use would start it and never end."""

    def parse(text: str) -> int:
        top = high() if callable(high) else high
        try:
            value = float(text) if len(text) <= 40 else math.nan
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value.is_integer() and low <= value and (top is None or value <= top)):
            allowed = f">= {low}" if top is None else f"from {low} to {top}{why}"
            raise argparse.ArgumentTypeError(f"{params_file.show(text)} is not allowed: "
                                             f"{what} must be a whole number {allowed}")
        return int(value)

    return parse


MESSAGE_CHARACTERS = 2000  # an error message's most: whatever a value expands to, the message stays readable
EPOCHS = _count(0, "the number of epochs", _schema_maximum("final", "epochs"))
THREADS = _count(1, "the number of threads", _cores, " (the cores this process may use)")
WORKERS = _count(1, "--workers", _cores, " (the cores this process may use)")
SEED_INDEX = _count(0, "--seed-index", _schema_maximum("study", "seeds") - 1)


def _round_or_final(text: str) -> int | str:
    """An argparse type for a pool's round: a whole number >= 0, or `final`."""
    return "final" if text == "final" else _count(0, "--round (or `final`)", _schema_maximum("search", "n"))(text)


def _exponents_flag(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text) if len(text) <= 20 else 0  # more digits than any state has units
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{params_file.show(text)}: expected an integer >= 1 or all")
    return value


# `lsh search <step>`: the steps of the LSH search, one per workflow rule


# `lsh study <step>` and `lsh replay`: the evidence study, one per workflow rule


# -----------------------------------------------------------------------------
# The parser


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--params", metavar="FILE",
                        help="params file (default: params.yaml; for a command reading a run, the run's own)")
    parent.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one param, e.g. --set data.train_tokens=20000 (repeatable)")
    return parent


def _step_adder(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
    """A function adding one step (a sub-subcommand with its handler) under `p`."""
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, text: str, func: Callable) -> argparse.ArgumentParser:
        q = steps.add_parser(name, parents=[common], help=text)
        q.set_defaults(func=func)
        return q

    return step


def _search_steps(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    step = _step_adder(p, common)
    q = step("pool", "a round's pool (0: the proposer's initial n) or the final pool", commands.cmd_search_pool)
    q.add_argument("--round", required=True, type=_round_or_final, help="round number, or final")
    q.add_argument("--results", default="results", metavar="DIR", help="the run's results folder")
    q.add_argument("--out", required=True, metavar="FILE")
    for name, text, func in (("train", "train one pool slot's candidate", commands.cmd_search_train),
                             ("train-to-final", "train a round-0 candidate on to final.epochs (correlation study)",
                              commands.cmd_search_train_to_final),
                             ("spectra", "spectra of a slot's new checkpoints", commands.cmd_search_spectra)):
        q = step(name, text, func)
        q.add_argument("--pool", required=True, metavar="FILE")
        q.add_argument("--slot", required=True, type=_count(0, "--slot", _schema_maximum("search", "n") - 1),
                       metavar="S")
        q.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
        q.add_argument("--out", required=True, metavar="PATH")
        q.add_argument("--threads", type=THREADS, metavar="N")
        if name == "train":
            q.add_argument("--final", action="store_true",
                           help="the final training: keep the last and best epochs, test perplexity")
        else:
            q.add_argument("--train", required=True, metavar="DIR", help="the slot's (round-0) training folder")
        if name != "spectra":
            q.add_argument("--restart", action="store_true",
                           help="delete another run's checkpoints in the slot's folder instead of refusing them")
    q = step("dense-spectra", "spectra of the dense epochs 0..N", commands.cmd_search_dense_spectra)
    q.add_argument("--train", required=True, metavar="DIR")
    q.add_argument("--epochs", required=True, type=EPOCHS, metavar="N")
    q.add_argument("--data", metavar="DIR")
    q.add_argument("--out", required=True, metavar="FILE")
    q.add_argument("--threads", type=THREADS, metavar="N")
    for name, text, func in (("rank", "rank a round's candidates", commands.cmd_search_rank),
                             ("propose", "propose new candidates after a round", commands.cmd_search_propose)):
        q = step(name, text, func)
        q.add_argument("--round", required=True, type=_count(0, "--round", _schema_maximum("search", "n")))
        q.add_argument("--results", default="results", metavar="DIR")
        q.add_argument("--out", required=True, metavar="FILE")
        if name == "rank":
            q.add_argument("--dense", metavar="DIR", help="the dense reference's folder (default: RESULTS/dense)")
    q = step("select", "pick the best final candidate", commands.cmd_search_select)
    q.add_argument("--results", default="results", metavar="DIR")
    q.add_argument("--dense", metavar="DIR", help="the dense reference's folder (default: RESULTS/dense)")
    q.add_argument("--out", required=True, metavar="FILE")


def _study_steps(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    step = _step_adder(p, common)
    q = step("cell", "train one configuration of the table (or the dense reference) to final.epochs",
             commands.cmd_study_cell)
    q.add_argument("--config", required=True, metavar="ID", help="a table configuration (g00.., q000..) or dense")
    q.add_argument("--seed-index", type=SEED_INDEX, default=0, metavar="K",
                   help="the training seed: seed + K (0..study.seeds-1)")
    q.add_argument("--until", type=_count(0, "--until", _schema_maximum("final", "epochs")), metavar="EPOCH",
                   help="stop after this epoch (a partial cell, continued by a later call; default: final.epochs)")
    q.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--threads", type=THREADS, metavar="N")
    q = step("calibration", "does the regime let candidates learn before the first ranking? (cells to search.e0)",
             commands.cmd_study_calibration)
    q.add_argument("--cells", required=True, metavar="DIR", help="the folder of cells (<config>/s<K>/) to read")
    q.add_argument("--seed-index", type=SEED_INDEX, default=0, metavar="K")
    q.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    q.add_argument("--out", required=True, metavar="DIR")
    q = step("table", "gather the cells into the table (table.csv, spectra.npz, table.json)", commands.cmd_study_table)
    q.add_argument("--results", metavar="DIR",
                   help="the results folder whose study/table/ cells to gather when --cells is not given "
                        "(default: the params' results)")
    q.add_argument("--cells", nargs="+", metavar="FILE",
                   help="the cells' rows.json (default: every cell under RESULTS)")
    q.add_argument("--data", metavar="DIR",
                   help="prepared data: check that every cell was trained as these params train on it")
    q.add_argument("--out", required=True, metavar="DIR")
    q = step("ls-samples", "the spectrum from study.ls_samples validation samples (paper Table 4)",
             commands.cmd_study_ls_samples)
    q.add_argument("--table", required=True, metavar="DIR")
    q.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    q.add_argument("--out", required=True, metavar="FILE")
    q.add_argument("--threads", type=THREADS, metavar="N")
    q = step("report", "the study's summary.md, tables and figures", commands.cmd_study_report)
    q.add_argument("--table", required=True, metavar="DIR")
    q.add_argument("--replays", required=True, metavar="FILE")
    q.add_argument("--anytime", required=True, metavar="FILE")
    q.add_argument("--sensitivity", required=True, metavar="FILE", help="the replay step's variations of the verdict")
    q.add_argument("--samples", required=True, metavar="FILE", help="the ls-samples step's CSV")
    q.add_argument("--out", required=True, metavar="DIR")
    q = step("horizon", "this table against the shorter study's (study.shorter): the horizon comparison",
             commands.cmd_study_horizon)
    q.add_argument("--table", required=True, metavar="DIR", help="this study's table")
    q.add_argument("--shorter", required=True, metavar="DIR",
                   help="the shorter study's table of the same configurations (the study_shorter_table rule's)")
    q.add_argument("--cells", nargs="*", default=[], metavar="FILE",
                   help="this table's cells' rows.json: the environment.json beside each names its machine")
    q.add_argument("--out", required=True, metavar="DIR")


def _schema_choices(section: str, key: str) -> list:
    """A params key's allowed values as the schema defines them: the one definition of the choices (the
    library's tables are held equal to it), readable without importing torch before the numerics caps."""
    return list(config.load_schema()["properties"][section]["properties"][key]["enum"])


def _add_params_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """params, environment, prepare: the commands that train nothing."""
    p = sub.add_parser("params", parents=[common], help="print the validated params")
    p.set_defaults(func=commands.cmd_params)

    p = sub.add_parser("environment", parents=[common],
                       help="what this machine computes with: numerics, CPU capability, versions (a run's record)")
    p.add_argument("--out", metavar="FILE", help="JSON file to write (default: print it)")
    p.set_defaults(func=commands.cmd_environment)

    p = sub.add_parser("prepare", parents=[common], help="PTB text -> token ids, vocabulary and meta.json")
    p.add_argument("--raw", metavar="DIR", help="raw text folder (default: data.raw)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: data.prepared)")
    p.set_defaults(func=commands.cmd_prepare)


def _add_train_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common],
                       help="train the params' model (dense, or sparse with a sparse section)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: epoch-NNN.pt, metrics.jsonl, summary.json")
    p.add_argument("--epochs", required=True, type=EPOCHS, metavar="N", help="train until N epochs in total")
    p.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (nothing to do once it is at --epochs); "
                        "another run's checkpoints are refused")
    p.add_argument("--restart", action="store_true",
                   help="delete the checkpoints in --out and start over (with --resume: only another run's)")
    p.add_argument("--keep", choices=layout.KEEP, default="all",
                   help="checkpoints kept: every epoch, or the last and the best")
    p.add_argument("--test", action="store_true", help="also compute the test perplexity at the end")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dense", action="store_true", help="ignore the params' sparse section: train the dense reference")
    p.add_argument("--init", metavar="CKPT",
                   help="continue from this checkpoint of another run folder (when --out has none)")
    p.add_argument("--spectra", action="store_true",
                   help="also leave the spectra of the checkpoints beside them (the params' lyapunov settings)")
    p.set_defaults(func=commands.cmd_train)


def cmd_serve(args: argparse.Namespace, params: Params) -> int:
    """Load the libraries once and run the commands handed to the socket in forked copies."""
    return serve.serve(Path(args.socket), main, exit_with_parent=args.exit_with_parent)


def _add_serve_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common],
                       help=f"a warm process for many short jobs: commands started with ${serve.VARIABLE}=SOCKET "
                            "run in its forked copies (the same results, without importing torch each time)")
    p.add_argument("--socket", required=True, metavar="PATH", help="the Unix socket to listen on")
    p.add_argument("--exit-with-parent", action="store_true", help="end when the process that started it ends")
    p.set_defaults(func=cmd_serve)


def _add_plan_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("plan", parents=[common], help="the search's rounds and budget, known before any training")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(func=commands.cmd_plan)


def _add_spectrum_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("spectrum", parents=[common],
                       help="Lyapunov spectrum of a checkpoint (flags override the params' lyapunov section)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="checkpoint file (its evaluation weights are used)")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON record to write")
    p.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    p.add_argument("--method", choices=_schema_choices("lyapunov", "method"), help="Jacobians: analytic or torch.func")
    p.add_argument("--samples", type=_count(1, "--samples", _schema_maximum("lyapunov", "samples")), metavar="K",
                   help="validation sequences")
    p.add_argument("--steps", type=_count(1, "--steps", _schema_maximum("lyapunov", "steps")), metavar="T",
                   help="accumulated steps")
    p.add_argument("--warmup", type=_count(0, "--warmup", _schema_maximum("lyapunov", "warmup")), metavar="W",
                   help="warm-up steps")
    p.add_argument("--exponents", type=_exponents_flag, metavar="k", help="k leading exponents, or all")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=commands.cmd_spectrum)


def _add_bench_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], help="benchmarks behind the README's performance figures")
    p.add_argument("what", choices=["train", "spectrum", "numerics"],
                   help="what to measure (numerics: portable against native, a training epoch and a spectrum)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--repeats", type=_count(1, "--repeats", 1000), default=5, metavar="N",
                   help="interleaved repeats; medians are reported")
    p.add_argument("--no-paper", action="store_true", help="skip the paper-size model")
    # one choice list for both benchmarks: train.device and lyapunov.device allow the same devices
    p.add_argument("--device", choices=_schema_choices("train", "device"),
                   help="where to run both benchmarks (default: train.device and lyapunov.device)")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=commands.cmd_bench)


def _add_report_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help="the run's report: tables and figures (results/report/)")
    p.add_argument("--results", default="results", metavar="DIR", help="the run's results folder (default: results)")
    p.add_argument("--out", default="results/report", metavar="DIR", help="report folder (default: results/report)")
    p.add_argument("--dense", metavar="DIR", help="the dense reference's folder (default: RESULTS/dense)")
    p.add_argument("--compare", nargs="*", default=[], metavar="DIR",
                   help="results folders of runs to table beside this one")
    p.add_argument("--data", metavar="DIR",
                   help="prepared data: each ranking judged against its unigram perplexity (default: data.prepared)")
    p.set_defaults(func=commands.cmd_report)


def _add_step_groups(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """search and study: commands whose steps are the workflow's rules."""
    p = sub.add_parser("search", help="the LSH search's steps (what the workflow rules call)")
    _search_steps(p, common)

    p = sub.add_parser("study", help="the evidence study's steps: the benchmark table and its report")
    _study_steps(p, common)


def _add_replay_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("replay", parents=[common],
                       help="replay every selection strategy study.repeats times on a table")
    p.add_argument("--table", required=True, metavar="DIR",
                   help="the table's folder (table.csv, spectra.npz, table.json)")
    p.add_argument("--replays", required=True, metavar="FILE", help="every replay's outcome (CSV)")
    p.add_argument("--anytime", required=True, metavar="FILE",
                   help="the methods' incumbent after each candidate-epoch (CSV)")
    p.add_argument("--sensitivity", required=True, metavar="FILE",
                   help="the headline comparison at other e0, without each configuration, with other LS rankers (CSV)")
    p.add_argument("--repeats", type=_count(1, "--repeats", _schema_maximum("study", "repeats")), metavar="R",
                   help="override study.repeats")
    p.add_argument("--workers", type=WORKERS, default=1, metavar="N", help="processes replaying in parallel")
    p.set_defaults(func=commands.cmd_replay)


# The commands in the order `lsh --help` lists them
_COMMAND_GROUPS = (_add_params_commands, _add_train_command, _add_plan_command, _add_spectrum_command,
                   _add_bench_command, _add_report_command, _add_step_groups, _add_replay_command, _add_serve_command)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; built for every call, so it imports nothing heavy (see numerics)."""
    parser = argparse.ArgumentParser(prog="lsh", description="LS-based hyperpruning of recurrent language models.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for add in _COMMAND_GROUPS:
        add(sub, common)
    return parser


def _load_params(args: argparse.Namespace) -> dict:
    """The params a command runs with: --params (default params.yaml) and --set; a command that reads an
    existing run (--results) takes that run's resolved params, which --params and --set may not change."""
    results = getattr(args, "results", None)
    resolved = Layout(results).resolved_params if results else None
    if resolved is not None and (resolved.exists() or resolved.is_symlink()):
        return config.run_params(resolved, args.params, args.overrides)
    return config.load_params(args.params or "params.yaml", args.overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    step = f" {args.step}" if getattr(args, "step", None) else ""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format=f"lsh {args.command}{step}: %(message)s", stream=sys.stderr)
    logging.getLogger("hyperopt").setLevel(logging.WARNING)  # two INFO lines per suggest(): 37 000 in a study's replay
    func: Callable[[argparse.Namespace, Params], int] = args.func
    try:
        params = Params.from_dict(_load_params(args))
        for note in numerics.apply(params.numerics):  # before any handler imports torch or numpy
            log.warning("%s", note)
        if argv is None and args.command != "serve":  # a command line, not a call: $LSH_SERVE may run it
            code = serve.delegate(sys.argv[1:])
            if code is not None:
                return code
        return func(args, params)
    except (LshError, OSError) as e:  # an OSError not met elsewhere: the file system's, one line naming the path
        print(f"lsh {args.command}{step}: error: {params_file.cut(str(e), MESSAGE_CHARACTERS)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lsh {args.command}: interrupted", file=sys.stderr)
        return 130
