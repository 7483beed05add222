"""Share a versioned run through a DVC remote: `make push` after a run, `make pull` to continue it
elsewhere (another clone, another machine, or an earlier commit of this one).

    python workflow/scripts/versioned.py push [--remote NAME]
    python workflow/scripts/versioned.py pull [--remote NAME]

push: the run must be recorded in dvc.lock first (`dvc repro`, which adopts a finished Snakemake
run without recomputing), then its artifacts go to the remote.

pull: fetch dvc.lock's artifacts into the cache, check every cached file against its hash, check
them out (DVC refuses to overwrite a file that no cache holds), check that `dvc status` is clean,
and only then mark the outputs up to date for Snakemake (`snakemake --touch`): a checkout writes
files in no particular order, and Snakemake would otherwise rerun jobs whose inputs look newer.
Any failure stops with one line, before Snakemake's view is touched.

Only the main pipeline (dvc.yaml): the study's stages (workflow/study/dvc.yaml) are pulled with
`dvc pull workflow/study/dvc.yaml` once they have run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PIPELINE = "dvc.yaml"


class Stop(Exception):
    """One line for the user; nothing after the failed step was done."""


def _run(*command: str, check: str | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(command, capture_output=True, text=True)
    if check and out.returncode:
        raise Stop(f"{check}: {_reason(out.stderr + out.stdout) or 'exit status ' + str(out.returncode)}")
    return out


def _reason(output: str) -> str:
    """DVC's own error line (its last `ERROR:`), not the support footer it prints after it."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and "dvc.org/support" not in line]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    text = errors[-1] if errors else lines[-1] if lines else ""
    return text if len(text) <= 300 else text[:300] + "..."


def remote_args(name: str | None) -> list[str]:
    """`-r NAME`, or nothing when DVC has a default remote; a clear stop when it has none."""
    if name:
        if not _remote_url(name):
            raise Stop(f"no DVC remote named {name!r}: `dvc remote list` shows the configured ones")
        return ["-r", name]
    if _run(str(BIN / "dvc"), "remote", "default").returncode:  # exit status 1: "No default remote set"
        raise Stop("no default DVC remote: add one with `dvc remote add -d <name> <url>` "
                   "(docs/remote.md), or name one with REMOTE=<name>")
    return []


def _remote_url(name: str) -> str:
    """The remote's URL as configured ('' when there is none; `dvc remote list` wraps long lines)."""
    out = _run(str(BIN / "dvc"), "config", f"remote.{name}.url")
    return "" if out.returncode else out.stdout.strip()


def absent_remote(where: list[str]) -> str | None:
    """Why a fetch from this remote cannot have worked, when it is a folder on this machine that does not
    exist (DVC says only that files are missing): a push makes the folder, a pull needs it."""
    name = where[1] if where else _run(str(BIN / "dvc"), "remote", "default").stdout.strip()
    folder = _remote_url(name)
    if folder and "://" not in folder and not (Path(".dvc") / Path(folder).expanduser()).is_dir():
        return (f"the DVC remote {name!r} is the folder {folder}, which does not exist here: mount it, or point the "
                f"remote elsewhere (`dvc remote modify {name} url <url>`); nothing checked out")
    return None


def cache_partials(cache: Path) -> dict[Path, int]:
    """The temporary files in the cache (DVC copies an object to `.<random>.tmp` beside it and renames it when
    whole), with their modification times: never objects."""
    out = {}
    for path in sorted((cache / "files" / "md5").glob("*/*.tmp")):
        with contextlib.suppress(OSError):  # renamed meanwhile by a fetch that finished it
            out[path] = path.stat().st_mtime_ns
    return out


def remove_stale_partials(before: dict[Path, int]) -> list[Path]:
    """Of the temporary files found before a fetch, those no process wrote to since (an interrupted fetch's):
    removed; a fetch running beside this one keeps its own. Returns the removed."""
    stale = []
    for path, mtime in before.items():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime_ns == mtime:
                path.unlink()
                stale.append(path)
    return stale


