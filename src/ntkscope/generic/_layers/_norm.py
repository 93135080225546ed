"""The affine parameters of ``BatchNorm1d/2d/3d``, ``LayerNorm``, ``GroupNorm`` and
``RMSNorm``: ``y = xhat * w + b`` elementwise per feature ``c`` (broadcast over positions).

``xhat`` is the normalized input (recomputed from the captured input with the layer's own
statistics: the sample's own for LayerNorm/GroupNorm/RMSNorm, the batch's for a BatchNorm in
training mode; a BatchNorm in eval mode uses its running statistics, ``sum_p g xhat =
(sum_p g x - mu sum_p g) / sqrt(var + eps)``, without forming ``xhat``),
``J^w_{i,o,c} = sum_p g_{i,o,c,p} xhat_{i,c,p}``, ``J^b_{i,o,c} = sum_p g_{i,o,c,p}``: only
``C`` numbers per sample, always materialized.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ntkscope.generic._layers._base import CHUNK_ELEMENTS, Dims, LayerCall

__all__ = ["NormCall", "norm_support"]

_BATCH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def norm_support(module: nn.Module) -> str | None:
    """Why ``module`` is not handled (``None``: it is)."""
    return None


class NormCall(LayerCall):
    """One call of a norm layer with an elementwise affine transform."""

    def _channel_first(self) -> bool:
        return isinstance(self.module, (*_BATCH, nn.GroupNorm))

    def _running(self) -> tuple[Tensor, Tensor] | None:
        """BatchNorm in eval mode with running statistics: ``(mean, 1/sqrt(var + eps))``
        per channel; else None."""
        m = self.module
        if isinstance(m, _BATCH) and not m.training and m.running_mean is not None:
            return m.running_mean, torch.rsqrt(m.running_var + m.eps)
        return None

    def _xhat(self) -> Tensor:
        m, x = self.module, self.x
        cached = getattr(self, "_xhat_cache", None)
        if cached is not None:
            return cached
        if isinstance(m, _BATCH):
            axes = [0, *range(2, x.dim())]
            mean = x.mean(axes, keepdim=True)
            var = x.var(axes, unbiased=False, keepdim=True)
            out = (x - mean) / torch.sqrt(var + m.eps)
        elif isinstance(m, nn.GroupNorm):
            out = F.group_norm(x, m.num_groups, None, None, m.eps)
        elif isinstance(m, nn.LayerNorm):
            out = F.layer_norm(x, m.normalized_shape, None, None, m.eps)
        else:
            out = F.rms_norm(x, m.normalized_shape, None, m.eps)
        self._xhat_cache = out  # reused by every chunk of outputs
        return out
        if isinstance(m, nn.GroupNorm):
            return F.group_norm(x, m.num_groups, None, None, m.eps)
        if isinstance(m, nn.LayerNorm):
            return F.layer_norm(x, m.normalized_shape, None, None, m.eps)
        return F.rms_norm(x, m.normalized_shape, None, m.eps)

    def _per_feature(self, t: Tensor) -> Tensor:
        """``(N, c, ...)`` summed over positions: ``(N, c, C)``."""
        c = t.shape[1]
        if self._channel_first():
            return t.reshape(self.n, c, t.shape[2], -1).sum(3)
        k = len(self.module.normalized_shape)
        feats = t.shape[t.dim() - k:].numel()
        return t.reshape(self.n, c, -1, feats).sum(2)

    def dims(self) -> Dims:
        w = self.module.weight
        c = w.numel() if w is not None else self.module.bias.numel()
        return Dims(1, 1, 1, 1, c, c, gram=False)

    def weight_grad_chunks(self, g: Tensor, limit: int | None = CHUNK_ELEMENTS
                           ) -> Iterator[Tensor]:
        running = self._running()
        if running is not None:
            # xhat = (x - mu) s per channel: sum_p g xhat = (sum_p g x - mu sum_p g) s
            mean, scale = running
            gx = self._per_feature(g * self.x[:, None])
            yield (gx - mean * self._per_feature(g)) * scale
            return
        yield self._per_feature(g * self._xhat()[:, None])

    def bias_grads(self, g: Tensor) -> Tensor:
        return self._per_feature(g)
