"""Method "layerwise": per-layer Gram contractions of captured layer inputs and output gradients.

The structured trick of ntkscope's MLP engine (CONVENTIONS section 3, ``Theta = sum_l (D_l
D_l^T) ∘ (A_{l-1} A_{l-1}^T + 1)``) for any model built from supported layers. Forward hooks
capture each supported module's input ``a`` (what its weight multiplies) and output ``y``;
one backward pass per output ``o`` gives ``g = df_o/dy`` for all samples of a tile at once
(samples are independent). A weight used as ``y_p = W a_p`` over positions ``p`` contributes

    <df_o(x_i)/dW, df_o'(x_j)/dW> = sum_{p,q} (g_{i,o,p} . g_{j,o',q}) (a_{i,p} . a_{j,q}),

formed per layer by the cheaper (:func:`route`) of

* the **position Gram**: ``Na Nb G P^2 (d_in + O d_out)`` multiply-adds for "trace"; the
  input Gram ``a_i . a_j`` is formed once and reused for every output, and a bias adds 1 to
  it;
* **materialized per-sample gradients** ``J_{i,o} = sum_p g_{i,o,p} a_{i,p}^T``:
  ``N O P D`` to form (``D`` the weight's size), ``Na Nb O D`` to contract ("trace").

Layers: ``nn.Linear`` (any leading shape), ``Conv1d/2d/3d``, ``ConvTranspose1d/2d/3d``,
``Embedding``, the affine parameters of ``BatchNorm/LayerNorm/GroupNorm/RMSNorm``, biases
(:mod:`ntkscope.generic._layers`). Everything else with parameters (a raw ``nn.Parameter``
used in ``forward``, ``MultiheadAttention``'s packed projections, a module called twice, tied
weights, unsupported options) goes to the Jacobian path (:func:`ntkscope.generic._jacobian
.block`) for those parameters alone and is added. Which parameters the hooks explain is
checked once per problem (:func:`plan`): for a random cotangent on one sample, the gradient
reconstructed from the captured factors must equal autograd's.

Outputs: "trace" (``O x O`` never formed), "full" (``(Na, Nb, O, O)``), "diagonal" (``(Na,)``,
no ``Na x Na``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ntkscope.generic import _jacobian
from ntkscope.generic._inputs import Inputs
from ntkscope.generic._layers import CHUNK_ELEMENTS, Dims, LayerCall, gram, handler
from ntkscope.generic._problem import Problem

__all__ = ["Plan", "block", "estimate", "plan", "route"]

# Bytes of memory traffic counted as one multiply-add in the route's cost model.
_BYTE_COST = 1.0
# Largest number of output-gradient scalars (all layers, both sides) held for one chunk of
# outputs.
GRAD_ELEMENTS = 1 << 25
# One batched backward pass (``is_grads_batched``) per chunk of outputs instead of one pass
# per output: measured no faster on CPU (float64, the benchmark CNN), so off.
BATCHED = False
# Measured forward graph times this: the estimate's allowance for unhooked buffers.
GRAPH_SLACK = 1.75


@dataclass
class Part:
    """One supported module (its ``path`` in the model) and the parameters of ``names`` it
    owns (``weight``/``bias``: their names in the problem, or None). ``clone_in`` /
    ``clone_out``: the module's input or output is modified in place later in the forward, so
    the capture keeps a copy."""

    path: str
    cls: type[LayerCall]
    weight: str | None
    bias: str | None
    clone_in: bool = False
    clone_out: bool = False
    dims: Dims | None = None
    x_elems: int = 0
    y_elems: int = 0

    @property
    def names(self) -> list[str]:
        return [n for n in (self.weight, self.bias) if n is not None]


@dataclass
class Plan:
    """Which parameters the layer-wise path handles (``parts``) and which go to the Jacobian
    path (``fallback``, with ``reasons``); per-sample sizes for :func:`estimate`."""

    parts: list[Part]
    fallback: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    outputs: int = 0
    graph_elems: int = 0
    checked: int = 0

    def drop(self, part: Part, reason: str, names: Sequence[str] | None = None) -> None:
        """Send ``names`` (default: all of the part's) to the Jacobian path; a part left
        without parameters leaves the plan."""
        for n in list(part.names if names is None else names):
            self.fallback.append(n)
            self.reasons[n] = reason
            if part.weight == n:
                part.weight = None
            if part.bias == n:
                part.bias = None
        if not part.names and part in self.parts:
            self.parts.remove(part)


class _Redo(Exception):
    """A capture found an in-place modification (retry with copies) or a part to drop."""


# ---------------------------------------------------------------------------------------------
# Capture


@dataclass
class _Capture:
    f: Tensor
    calls: list[LayerCall]


def _capture(problem: Problem, x: Inputs, pl: Plan) -> _Capture:
    """Run the forward on ``x`` with hooks on the plan's modules; ``(N, O)`` outputs and one
    :class:`LayerCall` per part. Raises :class:`_Redo` after updating the plan when a module
    was not called exactly once with the samples on its first axis, or a captured tensor was
    modified in place (then the next capture copies it)."""
    parts = list(pl.parts)
    calls: list[LayerCall | None] = [None] * len(parts)
    counts = [0] * len(parts)
    versions: list[tuple[int, int]] = [(0, 0)] * len(parts)

    def make(k: int, part: Part) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
            counts[k] += 1
            if counts[k] > 1 or not args or not isinstance(args[0], Tensor) \
                    or not isinstance(out, Tensor):
                return None
            xin = args[0].detach()
            if part.clone_in:
                xin = xin.clone()
            calls[k] = part.cls(module, xin, out)
            versions[k] = (xin._version, out._version)
            return out.clone() if part.clone_out else None
        return hook

    handles = [problem.model.get_submodule(p.path).register_forward_hook(make(k, p),
                                                                          prepend=True)
               for k, p in enumerate(parts)]
    try:
        with torch.enable_grad():
            f = problem.outputs(x)
    finally:
        for h in handles:
            h.remove()
    redo = False
    for k, part in enumerate(parts):
        call = calls[k]
        if counts[k] != 1 or call is None:
            what = "never called" if counts[k] == 0 else f"called {counts[k]} times"
            kind = type(problem.model.get_submodule(part.path)).__name__
            pl.drop(part, f"{kind} {what} in one forward")
            redo = True
        elif call.y.dim() == 0 or call.y.shape[0] != x.n or call.x.dim() == 0 \
                or call.x.shape[0] != x.n or not call.y.requires_grad:
            pl.drop(part, "its input/output do not have the samples on their first axis")
            redo = True
        else:
            xv, yv = versions[k]
            if call.x._version != xv:
                part.clone_in = redo = True
            if call.y._version != yv:
                part.clone_out = redo = True
    if redo:
        raise _Redo
    return _Capture(f, [c for c in calls if c is not None])


def _captured(problem: Problem, x: Inputs, pl: Plan) -> _Capture:
    """:func:`_capture`, retried until the plan is stable."""
    while True:
        try:
            return _capture(problem, x, pl)
        except _Redo:
            continue


# ---------------------------------------------------------------------------------------------
# Plan


def plan(problem: Problem, names: Sequence[str], x: Inputs) -> Plan:
    """Which of ``names`` the layer-wise path handles (cached per problem and ``names``).

    A parameter is handled when it is the ``weight`` or ``bias`` of a supported module (exact
    type) that owns it alone, the module is called once per forward with the samples on the
    first axis, and on a random cotangent of sample 0 of ``x`` (run with its first two
    samples) the gradient reconstructed from sample 0's captured factors equals autograd's (so
    no other use of the parameter, and no mixing of samples, is missed). A plan checked on one
    sample only is redone when two are available.
    """
    key = ("layerwise.plan", tuple(names))
    cached = problem.cache.get(key)
    if cached is not None and (cached.checked >= 2 or x.n < 2):
        return cached
    stamp = _fingerprint(problem, names)
    per_model = _PLANS.setdefault(problem.model, {})
    cached = per_model.get(stamp)
    if cached is not None and (cached.checked >= 2 or x.n < 2):
        problem.cache[key] = cached
        return cached
    wanted = {id(problem.params[n]): n for n in names}
    owners: dict[int, int] = {}
    for module in problem.model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    pl = Plan([], [])
    for path, module in problem.model.named_modules():
        own = {a: wanted[id(p)] for a, p in module.named_parameters(recurse=False)
               if id(p) in wanted}
        if not own:
            continue
        cls, reason = handler(module)
        part = Part(path, cls or LayerCall, own.get("weight"), own.get("bias"))
        pl.parts.append(part)
        for attr, name in own.items():
            why = reason
            if why is None and attr not in ("weight", "bias"):
                why = f"parameter {attr!r} of {type(module).__name__}"
            if why is None and owners[id(problem.params[name])] > 1:
                why = "shared by several modules (tied)"
            if why is not None:
                pl.drop(part, why, [name])
    taken = {n for part in pl.parts for n in part.names} | set(pl.fallback)
    for n in names:
        if n not in taken:
            pl.fallback.append(n)
            pl.reasons[n] = "not a weight or bias of a supported layer"
    pl.checked = min(2, x.n)
    if pl.parts:
        _verify(problem, pl, x.take(0, pl.checked))
    pl.fallback = [n for n in names if n in set(pl.fallback)]
    problem.cache[key] = per_model[stamp] = pl
    return pl


# Plans per model, keyed by :func:`_fingerprint` (a plan holds no reference to the model).
_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Plan]] = \
    weakref.WeakKeyDictionary()


def _fingerprint(problem: Problem, names: Sequence[str]) -> tuple[Any, ...]:
    """What a plan depends on: the forward function, the modules (identity, type, mode) and
    the differentiated parameters (identity, shape, dtype)."""
    modules = tuple((path, id(m), type(m), m.training)
                    for path, m in problem.model.named_modules())
    params = tuple((n, id(problem.params[n]), tuple(problem.params[n].shape),
                    problem.params[n].dtype) for n in names)
    return (id(problem.forward), modules, params)


def _verify(problem: Problem, pl: Plan, x: Inputs) -> None:
    """Check every part's reconstructed gradient against autograd on a random cotangent of
    sample 0; drop the parts (or their parameters) that disagree. Records sizes per sample."""
    saved: dict[tuple[int, int, tuple[int, ...]], int] = {}
    param_ptrs = {p.untyped_storage().data_ptr() for p in problem.model.parameters()}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs:
            saved[(ptr, t.storage_offset(), tuple(t.shape))] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cap = _captured(problem, x, pl)
    if not pl.parts:
        return
    pl.graph_elems = math.ceil(sum(saved.values()) / x.n)
    pl.outputs = int(cap.f.shape[1])
    gen = torch.Generator(device=cap.f.device).manual_seed(0)
    v = torch.zeros_like(cap.f)
    v[0] = torch.randn(cap.f.shape[1], generator=gen, device=cap.f.device, dtype=cap.f.dtype)
    pnames = [n for part in pl.parts for n in part.names]
    grads = torch.autograd.grad(cap.f, [c.y for c in cap.calls]
                                + [problem.params[n] for n in pnames],
                                grad_outputs=v, allow_unused=True)
    true = dict(zip(pnames, grads[len(cap.calls):], strict=True))
    tol = math.sqrt(torch.finfo(cap.f.dtype).eps)
    for part, call, g in zip(list(pl.parts), cap.calls, grads[:len(cap.calls)], strict=True):
        g = torch.zeros_like(call.y) if g is None else g
        part.dims = call.dims()
        part.x_elems = call.x[0].numel()
        part.y_elems = call.y[0].numel()
        bad = []
        one = part.cls(call.module, call.x[:1], call.y[:1])
        def bias(gi: Tensor, one: LayerCall = one) -> Tensor:
            return one.bias_grads(gi[:, None])

        for name, rec in ((part.weight, one.weight_grads), (part.bias, bias)):
            if name is None:
                continue
            r = rec(g[:1]).reshape(-1)
            t = true[name]
            t = torch.zeros_like(r) if t is None else t.reshape(-1)
            if r.shape != t.shape or not bool(
                    torch.linalg.vector_norm(r - t) <= tol * torch.maximum(
                        torch.linalg.vector_norm(r), torch.linalg.vector_norm(t)) + 1e-300):
                bad.append(name)
        if bad:
            pl.drop(part, "used outside the layer's own call (gradient check failed)", bad)


# ---------------------------------------------------------------------------------------------
# Route choice


def _mode_sizes(mode: str, na: int, nb: int | None, outputs: int) -> tuple[int, int, int]:
    """``(pairs, rows, output pairs)`` of a tile: kernel entries per output pair, samples
    whose gradients are formed, and ``O`` ("trace"/"diagonal") or ``O^2`` ("full")."""
    if mode == "diagonal":
        return na, na, outputs
    pairs = na * (na if nb is None else nb)
    rows = na + (0 if nb is None else nb)
    return pairs, rows, outputs * outputs if mode == "full" else outputs


def route(dims: Dims, mode: str, na: int, nb: int | None, outputs: int) -> str:
    """``"gram"`` or ``"materialized"``: the cheaper route for one layer on a tile (multiply-
    adds plus the bytes held; ``nb`` None: symmetric).

    Gram: ``pairs G P^2 (da + O db)`` (``O^2`` and one more ``O^2`` product for "full");
    materialized: ``rows O D P`` to form ``J``, ``pairs O D`` to contract (``O^2`` for "full").
    """
    if not dims.gram:
        return "materialized"
    pairs, rows, oo = _mode_sizes(mode, na, nb, outputs)
    g, p = dims.groups, dims.positions
    cost_gram = pairs * g * p * p * (dims.da + oo * dims.db + (oo if mode == "full" else 0))
    mem_gram = 2 * pairs * g * p * p + (rows * outputs * g * p * dims.db if mode == "full" else 0)
    cost_mat = rows * outputs * dims.grad_flops + pairs * oo * dims.dw
    mem_mat = rows * (outputs if mode == "full" else 1) * dims.dw
    if cost_gram + _BYTE_COST * mem_gram <= cost_mat + _BYTE_COST * mem_mat:
        return "gram"
    return "materialized"


# ---------------------------------------------------------------------------------------------
# Accumulators (one per part and tile)


class _Acc:
    """Accumulates one part's kernel contribution over chunks of outputs."""

    def __init__(self, part: Part, ca: LayerCall, cb: LayerCall | None, mode: str,
                 how: str) -> None:
        self.part, self.ca, self.cb, self.mode = part, ca, cb, mode
        self.gram = how == "gram" and part.weight is not None and ca.dims().gram
        # parameters formed as per-sample gradients
        self.mat_weight = part.weight is not None and not self.gram
        self.mat_bias = part.bias is not None and not (self.gram and ca.bias_in_gram)
        self.ka: Tensor | None = None
        self.kb: Tensor | None = None
        self.total: Tensor | None = None
        # "full": per output chunk, the materialized blocks (N, c, d) of both sides; per
        # output, the gradient-side factors of the Gram route
        self.mats: list[tuple[list[Tensor], list[Tensor]]] = []
        self.factors: list[tuple[Tensor, Tensor]] = []

    def _add(self, t: Tensor) -> None:
        self.total = t if self.total is None else self.total + t

    def _input_gram(self) -> Tensor:
        if self.mode == "diagonal":
            k = self.ca.a_gram_diag()
        else:
            k = self.ca.a_gram(self.cb)
        if self.part.bias is not None and self.ca.bias_in_gram:
            k = k + 1
        return k

    def step(self, ga: Tensor, gb: Tensor | None) -> None:
        """Output gradients ``(N, c, ...)`` of a chunk of outputs on both sides (``gb`` None:
        symmetric)."""
        if self.gram:
            if self.ka is None:
                self.ka = self._input_gram()
            for k in range(ga.shape[1]):
                ba = self.ca.b_factor(ga[:, k])
                bb = None if gb is None else self.cb.b_factor(gb[:, k])
                if self.mode == "full":
                    self.factors.append((ba, ba if bb is None else bb))
                    continue
                kb = torch.matmul(ba, ba.mT) if self.mode == "diagonal" else gram(ba, bb)
                self.kb = kb if self.kb is None else self.kb.add_(kb)
        blocks_a: list[Tensor] = []
        blocks_b: list[Tensor] = []

        def take(ja: Tensor, jb: Tensor | None) -> None:
            if self.mode == "full":
                blocks_a.append(ja)
                blocks_b.append(ja if jb is None else jb)
            else:
                self._add(_vector_term(ja, jb, self.mode))

        if self.mat_weight:
            chunks_b = None if gb is None else self.cb.weight_grad_chunks(gb)
            for ja in self.ca.weight_grad_chunks(ga):
                take(ja, None if chunks_b is None else next(chunks_b))
        if self.mat_bias:
            take(self.ca.bias_grads(ga), None if gb is None else self.cb.bias_grads(gb))
        if blocks_a:
            self.mats.append((blocks_a, blocks_b))

    def finish(self) -> Tensor | None:
        """The part's contribution (``None``: nothing was differentiable)."""
        if self.gram and self.mode != "full" and self.ka is not None and self.kb is not None:
            axes = (0, 2, 3) if self.mode == "diagonal" else (0, 2, 4)
            self._add((self.ka * self.kb).sum(axes))
        if self.mode == "full":
            if self.mats:
                self._add(self._full_materialized())
            if self.factors:
                self._add(self._full_gram())
        return self.total

    def _full_materialized(self) -> Tensor:
        """``sum_d J_{i,o,d} J_{j,o',d}``: ``(Na, Nb, O, O)``."""
        total: Tensor | None = None
        for k in range(len(self.mats[0][0])):
            ja = torch.cat([m[0][k] for m in self.mats], 1)  # (Na, O, d)
            jb = torch.cat([m[1][k] for m in self.mats], 1)
            na, o, d = ja.shape
            nb = jb.shape[0]
            t = torch.matmul(ja.reshape(na * o, d), jb.reshape(nb * o, d).mT)
            t = t.reshape(na, o, nb, o).permute(0, 2, 1, 3)
            total = t if total is None else total + t
        assert total is not None
        return total

    def _full_gram(self) -> Tensor:
        """``sum_{g,p,q} K_a[g,i,p,j,q] (B_{i,o,g,p} . B_{j,o',g,q})``: ``(Na, Nb, O, O)``."""
        assert self.ka is not None
        ba = torch.stack([f[0] for f in self.factors], 0)  # (O, G, Na, P, db)
        bb = torch.stack([f[1] for f in self.factors], 0)
        o, g, na, p, db = ba.shape
        nb, q = bb.shape[2], bb.shape[3]
        right = bb.permute(1, 2, 3, 0, 4).reshape(g, nb * q * o, db)
        rows = []
        for oa in range(o):
            m = torch.matmul(ba[oa].reshape(g, na * p, db), right.mT)
            m = m.reshape(g, na, p, nb, q, o) * self.ka[..., None]
            rows.append(m.sum((0, 2, 4)))  # (Na, Nb, O')
        return torch.stack(rows, 2)


def _vector_term(ja: Tensor, jb: Tensor | None, mode: str) -> Tensor:
    """Blocks ``(N, c, d)`` of per-sample gradients: ``sum_{o,d} ja . jb`` ("trace"; ``jb``
    None: ``ja`` with itself) or ``sum |ja_i|^2`` ("diagonal")."""
    if mode == "diagonal":
        return (ja * ja).sum((1, 2))
    a = ja.reshape(ja.shape[0], -1)
    return torch.matmul(a, (a if jb is None else jb.reshape(jb.shape[0], -1)).mT)


def output_chunk(pl: Plan, rows: int, outputs: int) -> int:
    """Outputs whose gradients are taken together: as many as keep the gradients of every
    captured layer (``rows`` samples) under :data:`GRAD_ELEMENTS` (at least one)."""
    per_output = rows * max(1, sum(p.y_elems for p in pl.parts))
    return max(1, min(outputs, GRAD_ELEMENTS // per_output))


# ---------------------------------------------------------------------------------------------
# Block


def _zeros(problem: Problem, na: int, nb: int | None, outputs: int, device: torch.device
           ) -> Tensor:
    shape: tuple[int, ...]
    if problem.output == "diagonal":
        shape = (na,)
    elif problem.output == "trace":
        shape = (na, na if nb is None else nb)
    else:
        shape = (na, na if nb is None else nb, outputs, outputs)
    return torch.zeros(shape, dtype=problem.dtype, device=device)


def _output_grads(cap: _Capture, lo: int, hi: int, last: bool) -> list[Tensor]:
    """``d f_o / d y`` for the outputs ``o = lo..hi-1`` and every captured layer output ``y``:
    ``(N, hi - lo, *y.shape[1:])`` each, by one backward pass per output (the graph is freed after
    the ``last`` one)."""
    ys = [c.y for c in cap.calls]
    if BATCHED and hi - lo > 1:
        eye = torch.zeros(hi - lo, *cap.f.shape, dtype=cap.f.dtype, device=cap.f.device)
        eye[torch.arange(hi - lo), :, torch.arange(lo, hi)] = 1
        gs = torch.autograd.grad(cap.f, ys, eye, retain_graph=not last, allow_unused=True,
                                 is_grads_batched=True)
        return [torch.zeros(y.shape[0], hi - lo, *y.shape[1:], dtype=y.dtype, device=y.device)
                if g is None else g.transpose(0, 1) for y, g in zip(ys, gs, strict=True)]
    per: list[list[Tensor]] = [[] for _ in ys]
    for o in range(lo, hi):
        gs = torch.autograd.grad(cap.f[:, o].sum(), ys, retain_graph=not (last and o == hi - 1),
                                 allow_unused=True)
        for k, (y, g) in enumerate(zip(ys, gs, strict=True)):
            per[k].append(torch.zeros_like(y) if g is None else g)
    return [torch.stack(p, 1) if len(p) > 1 else p[0][:, None] for p in per]


def _layer_block(problem: Problem, pl: Plan, xa: Inputs, xb: Inputs | None) -> Tensor:
    """The layer-wise contribution of ``pl.parts`` on one tile."""
    mode = problem.output
    while True:
        parts = list(pl.parts)
        cap_a = _captured(problem, xa, pl)
        cap_b = None if xb is None else _captured(problem, xb, pl)
        if [id(p) for p in pl.parts] == [id(p) for p in parts]:
            break
    outputs = int(cap_a.f.shape[1])
    nb = None if xb is None else xb.n
    accs = []
    for k, part in enumerate(parts):
        ca = cap_a.calls[k]
        cb = None if cap_b is None else cap_b.calls[k]
        accs.append(_Acc(part, ca, cb, mode, route(ca.dims(), mode, xa.n, nb, outputs)))
    caps = [cap_a] if cap_b is None else [cap_a, cap_b]
    chunk = output_chunk(pl, xa.n + (nb or 0), outputs)
    for lo in range(0, outputs, chunk):
        hi = min(outputs, lo + chunk)
        grads = [_output_grads(cap, lo, hi, hi == outputs) for cap in caps]
        for k, acc in enumerate(accs):
            acc.step(grads[0][k], None if cap_b is None else grads[1][k])
        del grads
    del caps, cap_a, cap_b
    out = _zeros(problem, xa.n, nb, outputs, xa.device)
    for acc in accs:
        t = acc.finish()
        if t is not None:
            out += t
    return out


def block(problem: Problem, xa: Inputs, xb: Inputs | None, names: Sequence[str]) -> Tensor:
    """The kernel restricted to the parameters ``names`` on the tile ``xa x xb`` (``xb`` None:
    ``xa`` with itself): "full" ``(Na, Nb, O, O)``, "trace" ``(Na, Nb)``, "diagonal"
    ``(Na,)``. Parameters the layer-wise path cannot handle (:func:`plan`) are computed by
    :func:`ntkscope.generic._jacobian.block` and added."""
    pl = plan(problem, names, xa)
    out: Tensor | None = None
    if pl.parts:
        out = _layer_block(problem, pl, xa, xb)
    if pl.fallback:
        extra = _jacobian.block(problem, xa, xb, pl.fallback)
        out = extra if out is None else out + extra
    if out is None:
        with torch.no_grad():
            outputs = problem.outputs(xa.take(0, 1)).shape[1]
        out = _zeros(problem, xa.n, None if xb is None else xb.n, outputs, xa.device)
    return out


# ---------------------------------------------------------------------------------------------
# Memory


def estimate(problem: Problem, na: int, nb: int | None, names: Sequence[str],
             x: Inputs | None = None) -> int:
    """Peak bytes of :func:`block` on a tile of ``na x nb`` samples (``nb`` None: symmetric).

    The saved forward graphs of both sides (measured per sample), one output's gradients of
    every captured layer, the largest transient (patches, a chunk of per-sample gradients),
    the route state per layer (input and gradient Grams; for "full" the stored factors of all
    outputs), the kernel tile, plus the Jacobian path's estimate for the fallback parameters.
    ``x``: inputs to plan with the first time (default ``problem.cache["probe"]``).
    """
    key = ("layerwise.plan", tuple(names))
    pl = problem.cache.get(key)
    if pl is None:
        probe = x if x is not None else problem.cache.get("probe")
        if probe is None:
            raise ValueError("estimate: no cached plan and no probe input; pass x")
        pl = plan(problem, names, probe)
    mode = problem.output
    outputs = max(pl.outputs, 1)
    rows = na + (0 if nb is None or mode == "diagonal" else nb)
    widest = max(na, nb or 0)
    chunk = output_chunk(pl, rows, outputs)
    pairs, _, oo = _mode_sizes(mode, na, nb, outputs)
    y_total = sum(p.y_elems for p in pl.parts)
    y_max = max([p.y_elems for p in pl.parts] or [0])
    # saved graph (and copies of outputs modified in place); the output gradients of a chunk
    # (per output and stacked) and the backward's own intermediate gradients
    # (the saved tensors measured by the plan, times GRAPH_SLACK for what the hooks do not see:
    # outputs kept alive without being saved, allocator slack)
    elems = rows * (math.ceil(GRAPH_SLACK * pl.graph_elems)
                    + sum(p.y_elems for p in pl.parts if p.clone_out))
    grads = rows * ((2 * chunk if chunk > 1 else 1) * y_total + 4 * y_max)
    transient = 0
    state = 0
    for part in pl.parts:
        dims = part.dims
        if dims is None:
            continue
        how = route(dims, mode, na, nb, outputs)
        # patches (input side; twice: unfolded, then laid out for the matmul) and a reordered
        # copy of the chunk's gradients (gradient side)
        unfold = 2 * widest * dims.groups * dims.positions * dims.da \
            + chunk * widest * part.y_elems
        if how == "gram" and part.weight is not None and dims.gram:
            gp2 = dims.groups * dims.positions ** 2
            state += 2 * pairs * gp2
            if mode == "full":
                state += rows * outputs * dims.groups * dims.positions * dims.db
                transient = max(transient, pairs * gp2 * outputs * 2)
            transient = max(transient, unfold + pairs * gp2)
        else:
            block_elems = min(widest * chunk * dims.dw // dims.groups, CHUNK_ELEMENTS)
            transient = max(transient, unfold + 2 * block_elems)
            if mode == "full":
                state += rows * outputs * (dims.dw + dims.dbias)
                transient = max(transient, 2 * pairs * oo)
    elems += grads + transient + state
    kernel = _zeros_elems(mode, na, nb, outputs)
    total = (elems + 2 * kernel) * problem.itemsize
    if pl.fallback:
        total += _jacobian.estimate(problem, na, nb, pl.fallback)
    return int(total)


def _zeros_elems(mode: str, na: int, nb: int | None, outputs: int) -> int:
    if mode == "diagonal":
        return na
    n2 = na if nb is None else nb
    return na * n2 * (outputs * outputs if mode == "full" else 1)
