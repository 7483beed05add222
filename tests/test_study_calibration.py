"""The calibration of a study regime: have the candidates left the unigram plateau when they are first ranked?"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from precision import EPS64, accumulated, two_ways

from lsh.study.calibration import criteria, unigram_perplexity


def test_a_unigram_model_of_uniform_tokens_scores_the_vocabulary_size():
    train = np.tile(np.arange(50), 20)
    # float64: the mean of 50 logs of size log 50 (each after a division), then exp: relative to the result
    assert unigram_perplexity(train, np.arange(50), 50) == pytest.approx(50.0, rel=accumulated(EPS64, 53, math.log(50)),
                                                                         abs=0)


def test_the_unigram_perplexity_is_the_smoothed_frequencies_cross_entropy():
    train, valid = np.array([0, 0, 0, 1]), np.array([0, 1, 2])
    p = np.array([4, 2, 1]) / 7  # add-one counts over a vocabulary of 3
    # float64 both ways: 3 divisions and logs (of size up to log 7), their mean and an exp, relative to the result
    assert unigram_perplexity(train, valid, 3) == pytest.approx(math.exp(-np.log(p).mean()),
                                                                rel=two_ways(EPS64, 3 + 3, math.log(7)), abs=0)


def curves(per_config: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"config": c, "epoch": e, "valid_ppl": v}
                         for c, values in per_config.items() for e, v in enumerate(values, 1)])


def test_a_plateau_regime_fails_every_criterion():
    """Every configuration near the unigram level at e0 = 2, barely moving, in two trajectories (the
    study-demo-scale regime at epoch 1-2)."""
    plateau = curves({f"g{i:02d}": [810.0, 805.0] if i % 2 else [812.0, 806.0] for i in range(24)})
    found = criteria(plateau, unigram=720.0, e0=2).set_index("criterion")
    assert not found["holds"].any(), found
    assert found.loc["left the plateau", "value"] == 0 and found.loc["told apart", "value"] == 2


def test_a_learning_regime_holds_every_criterion_and_counts_the_stuck_configurations():
    learning = {f"g{i:02d}": [700.0 - i, 480.0 - i] for i in range(18)}
    learning |= {f"g{i:02d}": [720.0 + i, 715.0 + i] for i in range(18, 24)}  # 6 stuck near the unigram level
    found = criteria(curves(learning), unigram=720.0, e0=2).set_index("criterion")
    assert found["holds"].all(), found
    assert found.loc["left the plateau", "value"] == 18 and found.loc["left the plateau", "threshold"] == 18
    assert found.loc["told apart", "value"] == 24
    # the value is rounded to 4 decimals (by at most 5e-5), after a few float64 operations on values below 1
    assert found.loc["still learning", "value"] == pytest.approx(1 - np.median([480.0 - i for i in range(18)] +
                                                                             [715.0 + i for i in range(18, 24)]) /
                                                                 np.median([700.0 - i for i in range(18)] +
                                                                           [720.0 + i for i in range(18, 24)]),
                                                                 abs=5e-5 + accumulated(EPS64, 4))


def test_one_configuration_short_of_the_share_fails_the_plateau_criterion():
    stuck = {f"g{i:02d}": [700.0 - i, 480.0 - i] for i in range(17)}
    stuck |= {f"g{i:02d}": [720.0 + i, 715.0 + i] for i in range(17, 24)}
    found = criteria(curves(stuck), unigram=720.0, e0=2).set_index("criterion")
    assert found.loc["left the plateau", "value"] == 17 and not found.loc["left the plateau", "holds"]


def test_trajectories_equal_to_six_digits_are_one():
    same = {f"g{i:02d}": [700.0 + 1e-9 * i, 480.0] for i in range(24)}
    found = criteria(curves(same), unigram=720.0, e0=2).set_index("criterion")
    assert found.loc["told apart", "value"] == 1


def test_a_calibration_short_of_e0_says_which_epochs_are_missing():
    with pytest.raises(ValueError, match=r"epochs 1..3; missing \[3\]"):
        criteria(curves({"g00": [700.0, 500.0]}), unigram=720.0, e0=3)


def _epoch_line(epoch: int, valid_ppl: float) -> dict:
    return {"epoch": epoch, "train_loss": 6.0, "train_ppl": 400.0, "valid_loss": math.log(valid_ppl),
            "valid_ppl": valid_ppl, "averaging": False, "lr": 20.0, "tokens_per_s": 1000.0, "status": "ok",
            "seconds": 10.0 + epoch}


def test_a_calibration_of_the_cells_trained_so_far_says_it_is_partial_and_names_the_rest(tmp_path, ptb_quick_small):
    import json

    from conftest import SMOKE

    from lsh import config, layout
    from lsh.config import Params
    from lsh.stages.table import calibrate
    from lsh.study.cells import cell_ids

    raw = config.load_params(SMOKE)
    raw["data"]["train_tokens"] = 12_000
    raw["search"]["e0"] = 2
    params = Params.from_dict(config.validate(raw))
    ids = cell_ids(params)
    trained = ids[:6]  # the dense reference and five configurations reached e0; one more is still at epoch 1
    for i, cid in enumerate(ids[:7]):
        folder = layout.cell_folder(tmp_path / "cells", cid, 0)
        folder.mkdir(parents=True)
        epochs = range(params.search.e0 + 1) if cid in trained else range(2)
        rows = {str(e): {"train_loss": None, "train_ppl": None, "valid_loss": None,
                         "valid_ppl": None if e == 0 else 700.0 - 100 * e - i, "test_ppl": 1.0, "status": "ok",
                         "clipped": 0} for e in epochs}
        (folder / "rows.json").write_text(json.dumps({"config": cid, "seed": params.seed, "rows": rows,
                                                      "spectra": {e: None for e in rows}}))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(_epoch_line(e, rows[str(e)]["valid_ppl"])) + "\n"
                                                      for e in epochs if e))
    found = calibrate(params, tmp_path / "cells", 0, ptb_quick_small, tmp_path / "out").set_index("criterion")
    assert found.loc["told apart", "value"] == 5
    text = (tmp_path / "out" / "calibration.md").read_text()
    assert f"**Partial**: {len(ids) - 6} of {len(ids)} cells not trained yet ({ids[6]}, " in text
    frame = pd.read_csv(tmp_path / "out" / "calibration.csv")
    assert set(frame["config"]) == set(trained) and frame["seconds"].dropna().tolist()[:2] == [11.0, 12.0]
