"""Shared figure and table output: headless matplotlib, atomic PNG and CSV writes."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt

from ntkscope.io import atomic_open, atomic_savefig

__all__ = ["plt", "save_figure", "write_csv"]


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write ``fig`` atomically (format from the suffix) and close it."""
    target = Path(path)
    atomic_savefig(fig, target, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return target


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[object]]
) -> Path:
    """Write a CSV atomically; refuses NaN/inf floats (results never hold them silently)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        for value in row:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"refusing to write non-finite value {value} to {path}")
        writer.writerow([f"{v:.12g}" if isinstance(v, float) else v for v in row])
    target = Path(path)
    with atomic_open(target, "w") as fh:
        fh.write(buf.getvalue())
    return target
