"""Theorem 5.3 and the expected kernels on a data set (NumPy theory; paper Section 5).

Theorem 5.3 (data-independent variance over initializations of the fully trained linearized
network, well-conditioned NTK; CONVENTIONS section 8)::

    Var f_inf(x) ~= (1 + A^2/S) (qbar - qbar_sr) + (A - 1)^2 qbar_sr,
    A = S / (kappa1/kappa2 + S - 1)

with ``qbar = q^{L+1}`` (output variance at initialization), ``qbar_sr = q^{L+1}_sr`` and
``kappa1/kappa2`` (Lemma 5.2, all width ratios 1) averaged over the input covariances
``c0(x_s, x_r) = x_s.x_r / M0``, ``s != r``, of the data (:func:`data_covariances`):
``kappa1 / mean(kappa2)``, ``mean(q_sr)`` (:func:`theorem_variance`; the bare formula:
:func:`theorem_formula`).

Between eq. 10 and the theorem sits the *kernel variance* (:func:`kernel_variance`): the exact
variance of eq. 10 over initializations when ``Theta0`` is replaced by its expectation
``E Theta0`` at the given widths (deterministic NTK, CONVENTIONS section 4) and ``f0`` is the
NNGP ``K(x, x') = q^{L+1}_sr(x, x')`` (:func:`expected_kernels`)::

    Var f_inf(x) = K(x,x) - 2 a(x)^T K(X,x) + a(x)^T K(X) a(x),
    a(x) = E Theta0(X)^-1 E Theta0(X,x)

It keeps the data-dependent covariances that Theorem 5.3 averages out (paper: the ordered phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkscope.predict import condition_number, singular_eigenvalues
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.theory.meanfield import propagate
from ntkscope.validation import NtkscopeInputError, finite_array, input_matrix, positive_int

if TYPE_CHECKING:
    from ntkscope.networks import MLP

__all__ = [
    "INTERP_NODES",
    "KernelVariance",
    "TheoremVariance",
    "data_covariances",
    "expected_kernels",
    "kernel_variance",
    "theorem_formula",
    "theorem_variance",
]

# Chebyshev nodes in c0 for activations computed by quadrature (see _pair_kernels).
INTERP_NODES = 24


# --------------------------------------------------------------------------------------------
# Input covariances of a data set


def data_covariances(
    X: Any, max_pairs: int = 4096, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-input ``q0 = |x|^2/M0`` and the covariances of distinct pairs of a data set.

    Returns ``(q0, c0, q0_a, q0_b)``: ``q0`` for every row of ``X`` and, for the pairs
    ``s < r`` (all of them, or ``max_pairs`` drawn uniformly without replacement when there are
    more), ``c0 = x_s.x_r / M0`` with the two norms ``q0_a = q0(x_s)``, ``q0_b = q0(x_r)``.
    """
    return _covariances(input_matrix("X", X), positive_int("max_pairs", max_pairs), seed)


def _covariances(X: np.ndarray, max_pairs: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n, m0 = X.shape
    q0 = np.einsum("sm,sm->s", X, X) / m0
    total = n * (n - 1) // 2
    if total <= max_pairs:
        s, r = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, n, 0xC0]))
        flat = rng.choice(total, size=max_pairs, replace=False)
        s, r = _pair_from_index(flat, n)
    c0 = np.einsum("pm,pm->p", X[s], X[r]) / m0
    return q0, c0, q0[s], q0[r]


