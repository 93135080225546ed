"""``nn.Linear`` on inputs of any leading shape ``(N, *, d_in)``: ``y_p = W a_p + b``.

Positions ``p`` are the middle axes ``*``; ``J_{i,o} = sum_p g_{i,o,p} a_{i,p}^T``;
the Gram route uses ``A = a`` (``da = d_in``) and ``B = g`` (``db = d_out``), and the bias is a
constant input feature 1 (``K_a + 1``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ntkscope.generic._layers._base import Dims, LayerCall

__all__ = ["LinearCall", "linear_support"]


def linear_support(module: nn.Module) -> str | None:
    """Why ``module`` is not handled (``None``: it is)."""
    return None


class LinearCall(LayerCall):
    """One call of ``nn.Linear``."""

    bias_in_gram = True

    def _a(self) -> Tensor:
        return self.x.reshape(self.n, -1, self.x.shape[-1])

    def dims(self) -> Dims:
        d_in, d_out = self.x.shape[-1], self.y.shape[-1]
        p = self._a().shape[1]
        return Dims(1, p, d_in, d_out, d_in * d_out, d_out)

    def a_factor(self) -> Tensor:
        return self._a().unsqueeze(0)

    def b_factor(self, g: Tensor) -> Tensor:
        return g.reshape(1, self.n, -1, g.shape[-1])

    def grad_pair(self, g: Tensor) -> tuple[Tensor, Tensor]:
        gg = g.reshape(self.n, g.shape[1], -1, g.shape[-1])  # (N, c, P, d_out)
        return gg.mT.unsqueeze(1), self._a()[:, None, None]

    def bias_grads(self, g: Tensor) -> Tensor:
        return g.reshape(self.n, g.shape[1], -1, g.shape[-1]).sum(2)
