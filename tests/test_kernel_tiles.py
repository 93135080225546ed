"""Tiled kernels into a zarr store (``ntkscope.tiled``, ``ntkscope kernel``): the tiles equal
``module_ntk`` on the same inputs, on every executor; resume after SIGKILL; refusals; retries;
reductions against NumPy on the loaded matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ntkscope.cli.main import main
from ntkscope.generic import init_model, load_factory, model_inputs, module_ntk
from ntkscope.tiled import (
    KernelConfig,
    KernelTilesFailed,
    WeightsMismatch,
    kernel_frobenius,
    kernel_info,
    kernel_matrix,
    kernel_trace,
    open_kernel,
    reduce_kernel,
    relative_difference,
    tile_task,
    top_eigenvalues,
)
from ntkscope.validation import NtkscopeInputError

SRC = str(Path(__file__).resolve().parents[1] / "src")
NET = """
import os, time
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 3))

def build2():
    return nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3))

def build_by_pid():  # other weights in every process: a nondeterministic factory
    torch.manual_seed(os.getpid())
    return build()

class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = build()
    def forward(self, x):
        if os.environ.get("NTKSCOPE_TEST_SLOW"):  # (only in the process the test kills)
            time.sleep(0.05)
        return self.net(x)

def slow():
    return Slow()

FAILS = {"left": 0}

class Flaky(nn.Module):  # fails on batches of 3 samples while FAILS["left"] > 0
    def __init__(self):
        super().__init__()
        self.net = build()
    def forward(self, x):
        if x.shape[0] == 3 and FAILS["left"] > 0:
            FAILS["left"] -= 1
            raise RuntimeError("flaky tile")
        return self.net(x)

def flaky():
    return Flaky()
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kernel_net") / "net.py"
    path.write_text(NET)
    return path


def _spec(net: Path, name: str = "build") -> str:
    return f"{net}:{name}"


def _reference(spec: str, samples: int, x2: int | None = None, seed: int = 0,
               output: str = "trace", data_seed: int | None = None) -> np.ndarray:
    """module_ntk on the same selection, computed here from scratch."""
    torch.manual_seed(seed)
    model = load_factory(spec)().double().eval()
    data = model_inputs(model, "gaussian", samples + (x2 or 0),
                        seed if data_seed is None else data_seed, input_dim=6)
    x1, x2s = data.x[:samples], data.x[samples:] if x2 else None
    return module_ntk(model, x1, x2s, output=output).numpy()


def _run(net: Path, out: Path, **options: object):
    base = {"dataset": "gaussian", "input_dim": 6, "quiet": True, "samples": 10, "tile": 4}
    return kernel_matrix(_spec(net, str(options.pop("factory", "build"))), out=str(out),
                         **{**base, **options})


