"""Structured gradients and the full-batch gradient-descent step (paper Section 4).

Loss and update (CONVENTIONS section 7), for every network of a :class:`~ntkscope.networks.Params`
batch on the same training set ``(X, y)`` of ``S`` samples::

    L(theta) = 1/(2S) sum_s (f(x_s) - y_s)^2,        theta <- theta - lr * grad L(theta)

Gradients use the structure of the network instead of autograd. With the residuals
``r_s = f(x_s) - y_s``, the layer inputs ``A_{l-1}`` (rows ``x^{l-1}(x_s)``, ``x^0 = x``) and the
backpropagated signals ``D_l`` (rows ``delta^l(x_s) = df(x_s)/dh^l``, ``delta^{L+1} = 1``)::

    dL/dW^l = (1/S) sum_s r_s delta^l(x_s) x^{l-1}(x_s)^T = (1/S) D_l^T diag(r) A_{l-1}
    dL/db^l = (1/S) sum_s r_s delta^l(x_s)

One forward pass (:meth:`MLP.forward_scaled`) keeps the ``A_{l-1}`` and ``phi'(h^l)``; one
backward pass (:meth:`MLP.backward_scaled`) forms ``D_l`` layer by layer, and each weight update
is a single batched ``baddbmm`` (``W^l <- W^l - (lr r/S ∘ D_l)^T A_{l-1}``, no gradient tensor
is materialized). ``W^l`` is updated right after it has been used to backpropagate to layer
``l - 1``, so every update uses the gradient at the current parameters. The first layer's
update of all networks is one matrix product with the shared inputs ``X``.

First layer in Gram form (:class:`StepBatch`, used by :func:`ntkscope.training.train` when
``S < M0``): ``dL/dW^1`` lies in the row span of ``X``, so ``W^1_t = W^1_0 + C_t X`` with ``C``
of shape ``(M_1, S)``. The steps run on ``V = W^1 X^T`` (then ``h^1 = V^T + b^1``) with
``V <- V - (lr r/S ∘ D_1)^T X X^T`` and ``C <- C - (lr r/S ∘ D_1)^T``: the first layer's two
products cost ``2 S^2 M_1`` instead of ``2 S M0 M_1`` operations (MNIST, ``S = 128``: 6x fewer;
15% of a step at ``L = 10``, ``M = 256``). ``W^1`` itself is rebuilt on demand
(:meth:`StepBatch.params`); the results agree with the plain form to rounding.

Range: the steps run on plain values (no range monitor: its per-layer norms and finiteness
checks of every ``A_{l-1}`` and ``D_l`` took 25-40% of a step in CPU profiles of
:meth:`MLP.forward_with_cache`). Plain values are the true values whenever they are
representable -- what :meth:`MLP.forward_with_cache` would materialize -- and a value that is
not (overflow) shows up as a non-finite output or bias gradient (the flags
:meth:`StepBatch.backward` returns). Signals that underflow give gradients below the dtype's
resolution of the weights, which change nothing either way.

Learning-rate limit: ``lr_max = 2 S / lambda_max(Theta_0(X))`` (:func:`max_learning_rate`),
the largest rate for which the linearized dynamics ``f <- f - (lr/S) Theta_0 (f - y)``
converge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ntkscope.networks import MLP, NtkscopeRangeError, Params
from ntkscope.ntk import empirical_ntk
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.validation import NtkscopeInputError, finite_array, positive

__all__ = [
    "Pass",
    "StepBatch",
    "as_mlp",
    "check_targets",
    "gd_step",
    "lambda_max",
    "loss_and_gradients",
    "max_learning_rate",
    "mse_loss",
    "per_network",
    "residuals",
]


# ---------------------------------------------------------------------------------------------
# Argument checks


def as_mlp(net: MLP | NetworkSpec | Any, X: Any = None) -> MLP:
    """``net`` as an :class:`MLP`: an MLP itself, or a :class:`~ntkscope.NetworkSpec` built
    with ``spec.mlp`` on the input dimension of ``X`` (``(S, M0)``; a spec that fixes another
    ``input_dim`` is an error).

    Raises:
        NtkscopeInputError: ``net`` is neither, or its ``input_dim`` disagrees with ``X``.
    """
    if isinstance(net, MLP):
        return net
    spec = as_spec(net)
    shape = np.shape(X) if X is not None else ()
    return spec.mlp(shape[1] if len(shape) == 2 else None)


def check_targets(params: Params, y: Any, samples: int) -> Tensor:
    """``y`` as an ``(S,)`` tensor in the params' dtype and device, all finite."""
    if isinstance(y, Tensor):
        y = y.detach().cpu().double().numpy()
    arr = finite_array("y", y)
    if arr.shape != (samples,):
        raise NtkscopeInputError(
            f"y: expected {samples} targets (one per row of X), got shape {arr.shape}"
        )
    return torch.as_tensor(arr).to(params.device, params.dtype)


