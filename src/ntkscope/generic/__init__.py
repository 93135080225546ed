"""The empirical NTK of any ``torch.nn.Module`` (CONVENTIONS section 9).

Entry point :func:`module_ntk` (also ``ntkscope.module_ntk``); the oracle the tests compare with
:func:`reference_module_ntk`; model factories :func:`load_factory` / :func:`init_model`;
reference architectures in :mod:`ntkscope.generic.zoo`. One concept per private module:
``_inputs`` (inputs split along samples), ``_problem`` (model, forward, parameters, output),
``_memory`` (budgets, peak estimates), ``_jacobian`` / ``_ntvp`` / ``_layerwise`` (the methods'
tile functions), ``_api`` (validation, method choice, tiling), ``_reference``, ``_tracker``
(:class:`NTKTracker`: the diagnostics inside a training loop).
"""

from __future__ import annotations

from ntkscope.generic._api import Method, budget_for, method_functions, module_ntk
from ntkscope.generic._factory import init_model, load_factory
from ntkscope.generic._inputs import Inputs
from ntkscope.generic._memory import activation_profile, default_budget, parse_memory
from ntkscope.generic._problem import Problem, build_problem
from ntkscope.generic._randomness import init_kernels
from ntkscope.generic._reference import reference_module_ntk
from ntkscope.generic._tracker import NTKTracker, TrackerRecord

__all__ = [
    "Inputs",
    "Method",
    "NTKTracker",
    "Problem",
    "TrackerRecord",
    "activation_profile",
    "budget_for",
    "build_problem",
    "default_budget",
    "init_kernels",
    "init_model",
    "load_factory",
    "method_functions",
    "module_ntk",
    "parse_memory",
    "reference_module_ntk",
]
