"""The theory, phase, eoc and figure subcommands: JSON contract, tables, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ntkscope.cli.main import main
from ntkscope.theory import kappa_by_depth, propagate

THEORY_KEYS = {"layers", "ntk_mean_diag", "ntk_mean_offdiag", "kappa1", "kappa2", "kappa_ratio",
               "output_var", "output_cov", "chi1_fixed_point", "q_star", "phase"}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_theory_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    res = _json(capsys, ["theory", "--activation", "tanh", "--sigma-w2", "2", "--sigma-b2",
                         "0.5", "--depth", "4", "--c0", "0.3", "--json"])
    assert THEORY_KEYS <= res.keys()
    assert [row["l"] for row in res["layers"]] == [1, 2, 3, 4]
    assert {"l", "q", "q_sr", "c", "p", "p_sr", "chi1"} <= res["layers"][0].keys()
    mf = propagate("tanh", 2.0, 0.5, 4, width=100, input_dim=100, c0=0.3)
    assert res["ntk_mean_diag"] == pytest.approx(float(mf.ntk_mean_diag), rel=1e-12)
    assert res["layers"][2]["p_sr"] == pytest.approx(float(mf.p_sr[2]), rel=1e-12)
    assert res["kappa_ratio"] == pytest.approx(res["kappa1"] / res["kappa2"], rel=1e-12)
    assert res["phase"] == "ordered" and res["q_star"] > 0


def test_theory_relu_chaotic_has_null_q_star(capsys: pytest.CaptureFixture[str]) -> None:
    res = _json(capsys, ["theory", "--activation", "relu", "--sigma-w2", "3", "--sigma-b2", "1",
                         "--depth", "2", "--width", "50", "--input-dim", "784", "--json"])
    assert res["q_star"] is None and res["phase"] == "chaotic"
    assert res["chi1_fixed_point"] == 1.5
    assert res["layers"][0]["q"] == pytest.approx(4.0)


def test_eoc_and_phase(capsys: pytest.CaptureFixture[str]) -> None:
    res = _json(capsys, ["eoc", "--activation", "erf", "--sigma-b2", "0", "--json"])
    assert res["sigma_w2"] == pytest.approx(np.pi / 4, abs=1e-12)
    res = _json(capsys, ["eoc", "--activation", "tanh", "--sigma-b2", "1", "--json"])
    sw2 = res["sigma_w2"]
    ph = _json(capsys, ["phase", "--activation", "tanh", "--sigma-w2", repr(sw2), "--sigma-b2",
                        "1", "--json"])
    assert ph["phase"] == "edge of chaos" and ph["chi1"] == pytest.approx(1.0, abs=1e-9)
    assert ph["q_star"] == pytest.approx(res["q_star"], rel=1e-6)


def test_readable_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["theory", "--activation", "erf", "--sigma-w2", "1", "--sigma-b2", "1",
                 "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "kappa_ratio" in out and "chi1" in out and "ordered" in out
    assert main(["phase", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0"]) == 0
    assert "edge of chaos" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--sigma-w2", "0"], "sigma_w2"), (["--sigma-w2", "-2"], "sigma_w2"),
        (["--sigma-b2", "-1"], "sigma_b2"), (["--depth", "0"], "depth"),
        (["--depth", "99999999"], "<= 10000"),
        (["--width", "0"], "width"), (["--c0", "2"], "c0"), (["--q0", "0"], "q0"),
        (["--sigma-w2", "nan"], "sigma-w2"), (["--sigma-b2", "inf"], "sigma-b2"),
        (["--activation", "sigmoid"], "activation"), (["--input-dim", "0"], "input_dim"),
    ],
)
def test_bad_input_exit_2_one_line(argv: list[str], name: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--activation": "relu", "--sigma-w2": "1", "--sigma-b2": "0.1", "--depth": "3"}
    base.update(dict(zip(argv[::2], argv[1::2])))
    args = ["theory", *[x for kv in base.items() for x in kv]]
    with pytest.raises(SystemExit) if "nan" in argv or "inf" in argv else _noraise() as exc:
        code = main(args)
    if exc is not None and getattr(exc, "value", None) is not None:
        code = exc.value.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert name in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


class _noraise:
    value = None

    def __enter__(self) -> _noraise:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


def test_console_script_version_and_help() -> None:
    exe = Path(sys.executable).parent / "ntkscope"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ntkscope ")
    for cmd in ("theory", "phase", "eoc", "figure", "reproduce"):
        res = subprocess.run([exe, cmd, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage" in res.stdout
    bad = subprocess.run([exe, "theory", "--activation", "relu", "--sigma-w2", "-1",
                          "--sigma-b2", "0", "--depth", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "sigma_w2" in bad.stderr and "Traceback" not in bad.stderr


def test_figures_5_and_6_write_png_and_csv(tmp_path: Path) -> None:
    assert main(["figure", "5", "--out", str(tmp_path)]) == 0
    assert main(["figure", "6", "--out", str(tmp_path)]) == 0
    for n in (5, 6):
        png = (tmp_path / f"fig{n}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    rows = np.genfromtxt(tmp_path / "fig5.csv", delimiter=",", names=True, dtype=None,
                         encoding="utf-8")
    assert len(rows) == 6 * 11 * 50
    sel = rows[(rows["activation"] == "relu") & (rows["sigma_w2"] == 3.0) & (rows["c0"] == 0.5)]
    k1, k2 = kappa_by_depth("relu", 3.0, 1.0, 50, c0=0.5)
    np.testing.assert_allclose(sel["kappa2"], k2, rtol=1e-10)
    np.testing.assert_allclose(sel["kappa_ratio"], k1 / k2, rtol=1e-10)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_figure_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figure", "99", "--out", str(tmp_path)]) == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["figure", "5", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "unknown figure" in err and "not a directory" in err
    with pytest.raises(SystemExit) as exc:
        main(["figure", "5", "--out", str(tmp_path), "--preset", "huge"])
    assert exc.value.code == 2
