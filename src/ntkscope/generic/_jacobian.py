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

import warnings
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
    with torch.enable_grad(), warnings.catch_warnings():
        # ops without a batching rule (attention's backward) run in a loop; that is expected
        warnings.filterwarnings("ignore", message="There is a performance drop because we have "
                                "not yet implemented the batching rule", category=UserWarning)
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
    ja = _row_jacobians(problem, xa, names)
    jb = None if xb is None else jacobians(problem, xb, names)
    return contract(ja, jb, problem.output)


ROW_KEY = "jacobian.row"


def release(problem: Problem) -> None:
    """Drop the row Jacobians kept by :func:`block` (the tiler calls this when done)."""
    problem.cache.pop(ROW_KEY, None)


def _row_jacobians(problem: Problem, xa: Inputs, names: Sequence[str]
                   ) -> dict[str, torch.Tensor]:
    """:func:`jacobians` of ``xa``, kept for the next tile of the same row (the tiler passes
    the same ``xa`` object along a row). Only one row is kept, and it is dropped before the
    next one is computed, so the peak stays that of one ``xa x xb`` tile."""
    key = ROW_KEY
    last = problem.cache.get(key)
    if last is not None and last[0] is xa and last[1] == tuple(names):
        return last[2]
    problem.cache.pop(key, None)
    del last
    ja = jacobians(problem, xa, names)
    problem.cache[key] = (xa, tuple(names), ja)
    return ja


def estimate(problem: Problem, na: int, nb: int | None, names: Sequence[str]) -> int:
    """Peak bytes of :func:`block` on a tile of ``na x nb`` samples (``nb`` None: symmetric):
    both tiles' Jacobians ``(Na + Nb) O p``, twice the one being formed (``vmap``'s stacked
    result, its re-layout, allocator reuse), the batched backward's working set (``O`` copies
    of the largest activations per sample, the saved activations) and the kernel."""
    prof = activation_profile(problem)
    p = sum(problem.params[n].numel() for n in names)
    rows = na + (nb or 0)
    widest = max(na, nb or 0)
    # (the Jacobian being formed: vmap's stacked result and its re-layout; allocator reuse)
    elems = rows * prof.outputs * p + widest * (prof.outputs * (3 * prof.largest + 2 * p)
                                                 + 2 * prof.total)
    return elems * problem.itemsize + kernel_bytes(problem, na, nb)
