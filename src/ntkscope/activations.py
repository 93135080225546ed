"""Activation functions shared by the theory engine (NumPy) and the networks (PyTorch).

Built-in names: ``relu``, ``tanh``, ``erf`` (closed-form Gaussian expectations exist for
``relu`` and ``erf``, paper Appendix E). Any elementwise callable ``phi`` that accepts a
``torch.Tensor`` is accepted too: the theory engine then evaluates it through Gauss-Legendre
quadrature (see :mod:`ntkscope.theory.gaussian`), and its derivative is taken by autograd
unless one is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.special

from ntkscope.validation import NtkscopeInputError

if TYPE_CHECKING:
    import torch

# torch is imported on first use, so the theory engine (NumPy/SciPy) starts without it.
ArrayFn = Callable[[np.ndarray], np.ndarray]
TensorFn = Callable[["torch.Tensor"], "torch.Tensor"]

_SQRT_PI_INV2 = 2.0 / math.sqrt(math.pi)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``phi`` with its derivative, in NumPy and in PyTorch.

    Attributes:
        name: ``relu``, ``tanh``, ``erf`` or the callable's name.
        np_fn, np_deriv: ``phi`` and ``phi'`` on float64 NumPy arrays (theory engine).
        torch_fn, torch_deriv: ``phi`` and ``phi'`` on tensors (networks, empirical NTK).
        closed_form: ``"relu"`` or ``"erf"`` when the Gaussian expectations have closed forms.
        kinks: points where ``phi`` or ``phi'`` is not smooth; quadrature panels break there.
        bound: ``sup |phi|`` when finite (bounds the fixed point ``q*``), else ``None``.
    """

    name: str
    np_fn: ArrayFn = field(repr=False)
    np_deriv: ArrayFn = field(repr=False)
    torch_fn: TensorFn = field(repr=False)
    torch_deriv: TensorFn = field(repr=False)
    closed_form: str | None = None
    kinks: tuple[float, ...] = (0.0,)
    bound: float | None = None


def _torch() -> Any:
    import torch

    return torch


def _relu_torch(x: torch.Tensor) -> torch.Tensor:
    return x.relu()


def _relu_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _tanh_torch(x: torch.Tensor) -> torch.Tensor:
    return x.tanh()


def _tanh_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    t = x.tanh()
    return 1.0 - t * t


def _erf_torch(x: torch.Tensor) -> torch.Tensor:
    return x.erf()


def _erf_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    return _SQRT_PI_INV2 * (-x * x).exp()


def _tanh_deriv_np(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.cosh(np.clip(x, -350.0, 350.0)) ** 2


RELU = Activation(
    name="relu",
    np_fn=lambda x: np.maximum(x, 0.0),
    np_deriv=lambda x: (np.asarray(x) > 0).astype(np.float64),
    torch_fn=_relu_torch,
    torch_deriv=_relu_deriv_torch,
    closed_form="relu",
)
TANH = Activation(
    name="tanh",
    np_fn=np.tanh,
    np_deriv=_tanh_deriv_np,
    torch_fn=_tanh_torch,
    torch_deriv=_tanh_deriv_torch,
    bound=1.0,
)
ERF = Activation(
    name="erf",
    np_fn=scipy.special.erf,
    np_deriv=lambda x: _SQRT_PI_INV2 * np.exp(-np.square(x)),
    torch_fn=_erf_torch,
    torch_deriv=_erf_deriv_torch,
    closed_form="erf",
    bound=1.0,
)

BUILTIN: dict[str, Activation] = {a.name: a for a in (RELU, TANH, ERF)}


def custom_activation(
    fn: TensorFn,
    derivative: TensorFn | None = None,
    *,
    name: str | None = None,
    kinks: tuple[float, ...] = (0.0,),
    bound: float | None = None,
) -> Activation:
    """Wrap an elementwise ``phi`` acting on tensors as an :class:`Activation`.

    ``phi'`` is computed by autograd when ``derivative`` is not given. The NumPy versions
    evaluate the tensor functions in float64 on the CPU. Give ``kinks`` (points where ``phi``
    or ``phi'`` jump or bend) so quadrature keeps its 1e-9 accuracy for non-smooth ``phi``.
    """
    if not callable(fn):
        raise NtkscopeInputError(f"activation: expected a name or a callable, got {fn!r}")
    if derivative is None:

        def derivative(x: torch.Tensor) -> torch.Tensor:
            torch = _torch()
            with torch.enable_grad():
                xd = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(fn(xd).sum(), xd)
            return g

    deriv = derivative

    def np_fn(x: np.ndarray) -> np.ndarray:
        return fn(_torch().as_tensor(np.asarray(x, dtype=np.float64))).detach().numpy()

    def np_deriv(x: np.ndarray) -> np.ndarray:
        return deriv(_torch().as_tensor(np.asarray(x, dtype=np.float64))).detach().numpy()

    probe = np_fn(np.linspace(-3.0, 3.0, 7))
    if probe.shape != (7,) or not np.all(np.isfinite(probe)):
        raise NtkscopeInputError(
            "activation: the callable must act elementwise on a float64 tensor and return "
            "finite values"
        )
    return Activation(
        name=name or getattr(fn, "__name__", "custom"),
        np_fn=np_fn,
        np_deriv=np_deriv,
        torch_fn=fn,
        torch_deriv=deriv,
        kinks=tuple(float(k) for k in kinks),
        bound=bound,
    )


def get_activation(activation: str | Activation | TensorFn) -> Activation:
    """Resolve ``relu``/``tanh``/``erf``, an :class:`Activation`, or an elementwise callable."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = activation.strip().lower()
        if key not in BUILTIN:
            raise NtkscopeInputError(
                f"activation: unknown activation {activation!r}; choose one of "
                f"{', '.join(sorted(BUILTIN))} or pass a callable"
            )
        return BUILTIN[key]
    return custom_activation(activation)
