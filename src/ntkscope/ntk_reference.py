"""Autodiff oracle for the empirical NTK: a plain Jacobian contraction with ``torch.func``.

    Theta(x, x') = sum over every parameter tensor theta of  <df(x)/dtheta, df(x')/dtheta>

with ``f`` an ordinary ``torch.nn.Sequential`` of ``Linear`` layers evaluated through
``torch.func.functional_call`` and the per-input Jacobians from ``vmap(jacrev(...))``. It shares
no code with :mod:`ntkscope.ntk` beyond the activation function and costs ``O(S P)`` memory
(``P`` parameters); it exists for the tests and the benchmark, never as the fast path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from ntkscope.networks import MLP, Params
from ntkscope.validation import NtkscopeInputError

__all__ = ["reference_apply", "reference_ntk"]


class _Phi(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _module(net: MLP) -> nn.Sequential:
    """``Linear(M0, M1), phi, ..., Linear(ML, 1)`` on the meta device (parameters are supplied
    by ``functional_call``)."""
    m = net.layer_widths
    layers: list[nn.Module] = []
    for l in range(net.depth + 1):
        layers.append(nn.Linear(m[l], m[l + 1], device="meta"))
        if l < net.depth:
            layers.append(_Phi(net.activation.torch_fn))
    return nn.Sequential(*layers)


def _network(params: Params, i: int) -> dict[str, Tensor]:
    """Parameters of network ``i`` under the module's names (``Linear`` layers at even slots)."""
    out: dict[str, Tensor] = {}
    for l, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        out[f"{2 * l}.weight"] = w[i]
        out[f"{2 * l}.bias"] = b[i]
    return out


def _inputs(net: MLP, params: Params, X: Any, name: str) -> Tensor:
    return net.check_inputs(net.check_params(params), X, name)


def reference_apply(net: MLP, params: Params, X: Any) -> Tensor:
    """``f(x_s)`` of every network through ``nn.Sequential``, shape ``(B, S)``."""
    x = _inputs(net, params, X, "X")
    module = _module(net)
    with torch.no_grad():
        return torch.stack(
            [functional_call(module, _network(params, i), (x,))[:, 0] for i in range(params.batch)]
        )


def reference_ntk(
    net: MLP, params: Params, X1: Any, X2: Any = None, *, diagonal: bool = False
) -> Tensor:
    """Empirical NTK by Jacobian contraction; same signature and shapes as ``empirical_ntk``."""
    x1 = _inputs(net, params, X1, "X1")
    x2 = None if X2 is None else _inputs(net, params, X2, "X2")
    if diagonal and x2 is not None:
        raise NtkscopeInputError("diagonal: give only X1 for the diagonal Theta(x_s, x_s)")
    module = _module(net)

    def f_single(theta: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(module, theta, (x.unsqueeze(0),))[0, 0]

    jac = vmap(jacrev(f_single), in_dims=(None, 0))
    out = []
    for i in range(params.batch):
        theta = _network(params, i)
        j1 = jac(theta, x1)
        j2 = j1 if x2 is None else jac(theta, x2)
        total: Tensor | None = None
        for name in theta:
            a, b = j1[name].flatten(1), j2[name].flatten(1)
            term = (a * a).sum(1) if diagonal else a @ b.T
            total = term if total is None else total + term
        out.append(total)
    return torch.stack(out)  # type: ignore[arg-type]