def per_network(name: str, value: Any, batch: int) -> np.ndarray:
    """A positive scalar or one positive value per network, as a float64 ``(batch,)`` array."""
    arr = positive(name, value).reshape(-1)
    if arr.size == 1:
        return np.full(batch, float(arr[0]))
    if arr.size != batch:
        raise NtkscopeInputError(f"{name}: expected one value or {batch} (one per network)")
    return arr.astype(np.float64)


def _prepare(net: Any, params: Any, X: Any, y: Any) -> tuple[MLP, Params, Tensor, Tensor]:
    net = as_mlp(net, X)
    params = net.check_params(params)
    x = net.check_inputs(params, X)
    return net, params, x, check_targets(params, y, x.shape[0])


# ---------------------------------------------------------------------------------------------
# Structured forward / backward pass


@dataclass
class Pass:
    """A plain forward pass: layer inputs ``A_{l-1}`` (``inputs[0]`` is ``X`` of shape
    ``(1, S, M0)``), ``phi'(h^l)`` for ``l = 1..L`` and the outputs ``f(x_s)``, ``(B, S)``."""

    inputs: list[Tensor]
    derivs: list[Tensor]
    output: Tensor

    def select(self, keep: Tensor) -> Pass:
        """The networks at positions ``keep`` (a long tensor on the device)."""

        picked: dict[int, Tensor] = {}  # ReLU: derivs[l-1] is inputs[l] (select it once)

        def pick(t: Tensor) -> Tensor:
            if t.shape[0] == 1 and t is self.inputs[0]:
                return t
            if id(t) not in picked:
                picked[id(t)] = t.index_select(0, keep)
            return picked[id(t)]

        return Pass(
            [pick(a) for a in self.inputs],
            [pick(d) for d in self.derivs],
            self.output.index_select(0, keep),
        )


def _forward(net: MLP, params: Params, x: Tensor) -> Pass:
    inputs: list[Tensor] = []
    derivs, h, _ = net.forward_scaled(
        params,
        x,
        rescale=False,
        keep_derivatives=True,
        on_input=lambda _l, p, _g: inputs.append(p),
    )
    return Pass(inputs, derivs, h)


