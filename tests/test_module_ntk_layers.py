"""The layer-wise method of ``module_ntk`` against the per-sample autograd reference (float64,
1e-10 relative Frobenius): every supported layer and option, both routes (position Gram and
materialized per-sample gradients), mixed models, the Jacobian fallback (tied weights, raw
parameters, modules called twice, MultiheadAttention), frozen parameters, ``params=``, ``x2``
given and not, every ``output``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import ntkscope
from ntkscope.generic import _layerwise, build_problem, zoo
from ntkscope.generic._inputs import Inputs

TOL = 1e-10
# torch.func's vmap (the Jacobian fallback) warns about missing batching rules
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")
OUTPUTS = ("trace", "full", "diagonal")


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(params=["auto", "gram", "materialized"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each layer's route: the cost model's choice, or forced."""
    if request.param != "auto":
        monkeypatch.setattr(_layerwise, "route", lambda *a, **k: request.param)
    return request.param


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def agree(model: nn.Module, x1: Any, x2: Any = None, outputs: tuple[str, ...] = OUTPUTS,
          **kw: Any) -> None:
    """``module_ntk(method="layerwise")`` equals the reference for every output."""
    for output in outputs:
        if output == "diagonal" and x2 is not None:
            continue
        got = ntkscope.module_ntk(model, x1, x2, output=output, method="layerwise", **kw)
        want = ntkscope.reference_module_ntk(model, x1, x2, output=output, **kw)
        assert got.shape == want.shape, output
        assert rel(got, want) < TOL, (output, rel(got, want))


def fallback(model: nn.Module, x: Any, **kw: Any) -> dict[str, str]:
    """The parameters the layer-wise plan sends to the Jacobian path, with the reason."""
    problem = build_problem(model, **kw)
    pl = _layerwise.plan(problem, problem.names, Inputs.of(x))
    return {n: pl.reasons[n] for n in pl.fallback}


def both(model: nn.Module, make: Callable[[int], Any], **kw: Any) -> None:
    """Symmetric (x2 None) and cross (x2 given) kernels."""
    agree(model, make(3), **kw)
    agree(model, make(3), make(2), **kw)


# ---------------------------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_any_leading_shape(route: str, shape: tuple[int, ...], bias: bool) -> None:
    model = nn.Sequential(nn.Linear(5, 4, bias=bias), nn.Tanh(), nn.Linear(4, 3))
    both(model, lambda n: torch.randn(n, *shape))
    assert fallback(model, torch.randn(2, *shape)) == {}


# ---------------------------------------------------------------------------------------------
# Convolutions

CONV2D = [
    dict(stride=1, padding=0),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(padding="same", dilation=2),
    dict(padding="valid"),
    dict(stride=2, padding=1, groups=2),
    dict(padding=1, bias=False),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(1, 2), padding_mode="circular"),
    dict(padding="same", padding_mode="replicate"),
]


@pytest.mark.parametrize("opts", CONV2D, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_conv2d_options(route: str, opts: dict[str, Any]) -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3, **opts), nn.ReLU(), nn.Flatten(1),
                          nn.LazyLinear(2))
    model(torch.randn(1, 2, 7, 6))
    both(model, lambda n: torch.randn(n, 2, 7, 6))


@pytest.mark.parametrize("dim", [1, 3])
def test_conv1d_conv3d(route: str, dim: int) -> None:
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[dim]
    size = (9,) if dim == 1 else (5, 4, 5)
    model = nn.Sequential(conv(2, 4, 3, stride=2, padding=1, dilation=1, groups=2), nn.Tanh(),
                          conv(4, 3, 2, padding="same", dilation=2), nn.Flatten(1),
                          nn.LazyLinear(2))
    model(torch.randn(1, 2, *size))
    both(model, lambda n: torch.randn(n, 2, *size))


CONVT = [
    dict(stride=1),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(2, 3), padding=(0, 1), dilation=(2, 1)),
    dict(stride=2, groups=2, bias=False),
    dict(stride=2, output_padding=1, dilation=2),
]


