"""The horizon comparison (lsh/study/horizon.py, `lsh study horizon`, the study_horizon rule): one table
against a shorter study's table of the same configurations and seeds. Synthetic tables, no training."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO, copy_project, run, run_lsh
from precision import EPS64
from scipy import stats
from test_study import save_table, small_params, synthetic_table

from lsh import config
from lsh.config import Params
from lsh.errors import LshError
from lsh.layout import HORIZON_REPORT_FILES
from lsh.search.ranking import method_name
from lsh.stages.horizon import write_horizon
from lsh.study.cells import DENSE
from lsh.study.horizon import (
    first_epochs,
    horizon_change,
    horizon_methods,
    horizon_replays,
    horizon_signals,
    shorter_subset,
    signal_gaps,
)
from lsh.study.signals import POOLED
from lsh.study.table import Table

SEEDS = 3


def truncated(table: Table, epochs: int) -> Table:
    """The same cells stopped at `epochs`: what a shorter study of the same runs holds."""
    keep = (table.rows["epoch"] <= epochs).to_numpy()
    return Table(rows=table.rows[keep].reset_index(drop=True), spectra={k: v[keep] for k, v in table.spectra.items()},
                 meta={**table.meta, "final_epochs": epochs})


def pair(params: Params | None = None) -> tuple[Params, Table, Table]:
    params = params or small_params()
    longer = synthetic_table(params, seeds=SEEDS)
    return params, longer, truncated(longer, 3)


def with_study(params: Params, **study) -> Params:
    return dataclasses.replace(params, study=dataclasses.replace(params.study, **study))


# --- which tables can be compared ----------------------------------------------------------------


def test_the_shorter_table_is_narrowed_to_the_longer_ones_configurations():
    params, longer, shorter = pair()
    few = longer.subset(["g00", "g03", "g05"])
    narrowed = shorter_subset(few, shorter)
    assert [cid for cid, _ in narrowed.configs] == ["g00", "g03", "g05"]
    assert set(narrowed.rows["config"]) == {DENSE, "g00", "g03", "g05"}
    assert narrowed.final_epochs == 3


@pytest.mark.parametrize("change, named", [
    (lambda t: dataclasses.replace(t, meta={**t.meta, "final_epochs": 4}), "not shorter than the table's 4"),
    (lambda t: dataclasses.replace(t, meta={**t.meta, "seeds": [1, 2, 3]}), "training seeds [1, 2, 3]"),
    (lambda t: t.subset(["g00", "g01"]), "has no configuration g02"),
    (lambda t: dataclasses.replace(t, meta={**t.meta, "configs": [[cid, {**c, "death_rate": 0.5}] if cid == "g01"
                                                                  else [cid, c] for cid, c in t.meta["configs"]]}),
     "configuration g01 is"),
])
def test_a_shorter_table_of_other_runs_is_refused_naming_what_differs(change, named):
    _, longer, shorter = pair()
    with pytest.raises(LshError, match=named.replace("[", r"\[").replace("]", r"\]")):
        shorter_subset(longer, change(shorter))


# --- the first epochs ------------------------------------------------------------------------------


def test_first_epochs_are_identical_for_the_same_runs_and_a_difference_is_measured():
    _, longer, shorter = pair()
    same = first_epochs(longer, shorter)
    assert len(same) == (1 + len(longer.configs)) * SEEDS * 4  # the dense reference too, epochs 0..3
    assert same["identical"].all() and (same["spectra_max_diff"] == 0).all()
    rows = shorter.rows.copy()
    at = ((rows["config"] == "g02") & (rows["seed"] == longer.seeds[1]) & (rows["epoch"] == 2)).to_numpy()
    rows.loc[at, "valid_ppl"] *= 1.01
    spectra = {k: v.copy() for k, v in shorter.spectra.items()}
    spectra["blocks"][np.flatnonzero(at)[0], 2] += 0.25  # a spectrum apart from the losses
    moved = first_epochs(longer, Table(rows=rows, spectra=spectra, meta=shorter.meta))
    differ = moved[~moved["identical"]]
    assert differ[["config", "seed", "epoch"]].values.tolist() == [["g02", longer.seeds[1], 2]]
    # |1.01 v - v| / (1.01 v): two roundings of a float64 value near 1
    assert differ["max_rel_diff"].iloc[0] == pytest.approx(0.01 / 1.01, rel=8 * EPS64)
    assert moved["spectra_max_diff"].max() == pytest.approx(0.25, abs=8 * EPS64 * 4)
    assert (moved.drop(index=differ.index)["max_rel_diff"].fillna(0) == 0).all()


# --- the signals at both horizons ----------------------------------------------------------------


def test_each_horizons_signals_are_scored_against_that_tables_own_outcome():
    params, longer, shorter = pair()
    rows = shorter.rows.copy()  # the shorter table's outcome in the reverse order of the longer one's
    last = (rows["epoch"] == 3).to_numpy()
    rows.loc[last, "test_ppl"] = 1000.0 - rows.loc[last, "test_ppl"]
    shorter = Table(rows=rows, spectra=shorter.spectra, meta=shorter.meta)
    signals = horizon_signals([shorter, longer], params, [1, 2])
    assert set(signals["horizon"]) == {3, 4} and set(signals["epoch"]) == {1, 2}
    assert signals["signal"].nunique() == 3  # the LS distance, the loss gap, the validation perplexity
    for table in (shorter, longer):
        seed = table.seeds[0]
        ids = [cid for cid, _ in table.configs]
        gap = [table.row(cid, seed, 2)["valid_loss"] - table.row(DENSE, seed, 2)["valid_loss"] for cid in ids]
        final = [table.final(cid, seed)["test_ppl"] for cid in ids]
        row = signals[(signals["horizon"] == table.final_epochs) & (signals["epoch"] == 2)
                      & (signals["signal"] == "loss_gap") & (signals["seeds"] == str(seed))].iloc[0]
        assert row["spearman"] == pytest.approx(stats.spearmanr(gap, final)[0], abs=1e-12)
    at = signals[(signals["epoch"] == 2) & (signals["signal"] == "loss_gap") & (signals["seeds"] == POOLED)]
    assert at.set_index("horizon")["spearman"][3] < 0 < at.set_index("horizon")["spearman"][4]


def test_the_signal_gap_and_its_change_are_paired_within_seeds():
    ls = "ls:pca-l2-blocks-pair"
    spearman = {  # (horizon, seed) -> (LS distance, loss gap)
        (6, "1"): (0.2, 0.7), (6, "2"): (0.1, 0.6), (6, "3"): (0.5, 0.5),
        (12, "1"): (0.4, 0.6), (12, "2"): (0.5, 0.5), (12, "3"): (0.6, 0.4),
    }
    rows = [{"signal": name, "epoch": 2, "seeds": seed, "horizon": h, "spearman": value}
            for (h, seed), values in spearman.items() for name, value in zip((ls, "loss_gap"), values)]
    rows += [{"signal": ls, "epoch": 2, "seeds": POOLED, "horizon": 6, "spearman": 0.0}]  # never paired
    signals = pd.DataFrame(rows)
    gaps = signal_gaps(signals, ls).set_index("horizon")
    short = np.array([-0.5, -0.5, 0.0])
    assert gaps.loc[6, "gap"] == pytest.approx(short.mean(), abs=4 * EPS64)
    assert (gaps.loc[6, "ls_lower"], gaps.loc[6, "ls_higher"], gaps.loc[6, "seeds"]) == (2, 0, 3)  # a tie is neither
    low, high = stats.t.interval(0.95, 2, loc=short.mean(), scale=stats.sem(short))
    assert (gaps.loc[6, "gap_low"], gaps.loc[6, "gap_high"]) == pytest.approx((low, high), abs=1e-12)
    assert gaps.loc[6, "p_sign"] == pytest.approx(0.5)  # 2 of 2 non-zero differences negative
    change = horizon_change(signals, ls).iloc[0]
    per_seed = np.array([-0.2, 0.0, 0.2]) - short  # (12's gap) - (6's gap) on each seed
    assert change["change"] == pytest.approx(per_seed.mean(), abs=8 * EPS64)
    assert [float(v) for v in change["per_seed"].split()] == pytest.approx(per_seed.tolist(), abs=1e-3)
    assert (change["ls_gains"], change["ls_loses"], change["shorter"], change["longer"]) == (3, 0, 6, 12)


# --- the searches at both horizons ---------------------------------------------------------------


def test_lsh_and_the_loss_search_are_replayed_and_paired_on_each_table():
    params, longer, shorter = pair()
    params = with_study(params, repeats=2)
    replays = {t.final_epochs: horizon_replays(t, params) for t in (shorter, longer)}
    for frame in replays.values():
        assert set(frame["strategy"]) == {method_name("ls", "grid"), method_name("loss", "grid")}
        assert len(frame) == 2 * params.study.repeats
        assert (frame["candidate_epochs_with_dense"] >= frame["candidate_epochs"]).all()
        assert frame["test_ppl"].max() < 1000 * SEEDS  # every outcome read from this table
    methods = horizon_methods(replays, params).set_index(["horizon", "strategy"])
    for horizon, frame in replays.items():
        means = frame.groupby(["strategy", "seed"])["test_ppl"].mean()
        loss, lsh = means[method_name("loss", "grid")], means[method_name("ls", "grid")]
        row = methods.loc[(horizon, method_name("loss", "grid"))]
        assert row["vs_reference"] == pytest.approx((loss - lsh).mean(), abs=1e-9)
        assert [float(v) for v in row["per_seed"].split()] == pytest.approx((loss - lsh).tolist(), abs=5e-3)
        assert methods.loc[(horizon, method_name("ls", "grid")), "vs_reference"] == 0


# --- the stage and the command line --------------------------------------------------------------


def test_the_stage_writes_every_file_and_says_what_the_seeds_establish(tmp_path):
    params, longer, shorter = pair()
    params = with_study(params, seeds=SEEDS, repeats=2, shorter="shorter.yaml")
    longer.meta["decay_epochs"], shorter.meta["decay_epochs"] = 4, 3
    out = tmp_path / "horizon"
    headline = write_horizon(params, save_table(longer, tmp_path / "long"), save_table(shorter, tmp_path / "short"),
                             out)
    assert sorted(p.name for p in out.iterdir()) == sorted(HORIZON_REPORT_FILES)
    gaps = pd.read_csv(out / "horizon_gaps.csv")
    for horizon in (3, 4):
        row = gaps[(gaps["horizon"] == horizon) & (gaps["epoch"] == params.search.e0)].iloc[0]
        assert headline["signal_gap"][horizon] == row["gap"]
        said = "the t interval is clear of zero" if row["gap_low"] > 0 or row["gap_high"] < 0 else "not established"
        text = (out / "horizon.md").read_text()
        sentence = next(s for s in text.split("\n\n") if s.startswith(f"Against the outcome at epoch {horizon},"))
        assert said in sentence, sentence
    assert "trained on not recorded" in (out / "horizon.md").read_text()  # no cells given: machines unknown
    assert "the death rate decays over 3 epochs in the shorter study and 4 in this one" in text


def test_the_command_refuses_a_study_without_a_shorter_one(tmp_path):
    raw = config.load_params("workflow/presets/study-horizon.yaml")
    raw["study"]["shorter"] = None
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = run_lsh("study", "horizon", "--params", str(path), "--table", "t", "--shorter", "s", "--out", "o")
    assert out.returncode != 0
    assert "study.shorter is null" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.slow
def test_the_horizon_preset_plans_the_comparison_and_a_missing_shorter_cell_is_named(tmp_path):
    project = copy_project(tmp_path)
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "study", "--configfile",
               "workflow/presets/study-horizon.yaml"], project)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    jobs = dict(line.split()[:2] for line in out.stdout.splitlines() if line.startswith("study_"))
    assert jobs.get("study_shorter_table") == "1" and jobs.get("study_horizon") == "1", jobs
    preset = yaml.safe_load((REPO / "workflow/presets/study-horizon.yaml").read_text())
    preset["study"]["shorter"] = "shorter.yaml"
    shorter = yaml.safe_load((REPO / "workflow/presets/study.yaml").read_text())
    shorter["study"]["cells"] = "kept"  # holds none of the cells
    (project / "shorter.yaml").write_text(yaml.safe_dump(shorter))
    (project / "horizon.yaml").write_text(yaml.safe_dump(preset))
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "study", "--configfile", "horizon.yaml"], project)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "study.shorter: 39 of the shorter study's cells are not there (kept/dense/s0/rows.json" in said
    # Snakemake names the input function that refused (its one frame), nothing from inside a library
    assert "site-packages" not in said and "lsh/" not in said.split("Traceback:")[-1], said[-2000:]


def test_the_study_stage_of_dvc_carries_the_shorter_study_when_there_is_one():
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    import dvc_yaml

    stage = dvc_yaml.study_stages(Params.from_dict(config.load_params("workflow/presets/study-horizon.yaml")))
    study = stage["stages"]["study"]
    assert {"workflow/presets/study.yaml", "docs/results/study/cells", "lsh/stages/horizon.py"} <= set(study["deps"])
    outs = [next(iter(o)) for o in study["outs"]]
    assert "results/study-horizon/study/horizon" in outs and "results/study-horizon/study/shorter-table" in outs
    plain = dvc_yaml.study_stages(Params.from_dict(config.load_params("params.yaml")))["stages"]["study"]
    assert "lsh/stages/horizon.py" not in plain["deps"]
    assert not any("horizon" in next(iter(o)) for o in plain["outs"])


def test_each_cell_is_named_with_the_cpu_its_environment_record_gives(tmp_path):
    from lsh.stages.horizon import cell_machines

    kept = REPO / "docs/results/study-horizon/cells/g21/s0/environment.json"
    for cid, env in (("g21", kept), ("g00", None)):
        (tmp_path / cid / "s1").mkdir(parents=True)
        if env is not None:
            (tmp_path / cid / "s1" / "environment.json").write_text(env.read_text())
    machines = cell_machines([tmp_path / "g21" / "s1" / "rows.json", tmp_path / "g00" / "s1" / "rows.json"])
    assert machines.to_dict("records") == [
        {"config": "g21", "seed_index": 1, "cpu": yaml.safe_load(kept.read_text())["cpu"], "numerics": "native"},
        {"config": "g00", "seed_index": 1, "cpu": "not recorded", "numerics": "not recorded"}]
    with pytest.raises(LshError, match="not a cell's rows.json"):
        cell_machines([tmp_path / "g21" / "rows.json"])
