"""A warm process that runs `lsh` commands by forking, so a workflow of many short jobs does not pay
torch's import in each one.

A pipeline job is mostly start-up when it is short: `import torch` and the libraries beside it take
1.5 to 2 s on a 2-core EPYC, against about a second for a smoke preset's training epoch. `lsh serve`
loads them once and waits on a Unix socket; a command started with $LSH_SERVE naming that socket
hands its arguments, working directory, environment, umask, resource limits and standard streams to
the server, which forks a copy of itself to run the command there. The copy computes what a fresh
process computes: every variable a library reads when it loads (the numerics caps, thread counts,
Python's own) must equal the server's, and the installed package must be the one the server loaded,
or the command runs in its own process as usual. Anything else that goes wrong on the way (no
server, another user's socket, a server that ended) also falls back to the plain path.

Signals reach the job: the command forwards what it receives (an interrupt, a termination) to the
forked copy, and dies of the same signal when the copy does; a command killed outright (SIGKILL)
takes its copy with it, so an interrupted workflow leaves no job running behind it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pkgutil
import resource
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("lsh.serve")

VARIABLE = "LSH_SERVE"  # the socket a command hands itself to
# Variables a library or the interpreter reads once, when it loads: a copy forked from the server has
# the server's, so they must be equal (by name prefix).
LOAD_TIME = ("ATEN_", "ONEDNN_", "DNNL_", "MKL", "KMP_", "OMP_", "GOMP_", "OPENBLAS", "GOTO", "NPY_", "NUMPY",
             "TORCH_", "PYTORCH_", "CUDA", "CUBLAS", "NVIDIA", "LD_", "MALLOC", "PYTHON", "MPL", "LANG", "LC_",
             "LSH_NUMERICS", "HOME", "XDG_")  # (TORCHINDUCTOR_ is read when a model is compiled, not at load)
LIMITS = ("RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_STACK")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# What the server loads before it waits: the libraries a job would import (the rest come with lsh).
PRELOAD = ("torch", "numpy", "scipy.linalg", "scipy.stats", "pandas", "sklearn.decomposition", "sklearn.manifold",
           "hyperopt", "optuna", "matplotlib.pyplot")

_in_copy = False  # set in a forked copy: its command runs here, never handed on again


def _package_stamp() -> list:
    """The installed package as the server loaded it: a file edited since would run stale code."""
    root = Path(__file__).resolve().parent
    stamp = []
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".yaml", ".json") and "__pycache__" not in path.parts:
            st = path.stat()
            stamp.append([str(path.relative_to(root)), st.st_mtime_ns, st.st_size])
    return stamp


def signature(env: dict[str, str]) -> dict:
    """What a forked copy inherits from the server that a fresh process would take from `env`."""
    return {"executable": sys.executable, "path": sys.path, "package": str(Path(__file__).resolve().parent),
            "load_time": {k: v for k, v in sorted(env.items()) if k.startswith(LOAD_TIME)}}


def _limits() -> dict[str, list[int]]:
    return {name: list(resource.getrlimit(getattr(resource, name))) for name in LIMITS if hasattr(resource, name)}


# -----------------------------------------------------------------------------
# The command's side


def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(sock, [struct.pack("!I", len(body)) + body], list(fds))


def _receive(sock: socket.socket, fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at the end of the connection) and the descriptors that came with it."""
    head, got, _, _ = socket.recv_fds(sock, 4, fds)
    if len(head) < 4:
        return None, got
    size = struct.unpack("!I", head)[0]
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None, got
        body += chunk
    return json.loads(body), got


def delegate(argv: list[str]) -> int | None:
    """Run `lsh argv` in the server's copy and return its exit status; None to run it here instead."""
    path = os.environ.get(VARIABLE)
    if not path or _in_copy:
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError as e:
        log.debug("%s=%s not used: %s", VARIABLE, path, e)
        return None
    with sock:
        request = {"argv": ["lsh", *argv], "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(),
                   "limits": _limits(), "signature": signature(dict(os.environ)), "stamp": _package_stamp()}
        try:
            _send(sock, request, [0, 1, 2])
            answer, _ = _receive(sock)
        except OSError as e:
            log.debug("%s=%s not used: %s", VARIABLE, path, e)
            return None
        if not answer or not answer.get("pid"):
            log.debug("%s=%s not used: %s", VARIABLE, path, (answer or {}).get("why", "no answer"))
            return None
        return _wait(sock, answer["pid"])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _wait(sock: socket.socket, pid: int) -> int:
    """The copy's exit status; signals this command gets are passed on to it, and its death by a
    signal is this command's."""
    previous = {sig: signal.signal(sig, lambda sig, frame: _forward(pid, sig)) for sig in FORWARDED}
    try:
        while True:
            try:
                message, _ = _receive(sock)
                break
            except InterruptedError:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if message is None or "status" not in message:
        print(f"lsh: the server at ${VARIABLE} ended before the command did", file=sys.stderr)
        return 1
    code = os.waitstatus_to_exitcode(message["status"])
    if code < 0:  # died of a signal: so does this command, as a fresh process would have
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# -----------------------------------------------------------------------------
# The server's side


