"""``module_ntk`` on real models: ``MLP.to_module`` against ``empirical_ntk``, the reference
architectures of ``ntkscope.generic.zoo`` against the plain autograd reference, model
factories (``FILE.py:FACTORY``) and ``ntkscope ntk --model``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ntkscope import MLP, NtkscopeInputError, empirical_ntk, module_ntk
from ntkscope.cli.main import main
from ntkscope.datasets import load_dataset
from ntkscope.generic import init_model, load_factory, reference_module_ntk, zoo

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative Frobenius distance ``|a - b| / |b|``."""
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------
# MLP.to_module


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x)


@pytest.mark.parametrize(
    ("activation", "width", "depth", "sw2", "sb2"),
    [
        ("relu", 7, 3, 2.0, 0.1),
        ("tanh", [6, 9], 2, 1.5, 0.3),
        ("erf", 5, 1, 1.0, 0.0),
        (_softplus, 4, 4, 2.0, 0.5),
        ("relu", 3, 0, 1.0, 0.2),
    ],
)
@pytest.mark.parametrize("index", [0, 2, -1])
def test_to_module_matches_empirical_ntk(activation: str | Callable[[torch.Tensor], torch.Tensor],
                                         width: int | list[int], depth: int, sw2: float,
                                         sb2: float, index: int) -> None:
    net = MLP(5, width, depth, activation, sigma_w2=sw2, sigma_b2=sb2)
    params = net.init(batch=3, seed=4)
    gen = torch.Generator().manual_seed(0)
    X1 = torch.randn(6, 5, dtype=F64, generator=gen)
    X2 = torch.randn(4, 5, dtype=F64, generator=gen)
    module = net.to_module(params, index)
    assert isinstance(module, nn.Sequential)
    assert all(p.dtype == F64 and p.requires_grad for p in module.parameters())
    assert sum(p.numel() for p in module.parameters()) == net.num_params
    want = empirical_ntk(net, params, X1)[index]
    assert rel(module_ntk(module, X1), want) < 1e-10
    assert rel(module_ntk(module, X1, X2), empirical_ntk(net, params, X1, X2)[index]) < 1e-10
    diag = empirical_ntk(net, params, X1, diagonal=True)[index]
    assert rel(module_ntk(module, X1, output="diagonal"), diag) < 1e-10
    full = module_ntk(module, X1, output="full")
    assert full.shape == (6, 6, 1, 1) and rel(full[..., 0, 0], want) < 1e-10
    assert torch.allclose(module(X1)[:, 0], net.apply(params, X1)[index], rtol=1e-12, atol=0)


def test_to_module_layers_and_dtype() -> None:
    net = MLP(3, 4, 2, "tanh", sigma_w2=1.0, sigma_b2=0.1)
    params = net.init(batch=2, seed=0, dtype=torch.float32)
    module = net.to_module(params, 1)
    kinds = [type(m).__name__ for m in module]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert module[2].weight.dtype == torch.float32
    assert torch.equal(module[2].weight.detach(), params.weights[1][1])
    assert torch.equal(module[4].bias.detach(), params.biases[2][1])
    module[0].weight.data.add_(1.0)  # a copy: the params stay as they are
    assert not torch.equal(module[0].weight.detach(), params.weights[0][1])
    erf = MLP(3, 4, 1, "erf").to_module(MLP(3, 4, 1, "erf").init(1), 0)
    assert type(erf[1]).__name__ == "Elementwise" and "erf" in repr(erf)


@pytest.mark.parametrize(
    ("index", "match"),
    [(2, "out of range"), (-3, "out of range"), (True, "integer"), (0.5, "integer"),
     ("0", "integer"), ([0], "integer")],
)
def test_to_module_bad_index(index: object, match: str) -> None:
    net = MLP(3, 4, 1, "relu")
    with pytest.raises(NtkscopeInputError, match=f"index: .*{match}"):
        net.to_module(net.init(2), index)  # type: ignore[arg-type]


