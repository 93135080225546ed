"""Lazy vs feature-learning diagnostics of a kernel and of the weights (CONVENTIONS section 9).

One place for the formulas the training code, :class:`ntkscope.NTKTracker`, the model check
and the figures share. Kernels are tensors of any shape (trace ``(n, n)``, full
``(n, n, O, O)``); norms and inner products are Frobenius, computed in float64 whatever the
input dtype:

* ``ntk_change = |Theta_t - Theta_0|_F / |Theta_0|_F`` (paper Section 4, eq. 3);
* ``kernel_distance = 1 - <Theta_t, Theta_0>_F / (|Theta_t|_F |Theta_0|_F)`` (Fort et al.
  2020): 0 for kernels that are positive multiples of each other, whatever their scale;
* centered kernel-target alignment ``<H K H, Y Y^T>_F / (|H K H|_F |Y Y^T|_F)``,
  ``H = I - 1 1^T / n`` (Cortes et al. 2012);
* ``weight_change = |theta_t - theta_0|_2 / |theta_0|_2``, over all parameters and per tensor
  (Chizat et al. 2019, Lee et al. 2019);
* the largest eigenvalue and the condition number ``lambda_max / lambda_min`` of a symmetric
  kernel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ntkscope.validation import NtkscopeInputError

__all__ = ["Spectrum", "WeightChange", "centered_alignment", "kernel_distance", "ntk_change",
           "spectrum", "trace_kernel", "weight_change"]


def _f64(name: str, k: object) -> Tensor:
    if not isinstance(k, Tensor):
        raise NtkscopeInputError(f"{name}: expected a torch.Tensor, got {type(k).__name__}")
    k = k.detach().to(torch.float64)
    if k.numel() == 0:
        raise NtkscopeInputError(f"{name}: empty tensor")
    if not bool(torch.isfinite(k).all()):
        raise NtkscopeInputError(f"{name}: contains NaN or inf")
    return k


def _pair(theta_t: Tensor, theta_0: Tensor) -> tuple[Tensor, Tensor, float]:
    a, b = _f64("theta_t", theta_t), _f64("theta_0", theta_0)
    if a.shape != b.shape:
        raise NtkscopeInputError(f"kernels: shapes differ, {tuple(a.shape)} and "
                                 f"{tuple(b.shape)}")
    nb = float(torch.linalg.vector_norm(b))
    if nb == 0.0:
        raise NtkscopeInputError("theta_0: the reference kernel is zero")
    return a.to(b.device), b, nb


def ntk_change(theta_t: Tensor, theta_0: Tensor) -> float:
    """``|Theta_t - Theta_0|_F / |Theta_0|_F`` (paper eq. 3, Section 4)."""
    a, b, nb = _pair(theta_t, theta_0)
    return float(torch.linalg.vector_norm(a - b)) / nb


def kernel_distance(theta_t: Tensor, theta_0: Tensor) -> float:
    """``1 - <Theta_t, Theta_0>_F / (|Theta_t|_F |Theta_0|_F)`` (Fort et al. 2020), in
    ``[0, 2]``; invariant to rescaling either kernel by a positive factor."""
    a, b, nb = _pair(theta_t, theta_0)
    na = float(torch.linalg.vector_norm(a))
    if na == 0.0:
        raise NtkscopeInputError("theta_t: the kernel is zero")
    cos = float((a * b).sum()) / (na * nb)
    return 1.0 - min(1.0, max(-1.0, cos))


def trace_kernel(k: Tensor) -> Tensor:
    """The trace kernel ``sum_a Theta_{ij,aa}`` of a full kernel ``(n, n, O, O)``; a trace
    kernel ``(n, n)`` as it is."""
    if k.dim() == 4 and k.shape[2] == k.shape[3]:
        return torch.diagonal(k, dim1=2, dim2=3).sum(-1)
    if k.dim() == 2:
        return k
    raise NtkscopeInputError(f"kernel: expected shape (n, n) or (n, n, O, O), got "
                             f"{tuple(k.shape)}")


def centered_alignment(kernel: Tensor, targets: Tensor) -> float:
    """Centered kernel-target alignment ``<H K H, Y Y^T>_F / (|H K H|_F |Y Y^T|_F)``,
    ``H = I - 1 1^T / n`` (Cortes et al. 2012), in ``[-1, 1]``.

    ``kernel``: ``(n, n)`` (a full ``(n, n, O, O)`` kernel enters as its trace kernel).
    ``targets``: ``(n,)`` or ``(n, k)`` (one-hot or real targets). As CONVENTIONS section 9
    writes it, ``Y Y^T`` is not centered in the norm of the denominator (the numerator is the
    same either way, ``<H K H, Y Y^T> = <H K H, H Y Y^T H>``); with centered targets the
    alignment of ``K = Y Y^T`` is 1.
    """
    k = trace_kernel(_f64("kernel", kernel))
    y = _f64("targets", targets)
    n = k.shape[0]
    if k.shape != (n, n):
        raise NtkscopeInputError(f"kernel: expected a square (n, n) kernel, got "
                                 f"{tuple(k.shape)}")
    if y.dim() == 1:
        y = y[:, None]
    if y.dim() != 2 or y.shape[0] != n:
        raise NtkscopeInputError(f"targets: expected shape ({n},) or ({n}, k), got "
                                 f"{tuple(targets.shape)}")
    if n < 2:
        raise NtkscopeInputError("kernel: alignment needs at least 2 samples")
    y = y.to(k.device)
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    yy = y @ y.T
    nk, ny = float(torch.linalg.vector_norm(kc)), float(torch.linalg.vector_norm(yy))
    if nk == 0.0:
        raise NtkscopeInputError("kernel: the centered kernel is zero (a constant kernel)")
    if ny == 0.0:
        raise NtkscopeInputError("targets: all targets are zero")
    return float((kc * yy).sum()) / (nk * ny)


@dataclass(frozen=True)
class WeightChange:
    """``total = |theta_t - theta_0|_2 / |theta_0|_2`` over all parameters, and the same per
    parameter tensor (``per_tensor``; ``inf`` for a tensor that starts at zero and moved,
    ``0`` for one that stays at zero)."""

    total: float
    per_tensor: dict[str, float]


def weight_change(params_t: Mapping[str, Tensor], params_0: Mapping[str, Tensor]
                  ) -> WeightChange:
    """:class:`WeightChange` of the parameters ``params_t`` from ``params_0`` (same names and
    shapes; e.g. ``dict(model.named_parameters())`` and a detached copy)."""
    if set(params_t) != set(params_0):
        raise NtkscopeInputError(
            f"parameters: names differ: {sorted(set(params_t) ^ set(params_0))[:5]}")
    if not params_0:
        raise NtkscopeInputError("parameters: none given")
    per: dict[str, float] = {}
    diff2 = ref2 = 0.0
    for name, p0 in params_0.items():
        a, b = _f64(f"params_t[{name!r}]", params_t[name]), _f64(f"params_0[{name!r}]", p0)
        if a.shape != b.shape:
            raise NtkscopeInputError(f"parameter {name}: shapes differ, {tuple(a.shape)} and "
                                     f"{tuple(b.shape)}")
        d2 = float(torch.sum((a.to(b.device) - b) ** 2))
        r2 = float(torch.sum(b * b))
        diff2 += d2
        ref2 += r2
        per[name] = math.sqrt(d2 / r2) if r2 > 0 else (0.0 if d2 == 0 else math.inf)
    if ref2 == 0.0:
        raise NtkscopeInputError("parameters: all initial parameters are zero")
    return WeightChange(math.sqrt(diff2 / ref2), per)


@dataclass(frozen=True)
class Spectrum:
    """``lambda_max`` and ``lambda_min`` of a symmetric kernel and ``condition =
    lambda_max / lambda_min`` (``inf`` where ``lambda_min <= n eps lambda_max``: singular to
    working precision)."""

    lambda_max: float
    lambda_min: float
    condition: float


def spectrum(kernel: Tensor) -> Spectrum:
    """The :class:`Spectrum` of a symmetric kernel ``(n, n)``, or of a full kernel
    ``(n, n, O, O)`` as the ``(n O) x (n O)`` matrix ``Theta_{(i a), (j b)}``
    (``torch.linalg.eigvalsh`` of its symmetric part, float64)."""
    k = _f64("kernel", kernel)
    if k.dim() == 4:
        n, _, o, _ = k.shape
        k = k.permute(0, 2, 1, 3).reshape(n * o, n * o)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise NtkscopeInputError(f"kernel: expected a square kernel, got {tuple(kernel.shape)}")
    ev = torch.linalg.eigvalsh((k + k.T) / 2)
    lo, hi = float(ev[0]), float(ev[-1])
    eps = torch.finfo(torch.float64).eps
    cond = hi / lo if lo > k.shape[0] * eps * abs(hi) else math.inf
    return Spectrum(hi, lo, cond)
