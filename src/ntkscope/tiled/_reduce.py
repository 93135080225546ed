"""Reductions of a stored kernel computed tile by tile, never holding the kernel.

For a stored ``K`` (``N1 x N2``, or the vector ``K(x_i, x_i)`` of ``output="diagonal"``):

* trace ``tr K = sum_i K_ii`` (symmetric kernels and diagonals);
* Frobenius norm ``|K|_F = sqrt(sum_ij K_ij^2)`` (a symmetric kernel's off-diagonal tiles
  counted twice from the upper triangle; a diagonal's Euclidean norm);
* the top ``k`` eigenvalues of a symmetric kernel by randomized subspace iteration with
  Rayleigh-Ritz (Saad, *Numerical Methods for Large Eigenvalue Problems*, ch. 5): ``Q`` an
  orthonormal ``N x b`` block (``b = k + max(10, k)``, Gaussian start), each pass ``W = K Q``
  (tile by tile: ``W[rows_i] += K_ij Q[cols_j]`` and, for ``i < j``, ``W[cols_j] += K_ij^T
  Q[rows_i]``), Ritz pairs of ``H = Q^T W``, ``Q <- orth(K Q U)``; stopped when every top-``k``
  residual ``|K v_j - theta_j v_j|`` is below ``tol * theta_1``. Each ``theta_j`` lies within its
  residual of an eigenvalue of ``K`` (the bounds reported with the values);
* the change metric ``|K_a - K_b|_F / |K_a|_F`` of two stored kernels of the same inputs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.tiled._store import KernelStore, open_kernel
from ntkscope.validation import NtkscopeInputError, positive_int

__all__ = ["Eigenvalues", "KernelReduction", "kernel_frobenius", "kernel_trace",
           "reduce_kernel", "relative_difference", "top_eigenvalues"]

#: Relative residual ``|K v - theta v| / theta_1`` at which the eigenvalues stop.
EIG_TOL = 1e-10
#: Passes over the kernel at most.
EIG_MAX_ITER = 300

KernelLike = str | os.PathLike[str] | KernelStore


def _complete(kernel: KernelLike, what: str) -> KernelStore:
    ks = kernel if isinstance(kernel, KernelStore) else open_kernel(kernel)
    ks.require_complete(what)
    return ks


def _weight(ks: KernelStore, i: int, j: int) -> float:
    """Upper-triangle tiles off the diagonal stand for their transposes too."""
    return 2.0 if ks.symmetric and ks.output == "trace" and i != j else 1.0


def kernel_trace(kernel: KernelLike) -> float:
    """``tr K = sum_i K(x_i, x_i)`` from the diagonal tiles (a symmetric kernel, or the
    stored diagonal).

    Raises:
        NtkscopeInputError: an ``X1 x X2`` kernel (no diagonal), missing tiles.
    """
    ks = _complete(kernel, "trace")
    if ks.output == "diagonal":
        return float(sum(np.sum(b, dtype=np.float64) for _, _, b in ks.blocks()))
    if not ks.symmetric:
        raise NtkscopeInputError(f"trace: {ks.path} is K(X1, X2) with X2 != X1; it has no "
                                 "trace")
    return float(sum(np.trace(b, dtype=np.float64) for i, j, b in ks.blocks() if i == j))


def kernel_frobenius(kernel: KernelLike) -> float:
    """``|K|_F = sqrt(sum_ij K_ij^2)`` from the tiles (the diagonal's Euclidean norm for
    ``output="diagonal"``)."""
    ks = _complete(kernel, "frobenius")
    total = 0.0
    for i, j, b in ks.blocks():
        b64 = b.astype(np.float64, copy=False)
        total += _weight(ks, i, j) * float(np.sum(b64 * b64))
    return math.sqrt(total)


@dataclass(frozen=True)
class Eigenvalues:
    """Top eigenvalues of a stored symmetric kernel (:func:`top_eigenvalues`).

    Attributes:
        values: ``theta_1 >= ... >= theta_k``.
        bounds: ``|K v_j - theta_j v_j|``: an eigenvalue of ``K`` lies within it of
            ``theta_j``.
        passes: matrix products with the kernel (each one read of every upper tile).
        converged: every bound below ``tol * theta_1``.
    """

    values: tuple[float, ...]
    bounds: tuple[float, ...]
    passes: int
    converged: bool
    tol: float


def _matmat(ks: KernelStore, v: np.ndarray) -> np.ndarray:
    """``K v`` tile by tile from the upper triangle."""
    out = np.zeros_like(v)
    for i, j, b in ks.blocks():
        b64 = b.astype(np.float64, copy=False)
        ri, cj = ks.rows(i), ks.cols(j)
        out[ri] += b64 @ v[cj]
        if i != j:
            out[cj] += b64.T @ v[ri]
    return out


def top_eigenvalues(kernel: KernelLike, k: int = 10, *, tol: float = EIG_TOL,
                    max_iter: int = EIG_MAX_ITER, seed: int = 0) -> Eigenvalues:
    """The ``k`` largest eigenvalues of a stored symmetric kernel by randomized subspace
    iteration (module docstring), reading the tiles once per pass.

    Raises:
        NtkscopeInputError: not a symmetric trace kernel, ``k`` larger than ``N``, missing
            tiles, a bad ``tol``.
    """
    ks = _complete(kernel, "eigenvalues")
    if ks.output != "trace" or not ks.symmetric:
        x2 = "= X1" if ks.symmetric else "given"
        raise NtkscopeInputError(f"eigenvalues: {ks.path} is not a symmetric kernel "
                                 f"(output {ks.output!r}, X2 {x2})")
    n = ks.shape[0]
    k = positive_int("top_eigenvalues", k, maximum=n)
    max_iter = positive_int("max_iter", max_iter)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise NtkscopeInputError(f"tol: expected a number in (0, 1), got {tol!r}")
    b = min(n, k + max(10, k))
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, b)))
    theta = bounds = np.zeros(0)
    converged = False
    passes = 0
    for passes in range(1, max_iter + 1):  # noqa: B007 - reported
        w = _matmat(ks, q)
        h = q.T @ w
        theta, u = np.linalg.eigh((h + h.T) / 2)
        order = np.argsort(theta)[::-1]
        theta, u = theta[order], u[:, order]
        kv = w @ u
        bounds = np.linalg.norm(kv - (q @ u) * theta, axis=0)
        scale = max(abs(float(theta[0])), np.finfo(float).tiny)
        if b == n or bool(np.all(bounds[:k] <= tol * scale)):
            converged = True
            break
        q, _ = np.linalg.qr(kv)
    return Eigenvalues(tuple(float(v) for v in theta[:k]),
                       tuple(float(v) for v in bounds[:k]), passes, converged, float(tol))


_top = top_eigenvalues  # (reduce_kernel's argument of that name shadows it)


def relative_difference(a: KernelLike, b: KernelLike, *, same_inputs: bool = True) -> float:
    """``|K_a - K_b|_F / |K_a|_F`` of two stored kernels (the paper's kernel change, e.g. at
    initialization and after training), tile by tile along ``a``'s tiles.

    Raises:
        NtkscopeInputError: different shapes or outputs, kernels of different inputs (their
            fingerprints; ``same_inputs=False`` skips this check), missing tiles, ``K_a = 0``.
    """
    ka, kb = _complete(a, "compare"), _complete(b, "compare")
    if ka.shape != kb.shape or ka.output != kb.output:
        raise NtkscopeInputError(f"compare: {ka.path} is {ka.shape} {ka.output}, {kb.path} is "
                                 f"{kb.shape} {kb.output}")
    if same_inputs and ka.attrs.get("inputs") != kb.attrs.get("inputs"):
        raise NtkscopeInputError(f"compare: {ka.path} and {kb.path} are kernels of different "
                                 "inputs (their inputs fingerprints differ)")
    both = ka.symmetric and kb.symmetric
    if ka.output == "diagonal":
        grid = ka.tiles()
    else:
        rows = math.ceil(ka.shape[0] / ka.tile)
        cols = math.ceil(ka.shape[1] / ka.tile)
        grid = [(i, j) for i in range(rows) for j in range(cols) if not both or i <= j]
    num = den = 0.0
    for i, j in grid:
        sel = (ka.rows(i),) if ka.output == "diagonal" else (ka.rows(i), ka.cols(j))
        xa = ka.kernel[sel].astype(np.float64, copy=False)
        xb = kb.kernel[sel].astype(np.float64, copy=False)
        w = 2.0 if both and ka.output == "trace" and i != j else 1.0
        num += w * float(np.sum((xa - xb) ** 2))
        den += w * float(np.sum(xa * xa))
    if den == 0.0:
        raise NtkscopeInputError(f"compare: {ka.path} is the zero kernel; the relative "
                                 "difference is undefined")
    return math.sqrt(num / den)


@dataclass(frozen=True, eq=False)
class KernelReduction:
    """Reductions of a stored kernel (:func:`reduce_kernel`); ``None``: not computed."""

    path: str
    shape: tuple[int, ...]
    output: str
    trace: float | None
    frobenius: float
    eigenvalues: Eigenvalues | None = None
    compare: str | None = None
    relative_difference: float | None = None
    seconds: float = 0.0
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every reduction (eigenvalues with their bounds, passes and convergence)."""
        eig = self.eigenvalues
        return {"path": self.path, "shape": list(self.shape), "output": self.output,
                "trace": self.trace, "frobenius": self.frobenius,
                "eigenvalues": None if eig is None else list(eig.values),
                "eigenvalue_bounds": None if eig is None else list(eig.bounds),
                "eigenvalue_passes": None if eig is None else eig.passes,
                "eigenvalues_converged": None if eig is None else eig.converged,
                "compare": self.compare, "relative_difference": self.relative_difference,
                "seconds": self.seconds}

    def title(self) -> str:
        """``Reductions of K.zarr (1000 x 1000 trace)``."""
        dims = " x ".join(str(v) for v in self.shape)
        return f"Reductions of {self.path} ({dims} {self.output})"

    def rows(self) -> list[tuple[Any, ...]]:
        """Trace, Frobenius norm, eigenvalues (with bounds), relative difference."""
        rows: list[tuple[Any, ...]] = []
        if self.trace is not None:
            rows.append(("trace", self.trace))
        rows.append(("Frobenius norm", self.frobenius))
        eig = self.eigenvalues
        if eig is not None:
            state = "converged" if eig.converged else \
                f"NOT converged to {eig.tol:g} (bounds below)"
            rows.append(("top eigenvalues", f"{len(eig.values)}, {eig.passes} passes, {state}"))
            for n, (v, bd) in enumerate(zip(eig.values, eig.bounds, strict=True), 1):
                rows.append((f"  lambda_{n}", v, f"+- {bd:.2g}"))
        if self.relative_difference is not None:
            rows.append((f"|K - K2|_F / |K|_F  (K2 = {self.compare})",
                         self.relative_difference))
        rows.append(("seconds", round(self.seconds, 3)))
        return rows


def reduce_kernel(kernel: KernelLike, *, top_eigenvalues: int = 0,
                  compare: KernelLike | None = None, tol: float = EIG_TOL,
                  max_iter: int = EIG_MAX_ITER, seed: int = 0) -> KernelReduction:
    """Trace (where defined), Frobenius norm, the ``top_eigenvalues`` largest eigenvalues (0:
    none) and, with ``compare``, ``|K - K2|_F / |K|_F`` of a stored kernel, tile by tile."""
    t0 = time.perf_counter()
    ks = _complete(kernel, "reduce")
    k = positive_int("top_eigenvalues", top_eigenvalues, minimum=0)
    trace = kernel_trace(ks) if ks.symmetric or ks.output == "diagonal" else None
    eig = _top(ks, k, tol=tol, max_iter=max_iter, seed=seed) if k else None
    other = None if compare is None else _complete(compare, "compare")
    rel = None if other is None else relative_difference(ks, other)
    return KernelReduction(ks.path, ks.shape, ks.output, trace, kernel_frobenius(ks), eig,
                           None if other is None else other.path, rel,
                           time.perf_counter() - t0, dict(ks.attrs))
