"""Full-batch gradient descent on batches of networks and the NTK change (paper Section 4).

Loss and update (CONVENTIONS section 7), for every network of a :class:`~ntkscope.networks.Params`
batch on the same training set ``(X, y)`` of ``S`` samples::

    L(theta) = 1/(2S) sum_s (f(x_s) - y_s)^2,        theta <- theta - lr * grad L(theta)

Gradients use the structure of the network instead of autograd. With the residuals
``r_s = f(x_s) - y_s``, the layer inputs ``A_{l-1}`` (rows ``x^{l-1}(x_s)``, ``x^0 = x``) and the
backpropagated signals ``D_l`` (rows ``delta^l(x_s) = df(x_s)/dh^l``, ``delta^{L+1} = 1``)::

    dL/dW^l = (1/S) sum_s r_s delta^l(x_s) x^{l-1}(x_s)^T = (1/S) D_l^T diag(r) A_{l-1}
    dL/db^l = (1/S) sum_s r_s delta^l(x_s)

One forward pass (:meth:`MLP.forward_scaled`) keeps the ``A_{l-1}`` and ``phi'(h^l)``; one
backward pass (:meth:`MLP.backward_scaled`) forms ``D_l`` layer by layer, and each weight update
is a single batched ``baddbmm`` (``W^l <- W^l - (lr r/S ∘ D_l)^T A_{l-1}``, no gradient tensor
is materialized). ``W^l`` is updated right after it has been used to backpropagate to layer
``l - 1``, so every update uses the gradient at the current parameters. The first layer's
update of all networks is one matrix product with the shared inputs ``X``.

First layer in Gram form (default when ``S < M0``): ``dL/dW^1`` lies in the row span of
``X``, so ``W^1_t = W^1_0 + C_t X`` with ``C`` of shape ``(M_1, S)``. The steps run on
``V = W^1 X^T`` (then ``h^1 = V^T + b^1``) with ``V <- V - (lr r/S ∘ D_1)^T X X^T`` and
``C <- C - (lr r/S ∘ D_1)^T``: the first layer's two products cost ``2 S^2 M_1`` instead of
``2 S M0 M_1`` operations (MNIST, ``S = 128``: 6x fewer; 15% of a step at ``L = 10``,
``M = 256``). ``W^1`` itself is rebuilt for the NTK snapshots and the final parameters; the
results agree with the plain form to rounding.

Range: the training loop runs on plain values (no range monitor: its per-layer norms and
finiteness checks of every ``A_{l-1}`` and ``D_l`` took 25-40% of a step in CPU profiles of
:meth:`MLP.forward_with_cache`). Plain values are
the true values whenever they are representable -- what :meth:`MLP.forward_with_cache` would
materialize -- and a value that is not (overflow) shows up as a non-finite output or bias
gradient, which marks the network ``diverged``. Signals that underflow give gradients below
the dtype's resolution of the weights, which change nothing either way. The NTKs at the
snapshots use :func:`~ntkscope.ntk.empirical_ntk` with its full range handling.

Per network (the networks of a batch are independent; each has its own learning rate and
stops on its own; stopped networks are frozen and dropped from the batch):

* **early stopping** (paper: ``patience = 100``, ``min_delta = 1e-7``): with ``best`` the
  loss at the last improvement (initially ``L_0``), step ``t`` is an improvement when
  ``L_t < best - min_delta`` (then ``best = L_t``). Training stops at the first step ``t``
  that is preceded by ``patience`` consecutive steps without improvement, i.e. when the loss
  has not gone ``min_delta`` below ``best`` in the last ``patience`` steps;
* **max_steps** (paper ``1e5``): stop after ``max_steps`` updates;
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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ntkscope.networks import MLP, NtkscopeRangeError, Params, check_device, check_dtype
from ntkscope.ntk import empirical_ntk
from ntkscope.progress import Progress
from ntkscope.threads import torch_threads
from ntkscope.validation import (
    NtkscopeInputError,
    finite_array,
    nonnegative,
    positive,
    positive_int,
)

__all__ = [
    "DEFAULT_SNAPSHOTS",
    "STOP_REASONS",
    "TrainResult",
    "TrainRun",
    "check_snapshots",
    "gd_step",
    "init_params",
    "loss_and_gradients",
    "max_learning_rate",
    "mse_loss",
    "train",
]

#: Steps at which the NTK change is recorded by default (paper Appendix D).
DEFAULT_SNAPSHOTS: tuple[int, ...] = (10, 100, 1000, 10000)
#: Why a network stopped training.
STOP_REASONS: tuple[str, ...] = ("early_stop", "max_steps", "diverged")


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_net(net: Any) -> MLP:
    if not isinstance(net, MLP):
        raise NtkscopeInputError(f"net: expected an MLP, got {type(net).__name__}")
    return net


def _check_targets(params: Params, y: Any, samples: int) -> Tensor:
    """``y`` as an ``(S,)`` tensor in the params' dtype and device, all finite."""
    if isinstance(y, Tensor):
        y = y.detach().cpu().double().numpy()
    arr = finite_array("y", y)
    if arr.shape != (samples,):
        raise NtkscopeInputError(
            f"y: expected {samples} targets (one per row of X), got shape {arr.shape}"
        )
    return torch.as_tensor(arr).to(params.device, params.dtype)


