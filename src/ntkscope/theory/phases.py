"""Fixed points, ``chi1``, phases and the edge of chaos (CONVENTIONS section 5).

* ``q*`` is the stable fixed point of the variance map ``q -> sw2 E[phi(sqrt(q) z)^2] + sb2``
  reached from ``q0 = 1`` (paper eq. 5). ReLU: ``q* = sb2 / (1 - sw2/2)`` for ``sw2 < 2``; none
  (``NaN``) for ``sw2 >= 2`` except that at ``sw2 = 2, sb2 = 0`` every ``q`` is fixed (also
  reported as ``NaN``: no unique fixed point).
* ``chi1 = sw2 E[phi'(sqrt(q*) z)^2]``; ordered if ``chi1 < 1``, chaotic if ``chi1 > 1``, edge of
  chaos (EOC) if ``|chi1 - 1| <= EOC_TOL``. ReLU: ``chi1 = sw2/2`` for every ``q``.
* The EOC line: at ``chi1(q*) = 1`` both ``sw2 = 1 / E[phi'(sqrt(q*) z)^2]`` and
  ``sb2 = q* - E[phi(sqrt(q*) z)^2] / E[phi'(sqrt(q*) z)^2]`` hold, so ``sw2_EOC(sb2)`` is found
  by one bracketed root search in ``q*`` (vectorised bisection over a grid of ``sb2``).
"""

from __future__ import annotations

import numpy as np

from ntkscope.activations import Activation, get_activation
from ntkscope.theory.gaussian import univariate
from ntkscope.validation import NtkscopeInputError, nonnegative, positive

EOC_TOL = 1e-8
_Q_MAX = 1e250
_Q_TINY = 1e-300
_Q_FLOOR = 1e-30  # shrink brackets no further than this
_Q_SNAP = 1e-10  # with sb2 = 0, a smaller root is q* = 0 up to quadrature round-off
ORDERED, EOC, CHAOTIC = "ordered", "edge of chaos", "chaotic"


def _bisect(  # type: ignore[no-untyped-def]
    fn, lo: np.ndarray, hi: np.ndarray, iters: int = 200, geometric: bool = False
) -> np.ndarray:
    """Vectorised bisection for ``fn(lo) >= 0 >= fn(hi)`` (or the reverse, per element).

    ``geometric`` bisects in ``log`` (for positive brackets spanning decades).
    """
    f_lo = fn(lo)
    for _ in range(iters):
        mid = np.sqrt(lo) * np.sqrt(hi) if geometric else 0.5 * lo + 0.5 * hi  # no overflow
        f_mid = fn(mid)
        same = np.sign(f_mid) == np.sign(f_lo)
        lo = np.where(same, mid, lo)
        f_lo = np.where(same, f_mid, f_lo)
        hi = np.where(same, hi, mid)
        if np.all(np.abs(hi - lo) <= 4 * np.finfo(float).eps * np.abs(hi) + _Q_TINY):
            break
    return 0.5 * (lo + hi)


@np.errstate(over="ignore")  # sw2 qhat + sb2 beyond float64 is clamped to _Q_MAX (diverged)
def fixed_point(
    activation: str | Activation, sigma_w2: float | np.ndarray, sigma_b2: float | np.ndarray
) -> np.ndarray:
    """Stable fixed point ``q*`` of ``q -> sw2 qhat(q) + sb2`` (``NaN`` where none exists)."""
    act = get_activation(activation)
    sw2, sb2 = np.broadcast_arrays(
        positive("sigma_w2", sigma_w2), nonnegative("sigma_b2", sigma_b2)
    )
    if act.closed_form == "relu":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sw2 < 2.0, sb2 / (1.0 - 0.5 * sw2), np.nan)

    def gap(q: np.ndarray) -> np.ndarray:
        return sw2 * univariate(act, q)[0] + sb2 - q

    # Land in the basin of the stable fixed point reached from q0 = 1, then bracket and bisect.
    q = np.ones_like(sw2)
    for _ in range(40):
        q = np.minimum(sw2 * univariate(act, q)[0] + sb2, _Q_MAX)
    lo, hi = q.copy(), q.copy()
    for _ in range(60):  # shrink lo until gap(lo) >= 0, grow hi until gap(hi) <= 0
        move_lo = (gap(lo) < 0) & (lo > _Q_FLOOR)
        move_hi = (gap(hi) > 0) & (hi < _Q_MAX)
        if not (move_lo.any() or move_hi.any()):
            break
        lo = np.where(move_lo, lo * 1e-2, lo)
        hi = np.where(move_hi, hi * 1e2, hi)
    collapsed = gap(lo) < 0  # gap < 0 down to 0: the map contracts to q* = 0 (needs sb2 = 0)
    diverged = gap(hi) > 0  # no root below _Q_MAX: the variance explodes
    root = _bisect(gap, lo, hi, geometric=True)
    # With sb2 = 0, q* = 0 is always a fixed point; roots this small are round-off of it.
    collapsed |= (sb2 == 0) & (root < _Q_SNAP)
    return np.where(collapsed, 0.0, np.where(diverged, np.nan, root))


