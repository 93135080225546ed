"""Figure "variance": Theorem 5.3 against Monte Carlo, by depth (tests paper Section 5).

Not a figure of the paper: it checks Section 5's claims. For erf and ReLU in the ordered
phase, at the edge of chaos and in the chaotic phase (the ``(sw2, sb2)`` of the paper's
Figures 5-6, ``sb2 = 1``; erf's EOC from :func:`ntkscope.theory.eoc`), against depth ``L``:

* Theorem 5.3 ``(1 + A^2/S)(qbar - qbar_sr) + (A - 1)^2 qbar_sr`` (line),
* the kernel variance (eq. 10 with the deterministic ``E Theta0`` and the NNGP; dashed),
* Monte Carlo: eq. 10 for ``N`` joint draws of ``(Theta0, f0)`` of the exact low-rank sampler
  on MNIST training and held-out inputs, with 95% bootstrap intervals (points),
* paper preset: finite networks trained to convergence by full-batch gradient descent
  (:mod:`ntkscope.training`, smaller width; squares), and
* per activation, the condition number of ``Theta0(X)`` (median and quartiles over draws; and
  that of ``E Theta0(X)``).

One stored cell per ``(activation, sw2, sb2, depth)`` (:func:`variance_cell`, through
:func:`ntkscope.experiments.common.run_cells`), so reruns are cached. Writes
``figvariance.png`` and ``figvariance.csv``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntkscope.experiments.common import SweepOptions, check_preset, run_cells
from ntkscope.io import ensure_writable_dir
from ntkscope.plotting import plt, save_figure, write_csv
from ntkscope.sweep import CellOutput

KIND = "variance"
PHASES = ("ordered", "EOC", "chaotic")


@dataclass(frozen=True)
class VarianceGrid:
    """One preset: network sizes, data, Monte Carlo and (optional) training settings."""

    depths: tuple[int, ...]
    width: int
    samples: int
    test_points: int
    inits: int
    training_sets: int
    dataset: str = "mnist"
    train_width: int = 0  # 0: no trained networks
    train_inits: int = 0
    train_max_steps: int = 20_000


PRESETS_GRID = {
    "quick": VarianceGrid((1, 2, 4, 8, 12, 16), 256, 32, 16, 64, 1),
    "paper": VarianceGrid((1, 2, 3, 4, 6, 8, 10, 13, 16, 20), 512, 64, 32, 256, 2,
                          train_width=128, train_inits=32),
}


def init_points() -> dict[str, tuple[tuple[str, float, float], ...]]:
    """``activation -> ((phase, sw2, sb2), ...)`` with ``sb2 = 1``."""
    from ntkscope.theory import eoc

    erf_eoc = round(float(eoc("erf", 1.0)[0]), 6)
    return {"erf": (("ordered", 1.0, 1.0), ("EOC", erf_eoc, 1.0), ("chaotic", 4.0, 1.0)),
            "relu": (("ordered", 1.0, 1.0), ("EOC", 2.0, 1.0), ("chaotic", 3.0, 1.0))}


CSV_HEADER = ("activation", "phase", "sigma_w2", "sigma_b2", "depth", "width", "samples",
              "test_points", "inits", "training_sets", "theorem_variance", "A", "kappa_ratio",
              "qbar", "qbar_sr", "theorem_ntk_ratio_variance", "kernel_variance",
              "mc_variance", "mc_ci_low", "mc_ci_high", "mc_total_variance", "cond_median",
              "cond_q25", "cond_q75", "cond_expected", "train_width", "trained_variance",
              "trained_ci_low", "trained_ci_high", "trained_converged")


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def variance_cell(config: dict[str, Any], device: str = "cpu") -> CellOutput:
    """Sweep cell: theorem, kernel and Monte Carlo variance (and trained networks, if asked);
    samples: the Monte Carlo ``f_inf`` of shape ``(G, N, T)``."""
    from ntkscope.generalization import IllConditionedWarning, variance_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)  # the condition number is kept
        rep = variance_report(
            config["activation"], config["sigma_w2"], config["sigma_b2"], config["depth"],
            config["width"], config["samples"], dataset=config["dataset"],
            test_points=config["test_points"], monte_carlo=config["inits"],
            training_sets=config["training_sets"], seed=config["seed"], device=device,
        )
    th, mc = rep.theorem, rep.mc
    assert mc is not None
    q25, q50, q75 = np.quantile(mc.condition_number, [0.25, 0.5, 0.75])
    summary: dict[str, Any] = {
        **rep.to_dict(),
        "theorem_ntk_ratio_variance": th.variance_ntk_ratio,
        "kernel_variance": rep.kernel.variance,
        "mc_total_variance": mc.total_variance,
        "cond_quartiles": [_num(q25), _num(q50), _num(q75)],
        "cond_expected": _num(rep.kernel.condition_number),
    }
    if config.get("train_inits"):
        summary.update(trained_variance(config, device))
    return CellOutput(summary=summary, samples=mc.f_inf)


def trained_variance(config: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The trained-networks part of a cell: :func:`trained_network_variance` on the cell's
    first training set (train split, ``seed``) and held-out inputs (test split)."""
    from ntkscope.datasets import load_dataset

    train_set = load_dataset(config["dataset"], config["samples"], config["seed"])
    test = load_dataset(config["dataset"], config["test_points"], config["seed"], split="test")
    return trained_network_variance(
        config["activation"], config["sigma_w2"], config["sigma_b2"], config["depth"],
        config["train_width"], train_set.X, train_set.y, test.X,
        networks=config["train_inits"], seed=config["seed"] + 1,
        max_steps=config["train_max_steps"], device=device)


