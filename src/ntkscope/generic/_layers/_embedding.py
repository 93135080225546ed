"""``nn.Embedding``: ``y_p = W[idx_p]`` (rows of the weight).

The weight multiplies one-hot vectors ``e_{idx_p}``: the input-side Gram is the index match
``K_a[i, p, j, q] = [idx_{i,p} = idx_{j,q}]`` (``0`` at ``padding_idx``, whose row gets no
gradient), and the materialized gradient scatters ``g_{i,o,p}`` into the rows ``idx_{i,p}``
(``J_{i,o}``: ``V x D``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ntkscope.generic._layers._base import CHUNK_ELEMENTS, Dims, LayerCall

__all__ = ["EmbeddingCall", "embedding_support"]


def embedding_support(module: nn.Module) -> str | None:
    """Why ``module`` is not handled (``None``: it is)."""
    if module.scale_grad_by_freq:
        return "scale_grad_by_freq=True"
    if module.sparse:
        return "sparse=True"
    return None


class EmbeddingCall(LayerCall):
    """One call of ``nn.Embedding``."""

    def _idx(self) -> Tensor:
        """``(N, P)`` indices, ``-1`` where ``padding_idx``."""
        idx = self.x.reshape(self.n, -1)
        pad = self.module.padding_idx
        return idx if pad is None else idx.masked_fill(idx == pad, -1)

    def dims(self) -> Dims:
        v, d = self.module.num_embeddings, self.module.embedding_dim
        p = self.x[0].numel()
        return Dims(1, p, 1, d, v * d, 0, jflops=p * d)

    def a_gram(self, other: LayerCall | None) -> Tensor:
        ia = self._idx()
        ib = ia if other is None else other._idx()
        k = (ia[:, :, None, None] == ib[None, None]) & (ia[:, :, None, None] >= 0)
        return k.to(self.y.dtype).unsqueeze(0)

    def a_gram_diag(self) -> Tensor:
        ia = self._idx()
        k = (ia[:, :, None] == ia[:, None, :]) & (ia[:, :, None] >= 0)
        return k.to(self.y.dtype).unsqueeze(0)

    def b_factor(self, g: Tensor) -> Tensor:
        return g.reshape(1, self.n, -1, g.shape[-1])

    def weight_grad_chunks(self, g: Tensor, limit: int | None = CHUNK_ELEMENTS
                           ) -> Iterator[Tensor]:
        v, d = self.module.num_embeddings, self.module.embedding_dim
        idx = self._idx()
        c = g.shape[1]
        gg = g.reshape(self.n, c, -1, d)
        rows = v if limit is None else max(1, min(v, limit // (self.n * c * d)))
        for lo in range(0, v, rows):
            hi = min(v, lo + rows)
            inside = (idx >= lo) & (idx < hi)
            local = torch.where(inside, idx - lo, 0)[:, None, :, None].expand_as(gg)
            out = torch.zeros(self.n, c, hi - lo, d, dtype=g.dtype, device=g.device)
            out.scatter_add_(2, local, gg * inside[:, None, :, None])
            yield out.reshape(self.n, c, -1)
