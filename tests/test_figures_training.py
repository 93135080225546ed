"""Training figures (3, 4, 8, 9, 10, 11) on a tiny grid: cells are batched rows, stored and
reused, and the CSV holds every network's numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ntkscope.cli.main import main
from ntkscope.datasets import load_dataset
from ntkscope.experiments import training_figures as tf
from ntkscope.networks import MLP
from ntkscope.store import Store
from ntkscope.training import LearningRate, Recording, StoppingRule, train


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> tf.TrainGrid:
    grid = dataclasses.replace(
        tf.PRESETS["quick"], sw2={"tanh": (0.5, 4.0), "relu": (1.0, 3.0)}, depths=(1, 4),
        width=16, widths=(8, 16), samples=12, max_steps=30, snapshots=(10,), lr=1e-3,
    )
    monkeypatch.setitem(tf.PRESETS, "quick", grid)
    return grid


def _csv(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def test_training_figures_and_cell_reuse(tiny: tf.TrainGrid, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    common = ["--out", str(tmp_path), "--store", str(store), "--workers", "1", "--quiet"]
    for n in ("3", "8", "10", "4"):
        assert main(["figure", n, *common]) == 0
        assert (tmp_path / f"fig{n}.png").read_bytes()[:4] == b"\x89PNG"
    with Store(store) as st:
        # tanh: depths x widths (8, 16) rows (fig 3/8 reuse the M=16 rows); relu: M=16 rows
        assert len(st) == 2 * 2 + 2
    rows = _csv(tmp_path / "fig10.csv")
    assert len(rows) == 2 * 2 * 2  # sw2 x depths x widths
    assert set(rows["width"]) == {8, 16}
    assert np.all(rows["steps"] <= 30)
    # A stored network equals a direct training run with the same settings.
    r = rows[(rows["width"] == 16) & (rows["depth"] == 4) & (rows["sigma_w2"] == 4.0)][0]
    data = load_dataset("mnist", 12, seed=0, target="parity")
    run = train(MLP(784, 16, 4, "tanh"), data.X, data.y, variances=[(0.5, 1.0), (4.0, 1.0)],
                rate=LearningRate(1e-3), stop=StoppingRule(30, patience=100, min_delta=1e-7),
                record=Recording((10,)), seed=0)
    assert r["change_final"] == pytest.approx(run.results[1].final_ntk_change, rel=1e-9)
    assert r["min_loss"] == pytest.approx(run.results[1].min_loss, rel=1e-9)
    before = (tmp_path / "fig3.csv").read_text()
    assert main(["figure", "3", *common]) == 0
    assert (tmp_path / "fig3.csv").read_text() == before


def test_change_at_uses_final_kernel_after_stop() -> None:
    net = {"steps": 50, "ntk_change": {"10": 0.1, "final": 0.3}}
    assert tf._change_at(net, 10) == 0.1
    assert tf._change_at(net, 100) == 0.3  # stopped at 50: the kernel no longer changes
    assert tf._change_at(net, "final") == 0.3
    assert np.isnan(tf._change_at({"steps": 500, "ntk_change": {"final": 0.3}}, 100))