def trained_network_variance(
    activation: str, sigma_w2: float, sigma_b2: float, depth: int, width: int,
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, *, networks: int = 32,
    seed: int = 0, lr_scale: float = 0.5, max_steps: int = 20_000, device: str = "cpu",
) -> dict[str, Any]:
    """Output variance of finite networks trained to convergence (paper Section 4 rules).

    ``networks`` networks (initializations ``0..networks-1`` of ``seed``) are trained by
    full-batch gradient descent (:func:`ntkscope.training.train`, ``lr = lr_scale * 2S /
    lambda_max(Theta0(X))``, the paper's early stopping, at most ``max_steps`` steps) on
    ``(X_train, y_train)``; the variance over networks (``ddof = 1``) of their outputs at each
    held-out input is averaged over the held-out inputs, with a percentile bootstrap interval
    over networks (:func:`ntkscope.generalization.bootstrap_variance_ci`). Diverged networks
    are left out.

    Returns:
        ``{"trained_variance", "trained_ci": [low, high], "trained_converged"}`` (the number of
        networks with final loss below ``1e-3``); ``None`` values when fewer than two networks
        survived.
    """
    from ntkscope.generalization import bootstrap_variance_ci
    from ntkscope.networks import MLP, Params
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    net = MLP(np.shape(X_train)[1], width, depth, activation, sigma_w2, sigma_b2)
    run = train(net, X_train, y_train, batch=networks, seed=seed,
                rate=LearningRate(lr_scale=lr_scale), stop=StoppingRule(max_steps=max_steps),
                record=Recording(()), execution=Execution(threads=1, device=device))
    keep = [i for i, r in enumerate(run.results) if r.stop_reason != "diverged"]
    converged = sum(r.stop_reason != "diverged" and r.final_loss < 1e-3 for r in run.results)
    if len(keep) < 2:
        return {"trained_variance": None, "trained_ci": None, "trained_converged": converged}
    params = Params([w[keep] for w in run.params.weights], [b[keep] for b in run.params.biases])
    f = net.apply(params, np.asarray(X_test, dtype=np.float64)).cpu().numpy()[None]
    var = float(np.mean(np.var(f[0], axis=0, ddof=1)))
    lo, hi = bootstrap_variance_ci(f, 0.95, 1000, seed)
    return {"trained_variance": var, "trained_ci": [lo, hi], "trained_converged": converged}


def figure_configs(preset: str) -> list[dict[str, Any]]:
    """One config per ``(activation, phase, depth)`` of the preset."""
    g = PRESETS_GRID[check_preset(preset)]
    configs = []
    for act, points in init_points().items():
        for _phase, sw2, sb2 in points:
            for d in g.depths:
                cfg: dict[str, Any] = {
                    "activation": act, "sigma_w2": sw2, "sigma_b2": sb2, "depth": d,
                    "width": g.width, "samples": g.samples, "test_points": g.test_points,
                    "inits": g.inits, "training_sets": g.training_sets, "dataset": g.dataset,
                    "seed": 0}
                if g.train_inits:
                    cfg.update(train_width=g.train_width, train_inits=g.train_inits,
                               train_max_steps=g.train_max_steps)
                configs.append(cfg)
    return configs


def _phase(cfg: dict[str, Any]) -> str:
    for phase, sw2, sb2 in init_points()[cfg["activation"]]:
        if (sw2, sb2) == (cfg["sigma_w2"], cfg["sigma_b2"]):
            return phase
    return "?"


def _cell(v: Any) -> Any:
    return "" if v is None else v


def _csv_rows(configs: list[dict], summaries: list[dict | None]) -> list[tuple]:
    rows = []
    for c, s in zip(configs, summaries):
        if s is None:
            continue
        q = s["cond_quartiles"]
        tci = s.get("trained_ci") or [None, None]
        rows.append((c["activation"], _phase(c), float(c["sigma_w2"]), float(c["sigma_b2"]),
                     c["depth"], c["width"], c["samples"], c["test_points"], c["inits"],
                     c["training_sets"], s["theorem_variance"], s["A"], s["kappa_ratio"],
                     s["qbar"], s["qbar_sr"], s["theorem_ntk_ratio_variance"],
                     s["kernel_variance"], s["mc_variance"], s["mc_ci"][0], s["mc_ci"][1],
                     s["mc_total_variance"], _cell(q[1]), _cell(q[0]), _cell(q[2]),
                     _cell(s["cond_expected"]), c.get("train_width", ""),
                     _cell(s.get("trained_variance")), _cell(tci[0]), _cell(tci[1]),
                     _cell(s.get("trained_converged"))))
    return rows