def check_snapshots(snapshots: Any) -> tuple[int, ...]:
    """Distinct step numbers ``>= 1``, returned sorted (an empty sequence is allowed)."""
    if isinstance(snapshots, (str, bytes)) or not isinstance(snapshots, Sequence):
        raise NtkscopeInputError(
            f"snapshots: expected a sequence of step numbers, got {snapshots!r}"
        )
    steps = [positive_int(f"snapshots[{i}]", s) for i, s in enumerate(snapshots)]
    if len(set(steps)) != len(steps):
        raise NtkscopeInputError(f"snapshots: step numbers must be distinct, got {steps}")
    return tuple(sorted(steps))


def _per_network(name: str, value: Any, batch: int) -> np.ndarray:
    """A positive scalar or one positive value per network, as a ``(batch,)`` array."""
    arr = positive(name, value).reshape(-1)
    if arr.size == 1:
        return np.full(batch, float(arr[0]))
    if arr.size != batch:
        raise NtkscopeInputError(f"{name}: expected one value or {batch} (one per network)")
    return arr.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Initialization


def init_params(
    net: MLP,
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
        net: the architecture (its ``sigma_w2``, ``sigma_b2`` are used without ``variances``).
        variances: ``[(sw2_0, sb2_0), (sw2_1, sb2_1), ...]``, one pair per network.
        batch: number of networks; must equal ``len(variances)`` when both are given.
    """
    net = _check_net(net)
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
# Structured forward / backward pass


@dataclass
class _Pass:
    """A plain forward pass: layer inputs ``A_{l-1}`` (``inputs[0]`` is ``X`` of shape
    ``(1, S, M0)``), ``phi'(h^l)`` for ``l = 1..L`` and the outputs ``(B, S)``."""

    inputs: list[Tensor]
    derivs: list[Tensor]
    output: Tensor

    def select(self, keep: Tensor) -> _Pass:
        """The networks at positions ``keep`` (a long tensor on the device)."""

        picked: dict[int, Tensor] = {}  # ReLU: derivs[l-1] is inputs[l] (select it once)

        def pick(t: Tensor) -> Tensor:
            if t.shape[0] == 1 and t is self.inputs[0]:
                return t
            if id(t) not in picked:
                picked[id(t)] = t.index_select(0, keep)
            return picked[id(t)]

        return _Pass(
            [pick(a) for a in self.inputs],
            [pick(d) for d in self.derivs],
            self.output.index_select(0, keep),
        )


def _forward(net: MLP, params: Params, x: Tensor) -> _Pass:
    inputs: list[Tensor] = []
    derivs, h, _ = net.forward_scaled(
        params,
        x,
        rescale=False,
        keep_derivatives=True,
        on_input=lambda _l, p, _g: inputs.append(p),
    )
    return _Pass(inputs, derivs, h)


def _backward(
    net: MLP,
    params: Params,
    fp: _Pass,
    coef: Tensor,
    weights: list[Tensor],
    biases: list[Tensor],
    alpha: float,
    gram: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``W^l += alpha (coef ∘ D_l)^T A_{l-1}``, ``b^l += alpha sum_s coef_s delta^l_s`` into
    ``weights``/``biases`` (which may be ``params``' own tensors), ``coef`` of shape ``(B, S)``.

    With ``gram = (G, C)`` the first layer is in the Gram form of :class:`_Batch` (inputs
    ``I_S``, weights ``V = W^1 X^T``): ``V += alpha (coef ∘ D_1)^T G`` and
    ``C += alpha (coef ∘ D_1)^T``.

    Returns per network whether every bias increment was finite (a non-finite signal ``D_l``
    makes its sum non-finite). Consumes ``fp.derivs``.
    """
    batch, s = coef.shape
    ok = torch.ones(batch, dtype=torch.bool, device=coef.device)
    pending: list[tuple[int, Tensor]] = []

    def flush(l: int, dc: Tensor) -> None:
        a, w = fp.inputs[l - 1], weights[l - 1]
        db = dc.sum(1)
        ok.logical_and_(torch.isfinite(db).all(1))
        if l == 1 and gram is not None:
            dct = dc.mT.reshape(-1, s)
            w.view(-1, s).addmm_(dct, gram[0], alpha=alpha)
            gram[1].view(-1, s).add_(dct, alpha=alpha)
        elif a.shape[0] == 1 and w.is_contiguous():
            # Shared inputs X: all networks' updates as one (B M_1 x S) @ (S x M0) product.
            w.view(-1, w.shape[2]).addmm_(dc.mT.reshape(-1, s), a[0], alpha=alpha)
        else:
            w.baddbmm_(dc.mT, a.expand(batch, -1, -1), alpha=alpha)
        biases[l - 1].add_(db, alpha=alpha)

    def visit(l: int, d: Tensor, _beta: Tensor | None) -> None:
        # W^{l+1} was just used to form D_l and is not needed again: update it now.
        if pending:
            flush(*pending.pop())
        pending.append((l, d))

    # delta^{L+1} = coef: every D_l arrives already scaled, coef ∘ D_l.
    net.backward_scaled(params, fp.derivs, s, visit, rescale=False, output_delta=coef)
    flush(*pending.pop())
    return ok


def _prepare(net: Any, params: Any, X: Any, y: Any) -> tuple[MLP, Params, Tensor, Tensor]:
    net = _check_net(net)
    params = net.check_params(params)
    x = net.check_inputs(params, X)
    return net, params, x, _check_targets(params, y, x.shape[0])


def _loss(fp: _Pass, y: Tensor) -> tuple[Tensor, Tensor]:
    """Residuals ``r = f - y`` ``(B, S)`` and the losses ``mean(r^2)/2`` ``(B,)``."""
    r = fp.output - y
    return r, 0.5 * torch.linalg.vecdot(r, r) / r.shape[1]


@torch.no_grad()
def mse_loss(net: MLP, params: Params, X: Any, y: Any) -> Tensor:
    """``L = 1/(2S) sum_s (f(x_s) - y_s)^2`` of every network, shape ``(B,)``."""
    net, params, x, yt = _prepare(net, params, X, y)
    return _loss(_forward(net, params, x), yt)[1]


@torch.no_grad()
def loss_and_gradients(net: MLP, params: Params, X: Any, y: Any) -> tuple[Tensor, Params]:
    """The MSE loss ``(B,)`` and its gradient with respect to every ``W^l`` and ``b^l``.

    ``dL/dW^l = (1/S) D_l^T diag(f - y) A_{l-1}``, ``dL/db^l = (1/S) D_l^T (f - y)`` (see the
    module docstring), returned as a :class:`Params` with the shapes of ``params``. Computed
    on plain values; a non-finite gradient raises :class:`NtkscopeRangeError`.
    """
    net, params, x, yt = _prepare(net, params, X, y)
    fp = _forward(net, params, x)
    r, loss = _loss(fp, yt)
    grads = Params(
        [torch.zeros_like(w) for w in params.weights], [torch.zeros_like(b) for b in params.biases]
    )
    ok = _backward(net, params, fp, r / r.shape[1], grads.weights, grads.biases, 1.0)
    if not bool(ok.all()) or not all(bool(torch.isfinite(w).all()) for w in grads.weights):
        raise NtkscopeRangeError(
            "gradient: a value exceeds the range of the dtype; use float64, a shallower "
            "network or a smaller sigma_w2"
        )
    return loss, grads


@torch.no_grad()
def gd_step(net: MLP, params: Params, X: Any, y: Any, lr: float | Sequence[float]) -> Tensor:
    """One gradient-descent step ``theta <- theta - lr grad L`` on ``params`` **in place**.

    ``lr`` is one rate or one per network. Returns the losses before the step, ``(B,)``.
    """
    net, params, x, yt = _prepare(net, params, X, y)
    rates = _per_network("lr", lr, params.batch)
    fp = _forward(net, params, x)
    r, loss = _loss(fp, yt)
    scale = torch.as_tensor(rates / r.shape[1]).to(params.device, params.dtype)
    _backward(net, params, fp, r * scale[:, None], params.weights, params.biases, -1.0)
    return loss


def _lambda_max(theta: Tensor) -> Tensor:
    """Largest eigenvalue of each kernel, computed in float64."""
    return torch.linalg.eigvalsh(theta.double())[:, -1]


@torch.no_grad()
def max_learning_rate(net: MLP, params: Params, X: Any) -> Tensor:
    """``lr_max = 2 S / lambda_max(Theta_0(X))`` per network, float64 ``(B,)``.

    The largest rate for which the linearized dynamics ``f <- f - (lr/S) Theta_0 (f - y)``
    converge (``inf`` if ``lambda_max <= 0``).
    """
    theta = empirical_ntk(_check_net(net), params, X)
    lam = _lambda_max(theta)
    return torch.where(lam > 0, 2.0 * theta.shape[1] / lam, math.inf)


# ---------------------------------------------------------------------------------------------
# Training loop


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


class _Monitor:
    """Per-network bookkeeping of the loop: losses, stopping rule, curve, NTK changes."""

    def __init__(
        self,
        batch: int,
        max_steps: int,
        patience: int | None,
        min_delta: float,
        divergence_factor: float,
        zero_loss: float,
        curve_points: int,
    ) -> None:
        self.max_steps, self.patience, self.min_delta = max_steps, patience, min_delta
        self.factor, self.zero_loss = divergence_factor, zero_loss
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
        stop = diverged | early | (t >= self.max_steps)
        for j in np.flatnonzero(stop):
            i = idx[j]
            self.reason[i] = (
                "diverged" if diverged[j] else "early_stop" if early[j] else "max_steps"
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


class _Batch:
    """The running networks of a chunk, in the form the gradient steps use.

    Plain form: the parameters themselves, inputs ``X``. Gram form (``S < M0``): the first
    layer's weights only ever move in the row span of ``X`` (its gradient is
    ``(1/S) D_1^T diag(r) X``), so ``W^1_t = W^1_0 + C_t X`` with ``C`` of shape
    ``(B, M_1, S)``. The steps then run on the inputs ``I_S`` with first-layer weights
    ``V = W^1 X^T`` (``h^1 = X W^1^T + b^1 = V^T + b^1``), updated as
    ``V <- V - (lr r/S ∘ D_1)^T X X^T`` and ``C <- C - (lr r/S ∘ D_1)^T``: ``2 S^2 M_1``
    operations per product instead of ``2 S M0 M_1``. :meth:`params` rebuilds ``W^1``.
    """

    def __init__(self, net: MLP, params: Params, x: Tensor, gram: bool) -> None:
        self.net, self.x, self.p = net, x, params
        self.step_net, self.inputs = net, x
        self.gram: tuple[Tensor, Tensor] | None = None
        self.w0: Tensor | None = None
        if gram:
            s = x.shape[0]
            self.step_net = MLP(s, net.widths, net.depth, net.activation)
            self.inputs = torch.eye(s, dtype=x.dtype, device=x.device)
            self.w0 = params.weights[0]
            acc = torch.zeros(params.batch, params.weights[0].shape[1], s, dtype=x.dtype,
                              device=x.device)
            self.gram = (x @ x.mT, acc)
            self.p = Params([torch.matmul(self.w0, x.mT), *params.weights[1:]], params.biases)

    def forward(self) -> _Pass:
        return _forward(self.step_net, self.p, self.inputs)

    def backward(self, fp: _Pass, coef: Tensor) -> Tensor:
        """One update with ``coef = lr r / S``; returns the finiteness flags."""
        return _backward(self.step_net, self.p, fp, coef, self.p.weights, self.p.biases, -1.0,
                         self.gram)

    def select(self, keep: Tensor) -> None:
        """Keep only the networks at positions ``keep``."""
        self.p = self.p.select(keep)
        if self.gram is not None and self.w0 is not None:
            self.w0 = self.w0.index_select(0, keep)
            self.gram = (self.gram[0], self.gram[1].index_select(0, keep))

    def params(self, pos: Tensor | None = None) -> Params:
        """The true parameters of the networks at positions ``pos`` (all for ``None``)."""
        p = self.p if pos is None else self.p.select(pos)
        if self.gram is None or self.w0 is None:
            return p
        w0, acc = self.w0, self.gram[1]
        if pos is not None:
            w0, acc = w0.index_select(0, pos), acc.index_select(0, pos)
        return Params([torch.matmul(acc, self.x).add_(w0), *p.weights[1:]], p.biases)


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
            out.append(float(torch.linalg.norm(theta - ref) / torch.linalg.norm(ref)))
    return out


def _scatter(full: Params, part: Params, targets: Tensor) -> None:
    """``full[targets] = part`` for every tensor (in place)."""
    for dst, src in zip(full.weights + full.biases, part.weights + part.biases):
        dst.index_copy_(0, targets, src)


@torch.no_grad()
def train(
    net: MLP,
    X: Any,
    y: Any,
    params: Params | None = None,
    *,
    variances: Sequence[tuple[float, float]] | None = None,
    batch: int | None = None,
    seed: int = 0,
    lr: float | Sequence[float] | None = None,
    lr_scale: float | None = None,
    max_steps: int = 100_000,
    patience: int | None = 100,
    min_delta: float = 1e-7,
    snapshots: Sequence[int] = DEFAULT_SNAPSHOTS,
    divergence_factor: float = 1e6,
    curve_points: int = 10_000,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
    progress: bool = False,
    threads: int | None = None,
    max_memory: int = 1 << 28,
    gram_first_layer: bool | None = None,
) -> TrainRun:
    """Train a batch of networks by full-batch gradient descent on ``(X, y)``.

    The networks are ``params`` (copied, never modified), else
    ``init_params(net, variances, batch=batch, seed=seed, dtype=dtype, device=device)``.
    Rules (early stopping, divergence, learning rate, NTK change, stored curve): module
    docstring.

    Args:
        net: the architecture (activation, widths, depth).
        X: ``(S, M0)`` training inputs; y: ``(S,)`` targets.
        lr: fixed learning rate(s), one or one per network (default ``1e-5``, the paper's).
        lr_scale: ``lr = lr_scale * lr_max`` with ``lr_max = 2 S / lambda_max(Theta_0(X))``
            per network; given together with ``lr``, a cap: ``min(lr, lr_scale * lr_max)``
            (a fixed rate that never exceeds the stability limit of the linearized dynamics).
        max_steps: most updates per network (paper ``1e5``).
        patience, min_delta: early stopping (paper ``100``, ``1e-7``); ``patience=None``
            turns it off.
        snapshots: steps at which the NTK change is recorded (those ``<= steps``).
        divergence_factor: a loss above this times ``max(L_0, |y|^2/(2S))`` is divergence.
        curve_points: about how many points of the loss curve are stored.
        progress: show a progress bar on stderr.
        threads: torch CPU threads during the run (default: unchanged). On a loaded machine
            one thread avoids OpenMP synchronization stalls of the small per-layer products.
        max_memory: bytes the stored passes of one chunk of networks may take (about
            ``3 S (M_1 + ... + M_{L+1})`` values per network); larger batches are trained in
            chunks one after the other, with identical results (the networks are
            independent). Default 256 MiB: in CPU measurements at ``L = 50``, ``M = 512``,
            chunks of 3 networks ran a step in 300-370 ms per network, chunks of 13 in
            550-680 ms (memory traffic), one network alone in 150-250 ms.
        gram_first_layer: run the first layer in its Gram form (:class:`_Batch`: the same
            updates, ``M0 / S`` times fewer first-layer operations); default: when ``S < M0``.

    Returns:
        a :class:`TrainRun`: one :class:`TrainResult` per network, the final parameters.

    Raises:
        NtkscopeInputError: bad arguments (``lr <= 0``, ``lr_scale <= 0``, ...).
        NtkscopeRangeError: ``Theta_0`` itself is not representable in the dtype.
    """
    start = time.perf_counter()
    net = _check_net(net)
    if params is None:
        params = init_params(
            net, variances, batch=batch, seed=seed, dtype=dtype, device=device
        )
        sw2 = [v[0] for v in variances] if variances is not None else None
        sb2 = [v[1] for v in variances] if variances is not None else None
        if sw2 is None:
            sw2, sb2 = [net.sigma_w2] * params.batch, [net.sigma_b2] * params.batch
    else:
        if variances is not None or batch is not None:
            raise NtkscopeInputError("params: give either params or variances/batch, not both")
        params = net.check_params(params).clone()
        sw2 = sb2 = None
    x = net.check_inputs(params, X)
    yt = _check_targets(params, y, x.shape[0])
    max_steps = positive_int("max_steps", max_steps, minimum=0)
    if patience is not None:
        patience = positive_int("patience", patience)
    min_delta = float(nonnegative("min_delta", min_delta))
    snaps = set(check_snapshots(snapshots))
    factor = float(positive("divergence_factor", divergence_factor))
    curve_points = positive_int("curve_points", curve_points)
    if not isinstance(progress, bool):
        raise NtkscopeInputError(f"progress: expected True or False, got {progress!r}")
    if threads is not None:
        threads = positive_int("threads", threads)
    budget = positive_int("max_memory", max_memory)
    if gram_first_layer is not None and not isinstance(gram_first_layer, bool):
        raise NtkscopeInputError(
            f"gram_first_layer: expected True, False or None, got {gram_first_layer!r}"
        )
    gram = x.shape[0] < net.input_dim if gram_first_layer is None else gram_first_layer
    if lr_scale is not None:
        lr_scale = float(positive("lr_scale", lr_scale))
    rates = (None if lr is None and lr_scale is not None
             else _per_network("lr", 1e-5 if lr is None else lr, params.batch))
    # Independent networks: train them in chunks whose pass fits the memory budget.
    n, s = params.batch, x.shape[0]
    per_net = 3 * s * sum(net.layer_widths[1:]) * x.element_size()
    chunk = max(1, min(n, budget // per_net))
    runs: list[TrainRun] = []
    with torch_threads(threads), Progress(
        max_steps * math.ceil(n / chunk), "train", unit="step", quiet=not progress
    ) as bar:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            part = params if hi - lo == n else params.select(slice(lo, hi))
            runs.append(_train(
                net, part, x, yt, None if sw2 is None else sw2[lo:hi],
                None if sb2 is None else sb2[lo:hi],
                None if rates is None else rates[lo:hi], lr_scale, max_steps, patience,
                min_delta, snaps, factor, curve_points, bar, lo, gram,
            ))
            if hi < n:  # the next chunk's steps start where this chunk's share ends
                bar.update(n=max_steps * len(runs) - bar.done)
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


def _train(
    net: MLP,
    params: Params,
    x: Tensor,
    yt: Tensor,
    sw2: Sequence[float] | None,
    sb2: Sequence[float] | None,
    rates: np.ndarray | None,
    lr_scale: float | None,
    max_steps: int,
    patience: int | None,
    min_delta: float,
    snaps: set[int],
    factor: float,
    curve_points: int,
    bar: Progress,
    offset: int,
    gram: bool,
) -> TrainRun:
    """:func:`train` of one chunk of networks (numbered from ``offset``), arguments checked;
    ``rates`` (per network) or ``lr_scale`` gives the learning rates."""

    B, S = params.batch, x.shape[0]
    clock = time.perf_counter()
    theta0 = empirical_ntk(net, params, x)
    lam = _lambda_max(theta0).cpu().numpy()
    ntk_seconds = time.perf_counter() - clock
    lr_max = np.where(lam > 0, 2.0 * S / np.where(lam > 0, lam, 1.0), np.inf)
    if lr_scale is not None:
        scaled = lr_scale * lr_max
        if rates is not None:
            rates = np.minimum(rates, scaled)  # a cap on the fixed rates
        elif not np.all(np.isfinite(scaled)):
            raise NtkscopeInputError("lr_scale: lambda_max(Theta_0) <= 0, lr_max is undefined")
        else:
            rates = scaled
    assert rates is not None
    scale = torch.as_tensor(rates / S).to(params.device, params.dtype)
    zero_loss = float(torch.linalg.vecdot(yt, yt)) / (2 * S)
    mon = _Monitor(B, max_steps, patience, min_delta, factor, zero_loss, curve_points)

    active = np.arange(B)
    dev = params.device
    cur = _Batch(net, params, x, gram)
    loop_start, loop_ntk = time.perf_counter(), ntk_seconds
    fp = cur.forward()
    ok_dev: Tensor | None = None
    t = 0
    while True:
        r, loss_dev = _loss(fp, yt)
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
        )
        for i in range(B)
    ]
    step_seconds = time.perf_counter() - loop_start - (ntk_seconds - loop_ntk)
    return TrainRun(results, params, 0.0, ntk_seconds, step_seconds)
