"""What each `lsh` subcommand does: one handler per subcommand, reading its flags and the validated params
and calling its stage (lsh/stages/). The command line that dispatches to them, with every flag's type and
bound, is lsh/cli.py. A handler imports only what its stage needs, so a job that ranks or proposes never
pays for importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from lsh import numerics
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import Layout

log = logging.getLogger("lsh")


def _set_threads(threads: int | None) -> None:
    """torch's CPU threads, without importing torch for a job that may not need it (a spectra job
    whose training left the spectra behind): torch reads OMP_NUM_THREADS when it is imported."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


def _data_dir(args: argparse.Namespace, params: Params) -> Path:
    return Path(args.data or params.data.prepared)


def cmd_params(args: argparse.Namespace, params: Params) -> int:
    """Print the validated params, overrides applied."""
    sys.stdout.write(yaml.safe_dump(params.raw, sort_keys=False))
    return 0


def cmd_environment(args: argparse.Namespace, params: Params) -> int:
    """What this process computes with (numerics, CPU capability, versions): the run's record."""
    from lsh import records

    record = records.Environment.from_json(numerics.current(), "this process's environment")
    if args.out:
        records.write(args.out, record)
        log.info("%s: numerics %s, CPU capability %s, torch %s", args.out, record.numerics,
                 record.cpu_capability, record.versions["torch"])
    else:
        print(json.dumps(record.to_json(), indent=2))
    return 0


def cmd_prepare(args: argparse.Namespace, params: Params) -> int:
    from lsh import data

    cfg = params.data
    data.prepare(args.raw or cfg.raw, args.out or cfg.prepared, verify=cfg.verify, allow_download=cfg.download,
                 url=cfg.url, train_tokens=cfg.train_tokens)
    return 0


def cmd_train(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import train

    _set_threads(args.threads)
    train.run(params, _data_dir(args, params), Path(args.out), args.epochs, dense=args.dense, resume=args.resume,
              restart=args.restart, keep=args.keep, test=args.test, init=args.init, spectra=args.spectra)
    return 0


def cmd_plan(args: argparse.Namespace, params: Params) -> int:
    from lsh.schedule import plan as make_plan

    plan = make_plan(params.search)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(f"{'round':>5} {'pool':>5} {'survivors':>9} {'new':>4} {'epochs':>7} {'cumulative':>10}")
    for r in plan.rounds:
        print(f"{r.round:>5} {r.pool:>5} {r.survivors:>9} {r.new:>4} "
              f"{r.candidate_epochs:>7} {r.cumulative_candidate_epochs:>10}")
    print(f"total candidate-epochs for selection: {plan.total_candidate_epochs}")
    print(f"dense reference epochs (last compared epoch): {plan.last_epoch}")
    final = params.final_epochs
    extra = plan.final_pool * (final - plan.last_epoch)  # validation refuses final.epochs below last_epoch
    print(f"final training: {plan.final_pool} survivors to epoch {final} (at most {extra} more candidate-epochs)")
    if plan.rounds and params.search.e0 < 2:
        print("note: with search.e0 = 1 a new candidate is scored before its first topology update, so its death, "
              "growth and redistribution modes cannot affect its first ranking (only its sparse init can)")
    return 0


def cmd_spectrum(args: argparse.Namespace, params: Params) -> int:
    import dataclasses

    from lsh import files
    from lsh.spectra import checkpoint_spectrum

    _set_threads(args.threads)
    overrides = {k: v for k, v in (("method", args.method), ("samples", args.samples), ("steps", args.steps),
                                   ("warmup", args.warmup)) if v is not None}
    if args.exponents is not None:  # "all" overrides a k in the params
        overrides["exponents"] = None if args.exponents == "all" else args.exponents
    cfg = dataclasses.replace(params.lyapunov, **overrides)
    record = checkpoint_spectrum(args.checkpoint, _data_dir(args, params), cfg, params.seed)
    files.write_json(args.out, record)
    top = record["exponents"][0] if record["exponents"] else None
    log.info("%s: %s, %s exponents, largest %s, %.2f s", args.out, record["status"],
             len(record["exponents"] or []), f"{top:.4f}" if top is not None else "-", record["seconds"])
    return 0


def cmd_bench(args: argparse.Namespace, params: Params) -> int:
    from lsh import bench

    if args.what == "numerics":  # fresh processes per mode: the caps act only when libraries load
        result = bench.bench_numerics(args.params or "params.yaml", args.overrides, repeats=args.repeats,
                                      threads=args.threads)
        print(json.dumps(result, indent=2) if args.json else
              "\n".join(f"{k}: portable/native speed {v}" for k, v in result["portable_speed_over_native"].items()))
        return 0
    _set_threads(args.threads)
    if args.device:  # both benchmarks on the named device (train.device and lyapunov.device)
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, device=args.device),
                                     lyapunov=dataclasses.replace(params.lyapunov, device=args.device))
    run = {"train": bench.bench_train, "spectrum": bench.bench_spectrum}[args.what]
    result = run(params, paper=not args.no_paper, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "spectrum":
        for key, value in result.items():
            print(f"{key}: {value}")
    else:
        for name, size in result["sizes"].items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in size.items()
                                          if k.endswith(("_per_s", "overhead", "_dense"))))
    return 0


