"""``nn.ConvTranspose1d/2d/3d`` (stride, padding, output padding, dilation, groups): the
adjoint of a convolution.

``y = conv_transpose(x, W)`` scatters ``x[ci, p] W[ci, co, k]`` to ``y[co, s p + d k - pad]``,
so the weight gradient correlates the layer input with the *unfolded output gradient*:
``J_{i,o}[ci, co, k] = sum_p x_{i}[ci, p] gpad_{i,o}[co, s p + d k]`` over the ``P`` input
positions. Per group: ``A = x`` (``da = C_in/G``) and ``B = patches(g)`` (``db = C_out/G K``);
the bias (``sum`` of ``g`` over the output positions) is materialized.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ntkscope.generic._layers._base import Dims, LayerCall, factor
from ntkscope.generic._layers._conv import patches

__all__ = ["ConvTransposeCall", "conv_transpose_support"]


def conv_transpose_support(module: nn.Module) -> str | None:
    """Why ``module`` is not handled (``None``: it is)."""
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}"
    return None


class ConvTransposeCall(LayerCall):
    """One call of ``nn.ConvTranspose1d/2d/3d``."""

    def _x(self) -> Tensor:
        """``(N, G, C_in/G, P)``."""
        x = self.x
        return x.reshape(self.n, self.module.groups, -1, x[0, 0].numel())

    def _gpatches(self, g: Tensor) -> Tensor:
        """``(N, G, C_out/G K, P)``: the output gradient under every input position."""
        m = self.module
        flat = [p for p in reversed(m.padding) for _ in range(2)]
        gp = F.pad(g, flat) if any(flat) else g
        return patches(gp, m.kernel_size, m.stride, m.dilation, m.groups,
                       sizes=self.x.shape[2:])

    def dims(self) -> Dims:
        m = self.module
        groups = m.groups
        da = m.in_channels // groups
        k = 1
        for ki in m.kernel_size:
            k *= ki
        db = m.out_channels // groups * k
        p = self.x[0, 0].numel()
        return Dims.grouped(groups, p, da, db, m.out_channels)

    def a_factor(self) -> Tensor:
        return factor(self._x())

    def b_factor(self, g: Tensor) -> Tensor:
        return factor(self._gpatches(g))

    def grad_pair(self, g: Tensor) -> tuple[Tensor, Tensor]:
        c = g.shape[1]
        gp = self._gpatches(g.reshape(self.n * c, *g.shape[2:]))  # (N c, G, C_out/G K, P)
        gp = gp.reshape(self.n, c, *gp.shape[1:]).permute(0, 2, 1, 4, 3)
        return self._x().unsqueeze(2), gp

    def bias_grads(self, g: Tensor) -> Tensor:
        return g.reshape(self.n, g.shape[1], g.shape[2], -1).sum(3)
