"""ntkscope.generic.fit: full-batch gradient descent of any nn.Module against the MLP trainer,
hand-written torch steps, and the stopping, divergence and error rules."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ntkscope import MLP
from ntkscope.generic import FitConfig, FitResult, fit, reference_module_ntk
from ntkscope.training import LearningRate, Recording, StoppingRule, train
from ntkscope.validation import NtkscopeInputError


def _data(s: int = 12, m0: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s, m0))
    return x, np.where(rng.standard_normal(s) > 0, 1.0, -1.0)


def _small(outputs: int, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, outputs)).double()


def _lam_full(model: nn.Module, x: torch.Tensor) -> float:
    """lambda_max of the (S O) x (S O) kernel, from the autograd oracle."""
    k = reference_module_ntk(model.eval(), x, output="full")
    n, _, o, _ = k.shape
    return float(torch.linalg.eigvalsh(k.permute(0, 2, 1, 3).reshape(n * o, n * o))[-1])


@pytest.mark.parametrize(("rate", "act"), [(LearningRate(lr_scale=0.5), "tanh"),
                                           (LearningRate(lr=0.05), "relu")])
def test_mse_matches_the_mlp_trainer(rate: LearningRate, act: str) -> None:
    x, y = _data()
    net = MLP(5, 16, 3, act, 1.5, 0.1)
    p = net.init(1, 3)
    run = train(net, x, y, p, rate=rate, stop=StoppingRule(max_steps=30, patience=None),
                record=Recording(snapshots=(10,), curve_points=100))
    ref = run.results[0]
    model = net.to_module(p, 0)
    before = [t.clone() for t in model.parameters()]
    res = fit(model, torch.as_tensor(x), y,
              FitConfig(lr=rate.lr, lr_scale=rate.lr_scale, max_steps=30, loss_fraction=None))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # untouched
    assert res.stop_reason == "max_steps" and res.steps == ref.steps == 30
    assert res.lr == pytest.approx(ref.lr, rel=1e-12)
    if rate.lr_scale is not None:
        assert res.lr_max == pytest.approx(ref.lr_max, rel=1e-12)
        assert res.lambda_max == pytest.approx(ref.lambda_max, rel=1e-12)
    assert list(res.loss_steps) == list(ref.loss_steps)
    np.testing.assert_allclose(res.losses, ref.losses, rtol=0, atol=1e-10)
    assert res.initial_loss == pytest.approx(ref.initial_loss, abs=1e-12)
    assert res.ntk_change == pytest.approx(ref.final_ntk_change, abs=1e-10)
    # the trained weights are the MLP trainer's final weights
    final = net.to_module(run.params, 0)
    for a, b in zip(res.model.parameters(), final.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    flat0 = torch.cat([t.detach().reshape(-1) for t in before])
    flat = torch.cat([t.detach().reshape(-1) for t in final.parameters()])
    assert res.weight_change == pytest.approx(float((flat - flat0).norm() / flat0.norm()),
                                              rel=1e-10)


def test_multi_output_mse_rate_and_step() -> None:
    x, _ = _data(10)
    xt = torch.as_tensor(x)
    y = np.random.default_rng(4).standard_normal((10, 3))
    model = _small(3)
    lam = _lam_full(copy.deepcopy(model), xt)
    res = fit(model, xt, y, FitConfig(lr_scale=0.3, max_steps=2, loss_fraction=None))
    assert res.lambda_max == pytest.approx(lam, rel=1e-10)
    assert res.lr == pytest.approx(0.3 * 2 * 10 / lam, rel=1e-10)
    # two hand-written steps of L = 1/(2S) sum |f - y|^2
    hand = copy.deepcopy(model)
    yt = torch.as_tensor(y)
    losses = []
    for t in range(3):
        loss = 0.5 * ((hand(xt) - yt) ** 2).sum() / 10
        losses.append(float(loss.detach()))
        if t < 2:
            grads = torch.autograd.grad(loss, list(hand.parameters()))
            with torch.no_grad():
                for p, g in zip(hand.parameters(), grads):
                    p -= res.lr * g
    np.testing.assert_allclose(res.losses, losses, rtol=1e-13)
    # the trace-kernel change on a separate probe set, by the oracle
    probe = torch.as_tensor(np.random.default_rng(5).standard_normal((4, 5)))
    res2 = fit(model, xt, y, FitConfig(lr=0.2, max_steps=3, loss_fraction=None), probe=probe,
               output="full")
    k0 = reference_module_ntk(copy.deepcopy(model).eval(), probe, output="full")
    k1 = reference_module_ntk(res2.model.eval(), probe, output="full")
    assert res2.probe_samples == 4 and res2.lr_max is None and res2.lr == 0.2
    assert res2.ntk_change == pytest.approx(float((k1 - k0).norm() / k0.norm()), rel=1e-9)


@pytest.mark.parametrize("outputs", [3, 1])
def test_cross_entropy_matches_a_torch_step(outputs: int) -> None:
    x, _ = _data(12)
    xt = torch.as_tensor(x)
    labels = np.random.default_rng(2).integers(0, max(outputs, 2), 12)
    model = _small(outputs)
    res = fit(model, xt, labels, FitConfig(loss="cross-entropy", max_steps=4,
                                           loss_fraction=None))
    c = 0.5 if outputs > 1 else 0.25
    lam = _lam_full(copy.deepcopy(model), xt)
    assert res.lr == pytest.approx(0.5 * 2 * 12 / (c * lam), rel=1e-10)
    hand = copy.deepcopy(model)
    opt = torch.optim.SGD(hand.parameters(), lr=res.lr)
    lt = torch.as_tensor(labels)
    losses = []
    for t in range(5):
        out = hand(xt)
        loss = (F.cross_entropy(out, lt) if outputs > 1 else
                F.binary_cross_entropy_with_logits(out[:, 0], lt.double()))
        losses.append(float(loss.detach()))
        if t < 4:
            opt.zero_grad()
            loss.backward()
            opt.step()
    np.testing.assert_allclose(res.losses, losses, rtol=1e-12)
    for a, b in zip(res.model.parameters(), hand.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert res.initial_loss == pytest.approx(losses[0])


def test_stops_at_the_loss_fraction() -> None:
    x, y = _data(12)
    res = fit(_small(1), torch.as_tensor(x), y, FitConfig(loss_fraction=0.3, max_steps=2000,
                                                          curve_points=2000))
    assert res.stop_reason == "loss_fraction" and res.reached
    losses = np.asarray(res.losses)
    assert list(res.loss_steps) == list(range(res.steps + 1))  # every step kept
    assert losses[-1] <= 0.3 * losses[0] < losses[:-1].min()
    assert res.final_loss == losses[-1]
    k0 = reference_module_ntk(_small(1).double().eval(), torch.as_tensor(x))
    k1 = reference_module_ntk(res.model.eval(), torch.as_tensor(x))
    assert res.ntk_change == pytest.approx(float((k1 - k0).norm() / k0.norm()), rel=1e-9)
    cos = float((k1 * k0).sum() / (k1.norm() * k0.norm()))
    assert res.kernel_distance == pytest.approx(1 - cos, rel=1e-8, abs=1e-14)
    # the budget stops first
    short = fit(_small(1), torch.as_tensor(x), y, FitConfig(loss_fraction=0.3,
                                                            max_steps=res.steps - 1))
    assert short.stop_reason == "max_steps" and not short.reached
    assert short.steps == res.steps - 1


def test_stops_at_the_target_loss() -> None:
    x, y = _data(12)
    cfg = FitConfig(loss_fraction=None, target_loss=0.2, max_steps=2000, curve_points=2000)
    res = fit(_small(1), torch.as_tensor(x), y, cfg)
    losses = np.asarray(res.losses)
    assert res.stop_reason == "target_loss" and res.reached
    assert losses[-1] <= 0.2 < losses[:-1].min() and len(losses) == res.steps + 1
    assert ("target loss", 0.2) in res.rows() and res.to_dict()["target_loss"] == 0.2


def test_divergence_reports_no_nan() -> None:
    x, y = _data(12)
    res = fit(_small(1), torch.as_tensor(x) * 10, y, FitConfig(lr=50.0, max_steps=500))
    assert res.stop_reason == "diverged" and res.steps < 500
    assert res.ntk_change is None and res.weight_change is None
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # no NaN or inf anywhere
    assert all(math.isfinite(v) for v in res.losses)
    assert res.min_loss <= res.initial_loss


def test_batchnorm_model_trains_in_its_mode_and_is_measured_in_eval() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    x, y = _data(16)
    res = fit(model, torch.as_tensor(x), y, FitConfig(lr=0.1, max_steps=5, loss_fraction=None))
    assert res.model.training and res.model[1].training  # the user's mode, restored
    assert res.model[1].num_batches_tracked == 6  # a training-mode forward per loss, t = 0..5
    assert model[1].num_batches_tracked == 0 and next(model.parameters()).dtype == torch.float32
    assert res.ntk_change is not None and res.ntk_change > 0
    # the steps used the batch statistics: a hand-written train-mode step agrees
    hand = copy.deepcopy(model).double()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)[:, None]
    loss = 0.5 * ((hand(xt) - yt) ** 2).sum() / 16
    assert res.initial_loss == pytest.approx(float(loss.detach()), rel=1e-12)


def test_rendering_and_frozen() -> None:
    x, y = _data(8)
    res = fit(_small(1), torch.as_tensor(x), y, FitConfig(max_steps=3))
    assert isinstance(res, FitResult)
    assert res.title().startswith("Full-batch gradient descent (mse, S=8, O=1)")
    keys = [r[0] for r in res.rows()]
    assert "learning rate" in keys and "kernel distance" in keys
    d = res.to_dict()
    assert "model" not in d and d["steps"] == res.steps
    json.dumps(d, allow_nan=False)
    with pytest.raises(AttributeError):
        res.steps = 0  # type: ignore[misc]
    assert FitConfig().lr_scale == 0.5 and FitConfig(lr=0.1).lr_scale is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss": "hinge"}, "loss"), ({"lr": -1.0}, "lr"), ({"lr_scale": 0}, "lr_scale"),
    ({"max_steps": -1}, "max_steps"), ({"loss_fraction": 1.5}, "loss_fraction"),
    ({"loss_fraction": 0.0}, "loss_fraction"), ({"curve_points": 0}, "curve_points"),
    ({"divergence_factor": float("nan")}, "divergence_factor"),
    ({"target_loss": 0.0}, "target_loss"),
])
def test_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        FitConfig(**kwargs)


def test_input_errors() -> None:
    x, y = _data(8)
    xt = torch.as_tensor(x)
    m1, m3 = _small(1), _small(3)
    cases = [
        (lambda: fit("model", xt, y), "model"),
        (lambda: fit(m1, xt, y, config={"lr": 1}), "config"),
        (lambda: fit(m1, xt, y, output="diagonal"), "output"),
        (lambda: fit(m1, xt, y[:5]), "y"),
        (lambda: fit(m3, xt, y), r"y: .*\(8, 3\)"),
        (lambda: fit(m1, xt, np.full(8, np.nan)), "NaN"),
        (lambda: fit(m1, xt, ["a"] * 8), "y"),
        (lambda: fit(m3, xt, np.full(8, 3), FitConfig(loss="cross-entropy")), r"\[0, 3\)"),
        (lambda: fit(m3, xt, np.full(8, 0.5), FitConfig(loss="cross-entropy")), "integer"),
        (lambda: fit(m1, xt, np.full(8, 2), FitConfig(loss="cross-entropy")), r"\{0, 1\}"),
        (lambda: fit(m1, torch.zeros(8, 7, dtype=torch.float64), y), "failed"),
        (lambda: fit(m1, xt, y, params=["nope"]), "params"),
        (lambda: fit(m1, xt, y, dtype=torch.int64), "dtype"),
        (lambda: fit(m1, xt, y, probe=torch.zeros(3, 7)), "probe|failed"),
    ]
    for call, match in cases:
        with pytest.raises(NtkscopeInputError, match=match):
            call()


def test_params_subset_trains_only_those() -> None:
    x, y = _data(8)
    model = _small(1)
    res = fit(model, torch.as_tensor(x), y, FitConfig(lr=0.1, max_steps=3, loss_fraction=None),
              params=["2.weight", "2.bias"])
    torch.testing.assert_close(res.model[0].weight, model[0].weight, rtol=0, atol=0)
    assert not torch.equal(res.model[2].weight, model[2].weight)
    assert set(res.weight_change_per_tensor) == {"2.weight", "2.bias"}
