"""The `lsh` command line: thin wrappers that read params and call the library.

Every subcommand takes `--params FILE` (default `params.yaml`) and repeated
`--set key.path=value`; both are validated against the one schema before any work.
An `LshError` is printed as one clean message (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable

import yaml

from lsh import config
from lsh.errors import LshError

log = logging.getLogger("lsh")


def _count(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= low, refused by name otherwise."""

    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value.is_integer() and value >= low):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: {what} must be a whole number >= {low}")
        return int(value)

    return parse


EPOCHS = _count(0, "the number of epochs")
THREADS = _count(1, "the number of threads")


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default: params.yaml)")
    parent.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one param, e.g. --set data.train_tokens=20000 (repeatable)",
    )
    return parent


def cmd_params(args: argparse.Namespace, params: dict) -> int:
    """Print the validated params, overrides applied."""
    sys.stdout.write(yaml.safe_dump(params, sort_keys=False))
    return 0


def cmd_prepare(args: argparse.Namespace, params: dict) -> int:
    from lsh import data

    cfg = params["data"]
    data.prepare(
        args.raw or cfg["raw"],
        args.out or cfg["prepared"],
        verify=cfg["verify"],
        allow_download=cfg["download"],
        url=cfg["url"],
        train_tokens=cfg["train_tokens"],
    )
    return 0


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_train(args: argparse.Namespace, params: dict) -> int:
    from lsh import data, training

    _set_threads(args.threads)
    corpus = data.load_corpus(args.data or params["data"]["prepared"], params["data"])
    summary = training.train(
        params, corpus, args.out, args.epochs, resume=args.resume, restart=args.restart, keep=args.keep,
        test=args.test, dense=args.dense, init=args.init,
    )
    log.info("%s: %s after %d epochs, best valid ppl %s (epoch %s)%s", args.out, summary["status"],
             summary["epochs"], summary["best_valid_ppl"], summary["best_epoch"],
             f", test ppl {summary['test_ppl']}" if "test_ppl" in summary else "")
    return 0


def cmd_plan(args: argparse.Namespace, params: dict) -> int:
    from lsh import search

    plan = search.plan(params["search"])
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(f"{'round':>5} {'pool':>5} {'survivors':>9} {'new':>4} {'epochs':>7} {'cumulative':>10}")
    for r in plan.rounds:
        print(f"{r.round:>5} {r.pool:>5} {r.survivors:>9} {r.new:>4} {r.candidate_epochs:>7} {r.cumulative_candidate_epochs:>10}")
    print(f"total candidate-epochs for selection: {plan.total_candidate_epochs}")
    print(f"dense reference epochs (last compared epoch): {plan.last_epoch}")
    final = params["final"]["epochs"]
    extra = plan.final_pool * max(0, final - plan.last_epoch)
    print(f"final training: {plan.final_pool} survivors to epoch {final} (at most {extra} more candidate-epochs)")
    if plan.rounds and params["search"]["e0"] < 2:
        print("note: with search.e0 = 1 a new candidate is scored before its first topology update, so its death, "
              "growth and redistribution modes cannot affect its first ranking (only its sparse init can)")
    return 0


def cmd_dvc_yaml(args: argparse.Namespace, params: dict) -> int:
    """Write (or check) the DVC stages the params' schedule implies."""
    from pathlib import Path

    from lsh import dvc_stages, files

    text = dvc_stages.render(params)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            raise LshError(f"{args.out} is not what these params generate: run `lsh dvc-yaml --out {args.out}`")
        log.info("%s is current", args.out)
    elif args.out == "-":
        sys.stdout.write(text)
    else:
        files.write_text(args.out, text)
        log.info("wrote %s (%d stages)", args.out, text.count("    cmd: "))
    return 0


def cmd_spectrum(args: argparse.Namespace, params: dict) -> int:
    import dataclasses

    from lsh import files, lyapunov

    _set_threads(args.threads)
    settings = lyapunov.Settings.from_params(
        params, method=args.method, samples=args.samples, steps=args.steps, warmup=args.warmup
    )
    if args.exponents is not None:  # "all" overrides a k in the params
        settings = dataclasses.replace(settings, exponents=None if args.exponents == "all" else args.exponents)
    record = lyapunov.checkpoint_spectrum(args.checkpoint, args.data or params["data"]["prepared"], settings, params["seed"])
    files.write_json(args.out, record)
    top = record["exponents"][0] if record["exponents"] else None
    log.info("%s: %s, %s exponents, largest %s, %.2f s", args.out, record["status"],
             len(record["exponents"] or []), f"{top:.4f}" if top is not None else "-", record["seconds"])
    return 0


