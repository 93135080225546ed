"""Batches of independent fully connected networks (CONVENTIONS section 1).

A network with input dimension ``M0``, ``L`` hidden layers of widths ``M1..ML`` and a scalar
output computes

    h^1 = W^1 x + b^1,   x^l = phi(h^l),   h^{l+1} = W^{l+1} x^l + b^{l+1},   f(x) = h^{L+1}

in the standard parameterization ``W^l_ij ~ N(0, sw2 / M_{l-1})``, ``b^l_i ~ N(0, sb2)`` (the
same ``(sw2, sb2)`` for every layer, readout included). Biases are trainable parameters even
when ``sb2 = 0``.

:class:`MLP` holds the architecture only; the parameters of ``B`` independent networks live in
:class:`Params` as stacked tensors, ``weights[l]`` of shape ``(B, M_{l+1}, M_l)`` (the matrix
``W^{l+1}`` of the conventions) and ``biases[l]`` of shape ``(B, M_{l+1})``, ``l = 0..L``.

The passes themselves are those of the scaled-pass engine (:mod:`ntkscope.engine`) over the
dense layers of :class:`Params`. Deep networks in the chaotic phase grow exponentially with
depth (ReLU with ``sw2 = 4`` doubles ``|x^l|^2`` and ``|delta^l|^2`` every layer), ordered
ones shrink. Every pass is therefore run first on plain values while a :class:`RangeMonitor`
records the row norms of the layer inputs and backpropagated signals; only if one of them
leaves ``[2**-k, 2**k]`` (``k = 248`` in float64, ``24`` in float32) or a result is not
finite, the pass is repeated in a rescaled domain: every row (one network, one input) of a
layer input and of a signal is stored as a tensor of magnitude below one times an exact
power of two whose exponent is carried separately. For positively homogeneous activations
(``phi(c h) = c phi(h)`` for ``c > 0``: ReLU, leaky ReLU, identity) the whole forward pass
is rescaled; other activations are evaluated on the true pre-activations (``tanh`` and
``erf`` are bounded, so only their backward signals need rescaling). Values are materialized
at the end; a value outside the dtype's range raises :class:`NtkscopeRangeError` instead of
returning ``inf``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ntkscope.activations import Activation, TensorFn, get_activation
from ntkscope.engine import (
    DeltaVisitor,
    DenseLayer,
    InputVisitor,
    NtkscopeRangeError,
    RangeMonitor,
    backward,
    forward,
    guarded,
    materialize,
    network_seed,
)
from ntkscope.spec import NetworkSpec
from ntkscope.validation import (
    NtkscopeInputError,
    nonnegative,
    positive,
    positive_int,
)
from ntkscope.validation import (
    widths as check_widths,
)

__all__ = [
    "MLP",
    "Elementwise",
    "ForwardCache",
    "NtkscopeRangeError",
    "Params",
    "RangeMonitor",
    "network_seed",
]

R = TypeVar("R")


# ---------------------------------------------------------------------------------------------
# Argument checks


def check_dtype(dtype: Any) -> torch.dtype:
    """A floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise NtkscopeInputError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return dtype


