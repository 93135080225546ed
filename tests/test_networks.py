"""Networks: shapes, forward pass against plain loops, initialization, params round trips."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.special
import torch

from ntkscope import MLP, NtkscopeInputError, Params
from ntkscope.networks import ForwardCache, NtkscopeRangeError
from ntkscope.ntk_reference import reference_apply

NP_ACT = {"relu": lambda h: np.maximum(h, 0.0), "tanh": np.tanh, "erf": scipy.special.erf}


def loop_apply(params: Params, X: np.ndarray, act: str) -> np.ndarray:
    """f(x) one network and one input at a time, in NumPy float64."""
    out = np.zeros((params.batch, X.shape[0]))
    for i in range(params.batch):
        d = params.to_numpy_dict(i)
        n_layers = len(d) // 2
        for s, x in enumerate(X):
            h = x
            for l in range(1, n_layers + 1):
                h = d[f"W{l}"] @ h + d[f"b{l}"]
                if l < n_layers:
                    h = NP_ACT[act](h)
            out[i, s] = h[0]
    return out


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("sb2", [0.0, 0.7])
@pytest.mark.parametrize("width", [9, [11, 4, 7]])
@pytest.mark.parametrize("rescaled", [False, True])
def test_apply_matches_plain_loop(
    act: str, sb2: float, width: int | list[int], rescaled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if rescaled:
        monkeypatch.setattr(MLP, "guarded", lambda self, dtype, compute: compute(None))
    net = MLP(input_dim=6, width=width, depth=3, activation=act, sigma_w2=1.8, sigma_b2=sb2)
    params = net.init(batch=3, seed=11)
    X = np.random.default_rng(0).normal(size=(5, 6))
    f = net.apply(params, X)
    assert f.shape == (3, 5) and f.dtype == torch.float64
    expected = loop_apply(params, X, act)
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(reference_apply(net, params, X).numpy(), expected, rtol=1e-12)
    if sb2 == 0.0:
        assert all(bool((b == 0).all()) for b in params.biases)


def test_shapes_and_counts() -> None:
    net = MLP(input_dim=784, width=[32, 16], depth=2, activation="tanh", sigma_w2=2.0, sigma_b2=0.5)
    params = net.init(batch=4, seed=0, dtype=torch.float32)
    assert [tuple(w.shape) for w in params.weights] == [(4, 32, 784), (4, 16, 32), (4, 1, 16)]
    assert [tuple(b.shape) for b in params.biases] == [(4, 32), (4, 16), (4, 1)]
    assert params.batch == 4 and params.depth == 2 and params.dtype == torch.float32
    assert net.layer_widths == params.layer_widths == (784, 32, 16, 1)
    assert net.num_params == sum(
        w[0].numel() + b[0].numel() for w, b in zip(params.weights, params.biases, strict=True)
    )
    assert net.apply(params, torch.zeros(3, 784)).shape == (4, 3)


def test_init_reproducible_across_batch_chunks_and_dtype() -> None:
    net = MLP(input_dim=5, width=[8, 6], depth=2, activation="relu", sigma_w2=2.0, sigma_b2=0.3)
    full = net.init(batch=5, seed=42)
    a = net.init(batch=2, seed=42)
    b = net.init(batch=3, seed=42, start=2)
    single = net.init(batch=1, seed=42, start=3)
    f32 = net.init(batch=5, seed=42, dtype=torch.float32)
    for l in range(3):
        for name in ("weights", "biases"):
            t_full = getattr(full, name)[l]
            assert torch.equal(torch.cat([getattr(a, name)[l], getattr(b, name)[l]]), t_full)
            assert torch.equal(getattr(single, name)[l][0], t_full[3])
            assert torch.equal(getattr(f32, name)[l], t_full.to(torch.float32))
    assert torch.equal(net.init(batch=5, seed=42).weights[1], full.weights[1])
    assert not torch.equal(net.init(batch=5, seed=43).weights[0], full.weights[0])
    assert not torch.equal(full.weights[0][0], full.weights[0][1])
    # The same normals for every (sw2, sb2): only the scale changes.
    net4 = MLP(input_dim=5, width=[8, 6], depth=2, activation="relu", sigma_w2=8.0, sigma_b2=1.2)
    other = net4.init(batch=5, seed=42)
    torch.testing.assert_close(other.weights[1], 2.0 * full.weights[1], rtol=1e-15, atol=0)
    torch.testing.assert_close(other.biases[2], 2.0 * full.biases[2], rtol=1e-15, atol=0)


def test_init_variance_matches_standard_parameterization() -> None:
    sw2, sb2 = 2.5, 0.4
    net = MLP(
        input_dim=300, width=[200, 400], depth=2, activation="relu", sigma_w2=sw2, sigma_b2=sb2
    )
    params = net.init(batch=4, seed=7)
    for l, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        fan_in = net.layer_widths[l]
        for t, var in ((w, sw2 / fan_in), (b, sb2)):
            n = t.numel()
            # Sample variance of n normals: standard error var * sqrt(2 / n); 5 sigma bounds.
            assert abs(t.var().item() / var - 1.0) < 5.0 * math.sqrt(2.0 / n) + 1e-12
            assert abs(t.mean().item()) < 5.0 * math.sqrt(var / n)
    # Kurtosis 3 of the pooled first-layer weights (Gaussian, not e.g. uniform).
    z = params.weights[0].flatten() / math.sqrt(sw2 / 300)
    assert abs((z**4).mean().item() - 3.0) < 5.0 * math.sqrt(96.0 / z.numel())


def test_params_round_trips() -> None:
    net = MLP(input_dim=4, width=[3, 5], depth=2, activation="erf", sigma_w2=1.0, sigma_b2=0.2)
    params = net.init(batch=3, seed=1)
    d = params.to_numpy_dict(2)
    assert sorted(d) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert d["W1"].shape == (3, 4) and d["b2"].shape == (5,) and d["W3"].shape == (1, 5)
    back = Params.from_numpy_dict(d)
    assert back.batch == 1 and torch.equal(back.weights[1][0], params.weights[1][2])
    many = Params.from_numpy_dict([params.to_numpy_dict(i) for i in range(3)])
    assert all(torch.equal(x, y) for x, y in zip(many.weights, params.weights, strict=True))
    sel = params.select([2, 0])
    assert torch.equal(sel.biases[0], params.biases[0][[2, 0]])
    assert torch.equal(params.select(-1).weights[2], params.weights[2][2:])
    assert params.select(slice(1, 3)).batch == 2
    assert params.to(dtype=torch.float32).dtype == torch.float32
    # Through an .npz file as written by `ntkscope ntk --save-params` (extra keys ignored).
    buf = io.BytesIO()
    np.savez(buf, X=np.ones((2, 4)), **params.to_numpy_dict(1))
    buf.seek(0)
    loaded = Params.from_numpy_dict(np.load(buf))
    assert all(torch.equal(a[0], b[1]) for a, b in zip(loaded.biases, params.biases, strict=True))
    d["W2"] = d["W2"][:, :2]
    with pytest.raises(NtkscopeInputError, match="arrays"):
        Params.from_numpy_dict(d)
    with pytest.raises(NtkscopeInputError, match="W1"):
        Params.from_numpy_dict({"W2": np.ones((1, 2)), "b2": np.ones(1)})
    with pytest.raises(NtkscopeInputError, match="indices"):
        params.select(3)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("rescaled", [False, True])
def test_forward_with_cache_gives_gradients(
    act: str, rescaled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if rescaled:
        monkeypatch.setattr(MLP, "guarded", lambda self, dtype, compute: compute(None))
    net = MLP(input_dim=5, width=[6, 4], depth=2, activation=act, sigma_w2=1.5, sigma_b2=0.3)
    params = net.init(batch=2, seed=3)
    X = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cache = net.forward_with_cache(params, X)
    assert isinstance(cache, ForwardCache)
    torch.testing.assert_close(cache.output, net.apply(params, X), rtol=0, atol=0)
    assert [tuple(a.shape) for a in cache.inputs] == [(2, 3, 5), (2, 3, 6), (2, 3, 4)]
    assert [tuple(d.shape) for d in cache.deltas] == [(2, 3, 6), (2, 3, 4), (2, 3, 1)]
    torch.testing.assert_close(cache.inputs[0][1], X)
    # Autograd gradients of sum_s f(x_s) of network 1 against sum_s D_l A_{l-1}^T.
    leaves = Params(
        [w.clone().requires_grad_() for w in params.weights],
        [b.clone().requires_grad_() for b in params.biases],
    )
    h = X
    for l in range(3):
        h = h @ leaves.weights[l][1].T + leaves.biases[l][1]
        if l < 2:
            h = net.activation.torch_fn(h)
    h.sum().backward()
    for l in range(3):
        grad_w = torch.einsum("sm,sn->mn", cache.deltas[l][1], cache.inputs[l][1])
        torch.testing.assert_close(leaves.weights[l].grad[1], grad_w, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(leaves.biases[l].grad[1], cache.deltas[l][1].sum(0))


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_backward_output_delta_scales_every_delta(act: str) -> None:
    # delta^{L+1} = c (per sample) gives c_s delta^l_s in every layer (the trainer's residuals).
    net = MLP(input_dim=5, width=[6, 4], depth=2, activation=act, sigma_w2=1.5, sigma_b2=0.3)
    params = net.init(batch=2, seed=3)
    X = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([[0.5, -2.0, 3.0], [1.5, 0.25, -1.0]], dtype=torch.float64)
    cache = net.forward_with_cache(params, X)
    derivs, _, _ = net.forward_scaled(params, X, rescale=False, keep_derivatives=True)
    got: dict[int, torch.Tensor] = {}
    net.backward_scaled(params, derivs, 3, lambda l, d, _b: got.__setitem__(l, d),
                        rescale=False, output_delta=c)
    for l in range(1, 4):
        torch.testing.assert_close(got[l].expand_as(cache.deltas[l - 1]),
                                   c[..., None] * cache.deltas[l - 1], rtol=1e-13, atol=0)
    derivs, _, _ = net.forward_scaled(params, X, rescale=True, keep_derivatives=True)
    with pytest.raises(ValueError, match="output_delta"):
        net.backward_scaled(params, derivs, 3, lambda *a: None, rescale=True, output_delta=c)


def test_deep_chaotic_relu_forward_is_finite_and_exact() -> None:
    # ReLU with sw2 = 4 doubles |x^l|^2 per layer: f ~ 2^100 at depth 200.
    net = MLP(input_dim=8, width=16, depth=200, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    params = net.init(batch=2, seed=5)
    X = np.random.default_rng(1).normal(size=(3, 8))
    f = net.apply(params, X)
    expected = loop_apply(params, X, "relu")
    assert np.abs(expected).max() > 1e20
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-10)
    f32 = net.apply(params.to(dtype=torch.float32), X)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.double().numpy(), expected, rtol=1e-3)
    # Beyond float64: a clear error, not inf.
    deep = MLP(input_dim=8, width=32, depth=3000, activation="relu", sigma_w2=4.0, sigma_b2=0.1)
    with pytest.raises(NtkscopeRangeError, match="range"):
        deep.apply(deep.init(batch=1, seed=0), X)


def test_homogeneity_detection() -> None:
    assert MLP(3, 4, 1, "relu").homogeneous
    assert MLP(3, 4, 1, lambda x: torch.where(x > 0, x, 0.1 * x)).homogeneous
    assert not MLP(3, 4, 1, "tanh").homogeneous
    assert not MLP(3, 4, 1, torch.nn.functional.softplus).homogeneous


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_dim": 0}, "input_dim"),
        ({"width": [4, 4]}, "width"),
        ({"width": 0}, "width"),
        ({"depth": -1}, "depth"),
        ({"sigma_w2": 0.0}, "sigma_w2"),
        ({"sigma_w2": float("nan")}, "sigma_w2"),
        ({"sigma_b2": -0.1}, "sigma_b2"),
        ({"activation": "sigmoidish"}, "activation"),
    ],
)
def test_bad_architecture(kwargs: dict, match: str) -> None:
    args = {
        "input_dim": 3,
        "width": 4,
        "depth": 3,
        "activation": "relu",
        "sigma_w2": 2.0,
        "sigma_b2": 0.0,
    } | kwargs
    with pytest.raises(NtkscopeInputError, match=match):
        MLP(**args)


def test_bad_init_and_inputs() -> None:
    net = MLP(input_dim=3, width=4, depth=2)
    for kwargs, match in [
        ({"batch": 0}, "batch"),
        ({"batch": 1.5}, "batch"),
        ({"batch": 2, "seed": -1}, "seed"),
        ({"batch": 2, "start": -2}, "start"),
        ({"batch": 2, "dtype": torch.int64}, "dtype"),
        ({"batch": 2, "device": "nonsense"}, "device"),
    ]:
        with pytest.raises(NtkscopeInputError, match=match):
            net.init(**kwargs)
    params = net.init(batch=2)
    for X, match in [
        (torch.zeros(3, dtype=torch.float64), "2-D"),
        (torch.zeros(2, 4, dtype=torch.float64), r"\(S >= 1, 3\)"),
        (torch.zeros(0, 3, dtype=torch.float64), r"\(S >= 1, 3\)"),
        (torch.full((2, 3), float("nan"), dtype=torch.float64), "finite"),
        (torch.zeros(2, 3, dtype=torch.float32), "dtype"),
        (torch.zeros(2, 3, dtype=torch.int64), "floating"),
        (np.array([["a", "b", "c"]]), "numbers"),
    ]:
        with pytest.raises(NtkscopeInputError, match=match):
            net.apply(params, X)
    with pytest.raises(NtkscopeInputError, match="widths"):
        MLP(input_dim=3, width=5, depth=2).apply(params, np.zeros((1, 3)))
    with pytest.raises(NtkscopeInputError, match="Params"):
        net.apply({"weights": []}, np.zeros((1, 3)))
    with pytest.raises(NtkscopeInputError, match="shape"):
        Params([torch.zeros(2, 4, 3)], [torch.zeros(2, 5)])
