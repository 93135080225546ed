"""``NTKTracker`` against independent computations: the oracle kernel on copies of the model
at the measured steps and the diagnostics' formulas written out in NumPy."""

from __future__ import annotations

import copy
import csv
import importlib.util
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ntkscope import NtkscopeInputError
from ntkscope.generic import NTKTracker, TrackerRecord, reference_module_ntk
from ntkscope.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _model(seed: int = 0, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 3, 3)]
    if bn:
        layers += [nn.BatchNorm2d(3)]
    layers += [nn.Tanh(), nn.Flatten()]
    if bn:
        layers += [nn.Dropout(0.3)]
    layers += [nn.Linear(3 * 4 * 4, 2)]
    return nn.Sequential(*layers).double()


def _data(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64),
            torch.randn(n, 2, generator=g, dtype=torch.float64))


def _sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.3) -> None:
    model.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def _expected(k: np.ndarray, k0: np.ndarray, th: dict, th0: dict, y: np.ndarray | None
              ) -> dict:
    """The record's numbers from the formulas of CONVENTIONS section 9, in NumPy."""
    out = {"ntk_change": np.linalg.norm(k - k0) / np.linalg.norm(k0),
           "kernel_distance": 1 - np.sum(k * k0) / (np.linalg.norm(k) * np.linalg.norm(k0)),
           "kernel_norm": np.linalg.norm(k)}
    d2 = sum(np.sum((th[n] - th0[n]) ** 2) for n in th0)
    r2 = sum(np.sum(th0[n] ** 2) for n in th0)
    out["weight_change"] = math.sqrt(d2 / r2)
    out["per_tensor"] = {n: np.linalg.norm(th[n] - th0[n]) / np.linalg.norm(th0[n])
                         for n in th0}
    mat = k if k.ndim == 2 else k.transpose(0, 2, 1, 3).reshape(k.shape[0] * k.shape[2], -1)
    ev = np.linalg.eigvalsh(mat)
    out["lambda_max"], out["lambda_min"] = ev[-1], ev[0]
    if y is not None:
        kt = k if k.ndim == 2 else np.einsum("ijaa->ij", k)
        n = kt.shape[0]
        h = np.eye(n) - np.ones((n, n)) / n
        hkh, yy = h @ kt @ h, y @ y.T
        out["alignment"] = np.sum(hkh * yy) / (np.linalg.norm(hkh) * np.linalg.norm(yy))
    return out


def _params(model: nn.Module) -> dict:
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def _check(rec: TrackerRecord, want: dict) -> None:
    for key in ("ntk_change", "kernel_distance", "kernel_norm", "weight_change", "lambda_max",
                "lambda_min"):
        assert getattr(rec, key) == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    assert rec.condition == pytest.approx(want["lambda_max"] / want["lambda_min"], rel=1e-7)
    for n, v in want["per_tensor"].items():
        assert rec.weight_change_per_tensor[n] == pytest.approx(v, rel=1e-9, abs=1e-12)
    if "alignment" in want:
        assert rec.alignment == pytest.approx(want["alignment"], rel=1e-9)
    else:
        assert rec.alignment is None


@pytest.mark.parametrize("output", ["trace", "full"])
def test_records_equal_oracle_and_numpy(output: str) -> None:
    model = _model()
    x, y = _data()
    probe, probe_y = x[:5], y[:5]
    tracker = NTKTracker(model, probe, probe_y, every=2, output=output)
    k0 = reference_module_ntk(copy.deepcopy(model), probe, output=output).numpy()
    th0 = _params(model)
    expected = {0: _expected(k0, k0, th0, th0, probe_y.numpy())}
    for step in range(1, 5):
        _sgd_step(model, x, y)
        tracker.step()
        if step % 2 == 0:
            k = reference_module_ntk(copy.deepcopy(model), probe, output=output).numpy()
            expected[step] = _expected(k, k0, _params(model), th0, probe_y.numpy())
    assert [r.step for r in tracker.history] == [0, 2, 4]
    for rec in tracker.history:
        _check(rec, expected[rec.step])
    assert tracker.history[-1].ntk_change > 1e-3  # training moved the kernel
    assert tracker.history[0].ntk_change == 0.0 and tracker.history[0].weight_change == 0.0


