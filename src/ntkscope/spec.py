"""One value for the architecture of a fully connected network (CONVENTIONS section 1).

Every science function (sampling, generalization, training, ``check``) takes the network as a
:class:`NetworkSpec` (or an :class:`ntkscope.MLP`, converted by :func:`as_spec`) instead of
five loose arguments ``(activation, sigma_w2, sigma_b2, depth, width)``. The spec is validated
once, when it is built; functions that receive one trust it.

The module is torch-free: the NumPy theory (Theorem 5.3, the expected kernels) uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ntkscope.activations import Activation, get_activation
from ntkscope.validation import NtkscopeInputError, nonnegative, positive, positive_int, widths

if TYPE_CHECKING:
    from ntkscope.networks import MLP

__all__ = ["MAX_DEPTH", "NetworkSpec", "as_spec"]

# The deepest network any computation accepts (the theory's recursions run one step a layer).
MAX_DEPTH = 10_000


def _scalar(name: str, checked: Any) -> float:
    if getattr(checked, "ndim", 0) != 0:
        raise NtkscopeInputError(f"{name}: expected a single number, got shape {checked.shape}")
    return float(checked)


@dataclass(frozen=True, init=False)
class NetworkSpec:
    """A fully connected scalar-output network in the standard parameterization.

    ``W^l_ij ~ N(0, sigma_w2 / M_{l-1})``, ``b^l_i ~ N(0, sigma_b2)`` for every layer
    ``l = 1..L+1`` (CONVENTIONS section 1).

    Attributes:
        activation: ``relu``, ``tanh``, ``erf``, an :class:`Activation` or an elementwise
            callable (stored as an :class:`Activation`).
        sigma_w2: ``sw2 > 0``.
        sigma_b2: ``sb2 >= 0``.
        depth: number of hidden layers ``L`` (``1 <= L <= 10000``).
        width: hidden width ``M`` (an int) or the widths ``M_1..M_L``; stored as a tuple.
        input_dim: ``M0``; ``None`` means "taken from the inputs" where a function has inputs
            (and 784, MNIST's, where it has none).

    Raises:
        NtkscopeInputError: any field out of range (the message names it).
    """

    activation: Activation
    sigma_w2: float
    sigma_b2: float
    depth: int
    width: tuple[int, ...]
    input_dim: int | None = None

    def __init__(
        self,
        activation: str | Activation | Any,
        sigma_w2: float,
        sigma_b2: float,
        depth: int,
        width: int | Sequence[int],
        input_dim: int | None = None,
    ) -> None:
        depth = positive_int("depth", depth, maximum=MAX_DEPTH)
        set_ = object.__setattr__
        set_(self, "activation", get_activation(activation))
        set_(self, "sigma_w2", _scalar("sigma_w2", positive("sigma_w2", sigma_w2)))
        set_(self, "sigma_b2", _scalar("sigma_b2", nonnegative("sigma_b2", sigma_b2)))
        set_(self, "depth", depth)
        set_(self, "width", widths("width", width, depth))
        set_(self, "input_dim", None if input_dim is None else positive_int("input_dim", input_dim))

    # -----------------------------------------------------------------------------------------
    @property
    def constant_width(self) -> int | None:
        """``M`` when every hidden layer has it, else ``None``."""
        return self.width[0] if len(set(self.width)) == 1 else None

    def with_input_dim(self, input_dim: int) -> NetworkSpec:
        """The same network on inputs of dimension ``input_dim``.

        Raises:
            NtkscopeInputError: the spec fixes another ``input_dim``.
        """
        m0 = positive_int("input_dim", input_dim)
        if self.input_dim is not None and self.input_dim != m0:
            raise NtkscopeInputError(
                f"X: inputs have dimension {m0} but the network's input_dim is {self.input_dim}"
            )
        return self if self.input_dim == m0 else replace(self, input_dim=m0)

    def resolved_input_dim(self, default: int = 784) -> int:
        """``input_dim``, or ``default`` where the spec leaves it open."""
        return default if self.input_dim is None else self.input_dim

    def mlp(self, input_dim: int | None = None) -> MLP:
        """The :class:`ntkscope.MLP` of this spec (``input_dim`` fills an open one)."""
        from ntkscope.networks import MLP

        spec = self if input_dim is None else self.with_input_dim(input_dim)
        return MLP(spec.resolved_input_dim(), spec.width, spec.depth, spec.activation,
                   spec.sigma_w2, spec.sigma_b2)

    def describe(self) -> str:
        """``relu, sw2=2, sb2=0, L=20, M=100`` (the CLI's title lines)."""
        m = self.constant_width
        width = str(m) if m is not None else "[" + ",".join(map(str, self.width)) + "]"
        return (f"{self.activation.name}, sw2={self.sigma_w2:g}, sb2={self.sigma_b2:g}, "
                f"L={self.depth}, M={width}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``width`` an int when constant, ``input_dim`` only when fixed."""
        m = self.constant_width
        out: dict[str, Any] = {
            "activation": self.activation.name,
            "sigma_w2": self.sigma_w2,
            "sigma_b2": self.sigma_b2,
            "depth": self.depth,
            "width": m if m is not None else list(self.width),
        }
        if self.input_dim is not None:
            out["input_dim"] = self.input_dim
        return out


def as_spec(net: Any, name: str = "net") -> NetworkSpec:
    """``net`` as a :class:`NetworkSpec`: a spec itself, or an :class:`ntkscope.MLP`.

    Raises:
        NtkscopeInputError: anything else (the message says what to pass).
    """
    if isinstance(net, NetworkSpec):
        return net
    spec = getattr(net, "spec", None)
    if isinstance(spec, NetworkSpec):
        return spec
    raise NtkscopeInputError(
        f"{name}: expected a NetworkSpec or an MLP, got {type(net).__name__}; build one with "
        "ntkscope.NetworkSpec(activation, sigma_w2, sigma_b2, depth, width)"
    )