def _series(configs: list[dict], summaries: list[dict | None], act: str, sw2: float
            ) -> list[tuple[int, dict]]:
    return [(c["depth"], s) for c, s in zip(configs, summaries)
            if s is not None and c["activation"] == act and c["sigma_w2"] == sw2]


def _arr(pts: list[tuple[int, dict]], get: Any) -> np.ndarray:
    return np.array([np.nan if get(s) is None else float(get(s)) for _, s in pts])


def _draw(configs: list[dict], summaries: list[dict | None], title: str) -> plt.Figure:
    points = init_points()
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), constrained_layout=True)
    colors = {"ordered": "tab:blue", "EOC": "tab:green", "chaotic": "tab:red"}
    for row, (act, inits) in enumerate(points.items()):
        cax = axes[row, 3]
        for col, (phase, sw2, sb2) in enumerate(inits):
            ax = axes[row, col]
            pts = _series(configs, summaries, act, sw2)
            if not pts:
                continue
            d = np.array([p[0] for p in pts], dtype=float)
            ax.plot(d, _arr(pts, lambda s: s["theorem_variance"]), "k-", lw=1.5,
                    label="Theorem 5.3")
            ax.plot(d, _arr(pts, lambda s: s["kernel_variance"]), "k--", lw=1.2,
                    label="eq. 10, E$\\Theta_0$ (kernel)")
            mc = _arr(pts, lambda s: s["mc_variance"])
            lo, hi = _arr(pts, lambda s: s["mc_ci"][0]), _arr(pts, lambda s: s["mc_ci"][1])
            ax.errorbar(d, mc, yerr=[mc - lo, hi - mc], fmt="o", color=colors[phase], ms=4,
                        capsize=2, label=f"Monte Carlo, M = {configs[0]['width']}")
            tv = _arr(pts, lambda s: s.get("trained_variance"))
            if np.any(np.isfinite(tv)):
                tlo = _arr(pts, lambda s: (s.get("trained_ci") or [None])[0])
                thi = _arr(pts, lambda s: (s.get("trained_ci") or [None, None])[1])
                ax.errorbar(d, tv, yerr=[tv - tlo, thi - tv], fmt="s", mfc="none",
                            color="tab:purple", ms=5, capsize=2,
                            label=f"trained, M = {configs[0].get('train_width')}")
            ax.set_yscale("log")
            ax.set_title(f"{act}, {phase}: $(\\sigma_w^2, \\sigma_b^2) = ({sw2:g}, {sb2:g})$",
                         fontsize=10)
            ax.set_xlabel("depth $L$")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
            q = [_arr(pts, lambda s, k=k: s["cond_quartiles"][k]) for k in range(3)]
            cax.plot(d, q[1], "o-", color=colors[phase], ms=3, label=f"{phase}: median")
            cax.fill_between(d, q[0], q[2], color=colors[phase], alpha=0.2, lw=0)
            cax.plot(d, _arr(pts, lambda s: s["cond_expected"]), ":", color=colors[phase],
                     label=f"{phase}: E$\\Theta_0$")
        axes[row, 0].set_ylabel("Var $f_\\infty(x)$ over initializations")
        cax.set_yscale("log")
        cax.set_title(f"{act}: condition number of $\\Theta_0(X)$", fontsize=10)
        cax.set_xlabel("depth $L$")
        cax.grid(alpha=0.3, which="both")
        cax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def figure_variance(out: str | Path, preset: str = "quick", options: SweepOptions | None = None,
                    **_: object) -> list[Path]:
    """Theorem 5.3 vs Monte Carlo (and trained networks) against depth; writes
    ``figvariance.png`` and ``figvariance.csv``."""
    out_dir = ensure_writable_dir(out)
    configs = figure_configs(preset)
    summaries = run_cells(KIND, configs, variance_cell, options or SweepOptions())
    g = PRESETS_GRID[preset]
    title = (f"Output variance after training (NTK theory, Section 5): {preset} preset, "
             f"{g.dataset}, S = {g.samples}, {g.test_points} held-out inputs, {g.inits} inits "
             f"x {g.training_sets} training set(s), 95% bootstrap intervals")
    fig = _draw(configs, summaries, title)
    csv_path = write_csv(out_dir / "figvariance.csv", CSV_HEADER, _csv_rows(configs, summaries))
    return [save_figure(fig, out_dir / "figvariance.png"), csv_path]
