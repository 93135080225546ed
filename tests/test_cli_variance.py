"""``ntkscope variance`` and ``ntkscope figure variance`` (paper Section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ntkscope import NetworkSpec
from ntkscope.cli.main import main
from ntkscope.experiments import FIGURES
from ntkscope.experiments import variance_figure as vf
from ntkscope.generalization import variance_report
from ntkscope.store import Store

BASE = ["variance", "--activation", "erf", "--sigma-w2", "2.8", "--sigma-b2", "1", "--depth",
        "2", "--width", "64"]
KEYS = ["theorem_variance", "A", "kappa_ratio", "qbar", "qbar_sr", "mc_variance", "mc_ci",
        "condition_number"]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_keys_theory_only(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, [*BASE, "--samples", "8", "--test-points", "4", "--json"])
    assert list(out) == KEYS
    assert out["mc_variance"] is None and out["mc_ci"] is None
    # Theory numbers are those of the API on the same inputs.
    rep = variance_report(NetworkSpec("erf", 2.8, 1.0, 2, 64), 8, test_points=4)
    assert out["theorem_variance"] == pytest.approx(rep.theorem.variance, rel=1e-12)
    assert out["condition_number"] == pytest.approx(rep.kernel.condition_number, rel=1e-12)
    S = 8
    assert out["A"] == pytest.approx(S / (out["kappa_ratio"] + S - 1), rel=1e-12)
    A, q, qsr = out["A"], out["qbar"], out["qbar_sr"]
    assert out["theorem_variance"] == pytest.approx((1 + A * A / S) * (q - qsr)
                                                    + (A - 1) ** 2 * qsr, rel=1e-12)


def test_json_with_monte_carlo(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, [*BASE, "--samples", "8", "--test-points", "4", "--monte-carlo", "20",
                         "--dataset", "mnist", "--json"])
    assert list(out) == KEYS
    lo, hi = out["mc_ci"]
    assert 0 < lo < out["mc_variance"] < hi
    assert out["condition_number"] > 1
    theory = _json(capsys, [*BASE, "--samples", "8", "--test-points", "4", "--dataset", "mnist",
                            "--json"])
    assert theory["theorem_variance"] == out["theorem_variance"]


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--samples", "6", "--test-points", "3", "--monte-carlo", "5"]) == 0
    text = capsys.readouterr().out
    for label in ("Theorem 5.3 variance", "kappa1/kappa2", "Monte Carlo variance",
                  "95% bootstrap CI", "cond Theta0(X) (median)"):
        assert label in text


@pytest.mark.parametrize("extra,message", [
    (["--samples", "1"], "samples: must be >= 2"),
    (["--samples", "0"], "samples: must be >= 2"),
    (["--monte-carlo", "1"], "monte_carlo: must be >= 2"),
    (["--test-points", "0"], "test_points: must be >= 1"),
    (["--dataset", "cifar"], "cifar"),
    (["--dataset", "mnist", "--samples", "100000"], "samples"),
])
def test_bad_input_exit_code_2(capsys: pytest.CaptureFixture[str], extra: list[str],
                               message: str) -> None:
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_figure_registered() -> None:
    assert FIGURES["variance"] == "ntkscope.experiments.variance_figure:figure_variance"


@pytest.fixture
def tiny_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(vf.PRESETS_GRID, "quick", vf.VarianceGrid((1, 3), 32, 6, 3, 8, 1))


def test_figure_writes_png_csv_and_reuses_cells(tiny_preset: None, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    argv = ["figure", "variance", "--out", str(tmp_path), "--store", str(store), "--workers",
            "1", "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "figvariance.png").read_bytes()[:4] == b"\x89PNG"
    rows = np.genfromtxt(tmp_path / "figvariance.csv", delimiter=",", names=True, dtype=None,
                         encoding="utf-8")
    assert len(rows) == 2 * 3 * 2  # activations x phases x depths
    assert set(rows["phase"]) == {"ordered", "EOC", "chaotic"}
    assert np.all(rows["mc_ci_low"] <= rows["mc_variance"])
    assert np.all(rows["mc_variance"] <= rows["mc_ci_high"])
    r = rows[(rows["activation"] == "relu") & (rows["phase"] == "chaotic") & (rows["depth"] == 3)]
    direct = variance_report(NetworkSpec("relu", 3.0, 1.0, 3, 32), 6, dataset="mnist",
                             test_points=3, monte_carlo=8)
    assert r["theorem_variance"][0] == pytest.approx(direct.theorem.variance, rel=1e-9)
    assert direct.mc is not None
    assert r["mc_variance"][0] == pytest.approx(direct.mc.variance, rel=1e-9)
    before = (tmp_path / "figvariance.csv").read_text()
    with Store(store) as st:
        n = len(st)
    assert n == 12
    assert main(argv) == 0  # from the store
    assert (tmp_path / "figvariance.csv").read_text() == before
    with Store(store) as st:
        assert len(st) == n


@pytest.mark.slow
def test_trained_networks_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper preset's trained networks: they converge, and near the EOC their output
    variance is that of the linearized networks within the two intervals."""
    cfg = {"activation": "erf", "sigma_w2": 2.718381, "sigma_b2": 1.0, "depth": 2,
           "width": 128, "samples": 16, "test_points": 8, "inits": 64, "training_sets": 1,
           "dataset": "mnist", "seed": 0, "train_width": 128, "train_inits": 16,
           "train_max_steps": 20000}
    out = vf.variance_cell(cfg).summary
    assert out["trained_converged"] == 16
    lo, hi = out["trained_ci"]
    assert lo <= out["trained_variance"] <= hi
    mlo, mhi = out["mc_ci"]
    assert lo <= mhi and mlo <= hi  # the intervals overlap
