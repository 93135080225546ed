"""Figures 3, 4, 8, 9, 10 and 11: NTK change during training (paper Section 4).

Networks are trained by full-batch gradient descent on the MSE loss (CONVENTIONS 7) on a
class-balanced MNIST subset with parity targets (:func:`ntkscope.training.train`), and the
relative change ``|Theta_t - Theta_0|_F / |Theta_0|_F`` of the NTK on the training inputs is
recorded at the snapshot steps and at the end.

A sweep cell is one heatmap row: ``(activation, depth, width)`` with every ``sw2`` of the
grid trained together as one batch (one :func:`train` call), so cells are few and batched.
Cells are stored and reused (the same cells serve Figures 3/8/10 for tanh and 4/9/11 for
ReLU); the configuration names the data actually used (full files or the shipped subset).

* Figures 3 (tanh) / 4 (ReLU): heatmaps over ``sw2`` and ``L`` of (a) the final relative NTK
  change and (b) the minimal loss, EOC dashed.
* Figures 8 / 9: the change after 10, 1e2, 1e3, 1e4 steps (a network that stopped earlier
  keeps its final kernel, so its final change is shown).
* Figures 10 / 11: the final change for three widths.

Presets: ``paper`` uses the paper's settings exactly (width 256, 128 samples, ``lr = 1e-5``,
at most ``1e5`` steps, early stop after 100 steps without a ``1e-7`` decrease, widths 128,
256, 512); ``quick`` a smaller grid and width, 64 samples, at most 1000 steps and
``lr = min(1e-4, 0.2 lr_max)``: the paper's fixed-rate protocol at a 10x larger rate (fewer
steps), capped per network by ``--lr-scale 0.2`` so that deep chaotic networks, whose
``lambda_max(Theta_0)`` is large, do not diverge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm

from ntkscope.defaults import LEARNING_RATE, MAX_STEPS, MIN_DELTA, PATIENCE, SNAPSHOTS
from ntkscope.experiments.common import SweepOptions, check_preset, run_cells
from ntkscope.io import ensure_writable_dir
from ntkscope.plotting import change_norm, phase_heatmap, plt, save_figure, write_csv
from ntkscope.sweep import CellOutput
from ntkscope.theory import eoc

KIND = "train_ntk_change"


@dataclass(frozen=True)
class TrainGrid:
    """A preset of the training figures."""

    sw2: dict[str, tuple[float, ...]]
    depths: tuple[int, ...]
    width: int  # Figures 3, 4, 8, 9
    widths: tuple[int, ...]  # Figures 10, 11
    samples: int
    sb2: float
    lr: float | None
    lr_scale: float | None
    max_steps: int
    patience: int
    min_delta: float
    snapshots: tuple[int, ...]
    dataset: str = "mnist"
    seed: int = 0
    settings: str = field(default="", compare=False)


def _lin(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in np.linspace(lo, hi, n))


PRESETS: dict[str, TrainGrid] = {
    "paper": TrainGrid(
        sw2={"tanh": _lin(0.5, 6.0, 12), "relu": _lin(0.5, 4.0, 8)},
        depths=(1, 5, 10, 15, 20, 30, 40, 50), width=256, widths=(128, 256, 512),
        samples=128, sb2=1.0, lr=LEARNING_RATE, lr_scale=None, max_steps=MAX_STEPS,
        patience=PATIENCE, min_delta=MIN_DELTA, snapshots=SNAPSHOTS,  # the paper's rules
        settings="128 MNIST samples, lr=1e-5, <=1e5 steps, early stop 1e-7/100 steps",
    ),
    "quick": TrainGrid(
        sw2={"tanh": _lin(0.5, 6.0, 6), "relu": _lin(0.5, 4.0, 6)},
        depths=(1, 3, 6, 10, 15), width=96, widths=(48, 96, 192),
        samples=64, sb2=1.0, lr=1e-4, lr_scale=0.2, max_steps=1000, patience=100,
        min_delta=1e-7, snapshots=(10, 100, 1000),
        settings="64 MNIST samples, lr=min(1e-4, 0.2 lr_max), <=1000 steps, early stop "
        "1e-7/100",
    ),
}


def train_cell(config: dict[str, Any], device: str = "cpu") -> CellOutput:
    """Sweep cell: train one batch (every ``sw2`` of a row) and summarise each network.

    Summary: ``networks``, a list with the :meth:`TrainResult.to_dict` of each network plus
    ``sigma_w2``, ``lr_max``, ``min_loss_step``. Samples: the stored loss curves, one row per
    network (NaN after divergence).
    """
    import torch

    from ntkscope.datasets import load_dataset
    from ntkscope.networks import MLP
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    data = load_dataset(config["dataset"], config["samples"], seed=config["seed"],
                        target="parity")
    net = MLP(data.X.shape[1], config["width"], config["depth"], config["activation"])
    run = train(
        net, data.X, data.y,
        variances=[(sw2, config["sigma_b2"]) for sw2 in config["sigma_w2"]],
        seed=config["seed"], rate=LearningRate(config["lr"], config["lr_scale"]),
        stop=StoppingRule(config["max_steps"], config["patience"], config["min_delta"]),
        record=Recording(config["snapshots"], curve_points=500),
        execution=Execution(torch.float64, device, threads=1),
    )
    networks = []
    curves = []
    for sw2, res in zip(config["sigma_w2"], run.results):
        summary = res.to_dict()
        summary.update(sigma_w2=sw2, lr_max=_finite(res.lr_max), min_loss_step=res.min_loss_step)
        summary.pop("seconds", None)
        networks.append(summary)
        curves.append(np.asarray(res.losses, dtype=float))
    length = max(len(c) for c in curves)
    samples = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        samples[i, : len(c)] = c
    return CellOutput(summary={"networks": networks, "data": data.source}, samples=samples)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def data_tag(grid: TrainGrid) -> str:
    """Which data the cells train on (part of the cell key): full files or the subset."""
    from ntkscope.datasets import load_dataset

    data = load_dataset(grid.dataset, grid.samples, seed=grid.seed, target="parity")
    return f"{grid.dataset}:{'subset' if data.subset else 'full'}"


def _configs(grid: TrainGrid, act: str, width: int, tag: str) -> list[dict[str, Any]]:
    return [{"activation": act, "sigma_w2": list(grid.sw2[act]), "sigma_b2": grid.sb2,
             "depth": d, "width": width, "samples": grid.samples, "dataset": grid.dataset,
             "data": tag, "seed": grid.seed, "lr": grid.lr, "lr_scale": grid.lr_scale,
             "max_steps": grid.max_steps, "patience": grid.patience,
             "min_delta": grid.min_delta, "snapshots": list(grid.snapshots)}
            for d in grid.depths]


CSV_HEADER = ("activation", "sigma_w2", "sigma_b2", "depth", "width", "samples", "lr", "steps",
              "stop_reason", "initial_loss", "final_loss", "min_loss", "change_10",
              "change_100", "change_1000", "change_10000", "change_final")


def _change_at(net: dict[str, Any], step: int | str) -> float:
    """The relative NTK change at ``step``; the final one for a network that stopped earlier."""
    change = net["ntk_change"]
    if step != "final" and str(step) in change:
        value = change[str(step)]
    elif step == "final" or net["steps"] < int(step):
        value = change.get("final")
    else:
        value = None
    return np.nan if value is None else float(value)


def _blank(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


@dataclass
class _Rows:
    """Per-network rows of one activation and width: lookup by (depth, sw2)."""

    nets: dict[tuple[int, float], dict[str, Any]]

    def grid(self, depths: tuple[int, ...], sw2s: tuple[float, ...], value) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array([[value(self.nets[(d, s)]) if (d, s) in self.nets else np.nan
                          for s in sw2s] for d in depths])


def _collect(grid: TrainGrid, act: str, widths: tuple[int, ...], options: SweepOptions
             ) -> tuple[dict[int, _Rows], list[tuple]]:
    tag = data_tag(grid)
    configs = [c for w in widths for c in _configs(grid, act, w, tag)]
    summaries = run_cells(KIND, configs, train_cell, options)
    by_width: dict[int, _Rows] = {w: _Rows({}) for w in widths}
    csv_rows: list[tuple] = []
    for cfg, summary in zip(configs, summaries):
        if summary is None:
            continue
        for net in summary["networks"]:
            key = (cfg["depth"], float(net["sigma_w2"]))
            by_width[cfg["width"]].nets[key] = net
            csv_rows.append(tuple(_blank(v) for v in (
                act, float(net["sigma_w2"]), float(cfg["sigma_b2"]), cfg["depth"],
                cfg["width"], cfg["samples"], float(net["lr"]), net["steps"],
                net["stop_reason"], net["initial_loss"], net["final_loss"], net["min_loss"],
                *(_change_at(net, t) if t in grid.snapshots else None
                  for t in (10, 100, 1000, 10000)),
                _change_at(net, "final"))))
    return by_width, csv_rows


def _panels(act: str, grid: TrainGrid, panels: list[tuple[str, np.ndarray]], norm: LogNorm,
            cmap: str, label: str, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 1.2, 3.9),
                             constrained_layout=True, squeeze=False)
    sw2_eoc = float(eoc(act, grid.sb2)[0])
    mesh = None
    for ax, (name, values) in zip(axes[0], panels):
        mesh = phase_heatmap(ax, grid.sw2[act], grid.depths, values, norm=norm, cmap=cmap,
                             sw2_eoc=sw2_eoc, title=name)
    fig.colorbar(mesh, ax=axes[0].tolist(), label=label)
    fig.suptitle(title, fontsize=11)
    return fig


_CHANGE_LABEL = "$\\|\\Theta_t - \\Theta_0\\|_F / \\|\\Theta_0\\|_F$ (log scale)"


def _figure(num: int, out: str | Path, preset: str, options: SweepOptions | None) -> list[Path]:
    grid = PRESETS[check_preset(preset)]
    out_dir = ensure_writable_dir(out)
    options = options or SweepOptions()
    act = "tanh" if num in (3, 8, 10) else "relu"
    widths = grid.widths if num in (10, 11) else (grid.width,)
    by_width, csv_rows = _collect(grid, act, widths, options)
    base = (f"{act}, $\\sigma_b^2$ = {grid.sb2:g}; {grid.settings} ({preset} preset; "
            "blank: diverged)")
    rows = by_width[widths[0]]
    if num in (3, 4):
        change = rows.grid(grid.depths, grid.sw2[act], lambda n: _change_at(n, "final"))
        loss = rows.grid(grid.depths, grid.sw2[act],
                         lambda n: np.nan if n["min_loss"] is None else n["min_loss"])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
        sw2_eoc = float(eoc(act, grid.sb2)[0])
        m1 = phase_heatmap(axes[0], grid.sw2[act], grid.depths, change,
                           norm=change_norm([change]), cmap="magma", sw2_eoc=sw2_eoc,
                           title="a) relative NTK change at the end of training")
        fig.colorbar(m1, ax=axes[0], label=_CHANGE_LABEL)
        finite = loss[np.isfinite(loss) & (loss > 0)]
        lnorm = LogNorm(vmin=max(float(finite.min()), 1e-8) if finite.size else 1e-4,
                        vmax=max(float(finite.max()), 1.0) if finite.size else 1.0)
        m2 = phase_heatmap(axes[1], grid.sw2[act], grid.depths, loss, norm=lnorm,
                           cmap="coolwarm", sw2_eoc=sw2_eoc, title="b) minimal training loss")
        fig.colorbar(m2, ax=axes[1], label="minimal loss (log scale)")
        fig.suptitle(f"Figure {num}: NTK change during training, width M = {grid.width}\n{base}",
                     fontsize=11)
    elif num in (8, 9):
        steps = [t for t in (10, 100, 1000, 10000) if t in grid.snapshots]
        panels = [(f"after {t} steps", rows.grid(grid.depths, grid.sw2[act],
                                                lambda n, t=t: _change_at(n, t)))
                  for t in steps]
        fig = _panels(act, grid, panels, change_norm([p[1] for p in panels]), "magma",
                      _CHANGE_LABEL, f"Figure {num}: NTK change after t gradient-descent "
                      f"steps, width M = {grid.width} (final kernel for networks stopped "
                      f"earlier)\n{base}")
    else:
        panels = [(f"M = {w}", by_width[w].grid(grid.depths, grid.sw2[act],
                                                lambda n: _change_at(n, "final")))
                  for w in widths]
        fig = _panels(act, grid, panels, change_norm([p[1] for p in panels]), "magma",
                      _CHANGE_LABEL, f"Figure {num}: NTK change at the end of training for "
                      f"several widths\n{base}")
    csv_path = write_csv(out_dir / f"fig{num}.csv", CSV_HEADER, csv_rows)
    return [save_figure(fig, out_dir / f"fig{num}.png"), csv_path]


def _make(num: int):  # type: ignore[no-untyped-def]
    def figure(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
               **_: object) -> list[Path]:
        return _figure(num, out, preset, options)

    figure.__name__ = f"figure{num}"
    figure.__doc__ = f"Figure {num} of the paper (see the module docstring)."
    return figure


figure3, figure4, figure8, figure9, figure10, figure11 = (_make(n) for n in (3, 4, 8, 9, 10, 11))
