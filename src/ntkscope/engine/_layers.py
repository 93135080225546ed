"""Layer operators: the linear maps ``x -> W x + b`` one scaled pass runs through.

A pass only ever applies a layer's weights ``W`` (``M_out x M_in``, batched over ``B``
networks) to its inputs and its transpose to the backpropagated signals:

    forward:   H = X W^T + b     (rows of ``X``: the ``S`` layer inputs, ``(B|1, S, M_in)``)
    backward:  D W               (rows of ``D``: the ``S`` signals ``delta``, ``(B, S, M_out)``)

:class:`DenseLayer` holds ``W`` and ``b`` (one layer of :class:`ntkscope.Params`).
:class:`LowRankLayer` is the exact low-rank sampler of CONVENTIONS section 6: it never forms
``W``. With ``Q`` an orthonormal basis containing the row span of the inputs (``X^T = Q R``)
and ``P = I - Q Q^T``,

    G = W Q ~ N(0, sw2/M_in) entrywise (M_out x r),   W X^T = G R                (forward)
    W^T D^T = Q G^T D^T + P Z B                                                  (backward)

with ``Z ~ N(0, sw2/M_in)`` entrywise (``M_in x k``) and ``B`` (``k x S``) the triangular
factor of a QR decomposition of ``D^T`` (``B^T B = D D^T``, exact also when ``D D^T`` is
singular, ``k = min(S, M_out)``). ``P W^T`` is independent of ``G`` and ``D`` depends on ``W``
only through ``G``, so nothing is approximated (valid only at initialization). Both maps are
linear in each row, so they commute with the per-row powers of two of the rescaled domain.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor


class LayerOperator(Protocol):
    """One weight layer ``W`` (``M_out x M_in``), ``b`` of ``B`` networks."""

    @property
    def bias(self) -> Tensor:
        """``b``, shape ``(B, M_out)``."""
        ...

    def affine(self, x: Tensor, x_scale: Tensor | None, b_scale: Tensor | None) -> Tensor:
        """``(x ∘ x_scale) W^T + b ∘ b_scale`` per row, ``(B, S, M_out)``.

        ``x`` is ``(B|1, S, M_in)``; ``x_scale``, ``b_scale`` (``(B|1, S)``, exact powers of
        two) scale the rows of the two terms (None: 1).
        """
        ...

    def backward(self, d: Tensor) -> Tensor:
        """``d W``, ``(B, S, M_in)`` for ``d`` of shape ``(B, S, M_out)``."""
        ...


class DenseLayer:
    """``W`` of shape ``(B, M_out, M_in)`` and ``b`` of shape ``(B, M_out)``."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        self.weight, self.bias = weight, bias

    def affine(self, x: Tensor, x_scale: Tensor | None, b_scale: Tensor | None) -> Tensor:
        w, b = self.weight, self.bias
        if x_scale is not None:
            x = x * x_scale[..., None]
        if b_scale is None:
            return torch.baddbmm(b[:, None, :], x.expand(w.shape[0], -1, -1), w.mT)
        return torch.matmul(x, w.mT).addcmul_(b[:, None, :], b_scale[..., None])

    def backward(self, d: Tensor) -> Tensor:
        return torch.matmul(d, self.weight)


def orth(At: Tensor) -> tuple[Tensor, Tensor]:
    """``At = Q R`` for a batch ``(B, M, S)``: ``Q`` (``B, M, r``) orthonormal, ``r = min(M, S)``.

    The span of ``Q`` contains the column span of ``At`` also when ``At`` is rank deficient.
    """
    if At.shape[-1] == 1:
        norm = torch.linalg.vector_norm(At, dim=1, keepdim=True)  # (B, 1, 1)
        unit = torch.zeros_like(At)
        unit[:, 0, 0] = 1.0
        Q = torch.where(norm > 0, At / torch.where(norm > 0, norm, 1.0), unit)
        return Q, norm
    Q, R = torch.linalg.qr(At, mode="reduced")
    return Q, R


class NoiseCursor:
    """Hands out consecutive blocks of a ``(B, size)`` tensor of standard normals, reshaped
    and scaled; :attr:`pos` counts the numbers used per network."""

    def __init__(self, noise: Tensor) -> None:
        self.noise = noise
        self.pos = 0

    def take(self, shape: tuple[int, ...], std: float) -> Tensor:
        n = math.prod(shape)
        block = self.noise[:, self.pos : self.pos + n]
        self.pos += n
        return block.reshape(self.noise.shape[0], *shape) * std

    @property
    def exhausted(self) -> bool:
        """Whether every number has been used."""
        return self.pos == self.noise.shape[1]


class LowRankLayer:
    """The low-rank operator of CONVENTIONS section 6 for ``S`` inputs.

    Draws from ``cursor``, in this order, ``G`` (``M_out x min(S, M_in)``) and ``b``
    (``M_out``) when constructed and ``Z`` (``M_in x min(S, M_out)``) when :meth:`backward`
    is called (at most once, after :meth:`affine`, which keeps the basis ``Q``).
    """

    def __init__(
        self, cursor: NoiseCursor, fan_in: int, fan_out: int, inputs: int, sw2: float, sb2: float
    ) -> None:
        self.cursor, self.fan_in = cursor, fan_in
        self.std = math.sqrt(sw2 / fan_in)
        self.G = cursor.take((fan_out, min(inputs, fan_in)), self.std)
        self.bias = cursor.take((fan_out,), math.sqrt(sb2))
        self.basis: Tensor | None = None

    def affine(self, x: Tensor, x_scale: Tensor | None, b_scale: Tensor | None) -> Tensor:
        Q, R = orth(x.mT)
        self.basis = Q
        G, b = self.G, self.bias
        h = torch.einsum("brs,bmr->bsm", R.expand(G.shape[0], -1, -1), G)  # (G R)^T
        if x_scale is not None:
            h = h * x_scale[..., None]
        elif b_scale is None:
            return h + b[:, None, :]
        if b_scale is None:
            return h.add_(b[:, None, :])
        return h.addcmul_(b[:, None, :], b_scale[..., None])

    def backward(self, d: Tensor) -> Tensor:
        Q = self.basis
        assert Q is not None, "LowRankLayer.backward before affine"
        _, Bf = orth(d.mT)  # (B, k, S), Bf^T Bf = D D^T
        Z = self.cursor.take((self.fan_in, Bf.shape[1]), self.std)
        U = Z @ Bf  # (B, M_in, S)
        GD = torch.einsum("bmr,bsm->brs", self.G, d)  # G^T D^T
        return (U + Q @ (GD - Q.mT @ U)).mT


def lowrank_noise_size(layer_widths: tuple[int, ...], inputs: int) -> int:
    """Gaussians one initialization consumes, in the order the low-rank layers take them.

    Forward, ``l = 1..L+1``: ``G_l`` (``M_l x min(S, M_{l-1})``) and ``b_l`` (``M_l``).
    Backward, ``l = L+1..2``: ``Z_l`` (``M_{l-1} x min(S, M_l)``).
    """
    fan_in, dims = layer_widths[:-1], layer_widths[1:]
    fwd = sum(mo * min(inputs, mi) + mo for mi, mo in zip(fan_in, dims, strict=True))
    bwd = sum(mi * min(inputs, mo) for mi, mo in zip(fan_in[1:], dims[1:], strict=True))
    return fwd + bwd
