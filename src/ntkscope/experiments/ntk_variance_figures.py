"""Figures 1, 2 and 7: NTK randomness at initialization (paper Section 3).

Each cell is one ``(activation, sw2, sb2, depth, width)`` with ``inits`` independent
initializations of the exact low-rank sampler (:func:`ntkscope.sampling.ntk_variance`) and
reports ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` with its 95% bootstrap interval and the tail
diagnostic ``ess``; where ``ess < MIN_ESS`` ``R`` is only a lower bound (no interval): hatched
heatmap cells, open markers in Figure 2 (``docs/ntk-variance.md``). Cells are stored and reused
(:mod:`ntkscope.store`), so a killed run resumes where it stopped; :data:`CELL_VERSION` in
every cell's config keeps summaries of older ntkscope versions (without ``ess``) from being
reused.

* Figure 1: heatmaps of ``R`` over ``sw2`` (x) and depth ``L`` (y), tanh and ReLU, ``sb2 = 1``,
  one panel per width ``M``; logarithmic colors; the EOC dashed.
* Figure 2: ReLU at ``(sw2, sb2)`` in ``(1, 1), (1.5, 1), (2, 0), (3, 1)``: ``R`` against ``L``
  and against ``L/M`` for several widths, with Hanin & Nica's ``exp(5 L/M)`` on ``(2, 0)``.
* Figure 7: Figure 1 at ``M = 100`` for ``sb2`` in ``0, 0.5, 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle

from ntkscope.defaults import INPUT_DIM, MIN_ESS
from ntkscope.experiments.common import SweepOptions, check_preset, run_cells
from ntkscope.io import ensure_writable_dir
from ntkscope.plotting import cell_edges, phase_heatmap, plt, ratio_norm, save_figure, write_csv
from ntkscope.spec import NetworkSpec
from ntkscope.sweep import CellOutput
from ntkscope.theory import eoc
from ntkscope.validation import NtkscopeInputError

KIND = "ntk_variance"
#: Part of every cell's config: 2 = summaries carry ``ess`` and ``ratio_is_lower_bound`` (and
#: ``ratio_ci`` null for a lower bound). Cells stored without it (version 1) have other keys,
#: so they are recomputed, never read as if complete.
CELL_VERSION = 2


@dataclass(frozen=True)
class HeatmapGrid:
    """A Figure 1 / 7 grid: ``sw2`` values per activation, depths, widths, ``sb2`` values."""

    sw2: dict[str, tuple[float, ...]]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    sb2: tuple[float, ...]
    inits: int


def _lin(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in np.linspace(lo, hi, n))


# sw2 spans both phases with the EOC inside: tanh's EOC is 3.44 at sb2 = 1 (1 at sb2 = 0,
# 4.75 at sb2 = 2), ReLU's is 2 for every sb2.
_SW2_PAPER = {"tanh": _lin(0.5, 6.0, 23), "relu": _lin(0.5, 4.0, 15)}
_SW2_QUICK = {"tanh": _lin(0.5, 6.0, 8), "relu": _lin(0.5, 4.0, 8)}
_DEPTHS_PAPER = (1, *range(2, 51, 2))
_DEPTHS_QUICK = (1, 5, 10, 20, 35, 50)

FIG1 = {
    "paper": HeatmapGrid(_SW2_PAPER, _DEPTHS_PAPER, (50, 100, 200, 500), (1.0,), 200),
    "quick": HeatmapGrid(_SW2_QUICK, _DEPTHS_QUICK, (50, 100, 200, 500), (1.0,), 100),
}
FIG7 = {
    "paper": HeatmapGrid(_SW2_PAPER, _DEPTHS_PAPER, (100,), (0.0, 0.5, 2.0), 200),
    "quick": HeatmapGrid(_SW2_QUICK, _DEPTHS_QUICK, (100,), (0.0, 0.5, 2.0), 100),
}
# Figure 2: ReLU initializations, widths, depth-to-width ratios L/M.
FIG2_INITS_POINTS = ((1.0, 1.0), (1.5, 1.0), (2.0, 0.0), (3.0, 1.0))
FIG2 = {
    "paper": ((50, 100, 200, 500, 1000), (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
              200),
    "quick": ((10, 20, 50, 100), (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0), 200),
}

CSV_HEADER = ("activation", "sigma_w2", "sigma_b2", "depth", "width", "inits", "ratio",
              "ratio_ci_low", "ratio_ci_high", "mean", "std", "theory_mean", "hanin_nica",
              "ess", "ratio_is_lower_bound")


def ntk_variance_cell(config: dict[str, Any], device: str = "cpu") -> CellOutput:
    """Sweep cell: ``R``, its statistics and tail diagnostic; raw samples ``[Theta0(x,x),
    f0(x)]`` per init."""
    from ntkscope.sampling import ntk_variance

    net = NetworkSpec(config["activation"], config["sigma_w2"], config["sigma_b2"],
                      config["depth"], config["width"], config["input_dim"])
    res = ntk_variance(net, inits=config["inits"], seed=config["seed"],
                       method=config["method"], device=device)
    summary = res.to_dict()
    summary.pop("seconds", None)  # wall time is stored by the sweep engine
    return CellOutput(summary=summary, samples=np.stack([res.theta, res.f]))


def _config(act: str, sw2: float, sb2: float, depth: int, width: int, inits: int) -> dict:
    return {"activation": act, "sigma_w2": sw2, "sigma_b2": sb2, "depth": depth,
            "width": width, "inits": inits, "input_dim": INPUT_DIM, "seed": 0,
            "method": "lowrank", "version": CELL_VERSION}


def _complete(s: dict) -> dict:
    """A stored summary with the tail diagnostic, else an error (never read as complete)."""
    missing = [k for k in ("ess", "ratio_is_lower_bound") if k not in s]
    if missing:
        raise NtkscopeInputError(
            f"store: a cell summary lacks {', '.join(missing)} (computed by an older ntkscope); "
            "use a new store or recompute the cell"
        )
    return s


def _csv_rows(configs: list[dict], summaries: list[dict | None]) -> list[tuple]:
    rows = []
    for cfg, s in zip(configs, summaries):
        if s is None:
            continue
        s = _complete(s)
        ci = s["ratio_ci"]
        rows.append((cfg["activation"], float(cfg["sigma_w2"]), float(cfg["sigma_b2"]),
                     cfg["depth"], cfg["width"], cfg["inits"], float(s["ratio"]),
                     "" if ci is None else float(ci[0]), "" if ci is None else float(ci[1]),
                     float(s["mean"]), float(s["std"]), float(s["theory_mean"]),
                     "" if s.get("hanin_nica") is None else float(s["hanin_nica"]),
                     float(s["ess"]), int(bool(s["ratio_is_lower_bound"]))))
    return rows


def heatmap_cells(grid: HeatmapGrid) -> list[dict]:
    """The cell configs of a Figure 1 / 7 grid (activation, sb2, width, sw2, depth order)."""
    return [_config(act, sw2, sb2, d, m, grid.inits)
            for act in ("tanh", "relu") for sb2 in grid.sb2 for m in grid.widths
            for sw2 in grid.sw2[act] for d in grid.depths]


def _ratio_lookup(configs: list[dict],
                  summaries: list[dict | None]) -> dict[tuple, tuple[float, bool]]:
    """``(activation, sb2, width, sw2, depth) -> (R, R is a lower bound)``; NaN if failed."""
    return {(c["activation"], c["sigma_b2"], c["width"], c["sigma_w2"], c["depth"]):
            ((np.nan, False) if s is None
             else (float(s["ratio"]), bool(_complete(s)["ratio_is_lower_bound"])))
            for c, s in zip(configs, summaries)}


def _hatch_cells(ax: Any, sw2s: tuple[float, ...], depths: tuple[int, ...],
                 bound: np.ndarray, hatch: str = "///") -> None:
    """Hatch the heatmap cells ``bound[depth, sw2]`` (``R`` only a lower bound there)."""
    xe, ye = cell_edges(sw2s), cell_edges(depths)
    for i, j in zip(*np.nonzero(bound)):
        ax.add_patch(Rectangle((xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i],
                               fill=False, hatch=hatch, edgecolor="0.7", lw=0))


def _heatmaps(grid: HeatmapGrid, lookup: dict[tuple, tuple[float, bool]],
              panels: list[tuple[str, float, int]], ncols: int, title: str) -> plt.Figure:
    """One heatmap per ``(activation, sb2, width)`` panel; shared logarithmic color scale;
    hatched cells where ``R`` is only a lower bound."""
    norm = ratio_norm([np.array([v for v, _ in lookup.values()])])
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.2, 3.2 * nrows),
                             constrained_layout=True, squeeze=False)
    mesh = None
    for ax, (act, sb2, width) in zip(axes.flat, panels):
        sw2s, depths = grid.sw2[act], grid.depths
        cells = [[lookup[(act, sb2, width, s, d)] for s in sw2s] for d in depths]
        z = np.array([[v for v, _ in row] for row in cells])
        mesh = phase_heatmap(ax, sw2s, depths, z, norm=norm, cmap="magma",
                             sw2_eoc=float(eoc(act, sb2)[0]),
                             title=f"{act}, M = {width}, $\\sigma_b^2$ = {sb2:g}")
        _hatch_cells(ax, sw2s, depths, np.array([[b for _, b in row] for row in cells]))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="$R = E[\\Theta_0^2] / E[\\Theta_0]^2$ (log scale)")
    fig.suptitle(title + f"\nhatched: R only a lower bound (ESS < {MIN_ESS:g}, heavy tail)")
    return fig


def _heatmap_figure(num: int, grid: HeatmapGrid, out: Path, options: SweepOptions,
                    preset: str) -> list[Path]:
    configs = heatmap_cells(grid)
    summaries = run_cells(KIND, configs, ntk_variance_cell, options)
    lookup = _ratio_lookup(configs, summaries)
    if num == 1:
        panels = [(a, 1.0, m) for a in ("tanh", "relu") for m in grid.widths]
        ncols = len(grid.widths)
    else:
        panels = [(a, sb2, 100) for a in ("tanh", "relu") for sb2 in grid.sb2]
        ncols = len(grid.sb2)
    title = (f"Figure {num}: NTK randomness at initialization ({preset} preset, "
             f"{grid.inits} inits per cell, low-rank sampler)")
    fig = _heatmaps(grid, lookup, panels, ncols, title)
    csv_path = write_csv(out / f"fig{num}.csv", CSV_HEADER, _csv_rows(configs, summaries))
    return [save_figure(fig, out / f"fig{num}.png"), csv_path]


def figure1(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
            **_: object) -> list[Path]:
    """Figure 1: ``R`` heatmaps over ``(sw2, L)`` for tanh and ReLU, ``sb2 = 1``, four widths."""
    grid = FIG1[check_preset(preset)]
    return _heatmap_figure(1, grid, ensure_writable_dir(out), options or SweepOptions(), preset)


def figure7(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
            **_: object) -> list[Path]:
    """Figure 7: Figure 1 at ``M = 100`` for ``sb2`` in ``0, 0.5, 2``."""
    grid = FIG7[check_preset(preset)]
    return _heatmap_figure(7, grid, ensure_writable_dir(out), options or SweepOptions(), preset)


def figure2_configs(preset: str) -> list[dict]:
    widths, ratios, inits = FIG2[check_preset(preset)]
    configs = []
    for sw2, sb2 in FIG2_INITS_POINTS:
        for m in widths:
            for d in sorted({max(1, round(r * m)) for r in ratios}):
                configs.append(_config("relu", sw2, sb2, d, m, inits))
    return configs


def figure2(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
            **_: object) -> list[Path]:
    """Figure 2: ReLU ``R`` against ``L`` and ``L/M``; Hanin & Nica's ``exp(5L/M)`` on (2, 0)."""
    out_dir = ensure_writable_dir(out)
    configs = figure2_configs(preset)
    summaries = run_cells(KIND, configs, ntk_variance_cell, options or SweepOptions())
    widths = sorted({c["width"] for c in configs})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(widths)))
    fig, axes = plt.subplots(2, len(FIG2_INITS_POINTS), figsize=(16, 7.5),
                             constrained_layout=True)
    for k, (sw2, sb2) in enumerate(FIG2_INITS_POINTS):
        for color, m in zip(colors, widths):
            pts = [(c["depth"], s) for c, s in zip(configs, summaries)
                   if c["width"] == m and c["sigma_w2"] == sw2 and c["sigma_b2"] == sb2
                   and s is not None]
            if not pts:
                continue
            depth = np.array([p[0] for p in pts], dtype=float)
            ratio = np.array([p[1]["ratio"] for p in pts])
            bound = np.array([_complete(p[1])["ratio_is_lower_bound"] for p in pts], dtype=bool)
            lo = np.array([np.nan if p[1]["ratio_ci"] is None else p[1]["ratio_ci"][0]
                           for p in pts])
            hi = np.array([np.nan if p[1]["ratio_ci"] is None else p[1]["ratio_ci"][1]
                           for p in pts])
            for ax, x in ((axes[0, k], depth), (axes[1, k], depth / m)):
                ax.plot(x, ratio, "-", color=color, lw=1.2)
                ax.plot(x[~bound], ratio[~bound], "o", color=color, ms=3,
                        label=f"M = {m}" if (~bound).any() else None)
                ax.plot(x[bound], ratio[bound], "o", mfc="white", mec=color, ms=4,
                        label=f"M = {m}, R >= (lower bound)" if bound.any() else None)
                ax.fill_between(x, lo, hi, where=~bound, color=color, alpha=0.2, lw=0)
        if (sw2, sb2) == (2.0, 0.0):
            r = np.linspace(0.0, 1.0, 100)
            axes[1, k].plot(r, np.exp(5 * r), "k--", lw=1.5, label="Hanin & Nica $e^{5L/M}$")
        chi = sw2 / 2
        phase = "ordered" if chi < 1 else ("EOC" if chi == 1 else "chaotic")
        axes[0, k].set_title(f"ReLU $(\\sigma_w^2, \\sigma_b^2) = ({sw2:g}, {sb2:g})$, {phase}",
                             fontsize=10)
        axes[0, k].set_xlabel("depth $L$")
        axes[1, k].set_xlabel("$L / M$")
        for ax in axes[:, k]:
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("$R = E[\\Theta_0^2]/E[\\Theta_0]^2$")
    axes[1, 0].set_ylabel("$R = E[\\Theta_0^2]/E[\\Theta_0]^2$")
    fig.suptitle(f"Figure 2: NTK randomness of ReLU networks against depth and depth-to-width "
                 f"ratio ({preset} preset, {configs[0]['inits']} inits, 95% bootstrap bands;\n"
                 f"open markers: R only a lower bound, ESS < {MIN_ESS:g})")
    csv_path = write_csv(out_dir / "fig2.csv", CSV_HEADER, _csv_rows(configs, summaries))
    return [save_figure(fig, out_dir / "fig2.png"), csv_path]