def _backward(
    net: MLP,
    params: Params,
    fp: Pass,
    coef: Tensor,
    weights: list[Tensor],
    biases: list[Tensor],
    alpha: float,
    gram: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``W^l += alpha (coef ∘ D_l)^T A_{l-1}``, ``b^l += alpha sum_s coef_s delta^l_s`` into
    ``weights``/``biases`` (which may be ``params``' own tensors), ``coef`` of shape ``(B, S)``.

    With ``gram = (G, C)`` the first layer is in the Gram form of :class:`StepBatch` (inputs
    ``I_S``, weights ``V = W^1 X^T``): ``V += alpha (coef ∘ D_1)^T G`` and
    ``C += alpha (coef ∘ D_1)^T``.

    Returns per network whether every bias increment was finite (a non-finite signal ``D_l``
    makes its sum non-finite). Consumes ``fp.derivs``.
    """
    batch, s = coef.shape
    ok = torch.ones(batch, dtype=torch.bool, device=coef.device)
    pending: list[tuple[int, Tensor]] = []

    def flush(l: int, dc: Tensor) -> None:
        a, w = fp.inputs[l - 1], weights[l - 1]
        db = dc.sum(1)
        ok.logical_and_(torch.isfinite(db).all(1))
        if l == 1 and gram is not None:
            dct = dc.mT.reshape(-1, s)
            w.view(-1, s).addmm_(dct, gram[0], alpha=alpha)
            gram[1].view(-1, s).add_(dct, alpha=alpha)
        elif a.shape[0] == 1 and w.is_contiguous():
            # Shared inputs X: all networks' updates as one (B M_1 x S) @ (S x M0) product.
            w.view(-1, w.shape[2]).addmm_(dc.mT.reshape(-1, s), a[0], alpha=alpha)
        else:
            w.baddbmm_(dc.mT, a.expand(batch, -1, -1), alpha=alpha)
        biases[l - 1].add_(db, alpha=alpha)

    def visit(l: int, d: Tensor, _beta: Tensor | None) -> None:
        # W^{l+1} was just used to form D_l and is not needed again: update it now.
        if pending:
            flush(*pending.pop())
        pending.append((l, d))

    # delta^{L+1} = coef: every D_l arrives already scaled, coef ∘ D_l.
    net.backward_scaled(params, fp.derivs, s, visit, rescale=False, output_delta=coef)
    flush(*pending.pop())
    return ok


def residuals(fp: Pass, y: Tensor) -> tuple[Tensor, Tensor]:
    """Residuals ``r = f - y`` ``(B, S)`` of a pass and the losses
    ``L = 1/(2S) sum_s r_s^2`` ``(B,)``."""
    r = fp.output - y
    return r, 0.5 * torch.linalg.vecdot(r, r) / r.shape[1]


class StepBatch:
    """Running networks in the form the gradient steps use (the training loop's state).

    Plain form: the parameters themselves, inputs ``X``. Gram form (``gram=True``, worth it
    when ``S < M0``): the first layer's weights only ever move in the row span of ``X`` (its
    gradient is ``(1/S) D_1^T diag(r) X``), so ``W^1_t = W^1_0 + C_t X`` with ``C`` of shape
    ``(B, M_1, S)``. The steps then run on the inputs ``I_S`` with first-layer weights
    ``V = W^1 X^T`` (``h^1 = X W^1^T + b^1 = V^T + b^1``), updated as
    ``V <- V - (lr r/S ∘ D_1)^T X X^T`` and ``C <- C - (lr r/S ∘ D_1)^T``: ``2 S^2 M_1``
    operations per product instead of ``2 S M0 M_1``. :meth:`params` rebuilds ``W^1``.

    The parameters given are updated in place (pass a copy to keep them).
    """

    def __init__(self, net: MLP, params: Params, x: Tensor, gram: bool) -> None:
        self.net, self.x, self.p = net, x, params
        self.step_net, self.inputs = net, x
        self.gram: tuple[Tensor, Tensor] | None = None
        self.w0: Tensor | None = None
        if gram:
            s = x.shape[0]
            self.step_net = MLP(s, net.widths, net.depth, net.activation)
            self.inputs = torch.eye(s, dtype=x.dtype, device=x.device)
            self.w0 = params.weights[0]
            acc = torch.zeros(params.batch, params.weights[0].shape[1], s, dtype=x.dtype,
                              device=x.device)
            self.gram = (x @ x.mT, acc)
            self.p = Params([torch.matmul(self.w0, x.mT), *params.weights[1:]], params.biases)

    def forward(self) -> Pass:
        """The forward pass of the running networks at their current parameters."""
        return _forward(self.step_net, self.p, self.inputs)

    def backward(self, fp: Pass, coef: Tensor) -> Tensor:
        """One update ``theta <- theta - grad`` with ``coef = lr r / S`` ``(B, S)`` (the
        residuals of ``fp`` scaled per network); returns the per-network finiteness flags."""
        return _backward(self.step_net, self.p, fp, coef, self.p.weights, self.p.biases, -1.0,
                         self.gram)

    def select(self, keep: Tensor) -> None:
        """Keep only the networks at positions ``keep``."""
        self.p = self.p.select(keep)
        if self.gram is not None and self.w0 is not None:
            self.w0 = self.w0.index_select(0, keep)
            self.gram = (self.gram[0], self.gram[1].index_select(0, keep))

    def params(self, pos: Tensor | None = None) -> Params:
        """The true parameters of the networks at positions ``pos`` (all for ``None``)."""
        p = self.p if pos is None else self.p.select(pos)
        if self.gram is None or self.w0 is None:
            return p
        w0, acc = self.w0, self.gram[1]
        if pos is not None:
            w0, acc = w0.index_select(0, pos), acc.index_select(0, pos)
        return Params([torch.matmul(acc, self.x).add_(w0), *p.weights[1:]], p.biases)


# ---------------------------------------------------------------------------------------------
# Public entry points


@torch.no_grad()
def mse_loss(net: MLP | NetworkSpec, params: Params, X: Any, y: Any) -> Tensor:
    """``L = 1/(2S) sum_s (f(x_s) - y_s)^2`` of every network, shape ``(B,)``."""
    net, params, x, yt = _prepare(net, params, X, y)
    return residuals(_forward(net, params, x), yt)[1]


@torch.no_grad()
def loss_and_gradients(net: MLP | NetworkSpec, params: Params, X: Any, y: Any
                       ) -> tuple[Tensor, Params]:
    """The MSE loss ``(B,)`` and its gradient with respect to every ``W^l`` and ``b^l``.

    ``dL/dW^l = (1/S) D_l^T diag(f - y) A_{l-1}``, ``dL/db^l = (1/S) D_l^T (f - y)`` (see the
    module docstring), returned as a :class:`Params` with the shapes of ``params``. Computed
    on plain values; a non-finite gradient raises :class:`NtkscopeRangeError`.
    """
    net, params, x, yt = _prepare(net, params, X, y)
    fp = _forward(net, params, x)
    r, loss = residuals(fp, yt)
    grads = Params(
        [torch.zeros_like(w) for w in params.weights], [torch.zeros_like(b) for b in params.biases]
    )
    ok = _backward(net, params, fp, r / r.shape[1], grads.weights, grads.biases, 1.0)
    if not bool(ok.all()) or not all(bool(torch.isfinite(w).all()) for w in grads.weights):
        raise NtkscopeRangeError(
            "gradient: a value exceeds the range of the dtype; use float64, a shallower "
            "network or a smaller sigma_w2"
        )
    return loss, grads


@torch.no_grad()
def gd_step(net: MLP | NetworkSpec, params: Params, X: Any, y: Any,
            lr: float | Sequence[float]) -> Tensor:
    """One gradient-descent step ``theta <- theta - lr grad L`` on ``params`` **in place**.

    ``lr`` is one rate or one per network. Returns the losses before the step, ``(B,)``.
    """
    net, params, x, yt = _prepare(net, params, X, y)
    rates = per_network("lr", lr, params.batch)
    fp = _forward(net, params, x)
    r, loss = residuals(fp, yt)
    scale = torch.as_tensor(rates / r.shape[1]).to(params.device, params.dtype)
    _backward(net, params, fp, r * scale[:, None], params.weights, params.biases, -1.0)
    return loss


def lambda_max(theta: Tensor) -> Tensor:
    """Largest eigenvalue of each kernel of a ``(B, S, S)`` batch, computed in float64."""
    return torch.linalg.eigvalsh(theta.double())[:, -1]


@torch.no_grad()
def max_learning_rate(net: MLP | NetworkSpec, params: Params, X: Any) -> Tensor:
    """``lr_max = 2 S / lambda_max(Theta_0(X))`` per network, float64 ``(B,)``.

    The largest rate for which the linearized dynamics ``f <- f - (lr/S) Theta_0 (f - y)``
    converge (``inf`` if ``lambda_max <= 0``).
    """
    theta = empirical_ntk(as_mlp(net, X), params, X)
    lam = lambda_max(theta)
    return torch.where(lam > 0, 2.0 * theta.shape[1] / lam, math.inf)
