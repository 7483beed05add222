"""Every value a rule hands its shell command is quoted, and the shared prepared data survives a new
results folder and a failed rerun (issue 21). Snakemake runs for real in a copy of the project."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import BIN, HOSTILE, HOSTILE_RUN, REPO, SMOKE, run

from lsh import config, params_file
from lsh.study.cells import cell_ids

# HOSTILE (conftest): a results folder whose every character a shell would misread.
SNAKEMAKE = str(BIN / "snakemake")


def shell_rules() -> set[str]:
    """The rules of workflow/rules/*.smk that run a shell command."""
    names = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            if re.search(r"^    shell:", block, flags=re.M):
                names.add(block.split(":", 1)[0])
    return names


def shell_commands(dry_run_output: str) -> list[tuple[str, str]]:
    """(rule, command) for every job of `snakemake -n -p`."""
    commands, rule = [], None
    for line in dry_run_output.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.rstrip().endswith(":"):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("Shell command: ") and line != "Shell command: None":  # None: a rule without one
            commands.append((rule, line[len("Shell command: "):]))
    return commands


def injected(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.name == "INJECTED"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a folder: its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_every_rules_command_keeps_a_hostile_results_path_one_argument(project: Path):
    """A dry run prints every job's command (the whole run, the comparison set, the study and a correlation
    training): each path under the results folder is one word of the command, and nothing else is."""
    params = params_file.read_yaml(project / SMOKE)
    params["results"] = HOSTILE
    params["report"]["correlation_candidates"] = 1
    # a shorter study beside it (its cells only need to exist for a dry run), so that the horizon rules run too
    shorter = params_file.read_yaml(project / SMOKE)
    shorter["study"]["cells"] = "short-cells"
    (project / "short.yaml").write_text(yaml.safe_dump(shorter))
    params["study"]["shorter"] = "short.yaml"
    for cid in cell_ids(config.Params.from_dict(config.validate(params))):
        for k in range(params["study"]["seeds"]):
            (project / "short-cells" / cid / f"s{k}").mkdir(parents=True)
            (project / "short-cells" / cid / f"s{k}" / "rows.json").write_text("{}")
    (project / "hostile.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    out = run([SNAKEMAKE, "all", "compare", "study", "-n", "-p", "--cores", "1", "--configfile", "hostile.yaml"],
              project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    commands = shell_commands(out.stdout)
    assert {rule for rule, _ in commands} == shell_rules(), "a dry run that shows every rule's command"
    for rule, command in commands:
        words = shlex.split(command)
        assert any(w.startswith(HOSTILE + "/") for w in words), (rule, command)  # its log, at least
        for word in words:
            if any(part in word for part in ("ünï", "touch", "INJECTED", "'q")):
                assert word == HOSTILE or word.startswith(HOSTILE + "/"), (rule, word, command)
    compare = next(shlex.split(c) for rule, c in commands if rule == "compare")
    runs = compare[compare.index("--compare") + 1: compare.index("--out")]
    assert runs == [f"{HOSTILE}/compare/{m}"
                    for m in yaml.safe_load((REPO / "workflow" / "comparison.yaml").read_text())]
    assert not injected(project)


@pytest.mark.slow
@HOSTILE_RUN
def test_a_results_folder_with_a_space_quotes_and_non_ascii_letters_runs_the_smoke_preset(hostile_run: Path):
    assert not injected(hostile_run), "a command substitution in the results path ran"
    results = hostile_run / HOSTILE
    assert config.load_params(results / "resolved-params.yaml")["results"] == HOSTILE
    selected = json.loads((results / "final" / "selected.json").read_text())
    assert selected["status"] == "ok" and selected["valid_ppl"] > 0
    assert (results / "report" / "summary.md").is_file() and (results / "logs" / "prepare.log").is_file()
    again = run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", SMOKE, "--config", f"results={HOSTILE}"], hostile_run)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    assert not injected(hostile_run)


@pytest.mark.slow
@HOSTILE_RUN
def test_a_new_results_folder_reuses_the_prepared_data(hostile_run: Path):
    prepared = hostile_run / "data" / "prepared"
    before = snapshot(prepared)
    dry = run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", SMOKE, "--config", "results=other results"],
              hostile_run)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    rules = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert "train_dense" in rules and "prepare" not in rules, rules
    # asked for by name, prepare is up to date: it does not run (it would rewrite every file)
    out = run([SNAKEMAKE, "prepare", "--cores", "1", "--configfile", SMOKE, "--config", "results=other results"],
              hostile_run)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr
    assert snapshot(prepared) == before


@pytest.mark.slow
def test_a_failing_prepare_removes_nothing_it_did_not_write(project: Path):
    """Snakemake deletes a job's outputs before it runs and after it fails; prepare's are kept (update())."""
    smoke = ["--cores", "1", "--configfile", SMOKE]
    assert run([SNAKEMAKE, "prepare", *smoke], project).returncode == 0
    prepared = project / "data" / "prepared"
    before = {name: data for name, (data, _) in snapshot(prepared).items()}
    assert set(before) == {"train.npy", "valid.npy", "test.npy", "vocab.txt", "meta.json"}
    raw = project / "data" / "ptb"
    raw.unlink()  # the link to the real PTB: now text that fails its sha256 check
    raw.mkdir()
    for split in ("train", "valid", "test"):
        (raw / f"ptb.{split}.txt").write_text("not the penn treebank\n")
    out = run([SNAKEMAKE, "prepare", "--forcerun", "prepare", *smoke], project)
    assert out.returncode != 0
    assert "sha256 mismatch" in (project / "results" / "logs" / "prepare.log").read_text()
    assert {name: data for name, (data, _) in snapshot(prepared).items()} == before
