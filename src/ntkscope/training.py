"""The training loop: batches of networks trained by full-batch gradient descent, and the NTK
change (paper Section 4).

Every network of a :class:`~ntkscope.networks.Params` batch is trained on the same training
set ``(X, y)`` of ``S`` samples with the loss and update of CONVENTIONS section 7::

    L(theta) = 1/(2S) sum_s (f(x_s) - y_s)^2,        theta <- theta - lr * grad L(theta)

The gradients and the step (structured backpropagation, the Gram form of the first layer,
the range contract) are :mod:`ntkscope.gd`; this module is the loop and its bookkeeping. Its
rules come as small frozen configs, each validated once when it is built:
:class:`LearningRate`, :class:`StoppingRule`, :class:`Recording` (what is measured) and
:class:`Execution` (dtype, device, threads, memory). The NTKs at the snapshots use
:func:`~ntkscope.ntk.empirical_ntk` with its full range handling.

Per network (the networks of a batch are independent; each has its own learning rate and
stops on its own; stopped networks are frozen and dropped from the batch):

* **early stopping** (paper: ``patience = 100``, ``min_delta = 1e-7``): with ``best`` the
  loss at the last improvement (initially ``L_0``), step ``t`` is an improvement when
  ``L_t < best - min_delta`` (then ``best = L_t``). Training stops at the first step ``t``
  that is preceded by ``patience`` consecutive steps without improvement, i.e. when the loss
  has not gone ``min_delta`` below ``best`` in the last ``patience`` steps;
* **max_steps** (paper ``1e5``): stop after ``max_steps`` updates;
* **loss_fraction** (off by default): stop at the first step ``t`` with
  ``L_t <= loss_fraction * L_0``, the loss fallen to that fraction of its initial value (what
  ``ntkscope check`` measures the NTK change at);
* **divergence**: ``L_t`` not finite, ``L_t > divergence_factor * max(L_0, |y|^2/(2S))``
  (default factor ``1e6``; ``|y|^2/(2S)`` is the loss of the zero function, ``1/2`` for
  ``+-1`` targets) or a non-finite gradient.

``steps`` counts the updates applied; the final parameters are those after ``steps`` updates,
the ones the stopping decision was taken on.

Learning rate: a fixed ``lr`` (paper ``1e-5``), or ``lr_scale * lr_max`` per network with
``lr_max = 2 S / lambda_max(Theta_0(X))``, the largest stable rate of the linearized dynamics
``f <- f - (lr/S) Theta_0 (f - y)``, or both: ``min(lr, lr_scale * lr_max)``.

NTK change: ``|Theta_t(X) - Theta_0(X)|_F / |Theta_0(X)|_F`` on the training inputs at the
snapshot steps a network reaches (``t <= steps``) and at its final parameters.

Loss curve memory: the loss of every step enters the stopping rule and ``min_loss``; the
stored curve keeps the steps ``t`` with ``t % stride == 0``, ``stride =
ceil(max_steps / curve_points)`` (every step up to ``curve_points`` steps), plus the final
step: at most ``curve_points + 2`` values per network. A step stores about
``3 S (M_1 + ... + M_{L+1})`` values per network; batches beyond ``max_memory`` are trained
in chunks, one after the other (same results).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from ntkscope.defaults import LEARNING_RATE, MAX_STEPS, MIN_DELTA, PATIENCE, SNAPSHOTS
from ntkscope.diagnostics import ntk_change
from ntkscope.gd import StepBatch, as_mlp, check_targets, lambda_max, per_network, residuals
from ntkscope.networks import MLP, NtkscopeRangeError, Params, check_device, check_dtype
from ntkscope.ntk import empirical_ntk
from ntkscope.progress import Progress
from ntkscope.spec import MAX_DEPTH, NetworkSpec
from ntkscope.threads import torch_threads
from ntkscope.validation import NtkscopeInputError, nonnegative, positive, positive_int

__all__ = [
    "STOP_REASONS",
    "Execution",
    "LearningRate",
    "LossMonitor",
    "Recording",
    "StoppingRule",
    "TrainResult",
    "TrainRun",
    "init_params",
    "train",
]

#: Why a network stopped training.
STOP_REASONS: tuple[str, ...] = ("early_stop", "max_steps", "diverged", "loss_fraction")


# ---------------------------------------------------------------------------------------------
# The rules of a run: frozen, validated at construction


def _number(name: str, checked: np.ndarray) -> float:
    """A checked array that must hold one number."""
    if checked.ndim != 0:
        raise NtkscopeInputError(f"{name}: expected a single number, got shape {checked.shape}")
    return float(checked)


@dataclass(frozen=True)
class LearningRate:
    """The learning rate of network ``i`` of a batch.

    * ``lr`` alone (one rate, or one per network): ``lr_i = lr``;
    * ``lr_scale`` alone: ``lr_i = lr_scale * lr_max_i`` with
      ``lr_max_i = 2 S / lambda_max(Theta_0,i(X))``, the largest stable rate of the linearized
      dynamics ``f <- f - (lr/S) Theta_0 (f - y)``;
    * both: ``lr_i = min(lr, lr_scale * lr_max_i)``, a fixed rate capped per network at a
      fraction of its stability limit;
    * neither: ``lr = 1e-5``, the paper's (``ntkscope.defaults.LEARNING_RATE``).

    Attributes:
        lr: ``> 0``; a float, a tuple with one rate per network, or ``None`` (``lr_scale``
            alone).
        lr_scale: ``> 0`` or ``None``.

    Raises:
        NtkscopeInputError: a rate that is not finite and positive.
    """

    lr: float | tuple[float, ...] | None = None
    lr_scale: float | None = None

    def __post_init__(self) -> None:
        if self.lr_scale is not None:
            object.__setattr__(self, "lr_scale",
                               _number("lr_scale", positive("lr_scale", self.lr_scale)))
        lr: Any = self.lr
        if lr is None and self.lr_scale is None:
            lr = LEARNING_RATE
        if lr is not None:
            arr = positive("lr", lr)
            lr = float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr.reshape(-1))
        object.__setattr__(self, "lr", lr)

    def fixed_rates(self, batch: int) -> np.ndarray | None:
        """The fixed rates ``lr`` of ``batch`` networks, ``(batch,)`` (``None`` without
        ``lr``).

        Raises:
            NtkscopeInputError: ``lr`` has neither one value nor ``batch``.
        """
        return None if self.lr is None else per_network("lr", self.lr, batch)

    def rates(self, fixed: np.ndarray | None, lr_max: np.ndarray) -> np.ndarray:
        """The learning rates given the networks' fixed rates (:meth:`fixed_rates`) and their
        ``lr_max = 2 S / lambda_max(Theta_0(X))`` (``inf`` where ``lambda_max <= 0``).

        Raises:
            NtkscopeInputError: ``lr_scale`` alone and some ``lr_max`` is undefined.
        """
        if self.lr_scale is None:
            assert fixed is not None
            return fixed
        scaled = self.lr_scale * lr_max
        if fixed is not None:
            return np.minimum(fixed, scaled)  # a cap on the fixed rates
        if not np.all(np.isfinite(scaled)):
            raise NtkscopeInputError("lr_scale: lambda_max(Theta_0) <= 0, lr_max is undefined")
        return scaled


@dataclass(frozen=True)
class StoppingRule:
    """When a network stops (module docstring): after ``max_steps`` updates, after
    ``patience`` steps without a decrease of the best loss by more than ``min_delta``, on
    divergence (a loss above ``divergence_factor * max(L_0, |y|^2/(2S))``, non-finite, or a
    non-finite update), or, with ``loss_fraction``, at the first step whose loss is at most
    ``loss_fraction * L_0`` (stop reason ``"loss_fraction"``).

    Divergence is checked first, then the loss fraction, then early stopping, then
    ``max_steps``: a step that both reaches the fraction and is the last one counts as
    ``"loss_fraction"``.

    Attributes:
        max_steps: ``>= 0`` (paper ``1e5``).
        patience: ``>= 1`` (paper ``100``), ``None`` turns early stopping off.
        min_delta: ``>= 0`` (paper ``1e-7``).
        divergence_factor: ``> 0`` (default ``1e6``).
        loss_fraction: ``0 < f < 1``, or ``None`` (default: off).

    Raises:
        NtkscopeInputError: a value out of range (the message names it).
    """

    max_steps: int = MAX_STEPS
    patience: int | None = PATIENCE
    min_delta: float = MIN_DELTA
    divergence_factor: float = 1e6
    loss_fraction: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.loss_fraction is not None:
            f = _number("loss_fraction", positive("loss_fraction", self.loss_fraction))
            if f >= 1.0:
                raise NtkscopeInputError(f"loss_fraction: must be < 1 (a fraction of the "
                                         f"initial loss), got {f:g}")
            set_(self, "loss_fraction", f)
        set_(self, "max_steps", positive_int("max_steps", self.max_steps, minimum=0))
        if self.patience is not None:
            set_(self, "patience", positive_int("patience", self.patience))
        set_(self, "min_delta", _number("min_delta", nonnegative("min_delta", self.min_delta)))
        set_(self, "divergence_factor",
             _number("divergence_factor", positive("divergence_factor", self.divergence_factor)))


@dataclass(frozen=True)
class Recording:
    """What a run measures besides the losses.

    Attributes:
        snapshots: distinct steps ``>= 1`` at which the NTK change is recorded (those a
            network reaches); stored sorted; default ``10, 100, 1000, 10000``
            (``ntkscope.defaults.SNAPSHOTS``, paper Appendix D); ``()`` for none.
        curve_points: about how many points of the loss curve are stored (``stride =
            ceil(max_steps / curve_points)``).

    Raises:
        NtkscopeInputError: a snapshot list that is not distinct positive step numbers, or
            ``curve_points < 1``.
    """

    snapshots: tuple[int, ...] = SNAPSHOTS
    curve_points: int = 10_000

    def __post_init__(self) -> None:
        snaps: Any = self.snapshots
        if isinstance(snaps, (str, bytes)) or not isinstance(snaps, Sequence):
            raise NtkscopeInputError(
                f"snapshots: expected a sequence of step numbers, got {snaps!r}"
            )
        steps = [positive_int(f"snapshots[{i}]", s) for i, s in enumerate(snaps)]
        if len(set(steps)) != len(steps):
            raise NtkscopeInputError(f"snapshots: step numbers must be distinct, got {steps}")
        object.__setattr__(self, "snapshots", tuple(sorted(steps)))
        object.__setattr__(self, "curve_points", positive_int("curve_points", self.curve_points))


@dataclass(frozen=True)
class Execution:
    """Where and how a run computes; none of it changes the results beyond rounding.

    Attributes:
        dtype: floating ``torch.dtype`` of networks drawn by :func:`train` (given ``params``
            keep theirs).
        device: where drawn networks live (``"cpu"``, ``"cuda"``, ...; stored as a
            ``torch.device``; given ``params`` keep theirs).
        threads: torch CPU threads during the run (``None``: unchanged). On a loaded machine
            one thread avoids OpenMP synchronization stalls of the small per-layer products.
        progress: show a progress bar on stderr.
        max_memory: bytes the stored passes of one chunk of networks may take (about
            ``3 S (M_1 + ... + M_{L+1})`` values per network); larger batches are trained in
            chunks one after the other, with identical results (the networks are
            independent). Default 256 MiB: in CPU measurements at ``L = 50``, ``M = 512``,
            chunks of 3 networks ran a step in 300-370 ms per network, chunks of 13 in
            550-680 ms (memory traffic), one network alone in 150-250 ms.
        gram_first_layer: run the first layer in its Gram form (:class:`ntkscope.gd.StepBatch`:
            the same updates, ``M0 / S`` times fewer first-layer operations); ``None``: when
            ``S < M0``.

    Raises:
        NtkscopeInputError: a bad value, or a device that does not exist on this machine.
    """

    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    threads: int | None = None
    progress: bool = False
    max_memory: int = 1 << 28
    gram_first_layer: bool | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "dtype", check_dtype(self.dtype))
        set_(self, "device", check_device(self.device))
        if self.threads is not None:
            set_(self, "threads", positive_int("threads", self.threads))
        if not isinstance(self.progress, bool):
            raise NtkscopeInputError(f"progress: expected True or False, got {self.progress!r}")
        set_(self, "max_memory", positive_int("max_memory", self.max_memory))
        if self.gram_first_layer is not None and not isinstance(self.gram_first_layer, bool):
            raise NtkscopeInputError(
                f"gram_first_layer: expected True, False or None, got {self.gram_first_layer!r}"
            )


_Config = TypeVar("_Config", LearningRate, StoppingRule, Recording, Execution)


def _config(name: str, value: Any, kind: type[_Config]) -> _Config:
    """``value`` if it is a ``kind`` (``kind()`` for ``None``)."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise NtkscopeInputError(
            f"{name}: expected a {kind.__name__}, got {type(value).__name__}"
        )
    return value


