"""Atomic writes: a killed run never leaves a half-written result behind.

Every result and checkpoint is written to a temporary file in the target's folder
and renamed over the target, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lsh.errors import LshError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it to `path`.

    A write the file system refuses (full, read-only, no permission) is an LshError naming
    the path and the cause; the target keeps its old content and no temporary is left.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise LshError(f"cannot write {path}: {_cause(e)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        cause = _cause(e, path.parent)  # while the partial file still takes its space
        Path(tmp).unlink(missing_ok=True)
        raise LshError(f"cannot write {path}: {cause}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _cause(error: BaseException, folder: Path | None = None) -> str:
    """The reason a write failed, in words: the OS's, or for a wrapped error the full disk it usually is."""
    if isinstance(error, OSError) and error.errno is not None:
        hint = {errno.ENOSPC: " (free some space, then rerun with --resume)",
                errno.EROFS: " (the results folder must be writable)",
                errno.EACCES: " (the results folder must be writable)"}.get(error.errno, "")
        return f"{os.strerror(error.errno)}{hint}"
    if folder is not None and shutil.disk_usage(folder).free < 1 << 20:
        return f"{os.strerror(errno.ENOSPC)} (free some space, then rerun with --resume)"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    import numpy as np  # here: this module is read before numpy may load (lsh.numerics caps it first)

    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file one can read, in words ("is a directory", ...); None if it is one."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link loop (it points at itself through other links)"
        if e.errno == errno.ENOENT and path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if e.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read: {os.strerror(e.errno) if e.errno else e}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    return None


def read_text(path: str | os.PathLike, what: str = "") -> str:
    """A text file the stages exchange: what is wrong with it (missing, a directory, unreadable, not UTF-8)
    is an LshError naming it; `what` says which stage makes it."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        hint = f": {what}" if problem == "does not exist" and what else ""
        raise LshError(f"{path} {problem}{hint}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LshError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}): it is not a file lsh wrote") from None
    except OSError as e:
        raise LshError(f"{path} cannot be read: {os.strerror(e.errno) if e.errno else e}") from None


def parse_json(text: str, path: str | os.PathLike) -> Any:
    """JSON text read from `path`; a broken one is an error naming the file and where it breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        empty = " (the file is empty)" if not text.strip() else ""
        raise LshError(f"{path} is not valid JSON{empty} at line {e.lineno}, column {e.colno}: {e.msg}; "
                       "it is truncated or not a file lsh wrote: delete it and rerun the stage that makes it") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file the stages exchange; a missing one says which stage makes it, a broken one is named."""
    return parse_json(read_text(path, "run the stage that makes it first"), path)


def read_json_if(path: str | os.PathLike) -> Any:
    """A JSON file that may not exist yet (None then); one that exists but is broken is an error naming it."""
    path = Path(path)
    return read_json(path) if path.exists() or path.is_symlink() else None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """A JSON-lines file: one value per line; a broken line is an error naming the file and the line."""
    out = []
    for number, line in enumerate(read_text(path, "run the stage that makes it first").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LshError(f"{path} line {number} is not valid JSON ({e.msg}): the file is truncated or not "
                               "one lsh wrote; delete it and rerun the stage that makes it") from None
    return out


def finite_or_none(x: Any) -> float | None:
    """JSON has no NaN or inf: a non-finite (or missing) number is written as null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def read_frame(path: str | os.PathLike, columns: tuple[str, ...] = ()) -> Any:
    """A CSV file the stages exchange as a pandas DataFrame: missing, empty, unparsable or lacking one of
    `columns`, it is an LshError naming the file (and the column)."""
    import io

    import pandas as pd

    text = read_text(path, "run the stage that makes it first")
    if not text.strip():
        raise LshError(f"{path} is empty: it is truncated or not a file lsh wrote; rerun the stage that makes it")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise LshError(f"{path} is not a CSV table lsh wrote ({str(e).splitlines()[0]}); "
                       "rerun the stage that makes it") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LshError(f"{path} lacks the column {missing[0]!r}: it is not a file lsh wrote, or was edited; rerun the "
                       "stage that makes it")
    return frame
