"""The oracle: the empirical NTK of a module by a plain per-sample ``torch.autograd`` loop.

``g_{i,a} = d f_a(x_i) / d theta`` (one forward per sample, one backward per sample and output),
``Theta_{ij,ab} = <g_{i,a}, g_{j,b}>``; "trace" sums ``a = b`` (a sum over outputs, not a
mean), "diagonal" is ``Theta_ii`` of the trace kernel. Slow (``N O`` backward passes) and
memory-hungry (all ``N O P`` gradients at once) on purpose: it shares nothing with the methods
of :func:`ntkscope.module_ntk` beyond input validation, so the tests compare against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ntkscope.generic._inputs import Inputs
from ntkscope.generic._problem import Forward, build_problem


def reference_module_ntk(model: nn.Module, x1: Any, x2: Any = None, *, output: str = "trace",
                         params: Sequence[str] | None = None,
                         forward: Forward | None = None) -> torch.Tensor:
    """Empirical NTK of ``model`` by per-sample autograd; same arguments and shapes as
    :func:`ntkscope.module_ntk` (``(N1, N2)``, ``(N1, N2, O, O)`` or ``(N1,)``)."""
    problem = build_problem(model, params, forward, output)
    a, b = problem.inputs(x1, x2)
    tensors = list(problem.params.values())

    def gradients(x: Inputs) -> torch.Tensor:
        rows = []
        for i in range(x.n):
            with torch.enable_grad():
                f = problem.outputs(x.take(i, i + 1))[0]
                per_output = []
                for o in range(f.numel()):
                    gs = torch.autograd.grad(f[o], tensors, retain_graph=True, allow_unused=True)
                    per_output.append(torch.cat([
                        (torch.zeros_like(t) if g is None else g).reshape(-1)
                        for g, t in zip(gs, tensors, strict=True)]))
            rows.append(torch.stack(per_output))
        return torch.stack(rows)  # (N, O, P)

    ga = gradients(a)
    if output == "diagonal":
        return (ga * ga).sum(dim=(1, 2))
    gb = ga if b is None else gradients(b)
    if output == "trace":
        return torch.einsum("iap,jap->ij", ga, gb)
    return torch.einsum("iap,jbp->ijab", ga, gb)
