"""Which kernels make two CPUs disagree, and whether portable numerics pins them: a fingerprint of each
component's bits under one setting of what should not matter.

    python benchmarks/numerics_components.py [--mode portable|native] [--set VAR=VALUE ...] [--keep-onednn]

prints one JSON object: for each component (a matmul as the decoder's, torch's LSTM forward and backward,
MKL's QR, OpenBLAS's SVD, a sparse training epoch of lsh's LSTM, its Lyapunov spectrum, the LS distance)
the first 16 hex digits of the sha256 of its output's bits. `--set` changes an environment variable after
the mode's caps are applied and before any library loads: a variable the mode itself pins (an ISA cap)
or one that stands in for another machine (MKL_ENABLE_INSTRUCTIONS: a CPU with less; OPENBLAS_L2_SIZE:
other caches). `--keep-onednn` leaves torch's oneDNN kernels on, as portable mode did before it switched
them off (the control that shows the fingerprint sees oneDNN). tests/test_numerics.py runs this script
under every such setting and requires identical bits in portable mode; `--table` prints that comparison
for docs/install.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()

# What should not change portable mode's bits: each stands for a machine that differs from this one.
VARIATIONS = {
    "as set": [],
    "oneDNN capped at AVX": ["ONEDNN_MAX_CPU_ISA=AVX"],
    "oneDNN capped at SSE4.1": ["ONEDNN_MAX_CPU_ISA=SSE41"],
    "MKL limited to AVX": ["MKL_ENABLE_INSTRUCTIONS=AVX"],
    "MKL limited to SSE4.2": ["MKL_ENABLE_INSTRUCTIONS=SSE4_2"],
    "OpenBLAS with a 256 KiB L2": ["OPENBLAS_L2_SIZE=262144"],
}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.detach().contiguous().cpu().numpy().tobytes() if hasattr(a, "detach") else a.tobytes())
    return h.hexdigest()[:16]


def fingerprint(keep_onednn: bool) -> dict[str, str]:
    """Each component's bits, computed with one thread as a pipeline job computes."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from lsh import numerics
    from lsh.config import Params, load_params
    from lsh.data import Corpus
    from lsh.lyapunov.spectrum import model_spectrum
    from lsh.search.ranking import ls_distance
    from lsh.training import load_checkpoint
    from lsh.training.checkpoints import model_from_checkpoint
    from lsh.training.run import candidate_spec, train

    if keep_onednn:  # lsh pins it off in portable mode (on import and in every record): the control undoes that
        numerics.pin_torch = lambda: True
        torch.backends.mkldnn.enabled = True
    out = {"onednn": str(torch.backends.mkldnn.enabled), "mode": numerics.effective_mode()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(140, 64, generator=g, requires_grad=True)
    w = (torch.randn(2000, 64, generator=g) * 0.1).requires_grad_()
    torch.nn.functional.linear(x, w).square().sum().backward()
    out["matmul"] = _digest(x.grad, w.grad)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(64, 64, 2)
    seq = torch.randn(35, 8, 64, generator=g, requires_grad=True)
    y, _ = lstm(seq)
    y.square().sum().backward()
    out["lstm"] = _digest(y, seq.grad, *[p.grad for p in lstm.parameters()])
    out["qr"] = _digest(*torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=torch.float64)))
    m = np.random.default_rng(0).standard_normal((40, 200))
    out["svd"] = _digest(np.linalg.svd(m, compute_uv=False))

    rng = np.random.default_rng(1)
    vocab = 300
    ids = rng.integers(0, vocab, 6000)
    corpus = Corpus(train=ids, valid=ids[:1500], test=ids[:1500], vocab=[f"w{i}" for i in range(vocab)])
    # the smoke preset's LSTM and training, smaller and with every sparse step on (magnitude death,
    # momentum redistribution)
    params = Params.from_dict(load_params(HERE.parents[1] / "workflow" / "presets" / "smoke.yaml", [
        "train.batch_size=8", "train.bptt=20", "train.eval_batch_size=8", "train.eval_tokens=null", "train.lr=5",
        "train.device=cpu", "sparse.decay_epochs=2"]))
    spec = candidate_spec(params, {"init": "ER", "death": "magnitude", "growth": "random",
                                   "redistribution": "momentum", "death_rate": 0.5})
    with tempfile.TemporaryDirectory() as tmp:
        train(spec, corpus, tmp, 2, progress=False)
        states = [load_checkpoint(Path(tmp) / f"epoch-{e:03d}.pt") for e in range(3)]
    out["train"] = _digest(*states[-1]["model"].values())
    out["validation"] = _digest(np.array([e["valid_loss"] for e in states[-1]["history"]]))
    tokens = torch.as_tensor(ids[:2 * 45].reshape(45, 2))
    spectra = [model_spectrum(model_from_checkpoint(state), tokens, warmup=10, dtype="float32", device="cpu")
               for state in states]
    trajectory = torch.stack(spectra).numpy()
    out["spectrum"] = _digest(trajectory)
    out["distance"] = _digest(np.array([ls_distance(trajectory[::-1].copy(), trajectory, embedding="pca")]))
    return out


def run(mode: str, settings: list[str], keep_onednn: bool = False) -> dict[str, str]:
    """The fingerprint in a fresh process (the caps act only when the libraries load)."""
    cmd = [sys.executable, str(HERE), "--mode", mode, *(f"--set={s}" for s in settings),
           *(["--keep-onednn"] if keep_onednn else [])]
    env = {k: v for k, v in os.environ.items() if k != "LSH_NUMERICS"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def table() -> str:
    """Markdown: which components move under each variation, with portable's pins and with oneDNN kept."""
    rows = ["| setting | oneDNN | components whose bits differ from the first row's |", "|---|---|---|"]
    for keep in (False, True):
        base = run("portable", [], keep)
        for name, settings in VARIATIONS.items():
            found = run("portable", settings, keep)
            moved = [k for k in base if k not in ("onednn", "mode") and found[k] != base[k]]
            rows.append(f"| {name} | {'on' if keep else 'off'} | {', '.join(moved) or 'none'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="portable", choices=("portable", "native"))
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="VAR=VALUE")
    parser.add_argument("--keep-onednn", action="store_true")
    parser.add_argument("--table", action="store_true", help="the comparison of every variation, as Markdown")
    args = parser.parse_args()
    if args.table:
        print(table())
        return 0
    sys.path.insert(0, str(HERE.parents[1]))
    from lsh import numerics

    numerics.apply(args.mode)
    os.environ["OMP_NUM_THREADS"] = "1"
    for setting in args.settings:
        key, _, value = setting.partition("=")
        os.environ[key] = value
    print(json.dumps(fingerprint(args.keep_onednn)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