# ---------------------------------------------------------------------------------------------
# Initialization


def init_params(
    net: MLP | NetworkSpec,
    variances: Sequence[tuple[float, float]] | None = None,
    *,
    batch: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
) -> Params:
    """Networks ``0..B-1`` of the family ``seed``, network ``i`` with its own ``(sw2, sb2)``.

    Network ``i`` is exactly ``MLP(..., sigma_w2=sw2_i, sigma_b2=sb2_i).init(1, seed,
    start=i)``: its normals come from ``SeedSequence([seed, i])`` whatever the other networks'
    variances (CONVENTIONS section 1). Without ``variances`` this is ``net.init(batch, seed)``
    (``batch`` default 1).

    Args:
        net: the architecture (its ``sigma_w2``, ``sigma_b2`` are used without ``variances``);
            a :class:`~ntkscope.NetworkSpec` needs its ``input_dim`` (else 784).
        variances: ``[(sw2_0, sb2_0), (sw2_1, sb2_1), ...]``, one pair per network.
        batch: number of networks; must equal ``len(variances)`` when both are given.
    """
    net = as_mlp(net)
    if variances is None:
        return net.init(1 if batch is None else batch, seed, dtype, device)
    try:
        pairs = [(float(w), float(b)) for w, b in variances]
    except (TypeError, ValueError):
        raise NtkscopeInputError(
            "variances: expected a list of (sigma_w2, sigma_b2) pairs"
        ) from None
    if not pairs:
        raise NtkscopeInputError("variances: expected at least one (sigma_w2, sigma_b2) pair")
    if batch is not None and positive_int("batch", batch) != len(pairs):
        raise NtkscopeInputError(
            f"batch: {batch} networks but {len(pairs)} (sigma_w2, sigma_b2) pairs"
        )
    dtype, dev = check_dtype(dtype), check_device(device)
    nets: dict[tuple[float, float], MLP] = {}
    parts: list[Params] = []
    for i, pair in enumerate(pairs):
        if pair not in nets:
            nets[pair] = MLP(net.input_dim, net.widths, net.depth, net.activation, *pair)
        parts.append(nets[pair].init(1, seed, dtype, dev, start=i))
    if len(parts) == 1:
        return parts[0]
    return Params(
        [torch.cat([p.weights[l] for p in parts]) for l in range(net.depth + 1)],
        [torch.cat([p.biases[l] for p in parts]) for l in range(net.depth + 1)],
    )


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class TrainResult:
    """Outcome of training one network.

    Attributes:
        index: position of the network in the batch.
        sigma_w2, sigma_b2: its initialization variances (``None`` for given params).
        lr: learning rate used; ``lr_max``: ``2 S / lambda_max`` of its ``Theta_0``;
        lambda_max: largest eigenvalue of ``Theta_0(X)``.
        steps: number of updates applied; ``stop_reason``: one of :data:`STOP_REASONS`.
        initial_loss, final_loss: loss at step 0 and at step ``steps`` (``final_loss`` may be
            ``inf``/``nan`` for a diverged network); ``min_loss`` (at ``min_loss_step``): the
            smallest finite loss of any step.
        ntk_change: ``{t: |Theta_t - Theta_0|_F / |Theta_0|_F}`` for the snapshots ``t <=
            steps``; ``final_ntk_change``: the same at the final parameters (``None`` for a
            diverged network or where the kernel is not representable).
        loss_steps, losses: the stored loss curve (see the module docstring).
        seconds: wall time of the whole batch.
        samples: ``S``, the training samples.
        network: the network as a :class:`~ntkscope.NetworkSpec` (with this network's
            ``sigma_w2``, ``sigma_b2`` when :func:`train` drew it; ``None`` for ``L = 0``).
        data: what the network was trained on, for :meth:`title` (e.g. ``"mnist (parity)"``;
            the caller sets it: :func:`train` only sees ``X``).
    """

    index: int
    sigma_w2: float | None
    sigma_b2: float | None
    lr: float
    lr_max: float
    lambda_max: float
    steps: int
    stop_reason: str
    initial_loss: float
    final_loss: float
    min_loss: float
    min_loss_step: int
    ntk_change: dict[int, float]
    final_ntk_change: float | None
    loss_steps: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)
    seconds: float = 0.0
    samples: int = 0
    network: NetworkSpec | None = field(default=None, repr=False)
    data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary ``ntkscope train --json`` prints: ``steps``, ``stop_reason``, ``lr``,
        ``initial_loss``, ``final_loss``, ``min_loss``, ``ntk_change`` (step as a string, plus
        ``"final"``) and ``seconds``. Non-finite numbers become ``None``."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        change: dict[str, float | None] = {str(t): num(v) for t, v in self.ntk_change.items()}
        change["final"] = num(self.final_ntk_change)
        return {
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "lr": self.lr,
            "initial_loss": num(self.initial_loss),
            "final_loss": num(self.final_loss),
            "min_loss": num(self.min_loss),
            "ntk_change": change,
            "seconds": self.seconds,
        }

    def describe(self) -> str:
        """``relu, sw2=2, sb2=0.1, L=5, M=256, mnist (parity), S=128``: the network, the data
        (where known) and ``S``."""
        parts = [] if self.network is None else [self.network.describe()]
        if self.data:
            parts.append(self.data)
        parts.append(f"S={self.samples}")
        return ", ".join(parts)

    def title(self) -> str:
        """The title line of ``ntkscope train``: ``Gradient descent: <describe()>``."""
        return f"Gradient descent: {self.describe()}"

    def rows(self) -> list[tuple[str, Any]]:
        """The table of ``ntkscope train``: rates, steps, stop reason, losses, the NTK change
        at each snapshot reached and at the end, seconds."""
        rows: list[tuple[str, Any]] = [
            ("learning rate", self.lr),
            ("lr_max = 2S/lambda_max", self.lr_max),
            ("steps", self.steps),
            ("stop reason", self.stop_reason),
            ("initial loss", self.initial_loss),
            ("final loss", self.final_loss),
            ("min loss", f"{self.min_loss:.10g} (step {self.min_loss_step})"),
        ]
        rows += [(f"NTK change, step {t}", v) for t, v in self.ntk_change.items()]
        rows.append((f"NTK change, final ({self.steps})", self.final_ntk_change))
        rows.append(("seconds", f"{self.seconds:.2f}"))
        return rows


