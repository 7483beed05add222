"""The `lsh` command line: thin wrappers that read params and call the library.

Every subcommand takes `--params FILE` (default `params.yaml`) and repeated
`--set key.path=value`; both are validated against the one schema before any work.
An `LshError` is printed as one clean message (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

import yaml

from lsh import config
from lsh.errors import LshError

log = logging.getLogger("lsh")


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
    corpus = data.load_corpus(args.data or params["data"]["prepared"])
    summary = training.train(
        params, corpus, args.out, args.epochs, resume=args.resume, keep=args.keep, test=args.test,
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
    return 0


def cmd_bench(args: argparse.Namespace, params: dict) -> int:
    from lsh import bench

    _set_threads(args.threads)
    if args.what == "train":
        result = bench.bench_train(params, paper=not args.no_paper, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, size in result["sizes"].items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in size.items() if k.endswith(("_per_s", "overhead", "_dense"))))
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
    p.add_argument("--epochs", required=True, type=int, metavar="N", help="train until N epochs in total")
    p.add_argument("--data", metavar="DIR", help="prepared data folder (default: data.prepared)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--keep", choices=["all", "last"], default="all", help="checkpoints kept: every epoch, or the last and the best")
    p.add_argument("--test", action="store_true", help="also compute the test perplexity at the end")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plan", parents=[common], help="the search's rounds and budget, known before any training")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("bench", parents=[common], help="benchmarks behind the README's performance figures")
    p.add_argument("what", choices=["train"], help="what to measure")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--repeats", type=int, default=5, metavar="N", help="interleaved repeats; medians are reported")
    p.add_argument("--no-paper", action="store_true", help="skip the paper-size model")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"lsh {args.command}: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace, dict], int] = args.func
    try:
        params = config.load_params(args.params, args.overrides)
        return func(args, params)
    except LshError as e:
        print(f"lsh {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lsh {args.command}: interrupted", file=sys.stderr)
        return 130
