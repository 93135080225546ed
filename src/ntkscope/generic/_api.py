"""``module_ntk``: the empirical NTK of any ``torch.nn.Module`` (CONVENTIONS section 9).

One public entry point; the algorithms are a :class:`Method` dispatched to private block
functions (``_layerwise``, ``_jacobian``, ``_ntvp``), each computing the kernel on one tile of
sample pairs; this module validates the inputs, refuses models that couple samples, picks the
method, and tiles the sample pairs so each tile's estimated peak stays under ``max_memory``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import torch
from torch import nn

from ntkscope.generic import _jacobian, _ntvp
from ntkscope.generic._inputs import Inputs
from ntkscope.generic._memory import (
    activation_profile,
    default_budget,
    human,
    model_bytes,
    parse_memory,
)
from ntkscope.generic._problem import Forward, Problem, build_problem, check_outputs
from ntkscope.validation import NtkscopeInputError

Block = Callable[[Problem, Inputs, "Inputs | None", Sequence[str]], torch.Tensor]
Estimate = Callable[[Problem, int, "int | None", Sequence[str]], int]

# samples compared, batched against alone, by the sample-coupling check
COUPLING_SAMPLES = 2
# Share of the budget the tiles' peak estimates may fill (the estimates' measured error).
ESTIMATE_MARGIN = 0.8
COUPLING_BATCH = 4


class Method(str, Enum):
    """Algorithms of :func:`module_ntk` (costs in its docstring)."""

    AUTO = "auto"
    LAYERWISE = "layerwise"
    JACOBIAN = "jacobian"
    NTVP = "ntvp"


def _layerwise() -> Any | None:
    """The layer-wise module, or None where it is not available."""
    try:
        return importlib.import_module("ntkscope.generic._layerwise")
    except ImportError:
        return None


def _method(value: Any) -> Method:
    try:
        return Method(value.value if isinstance(value, Method) else value)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise NtkscopeInputError(f"method: expected one of {choices}, got {value!r}") from None


def method_functions(method: Method) -> tuple[Block, Estimate]:
    """The block and estimate functions of ``method`` (not AUTO)."""
    if method is Method.LAYERWISE:
        mod = _layerwise()
        if mod is None:
            raise NtkscopeInputError("method='layerwise' is not available in this build; use "
                                     "'jacobian' or 'ntvp'")
        return mod.block, mod.estimate
    if method is Method.NTVP:
        return _ntvp.block, _ntvp.estimate
    return _jacobian.block, _jacobian.estimate


def choose(problem: Problem, x: Inputs) -> Method:
    """``"auto"``: "layerwise" when the layer-wise path handles any of the parameters
    (the rest goes to the Jacobian path inside it), else "jacobian"."""
    mod = _layerwise()
    if mod is not None and mod.plan(problem, problem.names, x).parts:
        return Method.LAYERWISE
    return Method.JACOBIAN


# ---------------------------------------------------------------------------------------------
# Checks


def _batch_dependent(module: nn.Module) -> str | None:
    """Why ``module`` makes ``f(x)[i]`` depend on other samples or on chance, or None."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            return "in training mode normalizes with the batch's statistics"
        if not module.track_running_stats:
            return "has no running statistics (track_running_stats=False), so it normalizes " \
                   "with the batch's statistics even in eval mode"
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        return "in training mode drops values at random"
    return None


def check_modules(model: nn.Module) -> None:
    """Refuse, by module type, models whose output on sample ``i`` depends on other samples or
    on chance (``BatchNorm`` in training mode or without running statistics, dropout in
    training mode)."""
    for name, module in model.named_modules():
        why = _batch_dependent(module)
        if why is not None:
            raise NtkscopeInputError(
                f"model couples samples: {name or 'the model'} ({type(module).__name__}) {why}; "
                "the NTK is defined per sample: call model.eval() first (or use a "
                "per-sample normalization)")


