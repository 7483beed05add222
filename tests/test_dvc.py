"""Snakemake and DVC over one pipeline: either order, the same change impact, a versioned run that
another clone pulls and continues. All on the smoke preset, in copies of one finished run (conftest's
smoke_run) and of that run once adopted by `dvc repro`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO, SMOKE_RUN, clone_of, copy_project, git, ok, run

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import rule_reads  # noqa: E402
import versioned  # noqa: E402

from lsh import numerics  # noqa: E402

CHANGE_TABLE = REPO / "docs" / "what-a-change-recomputes.md"


# Timings a job records beside its results: a rerun rewrites them, but whether the new value happens to
# equal the old one (a 15 ms spectrum, to 0.1 ms) is chance, so "changed" compares results without them.
TIMINGS = frozenset({"seconds", "mtime_ns", "tokens_per_s", "wall_seconds", "total_wall_seconds"})


def _without_timings(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def result_hash(path: Path) -> str:
    """The content's hash; of a JSON (or JSON-lines) file, without its timings."""
    data = path.read_bytes()
    try:
        if path.suffix == ".json":
            data = json.dumps(_without_timings(json.loads(data)), sort_keys=True).encode()
        elif path.suffix == ".jsonl":
            data = "\n".join(json.dumps(_without_timings(json.loads(line)), sort_keys=True)
                             for line in data.decode().splitlines() if line.strip()).encode()
    except ValueError:  # not JSON after all: compared byte for byte
        pass
    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[int, str, str]]:
    """Every artifact of the run (prepared data and results, logs aside): modification time, content hash,
    result hash (the content without its timings)."""
    files = {}
    for base in ("data/prepared", "results"):
        for p in (root / base).rglob("*"):
            rel = str(p.relative_to(root))
            if p.is_file() and not rel.startswith("results/logs/") and p.name != ".gitignore":
                files[rel] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest(), result_hash(p))
    return files


@dataclass(frozen=True)
class Impact:
    rewritten: frozenset[str]  # written by the run: in place or new
    changed: frozenset[str]  # of those, the ones whose results differ (or new): content, timings aside
    deleted: frozenset[str]
    kept: frozenset[str]


def impact(before: dict[str, tuple[int, str, str]], after: dict[str, tuple[int, str, str]]) -> Impact:
    return Impact(frozenset(f for f in after if before.get(f) != after[f]),
                  frozenset(f for f in after if f not in before or before[f][2] != after[f][2]),
                  frozenset(set(before) - set(after)), frozenset(f for f in after if before.get(f) == after[f]))


def nothing_to_do(project: Path) -> bool:
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1"], project)
    return "Nothing to be done" in out.stdout + out.stderr


def dvc_clean(project: Path) -> bool:
    out = ok(run([str(BIN / "dvc"), "status", "--json", "dvc.yaml"], project))
    return json.loads(out.stdout or "{}") == {}


def set_params(project: Path, **changes: object) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def finished(smoke_run: Path) -> Path:
    """The smoke preset as params.yaml, in a git repository, run to the end by Snakemake alone."""
    return smoke_run


@pytest.fixture(scope="session")
def adoption(finished: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, "Impact"]:
    """A copy of the finished run after `dvc repro` adopted it, and what the adoption changed."""
    project = clone_of(finished, tmp_path_factory.mktemp("adopted") / "p")
    before = snapshot(project)
    ok(run([str(BIN / "dvc"), "repro"], project, timeout=1200))
    return project, impact(before, snapshot(project))


@pytest.fixture
def adopted(adoption: tuple[Path, "Impact"], tmp_path: Path) -> Path:
    """A copy of the adopted run to change."""
    return clone_of(adoption[0], tmp_path / "adopted")


@pytest.mark.slow
@SMOKE_RUN
def test_dvc_repro_after_a_snakemake_run_adopts_it_and_rewrites_nothing(adoption: tuple[Path, Impact],
                                                                        tmp_path: Path):
    project, moved = clone_of(adoption[0], tmp_path / "p"), adoption[1]
    assert not moved.rewritten and not moved.deleted, sorted(moved.rewritten | moved.deleted)[:10]
    assert "Data and pipelines are up to date" in ok(run([str(BIN / "dvc"), "repro"], project)).stdout
    assert nothing_to_do(project) and dvc_clean(project)
    assert versioned.bad_cache_objects(project / ".dvc" / "cache") == []


