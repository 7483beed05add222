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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

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


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Rewrite the JSON-lines file with one more record (atomic, so never half a line)."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    write_bytes(path, old + (json.dumps(record) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file the stages exchange; a missing one says which stage makes it."""
    path = Path(path)
    if not path.is_file():
        raise LshError(f"{path} does not exist: run the stage that makes it first")
    return json.loads(path.read_text())


def read_json_if(path: str | os.PathLike) -> Any:
    """A JSON file that may not exist yet (None then)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def finite_or_none(x: Any) -> float | None:
    """JSON has no NaN or inf: a non-finite (or missing) number is written as null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
