"""NTK theory of generalization: the fully trained linearized network (paper Section 5).

Linearized predictor (paper eq. 10; CONVENTIONS section 8). Under gradient flow
``df/dt = -(1/S) Theta0 (f - Y)`` (paper eq. 2) with a constant NTK ``Theta0`` the outputs on
the training inputs ``X`` (``S`` of them) and on any input ``x`` are, with the eigendecomposition
``Theta0(X) = V diag(lambda) V^T``::

    f_t(X) = Y + V exp(-t lambda / S) V^T (f0(X) - Y)
    f_t(x) = f0(x) - Theta0(x, X) V diag(g_t(lambda)) V^T (f0(X) - Y),
    g_t(lambda) = (1 - exp(-t lambda / S)) / lambda                  (-> t/S as lambda -> 0)

and at ``t = inf`` (``g = 1/lambda``) this is eq. 10::

    f_inf(x) = Theta0(x,X) Theta0(X)^-1 Y + f0(x) - Theta0(x,X) Theta0(X)^-1 f0(X).

Theorem 5.3 (data-independent variance over initializations, well-conditioned NTK)::

    Var f_inf(x) ~= (1 + A^2/S) (qbar - qbar_sr) + (A - 1)^2 qbar_sr,
    A = S / (kappa1/kappa2 + S - 1)

with ``qbar = q^{L+1}`` (output variance at initialization), ``qbar_sr = q^{L+1}_sr`` and
``kappa1/kappa2`` (Lemma 5.2, all width ratios 1) averaged over the input covariances
``c0(x_s, x_r) = x_s.x_r / M0``, ``s != r``, of the data: ``kappa1 / mean(kappa2)``,
``mean(q_sr)`` (:func:`theorem_variance`).

Between the two sits the *kernel variance* (:func:`kernel_variance`): the exact variance of
eq. 10 over initializations when ``Theta0`` is replaced by its expectation ``E Theta0`` at the
given widths (deterministic NTK, CONVENTIONS section 4) and ``f0`` is the NNGP
``K(x, x') = q^{L+1}_sr(x, x')``::

    Var f_inf(x) = K(x,x) - 2 a(x)^T K(X,x) + a(x)^T K(X) a(x),
    a(x) = E Theta0(X)^-1 E Theta0(X,x)

It keeps the data-dependent covariances that Theorem 5.3 averages out (paper: the ordered phase).

Monte Carlo (:func:`monte_carlo_variance`): ``N`` joint draws of ``(Theta0, f0)`` on training and
held-out inputs from the exact low-rank sampler (:func:`ntkscope.sampling.sample_ntk`), eq. 10 per
draw, the sample variance over draws per held-out point, averaged over held-out points (and over
training sets), with a bootstrap interval over initializations.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.spec import NetworkSpec
from ntkscope.statistics import bootstrap_variance_ci
from ntkscope.validation import NtkscopeInputError, finite_array, positive, positive_int

__all__ = [
    "IllConditionedWarning",
    "KernelVariance",
    "LinearizedPrediction",
    "MCVariance",
    "TheoremVariance",
    "VarianceReport",
    "bootstrap_variance_ci",
    "data_covariances",
    "expected_kernels",
    "kernel_variance",
    "linearized_predictor",
    "monte_carlo_variance",
    "theorem_formula",
    "theorem_variance",
    "variance_report",
]

# Condition numbers above this lose more than half of float64's digits in eq. 10: warn.
ILL_CONDITIONED = 1e8
# Chebyshev nodes in c0 for activations computed by quadrature (see _pair_kernels).
INTERP_NODES = 24
# Eigenvalues below SINGULAR_RTOL * S * lambda_max count as zero (numerically singular).
SINGULAR_RTOL = float(np.finfo(np.float64).eps)


class IllConditionedWarning(RuntimeWarning):
    """``Theta0(X)`` is ill-conditioned: eq. 10 loses about ``log10(cond)`` digits."""


# --------------------------------------------------------------------------------------------
# Eq. 10 and gradient flow


@dataclass
class LinearizedPrediction:
    """Outputs of the linearized network after training time ``t`` (``inf``: eq. 10).

    Attributes:
        f_test: ``(..., T)`` outputs ``f_t(x)`` on the held-out inputs.
        f_train: ``(..., S)`` outputs ``f_t(X)`` on the training inputs (``= Y`` at ``t = inf``).
        condition_number: ``(...)`` ``lambda_max / lambda_min`` of each ``Theta0(X)``
            (``inf`` when ``lambda_min <= 0``).
        t: the training time.
    """

    f_test: np.ndarray
    f_train: np.ndarray
    condition_number: np.ndarray
    t: float


def _array(name: str, value: Any) -> np.ndarray:
    """``finite_array`` that also takes empty arrays (checked by the caller)."""
    try:
        arr = np.asarray(value, dtype=float) if not isinstance(value, np.ndarray) else value
    except (TypeError, ValueError):  # finite_array names the argument
        return finite_array(name, value)
    return finite_array(name, value) if arr.size else arr.astype(float)


def _square_batch(name: str, value: Any) -> np.ndarray:
    arr = _array(name, value)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise NtkscopeInputError(f"{name}: expected (..., S, S) kernel matrices, got {arr.shape}")
    if arr.shape[-1] < 1:
        raise NtkscopeInputError(f"{name}: empty training set (S = 0)")
    return arr


def _time(t: Any) -> float:
    """A training time ``t >= 0`` (``math.inf`` allowed)."""
    try:
        tt = float(t)
    except (TypeError, ValueError):
        raise NtkscopeInputError(f"t: expected a number >= 0 or inf, got {t!r}") from None
    if math.isnan(tt) or tt < 0:
        raise NtkscopeInputError(f"t: must be >= 0 (or inf), got {t!r}")
    return tt


def _condition(lam: np.ndarray) -> np.ndarray:
    """``lambda_max / lambda_min`` over the last axis (``inf`` for ``lambda_min <= 0``)."""
    top, low = lam[..., -1], lam[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(low > 0, top / np.where(low > 0, low, 1.0), np.inf)


def linearized_predictor(
    theta_train: Any,
    theta_cross: Any,
    f0_train: Any,
    f0_test: Any,
    y: Any,
    t: float = math.inf,
    *,
    on_singular: str = "raise",
) -> LinearizedPrediction:
    """Eq. 10 (``t = inf``) or gradient flow for time ``t``, batched over initializations.

    Solves with the symmetric eigendecomposition ``Theta0(X) = V diag(lambda) V^T`` (see the
    module docstring for ``f_t``): ``f_inf(x) = f0(x) - Theta0(x,X) V diag(1/lambda) V^T
    (f0(X) - Y)``. Eq. 10 is invariant under ``Theta0 -> c Theta0``, so
    :attr:`ntkscope.sampling.NTKSamples.theta_scaled` may be passed as it is (``t = inf`` only).

    Args:
        theta_train: ``(..., S, S)`` ``Theta0(X)`` (symmetric positive semi-definite).
        theta_cross: ``(..., T, S)`` ``Theta0(x_j, x_s)`` for held-out inputs ``x_j``.
        f0_train: ``(..., S)`` ``f0(X)``; f0_test: ``(..., T)`` ``f0(x)``.
        y: ``(S,)`` or ``(..., S)`` targets ``Y``.
        t: training time (``>= 0``; ``math.inf`` for eq. 10).
        on_singular: at ``t = inf`` with a numerically singular ``Theta0(X)`` (``lambda_min <=
            S eps lambda_max``): ``"raise"`` (default) an :class:`NtkscopeInputError`, or
            ``"warn"`` and use the pseudo-inverse (minimum-norm interpolant). A condition number
            above ``1e8`` always warns (:class:`IllConditionedWarning`).

    Returns:
        :class:`LinearizedPrediction` (``condition_number`` per initialization).
    """
    th = _square_batch("theta_train", theta_train)
    S = th.shape[-1]
    batch = th.shape[:-2]
    cross = finite_array("theta_cross", theta_cross)
    if cross.ndim < 2 or cross.shape[-1] != S or cross.shape[:-2] != batch:
        raise NtkscopeInputError(
            f"theta_cross: expected shape (..., T, {S}) with batch {batch}, got {cross.shape}")
    T = cross.shape[-2]
    f0x = finite_array("f0_train", f0_train)
    f0t = finite_array("f0_test", f0_test)
    if f0x.shape != (*batch, S):
        raise NtkscopeInputError(f"f0_train: expected shape {(*batch, S)}, got {f0x.shape}")
    if f0t.shape != (*batch, T):
        raise NtkscopeInputError(f"f0_test: expected shape {(*batch, T)}, got {f0t.shape}")
    ya = finite_array("y", y)
    if ya.shape[-1:] != (S,):
        raise NtkscopeInputError(f"y: expected {S} targets (one per training input), got "
                                 f"shape {ya.shape}")
    tt = _time(t)
    if on_singular not in ("raise", "warn"):
        raise NtkscopeInputError(f"on_singular: expected 'raise' or 'warn', got {on_singular!r}")

    lam, V = np.linalg.eigh(0.5 * (th + np.swapaxes(th, -1, -2)))
    cond = _condition(lam)
    tiny = lam <= SINGULAR_RTOL * S * np.abs(lam[..., -1:])
    r0 = np.einsum("...sk,...s->...k", V, f0x - ya)  # V^T (f0(X) - Y)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if math.isinf(tt):
            if np.any(tiny):
                worst = float(np.max(cond))
                msg = (f"Theta0(X) is numerically singular (condition number {worst:.3g}); "
                       "eq. 10 needs Theta0(X)^-1: use fewer or distinct training inputs, or a "
                       "better-conditioned initialization (paper Section 5)")
                if on_singular == "raise":
                    raise NtkscopeInputError("theta_train: " + msg)
                warnings.warn(msg + "; using the pseudo-inverse", IllConditionedWarning,
                              stacklevel=2)
            g = np.where(tiny, 0.0, 1.0 / np.where(tiny, 1.0, lam))
            decay = np.where(tiny, 1.0, 0.0)
        else:
            x = tt * np.maximum(lam, 0.0) / S
            g = np.where(lam > 0, -np.expm1(-x) / np.where(lam > 0, lam, 1.0), tt / S)
            decay = np.exp(-x)
    regular = cond[~np.any(tiny, axis=-1)]  # the singular ones were handled above
    if math.isinf(tt) and regular.size and float(np.max(regular)) > ILL_CONDITIONED:
        worst = float(np.max(regular))
        warnings.warn(f"Theta0(X) is ill-conditioned (condition number up to {worst:.3g}): "
                      f"eq. 10 loses about {math.log10(worst):.0f} digits",
                      IllConditionedWarning, stacklevel=2)
    coef = np.einsum("...sk,...k->...s", V, g * r0)  # Theta^-1-like (f0(X) - Y)
    f_test = f0t - np.einsum("...ts,...s->...t", cross, coef)
    f_train = ya + np.einsum("...sk,...k->...s", V, decay * r0)
    return LinearizedPrediction(f_test, np.broadcast_to(f_train, (*batch, S)).copy(), cond, tt)


# --------------------------------------------------------------------------------------------
# Theory: data covariances, Theorem 5.3, kernel variance


def _inputs(name: str, X: Any, minimum: int = 2) -> np.ndarray:
    try:
        arr = _array(name, X)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, NtkscopeInputError):
            raise
        raise NtkscopeInputError(f"{name}: expected an array of numbers") from None
    if arr.ndim != 2:
        raise NtkscopeInputError(f"{name}: expected a 2-D array (samples x input_dim), got "
                                 f"shape {arr.shape}")
    if arr.shape[0] < minimum:
        what = "empty data set" if arr.shape[0] == 0 else f"only {arr.shape[0]} input(s)"
        raise NtkscopeInputError(f"{name}: {what}; need at least {minimum}")
    if arr.shape[1] < 1:
        raise NtkscopeInputError(f"{name}: inputs have dimension 0")
    if np.any(np.sum(arr * arr, axis=1) == 0):
        raise NtkscopeInputError(f"{name}: an input is the zero vector (q0 = 0)")
    return arr


def data_covariances(
    X: Any, max_pairs: int = 4096, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-input ``q0 = |x|^2/M0`` and the covariances of distinct pairs of a data set.

    Returns ``(q0, c0, q0_a, q0_b)``: ``q0`` for every row of ``X`` and, for the pairs
    ``s < r`` (all of them, or ``max_pairs`` drawn uniformly without replacement when there are
    more), ``c0 = x_s.x_r / M0`` with the two norms ``q0_a = q0(x_s)``, ``q0_b = q0(x_r)``.
    """
    Xa = _inputs("X", X)
    max_pairs = positive_int("max_pairs", max_pairs)
    n, m0 = Xa.shape
    q0 = np.einsum("sm,sm->s", Xa, Xa) / m0
    total = n * (n - 1) // 2
    if total <= max_pairs:
        s, r = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, n, 0xC0]))
        flat = rng.choice(total, size=max_pairs, replace=False)
        s, r = _pair_from_index(flat, n)
    c0 = np.einsum("pm,pm->p", Xa[s], Xa[r]) / m0
    return q0, c0, q0[s], q0[r]


