"""Data for a model factory: inputs shaped for the model, and ``.npz`` data files.

ntkscope's data sets (:func:`ntkscope.datasets.load_dataset`) give flat ``(S, M0)`` float64
rows. A model receives them

* flat, ``(S, M0)``, when its first layer with parameters is ``nn.Linear``;
* else as images ``(S, 1, 28, 28)`` (the data sets' 28 x 28 pictures; ``M0 = 784``);
* or in any shape the caller gives (``input_shape``, the ``M0`` values of one sample),

cast to the model's floating dtype and moved to its device (:func:`model_inputs`; the shape
and the reason are returned, so the output can say which was used).

A data file ``FILE.npz`` (:func:`load_npz`) holds an array ``x`` of shape ``(N, ...)`` (``N >=
2`` samples of any shape, finite real numbers) and optionally ``y`` (targets, ``(N,)`` or
``(N, O)``, finite) or ``labels`` (``(N,)`` integers ``>= 0``, class labels); not both of ``y``
and ``labels``. Nothing else is read.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ntkscope.validation import NtkscopeInputError

__all__ = ["IMAGE_SHAPE", "ModelInputs", "NpzData", "first_layer", "input_shape", "load_npz",
           "model_dtype_device", "model_inputs", "parse_shape"]

#: The shape of one image of ntkscope's image data sets, as a model receives it.
IMAGE_SHAPE: tuple[int, ...] = (1, 28, 28)


def first_layer(model: nn.Module) -> nn.Module | None:
    """The first submodule (in registration order) holding parameters itself; ``None`` for a
    model without parameters."""
    return next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))),
                None)


def parse_shape(text: str | Sequence[int], m0: int) -> tuple[int, ...]:
    """The shape of one input, ``"1,28,28"`` (or ``"1x28x28"``, or a sequence of ints), checked
    to hold the ``m0`` values of one sample.

    Raises:
        NtkscopeInputError: not positive integers, or a product other than ``m0``.
    """
    try:
        if isinstance(text, str):
            shape = tuple(int(v) for v in text.replace("x", ",").split(","))
        else:
            shape = tuple(int(v) for v in text)
    except (TypeError, ValueError):
        raise NtkscopeInputError(
            f"input_shape: expected integers such as 1,28,28, got {text!r}") from None
    if not shape or min(shape) < 1 or int(np.prod(shape)) != m0:
        shown = text if isinstance(text, str) else ",".join(map(str, shape))
        raise NtkscopeInputError(
            f"input_shape: {shown} does not hold the {m0} values of one input")
    return shape


def input_shape(model: nn.Module, m0: int, given: str | Sequence[int] | None = None
                ) -> tuple[tuple[int, ...], str]:
    """The shape of one input of ``m0`` values for ``model``, and why: ``given`` (checked by
    :func:`parse_shape`), else flat ``(m0,)`` when the model's first layer with parameters is
    ``nn.Linear``, else :data:`IMAGE_SHAPE` images (``m0 = 784`` only).

    Raises:
        NtkscopeInputError: a bad ``given``, or a model that does not start with ``nn.Linear``
            on inputs that are not 784 values (the shape cannot be guessed).
    """
    if given is not None:
        return parse_shape(given, m0), "input_shape as given"
    first = first_layer(model)
    if isinstance(first, nn.Linear):
        return (m0,), "flat: the model's first layer is nn.Linear"
    if m0 != int(np.prod(IMAGE_SHAPE)):
        raise NtkscopeInputError(
            f"input_shape: give the shape of one input ({m0} values; the model's first "
            f"layer is {type(first).__name__}, not nn.Linear)")
    kind = "no layer with parameters" if first is None else type(first).__name__
    return IMAGE_SHAPE, f"images: the model's first layer is {kind}"


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating parameter or buffer (torch's
    default dtype on the CPU for a model without any)."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.dtype.is_floating_point:
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


@dataclass(frozen=True)
class ModelInputs:
    """Inputs shaped for a model: ``x`` ``(S, *shape)`` in the model's dtype and on its
    device, and ``why`` that shape (for the output: ``"flat: the model's first layer is
    nn.Linear"``, ``"images: ..."``)."""

    x: torch.Tensor
    shape: tuple[int, ...]
    why: str

    def describe(self) -> str:
        """``128 x 1 x 28 x 28, float64 (images: the model's first layer is Conv2d)``."""
        dims = " x ".join(str(v) for v in self.x.shape)
        return f"{dims}, {str(self.x.dtype).replace('torch.', '')} ({self.why})"


def model_inputs(model: nn.Module, X: np.ndarray | torch.Tensor,
                 shape: str | Sequence[int] | None = None) -> ModelInputs:
    """``X`` (``(S, M0)`` flat rows) reshaped for ``model`` (:func:`input_shape`) and cast to
    its dtype and device (:func:`model_dtype_device`)."""
    flat = torch.as_tensor(X)
    if flat.dim() != 2:
        raise NtkscopeInputError(f"inputs: expected flat (S, M0) rows, got shape "
                                 f"{tuple(flat.shape)}")
    one, why = input_shape(model, int(flat.shape[1]), shape)
    dtype, device = model_dtype_device(model)
    return ModelInputs(flat.to(dtype=dtype, device=device).reshape(-1, *one), one, why)


@dataclass(frozen=True)
class NpzData:
    """The arrays of a data file (:func:`load_npz`): ``x`` ``(N, ...)`` float64, ``y`` targets
    ``(N,)`` / ``(N, O)`` float64 or ``None``, ``labels`` ``(N,)`` int64 or ``None``."""

    path: str
    x: np.ndarray
    y: np.ndarray | None
    labels: np.ndarray | None

    @property
    def samples(self) -> int:
        """``N``, the number of samples in the file."""
        return int(self.x.shape[0])


def load_npz(path: str | os.PathLike[str]) -> NpzData:
    """Read and validate a data file ``FILE.npz`` (module docstring: ``x``, optional ``y`` or
    ``labels``). Pickled objects are never loaded.

    Raises:
        NtkscopeInputError: a missing or unreadable file, a file that is not ``.npz``, no
            ``x``, fewer than 2 samples, non-numeric or non-finite values, ``y`` / ``labels``
            whose length differs from ``x``'s, labels that are not integers ``>= 0``, both
            ``y`` and ``labels``.
    """
    p = Path(path).expanduser()
    name = f"dataset {p}"
    if p.suffix != ".npz":
        raise NtkscopeInputError(f"{name}: expected a .npz file")
    if not p.is_file():
        raise NtkscopeInputError(f"{name}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise NtkscopeInputError(f"{name}: cannot read it as .npz ({exc})") from None
    if "x" not in arrays:
        raise NtkscopeInputError(f"{name}: no array 'x' (found: {', '.join(arrays) or 'none'})")
    if "y" in arrays and "labels" in arrays:
        raise NtkscopeInputError(f"{name}: give 'y' (targets) or 'labels' (classes), not both")
    x = _real(name, "x", arrays["x"])
    if x.ndim < 2:
        raise NtkscopeInputError(f"{name}: 'x' must have shape (N, ...) with one sample per "
                                 f"row, got {x.shape}")
    n = x.shape[0]
    if n < 2:
        raise NtkscopeInputError(f"{name}: 'x' holds {n} sample(s), at least 2 are needed")
    y = labels = None
    if "y" in arrays:
        y = _real(name, "y", arrays["y"])
        if y.ndim not in (1, 2) or y.shape[0] != n:
            raise NtkscopeInputError(f"{name}: 'y' must have shape ({n},) or ({n}, O), got "
                                     f"{y.shape}")
    if "labels" in arrays:
        raw = arrays["labels"]
        if raw.ndim != 1 or raw.shape[0] != n:
            raise NtkscopeInputError(f"{name}: 'labels' must have shape ({n},), got "
                                     f"{raw.shape}")
        whole = (raw.dtype.kind == "f" and bool(np.all(np.isfinite(raw)))
                 and bool(np.all(raw == np.round(raw))))
        if raw.dtype.kind not in "iub" and not whole:
            raise NtkscopeInputError(f"{name}: 'labels' must be integers (class numbers)")
        labels = raw.astype(np.int64)
        if labels.min() < 0:
            raise NtkscopeInputError(f"{name}: 'labels' must be >= 0")
    return NpzData(str(p), x, y, labels)


def _real(name: str, key: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "iuf" or a.size == 0:
        raise NtkscopeInputError(f"{name}: '{key}' must be a non-empty array of real numbers, "
                                 f"got dtype {a.dtype} with shape {a.shape}")
    out = a.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise NtkscopeInputError(f"{name}: '{key}' contains NaN or inf")
    return out
