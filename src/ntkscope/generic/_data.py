"""Data-set inputs shaped for a model (the command line's ``--model`` commands).

A sample of ``M0`` values goes in flat, ``(S, M0)``, when the model's first layer holding
parameters is ``nn.Linear``, else as images: ``(S, 1, 28, 28)`` (MNIST, Fashion-MNIST),
``(S, 3, 32, 32)`` (CIFAR-10/100); an explicit shape overrides both, and inputs of an ``.npz``
file with more than two axes are used as they are.

A data file ``FILE.npz`` (:func:`load_npz`) holds an array ``x`` (also accepted: ``X``) of
shape ``(N, ...)``, finite real numbers, and optionally ``y`` (targets, ``(N,)`` or ``(N,
O)``, finite) or ``labels`` (``(N,)`` integers ``>= 0``, class labels), not both; nothing else
is read and pickles are never loaded.
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

from ntkscope.validation import NtkscopeInputError, positive_int

__all__ = ["IMAGE_SHAPE", "ModelInputs", "NpzData", "first_layer", "input_shape_for",
           "load_npz", "model_dtype_device", "model_inputs"]

#: Shape of one image input (MNIST, Fashion-MNIST; CIFAR's is ``(3, 32, 32)``).
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """Inputs for a model.

    Attributes:
        x: ``(S, *shape)`` tensor in the model's floating dtype, on its device.
        y: ``(S,)`` or ``(S, K)`` float64 targets (a data set's ``+-1`` targets; an ``.npz``
            file's ``y``), ``None`` for an ``.npz`` without ``y``.
        shape: the shape of one input.
        layout: how the shape was chosen (``"flat: the model's first layer is nn.Linear"``).
        source: where the inputs came from; ``note``: a one-line note for the user or ``None``.
        labels: ``(S,)`` int64 class labels (a data set's; an ``.npz`` file's ``labels``), or
            ``None``.
        name: the data set's name (``mnist``, ..., or the file's name).
    """

    x: torch.Tensor
    y: np.ndarray | None
    shape: tuple[int, ...]
    layout: str
    source: str
    note: str | None = None
    labels: np.ndarray | None = None
    name: str = ""

    def describe(self) -> str:
        """``128 x 1 x 28 x 28, float64 (images: the model's first layer is Conv2d)``."""
        dims = " x ".join(str(v) for v in self.x.shape)
        return f"{dims}, {str(self.x.dtype).replace('torch.', '')} ({self.layout})"


def first_layer(model: nn.Module) -> nn.Module | None:
    """The first submodule (in registration order) holding parameters itself."""
    return next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))),
                None)


def _parse_shape(shape: str | Sequence[int]) -> tuple[int, ...]:
    text = shape if isinstance(shape, str) else ",".join(str(v) for v in shape)
    try:
        out = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise NtkscopeInputError(
            f"input_shape: expected integers such as 1,28,28, got {shape!r}") from None
    if not out or min(out) < 1:
        raise NtkscopeInputError(f"input_shape: expected positive sizes, got {shape!r}")
    return out


