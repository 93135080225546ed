"""``init_randomness``: the seeding convention, the statistics against the MLP sampler, resume
and executors, errors, and the ``ntk-variance --model`` command line."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import ntkscope.generic._init_randomness as ir
from ntkscope.generic import (
    factory_spec,
    init_randomness,
    inputs_fingerprint,
    reference_module_ntk,
)
from ntkscope.store import Store
from ntkscope.validation import NtkscopeInputError

FACTORY_FILE = """
import torch
from torch import nn


def small():
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
"""


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))


def _rebuilt(seed: int, inits: int, x: torch.Tensor) -> torch.Tensor:
    """``(inits, S, S, O, O)`` kernels by hand: ``torch.manual_seed(seed + i); factory()``."""
    out = []
    for i in range(inits):
        torch.manual_seed(seed + i)
        model = small().double().eval()
        out.append(reference_module_ntk(model, x, output="full"))
    return torch.stack(out)


def _direct_std(K: torch.Tensor) -> float:
    """``sqrt(V / (|mean|^2 - V/N))``, ``V`` the unbiased total variance, from all kernels."""
    flat = K.reshape(K.shape[0], -1).numpy()
    n = flat.shape[0]
    mean = flat.mean(0)
    v = float(((flat - mean) ** 2).sum()) / (n - 1)
    return math.sqrt(v / (float((mean**2).sum()) - v / n))


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module")
def full(x: torch.Tensor) -> torch.Tensor:
    return _rebuilt(7, 12, x)


def test_seeding_statistics_and_kernel_std_match_a_rebuild(x, full, tmp_path) -> None:
    res = init_randomness(small, x, inits=12, seed=7, chunk=3, executor="inline",
                          store=tmp_path / "s.sqlite")
    trace = full.diagonal(dim1=3, dim2=4).sum(-1)  # (N, S, S)
    diag = trace.diagonal(dim1=1, dim2=2).numpy()
    np.testing.assert_allclose(res.theta, diag, rtol=1e-12)
    # the stored samples are the per-init diagonals of their chunk
    with Store(tmp_path / "s.sqlite") as st:
        rows = sorted((r for r in st.records(kind=ir.KIND)), key=lambda r: r.config["start"])
    assert [r.config["start"] for r in rows] == [0, 3, 6, 9]
    for r in rows:
        lo = r.config["start"]
        np.testing.assert_allclose(r.samples[:15].reshape(3, 5), diag[lo:lo + 3], rtol=1e-12)
    ratios = (diag**2).mean(0) / diag.mean(0) ** 2
    np.testing.assert_allclose(res.ratios, ratios, rtol=1e-12)
    assert res.worst == int(np.argmax(ratios)) and res.ratio == pytest.approx(ratios.max())
    assert res.esses == pytest.approx((diag**2).sum(0) ** 2 / (diag**4).sum(0))
    assert res.inits == 12 and res.chunks == 4 and res.computed == 4 and res.cached == 0
    assert res.ratio_is_lower_bound is False and res.ratio_ci is not None  # ESS ~ N: light
    assert res.ratio_ci[0] <= res.ratio <= res.ratio_ci[1]
    torch.testing.assert_close(res.mean_kernel, trace.mean(0), rtol=1e-12, atol=0)
    assert res.kernel_std == pytest.approx(_direct_std(trace), rel=1e-10)
    assert res.kernel_std_se is None  # 4 chunks: too few for the jackknife


def test_full_and_diagonal_outputs(x, full) -> None:
    res = init_randomness(small, x, inits=12, seed=7, chunk=2, output="full",
                          executor="inline")
    diag = full.diagonal(dim1=3, dim2=4).sum(-1).diagonal(dim1=1, dim2=2).numpy()
    np.testing.assert_allclose(res.theta, diag, rtol=1e-12)  # R on the trace of the block
    assert res.mean_kernel.shape == (5, 5, 2, 2)
    torch.testing.assert_close(res.mean_kernel, full.mean(0), rtol=1e-12, atol=0)
    assert res.kernel_std == pytest.approx(_direct_std(full), rel=1e-10)
    assert res.chunks == 6 and res.kernel_std_se is None  # < MIN_JACKKNIFE_CHUNKS
    dres = init_randomness(small, x, inits=12, seed=7, output="diagonal", executor="inline")
    np.testing.assert_allclose(dres.ratios, res.ratios, rtol=1e-12)
    assert dres.mean_kernel.shape == (5,)
    assert dres.kernel_std == pytest.approx(_direct_std(torch.from_numpy(diag)), rel=1e-10)


def test_jackknife_over_chunks(x) -> None:
    res = init_randomness(small, x, inits=16, seed=3, chunk=2, executor="inline")
    K = _rebuilt(3, 16, x).diagonal(dim1=3, dim2=4).sum(-1)
    groups = [torch.cat([K[:2 * g], K[2 * g + 2:]]) for g in range(8)]
    vals = np.array([_direct_std(k) for k in groups])
    se = math.sqrt(7 / 8 * np.sum((vals - vals.mean()) ** 2))
    assert res.kernel_std_se == pytest.approx(se, rel=1e-8)


def test_resume_computes_only_missing_chunks(x, tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    first = init_randomness(small, x, inits=12, seed=1, chunk=3, executor="inline", store=path)
    with Store(path) as st:
        keys = sorted((r.config["start"], r.key) for r in st.records(kind=ir.KIND))
        st.delete([keys[1][1], keys[3][1]])  # as if killed before these two finished
    again = init_randomness(small, x, inits=12, seed=1, executor="inline", store=path)
    assert again.chunk == 3  # the chunk size of the stored run, not a new timing
    assert (again.computed, again.cached) == (2, 2)
    np.testing.assert_array_equal(again.theta, first.theta)
    assert again.kernel_std == first.kernel_std and again.ratio_cis == first.ratio_cis
    assert torch.equal(again.mean_kernel, first.mean_kernel)
    # other inputs never reuse these chunks
    other = init_randomness(small, x * 2, inits=12, seed=1, executor="inline", store=path)
    assert other.cached == 0 and not np.allclose(other.theta, first.theta)


def test_local_workers_equal_inline(x, tmp_path, monkeypatch) -> None:
    file = tmp_path / "model.py"
    file.write_text(textwrap.dedent(FACTORY_FILE))
    spec = f"{file}:small"
    monkeypatch.setattr(ir, "LOCAL_MIN_SECONDS", 0.0)  # workers even for a tiny job
    local = init_randomness(spec, x, inits=12, seed=7, chunk=3, executor="local", workers=2)
    assert local.executor == "local" and local.computed == 4
    inline = init_randomness(small, x, inits=12, seed=7, chunk=3, executor="inline")
    np.testing.assert_array_equal(local.theta, inline.theta)
    assert local.kernel_std == inline.kernel_std
    assert local.model == f"{file.resolve()}:small"


def test_factory_specs(tmp_path) -> None:
    assert factory_spec(small) == f"{__name__}:small" or factory_spec(small).endswith(
        "test_init_randomness.py:small")
    assert factory_spec(lambda: small()) is None

    def local() -> nn.Module:
        return small()

    assert factory_spec(local) is None
    from ntkscope.generic import zoo
    assert factory_spec(zoo.mnist_cnn) == "ntkscope.generic.zoo:mnist_cnn"


def test_closures_run_in_process_and_refuse_store_and_dask(x, tmp_path) -> None:
    width = 4
    res = init_randomness(lambda: nn.Sequential(nn.Linear(3, width), nn.Tanh(),
                                                nn.Linear(width, 1)), x, inits=4)
    assert res.executor == "inline" and res.model.startswith("<function")
    with pytest.raises(NtkscopeInputError, match="store"):
        init_randomness(lambda: small(), x, inits=4, store=tmp_path / "a.sqlite")
    with pytest.raises(NtkscopeInputError, match="dask"):
        init_randomness(lambda: small(), x, inits=4, executor="dask")


def test_inputs_fingerprint() -> None:
    a = torch.zeros(2, 3)
    assert inputs_fingerprint(a) == inputs_fingerprint(a.clone())
    assert inputs_fingerprint(a) != inputs_fingerprint(a.double())
    assert inputs_fingerprint(a) != inputs_fingerprint(torch.zeros(3, 2))
    b = a.clone()
    b[1, 2] = 1e-30
    assert inputs_fingerprint(a) != inputs_fingerprint(b)
    assert inputs_fingerprint((a, {"k": a})) != inputs_fingerprint((a, {"j": a}))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"inits": 1}, "inits"),
    ({"inits": 2.5}, "inits"),
    ({"seed": -1}, "seed"),
    ({"output": "fro"}, "output"),
    ({"executor": "threads"}, "executor"),
    ({"workers": 0}, "workers"),
    ({"chunk": 0}, "chunk"),
    ({"params": "0.weight"}, "params"),
    ({"dtype": torch.int64}, "dtype"),
    ({"confidence": 1.5}, "confidence"),
    ({"store": 3}, "store"),
    ({"forward": 3}, "forward"),
])
def test_bad_arguments(x, kwargs, match) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        init_randomness(small, x, **{"inits": 4, **kwargs})


def test_bad_factories_and_inputs(x, tmp_path) -> None:
    with pytest.raises(NtkscopeInputError, match="factory"):
        init_randomness(3, x, inits=4)
    with pytest.raises(NtkscopeInputError, match="factory"):
        init_randomness(nn, x, inits=4)
    with pytest.raises(NtkscopeInputError, match="fresh model"):
        init_randomness(small(), x, inits=4)
    with pytest.raises(NtkscopeInputError, match="model"):
        init_randomness("no_such_file.py:make", x, inits=4)
    with pytest.raises(NtkscopeInputError, match="returned int"):
        init_randomness(lambda: 3, x, inits=4)
    with pytest.raises(NtkscopeInputError):
        init_randomness(small, "not a tensor", inits=4)
    with pytest.raises(NtkscopeInputError):
        init_randomness(small, torch.randn(4, 5), inits=4)  # wrong feature size
    with pytest.raises(NtkscopeInputError, match=r"x_1, x_1\) is 0 in every"):
        init_randomness(lambda: nn.Linear(3, 1, bias=False),
                        torch.tensor([[1.0, 2, 3], [0, 0, 0]]), inits=3)


# --------------------------------------------------------------------------------------------
# Against the MLP sampler (same law: weights N(0, sw2/fan_in), biases N(0, sb2))

SW2, SB2, DEPTH, WIDTH, M0 = 2.0, 0.1, 3, 8, 6


def paper_relu_mlp() -> nn.Module:
    layers: list[nn.Module] = []
    widths = [M0, *[WIDTH] * DEPTH, 1]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        lin = nn.Linear(a, b, dtype=torch.float64)
        nn.init.normal_(lin.weight, 0.0, math.sqrt(SW2 / a))
        nn.init.normal_(lin.bias, 0.0, math.sqrt(SB2))
        layers += [lin] if i == DEPTH else [lin, nn.ReLU()]
    return nn.Sequential(*layers)


@pytest.mark.slow
def test_ratio_agrees_with_the_mlp_sampler() -> None:
    from ntkscope import NetworkSpec
    from ntkscope.sampling import ntk_variance

    ref = ntk_variance(NetworkSpec("relu", SW2, SB2, DEPTH, WIDTH, M0), inits=40_000, seed=5)
    res = init_randomness(paper_relu_mlp, torch.ones(1, M0, dtype=torch.float64), inits=2000,
                          seed=11, executor="inline")
    assert res.ratio_ci is not None and ref.ratio_ci is not None
    # standard errors from the 95% intervals; the difference within 4 combined errors
    se = math.hypot(*((hi - lo) / (2 * 1.96) for lo, hi in (res.ratio_ci, ref.ratio_ci)))
    assert abs(res.ratio - ref.ratio) < 4 * se, (res.ratio, ref.ratio, se)
    assert res.ratio - 1 > 10 * se  # a real test: R is far from 1 at L/M = 3/8
    assert float(res.mean_diag[0]) == pytest.approx(ref.mean, rel=0.05)


# --------------------------------------------------------------------------------------------
# Command line


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from ntkscope.cli.main import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(tmp_path, capsys) -> None:
    file = tmp_path / "model.py"
    file.write_text(textwrap.dedent(FACTORY_FILE).replace("nn.Linear(3, 6)",
                                                          "nn.Linear(784, 6)"))
    code, out, _ = _cli(["ntk-variance", "--model", f"{file}:small", "--dataset", "gaussian",
                         "--samples", "3", "--inits", "6", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["inits"] == 6 and len(data["ratios"]) == 3 and data["ratio"] >= 1
    assert data["worst"] == int(np.argmax(data["ratios"]))
    assert "flat" in data["inputs_described"] and "3 x 784" in data["inputs_described"]


@pytest.mark.parametrize("args", [
    ["--model", "nope.py:make", "--samples", "3"],
    ["--model", "ntkscope.generic.zoo:mnist_cnn", "--samples", "3", "--inits", "1"],
    ["--model", "ntkscope.generic.zoo:mnist_cnn", "--samples", "3", "--executor", "x"],
    ["--model", "ntkscope.generic.zoo:mnist_cnn", "--samples", "3", "--width", "5"],
])
def test_cli_errors_exit_2(args, capsys) -> None:
    code, _, err = _cli(["ntk-variance", *args], capsys)
    assert code == 2 and "Traceback" not in err and err.strip()
    assert len(err.strip().splitlines()) == 1


def test_result_renders(x) -> None:
    res = init_randomness(small, x, inits=6, executor="inline")
    d = res.to_dict()
    json.dumps(d)
    assert set(d) >= {"ratio", "ratio_ci", "ess", "ratio_is_lower_bound", "inits", "ratios",
                      "ratio_cis", "esses", "lower_bounds", "kernel_std", "worst"}
    rows = res.rows()
    assert rows[0][0] == f"R of the worst input ({res.worst})"
    assert rows[0][1] == res.ratio_text() and sum("R of input" in r[0] for r in rows) == 4
    assert "6 inits" in res.title()
