"""Gaussian expectations of an activation: the integrals of the mean-field recursions.

For ``u ~ N(0, q)`` and a centred pair ``(u, v)`` with covariance ``[[q1, q12], [q12, q2]]``:

    univariate(q)          = (E[phi(u)^2],     E[phi'(u)^2])          (paper eqs. 5, 6, 8)
    bivariate(q1, q2, q12) = (E[phi(u)phi(v)], E[phi'(u)phi'(v)])     (paper eqs. 7, 9)

Closed forms (paper Appendix E; Cho & Saul's arc-cosine kernel for ReLU), with
``c = q12 / sqrt(q1 q2)`` and ``t = arccos c``:

    ReLU: E[phi phi]   = sqrt(q1 q2) (sin t + (pi - t) cos t) / (2 pi),
          E[phi' phi'] = (pi - t) / (2 pi)
    erf:  E[phi phi]   = (2/pi) arcsin(2 q12 / sqrt((1 + 2 q1)(1 + 2 q2))),
          E[phi' phi'] = (4/pi) / sqrt((1 + 2 q1)(1 + 2 q2) - 4 q12^2)

Every other activation (and ReLU/erf with ``method="quadrature"``) goes through composite
Gauss-Legendre quadrature of the standard normal density on ``[-Z, Z]``: ``panels`` equal
panels of ``nodes`` points each, split further at the activation's kinks (for the bivariate
integral the inner split point depends on the outer node, ``z2 = (k/sqrt(q2) - c z1)/s``), so
piecewise-smooth activations such as ReLU keep spectral accuracy. The defaults reach 1e-9
relative accuracy for tanh up to ``q ~ 100`` (``tests/test_gaussian.py`` shows convergence).
All functions broadcast over their array arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntkscope.activations import Activation

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_GRADES = np.array([-8.0, -2.0, -0.5, 0.5, 2.0, 8.0])


@dataclass(frozen=True)
class Quadrature:
    """Composite Gauss-Legendre rule for the standard normal density on ``[-z_max, z_max]``."""

    panels: int = 24
    nodes: int = 24
    z_max: float = 9.0
    chunk: int = 8  # elements per batch of the bivariate rule (~20 MB of nodes per element)

    def legendre(self) -> tuple[np.ndarray, np.ndarray]:
        return np.polynomial.legendre.leggauss(self.nodes)

    def edges(self) -> np.ndarray:
        return np.linspace(-self.z_max, self.z_max, self.panels + 1)


DEFAULT_QUADRATURE = Quadrature()


def _panel_rule(edges: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (times the normal density) for panels given by sorted ``edges``.

    ``edges`` has shape ``(..., P+1)``; returns arrays of shape ``(..., P * len(x))``.
    """
    lo, hi = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (hi - lo)
    z = (0.5 * (hi + lo) + half * x).reshape(*edges.shape[:-1], -1)
    wz = (half * w).reshape(*edges.shape[:-1], -1) * _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    return z, wz


def _with_breaks(base: np.ndarray, breaks: np.ndarray, z_max: float) -> np.ndarray:
    """Panel edges: ``base`` edges plus per-element break points (clipped), sorted."""
    clipped = np.clip(breaks, -z_max, z_max)
    full = np.concatenate([np.broadcast_to(base, (*clipped.shape[:-1], base.size)), clipped], -1)
    return np.sort(full, axis=-1)


def _shared_rule(act: Activation, quad: Quadrature) -> tuple[np.ndarray, np.ndarray] | None:
    """One rule for every element when all kinks sit at 0 (their z-position is then 0)."""
    if any(k != 0.0 for k in act.kinks):
        return None
    x, w = quad.legendre()
    return _panel_rule(np.union1d(quad.edges(), [0.0]), x, w)