@pytest.mark.slow
@SMOKE_RUN
def test_an_interrupted_dvc_repro_deletes_no_finished_output(finished: Path, tmp_path: Path):
    project = clone_of(finished, tmp_path / "p")
    before = snapshot(project)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(12)  # inside its stages: each asks Snakemake, which finds its work done
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    moved = impact(before, snapshot(project))
    assert not moved.deleted and not moved.rewritten, sorted(moved.deleted | moved.rewritten)[:10]


@pytest.mark.slow
@SMOKE_RUN
def test_a_run_made_with_another_config_file_is_not_recorded_as_params_yamls(finished: Path, tmp_path: Path):
    project = clone_of(finished, tmp_path / "p")
    ranking = project / "results" / "rounds" / "r00" / "ranking.csv"
    own = ranking.read_text()
    other = yaml.safe_load((project / "params.yaml").read_text())
    other["search"]["ranker"] = "loss"
    (project / "other.yaml").write_text(yaml.safe_dump(other))
    ok(run([str(BIN / "snakemake"), "--cores", "2", "--configfile", "other.yaml"], project, timeout=1200))
    assert ranking.read_text() != own, "the other config ranks otherwise"
    ok(run([str(BIN / "dvc"), "repro"], project, timeout=1200))
    assert ranking.read_text() == own, "dvc repro recorded params.yaml's run, recomputed"
    assert nothing_to_do(project) and dvc_clean(project)


# --- what a change recomputes, under both engines -----------------------------------------------

KEPT_BY_ALL = ("data/prepared/*",)


@dataclass(frozen=True)
class Change:
    name: str
    params: dict
    edit: str | None = None  # a package source appended to
    kept: tuple[str, ...] = ()  # patterns (fnmatch) of artifacts that must survive untouched
    rewritten: tuple[str, ...] = ()  # artifacts that must be recomputed
    new_dvc_yaml: bool = False  # the stages change: regenerate dvc.yaml first (as its header says)


DENSE_AND_ROUND0 = ("results/dense/*", "results/dense-final/*", "results/rounds/r00/s*")
EVERY_CHECKPOINT = "*/epoch-*.pt"
CHANGES = [
    Change("search.embedding: pca -> raw", {"search.embedding": "raw"},
           kept=DENSE_AND_ROUND0, rewritten=("results/rounds/r00/ranking.csv",)),
    Change("search.ranker: ls -> loss", {"search.ranker": "loss"},
           kept=DENSE_AND_ROUND0, rewritten=("results/rounds/r00/ranking.csv",)),
    Change("lyapunov.samples: 2 -> 3", {"lyapunov.samples": 3},
           kept=("results/dense-final/*", "results/dense/epoch-*.pt", "results/rounds/r00/s*/train/*"),
           rewritten=("results/dense/spectra.json", "results/rounds/r00/s00/spectra.json")),
    Change("final.epochs: 3 -> 4", {"final.epochs": 4},
           kept=("results/dense/*", "results/rounds/*"),
           rewritten=("results/final/f00/epoch-004.pt", "results/final/selected.json")),
    Change("report.correlation_candidates: 0 -> 1", {"report.correlation_candidates": 1}, new_dvc_yaml=True,
           kept=("results/dense*", "results/rounds/*", "results/final/*"),
           rewritten=("results/correlation/c00/summary.json", "results/report/summary.md")),
    Change("an edit to lsh/report/figures.py", {}, edit="lsh/report/figures.py",
           kept=("results/dense*", "results/rounds/*", "results/final/*", "results/correlation/*"),
           rewritten=("results/report/summary.md",)),
    Change("an edit to lsh/training/loop.py", {}, edit="lsh/training/loop.py", kept=(EVERY_CHECKPOINT,),
           rewritten=("results/dense/summary.json", "results/rounds/r00/s00/train/summary.json")),
]


def superseded(deleted: frozenset[str], rewritten: frozenset[str]) -> bool:
    """Deleted files are only checkpoints replaced by a later epoch's in their folder (`--keep last`)."""
    return all(fnmatch(f, EVERY_CHECKPOINT)
               and any(fnmatch(g, EVERY_CHECKPOINT) and Path(g).parent == Path(f).parent and g > f for g in rewritten)
               for f in deleted)


