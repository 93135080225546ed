"""Batched full-batch gradient descent and the NTK change (``ntkscope.gd``,
``ntkscope.training``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntkscope.datasets import load_dataset
from ntkscope.gd import gd_step, loss_and_gradients, max_learning_rate, mse_loss
from ntkscope.networks import MLP, Params, RangeMonitor
from ntkscope.ntk import empirical_ntk
from ntkscope.spec import NetworkSpec
from ntkscope.threads import torch_threads
from ntkscope.training import (
    Execution,
    LearningRate,
    LossMonitor,
    Recording,
    StoppingRule,
    init_params,
    train,
)
from ntkscope.validation import NtkscopeInputError

PHI = {"relu": torch.relu, "tanh": torch.tanh, "erf": torch.erf}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    d = load_dataset("gaussian", 16, seed=0, dim=32)
    return d.X, d.y


def autograd_loss_grads(act: str, params: Params, i: int, X: np.ndarray, y: np.ndarray
                        ) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradients of network ``i`` by torch.autograd on a plain functional network."""
    ws = [w[i].clone().requires_grad_(True) for w in params.weights]
    bs = [b[i].clone().requires_grad_(True) for b in params.biases]
    h = torch.as_tensor(X, dtype=params.dtype)
    for l, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if l < len(ws) - 1:
            h = PHI[act](h)
    loss = 0.5 * ((h[:, 0] - torch.as_tensor(y, dtype=params.dtype)) ** 2).mean()
    grads = torch.autograd.grad(loss, ws + bs)
    return float(loss.detach()), list(grads)


# ---------------------------------------------------------------------------------------------
# Gradients and single steps


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
def test_gradients_match_autograd(act: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, [24, 16, 20], 3, act)
    variances = [(1.0, 0.0), (2.0, 0.3), (4.0, 0.1)]
    params = init_params(net, variances, seed=3)
    loss, grads = loss_and_gradients(net, params, X, y)
    assert loss.shape == (3,)
    torch.testing.assert_close(mse_loss(net, params, X, y), loss, rtol=1e-14, atol=0)
    for i in range(3):
        ref_loss, ref = autograd_loss_grads(act, params, i, X, y)
        assert abs(float(loss[i]) - ref_loss) <= 1e-12 * ref_loss
        ours = [w[i] for w in grads.weights] + [b[i] for b in grads.biases]
        for g, r in zip(ours, ref):
            assert g.shape == r.shape
            assert float((g - r).abs().max()) <= 1e-10 * float(r.abs().max())


def test_gradients_where_forward_with_cache_rescales() -> None:
    """A deep chaotic ReLU network whose signals leave the range monitor's bounds, so
    ``forward_with_cache`` takes its rescaled path: the plain-value gradients of the trainer
    equal ``(1/S) D_l^T diag(r) A_{l-1}`` assembled from the materialized cache."""
    d = load_dataset("gaussian", 6, seed=0, dim=8)
    net = MLP(8, 32, 400, "relu", 6.0, 0.1)
    params = net.init(2, seed=1)
    monitor = RangeMonitor(torch.float64)
    with torch_threads(1):  # 400 layers of tiny products: avoid OpenMP stalls
        net.forward_scaled(params, torch.as_tensor(d.X), rescale=False, monitor=monitor)
        assert not monitor.ok()  # the guarded path would rescale
        loss, grads = loss_and_gradients(net, params, d.X, d.y)
        cache = net.forward_with_cache(params, d.X)
    assert bool(torch.isfinite(loss).all()) and float(loss.min()) > 1e150
    r = (cache.output - torch.as_tensor(d.y)) / 6
    for l, (a, delta) in enumerate(zip(cache.inputs, cache.deltas)):
        ref_w = torch.einsum("bs,bsi,bsj->bij", r, delta, a)
        ref_b = torch.einsum("bs,bsi->bi", r, delta)
        assert float((grads.weights[l] - ref_w).abs().max()) <= 1e-10 * float(ref_w.abs().max())
        assert float((grads.biases[l] - ref_b).abs().max()) <= 1e-10 * float(ref_b.abs().max())