def check_device(device: Any) -> torch.device:
    """A ``torch.device`` (or its name) that exists on this machine."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError, ValueError):
        raise NtkscopeInputError(f"device: not a torch device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NtkscopeInputError("device: CUDA was requested but is not available")
    return dev


def _seed(name: str, value: Any) -> int:
    return positive_int(name, value, minimum=0)


# ---------------------------------------------------------------------------------------------


@dataclass
class Params:
    """Parameters of ``B`` independent networks with the same architecture.

    Attributes:
        weights: ``weights[l]`` of shape ``(B, M_{l+1}, M_l)`` is ``W^{l+1}``, ``l = 0..L``.
        biases: ``biases[l]`` of shape ``(B, M_{l+1})`` is ``b^{l+1}``.
    All tensors share one floating dtype and one device.
    """

    weights: list[Tensor]
    biases: list[Tensor]

    def __post_init__(self) -> None:
        ws, bs = list(self.weights), list(self.biases)
        if not ws or len(ws) != len(bs):
            raise NtkscopeInputError(
                "params: expected equally many (at least one) weight matrices and bias vectors"
            )
        if not all(isinstance(t, Tensor) for t in ws + bs):
            raise NtkscopeInputError("params: weights and biases must be torch tensors")
        first = ws[0]
        if first.ndim != 3 or first.shape[0] < 1:
            raise NtkscopeInputError("params: weights[0] must have shape (batch >= 1, M1, M0)")
        batch, dtype, device = first.shape[0], first.dtype, first.device
        if not dtype.is_floating_point:
            raise NtkscopeInputError(f"params: expected floating tensors, got {dtype}")
        fan_in = first.shape[2]
        for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
            if w.dtype != dtype or b.dtype != dtype or w.device != device or b.device != device:
                raise NtkscopeInputError("params: all tensors must share one dtype and device")
            if w.ndim != 3 or w.shape[0] != batch or w.shape[2] != fan_in:
                raise NtkscopeInputError(
                    f"params: weights[{l}] has shape {tuple(w.shape)}, expected "
                    f"({batch}, M, {fan_in})"
                )
            if tuple(b.shape) != (batch, w.shape[1]):
                raise NtkscopeInputError(
                    f"params: biases[{l}] has shape {tuple(b.shape)}, expected "
                    f"({batch}, {w.shape[1]})"
                )
            fan_in = w.shape[1]
        self.weights, self.biases = ws, bs

    @property
    def batch(self) -> int:
        """Number of networks ``B``."""
        return int(self.weights[0].shape[0])

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.weights) - 1

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """``(M0, M1, ..., ML, M_{L+1})``."""
        return (int(self.weights[0].shape[2]), *(int(w.shape[1]) for w in self.weights))

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def layers(self) -> list[DenseLayer]:
        """The layer operators ``W^l, b^l`` (``l = 1..L+1``) of the engine's passes."""
        return [DenseLayer(w, b) for w, b in zip(self.weights, self.biases, strict=True)]

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Params:
        return Params([fn(w) for w in self.weights], [fn(b) for b in self.biases])

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> Params:
        """A copy on ``device`` and/or cast to ``dtype`` (unchanged where ``None``)."""
        dev = self.device if device is None else check_device(device)
        dt = self.dtype if dtype is None else check_dtype(dtype)
        return self._map(lambda t: t.to(device=dev, dtype=dt, copy=True))

    def clone(self) -> Params:
        """A deep copy."""
        return self._map(lambda t: t.detach().clone())

    def select(self, indices: int | slice | Sequence[int] | Tensor) -> Params:
        """The networks ``indices`` (an int keeps a batch axis of length one)."""
        if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
            i = int(indices)
            if not -self.batch <= i < self.batch:
                raise NtkscopeInputError(f"indices: {i} out of range for batch {self.batch}")
            i %= self.batch
            return self._map(lambda t: t[i : i + 1].clone())
        if isinstance(indices, slice):
            out = self._map(lambda t: t[indices].clone())
            if out.weights[0].shape[0] == 0:
                raise NtkscopeInputError("indices: the slice selects no network")
            return out
        try:
            idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise NtkscopeInputError(f"indices: expected integers, got {indices!r}") from None
        if idx.numel() == 0 or bool(((idx < -self.batch) | (idx >= self.batch)).any()):
            raise NtkscopeInputError(f"indices: empty or out of range for batch {self.batch}")
        idx = (idx % self.batch).to(self.device)
        return self._map(lambda t: t.index_select(0, idx))

    def to_numpy_dict(self, index: int = 0) -> dict[str, np.ndarray]:
        """Network ``index`` as ``{"W1": (M1, M0), "b1": (M1,), ..., "W{L+1}", "b{L+1}"}``.

        Arrays are copies in the params' dtype (float64 by default).
        """
        one = self.select(index)
        out: dict[str, np.ndarray] = {}
        for l, (w, b) in enumerate(zip(one.weights, one.biases, strict=True), start=1):
            out[f"W{l}"] = w[0].detach().cpu().numpy().copy()
            out[f"b{l}"] = b[0].detach().cpu().numpy().copy()
        return out

    @classmethod
    def from_numpy_dict(
        cls,
        arrays: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        dtype: torch.dtype = torch.float64,
        device: Any = "cpu",
    ) -> Params:
        """Params from one ``{"W1", "b1", ...}`` mapping (batch 1) or a list of them.

        The inverse of :meth:`to_numpy_dict`; keys other than ``W<l>``/``b<l>`` are ignored.
        """
        dtype, dev = check_dtype(dtype), check_device(device)
        dicts = [arrays] if isinstance(arrays, Mapping) else list(arrays)
        if not dicts or not all(isinstance(d, Mapping) for d in dicts):
            raise NtkscopeInputError("arrays: expected a mapping or a non-empty list of mappings")
        layers: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        for i, d in enumerate(dicts):
            nums = sorted(int(m.group(1)) for k in d if (m := re.fullmatch(r"W(\d+)", str(k))))
            if not nums or nums != list(range(1, len(nums) + 1)):
                raise NtkscopeInputError(f"arrays[{i}]: expected keys W1..W(L+1) and b1..b(L+1)")
            ws, bs = [], []
            for l in nums:
                if f"b{l}" not in d:
                    raise NtkscopeInputError(f"arrays[{i}]: missing b{l}")
                w = np.asarray(d[f"W{l}"], dtype=np.float64)
                b = np.asarray(d[f"b{l}"], dtype=np.float64)
                if w.ndim != 2 or b.shape != (w.shape[0],):
                    raise NtkscopeInputError(
                        f"arrays[{i}]: W{l} must be 2-D and b{l} of length W{l}.shape[0]"
                    )
                if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                    raise NtkscopeInputError(f"arrays[{i}]: W{l} and b{l} must be finite")
                if ws and w.shape[1] != ws[-1].shape[0]:
                    raise NtkscopeInputError(
                        f"arrays[{i}]: W{l} has {w.shape[1]} columns but W{l - 1} has "
                        f"{ws[-1].shape[0]} rows"
                    )
                ws.append(w)
                bs.append(b)
            layers.append((ws, bs))
        shapes = [[w.shape for w in ws] for ws, _ in layers]
        if any(s != shapes[0] for s in shapes):
            raise NtkscopeInputError("arrays: every network must have the same layer shapes")

        def stack(arrs: list[np.ndarray]) -> Tensor:
            return torch.as_tensor(np.stack(arrs)).to(device=dev, dtype=dtype)

        n_layers = len(shapes[0])
        return cls(
            [stack([layers[i][0][l] for i in range(len(dicts))]) for l in range(n_layers)],
            [stack([layers[i][1][l] for i in range(len(dicts))]) for l in range(n_layers)],
        )