def apply(change: Change, project: Path) -> None:
    if change.params:
        set_params(project, **change.params)
    if change.edit:
        with (project / change.edit).open("a") as f:
            f.write(f"# {change.name}\n")
    if change.new_dvc_yaml:
        ok(run([str(BIN / "python"), "workflow/scripts/dvc_yaml.py", "--out", "dvc.yaml"], project))


def jobs_run(log: str) -> int:
    """The jobs one Snakemake run executed, from its log."""
    return sum(line.startswith(("rule ", "localrule ")) for line in log.splitlines())


def table_rows(rows: list[tuple[str, int, Impact, Impact]]) -> str:
    lines = ["| change | Snakemake jobs | files written (Snakemake / DVC) | of them changed or new | files kept "
             "(Snakemake) | checkpoints kept |", "|---|---|---|---|---|---|"]
    for name, jobs, s, d in rows:
        pts = [f for f in s.kept | s.rewritten if f.endswith(".pt")]
        kept_pts = sum(f in s.kept for f in pts)
        lines.append(f"| {name} | {jobs} | {len(s.rewritten)} / {len(d.rewritten)} | {len(s.changed)} | {len(s.kept)} "
                     f"| {kept_pts} of {len(pts)} |")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@SMOKE_RUN
def test_each_change_recomputes_the_same_artifacts_under_snakemake_and_dvc(finished: Path, adopted: Path,
                                                                            tmp_path: Path):
    """The same sequence of changes in two copies of one finished run: Snakemake in one, DVC (dvc repro,
    and dvc exp run -S for the first) in the other. After each, both rewrote exactly the same files,
    kept what the change does not touch, and both engines see the DVC copy as up to date."""
    snake, dvc = clone_of(finished, tmp_path / "snakemake"), adopted

    def step(engine: str, project: Path, change: Change, first: bool) -> tuple[dict, Impact, str]:
        before = snapshot(project)
        if engine == "dvc" and first:
            out = ok(run([str(BIN / "dvc"), "exp", "run", *(f"-S{k}={v}" for k, v in change.params.items())],
                         project, timeout=1800))
        else:
            apply(change, project)
            command = ["snakemake", "--cores", "2"] if engine == "snakemake" else ["dvc", "repro"]
            out = ok(run([str(BIN / command[0]), *command[1:]], project, timeout=1800))
        return before, impact(before, snapshot(project)), out.stdout + out.stderr

    rows = []
    for i, change in enumerate(CHANGES):
        # the two engines work on two copies at once (each mostly waits on its own jobs)
        with ThreadPoolExecutor(2) as pool:
            done = {engine: pool.submit(step, engine, project, change, i == 0)
                    for engine, project in (("snakemake", snake), ("dvc", dvc))}
        before = {engine: future.result()[0] for engine, future in done.items()}
        s, d = (done[engine].result()[1] for engine in ("snakemake", "dvc"))
        jobs = jobs_run(done["snakemake"].result()[2])
        # The same artifacts recomputed. Snakemake alone may also rewrite a file to the same content
        # where DVC does not: in one invocation a job after a rerun job reruns whatever that job
        # writes, while a DVC stage's Snakemake sees the previous stage's outputs and compares their
        # content (pool.json after a retraining that ranks the same).
        assert s.changed == d.changed, (change.name, sorted(s.changed ^ d.changed)[:10])
        assert d.rewritten <= s.rewritten, (change.name, sorted(d.rewritten - s.rewritten)[:10])
        assert s.deleted == d.deleted and superseded(s.deleted, s.rewritten), (change.name, sorted(s.deleted)[:10])
        for pattern in (*KEPT_BY_ALL, *change.kept):
            touched = sorted(f for f in s.rewritten | s.deleted | d.rewritten
                             if fnmatch(f, pattern) and f in before["snakemake"])
            assert not touched, (change.name, pattern, touched[:10])
        for path in change.rewritten:
            assert path in s.rewritten, (change.name, path)
        assert nothing_to_do(dvc), change.name
        assert dvc_clean(dvc), change.name
        rows.append((change.name, jobs, s, d))
    assert versioned.bad_cache_objects(dvc / ".dvc" / "cache") == [], "a cached file was changed in place"
    # The counts are one machine's measurement (how many candidates a change retrains depends on the
    # ranking, and so on the last bits of a run made elsewhere): the document records the machine and
    # the test checks only what must hold everywhere (above), and that the document lists these changes.
    if os.environ.get("LSH_WRITE_CHANGE_TABLE"):
        machine = numerics.current()
        text = (f"Measured on {machine['cpu']} ({machine['vendor']}), numerics {machine['numerics']}, "
                f"torch {machine['versions']['torch']}:\n\n{table_rows(rows)}")
        current = CHANGE_TABLE.read_text()
        head, _, rest = current.partition("<!-- table -->\n")
        _, _, tail = rest.partition("<!-- end -->\n")
        CHANGE_TABLE.write_text(f"{head}<!-- table -->\n{text}<!-- end -->\n{tail}")
    documented = CHANGE_TABLE.read_text().partition("<!-- table -->\n")[2].partition("<!-- end -->")[0]
    assert documented.startswith("Measured on "), f"{CHANGE_TABLE}'s table names no machine"
    assert [line.split(" | ")[0].lstrip("| ") for line in documented.splitlines()[4:]] == [c.name for c in CHANGES], (
        f"{CHANGE_TABLE} lists other changes than this test makes: rerun it with LSH_WRITE_CHANGE_TABLE=1")


