"""The ``ntkscope train`` subcommand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ntkscope.cli.main import main

KEYS = ["steps", "stop_reason", "lr", "initial_loss", "final_loss", "min_loss", "ntk_change",
        "seconds"]
NET = ["--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0.1", "--depth", "2",
       "--width", "16", "--samples", "16", "--threads", "1"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, *NET, "--max-steps", "30", "--snapshots", "10,20,100",
                        "--lr-scale", "0.5", "--json")
    assert code == 0
    d = json.loads(out)
    assert list(d) == KEYS
    assert d["steps"] == 30 and d["stop_reason"] == "max_steps"
    assert list(d["ntk_change"]) == ["10", "20", "final"]
    assert all(v >= 0 for v in d["ntk_change"].values())
    assert d["min_loss"] <= d["final_loss"] < d["initial_loss"]
    assert d["lr"] > 1e-5 and d["seconds"] > 0


def test_default_lr_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, *NET, "--max-steps", "5", "--dataset", "gaussian")
    assert code == 0
    assert "stop reason" in out and "max_steps" in out and "NTK change, final (5)" in out
    code, out, _ = _run(capsys, *NET, "--max-steps", "5", "--json")
    assert json.loads(out)["lr"] == 1e-5


def test_lr_capped_by_lr_scale(capsys: pytest.CaptureFixture[str]) -> None:
    # --lr with --lr-scale: min(lr, s lr_max); the cap binds for a huge lr, not for a tiny one.
    code, out, _ = _run(capsys, *NET, "--max-steps", "2", "--lr-scale", "0.5", "--json")
    capped = json.loads(out)["lr"]
    code, out, _ = _run(capsys, *NET, "--max-steps", "2", "--lr", "1e3", "--lr-scale", "0.5",
                        "--json")
    assert code == 0 and json.loads(out)["lr"] == capped
    code, out, _ = _run(capsys, *NET, "--max-steps", "2", "--lr", "1e-9", "--lr-scale", "0.5",
                        "--json")
    assert code == 0 and json.loads(out)["lr"] == 1e-9 < capped


def test_early_stop_and_divergence(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, *NET, "--lr", "1e-12", "--patience", "7", "--json")
    assert code == 0 and json.loads(out)["stop_reason"] == "early_stop"
    assert json.loads(out)["steps"] == 7
    code, out, _ = _run(capsys, *NET, "--lr-scale", "100", "--max-steps", "200", "--json")
    d = json.loads(out)
    assert code == 0 and d["stop_reason"] == "diverged" and d["ntk_change"]["final"] is None


def test_plot_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "sub" / "loss.png"
    code, out, _ = _run(capsys, *NET, "--max-steps", "20", "--lr-scale", "0.5",
                        "--plot", str(target))
    assert code == 0 and str(target) in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in target.parent.iterdir() if p.name != "loss.png"]  # atomic write


@pytest.mark.parametrize("extra, message", [
    (["--lr", "0"], "lr"),
    (["--lr-scale", "-2"], "lr-scale"),
    (["--snapshots", "10,abc"], "snapshots"),
    (["--snapshots", "10,10"], "distinct"),
    (["--snapshots", "0"], "snapshots"),
    (["--samples", "100000"], "samples"),
    (["--target", "colour"], "target"),
    (["--dataset", "cifar"], "dataset"),
    (["--data-dir", "/nonexistent/ntkscope"], "data_dir"),
    (["--plot", "loss.txt"], "png"),
    (["--device", "tpu"], "device"),
    (["--max-steps", "-3"], "max_steps"),
])
def test_bad_input_exit_2(capsys: pytest.CaptureFixture[str], extra: list[str],
                          message: str) -> None:
    argv = list(NET)
    if "--samples" in extra:
        i = argv.index("--samples")
        argv = argv[:i] + argv[i + 2:]
    code, out, err = _run(capsys, *argv, "--max-steps", "2", *extra)
    assert code == 2 and out == ""
    lines = [line for line in err.strip().splitlines() if ": note: " not in line]
    assert len(lines) == 1 and lines[0].startswith("ntkscope train: error:")
    assert message in lines[0]

