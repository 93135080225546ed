"""Model inputs split along their first (sample) axis.

An input is a tensor, or a tuple / list / dict (nested freely) whose tensor leaves all have the
same first-axis length ``N`` (the samples); leaves that are not tensors (flags, ``None``,
strings) are passed through unchanged to every slice. Integer tensors (token ids) are split like
any other tensor. Nothing is cast or moved: the model receives the tensors as given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ntkscope.validation import NtkscopeInputError


def _map(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with ``fn`` applied to every tensor leaf (structure kept)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return type(value)((k, _map(v, fn)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_map(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map(v, fn) for v in value)
    return value


def _leaves(value: Any, path: str) -> list[tuple[str, torch.Tensor]]:
    """The tensor leaves of ``value`` with their paths (``x1['ids']``, ``x1[0]``)."""
    if isinstance(value, torch.Tensor):
        return [(path, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}[{k!r}]")]
    if isinstance(value, (tuple, list)):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return []


def _skeleton(value: Any) -> Any:
    """The structure of ``value`` with each tensor replaced by its per-sample shape and dtype;
    two inputs a model can take alike have equal skeletons."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape[1:]), value.dtype)
    if isinstance(value, dict):
        return (type(value).__name__, tuple((k, _skeleton(v)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_skeleton(v) for v in value))
    return ("leaf", type(value).__name__)


@dataclass(frozen=True)
class Inputs:
    """A validated model input: ``value`` (the structure as given) holding ``n`` samples."""

    value: Any
    n: int
    name: str = "x1"

    @classmethod
    def of(cls, value: Any, name: str = "x1") -> Inputs:
        """Validate ``value``: at least one tensor leaf, every tensor leaf with a first axis of
        the same length ``N >= 1``."""
        if isinstance(value, Inputs):
            return value
        leaves = _leaves(value, name)
        if not leaves:
            raise NtkscopeInputError(
                f"{name}: no tensor found (got {type(value).__name__}); give a tensor, or a "
                "tuple/list/dict of tensors whose first axis is the samples")
        lengths = {}
        for path, t in leaves:
            if t.dim() == 0:
                raise NtkscopeInputError(
                    f"{path}: a scalar tensor has no sample axis; inputs are split along their "
                    "first axis")
            lengths[path] = int(t.shape[0])
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{p}: {n}" for p, n in lengths.items())
            raise NtkscopeInputError(
                f"{name}: tensors disagree on the number of samples (first axis): {shown}")
        n = next(iter(lengths.values()))
        if n < 1:
            raise NtkscopeInputError(f"{name}: no samples (first axis has length 0)")
        return cls(value, n, name)

    @property
    def device(self) -> torch.device:
        """Device of the first tensor leaf."""
        return _leaves(self.value, self.name)[0][1].device

    def take(self, lo: int, hi: int) -> Inputs:
        """Samples ``lo:hi``."""
        lo, hi = max(0, lo), min(self.n, hi)
        if hi <= lo:
            raise ValueError(f"empty slice {lo}:{hi} of {self.n} samples")
        return Inputs(_map(self.value, lambda t: t[lo:hi]), hi - lo, self.name)

    def select(self, index: torch.Tensor) -> Inputs:
        """Samples ``index`` (a 1-D LongTensor), in that order."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        return Inputs(_map(self.value, lambda t: t[index.to(t.device)]), int(index.numel()),
                      self.name)

    def batched(self, size: int) -> list[tuple[int, Inputs]]:
        """Consecutive slices of at most ``size`` samples, with their start index."""
        size = max(1, int(size))
        return [(lo, self.take(lo, lo + size)) for lo in range(0, self.n, size)]

    def tensors(self) -> list[torch.Tensor]:
        """The tensor leaves, in a fixed order (the one :meth:`rebuild` expects)."""
        return [t for _, t in _leaves(self.value, self.name)]

    def rebuild(self, tensors: list[torch.Tensor]) -> Any:
        """The structure of ``value`` with its tensor leaves replaced by ``tensors`` (in the order
        of :meth:`tensors`); used to run the model on transformed leaves (``vmap``)."""
        it = iter(tensors)
        return _map(self.value, lambda _: next(it))

    def check_like(self, other: Inputs) -> None:
        """Raise unless ``other`` has this input's structure (same containers and keys, tensor
        leaves of the same per-sample shape and dtype), so one model takes both."""
        if _skeleton(self.value) != _skeleton(other.value):
            raise NtkscopeInputError(
                f"{other.name}: structure differs from {self.name} "
                f"({_describe(other.value)} vs {_describe(self.value)}); both must be the same "
                "kind of input, differing only in the number of samples")


def _describe(value: Any) -> str:
    """Short text of an input's structure: ``dict(ids: (N, 12) int64, mask: (N, 12) bool)``."""
    if isinstance(value, torch.Tensor):
        shape = ", ".join(["N", *map(str, value.shape[1:])])
        return f"({shape}) {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "(" + ", ".join(_describe(v) for v in value) + ")"
    return type(value).__name__
