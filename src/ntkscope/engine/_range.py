"""The one range/finiteness contract of the scaled passes and the samplers.

Every value a pass or a sampler hands back is finite: a value beyond the dtype's range (or a
NaN from non-finite parameters or activation values) raises :class:`NtkscopeRangeError` from
:func:`check_finite`, with one message style. :class:`RangeMonitor` decides whether a plain
(unscaled) pass was accurate or must be repeated in the rescaled domain (:func:`guarded`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from ntkscope.engine._exponents import ldexp, max_exponent
from ntkscope.validation import NtkscopeInputError

R = TypeVar("R")


class NtkscopeRangeError(NtkscopeInputError, OverflowError):
    """A true value (network output, layer signal, NTK) exceeds the range of the dtype.

    Also an :class:`OverflowError`. Use float64, a shallower network or a smaller ``sw2``.
    """


def check_finite(value: Tensor | np.ndarray, what: str, advice: str | None = None) -> None:
    """Raise :class:`NtkscopeRangeError` unless every entry of ``value`` is finite.

    The message reads ``"<what>: a value exceeds the range of <dtype> (largest finite <max>),
    or is not a number; <advice>"``; the default advice is to use float64 (unless already),
    a shallower network or a smaller ``sigma_w2``.
    """
    if isinstance(value, Tensor):
        if bool(torch.isfinite(value).all()):
            return
        name, largest = str(value.dtype).removeprefix("torch."), torch.finfo(value.dtype).max
    else:
        if bool(np.all(np.isfinite(value))):
            return
        name, largest = str(value.dtype), float(np.finfo(value.dtype).max)
    if advice is None:
        advice = ("" if name == "float64" else "use float64, ") + (
            "a shallower network or a smaller sigma_w2 (or finite parameters)"
        )
    raise NtkscopeRangeError(
        f"{what}: a value exceeds the range of {name} (largest finite {largest:.3g}), or is "
        f"not a number; {advice}"
    )


def materialize(x: Tensor, e: Tensor | None, what: str) -> Tensor:
    """``x * 2**e`` (``e`` None: ``x``), checked by :func:`check_finite`."""
    out = x if e is None else ldexp(x, e)
    check_finite(out, what)
    return out


class RangeMonitor:
    """Records row norms of plain (unscaled) signals and results; :meth:`ok` says whether all
    were finite and every nonzero norm lay in ``[2**-k, 2**k]``, ``k = emax / 4 - 8``
    (``k = 248`` in float64, ``24`` in float32).

    Within that range no Gram entry or product of two of them overflows or becomes subnormal,
    so a plain computation is as accurate as the rescaled one.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        self.bound = 2.0 ** (max_exponent(dtype) // 4 - 8)
        self._norms: list[Tensor] = []
        self._values: list[Tensor] = []

    def norms(self, x: Tensor) -> None:
        """Record the norms of the rows (last axis) of ``x``."""
        self.squared_norms(torch.linalg.vecdot(x, x))

    def squared_norms(self, n2: Tensor) -> None:
        """Record squared row norms (e.g. the diagonal of a Gram matrix)."""
        self._norms.append(n2.reshape(-1))

    def values(self, t: Tensor) -> Tensor:
        """Record a result that must be finite; returns it."""
        self._values.append(t)
        return t

    def ok(self) -> bool:
        """One device synchronization."""
        flags = [torch.isfinite(v).all() for v in self._values]
        if self._norms:
            n2, b2 = torch.cat(self._norms), self.bound**2
            in_range = (n2 <= b2) & ((n2 >= 1.0 / b2) | (n2 == 0))
            flags.append(in_range.all())
        return bool(torch.stack(flags).all()) if flags else True


def guarded(dtype: torch.dtype, compute: Callable[[RangeMonitor | None], R]) -> R:
    """``compute(monitor)`` on plain values; if anything left the safe range (or was not
    finite) ``compute(None)`` again in the rescaled domain.

    Plain passes are cheapest; the rescaled ones cost a few extra elementwise operations
    per layer and are needed only for very deep or very large/small signals.
    """
    monitor = RangeMonitor(dtype)
    out = compute(monitor)
    return out if monitor.ok() else compute(None)