def preload() -> None:
    """Import what jobs import: the libraries, then every module of lsh."""
    import importlib

    import lsh

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for module in pkgutil.walk_packages(lsh.__path__, "lsh."):
        if not module.name.endswith("__main__"):  # (which would run the command line)
            importlib.import_module(module.name)


Command = Callable[[list[str]], int]  # the command line's entry point: arguments -> exit status


def serve(path: Path, command: Command, exit_with_parent: bool = False) -> int:
    """Answer commands on the socket `path`, each run by `command` in a forked copy, until terminated
    (or, with `exit_with_parent`, until the process that started the server ends)."""
    before = dict(os.environ)
    preload()
    # what the libraries load under: the environment before they loaded, with what they set for themselves
    # where it was unset (scikit-learn sets KMP_ variables; a fresh process gets the same at that import)
    defaults = {k: v for k, v in os.environ.items() if k not in before}
    own = {"signature": signature({**defaults, **before}), "stamp": _package_stamp(), "defaults": defaults}
    parent = os.getppid()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()  # a socket left by a server that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # the socket is this user's only
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_mask)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # connection handlers reap themselves
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(0))
    log.info("serving lsh commands at %s (pid %d); set %s=%s for the commands to use it",
             path, os.getpid(), VARIABLE, path)
    try:
        while not (exit_with_parent and os.getppid() != parent):
            ready, _, _ = select.select([listener], [], [], 1.0)
            if not ready:
                continue
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                code = 1
                try:
                    _handle(conn, own, command)
                    code = 0
                finally:
                    os._exit(code)
            conn.close()
    finally:
        listener.close()
        path.unlink(missing_ok=True)
    return 0


def _refusal(request: dict, own: dict) -> str | None:
    """Why the server's copy would not compute what a fresh process would (None when it would)."""
    theirs, ours = request.get("signature") or {}, own["signature"]
    theirs = {**theirs, "load_time": signature({**own["defaults"], **theirs.get("load_time", {})})["load_time"]}
    if theirs != ours:
        differ = sorted(k for k in {**theirs, **ours} if k != "load_time" and theirs.get(k) != ours.get(k))
        mine, yours = theirs.get("load_time", {}), ours["load_time"]
        differ += sorted(k for k in {**mine, **yours} if mine.get(k) != yours.get(k))
        return f"the command's load-time environment differs from the server's: {', '.join(differ)}"
    if request.get("stamp") != own["stamp"]:
        return "the installed lsh package changed since the server loaded it"
    for name, (soft, _) in request.get("limits", {}).items():
        if _above(soft, resource.getrlimit(getattr(resource, name))[1]):
            return f"the command's {name} is above the server's hard limit"
    return None


def _handle(conn: socket.socket, own: dict, command: Command) -> None:
    """One command: check it, fork its copy, wait for the copy or for the command's end."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    request, fds = _receive(conn, 3)
    why = _refusal(request, own) if request else "no request"
    if why or len(fds) != 3:
        why = why or "the standard streams did not come"
        log.info("refused %s: %s", " ".join((request or {}).get("argv", [])[1:3]), why)
        _send(conn, {"why": why})
        return
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds, command)  # never returns
    for fd in fds:
        os.close(fd)
    log.info("running %s as pid %d", " ".join(request["argv"][1:3]), pid)
    _send(conn, {"pid": pid})
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        ready, _, _ = select.select([conn], [], [], 0.05)
        if ready and not conn.recv(64):  # the command is gone (killed): so is its copy
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
    try:
        _send(conn, {"status": status})
    except OSError:
        pass


def _run(request: dict, fds: list[int], command: Command) -> None:
    """The forked copy: become the command's process, run it, exit with its status."""
    global _in_copy
    _in_copy = True
    code = 1
    try:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        for name, (soft, hard) in request["limits"].items():  # a copy may lower its limits, never raise them
            which = getattr(resource, name)
            current = resource.getrlimit(which)[1]
            resource.setrlimit(which, (soft, current if _above(hard, current) else hard))
        import tempfile

        tempfile.tempdir = None  # the command's TMPDIR, not the server's
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        sys.argv = request["argv"]
        logging.root.handlers.clear()  # the server's own log lines: the command configures its own
        logging.root.setLevel(logging.WARNING)
        code = command(request["argv"][1:])
    except SystemExit as e:
        code = _exit_code(e.code)
    except BaseException:  # as an uncaught exception ends a fresh interpreter
        sys.excepthook(*sys.exc_info())
        code = 1
    finally:
        try:
            threading._shutdown()  # non-daemon threads finish first, as at a fresh interpreter's exit
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _above(limit: int, other: int) -> bool:
    """Whether resource limit `limit` is above `other` (RLIM_INFINITY above everything)."""
    if limit == other:
        return False
    return limit == resource.RLIM_INFINITY or (other != resource.RLIM_INFINITY and limit > other)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