# --- a versioned run, pushed and pulled ----------------------------------------------------------


def versioned_copy(adopted: Path, tmp_path: Path, remote: bool = True) -> Path:
    """The adopted run (recorded by `dvc repro`) committed, with a directory remote."""
    project = adopted
    if remote:
        ok(run([str(BIN / "dvc"), "remote", "add", "-d", "team", str(tmp_path / "remote")], project))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "the smoke run, versioned")
    return project


@pytest.mark.slow
@SMOKE_RUN
def test_a_pushed_run_pulled_into_another_clone_is_up_to_date_for_both_engines(adopted: Path, tmp_path: Path):
    project = versioned_copy(adopted, tmp_path)
    ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "push"], project))

    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(project), str(other)], check=True)
    out = ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other, timeout=1200))
    assert "up to date" in out.stdout
    assert ((other / "results" / "final" / "selected.json").read_text()
            == (project / "results" / "final" / "selected.json").read_text())
    assert nothing_to_do(other) and dvc_clean(other)


@pytest.mark.slow
@SMOKE_RUN
def test_pull_checks_out_an_earlier_commits_run_from_the_cache(adopted: Path, tmp_path: Path):
    project = versioned_copy(adopted, tmp_path)
    ranking = project / "results" / "rounds" / "r00" / "ranking.csv"
    first = ranking.read_text()
    set_params(project, **{"search.ranker": "loss"})
    ok(run([str(BIN / "dvc"), "repro"], project, timeout=1200))
    assert ranking.read_text() != first
    git(project, "add", "-A")
    git(project, "commit", "-qm", "ranker loss")
    git(project, "checkout", "-q", "HEAD~1")
    ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], project, timeout=1200))
    assert ranking.read_text() == first
    assert nothing_to_do(project) and dvc_clean(project)


@pytest.mark.slow
@SMOKE_RUN
def test_pull_without_a_remote_or_with_a_damaged_file_stops_in_one_line_and_touches_nothing(
        adopted: Path, tmp_path: Path):
    project = versioned_copy(adopted, tmp_path, remote=False)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(project), str(other)], check=True)
    out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "no default DVC remote" in out.stderr
    assert not (other / "results").exists()
    ok(run([str(BIN / "dvc"), "remote", "add", "-d", "gone", str(tmp_path / "gone")], other))
    out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other)
    assert out.returncode == 2 and f"the DVC remote 'gone' is the folder {tmp_path / 'gone'}, which does not exist" \
        in out.stderr and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    ok(run([str(BIN / "dvc"), "remote", "remove", "gone"], other))

    ok(run([str(BIN / "dvc"), "remote", "add", "-d", "team", str(tmp_path / "remote")], project))
    ok(run([str(BIN / "dvc"), "push", "dvc.yaml"], project))
    damaged = next(p for p in sorted((tmp_path / "remote" / "files" / "md5").glob("*/*"))
                   if not p.name.endswith(".dir"))
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes() + b"damage")
    ok(run([str(BIN / "dvc"), "remote", "add", "-d", "team", str(tmp_path / "remote")], other))
    out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other, timeout=1200)
    assert out.returncode == 2 and "do not match their hash" in out.stderr, out.stdout + out.stderr
    assert not (other / "results").exists(), "nothing checked out"

    # the file gone from the remote (and the damaged copy from the cache): DVC's fetch warns and goes on
    damaged.unlink()
    for cached in (other / ".dvc" / "cache" / "files" / "md5").glob(f"{damaged.parent.name}/{damaged.name}"):
        cached.unlink()
    out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other, timeout=1200)
    assert out.returncode == 2 and "in neither the remote nor the cache, e.g. " in out.stderr, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and not (other / "results").exists()


