"""The study's figures say what their intervals are over."""

from __future__ import annotations

import pandas as pd
import pytest

from lsh.study import figures
from lsh.study.signals import POOLED


def _signals(seeds: list[str]) -> pd.DataFrame:
    rows = []
    for s in [*seeds, POOLED]:
        for epoch in (1, 2):
            rows.append({"signal": "ls", "epoch": epoch, "seeds": s, "spearman": 0.5, "spearman_low": 0.2,
                         "spearman_high": 0.8, "pearson": 0.4, "pearson_low": 0.1, "pearson_high": 0.7})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("seeds", "said"), [(["0"], "one training seed"),
                                             (["0", "1", "2"], "pooled over 3 training seeds")])
def test_signals_title_names_how_many_training_seeds_it_pools(tmp_path, monkeypatch, seeds, said):
    titles = []
    monkeypatch.setattr(figures, "save_figure",
                        lambda fig, path: titles.extend(ax.get_title() for ax in fig.axes))
    figures.plot_signals(_signals(seeds), ["ls"], {"ls": "LS distance"}, tmp_path / "signals.png")
    assert titles and all(said in t for t in titles)
