"""The HTML report of ``ntkscope check --html``, as a reader sees it.

1. Its figures' tick labels never overlap, whatever the range of ``R`` or of the loss (tiny
   ranges, ranges up to 1e300, a single point): measured on the drawn matplotlib figures.
2. In a real headless browser (Debian's ``chromium``) the page loads and every embedded image
   decodes to its PNG's size; a report with a broken image is detected. Skipped, with the
   reason, only where no browser is installed (``.ci/run`` installs one).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axis import Axis
from matplotlib.transforms import Bbox

import ntkscope.report as report
from ntkscope.check import CheckResult
from ntkscope.cli.main import main
from ntkscope.plotting import plt

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=10000")
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]*)"')
# Appended to a copy of the report: in the load event (all images fetched by then), record in
# the DOM each image's state: loaded (complete, natural size) and painted down to its last row
# (drawImage decodes it synchronously; a PNG cut short still reports its header's size, but
# its missing rows stay transparent, and the report's figures are opaque). Synchronous, so the
# record is in the DOM before --dump-dom writes it.
PROBE = """<script>
function probe(im) {
  let lastRow = 0;
  if (im.complete && im.naturalWidth > 0 && im.naturalHeight > 0) {
    const c = document.createElement("canvas");
    c.width = im.naturalWidth; c.height = im.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(im, 0, 0);
    const px = g.getImageData(0, c.height - 1, c.width, 1).data;
    let opaque = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] === 255) opaque++;
    lastRow = opaque / c.width;
  }
  return {complete: im.complete, width: im.naturalWidth, height: im.naturalHeight,
          lastRow: lastRow};
}
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "ntkscope-probe";
  out.textContent = JSON.stringify({ready: document.readyState, title: document.title,
                                    images: Array.from(document.images, probe)});
  document.body.appendChild(out);
});
</script>"""
PROBE_OUT = re.compile(r'<pre id="ntkscope-probe">(.*?)</pre>', re.S)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[CheckResult, Path]:
    """One real ``ntkscope check --html`` (about 2 s): its result and its page.

    ReLU at the edge of chaos with L/M = 2, so ``R`` spans two decades over the curve and
    Hanin & Nica's exp(5L/M) eight: the case whose log axis had overlapping labels.
    """
    target = tmp_path_factory.mktemp("report") / "report.html"
    got: list[CheckResult] = []
    real = report.write_report

    def capture(res: CheckResult, path: Path) -> Path:
        got.append(res)
        return real(res, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "write_report", capture)
        code = main(["check", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0",
                     "--depth", "20", "--width", "10", "--dataset", "gaussian", "--samples",
                     "16", "--inits", "300", "--train-steps", "30", "--html", str(target)])
    assert code == 0 and len(got) == 1 and len(got[0].curve) >= 4
    return got[0], target


# --------------------------------------------------------------------------------------------
# 1. Tick labels (matplotlib, no browser)


def _labels(fig: plt.Figure, axis: Axis) -> list[tuple[str, Bbox]]:
    """``(text, window extent)`` of the axis' visible, non-empty tick labels, major and minor
    (the report's R plot had labelled minor ticks that overlapped)."""
    with np.errstate(over="ignore", under="ignore"):  # as report._png does
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    lo, hi = sorted(axis.get_view_interval())
    ticks = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
    labels = [*axis.get_majorticklabels(), *axis.get_minorticklabels()]
    return [(t.get_text(), t.get_window_extent(renderer)) for tick, t in zip(ticks, labels)
            if t.get_visible() and t.get_text() and lo <= tick.get_loc() <= hi]


def _assert_readable(fig: plt.Figure, axis: Axis, what: str, least: int = 2) -> list[str]:
    labels = _labels(fig, axis)
    texts = [t for t, _ in labels]
    assert len(labels) >= least, f"{what}: fewer than {least} tick labels: {texts}"
    assert len(set(texts)) == len(texts), f"{what}: repeated tick labels: {texts}"
    touching = [(a, b) for (a, ea), (b, eb) in itertools.combinations(labels, 2)
                if ea.overlaps(eb)]
    assert not touching, f"{what}: overlapping tick labels {touching} of {texts}"
    return texts


def _with_curve(res: CheckResult, ratios: list[float], spread: float) -> CheckResult:
    """``res`` with its ``R`` curve replaced by ``ratios`` at depths 1, 2, ... (intervals
    ``[R / (1 + spread), R (1 + spread)]``; the last point is the network's)."""
    points = [dataclasses.replace(res.curve[0], depth=i + 1, ratio=r,
                                  ratio_ci=(r / (1 + spread), r * (1 + spread)))
              for i, r in enumerate(ratios)]
    evidence = dataclasses.replace(res.evidence, depth=len(ratios), ratio=ratios[-1],
                                   ratio_ci=points[-1].ratio_ci, hanin_nica=None)
    return dataclasses.replace(res, curve=points, evidence=evidence)


R_CASES = {
    "tiny range": ([1.0000001, 1.0000002, 1.0000003], 1e-8),
    "one point": ([1.5], 0.0),
    "one point at 1e300": ([1e300], 0.0),
    "up to 1e300": (list(np.logspace(0, 300, 7)), 0.5),
    "four decades": ([1.0, 3.0, 30.0, 300.0, 3000.0], 0.2),
    "one decade": ([1.2, 4.0, 9.0], 0.1),
    "below one": ([0.3, 0.5, 0.9], 0.1),
}


def test_ratio_plot_of_a_real_check(checked: tuple[CheckResult, Path]) -> None:
    fig = report._ratio_figure(checked[0])
    texts = _assert_readable(fig, fig.axes[0].yaxis, "R axis")
    assert all("e+" not in t and "e-" not in t for t in texts), texts  # no offset notation
    _assert_readable(fig, fig.axes[0].xaxis, "depth axis")
    plt.close(fig)


@pytest.mark.parametrize("case", R_CASES)
def test_ratio_plot_any_range(checked: tuple[CheckResult, Path], case: str) -> None:
    ratios, spread = R_CASES[case]
    fig = report._ratio_figure(_with_curve(checked[0], ratios, spread))
    ax = fig.axes[0]
    _assert_readable(fig, ax.yaxis, f"R axis, {case}")
    depths = _assert_readable(fig, ax.xaxis, f"depth axis, {case}", least=1)
    assert all(t.isdigit() for t in depths), depths  # whole depths only
    lo, hi = ax.get_ylim()
    assert 0 < lo <= min(ratios) and max(ratios) <= hi < np.inf  # every point in view
    plt.close(fig)


@pytest.mark.parametrize("lo, hi", [(1.0, 1.0), (1.0, 1.0 + 1e-9), (0.46, 0.52), (1.0, 20.0),
                                    (1e-3, 1e5), (1e-300, 1e300), (1e-307, 1e-290),
                                    (1e290, 1.7e308)])
def test_log_axis_any_range(lo: float, hi: float) -> None:
    """The report's log axis alone, on data from ``lo`` to ``hi``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([0.0, 1.0], [lo, hi], "o-")
    report._log_yaxis(ax)
    _assert_readable(fig, ax.yaxis, f"log axis [{lo:g}, {hi:g}]")
    bottom, top = ax.get_ylim()
    assert 0 < bottom <= lo and hi <= top < np.inf
    plt.close(fig)


@pytest.mark.parametrize("losses", [[0.5, 0.5000001, 0.4999999], [1e5, 1.0, 1e-30],
                                    [0.52, 0.47, 0.41]])
def test_training_plot_any_range(checked: tuple[CheckResult, Path],
                                 losses: list[float]) -> None:
    tr = checked[0].training
    steps = np.linspace(0, tr.steps, len(losses)).round().astype(tr.loss_steps.dtype)
    res = dataclasses.replace(checked[0], training=dataclasses.replace(
        tr, losses=np.array(losses), loss_steps=steps))
    fig = report._training_figure(res)
    for axis, what in ((fig.axes[0].yaxis, "loss"), (fig.axes[1].yaxis, "NTK change"),
                       (fig.axes[0].xaxis, "steps")):
        _assert_readable(fig, axis, f"{what} axis, losses {losses}")
    plt.close(fig)


def test_phase_diagram_axes(checked: tuple[CheckResult, Path]) -> None:
    fig = report.phase_diagram(checked[0])
    heat, bar = fig.axes
    for axis, what in ((heat.xaxis, "sw2"), (heat.yaxis, "depth"), (bar.yaxis, "colour bar")):
        _assert_readable(fig, axis, what)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# 2. The page in a real headless browser


@pytest.fixture(scope="module")
def browser() -> str:
    """The headless browser's path; skips (before the report is made) where there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless browser: none of " + ", ".join(BROWSERS) + " is on PATH "
                "(Debian: apt-get install chromium; .ci/run installs it)")


