"""Empirical NTK of batches of finite networks (CONVENTIONS section 3).

    Theta(x, x') = sum over every W^l, b^l (l = 1..L+1) of df(x)/dtheta . df(x')/dtheta
                 = sum_{l=1}^{L+1} <delta^l(x), delta^l(x')> (<x^{l-1}(x), x^{l-1}(x')> + 1)

so for inputs ``X`` (S x M0) ``Theta = sum_l (D_l D_l^T) ∘ (A_{l-1} A_{l-1}^T + 1)`` with the
backpropagated signals ``D_l`` (S x M_l) and the layer inputs ``A_{l-1}`` (S x M_{l-1}),
``x^0 = x``, ``delta^{L+1} = 1``. One forward pass, one backward pass and two Gram matrices
per layer, batched over networks: ``O(B S M^2 L + B S^2 M L)`` operations instead of the
``O(B S^2 P)`` of a Jacobian contraction over ``P ~ L M^2`` parameters.

Memory: besides the weights, ``phi'(h^l)`` (S x M_l per layer and network) and, per layer,
the smaller of the input Gram block and the layer input; the signals ``D_l`` are consumed as
the backward pass goes.

Range: the passes first run on plain values; if a layer's signals leave a safe range (very
deep chaotic or ordered networks, extreme inputs) they are repeated in the rescaled domain of
:mod:`ntkscope.networks` (rows of ``A_{l-1}`` and ``D_l`` stored as a tensor below one times an
exact power of two). The kernel is then accumulated as ``Theta_ij = T_ij 2**(c_i + c_j)`` with
a running per-sample exponent ``c``, so no intermediate overflows and every entry is exact up
to rounding relative to ``sqrt(Theta_ii Theta_jj)``; only a final value beyond the dtype's
range raises :class:`~ntkscope.networks.NtkscopeRangeError` (an ``OverflowError`` and an
``NtkscopeInputError``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ntkscope.networks import MLP, NtkscopeRangeError, RangeMonitor, materialize
from ntkscope.validation import NtkscopeInputError

__all__ = ["NtkscopeRangeError", "empirical_ntk"]


class _Pairing:
    """Which kernel entries are formed: the full ``S x S`` matrix, the cross block ``S1 x S2``
    of stacked inputs ``[X1; X2]``, or the diagonal ``S``.

    Per-sample vectors ``v`` of shape ``(B, S)`` split into the row and column vectors of the
    selected entries.
    """

    def __init__(self, kind: str, split: int = 0) -> None:
        self.kind, self.split = kind, split

    def gram(self, u: Tensor) -> Tensor:
        """``<u_i, u_j>`` over the last axis for the selected pairs ``(i, j)``."""
        if self.kind == "full":
            return torch.matmul(u, u.mT)
        if self.kind == "cross":
            return torch.matmul(u[:, : self.split], u[:, self.split :].mT)
        return torch.linalg.vecdot(u, u)

    def diagonal(self, gram: Tensor) -> Tensor:
        """The entries ``(i, i)`` of a full or diagonal Gram result."""
        return torch.diagonal(gram, dim1=-2, dim2=-1) if self.kind == "full" else gram

    def gram_is_smaller(self, u: Tensor) -> bool:
        """Whether the Gram matrix of ``u`` takes less memory than ``u`` itself."""
        s, m = u.shape[-2], u.shape[-1]
        if self.kind == "full":
            return s <= m
        if self.kind == "cross":
            return self.split * (s - self.split) <= s * m
        return True

    def _rows_cols(self, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "cross":
            return v[:, : self.split, None], v[:, None, self.split :]
        if self.kind == "full":
            return v[:, :, None], v[:, None, :]
        return v, v

    def exponents(self, e: Tensor) -> Tensor:
        """``e_i + e_j`` for the selected pairs."""
        rows, cols = self._rows_cols(e)
        return rows + cols

    def scale_(self, t: Tensor, v: Tensor) -> Tensor:
        """``t_ij *= v_i v_j`` in place."""
        rows, cols = self._rows_cols(v)
        return t.mul_(rows).mul_(cols) if self.kind != "diag" else t.mul_(v * v)

    def add_outer_(self, t: Tensor, v: Tensor) -> Tensor:
        """``t_ij += v_i v_j`` in place."""
        rows, cols = self._rows_cols(v)
        return t.addcmul_(rows, cols)


class _ScaledKernel:
    """``Theta_ij = T_ij 2**(c_i + c_j)`` accumulated layer by layer.

    ``c`` (per network and sample) is the running maximum of the layer terms' exponents, so
    ``|T_ij|`` stays of order ``M^2`` (Cauchy-Schwarz) and every entry is exact up to rounding
    relative to ``sqrt(Theta_ii Theta_jj)``. All scale factors are exact powers of two.
    """

    def __init__(self, pairing: _Pairing) -> None:
        self.pairing = pairing
        self.t: Tensor | None = None
        self.c: Tensor | None = None

    def add_layer(
        self, gram_d: Tensor, beta: Tensor | None, gram_a: Tensor, gamma: Tensor | None
    ) -> None:
        """Add ``(D D^T) ∘ (A A^T + 1)`` for ``D_i = 2**beta_i Dt_i``, ``A_i = 2**gamma_i At_i``
        (``gram_d``, ``gram_a`` the Gram entries of ``Dt``, ``At``; ``gamma`` None means 0;
        ``beta`` None: plain values, all exponents 0, and ``gamma`` None too).

        With ``m_i = max(gamma_i, 0)`` the term is ``2**(u_i + u_j)`` times
        ``gram_d ∘ (gram_a v_i v_j + z_i z_j)``, ``u = beta + m``, ``v = 2**(gamma - m)``,
        ``z = 2**-m``. Tensors passed in are consumed.
        """
        pair = self.pairing
        if beta is None:  # plain values: no exponents anywhere
            if self.t is None:
                self.t = gram_d.mul_(gram_a + 1.0)
            else:
                self.t.addcmul_(gram_d, gram_a).add_(gram_d)
            return
        m = None if gamma is None else gamma.clamp(min=0.0)
        u = beta if m is None else beta + m
        if self.t is None or self.c is None:
            c, w = u, None
        else:
            c = torch.maximum(self.c, u)
            w = torch.exp2(u - c)
        if gamma is None or m is None:
            term = gram_d.mul_(gram_a + 1.0)
            if w is not None:
                pair.scale_(term, w)
        else:
            scale_a, scale_one = torch.exp2(gamma - m), torch.exp2(-m)
            if w is not None:
                scale_a, scale_one = scale_a * w, scale_one * w
            inner = pair.add_outer_(pair.scale_(gram_a, scale_a), scale_one)
            term = gram_d.mul_(inner)
        if self.t is None or self.c is None:
            self.t = term
        else:
            self.t = pair.scale_(self.t, torch.exp2(self.c - c)).add_(term)
        self.c = c

    def result(self, monitor: RangeMonitor | None) -> Tensor:
        """The kernel; plain sums are handed to ``monitor`` for the finiteness check."""
        assert self.t is not None
        if self.c is None:
            return (
                monitor.values(self.t)
                if monitor is not None
                else materialize(self.t, None, "empirical NTK")
            )
        return materialize(self.t, self.pairing.exponents(self.c), "empirical NTK")


def empirical_ntk(
    net: MLP,
    params: Any,
    X1: Any,
    X2: Any = None,
    *,
    diagonal: bool = False,
) -> Tensor:
    """Empirical NTK ``Theta(x, x')`` of every network of ``params`` (CONVENTIONS section 3).

    Gradients are taken with respect to all weights ``W^l`` and biases ``b^l`` (``l = 1..L+1``)
    in the standard parameterization.

    Args:
        net: the architecture.
        params: ``B`` networks (``net.init(...)``).
        X1: inputs, ``(S1, M0)``; a tensor must have the params' dtype and device.
        X2: optional second inputs ``(S2, M0)`` for the cross kernel ``Theta(X1, X2)``.
        diagonal: return only ``Theta(x_s, x_s)`` (no ``S x S`` matrix is formed).

    Returns:
        ``(B, S1, S1)``, ``(B, S1, S2)`` with ``X2``, or ``(B, S1)`` with ``diagonal``, in the
        params' dtype and device.

    Raises:
        NtkscopeInputError: bad arguments.
        NtkscopeRangeError: a kernel value exceeds the dtype's range.
    """
    if not isinstance(net, MLP):
        raise NtkscopeInputError(f"net: expected an MLP, got {type(net).__name__}")
    params = net.check_params(params)
    if not isinstance(diagonal, bool):
        raise NtkscopeInputError(f"diagonal: expected True or False, got {diagonal!r}")
    x1 = net.check_inputs(params, X1, "X1")
    if X2 is None or X2 is X1:
        x, pairing = x1, _Pairing("diag" if diagonal else "full")
    elif diagonal:
        raise NtkscopeInputError("diagonal: give only X1 for the diagonal Theta(x_s, x_s)")
    else:
        x2 = net.check_inputs(params, X2, "X2")
        x, pairing = torch.cat([x1, x2]), _Pairing("cross", x1.shape[0])

    def compute(monitor: RangeMonitor | None) -> Tensor:
        # Forward: keep, per layer, the Gram matrix of the (scaled) input, or the input itself
        # when that is smaller, with its row exponents; backward: add each layer's term.
        stash: list[tuple[Tensor, bool, Tensor | None]] = []
        total = _ScaledKernel(pairing)

        def keep_input(_l: int, p: Tensor, g: Tensor | None) -> None:
            small = pairing.gram_is_smaller(p)
            stash.append((pairing.gram(p) if small else p, small, g))

        def add_layer(_l: int, d: Tensor, beta: Tensor | None) -> None:
            a, is_gram, g = stash.pop()
            gram_a, gram_d = a if is_gram else pairing.gram(a), pairing.gram(d)
            if monitor is not None and own_norms:
                monitor.squared_norms(pairing.diagonal(gram_a))
                monitor.squared_norms(pairing.diagonal(gram_d))
            total.add_layer(gram_d, beta, gram_a, g)

        # Full and diagonal kernels read the squared norms off their Gram matrices.
        own_norms = pairing.kind != "cross"
        pass_monitor = None if own_norms else monitor
        derivs, _, _ = net.forward_scaled(
            params,
            x,
            rescale=monitor is None,
            keep_derivatives=True,
            on_input=keep_input,
            monitor=pass_monitor,
        )
        net.backward_scaled(
            params, derivs, x.shape[0], add_layer, rescale=monitor is None, monitor=pass_monitor
        )
        return total.result(monitor)

    with torch.no_grad():
        return net.guarded(params.dtype, compute)
