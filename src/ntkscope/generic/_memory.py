"""Memory budgets of :func:`ntkscope.module_ntk`: parsing, the default, and the model profile the
methods' peak estimates are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ntkscope.generic._inputs import Inputs
from ntkscope.generic._problem import Problem
from ntkscope.validation import NtkscopeInputError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
# share of the free memory the default budget takes (the rest: the caller's other tensors,
# allocator slack, the estimates' error)
DEFAULT_SHARE = 0.5
# never fewer than this by default, even on a machine that reports little free memory
MIN_DEFAULT = 256 * 2**20


def parse_memory(value: Any, name: str = "max_memory") -> int:
    """Bytes of ``value``: a positive int, or a string ``"2GiB"``, ``"500MB"``, ``"1.5g"``
    (decimal ``kB/MB/GB/TB``, binary ``KiB/MiB/GiB/TiB``, case-insensitive)."""
    if isinstance(value, bool):
        raise NtkscopeInputError(f"{name}: expected bytes or a string like '2GiB', got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise NtkscopeInputError(
                f"{name}: cannot read {value!r}; give bytes or a number with a unit "
                "(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '2GiB'")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise NtkscopeInputError(
            f"{name}: expected bytes or a string like '2GiB', got {type(value).__name__}")
    total = number * _UNITS[unit]
    if not total >= 1 or total != total or total == float("inf"):
        raise NtkscopeInputError(f"{name}: must be a positive, finite number of bytes, got "
                                 f"{value!r}")
    return int(total)


def human(n: int) -> str:
    """``n`` bytes as text: ``"512 B"``, ``"3.2 KiB"``, ``"1.5 GiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: the GPU's free memory for CUDA, else the machine's available
    RAM (``MemAvailable``)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with dask.distributed
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
    return 4 * 2**30


def default_budget(device: torch.device) -> int:
    """The default ``max_memory``: :data:`DEFAULT_SHARE` of :func:`free_memory`."""
    return max(MIN_DEFAULT, int(DEFAULT_SHARE * free_memory(device)))


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each tensor once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(id(t), t.numel() * t.element_size())
    return sum(seen.values())


@dataclass(frozen=True)
class Profile:
    """Per-sample sizes (in scalars) the peak estimates use: ``outputs`` (``O``), ``total``
    (all module outputs of one forward: the activations a backward keeps) and ``largest`` (the
    largest module output)."""

    outputs: int
    total: int
    largest: int


def activation_profile(problem: Problem, x: Inputs | None = None) -> Profile:
    """The :class:`Profile` of ``problem``, measured once on the first sample of ``x`` (forward
    hooks on the leaf modules) and cached on the problem."""
    cached = problem.cache.get("profile")
    if cached is not None:
        return cached
    if x is None:
        raise RuntimeError("activation_profile: first call needs an input")
    sizes: list[int] = []

    def hook(_module: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel())
        elif isinstance(out, (tuple, list)):
            sizes.extend(t.numel() for t in out if isinstance(t, torch.Tensor))

    leaves = [m for m in problem.model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            out = problem.outputs(x.take(0, 1))
    finally:
        for h in handles:
            h.remove()
    n_out = int(out.shape[1])
    # inputs count too (the first layer saves them); functional ops between modules are not
    # hooked, hence the factor 2 on the total
    first = sum(t[:1].numel() for t in x.tensors())
    total = 2 * (sum(sizes) + first) + n_out
    largest = max([n_out, first, *sizes])
    prof = Profile(n_out, total, largest)
    problem.cache["profile"] = prof
    return prof


def kernel_bytes(problem: Problem, na: int, nb: int | None) -> int:
    """Bytes of one tile of the kernel: ``(Na, Nb, O, O)``, ``(Na, Nb)`` or ``(Na,)``."""
    o = activation_profile(problem).outputs
    cols = na if nb is None else nb
    n = {"full": na * cols * o * o, "trace": na * cols, "diagonal": na}[problem.output]
    return n * problem.itemsize
