"""Drawing to files: matplotlib off-screen and PNGs written atomically. One floor below the run's
report (lsh.report.figures) and the study's figures (lsh.study.figures), which both draw with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsh import files

DPI = 120


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display), imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """The figure as a PNG, written atomically, then closed (a report draws many)."""
    files.atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight", dpi=DPI))
    pyplot().close(fig)
