"""``ntkscope check --model``: any PyTorch model's verdict (ntkscope.model_check)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ntkscope.cli.main import main
from ntkscope.model_check import check_model, model_second_width

MODELS = '''
import torch
from torch import nn


def cnn(width: int = 2):
    return nn.Sequential(nn.Conv2d(1, width, 7, stride=7), nn.Tanh(), nn.Flatten(),
                         nn.Linear(width * 16, 1))


def dense():
    return nn.Sequential(nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 1))


def classes(width: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, width), nn.Tanh(), nn.Linear(width, 3))


def broken():
    raise RuntimeError("no model today")
'''
# Small settings: gaussian inputs, 12 samples, 4 probes, 20 inits, 60 steps.
SMALL = ["--dataset", "gaussian", "--samples", "12", "--probes", "4", "--inits", "20",
         "--steps", "60", "--loss-fraction", "0.1"]
KEYS = ["phase", "chi1", "sigma_w2_eoc", "kappa_ratio", "ratio", "ratio_ci", "ntk_change",
        "loss_drop", "ntk_regime", "reasons"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "models.py"
    path.write_text(MODELS, encoding="utf-8")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["check", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cnn_two_widths_json_equals_direct_calls(models: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A CNN factory taking width=: images (S, 1, 28, 28), the change at widths 2 and 8, and
    the JSON numbers equal init_randomness and fit called directly with the same seed."""
    from ntkscope.datasets import load_dataset
    from ntkscope.generic import FitConfig, fit, init_model, init_randomness, load_factory

    code, out, _ = _cli(capsys, "--model", f"{models}:cnn", *SMALL, "--seed", "3", "--json")
    assert code == 0
    d = json.loads(out)
    assert list(d)[: len(KEYS)] == KEYS
    assert d["phase"] is None and d["theory"].startswith("not applicable")
    s = d["settings"]
    assert s["input_shape"] == [12, 1, 28, 28] and "images" in s["inputs"]
    assert s["width"] == 2 and s["second_width"] == 8 and s["outputs"] == 1
    assert s["probes"] == 4 and s["inits"] == 20 and s["loss"] == "mse"

    fn = load_factory(f"{models}:cnn").fn
    data = load_dataset("gaussian", 12, 3)
    x = torch.as_tensor(data.X).reshape(-1, 1, 28, 28)
    rnd = init_randomness(lambda: fn(width=2), x[:4], inits=20, seed=3)
    assert d["ratio"] == rnd.ratio and d["ess"] == rnd.ess
    config = FitConfig(loss="mse", max_steps=60, loss_fraction=0.1)
    runs = []
    for w in (2, 8):
        torch.manual_seed(0)
        runs.append(fit(init_model(lambda w=w: fn(width=w), 3), x, data.y[:, None], config))
    assert d["ntk_change"] == runs[0].ntk_change and d["steps"] == runs[0].steps
    wc = d["width_change"]
    assert wc["widths"] == [2, 8] and wc["changes"] == [r.ntk_change for r in runs]
    assert wc["exponent"] == pytest.approx(
        math.log(runs[1].ntk_change / runs[0].ntk_change) / math.log(4.0), rel=1e-12)
    assert d["steps_to_fraction"] == (runs[0].steps if runs[0].stop_reason == "loss_fraction"
                                      else None)
    baseline = float(np.mean((data.y - data.y.mean()) ** 2)) / 2
    assert d["unexplained"] == pytest.approx(runs[0].min_loss / baseline, rel=1e-12)
    assert d["ntk_regime"] in ("yes", "borderline", "no") and d["criteria"]["change"]


