"""Summaries of one kernel (``ntkscope ntk``): the spectrum of a symmetric matrix, or the
range of a kernel diagonal ``Theta(x_s, x_s)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.validation import NtkscopeInputError, finite_array

__all__ = ["DiagonalSummary", "KernelSummary", "diagonal_summary", "kernel_summary"]


@dataclass(frozen=True)
class KernelSummary:
    """Size, trace, extreme eigenvalues and ``kappa = lambda_max / lambda_min`` of a kernel.

    ``condition_number`` is ``None`` when ``lambda_min <= 0`` (singular to working precision).
    ``title``, ``out`` and ``params`` describe where it came from and where it was saved.
    """

    size: int
    trace: float
    eig_min: float
    eig_max: float
    condition_number: float | None
    seconds: float = 0.0
    heading: str = "Kernel"
    out: str | None = None
    params: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``ntkscope ntk --json``."""
        return {"size": self.size, "trace": self.trace, "eig_min": self.eig_min,
                "eig_max": self.eig_max, "condition_number": self.condition_number,
                "seconds": self.seconds, "out": self.out, "params": self.params, **self.extra}

    def title(self) -> str:
        return self.heading

    def rows(self) -> list[tuple[str, Any]]:
        cond = self.condition_number
        rows: list[tuple[str, Any]] = [
            ("size", f"{self.size} x {self.size}"),
            ("trace", self.trace),
            ("lambda_min", self.eig_min),
            ("lambda_max", self.eig_max),
            ("condition number", "inf (lambda_min <= 0)" if cond is None else cond),
        ]
        return rows + _saved_rows(self.out, self.params)


def _saved_rows(out: str | None, params: str | None) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    if out is not None:
        rows.append(("kernel saved to", out))
    if params is not None:
        rows.append(("parameters saved to", params))
    return rows


def kernel_summary(K: Any, **info: Any) -> KernelSummary:
    """The :class:`KernelSummary` of a symmetric ``S x S`` kernel ``K`` (eigenvalues by
    ``numpy.linalg.eigvalsh``, ``O(S^3)``); ``info`` fills the descriptive fields."""
    K = finite_array("K", K)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 1:
        raise NtkscopeInputError(f"K: expected a square matrix, got shape {K.shape}")
    eig = np.linalg.eigvalsh(K)
    lo, hi = float(eig[0]), float(eig[-1])
    return KernelSummary(int(K.shape[0]), float(np.trace(K)), lo, hi,
                         hi / lo if lo > 0 else None, **info)


@dataclass(frozen=True)
class DiagonalSummary:
    """Size, sum, mean and range of a kernel diagonal ``Theta(x_s, x_s)``, ``s = 1..S``
    (``trace`` is the trace of the ``S x S`` kernel, which is never formed)."""

    size: int
    trace: float
    mean: float
    min: float
    max: float
    seconds: float = 0.0
    heading: str = "Kernel diagonal"
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``ntkscope ntk --output diagonal --json``."""
        return {"size": self.size, "trace": self.trace, "mean": self.mean, "min": self.min,
                "max": self.max, "seconds": self.seconds, "out": self.out, **self.extra}

    def title(self) -> str:
        return self.heading

    def rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("size", f"{self.size} (diagonal)"),
            ("trace", self.trace),
            ("mean", self.mean),
            ("min", self.min),
            ("max", self.max),
        ]
        return rows + _saved_rows(self.out, None)


def diagonal_summary(d: Any, **info: Any) -> DiagonalSummary:
    """The :class:`DiagonalSummary` of a kernel diagonal ``d`` (``S`` finite values)."""
    d = finite_array("d", d)
    if d.ndim != 1 or d.shape[0] < 1:
        raise NtkscopeInputError(f"d: expected a non-empty vector, got shape {d.shape}")
    return DiagonalSummary(int(d.shape[0]), float(d.sum()), float(d.mean()), float(d.min()),
                           float(d.max()), **info)
