"""The HTML report of ``ntkscope check``: one self-contained page, written atomically.

The page holds the verdict with its reasons, a table of every measured number next to its
threshold, and up to three figures embedded as base64 PNG (no external resources):

1. the network's place in the phase diagram: ``log10 chi1^L`` over ``(sw2, L)`` from mean-field
   theory (``chi1`` at the fixed point ``q*``; the growth or decay of gradients through ``L``
   layers, exact for ReLU, the asymptotic rate otherwise), the EOC dashed, a star at the
   network's ``(sw2, L)``;
2. ``R`` against depth at the network's width (when the check measured the curve), with the
   randomness thresholds and, for ReLU, Hanin & Nica's ``exp(5 L/M)``; open markers where
   ``R`` is only a lower bound (too few effective draws of its heavy tail, no interval);
3. the short training run: loss curve and relative NTK change with the change thresholds.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import Formatter, Locator, LogLocator, MaxNLocator, NullFormatter

from ntkscope.check import CheckResult
from ntkscope.defaults import MIN_ESS
from ntkscope.io import atomic_open, check_output_file
from ntkscope.plotting import phase_heatmap, plt
from ntkscope.statistics import format_ratio
from ntkscope.theory import chi1_fixed_point
from ntkscope.verdict import (
    BORDERLINE,
    FAIL,
    INCONCLUSIVE,
    NO,
    PASS,
    THEORY_EXPONENT,
    YES,
    kappa_cut,
)

__all__ = ["phase_diagram", "render_html", "write_report"]

_COLORS = {YES: "#1b7837", BORDERLINE: "#b35806", NO: "#b2182b",
           PASS: "#1b7837", FAIL: "#b2182b", INCONCLUSIVE: "#b35806"}
_SW2_POINTS = 60
_DEPTH_POINTS = 50


def _png(fig: plt.Figure) -> str:
    """The figure as a base64 PNG (closes it)."""
    buf = io.BytesIO()
    with np.errstate(over="ignore", under="ignore"):  # autoscaling near 1e±308 (_LogTicks)
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_MOST_TICKS = 6  # labels on a log axis, at most
_PLAIN = (1e-3, 1e5)  # |v| in this range is labelled as a plain number, else as m x 10^k


class _LogTicks(Locator):
    """Major ticks of a log axis that stay readable for any positive range.

    With ``s = log10(vmax/vmin)`` decades in view: ``s < 1``, round linear steps
    (:class:`~matplotlib.ticker.MaxNLocator`, steps 1, 2, 2.5, 5 x 10^k, at most ``n`` ticks);
    ``1 <= s < 2``, the values ``{1, 2, 5} x 10^k``; otherwise powers of ten with round
    exponents, at most ``n`` of them (``n = _MOST_TICKS``; 1e-300 .. 1e300 gets 10^-200, 10^0,
    10^200). Any tick closer than ``s / (2 n)`` decades to the one kept below it is dropped,
    so neighbouring labels are at least ``1/(2n)`` of the axis apart (more than a label's height
    in the report's figures): they cannot overlap whatever the range. Decided at draw time
    from the view limits, so artists added later are covered too.
    """

    def __init__(self, most: int = _MOST_TICKS) -> None:
        self.most = most

    def __call__(self) -> np.ndarray:
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        lo, hi = sorted((float(vmin), float(vmax)))
        if not (lo > 0.0 and math.isfinite(hi) and hi > lo):
            return np.array([])
        span = math.log10(hi) - math.log10(lo)
        if span < 1.0:
            ticks = self._round(lo, hi, integer=False)
        elif span < 2.0:
            ticks = LogLocator(10.0, subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        else:
            exponents = self._round(math.log10(lo), math.log10(hi), integer=True)
            ticks = 10.0 ** exponents[(exponents >= -307) & (exponents <= 308)]
        ticks = ticks[(ticks >= lo * (1 - 1e-12)) & (ticks <= hi * (1 + 1e-12))]
        kept: list[float] = []
        for t in ticks:
            if not kept or math.log10(t) - math.log10(kept[-1]) >= span / (2 * self.most):
                kept.append(float(t))
        return np.array(kept)

    def _round(self, lo: float, hi: float, integer: bool) -> np.ndarray:
        """The most round values (1, 2, 2.5, 5 x 10^k steps) in ``[lo, hi]``, at most
        ``self.most`` of them."""
        for bins in range(self.most + 2, 0, -1):
            ticks = MaxNLocator(bins, integer=integer, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
            ticks = ticks[(ticks >= lo - 1e-12 * abs(lo)) & (ticks <= hi + 1e-12 * abs(hi))]
            if len(ticks) <= self.most:
                return ticks
        return ticks

    def _log(self) -> LogLocator:
        loc = LogLocator()
        loc.set_axis(self.axis)
        return loc

    def nonsingular(self, vmin: float, vmax: float) -> tuple[float, float]:
        return self._log().nonsingular(vmin, vmax)

    def view_limits(self, vmin: float, vmax: float) -> tuple[float, float]:
        """matplotlib's limits, kept inside the positive floats: its margin of 5% of the
        decades in view overflows to ``inf`` (or ``0``) for data near 1e308 (or 1e-308)."""
        tiny, big = float(np.finfo(float).tiny), float(np.finfo(float).max)
        lo, hi = (float(np.clip(np.nan_to_num(v, nan=tiny, posinf=big), tiny, big))
                  for v in sorted((vmin, vmax)))
        return self._log().view_limits(lo, hi)


class _LogLabels(Formatter):
    """Labels for :class:`_LogTicks`: the fewest decimals that show every tick exactly.

    Plain numbers (``1.005``, ``200``) when every tick in view has ``1e-3 <= v < 1e5``, else
    all ticks as ``m x 10^k`` in mathtext (``10^{300}``, ``2.5 x 10^{-7}``, ``10^0``); distinct
    ticks get distinct labels.
    """

    @staticmethod
    def _parts(v: float, sci: bool) -> tuple[float, int | None]:
        """``(v, None)`` when shown plain, else ``v``'s decimal mantissa and exponent."""
        if not sci:
            return v, None
        mantissa, exponent = f"{v:.14e}".split("e")  # exact where 10.0 ** k is not
        return float(mantissa), int(exponent)

    @classmethod
    def _text(cls, v: float, decimals: int, sci: bool) -> str:
        m, k = cls._parts(v, sci)
        digits = f"{m:.{decimals}f}"
        if decimals:
            digits = digits.rstrip("0").rstrip(".")
        if k is None:
            return digits
        return f"$10^{{{k}}}$" if digits == "1" else f"${digits}\\times10^{{{k}}}$"

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        ok = [float(v) for v in values if math.isfinite(v) and v > 0]
        sci = any(not _PLAIN[0] <= v < _PLAIN[1] for v in ok)
        mantissas = [self._parts(v, sci)[0] for v in ok]
        decimals = max((next((d for d in range(16) if abs(round(m, d) - m) <= 1e-9 * m), 15)
                        for m in mantissas), default=0)  # each tick to 1e-9 relative
        while decimals < 15 and len({self._text(v, decimals, sci) for v in ok}) < len(set(ok)):
            decimals += 1  # distinct ticks, distinct labels
        return [self._text(float(v), decimals, sci) if math.isfinite(v) and v > 0 else ""
                for v in values]

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.format_ticks([x])[0]


def _log_yaxis(ax: Axes) -> None:
    """Log scale on ``ax``'s y axis with :class:`_LogTicks` / :class:`_LogLabels` (no labels
    on the minor ticks: they overlapped on the report's ``R`` plot)."""
    with np.errstate(over="ignore", under="ignore"):  # see _LogTicks.view_limits
        ax.set_yscale("log")  # autoscales at once, with matplotlib's LogLocator
    ax.yaxis.set_major_locator(_LogTicks())
    ax.yaxis.set_major_formatter(_LogLabels())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.autoscale(axis="y")  # again, at draw time, with _LogTicks' limits


def phase_diagram(res: CheckResult) -> plt.Figure:
    """Heatmap of ``log10 chi1^L`` over ``(sw2, L)`` with the EOC and the network marked."""
    e = res.evidence
    top = max(2.0 * (e.sigma_w2_eoc or 2.0), 1.25 * e.sigma_w2)
    sw2 = np.linspace(top / 20.0, top, _SW2_POINTS)
    max_depth = max(50, math.ceil(1.25 * e.depth))
    depths = np.unique(np.round(np.linspace(1, max_depth, _DEPTH_POINTS)).astype(int))
    chi, _ = chi1_fixed_point(e.activation, sw2, e.sigma_b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = depths[:, None] * np.log10(np.asarray(chi, dtype=float))[None, :]
    finite = values[np.isfinite(values)]
    span = float(np.clip(np.max(np.abs(finite)) if finite.size else 1.0, 1.0, 12.0))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    mesh = phase_heatmap(ax, sw2, depths, values, norm=TwoSlopeNorm(0.0, -span, span),
                         cmap="RdBu_r", sw2_eoc=e.sigma_w2_eoc,
                         title=f"{e.activation}, $\\sigma_b^2$ = {e.sigma_b2:g}: mean-field "
                         "phase diagram")
    ax.plot([e.sigma_w2], [e.depth], marker="*", ms=16, color="gold", mec="black",
            label=f"this network ({e.sigma_w2:g}, L={e.depth})", ls="none")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.colorbar(mesh, ax=ax, label="$\\log_{10} \\chi_1^L$ (ordered < 0 < chaotic)")
    return fig


def _ratio_figure(res: CheckResult) -> plt.Figure:
    e, t = res.evidence, res.thresholds
    d = np.array([p.depth for p in res.curve], dtype=float)
    r = np.array([p.ratio for p in res.curve])
    bound = np.array([p.ratio_is_lower_bound for p in res.curve], dtype=bool)
    lo = np.array([r[i] if p.ratio_ci is None else p.ratio_ci[0] for i, p in enumerate(res.curve)])
    hi = np.array([r[i] if p.ratio_ci is None else p.ratio_ci[1] for i, p in enumerate(res.curve)])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(d, r, "-", color="C0", lw=1)
    ax.errorbar(d[~bound], r[~bound], yerr=[r[~bound] - lo[~bound], hi[~bound] - r[~bound]],
                fmt="o", color="C0", capsize=3, label=f"R, M = {e.width} (95% CI)")
    if bound.any():
        ax.plot(d[bound], r[bound], "o", mfc="white", mec="C0", ls="none",
                label=f"R >= (lower bound: ESS < {MIN_ESS:g}, heavy tail)")
    ax.plot([e.depth], [e.ratio], marker="*", ms=16, color="gold", mec="black", ls="none",
            label=f"this network ({res.variance.inits} inits"
            + (", lower bound)" if e.ratio_is_lower_bound else ")"))
    if e.hanin_nica is not None:
        grid = np.linspace(1, d.max(), 100)
        ax.plot(grid, np.exp(5.0 * grid / e.width), color="0.4", ls=":",
                label="Hanin & Nica exp(5L/M)")
    ax.axhline(t.ratio_deterministic, color=_COLORS[PASS], ls="--", lw=1,
               label=f"deterministic below {t.ratio_deterministic:g}")
    ax.axhline(t.ratio_random, color=_COLORS[FAIL], ls="--", lw=1,
               label=f"random above {t.ratio_random:g}")
    _log_yaxis(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # depths
    ax.set_xlabel("depth $L$")
    ax.set_ylabel("$R = E[\\Theta_0^2]/E[\\Theta_0]^2$")
    ax.set_title("NTK randomness at initialization (low-rank sampler)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def _training_figure(res: Any) -> plt.Figure:
    """The loss curve of the run and its NTK change (both kinds of check)."""
    t, e = res.thresholds, res.evidence
    loss_steps, losses = res.loss_curve()
    steps, change = res.change_points()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    good = np.isfinite(losses) & (losses > 0)
    ax.plot(loss_steps[good], losses[good], color="C0", lw=1.3, label="training loss")
    _log_yaxis(ax)
    ax.set_xlabel("gradient descent step")
    ax.set_ylabel("loss", color="C0")
    ax2 = ax.twinx()
    ax2.plot(steps, change, "s-", color="C3", label="NTK change")
    ax2.axhline(t.change_small, color=_COLORS[PASS], ls="--", lw=1)
    ax2.axhline(t.change_large, color=_COLORS[FAIL], ls="--", lw=1)
    ax2.set_ylim(0, max(1.1 * max(change), 1.2 * t.change_large))
    ax2.set_ylabel("$|\\Theta_t - \\Theta_0|_F / |\\Theta_0|_F$", color="C3")
    rate = f"{e.lr_scale:g} lr_max" if e.lr_scale is not None else f"{res.training.lr:.3g}"
    ax.set_title(f"{e.steps} steps at lr = {rate} ({e.stop_reason})", fontsize=10)
    return fig


def _cell(text: object, outcome: str | None = None) -> str:
    style = f' style="color:{_COLORS[outcome]};font-weight:bold"' if outcome else ""
    return f"<td{style}>{html.escape(str(text))}</td>"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _rows(res: Any) -> list[tuple[str, str, str, str | None, str]]:
    """``(quantity, value, threshold, outcome, outcome text)`` for the table (the theory rows
    for an ntkscope MLP only)."""
    e, t, v = res.evidence, res.thresholds, res.verdict
    rows: list[tuple[str, str, str, str | None, str]] = []
    if e.is_mlp:
        cut = kappa_cut(e.samples, t)
        ill = e.kappa_ratio < cut
        rows += [
            ("phase, chi1 at q*", f"{e.phase}, {_fmt(e.chi1)}", "ordered < 1 < chaotic", None,
             ""),
            ("sigma_w2 vs edge of chaos", f"{e.sigma_w2:g} vs {_fmt(e.sigma_w2_eoc)}",
             "sw2_EOC(sb2)", None, ""),
            ("kappa1/kappa2 (theory, c0 = " + _fmt(res.c0_mean, 3) + ")",
             _fmt(e.kappa_ratio, 5), f"ill-conditioned below {cut:.5g}", FAIL if ill else None,
             "ill-conditioned" if ill else "well-conditioned"),
        ]
    else:
        rows.append(("theory", "not applicable (not an ntkscope MLP)", "", None, ""))
    rows += [
        ("R = E[Θ0²]/E[Θ0]²", format_ratio(e.ratio, e.ratio_ci, e.ess or 0.0, e.inits or 0),
         f"pass: CI ≤ {t.ratio_deterministic:g}; fail: R ≥ {t.ratio_random:g}",
         v.criteria["randomness"], v.criteria["randomness"]),
    ]
    if e.hanin_nica is not None:
        rows.append(("Hanin & Nica exp(5L/M)", _fmt(e.hanin_nica), "ReLU (2, 0) law", None, ""))
    where = (f"loss at {e.loss_fraction:g} L0, {e.steps} steps" if e.reached_fraction
             else f"{e.steps} steps, {e.stop_reason}")
    rows.append((f"NTK change ({where})", _fmt(e.ntk_change),
                 f"pass ≤ {t.change_small:g}; fail ≥ {t.change_large:g} unless it falls with "
                 "width", v.criteria["change"], v.criteria["change"]))
    w = e.width_change
    if w is not None:
        rows.append((f"NTK change at width {w.widths[1]} ({w.steps[1]} steps, "
                     f"{w.stop_reasons[1]})", _fmt(w.changes[1]), "same protocol", None, ""))
        rows.append(("change ~ width^exponent", _fmt(w.exponent, 3),
                     f"theory {THEORY_EXPONENT:g}; falls if ≤ {t.exponent_falls:g}", None,
                     "" if w.comparable else "not comparable"))
    rows += [
        ("min loss / initial loss", _fmt(e.loss_drop), "(information)", None, ""),
        ("min loss / constant-predictor loss", _fmt(e.unexplained),
         f"trainable ≤ {t.unexplained_trainable:g}", PASS if v.trainable else FAIL,
         "trainable" if v.trainable else "untrainable"),
    ]
    return rows


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:960px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
.verdict{border-left:8px solid;padding:.6em 1em;background:#f7f7f7;margin:1em 0}
.verdict b{font-size:1.4em}
table{border-collapse:collapse;width:100%;font-size:.92em}
td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
figure{margin:1.2em 0} img{max-width:100%} figcaption{font-size:.88em;color:#555}
.small{font-size:.85em;color:#555}
"""


def render_html(res: Any) -> str:
    """The complete page (figures embedded) as a string: of a :class:`CheckResult` (MLP) or
    a :class:`ntkscope.model_check.ModelCheckResult` (no phase diagram, no ``R`` curve)."""
    e, v = res.evidence, res.verdict
    esc = html.escape
    if e.is_mlp:
        title = (f"{e.activation}, σw² = {e.sigma_w2:g}, σb² = {e.sigma_b2:g}, L = {e.depth}, "
                 f"M = {e.width}")
        inits = res.variance.inits
    else:
        title = res.heading()
        inits = res.randomness.inits
    rate = f"{e.lr_scale:g} lr_max" if e.lr_scale is not None else f"lr {res.training.lr:.3g}"
    frac = ("" if e.loss_fraction is None
            else f" until the loss fell to {e.loss_fraction:g} of its initial value,")
    color = _COLORS[v.ntk_regime]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ntkscope check: {esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ntkscope check: is this network in the NTK regime?</h1>",
        f"<p>{esc(title)}; {esc(res.dataset)}, S = {e.samples} samples, "
        f"{inits} initializations, training{esc(frac)} at most {e.train_steps} steps at "
        f"{esc(rate)}, seed {res.seed}.</p>",
        f'<div class="verdict" style="border-color:{color}">',
        f'<b style="color:{color}">ntk_regime: {esc(v.ntk_regime)}</b>'
        f" &nbsp; (trainable: {'yes' if v.trainable else 'no'})",
        f"<p>{esc(v.reasons[0])}</p></div>",
        "<h2>Reasons</h2><ul>",
        *(f"<li>{esc(r)}</li>" for r in v.reasons[1:]),
        "</ul><h2>Numbers and thresholds</h2>",
        "<table><tr><th>quantity</th><th>value</th><th>threshold</th><th>outcome</th></tr>",
    ]
    for name, value, threshold, outcome, text in _rows(res):
        parts.append(f"<tr>{_cell(name)}{_cell(value)}{_cell(threshold)}"
                     f"{_cell(text, outcome)}</tr>")
    parts.append("</table>")
    figures = [] if not e.is_mlp else [(
        phase_diagram(res), "Where the network sits: mean-field theory (Section 2). "
        "Blue: ordered phase (gradients vanish, NTK close to deterministic at any depth, "
        "deep networks untrainable); red: chaotic phase (NTK random and changing when "
        "L/M is not small). Dashed: the edge of chaos.")]
    if res.curve:
        figures.append((_ratio_figure(res), "R against depth at this width (fewer "
                        "initializations than the check itself away from its depth)."))
    figures.append((_training_figure(res), "The training run: loss (left axis) and "
                    "relative NTK change (right axis) with the pass and fail thresholds."))
    parts.append("<h2>Figures</h2>")
    for fig, caption in figures:
        parts.append(f'<figure><img src="data:image/png;base64,{_png(fig)}" '
                     f'alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>')
    secs = ", ".join(f"{k} {s:.1f} s" for k, s in res.seconds.items())
    parts.append(f'<p class="small">Data: {esc(res.data_source)}. Time: {esc(secs)}. '
                 "Thresholds and their justification: docs/check.md of ntkscope.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(res: Any, path: str | os.PathLike[str]) -> Path:
    """Render the page and write it atomically (whole or not at all)."""
    target = check_output_file(path, "html")
    page = render_html(res).encode("utf-8")
    with atomic_open(target, "wb") as fh:
        fh.write(page)
    return target