def _exponents_flag(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1 or all")
    return value


def cmd_bench(args: argparse.Namespace, params: dict) -> int:
    from lsh import bench

    _set_threads(args.threads)
    if args.what == "train":
        result = bench.bench_train(params, paper=not args.no_paper, repeats=args.repeats)
    elif args.what == "spectrum":
        result = bench.bench_spectrum(params, paper=not args.no_paper, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "spectrum":
        for key, value in result.items():
            print(f"{key}: {value}")
    else:
        for name, size in result["sizes"].items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in size.items() if k.endswith(("_per_s", "overhead", "_dense"))))
    return 0


def cmd_search(args: argparse.Namespace, params: dict) -> int:
    """The steps of the LSH search, one per workflow rule."""
    from pathlib import Path

    from lsh import data, files, lyapunov, search

    _set_threads(getattr(args, "threads", None))
    layout = search.Layout(Path(args.results)) if getattr(args, "results", None) else None
    step = args.step
    if step == "pool":
        if args.round == "final":
            rounds = len(search.plan(params["search"]).rounds)
            pool = search.initial_pool(params) if rounds == 0 else search.next_pool(params, layout, rounds)
        else:
            r = int(args.round)
            pool = search.initial_pool(params) if r == 0 else search.next_pool(params, layout, r)
        files.write_json(args.out, pool)
        log.info("%s: %d slots (%s)", args.out, len(pool["slots"]),
                 ", ".join(e["candidate"] if e else "empty" for e in pool["slots"]))
    elif step == "train":
        pool = search.read_json(Path(args.pool))
        corpus = data.load_corpus(args.data or params["data"]["prepared"], params["data"])
        summary = search.train_slot(params, pool, args.slot, Path(args.out), corpus, final=args.final, restart=args.restart)
        log.info("%s: %s, %s epochs trained", args.out, summary["status"], summary.get("epochs_trained"))
    elif step == "train-to-final":
        pool = search.read_json(Path(args.pool))
        corpus = data.load_corpus(args.data or params["data"]["prepared"], params["data"])
        summary = search.train_to_final(params, pool, args.slot, Path(args.train), Path(args.out), corpus,
                                        restart=args.restart)
        log.info("%s: %s, %s epochs trained", args.out, summary["status"], summary.get("epochs_trained"))
    elif step == "spectra":
        pool = search.read_json(Path(args.pool))
        settings = lyapunov.Settings.from_params(params)
        record = search.slot_spectra(params, pool, args.slot, Path(args.train), Path(args.data or params["data"]["prepared"]), settings)
        files.write_json(args.out, record)
        log.info("%s: %d spectra in %.1f s", args.out, len(record["spectra"]), record["seconds"])
    elif step == "dense-spectra":
        settings = lyapunov.Settings.from_params(params)
        record = search.dense_spectra(params, Path(args.train), Path(args.data or params["data"]["prepared"]), settings, args.epochs)
        files.write_json(args.out, record)
        log.info("%s: %d spectra in %.1f s", args.out, len(record["spectra"]), record["seconds"])
    elif step == "rank":
        ranking = search.rank_round(params, layout, int(args.round))
        files.write_text(args.out, ranking.to_csv(index=False))
        log.info("round %s ranking:\n%s", args.round, ranking[["rank", "candidate", "distance", "valid_ppl", "kept"]].to_string(index=False))
    elif step == "propose":
        proposals = search.propose_round(params, layout, int(args.round))
        files.write_json(args.out, proposals)
        log.info("%s: %s", args.out, ", ".join(f"{p['candidate']} {p['config']}" for p in proposals["proposals"]) or "none")
    elif step == "select":
        selected = search.select(params, layout)
        files.write_json(args.out, selected)
        log.info("selected %s %s: valid ppl %s, test ppl %s", selected["candidate"], selected["config"],
                 selected["valid_ppl"], selected["test_ppl"])
    return 0


