"""``module_ntk``'s API: exactness of the "jacobian" and "ntvp" methods (and "auto") against the
per-sample autograd reference, every output, ``x2`` given and not, dict inputs, frozen params,
``params=``, tied weights, integer tokens; input validation; sample-coupling detection; tiling
under ``max_memory``, and the peak memory of a budgeted run measured in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import ntkscope
from ntkscope import NtkscopeInputError, module_ntk
from ntkscope.generic import (
    Inputs,
    Method,
    activation_profile,
    budget_for,
    build_problem,
    method_functions,
    parse_memory,
    reference_module_ntk,
)

F64 = torch.float64
METHODS = ["jacobian", "ntvp", "auto"]
CASES = [("trace", False), ("trace", True), ("full", False), ("full", True), ("diagonal", False)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative Frobenius distance ``|a - b| / |b|``."""
    return float((a - b).norm() / b.norm())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.ReLU(),
                         nn.Linear(6, 3)).to(F64)


def convnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.Linear(4, 2)).to(F64)


class DictNet(nn.Module):
    """Takes a dict ``{"a": (N, 4) float, "ids": (N, 3) long}`` and a keyword flag."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, a: torch.Tensor, ids: torch.Tensor, squash: bool = True) -> torch.Tensor:
        h = self.lin(a) + self.emb(ids).mean(dim=1) * self.scale
        return self.out(torch.tanh(h) if squash else h)


def dict_case() -> tuple[nn.Module, Callable[[nn.Module, Any], torch.Tensor], dict, dict]:
    torch.manual_seed(2)
    model = DictNet().to(F64)
    g = _gen(3)

    def batch(n: int) -> dict[str, Any]:
        return {"a": torch.randn(n, 4, dtype=F64, generator=g),
                "ids": torch.randint(0, 7, (n, 3), generator=g), "squash": True}

    def fwd(m: nn.Module, b: dict[str, Any]) -> torch.Tensor:
        return m(**b)

    return model, fwd, batch(5), batch(3)


def _compare(model: nn.Module, x1: Any, x2: Any, method: str, **kw: Any) -> None:
    for output, given in CASES:
        other = x2 if given else None
        want = reference_module_ntk(model, x1, other, output=output, **kw)
        got = module_ntk(model, x1, other, output=output, method=method, **kw)
        assert got.shape == want.shape, (output, given)
        assert got.dtype == want.dtype
        assert not got.requires_grad
        assert rel(got, want) < 1e-10, (method, output, given)


# ---------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("method", METHODS)
def test_mlp_exact(method: str) -> None:
    x1 = torch.randn(6, 5, dtype=F64, generator=_gen())
    x2 = torch.randn(4, 5, dtype=F64, generator=_gen(1))
    _compare(mlp(), x1, x2, method)


@pytest.mark.parametrize("method", METHODS)
def test_convnet_exact(method: str) -> None:
    x1 = torch.randn(4, 2, 6, 6, dtype=F64, generator=_gen())
    x2 = torch.randn(3, 2, 6, 6, dtype=F64, generator=_gen(1))
    _compare(convnet(), x1, x2, method)


@pytest.mark.parametrize("method", METHODS)
def test_dict_inputs_and_integer_tokens(method: str) -> None:
    model, fwd, x1, x2 = dict_case()
    _compare(model, x1, x2, method, forward=fwd)


@pytest.mark.parametrize("method", METHODS)
def test_frozen_and_selected_params(method: str) -> None:
    x1 = torch.randn(5, 5, dtype=F64, generator=_gen())
    x2 = torch.randn(3, 5, dtype=F64, generator=_gen(1))
    model = mlp()
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    _compare(model, x1, x2, method)
    _compare(model, x1, x2, method, params=["4.weight", "0.bias"])
    # the frozen kernel is the full kernel less the frozen parameters' part
    full = module_ntk(mlp(), x1, method=method)
    part = module_ntk(mlp(), x1, method=method, params=["0.weight", "2.bias"])
    assert rel(module_ntk(model, x1, method=method), full - part) < 1e-10


class Tied(nn.Module):
    """An embedding whose weight is also the output projection (and a raw parameter)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.emb.weight
        self.mix = nn.Parameter(torch.randn(4, 4) / 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.emb(ids).sum(1) @ self.mix))


@pytest.mark.parametrize("method", METHODS)
def test_tied_weights(method: str) -> None:
    torch.manual_seed(5)
    model = Tied().to(F64)
    x1 = torch.randint(0, 6, (4, 3), generator=_gen())
    x2 = torch.randint(0, 6, (3, 3), generator=_gen(1))
    _compare(model, x1, x2, method)
    _compare(model, x1, x2, method, params=["head.weight"])  # the alias names the tied tensor


