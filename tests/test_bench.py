"""The benchmark commands run and report what the README's performance section quotes (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO, run_lsh

spec = importlib.util.spec_from_file_location("check", REPO / "benchmarks" / "check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


@pytest.mark.slow
def test_bench_train_json_reports_bare_and_loop_tokens_per_second():
    out = run_lsh(
        "bench", "train", "--json", "--no-paper", "--repeats", "1", "--threads", "1",
        "--set", "model.emb=16", "--set", "model.hidden=16",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    demo = result["sizes"]["demo"]
    assert demo["model"]["hidden"] == 16 and demo["parameters"] > 0
    for key in ("bare_tokens_per_s", "dense_tokens_per_s", "dense_asgd_tokens_per_s", "sparse_tokens_per_s"):
        assert demo[key] > 0, key
    assert abs(
        demo["dense_overhead"] - (1 - demo["dense_tokens_per_s"] / demo["bare_tokens_per_s"])
    ) < 1e-3
    assert abs(demo["sparse_over_dense"] - demo["sparse_tokens_per_s"] / demo["dense_tokens_per_s"]) < 1e-3


def test_check_flags_a_missed_target():
    result = {"benchmark": "train", "sizes": {"x": {"dense_overhead": 0.2, "sparse_over_dense": 0.95}}}
    lines = check.check(result)
    assert any(line.startswith("FAIL") and "dense_overhead" in line for line in lines)
    assert any(line.startswith("ok") and "sparse_over_dense" in line for line in lines)