@pytest.mark.parametrize("target", ["push", "pull"])
def test_make_push_and_pull_pass_the_remote_as_one_argument_and_reinstall_nothing(tmp_path: Path, target: str):
    """`make push REMOTE='x; touch F'` names a remote called that (and fails: there is none); it runs no shell
    code. And an environment older than pyproject.toml is used as it is: push and pull only need one."""
    project = tmp_path / "p"
    project.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(REPO / name, project / name)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(BIN / "python")
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (1, 1))  # older than the project's files: `make setup` would reinstall
    (project / "workflow" / "scripts").mkdir(parents=True)
    (project / "workflow" / "scripts" / "versioned.py").write_text(
        "import sys, json; print(json.dumps(sys.argv[1:]))\n")  # what the recipe hands the script
    out = run(["make", "-s", target, f"VENV={venv}", "REMOTE=x; touch INJECTED"], project)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [target, "--remote", "x; touch INJECTED"]
    assert not (project / "INJECTED").exists() and "pip" not in out.stdout + out.stderr
    out = run(["make", "-s", target, f"VENV={venv}"], project)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [target], out.stdout + out.stderr


def test_a_lock_of_other_params_or_code_is_refused_by_pull_but_its_own_outputs_are_what_a_pull_brings():
    """`dvc status --json` as DVC 3 writes it when dvc.lock comes from another commit than params.yaml and the
    code (its outputs missing too, as in a fresh clone): the params and the code are named, never the
    stages' outputs that other stages depend on."""
    stages = {"prepare": {"outs": [{"path": "data/prepared", "md5": "a.dir"}]},
              "round-00": {"outs": [{"path": "results/rounds/r00", "md5": "b.dir"}]}}
    status = {"round-00": [{"changed deps": {"lsh/search/ranking.py": "modified", "data/prepared": "deleted",
                                            "params.yaml": {"search.ranker": "modified"}}},
                           {"changed outs": {"results/rounds/r00": "deleted"}}],
              "final": [{"changed deps": {"results/rounds/r00/ranking.csv": "deleted",
                                          "params.yaml": {"search": "modified"}}}, "always changed"]}
    assert versioned.recorded_otherwise(status, stages) == [
        "lsh/search/ranking.py", "params.yaml: search", "params.yaml: search.ranker"]
    assert versioned.recorded_otherwise({"round-00": [{"changed deps": {"data/prepared": "deleted"}},
                                                      {"changed outs": {"results/rounds/r00": "deleted"}}]},
                                        stages) == []


def test_a_fetch_that_left_a_file_out_is_named_before_anything_is_checked_out(tmp_path: Path):
    cache = tmp_path / "cache"

    def put(md5: str, content: bytes) -> None:
        (cache / "files" / "md5" / md5[:2]).mkdir(parents=True, exist_ok=True)
        (cache / "files" / "md5" / md5[:2] / md5[2:]).write_bytes(content)

    put("aa11", b"x")
    put("bb22.dir", json.dumps([{"md5": "aa11", "relpath": "kept.pt"}, {"md5": "cc33", "relpath": "lost.pt"}]).encode())
    stages = {"dense": {"outs": [{"path": "results/dense", "md5": "bb22.dir"},
                                 {"path": "results/e.json", "md5": "dd44"}]}}
    assert versioned.missing_objects(cache, stages) == ["results/dense/lost.pt", "results/e.json"]
    put("bb22.dir", b"[{not json")
    with pytest.raises(versioned.Stop,
                       match=r"the list of the files of results/dense .* is damaged: nothing checked out"):
        versioned.missing_objects(cache, stages)
    assert versioned._reason("ERROR: failed to fetch 'x'\nHaving any troubles? Hit us up at https://dvc.org/support, "
                             "we are always happy to help!\n") == "failed to fetch 'x'"