@dataclass
class TrainRun:
    """All networks of one :func:`train` call: ``results[i]`` and the final ``params``;
    ``seconds`` of wall time, of which ``ntk_seconds`` went to the NTKs (``Theta_0``, its
    eigenvalues, the snapshots and final kernels) and ``step_seconds`` to the gradient steps
    (the loop without its NTKs; includes the loss bookkeeping)."""

    results: list[TrainResult]
    params: Params
    seconds: float
    ntk_seconds: float = 0.0
    step_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# The loop


class LossMonitor:
    """Per-network bookkeeping of the loop: losses, the :class:`StoppingRule`, the stored
    curve (``curve_points``), the NTK changes.

    Args:
        batch: number of networks.
        stop: the stopping rule.
        zero_loss: ``|y|^2/(2S)``, the loss of the zero function (divergence threshold).
        curve_points: about how many points of the loss curve to store.
    """

    def __init__(self, batch: int, stop: StoppingRule, zero_loss: float,
                 curve_points: int) -> None:
        max_steps = stop.max_steps
        self.max_steps, self.patience, self.min_delta = max_steps, stop.patience, stop.min_delta
        self.factor, self.zero_loss = stop.divergence_factor, zero_loss
        self.fraction = stop.loss_fraction
        self.stride = max(1, math.ceil(max_steps / curve_points))
        self.curve = np.full((batch, max_steps // self.stride + 1), np.nan)
        self.recorded = np.zeros(self.curve.shape, dtype=bool)
        nan = np.full(batch, np.nan)
        self.initial, self.threshold, self.best = nan.copy(), nan.copy(), nan.copy()
        self.final = nan
        self.min_loss = np.full(batch, np.inf)
        self.min_step = np.zeros(batch, dtype=np.int64)
        self.wait = np.zeros(batch, dtype=np.int64)
        self.steps = np.zeros(batch, dtype=np.int64)
        self.reason = [""] * batch
        self.ntk_change: list[dict[int, float]] = [{} for _ in range(batch)]
        self.final_change: list[float | None] = [None] * batch

    def observe(
        self, t: int, idx: np.ndarray, loss: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Record the losses at step ``t`` of the networks ``idx`` (``ok``: their last update
        was finite); returns the masks ``(stop, diverged)`` and sets ``reason``, ``steps``
        and ``final`` of those that stop."""
        if t == 0:
            self.initial[idx] = loss
            self.best[idx] = loss
            with np.errstate(over="ignore"):  # an infinite threshold is harmless: the
                # finite-loss check still catches divergence
                self.threshold[idx] = self.factor * np.maximum(np.nan_to_num(loss),
                                                               self.zero_loss)
        if t % self.stride == 0:
            self.curve[idx, t // self.stride] = loss
            self.recorded[idx, t // self.stride] = True
        finite = np.isfinite(loss)
        better = finite & (loss < self.min_loss[idx])
        self.min_loss[idx[better]] = loss[better]
        self.min_step[idx[better]] = t
        diverged = ~finite | ~ok | (loss > self.threshold[idx])
        improved = loss < self.best[idx] - self.min_delta
        self.best[idx[improved]] = loss[improved]
        self.wait[idx] = np.where(improved, 0, self.wait[idx] + (t > 0))
        early = (
            np.zeros_like(diverged) if self.patience is None else self.wait[idx] >= self.patience
        )
        reached = (np.zeros_like(diverged) if self.fraction is None
                   else finite & (loss <= self.fraction * self.initial[idx]))
        stop = diverged | reached | early | (t >= self.max_steps)
        for j in np.flatnonzero(stop):
            i = idx[j]
            self.reason[i] = (
                "diverged" if diverged[j] else "loss_fraction" if reached[j]
                else "early_stop" if early[j] else "max_steps"
            )
            self.steps[i], self.final[i] = t, loss[j]
        return stop, diverged

    def result(self, i: int, offset: int = 0, **extra: Any) -> TrainResult:
        recorded = np.flatnonzero(self.recorded[i])
        steps = recorded * self.stride
        losses = self.curve[i, recorded]
        if not len(steps) or steps[-1] != self.steps[i]:
            steps, losses = np.append(steps, self.steps[i]), np.append(losses, self.final[i])
        return TrainResult(
            index=offset + i,
            steps=int(self.steps[i]),
            stop_reason=self.reason[i],
            initial_loss=float(self.initial[i]),
            final_loss=float(self.final[i]),
            min_loss=float(self.min_loss[i]),
            min_loss_step=int(self.min_step[i]),
            ntk_change=dict(self.ntk_change[i]),
            final_ntk_change=self.final_change[i],
            loss_steps=steps.astype(np.int64),
            losses=losses,
            **extra,
        )


def _relative_change(
    net: MLP, params: Params, x: Tensor, theta0: Tensor
) -> list[float | None]:
    """``|Theta_t - Theta_0|_F / |Theta_0|_F`` per network of ``params`` (``theta0`` aligned);
    ``None`` where the kernel is not representable."""
    try:
        thetas: list[Tensor | None] = list(empirical_ntk(net, params, x))
    except NtkscopeRangeError:
        thetas = []
        for j in range(params.batch):
            try:
                thetas.append(empirical_ntk(net, params.select(j), x)[0])
            except NtkscopeRangeError:
                thetas.append(None)
    out: list[float | None] = []
    for theta, ref in zip(thetas, theta0):
        if theta is None:
            out.append(None)
        else:
            out.append(ntk_change(theta, ref))
    return out


def _scatter(full: Params, part: Params, targets: Tensor) -> None:
    """``full[targets] = part`` for every tensor (in place)."""
    for dst, src in zip(full.weights + full.biases, part.weights + part.biases):
        dst.index_copy_(0, targets, src)


@torch.no_grad()
def train(
    net: MLP | NetworkSpec,
    X: Any,
    y: Any,
    params: Params | None = None,
    *,
    variances: Sequence[tuple[float, float]] | None = None,
    batch: int | None = None,
    seed: int = 0,
    rate: LearningRate | None = None,
    stop: StoppingRule | None = None,
    record: Recording | None = None,
    execution: Execution | None = None,
) -> TrainRun:
    """Train a batch of networks by full-batch gradient descent on ``(X, y)``.

    ``L = 1/(2S) sum_s (f(x_s) - y_s)^2``, ``theta <- theta - lr grad L`` (CONVENTIONS
    section 7; the step: :mod:`ntkscope.gd`). The networks are ``params`` (copied, never
    modified), else ``init_params(net, variances, batch=batch, seed=seed,
    dtype=execution.dtype, device=execution.device)``. Rules (early stopping, divergence,
    learning rate, NTK change, stored curve): module docstring.

    Args:
        net: the architecture (activation, widths, depth): an :class:`MLP`, or a
            :class:`~ntkscope.NetworkSpec` (its ``input_dim`` from ``X``).
        X: ``(S, M0)`` training inputs; y: ``(S,)`` targets.
        params, variances, batch, seed: the networks (given, or drawn: network ``i`` from
            ``SeedSequence([seed, i])``).
        rate: the :class:`LearningRate` (default: the paper's fixed ``lr = 1e-5``).
        stop: the :class:`StoppingRule` (default: the paper's, ``max_steps = 1e5``,
            ``patience = 100``, ``min_delta = 1e-7``).
        record: the :class:`Recording` (default: NTK change at steps 10, 100, 1000, 10000).
        execution: the :class:`Execution` (default: float64 on the CPU).

    Returns:
        a :class:`TrainRun`: one :class:`TrainResult` per network, the final parameters.

    Raises:
        NtkscopeInputError: bad arguments (a config that is not one, ``lr`` with neither one
            value nor one per network, data that does not fit the network, ...).
        NtkscopeRangeError: ``Theta_0`` itself is not representable in the dtype.
    """
    start = time.perf_counter()
    rate = _config("rate", rate, LearningRate)
    stop = _config("stop", stop, StoppingRule)
    record = _config("record", record, Recording)
    execution = _config("execution", execution, Execution)
    net = as_mlp(net, X)
    sw2: list[float] | None
    sb2: list[float] | None
    if params is None:
        params = init_params(net, variances, batch=batch, seed=seed, dtype=execution.dtype,
                             device=execution.device)
        if variances is not None:
            sw2, sb2 = [v[0] for v in variances], [v[1] for v in variances]
        else:
            sw2, sb2 = [net.sigma_w2] * params.batch, [net.sigma_b2] * params.batch
    else:
        if variances is not None or batch is not None:
            raise NtkscopeInputError("params: give either params or variances/batch, not both")
        params = net.check_params(params).clone()
        sw2 = sb2 = None
    x = net.check_inputs(params, X)
    yt = check_targets(params, y, x.shape[0])
    gram = (x.shape[0] < net.input_dim if execution.gram_first_layer is None
            else execution.gram_first_layer)
    fixed = rate.fixed_rates(params.batch)
    # Independent networks: train them in chunks whose pass fits the memory budget.
    n, s = params.batch, x.shape[0]
    per_net = 3 * s * sum(net.layer_widths[1:]) * x.element_size()
    chunk = max(1, min(n, execution.max_memory // per_net))
    runs: list[TrainRun] = []
    with torch_threads(execution.threads), Progress(
        stop.max_steps * math.ceil(n / chunk), "train", unit="step", quiet=not execution.progress
    ) as bar:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            part = params if hi - lo == n else params.select(slice(lo, hi))
            runs.append(_train(
                net, part, x, yt, None if sw2 is None else sw2[lo:hi],
                None if sb2 is None else sb2[lo:hi],
                None if fixed is None else fixed[lo:hi], rate, stop, record, bar, lo, gram,
            ))
            if hi < n:  # the next chunk's steps start where this chunk's share ends
                bar.update(n=stop.max_steps * len(runs) - bar.done)
    seconds = time.perf_counter() - start
    results = [r for run in runs for r in run.results]
    for r in results:
        r.seconds = seconds
    ntk_seconds = sum(run.ntk_seconds for run in runs)
    step_seconds = sum(run.step_seconds for run in runs)
    if len(runs) == 1:
        return TrainRun(results, runs[0].params, seconds, ntk_seconds, step_seconds)
    final = Params(
        [torch.cat([run.params.weights[l] for run in runs]) for l in range(net.depth + 1)],
        [torch.cat([run.params.biases[l] for run in runs]) for l in range(net.depth + 1)],
    )
    return TrainRun(results, final, seconds, ntk_seconds, step_seconds)


def _spec(net: MLP, sw2: float | None, sb2: float | None) -> NetworkSpec | None:
    """The spec of one network (its own variances where known; ``None`` for ``L = 0``)."""
    if not 1 <= net.depth <= MAX_DEPTH:
        return None
    return NetworkSpec(net.activation, net.sigma_w2 if sw2 is None else sw2,
                       net.sigma_b2 if sb2 is None else sb2, net.depth, net.widths,
                       net.input_dim)


def _train(
    net: MLP,
    params: Params,
    x: Tensor,
    yt: Tensor,
    sw2: Sequence[float] | None,
    sb2: Sequence[float] | None,
    fixed: np.ndarray | None,
    rate: LearningRate,
    rule: StoppingRule,
    record: Recording,
    bar: Progress,
    offset: int,
    gram: bool,
) -> TrainRun:
    """:func:`train` of one chunk of networks (numbered from ``offset``), arguments checked;
    ``fixed``: the chunk's fixed rates (:meth:`LearningRate.fixed_rates`)."""

    B, S = params.batch, x.shape[0]
    snaps = set(record.snapshots)
    clock = time.perf_counter()
    theta0 = empirical_ntk(net, params, x)
    lam = lambda_max(theta0).cpu().numpy()
    ntk_seconds = time.perf_counter() - clock
    lr_max = np.where(lam > 0, 2.0 * S / np.where(lam > 0, lam, 1.0), np.inf)
    rates = rate.rates(fixed, lr_max)
    scale = torch.as_tensor(rates / S).to(params.device, params.dtype)
    zero_loss = float(torch.linalg.vecdot(yt, yt)) / (2 * S)
    mon = LossMonitor(B, rule, zero_loss, record.curve_points)

    active = np.arange(B)
    dev = params.device
    cur = StepBatch(net, params, x, gram)
    loop_start, loop_ntk = time.perf_counter(), ntk_seconds
    fp = cur.forward()
    ok_dev: Tensor | None = None
    t = 0
    while True:
        r, loss_dev = residuals(fp, yt)
        loss = loss_dev.cpu().numpy().astype(np.float64)
        ok = np.ones(len(active), bool) if ok_dev is None else ok_dev.cpu().numpy()
        stop, diverged = mon.observe(t, active, loss, ok)
        # NTKs: every running network at a snapshot, the stopping ones at their end.
        if t == 0:
            want = np.zeros_like(stop)
            for j in np.flatnonzero(stop & ~diverged):
                mon.final_change[int(active[j])] = 0.0
        else:
            want = ~diverged if t in snaps else stop & ~diverged
        if want.any():
            clock = time.perf_counter()
            pos = np.flatnonzero(want)
            sub = cur.params(None if len(pos) == len(active) else torch.as_tensor(pos, device=dev))
            ref = theta0.index_select(0, torch.as_tensor(active[pos], device=theta0.device))
            for j, change in zip(pos, _relative_change(net, sub, x, ref)):
                i = int(active[j])
                if t in snaps and change is not None:
                    mon.ntk_change[i][t] = change
                if stop[j]:
                    mon.final_change[i] = change
            ntk_seconds += time.perf_counter() - clock
        if stop.any():
            keep, gone = np.flatnonzero(~stop), np.flatnonzero(stop)
            part = cur.params(torch.as_tensor(gone, device=dev))
            _scatter(params, part, torch.as_tensor(active[gone], device=dev))
            if not len(keep):
                break
            dev_keep = torch.as_tensor(keep, device=dev)
            cur.select(dev_keep)
            fp = fp.select(dev_keep)
            r, active = r.index_select(0, dev_keep), active[keep]
        coef = r * scale.index_select(0, torch.as_tensor(active, device=dev))[:, None]
        ok_dev = cur.backward(fp, coef)
        t += 1
        bar.update()
        fp = cur.forward()
    results = [
        mon.result(
            i,
            offset=offset,
            sigma_w2=None if sw2 is None else float(sw2[i]),
            sigma_b2=None if sb2 is None else float(sb2[i]),
            lr=float(rates[i]),
            lr_max=float(lr_max[i]),
            lambda_max=float(lam[i]),
            samples=S,
            network=_spec(net, None if sw2 is None else sw2[i], None if sb2 is None else sb2[i]),
        )
        for i in range(B)
    ]
    step_seconds = time.perf_counter() - loop_start - (ntk_seconds - loop_ntk)
    return TrainRun(results, params, 0.0, ntk_seconds, step_seconds)
