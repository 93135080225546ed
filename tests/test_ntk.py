"""Empirical NTK: structured computation against the torch.func Jacobian oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ntkscope import MLP, NtkscopeInputError, empirical_ntk
from ntkscope.networks import NtkscopeRangeError, RangeMonitor
from ntkscope.ntk_reference import reference_ntk


@pytest.fixture(params=["plain", "rescaled"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the plain pass (chosen for ordinary networks) and again with the
    rescaled pass forced (chosen automatically for very deep or extreme networks)."""
    if request.param == "rescaled":
        monkeypatch.setattr(MLP, "guarded", lambda self, dtype, compute: compute(None))
    return request.param


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest entry error relative to the largest entry of ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def inputs(s: int, m0: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Inputs normalized to q0 = |x|^2 / M0 = 1 (CONVENTIONS section 2)."""
    x = torch.randn(s, m0, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (x * (m0**0.5) / x.norm(dim=1, keepdim=True)).to(dtype)


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("sb2", [0.0, 0.5])
@pytest.mark.parametrize("width", [12, [15, 6, 9]])
def test_matches_autodiff(act: str, sb2: float, width: int | list[int], path: str) -> None:
    net = MLP(input_dim=7, width=width, depth=3, activation=act, sigma_w2=2.2, sigma_b2=sb2)
    params = net.init(batch=2, seed=3)
    X1, X2 = inputs(5, 7, 0), inputs(4, 7, 1)
    K = empirical_ntk(net, params, X1)
    assert K.shape == (2, 5, 5) and K.dtype == torch.float64
    assert rel_err(K, reference_ntk(net, params, X1)) < 1e-10
    K12 = empirical_ntk(net, params, X1, X2)
    assert K12.shape == (2, 5, 4)
    assert rel_err(K12, reference_ntk(net, params, X1, X2)) < 1e-10
    diag = empirical_ntk(net, params, X1, diagonal=True)
    assert diag.shape == (2, 5)
    assert rel_err(diag, reference_ntk(net, params, X1, diagonal=True)) < 1e-10


@pytest.mark.parametrize(
    "phi",
    [torch.nn.functional.softplus, lambda x: torch.where(x > 0, x, 0.2 * x), torch.sin],
    ids=["softplus", "leaky_relu", "sin"],
)
def test_custom_activations_match_autodiff(phi, path: str) -> None:
    net = MLP(input_dim=4, width=[10, 8], depth=2, activation=phi, sigma_w2=1.7, sigma_b2=0.2)
    params = net.init(batch=2, seed=9)
    X = inputs(6, 4, 2)
    assert rel_err(empirical_ntk(net, params, X), reference_ntk(net, params, X)) < 1e-10


def test_depth_zero_is_linear_model() -> None:
    net = MLP(input_dim=3, width=[], depth=0, activation="tanh", sigma_w2=1.0, sigma_b2=0.1)
    params = net.init(batch=1, seed=0)
    X = inputs(4, 3, 5)
    torch.testing.assert_close(empirical_ntk(net, params, X)[0], X @ X.T + 1.0)


def test_kernel_structure_and_batch_consistency(path: str) -> None:
    net = MLP(input_dim=6, width=20, depth=4, activation="relu", sigma_w2=2.0, sigma_b2=0.1)
    params = net.init(batch=3, seed=1)
    X = inputs(8, 6, 3)
    K = empirical_ntk(net, params, X)
    torch.testing.assert_close(K, K.mT, rtol=1e-13, atol=0)
    eig = torch.linalg.eigvalsh(K)
    assert float(eig.min()) > -1e-10 * float(eig.max())
    torch.testing.assert_close(
        empirical_ntk(net, params, X[:3], X[3:]), K[:, :3, 3:], rtol=1e-13, atol=0
    )
    torch.testing.assert_close(
        empirical_ntk(net, params, X, diagonal=True),
        torch.diagonal(K, dim1=1, dim2=2),
        rtol=1e-13,
        atol=0,
    )
    torch.testing.assert_close(empirical_ntk(net, params.select(1), X)[0], K[1], rtol=1e-13, atol=0)
    assert torch.equal(empirical_ntk(net, params, X, X), K)  # X2 is X1: the full kernel
    K32 = empirical_ntk(net, params.to(dtype=torch.float32), X.float())
    assert K32.dtype == torch.float32 and rel_err(K32.double(), K) < 1e-5


def test_deep_chaotic_relu_depth_200(monkeypatch: pytest.MonkeyPatch) -> None:
    # ReLU sw2 = 4: |x^l|^2 and |delta^l|^2 double every layer; Theta ~ 1e54 at depth 200.
    net = MLP(input_dim=5, width=16, depth=200, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    params = net.init(batch=2, seed=4)
    X = inputs(4, 5, 6)
    K = empirical_ntk(net, params, X)
    assert bool(torch.isfinite(K).all()) and float(K.abs().max()) > 1e40
    assert rel_err(K[:1], reference_ntk(net, params.select(0), X)) < 1e-10
    with monkeypatch.context() as m:  # the rescaled pass agrees with the plain one
        m.setattr(MLP, "guarded", lambda self, dtype, compute: compute(None))
        assert rel_err(empirical_ntk(net, params, X), K) < 1e-12
    # float32: the true values exceed its range, so a clear error instead of inf.
    p32 = params.to(dtype=torch.float32)
    with pytest.raises(NtkscopeRangeError, match="float32"):
        empirical_ntk(net, p32, X.float())
    with pytest.raises(OverflowError):
        empirical_ntk(net, p32, X.float(), diagonal=True)
    # Depth 100 fits float32 (~1e30): finite and close to float64.
    shallow = MLP(input_dim=5, width=16, depth=100, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    p = shallow.init(batch=2, seed=4)
    K64 = empirical_ntk(shallow, p, X)
    K32 = empirical_ntk(shallow, p.to(dtype=torch.float32), X.float())
    assert float(K64.abs().max()) > 1e25
    assert rel_err(K32.double(), K64) < 1e-4


def test_values_near_the_top_of_the_range() -> None:
    # sb2 = 0 ReLU: x^l(c x) = c x^l(x) and delta^l(c x) = delta^l(x), so with c = 2^500
    # Theta(cX) = c^2 G + H where G = sum_l <d,d'><x,x'> and H = sum_l <d,d'>, from Theta(X)
    # and Theta(2X) = 4G + H; the naive product c^2 |x|^2 |delta|^2 lies near 1e300.
    net = MLP(input_dim=6, width=10, depth=3, activation="relu", sigma_w2=2.0, sigma_b2=0.0)
    params = net.init(batch=1, seed=2)
    X = inputs(3, 6, 7)
    k1, k2 = empirical_ntk(net, params, X), empirical_ntk(net, params, 2.0 * X)
    g, h = (k2 - k1) / 3.0, (4.0 * k1 - k2) / 3.0
    c2 = 2.0**1000
    K = empirical_ntk(net, params, 2.0**500 * X)
    torch.testing.assert_close(K / c2, g + h / c2, rtol=1e-12, atol=0)


def test_beyond_float64_raises() -> None:
    net = MLP(input_dim=5, width=32, depth=1600, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    with pytest.raises(NtkscopeRangeError, match="range"):
        empirical_ntk(net, net.init(batch=1, seed=0), inputs(2, 5, 0))


def test_deep_ordered_network_keeps_bias_terms() -> None:
    # sw2 = 1 ReLU without biases: activations shrink like 2^-l/2 to ~1e-280 at depth 1500;
    # the NTK is dominated by the bias terms and must stay finite and positive.
    net = MLP(input_dim=5, width=16, depth=1500, activation="relu", sigma_w2=1.0, sigma_b2=0.0)
    K = empirical_ntk(net, net.init(batch=1, seed=0), inputs(3, 5, 1))
    assert bool(torch.isfinite(K).all()) and float(K.min()) >= 1.0


def test_bad_inputs() -> None:
    net = MLP(input_dim=4, width=6, depth=2, activation="tanh", sigma_w2=1.0, sigma_b2=0.1)
    params = net.init(batch=2, seed=0)
    X = inputs(3, 4, 0)
    bad = [
        (dict(X1=X[0]), "2-D"),
        (dict(X1=torch.zeros(3, 5, dtype=torch.float64)), r"\(S >= 1, 4\)"),
        (dict(X1=torch.full((2, 4), float("inf"), dtype=torch.float64)), "finite"),
        (dict(X1=X.float()), "dtype"),
        (dict(X1=X, X2=X.float()), "X2: dtype"),
        (dict(X1=X, X2=torch.full((2, 4), float("nan"), dtype=torch.float64)), "X2"),
        (dict(X1=X, X2=X[:2].clone(), diagonal=True), "diagonal"),
        (dict(X1=X, diagonal=1), "diagonal"),
        (dict(X1=X, params=MLP(4, 5, 2).init(1)), "widths"),
        (dict(X1=X, params=None), "params"),
        (dict(X1=X, net="mlp"), "net"),
    ]
    for kwargs, match in bad:
        args = {"net": net, "params": params} | kwargs
        with pytest.raises(NtkscopeInputError, match=match):
            empirical_ntk(**args)
    # Array-likes are converted to the params' dtype.
    torch.testing.assert_close(
        empirical_ntk(net, params, X.numpy().tolist()), empirical_ntk(net, params, X)
    )


@pytest.mark.parametrize("width", [64])
def test_larger_network_matches_autodiff(width: int, path: str) -> None:
    net = MLP(input_dim=30, width=width, depth=6, activation="erf", sigma_w2=1.5, sigma_b2=0.3)
    params = net.init(batch=1, seed=8)
    X = inputs(16, 30, 4)
    assert rel_err(empirical_ntk(net, params, X), reference_ntk(net, params, X)) < 1e-10
    # With S > M the input Gram is formed late (memory rule): still exact.
    small = MLP(input_dim=30, width=4, depth=3, activation="relu", sigma_w2=2.0, sigma_b2=0.3)
    p = small.init(batch=2, seed=1)
    assert rel_err(empirical_ntk(small, p, X), reference_ntk(small, p, X)) < 1e-10
    assert (
        rel_err(empirical_ntk(small, p, X[:9], X[9:]), reference_ntk(small, p, X[:9], X[9:]))
        < 1e-10
    )


def test_numpy_inputs_give_float64() -> None:
    net = MLP(input_dim=3, width=5, depth=1)
    out = empirical_ntk(net, net.init(1), np.ones((2, 3)))
    assert out.dtype == torch.float64 and out.shape == (1, 2, 2)


def test_path_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain pass for an ordinary network; the rescaled one when signals leave the safe range."""
    verdicts: list[bool] = []
    ok = RangeMonitor.ok

    def spy(self: RangeMonitor) -> bool:
        verdicts.append(ok(self))
        return verdicts[-1]

    monkeypatch.setattr(RangeMonitor, "ok", spy)
    X = inputs(3, 5, 0)
    net = MLP(input_dim=5, width=16, depth=100, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    params = net.init(batch=1, seed=4)
    empirical_ntk(net, params, X)
    empirical_ntk(net, params, X[:1], X[1:])
    empirical_ntk(net, params, X, diagonal=True)
    assert verdicts == [True, True, True]  # |x^l| ~ 2^50 is safe in float64
    verdicts.clear()
    for kwargs in ({}, {"X2": X[1:].float()}, {"diagonal": True}):
        x1 = X[:1].float() if "X2" in kwargs else X.float()
        empirical_ntk(net, params.to(dtype=torch.float32), x1, **kwargs)
    assert verdicts == [False, False, False]  # ... but not in float32