@pytest.mark.slow
@SMOKE_RUN
def test_a_pull_of_a_lock_recorded_under_other_params_stops_before_it_changes_anything(adopted: Path, tmp_path: Path):
    """An older dvc.lock beside newer params (`git checkout HEAD~1 -- dvc.lock`, or a commit that changed
    params.yaml without `dvc repro`): pulling it would put the ls ranking under `ranker: loss`, and
    Snakemake would take it as current. The pull names what differs and changes nothing."""
    project = versioned_copy(adopted, tmp_path)
    ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "push"], project))
    set_params(project, **{"search.ranker": "loss"})
    before = snapshot(project)
    out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], project)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert "dvc.lock records another run's params or code than this workspace holds (" in out.stderr, out.stderr
    assert "params.yaml: search.ranker" in out.stderr and out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert impact(before, snapshot(project)).rewritten == frozenset(), "nothing checked out"


def test_a_killed_fetchs_temporary_file_in_the_cache_is_no_damaged_object_and_goes_once_nothing_writes_it(
        tmp_path: Path):
    """DVC copies an object to `.<random>.tmp` beside it and renames it when whole; a killed fetch leaves the
    temporary file, which no hash matches. It is never reported as a damaged object, and after the next fetch
    it is removed unless something wrote to it meanwhile (a fetch running beside this one)."""
    import hashlib

    folder = tmp_path / "cache" / "files" / "md5" / hashlib.md5(b"x").hexdigest()[:2]
    folder.mkdir(parents=True)
    whole = folder / hashlib.md5(b"x").hexdigest()[2:]
    whole.write_bytes(b"x")
    stale, live = folder / ".QMmJmr_sARJoHuf04YTvGA.tmp", folder / ".b2VvdGhlcg.tmp"
    stale.write_bytes(b"half an obj")
    live.write_bytes(b"a fourth")
    assert versioned.bad_cache_objects(tmp_path / "cache") == []
    before = versioned.cache_partials(tmp_path / "cache")
    assert set(before) == {stale, live}
    os.utime(live, ns=(before[live] + 10**9, before[live] + 10**9))  # written during the fetch
    assert versioned.remove_stale_partials(before) == [stale]
    assert live.exists() and not stale.exists() and whole.read_bytes() == b"x"


def _pull_with_a_fetch_that_leaves(missing: list[list[str]], tmp_path: Path, monkeypatch) -> tuple[list, list]:
    """versioned.pull with DVC and Snakemake replaced by stand-ins that succeed: each fetch leaves the next list
    of missing files. Returns the fetches run and the data-index drops."""
    monkeypatch.chdir(tmp_path)
    fetches, drops = [], []

    def fake_run(*command: str, check: str | None = None) -> subprocess.CompletedProcess:
        if command[1] == "fetch":
            fetches.append(command[1:])
        out = {"status": "{}", "cache": str(tmp_path / "cache")}.get(command[1], "")
        return subprocess.CompletedProcess(command, 0, stdout=out, stderr="")

    left = iter(missing)
    monkeypatch.setattr(versioned, "_run", fake_run)
    monkeypatch.setattr(versioned, "remote_args", lambda name: [])
    monkeypatch.setattr(versioned, "_lock_stages", lambda: {})
    monkeypatch.setattr(versioned, "missing_objects", lambda cache, stages: next(left))
    monkeypatch.setattr(versioned, "drop_data_index", lambda: drops.append(1) or True)
    monkeypatch.setattr(versioned, "status_clean", lambda: True)
    return fetches, drops


def test_a_fetch_that_succeeds_with_files_missing_is_run_again_without_dvcs_data_index(tmp_path: Path, monkeypatch):
    """A fetch killed while DVC writes its data index leaves entries for files never fetched; the next fetch
    trusts them and reports success with files missing (seen in the battery above, kill at 0.8 s). The pull
    drops the index and fetches once more; files still missing then are named, nothing checked out."""
    fetches, drops = _pull_with_a_fetch_that_leaves([["results/rounds/r00/pool.json"], []], tmp_path, monkeypatch)
    assert "fetched again without DVC's data index" in versioned.pull(None)
    assert len(fetches) == 2 and drops == [1]
    fetches, drops = _pull_with_a_fetch_that_leaves([["results/a.pt"], ["results/a.pt"]], tmp_path, monkeypatch)
    with pytest.raises(versioned.Stop, match="1 file.s. of the run are in neither the remote nor the cache"):
        versioned.pull(None)
    assert len(fetches) == 2 and drops == [1]


