"""Experiments: the paper's figures, each a function ``(out, preset, options) -> paths``.

``options`` (:class:`~ntkscope.experiments.common.SweepOptions`) says where the results store
is and how sweep cells run; the theory figures (5, 6) ignore it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

PRESETS = ("quick", "paper")

# figure id -> "module:function", in the order `ntkscope reproduce` draws them; imported on
# use (the sweep-backed figures pull in torch and the store).
FIGURES: dict[str, str] = {
    "5": "ntkscope.experiments.theory_figures:figure5",
    "6": "ntkscope.experiments.theory_figures:figure6",
    "1": "ntkscope.experiments.ntk_variance_figures:figure1",
    "2": "ntkscope.experiments.ntk_variance_figures:figure2",
    "7": "ntkscope.experiments.ntk_variance_figures:figure7",
    "3": "ntkscope.experiments.training_figures:figure3",
    "4": "ntkscope.experiments.training_figures:figure4",
    "8": "ntkscope.experiments.training_figures:figure8",
    "9": "ntkscope.experiments.training_figures:figure9",
    "10": "ntkscope.experiments.training_figures:figure10",
    "11": "ntkscope.experiments.training_figures:figure11",
    "variance": "ntkscope.experiments.variance_figure:figure_variance",
    "cnn": "ntkscope.experiments.cnn_figure:figure_cnn",
}


def figure_function(fig_id: str) -> Callable[..., list[Path]]:
    """The function that draws figure ``fig_id`` (a key of :data:`FIGURES`)."""
    from ntkscope.validation import NtkscopeInputError

    if fig_id not in FIGURES:
        raise NtkscopeInputError(
            f"figure: unknown figure {fig_id!r}; available: {', '.join(sorted(FIGURES))}"
        )
    module, func = FIGURES[fig_id].split(":")
    return getattr(import_module(module), func)
