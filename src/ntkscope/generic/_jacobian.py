"""Method "jacobian": per-sample Jacobians by ``torch.func`` (``vmap`` of ``jacrev``), contracted.

``J_i = d f(x_i) / d theta`` of shape ``(O, P)`` for every sample of a tile, then
``Theta_{ij,ab} = sum_p J_{i,ap} J_{j,bp}`` parameter tensor by parameter tensor (no
concatenated ``P`` axis). Cost of a tile ``Na x Nb``: ``(Na + Nb) O`` backward passes,
``Na Nb O^2 P`` multiply-adds ("full"; ``Na Nb O P`` for "trace"), memory ``(Na + Nb) O P``
scalars plus the batched backward's working set; the caller (``_api``) sizes tiles with
:func:`estimate` so this stays under the budget (never ``N O P`` for all samples at once unless
it fits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import jacrev, vmap

from ntkscope.generic._inputs import Inputs
from ntkscope.generic._memory import activation_profile, kernel_bytes
from ntkscope.generic._problem import Problem


def jacobians(problem: Problem, x: Inputs, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians ``{name: (N, O, numel)}`` of the flattened outputs with respect to
    the parameters ``names``."""
    values = {n: problem.params[n].detach() for n in names}
    g = problem.sample_fn(x)
    with torch.enable_grad():
        jac = vmap(jacrev(g, argnums=0), in_dims=(None, *[0] * len(x.tensors())))(
            values, *x.tensors())
    return {n: j.reshape(x.n, j.shape[1], -1) for n, j in jac.items()}


def contract(ja: dict[str, torch.Tensor], jb: dict[str, torch.Tensor] | None,
             output: str) -> torch.Tensor:
    """The kernel of per-sample Jacobians (``{name: (N, O, p)}``; ``jb`` None: ``ja`` with
    itself): "full" ``(Na, Nb, O, O)``, "trace" ``(Na, Nb)``, "diagonal" ``(Na,)``."""
    total: torch.Tensor | None = None
    for name, a in ja.items():
        if output == "diagonal":
            term = (a * a).sum(dim=(1, 2))
        else:
            b = a if jb is None else jb[name]
            if output == "trace":
                # (Na, O p) @ (O p, Nb): sum over outputs and parameters at once
                term = a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T
            else:
                term = torch.einsum("iap,jbp->ijab", a, b)
        total = term if total is None else total + term
    assert total is not None
    return total


def block(problem: Problem, xa: Inputs, xb: Inputs | None, names: Sequence[str]) -> torch.Tensor:
    """The kernel restricted to the parameters ``names`` on the tile ``xa x xb`` (``xb`` None:
    ``xa`` with itself); shapes as :func:`contract`."""
    ja = jacobians(problem, xa, names)
    jb = None if xb is None else jacobians(problem, xb, names)
    return contract(ja, jb, problem.output)


def estimate(problem: Problem, na: int, nb: int | None, names: Sequence[str]) -> int:
    """Peak bytes of :func:`block` on a tile of ``na x nb`` samples (``nb`` None: symmetric):
    both tiles' Jacobians ``(Na + Nb) O p``, the batched backward's working set (``O`` copies
    of the largest activations per sample, the saved activations) and the kernel."""
    prof = activation_profile(problem)
    p = sum(problem.params[n].numel() for n in names)
    rows = na + (nb or 0)
    widest = max(na, nb or 0)
    elems = rows * prof.outputs * p + widest * (prof.outputs * (3 * prof.largest + p)
                                                 + 2 * prof.total)
    return elems * problem.itemsize + kernel_bytes(problem, na, nb)
