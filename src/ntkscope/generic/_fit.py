"""Full-batch gradient descent of any ``torch.nn.Module``, and how much its NTK moved.

:func:`fit` trains a copy of a model on ``(x, y)`` of ``S`` samples, ``O`` outputs per sample
(the model's output flattened to ``(S, O)``, CONVENTIONS section 9), by
``theta <- theta - lr grad L(theta)`` on all of ``x`` at every step, with

* ``"mse"``: ``L = 1/(2S) sum_i |f(x_i) - y_i|^2`` (targets ``(S,)`` for ``O = 1`` or
  ``(S, O)``), the loss of the MLP trainer (CONVENTIONS section 7, :mod:`ntkscope.gd`);
* ``"cross-entropy"``: ``L = (1/S) sum_i -log softmax(f(x_i))_{y_i}`` for integer labels
  ``y_i`` in ``[0, O)``, ``O >= 2``; for ``O = 1`` the binary (logistic) form
  ``L = (1/S) sum_i log(1 + exp(-(2 y_i - 1) f(x_i)))``, labels in ``{0, 1}``.

Learning rate (:class:`FitConfig`): ``lr``, or ``lr_scale * lr_max``, or ``min(lr, lr_scale *
lr_max)`` when both are given (the rules of :class:`ntkscope.training.LearningRate`), with

    lr_max = 2 S / (c lambda_max(Theta_0(X)))

``Theta_0(X)`` the full ``(S O) x (S O)`` kernel at initialization on the training inputs and
``c`` the largest curvature of the loss per sample in function space: ``c = 1`` for MSE (its
function-space Hessian is ``I / S``, so this is ``ntkscope.gd.max_learning_rate``'s
``2 S / lambda_max``: the largest stable rate of the linearized dynamics
``f <- f - (lr / S) Theta_0 (f - y)``); ``c = 1/2`` for softmax cross-entropy (the Hessian
``diag(p) - p p^T`` of ``-log softmax`` has eigenvalues in ``[0, 1/2]`` for every ``p``);
``c = 1/4`` for the logistic loss (``sigma (1 - sigma) <= 1/4``). The parameter-space
Gauss-Newton matrix of the linearized model, ``J^T H J``, then has ``lambda_max <= c
lambda_max(Theta_0) / S``, so ``lr < lr_max`` makes gradient descent of the linearized model
decrease the loss at every step, wherever the softmax is (a bound: at a near-uniform softmax
of ``O`` classes the curvature is ``1/O``, and larger rates are still stable).

Stopping, at the first step ``t`` (loss ``L_t`` at the parameters after ``t`` updates) where

* ``L_t`` or the gradient is not finite, or ``L_t > divergence_factor * max(L_0, L_zero)``
  (``L_zero``: the loss of the zero function, ``|y|^2/(2S)`` for MSE, ``log O`` or ``log 2``
  for cross-entropy; the MLP trainer's rule): ``"diverged"``;
* ``L_t <= loss_fraction * L_0``: ``"loss_fraction"``;
* ``L_t <= target_loss``: ``"target_loss"`` (an absolute level, e.g. a fraction of
  ``L_zero``: comparable across models whose initial outputs, and so ``L_0``, differ);
* ``t = max_steps``: ``"max_steps"``.

At the stopping point the kernel diagnostics of :mod:`ntkscope.diagnostics` on the probe
inputs (default the training inputs): ``ntk_change = |Theta_t - Theta_0|_F / |Theta_0|_F``,
``kernel_distance``, and ``weight_change = |theta_t - theta_0| / |theta_0|`` (all and per
tensor). A diverged run reports ``None`` for them and for a non-finite final loss: no NaN or
inf is ever reported.

Modes: the gradient steps run in the model's own mode (``model.training`` of each
submodule, as the user left it: a BatchNorm in training mode normalizes with the full
batch's statistics, which is well defined for full-batch descent, and dropout stays random);
every kernel (``Theta_0``, ``lambda_max``, ``Theta_t``) is taken in eval mode (a BatchNorm in
training mode couples samples, which have then no per-sample NTK, CONVENTIONS section 9), the
modes restored afterwards. For a model with BatchNorm trained in training mode the learning
rate rule reads the eval-mode kernel; give ``lr`` where that matters.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ntkscope.diagnostics import kernel_distance, ntk_change, spectrum, trace_kernel, weight_change
from ntkscope.generic._api import module_ntk
from ntkscope.generic._inputs import Inputs
from ntkscope.generic._problem import Forward, build_problem, check_outputs
from ntkscope.generic._randomness import _matching
from ntkscope.networks import check_device, check_dtype
from ntkscope.progress import Progress
from ntkscope.validation import NtkscopeInputError, positive, positive_int

__all__ = ["FIT_LOSSES", "FIT_STOP_REASONS", "FitConfig", "FitResult", "curvature", "fit"]

#: The losses :func:`fit` minimizes.
FIT_LOSSES: tuple[str, ...] = ("mse", "cross-entropy")
#: Why :func:`fit` stopped.
FIT_STOP_REASONS: tuple[str, ...] = ("loss_fraction", "target_loss", "max_steps", "diverged")
#: ``lr_scale`` when neither ``lr`` nor ``lr_scale`` is given.
DEFAULT_LR_SCALE = 0.5


def _scalar(name: str, value: Any) -> float:
    arr = positive(name, value)
    if arr.ndim != 0:
        raise NtkscopeInputError(f"{name}: expected a single number, got shape {arr.shape}")
    return float(arr)


@dataclass(frozen=True)
class FitConfig:
    """The rules of a :func:`fit` run (module docstring), validated when built.

    Attributes:
        loss: ``"mse"`` or ``"cross-entropy"``.
        lr: a fixed learning rate ``> 0``, or ``None``.
        lr_scale: ``lr = lr_scale * lr_max`` (``lr_max = 2 S / (c lambda_max(Theta_0))``); with
            ``lr`` too, ``min(lr, lr_scale * lr_max)``. Default: ``0.5`` when ``lr`` is None.
        max_steps: most updates, ``>= 0`` (default 1000).
        loss_fraction: stop once ``L_t <= loss_fraction * L_0``, in ``(0, 1)``; ``None``: only
            ``max_steps``, ``target_loss`` and divergence stop (default ``0.1``).
        target_loss: stop once ``L_t <= target_loss`` (``> 0``; default ``None``: off).
        divergence_factor: diverged when ``L_t > divergence_factor * max(L_0, L_zero)``
            (default ``1e6``, the MLP trainer's).
        curve_points: about how many losses the stored curve keeps (every
            ``ceil(max_steps / curve_points)``-th step, plus the last).

    Raises:
        NtkscopeInputError: a value out of range (the message names it).
    """

    loss: str = "mse"
    lr: float | None = None
    lr_scale: float | None = None
    max_steps: int = 1000
    loss_fraction: float | None = 0.1
    target_loss: float | None = None
    divergence_factor: float = 1e6
    curve_points: int = 1000

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.loss not in FIT_LOSSES:
            raise NtkscopeInputError(f"loss: expected one of {', '.join(FIT_LOSSES)}, got "
                                     f"{self.loss!r}")
        if self.lr is not None:
            set_(self, "lr", _scalar("lr", self.lr))
        if self.lr_scale is not None:
            set_(self, "lr_scale", _scalar("lr_scale", self.lr_scale))
        elif self.lr is None:
            set_(self, "lr_scale", DEFAULT_LR_SCALE)
        set_(self, "max_steps", positive_int("max_steps", self.max_steps, minimum=0))
        if self.loss_fraction is not None:
            frac = _scalar("loss_fraction", self.loss_fraction)
            if not frac < 1:
                raise NtkscopeInputError(f"loss_fraction: expected a number in (0, 1), got "
                                         f"{frac:g}")
            set_(self, "loss_fraction", frac)
        if self.target_loss is not None:
            set_(self, "target_loss", _scalar("target_loss", self.target_loss))
        set_(self, "divergence_factor", _scalar("divergence_factor", self.divergence_factor))
        set_(self, "curve_points", positive_int("curve_points", self.curve_points))


def curvature(loss: str, outputs: int) -> float:
    """``c``, the bound on the loss's per-sample curvature in function space (module
    docstring): ``1`` (MSE), ``1/2`` (softmax cross-entropy, ``O >= 2``), ``1/4`` (logistic,
    ``O = 1``)."""
    if loss == "mse":
        return 1.0
    return 0.5 if outputs >= 2 else 0.25


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        loss: ``"mse"`` or ``"cross-entropy"``.
        samples, outputs: ``S`` and ``O``; probe_samples: the rows of the probe inputs.
        lr: the rate used; lr_max, lambda_max: ``2 S / (c lambda_max(Theta_0))`` and
            ``lambda_max`` of the full training kernel (``None`` for a fixed ``lr`` alone).
        steps: updates applied; stop_reason: one of :data:`FIT_STOP_REASONS`.
        loss_fraction, target_loss: the configured levels (``None``: off); :attr:`reached`:
            one of them stopped the run.
        initial_loss, final_loss (``None`` if not finite), min_loss (at min_loss_step): the
            smallest finite loss.
        loss_steps, losses: the stored curve (finite losses only).
        ntk_change, kernel_distance: of ``Theta_t`` against ``Theta_0`` on the probe inputs at
            the final parameters (``output`` kernels); weight_change, weight_change_per_tensor:
            ``|theta_t - theta_0| / |theta_0|``. ``None`` for a diverged run.
        output: the kernel compared, ``"trace"`` or ``"full"``.
        seconds: wall time; kernel_seconds: of which in the NTKs.
        model: the trained copy (in the mode the steps ran in; not in :meth:`to_dict`).
    """

    loss: str
    samples: int
    outputs: int
    probe_samples: int
    lr: float
    lr_max: float | None
    lambda_max: float | None
    steps: int
    stop_reason: str
    loss_fraction: float | None
    target_loss: float | None
    initial_loss: float
    final_loss: float | None
    min_loss: float
    min_loss_step: int
    loss_steps: tuple[int, ...] = field(repr=False)
    losses: tuple[float, ...] = field(repr=False)
    ntk_change: float | None = None
    kernel_distance: float | None = None
    weight_change: float | None = None
    weight_change_per_tensor: dict[str, float | None] = field(default_factory=dict, repr=False)
    output: str = "trace"
    seconds: float = 0.0
    kernel_seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def reached(self) -> bool:
        """Whether the loss fell to ``loss_fraction`` of its initial value or to
        ``target_loss`` (the run stopped for that)."""
        return self.stop_reason in ("loss_fraction", "target_loss")

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``model`` (the curve as lists), plus ``reached``; non-finite
        numbers as ``None``."""
        return {
            "loss": self.loss, "samples": self.samples, "outputs": self.outputs,
            "probe_samples": self.probe_samples, "lr": self.lr, "lr_max": _num(self.lr_max),
            "lambda_max": _num(self.lambda_max), "steps": self.steps,
            "stop_reason": self.stop_reason, "loss_fraction": self.loss_fraction,
            "target_loss": self.target_loss,
            "reached": self.reached, "initial_loss": _num(self.initial_loss),
            "final_loss": _num(self.final_loss), "min_loss": _num(self.min_loss),
            "min_loss_step": self.min_loss_step, "loss_steps": list(self.loss_steps),
            "losses": list(self.losses), "ntk_change": _num(self.ntk_change),
            "kernel_distance": _num(self.kernel_distance),
            "weight_change": _num(self.weight_change),
            "weight_change_per_tensor": {k: _num(v) for k, v in
                                         self.weight_change_per_tensor.items()},
            "output": self.output, "seconds": self.seconds,
            "kernel_seconds": self.kernel_seconds,
        }

    def title(self) -> str:
        """``Full-batch gradient descent (mse, S=128, O=1): loss_fraction after 57 steps``."""
        return (f"Full-batch gradient descent ({self.loss}, S={self.samples}, O={self.outputs})"
                f": {self.stop_reason} after {self.steps} steps")

    def rows(self) -> list[tuple[Any, ...]]:
        """Rate, steps, losses and the kernel and weight changes."""
        rows: list[tuple[Any, ...]] = [("learning rate", self.lr)]
        if self.lr_max is not None:
            rows.append(("lr_max = 2S/(c lambda_max)", self.lr_max))
        rows += [("steps", self.steps), ("stop reason", self.stop_reason)]
        if self.loss_fraction is not None:
            rows.append(("loss fraction", f"{self.loss_fraction:g} of the initial loss"))
        if self.target_loss is not None:
            rows.append(("target loss", self.target_loss))
        rows += [
            ("initial loss", self.initial_loss), ("final loss", self.final_loss),
            ("min loss", f"{self.min_loss:.10g} (step {self.min_loss_step})"),
            (f"NTK change ({self.output}, {self.probe_samples} probes)", self.ntk_change),
            ("kernel distance", self.kernel_distance), ("weight change", self.weight_change),
            ("seconds", f"{self.seconds:.2f}"),
        ]
        return rows


# ---------------------------------------------------------------------------------------------
# Pieces


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block, each one's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _targets(loss: str, y: Any, samples: int, outputs: int, like: torch.Tensor
             ) -> torch.Tensor:
    """``y`` checked for ``loss``: MSE ``(S, O)`` in the outputs' dtype and device (``(S,)``
    for ``O = 1``); cross-entropy ``(S,)`` int64 labels in ``[0, O)`` (``{0, 1}`` for ``O =
    1``)."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):
        raise NtkscopeInputError(f"y: expected an array of targets, got {type(y).__name__}"
                                 ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise NtkscopeInputError(f"y: expected numbers, got dtype {arr.dtype}")
    if loss == "mse":
        if arr.shape == (samples,) and outputs == 1:
            arr = arr[:, None]
        if arr.shape != (samples, outputs):
            want = f"({samples},) or ({samples}, 1)" if outputs == 1 else f"({samples}, {outputs})"
            raise NtkscopeInputError(f"y: expected targets of shape {want} for {samples} "
                                     f"samples and {outputs} outputs, got shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise NtkscopeInputError("y: contains NaN or inf")
        return torch.as_tensor(arr).to(device=like.device, dtype=like.dtype)
    if arr.shape != (samples,):
        raise NtkscopeInputError(f"y: cross-entropy expects {samples} integer class labels, "
                                 f"shape ({samples},), got shape {arr.shape}")
    flt = arr.astype(np.float64)
    if not np.all(np.isfinite(flt)) or not np.all(flt == np.round(flt)):
        raise NtkscopeInputError("y: cross-entropy expects integer class labels")
    classes = max(outputs, 2)
    if flt.min() < 0 or flt.max() >= classes:
        span = "{0, 1} (one logit: logistic loss)" if outputs == 1 else f"[0, {outputs})"
        raise NtkscopeInputError(f"y: labels must lie in {span}, got min {flt.min():g}, max "
                                 f"{flt.max():g}")
    return torch.as_tensor(flt.astype(np.int64), device=like.device)


def _loss(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of outputs ``(S, O)`` (module docstring)."""
    if loss == "mse":
        return 0.5 * ((out - y) ** 2).sum() / out.shape[0]
    if out.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(out[:, 0], y.to(out.dtype))
    return F.cross_entropy(out, y)


def _zero_loss(loss: str, y: torch.Tensor, outputs: int) -> float:
    """The loss of the zero function (the divergence threshold's floor)."""
    if loss == "mse":
        return float((y.double() ** 2).sum()) / (2 * y.shape[0])
    return math.log(max(outputs, 2))


# ---------------------------------------------------------------------------------------------
# The loop


def fit(model: nn.Module, x: Any, y: Any, config: FitConfig | None = None, *,
        probe: Any = None, output: str = "trace", params: Sequence[str] | None = None,
        forward: Forward | None = None, dtype: torch.dtype | None = torch.float64,
        device: str | torch.device | None = None, max_memory: int | str | None = None,
        quiet: bool = True) -> FitResult:
    """Train a copy of ``model`` by full-batch gradient descent on ``(x, y)``; the NTK change.

    ``theta <- theta - lr grad L(theta)`` on all ``S`` samples at every step, for the loss,
    learning rate and stopping rule of ``config`` (module docstring), then
    ``ntk_change``, ``kernel_distance`` and ``weight_change`` at the final parameters against
    the initial ones (:mod:`ntkscope.diagnostics`).

    Args:
        model: any ``nn.Module``; never modified: a ``copy.deepcopy`` is cast to ``dtype``
            (default float64; ``None``: as built), moved to ``device`` (default: where it is)
            and trained (returned as ``result.model``). The steps run in the model's own mode,
            the kernels in eval mode.
        x: training inputs, a tensor or a tuple/list/dict of tensors along the first axis
            (:func:`ntkscope.module_ntk`'s inputs; floating leaves cast to the model's dtype
            and device).
        y: targets: MSE ``(S,)`` (one output) or ``(S, O)``; cross-entropy ``(S,)`` integer
            labels.
        config: the :class:`FitConfig` (default: MSE, ``lr = 0.5 lr_max``, at most 1000
            steps, stop at 10% of the initial loss).
        probe: the inputs the kernels are compared on (default ``x``).
        output: the kernel compared, ``"trace"`` (``(n, n)``) or ``"full"`` (``(n, n, O,
            O)``).
        params: names of the parameters trained and differentiated (default all that require
            grad; the others stay fixed).
        forward: ``forward(model, x) -> Tensor`` replacing ``model(x)``.
        max_memory: the NTKs' peak budget (:func:`ntkscope.module_ntk`).
        quiet: no progress bar (``False``: one on stderr, one tick per step).

    Returns:
        a :class:`FitResult`.

    Raises:
        NtkscopeInputError: a bad argument, targets that do not fit the loss or the model's
            outputs, a model that fails, returns non-finite outputs at initialization or
            couples samples in eval mode, ``lr_scale`` with ``lambda_max(Theta_0) <= 0``.
    """
    start = time.perf_counter()
    config = FitConfig() if config is None else config
    if not isinstance(config, FitConfig):
        raise NtkscopeInputError(f"config: expected a FitConfig, got {type(config).__name__}")
    if output not in ("trace", "full"):
        raise NtkscopeInputError(f"output: expected 'trace' or 'full', got {output!r}")
    if not isinstance(quiet, bool):
        raise NtkscopeInputError(f"quiet: expected True or False, got {quiet!r}")
    if not isinstance(model, nn.Module):
        raise NtkscopeInputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    try:
        model = copy.deepcopy(model)
    except Exception as exc:  # any failure of a user's module
        raise NtkscopeInputError(f"model: cannot be copied (copy.deepcopy raised "
                                 f"{type(exc).__name__}: {exc})") from exc
    if dtype is not None:
        model = model.to(dtype=check_dtype(dtype))
    if device is not None:
        model = model.to(device=check_device(device))
    problem = build_problem(model, params, forward)
    names = problem.names
    xin = Inputs.of(_matching(Inputs.of(x, "x").value, model), "x")
    pin = None if probe is None else Inputs.of(_matching(Inputs.of(probe, "probe").value,
                                                         model), "probe")
    s = xin.n
    with torch.no_grad(), _eval_mode(model):  # eval: leaves BatchNorm statistics alone
        try:
            out0 = check_outputs(problem.forward(model, xin.value), xin)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, NtkscopeInputError):
                raise
            raise NtkscopeInputError(f"the model failed on x: {type(exc).__name__}: {exc}"
                                     ) from exc
    o = int(out0.shape[1])
    yt = _targets(config.loss, y, s, o, out0)

    # Kernels at initialization (eval mode): lambda_max of the full training kernel, Theta_0
    # on the probe inputs.
    t_kernel = time.perf_counter()
    lam = lr_max = None
    theta0: torch.Tensor | None = None
    with _eval_mode(model):
        if config.lr_scale is not None:
            full = module_ntk(model, xin.value, output="full", params=names, forward=forward,
                              max_memory=max_memory)
            lam = spectrum(full).lambda_max
            if not lam > 0:
                raise NtkscopeInputError("lr_scale: lambda_max(Theta_0) <= 0, lr_max is "
                                         "undefined; give lr")
            lr_max = 2.0 * s / (curvature(config.loss, o) * lam)
            if pin is None:
                theta0 = trace_kernel(full) if output == "trace" else full
        if theta0 is None:
            theta0 = module_ntk(model, (xin if pin is None else pin).value, output=output,
                                params=names, forward=forward, max_memory=max_memory)
    kernel_seconds = time.perf_counter() - t_kernel
    if config.lr_scale is None:
        assert config.lr is not None
        lr = config.lr
    else:
        assert lr_max is not None
        lr = config.lr_scale * lr_max if config.lr is None else min(config.lr,
                                                                   config.lr_scale * lr_max)

    tensors = list(problem.params.values())
    initial = {n: p.detach().clone() for n, p in problem.params.items()}
    stride = max(1, math.ceil(config.max_steps / config.curve_points))
    curve_t: list[int] = []
    curve_l: list[float] = []
    l0 = math.nan
    threshold = math.inf
    min_loss, min_step = math.inf, 0
    reason, steps, final = "max_steps", 0, math.nan
    with Progress(config.max_steps, "fit", unit="step", quiet=quiet) as bar:
        for t in range(config.max_steps + 1):
            out = problem.forward(model, xin.value).reshape(s, -1)
            loss = _loss(config.loss, out, yt)
            value = float(loss.detach())
            if t == 0:
                l0 = value
                with np.errstate(over="ignore"):
                    threshold = config.divergence_factor * max(value, _zero_loss(config.loss,
                                                                                 yt, o))
            finite = math.isfinite(value)
            if finite and (t % stride == 0 or t == config.max_steps):
                curve_t.append(t)
                curve_l.append(value)
            if finite and value < min_loss:
                min_loss, min_step = value, t
            steps, final = t, value
            if not finite or value > threshold:
                reason = "diverged"
                break
            if config.loss_fraction is not None and value <= config.loss_fraction * l0:
                reason = "loss_fraction"
                break
            if config.target_loss is not None and value <= config.target_loss:
                reason = "target_loss"
                break
            if t == config.max_steps:
                reason = "max_steps"
                break
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            total = sum(float(g.sum()) for g in grads if g is not None)
            if not math.isfinite(total):
                reason = "diverged"
                break
            with torch.no_grad():
                for p, g in zip(tensors, grads):
                    if g is not None:
                        p.sub_(g, alpha=lr)
            bar.update()
        if curve_t and curve_t[-1] != steps and math.isfinite(final):
            curve_t.append(steps)
            curve_l.append(final)

    change = distance = wchange = None
    per: dict[str, float | None] = {}
    if reason != "diverged":
        t_kernel = time.perf_counter()
        with _eval_mode(model):
            theta_t = module_ntk(model, (xin if pin is None else pin).value, output=output,
                                 params=names, forward=forward, max_memory=max_memory)
        kernel_seconds += time.perf_counter() - t_kernel
        change, distance = ntk_change(theta_t, theta0), kernel_distance(theta_t, theta0)
        w = weight_change({n: p.detach() for n, p in problem.params.items()}, initial)
        wchange, per = w.total, {k: _num(v) for k, v in w.per_tensor.items()}
    return FitResult(
        loss=config.loss, samples=s, outputs=o, probe_samples=(xin if pin is None else pin).n,
        lr=float(lr), lr_max=lr_max, lambda_max=lam, steps=steps, stop_reason=reason,
        loss_fraction=config.loss_fraction, target_loss=config.target_loss, initial_loss=l0,
        final_loss=_num(final),
        min_loss=min_loss, min_loss_step=min_step, loss_steps=tuple(curve_t),
        losses=tuple(curve_l), ntk_change=change, kernel_distance=distance,
        weight_change=wchange, weight_change_per_tensor=per, output=output,
        seconds=time.perf_counter() - start, kernel_seconds=kernel_seconds, model=model,
    )
