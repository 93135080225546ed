"""Exact power-of-two exponent arithmetic (the only scaling the engine uses).

A scaled value is a pair ``(x, e)`` meaning ``x * 2**e``; ``e`` is integer valued and stored
in ``x``'s floating dtype, one exponent per row (last axis) of ``x``. Multiplying by a power of
two is exact (no rounding) unless a value becomes subnormal, so rescaled passes agree with
plain ones to rounding wherever the plain values exist.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def max_exponent(dtype: torch.dtype) -> int:
    """``e`` with ``finfo(dtype).max < 2**e`` (1024 for float64, 128 for float32)."""
    return math.frexp(torch.finfo(dtype).max)[1]


def row_exponent(x: Tensor, emax: int) -> Tensor:
    """Per row (last axis reduced) the ``e >= 1 - emax`` with ``max|x| < 2**e``.

    ``max|x| in [2**(e-1), 2**e)`` unless the row is (almost) zero; integer valued, in
    ``x.dtype``.
    """
    amax = torch.maximum(x.amax(-1), x.amin(-1).neg_()).clamp_(min=2.0**-emax)
    return torch.frexp(amax).exponent.to(x.dtype)


def ldexp(x: Tensor, e: Tensor) -> Tensor:
    """``x * 2**e`` exactly (up to subnormal rounding), ``±inf`` only when the value overflows.

    ``e`` (integer valued, floating dtype) broadcasts against ``x``. The mantissa is split off
    first and the power applied in two halves, so no intermediate overflows spuriously.
    """
    mant, exp = torch.frexp(x)
    n = torch.where(mant == 0, 0.0, exp.to(x.dtype) + e)
    half = torch.floor(n * 0.5)
    return mant * torch.exp2(half) * torch.exp2(n - half)


def per_batch(x: Tensor, e: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(y, E)`` with ``x * 2**e == y * 2**E[b]`` for every batch entry ``b`` (first axis)
    and ``max|y[b]| in [1/2, 1)`` (unless ``x[b]`` is zero).

    ``e`` (None: 0) has ``x``'s shape or broadcasts to it. Exact, except that entries far
    below the largest of their batch entry may flush to zero.
    """
    batch, ones = x.shape[0], [1] * (x.ndim - 1)
    if e is not None:
        top = e.reshape(e.shape[0], -1).amax(-1)
        x = ldexp(x, e - top.reshape(-1, *ones))
    k = row_exponent(x.reshape(batch, -1), max_exponent(x.dtype) - 1)
    y = x * torch.exp2(-k).reshape(-1, *ones)
    return y, k if e is None else top + k
