"""Input validation shared by the Python API and the command line.

Every public function checks its arguments with these helpers. They raise
:class:`NtkscopeInputError`, a :class:`ValueError` whose message names the offending
argument; the command line turns it into a one-line message and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class NtkscopeInputError(ValueError):
    """Bad input to a public ntkscope function (a ``ValueError`` naming the argument)."""


def _fail(name: str, message: str) -> NtkscopeInputError:
    return NtkscopeInputError(f"{name}: {message}")


def finite_array(name: str, value: Any, *, allow_empty: bool = False) -> np.ndarray:
    """``value`` as a float64 array; every entry finite (empty only with ``allow_empty``)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(name, f"expected a number or an array of numbers, got {value!r}") from None
    if arr.size == 0:
        if allow_empty:
            return arr
        raise _fail(name, "must not be empty")
    if not np.all(np.isfinite(arr)):
        raise _fail(name, "must be finite (got NaN or inf)")
    return arr


def positive(name: str, value: Any) -> np.ndarray:
    """Finite and strictly positive (array or scalar)."""
    arr = finite_array(name, value)
    if np.any(arr <= 0):
        raise _fail(name, f"must be > 0, got {_show(arr)}")
    return arr


def nonnegative(name: str, value: Any) -> np.ndarray:
    """Finite and >= 0 (array or scalar)."""
    arr = finite_array(name, value)
    if np.any(arr < 0):
        raise _fail(name, f"must be >= 0, got {_show(arr)}")
    return arr


def positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (bools and non-integral floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)):
        raise _fail(name, f"expected an integer, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise _fail(name, f"expected an integer, got {value!r}")
    ivalue = int(value)
    if ivalue < minimum:
        raise _fail(name, f"must be >= {minimum}, got {ivalue}")
    if maximum is not None and ivalue > maximum:
        raise _fail(name, f"must be <= {maximum}, got {ivalue}")
    return ivalue


def widths(name: str, value: int | Sequence[int], depth: int) -> tuple[int, ...]:
    """Hidden widths ``M_1..M_L``: one int for all layers or a list of ``depth`` ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (positive_int(name, value),) * depth
    try:
        items = list(value)  # type: ignore[arg-type]
    except TypeError:
        raise _fail(name, f"expected an integer or a list of integers, got {value!r}") from None
    if len(items) != depth:
        raise _fail(name, f"expected {depth} hidden widths (one per layer), got {len(items)}")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(items))


def input_matrix(name: str, value: Any, minimum: int = 2, *, nonzero: bool = True
                 ) -> np.ndarray:
    """Inputs ``(n, M0)``: finite, ``n >= minimum`` rows, ``M0 >= 1`` and (with ``nonzero``)
    no zero vector (``q0 = |x|^2 / M0 > 0``, CONVENTIONS section 2)."""
    arr = finite_array(name, value, allow_empty=True)
    if arr.ndim != 2:
        raise _fail(name, f"expected a 2-D array (samples x input_dim), got shape {arr.shape}")
    if arr.shape[0] < minimum:
        what = "empty data set" if arr.shape[0] == 0 else f"only {arr.shape[0]} input(s)"
        raise _fail(name, f"{what}; need at least {minimum}")
    if arr.shape[1] < 1:
        raise _fail(name, "inputs have dimension 0")
    if nonzero and np.any(np.sum(arr * arr, axis=1) == 0):
        raise _fail(name, "an input is the zero vector (q0 = 0)")
    return arr


def _show(arr: np.ndarray) -> str:
    return f"{float(arr):g}" if arr.ndim == 0 else f"an array with min {float(arr.min()):g}"
