"""Result types of the theory commands: each owns its JSON, its title line and its rows.

* :func:`theory_summary`: per-layer mean-field quantities, the output NNGP, the expected NTK,
  ``kappa1, kappa2`` (Lemma 5.2), ``chi1`` at the fixed point and the phase
  (``ntkscope theory``).
* :func:`phase_summary`: ``chi1(q*)``, ``q*``, the phase and ``sw2_EOC`` (``ntkscope phase``).
* :func:`edge_of_chaos`: ``sw2`` with ``chi1(q*) = 1`` for a bias variance (``ntkscope eoc``).

Undefined values (no fixed point ``q*``) are ``None`` here and ``null`` in JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ntkscope.activations import Activation, get_activation
from ntkscope.theory.meanfield import MeanField, propagate
from ntkscope.theory.phases import chi1_fixed_point, eoc, phase_of
from ntkscope.validation import NtkscopeInputError, nonnegative, positive

__all__ = [
    "EdgeOfChaos",
    "PhaseSummary",
    "TheorySummary",
    "edge_of_chaos",
    "phase_summary",
    "theory_summary",
]


def _opt(value: Any) -> float | None:
    """A float, or ``None`` for NaN (an undefined quantity)."""
    f = float(value)
    return None if math.isnan(f) else f


def _g(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class PhaseSummary:
    """``chi1 = sw2 E[phi'(sqrt(q*) z)^2]`` at the stable fixed point ``q*`` of the variance
    map, the phase (ordered if ``chi1 < 1``, chaotic if ``> 1``; CONVENTIONS section 5) and
    the edge-of-chaos ``sw2`` at this ``sb2``."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    chi1: float | None
    q_star: float | None
    phase: str
    sigma_w2_eoc: float | None

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``ntkscope phase --json``."""
        return {"chi1": self.chi1, "q_star": self.q_star, "phase": self.phase,
                "sigma_w2_eoc": self.sigma_w2_eoc}

    def title(self) -> str:
        return (f"ntkscope phase: {self.activation}, sw2={_g(self.sigma_w2)}, "
                f"sb2={_g(self.sigma_b2)}")

    def rows(self) -> list[tuple[str, Any]]:
        return list(self.to_dict().items())


def phase_summary(activation: str | Activation, sigma_w2: float, sigma_b2: float) -> PhaseSummary:
    """The :class:`PhaseSummary` of one initialization ``(sw2, sb2)``."""
    act = get_activation(activation)
    sw2 = float(positive("sigma_w2", sigma_w2))
    sb2 = float(nonnegative("sigma_b2", sigma_b2))
    chi, q_star = chi1_fixed_point(act, sw2, sb2)
    sw2_eoc, _ = eoc(act, sb2)
    return PhaseSummary(act.name, sw2, sb2, _opt(chi), _opt(q_star), str(phase_of(chi)),
                        _opt(sw2_eoc))


@dataclass(frozen=True)
class EdgeOfChaos:
    """The edge of chaos at one ``sb2``: ``sw2`` with ``chi1(q*) = 1`` and its ``q*``."""

    activation: str
    sigma_b2: float
    sigma_w2: float
    q_star: float | None

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``ntkscope eoc --json``."""
        return {"sigma_w2": self.sigma_w2, "q_star": self.q_star}

    def title(self) -> str:
        return f"ntkscope eoc: {self.activation}, sb2={_g(self.sigma_b2)}"

    def rows(self) -> list[tuple[str, Any]]:
        return list(self.to_dict().items())


def edge_of_chaos(activation: str | Activation, sigma_b2: float) -> EdgeOfChaos:
    """The :class:`EdgeOfChaos` (ReLU: ``sw2 = 2`` for every ``sb2``, ``q*`` undefined).

    Raises:
        NtkscopeInputError: no edge of chaos exists for this activation and ``sb2``.
    """
    act = get_activation(activation)
    sb2 = float(nonnegative("sigma_b2", sigma_b2))
    sw2, q_star = eoc(act, sb2)
    if math.isnan(sw2):
        raise NtkscopeInputError(f"activation: no edge of chaos found for {act.name} at "
                                 f"sb2={sb2:g}")
    return EdgeOfChaos(act.name, sb2, float(sw2), _opt(q_star))


# Columns of the per-layer table and the scalar rows of ``ntkscope theory``, in print order.
LAYER_COLUMNS = ("l", "q", "q_sr", "c", "p", "p_sr", "chi1")
_THEORY_ROWS = ("output_var", "output_cov", "ntk_mean_diag", "ntk_mean_offdiag", "kappa1",
                "kappa2", "kappa_ratio", "chi1_fixed_point", "q_star", "phase")


@dataclass(frozen=True)
class TheorySummary:
    """Mean-field theory of one network and input pair (paper Section 2, Lemma 5.2).

    Attributes:
        mf: the :class:`MeanField` of :func:`propagate`.
        phase: the :class:`PhaseSummary` of ``(sw2, sb2)`` (fixed point, phase).
        sigma_w2, sigma_b2, q0, c0: the inputs of the computation.
    """

    mf: MeanField
    phase: PhaseSummary
    sigma_w2: float
    sigma_b2: float
    q0: float
    c0: float

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``ntkscope theory --json`` (``layers``: one object per hidden layer)."""
        mf = self.mf
        return {
            "activation": mf.activation,
            "sigma_w2": self.sigma_w2,
            "sigma_b2": self.sigma_b2,
            "depth": mf.depth,
            "width": mf.widths[0] if len(set(mf.widths)) == 1 else list(mf.widths),
            "input_dim": mf.input_dim,
            "q0": self.q0,
            "c0": self.c0,
            "layers": mf.layer_table(),
            "ntk_mean_diag": float(mf.ntk_mean_diag),
            "ntk_mean_offdiag": float(mf.ntk_mean_offdiag),
            "kappa1": float(mf.kappa1),
            "kappa2": float(mf.kappa2),
            "kappa_ratio": float(mf.kappa_ratio),
            "output_var": float(mf.output_var),
            "output_cov": float(mf.output_cov),
            "chi1_fixed_point": self.phase.chi1,
            "q_star": self.phase.q_star,
            "phase": self.phase.phase,
        }

    def title(self) -> str:
        d = self.to_dict()
        return (f"ntkscope theory: {d['activation']}, sw2={self.sigma_w2:.10g}, "
                f"sb2={self.sigma_b2:.10g}, L={d['depth']}, M={d['width']}, "
                f"M0={d['input_dim']}, q0={self.q0:.10g}, c0={self.c0:.10g}")

    def table(self) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """The per-layer table: :data:`LAYER_COLUMNS` and one row per hidden layer."""
        return LAYER_COLUMNS, [tuple(r[c] for c in LAYER_COLUMNS) for r in self.mf.layer_table()]

    def rows(self) -> list[tuple[str, Any]]:
        d = self.to_dict()
        return [(k, d[k]) for k in _THEORY_ROWS]


def theory_summary(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int,
    input_dim: int | None = None,
    q0: float = 1.0,
    c0: float = 0.0,
) -> TheorySummary:
    """:func:`propagate` for inputs with ``|x|^2/M0 = q0`` and ``x.x'/M0 = c0`` plus the phase.

    ``input_dim`` defaults to the width (the theory's ``M0``).
    """
    mf = propagate(activation, sigma_w2, sigma_b2, depth, width, input_dim, q0=q0, c0=c0)
    phase = phase_summary(activation, sigma_w2, sigma_b2)
    return TheorySummary(mf, phase, phase.sigma_w2, phase.sigma_b2, float(q0), float(c0))
