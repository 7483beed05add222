"""Portable numerics: the same seed gives the same bits on every x86-64 machine with AVX2.

The CPU libraries under torch, numpy and scipy pick their kernels by the machine they run on:
its instruction set, and for some its vendor and caches. An AVX-512 machine sums in another
order than an AVX2 one, an Intel CPU in another than an AMD one, and the search amplifies those
last bits into another pruning method within a round. `portable` pins every such choice to one
that every x86-64 CPU with AVX2 makes alike; `native` leaves each library its fastest kernels.

What each pin is for, as measured (docs/install.md has the evidence and the costs):
- ATen, torch's own kernels: capped at AVX2 (its kernels depend on the instruction set alone).
- MKL, under torch's matmuls and QR: its CNR branch COMPATIBLE. MKL honours the AVX2 branch on
  Intel CPUs only; elsewhere it takes its AUTO branch (its documentation says so, and on an AMD
  EPYC the AVX2, SSE4_2, AVX512 and AUTO branches give the same bits), so only COMPATIBLE names
  one code path on both vendors.
- oneDNN, torch's fused LSTM on the CPU: switched off (`pin_torch`), so nn.LSTM runs ATen's cell
  over MKL. oneDNN's RNN bits move with its ISA cap, and it blocks its kernels by the CPU's caches.
- OpenBLAS, under numpy and scipy (the PCA): its Haswell kernels; numpy's own loops at AVX2.
The caps are environment variables the libraries read when they load, so they must be set
before torch or numpy is imported: the command line applies them first thing, and a library
user calls `apply` before importing torch. The thread count is part of the bits too (MKL's QR
and OpenBLAS's SVD split their work by it): every job runs the threads its rule gives it.

What does not hold anywhere: bits across CPU architectures (an ARM CPU has other kernels),
on a CPU without AVX2, or on a GPU (CUDA kernels differ by GPU model and cuDNN's RNNs are not
deterministic); `notes` says so in the run's log.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import sys
from importlib import metadata

log = logging.getLogger("lsh.numerics")

MODES = ("portable", "native")
DEFAULT = "portable"

# The caps of `portable`, one per library that dispatches on the CPU.
CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels (ATen)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: off for the LSTM (pin_torch); capped for anything else of torch's
    "MKL_CBWR": "COMPATIBLE",  # MKL (matmuls, QR): the one CNR branch it keeps on Intel and AMD alike
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS under numpy and scipy (the PCA's SVD)
}
# numpy's own SIMD loops above AVX2, by the names its release dispatches on (a name it does not
# dispatch on is an ImportWarning): x86-64-v4 levels since numpy 2.4, AVX-512 features before.
NUMPY_CAP = "NPY_DISABLE_CPU_FEATURES"
NUMPY_ABOVE_AVX2 = {(2, 4): "X86_V4 AVX512_ICL AVX512_SPR",
                    (0, 0): "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX "
                            "AVX512_CNL AVX512_ICL AVX512_SPR"}
# What portable needs of the CPU: torch's AVX2 kernels need FMA as well.
NEEDED_FLAGS = ("avx2", "fma")
# The packages whose versions a run records (a new release can change a proposal or a rounding).
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "hyperopt", "optuna", "pandas", "snakemake", "dvc")
ACCEPT = "LSH_ACCEPT_ENVIRONMENT"  # set to 1 to continue a checkpoint made on another capability
MODE_VARIABLE = "LSH_NUMERICS"  # the mode this process applied, for its record and its children


def _cpuinfo(*keys: str) -> str | None:
    """The first /proc/cpuinfo line's value whose name starts with one of `keys` (None where none says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is missing)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    return _cpuinfo("model name", "Model") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ... ('' where /proc/cpuinfo does not say)."""
    return _cpuinfo("vendor_id") or ""


