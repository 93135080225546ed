"""NTK randomness at initialization: the two samplers, statistics and inputs (ntkscope.sampling).

Statistical tests use fixed seeds and thresholds that a correct sampler passes with a wide
margin (KS p > 1e-3, |z| < 4.5); ``test_ks_has_power`` shows the same tests reject a sampler
that is only slightly wrong.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from ntkscope import NetworkSpec, NtkscopeInputError
from ntkscope.datasets import gaussian_sphere, load_inputs
from ntkscope.defaults import MIN_ESS, MIN_ESS_FRACTION
from ntkscope.networks import NtkscopeRangeError
from ntkscope.sampling import NTKSamples, hanin_nica, ntk_variance, sample_ntk
from ntkscope.statistics import (
    ratio_bootstrap_ci,
    ratio_is_lower_bound,
    second_moment_ratio,
    tail_ess,
)
from ntkscope.theory import propagate

# (activation, sw2, sb2): one ordered and one chaotic initialization per activation.
PHASES = [
    ("relu", 1.5, 0.1),
    ("relu", 4.0, 0.1),
    ("tanh", 0.8, 0.1),
    ("tanh", 3.0, 0.1),
    ("erf", 0.5, 0.2),
    ("erf", 3.0, 0.2),
]
KS_P = 1e-3
Z_MAX = 4.5


def _inputs(S: int = 3, dim: int = 6, seed: int = 1) -> np.ndarray:
    return gaussian_sphere(S, dim, seed)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    # Round to 9 decimals so that atoms (e.g. Theta = 1 when every unit is dead) computed with
    # different rounding by the two samplers coincide.
    return float(scipy.stats.ks_2samp(np.round(a, 9), np.round(b, 9)).pvalue)


def _z(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.mean() - b.mean()) / math.sqrt(a.var() / a.size + b.var() / b.size))


# ---------------------------------------------------------------------------------------------
# The two samplers draw the same law


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sw2", "sb2"), PHASES)
def test_lowrank_and_dense_same_law(activation: str, sw2: float, sb2: float) -> None:
    X = _inputs()
    N, L, M = 1500, 4, 8
    low = sample_ntk(NetworkSpec(activation, sw2, sb2, L, M), X, N, seed=1, method="lowrank")
    dense = sample_ntk(NetworkSpec(activation, sw2, sb2, L, M), X, N, seed=2, method="dense")
    tl, td = low.theta, dense.theta
    assert tl.shape == td.shape == (N, 3, 3)
    assert np.allclose(tl, tl.transpose(0, 2, 1))
    assert _ks(tl[:, 0, 0], td[:, 0, 0]) > KS_P
    assert _ks(low.f[:, 1], dense.f[:, 1]) > KS_P
    for i, j in ((0, 1), (1, 2)):
        assert abs(_z(tl[:, i, j], td[:, i, j])) < Z_MAX


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_same_law_more_inputs_than_units(activation: str) -> None:
    """S = 4 inputs > M0 = 3 and a hidden width 2 < S: rank-deficient bases and factors."""
    X = gaussian_sphere(4, 3, seed=2)
    net = NetworkSpec(activation, 2.0, 0.2, 3, [5, 2, 6])
    low = sample_ntk(net, X, 1500, seed=1)
    dense = sample_ntk(net, X, 1500, seed=2, method="dense")
    for i, j in ((0, 0), (3, 3)):
        assert _ks(low.theta[:, i, j], dense.theta[:, i, j]) > KS_P
    assert abs(_z(low.theta[:, 1, 2], dense.theta[:, 1, 2])) < Z_MAX
    assert _ks(low.f[:, 2], dense.f[:, 2]) > KS_P


def _ratio_se(t: np.ndarray) -> tuple[float, float]:
    """``R = mean(t^2)/mean(t)^2`` and its delta-method standard error: the influence function
    ``psi(t) = t^2/m1^2 - 2 m2 t/m1^3`` gives ``se = std(psi)/sqrt(N)`` (valid when the ESS of
    the ``t^2`` weights is large, which the callers assert first)."""
    m1, m2 = t.mean(), np.mean(t * t)
    psi = t * t / m1**2 - 2.0 * m2 * t / m1**3
    return float(m2 / m1**2), float(psi.std(ddof=1) / math.sqrt(t.size))


# (activation, sw2, sb2, widths, S, M0): S = 3 inputs below the widths; S = 5 inputs above
# M0 = 3 and the hidden width 4 (rank-deficient bases Q and factors B of the low-rank sampler).
LAW_CASES = [
    ("relu", 1.5, 0.2, (8, 8, 8), 3, 6),
    ("tanh", 2.5, 0.1, (8, 8, 8), 3, 6),
    ("erf", 1.2, 0.3, (8, 8, 8), 3, 6),
    ("tanh", 2.0, 0.2, (6, 4, 6), 5, 3),
    ("relu", 1.2, 0.2, (6, 4, 6), 5, 3),
]


@pytest.mark.parametrize(("activation", "sw2", "sb2", "widths", "S", "m0"), LAW_CASES)
def test_lowrank_equals_dense_law(activation: str, sw2: float, sb2: float,
                                  widths: tuple[int, ...], S: int, m0: int) -> None:
    """The low-rank sampler and dense weights + empirical NTK draw the same law of
    ``(Theta0(X), f0(X))``, within statistical error (independent seeds, 4000 draws each):

    * every mean ``E Theta0(x_i, x_j)`` and ``E f0(x_i)^2`` agree within 4.5 standard errors
      of the difference (two-sample z), and each ``mean f0(x_i)`` is within 4.5 standard
      errors of ``E f0 = 0``;
    * ``R`` of each diagonal ``Theta0(x_i, x_i)`` agrees within 4.5 delta-method standard
      errors wherever both samples have ESS >= MIN_ESS (where that error estimate is valid;
      at least one diagonal per case, all of them in the S < M cases);
    * ``f0(x_i)`` and ``Theta0(x_0, x_0)`` pass a two-sample KS test at ``p > 1e-3``.

    With 5 cases x ~25 statistics a correct sampler fails one of these with probability
    ~1e-3. Power (measured on the tanh case): dense draws with ``sw2`` 15% off give a largest
    ``|z|`` of 8.8 on the means of ``Theta0`` (5% off: 4.2); see also ``test_ks_has_power``.
    """
    X = gaussian_sphere(S, m0, seed=2)
    net = NetworkSpec(activation, sw2, sb2, len(widths), list(widths))
    N = 4000
    low = sample_ntk(net, X, N, seed=11, method="lowrank")
    dense = sample_ntk(net, X, N, seed=12, method="dense")
    tl, td, fl, fd = low.theta, dense.theta, low.f, dense.f
    assert tl.shape == td.shape == (N, S, S) and fl.shape == fd.shape == (N, S)
    compared = 0
    for i in range(S):
        for j in range(i, S):
            assert abs(_z(tl[:, i, j], td[:, i, j])) < Z_MAX, (i, j)
        a, b = tl[:, i, i], td[:, i, i]
        if min(tail_ess(a), tail_ess(b)) >= MIN_ESS:
            (ra, sa), (rb, sb) = _ratio_se(a), _ratio_se(b)
            assert abs(ra - rb) < Z_MAX * math.hypot(sa, sb), (i, ra, rb)
            compared += 1
        assert abs(_z(fl[:, i] ** 2, fd[:, i] ** 2)) < Z_MAX
        for f in (fl[:, i], fd[:, i]):
            assert abs(f.mean()) < Z_MAX * f.std() / math.sqrt(N)
        assert _ks(fl[:, i], fd[:, i]) > KS_P
    assert _ks(tl[:, 0, 0], td[:, 0, 0]) > KS_P
    assert compared == S if S < min(widths) else compared >= 1


@pytest.mark.slow
def test_ks_has_power() -> None:
    """A sampler with sw2 off by 15% (or without the backward term) is rejected."""
    X = _inputs()
    dense = sample_ntk(NetworkSpec("tanh", 3.0, 0.1, 4, 8), X, 1500, seed=2, method="dense")
    wrong = sample_ntk(NetworkSpec("tanh", 3.45, 0.1, 4, 8), X, 1500, seed=1, method="lowrank")
    assert _ks(wrong.theta[:, 0, 0], dense.theta[:, 0, 0]) < KS_P


def test_lowrank_equals_dense_when_deterministic() -> None:
    """With sw2 -> 0 only the biases matter: both samplers give the same exact kernel."""
    X = _inputs()
    for method in ("lowrank", "dense"):
        s = sample_ntk(NetworkSpec("relu", 1e-30, 1.0, 2, 5), X, 3, method=method)
        # Theta = sum_l |delta^l|^2 (...) with delta^l ~ 0 below the readout: only the readout
        # layer contributes, Theta(x, x') = <x^L(x), x^L(x')> + 1 = |relu(b^L)|^2 + 1.
        assert np.allclose(s.theta - s.theta[:, :1, :1], 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Theory


@pytest.mark.slow
@pytest.mark.parametrize(
    ("activation", "sw2", "sb2", "L", "M"),
    [("relu", 2.0, 0.5, 5, 8), ("relu", 3.0, 0.0, 6, 16), ("tanh", 1.5, 0.3, 3, 64),
     ("erf", 4.0, 0.3, 3, 64)],
)
def test_mean_matches_theory(activation: str, sw2: float, sb2: float, L: int, M: int) -> None:
    """Monte Carlo mean of Theta0(x,x) within 4 standard errors of ntk_mean_diag.

    ReLU's expectation is exact at any width; tanh/erf have an O(1/M) finite-width bias,
    below a standard error at M = 64 with 4000 draws.
    """
    X = np.ones((1, 10))
    s = sample_ntk(NetworkSpec(activation, sw2, sb2, L, M), X, 4000, seed=3, diagonal=True)
    th = s.theta[:, 0]
    expected = float(propagate(activation, sw2, sb2, L, width=M, input_dim=10).ntk_mean_diag)
    se = th.std(ddof=1) / math.sqrt(th.size)
    assert abs(th.mean() - expected) < 4 * se


def test_ntk_variance_result() -> None:
    r = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 4, 16, 20), inits=300, seed=5)
    d = r.to_dict()
    assert list(d) == ["ratio", "ratio_ci", "ratio_is_lower_bound", "ess", "mean", "std",
                       "theory_mean", "inits", "method", "seconds", "hanin_nica"]
    # L/M = 0.25 from 300 draws: ESS ~ 67 < MIN_ESS, so R is only a lower bound, no interval
    assert d["ratio"] >= 1.0 and d["ratio_is_lower_bound"] is True and d["ratio_ci"] is None
    assert d["ess"] == pytest.approx(tail_ess(r.theta)) and 1.0 <= d["ess"] < MIN_ESS
    # drawing on until the ESS reaches MIN_ESS gives the interval
    g = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 4, 16, 20), inits=300, seed=5,
                     target_ess=MIN_ESS).to_dict()
    assert g["inits"] > 300 and g["ess"] >= MIN_ESS and not g["ratio_is_lower_bound"]
    assert g["ratio"] >= 1.0 and g["ratio_ci"][0] <= g["ratio"] <= g["ratio_ci"][1]
    assert d["hanin_nica"] == pytest.approx(math.exp(5 * 4 / 16))
    assert d["inits"] == 300 and d["method"] == "lowrank"
    assert r.theta.shape == r.f.shape == (300,)
    assert r.ratio == pytest.approx(np.mean(r.theta**2) / np.mean(r.theta) ** 2)
    assert r.mean == pytest.approx(r.theta.mean()) and r.std == pytest.approx(r.theta.std(ddof=1))
    assert r.theory_mean == pytest.approx(
        float(propagate("relu", 2.0, 0.0, 4, width=16, input_dim=20).ntk_mean_diag))
    t = ntk_variance(NetworkSpec("tanh", 2.0, 0.1, 3, 16, 20), inits=50).to_dict()
    assert "hanin_nica" not in t
    assert "theta" in r.to_dict(samples=True)


# ---------------------------------------------------------------------------------------------
# Reproducibility and overflow


@pytest.mark.parametrize("method", ["lowrank", "dense"])
def test_reproducible_under_chunking(method: str) -> None:
    X = _inputs(2, 4)
    args = (NetworkSpec("tanh", 2.0, 0.3, 3, 6), X)
    whole = sample_ntk(*args, 7, seed=5, method=method)
    chunked = sample_ntk(*args, 7, seed=5, method=method, chunk=3)
    tail = sample_ntk(*args, 3, seed=5, method=method, start=4)
    other = sample_ntk(*args, 7, seed=6, method=method)
    assert np.array_equal(whole.theta, chunked.theta) and np.array_equal(whole.f, chunked.f)
    assert np.array_equal(whole.theta[4:], tail.theta)
    assert not np.allclose(whole.theta, other.theta)
    diag = sample_ntk(*args, 7, seed=5, method=method, diagonal=True)
    assert np.allclose(diag.theta, np.diagonal(whole.theta, axis1=1, axis2=2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_deep_chaotic_relu_does_not_overflow(dtype: torch.dtype) -> None:
    """ReLU sw2 = 4, depth 200: Theta0 ~ 2^200 M (beyond float32) stays finite and right."""
    X = np.ones((1, 16))
    s = sample_ntk(NetworkSpec("relu", 4.0, 0.0, 200, 32), X, 64, seed=0, dtype=dtype,
                   diagonal=True)
    th = s.theta
    assert np.all(np.isfinite(th)) and np.all(th > 0)
    log_theory = math.log(float(
        propagate("relu", 4.0, 0.0, 200, width=32, input_dim=16).ntk_mean_diag))
    # log Theta fluctuates by O(sqrt(L/M)) around log E Theta (minus a drift ~ L/M)
    assert np.all(np.abs(np.log(th[:, 0]) - log_theory) < 60.0)
    assert np.all(np.isfinite(s.f))


def test_beyond_float64_keeps_log_scale() -> None:
    s = sample_ntk(NetworkSpec("relu", 4.0, 0.0, 1200, 32), np.ones((1, 8)), 4, diagonal=True)
    log_theta = s.log_theta_diag()[:, 0]
    assert np.all(np.isfinite(log_theta)) and np.all(log_theta > 700)  # ~ 1200 log 2
    with pytest.raises(NtkscopeRangeError):
        _ = s.theta
    with pytest.raises(NtkscopeInputError, match="float64"):
        ntk_variance(NetworkSpec("relu", 4.0, 0.0, 1200, 32, 8), inits=4)


def test_dense_overflow_is_an_error_not_inf() -> None:
    with pytest.raises(NtkscopeRangeError):
        sample_ntk(NetworkSpec("relu", 4.0, 0.0, 1500, 64), np.ones((1, 4)), 2, method="dense")


# ---------------------------------------------------------------------------------------------
# Statistics


def test_second_moment_ratio() -> None:
    assert second_moment_ratio(np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0)
    assert second_moment_ratio(np.array([1.0, 3.0])) == pytest.approx(10 / 2 / 4)
    assert second_moment_ratio(np.array([1e300, 3e300])) == pytest.approx(1.25)


def test_bootstrap_ci_seeded_and_ordered() -> None:
    x = np.random.default_rng(0).lognormal(0.0, 0.5, 500)
    lo, hi = ratio_bootstrap_ci(x, seed=1)
    assert lo < second_moment_ratio(x) < hi
    assert (lo, hi) == ratio_bootstrap_ci(x, seed=1)
    assert (lo, hi) != ratio_bootstrap_ci(x, seed=2)
    lo99, hi99 = ratio_bootstrap_ci(x, confidence=0.99, seed=1)
    assert lo99 < lo and hi99 > hi


@pytest.mark.slow
def test_bootstrap_ci_covers() -> None:
    """95% BCa intervals from 200 replicates of 1000 draws cover the pooled R ~95% of the time."""
    reps, n = 200, 1000
    s = sample_ntk(NetworkSpec("relu", 2.0, 0.1, 3, 10), np.ones((1, 8)), reps * n, seed=9,
                   diagonal=True)
    theta = s.theta[:, 0].reshape(reps, n)
    truth = second_moment_ratio(theta.ravel())  # standard error ~ 1/14 of a replicate's
    covered = sum(lo <= truth <= hi for lo, hi in
                  (ratio_bootstrap_ci(t, resamples=500, seed=i) for i, t in enumerate(theta)))
    # Binomial(200, 0.95) lies in [176, 198] with probability > 0.999. Bootstrap intervals for
    # a moment ratio of right-skewed draws undercover somewhat (BCa measured ~0.92 here, the
    # plain percentile interval ~0.90 and only ~0.75 for n = 200), hence the lower bound 0.85.
    assert 0.85 * reps <= covered <= 0.995 * reps


def test_tail_ess_is_the_formula() -> None:
    """ESS = (sum t^2)^2 / sum t^4: N for equal draws, ~1 when one draw dominates."""
    t = np.random.default_rng(3).lognormal(0.0, 1.0, 5000)
    assert tail_ess(t) == pytest.approx(np.sum(t**2) ** 2 / np.sum(t**4), rel=1e-12)
    assert tail_ess(np.full(7, 3.0)) == pytest.approx(7.0)
    assert tail_ess(np.array([1.0, 1e-3, 1e-3])) == pytest.approx(1.0, abs=1e-5)
    assert 1.0 <= tail_ess(t) <= t.size
    # lognormal log-variance s^2: E[t^2]^2/E[t^4] = exp(-4 s^2), so ESS/N ~ exp(-4) = 0.018
    assert 0.005 < tail_ess(t) / t.size < 0.05
    with pytest.raises(NtkscopeInputError, match="samples"):
        tail_ess(np.array([1.0, np.inf]))
    with pytest.raises(NtkscopeInputError, match="samples"):
        tail_ess(np.zeros(3))


def test_tail_ess_is_scale_free() -> None:
    """Computed from t / max t: the same for any unit, and from log-values beyond float64."""
    t = np.random.default_rng(4).lognormal(0.0, 0.7, 1000)
    ess = tail_ess(t)
    for c in (1e-300, 1e-150, 1e150, 1e300):
        assert tail_ess(c * t) == pytest.approx(ess, rel=1e-12)
    log_t = np.log(t) + 5000.0  # Theta0 ~ e^5000: only its logarithm is representable
    direct = math.exp(2 * scipy.special.logsumexp(2 * log_t) - scipy.special.logsumexp(4 * log_t))
    assert tail_ess(np.exp(log_t - log_t.max())) == pytest.approx(direct, rel=1e-10)
    assert direct == pytest.approx(ess, rel=1e-10)


def test_ratio_is_lower_bound_threshold() -> None:
    """ESS < MIN_ESS = 100 and ESS < N / 2 (docs/ntk-variance.md, "Heavy tails")."""
    assert (MIN_ESS, MIN_ESS_FRACTION) == (100.0, 0.5)
    assert ratio_is_lower_bound(MIN_ESS - 1e-9, 1000) and not ratio_is_lower_bound(MIN_ESS, 1000)
    assert ratio_is_lower_bound(2.0, 1000) and ratio_is_lower_bound(20.0, 50)
    assert not ratio_is_lower_bound(25.0, 50) and not ratio_is_lower_bound(7.9, 8)  # light tail
    assert ratio_is_lower_bound(5.0, 100, min_ess=10.0)
    assert not ratio_is_lower_bound(5.0, 100, min_ess=5.0)
    assert not ratio_is_lower_bound(5.0, 100, min_fraction=0.05)


def test_ntk_variance_lower_bound_switch() -> None:
    """A heavy tail (ReLU (2, 0), L/M = 2, the example of issue 11) gives R >= x, no interval;
    a light one (L/M = 0.05) an interval. Both report the ESS."""
    heavy = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 20, 10), inits=1000, seed=0)
    assert heavy.ess == pytest.approx(tail_ess(heavy.theta), rel=1e-9)
    assert heavy.ess < 10 and heavy.ratio_is_lower_bound and heavy.ratio_ci is None
    d = heavy.to_dict()
    assert d["ratio_ci"] is None and d["ratio_is_lower_bound"] is True and d["ess"] == heavy.ess
    assert json.loads(json.dumps(d))["ratio_ci"] is None
    assert heavy.ratio == pytest.approx(second_moment_ratio(heavy.theta))
    (key, text), *_ = heavy.rows()
    assert key.startswith("R = ") and text.startswith(f"R >= {heavy.ratio:.4g} (lower bound: heavy "
                                                     "tail, ESS ") and text.endswith("of 1,000)")
    assert not any("bootstrap CI" in k for k, _ in heavy.rows())
    light = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 1, 10), inits=1000, seed=0)
    assert MIN_ESS <= light.ess < 500 and not light.ratio_is_lower_bound
    assert light.ratio_ci is not None and light.ratio_ci[0] < light.ratio < light.ratio_ci[1]
    assert light.to_dict()["ratio_is_lower_bound"] is False
    assert any("bootstrap CI" in k for k, _ in light.rows())
    assert light.title() == ("NTK variance at initialization: relu, sw2=2, sb2=0, L=1, M=10, "
                             "M0=784")
    # the threshold is a parameter; the same draws give the same R either way
    forced = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 1, 10), inits=1000, min_ess=1e4)
    assert forced.ratio_is_lower_bound and forced.ratio == light.ratio and forced.ess == light.ess


def test_ntk_variance_target_ess_equals_one_big_draw() -> None:
    """Drawing in batches until the ESS target equals one draw of the final size, same seed."""
    net = NetworkSpec("relu", 2.0, 0.0, 5, 10, 30)
    grown = ntk_variance(net, inits=100, seed=3, target_ess=150, max_inits=50_000)
    assert grown.inits > 100 and grown.ess >= 150 and not grown.ratio_is_lower_bound
    once = ntk_variance(net, inits=grown.inits, seed=3)
    assert np.array_equal(grown.theta, once.theta) and np.array_equal(grown.f, once.f)
    assert (grown.ratio, grown.ratio_ci, grown.ess, grown.mean, grown.std) == (
        once.ratio, once.ratio_ci, once.ess, once.mean, once.std)
    # the budget is spent when the target is out of reach: exactly max_inits draws
    capped = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 20, 10, 30), inits=50, seed=1,
                          target_ess=400, max_inits=700)
    assert capped.inits == 700 and capped.ess < 400 and capped.ratio_is_lower_bound
    plain = ntk_variance(NetworkSpec("relu", 2.0, 0.0, 20, 10, 30), inits=700, seed=1)
    assert np.array_equal(capped.theta, plain.theta) and capped.ratio == plain.ratio
    # a target already met draws nothing more
    met = ntk_variance(net, inits=200, seed=3, target_ess=1.0)
    assert met.inits == 200


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"target_ess": 0}, "target_ess"),
    ({"target_ess": -5.0}, "target_ess"),
    ({"target_ess": math.nan}, "target_ess"),
    ({"target_ess": "many"}, "target_ess"),
    ({"target_ess": [10.0, 20.0]}, "target_ess"),
    ({"max_inits": 100}, "max_inits"),  # a budget without a target
    ({"target_ess": 10, "max_inits": 5}, "max_inits"),  # below inits
    ({"target_ess": 10, "max_inits": 2.5}, "max_inits"),
    ({"target_ess": 500, "max_inits": 400}, "target_ess"),  # ESS <= draws: unreachable
    ({"min_ess": 0}, "min_ess"),
    ({"min_ess": math.inf}, "min_ess"),
])
def test_ntk_variance_adaptive_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        ntk_variance(NetworkSpec("relu", 2.0, 0.0, 2, 4, 3), inits=10, **kwargs)


def test_hanin_nica() -> None:
    assert hanin_nica((10,) * 5) == pytest.approx(math.exp(2.5))
    assert hanin_nica((10, 20)) == pytest.approx(math.exp(5 * (0.1 + 0.05)))
    assert hanin_nica((1,) * 200) is None


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inits": 0}, "inits"),
        ({"method": "sparse"}, "method"),
        ({"device": "tpu"}, "device"),
        ({"X": np.array([[1.0, np.nan]])}, "X"),
        ({"X": np.ones(4)}, "X"),
        ({"X": np.ones((2, 3, 4))}, "X"),
        ({"sigma_w2": -1.0}, "sigma_w2"),
        ({"sigma_w2": [1.0, 2.0]}, "sigma_w2"),
        ({"sigma_b2": math.inf}, "sigma_b2"),
        ({"depth": 0}, "depth"),
        ({"width": [4, 4]}, "width"),
        ({"chunk": 0}, "chunk"),
        ({"dtype": torch.float16}, "dtype"),
        ({"seed": -1}, "seed"),
        ({"activation": "sigmoid"}, "activation"),
        ({"diagonal": "yes"}, "diagonal"),
    ],
)
def test_sample_ntk_bad_input(kwargs: dict, match: str) -> None:
    base = dict(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=3, width=4,
                X=np.ones((2, 3)), inits=4)
    kw = {**base, **kwargs}
    net_keys = ("activation", "sigma_w2", "sigma_b2", "depth", "width")
    with pytest.raises(NtkscopeInputError, match=match):
        net = NetworkSpec(*(kw.pop(k) for k in net_keys))  # the network is validated here
        sample_ntk(net, **kw)


def test_ntk_variance_bad_input() -> None:
    with pytest.raises(NtkscopeInputError, match="inits"):
        ntk_variance(NetworkSpec("relu", 2.0, 0.0, 3, 4), inits=1)
    with pytest.raises(NtkscopeInputError, match="method"):
        ntk_variance(NetworkSpec("relu", 2.0, 0.0, 3, 4), inits=10, method="exact")
    with pytest.raises(NtkscopeInputError, match="input_dim"):
        ntk_variance(NetworkSpec("relu", 2.0, 0.0, 3, 4, input_dim=0), inits=10)
    with pytest.raises(NtkscopeInputError, match="samples"):
        ratio_bootstrap_ci(np.array([1.0]))
    with pytest.raises(NtkscopeInputError, match="confidence"):
        ratio_bootstrap_ci(np.ones(5), confidence=1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable_is_input_error() -> None:
    with pytest.raises(NtkscopeInputError, match="CUDA"):
        sample_ntk(NetworkSpec("relu", 2.0, 0.0, 2, 4), np.ones((1, 3)), 2, device="cuda")


def test_samples_container() -> None:
    s = sample_ntk(NetworkSpec("erf", 2.0, 0.1, 2, 5), _inputs(2, 4), 3)
    assert isinstance(s, NTKSamples) and s.inits == 3
    assert s.theta.shape == (3, 2, 2) and s.f.shape == (3, 2)
    assert np.allclose(np.exp(s.log_theta_diag()), np.diagonal(s.theta, axis1=1, axis2=2))


# ---------------------------------------------------------------------------------------------
# Data sets


def test_gaussian_sphere() -> None:
    X = gaussian_sphere(50, 30, seed=4)
    assert X.shape == (50, 30) and X.dtype == np.float64
    assert np.allclose(np.sum(X**2, axis=1) / 30, 1.0)
    assert np.array_equal(X, gaussian_sphere(50, 30, seed=4))
    assert not np.allclose(X, gaussian_sphere(50, 30, seed=5))
    assert np.array_equal(load_inputs("gaussian", 50, 30, 4), X)
    # roughly uniform directions: mean near 0, covariance near I
    big = gaussian_sphere(4000, 3, seed=0)
    assert np.allclose(big.mean(0), 0.0, atol=0.1)
    assert np.allclose(np.cov(big.T), np.eye(3), atol=0.1)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 3), "samples"), ((3, 0), "dim"), ((3, 3, -1), "seed"), ((2.5, 3), "samples")],
)
def test_gaussian_sphere_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        gaussian_sphere(*args)


def test_load_inputs_unknown() -> None:
    with pytest.raises(NtkscopeInputError, match="784"):
        load_inputs("mnist", 3, 100)
    with pytest.raises(NtkscopeInputError, match="unknown"):
        load_inputs("cifar", 3, 784)
