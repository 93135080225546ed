"""``ntkscope check``: the verdict rules, real checks, JSON, the HTML report and bad input."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ntkscope import NetworkSpec
from ntkscope.check import check_network
from ntkscope.cli.main import main
from ntkscope.verdict import THRESHOLDS, Evidence, WidthChange, judge

KEYS = ["phase", "chi1", "sigma_w2_eoc", "kappa_ratio", "ratio", "ratio_ci", "ntk_change",
        "loss_drop", "ntk_regime", "reasons"]
SMALL = ["--samples", "32", "--inits", "300", "--train-steps", "50", "--second-width", "none"]


def _evidence(**changes: object) -> Evidence:
    base = Evidence(
        activation="relu", sigma_w2=1.0, sigma_b2=0.1, depth=2, width=512, samples=32,
        train_steps=50, lr_scale=0.5, phase="ordered", chi1=0.5, sigma_w2_eoc=2.0,
        kappa_ratio=2.4, ratio=1.01, ratio_ci=(1.005, 1.02), hanin_nica=1.02,
        ntk_change=0.02, steps=50, stop_reason="max_steps", loss_drop=0.05, unexplained=0.05,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["check", *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------
# The rules (no computation)


def test_rules_pass_borderline_fail() -> None:
    """The documented thresholds (docs/check.md), as literal numbers."""
    assert judge(_evidence()).ntk_regime == "yes"
    # randomness: the CI's upper end decides pass (<= 1.1), the point estimate fail (>= 2)
    assert judge(_evidence(ratio=1.05, ratio_ci=(1.03, 1.1))).criteria["randomness"] == "pass"
    v = judge(_evidence(ratio=1.05, ratio_ci=(1.03, 1.1001)))
    assert v.criteria["randomness"] == "borderline" and v.ntk_regime == "borderline"
    v = judge(_evidence(ratio=1.999, ratio_ci=(1.5, 3.0)))
    assert v.criteria["randomness"] == "borderline"
    v = judge(_evidence(ratio=2.0, ratio_ci=(1.5, 3.0)))
    assert v.criteria["randomness"] == "fail" and v.ntk_regime == "no"
    assert "randomness" in v.reasons[0]
    # change: pass <= 0.1, fail >= 0.3
    assert judge(_evidence(ntk_change=0.1)).criteria["change"] == "pass"
    v = judge(_evidence(ntk_change=0.1001))
    assert v.criteria["change"] == "borderline" and v.ntk_regime == "borderline"
    assert judge(_evidence(ntk_change=0.2999)).criteria["change"] == "borderline"
    v = judge(_evidence(ntk_change=0.3))
    assert v.criteria["change"] == "fail" and v.ntk_regime == "no"
    v = judge(_evidence(ntk_change=None, stop_reason="diverged"))
    assert v.criteria["change"] == "fail" and not v.trainable and "diverged" in v.reasons[2]
    # one fail beats a pass
    assert judge(_evidence(ratio=5.0, ratio_ci=(3.0, 9.0), ntk_change=0.01)).ntk_regime == "no"
    assert THRESHOLDS.to_dict() == {
        "ratio_deterministic": 1.1, "ratio_random": 2.0, "change_small": 0.1,
        "change_large": 0.3, "unexplained_trainable": 0.5, "kappa_ill_conditioned": 1.5,
        "exponent_falls": -0.25}


def _widths(c1: float, c2: float, m1: int = 256, m2: int = 1024,
            reasons: tuple[str, str] = ("loss_fraction", "loss_fraction")) -> WidthChange:
    return WidthChange.of((m1, m2), (c1, c2), (100, 200), reasons)


def test_rules_width_comparison() -> None:
    """A large change that falls with width like theory (exponent <= -0.25, comparable runs)
    is borderline, not no; one that does not fall, or runs that stopped at different points
    of training, fail as before; small changes pass whatever the width does."""
    w = _widths(0.4, 0.1)
    assert w.exponent == pytest.approx(np.log(0.1 / 0.4) / np.log(4.0)) and w.comparable
    assert w.exponent == pytest.approx(-1.0)
    frac = {"loss_fraction": 0.01, "stop_reason": "loss_fraction"}
    v = judge(_evidence(ntk_change=0.4, width_change=w, **frac))
    assert v.criteria["change"] == "borderline" and v.ntk_regime == "borderline"
    assert "falling with the width like NTK theory" in v.reasons[0]
    assert "width^-1.00" in v.reasons[2] and "near width 1,024" in v.reasons[2]
    # exponent -0.251 falls, -0.249 does not (the threshold is -0.25)
    c2 = 0.4 * 4.0 ** -0.251
    assert judge(_evidence(ntk_change=0.4, width_change=_widths(0.4, c2), **frac)
                 ).criteria["change"] == "borderline"
    v = judge(_evidence(ntk_change=0.4, width_change=_widths(0.4, 0.4 * 4.0 ** -0.249),
                        **frac))
    assert v.criteria["change"] == "fail" and "does not fall with the width" in v.reasons[2]
    # not comparable: the wider run hit the budget
    v = judge(_evidence(ntk_change=0.4, width_change=_widths(0.4, 0.1, reasons=(
        "loss_fraction", "max_steps")), **frac))
    assert v.criteria["change"] == "fail" and "not comparable" in v.reasons[2]
    # a narrower second width works the same way
    v = judge(_evidence(ntk_change=0.4, width_change=_widths(0.4, 1.6, 256, 64), **frac))
    assert v.criteria["change"] == "borderline"
    # small changes pass, and the change is reported at the loss fraction
    v = judge(_evidence(ntk_change=0.05, width_change=_widths(0.05, 0.06), steps=38, **frac))
    assert v.ntk_regime == "yes"
    assert "after 38 steps (loss at 0.01 of its initial value)" in v.reasons[2]


def test_rules_without_mlp_theory() -> None:
    """Evidence of any model: the MLP fields are optional, theory is 'not applicable'."""
    e = Evidence(samples=16, ratio=1.02, ratio_ci=(1.01, 1.05), ntk_change=0.05, steps=20,
                 stop_reason="loss_fraction", loss_drop=0.01, unexplained=0.02,
                 loss_fraction=0.01, model="m.py:cnn")
    v = judge(e)
    assert v.ntk_regime == "yes" and v.trainable
    assert v.reasons[-1].startswith("theory: not applicable (not an ntkscope MLP)")
    assert not any(r.startswith(("phase", "conditioning")) for r in v.reasons)


def test_rules_trainability_and_conditioning() -> None:
    v = judge(_evidence(unexplained=0.9, loss_drop=0.6, kappa_ratio=1.001, depth=30,
                        ntk_change=0.01))
    assert v.ntk_regime == "yes" and not v.trainable
    assert "untrainable" in v.reasons[0]
    assert any(r.startswith("conditioning") for r in v.reasons)
    assert judge(_evidence(unexplained=0.5)).trainable
    assert not judge(_evidence(unexplained=0.5001)).trainable
    # conditioning flag below 1 + 1.5/S (S = 32: 1.046875)
    assert any(r.startswith("conditioning") for r in judge(_evidence(kappa_ratio=1.0468)).reasons)
    assert not any(r.startswith("conditioning")
                   for r in judge(_evidence(kappa_ratio=1.047)).reasons)
    # a passing change in a run that had not converged is called a lower bound
    assert "lower bound" in judge(_evidence()).reasons[2]
    assert "lower bound" not in judge(_evidence(stop_reason="early_stop")).reasons[2]


def test_rules_lower_bound_of_r() -> None:
    """R only a lower bound (heavy tail, no interval): still 'fail' at or above ratio_random,
    'inconclusive' below it (never 'pass'), and the regime is then at best borderline."""
    bound = {"ratio_ci": None, "ratio_is_lower_bound": True, "ess": 12.0, "inits": 1000}
    v = judge(_evidence(ratio=2.0, **bound))
    assert v.criteria["randomness"] == "fail" and v.ntk_regime == "no"
    assert "R >= 2 (lower bound: heavy tail, ESS 12 of 1,000" in v.reasons[1]
    for ratio in (1.0, 1.05, 1.999):
        v = judge(_evidence(ratio=ratio, **bound))
        assert v.criteria["randomness"] == "inconclusive" and v.ntk_regime == "borderline"
        assert "inconclusive" in v.reasons[0] and "inconclusive" in v.reasons[1]
    v = judge(_evidence(ratio=1.05, ntk_change=0.2, **bound))
    assert v.reasons[0] == ("borderline: change between the thresholds; randomness "
                            "inconclusive (R is only a lower bound below 2: heavy tail)")
    v = judge(_evidence(ratio=1.05, ntk_change=0.5, **bound))
    assert v.ntk_regime == "no" and v.criteria["change"] == "fail"


def test_lower_bound_in_json_table_and_html(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    """A chaotic narrow ReLU: R from 300 draws is a lower bound in the JSON (ratio_ci null,
    ess, ratio_is_lower_bound, also per depth of r_by_depth), the table and the HTML page."""
    target = tmp_path / "r.html"
    code, out, _ = _cli(capsys, "--activation", "relu", "--sigma-w2", "4", "--sigma-b2", "0.1",
                        "--depth", "12", "--width", "8", *SMALL, "--train-steps", "5",
                        "--html", str(target), "--json")
    assert code == 0
    d = json.loads(out[: out.rindex("}") + 1])
    assert d["ratio_is_lower_bound"] is True and d["ratio_ci"] is None and d["ess"] < 100
    assert d["criteria"]["randomness"] in ("fail", "inconclusive")
    assert any(p["ratio_is_lower_bound"] and p["ratio_ci"] is None for p in d["r_by_depth"])
    assert all((p["ratio_ci"] is None) == p["ratio_is_lower_bound"] for p in d["r_by_depth"])
    page = target.read_text(encoding="utf-8")
    assert "R &gt;= " in page and "lower bound: heavy tail, ESS" in page
    code, out, _ = _cli(capsys, "--activation", "relu", "--sigma-w2", "4", "--sigma-b2", "0.1",
                        "--depth", "12", "--width", "8", *SMALL, "--train-steps", "5")
    assert code == 0 and "none: R is a lower bound" in out and "ESS of Theta0^2" in out


# --------------------------------------------------------------------------------------------
# Real checks


def test_ordered_shallow_wide_is_yes() -> None:
    res = check_network(NetworkSpec("relu", 1.0, 0.1, 1, 1024), samples=32,
                        inits=300, train_steps=50)
    e, v = res.evidence, res.verdict
    assert e.phase == "ordered" and v.ntk_regime == "yes" and v.trainable
    assert e.ratio_ci[1] <= 1.1 and e.ntk_change is not None and e.ntk_change <= 0.1


def test_chaotic_deep_narrow_is_no_for_randomness() -> None:
    res = check_network(NetworkSpec("relu", 4.0, 0.1, 30, 30), samples=32,
                        inits=500, train_steps=50)
    e, v = res.evidence, res.verdict
    assert e.phase == "chaotic" and v.ntk_regime == "no"
    assert v.criteria["randomness"] == "fail" and e.ratio >= 2.0
    assert v.reasons[0].startswith("not in the NTK regime") and "randomness" in v.reasons[0]
    assert any(r.startswith("randomness:") and "R >= 2" in r for r in v.reasons)


def test_edge_of_chaos_moderately_deep_is_borderline() -> None:
    # ReLU on the EOC, L/M = 0.08: R ~ 1.28 (CI inside (1.1, 2)), change ~ 0.26 in 50 steps
    res = check_network(NetworkSpec("relu", 2.0, 0.1, 20, 256), samples=32,
                        inits=500, train_steps=50)
    e, v = res.evidence, res.verdict
    assert e.phase == "edge of chaos" and v.criteria["randomness"] == "borderline"
    assert 1.1 < e.ratio_ci[0] and e.ratio_ci[1] < 2.0
    assert v.ntk_regime == "borderline"


def test_ordered_deep_is_yes_but_untrainable() -> None:
    res = check_network(NetworkSpec("relu", 0.8, 0.1, 20, 64), samples=32,
                        inits=300, train_steps=50)
    v = res.verdict
    assert v.ntk_regime == "yes" and not v.trainable
    assert "untrainable" in v.reasons[0]
    assert any(r.startswith("conditioning") for r in v.reasons)


def test_json_equals_direct_calls(capsys: pytest.CaptureFixture[str]) -> None:
    from ntkscope.datasets import load_dataset
    from ntkscope.networks import MLP
    from ntkscope.sampling import ntk_variance
    from ntkscope.theory import chi1_fixed_point, data_covariances, eoc, phase_of, propagate
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    act, sw2, sb2, L, M, seed = "tanh", 2.5, 0.2, 3, 64, 3
    code, out, _ = _cli(capsys, "--activation", act, "--sigma-w2", str(sw2), "--sigma-b2",
                        str(sb2), "--depth", str(L), "--width", str(M), "--seed", str(seed),
                        "--dataset", "gaussian", *SMALL, "--second-width", "auto",
                        "--loss-fraction", "0.05", "--json")
    assert code == 0
    d = json.loads(out)
    assert list(d)[: len(KEYS)] == KEYS

    chi, _ = chi1_fixed_point(act, sw2, sb2)
    assert d["chi1"] == float(chi) and d["phase"] == phase_of(chi)
    assert d["sigma_w2_eoc"] == float(eoc(act, sb2)[0])
    data = load_dataset("gaussian", 32, seed)
    _, c0, _, _ = data_covariances(data.X, max_pairs=32 * 31 // 2)
    mf = propagate(act, sw2, sb2, L, M, input_dim=784, q0=1.0, c0=float(np.mean(c0)),
                   keep_layers=False)
    assert d["kappa_ratio"] == pytest.approx(float(mf.kappa1 / mf.kappa2), rel=1e-12)
    var = ntk_variance(NetworkSpec(act, sw2, sb2, L, M, 784), inits=300, seed=seed)
    assert d["ratio"] == var.ratio and d["ratio_ci"] == list(var.ratio_ci)
    runs = [train(MLP(784, m, L, act, sw2, sb2), data.X, data.y, batch=1, seed=seed,
                  rate=LearningRate(lr_scale=0.5),
                  stop=StoppingRule(max_steps=50, loss_fraction=0.05),
                  record=Recording((10,)), execution=Execution(threads=1)).results[0]
            for m in (M, 4 * M)]
    tr, wide = runs
    assert d["ntk_change"] == tr.final_ntk_change
    assert d["loss_drop"] == tr.min_loss / tr.initial_loss
    assert d["ntk_change_steps"] == ({"10": tr.ntk_change[10]} if 10 in tr.ntk_change else {})
    assert d["loss_fraction"] == 0.05 and d["steps"] == tr.steps
    assert d["steps_to_fraction"] == (tr.steps if tr.stop_reason == "loss_fraction" else None)
    wc = d["width_change"]
    assert wc["widths"] == [M, 4 * M] and wc["theory_exponent"] == -0.5
    assert wc["changes"] == [tr.final_ntk_change, wide.final_ntk_change]
    assert wc["steps"] == [tr.steps, wide.steps]
    assert wc["exponent"] == pytest.approx(
        np.log(wide.final_ntk_change / tr.final_ntk_change) / np.log(4.0), rel=1e-12)
    assert d["settings"]["second_width"] == 4 * M and d["settings"]["steps"] == 50
    assert d["ntk_regime"] in ("yes", "borderline", "no") and len(d["reasons"]) >= 4
    assert d["settings"]["seed"] == seed and d["thresholds"] == THRESHOLDS.to_dict()


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--activation", "relu", "--sigma-w2", "1", "--sigma-b2", "0.1",
                        "--depth", "1", "--width", "256", *SMALL)
    assert code == 0
    for text in ("phase", "chi1", "sigma_w2_eoc", "kappa1/kappa2", "95% CI of R",
                 "Hanin & Nica", "NTK change", "ntk_regime", "reasons:"):
        assert text in out


def test_html_report_is_self_contained(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, out, _ = _cli(capsys, "--activation", "tanh", "--sigma-w2", "1.5", "--sigma-b2",
                        "0.1", "--depth", "4", "--width", "64", *SMALL, "--html", str(target))
    assert code == 0 and str(target) in out
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('<img src="data:image/png;base64,') == 3  # phase diagram, R curve, run
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert "ntk_regime" in page and "Where the network sits" in page
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # atomic: no leftovers


@pytest.mark.parametrize("extra, message", [
    (["--sigma-w2", "0"], "sigma_w2"),
    (["--sigma-w2", "-1"], "sigma_w2"),
    (["--sigma-b2", "-0.5"], "sigma_b2"),
    (["--depth", "0"], "depth"),
    (["--width", "0"], "width"),
    (["--samples", "100000"], "samples"),
    (["--samples", "1"], "samples"),
    (["--inits", "1"], "inits"),
    (["--train-steps", "0"], "steps"),
    (["--loss-fraction", "1.5"], "loss_fraction"),
    (["--second-width", "16"], "second_width"),
    (["--loss", "mse"], "only with --model"),
    (["--lr-scale", "0"], "lr_scale"),
    (["--activation", "sigmoid"], "activation"),
    (["--dataset", "cifar"], "dataset"),
    (["--depth", "two"], "depth"),
    (["--html", "/dev/null/report.html"], "is not a directory"),
    (["--device", "tpu"], "device"),
    (["--html", "MISSING/report.html", "--depth", "0"], "depth"),  # MISSING/ not created
    (["--html", "."], "html"),
])
def test_bad_input_exit_2_no_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, extra: list[str],
                                  message: str) -> None:
    monkeypatch.chdir(tmp_path)
    argv = {"--activation": "relu", "--sigma-w2": "2", "--sigma-b2": "0.1", "--depth": "2",
            "--width": "16", "--samples": "16", "--inits": "10", "--train-steps": "5",
            "--html": "out.html"}
    for key, value in zip(extra[::2], extra[1::2]):
        argv[key] = value
    code, out, err = _cli(capsys, *[x for kv in argv.items() for x in kv])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_html_path_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _cli(capsys, "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0",
                        "--depth", "2", "--width", "16", "--html", str(tmp_path))
    assert code == 2 and "is a directory" in err and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_default_size_finishes_in_time(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code, out, _ = _cli(capsys, "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0.1",
                        "--depth", "20", "--width", "256", "--json")
    seconds = time.perf_counter() - start
    assert code == 0
    d = json.loads(out)
    assert d["settings"]["samples"] == 128 and d["settings"]["inits"] == 1000
    assert d["settings"]["steps"] == 1000 and d["steps"] >= 1
    assert d["settings"]["second_width"] == 64 and d["width_change"]["widths"] == [256, 64]
    assert seconds < 120, seconds
