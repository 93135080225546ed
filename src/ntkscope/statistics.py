"""Statistics of ntkscope: the moment ratio ``R``, its bootstraps and its tail diagnostic.

NTK randomness at initialization is summarised by (paper Section 3; Hanin & Nica)

    R = E[Theta0(x, x)^2] / E[Theta0(x, x)]^2,

estimated from ``N`` draws ``t_i = Theta0(x, x)`` by :func:`second_moment_ratio` with a
bootstrap interval (:func:`ratio_bootstrap_ci`). ``Theta0`` is right-skewed, increasingly with
``L/M``; then ``mean(t^2)`` is carried by a few draws and both the estimate and its interval
are too low. The diagnostic is the effective sample size of the ``Theta0^2`` weights
(Kish's ESS of the weights ``w_i = t_i^2``; :func:`tail_ess`)

    ESS = (sum_i t_i^2)^2 / sum_i t_i^4          (1 <= ESS <= N),

and the rule :func:`ratio_is_lower_bound`: below :data:`ntkscope.defaults.MIN_ESS` effective
draws (unless at least :data:`ntkscope.defaults.MIN_ESS_FRACTION` of the draws are effective:
a light tail) ``R`` is reported as a lower bound ``R >= x`` without an interval. The rule and the
experiment that sets the threshold: ``docs/ntk-variance.md`` (``scripts/ess_threshold.py``).

The relative standard error of ``mean(t^2)`` is ``sqrt(1/ESS_pop - 1/N)`` with
``ESS_pop = N E[t^2]^2 / E[t^4]``; the sample ESS estimates ``ESS_pop`` and, for a heavy tail
not yet seen in the draws, overestimates it.

Also here: the percentile bootstrap of the Monte Carlo variance of eq. 10's predictor
(:func:`bootstrap_variance_ci`, used by :func:`ntkscope.generalization.monte_carlo_variance`).
Everything is NumPy (no torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntkscope.defaults import MIN_ESS, MIN_ESS_FRACTION
from ntkscope.validation import NtkscopeInputError, finite_array, positive, positive_int

__all__ = [
    "BOOTSTRAP_METHODS",
    "bca_levels",
    "bootstrap_variance_ci",
    "check_confidence",
    "format_ess",
    "format_ratio",
    "ratio_bootstrap_ci",
    "ratio_is_lower_bound",
    "second_moment_ratio",
    "tail_ess",
]

#: Interval kinds of :func:`ratio_bootstrap_ci`.
BOOTSTRAP_METHODS = ("bca", "percentile")
# Bootstrap resamples are drawn in blocks of at most this many indices.
_BOOTSTRAP_BLOCK = 2**22


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float in ``(0, 1)``.

    Raises:
        NtkscopeInputError: not a single finite number in ``(0, 1)``.
    """
    arr = positive("confidence", confidence)
    if arr.ndim != 0:
        raise NtkscopeInputError(f"confidence: expected a single number, got shape {arr.shape}")
    conf = float(arr)
    if conf >= 1.0:
        raise NtkscopeInputError(f"confidence: must be < 1, got {conf:g}")
    return conf


def _positive_samples(samples: Any) -> np.ndarray:
    """Finite draws divided by their largest magnitude (every statistic here is scale-free)."""
    x = finite_array("samples", samples).ravel()
    top = float(np.max(np.abs(x)))
    if top == 0.0:
        raise NtkscopeInputError("samples: all samples are 0; the ratio is undefined")
    return x / top


def second_moment_ratio(samples: np.ndarray) -> float:
    """``R = mean(x^2) / mean(x)^2`` of positive samples (scale-free: any common unit works)."""
    x = _positive_samples(samples)
    return float(np.mean(x * x) / np.mean(x) ** 2)


def tail_ess(samples: np.ndarray) -> float:
    """Effective sample size of the ``x^2`` weights: ``(sum x^2)^2 / sum x^4`` (in ``[1, N]``).

    Computed from ``x / max|x|`` (every term ``<= 1``), so it is exact for draws of any scale;
    pass ``exp(log x - max log x)`` for values beyond the float64 range.

    ``ESS = N`` for equal draws; ``ESS ~ 1`` when one draw carries ``sum x^2``. Example (ReLU,
    ``(sw2, sb2) = (2, 0)``, ``M = 10``, ``M0 = 784``, seed 0, low-rank sampler): 32,132 of
    100,000 draws at ``L/M = 0.1``, 2.0 of 1,000 at ``L/M = 2``.
    """
    x = _positive_samples(samples)
    w = x * x
    return float(np.sum(w) ** 2 / np.sum(w * w))


def ratio_is_lower_bound(ess: float, inits: int, min_ess: float = MIN_ESS,
                         min_fraction: float = MIN_ESS_FRACTION) -> bool:
    """``True`` when ``R`` must be reported as a lower bound: ``ess < min_ess`` effective draws
    of ``Theta0^2`` (:func:`tail_ess`) out of ``inits``, unless ``ess >= min_fraction * inits``
    (defaults :data:`ntkscope.defaults.MIN_ESS`, :data:`ntkscope.defaults.MIN_ESS_FRACTION`).

    Below the threshold the sample ``R`` is typically too low and its bootstrap interval too
    narrow; ``R >= estimate`` is what the draws support (the measured coverage:
    ``docs/ntk-variance.md``). More draws raise the ESS (``ntk_variance(..., target_ess=)``).
    A light tail (``ess >= min_fraction * inits``: no draw dominates ``sum t^2``) keeps its
    interval at any ``inits``.
    """
    return bool(ess < min_ess and ess < min_fraction * inits)


