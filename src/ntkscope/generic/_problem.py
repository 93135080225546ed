"""One NTK problem: a model, how to call it, the parameters differentiated and the output kind.

``f(x) = forward(model, x)`` (default ``model(x)``; tuple inputs are NOT unpacked, a ``forward``
does that) must return a tensor of shape ``(N, ...)``, flattened here to ``(N, O)``. The
kernel is taken with respect to ``params``: the model's parameters that require grad (or the
named subset), each tensor once (a tied parameter under its first name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ntkscope.generic._inputs import Inputs
from ntkscope.validation import NtkscopeInputError

OUTPUTS = ("trace", "full", "diagonal")
Forward = Callable[[nn.Module, Any], torch.Tensor]


def call_model(model: nn.Module, x: Any) -> torch.Tensor:
    """The default ``forward``: ``model(x)``."""
    return model(x)


class _Call(nn.Module):
    """``forward(model, x)`` as a module, so ``torch.func.functional_call`` can swap the
    parameters of ``model`` (registered as the submodule ``model``) under a user ``forward``."""

    def __init__(self, model: nn.Module, forward: Forward) -> None:
        super().__init__()
        self.model = model
        self._fn = forward

    def forward(self, x: Any) -> torch.Tensor:
        return self._fn(self.model, x)


@dataclass(frozen=True, eq=False)
class Problem:
    """A validated problem (build it with :func:`build_problem`)."""

    model: nn.Module
    forward: Forward
    params: dict[str, nn.Parameter]
    output: str = "trace"
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The differentiated parameters' names, in the model's order."""
        return tuple(self.params)

    @property
    def n_params(self) -> int:
        """``P``: number of scalars differentiated."""
        return sum(p.numel() for p in self.params.values())

    @property
    def itemsize(self) -> int:
        """Bytes per scalar of the differentiated parameters (the kernel's dtype)."""
        return max(p.element_size() for p in self.params.values())

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the kernel: that of the (widest) differentiated parameter."""
        return max(self.params.values(), key=lambda p: p.element_size()).dtype

    def inputs(self, x1: Any, x2: Any = None) -> tuple[Inputs, Inputs | None]:
        """``x1`` and ``x2`` validated (:meth:`Inputs.of`); ``x2`` of the structure of ``x1``,
        and None for the "diagonal" output."""
        a = Inputs.of(x1, "x1")
        if x2 is None:
            return a, None
        if self.output == "diagonal":
            raise NtkscopeInputError("output='diagonal' is Theta(x_i, x_i) of x1: x2 must be None")
        b = Inputs.of(x2, "x2")
        a.check_like(b)
        return a, b

    def outputs(self, x: Inputs) -> torch.Tensor:
        """``f(x)`` flattened to ``(N, O)``, validated (a tensor, first axis the ``N`` samples,
        floating point, finite). Runs under the caller's grad mode."""
        out = self.forward(self.model, x.value)
        return check_outputs(out, x)

    def call(self, values: Mapping[str, torch.Tensor], x: Any) -> torch.Tensor:
        """``f(x)`` with the parameters ``values`` (a subset of :attr:`params`, by name) in place
        of the model's, unflattened (``torch.func.functional_call``; tied weights follow)."""
        wrapper = self.cache.get("wrapper")
        if wrapper is None:
            wrapper = self.cache["wrapper"] = _Call(self.model, self.forward)
        return torch.func.functional_call(
            wrapper, {f"model.{k}": v for k, v in values.items()}, (x,), strict=False)

    def sample_fn(self, x: Inputs) -> Callable[..., torch.Tensor]:
        """``g(values, *leaves) -> (O,)``: the flattened output of ONE sample whose tensor leaves
        (without the sample axis) are ``leaves``, in the order of ``x.tensors()``; the function
        ``torch.func.vmap`` maps over samples."""

        def g(values: Mapping[str, torch.Tensor], *leaves: torch.Tensor) -> torch.Tensor:
            one = x.rebuild([t.unsqueeze(0) for t in leaves])
            return self.call(values, one).reshape(-1)

        return g

    def subset(self, names: Sequence[str]) -> dict[str, nn.Parameter]:
        """The parameters ``names`` (each must be one of :attr:`names`)."""
        return {n: self.params[n] for n in names}