def test_to_module_bad_params() -> None:
    with pytest.raises(NtkscopeInputError, match="params"):
        MLP(3, 4, 1, "relu").to_module(MLP(3, 5, 1, "relu").init(1), 0)
    with pytest.raises(NtkscopeInputError, match="params"):
        MLP(3, 4, 1, "relu").to_module("weights", 0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Reference architectures


def _tokens(n: int, t: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


ZOO_CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[int, int], torch.Tensor]]] = {
    "mlp": (lambda: zoo.mlp(input_dim=6, width=5, depth=3, output_dim=2),
            lambda n, s: _images(n, 6, seed=s)),
    "mnist_cnn": (lambda: zoo.mnist_cnn(channels=(2, 2, 3), hidden=4, num_classes=3),
                  lambda n, s: _images(n, 1, 28, 28, seed=s)),
    "bn_cnn": (lambda: zoo.bn_cnn(in_channels=2, channels=(3, 4), num_classes=2),
               lambda n, s: _images(n, 2, 8, 8, seed=s)),
    "residual_net": (lambda: zoo.residual_net(blocks=(1, 1), widths=(2, 3), num_classes=2),
                     lambda n, s: _images(n, 3, 6, 6, seed=s)),
    "tiny_transformer": (lambda: zoo.tiny_transformer(vocab=11, d_model=8, nhead=2, layers=1,
                                                      dim_feedforward=6, max_len=5),
                         lambda n, s: _tokens(n, 5, 11, seed=s)),
}


def _zoo_model(name: str) -> nn.Module:
    torch.manual_seed(1)
    model = ZOO_CASES[name][0]().to(F64).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_zoo_models_match_reference(name: str) -> None:
    model = _zoo_model(name)
    x1, x2 = ZOO_CASES[name][1](3, 0), ZOO_CASES[name][1](2, 1)
    for output in ("trace", "full"):
        want = reference_module_ntk(model, x1, x2, output=output)
        got = module_ntk(model, x1, x2, output=output)
        assert got.shape == want.shape and rel(got, want) < 1e-10, (name, output)
    diag = reference_module_ntk(model, x1, output="diagonal")
    assert rel(module_ntk(model, x1, output="diagonal"), diag) < 1e-10
    assert rel(module_ntk(model, x1), reference_module_ntk(model, x1)) < 1e-10


@pytest.mark.parametrize(
    ("factory", "count"),
    [(zoo.mlp, 1_451_265), (zoo.mnist_cnn, 430_890), (zoo.bn_cnn, 1_458),
     (zoo.residual_net, 1_382), (zoo.resnet18, 11_173_962), (zoo.tiny_transformer, 3_346)],
)
def test_zoo_parameter_counts(factory: Callable[[], nn.Module], count: int) -> None:
    assert sum(p.numel() for p in factory().parameters()) == count


