"""Property-based tests (Hypothesis) of the public API and of every CLI subcommand.

Random valid inputs give finite, well-shaped results; random invalid ones give the documented
error (:class:`NtkscopeInputError`, or on the command line exit code 2 with a one-line
message), never a traceback, a hang or a partly written output file. Sizes stay tiny so the
whole module runs in well under two minutes on two cores; every test runs with
``derandomize=True`` (the same examples on every run, reproducible in CI).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.cli_fuzz import INT_BAD, CliFuzz, run_cli
from ntkscope import NetworkSpec
from ntkscope.activations import get_activation
from ntkscope.cli.main import build_parser
from ntkscope.datasets import load_dataset
from ntkscope.networks import MLP
from ntkscope.ntk import empirical_ntk
from ntkscope.predict import linearized_predictor
from ntkscope.sampling import ntk_variance, sample_ntk
from ntkscope.store import Store, canonical_json, cell_key
from ntkscope.sweep import demo_cell
from ntkscope.theory import bivariate, chi1_at, chi1_fixed_point, eoc, fixed_point, propagate
from ntkscope.theory import univariate as univariate_integral
from ntkscope.validation import NtkscopeInputError

REPO = Path(__file__).resolve().parents[1]

#: One reproducible profile for the whole module (no global Hypothesis state is changed).
PROFILE = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)

ACTIVATIONS = ("relu", "tanh", "erf")
BAD_NUMBERS = (math.nan, math.inf, -math.inf, -1.0, -1e-9, "abc", None, [1.0, math.nan])
BAD_POSITIVE = (*BAD_NUMBERS, 0.0)
BAD_INTS = (0, -1, 1.5, math.nan, math.inf, "2", None, True)

activation = st.sampled_from(ACTIVATIONS)
sw2_ok = st.floats(0.1, 5.0)
sb2_ok = st.floats(0.0, 2.0)


def finite(*arrays: object) -> bool:
    return all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrays)


# ---------------------------------------------------------------------------------------------
# Theory


@settings(PROFILE, max_examples=40)
@given(act=activation, sw2=sw2_ok, sb2=sb2_ok, depth=st.integers(1, 5),
       width=st.integers(1, 300), q0=st.floats(0.1, 3.0), rho=st.floats(-1.0, 1.0))
def test_propagate_valid_is_finite_and_shaped(act: str, sw2: float, sb2: float, depth: int,
                                              width: int, q0: float, rho: float) -> None:
    mf = propagate(act, sw2, sb2, depth, width, q0=q0, c0=rho * q0)
    for name in ("q", "q_sr", "c", "qhat", "qhat_sr", "p", "p_sr", "chi1"):
        arr = getattr(mf, name)
        assert arr.shape == (depth,), name
        assert finite(arr), name
    assert np.all(np.abs(mf.c) <= 1 + 1e-9)
    assert np.all(mf.q > 0) and np.all(mf.p > 0)
    assert finite(mf.output_var, mf.output_cov, mf.ntk_mean_diag, mf.ntk_mean_offdiag,
                  mf.kappa1, mf.kappa2)
    assert mf.kappa1 > 0 and mf.ntk_mean_diag > 0
    # Cauchy-Schwarz for the NNGP and the expected NTK of two inputs of equal norm
    assert abs(mf.output_cov) <= mf.output_var * (1 + 1e-9)
    assert abs(mf.ntk_mean_offdiag) <= mf.ntk_mean_diag * (1 + 1e-9)
    assert [row["l"] for row in mf.layer_table()] == list(range(1, depth + 1))


@settings(PROFILE, max_examples=15)
@given(act=activation, n=st.integers(1, 4), m=st.integers(1, 4), depth=st.integers(1, 4))
def test_propagate_broadcasts_grids(act: str, n: int, m: int, depth: int) -> None:
    sw2 = np.linspace(0.5, 3.0, n)[:, None]
    sb2 = np.linspace(0.0, 1.0, m)[None, :]
    mf = propagate(act, sw2, sb2, depth, c0=0.5, keep_layers=False)
    assert mf.kappa_ratio.shape == (n, m) and finite(mf.kappa_ratio)
    assert mf.q is None
    one = propagate(act, float(sw2[-1, 0]), float(sb2[0, -1]), depth, c0=0.5)
    assert mf.kappa_ratio[-1, -1] == pytest.approx(float(one.kappa_ratio), rel=1e-9)


@settings(PROFILE, max_examples=60)
@given(act=activation, which=st.sampled_from(["sigma_w2", "sigma_b2", "depth", "width",
                                              "input_dim", "q0", "c0", "activation", "method"]),
       data=st.data())
def test_propagate_invalid_raises_input_error(act: str, which: str, data: st.DataObject) -> None:
    kwargs: dict = {"activation": act, "sigma_w2": 1.5, "sigma_b2": 0.5, "depth": 3,
                    "width": 10, "input_dim": None, "q0": 1.0, "c0": 0.2, "method": "auto"}
    bad = {
        "sigma_w2": st.sampled_from(BAD_POSITIVE),
        "sigma_b2": st.sampled_from(BAD_NUMBERS),
        "depth": st.sampled_from(BAD_INTS),
        "width": st.sampled_from((*BAD_INTS, [10, 10], [10, 0, 10])),
        "input_dim": st.sampled_from((0, -1, 1.5, math.nan, "2", True)),
        "q0": st.sampled_from(BAD_POSITIVE),
        "c0": st.one_of(st.sampled_from(BAD_NUMBERS[:3]), st.floats(1.0001, 1e6),
                        st.floats(-1e6, -1.0001)),
        "activation": st.sampled_from(("softplus", "", "RELU6", 3, None)),
        "method": st.sampled_from(("closed", "", None)),
    }[which]
    kwargs[which] = data.draw(bad, label=which)
    if which == "activation" and kwargs[which] is None:
        kwargs[which] = "none"
    with pytest.raises(NtkscopeInputError) as err:
        propagate(**kwargs)
    message = str(err.value)
    assert "\n" not in message and ":" in message


@settings(PROFILE, max_examples=40)
@given(act=activation, sw2=sw2_ok, sb2=sb2_ok)
def test_fixed_point_is_a_fixed_point(act: str, sw2: float, sb2: float) -> None:
    q = float(fixed_point(act, sw2, sb2))
    chi, q2 = chi1_fixed_point(act, sw2, sb2)
    assert q == pytest.approx(float(q2), nan_ok=True)
    if act == "relu" and sw2 >= 2:
        assert math.isnan(q)
        assert float(chi) == pytest.approx(sw2 / 2)
        return
    assert math.isfinite(q) and q >= 0
    qhat = float(univariate_integral(get_activation(act), q)[0])
    assert sw2 * qhat + sb2 == pytest.approx(q, rel=1e-6, abs=1e-9)
    assert math.isfinite(float(chi)) and float(chi) >= 0


@settings(PROFILE, max_examples=25)
@given(act=st.sampled_from(("tanh", "erf")), sb2=st.floats(0.0, 4.0))
def test_eoc_has_chi1_one(act: str, sb2: float) -> None:
    sw2, q_star = eoc(act, sb2)
    assert finite(sw2, q_star) and float(sw2) > 0 and float(q_star) >= 0
    assert float(chi1_at(act, sw2, q_star)) == pytest.approx(1.0, abs=1e-7)


@settings(PROFILE, max_examples=20)
@given(sb2=st.one_of(st.floats(0.0, 1e300), st.just(1e308)), act=activation)
def test_eoc_any_finite_sb2_gives_number_or_nan(sb2: float, act: str) -> None:
    sw2, _ = eoc(act, sb2)
    assert np.shape(sw2) == () and (math.isnan(float(sw2)) or float(sw2) > 0)
    if act == "relu":
        assert float(sw2) == 2.0


@settings(PROFILE, max_examples=20)
@given(fn=st.sampled_from((fixed_point, chi1_fixed_point)), act=activation,
       bad=st.sampled_from(BAD_POSITIVE), which=st.sampled_from((0, 1)))
def test_phase_functions_refuse_bad_input(fn: Callable, act: str, bad: object,
                                          which: int) -> None:
    args = [1.0, 0.5]
    args[which] = bad
    if which == 1 and bad == 0.0:
        return  # sb2 = 0 is valid
    with pytest.raises(NtkscopeInputError):
        fn(act, *args)
    with pytest.raises(NtkscopeInputError):
        eoc(act, bad if bad != 0.0 else -1.0)


@settings(PROFILE, max_examples=40)
@given(act=activation, q1=st.floats(0.0, 50.0), q2=st.floats(0.0, 50.0), rho=st.floats(-1, 1),
       method=st.sampled_from(("auto", "quadrature")))
def test_gaussian_integrals_finite_and_cauchy_schwarz(act: str, q1: float, q2: float,
                                                      rho: float, method: str) -> None:
    a = get_activation(act)
    f1, d1 = univariate_integral(a, q1, method)
    f2, d2 = univariate_integral(a, q2, method)
    f12, d12 = bivariate(a, q1, q2, rho * math.sqrt(q1 * q2), method)
    assert finite(f1, d1, f2, d2, f12, d12)
    assert float(f1) >= 0 and float(d1) >= 0
    assert abs(float(f12)) <= math.sqrt(float(f1) * float(f2)) * (1 + 1e-7) + 1e-12
    assert abs(float(d12)) <= math.sqrt(float(d1) * float(d2)) * (1 + 1e-7) + 1e-12
    # u = v: the bivariate integral is the univariate one
    same, _ = bivariate(a, q1, q1, q1, method)
    assert float(same) == pytest.approx(float(f1), rel=1e-7, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Networks and the empirical NTK


@settings(PROFILE, max_examples=25)
@given(act=activation, sw2=sw2_ok, sb2=sb2_ok, depth=st.integers(0, 3), width=st.integers(1, 6),
       m0=st.integers(1, 5), s=st.integers(1, 4), batch=st.integers(1, 3),
       seed=st.integers(0, 2**40))
def test_mlp_apply_and_ntk_shapes(act: str, sw2: float, sb2: float, depth: int, width: int,
                                  m0: int, s: int, batch: int, seed: int) -> None:
    net = MLP(m0, width, depth, act, sw2, sb2)
    params = net.init(batch, seed)
    assert params.batch == batch and params.depth == depth
    X = np.random.default_rng(seed).standard_normal((s, m0))
    f = net.apply(params, X)
    K = empirical_ntk(net, params, X)
    diag = empirical_ntk(net, params, X, diagonal=True)
    assert f.shape == (batch, s) and K.shape == (batch, s, s) and diag.shape == (batch, s)
    assert torch.isfinite(f).all() and torch.isfinite(K).all()
    assert torch.allclose(K, K.transpose(1, 2), rtol=1e-12, atol=0)
    assert torch.allclose(torch.diagonal(K, dim1=1, dim2=2), diag, rtol=1e-12)
    eig = torch.linalg.eigvalsh(K)
    assert (eig >= -1e-9 * eig[:, -1:].abs().clamp_min(1e-300)).all()  # PSD
    # the network family is reproducible: network i does not depend on the batch size
    again = net.init(1, seed, start=batch - 1)
    assert torch.equal(again.weights[0][0], params.weights[0][batch - 1])


@settings(PROFILE, max_examples=40)
@given(which=st.sampled_from(["input_dim", "width", "depth", "sigma_w2", "sigma_b2",
                              "activation", "batch", "seed", "X"]), data=st.data())
def test_mlp_invalid_raises_input_error(which: str, data: st.DataObject) -> None:
    kw: dict = {"input_dim": 3, "width": 4, "depth": 2, "activation": "tanh", "sigma_w2": 1.0,
                "sigma_b2": 0.1}
    if which in kw:
        pool = {"sigma_b2": BAD_NUMBERS, "sigma_w2": BAD_POSITIVE,
                "activation": ("softplus", "", "relu6")}.get(which, BAD_INTS)
        if which == "depth":
            pool = tuple(v for v in BAD_INTS if v != 0)  # depth 0 is a linear model
        kw[which] = data.draw(st.sampled_from(pool), label=which)
        with pytest.raises(NtkscopeInputError):
            MLP(**kw)
        return
    net = MLP(**kw)
    if which == "batch":
        with pytest.raises(NtkscopeInputError):
            net.init(data.draw(st.sampled_from(BAD_INTS), label="batch"))
    elif which == "seed":
        with pytest.raises(NtkscopeInputError):
            net.init(1, data.draw(st.sampled_from((-1, 1.5, "x", None, math.nan)), label="seed"))
    else:
        bad_x = data.draw(st.sampled_from((np.ones((2, 4)), np.ones(3), np.full((2, 3), np.nan),
                                           np.ones((0, 3)), "x", np.ones((2, 3, 1)))), label="X")
        params = net.init(1)
        with pytest.raises(NtkscopeInputError):
            net.apply(params, bad_x)
        with pytest.raises(NtkscopeInputError):
            empirical_ntk(net, params, bad_x)


# ---------------------------------------------------------------------------------------------
# Sampling


@settings(PROFILE, max_examples=15)
@given(act=activation, sw2=sw2_ok, sb2=sb2_ok, depth=st.integers(1, 3), width=st.integers(1, 6),
       inits=st.integers(2, 8), seed=st.integers(0, 1000),
       method=st.sampled_from(("lowrank", "dense")))
def test_ntk_variance_tiny(act: str, sw2: float, sb2: float, depth: int, width: int, inits: int,
                           seed: int, method: str) -> None:
    net = NetworkSpec(act, sw2, sb2, depth, width, 3)
    # min_ess=1: always an interval (ESS >= 1), to check it is finite and ordered even here
    res = ntk_variance(net, inits=inits, seed=seed, method=method, resamples=200, min_ess=1)
    assert res.theta.shape == (inits,) and res.f.shape == (inits,)
    assert finite(res.ratio, res.mean, res.std, res.theory_mean, res.ratio_ci)
    assert res.ratio >= 1 - 1e-12  # E[X^2] >= E[X]^2
    lo, hi = res.ratio_ci
    assert lo <= hi
    assert np.all(res.theta > 0)
    json.dumps(res.to_dict(), allow_nan=False)
    # by default R of so few draws is a lower bound unless ESS >= inits / 2 (a light tail)
    dflt = ntk_variance(net, inits=inits, seed=seed, method=method, resamples=200)
    assert dflt.ratio == res.ratio and dflt.ess == res.ess
    assert 1 - 1e-9 <= dflt.ess <= inits + 1e-9
    assert dflt.ratio_is_lower_bound == (dflt.ess < inits / 2)
    assert (dflt.ratio_ci is None) == dflt.ratio_is_lower_bound
    json.dumps(dflt.to_dict(), allow_nan=False)


@settings(PROFILE, max_examples=15)
@given(act=activation, depth=st.integers(1, 3), width=st.integers(1, 5), s=st.integers(1, 3),
       inits=st.integers(1, 4), diagonal=st.booleans(),
       method=st.sampled_from(("lowrank", "dense")))
def test_sample_ntk_tiny(act: str, depth: int, width: int, s: int, inits: int, diagonal: bool,
                         method: str) -> None:
    X = np.random.default_rng(s).standard_normal((s, 4))
    out = sample_ntk(NetworkSpec(act, 1.5, 0.2, depth, width), X, inits, seed=3, method=method,
                     diagonal=diagonal)
    assert out.theta.shape == ((inits, s) if diagonal else (inits, s, s))
    assert out.f.shape == (inits, s)
    assert finite(out.theta, out.f)


@settings(PROFILE, max_examples=30)
@given(which=st.sampled_from(["inits", "seed", "method", "sigma_w2", "depth", "width",
                              "device", "dtype", "chunk"]), data=st.data())
def test_ntk_variance_invalid(which: str, data: st.DataObject) -> None:
    kw: dict = {"activation": "relu", "sigma_w2": 2.0, "sigma_b2": 0.0, "depth": 2, "width": 3,
                "inits": 4, "input_dim": 3, "seed": 0, "method": "lowrank"}
    kw[which] = data.draw(st.sampled_from({
        "inits": (1, 0, -3, 2.5, "4", None),
        "seed": (-1, 1.5, "x", None),
        "method": ("exact", "", None),
        "sigma_w2": BAD_POSITIVE,
        "depth": BAD_INTS,
        "width": BAD_INTS,
        "device": ("gpu", "bogus", "cuda:99", 3),
        "dtype": ("float16", "int64", torch.int32, None),
        "chunk": (0, -1, 1.5, "x"),
    }[which]), label=which)
    if which == "device" and kw[which] == "cuda:99" and torch.cuda.device_count() > 99:
        return
    net_keys = ("activation", "sigma_w2", "sigma_b2", "depth", "width", "input_dim")
    with pytest.raises(NtkscopeInputError):
        net = NetworkSpec(*(kw.pop(k) for k in net_keys))  # the network is validated here
        ntk_variance(net, **kw)


# ---------------------------------------------------------------------------------------------
# Data sets


@settings(PROFILE, max_examples=25)
@given(samples=st.integers(1, 40), dim=st.integers(1, 50), seed=st.integers(0, 2**63),
       split=st.sampled_from(("train", "test")))
def test_gaussian_dataset(samples: int, dim: int, seed: int, split: str) -> None:
    data = load_dataset("gaussian", samples, seed, split=split, dim=dim)
    assert data.X.shape == (samples, dim) and data.y.shape == (samples,)
    np.testing.assert_allclose(np.sum(data.X**2, axis=1), dim, rtol=1e-12)
    assert set(np.unique(data.y)) <= {-1.0, 1.0}
    again = load_dataset("gaussian", samples, seed, split=split, dim=dim)
    assert np.array_equal(data.X, again.X)


@settings(PROFILE, max_examples=20)
@given(name=st.sampled_from(("mnist", "fashion-mnist", "Fashion_MNIST")),
       samples=st.integers(1, 30), seed=st.integers(0, 10**6),
       target=st.sampled_from((None, "parity", "pair:3,5", "pair: 0 , 9")))
def test_image_dataset_subset(name: str, samples: int, seed: int, target: str | None) -> None:
    data = load_dataset(name, samples, seed, target=target)
    assert data.X.shape == (samples, 784) and data.y.shape == (samples,)
    np.testing.assert_allclose(np.sum(data.X**2, axis=1), 784, rtol=1e-9)
    assert set(np.unique(data.y)) <= {-1.0, 1.0}
    if target is not None and target.startswith("pair"):
        assert set(np.unique(data.labels)) <= {3, 5, 0, 9}
    counts = np.bincount(data.labels, minlength=10)
    present = counts[counts > 0]
    assert present.max() - present.min() <= 1  # class balanced


@settings(PROFILE, max_examples=40)
@given(name=st.sampled_from(("gaussian", "mnist")),
       bad=st.sampled_from(("samples", "target", "name", "split", "seed", "dim")),
       data=st.data())
def test_dataset_invalid(name: str, bad: str, data: st.DataObject) -> None:
    kw: dict = {"name": name, "samples": 4, "seed": 0}
    kw[bad] = data.draw(st.sampled_from({
        "samples": (0, -1, 1.5, "4", None, math.nan) + ((10**6,) if name == "mnist" else ()),
        "target": ("bogus", "pair:1,1", "pair:1,10", "pair:1", "parity" if name == "gaussian"
                   else "sign", ""),
        "name": ("cifar", "", "mnist2", None),
        "split": ("validation", "", None),
        "seed": (-1, 1.5, "x"),
        "dim": (0, -1, 1.5, "x") + ((783,) if name == "mnist" else ()),
    }[bad]), label=bad)
    with pytest.raises(NtkscopeInputError) as err:
        load_dataset(**kw)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# Store keys

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


def _respell(value: object, rng: np.random.Generator) -> object:
    """The same config spelled differently: int <-> float, list <-> tuple/array, key order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _respell(v, rng) for k, v in items}
    if isinstance(value, list):
        seq = [_respell(v, rng) for v in value]
        return tuple(seq) if rng.random() < 0.5 else seq
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return [float(value), np.int64(value), value][int(rng.integers(3))]
    if isinstance(value, float):
        if value == 0.0:
            return -0.0 if rng.random() < 0.5 else 0
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return np.float64(value)
    return value


