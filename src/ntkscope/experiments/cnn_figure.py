"""Figure ``cnn``: does the paper's finding hold for convolutional networks? (issue 13, part 4)

A plain CNN (:func:`ntkscope.generic.zoo.plain_cnn`: ``depth`` 3x3 convolutions of
``channels`` channels, ReLU or tanh, global average pool, linear readout; weights
``N(0, sw2/fan_in)``, biases ``N(0, sb2)``, one output) on MNIST images downsampled by average
pooling to ``image_size`` pixels a side and scaled to a mean square of 1 per pixel (``|x|^2 =
H W``, CONVENTIONS section 2), over ``sw2`` (both phases around the MLP's edge of chaos,
:func:`ntkscope.theory.eoc`, drawn dashed for reference) and depth:

* (a) ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` at initialization, per probe image, from
  ``inits`` initializations ``torch.manual_seed(seed + i); plain_cnn(...)`` (CONVENTIONS
  section 9; :func:`ntkscope.generic.init_kernels`, ``output="diagonal"``), with the
  statistics of the MLP figures (:mod:`ntkscope.statistics`: bootstrap interval, tail ESS,
  ``R`` only a lower bound below the ESS threshold: hatched). Unlike an MLP's, a CNN's
  ``Theta0(x, x)`` depends on the image, not only on ``|x|``: the heatmap shows the mean of
  ``R`` over the ``probes`` images (hatched when any of them is a lower bound); the CSV has
  one row per image.
* (b) the relative NTK change ``|Theta_t - Theta_0|_F / |Theta_0|_F`` on the training inputs
  after full-batch gradient descent on the MSE loss with parity targets
  (:func:`ntkscope.generic.fit`, ``lr = lr_scale * 2S / lambda_max(Theta_0)``), stopped when
  the loss has fallen to ``target_loss`` (or after ``max_steps``: dotted cells), the mean over
  ``train_inits`` initializations. Blank: every initialization diverged. The level is
  absolute, a fraction of ``|y|^2/(2S) = 1/2`` (the zero function's loss on the ``+-1``
  targets), not a fraction of the initial loss: with ``sb2 > 0`` and the global pool the
  initial outputs share a large offset that one step removes (``L_0`` is 2-10 in the quick
  grid), so "half the initial loss" is often reached at step 1, before any target is fit.

Each ``(activation, sw2, depth)`` is one sweep cell of each kind (stored, resumable;
:data:`CELL_VERSION` in every config). Discussion with the measured numbers:
``docs/cnn.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntkscope.defaults import MIN_ESS
from ntkscope.experiments.common import SweepOptions, check_preset, run_cells
from ntkscope.experiments.ntk_variance_figures import _hatch_cells
from ntkscope.io import ensure_writable_dir
from ntkscope.plotting import change_norm, phase_heatmap, plt, ratio_norm, save_figure, write_csv
from ntkscope.sweep import CellOutput
from ntkscope.theory import eoc

KIND_INIT = "cnn_init_ratio"
KIND_TRAIN = "cnn_fit"
#: Part of every cell's config; bump it when a cell's summary changes meaning.
CELL_VERSION = 1
ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class CNNGrid:
    """A preset of the CNN figure.

    Attributes:
        sw2: per activation, the ``sw2`` values (x axis).
        depths: convolutional layers of the ``R`` panels; train_depths: of the training panels.
        sb2: bias variance; channels: of every convolution; image_size: pixels per side.
        probes, inits: images and initializations of ``R``.
        samples, train_inits: training set size ``S`` and initializations trained per cell.
        lr_scale, target_loss, max_steps: the :class:`ntkscope.generic.FitConfig`.
        dataset, seed: the images (``load_dataset(dataset, n, seed)``) and the first
            initialization's seed.
    """

    sw2: dict[str, tuple[float, ...]]
    depths: tuple[int, ...]
    train_depths: tuple[int, ...]
    sb2: float
    channels: int
    image_size: int
    probes: int
    inits: int
    samples: int
    train_inits: int
    lr_scale: float
    target_loss: float
    max_steps: int
    dataset: str = "mnist"
    seed: int = 0


def _lin(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in np.linspace(lo, hi, n))


# sw2 spans both phases around the MLP's EOC (tanh at sb2 = 1: 3.44; ReLU: 2), the ranges of
# the MLP figures 1, 3 and 4.
PRESETS: dict[str, CNNGrid] = {
    "quick": CNNGrid(
        sw2={"tanh": _lin(0.5, 6.0, 5), "relu": _lin(0.5, 4.0, 5)},
        depths=(1, 2, 4, 8), train_depths=(2, 4, 6), sb2=1.0, channels=16, image_size=7,
        probes=2, inits=100, samples=16, train_inits=1, lr_scale=0.5, target_loss=0.25,
        max_steps=300,
    ),
    "paper": CNNGrid(
        sw2={"tanh": _lin(0.5, 6.0, 12), "relu": _lin(0.5, 4.0, 8)},
        depths=(1, 2, 4, 6, 8, 12, 16), train_depths=(1, 2, 4, 8, 12), sb2=1.0, channels=32,
        image_size=14, probes=4, inits=200, samples=64, train_inits=2, lr_scale=0.5,
        target_loss=0.05, max_steps=1000,
    ),
}


# ---------------------------------------------------------------------------------------------
# Data and models


def cnn_images(dataset: str, samples: int, seed: int, image_size: int
               ) -> tuple[Any, np.ndarray, str]:
    """``samples`` images of ``load_dataset(dataset, samples, seed)`` as a float64 tensor
    ``(S, 1, image_size, image_size)`` (average pooling by ``28 // image_size``), each scaled
    to a mean square of 1 per pixel; the parity targets; ``"full"`` or ``"subset"`` (which
    files the images came from)."""
    import torch

    from ntkscope.datasets import load_dataset

    data = load_dataset(dataset, samples, seed=seed, target="parity")
    x = torch.as_tensor(data.X, dtype=torch.float64).reshape(-1, 1, 28, 28)
    if image_size != 28:
        x = torch.nn.functional.avg_pool2d(x, 28 // image_size)
    x = x / x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return x, data.y, "subset" if data.subset else "full"


def _factory(config: dict[str, Any]) -> Any:
    import functools

    from ntkscope.generic.zoo import plain_cnn

    return functools.partial(plain_cnn, config["activation"], config["depth"],
                             config["channels"], config["sigma_w2"], config["sigma_b2"],
                             in_channels=1, num_classes=1)


def _ratio_summary(t: np.ndarray, seed: int) -> dict[str, Any]:
    """``R`` of the draws ``t`` with the MLP figures' statistics: ratio, 95% BCa interval
    (``None`` for a lower bound), tail ESS, lower-bound flag, mean, std."""
    from ntkscope.statistics import (
        ratio_bootstrap_ci,
        ratio_is_lower_bound,
        second_moment_ratio,
        tail_ess,
    )

    ess = tail_ess(t)
    lower = ratio_is_lower_bound(ess, t.size)
    ci = None if lower else [float(v) for v in ratio_bootstrap_ci(t, seed=seed)]
    return {"ratio": second_moment_ratio(t), "ratio_ci": ci, "ess": ess,
            "ratio_is_lower_bound": lower, "mean": float(np.mean(t)),
            "std": float(np.std(t, ddof=1))}


def init_ratio_cell(config: dict[str, Any], device: str = "cpu") -> CellOutput:
    """Sweep cell: ``Theta0(x, x)`` of ``inits`` initializations on ``probes`` images and
    ``R`` per image. Summary ``{"images": [ratio summary per image]}``; samples the draws
    ``(inits, probes)``."""
    from ntkscope.generic import init_kernels
    from ntkscope.threads import torch_threads

    x, _, _ = cnn_images(config["dataset"], config["probes"], config["data_seed"],
                         config["image_size"])
    with torch_threads(1):
        theta = init_kernels(_factory(config), x.to(device), seed=config["seed"],
                             count=config["inits"], output="diagonal", device=device)
    t = theta.cpu().numpy()
    images = [_ratio_summary(t[:, j], config["seed"]) for j in range(t.shape[1])]
    return CellOutput(summary={"images": images}, samples=t)


def fit_cell(config: dict[str, Any], device: str = "cpu") -> CellOutput:
    """Sweep cell: ``train_inits`` initializations ``seed + i`` trained by
    :func:`ntkscope.generic.fit`. Summary ``{"runs": [FitResult.to_dict() without the curve and
    per-tensor changes]}``; samples the loss curves (NaN-padded rows)."""
    import torch

    from ntkscope.generic import FitConfig, fit, init_model
    from ntkscope.threads import torch_threads

    x, y, _ = cnn_images(config["dataset"], config["samples"], config["data_seed"],
                         config["image_size"])
    cfg = FitConfig(loss="mse", lr_scale=config["lr_scale"], max_steps=config["max_steps"],
                    loss_fraction=None, target_loss=config["target_loss"], curve_points=500)
    runs, curves = [], []
    factory = _factory(config)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch_threads(1), torch.random.fork_rng(devices=devices):
        for i in range(config["train_inits"]):
            res = fit(init_model(factory, config["seed"], i), x, y, cfg, device=device)
            summary = res.to_dict()
            for key in ("loss_steps", "losses", "weight_change_per_tensor", "seconds",
                        "kernel_seconds"):
                summary.pop(key)
            runs.append(summary)
            curves.append(np.asarray(res.losses, dtype=float))
    samples = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for i, c in enumerate(curves):
        samples[i, :len(c)] = c
    return CellOutput(summary={"runs": runs}, samples=samples)


# ---------------------------------------------------------------------------------------------
# Cells


def _common(grid: CNNGrid, act: str, sw2: float, depth: int, tag: str) -> dict[str, Any]:
    return {"activation": act, "sigma_w2": sw2, "sigma_b2": grid.sb2, "depth": depth,
            "channels": grid.channels, "image_size": grid.image_size, "dataset": grid.dataset,
            "data": tag, "data_seed": grid.seed, "seed": grid.seed, "version": CELL_VERSION}


def init_configs(grid: CNNGrid, tag: str) -> list[dict[str, Any]]:
    """The ``R`` cells (activation, sw2, depth order)."""
    return [{**_common(grid, a, s, d, tag), "probes": grid.probes, "inits": grid.inits}
            for a in ACTIVATIONS for s in grid.sw2[a] for d in grid.depths]


def fit_configs(grid: CNNGrid, tag: str) -> list[dict[str, Any]]:
    """The training cells (activation, sw2, depth order)."""
    return [{**_common(grid, a, s, d, tag), "samples": grid.samples,
             "train_inits": grid.train_inits, "lr_scale": grid.lr_scale,
             "target_loss": grid.target_loss, "max_steps": grid.max_steps}
            for a in ACTIVATIONS for s in grid.sw2[a] for d in grid.train_depths]


def data_tag(grid: CNNGrid) -> str:
    """Which files the images come from (part of the cell keys): ``mnist:full`` or
    ``mnist:subset``."""
    _, _, source = cnn_images(grid.dataset, 1, grid.seed, grid.image_size)
    return f"{grid.dataset}:{source}"


INIT_CSV_HEADER = ("activation", "sigma_w2", "sigma_b2", "depth", "channels", "image_size",
                   "image", "inits", "ratio", "ratio_ci_low", "ratio_ci_high", "mean", "std",
                   "ess", "ratio_is_lower_bound")
FIT_CSV_HEADER = ("activation", "sigma_w2", "sigma_b2", "depth", "channels", "image_size",
                  "samples", "init", "lr", "lr_max", "steps", "stop_reason", "reached",
                  "initial_loss", "final_loss", "min_loss", "ntk_change", "kernel_distance",
                  "weight_change")


def _blank(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


def _init_rows(configs: list[dict], summaries: list[dict | None]) -> list[tuple]:
    rows = []
    for c, s in zip(configs, summaries):
        if s is None:
            continue
        for j, im in enumerate(s["images"]):
            ci = im["ratio_ci"]
            rows.append((c["activation"], float(c["sigma_w2"]), float(c["sigma_b2"]),
                         c["depth"], c["channels"], c["image_size"], j, c["inits"],
                         float(im["ratio"]), "" if ci is None else float(ci[0]),
                         "" if ci is None else float(ci[1]), float(im["mean"]),
                         float(im["std"]), float(im["ess"]),
                         int(bool(im["ratio_is_lower_bound"]))))
    return rows


def _fit_rows(configs: list[dict], summaries: list[dict | None]) -> list[tuple]:
    rows = []
    for c, s in zip(configs, summaries):
        if s is None:
            continue
        for i, r in enumerate(s["runs"]):
            rows.append(tuple(_blank(v) for v in (
                c["activation"], float(c["sigma_w2"]), float(c["sigma_b2"]), c["depth"],
                c["channels"], c["image_size"], c["samples"], i, r["lr"], r["lr_max"],
                r["steps"], r["stop_reason"], int(bool(r["reached"])), r["initial_loss"],
                r["final_loss"], r["min_loss"], r["ntk_change"], r["kernel_distance"],
                r["weight_change"])))
    return rows


def _ratio_cell(s: dict | None) -> tuple[float, bool]:
    """Mean ``R`` over the probe images, and whether any is only a lower bound."""
    if s is None:
        return np.nan, False
    ims = s["images"]
    return (float(np.mean([im["ratio"] for im in ims])),
            any(im["ratio_is_lower_bound"] for im in ims))


def _change_cell(s: dict | None) -> tuple[float, bool]:
    """Mean NTK change over the runs that did not diverge, and whether any run stopped at
    ``max_steps`` before reaching the target loss; NaN if none is left."""
    if s is None:
        return np.nan, False
    ok = [r for r in s["runs"] if r["ntk_change"] is not None]
    if not ok:
        return np.nan, False
    return (float(np.mean([r["ntk_change"] for r in ok])),
            any(not r["reached"] for r in ok))


# ---------------------------------------------------------------------------------------------
# The figure


def _grid_of(configs: list[dict], summaries: list[dict | None], act: str,
             sw2s: tuple[float, ...], depths: tuple[int, ...], cell: Any
             ) -> tuple[np.ndarray, np.ndarray]:
    look = {(c["sigma_w2"], c["depth"]): cell(s) for c, s in zip(configs, summaries)
            if c["activation"] == act}
    vals = [[look.get((s, d), (np.nan, False)) for s in sw2s] for d in depths]
    return (np.array([[v for v, _ in row] for row in vals], dtype=float),
            np.array([[f for _, f in row] for row in vals], dtype=bool))


def figure_cnn(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
               **_: object) -> list[Path]:
    """Figure ``cnn``: ``R`` at initialization and the NTK change in training of plain CNNs
    over ``sw2`` and depth, tanh and ReLU (module docstring). Writes ``figcnn.png``,
    ``figcnn_init.csv`` and ``figcnn_training.csv``."""
    grid = PRESETS[check_preset(preset)]
    out_dir = ensure_writable_dir(out)
    options = options or SweepOptions()
    tag = data_tag(grid)
    icfg, fcfg = init_configs(grid, tag), fit_configs(grid, tag)
    isum = run_cells(KIND_INIT, icfg, init_ratio_cell, options)
    fsum = run_cells(KIND_TRAIN, fcfg, fit_cell, options)

    ratios = {a: _grid_of(icfg, isum, a, grid.sw2[a], grid.depths, _ratio_cell)
              for a in ACTIVATIONS}
    changes = {a: _grid_of(fcfg, fsum, a, grid.sw2[a], grid.train_depths, _change_cell)
               for a in ACTIVATIONS}
    rnorm = ratio_norm([v for v, _ in ratios.values()])
    cnorm = change_norm([v for v, _ in changes.values()])
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.4), constrained_layout=True)
    for k, act in enumerate(ACTIVATIONS):
        sw2s = grid.sw2[act]
        sw2_eoc = float(eoc(act, grid.sb2)[0])
        z, bound = ratios[act]
        m1 = phase_heatmap(axes[0, k], sw2s, grid.depths, z, norm=rnorm, cmap="magma",
                           sw2_eoc=sw2_eoc, title=f"a) {act}: R at initialization")
        _hatch_cells(axes[0, k], sw2s, grid.depths, bound)
        z, short = changes[act]
        m2 = phase_heatmap(axes[1, k], sw2s, grid.train_depths, z, norm=cnorm, cmap="viridis",
                           sw2_eoc=sw2_eoc,
                           title=f"b) {act}: NTK change at loss {grid.target_loss:g}")
        _hatch_cells(axes[1, k], sw2s, grid.train_depths, short, hatch="..")
    fig.colorbar(m1, ax=axes[0].tolist(),
                 label="$R = E[\\Theta_0^2]/E[\\Theta_0]^2$ (log scale)")
    fig.colorbar(m2, ax=axes[1].tolist(),
                 label="$\\|\\Theta_t - \\Theta_0\\|_F / \\|\\Theta_0\\|_F$ (log scale)")
    fig.suptitle(
        f"Plain CNN ({grid.channels} channels, 3x3 convs, global average pool), "
        f"$\\sigma_b^2$ = {grid.sb2:g}, MNIST {grid.image_size}x{grid.image_size} ({tag}); "
        f"{preset} preset\n(a) {grid.inits} inits, mean R over {grid.probes} images, hatched: "
        f"a lower bound (ESS < {MIN_ESS:g}); (b) S = {grid.samples}, MSE, lr = "
        f"{grid.lr_scale:g} lr_max, <= {grid.max_steps} steps, dotted: target not reached, "
        f"blank: diverged; dashed: the MLP's EOC", fontsize=10)
    init_csv = write_csv(out_dir / "figcnn_init.csv", INIT_CSV_HEADER, _init_rows(icfg, isum))
    fit_csv = write_csv(out_dir / "figcnn_training.csv", FIT_CSV_HEADER, _fit_rows(fcfg, fsum))
    return [save_figure(fig, out_dir / "figcnn.png"), init_csv, fit_csv]
