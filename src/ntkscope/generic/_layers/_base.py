"""One captured call of a supported layer: its factors for the layer-wise NTK.

A weight ``W`` (flattened to ``G`` groups of ``r x c`` blocks) enters the network of sample
``i`` as a sum over positions ``p``: its per-sample gradient for output ``o`` is

    J_{i,o} = sum_p  L_{i,o,g,p} R_{i,g,p}^T          (one ``r x c`` block per group ``g``),

and the kernel contribution of the layer is ``<J_{i,o}, J_{j,o'}>``. Two routes:

* **position Gram**: ``<J_{i,o}, J_{j,o'}> = sum_g sum_{p,q} (A_{i,g,p} . A_{j,g,q})
  (B_{i,o,g,p} . B_{j,o',g,q})`` with an input-side factor ``A`` (what the weight multiplies,
  computed once and reused for every output) and a gradient-side factor ``B`` (from the output
  gradient ``g = df_o/dy`` of the layer);
* **materialized**: ``J_{i,o}`` itself (``N x D`` per output, ``D = G r c``), then inner
  products.

A subclass says which factor is which (:meth:`a_factor`, :meth:`b_factor`), how to form
``J`` (:meth:`weight_grads`) and the bias gradient (:meth:`bias_grads`, ``sum_p g`` over the
positions of the bias), and its sizes (:meth:`dims`). Norm layers (elementwise weights) have
no Gram route: ``J`` is only ``N x C``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Dims", "LayerCall"]

# Largest block of materialized per-sample gradients (all samples of a tile), in elements.
CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Dims:
    """Sizes of one layer call per sample: ``groups`` G, ``positions`` P, input-side factor
    width ``da``, gradient-side width ``db`` (Gram route), weight and bias sizes ``dw``,
    ``dbias`` (materialized route), ``gram``: whether the position-Gram route exists, and
    ``jflops``: the cost of one per-sample gradient when it is not ``dw * positions``."""

    groups: int
    positions: int
    da: int
    db: int
    dw: int
    dbias: int
    gram: bool = True
    jflops: int = 0

    @classmethod
    def grouped(cls, groups: int, positions: int, da: int, db: int, dbias: int) -> Dims:
        """A layer of ``groups`` independent ``db x da`` (or ``da x db``) weight blocks."""
        return cls(groups, positions, da, db, groups * da * db, dbias)

    @property
    def grad_flops(self) -> int:
        """Multiply-adds of one per-sample weight gradient ``J_{i,o}`` (default ``D P``)."""
        return self.jflops or self.dw * self.positions


class LayerCall:
    """The captured input and output of one call of a supported module.

    ``x`` is the module's input (detached), ``y`` its output (the tensor gradients are taken
    with respect to). ``bias_in_gram``: the bias gradient equals the Gram route of a constant
    input feature 1, so the bias adds ``1`` to the input-side Gram ``A_i . A_j``.
    """

    bias_in_gram = False

    def __init__(self, module: nn.Module, x: Tensor, y: Tensor) -> None:
        self.module, self.x, self.y = module, x, y

    @property
    def n(self) -> int:
        """Samples (the first axis of the output)."""
        return int(self.y.shape[0])

    # -- to implement ----------------------------------------------------------------------
    def dims(self) -> Dims:
        raise NotImplementedError

    def a_factor(self) -> Tensor:
        """``A``: ``(G, N, P, da)``."""
        raise NotImplementedError

    def b_factor(self, g: Tensor) -> Tensor:
        """``B`` of one output's gradient ``g`` (shape of ``y``): ``(G, N, P, db)``."""
        raise NotImplementedError

    def grad_pair(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(L, R)`` with ``J = L @ R`` (broadcast over the outputs) in the weight's own layout
        for the gradients ``g`` of ``c`` outputs (``(N, c, *y.shape[1:])``): ``L`` of shape
        ``(N, G, c or 1, r, P)``, ``R`` of shape ``(N, G, c or 1, P, k)``; the weight is
        ``G r`` rows of ``k`` columns."""
        raise NotImplementedError

    def bias_grads(self, g: Tensor) -> Tensor:
        """Per-sample bias gradients ``(N, c, C)`` of the gradients ``g`` of ``c`` outputs."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def a_gram(self, other: LayerCall | None) -> Tensor:
        """``K_a[g, i, p, j, q] = A_{i,g,p} . A_{j,g,q}``: ``(G, Na, P, Nb, Q)``."""
        a = self.a_factor()
        b = a if other is None else other.a_factor()
        return _gram(a, b)

    def a_gram_diag(self) -> Tensor:
        """``K_a[g, i, p, q] = A_{i,g,p} . A_{i,g,q}``: ``(G, N, P, P)``."""
        a = self.a_factor()
        return torch.matmul(a, a.mT)

    def weight_grads(self, g: Tensor) -> Tensor:
        """Per-sample weight gradients ``(N, D)`` of one output's gradient ``g``, in the
        weight's layout."""
        chunks = [j[:, 0] for j in self.weight_grad_chunks(g[:, None], None)]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)

    def weight_grad_chunks(self, g: Tensor, limit: int | None = CHUNK_ELEMENTS
                           ) -> Iterator[Tensor]:
        """``J`` for the gradients ``g`` of ``c`` outputs (``(N, c, ...)``) in blocks
        ``(N, c, d)`` of at most ``limit`` elements (blocks of rows of the weight, at least
        one row; the same blocks for every call of the same module with as many samples)."""
        left, right = self.grad_pair(g)
        n, groups, _, r, _ = left.shape
        c, k = g.shape[1], right.shape[-1]
        rows = r if limit is None else max(1, min(r, limit // max(n * c * k, 1)))
        for grp in range(groups):
            rg = right[:, grp]
            for lo in range(0, r, rows):
                lg = left[:, grp, :, lo:lo + rows]  # (N, c or 1, rows, P)
                yield _product(lg, rg).reshape(n, c, -1)


def _product(left: Tensor, right: Tensor) -> Tensor:
    """``left @ right`` of ``(N, cl, r, P)`` and ``(N, cr, P, k)`` (``cl`` or ``cr`` 1, or
    equal) as one batched matmul per sample, without expanding the shared operand:
    ``(N, c, r, k)``."""
    n, cl, r, p = left.shape
    cr, k = right.shape[1], right.shape[-1]
    if cr == 1:
        return torch.bmm(left.reshape(n, cl * r, p), right[:, 0]).reshape(n, cl, r, k)
    if cl == 1:
        out = torch.bmm(left[:, 0], right.permute(0, 2, 1, 3).reshape(n, p, cr * k))
        return out.reshape(n, r, cr, k).transpose(1, 2)
    return torch.matmul(left, right)


def factor(t: Tensor) -> Tensor:
    """``(N, G, d, P)`` (channels before positions, as unfolded) in the factor layout
    ``(G, N, P, d)``."""
    return t.permute(1, 0, 3, 2)


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """``(G, Na, P, d), (G, Nb, Q, d) -> (G, Na, P, Nb, Q)`` by one batched matmul."""
    groups, na, p, d = a.shape
    nb, q = b.shape[1], b.shape[2]
    k = torch.matmul(a.reshape(groups, na * p, d), b.reshape(groups, nb * q, d).mT)
    return k.reshape(groups, na, p, nb, q)


def gram(a: Tensor, b: Tensor | None) -> Tensor:
    """Position Gram of two factors ``(G, N, P, d)`` (``b`` None: ``a`` with itself)."""
    return _gram(a, a if b is None else b)
