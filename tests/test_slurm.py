"""The SLURM profile, for real: a one-node cluster on this machine runs a small search through it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, SMALL_RUN, copy_project, run, small_search_params
from slurm.cluster import Cluster, available

pytestmark = [pytest.mark.slurm, pytest.mark.slow, SMALL_RUN]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    why = available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM test: {why} (make test installs them as root)")
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_slurm_profile_runs_the_search_and_selects_what_a_local_run_selects(cluster, small_run: Path, tmp_path: Path,
                                                                          ptb_quick: Path):
    """The small search through sbatch selects what conftest's small_run selected locally."""
    local = small_run
    (tmp_path / "slurm").mkdir()
    remote = copy_project(tmp_path / "slurm", ptb_quick)
    (remote / "small.yaml").write_text(yaml.safe_dump(small_search_params(remote)))
    # the profile's polling suits a real cluster (a first check after 40 s, then every 10 s); this one answers
    # at once, so the test polls every second
    out = run([str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm", "--configfile", "small.yaml",
               "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"], remote,
              timeout=1200)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    log = "".join(p.read_text() for p in (remote / ".snakemake" / "log").glob("*.log"))
    submitted = log.count("has been submitted with SLURM jobid")
    assert submitted >= 10, f"the jobs ran through sbatch ({submitted} submitted)"
    a, b = (json.loads((p / "results" / "final" / "selected.json").read_text()) for p in (local, remote))
    for key in ("candidate", "config", "valid_ppl", "test_ppl"):
        assert a[key] == b[key], key
    # the profile's `gpu: 1` reaches sbatch as --gpus=1 (plugin >= 1.x; this cluster has one fake GPU
    # GRES): finished jobs stay in slurmctld's memory (MinJobAge) with what they asked for
    jobs = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True).stdout
    asked = {}
    for line in jobs.splitlines():
        rule = re.search(r"Comment=rule_(\w+?)(?:_wildcards_\S*)?(?:\s|$)", line)
        if rule:
            asked.setdefault(rule.group(1), set()).add(bool(re.search(r"TresPerJob=\S*gpu[:=]1", line)))
    for rule in ("train_dense", "train_candidate", "train_final"):
        assert asked.get(rule) == {True}, f"{rule} asked for a GPU: {asked.get(rule)}"
    for rule in ("spectra_candidate", "report"):  # the spectra come from the training job's device
        assert asked.get(rule) == {False}, f"{rule} asks for no GPU: {asked.get(rule)}"
