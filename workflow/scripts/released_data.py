"""The paper-scale point: the first-round candidates of the data released with the paper's reference
code (the public repository FATE4869/hyperpruning), as one CSV, and its summary beside the study's.

    python workflow/scripts/released_data.py --repo PATH/TO/hyperpruning --out docs/results/released/candidates.csv
    python workflow/scripts/released_data.py --summary docs/results/released   # from the committed CSV

`--repo` is a clone of that repository (a bare one works: files are read with `git show`). It holds,
for each of the 26 distinct configurations TPE evaluated in the first round (trials 102..139; 40
evaluations, duplicates overwritten), the value TPE minimised, the candidate's LS distance to the dense
model at epoch 3 (trials/LSTM_PTB/LE_tpe_trials_num_40_ind_100.pickle: 'loss'), its best validation
perplexity over those 3 epochs ('val_loss', a perplexity despite the name) and its test perplexity;
the test perplexity of each after 100 epochs exists only as a list in sources/plotter.py (`late_ppl0`,
aligned with `indices`), read here as data (ast.literal_eval), never run. The candidates' spectra were
not released, so the distance is the reference code's own value. The pickle is read by an unpickler
that admits only builtins, collections, argparse and numpy (a torch.device becomes a placeholder).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import pickle
import subprocess
import sys
from pathlib import Path

TRIALS = "trials/LSTM_PTB/LE_tpe_trials_num_40_ind_100.pickle"
PLOTTER = "sources/plotter.py"
KEYS = ("init", "growth", "death", "redistribution", "death_rate")
COLUMNS = ("trial", *KEYS, "ls_distance_e3", "valid_ppl_e3", "test_ppl_e3", "final_test_ppl")


class _Placeholder:
    def __init__(self, *args: object) -> None:
        self.args = args


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) == ("torch", "device"):
            return _Placeholder
        if module in ("collections", "builtins", "argparse") or module.split(".")[0] == "numpy":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{TRIALS}: refusing to load {module}.{name}")


def show(repo: Path, commit: str, path: str) -> bytes:
    out = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True)
    if out.returncode:
        sys.exit(f"{repo}: cannot read {commit}:{path}: {out.stderr.decode().strip()}")
    return out.stdout


def final_outcomes(source: str) -> dict[int, float]:
    """Trial number -> 100-epoch test perplexity, from the assignments `indices = [...]` and
    `late_ppl0 = [...]` of the one function of plotter.py that makes both (scatter_plot)."""
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        found: dict[str, list] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id in ("indices", "late_ppl0"):
                    found[node.targets[0].id] = ast.literal_eval(node.value)
        if set(found) == {"indices", "late_ppl0"} and len(found["indices"]) == len(found["late_ppl0"]):
            return dict(zip(found["indices"], found["late_ppl0"]))
    sys.exit(f"{PLOTTER}: no function with aligned `indices` and `late_ppl0` lists")


def rows(repo: Path, commit: str) -> list[dict]:
    trials = _DataOnly(io.BytesIO(show(repo, commit, TRIALS))).load()
    finals = final_outcomes(show(repo, commit, PLOTTER).decode())
    out = []
    for key, value in trials.items():
        trial = int(value["args"].trial_num)
        out.append({"trial": trial, **dict(zip(KEYS, key)), "ls_distance_e3": float(value["loss"]),
                    "valid_ppl_e3": float(value["val_loss"]), "test_ppl_e3": float(value["test_loss"]),
                    "final_test_ppl": finals[trial]})
    if sorted(r["trial"] for r in out) != sorted(finals):
        sys.exit(f"{TRIALS} and {PLOTTER} name other trials")
    return sorted(out, key=lambda r: r["trial"])


def summarise(folder: Path, study: Path, seed: int, horizon: Path | None = None) -> None:
    """summary.md, released.csv, settings.csv and settings.png in `folder`, from its candidates.csv and the
    study's early_signals.csv (the LS distance as the study preset ranks, the validation perplexity, at e0);
    with `horizon`, the horizon study's horizon_signals.csv beside them (its configurations at both
    horizons)."""
    from lsh import config, files
    from lsh.layout import SUMMARY_MD
    from lsh.report.study import released_markdown
    from lsh.study.figures import plot_settings
    from lsh.study.released import COLUMNS as RELEASED
    from lsh.study.released import beside_the_study, released_point
    from lsh.study.signals import ls_signal_name

    params = config.Params.from_dict(config.load_params("workflow/presets/study.yaml"))
    frame = files.read_frame(folder / "candidates.csv", RELEASED)
    point = released_point(frame, seed)
    ls = ls_signal_name(params.search.embedding, params.search.distance, params.lyapunov.layout, params.search.pca_fit)
    e0, final = params.search.e0, params.final_epochs
    settings = [(files.read_frame(study), f"the study, epoch {e0} of {final}")]
    if horizon is not None:
        frame = files.read_frame(horizon)
        configs = len(config.Params.from_dict(config.load_params(HORIZON_PRESET)).study.configs)
        settings += [(frame[frame["horizon"] == h], f"the horizon study's {configs} configurations, epoch {e0} of {h}")
                     for h in sorted(frame["horizon"].unique())]
    beside = beside_the_study(point, settings, ls, e0)
    files.write_text(folder / "released.csv", point.to_csv(index=False))
    files.write_text(folder / "settings.csv", beside.to_csv(index=False))
    plot_settings(beside, folder / "settings.png")
    source = (f"FATE4869/hyperpruning at {SOURCE_COMMIT} ({TRIALS} and {PLOTTER}), "
              "read by workflow/scripts/released_data.py")
    files.write_text(folder / SUMMARY_MD, released_markdown(point, beside, source, horizon is not None))
    print(f"{folder}: {SUMMARY_MD}, released.csv, settings.csv, settings.png")


SOURCE_COMMIT = "4d08f7b"
HORIZON_PRESET = "workflow/presets/study-horizon.yaml"
HORIZON_SIGNALS = Path("docs/results/study-horizon/horizon/horizon_signals.csv")  # once the horizon study is done


def main() -> int:
    from lsh.layout import STUDY_REPORT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="a clone of FATE4869/hyperpruning: extract candidates.csv (--out)")
    parser.add_argument("--commit", default=SOURCE_COMMIT, help="the commit read (default: the one this study used)")
    parser.add_argument("--out", type=Path, help="candidates.csv to write from --repo")
    parser.add_argument("--summary", type=Path, metavar="DIR", help="summarise DIR/candidates.csv beside the study")
    parser.add_argument("--study", type=Path, default=Path("docs/results/study") / STUDY_REPORT["early_signals_csv"])
    parser.add_argument("--horizon", type=Path, default=HORIZON_SIGNALS,
                        help="the horizon study's horizon_signals.csv, beside the study when it exists")
    parser.add_argument("--seed", type=int, default=1111, help="the bootstrap's seed")
    args = parser.parse_args()
    if args.repo is None and args.summary is None:
        parser.error("give --repo and --out (extract), --summary DIR (summarise), or both")
    if args.repo is not None:
        if args.out is None:
            parser.error("--repo needs --out")
        table = rows(args.repo, args.commit)
        tmp = args.out.with_name(args.out.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(table)
        tmp.replace(args.out)
        print(f"{args.out}: {len(table)} candidates from {args.repo} at {args.commit}")
    if args.summary is not None:
        summarise(args.summary, args.study, args.seed, args.horizon if args.horizon.is_file() else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