def test_a_fetch_that_fails_for_another_reason_than_a_missing_file_is_named_as_dvc_names_it():
    """DVC wraps every fetch failure in "failed to fetch data from the cloud"; only "N files failed to download"
    is a file the remote lacks (named by missing_objects). A workspace DVC takes as busy is not that."""
    busy = ("ERROR: failed to fetch data from the cloud - '/p/dvc.yaml' is busy, it is being blocked by:\n"
            "  (PID 4242): dvc fetch dvc.yaml\n")
    assert versioned.fetch_failure(1, busy).startswith("failed to fetch data from the cloud - '/p/dvc.yaml' is busy")
    assert versioned.fetch_failure(1, "ERROR: failed to fetch data from the cloud - 5 files failed to download\n") \
        is None
    assert versioned.fetch_failure(0, "") is None


def test_a_pull_removes_the_partial_files_an_interrupted_write_left_in_the_outputs_and_nothing_else(tmp_path: Path,
                                                                                                     monkeypatch):
    """A checkout or a job killed mid-write leaves `<name>.<random>.tmp` (DVC) or `.<name>.<random>.tmp` (lsh):
    DVC's next checkout stops on a file it does not know. Nothing finished ends in .tmp."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "dense"
    out.mkdir(parents=True)
    for name in ("epoch-000.pt", "epoch-001.pt.3kF9x.tmp", ".summary.json.a1b2.tmp", "metrics.jsonl"):
        (out / name).write_text("x")
    (tmp_path / "results" / "elsewhere.tmp").write_text("not an output of the run")
    stages = {"dense": {"outs": [{"path": "results/dense", "md5": "a.dir"}, {"path": "results/missing", "md5": "b"}]}}
    assert versioned.remove_partials(stages) == ["results/dense/.summary.json.a1b2.tmp",
                                                 "results/dense/epoch-001.pt.3kF9x.tmp"]
    assert sorted(p.name for p in out.iterdir()) == ["epoch-000.pt", "metrics.jsonl"]
    assert (tmp_path / "results" / "elsewhere.tmp").exists()


def test_every_rule_that_runs_lsh_takes_its_params_and_code_from_the_shared_table():
    """The rules' params and the DVC stages' come from workflow/scripts/rule_reads.py: every rule
    calling lsh_params names itself, and every rule of the table is a rule of the workflow."""
    import re

    named = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"rule (\w+):", line):
                rule = m.group(1)
            if m := re.search(r'lsh_params\("(\w+)"\)', line):
                named[rule] = m.group(1)
    assert named and all(rule == name for rule, name in named.items()), named
    assert set(named) == set(rule_reads.RULES)


def test_a_rules_code_is_the_import_closure_of_its_command(tmp_path: Path):
    report = rule_reads.code_files(str(REPO), "lsh.stages.report")
    train = rule_reads.code_files(str(REPO), "lsh.stages.train")
    assert "lsh/report/figures.py" in report and "lsh/report/figures.py" not in train
    assert "lsh/training/loop.py" in train and "lsh/training/loop.py" not in report
    assert {"lsh/cli.py", "lsh/config.py", "lsh/params.schema.yaml"} <= set(report) & set(train)
    project = copy_project(tmp_path)
    before = rule_reads.code_hash(str(project), "lsh.stages.report")
    with (project / "lsh" / "report" / "figures.py").open("a") as f:
        f.write("# an edit\n")
    rule_reads.code_hash.cache_clear()
    assert rule_reads.code_hash(str(project), "lsh.stages.report") != before
    assert rule_reads.code_hash(str(project), "lsh.stages.train") == rule_reads.code_hash(str(REPO), "lsh.stages.train")


# --- the shared state, interrupted and raced ---------------------------------------------------------


def _group_runs(pgid: int, word: str) -> bool:
    """Whether a process of the group runs with `word` as an argument (`dvc fetch ...`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and word.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                return True
        except OSError:  # gone meanwhile
            continue
    return False


def _wait_until_gone(pgid: int, seconds: float = 60) -> None:
    """Until no process of the group exists, a zombie not yet reaped included: DVC takes the lock of a process
    whose PID still exists as held (dvc/rwlock.py), and a killed child is reaped by init in its own time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    alive = alive or os.getpgid(int(entry.name)) == pgid
                except OSError:
                    continue
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"the killed pull's processes (group {pgid}) still exist after {seconds} s")


def _interruptible() -> None:
    """Ctrl-C's default action in the child, as in a terminal: a test run started in the background (CI, `&`)
    hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_results(project: Path) -> dict[str, str]:
    """The run's results (not Snakemake's or DVC's bookkeeping), by content without timings."""
    return {f: h for f, (_, _, h) in snapshot(project).items()}


@pytest.mark.slow
@SMOKE_RUN
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_pull_interrupted_in_its_fetch_or_its_checkout_is_completed_by_the_next_pull(adopted: Path, tmp_path: Path,
                                                                                        sig: signal.Signals):
    """Ctrl-C (SIGINT to the group) or kill -9 while `make pull` fetches or checks out, at several moments of
    each: the interrupted pull leaves nothing marked current for Snakemake, and the next pull completes the
    very run that was pushed (no leftover file stops it, no output stays missing)."""
    project = versioned_copy(adopted, tmp_path)
    ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "push"], project))
    pushed = run_results(project)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    landed = set()
    for phase in ("fetch", "checkout"):
        for delay in (0.0, 0.7, 1.5):
            other = tmp_path / f"{phase}-{delay}"
            subprocess.run(["git", "clone", "-q", str(project), str(other)], check=True)
            proc = subprocess.Popen([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], cwd=other, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_interruptible)
            deadline = time.monotonic() + 300
            while not _group_runs(proc.pid, phase) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(delay)
            if proc.poll() is None:
                landed.add((phase, _group_runs(proc.pid, phase)))
                os.killpg(proc.pid, sig)
            proc.wait(timeout=300)
            _wait_until_gone(proc.pid)  # as when the user types the next command: the killed DVC reaped
            if (other / "results").exists():  # whatever the interrupted pull left, Snakemake must not take as done
                assert not nothing_to_do(other), f"{phase}+{delay}s: a partial pull was marked current"
            out = run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], other, timeout=1200)
            assert out.returncode == 0, f"{phase}+{delay}s: {out.stdout}{out.stderr}"
            assert run_results(other) == pushed, f"{phase}+{delay}s: the next pull did not bring the pushed run"
            assert nothing_to_do(other) and dvc_clean(other), f"{phase}+{delay}s"
    assert ("fetch", True) in landed and ("checkout", True) in landed, f"no kill landed inside both phases: {landed}"


