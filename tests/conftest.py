"""Shared fixtures and helpers: where the real PTB lies (tests that need it are skipped, with the
reason, when it is missing), prepared copies of it, a synthetic corpus, running `lsh` and
Snakemake as a user would, and copies of the project to run the workflow in.

Tests come in two tiers: the fast tier (`make test-fast`: unit tests on synthetic corpora and
tiny models, no Snakemake runs) and the slow tier (marker `slow`: whole-pipeline runs, every
sparse-training combination, the SLURM cluster). `make test` runs both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from lsh import numerics

# Before numpy and torch load: the tests compute as a default run does (numerics: portable), and
# the Snakemake and `lsh` processes they start inherit the same caps. One thread, as a pipeline job
# has (Snakemake sets each library's thread variable to a job's threads, one for most rules): the
# suite runs its files two at a time (pytest-xdist), and two threads each on two cores would make
# every torch test wait on the other's threads.
numerics.apply(numerics.DEFAULT)
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")  # as Snakemake sets them for a one-thread job (see lsh_server)

import numpy as np  # noqa: E402

from lsh import data, params_file, serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _ptb_candidates() -> list[Path]:
    env = os.environ.get("LSH_PTB_DIR")
    return [Path(env)] if env else [REPO / "data" / "ptb", REPO.parent / "shared" / "data" / "ptb"]


@pytest.fixture(scope="session")
def ptb_raw() -> Path:
    """The real PTB files (read only): $LSH_PTB_DIR, data/ptb/, or ../shared/data/ptb/."""
    for folder in _ptb_candidates():
        if all(data.find_raw(folder).values()):
            return folder
    pytest.skip(
        "the PTB files are needed for this test: put ptb.{train,valid,test}.txt(.gz) into "
        f"data/ptb/ or set LSH_PTB_DIR (looked in: {', '.join(map(str, _ptb_candidates()))})"
    )


@pytest.fixture(scope="session")
def ptb_prepared(ptb_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole PTB prepared once for the session (no training-token cap)."""
    out = tmp_path_factory.mktemp("ptb_prepared")
    data.prepare(ptb_raw, out, verify=True, allow_download=False)
    return out


def run_lsh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the `lsh` command line as a user would, capturing its output."""
    return subprocess.run(
        [str(BIN / "lsh"), *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=600
    )


SMOKE = "workflow/presets/smoke.yaml"


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command (Snakemake, DVC) with the venv's tools first on PATH, capturing its output."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# The corpus of the pipeline tests and of most trainings in tests: PTB with every word outside the training split's
# 1,999 most frequent read as <unk> (2,000 types with <eos>, against 10,000). The same text, format and splits; a smoke
# model spends most of its arithmetic in the decoder and softmax over the vocabulary, which this makes a fifth (the 16
# training epochs of a smoke run: 71 s against 22 s on a 2-core AMD EPYC, one thread each). Its checksums are not PTB's,
# so a project copied with it reads it unverified (copy_project); the tests of verification use the real files. Its test
# split is PTB's first QUICK_TEST_TOKENS: every test perplexity (a study cell's at each epoch, each final training's)
# reads the whole split, 82,430 tokens, which made most of a study cell's time; the tests compare runs with each other,
# never with a published figure.
QUICK_VOCAB = 2_000
QUICK_TEST_TOKENS = 8_000
QUICK_MARK = "QUICK_PTB.md"


@pytest.fixture(scope="session")
def ptb_quick(ptb_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real PTB with its vocabulary cut to QUICK_VOCAB types, as raw text files."""
    out = tmp_path_factory.mktemp("ptb_quick")
    raw = {split: data.read_raw(path).decode("utf-8") for split, path in data.find_raw(ptb_raw).items()}
    counts = Counter(raw["train"].split())
    # <unk> is among them; <eos> ends each line
    keep = {word for word, _ in counts.most_common(QUICK_VOCAB - 1)} | {data.UNK}
    for split, text in raw.items():
        lines = [" ".join(w if w in keep else data.UNK for w in line.split()) for line in text.splitlines()]
        if split == "test":
            ends = np.cumsum([len(line.split()) + 1 for line in lines])  # + <eos>
            lines = lines[: int(np.searchsorted(ends, QUICK_TEST_TOKENS)) + 1]
        (out / data.ptb_name(split)).write_text("".join(f" {line} \n" for line in lines))
    (out / QUICK_MARK).write_text(f"PTB from {ptb_raw} with a {QUICK_VOCAB}-word vocabulary and its test split's first "
                                  f"{QUICK_TEST_TOKENS} tokens: tests/conftest.py\n")
    return out


