"""The linearized predictor: kernel in, prediction out (paper eq. 10; CONVENTIONS section 8).

Under gradient flow ``df/dt = -(1/S) Theta0 (f - Y)`` (paper eq. 2) with a constant NTK
``Theta0`` the outputs on the training inputs ``X`` (``S`` of them) and on any input ``x`` are,
with the eigendecomposition ``Theta0(X) = V diag(lambda) V^T``::

    f_t(X) = Y + V exp(-t lambda / S) V^T (f0(X) - Y)
    f_t(x) = f0(x) - Theta0(x, X) V diag(g_t(lambda)) V^T (f0(X) - Y),
    g_t(lambda) = (1 - exp(-t lambda / S)) / lambda                  (-> t/S as lambda -> 0)

and at ``t = inf`` (``g = 1/lambda``) this is eq. 10::

    f_inf(x) = Theta0(x,X) Theta0(X)^-1 Y + f0(x) - Theta0(x,X) Theta0(X)^-1 f0(X).

NumPy only: the kernels come from anywhere (:func:`ntkscope.sampling.sample_ntk`, the expected
NTK of :mod:`ntkscope.theory`, an empirical NTK).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ntkscope.validation import NtkscopeInputError, finite_array

__all__ = [
    "ILL_CONDITIONED",
    "SINGULAR_RTOL",
    "IllConditionedWarning",
    "LinearizedPrediction",
    "condition_number",
    "linearized_predictor",
    "singular_eigenvalues",
]

# Condition numbers above this lose more than half of float64's digits in eq. 10: warn.
ILL_CONDITIONED = 1e8
# Eigenvalues below SINGULAR_RTOL * S * lambda_max count as zero (numerically singular).
SINGULAR_RTOL = float(np.finfo(np.float64).eps)


class IllConditionedWarning(RuntimeWarning):
    """``Theta0(X)`` is ill-conditioned: eq. 10 loses about ``log10(cond)`` digits."""


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


def condition_number(lam: np.ndarray) -> np.ndarray:
    """``lambda_max / lambda_min`` of ascending eigenvalues ``lam`` over the last axis
    (``inf`` for ``lambda_min <= 0``)."""
    top, low = lam[..., -1], lam[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(low > 0, top / np.where(low > 0, low, 1.0), np.inf)


def singular_eigenvalues(lam: np.ndarray) -> np.ndarray:
    """Which eigenvalues of an ``S x S`` kernel count as zero: ``lambda <= S eps lambda_max``
    (``lam`` ascending over the last axis)."""
    return lam <= SINGULAR_RTOL * lam.shape[-1] * np.abs(lam[..., -1:])


def _square_batch(name: str, value: Any) -> np.ndarray:
    arr = finite_array(name, value, allow_empty=True)
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
    cond = condition_number(lam)
    tiny = singular_eigenvalues(lam)
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