def ratio_bootstrap_ci(
    samples: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    method: str = "bca",
) -> tuple[float, float]:
    """Bootstrap confidence interval for ``R = mean(x^2)/mean(x)^2``.

    ``resamples`` resamples of size ``N`` with replacement, drawn with
    ``default_rng(SeedSequence([seed, N]))`` and vectorised in blocks, give ratios ``R*_b``.

    * ``"percentile"``: the ``(1 -+ confidence)/2`` quantiles of ``R*``.
    * ``"bca"`` (default; Efron's bias-corrected and accelerated interval): quantiles at
      ``Phi(z0 + (z0 + z_a) / (1 - acc (z0 + z_a)))`` with ``z0 = Phi^-1(P(R* < R))`` and the
      acceleration ``acc = sum d_i^3 / (6 (sum d_i^2)^1.5)`` from the jackknife ratios
      ``R_(i)`` (``d_i = mean R_(.) - R_(i)``, computed in ``O(N)`` from leave-one-out sums).

    The draws of a right-skewed ``Theta0`` make every bootstrap interval for ``R`` undercover
    somewhat at small ``N`` (``tests/test_sampling.py`` measures BCa at ~92% for a nominal
    95% with ``N = 1000`` and a ReLU network at ``L/M = 0.3``); BCa is the closer of the two.
    Below :data:`ntkscope.defaults.MIN_ESS` effective draws (:func:`tail_ess`) the interval is
    not trustworthy at all (``docs/ntk-variance.md``).
    """
    x = finite_array("samples", samples).ravel()
    if x.size < 2:
        raise NtkscopeInputError(f"samples: need at least 2 samples, got {x.size}")
    conf = check_confidence(confidence)
    resamples = positive_int("resamples", resamples, minimum=10)
    seed = positive_int("seed", seed, minimum=0)
    if method not in BOOTSTRAP_METHODS:
        raise NtkscopeInputError(f"method: expected 'bca' or 'percentile', got {method!r}")
    x = _positive_samples(x)
    n = x.size
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    ratios = np.empty(resamples)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    for lo in range(0, resamples, block):
        hi = min(resamples, lo + block)
        xs = x[rng.integers(0, n, size=(hi - lo, n))]
        ratios[lo:hi] = np.mean(xs * xs, axis=1) / np.mean(xs, axis=1) ** 2
    alphas = np.array([(1.0 - conf) / 2.0, (1.0 + conf) / 2.0])
    if method == "bca":
        alphas = bca_levels(x, ratios, alphas)
    low, high = np.quantile(ratios, alphas)
    return float(low), float(high)


def bca_levels(x: np.ndarray, ratios: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """BCa-adjusted quantile levels for ``R`` of the draws ``x`` given the bootstrap ratios
    (formula: :func:`ratio_bootstrap_ci`)."""
    import scipy.special

    n, R = x.size, float(np.mean(x * x) / np.mean(x) ** 2)
    frac = np.clip(np.mean(ratios < R), 1.0 / (ratios.size + 1), ratios.size / (ratios.size + 1))
    z0 = float(scipy.special.ndtri(frac))
    jack = ((np.sum(x * x) - x * x) / (n - 1)) / ((np.sum(x) - x) / (n - 1)) ** 2
    d = np.mean(jack) - jack
    denom = 6.0 * float(np.sum(d * d)) ** 1.5
    acc = float(np.sum(d**3)) / denom if denom > 0 else 0.0
    z = scipy.special.ndtri(alphas)
    return scipy.special.ndtr(z0 + (z0 + z) / (1.0 - acc * (z0 + z)))


def bootstrap_variance_ci(
    f: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval for ``mean_{g,j} var_i f[g, i, j]`` resampling ``i`` per ``g``.

    ``f`` is ``(G, N, T)``: predictions of ``N`` initializations on ``T`` points for ``G``
    training sets (eq. 10, :func:`ntkscope.generalization.monte_carlo_variance`). Resamples
    come from ``default_rng(SeedSequence([seed, N, G, 0xB007]))``.
    """
    G, N, _ = f.shape
    rng = np.random.default_rng(np.random.SeedSequence([seed, N, G, 0xB007]))
    stats = np.zeros(resamples)
    block = max(1, _BOOTSTRAP_BLOCK // max(1, f[0].size))
    for g in range(G):
        for lo in range(0, resamples, block):
            hi = min(resamples, lo + block)
            idx = rng.integers(0, N, size=(hi - lo, N))
            stats[lo:hi] += np.mean(np.var(f[g][idx], axis=1, ddof=1), axis=1)
    stats /= G
    low, high = np.quantile(stats, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def format_ess(ess: float, inits: int) -> str:
    """``25,535 of 100,000`` (one decimal below 10: ``1.7 of 1,000``)."""
    e = f"{ess:,.0f}" if ess >= 10 else f"{ess:.1f}"
    return f"{e} of {inits:,}"


def format_ratio(ratio: float, ci: tuple[float, float] | None, ess: float, inits: int,
                 digits: int = 4) -> str:
    """``R`` for people: with its interval, ``1.234 [1.2, 1.27]``, or, where ``ci`` is ``None``
    (a lower bound), ``R >= 1.234 (lower bound: heavy tail, ESS 12 of 1,000)``. Every place
    that shows ``R`` (CLI tables, ``check`` reasons, the HTML report) uses this."""
    if ci is None:
        return f"R >= {ratio:.{digits}g} (lower bound: heavy tail, ESS {format_ess(ess, inits)})"
    return f"{ratio:.{digits}g} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
