"""Reference architectures for :func:`ntkscope.module_ntk` (tests, benchmarks, examples).

Written out here (torchvision's wheel needs the CUDA build of torch): a tanh MLP as an
``nn.Sequential``, the MNIST CNN of the benchmarks, a CNN with BatchNorm and pooling, small
residual networks and the CIFAR ResNet-18, and a small transformer encoder on integer tokens.
Every factory builds its module with PyTorch's default dtype (``.double()`` for float64) and
initialization (:func:`plain_cnn`: the standard parameterization, ``N(0, sw2/fan_in)``;
ResNets: torchvision's, Kaiming-normal convolutions), in training mode as every fresh
``nn.Module``: call ``.eval()`` on models with BatchNorm before taking their NTK (a BatchNorm
in training mode couples the samples of a batch, CONVENTIONS section 9).

Parameter counts (default arguments): ``mlp()`` 1,451,265; ``mnist_cnn()`` 430,890;
``bn_cnn()`` 1,458; ``residual_net()`` 1,382; ``resnet18()`` 11,173,962;
``tiny_transformer()`` 3,346; ``plain_cnn()`` 7,137.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ntkscope.networks import activation_module
from ntkscope.validation import NtkscopeInputError, nonnegative, positive, positive_int

__all__ = [
    "BasicBlock",
    "ResNet",
    "TinyTransformer",
    "bn_cnn",
    "mlp",
    "mnist_cnn",
    "plain_cnn",
    "residual_net",
    "resnet18",
    "tiny_transformer",
]


def _ints(name: str, values: Sequence[int], length: int | None = None) -> tuple[int, ...]:
    """A non-empty tuple of positive integers (of ``length`` entries when given)."""
    try:
        out = tuple(positive_int(name, v) for v in values)
    except TypeError:
        raise NtkscopeInputError(f"{name}: expected a sequence of integers") from None
    if not out or (length is not None and len(out) != length):
        n = "at least one" if length is None else str(length)
        raise NtkscopeInputError(f"{name}: expected {n} positive integers, got {values!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Fully connected


def mlp(input_dim: int = 784, width: int = 256, depth: int = 20, output_dim: int = 1,
        activation: str = "tanh") -> nn.Sequential:
    """A fully connected network ``Linear(M0, M), phi, ..., Linear(M, M), phi, Linear(M, O)``.

    ``depth`` hidden layers of ``width`` units (``depth + 1`` linear layers), PyTorch's default
    ``nn.Linear`` initialization (not the standard parameterization of CONVENTIONS section 1;
    use :meth:`ntkscope.MLP.to_module` for that). Input ``(N, input_dim)``, output
    ``(N, output_dim)``. Default (benchmark 1, 784-256x20-1 tanh): 1,451,265 parameters,
    ``M0 M + M + (L - 1)(M^2 + M) + M O + O``.
    """
    m0, m, o = (positive_int(n, v) for n, v in
                (("input_dim", input_dim), ("width", width), ("output_dim", output_dim)))
    depth = positive_int("depth", depth, minimum=0)
    sizes = [m0, *([m] * depth), o]
    layers: list[nn.Module] = []
    for l in range(depth + 1):
        layers.append(nn.Linear(sizes[l], sizes[l + 1]))
        if l < depth:
            layers.append(activation_module(activation))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Convolutional


def mnist_cnn(channels: Sequence[int] = (32, 32, 64), hidden: int = 128,
              num_classes: int = 10) -> nn.Sequential:
    """The CNN of benchmark 2 on MNIST-shaped inputs ``(N, 1, 28, 28)`` -> ``(N, num_classes)``.

    ``conv3x3(1 -> c1), ReLU, conv3x3(c1 -> c2), ReLU, avgpool2, conv3x3(c2 -> c3), ReLU,
    avgpool2, flatten (c3 * 7 * 7), Linear(-> hidden), ReLU, Linear(hidden -> num_classes)``
    (padding 1: 28x28 -> 14x14 -> 7x7). Default ``(32, 32, 64)``, 128 hidden, 10 classes:
    ``64 * 7 * 7 = 3136`` flattened features, 430,890 parameters (401,536 in the first linear
    layer).
    """
    c1, c2, c3 = _ints("channels", channels, 3)
    hidden, num_classes = positive_int("hidden", hidden), positive_int("num_classes", num_classes)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c3 * 7 * 7, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def bn_cnn(in_channels: int = 1, channels: Sequence[int] = (8, 16),
           num_classes: int = 10) -> nn.Sequential:
    """A CNN with BatchNorm and pooling: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``.

    ``conv3x3(in -> c1, no bias), BatchNorm2d, ReLU, maxpool2, conv3x3(c1 -> c2, stride 2),
    BatchNorm2d, ReLU, adaptive average pool to 1x1, flatten, Linear(c2 -> num_classes)``; any
    ``H, W >= 4``. Default (1 channel, ``(8, 16)``, 10 classes): 1,458 parameters. Call
    ``.eval()`` before taking its NTK.
    """
    in_channels = positive_int("in_channels", in_channels)
    c1, c2 = _ints("channels", channels, 2)
    num_classes = positive_int("num_classes", num_classes)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(c2, num_classes),
    )


def plain_cnn(activation: str = "relu", depth: int = 4, channels: int = 16,
              sw2: float = 2.0, sb2: float = 0.0, in_channels: int = 1,
              num_classes: int = 1) -> nn.Sequential:
    """A plain CNN in the standard parameterization of the MLPs (CONVENTIONS section 1).

    ``depth`` layers ``conv3x3(c_{l-1} -> channels, padding 1), phi`` (``c_0 = in_channels``;
    stride 1, the image size is kept), a global average pool over the positions, and a
    readout ``Linear(channels -> num_classes)``: ``(N, in_channels, H, W) -> (N,
    num_classes)``. Every weight is ``N(0, sw2 / fan_in)`` with ``fan_in = c_{l-1} * 3 * 3``
    (``channels`` for the readout) and every bias ``N(0, sb2)`` (``sb2 = 0``: zero biases):
    the MLP's ``W^l_ij ~ N(0, sw2/M_{l-1})``, ``b^l_i ~ N(0, sb2)`` with the patch as the
    fan-in. In the infinite-channel limit a position's pre-activation variance follows the
    MLP's length map ``q^l = sw2 E[phi(sqrt(q^{l-1}) z)^2] + sb2`` averaged over its patch
    (Xiao et al. 2018), so the MLP's edge of chaos (:func:`ntkscope.theory.eoc`) is the
    reference for the phases (zero padding lowers the variance at the border).

    Parameters: ``(in_channels * 9 + 1) C + (depth - 1)(9 C^2 + C) + (C + 1) num_classes``.

    Raises:
        NtkscopeInputError: ``depth``, ``channels``, ``in_channels`` or ``num_classes`` not
            positive integers, ``sw2 <= 0``, ``sb2 < 0``, an unknown activation.
    """
    depth, channels = positive_int("depth", depth), positive_int("channels", channels)
    in_channels = positive_int("in_channels", in_channels)
    num_classes = positive_int("num_classes", num_classes)
    w_arr, b_arr = positive("sw2", sw2), nonnegative("sb2", sb2)
    if w_arr.ndim or b_arr.ndim:
        raise NtkscopeInputError("sw2, sb2: expected single numbers")
    w_var, b_var = float(w_arr), float(b_arr)
    layers: list[nn.Module] = []
    c_in = in_channels
    for _ in range(depth):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), activation_module(activation)]
        c_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    with torch.no_grad():
        for m in layers:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (w_var / fan_in) ** 0.5)
                m.bias.normal_(0.0, b_var ** 0.5)
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Residual networks (He et al. 2016; the CIFAR variant: 3x3 stem, no max-pool)


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions (no bias);
    the shortcut is the identity, or ``conv1x1(stride) + BatchNorm`` when the stride or the
    number of channels changes. ``(N, c_in, H, W)`` -> ``(N, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of :class:`BasicBlock` stages: ``(N, in_channels, H, W)`` -> ``(N, classes)``.

    Stem ``conv3x3(in -> w1), BatchNorm, ReLU``; stage ``k`` has ``blocks[k]`` blocks of
    ``widths[k]`` channels, the first with stride 2 (stride 1 in stage 1); global average
    pool, ``Linear(widths[-1] -> num_classes)``. Initialization as torchvision's: convolutions
    Kaiming-normal (``fan_out``, ReLU), BatchNorm weight 1 and bias 0, linear PyTorch default.
    """

    def __init__(self, blocks: Sequence[int], widths: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        blocks = _ints("blocks", blocks)
        widths = _ints("widths", widths, len(blocks))
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        c_in = widths[0]
        for k, (n, c) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if k == 0 else 2
            stage = [BasicBlock(c_in, c, stride)] + [BasicBlock(c, c) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18 for CIFAR-shaped inputs ``(N, 3, 32, 32)`` -> ``(N, num_classes)``.

    BasicBlocks ``[2, 2, 2, 2]`` of 64, 128, 256, 512 channels (3x3 stem, no max-pool: the
    standard CIFAR variant), BatchNorm: 11,173,962 parameters with 10 classes. Call
    ``.eval()`` before taking its NTK.
    """
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels)


def residual_net(blocks: Sequence[int] = (1, 1), widths: Sequence[int] = (4, 8),
                 num_classes: int = 2, in_channels: int = 3) -> ResNet:
    """A small :class:`ResNet` (tests and examples): identity and ``conv1x1`` shortcuts,
    BatchNorm, a stride-2 stage; ``(N, in_channels, H, W)`` -> ``(N, num_classes)``. Default
    (stages ``(1, 1)`` of ``(4, 8)`` channels, 2 classes, 3 input channels): 1,382 parameters.
    Call ``.eval()`` before taking its NTK.
    """
    return ResNet(blocks, widths, num_classes, in_channels)


# ---------------------------------------------------------------------------------------------
# Transformer


class TinyTransformer(nn.Module):
    """A transformer encoder on integer tokens ``(N, T)`` (``int64``, ``T <= max_len``) ->
    ``(N, num_classes)``, one output vector per sequence.

    ``h = token_embedding(x) + position_embedding(0..T-1)``; ``layers`` post-norm
    ``nn.TransformerEncoderLayer`` (multi-head self-attention with packed input projections,
    feed-forward of ``dim_feedforward`` with ReLU, two LayerNorms each, no dropout); a final
    ``LayerNorm``, the mean over the ``T`` positions, and ``Linear(d_model -> num_classes)``.
    """

    def __init__(self, vocab: int, d_model: int, nhead: int, layers: int,
                 dim_feedforward: int, max_len: int, num_classes: int) -> None:
        super().__init__()
        vocab, d_model, nhead, layers, dim_feedforward, max_len, num_classes = (
            positive_int(n, v) for n, v in (
                ("vocab", vocab), ("d_model", d_model), ("nhead", nhead), ("layers", layers),
                ("dim_feedforward", dim_feedforward), ("max_len", max_len),
                ("num_classes", num_classes)))
        if d_model % nhead:
            raise NtkscopeInputError(f"d_model: {d_model} is not divisible by nhead={nhead}")
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        self.encoder = nn.Sequential(*(
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0,
                                       batch_first=True)
            for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] > self.positions.num_embeddings:
            raise NtkscopeInputError(
                f"x: expected integer tokens of shape (N, T <= {self.positions.num_embeddings}),"
                f" got {tuple(x.shape)}"
            )
        pos = torch.arange(x.shape[1], device=x.device)
        h = self.encoder(self.tokens(x) + self.positions(pos))
        return self.head(self.norm(h).mean(dim=1))


def tiny_transformer(vocab: int = 50, d_model: int = 16, nhead: int = 2, layers: int = 1,
                     dim_feedforward: int = 32, max_len: int = 16,
                     num_classes: int = 2) -> TinyTransformer:
    """A :class:`TinyTransformer`. Default (50 tokens, ``d_model = 16``, 2 heads, one layer,
    feed-forward 32, sequences up to 16, 2 classes): 3,346 parameters."""
    return TinyTransformer(vocab, d_model, nhead, layers, dim_feedforward, max_len, num_classes)
