"""Is this network in the NTK regime? One verdict from theory, sampling and a short training run.

NTK theory makes two statements about a finite network (paper Section 1, eqs. 3-4): its kernel
``Theta0`` is (nearly) deterministic at initialization, and it stays (nearly) constant during
gradient descent. :func:`check_network` tests both for one network ``(activation, sw2, sb2, L,
M)`` and places it in the mean-field phase diagram:

* **theory** (:mod:`ntkscope.theory`): ``chi1`` at the fixed point ``q*`` and the phase,
  ``sw2_EOC(sb2)``, and the conditioning ``kappa1/kappa2`` (Lemma 5.2) at the mean input
  covariance of the training samples;
* **randomness at initialization** (Section 3): ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` with
  its 95% bootstrap interval from the exact low-rank sampler
  (:func:`ntkscope.sampling.ntk_variance`), Hanin & Nica's ``exp(5 L/M)`` for ReLU;
* **change during training** (Section 4): ``|Theta_t - Theta_0|_F / |Theta_0|_F`` after a short
  full-batch gradient descent run at ``lr_scale * lr_max`` (:func:`ntkscope.training.train`);
* **trainability**: how much of the targets' variance the run explained.

:func:`judge` turns the numbers into ``ntk_regime`` = ``yes`` / ``borderline`` / ``no`` with
the reasons; the thresholds (:class:`Thresholds`) and why they are where they are:
``docs/check.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkscope.activations import Activation, get_activation
from ntkscope.datasets import dataset_name, load_dataset
from ntkscope.defaults import MIN_ESS
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.statistics import format_ess
from ntkscope.theory import chi1_fixed_point, data_covariances, eoc, phase_of, propagate
from ntkscope.theory.phases import CHAOTIC, ORDERED
from ntkscope.validation import (
    NtkscopeInputError,
    nonnegative,
    positive,
    positive_int,
)

if TYPE_CHECKING:  # torch-backed modules are imported when a check runs
    from ntkscope.sampling import NTKVarianceResult
    from ntkscope.training import TrainResult

__all__ = [
    "INCONCLUSIVE",
    "INPUT_DIM",
    "THRESHOLDS",
    "CheckResult",
    "CurvePoint",
    "Evidence",
    "Thresholds",
    "Verdict",
    "check_network",
    "curve_depths",
    "judge",
    "kappa_cut",
    "ratio_by_depth",
    "theory_condition",
]

#: Input dimension of every data set ntkscope ships (28 x 28 images; the gaussian set's default).
INPUT_DIM = 784
PASS, BORDERLINE, FAIL = "pass", "borderline", "fail"
#: The randomness outcome when ``R`` is only a lower bound below ``ratio_random``.
INCONCLUSIVE = "inconclusive"
YES, NO = "yes", "no"
_SNAPSHOTS = (10, 100, 1000, 10_000)


@dataclass(frozen=True)
class Thresholds:
    """Where the verdict's criteria switch (justification: ``docs/check.md``).

    Attributes:
        ratio_deterministic: randomness passes when the upper end of the 95% interval of
            ``R`` is at most this (``std/mean <= sqrt(0.1) = 0.32``; Fig. 1's black zone).
        ratio_random: randomness fails when ``R`` is at least this (``std >= mean``: Fig. 1's
            blue zone, the NTK "cannot be replaced by its mean").
        change_small: the change criterion passes when the relative NTK change of the run is
            at most this (the kernel constant to 10%).
        change_large: it fails at or above this, or when the run diverged.
        unexplained_trainable: the network counts as trainable when its smallest loss is at
            most this fraction of the loss of the best constant predictor (it explained at
            least half of the targets' variance).
        kappa_ill_conditioned: ``(kappa1/kappa2 - 1) * S`` below this flags a nearly
            degenerate NTK (theory's warning that deep ordered networks stop learning;
            informational, it does not enter the verdict).
    """

    ratio_deterministic: float = 1.1
    ratio_random: float = 2.0
    change_small: float = 0.1
    change_large: float = 0.3
    unexplained_trainable: float = 0.5
    kappa_ill_conditioned: float = 1.5

    def to_dict(self) -> dict[str, float]:
        """The thresholds by name (the ``thresholds`` key of ``ntkscope check --json``)."""
        return asdict(self)


#: The defaults used by :func:`check_network` and ``ntkscope check``.
THRESHOLDS = Thresholds()


# ---------------------------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class Evidence:
    """Every number the verdict reads (:func:`judge`); ``None`` where it is undefined.

    ``ntk_change`` is ``None`` for a run that diverged; ``sigma_w2_eoc`` for activations without
    an edge of chaos. ``ess`` is the tail diagnostic of the ``inits`` draws of ``R``
    (:func:`ntkscope.statistics.tail_ess`); with ``ratio_is_lower_bound`` they support only
    ``R >= ratio`` and ``ratio_ci`` is ``None``. ``unexplained`` is ``min_loss`` over the loss
    of the best constant predictor ``mean((y - mean y)^2)/2`` (``1 - R^2`` on the training set).
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    depth: int
    width: int
    samples: int
    train_steps: int
    lr_scale: float
    phase: str
    chi1: float
    sigma_w2_eoc: float | None
    kappa_ratio: float
    ratio: float
    ratio_ci: tuple[float, float] | None
    hanin_nica: float | None
    ntk_change: float | None
    steps: int
    stop_reason: str
    loss_drop: float
    unexplained: float
    ess: float | None = None
    ratio_is_lower_bound: bool = False
    inits: int | None = None


@dataclass(frozen=True)
class Verdict:
    """``ntk_regime`` (``yes``/``borderline``/``no``), ``trainable``, each criterion's
    outcome (``pass``/``borderline``/``fail`` for ``randomness`` and ``change``) and the
    reasons, most important first."""

    ntk_regime: str
    trainable: bool
    criteria: dict[str, str]
    reasons: list[str]


def _g(x: float) -> str:
    return f"{x:.3g}"


def _randomness(e: Evidence, t: Thresholds) -> tuple[str, str]:
    bound = e.ratio_is_lower_bound or e.ratio_ci is None
    if bound:  # R >= ratio only (heavy tail): above ratio_random still random, else unknown
        ess = ("?" if e.ess is None else format_ess(e.ess, e.inits) if e.inits is not None
               else f"{e.ess:.3g}")
        numbers = (f"R >= {_g(e.ratio)} (lower bound: heavy tail, ESS {ess} below "
                   f"{MIN_ESS:g}, no interval)")
    else:
        lo, hi = e.ratio_ci
        cv = math.sqrt(max(e.ratio - 1.0, 0.0))
        numbers = f"R = {_g(e.ratio)}, 95% CI [{_g(lo)}, {_g(hi)}], std/mean = {cv:.2f}"
    if e.hanin_nica is not None:
        numbers += f"; Hanin & Nica exp(5L/M) = {_g(e.hanin_nica)} (their sw2=2, sb2=0 law)"
    if e.ratio >= t.ratio_random:
        return FAIL, (f"randomness: {numbers}; R >= {t.ratio_random:g}"
                      f"{' even as a lower bound' if bound else ''}: the NTK's standard "
                      "deviation exceeds its mean, Theta0 is random, not its mean-field value "
                      "(paper Sec. 3, Fig. 1 blue zone)")
    if bound:
        return INCONCLUSIVE, (f"randomness: {numbers}; the true R may well exceed "
                              f"{t.ratio_random:g}: inconclusive, rerun with more --inits (the "
                              "draws do not sample the tail of Theta0; docs/ntk-variance.md)")
    if hi <= t.ratio_deterministic:
        return PASS, (f"randomness: {numbers}; CI upper end <= {t.ratio_deterministic:g}: "
                      "Theta0 is close to deterministic (paper Sec. 3, Fig. 1 black zone)")
    return BORDERLINE, (f"randomness: {numbers}; between {t.ratio_deterministic:g} and "
                        f"{t.ratio_random:g}: Theta0 fluctuates by a fraction of its mean, NTK "
                        "theory describes the average network only (paper Sec. 3, EOC and red "
                        "zone)")


def _change(e: Evidence, t: Thresholds) -> tuple[str, str]:
    run = f"{e.steps} steps at {e.lr_scale:g} lr_max"
    if e.ntk_change is None:
        return FAIL, (f"change: training diverged after {run}, a rate at which the linearized "
                      "(NTK) dynamics converge: the kernel did not stay constant")
    numbers = f"|Theta_t - Theta_0|_F/|Theta_0|_F = {_g(e.ntk_change)} after {run}"
    if e.ntk_change >= t.change_large:
        return FAIL, (f"change: {numbers}; >= {t.change_large:g}: the kernel changes during "
                      "training, the NTK dynamics (paper eq. 3) do not hold (Sec. 4)")
    if e.ntk_change <= t.change_small:
        text = (f"change: {numbers}; <= {t.change_small:g}: the kernel stays nearly constant "
                "(paper Sec. 4)")
        if e.stop_reason == "max_steps":
            text += ("; training had not converged, so this is a lower bound: raise "
                     "--train-steps to follow it further")
        return PASS, text
    return BORDERLINE, (f"change: {numbers}; between {t.change_small:g} and "
                        f"{t.change_large:g}: the kernel moves noticeably, NTK theory is only "
                        "approximate (paper Sec. 4)")


def _trainability(e: Evidence, t: Thresholds) -> tuple[bool, str]:
    if e.stop_reason == "diverged":
        return False, (f"trainability: diverged at {e.lr_scale:g} lr_max; retry with a smaller "
                       "--lr-scale")
    explained = f"{1.0 - e.unexplained:.1%}" if e.unexplained <= 1.0 else "none"
    numbers = (f"min/initial loss = {_g(e.loss_drop)}, min loss / constant-predictor loss = "
               f"{_g(e.unexplained)} (variance explained: {explained})")
    if e.unexplained <= t.unexplained_trainable:
        return True, f"trainability: {numbers}: the network learns"
    return False, (f"trainability: {numbers} > {t.unexplained_trainable:g}: the network does not "
                   f"learn in {e.steps} steps (its loss stays above half the loss of predicting "
                   "the targets' mean)")


def _theory(e: Evidence, t: Thresholds) -> list[str]:
    aspect = e.depth / e.width
    eoc_txt = "" if e.sigma_w2_eoc is None else f", sw2_EOC = {e.sigma_w2_eoc:.4g}"
    where = f"phase: {e.phase} (chi1 = {e.chi1:.4g}{eoc_txt}, L/M = {_g(aspect)})"
    if e.phase == ORDERED:
        out = [where + ": the paper finds NTK theory holding at any depth in this phase (at its "
               "small fixed learning rate), and depth making the kernel degenerate and the "
               "network untrainable (paper Secs. 4-5)"]
    elif e.phase == CHAOTIC:
        out = [where + ": NTK theory holds only for small L/M; R grows exponentially in L/M "
               "and the training change grows with L (paper Figs. 1-2, Sec. 4)"]
    else:
        out = [where + ": at the edge of chaos the NTK fluctuates by a fraction of its mean "
               "even for deep networks (paper Sec. 3)"]
    cut = kappa_cut(e.samples, t)
    if e.kappa_ratio < cut:
        out.append(f"conditioning: kappa1/kappa2 = {e.kappa_ratio:.5g} < {cut:.5g} "
                   f"(= 1 + {t.kappa_ill_conditioned:g}/S): the NTK is nearly degenerate "
                   f"(theory condition number 1 + S/(kappa1/kappa2 - 1) = "
                   f"{theory_condition(e.kappa_ratio, e.samples):.2g}), theory predicts slow "
                   "or no learning (paper Sec. 5, Fig. 6)")
    return out


def kappa_cut(samples: int, t: Thresholds = THRESHOLDS) -> float:
    """``kappa1/kappa2`` below which the NTK counts as nearly degenerate: ``1 + c/S``."""
    return 1.0 + t.kappa_ill_conditioned / samples


def theory_condition(kappa_ratio: float, samples: int) -> float:
    """Condition number ``1 + S/(kappa1/kappa2 - 1)`` of the mean-field NTK
    ``M((kappa1 - kappa2) I + kappa2 1 1^T)`` on ``S`` inputs (Lemma 5.2); ``inf`` at 1."""
    excess = kappa_ratio - 1.0
    return math.inf if excess <= 0 else 1.0 + samples / excess


def judge(e: Evidence, t: Thresholds = THRESHOLDS) -> Verdict:
    """The verdict from the numbers (rules: ``docs/check.md``).

    * ``randomness``: ``fail`` if ``R >= ratio_random``, ``pass`` if the CI's upper end is
      ``<= ratio_deterministic``, else ``borderline``. When ``R`` is only a lower bound
      (``ratio_is_lower_bound``: too few effective draws of a heavy tail, no interval):
      ``fail`` if the bound is ``>= ratio_random`` (the true ``R`` is larger still), else
      ``inconclusive`` (never ``pass``: a bound from below cannot show ``R`` is small);
    * ``change``: ``fail`` if the run diverged or the change is ``>= change_large``, ``pass``
      if it is ``<= change_small``, else ``borderline``;
    * ``ntk_regime``: ``no`` if a criterion fails, ``yes`` if both pass, else ``borderline``
      (also for an ``inconclusive`` randomness);
    * ``trainable``: the run did not diverge and ``unexplained <= unexplained_trainable``.
      It does not change ``ntk_regime`` (a network that cannot learn keeps its kernel, as NTK
      theory itself predicts for a degenerate kernel); the reasons say so.
    """
    rand, rand_reason = _randomness(e, t)
    change, change_reason = _change(e, t)
    trainable, train_reason = _trainability(e, t)
    criteria = {"randomness": rand, "change": change}
    if FAIL in criteria.values():
        regime = NO
        failed = " and ".join(k for k, v in criteria.items() if v == FAIL)
        head = f"not in the NTK regime: {failed} criterion failed"
    elif all(v == PASS for v in criteria.values()):
        regime = YES
        head = "in the NTK regime: Theta0 is nearly deterministic and stays nearly constant"
        if not trainable:
            head += (", but the network is untrainable (the kernel stays put because the "
                     "network does not learn)")
    else:
        regime = BORDERLINE
        parts = []
        weak = " and ".join(k for k, v in criteria.items() if v == BORDERLINE)
        if weak:
            parts.append(f"{weak} between the thresholds")
        if rand == INCONCLUSIVE:
            parts.append("randomness inconclusive (R is only a lower bound below "
                         f"{t.ratio_random:g}: heavy tail)")
        head = "borderline: " + "; ".join(parts)
    reasons = [head, rand_reason, change_reason, train_reason, *_theory(e, t)]
    return Verdict(regime, trainable, criteria, reasons)


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
        seconds: wall time per part (``theory``, ``variance``, ``training``, ``curve``,
            ``total``).
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
            "thresholds": self.thresholds.to_dict(),
            "settings": {
                "activation": e.activation, "sigma_w2": e.sigma_w2, "sigma_b2": e.sigma_b2,
                "depth": e.depth, "width": e.width, "input_dim": INPUT_DIM,
                "dataset": self.dataset, "samples": e.samples, "inits": self.variance.inits,
                "train_steps": e.train_steps, "lr_scale": e.lr_scale, "seed": self.seed,
                "data_source": self.data_source,
            },
            "r_by_depth": [{"depth": p.depth, "ratio": p.ratio,
                            "ratio_ci": None if p.ratio_ci is None else list(p.ratio_ci),
                            "inits": p.inits, "ess": p.ess,
                            "ratio_is_lower_bound": p.ratio_is_lower_bound}
                           for p in self.curve],
            "seconds": dict(self.seconds),
        }


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


def check_network(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int,
    *,
    dataset: str = "mnist",
    samples: int = 128,
    inits: int = 1000,
    train_steps: int = 200,
    lr_scale: float = 0.5,
    seed: int = 0,
    data_dir: str | None = None,
    threads: int | None = 1,
    device: str = "cpu",
    curve: bool = False,
    curve_inits: int = 200,
    thresholds: Thresholds = THRESHOLDS,
) -> CheckResult:
    """Is the network in the NTK regime? Theory, ``R`` at initialization, a short run, a verdict.

    Args:
        activation, sigma_w2, sigma_b2, depth, width: the network (CONVENTIONS section 1;
            input dimension 784, constant hidden width ``M``).
        dataset, samples, data_dir: the training samples (:func:`ntkscope.datasets.load_dataset`
            with ``seed``; default targets).
        inits: initializations for ``R`` (:func:`ntkscope.sampling.ntk_variance`, low-rank
            sampler, seed ``seed``; at least 2).
        train_steps, lr_scale: the run: at most ``train_steps`` full-batch gradient steps at
            ``lr = lr_scale * 2S / lambda_max(Theta_0)``, the paper's early stopping
            (patience 100, ``min_delta = 1e-7``); network 0 of seed ``seed``
            (:func:`ntkscope.training.train`).
        threads: torch CPU threads for the run (``None``: unchanged).
        device: where the sampling and the run compute (``cpu``, ``cuda``).
        curve: also measure ``R`` at the depths :func:`curve_depths` (``curve_inits`` draws
            each) for the HTML report.
        thresholds: the verdict's :class:`Thresholds`.

    Returns:
        a :class:`CheckResult`.

    Raises:
        NtkscopeInputError: bad input (``sigma_w2 <= 0``, ``depth < 1``, ``inits < 2``,
            ``train_steps < 1``, more samples than the data set has, ...), or values beyond the
            float64 range (extremely deep chaotic networks).
    """
    start = time.perf_counter()
    act = get_activation(activation)
    sw2 = float(positive("sigma_w2", sigma_w2))
    sb2 = float(nonnegative("sigma_b2", sigma_b2))
    depth = positive_int("depth", depth)
    width = positive_int("width", width)
    samples = positive_int("samples", samples, minimum=2)
    inits = positive_int("inits", inits, minimum=2)
    train_steps = positive_int("train_steps", train_steps)
    lr_scale = float(positive("lr_scale", lr_scale))
    seed = positive_int("seed", seed, minimum=0)
    curve_inits = positive_int("curve_inits", curve_inits, minimum=2)
    if threads is not None:
        threads = positive_int("threads", threads)
    from ntkscope.networks import check_device  # torch: the check needs it below anyway

    device = str(check_device(device))
    if not isinstance(thresholds, Thresholds):
        raise NtkscopeInputError(f"thresholds: expected Thresholds, got {thresholds!r}")
    data = load_dataset(dataset_name(dataset), samples, seed, data_dir=data_dir)
    if data.X.shape[1] != INPUT_DIM:
        raise NtkscopeInputError(f"dataset: expected {INPUT_DIM} input dimensions")
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
    from ntkscope.networks import MLP
    from ntkscope.sampling import ntk_variance
    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    clock = time.perf_counter()
    spec = NetworkSpec(act, sw2, sb2, depth, width, INPUT_DIM)
    var = ntk_variance(spec, inits=inits, seed=seed, device=device)
    seconds["variance"] = time.perf_counter() - clock

    # A short training run.
    clock = time.perf_counter()
    net = MLP(INPUT_DIM, width, depth, act, sw2, sb2)
    snapshots = tuple(s for s in _SNAPSHOTS if s < train_steps)
    tr = train(net, data.X, data.y, batch=1, seed=seed, rate=LearningRate(lr_scale=lr_scale),
               stop=StoppingRule(max_steps=train_steps), record=Recording(snapshots),
               execution=Execution(threads=threads, device=device)).results[0]
    seconds["training"] = time.perf_counter() - clock

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
        samples=samples, train_steps=train_steps, lr_scale=lr_scale,
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
        thresholds=thresholds, curve=points, seconds=seconds,
    )