def cmd_report(args: argparse.Namespace, params: dict) -> int:
    """The run's report: tables and figures from a finished run's results folder."""
    from lsh import report

    written = report.build_report(params, args.results, args.out)
    log.info("%s: %s", args.out, ", ".join(written["files"]))
    for note in written["notes"]:
        log.info("note: %s", note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsh", description="LS-based hyperpruning of recurrent language models.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    p = sub.add_parser("params", parents=[common], help="print the validated params")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("prepare", parents=[common], help="PTB text -> token ids, vocabulary and meta.json")
    p.add_argument("--raw", metavar="DIR", help="raw text folder (default: data.raw)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: data.prepared)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", parents=[common], help="train the params' model (dense, or sparse with a sparse section)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: epoch-NNN.pt, metrics.jsonl, summary.json")
    p.add_argument("--epochs", required=True, type=EPOCHS, metavar="N", help="train until N epochs in total")
    p.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (nothing to do once it is at --epochs); another run's checkpoints are refused")
    p.add_argument("--restart", action="store_true",
                   help="delete the checkpoints in --out and start over (with --resume: only another run's)")
    p.add_argument("--keep", choices=["all", "last"], default="all", help="checkpoints kept: every epoch, or the last and the best")
    p.add_argument("--test", action="store_true", help="also compute the test perplexity at the end")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dense", action="store_true", help="ignore the params' sparse section: train the dense reference")
    p.add_argument("--init", metavar="CKPT", help="continue from this checkpoint of another run folder (when --out has none)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plan", parents=[common], help="the search's rounds and budget, known before any training")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("dvc-yaml", parents=[common], help="generate dvc.yaml (a stage per phase and per round) from the params")
    p.add_argument("--out", default="-", metavar="FILE", help="file to write (default: standard output)")
    p.add_argument("--check", action="store_true", help="fail when FILE differs from what the params generate")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("spectrum", parents=[common], help="Lyapunov spectrum of a checkpoint (flags override the params' lyapunov section)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint file (its evaluation weights are used)")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON record to write")
    p.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    p.add_argument("--method", choices=["analytic", "autograd"], help="Jacobians: analytic or torch.func")
    p.add_argument("--samples", type=_count(1, "--samples"), metavar="K", help="validation sequences")
    p.add_argument("--steps", type=_count(1, "--steps"), metavar="T", help="accumulated steps")
    p.add_argument("--warmup", type=_count(0, "--warmup"), metavar="W", help="warm-up steps")
    p.add_argument("--exponents", type=_exponents_flag, metavar="k", help="k leading exponents, or all")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_spectrum)

    p = sub.add_parser("bench", parents=[common], help="benchmarks behind the README's performance figures")
    p.add_argument("what", choices=["train", "spectrum"], help="what to measure")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--repeats", type=_count(1, "--repeats"), default=5, metavar="N", help="interleaved repeats; medians are reported")
    p.add_argument("--no-paper", action="store_true", help="skip the paper-size model")
    p.add_argument("--threads", type=THREADS, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", parents=[common], help="the run's report: tables and figures (results/report/)")
    p.add_argument("--results", default="results", metavar="DIR", help="the run's results folder (default: results)")
    p.add_argument("--out", default="results/report", metavar="DIR", help="report folder (default: results/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("search", help="the LSH search's steps (what the workflow rules call)")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")
    q = steps.add_parser("pool", parents=[common], help="a round's pool (0: the proposer's initial n) or the final pool")
    q.add_argument("--round", required=True, help="round number, or final")
    q.add_argument("--results", default="results", metavar="DIR", help="the run's results folder")
    q.add_argument("--out", required=True, metavar="FILE")
    for name, text in (("train", "train one pool slot's candidate"), ("spectra", "spectra of a slot's new checkpoints"),
                       ("train-to-final", "train a round-0 candidate on to final.epochs (correlation study)")):
        q = steps.add_parser(name, parents=[common], help=text)
        q.add_argument("--pool", required=True, metavar="FILE")
        q.add_argument("--slot", required=True, type=_count(0, "--slot"), metavar="S")
        q.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
        q.add_argument("--out", required=True, metavar="PATH")
        q.add_argument("--threads", type=THREADS, metavar="N")
        if name == "train":
            q.add_argument("--final", action="store_true", help="the final training: keep the last and best epochs, test perplexity")
        else:
            q.add_argument("--train", required=True, metavar="DIR", help="the slot's (round-0) training folder")
        if name != "spectra":
            q.add_argument("--restart", action="store_true",
                           help="delete another run's checkpoints in the slot's folder instead of refusing them")
    q = steps.add_parser("dense-spectra", parents=[common], help="spectra of the dense epochs 0..N")
    q.add_argument("--train", required=True, metavar="DIR")
    q.add_argument("--epochs", required=True, type=EPOCHS, metavar="N")
    q.add_argument("--data", metavar="DIR")
    q.add_argument("--out", required=True, metavar="FILE")
    q.add_argument("--threads", type=THREADS, metavar="N")
    for name, text in (("rank", "rank a round's candidates"), ("propose", "propose new candidates after a round")):
        q = steps.add_parser(name, parents=[common], help=text)
        q.add_argument("--round", required=True, type=_count(0, "--round"))
        q.add_argument("--results", default="results", metavar="DIR")
        q.add_argument("--out", required=True, metavar="FILE")
    q = steps.add_parser("select", parents=[common], help="pick the best final candidate")
    q.add_argument("--results", default="results", metavar="DIR")
    q.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(func=cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"lsh {args.command}{' ' + args.step if getattr(args, 'step', None) else ''}: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace, dict], int] = args.func
    try:
        params = config.load_params(args.params, args.overrides)
        return func(args, params)
    except (LshError, OSError) as e:  # an OSError not met elsewhere: the file system's, one line naming the path
        step = f" {args.step}" if getattr(args, "step", None) else ""
        print(f"lsh {args.command}{step}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lsh {args.command}: interrupted", file=sys.stderr)
        return 130