def _pair_from_index(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major index ``k`` of the strict upper triangle of an ``n x n`` matrix -> ``(s, r)``."""
    s = (n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(int)
    r = (k + s + 1 - n * (n - 1) // 2 + (n - s) * ((n - s) - 1) // 2).astype(int)
    return s, r


# --------------------------------------------------------------------------------------------
# Mean-field quantities of pairs of inputs


@dataclass
class _PairKernels:
    """Two-input mean-field quantities for a batch of pairs (CONVENTIONS section 4)."""

    kappa2: np.ndarray
    output_cov: np.ndarray
    ntk_mean_offdiag: np.ndarray


_PAIR_FIELDS = ("kappa2", "output_cov", "ntk_mean_offdiag")


def _pair_kernels(spec: NetworkSpec, qa: np.ndarray, c: np.ndarray, qb: np.ndarray
                  ) -> _PairKernels:
    """``kappa2``, ``q^{L+1}_sr`` and ``E Theta0(x, x')`` for every pair ``(qa, c, qb)``.

    One vectorized :func:`propagate` call, except for activations without closed forms
    (quadrature, ~0.1 s per pair at depth 4) on many pairs of equal-norm inputs: there the
    three quantities, smooth in ``c0``, are computed at ``INTERP_NODES`` Chebyshev points of
    ``[min c0, max c0]`` and interpolated; three pairs are then checked directly, and any
    relative error above ``1e-7`` falls back to the direct computation.
    """

    def direct(qa_: np.ndarray, c_: np.ndarray, qb_: np.ndarray) -> _PairKernels:
        mf = propagate(spec.activation, spec.sigma_w2, spec.sigma_b2, spec.depth, spec.width,
                       input_dim=spec.input_dim, q0=qa_, c0=c_, q0_b=qb_, keep_layers=False)
        return _PairKernels(*(np.broadcast_to(getattr(mf, n), c_.shape) for n in _PAIR_FIELDS))

    qa, c, qb = np.broadcast_arrays(qa, c, qb)
    q_all = np.concatenate([qa, qb])
    equal_norms = float(np.ptp(q_all)) <= 1e-12 * float(np.max(q_all))
    lo, hi = float(np.min(c)), float(np.max(c))
    if (spec.activation.closed_form is not None or not equal_norms
            or c.size <= 3 * INTERP_NODES or hi <= lo):
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

    out = _PairKernels(*(interp(getattr(at_nodes, n), x) for n in _PAIR_FIELDS))
    check = np.random.default_rng(c.size).choice(c.size, 3, replace=False)
    exact = direct(qa[check], c[check], qb[check])
    for name in _PAIR_FIELDS:
        e, a = getattr(exact, name), getattr(out, name)[check]
        if np.any(np.abs(a - e) > 1e-7 * np.maximum(np.abs(e), 1e-300)):
            return direct(qa, c, qb)
    return out


# --------------------------------------------------------------------------------------------
# Theorem 5.3


def theorem_formula(kappa_ratio: Any, qbar: Any, qbar_sr: Any, samples: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 5.3: ``(A, Var)`` with ``A = S / (kappa1/kappa2 + S - 1)`` and
    ``Var = (1 + A^2/S)(qbar - qbar_sr) + (A - 1)^2 qbar_sr`` (broadcasts over arrays)."""
    S = positive_int("samples", samples, minimum=2)
    ratio = finite_array("kappa_ratio", kappa_ratio)
    q, qsr = finite_array("qbar", qbar), finite_array("qbar_sr", qbar_sr)
    return _formula(ratio, q, qsr, S)


def _formula(ratio: Any, q: Any, qsr: Any, S: int) -> tuple[Any, Any]:
    A = S / (ratio + S - 1.0)
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
        samples: ``S``; pairs: number of pairs averaged; c0_mean: their mean ``c0``.
        ntk_ratio: ``E Theta0(x,x) / E Theta0(x,x')`` (means) at the network's finite widths
            (input dimension and ``+1`` bias terms included).
        variance_ntk_ratio: the theorem with ``ntk_ratio`` in place of ``kappa1/kappa2``.
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
    ntk_ratio: float
    variance_ntk_ratio: float


def theorem_variance(
    net: NetworkSpec | MLP,
    samples: int,
    *,
    X: Any = None,
    c0: Any = None,
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
        net: the network (:class:`ntkscope.NetworkSpec` or :class:`ntkscope.MLP`;
            CONVENTIONS section 1). Its widths and ``input_dim`` (default ``X.shape[1]``, or
            the first width with ``c0``) enter only the finite-width ``ntk_ratio``.
        samples: training set size ``S >= 2``.
        X: ``(n, M0)`` inputs whose covariances are averaged (``n >= 2``), or
        c0: a covariance or array of covariances (exactly one of ``X`` and ``c0``).
        max_pairs, seed: see :func:`data_covariances`.

    Raises:
        NtkscopeInputError: bad ``samples``, ``X`` or ``c0``; an ``input_dim`` of ``net``
            other than ``X.shape[1]``; ``kappa2 = 0`` (underflow).
    """
    spec = as_spec(net)
    S = positive_int("samples", samples, minimum=2)
    if (X is None) == (c0 is None):
        raise NtkscopeInputError("theorem_variance: give exactly one of X (a data set) and c0")
    if X is not None:
        Xa = input_matrix("X", X)
        spec = spec.with_input_dim(Xa.shape[1])
        q0, c, qa, qb = _covariances(Xa, positive_int("max_pairs", max_pairs), seed)
    else:
        c = finite_array("c0", c0).ravel()
        q0 = qa = qb = np.ones(1)
    pairs = _pair_kernels(spec, qa, c, qb)
    single = propagate(spec.activation, spec.sigma_w2, spec.sigma_b2, spec.depth, spec.width,
                       input_dim=spec.input_dim, q0=np.unique(q0), keep_layers=False,
                       pairs=False)
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
    A, var = _formula(ratio, qbar, qbar_sr, S)
    ntk_ratio = float(np.average(single.ntk_mean_diag, weights=counts)
                      / np.mean(pairs.ntk_mean_offdiag))
    var_ntk = float(_formula(ntk_ratio, qbar, qbar_sr, S)[1])
    return TheoremVariance(float(var), float(A), kappa1, kappa2, ratio, qbar, qbar_sr, S,
                           int(c.size), float(np.mean(c)), ntk_ratio, var_ntk)


# --------------------------------------------------------------------------------------------
# Expected kernels and the kernel variance


def expected_kernels(net: NetworkSpec | MLP, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(E Theta0(X), K(X))``: expected NTK at the network's widths and NNGP ``q^{L+1}_sr``
    on every pair of rows of ``X`` (``(n, n)`` each; CONVENTIONS section 4).

    The ``n(n+1)/2`` pairs ``s <= r`` go through one vectorized :func:`propagate` call (see
    :func:`_pair_kernels`). ``net``'s ``input_dim``, if set, must be ``X.shape[1]``.
    """
    Xa = input_matrix("X", X, minimum=1)
    return _expected_kernels(as_spec(net).with_input_dim(Xa.shape[1]), Xa)


def _expected_kernels(spec: NetworkSpec, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, m0 = X.shape
    gram = X @ X.T / m0
    q0 = np.diag(gram).copy()
    s, r = np.triu_indices(n)
    c = gram[s, r]
    c = np.clip(c, -np.sqrt(q0[s] * q0[r]), np.sqrt(q0[s] * q0[r]))
    mf = _pair_kernels(spec, q0[s], c, q0[r])
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


def kernel_variance(net: NetworkSpec | MLP, X_train: Any, X_test: Any) -> KernelVariance:
    """Exact variance of eq. 10 over initializations for a deterministic NTK ``E Theta0``.

    ``Var f_inf(x) = K(x,x) - 2 a^T K(X,x) + a^T K(X) a`` with ``a = E Theta0(X)^-1 E
    Theta0(X,x)`` (paper Appendix B before its data-independent approximation).

    Raises:
        NtkscopeInputError: bad inputs (``X_train``: ``S >= 2`` rows; ``X_test`` of the same
            dimension, also ``net``'s ``input_dim`` if set); ``E Theta0(X)`` numerically
            singular.
    """
    Xtr = input_matrix("X_train", X_train)
    Xte = input_matrix("X_test", X_test, minimum=1)
    if Xtr.shape[1] != Xte.shape[1]:
        raise NtkscopeInputError(f"X_test: input dimension {Xte.shape[1]} differs from "
                                 f"X_train's {Xtr.shape[1]}")
    spec = as_spec(net).with_input_dim(Xtr.shape[1])
    S = Xtr.shape[0]
    ntk, nngp = _expected_kernels(spec, np.vstack([Xtr, Xte]))
    lam, V = np.linalg.eigh(ntk[:S, :S])
    cond = float(condition_number(lam))
    if singular_eigenvalues(lam)[0]:
        raise NtkscopeInputError(f"X_train: E Theta0(X) is numerically singular (condition "
                                 f"number {cond:.3g})")
    a = V @ ((V.T @ ntk[:S, S:]) / lam[:, None])  # (S, T)
    var = (np.diag(nngp)[S:] - 2.0 * np.einsum("st,st->t", a, nngp[:S, S:])
           + np.einsum("st,su,ut->t", a, nngp[:S, :S], a))
    return KernelVariance(float(np.mean(var)), var, cond)
