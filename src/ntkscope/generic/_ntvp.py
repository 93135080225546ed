"""Method "ntvp": NTK-vector products (``torch.func`` ``vjp`` then ``jvp``), no Jacobian stored.

For sample ``i`` of a tile and output ``a``, the vector-Jacobian product with the basis
cotangent ``e_a`` gives ``v_{i,a} = d f_a(x_i)/d theta`` (one backward); the Jacobian-vector
product of the other tile's batched forward along it gives ``Theta_{i j, a b} = J_{j,b} v_{i,a}``
for all ``j, b`` at once (one forward-mode pass). Cost of a tile ``Na x Nb``: ``Na O``
backward passes of one sample and ``Na O`` forward-mode passes of ``Nb`` samples
(``Na Nb O`` sample passes in all), memory ``Na O P`` for the vectors plus ``Na O Nb`` times
the largest activation for the vmapped forward-mode passes. "diagonal" needs no ``jvp``:
``Theta_ii = sum_a |v_{i,a}|^2``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch.func import jvp, vjp, vmap

from ntkscope.generic._inputs import Inputs
from ntkscope.generic._memory import activation_profile, kernel_bytes
from ntkscope.generic._problem import Problem


def block(problem: Problem, xa: Inputs, xb: Inputs | None, names: Sequence[str]) -> torch.Tensor:
    """The kernel restricted to the parameters ``names`` on the tile ``xa x xb`` (``xb`` None:
    ``xa`` with itself): "full" ``(Na, Nb, O, O)``, "trace" ``(Na, Nb)``, "diagonal"
    ``(Na,)``."""
    values = {n: problem.params[n].detach() for n in names}
    g = problem.sample_fn(xa)
    other = xa if xb is None else xb
    nb = other.n

    def f_other(vals: dict[str, torch.Tensor]) -> torch.Tensor:
        return problem.call(vals, other.value).reshape(nb, -1)

    def per_sample(*leaves: torch.Tensor) -> torch.Tensor:
        out, vjp_fn = vjp(lambda vals: g(vals, *leaves), values)
        basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
        vectors = vmap(lambda e: vjp_fn(e)[0])(basis)  # {name: (O, *shape)}
        if problem.output == "diagonal":
            return sum((v.reshape(v.shape[0], -1) ** 2).sum() for v in vectors.values())

        def push(vec: dict[str, torch.Tensor]) -> torch.Tensor:
            return jvp(f_other, (values,), (vec,))[1]  # (Nb, O)

        rows = vmap(push)(vectors)  # (O_a, Nb, O_b)
        if problem.output == "trace":
            return torch.diagonal(rows, dim1=0, dim2=2).sum(-1)  # (Nb,)
        return rows.permute(1, 0, 2)  # (Nb, O_a, O_b)

    with torch.enable_grad(), warnings.catch_warnings():
        # torch's forward-mode AD scripts its decompositions on first use (its own warning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=DeprecationWarning)
        return vmap(per_sample)(*xa.tensors())


def estimate(problem: Problem, na: int, nb: int | None, names: Sequence[str]) -> int:
    """Peak bytes of :func:`block` on a tile of ``na x nb`` samples (``nb`` None: symmetric):
    the ``Na O`` parameter vectors (three times: the forward-mode pass copies them, and
    allocator slack), the saved activations of the ``Na`` one-sample backward passes, the
    ``Na O`` vmapped forward-mode passes over ``Nb`` samples (primal and tangent of the largest
    activations) and the kernel."""
    prof = activation_profile(problem)
    p = sum(problem.params[n].numel() for n in names)
    o = prof.outputs
    cols = na if nb is None else nb
    elems = na * o * (p + 3 * prof.largest) + 2 * na * prof.total
    if problem.output != "diagonal":
        # the forward-mode pass holds its own copy of the tangents (dual tensors), and a
        # third copy covers the allocator's reuse of those large blocks (measured)
        elems += 2 * na * o * p + na * o * cols * (4 * prof.largest + o) + cols * prof.total
    return elems * problem.itemsize + kernel_bytes(problem, na, nb)
