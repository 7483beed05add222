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
    assert abs(demo["sparse_over_bare"] - demo["sparse_tokens_per_s"] / demo["bare_tokens_per_s"]) < 1e-3
    assert result["device"] == "cpu" and result["device_name"] and result["tf32"] is False


def test_bench_device_option_runs_both_benchmarks_where_it_says():
    """--device overrides train.device and lyapunov.device: cpu runs (and says so) even where the
    params ask for cuda; cuda without a GPU is one clean line before any work."""
    small = ["--set", "model.emb=8", "--set", "model.hidden=8", "--set", "lyapunov.steps=3",
             "--set", "lyapunov.warmup=2"]
    out = run_lsh("bench", "spectrum", "--json", "--no-paper", "--repeats", "1", "--threads", "1", "--device", "cpu",
                  "--set", "lyapunov.device=cuda", "--set", "train.device=cuda", *small)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["device"] == "cpu" and result["demo"]["seconds_per_spectrum"] > 0
    assert result["demo"]["floor_seconds"] > 0 and result["demo"]["ratio_over_floor"] > 0
    import torch

    if not torch.cuda.is_available():
        out = run_lsh("bench", "train", "--no-paper", "--device", "cuda", *small)
        assert out.returncode != 0
        assert out.stderr.strip().splitlines()[-1].endswith("torch sees no CUDA device (use auto or cpu)"), out.stderr
        assert "Traceback" not in out.stderr


def test_the_gpu_spectrum_target_applies_to_gpu_results_only():
    paper = {"seconds_per_spectrum": 0.8}
    lines = check.check({"benchmark": "spectrum", "device": "cuda", "paper": paper,
                         "demo": {"seconds_per_spectrum": 0.9}})
    assert [line.split(":")[0] for line in lines] == ["FAIL spectrum/paper"]
    assert check.check({"benchmark": "spectrum", "device": "cpu", "paper": paper}) == []


def test_check_flags_a_missed_target():
    result = {"benchmark": "train",
              "sizes": {"x": {"dense_overhead": 0.2, "sparse_over_dense": 0.95, "sparse_over_bare": 0.8}}}
    lines = check.check(result)
    assert any(line.startswith("FAIL") and "dense_overhead" in line for line in lines)
    assert any(line.startswith("ok") and "sparse_over_dense" in line for line in lines)
    assert any(line.startswith("FAIL") and "sparse_over_bare" in line for line in lines)
