"""The one forward/backward loop over layer operators, plain or in the rescaled domain.

Network (CONVENTIONS section 1): ``h^l = W^l x^{l-1} + b^l``, ``x^l = phi(h^l)``, ``x^0 = x``,
``f = h^{L+1}``; signals ``delta^{L+1} = 1``, ``delta^l = phi'(h^l) ∘ (W^{l+1})^T
delta^{l+1}``. The layers are any :class:`~ntkscope.engine.LayerOperator` (dense weights, or
the low-rank operator of the exact sampler).

Rescaled domain: every row (one network, one input) of a layer input ``A_{l-1}`` and of a
signal ``D_l`` is stored as a tensor with ``max|row| in [1/2, 1)`` times an exact power of two
``2**e`` whose exponent is carried separately (:func:`~ntkscope.engine.row_exponent`). For
positively homogeneous activations (``phi(c h) = c phi(h)`` for ``c > 0``: ReLU, leaky ReLU,
identity) the pre-activations are kept scaled too,

    h^l = 2**g [ (At W^T) 2**(a - g) + b 2**-g ],   g = max(a, e(b))   (both terms <= O(1)),

and ``x^l = phi(h^l)`` inherits the exponent ``g``; other activations are evaluated on the
true pre-activations (``tanh`` and ``erf`` are bounded, so only their backward signals need
rescaling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ntkscope.activations import RELU, Activation
from ntkscope.engine._exponents import max_exponent, row_exponent
from ntkscope.engine._kernel import Pairing, ScaledKernel
from ntkscope.engine._layers import LayerOperator
from ntkscope.engine._range import RangeMonitor

# Called with (l, P, g) for l = 1..L+1: the layer input A_{l-1} = 2**g[..., None] * P
# (g None: P is A_{l-1} itself).
InputVisitor = Callable[[int, Tensor, "Tensor | None"], None]
# Called with (l, D, beta) for l = L+1..1: the signal D_l = 2**beta[..., None] * D
# (beta None: D is D_l itself).
DeltaVisitor = Callable[[int, Tensor, "Tensor | None"], None]


def forward(
    layers: Sequence[LayerOperator],
    X: Tensor,
    activation: Activation,
    homogeneous: bool,
    *,
    rescale: bool,
    keep_derivatives: bool = False,
    on_input: InputVisitor | None = None,
    monitor: RangeMonitor | None = None,
) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """Forward pass of ``X`` (``(S, M0)``, shared by the ``B`` networks), plain or rescaled.

    ``homogeneous``: whether ``phi(c h) = c phi(h)`` for ``c > 0`` (then the pre-activations
    are rescaled too). A ``monitor`` records the row norms of the plain layer inputs.

    Calls ``on_input(l, P, g)`` for ``l = 1..L+1`` with the layer input
    ``A_{l-1} = 2**g[..., None] * P`` (rescaled: ``max|P| in [1/2, 1)`` per row unless zero,
    ``g`` of shape ``(B, S)`` or ``(1, S)``; plain: ``g`` is ``None`` and ``P = A_{l-1}``).
    ``P`` may broadcast over the batch axis (shape ``(1, S, M0)``).

    Returns ``(derivs, h, g)``: ``derivs[l-1]`` holds ``phi'(h^l)`` for ``l = 1..L`` (only
    with ``keep_derivatives``; for ReLU it is ``phi(h^l)`` itself, whose sign gives
    ``phi'``: :func:`backward` reads it either way) and the output ``f = 2**g * h``
    (``(B, S)``; ``g`` None: ``h``).
    """
    phi, dphi = activation.torch_fn, activation.torch_deriv
    relu = activation is RELU
    emax = max_exponent(X.dtype) - 1
    derivs: list[Tensor] = []
    x, a = X.unsqueeze(0), None  # layer input = 2**a * x (a None: plain values)
    n_layers = len(layers)
    for l, op in enumerate(layers, start=1):
        g: Tensor | None = None
        if rescale:
            k = row_exponent(x, emax)
            x, a = x * torch.exp2(-k)[..., None], k if a is None else a + k
            if homogeneous:
                # g >= 1 - emax with the input term 2**(a - g) At W^T and b 2**-g below one.
                g = torch.maximum(a, row_exponent(op.bias, emax)[:, None])
                h = op.affine(x, torch.exp2(a - g), torch.exp2(-g))
            else:
                h = op.affine(x, torch.exp2(a), None)
        else:
            if monitor is not None:
                monitor.norms(x)
            h = op.affine(x, None, None)
        if on_input is not None:
            on_input(l, x, a)
        if l == n_layers:
            return derivs, h[..., 0], g
        x, a = phi(h), g
        if keep_derivatives:
            # ReLU: phi'(h) = 1[phi(h) > 0] is read off phi(h) itself (no extra pass).
            derivs.append(x if relu else dphi(h))
    raise AssertionError("unreachable")


def backward(
    layers: Sequence[LayerOperator],
    derivs: list[Tensor],
    num_inputs: int,
    on_delta: DeltaVisitor,
    activation: Activation,
    *,
    rescale: bool,
    monitor: RangeMonitor | None = None,
    output_delta: Tensor | None = None,
) -> None:
    """Backpropagate ``delta^l = phi'(h^l) * (W^{l+1})^T delta^{l+1}``, ``delta^{L+1} = 1``
    (or ``output_delta`` of shape ``(B, S)``, plain values only: a per-sample weight such as
    the residuals of a loss, which then scales every ``delta^l``).

    Calls ``on_delta(l, D, beta)`` for ``l = L+1, L, ..., 1``: with ``rescale``,
    ``D_l = 2**beta[..., None] * D`` with ``max|D| in [1/2, 1)`` per row unless zero;
    otherwise ``beta`` is ``None`` and ``D = D_l`` (a ``monitor`` records the row norms).
    ``derivs`` (from :func:`forward`) is consumed: its entries are released.
    """
    relu = activation is RELU
    b_out = layers[-1].bias
    emax = max_exponent(b_out.dtype) - 1
    shape = (b_out.shape[0], num_inputs)
    if output_delta is None:
        d = torch.ones((*shape, 1), dtype=b_out.dtype, device=b_out.device)
    elif rescale or output_delta.shape != shape:
        raise ValueError("output_delta: plain passes only, shape (B, S)")
    else:
        d = output_delta[..., None]
    beta = torch.zeros_like(d[..., 0]) if rescale else None
    on_delta(len(layers), d, beta)
    for l in range(len(layers) - 1, 0, -1):
        d = layers[l].backward(d)  # D_{l+1} W^{l+1}
        if relu:  # derivs[l-1] = relu(h^l): zero where it is zero (h^l <= 0)
            d = d.masked_fill_(derivs[l - 1] == 0, 0.0)
        else:
            d = d.mul_(derivs[l - 1])
        derivs[l - 1] = d  # drop the reference to phi'(h^l)
        if beta is None:
            if monitor is not None:
                monitor.norms(d)
        else:
            k = row_exponent(d, emax)
            d.mul_(torch.exp2(-k)[..., None])
            beta = beta + k
        on_delta(l, d, beta)
    derivs.clear()


def kernel_pass(
    layers: Sequence[LayerOperator],
    X: Tensor,
    activation: Activation,
    homogeneous: bool,
    pairing: Pairing,
    monitor: RangeMonitor | None,
) -> tuple[ScaledKernel, Tensor, Tensor | None]:
    """One forward and one backward pass accumulating the NTK of CONVENTIONS section 3,
    ``Theta = sum_l (D_l D_l^T) ∘ (A_{l-1} A_{l-1}^T + 1)`` (entries chosen by ``pairing``).

    Plain with a ``monitor`` (it records the squared row norms, read off the Gram matrices
    where those are formed), rescaled without. Returns the accumulator and the output
    ``f = 2**g h`` (``h``, ``g`` as from :func:`forward`).

    Memory: per layer the smaller of the input Gram block and the layer input, and
    ``phi'(h^l)``; the signals ``D_l`` are consumed as the backward pass goes.
    """
    stash: list[tuple[Tensor, bool, Tensor | None]] = []
    total = ScaledKernel(pairing)
    # Full and diagonal kernels read the squared norms off their Gram matrices.
    own_norms = pairing.kind != "cross"
    pass_monitor = None if own_norms else monitor

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

    rescale = monitor is None
    derivs, h, g = forward(layers, X, activation, homogeneous, rescale=rescale,
                           keep_derivatives=True, on_input=keep_input, monitor=pass_monitor)
    backward(layers, derivs, X.shape[0], add_layer, activation, rescale=rescale,
             monitor=pass_monitor)
    return total, h, g
