"""Output variance of trained networks over initializations: Monte Carlo (paper Section 5).

The theory lives in :mod:`ntkscope.theory.theorem` (Theorem 5.3, the expected kernels, the
kernel variance) and the linearized predictor (eq. 10) in :mod:`ntkscope.predict`; here are the
estimates from random initializations and the comparison of all of them:

* :func:`monte_carlo_variance`: ``N`` joint draws of ``(Theta0, f0)`` on training and held-out
  inputs from the exact low-rank sampler (:func:`ntkscope.sampling.sample_ntk`), eq. 10 per
  draw, the sample variance over draws per held-out point, averaged over held-out points (and
  over training sets), with a bootstrap interval over initializations::

      Var f_inf(x) ~= mean_{g, j} var_i f_inf^{g,i}(x_j)   (ddof = 1)

* :func:`trained_network_variance`: the same variance for finite networks trained to
  convergence by gradient descent (:func:`ntkscope.training.train`).
* :func:`variance_report`: Theorem 5.3 vs. the kernel variance vs. Monte Carlo on a data set
  (what ``ntkscope variance`` and the figure ``variance`` show).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkscope.defaults import CONFIDENCE
from ntkscope.predict import IllConditionedWarning, linearized_predictor
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.statistics import bootstrap_variance_ci
from ntkscope.theory.theorem import (
    KernelVariance,
    TheoremVariance,
    kernel_variance,
    theorem_variance,
)
from ntkscope.validation import (
    NtkscopeInputError,
    finite_array,
    input_matrix,
    positive,
    positive_int,
)

if TYPE_CHECKING:
    from ntkscope.networks import MLP

__all__ = [
    "MCVariance",
    "TrainedVariance",
    "VarianceReport",
    "bootstrap_variance_ci",
    "monte_carlo_variance",
    "trained_network_variance",
    "variance_report",
]

# Bootstrap resamples of the variance intervals (Monte Carlo and trained networks).
VARIANCE_RESAMPLES = 1000


# --------------------------------------------------------------------------------------------
# Monte Carlo


@dataclass
class MCVariance:
    """Monte Carlo ``Var f_inf(x)`` over initializations (and training sets).

    Attributes:
        variance: ``mean over training sets g and held-out points j of var_i f_inf^{g,i}(x_j)``
            (sample variance over the ``N`` initializations, ``ddof = 1``): ``E_D Var_w0``,
            the quantity of Theorem 5.3's proof.
        ci: percentile bootstrap interval for ``variance`` (initializations resampled with
            replacement within each training set, all held-out points together).
        per_point: ``(T,)`` the variance at each held-out point (mean over training sets).
        total_variance: variance over all ``(g, i)`` draws together (includes the variation
            of the mean predictor between training sets), mean over held-out points.
        condition_number: ``(G, N)`` condition numbers of the sampled ``Theta0(X)``.
        f_inf: ``(G, N, T)`` the predictions themselves.
    """

    variance: float
    ci: tuple[float, float]
    per_point: np.ndarray
    total_variance: float
    inits: int
    training_sets: int
    confidence: float
    condition_number: np.ndarray = field(repr=False)
    f_inf: np.ndarray = field(repr=False)

    @property
    def median_condition_number(self) -> float:
        """Median over all draws of ``cond Theta0(X)``."""
        return float(np.median(self.condition_number))


def monte_carlo_variance(
    net: NetworkSpec | MLP,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    inits: int,
    seed: int = 0,
    *,
    method: str = "lowrank",
    confidence: float = CONFIDENCE,
    resamples: int = VARIANCE_RESAMPLES,
    on_singular: str = "raise",
    device: Any = "cpu",
) -> MCVariance:
    """Monte Carlo ``Var f_inf(x)`` (eq. 10) on held-out inputs over ``inits`` initializations.

    For each training set ``g`` (``X_train`` of shape ``(S, M0)``, or ``(G, S, M0)`` with
    ``y_train`` ``(G, S)`` for ``G`` random training sets) ``(Theta0, f0)`` are drawn jointly on
    ``[X_train[g]; X_test]`` by :func:`ntkscope.sampling.sample_ntk` (initializations
    ``g N .. (g+1) N - 1`` of ``seed``, so draws are independent across sets) and eq. 10 is
    evaluated per draw (:func:`ntkscope.predict.linearized_predictor`); then
    ``variance = mean_{g,j} var_i f_inf^{g,i}(x_j)``. Ill-conditioning warnings are raised
    once per call; numerically singular ``Theta0(X)`` follow ``on_singular``. ``device``:
    where the kernels are sampled (``cpu`` or ``cuda``; eq. 10 is then solved in float64
    NumPy).

    Args:
        net: the network (:class:`ntkscope.NetworkSpec` or :class:`ntkscope.MLP`); its
            ``input_dim``, if set, must be ``M0``.

    Raises:
        NtkscopeInputError: bad inputs or settings (the message names the argument).
    """
    from ntkscope.sampling import sample_ntk

    spec = as_spec(net)
    Xtr = finite_array("X_train", X_train)
    if Xtr.ndim == 2:
        Xtr = Xtr[None]
    if Xtr.ndim != 3:
        raise NtkscopeInputError(f"X_train: expected (S, M0) or (G, S, M0), got {Xtr.shape}")
    G, S, m0 = Xtr.shape
    if S < 2:
        raise NtkscopeInputError(f"X_train: need at least 2 training inputs (S >= 2), got {S}")
    ytr = finite_array("y_train", y_train)
    ytr = np.broadcast_to(ytr, (G, S)) if ytr.shape in ((S,), (G, S)) else None
    if ytr is None:
        raise NtkscopeInputError(f"y_train: expected {S} targets per training set, got shape "
                                 f"{np.shape(y_train)}")
    Xte = input_matrix("X_test", X_test, minimum=1)
    if Xte.shape[1] != m0:
        raise NtkscopeInputError(f"X_test: input dimension {Xte.shape[1]} differs from "
                                 f"X_train's {m0}")
    for g in range(G):
        input_matrix("X_train", Xtr[g])
    spec = spec.with_input_dim(m0)
    N = positive_int("inits", inits, minimum=2)
    conf = float(positive("confidence", confidence))
    if conf >= 1.0:
        raise NtkscopeInputError(f"confidence: must be < 1, got {conf:g}")
    resamples = positive_int("resamples", resamples, minimum=10)
    seed = positive_int("seed", seed, minimum=0)
    T = Xte.shape[0]
    f_inf = np.empty((G, N, T))
    cond = np.empty((G, N))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IllConditionedWarning)
        for g in range(G):
            smp = sample_ntk(spec, np.vstack([Xtr[g], Xte]), N, seed=seed, method=method,
                             start=g * N, device=device)
            th, f = smp.theta_scaled, smp.f  # eq. 10 is invariant under Theta0 -> c Theta0
            pred = linearized_predictor(th[:, :S, :S], th[:, S:, :S], f[:, :S], f[:, S:],
                                        ytr[g], on_singular=on_singular)
            f_inf[g], cond[g] = pred.f_test, pred.condition_number
    ill = [w for w in caught if issubclass(w.category, IllConditionedWarning)]
    if ill:
        warnings.warn(str(ill[-1].message), IllConditionedWarning, stacklevel=2)
    for w in caught:
        if not issubclass(w.category, IllConditionedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    per_point = np.mean(np.var(f_inf, axis=1, ddof=1), axis=0)
    total = float(np.mean(np.var(f_inf.reshape(G * N, T), axis=0, ddof=1)))
    ci = bootstrap_variance_ci(f_inf, conf, resamples, seed)
    return MCVariance(float(np.mean(per_point)), ci, per_point, total, N, G, conf, cond, f_inf)


# --------------------------------------------------------------------------------------------
# Finite networks trained to convergence


@dataclass
class TrainedVariance:
    """Output variance over initializations of finite networks trained by gradient descent.

    Attributes:
        variance: ``mean_j var_i f^i(x_j)`` over the networks that did not diverge
            (``ddof = 1``); ``None`` when fewer than two survived.
        ci: percentile bootstrap interval over networks (``None`` likewise).
        converged: networks with final loss below ``1e-3``.
    """

    variance: float | None
    ci: tuple[float, float] | None
    converged: int

    def to_dict(self) -> dict[str, Any]:
        """``{"trained_variance", "trained_ci": [low, high], "trained_converged"}``."""
        return {"trained_variance": self.variance,
                "trained_ci": None if self.ci is None else [self.ci[0], self.ci[1]],
                "trained_converged": self.converged}


def trained_network_variance(
    net: NetworkSpec | MLP, X_train: Any, y_train: Any, X_test: Any, *, networks: int = 32,
    seed: int = 0, lr_scale: float = 0.5, max_steps: int = 20_000, device: str = "cpu",
) -> TrainedVariance:
    """Output variance of finite networks trained to convergence (paper Section 4 rules).

    ``networks`` networks (initializations ``0..networks-1`` of ``seed``) are trained by
    full-batch gradient descent (:func:`ntkscope.training.train`, ``lr = lr_scale * 2S /
    lambda_max(Theta0(X))``, the paper's early stopping, at most ``max_steps`` steps) on
    ``(X_train, y_train)``; the variance over networks (``ddof = 1``) of their outputs at each
    held-out input, ``mean_j var_i f^i(x_j)``, is averaged over the held-out inputs, with a
    percentile bootstrap interval over networks (:func:`bootstrap_variance_ci`). Diverged
    networks are left out.

    Args:
        net: the network (:class:`ntkscope.NetworkSpec` or :class:`ntkscope.MLP`); its
            ``input_dim``, if set, must be ``X_train.shape[1]``.

    Raises:
        NtkscopeInputError: bad inputs or settings (the message names the argument).
    """
    from ntkscope.networks import Params
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    Xtr = input_matrix("X_train", X_train, nonzero=False)
    Xte = input_matrix("X_test", X_test, minimum=1, nonzero=False)
    if Xte.shape[1] != Xtr.shape[1]:
        raise NtkscopeInputError(f"X_test: input dimension {Xte.shape[1]} differs from "
                                 f"X_train's {Xtr.shape[1]}")
    mlp = as_spec(net).with_input_dim(Xtr.shape[1]).mlp()
    run = train(mlp, Xtr, y_train, batch=networks, seed=seed,
                rate=LearningRate(lr_scale=lr_scale), stop=StoppingRule(max_steps=max_steps),
                record=Recording(()), execution=Execution(threads=1, device=device))
    keep = [i for i, r in enumerate(run.results) if r.stop_reason != "diverged"]
    converged = sum(r.stop_reason != "diverged" and r.final_loss < 1e-3 for r in run.results)
    if len(keep) < 2:
        return TrainedVariance(None, None, converged)
    params = Params([w[keep] for w in run.params.weights], [b[keep] for b in run.params.biases])
    f = mlp.apply(params, Xte).cpu().numpy()[None]
    var = float(np.mean(np.var(f[0], axis=0, ddof=1)))
    ci = bootstrap_variance_ci(f, CONFIDENCE, VARIANCE_RESAMPLES, seed)
    return TrainedVariance(var, ci, converged)


# --------------------------------------------------------------------------------------------
# The whole comparison (command line and figure)


@dataclass
class VarianceReport:
    """Theorem 5.3, the kernel variance and (optionally) Monte Carlo for one network.

    :meth:`to_dict` gives the keys of ``ntkscope variance --json``, :meth:`title` and
    :meth:`rows` its table. ``condition_number`` is the median over the sampled ``Theta0(X)``
    when Monte Carlo ran, else the condition number of the expected NTK ``E Theta0(X)``
    (``kernel.condition_number``, always present).
    """

    net: NetworkSpec
    theorem: TheoremVariance
    kernel: KernelVariance
    mc: MCVariance | None
    samples: int
    test_points: int
    dataset: str

    @property
    def input_dim(self) -> int:
        """``M0`` of the data (the network's ``input_dim``)."""
        return self.net.resolved_input_dim()

    @property
    def condition_number(self) -> float:
        return self.mc.median_condition_number if self.mc else self.kernel.condition_number

    def to_dict(self) -> dict[str, Any]:
        th = self.theorem
        return {
            "theorem_variance": th.variance,
            "A": th.A,
            "kappa_ratio": th.kappa_ratio,
            "qbar": th.qbar,
            "qbar_sr": th.qbar_sr,
            "mc_variance": None if self.mc is None else self.mc.variance,
            "mc_ci": None if self.mc is None else [self.mc.ci[0], self.mc.ci[1]],
            "condition_number": _finite_or_none(self.condition_number),
        }

    def title(self) -> str:
        return (f"Output variance after training (NTK theory, eq. 10): {self.net.describe()}, "
                f"S={self.samples}, {self.test_points} held-out {self.dataset} inputs "
                f"(M0={self.input_dim})")

    def rows(self) -> list[tuple[str, Any]]:
        th, mc = self.theorem, self.mc
        rows: list[tuple[str, Any]] = [
            ("Theorem 5.3 variance", th.variance),
            ("A = S/(k1/k2 + S - 1)", th.A),
            ("kappa1/kappa2 (data mean)", th.kappa_ratio),
            ("qbar = q^{L+1}", th.qbar),
            ("qbar_sr = q^{L+1}_sr (mean)", th.qbar_sr),
            ("theorem, E Theta ratio", th.variance_ntk_ratio),
            ("kernel variance (E Theta)", self.kernel.variance),
            ("cond E Theta0(X)", self.kernel.condition_number),
        ]
        if mc is not None:
            rows += [
                ("Monte Carlo variance", mc.variance),
                (f"{mc.confidence:.0%} bootstrap CI", f"[{mc.ci[0]:.6g}, {mc.ci[1]:.6g}]"),
                ("cond Theta0(X) (median)", mc.median_condition_number),
                ("inits x training sets", f"{mc.inits} x {mc.training_sets}"),
            ]
        return rows


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _data(dataset: str, samples: int, test_points: int, training_sets: int, seed: int,
          input_dim: int | None, data_dir: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``G`` training sets (train split, seeds ``seed + g``) and held-out inputs (test split)."""
    from ntkscope.datasets import load_dataset

    sets = [load_dataset(dataset, samples, seed + g, dim=input_dim, data_dir=data_dir)
            for g in range(training_sets)]
    test = load_dataset(dataset, test_points, seed, split="test", dim=input_dim,
                        data_dir=data_dir)
    return np.stack([d.X for d in sets]), np.stack([d.y for d in sets]), test.X


def variance_report(
    net: NetworkSpec | MLP,
    samples: int = 32,
    *,
    dataset: str = "gaussian",
    test_points: int = 16,
    monte_carlo: int | None = None,
    training_sets: int = 1,
    seed: int = 0,
    data_dir: Any = None,
    method: str = "lowrank",
    device: Any = "cpu",
) -> VarianceReport:
    """Theorem 5.3 vs. the kernel variance vs. Monte Carlo on a data set.

    Training inputs: ``samples`` class-balanced points of the train split (``training_sets``
    random sets, seeds ``seed, seed+1, ...``); held-out inputs: ``test_points`` of the test
    split. The theorem averages over the covariances of all these inputs together.
    ``monte_carlo`` (``N >= 2``) initializations per training set, or ``None`` for theory only.
    ``net``'s ``input_dim`` sets ``M0`` of the ``gaussian`` data (default 784; image sets need
    784 or none); ``device``: where the Monte Carlo kernels are sampled.

    Raises:
        NtkscopeInputError: bad settings, an unknown data set, or too few samples in it.
    """
    spec = as_spec(net)
    S = positive_int("samples", samples, minimum=2)
    T = positive_int("test_points", test_points)
    G = positive_int("training_sets", training_sets)
    seed = positive_int("seed", seed, minimum=0)
    if monte_carlo is not None:
        monte_carlo = positive_int("monte_carlo", monte_carlo, minimum=2)
    Xtr, ytr, Xte = _data(dataset, S, T, G, seed, spec.input_dim, data_dir)
    spec = spec.with_input_dim(Xtr.shape[-1])
    every = np.vstack([*Xtr, Xte])
    theorem = theorem_variance(spec, S, X=every, seed=seed)
    kernel = kernel_variance(spec, Xtr[0], Xte)
    mc = None
    if monte_carlo is not None:
        mc = monte_carlo_variance(spec, Xtr, ytr, Xte, monte_carlo, seed, method=method,
                                  on_singular="warn", device=device)
    return VarianceReport(spec, theorem, kernel, mc, S, T, dataset)
