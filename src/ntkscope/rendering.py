"""How results render themselves (torch-free): the protocol the CLI's one printer reads, and
the number format of every table."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["Renderable", "fmt"]


class Renderable(Protocol):
    """What a result type provides for the CLI: its JSON, its title line and its rows
    (``(key, value)`` or ``(key, value, note)``). Optional: ``table()`` (``(columns,
    rows)``, printed between title and rows) and ``footer()`` (lines printed last)."""

    def to_dict(self) -> dict[str, Any]: ...

    def title(self) -> str: ...

    def rows(self) -> list[tuple[Any, ...]]: ...


def fmt(value: Any) -> str:
    """``-`` for ``None``, floats with 10 significant digits, anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)