def test_output_scalar_per_sample_matches_all_outputs() -> None:
    """For ``O = 1`` trace, full and the diagonal agree; trace is the SUM over outputs."""
    x = torch.randn(4, 5, dtype=F64, generator=_gen())
    model = mlp()
    full = module_ntk(model, x, output="full", method="jacobian")
    trace = module_ntk(model, x, method="jacobian")
    assert rel(trace, full.diagonal(dim1=2, dim2=3).sum(-1)) < 1e-12
    assert rel(module_ntk(model, x, output="diagonal"), trace.diagonal()) < 1e-12
    one = nn.Sequential(model, nn.Linear(3, 1).to(F64))
    k = module_ntk(one, x, method="ntvp")
    assert rel(k, module_ntk(one, x, output="full", method="ntvp")[..., 0, 0]) < 1e-12


def test_float32_model_used_as_is() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(4, 5, generator=_gen())
    for method in METHODS:
        k = module_ntk(model, x, method=method)
        assert k.dtype == torch.float32
        assert rel(k.double(), reference_module_ntk(model, x).double()) < 1e-5
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("method", ["jacobian", "ntvp", "layerwise"])
def test_called_under_no_grad(method: str) -> None:
    x = torch.randn(4, 2, 6, 6, dtype=F64, generator=_gen())
    model = convnet()
    with torch.no_grad():
        got = module_ntk(model, x, method=method)
    assert rel(got, reference_module_ntk(model, x)) < 1e-10


def test_lazy_exports() -> None:
    assert ntkscope.module_ntk is ntkscope.generic.module_ntk
    assert ntkscope.reference_module_ntk is reference_module_ntk
    assert {"module_ntk", "reference_module_ntk"} <= set(ntkscope.__all__)


# ---------------------------------------------------------------------------------------------
# Validation


class Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).sum()


class Transposed(Scalar):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).T


class Nan(Scalar):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.lin(x))


