"""The empirical NTK of any ``torch.nn.Module`` (CONVENTIONS section 9).

Entry point :func:`module_ntk` (also ``ntkscope.module_ntk``); the oracle the tests compare with
:func:`reference_module_ntk`; model factories :func:`load_factory` / :func:`init_model`;
reference architectures in :mod:`ntkscope.generic.zoo`. One concept per private module:
``_inputs`` (inputs split along samples), ``_data`` (data sets' rows shaped for a model,
``.npz`` data files), ``_problem`` (model, forward, parameters, output),
``_memory`` (budgets, peak estimates), ``_jacobian`` / ``_ntvp`` / ``_layerwise`` (the methods'
tile functions), ``_api`` (validation, method choice, tiling), ``_reference``, ``_tracker``
(:class:`NTKTracker`: the diagnostics inside a training loop), ``_randomness`` (kernels of a
factory's initializations), ``_init_randomness`` (:func:`init_randomness`: ``R`` of any model
as resumable sweep cells), ``_fit`` (:func:`fit`: full-batch gradient descent of any model to a
loss fraction).
"""

from __future__ import annotations

from ntkscope.generic._api import Method, budget_for, method_functions, module_ntk
from ntkscope.generic._data import ModelInputs, NpzData, load_npz, model_inputs
from ntkscope.generic._factory import init_model, load_factory
from ntkscope.generic._fit import FitConfig, FitResult, fit
from ntkscope.generic._init_randomness import (
    InitRandomnessResult,
    factory_spec,
    init_randomness,
    inputs_fingerprint,
)
from ntkscope.generic._inputs import Inputs
from ntkscope.generic._memory import activation_profile, default_budget, parse_memory
from ntkscope.generic._problem import Problem, build_problem
from ntkscope.generic._randomness import init_kernels
from ntkscope.generic._reference import reference_module_ntk
from ntkscope.generic._tracker import NTKTracker, TrackerRecord

__all__ = [
    "FitConfig",
    "FitResult",
    "InitRandomnessResult",
    "Inputs",
    "Method",
    "ModelInputs",
    "NTKTracker",
    "NpzData",
    "Problem",
    "TrackerRecord",
    "activation_profile",
    "budget_for",
    "build_problem",
    "default_budget",
    "factory_spec",
    "fit",
    "init_kernels",
    "init_model",
    "init_randomness",
    "inputs_fingerprint",
    "load_factory",
    "load_npz",
    "method_functions",
    "model_inputs",
    "module_ntk",
    "parse_memory",
    "reference_module_ntk",
]