def check_coupling(problem: Problem, x: Inputs) -> None:
    """Refuse models whose output on sample ``i`` depends on other samples, numerically:
    ``f(x[:B])[i]`` must equal ``f(x[i:i+1])`` for the first few samples (to ``sqrt(eps)`` of
    the output scale)."""
    if x.n < 2:
        return
    batch = x.take(0, min(x.n, COUPLING_BATCH))
    with torch.no_grad():
        together = problem.outputs(batch)
        scale = float(together.abs().max()) + 1.0
        tol = scale * torch.finfo(together.dtype).eps ** 0.5
        for i in range(min(batch.n, COUPLING_SAMPLES)):
            alone = problem.outputs(batch.take(i, i + 1))[0]
            gap = float((together[i] - alone).abs().max())
            if not gap <= tol:
                raise NtkscopeInputError(
                    f"model couples samples: its output on sample {i} of {x.name} differs by "
                    f"{gap:.3g} computed in a batch of {batch.n} versus alone; the NTK is "
                    "defined per sample (BatchNorm in training mode? call model.eval()), "
                    "or the model mixes samples along the first axis")


def _devices(problem: Problem, x: Inputs) -> None:
    """Floating input tensors must be on the parameters' device (nothing is moved)."""
    where = next(iter(problem.params.values())).device
    for t in x.tensors():
        if t.device != where:
            raise NtkscopeInputError(
                f"{x.name} is on {t.device} but the model's parameters are on {where}; move "
                f"the inputs (x.to({str(where)!r})), ntkscope does not move models or data")


def _check_outputs(problem: Problem, x: Inputs, chunk: int) -> int:
    """Run the model on all of ``x`` (no grad, ``chunk`` samples at a time); validated outputs
    (first axis the samples, finite). Returns ``O``; model errors become input errors."""
    o = 0
    with torch.no_grad():
        for _, part in x.batched(chunk):
            try:
                out = problem.forward(problem.model, part.value)
            except (RuntimeError, TypeError, ValueError, IndexError) as exc:
                if isinstance(exc, NtkscopeInputError):
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise NtkscopeInputError(
                    f"the model failed on {x.name}: {type(exc).__name__}: {first} (inputs are "
                    "passed as given: same dtype/device as the model? a forward= for tuple or "
                    "dict inputs?)") from exc
            out = check_outputs(out, part)
            if o and out.shape[1] != o:
                raise NtkscopeInputError(f"the model's number of outputs per sample changed "
                                         f"between batches of {x.name} ({o} vs {out.shape[1]})")
            o = int(out.shape[1])
    return o


# ---------------------------------------------------------------------------------------------
# Tiling


def _fits(estimate: Estimate, problem: Problem, names: Sequence[str], budget: int,
          n1: int, n2: int | None) -> int:
    """Largest tile side ``t`` (``<= max(n1, n2)``) whose estimate fits ``budget`` (off-diagonal
    tiles ``t x t`` of a symmetric kernel, diagonal tiles ``t``), or 0."""
    symmetric = n2 is None
    diag = problem.output == "diagonal"

    def cost(t: int) -> int:
        if diag:
            return estimate(problem, t, None, names)
        if symmetric:
            return estimate(problem, min(t, n1), min(t, n1) if t < n1 else None, names)
        return estimate(problem, min(t, n1), min(t, n2 or n1), names)

    top = n1 if symmetric or diag else max(n1, n2 or n1)
    if cost(top) <= budget:
        return top
    lo, hi = 0, top  # cost(lo) fits (or lo = 0), cost(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def tile_room(problem: Problem, budget: int, result: int) -> int:
    """Bytes a tile's peak estimate may take under ``budget`` when the kernel takes ``result``.

    The estimates model the peak and were measured to undershoot by up to ~1.4x on small
    ResNet-18 tiles (bench/RESULTS.md), so tiles get :data:`ESTIMATE_MARGIN` of what is left,
    less the parameter-sized gradients of the one-sample checks (one model's size)."""
    return int(ESTIMATE_MARGIN * (budget - result)) - model_bytes(problem.model)


def budget_for(problem: Problem, tile: int, result: int) -> int:
    """The smallest budget whose :func:`tile_room` holds a tile estimated at ``tile`` bytes."""
    return math.ceil((tile + model_bytes(problem.model)) / ESTIMATE_MARGIN) + result


def transposed(tile: torch.Tensor) -> torch.Tensor:
    """``Theta(x_b, x_a)`` from ``Theta(x_a, x_b)``: ``(Nb, Na)`` or ``(Nb, Na, O, O)``."""
    return tile.T if tile.dim() == 2 else tile.permute(1, 0, 3, 2)


def symmetrized(tile: torch.Tensor) -> torch.Tensor:
    """A symmetric tile made exactly symmetric, ``(K + K^T) / 2`` (the methods agree with it up
    to rounding)."""
    return tile if tile.dim() == 1 else (tile + transposed(tile)) / 2