class Pair(Scalar):
    def forward(self, x: torch.Tensor) -> Any:
        return self.lin(x), x


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 5, generator=_gen())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: module_ntk(nn.ReLU(), _x()), "no trainable parameters"),
        (lambda: module_ntk(nn.Linear(5, 2).requires_grad_(False), _x()), "frozen"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), params=["weight", "wieght"]), "unknown"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), params=[]), "empty"),
        (lambda: module_ntk(Scalar(), _x()), "first axis must be the samples"),
        (lambda: module_ntk(Transposed(), _x()), "first axis must be the samples"),
        (lambda: module_ntk(Nan(), _x()), "not finite"),
        (lambda: module_ntk(Pair(), _x()), "not a tensor"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), output="mean"), "output"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), method="fast"), "method"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), _x(), output="diagonal"), "x2 must be None"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), torch.randn(3, 4)), "structure differs"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), _x().long()), "structure differs"),
        (lambda: module_ntk(nn.Linear(5, 2), (_x(), _x(3))), "disagree on the number"),
        (lambda: module_ntk(nn.Linear(5, 2), [1, 2]), "no tensor"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(0)), "no samples"),
        (lambda: module_ntk(nn.Linear(5, 2), torch.tensor(1.0)), "scalar"),
        (lambda: module_ntk(nn.Linear(5, 2), _x().double()), "model failed on x1"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), forward=3), "forward"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), max_memory="lots"), "max_memory"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), max_memory=-5), "positive"),
        (lambda: module_ntk(nn.Linear(5, 2), _x(), max_memory=100), "too small"),
        (lambda: module_ntk("model", _x()), "nn.Module"),
    ],
)
def test_bad_input(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(NtkscopeInputError, match=message):
        call()


def test_dict_structure_must_match() -> None:
    model, fwd, x1, x2 = dict_case()
    with pytest.raises(NtkscopeInputError, match="structure differs"):
        module_ntk(model, x1, {"a": x2["a"], "squash": True}, forward=fwd)


def test_too_small_budget_states_the_estimate() -> None:
    with pytest.raises(NtkscopeInputError, match=r"one sample needs about [0-9.]+ KiB"):
        module_ntk(mlp(), torch.randn(4, 5, dtype=F64), max_memory="1KiB", method="jacobian")


def test_parse_memory() -> None:
    assert parse_memory(1000) == 1000
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory("500MB") == 500 * 10**6
    assert parse_memory(" 1.5 gib ") == int(1.5 * 2**30)
    assert parse_memory("64k") == 64000
    for bad in ("", "2 GiBs", "-1MB", "0", True, None, "nan"):
        with pytest.raises(NtkscopeInputError, match="max_memory"):
            parse_memory(bad)


def test_inputs() -> None:
    x = {"a": torch.arange(10).reshape(5, 2), "b": (torch.ones(5), "tag")}
    inp = Inputs.of(x)
    assert inp.n == 5
    part = inp.take(1, 3).value
    assert part["a"].tolist() == [[2, 3], [4, 5]] and part["b"][1] == "tag"
    assert inp.select(torch.tensor([4, 0])).value["a"][:, 0].tolist() == [8, 0]
    assert [lo for lo, _ in inp.batched(2)] == [0, 2, 4]


# ---------------------------------------------------------------------------------------------
# Sample coupling


class BatchCentered(nn.Module):
    """Subtracts the batch mean: ``f(x)[i]`` depends on every ``x[j]``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return h - h.mean(0, keepdim=True)


def test_coupling_refused() -> None:
    x = _x()
    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(NtkscopeInputError, match=r"couples samples.*1 \(BatchNorm1d\).*eval"):
        module_ntk(bn, x)
    bn.eval()
    assert module_ntk(bn, x).shape == (4, 4)
    stats_free = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(NtkscopeInputError, match="track_running_stats"):
        module_ntk(stats_free.eval(), x)
    drop = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.2))
    with pytest.raises(NtkscopeInputError, match="at random"):
        module_ntk(drop, x)
    assert module_ntk(drop.eval(), x).shape == (4, 4)
    with pytest.raises(NtkscopeInputError, match="output on sample 0 of x1 differs"):
        module_ntk(BatchCentered(), x)


# ---------------------------------------------------------------------------------------------
# Tiling and memory


@pytest.mark.parametrize("method", ["jacobian", "ntvp", "layerwise"])
@pytest.mark.parametrize(("output", "given"), CASES)
def test_tiled_equals_untiled(method: str, output: str, given: bool,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = convnet()
    x1 = torch.randn(7, 2, 6, 6, dtype=F64, generator=_gen())
    x2 = torch.randn(5, 2, 6, 6, dtype=F64, generator=_gen(1)) if given else None
    want = reference_module_ntk(model, x1, x2, output=output)
    problem = build_problem(model, output=output)
    activation_profile(problem, Inputs.of(x1))
    block, estimate = method_functions(Method(method))
    problem.cache["probe"] = Inputs.of(x1)
    def cost(t: int) -> int:
        return estimate(problem, t, None if output == "diagonal" else t, problem.names)

    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    size = {"trace": x1.shape[0] * n2, "full": x1.shape[0] * n2 * 4, "diagonal": x1.shape[0]}
    assert cost(2) < cost(3)
    budget = budget_for(problem, (cost(2) + cost(3)) // 2, size[output] * 8)  # tiles of 2
    tiles: list[tuple[int, int | None]] = []

    def counting(*args: Any) -> torch.Tensor:
        tiles.append((args[1].n, None if args[2] is None else args[2].n))
        return block(*args)

    monkeypatch.setattr("ntkscope.generic._api.method_functions", lambda m: (counting, estimate))
    got = module_ntk(model, x1, x2, output=output, method=method, max_memory=budget)
    assert rel(got, want) < 1e-10
    assert max(t[0] for t in tiles) == 2
    if x2 is None and output != "diagonal":
        assert torch.equal(got, got.transpose(0, 1) if output == "trace"
                           else got.permute(1, 0, 3, 2))
        rows = -(-x1.shape[0] // tiles[0][0])
        assert len(tiles) == rows * (rows + 1) // 2  # the upper triangle only


def test_estimates_grow_with_the_tile() -> None:
    model = convnet()
    x = Inputs.of(torch.randn(4, 2, 6, 6, dtype=F64))
    problem = build_problem(model, output="full")
    activation_profile(problem, x)
    for method in (Method.JACOBIAN, Method.NTVP):
        estimate = method_functions(method)[1]
        small = estimate(problem, 1, None, problem.names)
        assert 0 < small < estimate(problem, 4, None, problem.names) <= estimate(
            problem, 4, 4, problem.names)


_PEAK = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    import ntkscope
    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    torch.set_num_threads(1)
    method, budget = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 192), nn.Tanh(), nn.Linear(192, 8)).double()
    x = torch.randn(48, 256, dtype=torch.float64)
    tiny = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2)).double()
    ntkscope.module_ntk(tiny, torch.ones(2, 3, dtype=torch.float64), method=method)  # imports
    size = sum(t.numel() * t.element_size() for t in model.parameters())
    try:  # reset the high-water mark to the current resident set (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = status("VmRSS")
    except OSError:
        before = status("VmHWM")
    k = ntkscope.module_ntk(model, x, method=method, max_memory=budget)
    assert k.shape == (48, 48) and bool(torch.isfinite(k).all())
    print(json.dumps({"added": status("VmHWM") - before, "model": size}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("method", ["jacobian", "ntvp", "auto"])
def test_peak_memory_under_budget(method: str) -> None:
    """Peak resident memory added by a budgeted call (``VmHWM`` of a fresh process, as
    ``bench/`` measures it, its mark reset to the resident set just before the call) stays
    under the budget plus the model's size, where the untiled computation would need several
    times the budget (``N O P`` = 48 * 8 * 51k scalars)."""
    budget = 32 * 2**20
    problem = build_problem(nn.Sequential(nn.Linear(256, 192), nn.Tanh(),
                                               nn.Linear(192, 8)).double())
    activation_profile(problem, Inputs.of(torch.zeros(48, 256, dtype=F64)))
    assert method_functions(Method.JACOBIAN)[1](problem, 48, None, problem.names) > 8 * budget
    run = subprocess.run([sys.executable, "-c", _PEAK, method, str(budget)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["added"] <= budget + got["model"], got
