"""Portable numerics: the caps reach every library before it loads, a default run computes exactly
as one with the caps set by hand, checkpoints record what made them, and a continuation in another
environment says so (or, across CPU capabilities in portable mode, is refused)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BIN, REPO, SMOKE, synthetic_corpus

from lsh import numerics
from lsh.config import Params, load_params
from lsh.errors import LshError
from lsh.training import load_checkpoint, save_checkpoint
from lsh.training.run import RunSpec, train

CAP_VARIABLES = [*numerics.portable_env(), numerics.MODE_VARIABLE]
needs_avx2 = pytest.mark.skipif(numerics.portable_possible() is not None,
                                reason=f"portable numerics cannot hold here: {numerics.portable_possible()}")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any cap: a fresh shell's."""
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES}
    return {**env, **extra}


def python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


PROBE = """
import json, sys
from lsh import numerics
notes = numerics.apply(sys.argv[1] if len(sys.argv) > 1 else "{mode}")
import numpy, torch, threadpoolctl, scipy.linalg
from numpy.lib.introspect import opt_func_info
levels = set()
def walk(d):
    for v in d.values():
        if isinstance(v, dict):
            levels.add(v["current"]) if "current" in v else walk(v)
walk(opt_func_info())
print(json.dumps({{"torch": torch.backends.cpu.get_cpu_capability(), "mode": numerics.effective_mode(),
    "openblas": sorted({{i.get("architecture") for i in threadpoolctl.threadpool_info()
                        if i["internal_api"] == "openblas"}}),
    "numpy": sorted(levels), "notes": notes}}))
"""


def native_capability() -> str:
    return json.loads(python(PROBE.format(mode="native"), clean_env()))["torch"]


@needs_avx2
def test_portable_caps_torch_openblas_and_numpy_at_avx2_before_they_load():
    found = json.loads(python(PROBE.format(mode="portable"), clean_env()))
    assert found["torch"] == "AVX2" and found["mode"] == "portable" and found["notes"] == []
    assert found["openblas"] == ["Haswell"], found  # numpy's and scipy's OpenBLAS alike
    assert not any(level.startswith(("X86_V4", "AVX512")) for level in found["numpy"]), found["numpy"]


@needs_avx2
def test_native_drops_the_caps_a_portable_parent_set_but_keeps_the_users_own():
    child_of_portable = clean_env(**numerics.portable_env(), **{numerics.MODE_VARIABLE: "portable"})
    assert json.loads(python(PROBE.format(mode="native"), child_of_portable))["mode"] == "native"
    users_own = clean_env(**numerics.portable_env())  # set by hand, no portable parent
    assert json.loads(python(PROBE.format(mode="native"), users_own))["mode"] == "portable"


def test_portable_asked_for_after_torch_loaded_says_the_process_stays_native():
    code = ("import torch\nfrom lsh import numerics\nprint(numerics.apply('portable'))")
    notes = python(code, clean_env())
    if numerics.portable_possible() is None:
        assert "after torch and numpy had loaded without the caps" in notes
    else:
        assert "cannot hold here" in notes


