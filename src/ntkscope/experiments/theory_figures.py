"""Figures 5 and 6 of the paper: ``kappa2`` and ``kappa1/kappa2`` against depth.

For erf at ``(sw2, sb2) = (1, 1), (2.8, 1), (4, 1)`` and ReLU at ``(1, 1), (2, 1), (3, 1)``
(ordered, near the EOC, chaotic), depths ``1..50``, one curve per input covariance
``c0 = x.x'/M0`` in ``[0, 1]`` (``q0 = 1``) colored by a colorbar. ``kappa1, kappa2`` are the
infinite-width NTK constants of Lemma 5.2 (CONVENTIONS 4), computed in closed form
(Appendix E) for all depths in one pass (:func:`ntkscope.theory.kappa_by_depth`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntkscope.io import ensure_writable_dir
from ntkscope.plotting import plt, save_figure, write_csv
from ntkscope.theory import chi1_fixed_point, kappa_by_depth, phase_of

PANELS: dict[str, tuple[tuple[float, float], ...]] = {
    "erf": ((1.0, 1.0), (2.8, 1.0), (4.0, 1.0)),
    "relu": ((1.0, 1.0), (2.0, 1.0), (3.0, 1.0)),
}
MAX_DEPTH = 50
C0_GRID = np.linspace(0.0, 1.0, 11)


def kappa_table(max_depth: int = MAX_DEPTH, c0_grid: np.ndarray = C0_GRID) -> list[tuple]:
    """Rows ``(activation, sw2, sb2, c0, depth, kappa1, kappa2, kappa_ratio)``."""
    rows: list[tuple] = []
    for act, panels in PANELS.items():
        for sw2, sb2 in panels:
            k1, k2 = kappa_by_depth(act, sw2, sb2, max_depth, q0=1.0, c0=c0_grid)
            for j, c0 in enumerate(c0_grid):
                for d in range(max_depth):
                    rows.append((act, sw2, sb2, float(c0), d + 1, float(k1[d, j]),
                                 float(k2[d, j]), float(k1[d, j] / k2[d, j])))
    return rows


def _plot(rows: list[tuple], column: int, ylabel: str, title: str, logy: bool) -> plt.Figure:
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.2), constrained_layout=True)
    for r, (act, panels) in enumerate(PANELS.items()):
        for k, (sw2, sb2) in enumerate(panels):
            ax = axes[r, k]
            sel = [row for row in rows if row[0] == act and row[1] == sw2 and row[2] == sb2]
            for c0 in sorted({row[3] for row in sel}):
                curve = [(row[4], row[column]) for row in sel if row[3] == c0]
                depth, val = zip(*curve)
                ax.plot(depth, val, color=cmap(c0), lw=1.4)
            chi, _ = chi1_fixed_point(act, sw2, sb2)
            ax.set_title(f"{act}: $(\\sigma_w^2, \\sigma_b^2) = ({sw2:g}, {sb2:g})$\n"
                         f"{phase_of(chi)}, $\\chi_1 = {float(chi):.3g}$", fontsize=10)
            ax.set_xlabel("depth $L$ (hidden layers)")
            if k == 0:
                ax.set_ylabel(f"{'a' if r == 0 else 'b'})  {ylabel}")
            if logy:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0.0, 1.0))
    fig.colorbar(sm, ax=axes, label="input covariance $c_0 = x^\\top x'/M_0$ ($q_0 = 1$)",
                 shrink=0.9)
    fig.suptitle(title)
    return fig


def _figure(num: int, out: str | Path) -> list[Path]:
    out_dir = ensure_writable_dir(out)
    rows = kappa_table()
    header = ("activation", "sigma_w2", "sigma_b2", "c0", "depth", "kappa1", "kappa2",
              "kappa_ratio")
    if num == 5:
        fig = _plot(rows, 6, r"$\kappa_2$", "Figure 5: $\\kappa_2$ against depth "
                    "(infinite-width NTK off-diagonal constant, Lemma 5.2)", logy=True)
    else:
        fig = _plot(rows, 7, r"$\kappa_1/\kappa_2$", "Figure 6: $\\kappa_1/\\kappa_2$ against "
                    "depth (conditioning of the infinite-width NTK)", logy=False)
    csv_path = write_csv(out_dir / f"fig{num}.csv", header, rows)
    png_path = save_figure(fig, out_dir / f"fig{num}.png")
    return [png_path, csv_path]


def figure5(out: str | Path, preset: str = "quick", **_: object) -> list[Path]:
    """Figure 5: ``kappa2`` against depth (the preset does not change it: closed forms)."""
    return _figure(5, out)


def figure6(out: str | Path, preset: str = "quick", **_: object) -> list[Path]:
    """Figure 6: ``kappa1/kappa2`` against depth."""
    return _figure(6, out)
