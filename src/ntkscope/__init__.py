"""ntkscope: does NTK theory describe this finite network?

Mean-field theory and the infinite-width NTK (:mod:`ntkscope.theory`), the empirical NTK of
finite networks, NTK randomness at initialization, NTK change during training and the
generalization analysis of Seleznova & Kutyniok, "Analyzing Finite Neural Networks: Can We
Trust Neural Tangent Kernel Theory?". Mathematics: ``docs/conventions.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ntkscope._version import __version__
from ntkscope.activations import Activation, get_activation
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.validation import NtkscopeInputError

# Heavier parts are imported on first use so `import ntkscope` stays fast.
_LAZY = {
    "MLP": "ntkscope.networks",
    "Params": "ntkscope.networks",
    "empirical_ntk": "ntkscope.ntk",
    "ntk_variance": "ntkscope.sampling",
    "sample_ntk": "ntkscope.sampling",
    "module_ntk": "ntkscope.generic",
    "reference_module_ntk": "ntkscope.generic",
    "init_randomness": "ntkscope.generic",
    "check_model": "ntkscope.model_check",
    "NTKTracker": "ntkscope.generic",
    "kernel_matrix": "ntkscope.tiled",
    "check_network": "ntkscope.check",
}

__all__ = [
    "Activation",
    "NetworkSpec",
    "NtkscopeInputError",
    "__version__",
    "as_spec",
    "get_activation",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ntkscope' has no attribute {name!r}")
