"""Spectral summary of one symmetric kernel matrix (``ntkscope ntk``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.validation import NtkscopeInputError, finite_array

__all__ = ["KernelSummary", "kernel_summary"]


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
        if self.out is not None:
            rows.append(("kernel saved to", self.out))
        if self.params is not None:
            rows.append(("parameters saved to", self.params))
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