def test_linear_first_model_gets_flat_inputs(models: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--model", f"{models}:dense", *SMALL)
    assert code == 0
    assert "12 x 784, float64 (flat: the model's first layer is nn.Linear)" in out
    assert "theory: not applicable (not an ntkscope MLP)" in out
    assert "change ~ width" not in out  # no width= argument: no comparison
    assert "ntk_regime" in out and "reasons:" in out


def test_npz_file_one_hot_and_cross_entropy(models: Path, tmp_path: Path) -> None:
    """A data file of (N, 12) rows with labels 0..2: three outputs get centered one-hot
    targets under MSE and the labels under cross-entropy; the constant-predictor losses are
    the targets' variance and the entropy of the class frequencies."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 2, 1, 0, 2, 2, 1, 1] * 3)
    x = rng.standard_normal((30, 12)) + labels[:, None]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, labels=labels)
    res = check_model(f"{models}:classes", dataset=str(path), samples=24, inits=10, probes=3,
                      steps=40, loss_fraction=0.1, width2=None, seed=1)
    assert res.outputs == 3 and res.input_shape == [24, 12] and res.second is None
    assert res.targets.startswith("one-hot class labels centered")
    pick = np.arange(24)  # the file's first rows
    y = np.eye(3)[labels[pick]] - 1 / 3
    base = float(np.sum((y - y.mean(0)) ** 2)) / (2 * 24)
    assert res.evidence.unexplained == pytest.approx(res.training.min_loss / base, rel=1e-12)
    ce = check_model(f"{models}:classes", dataset=str(path), samples=24, inits=10, probes=3,
                     steps=40, loss="cross-entropy", width=4, width2=16, seed=1)
    freq = np.bincount(labels[pick], minlength=3) / 24
    assert ce.evidence.unexplained == pytest.approx(
        ce.training.min_loss / float(-np.sum(freq * np.log(freq))), rel=1e-12)
    assert ce.evidence.width_change is not None
    assert ce.evidence.width_change.widths == (4, 16)
    assert ce.to_dict()["settings"]["loss"] == "cross-entropy"


def test_second_width_rule(models: Path) -> None:
    from ntkscope.generic import load_factory

    fn = load_factory(f"{models}:cnn").fn
    assert model_second_width(fn, 2) == 8
    # 8192 * (12 + 1 + 3) + 3 parameters at 4w: wider
    assert model_second_width(load_factory(f"{models}:classes").fn, 2048) == 8192
    # 4096^2 + 4096 > 2^22 parameters at 4w: 4x narrower instead
    assert model_second_width(lambda width: torch.nn.Linear(width, width), 1024) == 256
    assert model_second_width(lambda width: torch.nn.Linear(width, width), 511) == 2044


def test_html_report_for_a_model(models: Path, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path) -> None:
    target = tmp_path / "m.html"
    code, out, _ = _cli(capsys, "--model", f"{models}:cnn", *SMALL, "--html", str(target))
    assert code == 0 and str(target) in out
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('<img src="data:image/png;base64,') == 1  # the run only
    assert "Where the network sits" not in page and "not an ntkscope MLP" in page
    assert "ntk_regime" in page and "change ~ width^exponent" in page
    assert [p.name for p in tmp_path.iterdir()] == ["m.html"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "nocolon"], "expected FILE.py:FACTORY"),
    (["--model", "{dir}/missing.py:cnn"], "no such file"),
    (["--model", "{dir}/models.py:nothere"], "no attribute"),
    (["--model", "{dir}/models.py:broken"], "no model today"),
    (["--model", "{dir}/models.py:cnn", "--loss", "hinge"], "loss"),
    (["--model", "{dir}/models.py:cnn", "--depth", "3"], "--model replaces them"),
    (["--model", "{dir}/models.py:dense", "--model-width", "4"], "width"),
    (["--model", "{dir}/models.py:cnn", "--second-width", "2"], "second_width"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/none.npz"], "no such file"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/nox.npz"], "no array 'x'"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/nan.npz"], "NaN"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/short.npz"], "'labels' must"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/nan.npz", "--samples", "99"],
     "NaN"),
    (["--model", "{dir}/models.py:dense", "--dataset", "{dir}/ok.npz", "--samples", "99"],
     "samples"),
    (["--model", "{dir}/models.py:dense", "--dataset", "cifar"], "dataset"),
    (["--model", "{dir}/models.py:dense", "--lr", "-1"], "lr"),
])
def test_bad_input_exit_2_one_line(models: Path, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, argv: list[str], message: str) -> None:
    folder = models.parent
    np.savez(folder / "nox.npz", y=np.ones(4))
    np.savez(folder / "nan.npz", x=np.full((4, 784), np.nan), labels=np.arange(4))
    np.savez(folder / "short.npz", x=np.ones((4, 784)), labels=np.arange(3))
    np.savez(folder / "ok.npz", x=np.ones((4, 784)), labels=np.arange(4))
    argv = [a.replace("{dir}", str(folder)) for a in argv]
    code, out, err = _cli(capsys, "--samples", "4", "--probes", "2", "--inits", "5", "--steps",
                          "5", *argv, "--html", str(tmp_path / "r.html"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