@settings(PROFILE, max_examples=80)
@given(kind=st.text(min_size=1, max_size=8),
       config=st.dictionaries(st.text(max_size=6), json_value, max_size=5),
       seed=st.integers(0, 2**32 - 1))
def test_cell_key_is_canonical(kind: str, config: dict, seed: int) -> None:
    key = cell_key(kind, config)
    assert len(key) == 64 and int(key, 16) >= 0
    respelled = _respell(config, np.random.default_rng(seed))
    assert cell_key(kind, respelled) == key  # type: ignore[arg-type]
    assert canonical_json(respelled) == canonical_json(config)
    assert cell_key(kind + "x", config) != key
    assert cell_key(kind, {**config, "\x00extra": 1}) != key


@settings(PROFILE, max_examples=30)
@given(config=st.dictionaries(st.text(max_size=4), json_value, max_size=3),
       bad=st.sampled_from((math.nan, math.inf, -math.inf, object(), {1: 2}, b"x", {1, 2})))
def test_cell_key_refuses_non_json(config: dict, bad: object) -> None:
    with pytest.raises(NtkscopeInputError):
        cell_key("kind", {**config, "bad": bad})
    with pytest.raises(NtkscopeInputError):
        cell_key("", config)


# ---------------------------------------------------------------------------------------------
# Generalization: eq. 10


