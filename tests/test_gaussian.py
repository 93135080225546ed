"""Gaussian integrals: closed forms vs the generic quadrature vs SciPy adaptive quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate as si
import torch

from ntkscope.activations import custom_activation, get_activation
from ntkscope.theory.gaussian import Quadrature, bivariate, univariate

RNG = np.random.default_rng(0)
Q1 = np.concatenate([[1e-3, 0.1, 1.0, 3.0, 30.0], RNG.uniform(0.05, 10, 15)])
Q2 = np.concatenate([[0.5, 0.1, 1.0, 2.0, 25.0], RNG.uniform(0.05, 10, 15)])
CORR = np.concatenate([[0.3, -0.999, 1.0, 0.9999, -0.5], RNG.uniform(-1, 1, 15)])
Q12 = CORR * np.sqrt(Q1 * Q2)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_closed_forms_equal_generic_quadrature(name: str) -> None:
    act = get_activation(name)
    for auto, quad in zip(univariate(act, Q1), univariate(act, Q1, method="quadrature")):
        np.testing.assert_allclose(quad, auto, rtol=1e-8, atol=1e-12)
    for auto, quad in zip(bivariate(act, Q1, Q2, Q12), bivariate(act, Q1, Q2, Q12, "quadrature")):
        np.testing.assert_allclose(quad, auto, rtol=1e-8, atol=1e-12)


def _scipy_uni(fn, q: float) -> float:
    def integrand(z: float) -> float:
        return fn(math.sqrt(q) * z) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    return si.quad(integrand, -12, 12, points=[0.0], epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def _scipy_bi(fn, q1: float, q2: float, q12: float) -> float:
    c = q12 / math.sqrt(q1 * q2)
    s = math.sqrt(1 - c * c)

    def integrand(z2: float, z1: float) -> float:
        u = math.sqrt(q1) * z1
        v = math.sqrt(q2) * (c * z1 + s * z2)
        return fn(u) * fn(v) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

    return si.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-14, epsrel=1e-12)[0]


def _tanh_d(x: float) -> float:
    return 1.0 / math.cosh(x) ** 2


@pytest.mark.parametrize("q", [0.05, 1.0, 4.0, 20.0])
def test_tanh_univariate_matches_adaptive_quadrature(q: float) -> None:
    act = get_activation("tanh")
    phi2, dphi2 = univariate(act, q)
    assert phi2 == pytest.approx(_scipy_uni(math.tanh, q), rel=1e-10)
    assert dphi2 == pytest.approx(_scipy_uni(_tanh_d, q), rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize(("q1", "q2", "q12"), [(1.0, 2.0, 0.7), (4.0, 3.0, -2.0)])
def test_tanh_bivariate_matches_adaptive_quadrature(q1: float, q2: float, q12: float) -> None:
    act = get_activation("tanh")
    ff, dd = bivariate(act, q1, q2, q12)
    assert ff == pytest.approx(_scipy_bi(math.tanh, q1, q2, q12), rel=1e-9)
    assert dd == pytest.approx(_scipy_bi(_tanh_d, q1, q2, q12), rel=1e-9)


def test_tanh_quadrature_converges_to_1e9() -> None:
    """Error against a 48x48-node reference falls with the order and is < 1e-9 by default."""
    act = get_activation("tanh")
    q = np.array([0.01, 0.5, 5.0, 25.0, 100.0])
    q1, q2 = np.array([0.5, 5.0, 25.0, 100.0]), np.array([0.3, 3.0, 20.0, 90.0])
    q12 = np.array([0.1, 2.0, -19.9, 80.0])
    ref_u = np.array(univariate(act, q, quad=Quadrature(48, 48)))
    ref_b = np.array(bivariate(act, q1, q2, q12, quad=Quadrature(48, 48)))
    errors = []
    for order in (8, 12, 16, 20, 24):
        qd = Quadrature(order, order)
        eu = np.max(np.abs(np.array(univariate(act, q, quad=qd)) / ref_u - 1))
        eb = np.max(np.abs(np.array(bivariate(act, q1, q2, q12, quad=qd)) / ref_b - 1))
        errors.append(max(eu, eb))
    assert all(b <= a * 1.01 + 1e-15 for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-4  # the coarse rule is visibly wrong: the test can fail
    default = Quadrature()
    err_default = max(
        np.max(np.abs(np.array(univariate(act, q, quad=default)) / ref_u - 1)),
        np.max(np.abs(np.array(bivariate(act, q1, q2, q12, quad=default)) / ref_b - 1)),
    )
    assert err_default < 1e-9


def test_custom_callable_through_quadrature() -> None:
    act = custom_activation(torch.nn.functional.softplus, name="softplus")
    phi2, dphi2 = univariate(act, 2.0)

    def softplus(x: float) -> float:
        return math.log1p(math.exp(-abs(x))) + max(x, 0.0)

    def sigmoid(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    assert phi2 == pytest.approx(_scipy_uni(softplus, 2.0), rel=1e-10)
    assert dphi2 == pytest.approx(_scipy_uni(sigmoid, 2.0), rel=1e-10)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_kinked_custom_activation_uses_its_kinks() -> None:
    """Hard-tanh has kinks at +-1; declaring them keeps quadrature exact to 1e-9."""
    act = custom_activation(lambda x: torch.clamp(x, -1.0, 1.0), kinks=(-1.0, 0.0, 1.0))
    q1, q2, q12 = 2.0, 1.5, 0.9

    def hardtanh(x: float) -> float:
        return min(1.0, max(-1.0, x))

    assert univariate(act, q1)[0] == pytest.approx(_scipy_uni(hardtanh, q1), rel=1e-10)
    ref = _scipy_bi(hardtanh, q1, q2, q12)
    assert bivariate(act, q1, q2, q12)[0] == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("name", ["relu", "tanh", "erf"])
def test_bivariate_invariances(name: str) -> None:
    act = get_activation(name)
    a = bivariate(act, 1.3, 0.4, 0.2)
    b = bivariate(act, 0.4, 1.3, 0.2)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    diag = bivariate(act, 1.7, 1.7, 1.7)
    np.testing.assert_allclose(diag, univariate(act, 1.7), rtol=1e-10)
    # Oddness: for odd phi, E[phi(u)phi(-v)] = -E[phi(u)phi(v)], and phi'phi' is even.
    if name != "relu":
        neg = bivariate(act, 1.3, 0.4, -0.2)
        np.testing.assert_allclose(neg[0], -a[0], rtol=1e-12)
        np.testing.assert_allclose(neg[1], a[1], rtol=1e-12)