def test_one_step_matches_autograd_step(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, 20, 2, "tanh", 1.5, 0.2)
    params = net.init(2, seed=5)
    lrs = [0.01, 0.03]
    run = train(net, X, y, params, rate=LearningRate(lrs),
                stop=StoppingRule(max_steps=1, patience=None), record=Recording(()),
                execution=Execution(threads=1))
    assert [r.steps for r in run.results] == [1, 1]
    assert all(r.stop_reason == "max_steps" for r in run.results)
    stepped = params.clone()
    before = gd_step(net, stepped, X, y, lrs)
    for i in range(2):
        ref_loss, grads = autograd_loss_grads("tanh", params, i, X, y)
        assert abs(run.results[i].initial_loss - ref_loss) <= 1e-12 * ref_loss
        assert abs(float(before[i]) - ref_loss) <= 1e-12 * ref_loss
        old = [w[i] for w in params.weights] + [b[i] for b in params.biases]
        new = [w[i] for w in run.params.weights] + [b[i] for b in run.params.biases]
        new2 = [w[i] for w in stepped.weights] + [b[i] for b in stepped.biases]
        for o, n, n2, g in zip(old, new, new2, grads):
            expected = o - lrs[i] * g
            torch.testing.assert_close(n, expected, rtol=0, atol=1e-13)
            torch.testing.assert_close(n2, expected, rtol=0, atol=1e-13)
    # The caller's params are never modified by train().
    assert torch.equal(params.weights[0], net.init(2, seed=5).weights[0])
    # final_loss is the loss at the final parameters.
    after = mse_loss(net, run.params, X, y)
    assert run.results[0].final_loss == pytest.approx(float(after[0]), rel=1e-12)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_gram_first_layer_gives_the_same_training(act: str,
                                                  data: tuple[np.ndarray, np.ndarray]) -> None:
    """S = 16 < M0 = 32: the default runs the first layer in its Gram form (W^1 = W^1_0 + C X);
    it must reproduce the plain updates, snapshots, stops and final weights."""
    X, y = data
    net = MLP(32, 24, 2, act)
    kw = {"variances": [(1.5, 0.1), (3.0, 0.2), (1.0, 0.0)], "seed": 2,
          "stop": StoppingRule(max_steps=80, patience=5, min_delta=1e-4),
          "record": Recording((10, 50))}
    lrs = [1e-6, 1.0, 60.0]  # early stop, max_steps, divergence
    rate = 0.5 * float(max_learning_rate(net, init_params(net, kw["variances"], seed=2),
                                         X).min())
    lr = LearningRate([rate * v for v in lrs])
    a = train(net, X, y, rate=lr, execution=Execution(threads=1, gram_first_layer=True), **kw)
    b = train(net, X, y, rate=lr, execution=Execution(threads=1, gram_first_layer=False), **kw)
    for ra, rb in zip(a.results, b.results):
        assert (ra.steps, ra.stop_reason) == (rb.steps, rb.stop_reason)
        np.testing.assert_allclose(ra.losses, rb.losses, rtol=1e-9, atol=1e-15)
        assert ra.ntk_change == pytest.approx(rb.ntk_change, rel=1e-8)
    assert len({r.steps for r in a.results}) > 1  # networks stopped at different steps
    for u, v in zip(a.params.weights + a.params.biases, b.params.weights + b.params.biases):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def test_init_params_per_network_variances() -> None:
    net = MLP(10, 8, 2, "relu")
    variances = [(1.0, 0.0), (4.0, 0.5), (1.0, 0.0)]
    p = init_params(net, variances, seed=7)
    for i, (sw2, sb2) in enumerate(variances):
        one = MLP(10, 8, 2, "relu", sw2, sb2).init(1, seed=7, start=i)
        for a, b in zip(p.weights + p.biases, one.weights + one.biases):
            assert torch.equal(a[i], b[0])
    assert torch.equal(init_params(net, batch=3, seed=7).weights[1], net.init(3, 7).weights[1])
    with pytest.raises(NtkscopeInputError):
        init_params(net, variances, batch=2)
    with pytest.raises(NtkscopeInputError):
        init_params(net, [(0.0, 1.0)])