def input_shape_for(model: nn.Module, m0: int, input_shape: str | Sequence[int] | None = None,
                    *, image_shape: Sequence[int] | None = None) -> tuple[tuple[int, ...], str]:
    """The shape of one input of ``m0`` values and why: ``input_shape`` when given (``"1,28,28"``
    or a sequence), else flat ``(m0,)`` for a model whose :func:`first_layer` is
    ``nn.Linear``, else the images' own ``image_shape`` (a data set's, ``(3, 32, 32)`` for
    CIFAR), else :data:`IMAGE_SHAPE` (``m0`` must then be 784).

    Raises:
        NtkscopeInputError: a shape that does not hold ``m0`` values; a non-``Linear`` model
            with inputs that are not images and no ``input_shape``.
    """
    if input_shape is not None:
        shape = _parse_shape(input_shape)
        if int(np.prod(shape)) != m0:
            raise NtkscopeInputError(
                f"input_shape: {input_shape} does not hold the {m0} values of one input")
        return shape, "shape given"
    first = first_layer(model)
    if isinstance(first, nn.Linear):
        return (m0,), "flat: the model's first layer is nn.Linear"
    image = tuple(int(v) for v in image_shape) if image_shape is not None else IMAGE_SHAPE
    if len(image) < 2 or m0 != int(np.prod(image)):
        raise NtkscopeInputError(
            f"input_shape: give the shape of one input ({m0} values; the model's first "
            f"layer is {type(first).__name__}, not nn.Linear)")
    kind = "no layer with parameters" if first is None else type(first).__name__
    return image, f"images: the model's first layer is {kind}"


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating parameter or buffer (default dtype,
    CPU for a model without any)."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.dtype.is_floating_point:
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


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
        NtkscopeInputError: a missing or unreadable file, no ``x``, no samples, non-numeric or
            non-finite values, ``y`` / ``labels`` whose length differs from ``x``'s, labels that
            are not integers ``>= 0``, both ``y`` and ``labels``.
    """
    p = Path(path).expanduser()
    name = f"dataset {p}"
    if not p.is_file():
        raise NtkscopeInputError(f"dataset: no such file: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise NtkscopeInputError(f"{name}: cannot read it as .npz ({exc})") from None
    key = "x" if "x" in arrays else "X" if "X" in arrays else None
    if key is None:
        raise NtkscopeInputError(f"{name}: no array 'x' (the inputs, first axis the samples); "
                                 f"it holds {', '.join(arrays) or 'nothing'}")
    if "y" in arrays and "labels" in arrays:
        raise NtkscopeInputError(f"{name}: give 'y' (targets) or 'labels' (classes), not both")
    x = _real(name, key, arrays[key])
    if x.ndim < 2:
        raise NtkscopeInputError(f"{name}: '{key}' must have shape (N, ...) with one sample per "
                                 f"row, got {x.shape}")
    n = x.shape[0]
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


def _npz(path: Path, samples: int) -> NpzData:
    """The file's first ``samples`` samples."""
    f = load_npz(path)
    if samples > f.samples:
        raise NtkscopeInputError(f"samples: {path} holds {f.samples} inputs, asked for "
                                 f"{samples}")
    return NpzData(f.path, f.x[:samples], None if f.y is None else f.y[:samples],
                   None if f.labels is None else f.labels[:samples])


def model_inputs(model: nn.Module, dataset: str = "mnist", samples: int = 128, seed: int = 0, *,
                 data_dir: str | os.PathLike[str] | None = None, input_dim: int | None = None,
                 input_shape: str | Sequence[int] | None = None) -> ModelInputs:
    """``samples`` inputs of ``dataset`` shaped for ``model`` (:func:`input_shape_for`).

    ``dataset`` is ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``,
    ``"gaussian"`` (:func:`ntkscope.datasets.load_dataset`: class-balanced, seeded by ``seed``,
    normalized to ``|x|^2 = M0``; images ``(S, 1, 28, 28)`` or ``(S, 3, 32, 32)`` for a
    model whose first layer is not ``nn.Linear``; ``input_dim`` for gaussian) or a
    ``FILE.npz`` holding ``X`` (``(N,
    M0)`` reshaped by the rule, or ``(N, ...)`` used as it is) and optionally targets ``y``;
    its first ``samples`` rows are taken as they are (no normalization).

    Raises:
        NtkscopeInputError: an unknown data set, a bad file, too many samples, a shape that
            does not fit.
    """
    from ntkscope.datasets import load_dataset

    samples = positive_int("samples", samples)
    note = image = None
    if isinstance(dataset, (str, os.PathLike)) and str(dataset).endswith(".npz"):
        path = Path(dataset).expanduser()
        if data_dir is not None or input_dim is not None:
            raise NtkscopeInputError("dataset: data_dir and input_dim are for the named data "
                                     "sets, not an .npz file")
        f = _npz(path, samples)
        X, y, labels, source, name = f.x, f.y, f.labels, str(path), path.name
    else:
        data = load_dataset(dataset, samples, seed, data_dir=data_dir, dim=input_dim)
        X, y, source, note = data.X, data.y, data.source, data.note
        labels, name = data.labels, data.name
        image = data.shape if len(data.shape) > 1 else None
    dtype, device = model_dtype_device(model)
    if X.ndim > 2:
        if input_shape is not None:
            raise NtkscopeInputError(f"input_shape: the inputs of {source} already have the "
                                     f"shape {X.shape[1:]}")
        shape, why = tuple(int(v) for v in X.shape[1:]), f"as stored in {Path(source).name}"
    else:
        shape, why = input_shape_for(model, int(X.shape[1]), input_shape, image_shape=image)
    x = torch.as_tensor(X).to(dtype=dtype, device=device).reshape(-1, *shape)
    return ModelInputs(x, y, shape, why, source, note, labels, name)