@pytest.mark.parametrize("opts", CONVT, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_conv_transpose2d_options(route: str, opts: dict[str, Any]) -> None:
    model = nn.Sequential(nn.ConvTranspose2d(2, 4, 3, **opts), nn.Tanh(), nn.Flatten(1),
                          nn.LazyLinear(2))
    model(torch.randn(1, 2, 4, 3))
    both(model, lambda n: torch.randn(n, 2, 4, 3))


@pytest.mark.parametrize("dim", [1, 3])
def test_conv_transpose1d_3d(route: str, dim: int) -> None:
    convt = {1: nn.ConvTranspose1d, 3: nn.ConvTranspose3d}[dim]
    size = (5,) if dim == 1 else (3, 2, 3)
    model = nn.Sequential(convt(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
                          nn.Tanh(), nn.Flatten(1), nn.LazyLinear(2))
    model(torch.randn(1, 2, *size))
    both(model, lambda n: torch.randn(n, 2, *size))


def test_conv_transpose_output_size() -> None:
    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(x, output_size=[8, 7]).flatten(1)

    both(Up(), lambda n: torch.randn(n, 2, 4, 4))


# ---------------------------------------------------------------------------------------------
# Embedding


@pytest.mark.parametrize("opts", [{}, {"padding_idx": 0}, {"max_norm": 1.0}])
def test_embedding(route: str, opts: dict[str, Any]) -> None:
    model = nn.Sequential(nn.Embedding(7, 3, **opts), nn.Tanh(), nn.Flatten(1),
                          nn.Linear(12, 2))
    both(model, lambda n: torch.randint(0, 7, (n, 4)))
    if "max_norm" not in opts:
        assert fallback(model, torch.randint(0, 7, (2, 4))) == {}


def test_embedding_padding_rows_get_no_gradient() -> None:
    model = nn.Sequential(nn.Embedding(5, 3, padding_idx=0), nn.Flatten(1))
    x = torch.zeros(2, 4, dtype=torch.long)
    k = ntkscope.module_ntk(model, x, method="layerwise")
    assert torch.count_nonzero(k) == 0


def test_embedding_scale_grad_by_freq_falls_back() -> None:
    model = nn.Sequential(nn.Embedding(7, 3, scale_grad_by_freq=True), nn.Flatten(1))
    reasons = fallback(model, torch.randint(0, 7, (2, 4)))
    assert "scale_grad_by_freq" in reasons["0.weight"]


# ---------------------------------------------------------------------------------------------
# Norm layers

NORMS: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("batchnorm1d", lambda: nn.BatchNorm1d(4), (4,)),
    ("batchnorm1d-seq", lambda: nn.BatchNorm1d(4), (4, 3)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(4), (4, 3, 2)),
    ("batchnorm3d", lambda: nn.BatchNorm3d(4), (4, 2, 2, 2)),
    ("layernorm", lambda: nn.LayerNorm(4), (3, 4)),
    ("layernorm-2d", lambda: nn.LayerNorm((3, 4)), (2, 3, 4)),
    ("layernorm-nobias", lambda: nn.LayerNorm(4, bias=False), (4,)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4), (4, 3, 2)),
    ("rmsnorm", lambda: nn.RMSNorm(4), (3, 4)),
]