@settings(PROFILE, max_examples=40)
@given(s=st.integers(1, 6), t_points=st.integers(1, 4), batch=st.integers(0, 2),
       seed=st.integers(0, 10**6), t=st.one_of(st.just(math.inf), st.floats(0.0, 1e3)))
def test_linearized_predictor(s: int, t_points: int, batch: int, seed: int, t: float) -> None:
    rng = np.random.default_rng(seed)
    shape = (batch,) if batch else ()
    n = s + t_points
    A = rng.standard_normal((*shape, n, n + 2))
    K = A @ np.swapaxes(A, -1, -2) / n + 0.5 * np.eye(n)  # well-conditioned PSD kernel
    th, cross = K[..., :s, :s], K[..., s:, :s]
    f0x, f0t = rng.standard_normal((*shape, s)), rng.standard_normal((*shape, t_points))
    y = np.where(rng.random(s) < 0.5, -1.0, 1.0)
    pred = linearized_predictor(th, cross, f0x, f0t, y, t)
    assert pred.f_test.shape == (*shape, t_points) and pred.f_train.shape == (*shape, s)
    assert finite(pred.f_test, pred.f_train, pred.condition_number)
    if math.isinf(t):
        np.testing.assert_allclose(pred.f_train, np.broadcast_to(y, (*shape, s)), atol=1e-8)
    elif t == 0:
        np.testing.assert_allclose(pred.f_train, f0x, atol=1e-12)
        np.testing.assert_allclose(pred.f_test, f0t, atol=1e-12)