@pytest.mark.slow
@SMOKE_RUN
def test_two_clones_pushing_to_one_remote_at_once_both_succeed_and_a_third_pulls_the_run(adopted: Path,
                                                                                        tmp_path: Path):
    """The same objects written by two pushes at the same moment (two machines sharing a team remote):
    neither push fails or leaves a damaged object, and a fresh clone pulls the run whole."""
    project = versioned_copy(adopted, tmp_path)
    twin = tmp_path / "twin"
    shutil.copytree(project, twin, symlinks=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    procs = [subprocess.Popen([str(BIN / "python"), "workflow/scripts/versioned.py", "push"], cwd=p, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in (project, twin)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    remote = tmp_path / "remote"
    assert versioned.bad_cache_objects(remote) == [] and not list(remote.rglob("*.tmp")), "a damaged remote object"
    third = tmp_path / "third"
    subprocess.run(["git", "clone", "-q", str(project), str(third)], check=True)
    ok(run([str(BIN / "python"), "workflow/scripts/versioned.py", "pull"], third, timeout=1200))
    assert run_results(third) == run_results(project) and nothing_to_do(third) and dvc_clean(third)


@pytest.mark.slow
@SMOKE_RUN
def test_another_numerics_reruns_every_job_but_the_data_so_no_record_is_rewritten_alone(finished: Path,
                                                                                        tmp_path: Path):
    """`--config numerics=native` after a portable run: every output that numerics' kernels computed is
    planned again, and the environment record with them, never the environment record alone."""
    project = clone_of(finished, tmp_path / "p")
    out = ok(run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", "numerics=native"], project))
    planned = {line.split()[1].rstrip(":") for line in out.stdout.splitlines()
               if line.startswith(("rule ", "localrule "))}
    computed = {"environment", "report", "train_dense", "train_candidate", "spectra_candidate", "select"}
    assert "prepare" not in planned and computed <= planned, planned
