"""The paper-scale point (lsh/study/released.py, workflow/scripts/released_data.py): the released
candidates ranked by the pipeline's own code, and the committed summary made from the committed CSV."""

from __future__ import annotations

import importlib.util
import io
import pickle
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, REPO
from precision import EPS64, two_ways

from lsh.study.released import COLUMNS, kept_half, released_point

spec = importlib.util.spec_from_file_location("released_data", REPO / "workflow" / "scripts" / "released_data.py")
released_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(released_data)


def candidates(final: list[float], signal: list[float]) -> pd.DataFrame:
    n = len(final)
    return pd.DataFrame({"trial": range(100, 100 + n), "init": "ER", "growth": "random", "death": "SET",
                         "redistribution": "none", "death_rate": 0.5, "ls_distance_e3": signal,
                         "valid_ppl_e3": list(reversed(signal)), "test_ppl_e3": signal, "final_test_ppl": final})


def test_a_signal_that_orders_the_outcome_keeps_the_better_half_and_its_reverse_the_worse():
    final = [70.0 + i for i in range(8)]
    point = released_point(candidates(final, final), seed=0).set_index("signal")
    ls, reverse = point.loc["ls_distance_e3"], point.loc["valid_ppl_e3"]
    assert ls["spearman"] == pytest.approx(1.0, abs=1e-12) and reverse["spearman"] == pytest.approx(-1.0, abs=1e-12)
    assert ls["kept"] == "100 101 102 103" and ls["keeps_best"] and not reverse["keeps_best"]
    assert ls["kept_mean_final"] == np.mean(final[:4]) and reverse["kept_mean_final"] == np.mean(final[4:])
    assert list(point.reset_index().columns[:3]) == ["signal", "words", "n"]


def test_the_kept_half_breaks_ties_by_the_trials_order_as_a_round_does():
    frame = candidates([70.0, 71.0, 72.0, 73.0], [1.0, 1.0, 1.0, 0.5])
    assert kept_half(frame, "ls_distance_e3") == [103, 100]


def test_the_outcomes_are_read_from_the_function_that_lists_both_as_data():
    source = ("def other():\n    indices = [1, 2]\n\n"
              "def scatter_plot():\n    indices = [102, 103]\n    late_ppl0 = [73.26, 73.54]\n    plot(indices)\n")
    assert released_data.final_outcomes(source) == {102: 73.26, 103: 73.54}
    with pytest.raises(SystemExit, match="no function with aligned"):
        released_data.final_outcomes("def f():\n    indices = [1]\n    late_ppl0 = [2.0, 3.0]\n")


def test_the_trials_pickle_is_read_as_data_only():
    class Evil:
        def __reduce__(self):
            return (subprocess.run, (["true"],))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load subprocess.run"):
        released_data._DataOnly(io.BytesIO(pickle.dumps(Evil()))).load()
    assert (released_data._DataOnly(io.BytesIO(pickle.dumps({("a", "0.5"): {"loss": 1.0}}))).load()
            == {("a", "0.5"): {"loss": 1.0}})


def test_the_committed_summary_is_what_the_committed_candidates_give(tmp_path):
    committed = REPO / "docs" / "results" / "released"
    assert list(pd.read_csv(committed / "candidates.csv").columns) == list(COLUMNS)
    shutil.copy2(committed / "candidates.csv", tmp_path / "candidates.csv")
    out = subprocess.run([str(BIN / "python"), "workflow/scripts/released_data.py", "--summary", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    again = "run workflow/scripts/released_data.py --summary docs/results/released"
    assert (tmp_path / "summary.md").read_text() == (committed / "summary.md").read_text(), again
    # the coefficients in full: float64 correlations of at most 72 points (3 sums each), computed here
    # with this machine's summation order
    tol = two_ways(EPS64, 3 * 72)
    for name in ("released.csv", "settings.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name), pd.read_csv(committed / name), rtol=0, atol=tol,
                                      obj=f"{name} ({again})")


def test_the_horizon_studys_two_horizons_stand_beside_the_study_when_its_signals_exist(tmp_path):
    committed = REPO / "docs" / "results" / "released"
    shutil.copy2(committed / "candidates.csv", tmp_path / "candidates.csv")
    ls = "ls:pca-l2-blocks-pair"
    rows = [{"signal": s, "epoch": e, "seeds": "pooled", "horizon": h, "n": 36,
             **{f"{k}{b}": v + (0.1 if b == "_high" else -0.1 if b == "_low" else 0)
                for k in ("spearman", "pearson") for b in ("", "_low", "_high")}}
            for h, v in ((6, 0.3), (12, 0.5)) for s in (ls, "valid_ppl", "loss_gap") for e in (1, 2)]
    pd.DataFrame(rows).to_csv(tmp_path / "horizon_signals.csv", index=False)
    out = subprocess.run([str(BIN / "python"), "workflow/scripts/released_data.py", "--summary", str(tmp_path),
                          "--horizon", str(tmp_path / "horizon_signals.csv")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    settings = pd.read_csv(tmp_path / "settings.csv")
    for h, v in ((6, 0.3), (12, 0.5)):
        at = settings[settings["setting"] == f"the horizon study's 12 configurations, epoch 2 of {h}"]
        assert sorted(at["signal"]) == ["LS distance", "validation perplexity"]
        assert (at["spearman"] == v).all() and (at["spearman_low"] == v - 0.1).all()
    assert len(settings) == 8  # the released point, the study, and the two horizons: two signals each
    assert "against the outcome at epoch 6 (ranked at a third) and at epoch 12" in (tmp_path / "summary.md").read_text()