@settings(PROFILE, max_examples=30)
@given(which=st.sampled_from(("theta_train", "theta_cross", "f0_train", "f0_test", "y", "t",
                              "on_singular", "singular")), data=st.data())
def test_linearized_predictor_invalid(which: str, data: st.DataObject) -> None:
    kw: dict = {"theta_train": np.eye(3), "theta_cross": np.ones((2, 3)),
                "f0_train": np.zeros(3), "f0_test": np.zeros(2), "y": np.ones(3), "t": math.inf}
    if which == "singular":
        kw["theta_train"] = np.ones((3, 3))
    elif which == "on_singular":
        kw["on_singular"] = data.draw(st.sampled_from(("ignore", "", None)))
    else:
        kw[which] = data.draw(st.sampled_from({
            "theta_train": (np.ones((3, 2)), np.ones(3), np.full((3, 3), np.nan), "x",
                            np.ones((0, 0))),
            "theta_cross": (np.ones((2, 4)), np.ones(3), np.full((2, 3), np.inf)),
            "f0_train": (np.zeros(4), np.full(3, np.nan)),
            "f0_test": (np.zeros(3), np.zeros((1, 2))),
            "y": (np.ones(4), np.full(3, np.nan), "x"),
            "t": (-1.0, math.nan, "x", None),
        }[which]), label=which)
    with pytest.raises(NtkscopeInputError):
        linearized_predictor(**kw)


