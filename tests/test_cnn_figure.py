"""Figure ``cnn`` on a tiny grid through the sweep engine (stored, reused, the CSVs hold the
plotted numbers), and the initialization of ``zoo.plain_cnn``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ntkscope.cli.main import main
from ntkscope.experiments import FIGURES
from ntkscope.experiments import cnn_figure as cf
from ntkscope.generic import FitConfig, fit, init_kernels, init_model
from ntkscope.generic.zoo import plain_cnn
from ntkscope.statistics import second_moment_ratio, tail_ess
from ntkscope.store import Store
from ntkscope.theory import eoc
from ntkscope.validation import NtkscopeInputError

TINY = cf.CNNGrid(sw2={"tanh": (1.0, 5.0), "relu": (1.0, 3.0)}, depths=(1, 3),
                  train_depths=(2,), sb2=1.0, channels=4, image_size=7, probes=2, inits=12,
                  samples=6, train_inits=1, lr_scale=0.5, target_loss=0.3, max_steps=20)


def _csv(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def test_figure_runs_end_to_end_and_reuses_the_store(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.setitem(cf.PRESETS, "quick", TINY)
    assert FIGURES["cnn"] == "ntkscope.experiments.cnn_figure:figure_cnn"
    store = tmp_path / "store.sqlite"
    args = ["figure", "cnn", "--out", str(tmp_path), "--store", str(store), "--workers", "1",
            "--quiet"]
    assert main(args) == 0
    img = plt.imread(tmp_path / "figcnn.png")
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 600
    init = _csv(tmp_path / "figcnn_init.csv")
    assert len(init) == 2 * 2 * 2 * 2  # activations x sw2 x depths x probe images
    assert np.all(init["ratio"] >= 1) and np.all((init["ess"] >= 1) & (init["ess"] <= 12))
    train = _csv(tmp_path / "figcnn_training.csv")
    assert len(train) == 2 * 2 * 1
    assert set(train["stop_reason"]) <= {"target_loss", "max_steps", "diverged"}
    # the stored numbers are those of direct calls
    r = init[(init["activation"] == "relu") & (init["sigma_w2"] == 3.0) & (init["depth"] == 3)
             & (init["image"] == 1)][0]
    x, _, _ = cf.cnn_images("mnist", 2, 0, 7)
    factory = functools.partial(plain_cnn, "relu", 3, 4, 3.0, 1.0, in_channels=1,
                                num_classes=1)
    t = init_kernels(factory, x, count=12, output="diagonal")[:, 1].numpy()
    assert r["ratio"] == pytest.approx(second_moment_ratio(t), rel=1e-9)
    assert r["ess"] == pytest.approx(tail_ess(t), rel=1e-9)
    row = train[(train["activation"] == "tanh") & (train["sigma_w2"] == 5.0)][0]
    xs, ys, _ = cf.cnn_images("mnist", 6, 0, 7)
    model = init_model(functools.partial(plain_cnn, "tanh", 2, 4, 5.0, 1.0), 0, 0)
    res = fit(model, xs, ys, FitConfig(lr_scale=0.5, max_steps=20, loss_fraction=None,
                                       target_loss=0.3))
    assert row["steps"] == res.steps and row["ntk_change"] == pytest.approx(res.ntk_change,
                                                                            rel=1e-9)
    with Store(store) as st:
        cells = len(st)
    assert cells == 8 + 4
    before = (tmp_path / "figcnn_init.csv").read_text(), (tmp_path / "figcnn_training.csv"
                                                          ).read_text()
    assert main(args) == 0  # everything from the store
    with Store(store) as st:
        assert len(st) == cells
    assert before == ((tmp_path / "figcnn_init.csv").read_text(),
                      (tmp_path / "figcnn_training.csv").read_text())


def test_presets_bracket_the_mlp_eoc() -> None:
    for grid in cf.PRESETS.values():
        for act in cf.ACTIVATIONS:
            edge = float(eoc(act, grid.sb2)[0])
            assert grid.sw2[act][0] < edge < grid.sw2[act][-1]


def test_plain_cnn_initialization_has_the_stated_variances() -> None:
    sw2, sb2, c = 2.5, 0.3, 32
    weights: dict[int, list[torch.Tensor]] = {}
    biases: list[torch.Tensor] = []
    for seed in range(8):
        torch.manual_seed(seed)
        model = plain_cnn("tanh", 3, c, sw2, sb2, in_channels=3, num_classes=10)
        layers = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert [type(m) for m in layers] == [nn.Conv2d] * 3 + [nn.Linear]
        for i, m in enumerate(layers):
            weights.setdefault(i, []).append(m.weight.detach().reshape(-1) * m.weight[0].numel()
                                             ** 0.5)
            biases.append(m.bias.detach())
    # weights * sqrt(fan_in) ~ N(0, sw2): fan_in = 3*9, 32*9, 32*9, 32
    for i, ws in weights.items():
        w = torch.cat(ws).double()
        n = w.numel()  # >= 2560; the variance estimate's relative sd is sqrt(2/n) <= 2.8%
        assert float(w.var()) == pytest.approx(sw2, rel=5 * (2 / n) ** 0.5), i
        assert abs(float(w.mean())) < 5 * (sw2 / n) ** 0.5
    b = torch.cat(biases).double()
    assert float(b.var()) == pytest.approx(sb2, rel=5 * (2 / b.numel()) ** 0.5)
    torch.manual_seed(0)
    zero = plain_cnn("relu", 2, 8, 2.0, 0.0)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in zero if hasattr(m, "bias"))
    out = plain_cnn("relu", 2, 8, 2.0, 0.1, in_channels=3, num_classes=5)(torch.zeros(4, 3, 9,
                                                                                       7))
    assert out.shape == (4, 5)
    assert sum(p.numel() for p in zero.parameters()) == (9 + 1) * 8 + (9 * 64 + 8) + 9


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"depth": 0}, "depth"), ({"channels": 1.5}, "channels"), ({"sw2": -1.0}, "sw2"),
    ({"sb2": -0.1}, "sb2"), ({"activation": "nope"}, "nope"), ({"num_classes": 0}, "num_classes"),
    ({"sw2": [1.0, 2.0]}, "sw2"),
])
def test_plain_cnn_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        plain_cnn(**kwargs)