@pytest.mark.parametrize(("samples", "x2", "tile", "output"), [
    (10, None, 4, "trace"),    # tile does not divide N
    (12, None, 4, "trace"),    # tile divides N
    (10, None, 32, "trace"),   # one tile
    (7, 5, 3, "trace"),        # X2 given, ragged both ways
    (8, 4, 4, "trace"),
    (10, None, 4, "diagonal"),
])
def test_tiles_equal_module_ntk(net: Path, tmp_path: Path, samples: int, x2: int | None,
                                tile: int, output: str) -> None:
    res = _run(net, tmp_path / "K.zarr", samples=samples, x2_samples=x2, tile=tile,
               output=output)
    ref = _reference(_spec(net), samples, x2, output=output)
    K = res.load()
    assert K.shape == ref.shape and K.dtype == np.float64
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-10)
    if x2 is None and output == "trace":
        assert np.array_equal(K, K.T)  # the lower triangle is the transpose, exactly
    assert res.complete and res.computed == res.tiles_total and res.cached == 0
    rows = -(-samples // tile)
    expected = rows if output == "diagonal" else (
        rows * (rows + 1) // 2 if x2 is None else rows * -(-x2 // tile))
    assert res.tiles_total == expected


def test_store_layout_attributes_and_rerun(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "K.zarr"
    res = _run(net, out, samples=9, seed=3)
    a = res.attrs
    assert a["seed"] == 3 and a["samples"] == 9 and a["x2_samples"] is None
    assert a["output"] == "trace" and a["dtype"] == "float64" and a["tile"] == 4
    assert a["model"] == _spec(net) and a["input_shape"] == [6] and a["symmetric"]
    assert len(a["parameters"]) == 64 and len(a["inputs"]) == 64 and a["version"]
    ks = open_kernel(out)
    x1, x2 = ks.inputs()
    torch.manual_seed(3)
    data = model_inputs(load_factory(_spec(net))().double(), "gaussian", 9, 3, input_dim=6)
    assert x2 is None and np.array_equal(x1, data.x.numpy())
    assert ks.group["kernel"].chunks == (4, 4) and ks.verify() == []
    again = _run(net, out, samples=9, seed=3)  # nothing left to do
    assert again.computed == 0 and again.cached == res.tiles_total
    info = kernel_info(out)
    assert info.tiles_done == info.tiles_total == 6 and "6 of 6" in info.title()


def test_float32_and_data_seed(net: Path, tmp_path: Path) -> None:
    res = _run(net, tmp_path / "K.zarr", dtype="float32", seed=1, data_seed=0)
    K = res.load()
    assert K.dtype == np.float32 and res.attrs["data_seed"] == 0
    ref = _reference(_spec(net), 10, seed=1, data_seed=0)
    np.testing.assert_allclose(K, ref, rtol=2e-5, atol=1e-5 * np.abs(ref).max())


def test_refuses_other_arguments_without_writing(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "K.zarr"
    _run(net, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for change in ({"samples": 11}, {"tile": 5}, {"seed": 1}, {"dtype": "float32"},
                   {"x2_samples": 3}, {"output": "diagonal"}, {"factory": "build2"},
                   {"data_seed": 4}):
        with pytest.raises(NtkscopeInputError, match=r"holds another kernel.*nothing was "
                                                     r"overwritten"):
            _run(net, out, **change)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(NtkscopeInputError, match="not an ntkscope kernel store"):
        _run(net, other)
    assert (other / "notes.txt").read_text() == "mine"


def test_tile_task_refuses_other_weights(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "K.zarr"
    res = _run(net, out)
    ks = open_kernel(out)
    before = ks.kernel[...]
    marks = ks.group["done"][...]
    other = load_factory(_spec(net, "build2"))
    config = {"store": res.path, "model": "other", "device": "cpu", "i": 0, "j": 1}
    with pytest.raises(WeightsMismatch, match="tile not written"):
        tile_task(other, config)
    assert np.array_equal(ks.kernel[...], before) and np.array_equal(
        ks.group["done"][...], marks)


def test_nondeterministic_factory_refused_by_workers(net: Path, tmp_path: Path) -> None:
    # The driver builds its weights (pid of this process); each worker builds other ones.
    with pytest.raises(KernelTilesFailed, match="WeightsMismatch") as err:
        _run(net, tmp_path / "K.zarr", factory="build_by_pid", executor="local", workers=2)
    res = err.value.result
    assert res.tiles_done == 0 and len(err.value.tiles) == res.tiles_total == 6
    assert "(0, 0)" in str(err.value)


def test_two_local_workers(net: Path, tmp_path: Path) -> None:
    res = _run(net, tmp_path / "K.zarr", samples=11, tile=3, executor="local", workers=2)
    assert res.executor == "local (2 workers)"
    np.testing.assert_allclose(res.load(), _reference(_spec(net), 11), rtol=1e-10,
                               atol=1e-10)


def test_retries_then_reports(net: Path, tmp_path: Path) -> None:
    from ntkscope.generic._init_randomness import _loaded

    module = sys.modules[_loaded(_spec(net, "flaky")).fn.__module__]
    module.FAILS["left"] = 1  # the first tile of 3 samples fails once, then works
    res = _run(net, tmp_path / "K.zarr", samples=7, tile=3, factory="flaky")
    assert res.complete and not res.failed
    np.testing.assert_allclose(res.load(), _reference(_spec(net), 7), rtol=1e-10, atol=1e-10)
    module.FAILS["left"] = 10**6  # fails every try: reported, the other tiles kept
    with pytest.raises(KernelTilesFailed, match=r"failed after 3 tries: \(0, 0\)") as err:
        _run(net, tmp_path / "K2.zarr", samples=7, tile=3, factory="flaky")
    module.FAILS["left"] = 0
    assert (2, 2) not in err.value.tiles and err.value.result.tiles_done >= 1
    code = main(["kernel", "--model", _spec(net, "flaky"), "--dataset", "gaussian",
                 "--input-dim", "6", "--samples", "7", "--tile", "3", "--out",
                 str(tmp_path / "K2.zarr"), "--quiet"])
    assert code == 0 and kernel_info(tmp_path / "K2.zarr").complete


def test_sigkill_then_resume(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "K.zarr"
    args = ["--model", _spec(net, "slow"), "--dataset", "gaussian", "--input-dim", "6",
            "--samples", "16", "--tile", "2", "--out", str(out), "--quiet"]
    env = {**os.environ, "NTKSCOPE_TEST_SLOW": "1",
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "ntkscope.cli.main", "kernel", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        marks = out / "done"
        done = len([p for p in marks.iterdir() if not p.name.startswith(".")]) \
            if marks.is_dir() else 0
        if done >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = kernel_info(out)
    assert 3 <= first.tiles_done < first.tiles_total == 36
    res = kernel_matrix(_spec(net, "slow"), out=str(out), dataset="gaussian", input_dim=6,
                        samples=16, tile=2, quiet=True)
    assert res.cached == first.tiles_done and res.computed == 36 - first.tiles_done
    assert open_kernel(out).verify() == []
    np.testing.assert_allclose(res.load(), _reference(_spec(net), 16), rtol=1e-10,
                               atol=1e-10)


def test_reductions_match_numpy(net: Path, tmp_path: Path) -> None:
    a = _run(net, tmp_path / "A.zarr", samples=30, tile=7)
    b = _run(net, tmp_path / "B.zarr", samples=30, tile=8, factory="build2")
    Ka, Kb = a.load(), b.load()
    assert kernel_trace(a.path) == pytest.approx(np.trace(Ka), rel=1e-12)
    assert kernel_frobenius(a.path) == pytest.approx(np.linalg.norm(Ka), rel=1e-12)
    eig = top_eigenvalues(a.path, 4, seed=1)
    ref = np.linalg.eigvalsh(Ka)[::-1][:4]
    assert eig.converged and eig.passes > 1  # 18 vectors of 30: a real iteration
    np.testing.assert_allclose(eig.values, ref, rtol=1e-8)
    assert all(abs(v - r) <= bd + 1e-12 * ref[0]
               for v, r, bd in zip(eig.values, ref, eig.bounds, strict=True))
    rel = relative_difference(a.path, b.path)
    assert rel == pytest.approx(np.linalg.norm(Ka - Kb) / np.linalg.norm(Ka), rel=1e-12)
    red = reduce_kernel(a.path, top_eigenvalues=2, compare=b.path)
    assert red.relative_difference == pytest.approx(rel) and len(red.eigenvalues.values) == 2
    # X1 x X2 and diagonal stores
    c = _run(net, tmp_path / "C.zarr", samples=7, x2_samples=5, tile=3)
    assert kernel_frobenius(c.path) == pytest.approx(np.linalg.norm(c.load()), rel=1e-12)
    with pytest.raises(NtkscopeInputError, match="no trace"):
        kernel_trace(c.path)
    with pytest.raises(NtkscopeInputError, match="not a symmetric kernel"):
        top_eigenvalues(c.path, 2)
    d = _run(net, tmp_path / "D.zarr", samples=30, tile=7, output="diagonal")
    assert kernel_trace(d.path) == pytest.approx(np.trace(Ka), rel=1e-12)
    other = _run(net, tmp_path / "E.zarr", samples=30, tile=7, data_seed=5)
    with pytest.raises(NtkscopeInputError, match="different inputs"):
        relative_difference(a.path, other.path)


def test_incomplete_store_refused_by_reductions(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "K.zarr"
    res = _run(net, out)
    (out / "done" / "0.1").unlink()  # as if killed before this tile's marker
    with pytest.raises(NtkscopeInputError, match="1 of 6 tiles missing"):
        kernel_trace(out)
    with pytest.raises(NtkscopeInputError, match="tiles missing"):
        open_kernel(out).load()
    again = _run(net, out)
    assert again.computed == 1 and again.cached == 5
    np.testing.assert_array_equal(again.load(), res.load())


def test_cli_compute_info_reduce(net: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "K.zarr")
    base = ["kernel", "--model", _spec(net), "--dataset", "gaussian", "--input-dim", "6",
            "--samples", "9", "--tile", "4", "--out", out, "--quiet"]
    assert main([*base, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["tiles_done"] == done["tiles_total"] == 6 and done["computed"] == 6
    assert main(["kernel", "info", out, "--verify"]) == 0
    text = capsys.readouterr().out
    assert "6 of 6 tiles done" in text and "all match" in text
    assert main(["kernel", "reduce", out, "--top-eigenvalues", "2", "--compare", out,
                 "--json"]) == 0
    red = json.loads(capsys.readouterr().out)
    K = open_kernel(out).load()
    assert red["trace"] == pytest.approx(np.trace(K)) and red["relative_difference"] == 0
    np.testing.assert_allclose(red["eigenvalues"], np.linalg.eigvalsh(K)[::-1][:2],
                               rtol=1e-9)


@pytest.mark.parametrize(("extra", "message"), [
    (["--tile", "0"], "tile (--tile): must be >= 1"),
    (["--executor", "spark"], "executor (--executor)"),
    (["--scheduler", "tcp://127.0.0.1:1"], "scheduler (--scheduler)"),
    (["--output", "full"], "output (--output)"),
    (["--dtype", "float16"], "dtype (--dtype)"),
    (["--output", "diagonal", "--x2-samples", "3"], "x2_samples (--x2-samples)"),
])
def test_cli_errors(net: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    extra: list[str], message: str) -> None:
    code = main(["kernel", "--model", _spec(net), "--dataset", "gaussian", "--input-dim", "6",
                 "--samples", "9", "--out", str(tmp_path / "K.zarr"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_missing_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "--out", str(tmp_path / "K.zarr")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["kernel", "info", str(tmp_path / "none.zarr")]) == 2
    assert "no kernel store" in capsys.readouterr().err


def test_config_is_validated() -> None:
    with pytest.raises(NtkscopeInputError, match="got a model"):
        KernelConfig(torch.nn.Linear(2, 2), "K.zarr")
    with pytest.raises(NtkscopeInputError, match="samples"):
        KernelConfig("a.py:f", "K.zarr", samples=0)
    with pytest.raises(NtkscopeInputError, match="lambda"):
        kernel_matrix(lambda: torch.nn.Linear(6, 1), out="K.zarr", executor="local",
                      workers=2)


def test_lambda_factory_in_process(tmp_path: Path) -> None:
    def factory() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))

    res = kernel_matrix(factory, out=str(tmp_path / "K.zarr"), dataset="gaussian",
                        input_dim=4, samples=6, tile=4, quiet=True)
    model = init_model(factory, 0).double().eval()
    x = model_inputs(model, "gaussian", 6, 0, input_dim=4).x
    np.testing.assert_allclose(res.load(), module_ntk(model, x).numpy(), rtol=1e-10,
                               atol=1e-10)


# --------------------------------------------------------------------------------------------
# Dask


def test_dask_existing_scheduler(net: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        res = _run(net, tmp_path / "K.zarr", samples=11, tile=3, executor="dask",
                   scheduler=cluster.scheduler_address)
    assert res.executor == "dask" and res.complete
    np.testing.assert_allclose(res.load(), _reference(_spec(net), 11), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.slow
def test_dask_local_cluster_of_two_workers(net: Path, tmp_path: Path) -> None:
    res = _run(net, tmp_path / "K.zarr", samples=7, x2_samples=5, tile=3, executor="dask",
               workers=2)
    np.testing.assert_allclose(res.load(), _reference(_spec(net), 7, 5), rtol=1e-10,
                               atol=1e-10)



def test_fsspec_url_store(net: Path) -> None:
    url = f"memory://ntkscope-test-{os.getpid()}/K.zarr"
    res = _run(net, url, samples=9)  # type: ignore[arg-type]
    assert res.path == url and res.complete
    ks = open_kernel(url)
    del ks.group.store["done/0.1"]  # a tile whose marker never got written
    again = _run(net, url, samples=9)  # type: ignore[arg-type]
    assert again.computed == 1 and again.cached == 5
    np.testing.assert_allclose(again.load(), _reference(_spec(net), 9), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_cuda_without_gpu_refused_unless_a_cluster_has_them(net: Path, tmp_path: Path) -> None:
    with pytest.raises(NtkscopeInputError, match="cuda is not available"):
        _run(net, tmp_path / "K.zarr", device="cuda")
    assert not (tmp_path / "K.zarr").exists()


def test_verify_finds_a_changed_tile(net: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "K.zarr"
    _run(net, out)
    ks = open_kernel(out)
    assert ks.verify() == []
    ks.kernel[4:8, 8:10] = ks.kernel[4:8, 8:10] + 1e-12  # tile (1, 2) altered after the fact
    assert ks.verify() == [(1, 2)]
    assert main(["kernel", "info", str(out), "--verify"]) == 1
    assert "1 of 6 done tiles differ: [(1, 2)]" in capsys.readouterr().out