# ---------------------------------------------------------------------------------------------
# The command line: random argument values for every subcommand


#: The state of the fuzz tests (clean argument list, exit codes seen) lives in this object.
fuzz = CliFuzz()
check_outcome = fuzz.check_outcome
mostly, num, small_int, build_argv = fuzz.mostly, fuzz.num, fuzz.small_int, fuzz.build_argv

ACT_S = mostly(st.sampled_from(("relu", "tanh", "erf", "TANH", " erf ")),
               ("softplus", "", "nan"))
SEED_S = mostly(st.sampled_from(("0", "1", "12345", str(2**64), "99999999999999999999999")),
                ("-1", "x", ""))
DATASET_S = mostly(st.sampled_from(("gaussian", "mnist", "fashion-mnist", "Fashion_MNIST")),
                   ("cifar", ""))
INIT_ARGS = {"--activation": ACT_S, "--sigma-w2": num(0.2, 4.0), "--sigma-b2": num(0.0, 2.0)}

#: ``NTKSCOPE_FUZZ_EXAMPLES=500 pytest tests/test_properties.py -k cli`` for a deeper local run.
CLI = settings(PROFILE, max_examples=int(os.environ.get("NTKSCOPE_FUZZ_EXAMPLES", "50")))


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small results store with two done cells and one failed cell."""
    path = tmp_path_factory.mktemp("store") / "demo.sqlite"
    with Store(path) as store:
        for seed in (1, 2):
            cfg = {"seed": seed, "inits": 3, "size": 4}
            result = demo_cell(cfg)
            store.put_done(cell_key("demo", cfg), "demo", cfg, result.summary, result.samples,
                           0.1)
        store.put_failed(cell_key("demo", {"seed": 3}), "demo", {"seed": 3}, "boom\nmore", 0.2)
    return path


@pytest.mark.parametrize("command", ["theory", "phase", "eoc"])
@fuzz.test()
@CLI
@given(data=st.data())
def test_cli_theory_phase_eoc(command: str, data: st.DataObject) -> None:
    required = dict(INIT_ARGS)
    optional: dict = {"--json": None}
    if command == "eoc":
        del required["--sigma-w2"]
    if command == "theory":
        required["--depth"] = small_int(1, 6, INT_BAD)
        optional.update({"--width": small_int(1, 500, INT_BAD), "--input-dim":
                         small_int(1, 900, INT_BAD), "--q0": num(0.1, 3.0),
                         "--c0": num(-1.0, 1.0)})
    argv = build_argv(data, [command], required, optional)
    with tempfile.TemporaryDirectory() as tmp:
        check_outcome(argv, Path(tmp))


@fuzz.test("ntk")
@CLI
@given(data=st.data())
def test_cli_ntk(data: st.DataObject) -> None:
    required = {**INIT_ARGS, "--depth": small_int(0, 3), "--width": small_int(1, 5),
                "--samples": small_int(1, 4, (*INT_BAD[:-1], "100000"))}
    optional = {"--dataset": DATASET_S, "--input-dim": small_int(1, 6, ("0", "-3", "784", "x")),
                "--seed": SEED_S, "--json": None,
                "--out": st.sampled_from(("k.npy", "sub/k.npy", "k.txt", "file.txt/k.npy",
                                          "adir.npy", ".npy")),
                "--save-params": st.sampled_from(("p.npz", "p.npy", "sub2/p.npz", "adir.npy")),
                "--data-dir": st.sampled_from(("nowhere", "emptydir", "file.txt"))}
    argv = build_argv(data, ["ntk"], required, optional)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "emptydir").mkdir()
        (work / "adir.npy").mkdir()
        (work / "file.txt").write_text("x")
        check_outcome(argv, work, ("k.npy", "sub/k.npy", "p.npz", "sub2/p.npz"))


@fuzz.test("ntk-variance")
@CLI
@given(data=st.data())
def test_cli_ntk_variance(data: st.DataObject) -> None:
    required = {**INIT_ARGS, "--depth": small_int(1, 3), "--width": small_int(1, 5)}
    optional = {"--input-dim": small_int(1, 6), "--inits": small_int(2, 12, ("1", "0", "-2", "x")),
                "--seed": SEED_S, "--method": st.sampled_from(("lowrank", "dense", "exact", "")),
                "--device": st.sampled_from(("cpu", "bogus", "cuda:99", "")), "--json": None}
    argv = build_argv(data, ["ntk-variance"], required, optional)
    if "--inits" not in " ".join(argv):
        argv.append("--inits=4")  # the default 1000 is slow for a fuzz test
    with tempfile.TemporaryDirectory() as tmp:
        check_outcome(argv, Path(tmp))


@fuzz.test("variance")
@CLI
@given(data=st.data())
def test_cli_variance(data: st.DataObject) -> None:
    required = {**INIT_ARGS, "--depth": small_int(1, 3), "--width": small_int(1, 5)}
    optional = {"--samples": small_int(2, 5, ("1", "0", "-1", "x", "100000")),
                "--test-points": small_int(1, 3, ("0", "-1", "x")),
                "--dataset": DATASET_S, "--input-dim": small_int(2, 6, ("0", "784", "x")),
                "--monte-carlo": small_int(2, 4, ("1", "0", "x")),
                "--training-sets": small_int(1, 2, ("0", "-1")), "--seed": SEED_S,
                "--json": None}
    argv = build_argv(data, ["variance"], required, optional)
    for opt, default in (("--samples", "4"), ("--test-points", "2")):
        if opt not in " ".join(argv):
            argv.append(f"{opt}={default}")
    with tempfile.TemporaryDirectory() as tmp:
        check_outcome(argv, Path(tmp))


@fuzz.test("train")
@CLI
@given(data=st.data())
def test_cli_train(data: st.DataObject) -> None:
    required = {**INIT_ARGS, "--depth": small_int(1, 2), "--width": small_int(1, 4)}
    optional = {"--dataset": DATASET_S, "--samples": small_int(1, 4, ("0", "-1", "x", "100000")),
                "--target": st.sampled_from(("parity", "sign", "pair:3,5", "pair:1,1",
                                             "pair:1,10", "bogus", "")),
                "--lr": num(1e-4, 1.0), "--lr-scale": num(0.01, 1.0),
                "--patience": small_int(1, 5), "--min-delta": num(0.0, 1e-3),
                "--snapshots": st.sampled_from(("", "1,2", "2,1", "0", "a", "-3", "1,1", "5")),
                "--seed": SEED_S, "--dtype": st.sampled_from(("float64", "float32", "float16")),
                "--device": st.sampled_from(("cpu", "bogus", "")),
                "--threads": small_int(1, 2, ("0", "-1", "x")),
                "--plot": st.sampled_from(("c.png", "sub/c.png", "c.jpg", "adir.png",
                                           "file.txt/c.png")),
                "--data-dir": st.sampled_from(("nowhere", "emptydir")),
                "--quiet": None, "--json": None}
    argv = build_argv(data, ["train"], required, optional)
    argv.append("--max-steps=" + data.draw(st.sampled_from(("0", "1", "3", "-1", "x")),
                                           label="--max-steps"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "emptydir").mkdir()
        (work / "adir.png").mkdir()
        (work / "file.txt").write_text("x")
        check_outcome(argv, work, ("c.png", "sub/c.png"))


@fuzz.test("check")
@CLI
@given(data=st.data())
def test_cli_check(data: st.DataObject) -> None:
    required = {**INIT_ARGS, "--depth": small_int(1, 2), "--width": small_int(1, 4)}
    optional = {"--dataset": DATASET_S, "--samples": small_int(2, 4, ("0", "-1", "x", "100000")),
                "--lr-scale": num(0.05, 1.0), "--seed": SEED_S,
                "--threads": small_int(1, 2, ("0", "-1", "x")),
                "--html": st.sampled_from(("r.html", "sub/r.html", "adir.html", "r.txt",
                                           "file.txt/r.html")),
                "--data-dir": st.sampled_from(("nowhere", "emptydir")), "--json": None}
    argv = build_argv(data, ["check"], required, optional)
    argv.append("--inits=" + data.draw(small_int(2, 12, ("1", "0", "x")), label="--inits"))
    argv.append("--train-steps=" + data.draw(small_int(1, 3, ("0", "-1", "x")), label="--steps"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "emptydir").mkdir()
        (work / "adir.html").mkdir()
        (work / "file.txt").write_text("x")
        check_outcome(argv, work, ("r.html", "sub/r.html"))


@fuzz.test("results")
@CLI
@given(data=st.data())
def test_cli_results(data: st.DataObject, demo_store: Path) -> None:
    action = data.draw(st.sampled_from(("list", "show", "export")))
    store = st.sampled_from((str(demo_store), "missing.sqlite", "adir", "garbage.sqlite",
                             "empty.sqlite"))
    optional: dict = {"--store": store}
    required: dict = {}
    positional: list = []
    if action == "list":
        optional.update({"--kind": st.sampled_from(("demo", "other", "")),
                         "--status": st.sampled_from(("done", "failed", "bogus"))})
    elif action == "show":
        with Store(demo_store, create=False) as s:
            keys = [r.key for r in s.records()]
        positional = [st.sampled_from((keys[0][:8], keys[1], keys[2][:4], "abc", "zzzz", "",
                                       "0000"))]
    else:
        required = {"--format": st.sampled_from(("csv", "parquet", "xlsx")),
                    "--out": st.sampled_from(("e.csv", "sub/e.parquet", "adir",
                                              "garbage.sqlite/x"))}
        optional["--kind"] = st.sampled_from(("demo", "other"))
    argv = build_argv(data, ["results", action], required, optional, positional)
    if "--store" not in " ".join(argv):
        argv.append(f"--store={demo_store}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "adir").mkdir()
        (work / "garbage.sqlite").write_bytes(b"not a database")
        (work / "empty.sqlite").write_bytes(b"")
        check_outcome(argv, work, ("e.csv", "sub/e.parquet"))


@fuzz.test("data")
@CLI
@given(data=st.data())
def test_cli_data(data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(("info", "download")))
    names = st.sampled_from(("mnist", "fashion-mnist", "fashion", "gaussian", "bogus"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "mirror").mkdir()
        (work / "file.txt").write_text("x")
        if action == "info":
            argv = build_argv(data, ["data", "info"], {}, {
                "--data-dir": st.sampled_from(("mirror", "nowhere", "file.txt")), "--json": None},
                [names, names])
        else:
            # a local, empty mirror: never the network
            argv = build_argv(data, ["data", "download"], {}, {
                "--dest": st.sampled_from(("dl", "file.txt", "file.txt/dl")),
                "--timeout": num(0.5, 2.0)}, [names])
            argv.append(f"--mirror={(work / 'mirror').as_uri()}")
        check_outcome(argv, work)


@CLI
@given(data=st.data())
def test_cli_figure_and_reproduce_errors(data: st.DataObject) -> None:
    """Only argument combinations that fail fast (a real figure takes seconds to minutes)."""
    command = data.draw(st.sampled_from(("figure", "reproduce")))
    positional = [st.sampled_from(("99", "abc", "", "0", "5", "1"))] if command == "figure" \
        else []
    optional = {"--preset": st.sampled_from(("quick", "paper", "bogus")),
                "--workers": small_int(1, 2), "--executor": st.sampled_from(("local", "ray")),
                "--store": st.sampled_from(("s.sqlite", "file.txt")), "--quiet": None}
    argv = build_argv(data, [command], {}, optional, positional)
    number_ok = command == "figure" and any(a in ("5", "1") for a in argv[1:2])
    out = data.draw(st.sampled_from(("file.txt", "file.txt/sub")) if number_ok or
                    command == "reproduce" else st.sampled_from(("figs", "file.txt")))
    argv.append(f"--out={out}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "file.txt").write_text("x")
        assert check_outcome(argv, work) == 2


def _subcommands() -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(sub.choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_cli_every_subcommand_usage_errors(command: str, tmp_path: Path) -> None:
    """Every registered subcommand (also ones added later): unknown options and missing
    required arguments are one-line usage errors; --help exits 0."""
    assert check_outcome([command, "--no-such-option"], tmp_path) == 2
    assert check_outcome([command, "--help"], tmp_path) == 0
    code = check_outcome([command], tmp_path)
    assert code in (0, 2)


def test_cli_unknown_command_and_no_command(tmp_path: Path) -> None:
    assert check_outcome(["no-such-command"], tmp_path) == 2
    assert check_outcome(["--version"], tmp_path) == 0
    code, out, _ = run_cli([])
    assert code == 2 and "usage" in out


@settings(PROFILE, max_examples=20)
@given(command=st.sampled_from(("theory", "phase", "eoc", "ntk-variance")),
       sw2=st.floats(0.2, 4.0), sb2=st.floats(0.0, 2.0), act=activation)
def test_cli_valid_json_is_finite(command: str, sw2: float, sb2: float, act: str) -> None:
    """Valid arguments always succeed with finite JSON (null where a quantity is undefined)."""
    argv = [command, "--activation", act, f"--sigma-b2={sb2!r}", "--json"]
    if command != "eoc":
        argv.append(f"--sigma-w2={sw2!r}")
    if command == "theory":
        argv.append("--depth=3")
    if command == "ntk-variance":
        argv += ["--depth=2", "--width=4", "--inits=5", "--input-dim=3"]
    with tempfile.TemporaryDirectory() as tmp:
        code = check_outcome(argv, Path(tmp))
    assert code == 0, argv


def test_api_docs_are_up_to_date() -> None:
    """docs/api.md is exactly what scripts/gen_api_docs.py generates (it cannot silently rot)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_api_docs", REPO / "scripts" /
                                                  "gen_api_docs.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    expected = gen.render()
    assert gen.render() == expected  # deterministic
    current = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == expected, "docs/api.md is stale: run `python scripts/gen_api_docs.py`"