def cmd_report(args: argparse.Namespace, params: Params) -> int:
    """The run's report: tables and figures from a finished run's results folder."""
    from lsh.stages.report import build_report

    written = build_report(params, args.results, args.out, args.dense, args.compare, _data_dir(args, params))
    log.info("%s: %s", args.out, ", ".join(written["files"]))
    for note in written["notes"]:
        log.info("note: %s", note)
    return 0


def cmd_search_pool(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import pool

    pool.write(pool.build(params, Layout(args.results), args.round), Path(args.out))
    return 0


def _read_pool(path: str):
    from lsh import records

    return records.read(path, records.Pool)


def cmd_search_train(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import slot

    _set_threads(args.threads)
    slot.train_slot(params, _read_pool(args.pool), args.slot, Path(args.out), _data_dir(args, params), final=args.final,
                    restart=args.restart)
    return 0


def cmd_search_train_to_final(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import slot

    _set_threads(args.threads)
    slot.train_to_final(params, _read_pool(args.pool), args.slot, Path(args.train), Path(args.out),
                        _data_dir(args, params), restart=args.restart)
    return 0


def cmd_search_spectra(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import spectra

    _set_threads(args.threads)
    record = spectra.slot_spectra(params, _read_pool(args.pool), args.slot, Path(args.train), _data_dir(args, params))
    spectra.write(record, Path(args.out))
    return 0


def cmd_search_dense_spectra(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import spectra

    _set_threads(args.threads)
    spectra.write(spectra.dense_spectra(params, Path(args.train), _data_dir(args, params), args.epochs), Path(args.out))
    return 0


def cmd_search_rank(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import rank

    rank.write(rank.rank_round(params, Layout(args.results), args.round, args.dense), Path(args.out))
    return 0


def cmd_search_propose(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import propose

    propose.write(propose.propose_round(params, Layout(args.results), args.round), Path(args.out))
    return 0


def cmd_search_select(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import select

    select.write(select.select(params, Layout(args.results), args.dense), Path(args.out))
    return 0


def cmd_study_cell(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import table

    _set_threads(args.threads)
    table.train_cell(params, args.config, args.seed_index, Path(args.out), _data_dir(args, params), until=args.until)
    return 0


def cmd_study_calibration(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import table

    table.calibrate(params, Path(args.cells), args.seed_index, _data_dir(args, params), Path(args.out))
    return 0


def cmd_study_table(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import table

    cells = [Path(c) for c in args.cells] if args.cells else table.cell_rows(args.results or params.results, params)
    table.build_table(params, cells, Path(args.out), Path(args.data) if args.data else None)
    return 0


def cmd_replay(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import study

    if args.repeats:
        params = dataclasses.replace(params, study=dataclasses.replace(params.study, repeats=args.repeats))
    study.replay_all(params, Path(args.table), Path(args.replays), Path(args.anytime), Path(args.sensitivity),
                     workers=args.workers)
    return 0


def cmd_study_ls_samples(args: argparse.Namespace, params: Params) -> int:
    from lsh import csv_records
    from lsh.records import SamplesRow
    from lsh.stages import table

    _set_threads(args.threads)
    samples = table.ls_samples(params, Path(args.table), _data_dir(args, params))
    csv_records.write_frame(args.out, samples, SamplesRow)
    return 0


def cmd_study_horizon(args: argparse.Namespace, params: Params) -> int:
    from lsh.stages import horizon

    if params.study.shorter is None:
        raise LshError("study.shorter is null: name the params file of the study at the shorter horizon "
                       "(e.g. workflow/presets/study.yaml) to compare with")
    headline = horizon.write_horizon(params, Path(args.table), Path(args.shorter), Path(args.out),
                                     [Path(c) for c in args.cells])
    log.info("%s: %s", args.out, json.dumps(headline, default=str))
    return 0


def cmd_study_report(args: argparse.Namespace, params: Params) -> int:
    from lsh import csv_records
    from lsh.stages import study

    frames = {name: csv_records.read_frame(getattr(args, name), record) for name, record in study.INPUTS.items()}
    headline = study.write_study(params, Path(args.table), Path(args.out), **frames)
    log.info("%s: %s", args.out,
             json.dumps({k: v for k, v in headline.items() if not isinstance(v, tuple)}, default=str))
    return 0
