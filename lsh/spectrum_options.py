"""The options a spectrum was computed with, carried by the tensor the library returns.

Two spectra are comparable only when they were computed alike: the same unit (nats or bits), the same
order of the exponents (per-layer blocks or one sorted vector), the same state and count. A bare
array carries none of that, so `lsh.module_spectrum` (and the helpers built on it) set the attribute
`lsh_options` on the tensor they return; `lsh.ls_distance`, `lsh.report_spectrum` and
`lsh.LyapunovPruner` read it where it is present and refuse to compare spectra of different options.
An array without it (a numpy copy, a list) is taken as it is: there is nothing to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from lsh.errors import LshError

ATTRIBUTE = "lsh_options"
# what decides a spectrum's units and the meaning of its i-th exponent: spectra differing in these are
# not points of one space (dtype, warm-up or qr_every change only the estimate's accuracy)
COMPARED = ("log_base", "layout", "state", "exponents")


def tag(spectrum: Any, options: Mapping[str, Any]) -> Any:
    """`spectrum` (a torch tensor) carrying the options in COMPARED; exponents is the count returned."""
    carried = {key: options[key] for key in COMPARED if key != "exponents"}
    carried["log_base"] = str(carried["log_base"])  # 2 and "2" are one unit
    carried["exponents"] = int(spectrum.shape[-1])
    setattr(spectrum, ATTRIBUTE, carried)
    return spectrum


def options_of(value: Any, what: str) -> Optional[dict[str, Any]]:
    """The options `value` carries: a tagged tensor's, or those shared by the tagged rows of a list,
    tuple or mapping epoch -> spectrum; None when nothing is tagged. Rows tagged with different
    options are refused naming `what`."""
    found = getattr(value, ATTRIBUTE, None)
    if found is not None:
        return dict(found)
    rows = list(value.values()) if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else []
    carried = [getattr(row, ATTRIBUTE) for row in rows if getattr(row, ATTRIBUTE, None) is not None]
    for other in carried[1:]:
        if other != carried[0]:
            raise LshError(f"{what}: its spectra were computed with different options ({describe(carried[0])} "
                           f"against {describe(other)}): compute every spectrum alike")
    return dict(carried[0]) if carried else None


def describe(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {options[key]!r}" for key in COMPARED if key in options)


def check_alike(first: Optional[Mapping[str, Any]], second: Optional[Mapping[str, Any]], where: str,
                names: tuple[str, str]) -> None:
    """Refuse, naming both, two spectra (or sets of spectra) whose carried options differ."""
    if first is None or second is None:
        return
    differ = [key for key in COMPARED if key in first and key in second and first[key] != second[key]]
    if differ:
        raise LshError(f"{where}: the {names[0]} spectra were computed with {describe(first)} but the {names[1]} "
                       f"with {describe(second)} (they differ in {', '.join(differ)}): a distance between them "
                       "measures the options, not the models; compute both alike")