def test_schedule_measure_and_explicit_steps() -> None:
    model = _model()
    x, _ = _data()
    tracker = NTKTracker(model, x[:3], every=3)
    got = [tracker.step() is not None for _ in range(7)]
    assert got == [False, False, True, False, False, True, False]
    assert tracker.counter == 7
    rec = tracker.measure()  # on demand, at the current counter
    assert rec.step == 7
    assert tracker.step(step=12) is not None and tracker.counter == 12
    assert tracker.step(step=13) is None
    tracker.counter = 12
    again = tracker.measure()  # a second snapshot at step 12 replaces the first
    assert [r.step for r in tracker.history] == [0, 3, 6, 7, 12]
    assert tracker.history[-1] is again
    assert NTKTracker(model, x[:3], step=40, every=7).history[0].step == 40


def test_training_state_untouched() -> None:
    model = _model(bn=True)
    model.train()
    model[1].eval()  # mixed flags must come back exactly
    x, y = _data()
    model(x)  # BatchNorm running statistics now differ from their initial values
    flags = [m.training for m in model.modules()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    _sgd_step(model, x, y)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    grad_ids = {n: id(p.grad) for n, p in model.named_parameters()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    with torch.no_grad():
        tracker = NTKTracker(model, x[:4], y[:4], every=1)
        tracker.step()
        assert not torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    for n, p in model.named_parameters():
        assert id(p.grad) == grad_ids[n] and torch.equal(p.grad, grads[n]), n
    # the kernel is that of the model in eval mode
    ref = copy.deepcopy(model).eval()
    want = reference_module_ntk(ref, x[:4])
    assert torch.allclose(tracker.initial_kernel, want, rtol=1e-10, atol=0)


def _train_with(tracker: NTKTracker, model: nn.Module, x, y, steps: int) -> None:
    for _ in range(steps):
        _sgd_step(model, x, y)
        tracker.step()


def test_store_resume_continues_against_original_kernel(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "runs.sqlite"
    # the uninterrupted run, without a store
    plain_model = _model()
    plain = NTKTracker(plain_model, x[:4], y[:4], every=2)
    _train_with(plain, plain_model, x, y, 6)
    # the same run in a store, "killed" after 3 steps (no close), continued by a new tracker
    model = _model()
    first = NTKTracker(model, x[:4], y[:4], every=2, store=path, run="a")
    _train_with(first, model, x, y, 3)
    del first
    resumed = NTKTracker(model, x[:4], y[:4], every=2, store=path, run="a")
    assert resumed.counter == 2  # the last recorded step
    assert [r.step for r in resumed.history] == [0, 2]
    resumed.counter = 3  # the loop continues from its own step 3
    _train_with(resumed, model, x, y, 3)
    assert [r.step for r in resumed.history] == [0, 2, 4, 6]
    for a, b in zip(plain.history, resumed.history, strict=True):
        da, db = a.to_dict(), b.to_dict()
        assert da.pop("weight_change_per_tensor") == pytest.approx(
            db.pop("weight_change_per_tensor"), rel=1e-12)
        assert da | {"seconds": 0} == pytest.approx(db | {"seconds": 0}, rel=1e-12)
    assert torch.equal(resumed.initial_kernel, plain.initial_kernel)
    resumed.close()
    # a third tracker on a freshly initialized model still measures against step 0's kernel
    other = _model(seed=5)
    with NTKTracker(other, x[:4], y[:4], every=2, store=str(path), run="a", step=6) as t3:
        rec = t3.measure()
    k0 = plain.initial_kernel.numpy()
    k = reference_module_ntk(other, x[:4]).numpy()
    assert rec.ntk_change == pytest.approx(np.linalg.norm(k - k0) / np.linalg.norm(k0),
                                           rel=1e-9)
    # another run in the same store is independent; records are rows of the store
    with Store(path) as store:
        t4 = NTKTracker(_model(), x[:4], store=store, run="b")
        assert [r.step for r in t4.history] == [0]
        rows = [r for r in store.records(kind="ntk_tracker") if r.config["run"] == "a"]
        assert sorted(r.config["step"] for r in rows) == [0, 2, 4, 6]


def test_store_resume_from_earlier_step_drops_later_records(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "runs.sqlite"
    model = _model()
    t1 = NTKTracker(model, x[:4], every=1, store=path, run="r")
    _train_with(t1, model, x, y, 4)
    t1.close()
    t2 = NTKTracker(model, x[:4], every=1, store=path, run="r", step=2)
    assert [r.step for r in t2.history] == [0, 1, 2]
    t2.close()
    t3 = NTKTracker(model, x[:4], every=1, store=path, run="r")
    assert t3.counter == 2 and len(t3.history) == 3
    t3.close()


def test_store_killed_between_init_and_first_record(tmp_path: Path) -> None:
    x, _ = _data()
    path = tmp_path / "runs.sqlite"
    t1 = NTKTracker(_model(), x[:4], x[:4, 0, 0, 0], store=path, run="k")
    first = t1.history[0]
    t1.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM cells WHERE kind = 'ntk_tracker'")
    db.close()
    t2 = NTKTracker(_model(), x[:4], x[:4, 0, 0, 0], store=path, run="k")
    assert [r.to_dict() for r in t2.history] == [first.to_dict()]
    t2.close()


def test_store_refuses_mismatched_run(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "runs.sqlite"
    NTKTracker(_model(), x[:4], y[:4], store=path, run="m").close()
    with pytest.raises(NtkscopeInputError, match="probe inputs"):
        NTKTracker(_model(), x[1:5], y[:4], store=path, run="m")
    with pytest.raises(NtkscopeInputError, match="probe inputs or targets"):
        NTKTracker(_model(), x[:4], y[:4] + 1, store=path, run="m")
    with pytest.raises(NtkscopeInputError, match="output"):
        NTKTracker(_model(), x[:4], y[:4], store=path, run="m", output="full")
    with pytest.raises(NtkscopeInputError, match="tracked parameters"):
        NTKTracker(_model(), x[:4], y[:4], store=path, run="m", params=["3.weight"])
    with pytest.raises(NtkscopeInputError, match="dtype"):
        NTKTracker(_model().float(), x[:4], y[:4], store=path, run="m")
    with pytest.raises(NtkscopeInputError, match="run"):
        NTKTracker(_model(), x[:4], store=path, run="  ")
    # no run name: the store's one default run, continued by the next tracker
    first = NTKTracker(_model(), x[:4], store=tmp_path / "d.sqlite")
    first.close()
    again = NTKTracker(_model(), x[:4], store=tmp_path / "d.sqlite")
    assert again.run == "default" and [r.step for r in again.history] == [0]
    again.close()
    with pytest.raises(NtkscopeInputError, match="store"):
        NTKTracker(_model(), x[:4], store=3, run="m")


def test_csv_and_plot(tmp_path: Path) -> None:
    model = _model(bn=True).eval()
    nn.init.zeros_(model[0].bias)  # a tensor starting at zero: its relative change is None
    x, y = _data()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    tracker = NTKTracker(model, x[:6], labels, every=1)
    _train_with(tracker, model, x, y, 2)
    rec = tracker.history[-1]
    assert rec.weight_change_per_tensor["0.bias"] is None
    # integer labels enter as one-hot targets
    onehot = torch.nn.functional.one_hot(labels).double()
    assert rec.alignment == pytest.approx(
        NTKTracker(model, x[:6], onehot).history[0].alignment, rel=1e-12)
    path = tracker.to_csv(tmp_path / "sub" / "h.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and rows[-1]["step"] == "2"
    assert float(rows[-1]["ntk_change"]) == pytest.approx(rec.ntk_change, rel=1e-10)
    assert rows[-1]["weight_change[0.bias]"] == ""
    assert float(rows[-1]["weight_change[5.weight]"]) == pytest.approx(
        rec.weight_change_per_tensor["5.weight"], rel=1e-10)
    import matplotlib.image

    img = matplotlib.image.imread(tracker.plot(tmp_path / "h.png"))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 400
    alone = NTKTracker(model, x[:3])  # one snapshot, no targets: still a figure
    assert matplotlib.image.imread(alone.plot(tmp_path / "one.png")).shape[1] > 300
    assert tracker.to_dict()["history"][-1]["step"] == 2
    assert tracker.title().startswith("NTK tracker") and dict(tracker.rows())["step"] == 2
    columns, table = tracker.table()
    assert columns[0] == "step" and [r[0] for r in table] == [0, 1, 2]
    with pytest.raises(NtkscopeInputError, match="csv"):
        tracker.to_csv(tmp_path / "h.txt")


def test_dtype_device_and_structured_inputs() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)  # float32
    x = torch.randn(5, 4, dtype=torch.float64)  # cast to the model's dtype
    tracker = NTKTracker(model, x.numpy())
    assert tracker.initial_kernel.dtype == torch.float32
    want = reference_module_ntk(model, x.float())
    assert torch.allclose(tracker.initial_kernel, want, rtol=1e-5)
    # dict inputs with a forward
    fwd = lambda m, b: m(b["a"]) * b["scale"]  # noqa: E731
    t2 = NTKTracker(model, {"a": x, "scale": 2.0}, forward=fwd)
    assert torch.allclose(t2.initial_kernel, 4 * want, rtol=1e-5)
    # only some parameters
    t3 = NTKTracker(model, x, params=["bias"])
    assert t3.param_names == ("bias",)
    assert torch.allclose(t3.initial_kernel, torch.full((5, 5), 3.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every"),
    ({"every": 1.5}, "every"),
    ({"output": "diagonal"}, "whole kernels"),
    ({"output": "nope"}, "output"),
    ({"probe_y": torch.zeros(3, 2)}, "probe_y"),
    ({"probe_y": torch.zeros(4, 2)}, "all targets are zero"),
    ({"probe_y": torch.tensor([1.0, float("nan"), 0, 1])}, "NaN"),
    ({"probe_y": torch.ones(4, 2, 2)}, "probe_y"),
    ({"probe_y": "abc"}, "probe_y"),
    ({"params": ["missing"]}, "unknown"),
    ({"step": -1}, "step"),
    ({"run": 5}, "run"),
])
def test_bad_inputs(kwargs: dict, match: str) -> None:
    x, _ = _data()
    probe_y = kwargs.pop("probe_y", None)
    with pytest.raises(NtkscopeInputError, match=match):
        NTKTracker(_model(), x[:4], probe_y, **kwargs)


def test_bad_model_and_probe() -> None:
    x, _ = _data()
    with pytest.raises(NtkscopeInputError, match=r"nn\.Module"):
        NTKTracker("model", x)
    with pytest.raises(NtkscopeInputError, match="probe_x"):
        NTKTracker(_model(), [1, 2])
    with pytest.raises(NtkscopeInputError, match="at least 2"):
        NTKTracker(_model(), x[:1], torch.ones(1))
    model = _model()
    tracker = NTKTracker(model, x[:3], every=1)
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    with pytest.raises(NtkscopeInputError, match=r"step 1.*not finite"):
        tracker.step()


def test_example_runs(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("tracker_example",
                                                  ROOT / "examples" / "tracker_cnn_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = ["--steps", "4", "--every", "2", "--probe", "6", "--samples", "40", "--width", "2",
            "--batch", "8", "--out", str(tmp_path / "out"), "--threads", "1"]
    store = str(tmp_path / "s.sqlite")
    tracker = mod.main([*args, "--store", store])
    assert [r.step for r in tracker.history] == [0, 2, 4]
    assert (tmp_path / "out" / "tracker.csv").exists()
    assert (tmp_path / "out" / "tracker.png").stat().st_size > 1000
    # a second run continues from the checkpoint of the last snapshot
    again = mod.main([*args, "--store", store, "--steps", "6"])
    assert [r.step for r in again.history] == [0, 2, 4, 6]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_cpu_probe() -> None:
    model = _model().cuda()
    x, y = _data()
    torch.cuda.manual_seed(7)
    rng = torch.cuda.get_rng_state()
    tracker = NTKTracker(model, x[:4].numpy(), y[:4], every=1)
    _sgd_step(model, x.cuda(), y.cuda())
    rec = tracker.step()
    assert torch.equal(torch.cuda.get_rng_state(), rng)
    assert tracker.initial_kernel.device.type == "cuda"
    want = reference_module_ntk(copy.deepcopy(model).cpu(), x[:4]).numpy()
    k0 = tracker.initial_kernel.cpu().numpy()
    assert rec.ntk_change == pytest.approx(np.linalg.norm(want - k0) / np.linalg.norm(k0),
                                           rel=1e-6)