def _run_browser(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a fresh profile (no state shared between runs)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def _png_size(b64: str) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (what a browser must decode it to)."""
    data = base64.b64decode(b64)
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"no PNG signature and IHDR: starts {data[:16]!r}")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _probe(browser: str, page: Path, tmp_path: Path) -> dict[str, object]:
    """Load a probed copy of ``page`` in the browser; the probe's record of it."""
    probed = tmp_path / f"probed-{page.name}"
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _run_browser(browser, tmp_path, "--dump-dom", probed.as_uri())
    found = PROBE_OUT.search(done.stdout)
    assert done.returncode == 0 and found, (
        f"browser exit {done.returncode}, no probe output; stdout ends {done.stdout[-500:]!r}; "
        f"stderr ends {done.stderr[-2000:]!r}")
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def _broken_images(page: Path, state: dict[str, object]) -> list[str]:
    """Why each image of ``page`` did not load as its PNG (empty: all loaded)."""
    expected = IMG.findall(page.read_text(encoding="utf-8"))
    images = state["images"]
    assert isinstance(images, list)
    if len(images) != len(expected):
        return [f"{len(images)} images in the DOM, {len(expected)} in the page"]
    bad = []
    for i, (img, b64) in enumerate(zip(images, expected)):
        try:
            size = _png_size(b64)
        except ValueError as exc:  # not even a PNG
            size = (-1, -1)
            bad.append(f"image {i}: not a PNG ({exc})")
        if (not img["complete"] or img["lastRow"] != 1.0
                or (img["width"], img["height"]) != size):
            bad.append(f"image {i}: complete={img['complete']}, decoded to "
                       f"{img['width']}x{img['height']} (PNG {size[0]}x{size[1]}), last row "
                       f"{100 * float(img['lastRow']):.0f}% painted")
    return bad


def test_report_loads_in_browser(browser: str, checked: tuple[CheckResult, Path],
                                 tmp_path: Path) -> None:
    page = checked[1]
    state = _probe(browser, page, tmp_path)
    assert state["ready"] == "complete"
    assert str(state["title"]).startswith("ntkscope check: relu")
    assert len(state["images"]) == 3  # type: ignore[arg-type]  # phase diagram, R, training
    assert _broken_images(page, state) == []


def test_broken_image_is_detected(browser: str, checked: tuple[CheckResult, Path],
                                  tmp_path: Path) -> None:
    """The check can fail: the second figure's PNG cut short, the third's bytes garbage."""
    text = checked[1].read_text(encoding="utf-8")
    payloads = IMG.findall(text)
    truncated = base64.b64encode(base64.b64decode(payloads[1])[:200]).decode("ascii")
    garbage = base64.b64encode(b"not a png at all" * 20).decode("ascii")
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace(payloads[1], truncated).replace(payloads[2], garbage),
                      encoding="utf-8")
    problems = _broken_images(broken, _probe(browser, broken, tmp_path))
    assert [p.split(":")[0] for p in problems] == ["image 1", "image 2", "image 2"], problems


def test_report_screenshot(browser: str, checked: tuple[CheckResult, Path],
                           tmp_path: Path) -> None:
    """A screenshot of the page is a non-blank PNG of the window's size."""
    from PIL import Image  # matplotlib's own dependency

    shot = tmp_path / "report.png"
    done = _run_browser(browser, tmp_path, "--window-size=1000,3200", f"--screenshot={shot}",
                        checked[1].as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1000, 3200)
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100  # text and figures, not an empty page


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")