@pytest.mark.parametrize("make,shape", [(m, s) for _, m, s in NORMS], ids=[n for n, _, _ in NORMS])
def test_norm_affine(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    norm = make()
    # non-trivial running statistics and affine parameters
    for name, t in [*norm.named_parameters(), *norm.named_buffers()]:
        if t.dtype.is_floating_point:
            with torch.no_grad():
                t.copy_(torch.rand_like(t) + 0.5 if "var" in name else torch.randn_like(t))
    first = nn.Linear(shape[-1], shape[-1])
    model = nn.Sequential(first, norm, nn.Tanh(), nn.Flatten(1), nn.LazyLinear(2)).eval()
    model(torch.randn(2, *shape))
    both(model, lambda n: torch.randn(n, *shape))
    assert fallback(model, torch.randn(2, *shape)) == {}


# ---------------------------------------------------------------------------------------------
# Mixed models


def test_cnn_with_batchnorm_and_pooling(route: str) -> None:
    model = zoo.bn_cnn(1, (3, 4), 3).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    both(model, lambda n: torch.randn(n, 1, 8, 8))


def test_residual_network_inplace_relu(route: str) -> None:
    model = zoo.residual_net((1, 1), (3, 4), 2, 2).eval()
    both(model, lambda n: torch.randn(n, 2, 6, 6))
    assert fallback(model, torch.randn(2, 2, 6, 6)) == {}


def test_small_transformer_on_tokens() -> None:
    model = zoo.tiny_transformer(vocab=11, d_model=8, nhead=2, dim_feedforward=8, max_len=5,
                                 num_classes=2).eval()
    both(model, lambda n: torch.randint(0, 11, (n, 5)))
    reasons = fallback(model, torch.randint(0, 11, (2, 5)))
    # packed attention projections and the position embedding (called without a sample
    # axis) go to the Jacobian path; token embedding, feed-forward, norms and head do not
    assert any("in_proj_weight" in n for n in reasons)
    assert "positions.weight" in reasons
    assert "tokens.weight" not in reasons and "head.weight" not in reasons
    assert not any("linear1" in n or "norm" in n for n in reasons)


def test_sequence_model_with_dict_inputs_and_forward() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(9, 4)
            self.conv = nn.Conv1d(4, 4, 3, padding=1)
            self.norm = nn.LayerNorm(4)
            self.out = nn.Linear(4, 2)

        def forward(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            h = self.conv(self.emb(ids).transpose(1, 2)).transpose(1, 2)
            return self.out(torch.tanh(self.norm(h)) * scale[:, None, None])

    model = Tagger()

    def make(n: int) -> dict[str, torch.Tensor]:
        return {"ids": torch.randint(0, 9, (n, 5)), "scale": torch.rand(n) + 0.5}

    both(model, make, forward=lambda m, b: m(**b))


# ---------------------------------------------------------------------------------------------
# The Jacobian fallback


class TiedLM(nn.Module):
    """Embedding tied to the output projection (raw use), a raw parameter, a module called
    twice."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.lin = nn.Linear(4, 4)
        self.gain = nn.Parameter(torch.rand(4) + 0.5)
        self.head = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(self.emb(x))) * self.gain
        h = self.lin(h)
        return (self.head(h) @ self.emb.weight.T).flatten(1)


def test_fallback_raw_parameter_twice_called_and_raw_use(route: str) -> None:
    model = TiedLM()
    both(model, lambda n: torch.randint(0, 7, (n, 3)))
    reasons = fallback(model, torch.randint(0, 7, (2, 3)))
    assert set(reasons) == {"emb.weight", "lin.weight", "lin.bias", "gain"}
    assert "gradient check" in reasons["emb.weight"]
    assert "called 2 times" in reasons["lin.weight"]


def test_fallback_tied_modules() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)
            self.b.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(x)))

    model = Shared()
    both(model, lambda n: torch.randn(n, 3))
    assert set(fallback(model, torch.randn(2, 3))) == {"a.weight"}


def test_fallback_subclass_and_parametrization() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2.0 * super().forward(x)

    lin = nn.utils.parametrizations.weight_norm(nn.Linear(3, 3))
    model = nn.Sequential(Scaled(3, 3), nn.Tanh(), lin)
    both(model, lambda n: torch.randn(n, 3))
    reasons = fallback(model, torch.randn(2, 3))
    assert {"0.weight", "0.bias", "2.bias"} <= set(reasons)


def test_fallback_user_hook_changing_the_output() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2))
    model[0].register_forward_hook(lambda m, a, y: y * 3.0)
    both(model, lambda n: torch.randn(n, 3))


def test_batch_first_false_attention_mixes_axes() -> None:
    """Linear layers applied to (T, N, d) tensors have the samples on axis 1: caught."""

    class SeqFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.out = nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.lin(x.transpose(0, 1)))  # (T, N, 3)
            return self.out(h).sum(0)

    model = SeqFirst()
    both(model, lambda n: torch.randn(n, 2, 3))
    assert "lin.weight" in fallback(model, torch.randn(2, 2, 3))


# ---------------------------------------------------------------------------------------------
# Parameters


def test_frozen_parameters_and_params() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Flatten(1), nn.Linear(9, 2))
    model[0].bias.requires_grad_(False)
    both(model, lambda n: torch.randn(n, 2, 5))
    both(model, lambda n: torch.randn(n, 2, 5), params=["3.weight", "0.weight"])
    both(model, lambda n: torch.randn(n, 2, 5), params=["3.bias"])


def test_blocks_add_up_over_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(4, 3)
    problem = build_problem(model, output="full")
    whole = _layerwise.block(problem, Inputs.of(x), None, problem.names)
    parts = sum(_layerwise.block(problem, Inputs.of(x), None, [n]) for n in problem.names)
    assert rel(parts, whole) < TOL


# ---------------------------------------------------------------------------------------------
# Route choice and memory estimate


def test_route_cost_model() -> None:
    dense = _layerwise.Dims(1, 1, 256, 256, 256 * 256, 256)
    assert _layerwise.route(dense, "trace", 128, None, 1) == "gram"
    conv = _layerwise.Dims(1, 784, 288, 32, 288 * 32, 32)
    assert _layerwise.route(conv, "trace", 64, None, 10) == "materialized"
    assert _layerwise.route(conv, "full", 64, None, 10) == "materialized"
    tokens = _layerwise.Dims(1, 8, 1, 16, 30000 * 16, 0, jflops=8 * 16)
    assert _layerwise.route(tokens, "trace", 32, None, 2) == "gram"


def test_estimate_grows_with_the_tile() -> None:
    model = zoo.bn_cnn(1, (3, 4), 3).eval()
    x = torch.randn(4, 1, 8, 8)
    for output in OUTPUTS:
        problem = build_problem(model, output=output)
        small = _layerwise.estimate(problem, 2, None, problem.names, Inputs.of(x))
        large = _layerwise.estimate(problem, 16, None, problem.names, Inputs.of(x))
        assert 0 < small < large
