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
:mod:`ntkscope.engine` (rows of ``A_{l-1}`` and ``D_l`` stored as a tensor below one times an
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

from ntkscope.engine import NtkscopeRangeError, Pairing, RangeMonitor, kernel_pass
from ntkscope.networks import MLP
from ntkscope.validation import NtkscopeInputError

__all__ = ["NtkscopeRangeError", "empirical_ntk"]


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
        x, pairing = x1, Pairing("diag" if diagonal else "full")
    elif diagonal:
        raise NtkscopeInputError("diagonal: give only X1 for the diagonal Theta(x_s, x_s)")
    else:
        x2 = net.check_inputs(params, X2, "X2")
        x, pairing = torch.cat([x1, x2]), Pairing("cross", x1.shape[0])

    def compute(monitor: RangeMonitor | None) -> Tensor:
        total, _, _ = kernel_pass(params.layers(), x, net.activation, net.homogeneous, pairing,
                                  monitor)
        return total.result(monitor)

    with torch.no_grad():
        return net.guarded(params.dtype, compute)
