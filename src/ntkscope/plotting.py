"""Shared figure and table output: headless matplotlib, atomic PNG and CSV writes."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt
from matplotlib.colors import LogNorm

from ntkscope.io import atomic_open, atomic_savefig

__all__ = ["cell_edges", "change_norm", "phase_heatmap", "plt", "ratio_norm", "save_figure",
           "write_csv"]


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


def cell_edges(centers: Sequence[float]) -> np.ndarray:
    """Edges of the cells centred on ``centers`` (for ``pcolormesh`` with ``shading="flat"``)."""
    c = np.asarray(centers, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def phase_heatmap(
    ax: Any,
    sw2: Sequence[float],
    depths: Sequence[int],
    values: np.ndarray,
    *,
    norm: Any,
    cmap: str,
    sw2_eoc: float | None,
    title: str,
) -> Any:
    """A phase diagram: ``values[depth, sw2]`` over ``sw2`` (x) and depth ``L`` (y).

    NaN cells are left blank; the edge of chaos ``sw2_eoc`` is drawn dashed when inside.
    Returns the mesh (for a colorbar).
    """
    mesh = ax.pcolormesh(cell_edges(sw2), cell_edges(depths), np.ma.masked_invalid(values),
                         norm=norm, cmap=cmap, shading="flat")
    if sw2_eoc is not None and np.isfinite(sw2_eoc) and sw2[0] <= sw2_eoc <= sw2[-1]:
        ax.axvline(sw2_eoc, color="cyan", ls="--", lw=1.5, label=f"EOC ({sw2_eoc:.2f})")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("$\\sigma_w^2$")
    ax.set_ylabel("depth $L$")
    return mesh


def _finite(values: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=float).ravel() for v in values] + [np.array([])])


def ratio_norm(values: Iterable[np.ndarray]) -> LogNorm:
    """The color scale of ``R = E[Theta0^2]/E[Theta0]^2`` heatmaps: logarithmic from 1 to the
    largest finite value (at least 10)."""
    v = _finite(values)
    v = v[np.isfinite(v)]
    return LogNorm(vmin=1.0, vmax=max(10.0, float(v.max()) if v.size else 10.0))


def change_norm(values: Iterable[np.ndarray]) -> LogNorm:
    """The color scale of NTK-change heatmaps: logarithmic over the positive finite values
    (at least one decade; ``[1e-4, 1]`` when there are none)."""
    v = _finite(values)
    v = v[np.isfinite(v) & (v > 0)]
    lo = float(v.min()) if v.size else 1e-4
    hi = float(v.max()) if v.size else 1.0
    return LogNorm(vmin=max(lo, 1e-6), vmax=max(hi, lo * 10))
