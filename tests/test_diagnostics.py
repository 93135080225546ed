"""The diagnostics of :mod:`ntkscope.diagnostics` against independent NumPy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntkscope import NtkscopeInputError
from ntkscope.diagnostics import (
    centered_alignment,
    kernel_distance,
    ntk_change,
    spectrum,
    trace_kernel,
    weight_change,
)

RNG = np.random.default_rng(0)


def _psd(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n + 3))
    return a @ a.T


def test_change_and_distance_match_numpy() -> None:
    k0, kt = _psd(6, 1), _psd(6, 2)
    want_change = np.linalg.norm(kt - k0) / np.linalg.norm(k0)
    want_dist = 1 - np.sum(kt * k0) / (np.linalg.norm(kt) * np.linalg.norm(k0))
    t0, tt = torch.tensor(k0), torch.tensor(kt)
    assert ntk_change(tt, t0) == pytest.approx(want_change, rel=1e-12)
    assert kernel_distance(tt, t0) == pytest.approx(want_dist, rel=1e-12)
    # invariances: the distance ignores scale, the change does not
    assert kernel_distance(3.0 * tt, t0) == pytest.approx(want_dist, rel=1e-12)
    assert kernel_distance(t0, t0) == pytest.approx(0.0, abs=1e-15)
    assert ntk_change(2 * t0, t0) == pytest.approx(1.0, rel=1e-14)
    # float32 kernels are measured in float64
    assert ntk_change(tt.float(), t0.float()) == pytest.approx(want_change, rel=1e-6)


def test_alignment_matches_the_definition() -> None:
    n = 7
    k = _psd(n, 3)
    y = np.eye(3)[RNG.integers(0, 3, size=n)]
    h = np.eye(n) - np.ones((n, n)) / n
    hkh = h @ k @ h
    yy = y @ y.T
    want = np.sum(hkh * yy) / (np.linalg.norm(hkh) * np.linalg.norm(yy))
    assert centered_alignment(torch.tensor(k), torch.tensor(y)) == pytest.approx(want, rel=1e-12)
    # CONVENTIONS section 9 does not center Y Y^T: centered targets and K = Y Y^T give 1,
    # uncentered one-hot targets less
    yc = h @ y
    assert centered_alignment(torch.tensor(yc @ yc.T), torch.tensor(yc)) == pytest.approx(1.0)
    assert centered_alignment(torch.tensor(yc @ yc.T), torch.tensor(y)) < 0.99
    # real targets (n,) are one column
    r = RNG.normal(size=n)
    want_r = np.sum(hkh * np.outer(r, r)) / (np.linalg.norm(hkh) * np.linalg.norm(np.outer(r, r)))
    assert centered_alignment(torch.tensor(k), torch.tensor(r)) == pytest.approx(want_r)


def test_full_kernel_enters_as_trace_kernel() -> None:
    full = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    full = full + full.permute(1, 0, 3, 2)
    tr = trace_kernel(full)
    assert torch.allclose(tr, sum(full[:, :, a, a] for a in range(3)))
    y = torch.randn(4)
    assert centered_alignment(full, y) == pytest.approx(centered_alignment(tr, y))


def test_weight_change_global_and_per_tensor() -> None:
    p0 = {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(5, dtype=torch.float64)}
    pt = {k: v + 0.1 * torch.randn_like(v) for k, v in p0.items()}
    wc = weight_change(pt, p0)
    flat0 = np.concatenate([v.numpy().ravel() for v in p0.values()])
    flatt = np.concatenate([v.numpy().ravel() for v in pt.values()])
    assert wc.total == pytest.approx(np.linalg.norm(flatt - flat0) / np.linalg.norm(flat0))
    for k in p0:
        want = np.linalg.norm(pt[k].numpy() - p0[k].numpy()) / np.linalg.norm(p0[k].numpy())
        assert wc.per_tensor[k] == pytest.approx(want)
    zero = weight_change({"z": torch.ones(2), "a": p0["a"]}, {"z": torch.zeros(2), "a": p0["a"]})
    assert zero.per_tensor["z"] == math.inf and zero.per_tensor["a"] == 0.0


def test_spectrum() -> None:
    k = _psd(5, 4)
    ev = np.linalg.eigvalsh(k)
    s = spectrum(torch.tensor(k))
    assert s.lambda_max == pytest.approx(ev[-1]) and s.condition == pytest.approx(ev[-1] / ev[0])
    singular = torch.ones(3, 3, dtype=torch.float64)
    assert spectrum(singular).condition == math.inf
    full = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    full = full + full.permute(1, 0, 3, 2)
    mat = full.permute(0, 2, 1, 3).reshape(6, 6).numpy()
    assert spectrum(full).lambda_max == pytest.approx(np.linalg.eigvalsh(mat)[-1])


@pytest.mark.parametrize("call", [
    lambda: ntk_change(torch.ones(2, 2), torch.ones(3, 3)),
    lambda: ntk_change(torch.ones(2, 2), torch.zeros(2, 2)),
    lambda: ntk_change(torch.full((2, 2), math.nan), torch.ones(2, 2)),
    lambda: kernel_distance(torch.zeros(2, 2), torch.ones(2, 2)),
    lambda: centered_alignment(torch.ones(3, 3), torch.randn(3)),
    lambda: centered_alignment(torch.eye(3), torch.randn(4)),
    lambda: weight_change({"a": torch.ones(2)}, {"b": torch.ones(2)}),
    lambda: spectrum(torch.ones(2, 3)),
    lambda: ntk_change([[1.0]], torch.ones(1, 1)),
])
def test_bad_input(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NtkscopeInputError):
        call()