def _tiled(block: Block, problem: Problem, x1: Inputs, x2: Inputs | None,
           names: Sequence[str], t: int, n_out: int) -> torch.Tensor:
    """The kernel from tiles of ``t`` samples; a symmetric kernel from its upper triangle."""
    out = problem.output
    if out == "diagonal":
        return torch.cat([block(problem, part, None, names) for _, part in x1.batched(t)])
    n2 = x1.n if x2 is None else x2.n
    dtype, device = problem.dtype, next(iter(problem.params.values())).device
    shape = (x1.n, n2) if out == "trace" else (x1.n, n2, n_out, n_out)
    kernel = torch.empty(shape, dtype=dtype, device=device)
    rows = x1.batched(t)
    if x2 is None:
        for a, (lo, xa) in enumerate(rows):
            for lo2, xb in rows[a:]:
                if lo2 == lo:
                    kernel[lo:lo + xa.n, lo:lo + xa.n] = symmetrized(block(problem, xa, None,
                                                                           names))
                    continue
                tile = block(problem, xa, xb, names)
                kernel[lo:lo + xa.n, lo2:lo2 + xb.n] = tile
                kernel[lo2:lo2 + xb.n, lo:lo + xa.n] = transposed(tile)
        return kernel
    for lo, xa in rows:
        for lo2, xb in x2.batched(t):
            kernel[lo:lo + xa.n, lo2:lo2 + xb.n] = block(problem, xa, xb, names)
    return kernel


