"""How many CPU threads torch may use for one piece of work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)``, restored afterwards (nothing changes for ``None``).

    Small operations (the low-rank sampler, one training step of a narrow network) run fastest
    on one thread: idle OpenMP workers spinning between them cost up to 10x on a loaded machine.
    """
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