def read_unverified(project: Path) -> None:
    """Every preset and params.yaml of a copied project with data.verify: false (the quick corpus)."""
    for path in [project / "params.yaml", *(project / "workflow" / "presets").glob("*.yaml")]:
        text = path.read_text()
        assert text.count("  verify: true") == 1, path
        path.write_text(text.replace("  verify: true", "  verify: false"))


def copy_project(dest: Path, ptb_raw: Path | None = None) -> Path:
    """A copy of the project's workflow files and sources to run Snakemake and DVC in; with the quick
    corpus (ptb_quick) its presets and params.yaml read the data unverified."""
    for name in ("Snakefile", "params.yaml", "dvc.yaml", ".dvcignore"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "workflow", dest / "workflow")
    (dest / "profiles").symlink_to(os.readlink(REPO / "profiles"))  # the workflow's default profile
    # DVC hashes the package sources its stages depend on (the code that runs is the installed one).
    shutil.copytree(REPO / "lsh", dest / "lsh", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / ".dvc", dest / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    # the committed study cells (study.cells of the study presets, and study.shorter's), read only
    (dest / "docs").mkdir()
    (dest / "docs" / "results").symlink_to(REPO / "docs" / "results")
    if ptb_raw is not None:
        (dest / "data").mkdir()
        (dest / "data" / "ptb").symlink_to(ptb_raw.resolve())
        if (ptb_raw / QUICK_MARK).exists():
            read_unverified(dest)
    return dest


@pytest.fixture(scope="session")
def ptb_quick_small(ptb_quick: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick corpus prepared with the first 12,000 training tokens: the study's cells, and the trainings
    and spectra of the unit tests whose checks do not depend on the vocabulary."""
    out = tmp_path_factory.mktemp("ptb_quick_small")
    data.prepare(ptb_quick, out, verify=False, allow_download=False, train_tokens=12_000)
    return out


@pytest.fixture(scope="session")
def ptb_small(ptb_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PTB prepared with the first 12,000 training tokens: quick epochs for command-line tests."""
    out = tmp_path_factory.mktemp("ptb_small")
    data.prepare(ptb_raw, out, verify=True, allow_download=False, train_tokens=12_000)
    return out


SYNTHETIC_VOCAB = 40


def synthetic_corpus(tokens: int = 900, seed: int = 0) -> data.Corpus:
    """A small corpus with some structure, learnable in a fraction of a second: each word follows the
    previous one by a fixed step half of the time and is a Zipf draw otherwise (every word appears), so
    a tiny model gets well below uniform guessing (perplexity 40) in its first epoch."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, SYNTHETIC_VOCAB + 1)
    zipf /= zipf.sum()
    draws = rng.choice(SYNTHETIC_VOCAB, size=tokens, p=zipf)
    follow = rng.random(tokens) < 0.5
    ids = np.empty(tokens, dtype=np.int64)
    ids[0] = 0
    for i in range(1, tokens):
        ids[i] = (ids[i - 1] + 7) % SYNTHETIC_VOCAB if follow[i] else draws[i]
    return data.Corpus(train=ids, valid=ids[:400], test=ids[:400], vocab=[f"w{i}" for i in range(SYNTHETIC_VOCAB)])


@pytest.fixture
def project(tmp_path: Path, ptb_raw: Path) -> Path:
    """A copy of the project with the PTB linked in, to run Snakemake and DVC in."""
    return copy_project(tmp_path, ptb_raw)


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project, check=True,
                   capture_output=True)


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def clone_of(finished: Path, dest: Path) -> Path:
    """A copy of a finished run with its files' times and Snakemake's records, to change as a test needs."""
    shutil.copytree(finished, dest, symlinks=True)
    return dest


# The shared whole-pipeline runs. Each is made once in the session, whichever pytest-xdist worker asks
# first (built_once), and only read by the tests that take it: a test that changes anything, a dry run
# included, works on a clone_of it. The tests that take one are grouped for pytest-xdist (--dist
# loadgroup); smoke_run's tests are two groups (DVC's, the workflow's), each a few minutes, which two
# workers run side by side on the one run.
SMOKE_RUN = pytest.mark.xdist_group("smoke_run")
WORKFLOW_RUN = pytest.mark.xdist_group("smoke_run_workflow")
HOSTILE_RUN = pytest.mark.xdist_group("hostile_run")
SMALL_RUN = pytest.mark.xdist_group("small_run")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, ptb_quick: Path) -> Path:
    """The smoke preset as a user's project has it (params.yaml, the dvc.yaml of those params, a git
    repository with the results ignored), run to the end by Snakemake alone."""
    def build(project: Path) -> None:
        copy_project(project, ptb_quick)
        (project / "params.yaml").write_text((project / SMOKE).read_text())
        shutil.copy2(REPO / ".gitignore", project / ".gitignore")  # results, prepared data, .snakemake: not in git
        ok(run([str(BIN / "python"), "workflow/scripts/dvc_yaml.py", "--out", "dvc.yaml"], project))
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        git(project, "add", "-A")
        git(project, "commit", "-qm", "smoke")
        ok(run([str(BIN / "snakemake"), "--cores", "2"], project, timeout=1800))
    return built_once(tmp_path_factory, "smoke_run", build)


# A results folder with a space, a command substitution, a quote and non-ASCII letters: quoted, it is
# one argument of every command; unquoted, the shell splits it and runs `touch INJECTED`.
HOSTILE = "my results/ünï $(touch INJECTED) 'q"


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, ptb_quick: Path) -> Path:
    """The smoke preset run end to end into the hostile results folder, given by --config as a user would."""
    project = copy_project(tmp_path_factory.mktemp("hostile"), ptb_quick)
    ok(run([str(BIN / "snakemake"), "--cores", "2", "--configfile", SMOKE, "--config", f"results={HOSTILE}"],
           project))
    return project


def small_search_params(project: Path) -> dict:
    """The smoke preset with one round of three candidates and two final epochs, on 8,000 training tokens
    (the tests that read it compare two runs of these params, never a figure): few, short jobs."""
    params = params_file.read_yaml(project / SMOKE)
    params["data"]["train_tokens"] = 8_000
    params["search"].update(n=3)
    params["final"]["epochs"] = params["sparse"]["decay_epochs"] = 2
    params["report"]["correlation_candidates"] = 0
    return params


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that `build` fills once for the whole session, whichever pytest-xdist worker asks first:
    the other waits for it rather than making its own (the groups of --dist loadgroup keep its readers on
    one worker, but nothing guarantees that). Only for runs every test just reads."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' temporary folders share this one
    folder, done = root / name, root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an earlier worker's failed try
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, ptb_quick: Path) -> Path:
    """The small search and its comparison set (`snakemake compare`: seven methods, one of them full
    training), run once in the session: the compare, full-training and SLURM tests read it."""
    def build(folder: Path) -> None:
        project = copy_project(folder, ptb_quick)
        (project / "small.yaml").write_text(yaml.safe_dump(small_search_params(project)))
        ok(run([str(BIN / "snakemake"), "compare", "--cores", "2", "--configfile", "small.yaml"], project,
               timeout=1500))
    return built_once(tmp_path_factory, "small_run", build)


def start_server(socket_path: Path, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`lsh serve` on `socket_path`, logging to `log_path`, once its socket is up (the test fails when it
    does not come up in two minutes); it ends with the process that started it."""
    with open(log_path, "w") as log:
        server = subprocess.Popen([str(BIN / "lsh"), "serve", "--socket", str(socket_path), "--exit-with-parent"],
                                  cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not socket_path.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket_path.exists():
        server.kill()
        pytest.fail(f"lsh serve did not start: {log_path.read_text()}")
    return server


@pytest.fixture(scope="session", autouse=True)
def lsh_server(tmp_path_factory: pytest.TempPathFactory):
    """One `lsh serve` per pytest worker: the `lsh` jobs the tests start (Snakemake's among them) fork
    from it instead of importing torch each time (it refuses, and they run as fresh processes, whenever
    their load-time environment differs; tests/test_serve.py pins that both give the same results).
    LSH_TEST_SERVE=0 runs every job as a fresh process."""
    if os.environ.get("LSH_TEST_SERVE", "1") == "0":
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="lsh-serve-"))  # short: a socket's path has at most 107 bytes
    socket_path = folder / "serve.sock"
    server = start_server(socket_path, tmp_path_factory.getbasetemp() / "serve.log")
    os.environ[serve.VARIABLE] = str(socket_path)
    yield socket_path
    del os.environ[serve.VARIABLE]
    server.terminate()
    server.wait(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)
