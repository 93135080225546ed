"""The one scaled-pass engine (ntkscope.engine): exponent arithmetic, range contract, and the
low-rank sampler's rescaled pass against its plain pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ntkscope import MLP, NetworkSpec, NtkscopeInputError
from ntkscope.engine import (
    NtkscopeRangeError,
    check_finite,
    ldexp,
    lowrank_noise_size,
    per_batch,
    row_exponent,
)
from ntkscope.sampling import sample_ntk


def test_row_exponent_and_ldexp_are_exact() -> None:
    x = torch.tensor([[3.0, -0.25], [0.0, 0.0], [1e-300, 2e-300]], dtype=torch.float64)
    e = row_exponent(x, 1023)
    assert e.tolist()[0] == 2.0  # max |x| = 3 in [2, 4)
    y = ldexp(x, -e[:, None])
    assert torch.equal(ldexp(y, e[:, None]), x)
    assert float(y.abs().amax(-1)[0]) == 0.75 and float(y.abs().amax(-1)[2]) >= 0.5


def test_per_batch_common_exponent() -> None:
    x = torch.tensor([[0.75, 0.5], [0.6, 0.0]], dtype=torch.float64)
    e = torch.tensor([[1000.0, 990.0], [-5.0, 3.0]], dtype=torch.float64)
    y, top = per_batch(x, e)
    assert torch.all(y.abs().amax(-1) >= 0.5) and torch.all(y.abs().amax(-1) < 1.0)
    mask = x.numpy() != 0
    want = np.log2(np.abs(x.numpy()[mask])) + e.numpy()[mask]
    got = np.log2(np.abs(y.numpy()[mask])) + np.broadcast_to(top.numpy()[:, None], x.shape)[mask]
    assert np.array_equal(got, want)  # exact powers of two


@pytest.mark.parametrize("value", [torch.tensor([1.0, float("inf")], dtype=torch.float32),
                                   np.array([np.nan, 1.0])])
def test_one_range_contract(value: torch.Tensor | np.ndarray) -> None:
    with pytest.raises(NtkscopeRangeError, match="exceeds the range of float") as info:
        check_finite(value, "thing")
    assert isinstance(info.value, NtkscopeInputError) and isinstance(info.value, OverflowError)
    assert str(info.value).startswith("thing: ")
    check_finite(torch.ones(3), "fine")


@pytest.mark.parametrize(
    ("activation", "sw2", "sb2", "depth", "width", "samples", "dtype", "tol"),
    [
        ("relu", 2.0, 0.0, 20, 10, 1, torch.float64, 1e-12),
        ("relu", 2.0, 0.1, 6, 12, 3, torch.float64, 1e-12),
        ("tanh", 3.0, 0.1, 8, [9, 4, 9, 4, 9, 4, 9, 4], 6, torch.float64, 1e-12),
        ("erf", 0.5, 0.2, 5, 12, 4, torch.float32, 1e-4),
    ],
)
def test_lowrank_rescaled_pass_equals_plain_pass(
    monkeypatch: pytest.MonkeyPatch, activation: str, sw2: float, sb2: float, depth: int,
    width: int | list[int], samples: int, dtype: torch.dtype, tol: float,
) -> None:
    """Powers of two commute with every operation: forcing the rescaled domain changes only
    rounding (cases without exactly degenerate layer inputs, whose basis rounding decides)."""
    X = np.random.default_rng(0).standard_normal((samples, 7))
    args = (NetworkSpec(activation, sw2, sb2, depth, width), X, 16)
    plain = sample_ntk(*args, seed=1, dtype=dtype)
    with monkeypatch.context() as m:
        m.setattr(MLP, "guarded", lambda self, dtype, compute: compute(None))
        scaled = sample_ntk(*args, seed=1, dtype=dtype)
    scale = np.abs(plain.theta).max()
    np.testing.assert_allclose(scaled.theta, plain.theta, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(scaled.f, plain.f, rtol=tol, atol=tol * np.abs(plain.f).max())


def test_lowrank_noise_layout() -> None:
    """G_l, b_l forward (l = 1..L+1), then Z_l backward (l = L+1..2)."""
    widths = (5, 4, 3, 1)
    S = 2
    fwd = 4 * 2 + 4 + 3 * 2 + 3 + 1 * 2 + 1
    bwd = 3 * 1 + 4 * 2
    assert lowrank_noise_size(widths, S) == fwd + bwd
