"""GPU paths: the same numbers on ``cuda`` as on the CPU (skipped where no GPU is present).

Run on a GPU machine with ``.venv/bin/python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ntkscope import NetworkSpec
from ntkscope.cli.main import main
from ntkscope.datasets import load_dataset
from ntkscope.networks import MLP
from ntkscope.ntk import empirical_ntk
from ntkscope.sampling import sample_ntk
from ntkscope.theory import propagate
from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
def test_empirical_ntk_same_on_gpu(act: str) -> None:
    net = MLP(20, 64, 4, act, 1.8, 0.2)
    params = net.init(3, seed=1)
    X = load_dataset("gaussian", 12, seed=0, dim=20).X
    cpu = empirical_ntk(net, params, X)
    gpu = empirical_ntk(net, params.to("cuda"), X)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=0)


def test_dense_sampler_same_on_gpu() -> None:
    # The dense sampler draws the weights on the CPU: identical networks on both devices.
    X = load_dataset("gaussian", 6, seed=0, dim=10).X
    kw = dict(inits=8, seed=3, method="dense")
    cpu = sample_ntk(NetworkSpec("tanh", 1.5, 0.1, 3, 32), X, **kw)
    gpu = sample_ntk(NetworkSpec("tanh", 1.5, 0.1, 3, 32), X, device="cuda", **kw)
    np.testing.assert_allclose(gpu.theta, cpu.theta, rtol=1e-10)
    np.testing.assert_allclose(gpu.f, cpu.f, rtol=1e-9, atol=1e-12)


def test_lowrank_sampler_on_gpu_matches_theory() -> None:
    # The low-rank sampler draws on the device (another generator): compare the law, not the
    # draws: E Theta0(x, x) against the mean-field expectation, within 5 standard errors.
    x = np.ones((1, 50))
    smp = sample_ntk(NetworkSpec("relu", 2.0, 0.1, 4, 100), x, inits=4000, seed=0, device="cuda")
    theta = smp.theta[:, 0, 0]
    expected = float(propagate("relu", 2.0, 0.1, 4, 100, 50, q0=1.0).ntk_mean_diag)
    assert abs(theta.mean() - expected) < 5 * theta.std(ddof=1) / np.sqrt(len(theta))


def test_training_same_on_gpu() -> None:
    d = load_dataset("gaussian", 16, seed=0, dim=24)
    net = MLP(24, 32, 3, "tanh")
    kw = dict(variances=[(1.0, 0.1), (3.0, 0.1)], seed=2, rate=LearningRate(lr_scale=0.4),
              stop=StoppingRule(60, patience=None), record=Recording((10,)))
    cpu = train(net, d.X, d.y, execution=Execution(threads=1), **kw)
    gpu = train(net, d.X, d.y, execution=Execution(device="cuda", threads=1), **kw)
    assert gpu.params.device.type == "cuda"
    for rc, rg in zip(cpu.results, gpu.results):
        assert (rg.steps, rg.stop_reason) == (rc.steps, rc.stop_reason)
        np.testing.assert_allclose(rg.losses, rc.losses, rtol=1e-9)
        assert rg.final_ntk_change == pytest.approx(rc.final_ntk_change, rel=1e-8)


def test_cli_commands_on_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    net = ["--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0.1", "--depth", "2",
           "--width", "16"]
    assert main(["train", *net, "--samples", "16", "--max-steps", "20", "--lr-scale", "0.5",
                 "--device", "cuda", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 20
    assert main(["ntk-variance", *net, "--inits", "50", "--device", "cuda", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratio"] > 1
    assert main(["variance", *net, "--samples", "8", "--test-points", "4", "--monte-carlo", "8",
                 "--device", "cuda", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mc_variance"] > 0
    assert main(["check", *net, "--samples", "16", "--inits", "50", "--train-steps", "20",
                 "--device", "cuda", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ntk_regime"] in ("yes", "borderline", "no")
