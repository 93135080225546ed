"""The ``ntkscope ntk`` and ``ntkscope ntk-variance`` subcommands."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf

from ntkscope.cli.main import main
from ntkscope.defaults import MIN_ESS

VARIANCE_KEYS = ["ratio", "ratio_ci", "ratio_is_lower_bound", "ess", "mean", "std", "theory_mean",
                 "inits", "method", "seconds"]
NET = ["--sigma-w2", "2", "--sigma-b2", "0.1", "--depth", "3", "--width", "8"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# ntk-variance


def test_ntk_variance_json_relu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ntk-variance", "--activation", "relu", *NET, "--inits", "200",
                        "--input-dim", "20", "--json")
    assert code == 0
    d = json.loads(out)
    assert list(d) == [*VARIANCE_KEYS, "hanin_nica"]
    assert d["inits"] == 200 and d["method"] == "lowrank"
    # L/M = 3/8 from 200 draws: a heavy tail (ESS ~ 15): R is only a lower bound, no interval
    assert d["ratio_is_lower_bound"] is True and d["ratio_ci"] is None
    assert 1.0 <= d["ess"] < MIN_ESS and d["ratio"] >= 1.0
    assert d["hanin_nica"] == pytest.approx(math.exp(5 * 3 / 8))
    assert d["mean"] > 0 and d["std"] > 0 and d["theory_mean"] > 0
    # --target-ess draws on (same seed, consecutive inits) until the interval is trustworthy
    code, out, _ = _run(capsys, "ntk-variance", "--activation", "relu", *NET, "--inits", "200",
                        "--input-dim", "20", "--target-ess", "100", "--max-inits", "100000",
                        "--json")
    assert code == 0
    g = json.loads(out)
    assert g["inits"] > 200 and g["ess"] >= 100 and g["ratio_is_lower_bound"] is False
    low, high = g["ratio_ci"]
    assert 1.0 <= low <= g["ratio"] <= high


def test_ntk_variance_json_tanh_dense(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ntk-variance", "--activation", "tanh", *NET, "--inits", "20",
                        "--input-dim", "10", "--method", "dense", "--seed", "3", "--json")
    assert code == 0
    d = json.loads(out)
    assert list(d) == VARIANCE_KEYS and d["method"] == "dense"


def test_ntk_variance_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ntk-variance", "--activation", "erf", *NET, "--inits", "2000",
                        "--input-dim", "10")
    assert code == 0
    assert "E[Theta0^2]/E[Theta0]^2" in out and "bootstrap CI" in out and "theory" in out
    assert "Hanin" not in out and "ESS of Theta0^2 weights" in out and "lower bound" not in out
    # 50 draws of the same network: ESS ~ 17, R shown as a lower bound without an interval
    code, out, _ = _run(capsys, "ntk-variance", "--activation", "erf", *NET, "--inits", "50",
                        "--input-dim", "10")
    assert code == 0 and "bootstrap CI" not in out
    assert "R >= " in out and "(lower bound: heavy tail, ESS " in out and " of 50)" in out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--inits", "1"], "inits"),
        (["--method", "sparse"], "method"),
        (["--device", "tpu"], "device"),
        (["--input-dim", "0"], "input_dim"),
        (["--sigma-w2", "-1"], "sigma_w2"),
        (["--activation", "sigmoid"], "activation"),
        (["--width", "0"], "width"),
        (["--target-ess", "0"], "target_ess"),
        (["--max-inits", "100"], "max_inits"),
        (["--target-ess", "50", "--max-inits", "5"], "max_inits"),
        (["--target-ess", "500", "--max-inits", "400"], "target_ess"),
    ],
)
def test_ntk_variance_bad_input(capsys: pytest.CaptureFixture[str], extra: list[str],
                                match: str) -> None:
    code, out, err = _run(capsys, "ntk-variance", "--activation", "relu", *NET, "--inits", "10",
                          *extra)
    assert code == 2 and out == ""
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_ntk_variance_cuda_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ntk-variance", "--activation", "relu", *NET, "--device", "cuda")
    assert code == 2 and "CUDA" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# ntk


def _numpy_ntk(arrays: dict[str, np.ndarray], phi, dphi) -> np.ndarray:  # type: ignore[no-untyped-def]
    """CONVENTIONS section 3 with plain NumPy: sum_l (D_l D_l^T) o (A_{l-1} A_{l-1}^T + 1)."""
    n = sum(1 for k in arrays if k.startswith("W"))
    A, H = [arrays["X"]], []
    for l in range(1, n + 1):
        H.append(A[-1] @ arrays[f"W{l}"].T + arrays[f"b{l}"])
        A.append(phi(H[-1]))
    D = np.ones((A[0].shape[0], 1))
    K = np.zeros((A[0].shape[0],) * 2)
    for l in range(n, 0, -1):
        K += (D @ D.T) * (A[l - 1] @ A[l - 1].T + 1.0)
        if l > 1:
            D = (D @ arrays[f"W{l}"]) * dphi(H[l - 2])
    return K


@pytest.mark.parametrize(
    ("activation", "phi", "dphi"),
    [
        ("relu", lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(float)),
        ("erf", erf, lambda h: 2 / np.sqrt(np.pi) * np.exp(-h * h)),
    ],
)
def test_ntk_saves_kernel_and_params(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     activation: str, phi, dphi) -> None:  # type: ignore[no-untyped-def]
    kfile, pfile = tmp_path / "kernel.npy", tmp_path / "sub" / "p.npz"
    code, out, _ = _run(capsys, "ntk", "--activation", activation, *NET, "--samples", "6",
                        "--input-dim", "5", "--seed", "2", "--out", str(kfile),
                        "--save-params", str(pfile), "--json")
    assert code == 0
    d = json.loads(out)
    K = np.load(kfile)
    with np.load(pfile) as z:
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == sorted(["X", *(f"{p}{l}" for p in "Wb" for l in range(1, 5))])
    widths = [5, 8, 8, 8, 1]
    for l in range(1, 5):
        assert arrays[f"W{l}"].shape == (widths[l], widths[l - 1])
        assert arrays[f"b{l}"].shape == (widths[l],)
    assert arrays["X"].shape == (6, 5)
    assert np.allclose(np.sum(arrays["X"] ** 2, axis=1), 5.0)
    assert K.shape == (6, 6)
    assert np.allclose(K, _numpy_ntk(arrays, phi, dphi), rtol=1e-10, atol=1e-10)
    eig = np.linalg.eigvalsh(K)
    assert d["size"] == 6
    assert d["trace"] == pytest.approx(np.trace(K))
    assert d["eig_min"] == pytest.approx(eig[0]) and d["eig_max"] == pytest.approx(eig[-1])
    assert d["condition_number"] == pytest.approx(eig[-1] / eig[0])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kernel.npy", "p.npz", "sub"]


def test_ntk_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ntk", "--activation", "tanh", *NET, "--samples", "4",
                        "--input-dim", "6")
    assert code == 0
    for word in ("4 x 4", "trace", "lambda_min", "lambda_max", "condition number"):
        assert word in out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--dataset", "mnist"], "input dimension (--input-dim) must be 784"),
        (["--dataset", "gaussian", "--data-dir", "."], "synthetic"),
        (["--dataset", "cifar"], "unknown data set"),
        (["--samples", "0"], "samples"),
        (["--out", "kernel.txt"], "out"),
        (["--save-params", "p.npy"], "save-params"),
        (["--depth", "-1"], "depth"),
        (["--sigma-b2", "-0.5"], "sigma_b2"),
        (["--out", "new/dir/k.npy", "--samples", "0"], "samples"),  # new/ is not created
        (["--out", "k.npy", "--input-dim", "5", "--dataset", "mnist"], "must be 784"),
    ],
)
def test_ntk_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str],
                       match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "ntk", "--activation", "relu", *NET, "--samples", "3",
                          "--input-dim", "4", *extra)
    assert code == 2 and out == ""
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_ntk_out_is_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "k.npy").mkdir()
    code, _, err = _run(capsys, "ntk", "--activation", "relu", *NET, "--samples", "3",
                        "--input-dim", "4", "--out", str(tmp_path / "k.npy"))
    assert code == 2 and "directory" in err


# ---------------------------------------------------------------------------------------------
# ntk on the image data sets


def _shared_mnist() -> Path | None:
    """The MNIST files of the shared folder ($NTKSCOPE_SHARED, else beside the clone)."""
    roots = [Path(os.environ["NTKSCOPE_SHARED"])] if os.environ.get("NTKSCOPE_SHARED") else []
    roots.append(Path(__file__).resolve().parents[2] / "shared")
    return next((r / "datasets" / "mnist" for r in roots if (r / "datasets" / "mnist").is_dir()),
                None)


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No full files anywhere: NTKSCOPE_DATA unset, an empty cache, no system directories."""
    from ntkscope.datasets import IMAGE_SETS

    monkeypatch.delenv("NTKSCOPE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, spec in list(IMAGE_SETS.items()):
        monkeypatch.setitem(IMAGE_SETS, name, dataclasses.replace(spec, system_dirs=()))


MNIST_NET = ["ntk", "--activation", "relu", *NET, "--samples", "16", "--dataset"]


def test_ntk_mnist_full_files(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                              no_data: None) -> None:
    mnist = _shared_mnist()
    if mnist is None:
        pytest.skip("the shared folder with the MNIST files is absent (set NTKSCOPE_SHARED)")
    pfile = tmp_path / "p.npz"
    code, out, err = _run(capsys, *MNIST_NET, "mnist", "--data-dir", str(mnist),
                          "--save-params", str(pfile), "--json")
    assert code == 0 and err == ""
    d = json.loads(out)
    with np.load(pfile) as z:
        X = z["X"]
    assert X.shape == (16, 784) and np.allclose(np.sum(X**2, axis=1), 784.0)
    assert X.min() == 0.0
    assert d["size"] == 16 and d["eig_min"] > 0
    from ntkscope.datasets import load_dataset

    assert np.array_equal(X, load_dataset("mnist", 16, seed=0, data_dir=mnist).X)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_ntk_image_subset(capsys: pytest.CaptureFixture[str], no_data: None,
                          dataset: str) -> None:
    code, out, err = _run(capsys, *MNIST_NET, dataset, "--seed", "3")
    assert code == 0 and "16 x 16" in out and f"{dataset} inputs" in out
    assert err.startswith("ntkscope ntk: note: using the shipped subset")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--samples", "2001"], "only 2000 are available"),
        (["--data-dir", "nowhere"], "data_dir: nowhere is not a directory"),
        (["--data-dir", "."], "data_dir: no MNIST train files"),
        (["--input-dim", "100"], "784"),
    ],
)
def test_ntk_mnist_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch, no_data: None, extra: list[str],
                             match: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *MNIST_NET, "mnist", *extra)
    assert code == 2 and out == ""
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ntk_mnist_corrupt_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                no_data: None) -> None:
    header = b"".join(n.to_bytes(4, "big") for n in (0x803, 1, 28, 28))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + bytes(784))  # well-formed
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x00")
    code, out, err = _run(capsys, *MNIST_NET, "mnist", "--data-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'train-images-idx3-ubyte'}: checksum mismatch" in err
