"""Check the recorded benchmark results against the project's performance targets.

    lsh bench train --json > benchmarks/results/train.json
    lsh bench spectrum --json --threads 2 > benchmarks/results/spectrum.json
    python benchmarks/parallel.py > benchmarks/results/parallel.json
    python benchmarks/check.py benchmarks/results/*.json

Ratios only, each measured side by side in one benchmark run; never a timed test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (benchmark, key inside each measured size, comparison, bound, what it means[, device, size]):
# a target with a device applies only to results measured there, one with a size only to that size
TARGETS = [
    ("train", "dense_overhead", "<=", 0.05, "training-loop overhead against the bare loop"),
    ("train", "sparse_over_dense", ">=", 0.90, "sparse tokens/s against dense tokens/s"),
    ("train", "sparse_over_bare", ">=", 0.90, "a sparse candidate's tokens/s against the bare (cuDNN) loop"),
    ("spectrum", "ratio_autograd_over_analytic", ">=", 4.0, "analytic Jacobians against the torch.func path"),
    ("spectrum", "ratio_analytic_over_floor", "<=", 1.3, "analytic spectrum against its J Q products and QRs alone"),
    ("spectrum", "seconds_per_spectrum", "<=", 0.5, "one paper-size candidate's spectrum on a GPU", "cuda", "paper"),
    ("parallel", "speedup", ">=", 1.6, "a round's trainings with --cores 2 against --cores 1"),
]


def check(result: dict) -> list[str]:
    lines = []
    for bench, key, op, bound, meaning, *where in TARGETS:
        device, only = (where + [None, None])[:2]
        if result.get("benchmark") != bench or (device and result.get("device") != device):
            continue
        # the spectrum and parallel benchmarks report one measurement at their top level (the
        # spectrum's model sizes beside it)
        sizes = result["sizes"] if "sizes" in result else {
            "-": result, **{k: v for k, v in result.items() if k in ("demo", "paper") and isinstance(v, dict)}}
        for size, values in sizes.items():
            if key not in values or (only and size != only):
                continue
            value = values[key]
            ok = value <= bound if op == "<=" else value >= bound
            lines.append(f"{'ok  ' if ok else 'FAIL'} {bench}/{size}: {key} = {value} ({op} {bound}: {meaning})")
    return lines


def main(paths: list[str]) -> int:
    lines = [line for path in paths for line in check(json.loads(Path(path).read_text()))]
    print("\n".join(lines) or "no targets found in these results")
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
