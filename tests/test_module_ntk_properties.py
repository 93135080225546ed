"""Property tests (Hypothesis): on random small architectures built from the supported layers,
the three methods of ``module_ntk`` agree: layerwise == jacobian == ntvp (float64, 1e-10
relative Frobenius), for every output and with ``x2`` given or not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import ntkscope

TOL = 1e-10
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


ACTS = [nn.Tanh, nn.ReLU, nn.GELU, nn.Identity]


@st.composite
def image_models(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Conv / ConvTranspose / norm / pooling stacks on ``(C, H, W)`` images, then Linear."""
    c = draw(st.integers(1, 3))
    size = draw(st.integers(4, 7))
    shape = (c, size, size)
    layers: list[nn.Module] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "convt", "bn", "gn", "pool"]))
        if layers:
            with torch.no_grad():
                c = nn.Sequential(*layers).eval()(torch.zeros(1, *shape)).shape[1]
        if kind == "conv":
            groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0]))
            out = groups * draw(st.integers(1, 2))
            k = draw(st.integers(1, 3))
            stride = draw(st.integers(1, 2))
            padding: Any = draw(st.sampled_from([0, 1, "same"])) if stride == 1 else \
                draw(st.sampled_from([0, 1]))
            mode = draw(st.sampled_from(["zeros", "reflect"])) if padding != 0 else "zeros"
            if mode == "reflect" and (padding == "same" or padding >= size):
                mode = "zeros"
            layers.append(nn.Conv2d(c, out, k, stride=stride, padding=padding,
                                    dilation=draw(st.integers(1, 2)) if k > 1 else 1,
                                    groups=groups, bias=draw(st.booleans()), padding_mode=mode))
            c = out
        elif kind == "convt":
            groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0]))
            out = groups * draw(st.integers(1, 2))
            stride = draw(st.integers(1, 2))
            layers.append(nn.ConvTranspose2d(c, out, draw(st.integers(1, 3)), stride=stride,
                                             output_padding=draw(st.integers(0, stride - 1)),
                                             groups=groups, bias=draw(st.booleans())))
            c = out
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(c))
        elif kind == "gn":
            layers.append(nn.GroupNorm(1, c))
        else:
            layers.append(nn.AvgPool2d(2, ceil_mode=True))
        layers.append(draw(st.sampled_from(ACTS))())
        try:  # a layer the shrunken image cannot take (padding, kernel) is left out
            with torch.no_grad():
                nn.Sequential(*layers).eval()(torch.zeros(1, *shape))
        except (RuntimeError, ValueError):
            del layers[-2:]
    body = nn.Sequential(*layers)
    with torch.no_grad():
        flat = body.eval()(torch.zeros(1, *shape)).numel()
    model = nn.Sequential(body, nn.Flatten(1), nn.Linear(flat, draw(st.integers(1, 3))))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval(), shape


@st.composite
def token_models(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Embedding, then Linear / LayerNorm / Conv1d over the positions."""
    # t >= 2: torch.func's vmap(jacrev) of a Conv1d on length-1 sequences fails in PyTorch
    # ("slow_conv2d: grad_weight must be contiguous"), which the jacobian method would hit
    vocab, d, t = draw(st.integers(2, 6)), draw(st.integers(1, 4)), draw(st.integers(2, 4))

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, d, padding_idx=draw(st.sampled_from([None, 0])))
            self.mix = nn.ModuleList()
            self.kinds = []
            for _ in range(draw(st.integers(0, 2))):
                kind = draw(st.sampled_from(["linear", "ln", "conv"]))
                self.kinds.append(kind)
                self.mix.append({"linear": lambda: nn.Linear(d, d),
                                 "ln": lambda: nn.LayerNorm(d),
                                 "conv": lambda: nn.Conv1d(d, d, 3, padding=1)}[kind]())
            self.act = draw(st.sampled_from(ACTS))()
            self.head = nn.Linear(d * t, draw(st.integers(1, 2)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.emb(x)
            for kind, m in zip(self.kinds, self.mix, strict=True):
                h = m(h.transpose(1, 2)).transpose(1, 2) if kind == "conv" else m(h)
                h = self.act(h)
            return self.head(h.flatten(1))

    return Tokens(), (t,)


def inputs(model: nn.Module, shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if isinstance(model, nn.Sequential):
        return torch.randn(n, *shape, generator=g)
    return torch.randint(0, model.emb.num_embeddings, (n, *shape), generator=g)


def agree(model: nn.Module, shape: tuple[int, ...], output: str, cross: bool,
          seed: int) -> None:
    x1 = inputs(model, shape, 3, seed)
    x2 = inputs(model, shape, 2, seed + 1) if cross and output != "diagonal" else None
    kernels = {m: ntkscope.module_ntk(model, x1, x2, output=output, method=m)
               for m in ("layerwise", "jacobian", "ntvp")}
    ref = kernels["jacobian"]
    scale = max(float(ref.norm()), 1e-300)
    for m, k in kernels.items():
        assert k.shape == ref.shape, m
        assert float((k - ref).norm()) / scale < TOL, m


@SETTINGS
@given(arch=image_models(), output=st.sampled_from(["trace", "full", "diagonal"]),
       cross=st.booleans(), seed=st.integers(0, 2**16))
def test_image_architectures(arch: tuple[nn.Module, tuple[int, ...]], output: str,
                             cross: bool, seed: int) -> None:
    torch.manual_seed(seed)
    agree(*arch, output, cross, seed)


@SETTINGS
@given(arch=token_models(), output=st.sampled_from(["trace", "full", "diagonal"]),
       cross=st.booleans(), seed=st.integers(0, 2**16))
def test_token_architectures(arch: tuple[nn.Module, tuple[int, ...]], output: str,
                             cross: bool, seed: int) -> None:
    agree(*arch, output, cross, seed)