def _numpy_cap() -> str:
    try:
        release = tuple(int(p) for p in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        release = (0, 0)
    return next(names for since, names in NUMPY_ABOVE_AVX2.items() if release >= since)


def portable_env() -> dict[str, str]:
    """Every variable `portable` sets, with its value."""
    return {**CAPS, NUMPY_CAP: _numpy_cap()}


def portable_possible() -> str | None:
    """None where the caps hold (x86-64 with AVX2 and FMA), else why not."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return (f"this is a {platform.machine()} CPU: the caps are for x86-64, so results reproduce bit for bit "
                "only on machines of this architecture and CPU capability")
    missing = [flag for flag in NEEDED_FLAGS if flag not in cpu_flags()]
    if missing:
        return (f"this CPU lacks {' and '.join(missing)}, so the AVX2 caps cannot apply: results reproduce bit for "
                "bit only on machines with the same CPU capability")
    return None


def apply(mode: str = DEFAULT) -> list[str]:
    """Set the mode's caps for this process and its children; returns notes for the run's log.

    Effective only before torch and numpy are loaded; later, a process whose libraries were
    loaded under other settings is left as it is, and a note says so. `native` leaves caps the
    user set alone, but drops those a portable lsh parent process set (a benchmark or a test
    starting a native child)."""
    if mode not in MODES:
        from lsh.errors import LshError

        raise LshError(f"numerics: {mode!r} is not allowed: allowed are {', '.join(MODES)}")
    notes = []
    why_not = portable_possible() if mode == "portable" else None
    if why_not:
        notes.append(f"numerics: portable cannot hold here: {why_not}")
    caps = portable_env()
    loaded = [name for name in ("torch", "numpy") if name in sys.modules]
    if loaded:
        capped = all(os.environ.get(k) == v for k, v in caps.items())
        if mode == "portable" and not why_not and not capped:
            notes.append(f"numerics: portable was asked for after {' and '.join(loaded)} had loaded without the "
                         "caps, so this process computes natively (call lsh.numerics.apply before importing them)")
        elif mode == "native" and capped:
            notes.append("numerics: native was asked for in a process whose libraries loaded with the portable "
                         "caps; they stay capped")
        return notes
    if mode == "portable" and not why_not:
        os.environ.update(caps)
    elif mode == "native" and os.environ.get(MODE_VARIABLE) == "portable":
        for key, value in caps.items():
            if os.environ.get(key) == value:
                del os.environ[key]
    os.environ[MODE_VARIABLE] = mode
    return notes


def effective_mode() -> str:
    """The mode this process computes in: portable when every cap is set as portable sets it."""
    env = portable_env()
    return "portable" if all(os.environ.get(k) == v for k, v in env.items()) else "native"


def pin_torch() -> bool:
    """In portable mode, switch torch's oneDNN kernels off (its LSTM then runs ATen's cell over MKL);
    returns whether oneDNN stays on. A torch flag, not a variable: the modules that run nn.LSTM call it
    when they load, and `record` before it reports. Idempotent; native mode is left as it is."""
    import torch

    if effective_mode() == "portable" or os.environ.get(MODE_VARIABLE) == "portable":
        torch.backends.mkldnn.enabled = False
    return bool(torch.backends.mkldnn.enabled)


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def record() -> dict:
    """What produced a result: the numerics, the CPU and its capability as torch uses it, the versions.
    Imports torch (the capability is torch's answer under this process's caps)."""
    import torch

    caps = {k: os.environ[k] for k in portable_env() if k in os.environ}
    env = {
        "numerics": effective_mode(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
        "vendor": cpu_vendor(),
        "machine": platform.machine(),
        "caps": caps,
        "onednn": pin_torch(),
        "python": platform.python_version(),
        "lsh": _lsh_version(),
        "versions": versions(),
    }
    if torch.cuda.is_available():
        env["cuda"] = {"device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version()}
    return env


@functools.cache
def current() -> dict:
    """This process's record, computed once (its libraries cannot change their kernels once loaded)."""
    return record()


def _lsh_version() -> str:
    from lsh import __version__

    return __version__


# What decides the bits in portable mode besides the versions: another value of any is another result.
PINNED = ("numerics", "cpu_capability", "machine", "caps", "onednn")


def differences(recorded: dict, current: dict) -> list[str]:
    """What differs between two records, each naming both values (the CPU model is not a difference
    in portable mode: the pins make every x86-64 CPU with AVX2 compute alike)."""
    out = []
    for key in PINNED:
        if recorded.get(key) != current.get(key):
            out.append(f"{key} {recorded.get(key)} -> {current.get(key)}")
    if current.get("numerics") == "native" and recorded.get("cpu") != current.get("cpu"):
        out.append(f"cpu {recorded.get('cpu')!r} -> {current.get('cpu')!r}")
    old, new = recorded.get("versions", {}), current.get("versions", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            out.append(f"{name} {old.get(name)} -> {new.get(name)}")
    return out


def check_continuation(recorded: dict | None, current: dict, what: str) -> None:
    """A run continued from `what` (a checkpoint) in another environment says so, naming both
    values; in portable mode another CPU capability is refused (the continuation could not be
    the bits of an uninterrupted run), unless LSH_ACCEPT_ENVIRONMENT=1."""
    if recorded is None:
        log.warning("%s records no environment (made by an older lsh): its numerics and versions cannot be "
                    "checked", what)
        return
    changed = differences(recorded, current)
    if not changed:
        return
    pinned = [key for key in PINNED if key != "numerics" and recorded.get(key) != current.get(key)]
    refused = current.get("numerics") == "portable" and pinned and os.environ.get(ACCEPT) != "1"
    if refused:
        from lsh.errors import LshError

        raise LshError(f"{what} was made with CPU capability {recorded.get('cpu_capability')} "
                       f"(numerics {recorded.get('numerics')}), this process computes with "
                       f"{current.get('cpu_capability')} (numerics portable), and its {', '.join(pinned)} differ: the "
                       f"continuation would not give the bits of an uninterrupted run. To continue anyway, set "
                       f"{ACCEPT}=1 (or numerics: native)")
    log.warning("%s was made in another environment: %s", what, "; ".join(changed))
