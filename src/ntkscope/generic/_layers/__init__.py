"""Handlers of the layer-wise NTK path, one small file per layer family.

:func:`handler` maps a module to its :class:`~ntkscope.generic._layers._base.LayerCall`
class, or ``None`` with the reason it is not handled (anything else goes to the Jacobian
path). Types are matched exactly: a subclass may override ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ntkscope.generic._layers._base import CHUNK_ELEMENTS, Dims, LayerCall, gram
from ntkscope.generic._layers._conv import ConvCall, conv_support
from ntkscope.generic._layers._conv_transpose import ConvTransposeCall, conv_transpose_support
from ntkscope.generic._layers._embedding import EmbeddingCall, embedding_support
from ntkscope.generic._layers._linear import LinearCall, linear_support
from ntkscope.generic._layers._norm import NormCall, norm_support

__all__ = ["CHUNK_ELEMENTS", "Dims", "LayerCall", "gram", "handler"]

_Support = Callable[[nn.Module], "str | None"]

_HANDLERS: dict[type, tuple[type[LayerCall], _Support]] = {
    nn.Linear: (LinearCall, linear_support),
    nn.Conv1d: (ConvCall, conv_support),
    nn.Conv2d: (ConvCall, conv_support),
    nn.Conv3d: (ConvCall, conv_support),
    nn.ConvTranspose1d: (ConvTransposeCall, conv_transpose_support),
    nn.ConvTranspose2d: (ConvTransposeCall, conv_transpose_support),
    nn.ConvTranspose3d: (ConvTransposeCall, conv_transpose_support),
    nn.Embedding: (EmbeddingCall, embedding_support),
    nn.BatchNorm1d: (NormCall, norm_support),
    nn.BatchNorm2d: (NormCall, norm_support),
    nn.BatchNorm3d: (NormCall, norm_support),
    nn.LayerNorm: (NormCall, norm_support),
    nn.GroupNorm: (NormCall, norm_support),
    nn.RMSNorm: (NormCall, norm_support),
}


def handler(module: nn.Module) -> tuple[type[LayerCall] | None, str | None]:
    """``(call class, None)`` for a supported module, ``(None, reason)`` otherwise."""
    entry = _HANDLERS.get(type(module))
    if entry is None:
        return None, f"{type(module).__name__} is not a supported layer"
    cls, support = entry
    reason = support(module)
    return (None, reason) if reason is not None else (cls, None)