def fetch_failure(returncode: int, output: str) -> str | None:
    """Why a fetch failed when it is not a file the remote lacks (which missing_objects names): DVC reports
    every failure as "failed to fetch data from the cloud"; only its DownloadError means files are missing."""
    reason = _reason(output)
    return reason if returncode and "failed to download" not in reason else None


def drop_data_index() -> bool:
    """Remove DVC's index of the workspace's data (in its site cache folder), whether it exists. A fetch killed
    while it writes that index leaves entries for files it never fetched, and the next fetch trusts them:
    it reports success with files missing. The index is a cache of DVC's: rebuilt by the next command."""
    import shutil

    from dvc.repo import Repo

    index = Path(Repo(".").site_cache_dir) / "index"
    existed = index.exists()
    shutil.rmtree(index, ignore_errors=True)
    return existed


def bad_cache_objects(cache: Path) -> list[Path]:
    """Cached files whose content does not hash to their name (DVC names objects by MD5); its temporary
    files aside."""
    bad = []
    for path in sorted((cache / "files" / "md5").glob("*/*")):
        if path.name.endswith((".unpacked", ".tmp")) or not path.is_file():
            continue
        digest = hashlib.md5()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if path.parent.name + path.name.removesuffix(".dir") != digest.hexdigest():
            bad.append(path)
    return bad


def missing_objects(cache: Path, stages: dict) -> list[str]:
    """The pulled paths whose content the cache lacks after a fetch (DVC warns of a file missing from the
    remote and goes on): each output of dvc.lock, and each file a folder's manifest lists."""
    def held(md5: str) -> Path:
        return cache / "files" / "md5" / md5[:2] / md5[2:]

    missing = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            md5, path = str(out.get("md5") or ""), out["path"]
            if not md5:
                continue
            if not held(md5).is_file():
                missing.append(path)
            elif md5.endswith(".dir"):
                try:
                    entries = json.loads(held(md5).read_text())
                    missing += [f"{path}/{e['relpath']}" for e in entries if not held(str(e["md5"])).is_file()]
                except (ValueError, KeyError, TypeError):
                    raise Stop(f"the list of the files of {path} ({held(md5)}) is damaged: nothing checked out; "
                               "remove it and pull again, or repair the remote") from None
    return missing


def remove_partials(stages: dict) -> list[str]:
    """Files an interrupted write left in the run's outputs (DVC's checkout and lsh's atomic writes both write
    `*.tmp` and rename it when done): never finished work, and in DVC's way (a checkout stops on a file it
    does not know). Removed before a checkout; returns them."""
    found = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path = Path(out["path"])
            for leftover in (sorted(path.rglob("*.tmp")) if path.is_dir() else []):
                if leftover.is_file():
                    leftover.unlink()
                    found.append(str(leftover))
    return found


def status_clean() -> bool:
    out = _run(str(BIN / "dvc"), "status", "--json", PIPELINE, check="dvc status failed")
    return json.loads(out.stdout or "{}") == {}


def push(remote: str | None) -> str:
    where = remote_args(remote)
    if not status_clean():
        raise Stop("dvc.lock does not record the run as it is: run `dvc repro` first (it adopts a finished "
                   "Snakemake run without recomputing), then push")
    _run(str(BIN / "dvc"), "push", *where, PIPELINE, check="dvc push failed")
    return "pushed the run's artifacts"


def recorded_otherwise(status: dict, stages: dict) -> list[str]:
    """What dvc.lock records other than the workspace holds, the run's own outputs aside (those are what a
    pull brings): params and code. Such a lock describes a run of other inputs; checked out, its outputs
    would stand under the workspace's params as if made by them."""
    produced = [o["path"] for stage in stages.values() for o in stage.get("outs", [])]
    found = []
    for changes in status.values():
        for change in changes:
            for dep, what in (change.get("changed deps", {}) if isinstance(change, dict) else {}).items():
                if any(dep == p or dep.startswith(p.rstrip("/") + "/") for p in produced):
                    continue
                found += [f"{dep}: {key}" for key in what] if isinstance(what, dict) else [dep]
    return sorted(set(found))


