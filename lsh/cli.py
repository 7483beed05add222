"""The `lsh` command line: thin wrappers that read params and call the library.

Every subcommand takes `--params FILE` (default `params.yaml`) and repeated
`--set key.path=value`; both are validated against the one schema before any work.
An `LshError` is printed as one clean message (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
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
