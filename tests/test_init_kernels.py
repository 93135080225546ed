"""``init_kernels``: the seeding convention of CONVENTIONS section 9, rebuilt by hand."""

from __future__ import annotations

import torch
from torch import nn

from ntkscope.generic import init_kernels, reference_module_ntk


def _factory() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


def test_init_i_is_manual_seed_plus_i_and_restores_the_rng() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    ks = init_kernels(_factory, x, seed=7, start=2, count=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert ks.shape == (2, 4, 4) and ks.dtype == torch.float64
    for j, i in enumerate((2, 3)):
        torch.manual_seed(7 + i)
        model = _factory().double().eval()
        want = reference_module_ntk(model, x)
        assert float((ks[j] - want).norm() / want.norm()) < 1e-10
    assert float((ks[0] - ks[1]).norm()) > 0  # different initializations


def test_float32_inputs_are_cast_and_outputs_shapes() -> None:
    x = torch.randn(3, 3)
    assert init_kernels(_factory, x, count=2, output="diagonal").shape == (2, 3)
    assert init_kernels(_factory, x, output="full").shape == (1, 3, 3, 2, 2)
