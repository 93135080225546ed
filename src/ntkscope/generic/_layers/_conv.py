"""``nn.Conv1d/2d/3d``: stride, padding (numbers, ``'same'``, ``'valid'``, any padding mode),
dilation and groups, by patches (im2col).

``y[co, l] = sum_{ci, k} W[co, ci, k] xpad[g(co) ci, s l + d k] + b[co]``: with the patches
``a_{i,g,l}`` (``C_in/G * K`` values of group ``g`` under output position ``l``) a convolution
is ``G`` independent linear maps over the ``L`` output positions: ``J_{i,o,g} = sum_l
g_{i,o,g,l} a_{i,g,l}^T`` (``C_out/G x C_in/G K``, the weight's layout), the Gram route uses
``A = a`` and ``B = g`` per group, the bias is a constant patch entry 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ntkscope.generic._layers._base import Dims, LayerCall, factor

__all__ = ["ConvCall", "conv_pads", "conv_support", "patches"]


def conv_pads(module: nn.modules.conv._ConvNd) -> list[tuple[int, int]]:
    """``(left, right)`` padding per spatial axis (``'same'``: ``d (k - 1)`` in total, the
    smaller half on the left, as PyTorch pads)."""
    k, d = module.kernel_size, module.dilation
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return [(0, 0)] * len(k)
        totals = [di * (ki - 1) for ki, di in zip(k, d, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in module.padding]


def patches(x: Tensor, kernel: Sequence[int], stride: Sequence[int],
            dilation: Sequence[int], groups: int, sizes: Sequence[int] | None = None) -> Tensor:
    """Patches of an already padded ``x`` ``(N, C, *S)``: ``(N, G, C/G * K, L)``.

    Entry ``[i, g, (c, k), l]`` is ``x[i, g C/G + c, s l + d k]`` (``k`` and ``l`` run over
    the spatial axes in order). ``sizes``: keep only the first ``sizes`` positions per axis.
    """
    n = x.shape[0]
    dims = len(kernel)
    u = x
    for ax, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True)):
        u = u.unfold(2 + ax, d * (k - 1) + 1, s)
        if d > 1:
            u = u[..., ::d]
        if sizes is not None:
            u = u.narrow(2 + ax, 0, sizes[ax])
    # (N, C, L1..Ld, k1..kd) -> (N, C, k1..kd, L1..Ld)
    order = [0, 1, *range(2 + dims, 2 + 2 * dims), *range(2, 2 + dims)]
    u = u.permute(order)
    return u.reshape(n, groups, -1, _prod(u.shape[2 + dims:]))


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def conv_support(module: nn.Module) -> str | None:
    """Why ``module`` is not handled (``None``: it is)."""
    return None


class ConvCall(LayerCall):
    """One call of ``nn.Conv1d/2d/3d``."""

    bias_in_gram = True

    def _patches(self) -> Tensor:
        m = self.module
        pads = conv_pads(m)
        flat = [p for pair in reversed(pads) for p in pair]
        if any(flat):
            if m.padding_mode == "zeros":
                xp = F.pad(self.x, flat)
            else:
                xp = F.pad(self.x, flat, mode=m.padding_mode)
        else:
            xp = self.x
        return patches(xp, m.kernel_size, m.stride, m.dilation, m.groups)

    def _g(self, g: Tensor) -> Tensor:
        """One output's gradient as ``(N, G, C_out/G, L)``."""
        return g.reshape(self.n, self.module.groups, -1, _prod(g.shape[2:]))

    def dims(self) -> Dims:
        m = self.module
        groups = m.groups
        da = m.in_channels // groups * _prod(m.kernel_size)
        db = m.out_channels // groups
        p = _prod(self.y.shape[2:])
        return Dims.grouped(groups, p, da, db, m.out_channels)

    def a_factor(self) -> Tensor:
        return factor(self._patches())

    def b_factor(self, g: Tensor) -> Tensor:
        return factor(self._g(g))

    def grad_pair(self, g: Tensor) -> tuple[Tensor, Tensor]:
        c = g.shape[1]
        gg = g.reshape(self.n, c, self.module.groups, -1, _prod(g.shape[3:]))
        return gg.transpose(1, 2), self._patches().mT.unsqueeze(2)

    def bias_grads(self, g: Tensor) -> Tensor:
        return g.reshape(self.n, g.shape[1], g.shape[2], -1).sum(3)
