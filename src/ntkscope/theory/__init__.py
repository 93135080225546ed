"""Mean-field theory and the infinite-width NTK (NumPy/SciPy only; CONVENTIONS sections 4-5).

* :func:`propagate`: per-layer ``q, q_sr, c, qhat, qhat_sr, p, p_sr, chi1``, the output NNGP,
  the expected NTK at finite widths and ``kappa1, kappa2`` (paper Section 2, Lemma 5.2).
* :func:`kappa_by_depth`: ``kappa1, kappa2`` for every depth at once (Figures 5-6).
* :func:`fixed_point`, :func:`chi1_fixed_point`, :func:`phase_of`, :func:`eoc`,
  :func:`eoc_curve`: the ordered / chaotic phases and the edge of chaos.
* :func:`theorem_variance` (Theorem 5.3, :func:`theorem_formula`), :func:`expected_kernels`
  (``E Theta0`` and the NNGP on a data set), :func:`kernel_variance` (eq. 10 with ``E Theta0``)
  and :func:`data_covariances` (``q0``, ``c0`` of a data set): :mod:`ntkscope.theory.theorem`
  (paper Section 5).
* :mod:`ntkscope.theory.gaussian`: the Gaussian integrals (closed forms and quadrature).
"""

from ntkscope.theory.gaussian import Quadrature, bivariate, univariate
from ntkscope.theory.meanfield import MeanField, kappa_by_depth, propagate
from ntkscope.theory.phases import (
    CHAOTIC,
    EOC,
    ORDERED,
    chi1_at,
    chi1_fixed_point,
    eoc,
    eoc_curve,
    fixed_point,
    phase_of,
)
from ntkscope.theory.theorem import (
    KernelVariance,
    TheoremVariance,
    data_covariances,
    expected_kernels,
    kernel_variance,
    theorem_formula,
    theorem_variance,
)

__all__ = [
    "CHAOTIC",
    "EOC",
    "ORDERED",
    "KernelVariance",
    "MeanField",
    "Quadrature",
    "TheoremVariance",
    "bivariate",
    "chi1_at",
    "chi1_fixed_point",
    "data_covariances",
    "eoc",
    "eoc_curve",
    "expected_kernels",
    "fixed_point",
    "kappa_by_depth",
    "kernel_variance",
    "phase_of",
    "propagate",
    "theorem_formula",
    "theorem_variance",
    "univariate",
]
