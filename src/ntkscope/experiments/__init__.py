"""Experiments: the paper's figures, each a function ``(out, preset, **options) -> paths``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

PRESETS = ("quick", "paper")

# figure id -> "module:function"; imported on use (the NTK figures pull in torch).
FIGURES: dict[str, str] = {
    "5": "ntkscope.experiments.theory_figures:figure5",
    "6": "ntkscope.experiments.theory_figures:figure6",
}


def figure_function(fig_id: str) -> Callable[..., list[Path]]:
    """The function that draws figure ``fig_id`` (a key of :data:`FIGURES`)."""
    from ntkscope.validation import NtkscopeInputError

    if fig_id not in FIGURES:
        raise NtkscopeInputError(
            f"figure: unknown figure {fig_id!r}; available: {', '.join(FIGURES)}"
        )
    module, func = FIGURES[fig_id].split(":")
    return getattr(import_module(module), func)
