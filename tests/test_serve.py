"""`lsh serve`: a command handed to the warm server computes and reports what a fresh process would,
runs as a fresh process whenever the server could not match it, and goes down with its signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, REPO, start_server

from lsh import serve
from lsh.training import load_checkpoint

TINY = ["--set", "model.emb=8", "--set", "model.hidden=8", "--set", "data.train_tokens=1000",
        "--set", "train.eval_tokens=1000", "--set", "train.batch_size=4", "--set", "data.verify=false",
        "--set", "data.download=false", "--set", "train.lr=1"]  # lr 1: learns (lr 20 diverges here)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's own, its log readable; the session's is left out of every command."""
    folder = tmp_path_factory.mktemp("serve")
    sock, log = Path(f"/tmp/lsh-test-serve-{os.getpid()}.sock"), folder / "serve.log"
    process = start_server(sock, log, env={k: v for k, v in os.environ.items() if k != serve.VARIABLE})
    yield sock, log
    process.terminate()
    assert process.wait(timeout=60) == 0
    assert not sock.exists()  # a terminated server removes its socket


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    words = [f"w{i}" for i in range(30)]
    for split, lines in (("train", 300), ("valid", 60), ("test", 60)):
        (raw / f"ptb.{split}.txt").write_text(
            "".join(" ".join(words[(i * 7 + j) % 30] for j in range(6)) + "\n" for i in range(lines)))
    out = raw.parent / f"{raw.name}-prepared"
    assert lsh(None, "prepare", "--raw", str(raw), "--out", str(out), *TINY).returncode == 0
    return out


def lsh(sock: Path | None, *args: str, **changes: str) -> subprocess.CompletedProcess:
    """`lsh args`, handed to the server at `sock` (None: no server), with `changes` to the environment."""
    env = {k: v for k, v in os.environ.items() if k != serve.VARIABLE}
    if sock is not None:
        env[serve.VARIABLE] = str(sock)
    env.update(changes)
    return subprocess.run([str(BIN / "lsh"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def served(log: Path, command: str) -> list[int]:
    """The pids of the copies the server ran `command` in."""
    return [int(pid) for pid in re.findall(rf"running {command}\S* .*? as pid (\d+)", log.read_text())]


def test_a_served_training_writes_the_bits_a_fresh_process_writes(server, prepared: Path, tmp_path: Path):
    sock, log = server
    runs = {}
    for name, where in (("fresh", None), ("served", sock)):
        out = lsh(where, "train", "--out", str(tmp_path / name), "--epochs", "2", "--data", str(prepared), *TINY,
                  "--test", "--spectra", "--threads", "1")
        assert out.returncode == 0, out.stderr
        assert out.stderr.startswith("lsh train: ") and "lsh serve" not in out.stderr  # the command's own log lines
        runs[name] = out
    assert len(served(log, "train")) == 1
    for epoch in (1, 2):
        fresh = load_checkpoint(tmp_path / "fresh" / f"epoch-{epoch:03d}.pt")
        copy = load_checkpoint(tmp_path / "served" / f"epoch-{epoch:03d}.pt")
        assert fresh["model"].keys() == copy["model"].keys()
        for key in fresh["model"]:
            assert torch.equal(fresh["model"][key], copy["model"][key]), (epoch, key)  # bits: one computation
    def rows(name: str) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "tokens_per_s")}  # the clock's
                for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert rows("fresh") == rows("served")
    def spectra(name: str) -> list[dict]:  # the clock's and the file system's fields aside
        cache = json.loads((tmp_path / name / "spectra-cache.json").read_text())
        return [{k: v for k, v in entry.items() if k not in ("seconds", "mtime_ns")}
                for entry in cache["spectra"].values()]
    assert len(spectra("fresh")) == 3 and spectra("fresh") == spectra("served")


def test_an_error_gives_the_same_line_and_exit_status_served_or_not(server, prepared: Path, tmp_path: Path):
    sock, log = server
    args = ("spectrum", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "s.json"), "--data",
            str(prepared), *TINY)
    fresh, copy = lsh(None, *args), lsh(sock, *args)
    assert fresh.returncode == copy.returncode == 2
    assert fresh.stderr == copy.stderr and "none.pt" in copy.stderr and "Traceback" not in copy.stderr
    assert served(log, "spectrum")


@pytest.mark.parametrize("args, change, differs", [
    ((), {"OMP_NUM_THREADS": "2"}, "OMP_NUM_THREADS"),  # torch sizes its thread pool when it loads
    (("--set", "numerics=native"), {}, "ATEN_CPU_CAPABILITY"),  # native drops the caps the server loaded with
])
def test_a_command_whose_load_time_environment_differs_runs_in_its_own_process(server, args, change, differs):
    sock, log = server
    before = log.read_text().count("refused")
    out = lsh(sock, "environment", *args, **change)
    assert out.returncode == 0, out.stderr
    assert log.read_text().count("refused") == before + 1, log.read_text()
    assert "load-time environment" in log.read_text().splitlines()[-1] and differs in log.read_text().splitlines()[-1]
    if args:  # computed by a process that loaded torch without the caps
        assert json.loads(out.stdout)["numerics"] == "native"


def test_a_changed_package_or_a_higher_limit_is_refused():
    own = {"signature": serve.signature(dict(os.environ)), "stamp": serve._package_stamp(), "defaults": {}}
    request = {**own, "env": dict(os.environ), "limits": {}}
    assert serve._refusal(request, own) is None
    edited = [[name, mtime + 1, size] for name, mtime, size in own["stamp"]]
    assert "package changed" in serve._refusal({**request, "stamp": edited}, own)
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        limits = {"RLIMIT_NOFILE": [hard + 1, hard + 1]}
        assert "RLIMIT_NOFILE" in serve._refusal({**request, "limits": limits}, own)


def test_no_server_at_the_socket_runs_the_command_in_its_own_process(tmp_path: Path):
    out = lsh(tmp_path / "nobody.sock", "plan", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["rounds"], out.stderr


def _start_long_training(sock: Path, log: Path, prepared: Path, out: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, serve.VARIABLE: str(sock)}
    before = set(served(log, "train"))
    command = subprocess.Popen([str(BIN / "lsh"), "train", "--out", str(out), "--epochs", "100000", "--data",
                                str(prepared), *TINY], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "epoch-001.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    new = set(served(log, "train")) - before
    assert len(new) == 1 and (out / "epoch-001.pt").exists()
    return command, new.pop()


def _gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_an_interrupt_reaches_the_copy_which_ends_as_a_fresh_process_would(server, prepared: Path, tmp_path: Path):
    sock, log = server
    command, copy = _start_long_training(sock, log, prepared, tmp_path / "run")
    command.send_signal(signal.SIGINT)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130 and "lsh train: interrupted" in stderr
    assert _gone(copy)


@pytest.mark.parametrize("end, status", [("terminate", -signal.SIGTERM), ("kill", None)])
def test_a_terminated_or_killed_command_takes_its_copy(server, prepared: Path, tmp_path: Path, end: str, status):
    """SIGTERM: the command dies of the signal, as a fresh one would; SIGKILL: it cannot pass the signal
    on, and the server ends the copy when the command's connection closes."""
    sock, log = server
    command, copy = _start_long_training(sock, log, prepared, tmp_path / "run")
    getattr(command, end)()
    command.communicate(timeout=60)
    if status is not None:
        assert command.returncode == status
    assert _gone(copy)