def _pair_from_index(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major index ``k`` of the strict upper triangle of an ``n x n`` matrix -> ``(s, r)``."""
    s = (n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(int)
    r = (k + s + 1 - n * (n - 1) // 2 + (n - s) * ((n - s) - 1) // 2).astype(int)
    return s, r


@dataclass
class _PairKernels:
    """Two-input mean-field quantities for a batch of pairs (CONVENTIONS section 4)."""

    kappa2: np.ndarray
    output_cov: np.ndarray
    ntk_mean_offdiag: np.ndarray


def _pair_kernels(activation: Any, sigma_w2: float, sigma_b2: float, depth: int, width: Any,
                  input_dim: int | None, qa: np.ndarray, c: np.ndarray, qb: np.ndarray
                  ) -> _PairKernels:
    """``kappa2``, ``q^{L+1}_sr`` and ``E Theta0(x, x')`` for every pair ``(qa, c, qb)``.

    One vectorized :func:`propagate` call, except for activations without closed forms
    (quadrature, ~0.1 s per pair at depth 4) on many pairs of equal-norm inputs: there the
    three quantities, smooth in ``c0``, are computed at ``INTERP_NODES`` Chebyshev points of
    ``[min c0, max c0]`` and interpolated; three pairs are then checked directly, and any
    relative error above ``1e-7`` falls back to the direct computation.
    """
    from ntkscope.activations import get_activation
    from ntkscope.theory import propagate

    def direct(qa_: np.ndarray, c_: np.ndarray, qb_: np.ndarray) -> _PairKernels:
        mf = propagate(activation, sigma_w2, sigma_b2, depth, width, input_dim=input_dim,
                       q0=qa_, c0=c_, q0_b=qb_, keep_layers=False)
        return _PairKernels(*(np.broadcast_to(v, c_.shape) for v in
                              (mf.kappa2, mf.output_cov, mf.ntk_mean_offdiag)))

    act = get_activation(activation)
    qa, c, qb = np.broadcast_arrays(qa, c, qb)
    q_all = np.concatenate([qa, qb])
    equal_norms = float(np.ptp(q_all)) <= 1e-12 * float(np.max(q_all))
    lo, hi = float(np.min(c)), float(np.max(c))
    if act.closed_form is not None or not equal_norms or c.size <= 3 * INTERP_NODES or hi <= lo:
        return direct(qa, c, qb)
    k = np.arange(INTERP_NODES)
    nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * (k + 0.5) / INTERP_NODES)
    q = np.full_like(nodes, float(np.mean(q_all)))
    at_nodes = direct(q, nodes, q)
    x = (2.0 * c - (lo + hi)) / (hi - lo)
    xn = (2.0 * nodes - (lo + hi)) / (hi - lo)

    def interp(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        coef = np.polynomial.chebyshev.chebfit(xn, values, INTERP_NODES - 1)
        return np.polynomial.chebyshev.chebval(where, coef)

    out = _PairKernels(*(interp(getattr(at_nodes, n), x) for n in
                         ("kappa2", "output_cov", "ntk_mean_offdiag")))
    check = np.random.default_rng(c.size).choice(c.size, 3, replace=False)
    exact = direct(qa[check], c[check], qb[check])
    for name in ("kappa2", "output_cov", "ntk_mean_offdiag"):
        e, a = getattr(exact, name), getattr(out, name)[check]
        if np.any(np.abs(a - e) > 1e-7 * np.maximum(np.abs(e), 1e-300)):
            return direct(qa, c, qb)
    return out


def theorem_formula(kappa_ratio: Any, qbar: Any, qbar_sr: Any, samples: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 5.3: ``(A, Var)`` with ``A = S / (kappa1/kappa2 + S - 1)`` and
    ``Var = (1 + A^2/S)(qbar - qbar_sr) + (A - 1)^2 qbar_sr`` (broadcasts over arrays)."""
    S = positive_int("samples", samples, minimum=2)
    ratio = finite_array("kappa_ratio", kappa_ratio)
    A = S / (ratio + S - 1.0)
    q, qsr = finite_array("qbar", qbar), finite_array("qbar_sr", qbar_sr)
    return A, (1.0 + A * A / S) * (q - qsr) + (A - 1.0) ** 2 * qsr


@dataclass
class TheoremVariance:
    """Theorem 5.3 for one network and data set (CONVENTIONS section 8).

    Attributes:
        variance: ``(1 + A^2/S)(qbar - qbar_sr) + (A - 1)^2 qbar_sr``.
        A: ``S / (kappa1/kappa2 + S - 1)``.
        kappa1: mean of ``kappa1(x)`` over the inputs (data-independent for ``q0 = 1``).
        kappa2: mean of ``kappa2(x_s, x_r)`` over the pairs ``s != r``.
        kappa_ratio: ``kappa1 / kappa2`` (the data-averaged means).
        qbar, qbar_sr: mean ``q^{L+1}(x)`` and mean ``q^{L+1}_sr(x_s, x_r)``.
        ntk_ratio: ``E Theta0(x,x) / E Theta0(x,x')`` (means) at the given finite widths
            (input dimension and ``+1`` bias terms included; ``None`` without ``width``).
        variance_ntk_ratio: the theorem with ``ntk_ratio`` in place of ``kappa1/kappa2``.
        samples: ``S``; pairs: number of pairs averaged; c0_mean: their mean ``c0``.
    """

    variance: float
    A: float
    kappa1: float
    kappa2: float
    kappa_ratio: float
    qbar: float
    qbar_sr: float
    samples: int
    pairs: int
    c0_mean: float
    ntk_ratio: float | None = None
    variance_ntk_ratio: float | None = None


def theorem_variance(
    activation: Any,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    samples: int,
    *,
    X: Any = None,
    c0: Any = None,
    width: int | Sequence[int] | None = None,
    input_dim: int | None = None,
    max_pairs: int = 4096,
    seed: int = 0,
) -> TheoremVariance:
    """Theorem 5.3 from the mean-field theory (:func:`ntkscope.theory.propagate`).

    The data-averaged quantities are means over the input covariances ``c0(x_s, x_r) =
    x_s.x_r/M0`` (``s != r``) of ``X`` (at most ``max_pairs`` pairs, drawn with ``seed``), or
    over the given ``c0`` values (inputs with ``q0 = 1``); ``propagate`` runs once, vectorized
    over all of them (activations without closed forms: Chebyshev interpolation in ``c0``,
    see :func:`_pair_kernels`). ``kappa1`` and ``q^{L+1}`` are averaged over the inputs.

    Args:
        activation, sigma_w2, sigma_b2, depth: the network (CONVENTIONS section 1).
        samples: training set size ``S >= 2``.
        X: ``(n, M0)`` inputs whose covariances are averaged (``n >= 2``), or
        c0: a covariance or array of covariances (exactly one of ``X`` and ``c0``).
        width, input_dim: hidden width(s) and ``M0`` for the finite-width ``ntk_ratio``
            (optional; ``input_dim`` defaults to ``X.shape[1]`` or the width).
    """
    from ntkscope.theory import propagate

    S = positive_int("samples", samples, minimum=2)
    if (X is None) == (c0 is None):
        raise NtkscopeInputError("theorem_variance: give exactly one of X (a data set) and c0")
    if X is not None:
        q0, c, qa, qb = data_covariances(X, max_pairs, seed)
        m0 = int(np.shape(X)[1]) if input_dim is None else input_dim
    else:
        c = finite_array("c0", c0).ravel()
        if c.size == 0:
            raise NtkscopeInputError("c0: empty array of covariances")
        q0 = qa = qb = np.ones(1)
        m0 = input_dim
    pairs = _pair_kernels(activation, sigma_w2, sigma_b2, depth, width or 1, m0, qa, c, qb)
    single = propagate(activation, sigma_w2, sigma_b2, depth, width or 1, input_dim=m0,
                       q0=np.unique(q0), keep_layers=False, pairs=False)
    counts = np.array([np.sum(q0 == v) for v in np.unique(q0)], dtype=float)
    kappa1 = float(np.average(single.kappa1, weights=counts))
    qbar = float(np.average(single.output_var, weights=counts))
    kappa2 = float(np.mean(pairs.kappa2))
    qbar_sr = float(np.mean(pairs.output_cov))
    if kappa2 == 0.0:  # e.g. sw2 so small that every covariance underflows to 0
        raise NtkscopeInputError(
            "sigma_w2: kappa2 is 0 (underflow): Theorem 5.3 needs kappa1/kappa2; use a larger "
            "sigma_w2 or sigma_b2"
        )
    ratio = kappa1 / kappa2
    A, var = theorem_formula(ratio, qbar, qbar_sr, S)
    ntk_ratio = var_ntk = None
    if width is not None:
        ntk_ratio = float(np.average(single.ntk_mean_diag, weights=counts)
                          / np.mean(pairs.ntk_mean_offdiag))
        var_ntk = float(theorem_formula(ntk_ratio, qbar, qbar_sr, S)[1])
    return TheoremVariance(float(var), float(A), kappa1, kappa2, ratio, qbar, qbar_sr, S,
                           int(c.size), float(np.mean(c)), ntk_ratio, var_ntk)


def expected_kernels(
    activation: Any, sigma_w2: float, sigma_b2: float, depth: int, width: int | Sequence[int],
    X: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(E Theta0(X), K(X))``: expected NTK at the given widths and NNGP ``q^{L+1}_sr`` on
    every pair of rows of ``X`` (``(n, n)`` each; the ``n(n+1)/2`` pairs ``s <= r`` in one
    vectorized :func:`propagate` call, CONVENTIONS section 4; see :func:`_pair_kernels`)."""
    Xa = _inputs("X", X, minimum=1)
    n, m0 = Xa.shape
    gram = Xa @ Xa.T / m0
    q0 = np.diag(gram).copy()
    s, r = np.triu_indices(n)
    c = gram[s, r]
    c = np.clip(c, -np.sqrt(q0[s] * q0[r]), np.sqrt(q0[s] * q0[r]))
    mf = _pair_kernels(activation, sigma_w2, sigma_b2, depth, width, m0, q0[s], c, q0[r])
    ntk, nngp = np.empty((n, n)), np.empty((n, n))
    ntk[s, r] = ntk[r, s] = mf.ntk_mean_offdiag
    nngp[s, r] = nngp[r, s] = mf.output_cov
    return ntk, nngp


@dataclass
class KernelVariance:
    """Eq. 10 with the deterministic ``E Theta0`` and Gaussian ``f0`` (NNGP ``K``).

    Attributes:
        variance: mean over held-out inputs of ``Var f_inf(x)`` (module docstring).
        per_point: ``(T,)`` the variance at each held-out input.
        condition_number: of ``E Theta0(X)`` on the training inputs.
    """

    variance: float
    per_point: np.ndarray
    condition_number: float


def kernel_variance(
    activation: Any, sigma_w2: float, sigma_b2: float, depth: int, width: int | Sequence[int],
    X_train: Any, X_test: Any,
) -> KernelVariance:
    """Exact variance of eq. 10 over initializations for a deterministic NTK ``E Theta0``.

    ``Var f_inf(x) = K(x,x) - 2 a^T K(X,x) + a^T K(X) a`` with ``a = E Theta0(X)^-1 E
    Theta0(X,x)`` (paper Appendix B before its data-independent approximation).
    """
    Xtr = _inputs("X_train", X_train)
    Xte = _inputs("X_test", X_test, minimum=1)
    if Xtr.shape[1] != Xte.shape[1]:
        raise NtkscopeInputError(f"X_test: input dimension {Xte.shape[1]} differs from "
                                 f"X_train's {Xtr.shape[1]}")
    S = Xtr.shape[0]
    ntk, nngp = expected_kernels(activation, sigma_w2, sigma_b2, depth, width,
                                 np.vstack([Xtr, Xte]))
    lam, V = np.linalg.eigh(ntk[:S, :S])
    cond = float(_condition(lam))
    if lam[0] <= SINGULAR_RTOL * S * lam[-1]:
        raise NtkscopeInputError(f"X_train: E Theta0(X) is numerically singular (condition "
                                 f"number {cond:.3g})")
    a = V @ ((V.T @ ntk[:S, S:]) / lam[:, None])  # (S, T)
    var = (np.diag(nngp)[S:] - 2.0 * np.einsum("st,st->t", a, nngp[:S, S:])
           + np.einsum("st,su,ut->t", a, nngp[:S, :S], a))
    return KernelVariance(float(np.mean(var)), var, cond)


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
    activation: Any,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int | Sequence[int],
    X_train: Any,
    y_train: Any,
    X_test: Any,
    inits: int,
    seed: int = 0,
    *,
    method: str = "lowrank",
    confidence: float = 0.95,
    resamples: int = 1000,
    on_singular: str = "raise",
    device: Any = "cpu",
) -> MCVariance:
    """Monte Carlo ``Var f_inf(x)`` (eq. 10) on held-out inputs over ``inits`` initializations.

    For each training set ``g`` (``X_train`` of shape ``(S, M0)``, or ``(G, S, M0)`` with
    ``y_train`` ``(G, S)`` for ``G`` random training sets) ``(Theta0, f0)`` are drawn jointly on
    ``[X_train[g]; X_test]`` by :func:`ntkscope.sampling.sample_ntk` (initializations
    ``g N .. (g+1) N - 1`` of ``seed``, so draws are independent across sets) and eq. 10 is
    evaluated per draw (:func:`linearized_predictor`). Ill-conditioning warnings are raised
    once per call; numerically singular ``Theta0(X)`` follow ``on_singular``. ``device``:
    where the kernels are sampled (``cpu`` or ``cuda``; eq. 10 is then solved in float64
    NumPy).
    """
    from ntkscope.sampling import sample_ntk

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
    Xte = _inputs("X_test", X_test, minimum=1)
    if Xte.shape[1] != m0:
        raise NtkscopeInputError(f"X_test: input dimension {Xte.shape[1]} differs from "
                                 f"X_train's {m0}")
    for g in range(G):
        _inputs("X_train", Xtr[g])
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
            smp = sample_ntk(NetworkSpec(activation, sigma_w2, sigma_b2, depth, width),
                             np.vstack([Xtr[g], Xte]), N, seed=seed, method=method,
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
# The whole comparison (command line and figure)


@dataclass
class VarianceReport:
    """Theorem 5.3, the kernel variance and (optionally) Monte Carlo for one network.

    :meth:`to_dict` gives the keys of ``ntkscope variance --json``. ``condition_number`` is
    the median over the sampled ``Theta0(X)`` when Monte Carlo ran, else the condition number
    of the expected NTK ``E Theta0(X)`` (``expected_condition_number``, always present).
    """

    theorem: TheoremVariance
    kernel: KernelVariance
    mc: MCVariance | None
    samples: int
    test_points: int
    dataset: str
    input_dim: int

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
    activation: Any,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int,
    samples: int = 32,
    *,
    dataset: str = "gaussian",
    test_points: int = 16,
    monte_carlo: int | None = None,
    training_sets: int = 1,
    seed: int = 0,
    input_dim: int | None = None,
    data_dir: Any = None,
    method: str = "lowrank",
    device: Any = "cpu",
) -> VarianceReport:
    """Theorem 5.3 vs. the kernel variance vs. Monte Carlo on a data set.

    Training inputs: ``samples`` class-balanced points of the train split (``training_sets``
    random sets, seeds ``seed, seed+1, ...``); held-out inputs: ``test_points`` of the test
    split. The theorem averages over the covariances of all these inputs together.
    ``monte_carlo`` (``N >= 2``) initializations per training set, or ``None`` for theory only.
    ``input_dim`` sets ``M0`` of the ``gaussian`` data (default 784); ``device``: where the
    Monte Carlo kernels are sampled.
    """
    S = positive_int("samples", samples, minimum=2)
    T = positive_int("test_points", test_points)
    G = positive_int("training_sets", training_sets)
    seed = positive_int("seed", seed, minimum=0)
    if monte_carlo is not None:
        monte_carlo = positive_int("monte_carlo", monte_carlo, minimum=2)
    Xtr, ytr, Xte = _data(dataset, S, T, G, seed, input_dim, data_dir)
    m0 = Xtr.shape[-1]
    every = np.vstack([*Xtr, Xte])
    theorem = theorem_variance(activation, sigma_w2, sigma_b2, depth, S, X=every, width=width,
                               seed=seed)
    kernel = kernel_variance(activation, sigma_w2, sigma_b2, depth, width, Xtr[0], Xte)
    mc = None
    if monte_carlo is not None:
        mc = monte_carlo_variance(activation, sigma_w2, sigma_b2, depth, width, Xtr, ytr, Xte,
                                  monte_carlo, seed, method=method, on_singular="warn",
                                  device=device)
    return VarianceReport(theorem, kernel, mc, S, T, dataset, m0)
