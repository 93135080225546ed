"""Kernels of a model factory's initializations (CONVENTIONS section 9).

Initialization ``i`` of a factory with seed ``s`` is ``torch.manual_seed(s + i); factory()``
(:func:`ntkscope.generic.init_model`). The draws are what the randomness statistics of any
model are computed from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ntkscope.generic._api import module_ntk
from ntkscope.generic._factory import init_model
from ntkscope.generic._inputs import Inputs, _map
from ntkscope.generic._problem import Forward
from ntkscope.validation import NtkscopeInputError, positive_int

__all__ = ["init_kernels", "prepared"]


def prepared(model: nn.Module, dtype: torch.dtype | None, device: str | torch.device | None
             ) -> nn.Module:
    """``model`` in eval mode (training-mode BatchNorm couples samples, dropout is random),
    cast to ``dtype`` and moved to ``device`` where given."""
    model.eval()
    if dtype is not None:
        model = model.to(dtype=dtype)
    if device is not None:
        model = model.to(device=device)
    return model


def _matching(x: Any, model: nn.Module) -> Any:
    """``x`` with floating tensor leaves cast to the model's floating dtype and every leaf on
    its device (integer leaves, token ids, keep their dtype)."""
    ref = next((p for p in model.parameters()), None)
    if ref is None:
        return x

    def fix(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            return t.to(device=ref.device, dtype=ref.dtype)
        return t.to(device=ref.device)

    return _map(x, fix)


def init_kernels(factory: Callable[[], nn.Module], x: Any, *, seed: int = 0, start: int = 0,
                 count: int = 1, output: str = "trace", forward: Forward | None = None,
                 params: Sequence[str] | None = None, dtype: torch.dtype | None = torch.float64,
                 device: str | torch.device | None = None,
                 max_memory: int | str | None = None) -> torch.Tensor:
    """The NTKs of initializations ``start, ..., start + count - 1`` of ``factory``.

    Initialization ``i``: ``torch.manual_seed(seed + i); model = factory()`` (CONVENTIONS
    section 9), then ``model.eval()``, cast to ``dtype`` (default float64; ``None``: as
    built) and moved to ``device``; floating inputs are cast to match. Its kernel is
    ``module_ntk(model, x, output=output, forward=forward, params=params)``. The caller's
    global torch random state is restored afterwards.

    Returns:
        ``(count, N, N)`` ("trace"), ``(count, N)`` ("diagonal") or ``(count, N, N, O, O)``
        ("full"), in ``dtype``.

    Raises:
        NtkscopeInputError: a factory that fails or returns no module, bad inputs, or any
            error :func:`ntkscope.module_ntk` raises (coupled samples, non-finite outputs).
    """
    seed = positive_int("seed", seed, minimum=0)
    start = positive_int("start", start, minimum=0)
    count = positive_int("count", count)
    if not callable(factory):
        raise NtkscopeInputError(f"factory: expected a callable returning an nn.Module, got "
                                 f"{type(factory).__name__}")
    Inputs.of(x)  # validate once, before any model is built
    out: list[torch.Tensor] = []
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        for i in range(start, start + count):
            model = prepared(init_model(factory, seed, i), dtype, device)
            out.append(module_ntk(model, _matching(x, model), output=output, forward=forward,
                                  params=params, max_memory=max_memory))
    return torch.stack(out)