def test_a_mode_that_is_not_one_of_the_two_is_named():
    with pytest.raises(LshError, match="numerics: 'fast' is not allowed: allowed are portable, native"):
        numerics.apply("fast")
    out = subprocess.run([str(BIN / "lsh"), "params", "--set", "numerics=fast"], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 2 and "numerics" in out.stderr and "portable" in out.stderr


@needs_avx2
def test_a_default_run_and_one_with_the_caps_set_by_hand_give_identical_bits(ptb_quick_small: Path, tmp_path: Path):
    """The cap is really applied: a default (portable) training equals, bit for bit, a native one whose
    environment carries the caps explicitly; where this CPU has more than AVX2, a truly native one
    differs (so the equality is the caps' doing)."""
    if native_capability() == "AVX2":
        pytest.skip("this CPU has no instruction set above AVX2: portable and native compute alike here")
    args = ["train", "--params", SMOKE, "--data", str(ptb_quick_small), "--epochs", "1", "--threads", "1",
            "--set", "data.train_tokens=12000"]

    def trained(name: str, env: dict[str, str], *extra: str) -> dict:
        out = subprocess.run([str(BIN / "lsh"), "-q", *args, "--out", str(tmp_path / name), *extra], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return load_checkpoint(tmp_path / name / "epoch-001.pt")

    default = trained("default", clean_env())
    by_hand = trained("by-hand", clean_env(**numerics.portable_env()), "--set", "numerics=native")
    native = trained("native", clean_env(), "--set", "numerics=native")
    assert default["environment"]["numerics"] == by_hand["environment"]["numerics"] == "portable"
    assert default["environment"]["cpu_capability"] == "AVX2" != native["environment"]["cpu_capability"]
    for key, value in default["model"].items():
        assert torch.equal(value, by_hand["model"][key]), key
    assert not all(torch.equal(v, native["model"][k]) for k, v in default["model"].items()), \
        "native kernels gave the capped bits: nothing shows the caps change anything on this CPU"


sys.path.insert(0, str(REPO / "benchmarks"))
import numerics_components  # noqa: E402


@needs_avx2
@pytest.mark.slow
def test_portable_bits_depend_on_nothing_that_differs_between_machines():
    """Each setting of numerics_components.VARIATIONS stands for another machine: oneDNN's ISA cap for a
    CPU on which oneDNN picks other kernels or blocks (it blocks by the caches), MKL limited to less for
    a CPU with less, OpenBLAS with another L2 size for other caches. Under portable numerics, a sparse
    training, its validation, its spectra and the LS distance (and the kernels beneath: matmul, LSTM,
    QR, SVD) keep every bit under each. The control shows the fingerprint sees what differs between
    CPUs: with oneDNN left on, as portable mode had it before, capping oneDNN's ISA moves the training's
    bits. What one machine cannot vary is MKL's vendor check: MKL keeps its AVX2 branch on Intel CPUs
    only (on an AMD EPYC the AVX2, SSE4_2, AVX512 and AUTO branches give one result), so portable takes
    COMPATIBLE, the branch MKL's documentation gives for Intel and non-Intel CPUs alike."""
    from concurrent.futures import ThreadPoolExecutor

    runs = {name: ("portable", settings, False) for name, settings in numerics_components.VARIATIONS.items()}
    runs["control: oneDNN on"] = ("portable", [], True)
    runs["control: oneDNN on, capped at AVX"] = ("portable", ["ONEDNN_MAX_CPU_ISA=AVX"], True)
    with ThreadPoolExecutor(2) as pool:
        found = dict(zip(runs, pool.map(lambda r: numerics_components.run(*r), runs.values())))
    bits = {name: {k: v for k, v in f.items() if k != "mode"} for name, f in found.items()}
    base = bits["as set"]
    assert base["onednn"] == "False", "portable mode leaves oneDNN on"
    for name in numerics_components.VARIATIONS:
        moved = sorted(k for k in base if bits[name][k] != base[k])
        assert not moved, f"portable numerics' bits move with {name}: {moved}"
    on, capped = bits["control: oneDNN on"], bits["control: oneDNN on, capped at AVX"]
    assert on["train"] != capped["train"] and on["spectrum"] != capped["spectrum"], \
        "with oneDNN on, its ISA cap does not move the training: the fingerprint cannot see oneDNN"


def _spec() -> RunSpec:
    params = Params.from_dict(load_params(REPO / SMOKE, ["model.emb=8", "model.hidden=8", "train.lr=2", "train.bptt=10",
                                                        "train.batch_size=4", "train.eval_batch_size=4",
                                                        "train.eval_tokens=null"]))
    return RunSpec(seed=params.seed, model=params.model, train=params.train, sparse=params.sparse)


def _with_environment(path: Path, **changes) -> None:
    state = load_checkpoint(path)
    env = dict(state["environment"])
    versions = dict(env["versions"])
    versions.update(changes.pop("versions", {}))
    save_checkpoint(path, {**state, "environment": {**env, **changes, "versions": versions}})


def test_every_checkpoint_records_the_environment_that_made_it(tmp_path: Path):
    train(_spec(), synthetic_corpus(), tmp_path, 1)
    env = load_checkpoint(tmp_path / "epoch-001.pt")["environment"]
    assert env == numerics.current()
    assert set(env["versions"]) == set(numerics.PACKAGES) and env["versions"]["torch"] == torch.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["numerics"] in numerics.MODES


def test_a_resume_with_other_versions_says_so_naming_both(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    train(_spec(), synthetic_corpus(), tmp_path, 1)
    _with_environment(tmp_path / "epoch-001.pt", versions={"numpy": "1.0.0"})
    with caplog.at_level(logging.WARNING, logger="lsh.numerics"):
        train(_spec(), synthetic_corpus(), tmp_path, 2, resume=True)
    assert f"numpy 1.0.0 -> {numerics.current()['versions']['numpy']}" in caplog.text
    assert (tmp_path / "epoch-002.pt").exists()


def test_a_continuation_on_another_cpu_capability_is_refused_in_portable_mode_with_the_override(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    here = numerics.current()
    if here["numerics"] != "portable":
        pytest.skip("portable numerics cannot hold on this CPU, so nothing is refused here")
    train(_spec(), synthetic_corpus(), tmp_path / "a", 1)
    _with_environment(tmp_path / "a" / "epoch-001.pt", cpu_capability="AVX512", numerics="native")
    with pytest.raises(LshError) as refused:
        train(_spec(), synthetic_corpus(), tmp_path / "b", 2, init=tmp_path / "a" / "epoch-001.pt")
    message = str(refused.value)
    assert ("CPU capability AVX512 (numerics native)" in message
            and f"{here['cpu_capability']} (numerics portable)" in message)
    assert f"{numerics.ACCEPT}=1" in message and not (tmp_path / "b" / "epoch-002.pt").exists()
    monkeypatch.setenv(numerics.ACCEPT, "1")
    with caplog.at_level(logging.WARNING, logger="lsh.numerics"):
        train(_spec(), synthetic_corpus(), tmp_path / "b", 2, init=tmp_path / "a" / "epoch-001.pt")
    assert f"cpu_capability AVX512 -> {here['cpu_capability']}" in caplog.text
    assert (tmp_path / "b" / "epoch-002.pt").exists()


def test_a_finished_run_on_another_capability_is_not_refused_when_nothing_is_left_to_train(tmp_path: Path):
    train(_spec(), synthetic_corpus(), tmp_path, 1)
    _with_environment(tmp_path / "epoch-001.pt", cpu_capability="AVX512", numerics="native")
    assert train(_spec(), synthetic_corpus(), tmp_path, 1, resume=True).epochs == 1


def test_lsh_environment_writes_the_runs_record(tmp_path: Path):
    out = subprocess.run([str(BIN / "lsh"), "environment", "--out", str(tmp_path / "env.json")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    env = json.loads((tmp_path / "env.json").read_text())
    assert {"numerics", "cpu_capability", "cpu", "versions", "caps"} <= set(env)
    assert set(env["versions"]) == set(numerics.PACKAGES) and all(env["versions"][p] for p in ("torch", "numpy"))


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    return pins


def test_the_lock_pins_every_requirement_and_the_environment_holds_those_versions():
    """requirements.lock names one exact version of every dependency (torch aside: TORCH installs the
    build), and `make setup` installed exactly those."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    pins = _locked()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    for req in wanted:
        name = req.name.lower().replace("_", "-").replace(".", "-")
        if name == "torch":
            assert name not in pins
            continue
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name]), f"requirements.lock pins {req.name}=={pins[name]}, outside {req}"
    installed = {d.metadata["Name"].lower().replace("_", "-").replace(".", "-"): d.version
                 for d in metadata.distributions()}
    differ = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not differ, f"installed versions differ from requirements.lock (locked, installed): {differ}; run make setup"


def test_the_command_line_loads_neither_numpy_nor_torch_before_it_applies_the_caps():
    """Every `lsh` process applies its numerics first: nothing the command line imports to read its
    params may load numpy or torch (they would keep the machine's own kernels)."""
    code = ("import sys\nfrom lsh import cli\nargs = cli.build_parser().parse_args(['search', 'rank', '--round', '0',"
            " '--out', 'x'])\ncli._load_params(args)\n"
            "print([m for m in ('numpy', 'torch', 'scipy') if m in sys.modules])")
    assert python(code, clean_env()) == "[]"