@dataclass(frozen=True)
class ForwardCache:
    """Forward and backward quantities of a batch of networks on inputs ``X`` (S x M0).

    Attributes:
        output: ``f(x_s)``, shape ``(B, S)``.
        inputs: ``inputs[l-1] = A_{l-1}``, the layer inputs ``x^{l-1}(x_s)`` of layer ``l``,
            shape ``(B, S, M_{l-1})``, ``l = 1..L+1`` (``inputs[0]`` is ``X`` broadcast).
        deltas: ``deltas[l-1] = D_l``, the signals ``delta^l(x_s) = df/dh^l``, shape
            ``(B, S, M_l)``, ``l = 1..L+1`` (``deltas[L]`` is all ones, ``M_{L+1} = 1``).
    Then ``df(x_s)/dW^l = D_l[:, s, :, None] * A_{l-1}[:, s, None, :]`` and
    ``df(x_s)/db^l = D_l[:, s]``.
    """

    output: Tensor
    inputs: list[Tensor]
    deltas: list[Tensor]


def _positively_homogeneous(fn: TensorFn) -> bool:
    """Whether ``phi(c h) == c phi(h)`` for ``c > 0`` (checked on a probe grid)."""
    x = torch.cat(
        [torch.linspace(-4.0, 4.0, 81, dtype=torch.float64), torch.tensor([1e-8, -3e-7, 1e4])]
    )
    try:
        base = fn(x)
        for c in (1e-3, 0.37, 5.0, 1e3):
            if not torch.allclose(fn(c * x), c * base, rtol=1e-12, atol=0.0):
                return False
    except Exception:  # an exotic callable: fall back to the unscaled forward pass
        return False
    return True