def check_outputs(out: Any, x: Inputs) -> torch.Tensor:
    """``out`` of the model on ``x`` as ``(N, O)``; clear errors for anything else."""
    if not isinstance(out, torch.Tensor):
        raise NtkscopeInputError(
            f"the model returned {type(out).__name__}, not a tensor; pass forward= (a function "
            "(model, x) -> tensor, e.g. lambda m, x: m(x)[0] or m(**x).logits)")
    if out.dim() == 0 or out.shape[0] != x.n:
        raise NtkscopeInputError(
            f"the model's output has shape {tuple(out.shape)} for {x.n} samples of {x.name}; "
            "its first axis must be the samples (shape (N, ...)); pass forward= to reshape it")
    if not out.dtype.is_floating_point:
        raise NtkscopeInputError(f"the model's output has dtype {out.dtype}; it must be floating "
                                 "point to be differentiated")
    out = out.reshape(x.n, -1)
    if out.shape[1] == 0:
        raise NtkscopeInputError(f"the model's output has shape {tuple(out.shape)}: no values "
                                 "per sample")
    bad = ~torch.isfinite(out.detach())
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).reshape(-1)[:5].tolist()
        raise NtkscopeInputError(
            f"the model's output on {x.name} is not finite (NaN or inf) for samples {rows}; the "
            "NTK of such a model is undefined")
    return out


def select_params(model: nn.Module, params: Sequence[str] | None) -> dict[str, nn.Parameter]:
    """The differentiated parameters: all that require grad, or the names ``params`` (each
    must exist and require grad); each tensor once, under its first name in the model."""
    if not isinstance(model, nn.Module):
        raise NtkscopeInputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    every = dict(model.named_parameters(remove_duplicate=False))
    first: dict[int, str] = {}
    for name, p in every.items():
        first.setdefault(id(p), name)
    if params is None:
        chosen = [n for n, p in every.items() if p.requires_grad]
        if not chosen:
            what = (f"all {len(first)} parameter tensors are frozen (requires_grad=False)"
                    if every else "it has no parameters")
            raise NtkscopeInputError(f"model has no trainable parameters: {what}")
    else:
        if isinstance(params, str):
            params = [params]
        chosen = list(params)
        if not chosen:
            raise NtkscopeInputError("params: empty list; give parameter names or None (all "
                                     "trainable parameters)")
        unknown = [n for n in chosen if n not in every]
        if unknown:
            known = ", ".join(list(first.values())[:8]) + (", ..." if len(first) > 8 else "")
            raise NtkscopeInputError(f"params: unknown parameter names {unknown}; the model "
                                     f"has: {known}")
        frozen = [n for n in chosen if not every[n].requires_grad]
        if frozen:
            raise NtkscopeInputError(f"params: {frozen} do not require grad (frozen); unfreeze "
                                     "them or leave them out")
    out: dict[str, nn.Parameter] = {}
    for name in chosen:
        p = every[name]
        out.setdefault(first[id(p)], p)
    # the model's order, whatever the order of params=
    return {n: out[n] for n in first.values() if n in out}


def build_problem(model: nn.Module, params: Sequence[str] | None = None,
                  forward: Forward | None = None, output: str = "trace") -> Problem:
    """Validate and bundle the arguments of :func:`ntkscope.module_ntk`."""
    if output not in OUTPUTS:
        raise NtkscopeInputError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
    if forward is not None and not callable(forward):
        raise NtkscopeInputError(f"forward: expected a function (model, x) -> tensor, got "
                                 f"{type(forward).__name__}")
    chosen = select_params(model, params)
    return Problem(model, forward or call_model, chosen, output)