def _kink_z(act: Activation, scale: np.ndarray) -> np.ndarray:
    """Break points ``k / scale`` in z for each kink ``k`` of ``phi`` (shape ``(..., K)``)."""
    kinks = np.asarray(act.kinks, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = kinks / scale[..., None]
    # scale == 0: the variable is identically 0 and no break is needed (push it out).
    return np.where(np.isfinite(z), z, np.inf)


def _univariate_quadrature(
    act: Activation, q: np.ndarray, quad: Quadrature
) -> tuple[np.ndarray, np.ndarray]:
    sq = np.sqrt(q)
    shared = _shared_rule(act, quad)
    if shared is None:
        x, w = quad.legendre()
        z, wz = _panel_rule(_with_breaks(quad.edges(), _kink_z(act, sq), quad.z_max), x, w)
    else:
        z, wz = shared
    u = sq[..., None] * z
    return (np.sum(wz * np.square(act.np_fn(u)), -1), np.sum(wz * np.square(act.np_deriv(u)), -1))


def _bivariate_quadrature(
    act: Activation, q1: np.ndarray, q2: np.ndarray, q12: np.ndarray, quad: Quadrature
) -> tuple[np.ndarray, np.ndarray]:
    """``u = sqrt(q1) z1``, ``v = sqrt(q2) (c z1 + s z2)``, ``s = sqrt(1 - c^2)``."""
    x, w = quad.legendre()
    base = quad.edges()
    s1, s2 = np.sqrt(q1), np.sqrt(q2)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(s1 * s2 > 0, q12 / (s1 * s2), 0.0)
    c = np.clip(c, -1.0, 1.0)
    s = np.sqrt(1.0 - c * c)
    kinks = np.asarray(act.kinks, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kv = np.where(s2[:, None] > 0, kinks[None, :] / s2[:, None], np.inf)  # (N, K)
        # Nearly collinear inputs (s << |c|): the inner integral switches on a z1-scale of
        # s/|c| around z1 = kv/c; graded outer breaks there keep the outer rule accurate.
        width = s / np.abs(c)
        steep = (width < 1.0)[:, None, None]
        grade = (kv / c[:, None])[..., None] + width[:, None, None] * _GRADES
        grade = np.where(steep & np.isfinite(grade), grade, np.inf).reshape(len(c), -1)
    # Outer variable z1: break at the kinks of phi(u) (and the graded points above).
    outer = np.concatenate([_kink_z(act, s1), grade], -1)
    z1, w1 = _panel_rule(_with_breaks(base, outer, quad.z_max), x, w)  # (N, n1)
    u = s1[:, None] * z1
    fu, du = act.np_fn(u), act.np_deriv(u)
    # Inner variable z2: break where v crosses a kink, z2 = (k / s2 - c z1) / s.
    with np.errstate(divide="ignore", invalid="ignore"):
        brk = (kv[:, None, :] - (c[:, None] * z1)[..., None]) / s[:, None, None]  # (N, n1, K)
    brk = np.where(np.isfinite(brk), brk, np.inf)
    z2, w2 = _panel_rule(_with_breaks(base, brk, quad.z_max), x, w)  # (N, n1, n2)
    v = s2[:, None, None] * (c[:, None, None] * z1[..., None] + s[:, None, None] * z2)
    inner_f = np.sum(w2 * act.np_fn(v), -1)  # (N, n1)
    inner_d = np.sum(w2 * act.np_deriv(v), -1)
    return np.sum(w1 * fu * inner_f, -1), np.sum(w1 * du * inner_d, -1)


def univariate(
    act: Activation, q: np.ndarray | float, method: str = "auto", quad: Quadrature | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(u)^2], E[phi'(u)^2])`` for ``u ~ N(0, q)``, ``q >= 0`` (broadcast).

    ``method``: ``"auto"`` (closed form where one exists) or ``"quadrature"``.
    """
    q = np.asarray(q, dtype=np.float64)
    if method == "auto" and act.closed_form == "relu":
        return 0.5 * q, np.full_like(q, 0.5)
    if method == "auto" and act.closed_form == "erf":
        return (2.0 / np.pi) * np.arcsin(2.0 * q / (1.0 + 2.0 * q)), (4.0 / np.pi) / np.sqrt(
            1.0 + 4.0 * q
        )
    flat = q.reshape(-1)
    a, b = _univariate_quadrature(act, flat, quad or DEFAULT_QUADRATURE)
    return a.reshape(q.shape), b.reshape(q.shape)


def bivariate(
    act: Activation,
    q1: np.ndarray | float,
    q2: np.ndarray | float,
    q12: np.ndarray | float,
    method: str = "auto",
    quad: Quadrature | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(u)phi(v)], E[phi'(u)phi'(v)])`` for ``Cov(u, v) = [[q1, q12], [q12, q2]]``."""
    q1, q2, q12 = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (q1, q2, q12)))
    if method == "auto" and act.closed_form == "relu":
        root = np.sqrt(q1 * q2)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(root > 0, q12 / root, 1.0)
        t = np.arccos(np.clip(c, -1.0, 1.0))
        return (
            root * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2.0 * np.pi),
            (np.pi - t) / (2.0 * np.pi),
        )
    if method == "auto" and act.closed_form == "erf":
        a1, a2 = 1.0 + 2.0 * q1, 1.0 + 2.0 * q2
        ratio = np.clip(2.0 * q12 / np.sqrt(a1 * a2), -1.0, 1.0)
        det = np.maximum(a1 * a2 - 4.0 * q12 * q12, np.finfo(np.float64).tiny)
        return (2.0 / np.pi) * np.arcsin(ratio), (4.0 / np.pi) / np.sqrt(det)
    quad = quad or DEFAULT_QUADRATURE
    shape = q1.shape
    f1, f2, f12 = q1.reshape(-1), q2.reshape(-1), q12.reshape(-1)
    out_f = np.empty(f1.size)
    out_d = np.empty(f1.size)
    step = max(1, quad.chunk)
    for start in range(0, f1.size, step):
        sl = slice(start, start + step)
        out_f[sl], out_d[sl] = _bivariate_quadrature(act, f1[sl], f2[sl], f12[sl], quad)
    return out_f.reshape(shape), out_d.reshape(shape)