# Argument lists that once gave a traceback or a warning instead of a result or a one-line
# error (found by the fuzz tests above); each must now exit 0 or 2 cleanly.
B = ["--sigma-b2=0"]
REGRESSIONS = [
    ["theory", "--activation=tanh", "--sigma-w2=1e-320", *B, "--depth=2", "--json"],  # NaN JSON
    ["theory", "--activation=relu", "--sigma-w2=2", *B, "--depth=2", "--q0=1e308"],  # overflow
    ["phase", "--activation=erf", "--sigma-w2=1e308", "--sigma-b2=1e308", "--json"],
    ["phase", "--activation=tanh", "--sigma-w2=1e-320", "--sigma-b2=1e308"],
    ["eoc", "--activation=tanh", "--sigma-b2=1e308"],
    ["variance", "--activation=tanh", "--sigma-w2=1e-320", *B, "--depth=2", "--width=3",
     "--samples=3", "--test-points=2", "--input-dim=3", "--json"],  # ZeroDivisionError
    ["ntk", "--activation=relu", "--sigma-w2=2", *B, "--depth=2", "--width=3",
     "--samples=99999999999999", "--input-dim=3"],  # MemoryError
    ["ntk", "--activation=relu", "--sigma-w2=2", *B, "--depth=2", "--width=99999999999",
     "--samples=2", "--input-dim=3"],  # torch allocator RuntimeError
    ["train", "--activation=tanh", "--sigma-w2=1e308", *B, "--depth=2", "--width=3",
     "--samples=2", "--max-steps=3", "--dataset=gaussian", "--quiet"],  # overflow warning
]


@pytest.mark.parametrize("argv", REGRESSIONS, ids=lambda a: " ".join(a[:2]))
def test_cli_regressions(argv: list[str], tmp_path: Path) -> None:
    check_outcome(argv, tmp_path)
