"""Is this network in the NTK regime? One verdict from theory, sampling and a short training run.

NTK theory makes two statements about a finite network (paper Section 1, eqs. 3-4): its kernel
``Theta0`` is (nearly) deterministic at initialization, and it stays (nearly) constant during
gradient descent. :func:`check_network` tests both for one network (a
:class:`ntkscope.NetworkSpec`) and places it in the mean-field phase diagram:

* **theory** (:mod:`ntkscope.theory`): ``chi1`` at the fixed point ``q*`` and the phase,
  ``sw2_EOC(sb2)``, and the conditioning ``kappa1/kappa2`` (Lemma 5.2) at the mean input
  covariance of the training samples;
* **randomness at initialization** (Section 3): ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` with
  its 95% bootstrap interval from the exact low-rank sampler
  (:func:`ntkscope.sampling.ntk_variance`), Hanin & Nica's ``exp(5 L/M)`` for ReLU;
* **change during training** (Section 4): ``|Theta_t - Theta_0|_F / |Theta_0|_F`` when the
  loss of a full-batch gradient descent run at ``lr_scale * lr_max`` has fallen to
  ``loss_fraction`` of its initial value, or at the step budget
  (:func:`ntkscope.training.train`), at the network's width and at a second width
  (:func:`second_width`), with the exponent ``log(c2/c1)/log(M2/M1)`` NTK theory predicts near
  ``-1/2`` (Lee et al. 2019);
* **trainability**: how much of the targets' variance the run explained.

:func:`ntkscope.verdict.judge` turns the numbers into ``ntk_regime`` = ``yes`` /
``borderline`` / ``no`` with the reasons; the thresholds
(:class:`ntkscope.verdict.Thresholds`) and why they are where they are: ``docs/check.md``.
This module runs the parts and collects them in a :class:`CheckResult`, which renders itself
(JSON, title, rows, reasons).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkscope.datasets import dataset_name, load_dataset
from ntkscope.defaults import CHECK_LOSS_FRACTION, CHECK_STEPS, INPUT_DIM, MIN_ESS, SNAPSHOTS
from ntkscope.rendering import fmt
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.statistics import format_ess
from ntkscope.theory import chi1_fixed_point, data_covariances, eoc, phase_of, propagate
from ntkscope.validation import NtkscopeInputError, positive, positive_int
from ntkscope.verdict import (
    THEORY_EXPONENT,
    THRESHOLDS,
    Evidence,
    Thresholds,
    Verdict,
    WidthChange,
    judge,
    kappa_cut,
    theory_condition,
)

if TYPE_CHECKING:  # torch-backed modules are imported when a check runs
    from ntkscope.sampling import NTKVarianceResult
    from ntkscope.training import TrainResult

__all__ = [
    "LOSS_FRACTION",
    "STEPS",
    "CheckResult",
    "CurvePoint",
    "change_rows",
    "check_network",
    "curve_depths",
    "ratio_by_depth",
    "reasons_footer",
    "second_width",
    "verdict_rows",
]

#: The check's default: the change is measured when the loss has fallen to this fraction of
#: its initial value (docs/check.md: why 0.01).
LOSS_FRACTION = CHECK_LOSS_FRACTION
#: The check's default step budget of each training run.
STEPS = CHECK_STEPS
#: :func:`second_width` widens by 4 while ``depth * (4 M)^2`` stays below this (the cost of a
#: step grows like ``L M^2``), else narrows by 4.
WIDE_BUDGET = 1 << 22

# ---------------------------------------------------------------------------------------------
# Running a check


@dataclass(frozen=True)
class CurvePoint:
    """``R`` at one depth (the report's curve): ``inits`` draws, 95% interval; only
    ``R >= ratio`` (``ratio_ci`` ``None``) where ``ratio_is_lower_bound``."""

    depth: int
    ratio: float
    ratio_ci: tuple[float, float] | None
    inits: int
    ess: float
    ratio_is_lower_bound: bool

    @classmethod
    def of(cls, res: NTKVarianceResult) -> CurvePoint:
        """The point of one :func:`ntkscope.sampling.ntk_variance` result."""
        ci = None if res.ratio_ci is None else (float(res.ratio_ci[0]), float(res.ratio_ci[1]))
        return cls(res.depth, res.ratio, ci, res.inits, res.ess, res.ratio_is_lower_bound)


@dataclass
class CheckResult:
    """Everything ``ntkscope check`` reports.

    Attributes:
        evidence: the numbers the verdict reads (:class:`Evidence`).
        verdict: :class:`Verdict`.
        q_star, kappa1, kappa2, c0_mean: theory at the mean input covariance ``c0_mean`` of
            the samples (``kappa_ratio = kappa1/kappa2``).
        variance: the full :class:`~ntkscope.sampling.NTKVarianceResult`.
        training: the :class:`~ntkscope.training.TrainResult` of the run.
        dataset, data_source, data_note: which samples were used.
        thresholds: the :class:`Thresholds` applied.
        curve: ``R`` against depth (only when asked for, for the HTML report).
        seconds: wall time per part (``theory``, ``variance``, ``training``,
            ``second_width``, ``curve``, ``total``).
        second: the :class:`~ntkscope.training.TrainResult` at the second width (``None``
            without a width comparison).
    """

    evidence: Evidence
    verdict: Verdict
    q_star: float | None
    kappa1: float
    kappa2: float
    c0_mean: float
    variance: NTKVarianceResult
    training: TrainResult
    dataset: str
    data_source: str
    data_note: str | None
    seed: int
    thresholds: Thresholds
    curve: list[CurvePoint] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    second: TrainResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``ntkscope check --json`` object (non-finite numbers become ``None``)."""
        e, v, tr = self.evidence, self.verdict, self.training
        return {
            "phase": e.phase,
            "chi1": _num(e.chi1),
            "sigma_w2_eoc": e.sigma_w2_eoc,
            "kappa_ratio": _num(e.kappa_ratio),
            "ratio": e.ratio,
            "ratio_ci": None if e.ratio_ci is None else list(e.ratio_ci),
            "ntk_change": e.ntk_change,
            "loss_drop": _num(e.loss_drop),
            "ntk_regime": v.ntk_regime,
            "reasons": list(v.reasons),
            "trainable": v.trainable,
            "criteria": dict(v.criteria),
            "q_star": self.q_star,
            "kappa1": _num(self.kappa1),
            "kappa2": _num(self.kappa2),
            "c0_mean": self.c0_mean,
            "condition_number": _num(theory_condition(e.kappa_ratio, e.samples)),
            "hanin_nica": e.hanin_nica,
            "ess": e.ess,
            "ratio_is_lower_bound": e.ratio_is_lower_bound,
            "ratio_std_over_mean": math.sqrt(max(e.ratio - 1.0, 0.0)),
            "ntk_change_steps": {str(k): _num(x) for k, x in tr.ntk_change.items()},
            "unexplained": _num(e.unexplained),
            "initial_loss": _num(tr.initial_loss),
            "min_loss": _num(tr.min_loss),
            "final_loss": _num(tr.final_loss),
            "steps": tr.steps,
            "stop_reason": tr.stop_reason,
            "lr": tr.lr,
            "lr_max": tr.lr_max,
            "loss_fraction": e.loss_fraction,
            "steps_to_fraction": tr.steps if e.reached_fraction else None,
            "width_change": None if e.width_change is None else e.width_change.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "settings": {
                "activation": e.activation, "sigma_w2": e.sigma_w2, "sigma_b2": e.sigma_b2,
                "depth": e.depth, "width": e.width, "input_dim": INPUT_DIM,
                "dataset": self.dataset, "samples": e.samples, "inits": self.variance.inits,
                "steps": e.train_steps, "train_steps": e.train_steps,
                "loss_fraction": e.loss_fraction,
                "second_width": None if e.width_change is None else e.width_change.widths[1],
                "lr_scale": e.lr_scale, "seed": self.seed, "data_source": self.data_source,
            },
            "r_by_depth": [{"depth": p.depth, "ratio": p.ratio,
                            "ratio_ci": None if p.ratio_ci is None else list(p.ratio_ci),
                            "inits": p.inits, "ess": p.ess,
                            "ratio_is_lower_bound": p.ratio_is_lower_bound}
                           for p in self.curve],
            "seconds": dict(self.seconds),
        }


    def title(self) -> str:
        """``ntkscope check: relu, sw2=2, sb2=0, L=20, M=100, mnist, S=128, inits=1000, ...``."""
        e = self.evidence
        frac = "" if e.loss_fraction is None else f", to {e.loss_fraction:g} L0"
        return (f"ntkscope check: {e.activation}, sw2={e.sigma_w2:g}, sb2={e.sigma_b2:g}, "
                f"L={e.depth}, M={e.width}, {self.dataset}, S={e.samples}, "
                f"inits={self.variance.inits}, lr={e.lr_scale:g} lr_max{frac}")

    def rows(self) -> list[tuple[str, Any, str]]:
        """``(quantity, value, threshold / outcome)`` rows of the command's table."""
        e, v, t = self.evidence, self.verdict, self.thresholds
        rows: list[tuple[str, Any, str]] = [
            ("phase", e.phase, "chi1 < 1 ordered, > 1 chaotic"),
            ("chi1", fmt(e.chi1), "1"),
            ("sigma_w2_eoc", fmt(e.sigma_w2_eoc), f"sigma_w2 = {e.sigma_w2:g}"),
            ("kappa1/kappa2", fmt(e.kappa_ratio),
             f"nearly degenerate below {kappa_cut(e.samples, t):.5g} "
             f"(condition ~{theory_condition(e.kappa_ratio, e.samples):.3g})"),
            ("R = E[Theta0^2]/E[Theta0]^2",
             fmt(e.ratio) if e.ratio_ci is not None else f"R >= {e.ratio:.6g}",
             f"pass if CI <= {t.ratio_deterministic:g}, fail if >= {t.ratio_random:g}: "
             f"{v.criteria['randomness']}"),
            ("95% CI of R", "none: R is a lower bound (heavy tail)" if e.ratio_ci is None
             else f"[{e.ratio_ci[0]:.6g}, {e.ratio_ci[1]:.6g}]", ""),
            ("ESS of Theta0^2 weights", format_ess(self.variance.ess, self.variance.inits),
             f"R is a lower bound below {MIN_ESS:g}"),
        ]
        if e.hanin_nica is not None:
            rows.append(("Hanin & Nica exp(5L/M)", fmt(e.hanin_nica), "ReLU (2, 0) law"))
        return rows + change_rows(e, t, v) + verdict_rows(e, t, v, self.seconds["total"])

    def footer(self) -> list[str]:
        """The reasons, most important first."""
        return reasons_footer(self.verdict)

    def loss_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, losses)`` of the run at the width (the report's figure)."""
        return self.training.loss_steps, self.training.losses

    def change_points(self) -> tuple[list[int], list[float]]:
        """``(steps, changes)``: 0 at step 0, the snapshots and the final change."""
        tr = self.training
        steps, change = [0, *tr.ntk_change], [0.0, *tr.ntk_change.values()]
        if tr.final_ntk_change is not None and tr.steps not in tr.ntk_change:
            steps.append(tr.steps)
            change.append(tr.final_ntk_change)
        return steps, change


def change_rows(e: Evidence, t: Thresholds, v: Verdict) -> list[tuple[str, Any, str]]:
    """The rows of the change criterion (the MLP and the model check share them): the change
    at the loss fraction and, with a width comparison, at the second width and the
    exponent."""
    where = (f"loss at {e.loss_fraction:g} L0, {e.steps} steps" if e.reached_fraction
             else f"{e.steps} steps, {e.stop_reason}")
    label = "M=" if e.is_mlp else "width "
    width = "" if e.width is None else f"{label}{e.width}, "
    rows: list[tuple[str, Any, str]] = [
        (f"NTK change ({width}{where})", fmt(e.ntk_change),
         f"pass if <= {t.change_small:g}, fail if >= {t.change_large:g} unless it falls with "
         f"width: {v.criteria['change']}"),
    ]
    w = e.width_change
    if w is not None:
        reason = "" if w.stop_reasons[1] == "loss_fraction" else f", {w.stop_reasons[1]}"
        rows.append((f"NTK change ({label}{w.widths[1]}, {w.steps[1]} steps{reason})",
                     fmt(w.changes[1]), "same protocol at the second width"))
        rows.append(("change ~ width^exponent",
                     "-" if w.exponent is None else f"{w.exponent:.3f}",
                     f"theory {THEORY_EXPONENT:g}; falls like theory if <= "
                     f"{t.exponent_falls:g}" + ("" if w.comparable
                                                 else " (not comparable: a run did not "
                                                 "reach the fraction)")))
    return rows


def verdict_rows(e: Evidence, t: Thresholds, v: Verdict, seconds: float
                 ) -> list[tuple[str, Any, str]]:
    """The closing rows both checks print: trainability, the regime, the time."""
    return [
        ("min loss / initial loss", fmt(e.loss_drop), ""),
        ("min loss / constant loss", fmt(e.unexplained),
         f"trainable if <= {t.unexplained_trainable:g}: {'yes' if v.trainable else 'no'}"),
        ("ntk_regime", v.ntk_regime, ""),
        ("seconds", f"{seconds:.1f}", ""),
    ]


def reasons_footer(v: Verdict) -> list[str]:
    """The lines under both checks' tables: the reasons, most important first."""
    return ["reasons:", *(f"  - {r}" for r in v.reasons)]


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _optional(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) else f


def curve_depths(depth: int) -> list[int]:
    """Depths of the report's ``R`` curve: ``1`` and ``L/4 .. 2L`` around the user's ``L``."""
    return sorted({1, *(max(1, round(depth * f)) for f in (0.25, 0.5, 1.0, 1.5, 2.0))})


def ratio_by_depth(
    net: NetworkSpec | Any,
    depths: Sequence[int],
    inits: int = 200,
    seed: int = 0,
    device: str = "cpu",
) -> list[CurvePoint]:
    """``R`` at each depth from ``inits`` draws of the low-rank sampler (seed ``seed``).

    ``net`` (a :class:`ntkscope.NetworkSpec` or an MLP) gives the activation, ``sw2``,
    ``sb2`` and the constant width ``M``; its depth is replaced by each of ``depths``; input
    dimension :data:`INPUT_DIM` where the spec leaves it open.

    Raises:
        NtkscopeInputError: a spec with varying widths, or a bad depth.
    """
    from ntkscope.sampling import ntk_variance

    spec = as_spec(net)
    width = spec.constant_width
    if width is None:
        raise NtkscopeInputError(f"width: ratio_by_depth needs a constant width, got "
                                 f"{list(spec.width)}")
    out = []
    for d in depths:
        at = NetworkSpec(spec.activation, spec.sigma_w2, spec.sigma_b2, d, width,
                         spec.resolved_input_dim(INPUT_DIM))
        out.append(CurvePoint.of(ntk_variance(at, inits=inits, seed=seed, device=device)))
    return out


def second_width(width: int, depth: int) -> int:
    """The second width of the check's width comparison: ``4 M`` while ``L (4 M)^2 <=``
    :data:`WIDE_BUDGET` (``2^22``: e.g. ``L = 4`` at ``4 M = 1024``, ``L = 64`` at 256), else
    ``M // 4`` (at least 1): a factor of 4 either way, wider where a run stays affordable."""
    width = positive_int("width", width)
    depth = positive_int("depth", depth)
    if depth * (4 * width) ** 2 <= WIDE_BUDGET or width < 4:
        return 4 * width
    return width // 4


def _second_width(value: int | str | None, width: int, depth: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value != "auto":
            raise NtkscopeInputError(f"second_width: expected a width, 'auto' or None, got "
                                     f"{value!r}")
        return second_width(width, depth)
    w2 = positive_int("second_width", value)
    if w2 == width:
        raise NtkscopeInputError(f"second_width: must differ from the width {width}")
    return w2


def _steps(steps: int, train_steps: int | None) -> int:
    """``steps``, or its older name ``train_steps`` (the two must agree when both are given)."""
    if train_steps is None:
        return positive_int("steps", steps)
    train_steps = positive_int("train_steps", train_steps)
    if steps != STEPS and steps != train_steps:
        raise NtkscopeInputError(f"train_steps: the older name of steps; got steps={steps} and "
                                 f"train_steps={train_steps}")
    return train_steps


def check_network(
    net: NetworkSpec | Any,
    *,
    dataset: str = "mnist",
    samples: int = 128,
    inits: int = 1000,
    steps: int = STEPS,
    loss_fraction: float | None = LOSS_FRACTION,
    width2: int | str | None = "auto",
    lr_scale: float = 0.5,
    seed: int = 0,
    data_dir: str | None = None,
    threads: int | None = 1,
    device: str = "cpu",
    curve: bool = False,
    curve_inits: int = 200,
    thresholds: Thresholds = THRESHOLDS,
    train_steps: int | None = None,
) -> CheckResult:
    """Is the network in the NTK regime? Theory, ``R`` at initialization, training runs at two
    widths, a verdict.

    Args:
        net: the network, a :class:`ntkscope.NetworkSpec` or an :class:`ntkscope.MLP`
            (CONVENTIONS section 1) with a constant hidden width ``M``; its input dimension
            is 784 (the data sets' 28 x 28 images; the spec may leave it open).
        dataset, samples, data_dir: the training samples (:func:`ntkscope.datasets.load_dataset`
            with ``seed``; default targets).
        inits: initializations for ``R`` (:func:`ntkscope.sampling.ntk_variance`, low-rank
            sampler, seed ``seed``; at least 2).
        steps, loss_fraction, lr_scale: the run: full-batch gradient descent at ``lr =
            lr_scale * 2S / lambda_max(Theta_0)`` until the loss is at most ``loss_fraction``
            times its initial value, at most ``steps`` steps, with the paper's early stopping
            (patience 100, ``min_delta = 1e-7``); network 0 of seed ``seed``
            (:func:`ntkscope.training.train`). ``loss_fraction=None``: the budget alone.
            ``train_steps``: the older name of ``steps``.
        width2: the second width of the width comparison, trained by the same protocol:
            ``"auto"`` (:func:`second_width`: ``4 M``, or ``M/4`` where ``4 M`` is costly),
            a width, or ``None`` (no comparison).
        threads: torch CPU threads for the runs (``None``: unchanged).
        device: where the sampling and the runs compute (``cpu``, ``cuda``).
        curve: also measure ``R`` at the depths :func:`curve_depths` (``curve_inits`` draws
            each) for the HTML report.
        thresholds: the verdict's :class:`ntkscope.verdict.Thresholds`.

    Returns:
        a :class:`CheckResult`.

    Raises:
        NtkscopeInputError: bad input (not a network, varying widths, ``inits < 2``,
            ``steps < 1``, a loss fraction outside ``(0, 1)``, more samples than the data set
            has, ...), or values beyond the float64 range (extremely deep chaotic networks).
    """
    start = time.perf_counter()
    spec = as_spec(net).with_input_dim(INPUT_DIM)
    width = spec.constant_width
    if width is None:
        raise NtkscopeInputError(f"width: the check needs a constant hidden width, got "
                                 f"{list(spec.width)}")
    act, sw2, sb2, depth = spec.activation, spec.sigma_w2, spec.sigma_b2, spec.depth
    samples = positive_int("samples", samples, minimum=2)
    inits = positive_int("inits", inits, minimum=2)
    steps = _steps(steps, train_steps)
    lr_scale = float(positive("lr_scale", lr_scale))
    seed = positive_int("seed", seed, minimum=0)
    curve_inits = positive_int("curve_inits", curve_inits, minimum=2)
    w2 = _second_width(width2, width, depth)
    if threads is not None:
        threads = positive_int("threads", threads)
    from ntkscope.networks import check_device  # torch: the check needs it below anyway
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    device = str(check_device(device))
    stop = StoppingRule(max_steps=steps, loss_fraction=loss_fraction)
    if not isinstance(thresholds, Thresholds):
        raise NtkscopeInputError(f"thresholds: expected Thresholds, got {thresholds!r}")
    data = load_dataset(dataset_name(dataset), samples, seed, data_dir=data_dir)
    if data.X.shape[1] != INPUT_DIM:
        raise NtkscopeInputError(
            f"dataset: the MLP check takes {INPUT_DIM}-dimensional inputs (mnist, "
            f"fashion-mnist, gaussian); {data.name} has {data.X.shape[1]}: check a model on it "
            f"with --model FILE.py:FACTORY")
    baseline = float(np.mean((data.y - np.mean(data.y)) ** 2)) / 2.0
    if baseline <= 0:
        raise NtkscopeInputError("samples: all targets are equal; the check needs both classes")

    # Theory.
    clock = time.perf_counter()
    chi, q_star = chi1_fixed_point(act, sw2, sb2)
    chi1 = float(chi)
    sw2_eoc = _optional(eoc(act, sb2)[0])
    q0, c0, _, _ = data_covariances(data.X, max_pairs=samples * (samples - 1) // 2)
    c0_mean = float(np.mean(c0))
    with np.errstate(over="ignore", invalid="ignore"):
        mf = propagate(act, sw2, sb2, depth, width, input_dim=INPUT_DIM, q0=float(np.mean(q0)),
                       c0=c0_mean, keep_layers=False)
    kappa1, kappa2 = float(mf.kappa1), float(mf.kappa2)
    seconds = {"theory": time.perf_counter() - clock}

    # Randomness at initialization.
    from ntkscope.sampling import ntk_variance

    clock = time.perf_counter()
    var = ntk_variance(spec, inits=inits, seed=seed, device=device)
    seconds["variance"] = time.perf_counter() - clock

    # Training runs, at the width and at the second width.
    snapshots = tuple(s for s in SNAPSHOTS if s < steps)

    def run(at: NetworkSpec) -> TrainResult:
        return train(at.mlp(), data.X, data.y, batch=1, seed=seed,
                     rate=LearningRate(lr_scale=lr_scale), stop=stop,
                     record=Recording(snapshots),
                     execution=Execution(threads=threads, device=device)).results[0]

    clock = time.perf_counter()
    tr = run(spec)
    seconds["training"] = time.perf_counter() - clock
    wide: TrainResult | None = None
    widths: WidthChange | None = None
    if w2 is not None:
        clock = time.perf_counter()
        wide = run(NetworkSpec(act, sw2, sb2, depth, w2, INPUT_DIM))
        seconds["second_width"] = time.perf_counter() - clock
        widths = WidthChange.of((width, w2), (tr.final_ntk_change, wide.final_ntk_change),
                                (tr.steps, wide.steps), (tr.stop_reason, wide.stop_reason))

    points: list[CurvePoint] = []
    if curve:
        clock = time.perf_counter()
        others = [d for d in curve_depths(depth) if d != depth]
        points = ratio_by_depth(spec, others, curve_inits, seed, device)
        points.append(CurvePoint.of(var))
        points.sort(key=lambda p: p.depth)
        seconds["curve"] = time.perf_counter() - clock

    evidence = Evidence(
        activation=act.name, sigma_w2=sw2, sigma_b2=sb2, depth=depth, width=width,
        samples=samples, train_steps=steps, lr_scale=lr_scale,
        loss_fraction=stop.loss_fraction, width_change=widths,
        phase=str(phase_of(chi1)), chi1=chi1, sigma_w2_eoc=sw2_eoc,
        kappa_ratio=kappa1 / kappa2, ratio=var.ratio,
        ratio_ci=None if var.ratio_ci is None else (float(var.ratio_ci[0]),
                                                    float(var.ratio_ci[1])),
        hanin_nica=var.hanin_nica,
        ntk_change=tr.final_ntk_change, steps=tr.steps, stop_reason=tr.stop_reason,
        loss_drop=tr.min_loss / tr.initial_loss if tr.initial_loss > 0 else math.nan,
        unexplained=tr.min_loss / baseline, ess=var.ess,
        ratio_is_lower_bound=var.ratio_is_lower_bound, inits=var.inits,
    )
    seconds["total"] = time.perf_counter() - start
    return CheckResult(
        evidence=evidence, verdict=judge(evidence, thresholds), q_star=_optional(q_star),
        kappa1=kappa1, kappa2=kappa2, c0_mean=c0_mean, variance=var, training=tr,
        dataset=data.name, data_source=data.source, data_note=data.note, seed=seed,
        thresholds=thresholds, curve=points, seconds=seconds, second=wide,
    )