def test_zoo_shapes() -> None:
    cnn = zoo.mnist_cnn()
    assert cnn[9].in_features == 3136  # 64 channels x 7 x 7
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    resnet = zoo.resnet18().eval()
    blocks = [len(stage) for stage in resnet.stages]
    widths = [stage[0].conv1.out_channels for stage in resnet.stages]
    assert blocks == [2, 2, 2, 2] and widths == [64, 128, 256, 512]
    with torch.no_grad():
        assert resnet(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    tr = zoo.tiny_transformer()
    assert tr(_tokens(3, 7, 50)).shape == (3, 2)
    with pytest.raises(NtkscopeInputError, match="T <= 16"):
        tr(_tokens(1, 17, 50))


def test_resnet18_diagonal_matches_reference() -> None:
    """Full size, two samples, one output (``forward=``) to stay fast."""
    torch.manual_seed(0)
    model = zoo.resnet18().to(F64).eval()
    x = _images(2, 3, 32, 32)

    def first_logit(m: nn.Module, v: torch.Tensor) -> torch.Tensor:
        return m(v)[:, :1]

    got = module_ntk(model, x, output="diagonal", forward=first_logit)
    assert got.shape == (2,)
    want = reference_module_ntk(model, x, output="diagonal", forward=first_logit)
    assert rel(got, want) < 1e-10


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: zoo.mlp(width=0), "width"),
        (lambda: zoo.mlp(depth=-1), "depth"),
        (lambda: zoo.mnist_cnn(channels=(1, 2)), "channels"),
        (lambda: zoo.bn_cnn(channels=(3, "a")), "channels"),
        (lambda: zoo.ResNet((2, 2), (8,)), "widths"),
        (lambda: zoo.residual_net(blocks=()), "blocks"),
        (lambda: zoo.tiny_transformer(d_model=10, nhead=3), "divisible"),
        (lambda: zoo.resnet18(num_classes=0), "num_classes"),
    ],
)
def test_zoo_bad_arguments(build: Callable[[], nn.Module], match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        build()


# ---------------------------------------------------------------------------------------------
# Factories


FACTORY_FILE = """
import torch
from torch import nn


def cnn():
    return nn.Sequential(nn.Conv2d(1, 2, 5, stride=3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 8 * 8, 3)).double().eval()


def dense():
    return nn.Sequential(nn.Linear(784, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def float32_dense():
    return nn.Sequential(nn.Linear(784, 3), nn.Tanh(), nn.Linear(3, 1))


def batchnorm_training():
    return nn.Sequential(nn.Linear(784, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()


def not_a_module():
    return 42


def fails():
    raise ValueError("no weights here")


class Builder:
    @staticmethod
    def build():
        return nn.Linear(784, 1).double()


CONSTANT = 3
"""


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(FACTORY_FILE)
    (tmp_path / "broken.py").write_text("def f(:\n    return 1\n")
    (tmp_path / "raises.py").write_text("import no_such_module_here\n")
    return path


def test_load_factory_file_and_module(factories: Path) -> None:
    model = load_factory(f"{factories}:cnn")()
    assert isinstance(model, nn.Sequential) and not model.training
    assert isinstance(load_factory(f"{factories}:Builder.build")(), nn.Linear)
    assert isinstance(load_factory("ntkscope.generic.zoo:bn_cnn")(), nn.Sequential)


def test_init_model_seed_convention(factories: Path) -> None:
    factory = load_factory(f"{factories}:dense")
    a, b = init_model(factory, seed=3), init_model(factory, seed=2, index=1)
    torch.manual_seed(3)
    c = factory()
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)
    d = init_model(factory, seed=4)
    assert not torch.equal(next(a.parameters()), next(d.parameters()))
    with pytest.raises(NtkscopeInputError, match="seed"):
        init_model(factory, seed=-1)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("{dir}/missing.py:f", "no such file"),
        ("{dir}/broken.py:f", r"syntax error in .*broken\.py, line 1"),
        ("{dir}/raises.py:f", "ModuleNotFoundError"),
        ("{dir}/models.py:absent", "has no attribute 'absent'"),
        ("{dir}/models.py:CONSTANT", "not a callable"),
        ("{dir}/models.py", "expected FILE.py:FACTORY"),
        ("{dir}/models.py:", "expected FILE.py:FACTORY"),
        ("no_such_package.models:f", "no module named 'no_such_package.models'"),
        ("ntkscope.generic.zoo:absent", "has no attribute"),
    ],
)
def test_load_factory_errors(factories: Path, spec: str, match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        load_factory(spec.format(dir=factories.parent))


@pytest.mark.parametrize(("name", "match"), [("not_a_module", "returned int, expected"),
                                             ("fails", "raised ValueError: no weights here")])
def test_factory_call_errors(factories: Path, name: str, match: str) -> None:
    factory = load_factory(f"{factories}:{name}")
    with pytest.raises(NtkscopeInputError, match=match):
        factory()


# ---------------------------------------------------------------------------------------------
# ntkscope ntk --model


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _expected(spec: str, samples: int, seed: int, shape: tuple[int, ...],
              output: str = "trace") -> np.ndarray:
    model = init_model(load_factory(spec), seed)
    X = torch.as_tensor(load_dataset("gaussian", samples, seed).X).reshape(-1, *shape)
    dtype = next(model.parameters()).dtype
    return module_ntk(model, X.to(dtype), output=output).detach().numpy()


def test_cli_model_cnn(capsys: pytest.CaptureFixture[str], factories: Path,
                       tmp_path: Path) -> None:
    kfile = tmp_path / "k.npy"
    code, out, err = _run(capsys, "ntk", "--model", f"{factories}:cnn", "--samples", "5",
                          "--seed", "2", "--out", str(kfile), "--json")
    assert code == 0 and err == ""
    d = json.loads(out)
    K = np.load(kfile)
    want = _expected(f"{factories}:cnn", 5, 2, (1, 28, 28))
    assert K.shape == (5, 5) and np.allclose(K, want, rtol=1e-12, atol=0)
    eig = np.linalg.eigvalsh(K)
    assert d["size"] == 5 and d["trace"] == pytest.approx(np.trace(K))
    assert d["eig_max"] == pytest.approx(eig[-1])
    assert d["input_shape"] == [5, 1, 28, 28] and d["dtype"] == "float64"
    assert d["parameters"] == 2 * 25 + 2 + 128 * 3 + 3 and d["method"] == "auto"
    assert d["output"] == "trace" and d["model"] == f"{factories}:cnn"


def test_cli_model_dense_table(capsys: pytest.CaptureFixture[str], factories: Path) -> None:
    code, out, _ = _run(capsys, "ntk", "--model", f"{factories}:dense", "--samples", "4")
    assert code == 0
    assert "4 x 4" in out and "condition number" in out
    assert "4 x 784, float64 (flat: the model's first layer is nn.Linear)" in out


def test_cli_model_float32_and_method(capsys: pytest.CaptureFixture[str],
                                      factories: Path) -> None:
    code, out, _ = _run(capsys, "ntk", "--model", f"{factories}:float32_dense", "--samples",
                        "3", "--method", "jacobian", "--max-memory", "1GiB", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["dtype"] == "float32" and d["method"] == "jacobian"
    want = _expected(f"{factories}:float32_dense", 3, 0, (784,))
    assert d["trace"] == pytest.approx(float(np.trace(want)), rel=1e-5)


def test_cli_model_diagonal_and_full(capsys: pytest.CaptureFixture[str], factories: Path,
                                     tmp_path: Path) -> None:
    spec = f"{factories}:dense"
    code, out, _ = _run(capsys, "ntk", "--model", spec, "--samples", "4", "--output",
                        "diagonal", "--json")
    assert code == 0
    d = json.loads(out)
    trace = _expected(spec, 4, 0, (784,))
    assert d["size"] == 4 and d["trace"] == pytest.approx(np.trace(trace))
    assert d["max"] == pytest.approx(np.diag(trace).max()) and d["output"] == "diagonal"
    kfile = tmp_path / "full.npy"
    code, out, _ = _run(capsys, "ntk", "--model", spec, "--samples", "4", "--output", "full",
                        "--out", str(kfile), "--json")
    assert code == 0
    full = np.load(kfile)
    assert full.shape == (4, 4, 2, 2)
    assert np.allclose(full, _expected(spec, 4, 0, (784,), "full"), rtol=1e-12, atol=0)
    d = json.loads(out)
    assert d["outputs"] == 2 and d["trace"] == pytest.approx(np.trace(trace))


def test_cli_mlp_diagonal_and_full(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    net = ["--activation", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.1", "--depth", "2",
           "--width", "6", "--input-dim", "5", "--samples", "4"]
    kfile, ffile = tmp_path / "k.npy", tmp_path / "f.npy"
    assert _run(capsys, "ntk", *net, "--out", str(kfile))[0] == 0
    code, out, _ = _run(capsys, "ntk", *net, "--output", "diagonal", "--json")
    assert code == 0
    K = np.load(kfile)
    d = json.loads(out)
    assert d["trace"] == pytest.approx(np.trace(K))
    assert d["min"] == pytest.approx(K.diagonal().min())
    assert _run(capsys, "ntk", *net, "--output", "full", "--out", str(ffile))[0] == 0
    assert np.array_equal(np.load(ffile), K[:, :, None, None])


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "{dir}/missing.py:f"], "no such file"),
        (["--model", "{dir}/broken.py:f"], "syntax error"),
        (["--model", "{dir}/models.py:CONSTANT"], "not a callable"),
        (["--model", "{dir}/models.py:not_a_module"], "returned int"),
        (["--model", "{dir}/models.py:fails"], "raised ValueError"),
        (["--model", "{dir}/models.py:batchnorm_training"], "eval()"),
        (["--model", "{dir}/models.py:dense", "--depth", "3"], "--depth: the network flags"),
        (["--model", "{dir}/models.py:dense", "--save-params", "p.npz"], "--save-params"),
        (["--model", "{dir}/models.py:dense", "--input-shape", "2,2"], "--input-shape"),
        (["--model", "{dir}/models.py:cnn", "--input-dim", "10"], "--input-shape"),
        (["--model", "{dir}/models.py:dense", "--method", "magic"], "method"),
        (["--model", "{dir}/models.py:dense", "--max-memory", "lots"], "max_memory"),
        (["--model", "{dir}/models.py:dense", "--output", "full"], "--out"),
        (["--model", "{dir}/models.py:dense", "--dataset", "cifar"], "unknown data set"),
        (["--activation", "relu"], "required: --sigma-w2, --sigma-b2, --depth, --width"),
        (["--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0", "--depth", "1",
          "--width", "3", "--method", "jacobian"], "--method: only with --model"),
    ],
)
def test_cli_model_bad_input(capsys: pytest.CaptureFixture[str], factories: Path,
                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str],
                             match: str) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    args = [a.format(dir=factories.parent) for a in argv]
    code, out, err = _run(capsys, "ntk", *args, "--samples", "3")
    assert code == 2 and out == ""
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(workdir.iterdir()) == []
