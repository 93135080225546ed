"""Mean-field recursions and the expected NTK: identities, closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from ntkscope.theory import kappa_by_depth, propagate
from ntkscope.validation import NtkscopeInputError


def test_relu_recursion_closed_form() -> None:
    """ReLU: q^{l+1} = sw2 q^l / 2 + sb2, chi1 = sw2/2, c follows the arc-cosine map."""
    sw2, sb2, L = 1.6, 0.3, 6
    mf = propagate("relu", sw2, sb2, L, width=50, q0=1.0, c0=0.4)
    q = sw2 * 1.0 + sb2
    for layer in range(L):
        assert mf.q[layer] == pytest.approx(q, rel=1e-14)
        q = sw2 * q / 2 + sb2
    np.testing.assert_allclose(mf.chi1, sw2 / 2, rtol=1e-15)
    assert mf.output_var == pytest.approx(q, rel=1e-14)
    np.testing.assert_allclose(mf.p[-1], sw2 / 2)
    np.testing.assert_allclose(mf.p[0], (sw2 / 2) ** L)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_quadrature_path_equals_closed_forms(name: str) -> None:
    kw = dict(depth=8, width=64, input_dim=30, q0=1.3, c0=0.5, q0_b=0.8)
    a = propagate(name, 2.2, 0.4, **kw)
    b = propagate(name, 2.2, 0.4, **kw, method="quadrature")
    for key in ("q", "q_sr", "qhat_sr", "p", "p_sr", "chi1"):
        np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=1e-8)
    for key in ("ntk_mean_diag", "ntk_mean_offdiag", "kappa1", "kappa2", "output_cov"):
        assert float(getattr(b, key)) == pytest.approx(float(getattr(a, key)), rel=1e-8)


def test_ntk_mean_is_the_layer_sum_with_nonuniform_widths() -> None:
    widths = [40, 70, 25, 90]
    mf = propagate("tanh", 1.7, 0.2, 4, width=widths, input_dim=13, q0=1.0, c0=0.3)
    m_prev = [13, *widths]
    qhat = np.concatenate([[1.0], mf.qhat])
    qhat_sr = np.concatenate([[0.3], mf.qhat_sr])
    p = np.concatenate([mf.p, [1.0]])
    p_sr = np.concatenate([mf.p_sr, [1.0]])
    diag = sum(p[i] * (m_prev[i] * qhat[i] + 1) for i in range(5))
    off = sum(p_sr[i] * (m_prev[i] * qhat_sr[i] + 1) for i in range(5))
    assert float(mf.ntk_mean_diag) == pytest.approx(diag, rel=1e-13)
    assert float(mf.ntk_mean_offdiag) == pytest.approx(off, rel=1e-13)
    assert float(mf.kappa1) == pytest.approx(float(np.dot(qhat, p)), rel=1e-13)
    assert float(mf.kappa2) == pytest.approx(float(np.dot(qhat_sr, p_sr)), rel=1e-13)


def test_kappa_by_depth_matches_propagate() -> None:
    k1, k2 = kappa_by_depth("erf", 2.8, 1.0, 12, c0=np.array([0.0, 0.5, 1.0]))
    for depth in (1, 5, 12):
        mf = propagate("erf", 2.8, 1.0, depth, c0=np.array([0.0, 0.5, 1.0]))
        np.testing.assert_allclose(k1[depth - 1], mf.kappa1, rtol=1e-12)
        np.testing.assert_allclose(k2[depth - 1], mf.kappa2, rtol=1e-12)
    np.testing.assert_allclose(k1[:, 2], k2[:, 2], rtol=1e-12)  # c0 = q0: x = x'


def test_grid_equals_pointwise() -> None:
    sw2 = np.linspace(0.5, 4.0, 5)[:, None]
    sb2 = np.linspace(0.0, 2.0, 4)[None, :]
    grid = propagate("erf", sw2, sb2, 20, keep_layers=False, c0=0.2)
    for i in range(5):
        for j in range(4):
            one = propagate("erf", float(sw2[i, 0]), float(sb2[0, j]), 20, c0=0.2)
            assert grid.kappa2[i, j] == pytest.approx(float(one.kappa2), rel=1e-13)
            assert grid.ntk_mean_diag[i, j] == pytest.approx(float(one.ntk_mean_diag), rel=1e-13)


def test_unequal_norms_symmetry() -> None:
    ab = propagate("tanh", 1.5, 0.1, 5, q0=2.0, q0_b=0.5, c0=0.4)
    ba = propagate("tanh", 1.5, 0.1, 5, q0=0.5, q0_b=2.0, c0=0.4)
    assert float(ab.ntk_mean_offdiag) == pytest.approx(float(ba.ntk_mean_offdiag), rel=1e-12)
    assert float(ab.ntk_mean_diag) == pytest.approx(float(ba.ntk_mean_diag_b), rel=1e-12)
    same = propagate("tanh", 1.5, 0.1, 5, q0=2.0, q0_b=2.0, c0=2.0)  # x' = x
    assert float(same.ntk_mean_offdiag) == pytest.approx(float(same.ntk_mean_diag), rel=1e-9)
    np.testing.assert_allclose(same.c, 1.0, rtol=1e-9)


# ---- Monte Carlo: an independent NumPy sampler of finite random networks -------------------

_PHI = {"relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
        "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
        "erf": (scipy.special.erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x))}


def _sample(name, sw2, sb2, depth, width, x, nets, rng):  # type: ignore[no-untyped-def]
    """f and Theta on the inputs x (2, M0) for `nets` independent networks, by backprop."""
    phi, dphi = _PHI[name]
    m0 = x.shape[1]
    fs, thetas = [], []
    for _ in range(nets):
        dims = [m0] + [width] * depth + [1]
        ws = [rng.normal(0, np.sqrt(sw2 / dims[i]), (dims[i + 1], dims[i]))
              for i in range(depth + 1)]
        bs = [rng.normal(0, np.sqrt(sb2), dims[i + 1]) for i in range(depth + 1)]
        acts, pre = [x], []
        for i in range(depth):
            h = acts[-1] @ ws[i].T + bs[i]
            pre.append(h)
            acts.append(phi(h))
        f = (acts[-1] @ ws[depth].T + bs[depth])[:, 0]
        delta = np.ones((2, 1))
        theta = (delta @ delta.T) * (acts[depth] @ acts[depth].T + 1)
        for i in range(depth - 1, -1, -1):
            delta = dphi(pre[i]) * (delta @ ws[i + 1])
            theta += (delta @ delta.T) * (acts[i] @ acts[i].T + 1)
        fs.append(f)
        thetas.append(theta)
    return np.array(fs), np.array(thetas)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "sw2", "sb2"), [("relu", 2.0, 0.5), ("tanh", 2.5, 0.3),
                                                  ("erf", 1.0, 0.2)])
def test_monte_carlo_matches_theory(name: str, sw2: float, sb2: float) -> None:
    rng = np.random.default_rng(1234)
    m0, width, depth, nets = 20, 256, 3, 1500
    x = rng.normal(size=(2, m0))
    x[0] *= np.sqrt(1.5 * m0) / np.linalg.norm(x[0])  # q0 = 1.5
    x[1] *= np.sqrt(0.7 * m0) / np.linalg.norm(x[1])  # q0' = 0.7 (unequal norms)
    q0, q0_b, c0 = 1.5, 0.7, float(x[0] @ x[1] / m0)
    mf = propagate(name, sw2, sb2, depth, width, m0, q0=q0, c0=c0, q0_b=q0_b)
    f, theta = _sample(name, sw2, sb2, depth, width, x, nets, rng)
    # 4 standard errors plus the O(1/M) finite-width bias of the mean-field limit.
    checks = [
        (f[:, 0] ** 2, mf.output_var), (f[:, 1] ** 2, mf.output_var_b),
        (f[:, 0] * f[:, 1], mf.output_cov), (theta[:, 0, 0], mf.ntk_mean_diag),
        (theta[:, 1, 1], mf.ntk_mean_diag_b), (theta[:, 0, 1], mf.ntk_mean_offdiag),
    ]
    for samples, expected in checks:
        se = samples.std(ddof=1) / np.sqrt(nets)
        assert abs(samples.mean() - float(expected)) < 4 * se + 3 * abs(float(expected)) / width


@pytest.mark.parametrize(
    ("kwargs", "argname"),
    [
        (dict(sigma_w2=0.0), "sigma_w2"), (dict(sigma_w2=-1.0), "sigma_w2"),
        (dict(sigma_b2=-0.1), "sigma_b2"), (dict(depth=0), "depth"), (dict(width=0), "width"),
        (dict(c0=1.5), "c0"), (dict(q0=0.0), "q0"), (dict(sigma_w2=float("nan")), "sigma_w2"),
        (dict(sigma_b2=float("inf")), "sigma_b2"), (dict(activation="sigmoidal"), "activation"),
        (dict(width=[10, 20]), "width"), (dict(depth=2.5), "depth"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, argname: str) -> None:
    args = dict(activation="relu", sigma_w2=1.0, sigma_b2=0.1, depth=3, width=10, c0=0.2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=argname) as info:
        propagate(**args)
    assert isinstance(info.value, NtkscopeInputError)


def test_overflow_is_an_error_not_inf() -> None:
    with pytest.raises(NtkscopeInputError, match="float64"):
        propagate("relu", 4.0, 1.0, 2000, width=100)


def test_pairs_false_matches_the_diagonal_and_skips_the_rest() -> None:
    full = propagate("tanh", 2.5, 0.3, 6, width=40, c0=0.2)
    diag = propagate("tanh", 2.5, 0.3, 6, width=40, c0=0.2, pairs=False)
    assert float(diag.ntk_mean_diag) == float(full.ntk_mean_diag)
    assert float(diag.kappa1) == float(full.kappa1)
    np.testing.assert_array_equal(diag.p, full.p)
    assert np.isnan(diag.kappa2) and np.isnan(diag.ntk_mean_offdiag)