def chi1_at(
    activation: str | Activation, sigma_w2: float | np.ndarray, q: float | np.ndarray
) -> np.ndarray:
    """``chi1 = sw2 E[phi'(sqrt(q) z)^2]`` at variance ``q``."""
    act = get_activation(activation)
    return np.asarray(sigma_w2, dtype=float) * univariate(act, np.asarray(q, dtype=float))[1]


def chi1_fixed_point(
    activation: str | Activation, sigma_w2: float | np.ndarray, sigma_b2: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(chi1 at q*, q*)``. ReLU: ``chi1 = sw2/2`` whether or not ``q*`` exists."""
    act = get_activation(activation)
    q_star = fixed_point(act, sigma_w2, sigma_b2)
    sw2 = np.broadcast_to(np.asarray(sigma_w2, dtype=float), q_star.shape)
    if act.closed_form == "relu":
        return 0.5 * sw2, q_star
    chi = np.where(np.isnan(q_star), np.nan, chi1_at(act, sw2, np.nan_to_num(q_star)))
    return chi, q_star


def phase_of(chi1: float | np.ndarray, tol: float = EOC_TOL) -> np.ndarray:
    """``"ordered"`` (chi1 < 1), ``"edge of chaos"`` (|chi1 - 1| <= tol) or ``"chaotic"``."""
    chi = np.asarray(chi1, dtype=float)
    out = np.where(chi > 1.0, CHAOTIC, ORDERED).astype(object)
    out[np.abs(chi - 1.0) <= tol] = EOC
    out[np.isnan(chi)] = CHAOTIC  # variance explodes: no fixed point (chaotic side)
    return out if out.ndim else out.item()


def eoc(
    activation: str | Activation, sigma_b2: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Edge of chaos ``(sw2_EOC(sb2), q*)``; ``NaN`` where the activation has none.

    ReLU: ``sw2_EOC = 2`` for every ``sb2`` (``q*`` is ``NaN``: unbounded for ``sb2 > 0``,
    not unique for ``sb2 = 0``). Otherwise solve ``h(q) = q - qhat(q)/E[phi'^2] - sb2 = 0``
    for ``q*`` and return ``sw2 = 1/E[phi'(sqrt(q*) z)^2]``.
    """
    act = get_activation(activation)
    sb2 = nonnegative("sigma_b2", sigma_b2)
    if act.closed_form == "relu":
        return np.full_like(sb2, 2.0), np.full_like(sb2, np.nan)

    def h(q: np.ndarray) -> np.ndarray:
        qhat, dphi2 = univariate(act, q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return q - qhat / dphi2 - sb2

    lo = np.zeros_like(sb2)
    hi = np.maximum(2.0 * np.minimum(sb2, _Q_MAX), 1.0)  # capped: no overflow
    for _ in range(200):
        grow = (h(hi) < 0) & (hi < _Q_MAX)  # no root below _Q_MAX: NaN below
        if not grow.any():
            break
        hi = np.where(grow, hi * 2.0, hi)
    h_lo, h_hi = h(lo), h(hi)
    ok = (h_lo <= 0) & (h_hi >= 0) & np.isfinite(h_hi)
    q_star = np.where(ok, _bisect(h, lo, hi), np.nan)
    q_star = np.where(sb2 == 0, np.where(h_lo == 0, 0.0, q_star), q_star)
    with np.errstate(divide="ignore", invalid="ignore"):
        sw2 = 1.0 / univariate(act, np.nan_to_num(q_star))[1]
    sw2 = np.where(np.isnan(q_star), np.nan, sw2)
    return sw2, q_star


def eoc_curve(
    activation: str | Activation, sigma_b2_grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``sw2_EOC`` over a grid of ``sb2`` (vectorised): returns ``(sb2_grid, sw2_eoc)``."""
    grid = nonnegative("sigma_b2", sigma_b2_grid)
    if grid.ndim != 1:
        raise NtkscopeInputError("sigma_b2_grid: expected a 1-D array")
    return grid, eoc(activation, grid)[0]
