"""Figures 1, 2 and 7 through the sweep engine, on tiny grids (the real presets are run by
`make reproduce`); cells are stored, reused, and the CSV holds the plotted numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ntkscope import NetworkSpec, NtkscopeInputError
from ntkscope.cli.main import main
from ntkscope.experiments import ntk_variance_figures as nvf
from ntkscope.sampling import ntk_variance
from ntkscope.store import Store


@pytest.fixture
def tiny_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = nvf.HeatmapGrid({"tanh": (1.0, 4.0), "relu": (1.0, 3.0)}, (1, 3), (8, 12), (1.0,), 8)
    monkeypatch.setitem(nvf.FIG1, "quick", grid)
    monkeypatch.setitem(nvf.FIG7, "quick", nvf.HeatmapGrid(grid.sw2, (2,), (100,),
                                                             (0.0, 2.0), 8))
    monkeypatch.setitem(nvf.FIG2, "quick", ((6, 10), (0.2, 1.0), 16))


def _csv(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def test_figures_write_png_csv_and_reuse_cells(tiny_presets: None, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.sqlite"
    common = ["--out", str(tmp_path), "--store", str(store), "--workers", "1", "--quiet"]
    for n in ("1", "2", "7"):
        assert main(["figure", n, *common]) == 0
        assert (tmp_path / f"fig{n}.png").read_bytes()[:4] == b"\x89PNG"
    rows = _csv(tmp_path / "fig1.csv")
    assert len(rows) == 2 * 2 * 2 * 2  # activations x sw2 x depths x widths
    # 8 draws per cell: R has an interval where the tail is light (ESS >= N/2), else it is
    # only a lower bound (empty interval columns, flag 1); the grid has both kinds
    ok = rows["ratio_is_lower_bound"] == 0
    assert ok.any() and not ok.all()
    assert np.array_equal(ok, rows["ess"] >= rows["inits"] / 2)
    assert np.all(rows["ratio_ci_low"][ok] <= rows["ratio"][ok])
    assert np.all(rows["ratio"][ok] <= rows["ratio_ci_high"][ok])
    assert np.all(np.isnan(rows["ratio_ci_low"][~ok]) & np.isnan(rows["ratio_ci_high"][~ok]))
    assert np.all(rows["ratio"] >= 1.0)
    assert np.all((rows["ess"] >= 1.0) & (rows["ess"] <= rows["inits"]))
    # The stored numbers are those of a direct call with the same seed.
    r = rows[(rows["activation"] == "relu") & (rows["sigma_w2"] == 3.0) & (rows["depth"] == 3)
             & (rows["width"] == 12)][0]
    direct = ntk_variance(NetworkSpec("relu", 3.0, 1.0, 3, 12, 784), inits=8, seed=0)
    assert r["ratio"] == pytest.approx(direct.ratio, rel=1e-9)
    with Store(store) as st:
        n_cells = len(st)
    assert n_cells == 16 + 8 + 4 * 2 * 2  # fig1 + fig7 + fig2 (4 points x 2 widths x 2 depths)
    # Rerun: everything comes from the store (same row count, identical CSV).
    before = (tmp_path / "fig1.csv").read_text()
    assert main(["figure", "1", *common]) == 0
    assert (tmp_path / "fig1.csv").read_text() == before
    with Store(store) as st:
        assert len(st) == n_cells


def test_cells_of_an_older_store_are_not_reused(tiny_presets: None, tmp_path: Path) -> None:
    """A summary stored before the tail diagnostic (no ``ess``) is never read as complete: its
    key differs (CELL_VERSION in the config), so the figure computes the cell anew; and a
    summary without ``ess`` handed to the figure code is refused."""
    from ntkscope.store import cell_key

    store = tmp_path / "old.sqlite"
    cfg = nvf.heatmap_cells(nvf.FIG1["quick"])[0]
    old_cfg = {k: v for k, v in cfg.items() if k != "version"}
    old_summary = {"ratio": 1.5, "ratio_ci": [1.4, 1.6], "mean": 1.0, "std": 0.1,
                   "theory_mean": 1.0, "inits": 8, "method": "lowrank"}
    with Store(store) as st:
        st.put_done(cell_key(nvf.KIND, old_cfg), nvf.KIND, old_cfg, old_summary, None, 0.1)
    assert main(["figure", "1", "--out", str(tmp_path), "--store", str(store), "--workers",
                 "1", "--quiet"]) == 0
    rows = _csv(tmp_path / "fig1.csv")
    assert len(rows) == 16 and np.all(rows["ess"] >= 1.0)
    with Store(store) as st:
        assert len(st) == 1 + 16  # the old row stays, unused
    with pytest.raises(NtkscopeInputError, match="ess"):
        nvf._csv_rows([cfg], [old_summary])


def test_figure2_hanin_nica_column(tiny_presets: None, tmp_path: Path) -> None:
    assert main(["figure", "2", "--out", str(tmp_path), "--store", str(tmp_path / "s.sqlite"),
                 "--workers", "1", "--quiet"]) == 0
    rows = _csv(tmp_path / "fig2.csv")
    np.testing.assert_allclose(rows["hanin_nica"], np.exp(5 * rows["depth"] / rows["width"]))
    assert set(rows["width"]) == {6, 10}


def test_figure_sweep_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figure", "1", "--out", str(tmp_path), "--store", str(tmp_path),
                 "--quiet"]) == 2
    assert main(["figure", "2", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "store" in err and "scheduler" in err and "Traceback" not in err


def test_cells_run_on_the_requested_device(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    # The device reaches every cell function as a keyword (not through the cell's key).
    from ntkscope.experiments import common

    seen = {}

    def fake_sweep(cells, fn, store, **kwargs):  # type: ignore[no-untyped-def]
        seen["keywords"], seen["configs"] = fn.keywords, [c.config for c in cells]
        return type("R", (), {"failed": 0, "summaries": [{} for _ in cells]})()

    monkeypatch.setattr(common, "run_sweep", fake_sweep)
    opts = common.SweepOptions(store=tmp_path / "s.sqlite", device="cuda:1")
    assert common.run_cells("k", [{"a": 1}], nvf.ntk_variance_cell, opts) == [{}]
    assert seen == {"keywords": {"device": "cuda:1"}, "configs": [{"a": 1}]}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_figure_device_cuda_without_gpu_is_refused(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "figs"
    assert main(["figure", "1", "--out", str(out), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA was requested but is not available" in err and len(err.splitlines()) == 1
    assert not out.exists()