class Elementwise(nn.Module):
    """An :class:`ntkscope.Activation` as a parameter-free ``nn.Module``: ``y = phi(x)``
    elementwise (used by :meth:`MLP.to_module` for activations without a torch module)."""

    def __init__(self, activation: str | Activation | TensorFn) -> None:
        super().__init__()
        self.activation = get_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation.torch_fn(x)

    def extra_repr(self) -> str:
        return self.activation.name


def activation_module(activation: str | Activation | TensorFn) -> nn.Module:
    """``phi`` as a module: ``nn.ReLU()`` / ``nn.Tanh()`` for the built-in ``relu`` / ``tanh``,
    otherwise :class:`Elementwise` (``erf``, custom callables)."""
    act = get_activation(activation)
    if act.name == "relu" and act.torch_fn is get_activation("relu").torch_fn:
        return nn.ReLU()
    if act.name == "tanh" and act.torch_fn is get_activation("tanh").torch_fn:
        return nn.Tanh()
    return Elementwise(act)


class MLP:
    """Architecture of a fully connected scalar-output network (CONVENTIONS section 1).

    Args:
        input_dim: ``M0``.
        width: hidden width ``M`` for every layer, or a list of ``depth`` widths ``M1..ML``.
        depth: number of hidden layers ``L`` (the network has ``L + 1`` weight matrices).
        activation: ``"relu"``, ``"tanh"``, ``"erf"``, an :class:`Activation` or a callable.
        sigma_w2: ``sw2 > 0``; ``W^l_ij ~ N(0, sw2 / M_{l-1})``.
        sigma_b2: ``sb2 >= 0``; ``b^l_i ~ N(0, sb2)``.
    """

    def __init__(
        self,
        input_dim: int,
        width: int | Sequence[int],
        depth: int,
        activation: str | Activation | TensorFn = "relu",
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
    ) -> None:
        self.input_dim = positive_int("input_dim", input_dim)
        self.depth = positive_int("depth", depth, minimum=0)
        self.widths: tuple[int, ...] = check_widths("width", width, self.depth)
        self.activation: Activation = get_activation(activation)
        self.sigma_w2 = float(positive("sigma_w2", sigma_w2))
        self.sigma_b2 = float(nonnegative("sigma_b2", sigma_b2))
        self.layer_widths: tuple[int, ...] = (self.input_dim, *self.widths, 1)
        self.homogeneous = _positively_homogeneous(self.activation.torch_fn)

    def __repr__(self) -> str:
        return (
            f"MLP(input_dim={self.input_dim}, width={list(self.widths)}, depth={self.depth}, "
            f"activation={self.activation.name!r}, sigma_w2={self.sigma_w2:g}, "
            f"sigma_b2={self.sigma_b2:g})"
        )

    @property
    def spec(self) -> NetworkSpec:
        """This architecture as a :class:`ntkscope.NetworkSpec` (``depth >= 1``)."""
        return NetworkSpec(self.activation, self.sigma_w2, self.sigma_b2, self.depth,
                           self.widths, self.input_dim)

    @property
    def num_params(self) -> int:
        """Number of trainable parameters of one network (all weights and biases)."""
        m = self.layer_widths
        return sum(m[l + 1] * (m[l] + 1) for l in range(self.depth + 1))

    # -----------------------------------------------------------------------------------------
    def init(
        self,
        batch: int,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: Any = "cpu",
        start: int = 0,
    ) -> Params:
        """Draw networks ``start .. start + batch - 1`` of the family seeded by ``seed``.

        Network ``i`` uses its own ``torch.Generator`` seeded with
        ``SeedSequence([seed, i])`` and draws, on the CPU in float64, standard normals for
        ``W^1, b^1, W^2, b^2, ...`` in this order, scaled by ``sqrt(sw2 / M_{l-1})`` and
        ``sqrt(sb2)`` and then cast to ``dtype`` on ``device``. Network ``i`` is therefore
        identical whatever the batch size, the chunking (``start``), the device or the dtype
        (up to rounding), and the same seed gives the same normals for every ``(sw2, sb2)``.
        """
        batch = positive_int("batch", batch)
        seed = _seed("seed", seed)
        start = positive_int("start", start, minimum=0)
        dtype, dev = check_dtype(dtype), check_device(device)
        m = self.layer_widths
        weights = [
            torch.empty((batch, m[l + 1], m[l]), dtype=dtype, device=dev)
            for l in range(self.depth + 1)
        ]
        biases = [
            torch.empty((batch, m[l + 1]), dtype=dtype, device=dev) for l in range(len(weights))
        ]
        std_w = [math.sqrt(self.sigma_w2 / m[l]) for l in range(len(weights))]
        std_b = math.sqrt(self.sigma_b2)
        direct = dtype == torch.float64 and dev.type == "cpu"
        for i in range(batch):
            gen = torch.Generator(device="cpu")
            gen.manual_seed(network_seed(seed, start + i))
            for w, b, sw in zip(weights, biases, std_w, strict=True):
                for target, std in ((w[i], sw), (b[i], std_b)):
                    if direct:
                        torch.randn(target.shape, generator=gen, dtype=torch.float64, out=target)
                        target.mul_(std)
                    else:
                        z = torch.randn(target.shape, generator=gen, dtype=torch.float64)
                        target.copy_(z.mul_(std))
        return Params(weights, biases)

    def to_module(self, params: Params, index: int = 0) -> nn.Sequential:
        """Network ``index`` of ``params`` as an ``nn.Sequential`` with the same weights.

        ``Linear(M0, M1), phi, Linear(M1, M2), phi, ..., Linear(ML, 1)``: layer ``l`` holds
        ``weight = W^l`` (``M_l x M_{l-1}``) and ``bias = b^l`` as copies (trainable
        ``nn.Parameter``s) in the params' dtype (float64 by default) and device, and ``phi``
        is ``nn.ReLU``, ``nn.Tanh`` or :class:`Elementwise`. The module maps ``(S, M0)`` to
        ``(S, 1)``, so ``ntkscope.module_ntk(net.to_module(p, i), X)`` equals
        ``empirical_ntk(net, p, X)[i]`` (CONVENTIONS sections 3 and 9, ``O = 1``) up to
        rounding; the two engines cross-check each other. The module computes in the
        dtype's plain range (no rescaled domain: deep chaotic networks may overflow).

        Raises:
            NtkscopeInputError: ``params`` does not fit this architecture; ``index`` is not an
                integer in ``[-B, B)``.
        """
        params = self.check_params(params)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise NtkscopeInputError(f"index: expected an integer, got {index!r}")
        if not -params.batch <= int(index) < params.batch:
            raise NtkscopeInputError(
                f"index: {int(index)} out of range for a batch of {params.batch} networks"
            )
        one = params.select(int(index))
        layers: list[nn.Module] = []
        for l, (w, b) in enumerate(zip(one.weights, one.biases, strict=True)):
            lin = nn.Linear(int(w.shape[2]), int(w.shape[1]), device=one.device,
                            dtype=one.dtype)
            with torch.no_grad():
                lin.weight.copy_(w[0])
                lin.bias.copy_(b[0])
            layers.append(lin)
            if l < self.depth:
                layers.append(activation_module(self.activation))
        return nn.Sequential(*layers)

    # -----------------------------------------------------------------------------------------
    def check_params(self, params: Any) -> Params:
        """``params`` if it is a :class:`Params` with this architecture's shapes."""
        if not isinstance(params, Params):
            raise NtkscopeInputError(f"params: expected Params, got {type(params).__name__}")
        if params.layer_widths != self.layer_widths:
            raise NtkscopeInputError(
                f"params: layer widths {params.layer_widths} do not match the network's "
                f"{self.layer_widths}"
            )
        return params

    def check_inputs(self, params: Params, X: Any, name: str = "X") -> Tensor:
        """``X`` as an ``(S, M0)`` tensor in the params' dtype and device, all finite.

        Tensors must already have the params' dtype and device (no silent casts); other
        array-likes are converted.
        """
        if isinstance(X, Tensor):
            if not X.dtype.is_floating_point:
                raise NtkscopeInputError(f"{name}: expected a floating tensor, got {X.dtype}")
            if X.dtype != params.dtype:
                raise NtkscopeInputError(
                    f"{name}: dtype {X.dtype} differs from the params' {params.dtype}; "
                    f"convert with {name}.to({params.dtype})"
                )
            if X.device != params.device:
                raise NtkscopeInputError(
                    f"{name}: on {X.device} but the params are on {params.device}"
                )
            t = X.detach()
        else:
            try:
                arr = np.asarray(X)
                if arr.dtype.kind not in "biuf":
                    raise TypeError
                t = torch.as_tensor(arr.astype(np.float64)).to(params.device, params.dtype)
            except (TypeError, ValueError):
                raise NtkscopeInputError(f"{name}: expected a 2-D array of numbers") from None
        if t.ndim != 2:
            raise NtkscopeInputError(
                f"{name}: expected a 2-D array (samples x {self.input_dim}), got "
                f"shape {tuple(t.shape)}"
            )
        if t.shape[1] != self.input_dim or t.shape[0] < 1:
            raise NtkscopeInputError(
                f"{name}: expected shape (S >= 1, {self.input_dim}), got {tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()):
            raise NtkscopeInputError(f"{name}: must be finite (got NaN or inf)")
        return t

    # -----------------------------------------------------------------------------------------
    def forward_scaled(
        self,
        params: Params,
        X: Tensor,
        *,
        rescale: bool,
        keep_derivatives: bool = False,
        on_input: InputVisitor | None = None,
        monitor: RangeMonitor | None = None,
    ) -> tuple[list[Tensor], Tensor, Tensor | None]:
        """Forward pass (arguments already checked), plain or in the rescaled domain: the
        engine's :func:`ntkscope.engine.forward` over the dense layers of ``params``.

        With ``rescale`` positively homogeneous activations run in the rescaled domain; other
        activations are evaluated on the true pre-activations. A ``monitor`` records the row
        norms of the plain layer inputs.

        Calls ``on_input(l, P, g)`` for ``l = 1..L+1`` with the layer input
        ``A_{l-1} = 2**g[..., None] * P`` (rescaled: ``max|P| in [1/2, 1)`` per row, ``g``
        of shape ``(B, S)``, or ``(1, S)`` for the shared ``X``; otherwise ``g`` is ``None``
        and ``P = A_{l-1}``). ``P`` may broadcast over the batch axis (shape ``(1, S, M0)``).

        Returns ``(derivs, h, g)``: ``derivs[l-1]`` holds ``phi'(h^l)`` for ``l = 1..L`` (only
        with ``keep_derivatives``; for ReLU it is ``phi(h^l)`` itself, whose sign gives
        ``phi'``: :meth:`backward_scaled` reads it either way) and the output ``f = 2**g * h``
        (``(B, S)``; ``g`` None: ``h``).
        """
        return forward(params.layers(), X, self.activation, self.homogeneous, rescale=rescale,
                       keep_derivatives=keep_derivatives, on_input=on_input, monitor=monitor)

    def backward_scaled(
        self,
        params: Params,
        derivs: list[Tensor],
        num_inputs: int,
        on_delta: DeltaVisitor,
        *,
        rescale: bool,
        monitor: RangeMonitor | None = None,
        output_delta: Tensor | None = None,
    ) -> None:
        """Backpropagate ``delta^l = phi'(h^l) * (W^{l+1})^T delta^{l+1}``, ``delta^{L+1} = 1``
        (or ``output_delta`` of shape ``(B, S)``, plain values only: a per-sample weight such as
        the residuals of a loss, which then scales every ``delta^l``): the engine's
        :func:`ntkscope.engine.backward` over the dense layers of ``params``.

        Calls ``on_delta(l, D, beta)`` for ``l = L+1, L, ..., 1``: with ``rescale``,
        ``D_l = 2**beta[..., None] * D`` with ``max|D| in [1/2, 1)`` per row unless zero;
        otherwise ``beta`` is ``None`` and ``D = D_l`` (a ``monitor`` records the row norms).
        ``derivs`` (from :meth:`forward_scaled`) is consumed: its entries are released.
        """
        backward(params.layers(), derivs, num_inputs, on_delta, self.activation,
                 rescale=rescale, monitor=monitor, output_delta=output_delta)

    def guarded(self, dtype: torch.dtype, compute: Callable[[RangeMonitor | None], R]) -> R:
        """``compute(monitor)`` on plain values; if anything left the safe range (or was not
        finite) ``compute(None)`` again in the rescaled domain (:func:`ntkscope.engine.guarded`).
        """
        return guarded(dtype, compute)

    # -----------------------------------------------------------------------------------------
    def apply(self, params: Params, X: Any) -> Tensor:
        """Outputs ``f(x_s)`` of every network, shape ``(B, S)`` for ``X`` of shape ``(S, M0)``."""
        params = self.check_params(params)
        x = self.check_inputs(params, X)

        def compute(monitor: RangeMonitor | None) -> Tensor:
            _, h, g = self.forward_scaled(params, x, rescale=monitor is None, monitor=monitor)
            return monitor.values(h) if monitor is not None else materialize(h, g, "f(x)")

        with torch.no_grad():
            return self.guarded(params.dtype, compute)

    def forward_with_cache(self, params: Params, X: Any) -> ForwardCache:
        """Outputs, layer inputs ``A_{l-1}`` and signals ``D_l`` (see :class:`ForwardCache`)."""
        params = self.check_params(params)
        x = self.check_inputs(params, X)
        batch, s = params.batch, x.shape[0]

        def compute(monitor: RangeMonitor | None) -> ForwardCache:
            def check(t: Tensor, e: Tensor | None, what: str) -> Tensor:
                if monitor is not None:
                    return monitor.values(t)
                return materialize(t, None if e is None else e[..., None], what)

            scaled: list[tuple[Tensor, Tensor | None]] = []
            deltas: list[Tensor] = []
            derivs, h, g = self.forward_scaled(
                params,
                x,
                rescale=monitor is None,
                keep_derivatives=True,
                on_input=lambda _l, p, e: scaled.append((p, e)),
                monitor=monitor,
            )
            inputs = [x.expand(batch, s, -1)]
            inputs += [check(p, e, f"x^{l}") for l, (p, e) in enumerate(scaled[1:], start=1)]
            self.backward_scaled(
                params,
                derivs,
                s,
                lambda l, d, beta: deltas.insert(0, check(d, beta, f"delta^{l}")),
                rescale=monitor is None,
                monitor=monitor,
            )
            output = check(h, None, "f(x)") if g is None else materialize(h, g, "f(x)")
            return ForwardCache(output=output, inputs=inputs, deltas=deltas)

        with torch.no_grad():
            return self.guarded(params.dtype, compute)
