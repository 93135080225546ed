"""Fixed points, chi1, phases and the edge of chaos against known values and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.optimize as so

from ntkscope.activations import get_activation
from ntkscope.theory import (
    CHAOTIC,
    EOC,
    ORDERED,
    chi1_fixed_point,
    eoc,
    eoc_curve,
    fixed_point,
    phase_of,
    univariate,
)


def test_known_eoc_values() -> None:
    sb2 = np.array([0.0, 0.1, 1.0, 3.0])
    np.testing.assert_allclose(eoc("relu", sb2)[0], 2.0)
    assert float(eoc("tanh", 0.0)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(eoc("erf", 0.0)[0]) == pytest.approx(math.pi / 4, abs=1e-12)


def test_relu_chi1_is_half_sw2() -> None:
    sw2 = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    chi, q = chi1_fixed_point("relu", sw2, 0.5)
    np.testing.assert_allclose(chi, sw2 / 2)
    np.testing.assert_allclose(q[:2], 0.5 / (1 - sw2[:2] / 2))
    assert np.isnan(q[2:]).all()
    assert list(phase_of(chi)) == [ORDERED, ORDERED, EOC, CHAOTIC, CHAOTIC]


@pytest.mark.parametrize("name", ["tanh", "erf"])
@pytest.mark.parametrize("sb2", [0.0, 0.05, 0.5, 1.0, 2.0])
def test_chi1_is_one_on_the_eoc(name: str, sb2: float) -> None:
    sw2, q_star = eoc(name, sb2)
    chi, q = chi1_fixed_point(name, sw2, sb2)
    assert float(chi) == pytest.approx(1.0, abs=1e-9)
    assert float(q) == pytest.approx(float(q_star), rel=1e-7, abs=1e-9)
    assert phase_of(chi) == EOC
    assert phase_of(chi1_fixed_point(name, sw2 * 1.05, sb2)[0]) == CHAOTIC
    assert phase_of(chi1_fixed_point(name, sw2 * 0.95, sb2)[0]) == ORDERED


@pytest.mark.parametrize(("sw2", "sb2"), [(0.5, 0.2), (2.0, 0.0), (3.0, 1.0), (6.0, 0.5)])
def test_tanh_fixed_point_against_scipy(sw2: float, sb2: float) -> None:
    def qhat(q: float) -> float:
        def integrand(z: float) -> float:
            return math.tanh(math.sqrt(q) * z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

        return si.quad(integrand, -12, 12, epsabs=1e-14, epsrel=1e-13)[0]

    q_star = float(fixed_point("tanh", sw2, sb2))
    if sb2 == 0 and sw2 <= 1:
        assert q_star == 0.0
        return
    ref = so.brentq(lambda q: sw2 * qhat(q) + sb2 - q, 1e-6, sw2 + sb2 + 1, xtol=1e-14)
    assert q_star == pytest.approx(ref, rel=1e-9)
    # and it is a fixed point of the map
    assert float(sw2 * univariate(get_activation("tanh"), q_star)[0] + sb2) == pytest.approx(
        q_star, rel=1e-12
    )


def test_eoc_curve_is_increasing_and_vectorised() -> None:
    sb2, sw2 = eoc_curve("tanh", np.linspace(0.0, 2.0, 21))
    assert np.all(np.diff(sw2) > 0)
    assert float(sw2[10]) == pytest.approx(float(eoc("tanh", float(sb2[10]))[0]), rel=1e-12)


def test_ordered_tanh_without_bias_collapses_to_zero() -> None:
    chi, q = chi1_fixed_point("tanh", 0.8, 0.0)
    assert float(q) == 0.0
    assert float(chi) == pytest.approx(0.8)