def module_ntk(model: nn.Module, x1: Any, x2: Any = None, *, output: str = "trace",
               params: Sequence[str] | None = None, forward: Forward | None = None,
               method: str | Method = "auto", max_memory: int | str | None = None
               ) -> torch.Tensor:
    r"""Empirical NTK of any PyTorch module (CONVENTIONS section 9).

    With ``f(x)`` the model's output flattened to ``O`` values per sample and ``theta`` the
    differentiated parameters (``P`` scalars),

    * ``output="full"``: ``Theta_{ij,ab} = <df_a(x_i)/dtheta, df_b(x_j)/dtheta>``, shape
      ``(N1, N2, O, O)``;
    * ``output="trace"`` (default): ``Theta_ij = sum_a Theta_{ij,aa}``, shape ``(N1, N2)``:
      a **sum** over the outputs, not a mean (for ``O = 1`` all three agree with the MLP
      kernel of :func:`ntkscope.empirical_ntk`);
    * ``output="diagonal"``: ``Theta(x_i, x_i)`` of the trace kernel, shape ``(N1,)``, computed
      without forming ``N1 x N1`` (``x2`` must be None).

    Args:
        model: any ``nn.Module``, used as it is (its parameters, buffers, dtype, device and
            mode: call ``model.eval()`` first if it has BatchNorm or dropout).
        x1, x2: inputs, a tensor or a tuple/list/dict of tensors split along the first axis
            (integer token ids included; other leaves passed unchanged). ``x2`` None: the
            symmetric kernel of ``x1`` (only its upper triangle is computed). ``x2`` must
            have the structure of ``x1``.
        output: ``"trace"``, ``"full"`` or ``"diagonal"``.
        params: names (as in ``model.named_parameters()``) of the parameters to differentiate;
            default all that require grad. A tied parameter counts once.
        forward: ``forward(model, x) -> Tensor`` replacing ``model(x)`` (tuple inputs are not
            unpacked for you: ``lambda m, x: m(*x)``; ``lambda m, b: m(**b).logits``).
        method: ``"auto"``, ``"layerwise"``, ``"jacobian"`` or ``"ntvp"`` (:class:`Method`).
        max_memory: peak budget of the computation, bytes or a string such as ``"2GiB"``;
            default half of the free memory of the parameters' device (GPU or RAM).

    Methods and their cost for ``N1 = N2 = N`` samples (``A``: activations per sample; ``F``:
    one sample's forward cost, about ``P`` for dense layers; before tiling):

    ============  =========================================  =====================================
    method        time                                       memory
    ============  =========================================  =====================================
    layerwise     ``N O`` batched backward passes + per      ``N`` (saved activations + captured
                  layer the cheaper of the position Gram     layer inputs / output gradients) +
                  (``N^2 G p^2 (d_in + O d_out)``) and       Gram state; never ``N O P`` for
                  per-sample gradients (``N O D`` to form,   layers on the Gram route
                  ``N^2 O D`` to contract)
    jacobian      ``N O F`` (per-sample Jacobians,           ``N O P`` (+ ``N O A`` working set)
                  ``vmap(jacrev)``) + ``N^2 O P`` ("trace")
                  or ``N^2 O^2 P`` ("full") contraction
    ntvp          ``N^2 O F`` (a ``vjp`` per sample and      ``N O P`` + ``N^2 O`` x the largest
                  output, a batched ``jvp`` per vector)      activation
    ============  =========================================  =====================================

    ``"auto"`` takes "layerwise" when it handles any parameter (``nn.Linear``, convolutions,
    transposed convolutions, embeddings, norm affines, biases) and sends the others (a raw
    parameter used in ``forward``, packed attention projections, tied weights, a module called
    twice) to the Jacobian path for those parameters alone; else "jacobian". ``"ntvp"`` is
    only preferable where ``O P`` per sample does not fit but ``N`` is small.

    Memory: each method estimates the peak of a tile of ``t`` x ``t`` sample pairs; the largest
    ``t`` whose estimate fits ``max_memory`` (less the kernel itself) is used, tiles of a
    symmetric kernel cover only its upper triangle (the lower is its transpose). Smaller
    budgets cost time (the Jacobian methods recompute per-sample derivatives for every tile
    row). A budget too small for one sample is an :class:`~ntkscope.NtkscopeInputError` stating
    the estimate.

    Raises:
        NtkscopeInputError: no trainable parameters; unknown or frozen ``params``; inputs with
            no tensor, differing sample counts, or ``x2`` of another structure than ``x1``;
            outputs not a tensor of shape ``(N, ...)`` or not finite; a model that couples
            samples (BatchNorm in training mode, dropout in training mode, or any ``f(x)[i]``
            that changes with the other samples of the batch): call ``model.eval()``.

    Returns:
        The kernel, detached, in the parameters' dtype and on their device.
    """
    problem = build_problem(model, params, forward, output)
    chosen = _method(method)
    a, b = problem.inputs(x1, x2)
    check_modules(problem.model)
    _devices(problem, a)
    if b is not None:
        _devices(problem, b)
    device = next(iter(problem.params.values())).device
    budget = default_budget(device) if max_memory is None else parse_memory(max_memory)

    n_out = _check_outputs(problem, a.take(0, 1), 1)  # model errors on the inputs first
    prof = activation_profile(problem, a)
    problem.cache["probe"] = a
    check_coupling(problem, a)
    if chosen is Method.AUTO:
        chosen = choose(problem, a)
    # Every output must be validated (shape, finite) before it enters a kernel. The layer-wise
    # capture validates the outputs of every sample it runs (Problem.outputs); only the other
    # methods need this separate no-grad pass (which would cost the layer-wise path a forward).
    lw = _layerwise() if chosen is Method.LAYERWISE else None
    if lw is None or not lw.plan(problem, problem.names, a).parts:
        check_chunk = max(1, budget // (problem.itemsize * 4 * max(prof.total, 1)))
        n_out = _check_outputs(problem, a, check_chunk)
        if b is not None:
            _check_outputs(problem, b, check_chunk)
    block, estimate = method_functions(chosen)
    n2 = None if b is None else b.n
    result = {"trace": a.n * (n2 or a.n), "diagonal": a.n,
              "full": a.n * (n2 or a.n) * n_out * n_out}[output] * problem.itemsize
    room = tile_room(problem, budget, result)
    names = problem.names
    t = _fits(estimate, problem, names, room, a.n, n2) if room > 0 else 0
    if t == 0:
        need = budget_for(problem, estimate(problem, 1, None if b is None else 1, names), result)
        raise NtkscopeInputError(
            f"max_memory={budget} bytes ({human(budget)}) is too small for method "
            f"{chosen.value!r}: the kernel itself takes {human(result)} and one sample needs "
            f"about {human(need)} in all; raise max_memory (or use fewer samples, "
            "output='trace')")
    top = a.n if b is None or output == "diagonal" else max(a.n, b.n)
    try:
        with torch.enable_grad():  # the methods differentiate, whatever the caller's mode
            if t >= top:
                kernel = block(problem, a, b, names)
                if b is None:
                    kernel = symmetrized(kernel)
            else:
                kernel = _tiled(block, problem, a, b, names, t, n_out)
    finally:
        _jacobian.release(problem)
    return kernel.detach()