# ---------------------------------------------------------------------------------------------
# Dynamics


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_wide_shallow_network_follows_linearized_dynamics(act: str) -> None:
    d = load_dataset("gaussian", 8, seed=0, dim=10)
    net = MLP(10, 4096, 1, act, 2.0, 0.1)
    params = net.init(1, seed=3)
    theta0 = empirical_ntk(net, params, d.X)[0]
    run = train(net, d.X, d.y, params, rate=LearningRate(lr_scale=0.5),
                stop=StoppingRule(max_steps=100, patience=None), record=Recording((10, 100)),
                execution=Execution(threads=1))
    r = run.results[0]
    assert r.lr == pytest.approx(0.5 * 2 * 8 / float(torch.linalg.eigvalsh(theta0)[-1]))
    # Linearized model: f <- f - (lr/S) Theta0 (f - y).
    f, y = net.apply(params, d.X)[0], torch.as_tensor(d.y)
    linear = []
    for _ in range(101):
        linear.append(float(((f - y) ** 2).mean() / 2))
        f = f - (r.lr / 8) * theta0 @ (f - y)
    assert np.array_equal(r.loss_steps, np.arange(101))
    rel = np.abs(r.losses - np.array(linear)) / np.array(linear)
    assert rel.max() < 0.02
    assert linear[-1] < 1e-3 * linear[0]  # the comparison covers real progress
    assert r.final_ntk_change is not None and r.final_ntk_change < 1e-3
    assert set(r.ntk_change) == {10, 100} and max(r.ntk_change.values()) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("act, ordered, chaotic", [
    ("relu", (1.0, 0.1), (4.0, 0.1)),
    ("tanh", (0.5, 0.1), (8.0, 0.1)),
])
def test_ntk_change_grows_with_depth_in_chaotic_phase(
    act: str, ordered: tuple[float, float], chaotic: tuple[float, float],
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """Paper Section 4 protocol: one learning rate for all networks, below every lr_max."""
    X, y = data
    nets = {L: MLP(32, 64, L, act) for L in (2, 10)}
    params = {L: init_params(nets[L], [ordered, chaotic], seed=1) for L in (2, 10)}
    lr = 0.5 * min(float(max_learning_rate(nets[L], params[L], X).min()) for L in (2, 10))
    change = {}
    for L in (2, 10):
        run = train(nets[L], X, y, params[L], rate=LearningRate(lr),
                    stop=StoppingRule(max_steps=300), record=Recording((10, 100)),
                    execution=Execution(threads=1))
        assert all(r.stop_reason != "diverged" for r in run.results)
        change[L] = [r.final_ntk_change for r in run.results]
    (ord2, cha2), (ord10, cha10) = change[2], change[10]
    assert cha10 > 0.3 and cha10 > 5 * cha2
    assert ord2 < 0.1 and ord10 < 0.1 and ord10 < cha10 / 10


# ---------------------------------------------------------------------------------------------
# Stopping rules


def test_stopping_rules_act_per_network(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, 32, 2, "relu", 2.0, 0.1)
    params = net.init(1, seed=0)
    params = Params([w.repeat(3, 1, 1) for w in params.weights],
                    [b.repeat(3, 1) for b in params.biases])
    lr_max = float(max_learning_rate(net, params, X)[0])
    lrs = [1e-12, 0.4 * lr_max, 50 * lr_max]
    rule, one = StoppingRule(max_steps=60, patience=10, min_delta=1e-7), Execution(threads=1)
    run = train(net, X, y, params, rate=LearningRate(lrs), stop=rule,
                record=Recording((5, 20, 40)), execution=one)
    tiny, good, huge = run.results
    assert (tiny.stop_reason, tiny.steps) == ("early_stop", 10)
    assert (good.stop_reason, good.steps) == ("max_steps", 60)
    assert huge.stop_reason == "diverged" and huge.steps < 20
    assert huge.final_ntk_change is None and huge.to_dict()["ntk_change"]["final"] is None
    assert set(tiny.ntk_change) == {5} and set(good.ntk_change) == {5, 20, 40}
    assert good.final_loss < 0.1 * good.initial_loss and good.min_loss == good.final_loss
    # Frozen networks keep the parameters of their last step; the others went on.
    alone = train(net, X, y, params.select(0), rate=LearningRate(1e-12), stop=rule,
                  record=Recording(()), execution=one)
    torch.testing.assert_close(run.params.weights[1][0], alone.params.weights[1][0],
                               rtol=0, atol=1e-15)
    alone = train(net, X, y, params.select(1), rate=LearningRate(lrs[1]), stop=rule,
                  record=Recording((5, 20, 40)), execution=one).results[0]
    assert alone.final_loss == pytest.approx(good.final_loss, rel=1e-9)
    assert alone.ntk_change[40] == pytest.approx(good.ntk_change[40], rel=1e-9)
    # Loss curve: every step here; JSON summary has no non-finite numbers.
    assert np.array_equal(good.loss_steps, np.arange(61))
    assert all(v is None or math.isfinite(v) for v in huge.to_dict().values()
               if isinstance(v, float))


def test_early_stopping_rule_is_best_loss_based() -> None:
    rule = StoppingRule(max_steps=100, patience=3, min_delta=0.1, divergence_factor=1e6)
    mon = LossMonitor(1, rule, zero_loss=0.5, curve_points=1000)
    idx, ok = np.array([0]), np.array([True])
    # Slow decrease 1.0 -> 0.95 -> 0.92 -> 0.91: never 0.1 below the best (1.0) in 3 steps.
    for t, loss in enumerate([1.0, 0.95, 0.92]):
        assert not mon.observe(t, idx, np.array([loss]), ok)[0][0]
    stop, _ = mon.observe(3, idx, np.array([0.91]), ok)
    assert stop[0] and mon.reason[0] == "early_stop" and mon.steps[0] == 3
    # The same decrease reaching best - min_delta in time resets the wait.
    mon = LossMonitor(1, rule, zero_loss=0.5, curve_points=1000)
    for t, loss in enumerate([1.0, 0.95, 0.92, 0.85, 0.84, 0.80]):
        assert not mon.observe(t, idx, np.array([loss]), ok)[0][0]
    assert mon.best[0] == 0.85 and mon.wait[0] == 2
    # Divergence: exploding or non-finite loss, or a non-finite update.
    for losses, oks in (([1.0, 2e6], [True, True]), ([1.0, np.nan], [True, True]),
                        ([1.0, 0.9], [True, False])):
        mon = LossMonitor(1, StoppingRule(100, None, 0.0, 1e6), 0.5, 1000)
        mon.observe(0, idx, np.array([losses[0]]), np.array([oks[0]]))
        stop, diverged = mon.observe(1, idx, np.array([losses[1]]), np.array([oks[1]]))
        assert stop[0] and diverged[0] and mon.reason[0] == "diverged"


def test_loss_curve_is_subsampled(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, 16, 1, "tanh", 1.0, 0.1)
    r = train(net, X, y, rate=LearningRate(1e-3), stop=StoppingRule(53, patience=None),
              record=Recording((), curve_points=10), execution=Execution(threads=1)).results[0]
    assert r.loss_steps.tolist() == [*range(0, 53, 6), 53]
    assert len(r.losses) == len(r.loss_steps) and np.all(np.diff(r.losses) < 0)


# ---------------------------------------------------------------------------------------------
# Determinism, dtypes, validation


def test_deterministic_and_float32(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, 24, 3, "erf", 2.0, 0.1)
    kw = {"variances": [(1.0, 0.1), (3.0, 0.1)], "seed": 4,
          "rate": LearningRate(lr_scale=0.3), "stop": StoppingRule(40),
          "record": Recording((10,))}
    one = Execution(threads=1)
    a, b = train(net, X, y, execution=one, **kw), train(net, X, y, execution=one, **kw)
    for ra, rb in zip(a.results, b.results):
        assert np.array_equal(ra.losses, rb.losses) and ra.ntk_change == rb.ntk_change
    assert all(torch.equal(u, v) for u, v in zip(a.params.weights, b.params.weights))
    # A memory budget of one network per chunk trains them one after the other: same numbers.
    chunked = train(net, X, y, execution=Execution(threads=1, max_memory=1), **kw)
    assert [r.index for r in chunked.results] == [0, 1]
    for ra, rc in zip(a.results, chunked.results):
        assert (ra.steps, ra.stop_reason, ra.sigma_w2) == (rc.steps, rc.stop_reason, rc.sigma_w2)
        np.testing.assert_allclose(rc.losses, ra.losses, rtol=1e-12)
    torch.testing.assert_close(chunked.params.weights[2], a.params.weights[2], rtol=0,
                               atol=1e-13)
    c = train(net, X, y, execution=Execution(threads=1, dtype=torch.float32), **kw)
    assert c.params.dtype == torch.float32
    for r32, r64 in zip(c.results, a.results):
        assert r32.stop_reason == r64.stop_reason and r32.steps == r64.steps
        assert r32.final_loss == pytest.approx(r64.final_loss, rel=1e-3)
        assert r32.final_ntk_change == pytest.approx(r64.final_ntk_change, rel=1e-3)


def test_network_spec_trains_like_its_mlp(data: tuple[np.ndarray, np.ndarray]) -> None:
    # A NetworkSpec takes its input_dim from X and draws the same networks as its MLP.
    X, y = data
    spec = NetworkSpec("tanh", 1.5, 0.1, 2, 12)
    kw = {"batch": 2, "seed": 3, "rate": LearningRate(lr_scale=0.5), "stop": StoppingRule(20),
          "record": Recording((10,)), "execution": Execution(threads=1)}
    a, b = train(spec, X, y, **kw), train(spec.mlp(X.shape[1]), X, y, **kw)
    for ra, rb in zip(a.results, b.results):
        assert np.array_equal(ra.losses, rb.losses) and ra.ntk_change == rb.ntk_change
    r = a.results[1]
    assert r.network == spec.with_input_dim(32) and r.samples == len(y)
    r.data = "gaussian (sign)"
    assert r.title() == "Gradient descent: tanh, sw2=1.5, sb2=0.1, L=2, M=12, gaussian (sign), S=16"
    keys = [k for k, _ in r.rows()]
    assert keys[:3] == ["learning rate", "lr_max = 2S/lambda_max", "steps"]
    assert keys[-3:] == ["NTK change, step 10", "NTK change, final (20)", "seconds"]
    # Per-network variances: each result describes its own network.
    run = train(spec, X, y, variances=[(1.0, 0.0), (3.0, 0.2)], rate=LearningRate(1e-3),
                stop=StoppingRule(2), record=Recording(()))
    assert [res.network.sigma_w2 for res in run.results] == [1.0, 3.0]


def test_lr_with_lr_scale_is_capped_per_network(data: tuple[np.ndarray, np.ndarray]) -> None:
    # lr = min(lr, s lr_max): the fixed rate where it is below the cap, the cap elsewhere.
    X, y = data
    net = MLP(32, 16, 3, "relu")
    params = init_params(net, [(0.5, 0.1), (4.0, 0.1)], seed=2)
    lr_max = max_learning_rate(net, params, X).cpu().numpy()
    assert lr_max[0] > 4 * lr_max[1]  # the chaotic network has the larger NTK
    lr = float(0.3 * np.sqrt(lr_max[0] * lr_max[1]))  # between the two caps
    run = train(net, X, y, params, rate=LearningRate(lr, lr_scale=0.3),
                stop=StoppingRule(3, patience=None))
    got = [r.lr for r in run.results]
    assert got[0] == lr and got[1] == pytest.approx(0.3 * lr_max[1], rel=1e-12)
    assert [r.lr_max for r in run.results] == pytest.approx(list(lr_max), rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (lambda: {"rate": LearningRate(lr=0.0)}, "lr"),
    (lambda: {"rate": LearningRate(lr=[1e-3, 1e-3, 1e-3])}, "one per network"),
    (lambda: {"rate": LearningRate(lr_scale=-1.0)}, "lr_scale"),
    (lambda: {"record": Recording(snapshots=(10, 10))}, "distinct"),
    (lambda: {"record": Recording(snapshots=(0, 10))}, "snapshots"),
    (lambda: {"stop": StoppingRule(max_steps=-1)}, "max_steps"),
    (lambda: {"stop": StoppingRule(patience=0)}, "patience"),
    (lambda: {"stop": StoppingRule(min_delta=-1e-7)}, "min_delta"),
    (lambda: {"stop": {"max_steps": 3}}, "StoppingRule"),
    (lambda: {"execution": Execution(threads=0)}, "threads"),
    (lambda: {"execution": Execution(device="tpu")}, "device"),
])
def test_bad_arguments(kwargs, message: str, data: tuple[np.ndarray, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    # The configs validate when they are built, before train runs.
    X, y = data
    net = MLP(32, 8, 1, "relu")
    with pytest.raises(NtkscopeInputError, match=message):
        train(net, X, y, batch=2, **kwargs())


def test_bad_data(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    net = MLP(32, 8, 1, "relu")
    with pytest.raises(NtkscopeInputError, match="y"):
        train(net, X, y[:-1])
    with pytest.raises(NtkscopeInputError, match="y"):
        loss_and_gradients(net, net.init(1), X, np.full(len(y), np.nan))
    with pytest.raises(NtkscopeInputError, match="X"):
        train(net, X[:, :10], y)
    with pytest.raises(NtkscopeInputError, match="params"):
        train(net, X, y, net.init(1), batch=1)
    assert Recording([1000, 10]).snapshots == (10, 1000)
    with pytest.raises(NtkscopeInputError):
        Recording("10,100")  # type: ignore[arg-type]
    with pytest.raises(NtkscopeInputError, match="X"):  # a spec fixing another input_dim
        train(NetworkSpec("relu", 2.0, 0.0, 1, 8, input_dim=10), X, y)


def test_loss_fraction_stops_at_the_first_step_below_it() -> None:
    """StoppingRule(loss_fraction=f) stops at the first step with L_t <= f L_0: the step a run
    without the rule first gets there, with the NTK change of a run of exactly that many
    steps; None keeps the old behaviour."""
    from ntkscope.training import LearningRate, Recording, StoppingRule, train

    data = load_dataset("gaussian", 16, 1, dim=20)
    net = MLP(20, 32, 2, "tanh", 1.5, 0.1)
    kw = {"seed": 2, "rate": LearningRate(lr_scale=0.5), "record": Recording(())}
    free = train(net, data.X, data.y, stop=StoppingRule(200, patience=None), **kw).results[0]
    first = int(np.flatnonzero(free.losses <= 0.05 * free.initial_loss)[0])
    assert free.loss_steps[first] == first  # the stored curve holds every step here
    got = train(net, data.X, data.y, stop=StoppingRule(200, patience=None, loss_fraction=0.05),
                **kw).results[0]
    assert got.stop_reason == "loss_fraction" and got.steps == first
    assert got.final_loss <= 0.05 * got.initial_loss < free.losses[first - 1]
    exact = train(net, data.X, data.y, stop=StoppingRule(first, patience=None), **kw).results[0]
    assert got.final_ntk_change == exact.final_ntk_change and exact.stop_reason == "max_steps"
    # a budget too small to get there: max_steps, as before
    short = train(net, data.X, data.y, stop=StoppingRule(first - 1, patience=None,
                                                         loss_fraction=0.05), **kw).results[0]
    assert short.stop_reason == "max_steps" and short.steps == first - 1
    assert StoppingRule().loss_fraction is None
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(NtkscopeInputError, match="loss_fraction"):
            StoppingRule(loss_fraction=bad)
