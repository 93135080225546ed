"""The exact low-rank NTK sampler (CONVENTIONS section 6) on the one scaled-pass engine.

``N`` initializations of the network of an :class:`ntkscope.MLP` draw ``(Theta0(X), f0(X))``
through :class:`~ntkscope.engine.LowRankLayer` operators, ``O(M S^2)`` work per layer instead
of ``O(M^2 S)``: the same forward/backward loop and kernel accumulator as
:func:`ntkscope.empirical_ntk`, first on plain values and, if a signal leaves the safe range,
in the rescaled domain (exact powers of two per row), where results beyond the dtype's range
are returned as ``T * 2**E`` per initialization.

Randomness: initialization ``i`` of seed ``s`` draws ``lowrank_noise_size`` standard normals
from its own generator seeded by ``SeedSequence([s, i])`` (:func:`network_seed`), consumed in
the order of :func:`~ntkscope.engine.lowrank_noise_size`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from ntkscope.engine._exponents import per_batch
from ntkscope.engine._kernel import Pairing
from ntkscope.engine._layers import LowRankLayer, NoiseCursor, lowrank_noise_size
from ntkscope.engine._passes import kernel_pass
from ntkscope.engine._range import RangeMonitor, check_finite

if TYPE_CHECKING:
    from ntkscope.networks import MLP

Draw = tuple[Tensor, Tensor, Tensor, Tensor]


class DrawSetup(Protocol):
    """What a draw needs: the architecture and where/in which precision to compute."""

    net: MLP
    device: torch.device
    dtype: torch.dtype


def network_seed(seed: int, index: int) -> int:
    """Seed of network ``index`` of the family ``seed``: ``SeedSequence([seed, index])``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def gaussian_noise(
    seed: int, first: int, count: int, size: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``(count, size)`` standard normals; row ``j`` from init ``first + j``'s own generator."""
    out = torch.empty((count, size), dtype=dtype, device=device)
    for j in range(count):
        gen = torch.Generator(device=device)
        gen.manual_seed(network_seed(seed, first + j))
        out[j] = torch.randn(size, generator=gen, dtype=dtype, device=device)
    return out


def lowrank_draw(
    setup: DrawSetup, X: Tensor, seed: int, first: int, count: int, diagonal: bool
) -> Draw:
    """Low-rank draw of initializations ``first .. first + count - 1``.

    Returns ``(theta, theta_log, f, f_log)``: ``Theta0 = theta * exp(theta_log)`` (``theta``
    of shape ``(B, S, S)``, or ``(B, S)`` with ``diagonal``) and ``f0 = f * exp(f_log)``
    (``(B, S)``), natural-log scales ``(B,)`` in float64 (zero whenever the plain pass was
    in range; otherwise ``E ln 2`` for the exact exponents ``E`` of the rescaled pass).

    Raises:
        NtkscopeRangeError: a value is not finite even in the rescaled domain (a custom
            activation returned NaN or inf).
    """
    net = setup.net
    widths, S = net.layer_widths, X.shape[0]
    noise = gaussian_noise(seed, first, count, lowrank_noise_size(widths, S), setup.device,
                           setup.dtype)
    pairing = Pairing("diag" if diagonal else "full")

    def compute(monitor: RangeMonitor | None) -> Draw:
        cur = NoiseCursor(noise)
        layers = [
            LowRankLayer(cur, m_in, m_out, S, net.sigma_w2, net.sigma_b2)
            for m_in, m_out in zip(widths[:-1], widths[1:], strict=True)
        ]
        total, h, g = kernel_pass(layers, X, net.activation, net.homogeneous, pairing, monitor)
        assert cur.exhausted
        if monitor is not None:  # plain values, checked by the monitor
            zero = torch.zeros((count,), dtype=torch.float64, device=X.device)
            return total.result(monitor, "Theta0"), zero, monitor.values(h), zero
        theta, e_theta = total.per_network()
        f, e_f = per_batch(h, g)
        check_finite(theta, "Theta0")
        check_finite(f, "f0")
        return theta, _natural_log(e_theta), f, _natural_log(e_f)

    return net.guarded(setup.dtype, compute)


def _natural_log(exponent: Tensor) -> Tensor:
    """``E ln 2`` in float64: the natural-log scale of ``2**E``."""
    return exponent.to(torch.float64) * math.log(2.0)


def _times_exp(scaled: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """``scaled * exp(log_scale)`` per row (first axis), the factor applied in two halves so
    that it overflows only where the product does."""
    half = np.exp(0.5 * log_scale).reshape((-1,) + (1,) * (scaled.ndim - 1))
    with np.errstate(over="ignore", under="ignore"):
        return scaled * half * half


def fold_log_scale(scaled: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scaled * exp(log_scale), 0)`` when every value stays finite and no non-zero value
    becomes subnormal or zero; ``(scaled, log_scale)`` unchanged otherwise (CONVENTIONS: the
    true values are ``scaled * exp(log_scale)`` either way)."""
    if not np.any(log_scale):
        return scaled, log_scale
    out = _times_exp(scaled, log_scale)
    normal = np.abs(out[scaled != 0]) >= np.finfo(out.dtype).tiny
    if np.all(np.isfinite(out)) and np.all(normal):
        return out, np.zeros_like(log_scale)
    return scaled, log_scale


def unscale_log(scaled: np.ndarray, log_scale: np.ndarray, name: str) -> np.ndarray:
    """``scaled * exp(log_scale)`` per row, checked by :func:`check_finite` (``name``: the
    attribute pair ``<name>_scaled``, ``<name>_log_scale`` to use instead)."""
    if not np.any(log_scale):
        return scaled
    out = _times_exp(scaled, log_scale)
    check_finite(out, name, f"use {name}_scaled and {name}_log_scale")
    return out