def pull(remote: str | None) -> str:
    where = remote_args(remote)
    status = json.loads(_run(str(BIN / "dvc"), "status", "--json", PIPELINE, check="dvc status failed").stdout or "{}")
    stages = _lock_stages()  # what the pull brings: the checkout leaves dvc.lock as it is
    if differ := recorded_otherwise(status, stages):
        raise Stop(f"dvc.lock records another run's params or code than this workspace holds ({', '.join(differ[:3])}"
                   f"{', ...' if len(differ) > 3 else ''}): nothing checked out; check out its commit whole "
                   "(git checkout <commit>) and pull there, or run `dvc repro` for these params")
    cache = Path(_run(str(BIN / "dvc"), "cache", "dir").stdout.strip() or ".dvc/cache")
    before = cache_partials(cache)
    fetched = _run(str(BIN / "dvc"), "fetch", *where, PIPELINE)
    stale = remove_stale_partials(before)  # an interrupted fetch's, no longer written to
    bad = bad_cache_objects(cache)
    if bad:
        raise Stop(f"{len(bad)} cached file(s) do not match their hash, e.g. {bad[0]}: nothing checked out; "
                   "remove them and pull again, or repair the remote")
    missing = missing_objects(cache, stages)
    if (missing or fetched.returncode) and (absent := absent_remote(where)):
        raise Stop(absent)
    if failure := fetch_failure(fetched.returncode, fetched.stderr + fetched.stdout):  # busy, unreachable, ...
        raise Stop(f"dvc fetch failed (nothing checked out): {failure}")
    refetched = bool(missing) and drop_data_index()
    if refetched:  # DVC trusted an index an interrupted fetch had left: it took the files for fetched already
        fetched = _run(str(BIN / "dvc"), "fetch", *where, PIPELINE)
        missing = missing_objects(cache, stages)
    if missing:
        raise Stop(f"{len(missing)} file(s) of the run are in neither the remote nor the cache, e.g. {missing[0]}: "
                   "nothing checked out; push them from a clone that has them, or rerun what makes them")
    if fetched.returncode:
        raise Stop(f"dvc fetch failed (nothing checked out): {_reason(fetched.stderr + fetched.stdout)}")
    partials = remove_partials(stages)
    _run(str(BIN / "dvc"), "checkout", PIPELINE, check="dvc checkout failed (Snakemake's view left as it is)")
    if not status_clean():
        raise Stop("after the checkout, `dvc status dvc.yaml` still lists changes: Snakemake's view left as it is")
    # Snakemake's records of how the previous outputs were made (params, code) are not the pulled
    # ones': dvc.lock vouches for these, so drop the records and mark the outputs current.
    outs = [o["path"] for stage in stages.values() for o in stage.get("outs", [])]
    # Files that no job declares (checkpoints) have no records: Snakemake cleans the others, then
    # lists those and exits 1, which is no failure here.
    cleaned = _run(str(BIN / "snakemake"), "--cleanup-metadata", *_files_under(outs), "--cores", "1")
    if cleaned.returncode and "metadata was not present" not in cleaned.stderr + cleaned.stdout:
        raise Stop("snakemake --cleanup-metadata failed: " + (cleaned.stderr.strip().splitlines() or ["?"])[-1])
    _run(str(BIN / "snakemake"), "--touch", "--cores", "1", check="snakemake --touch failed")
    left = [*map(str, stale), *partials]
    removed = (f" (removed {len(left)} partial file(s) an interrupted fetch or write had left, e.g. {left[0]})"
               if left else "")
    if refetched:
        removed += " (fetched again without DVC's data index, which an interrupted fetch had left incomplete)"
    return f"pulled and checked out the run; Snakemake and DVC both see it up to date{removed}"


def _lock_stages() -> dict:
    import yaml

    lock = Path("dvc.lock")
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}


def _files_under(paths: list[str]) -> list[str]:
    files = []
    for p in map(Path, paths):
        files.extend(str(f) for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["push", "pull"])
    parser.add_argument("--remote", metavar="NAME", help="a configured DVC remote (default: the default remote)")
    args = parser.parse_args(argv)
    try:
        print(f"make {args.action}: " + (push if args.action == "push" else pull)(args.remote))
    except Stop as e:
        print(f"make {args.action}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
