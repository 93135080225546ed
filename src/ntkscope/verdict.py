"""The verdict of ``ntkscope check``: rules from numbers to ``yes`` / ``borderline`` / ``no``.

:func:`judge` reads an :class:`Evidence` (every number the rules need) and applies
:class:`Thresholds`; it runs nothing. The orchestration that produces the evidence (theory,
sampling, a training run) is :func:`ntkscope.check.check_network`. Rules and why the
thresholds are where they are: ``docs/check.md``.

* ``randomness`` (paper Section 3): ``fail`` if ``R >= ratio_random`` (also when ``R`` is only
  a lower bound: the NTK is at least that random), ``pass`` if the upper end of the 95%
  interval of ``R`` is ``<= ratio_deterministic``, ``inconclusive`` if ``R`` is a lower bound
  below ``ratio_random`` (heavy tail, CONVENTIONS section 6), else ``borderline``;
* ``change`` (Section 4), measured when the loss has fallen to ``loss_fraction`` of its
  initial value (or at the step budget): ``fail`` if the run diverged or ``|Theta_t -
  Theta_0|_F / |Theta_0|_F >= change_large`` and the change does not fall with the width like
  NTK theory predicts, ``borderline`` for a large change that does fall with the width
  (exponent ``log(c2/c1)/log(M2/M1) <= exponent_falls``, theory: about ``-1/2``, Lee et al.
  2019), ``pass`` if it is ``<= change_small``, else ``borderline``;
* ``ntk_regime``: ``no`` if a criterion fails, ``yes`` if both pass, else ``borderline``.

The rules apply to any model: the fields of :class:`Evidence` that only an ntkscope MLP has
(activation, variances, depth, the mean-field phase, ``kappa1/kappa2``, Hanin & Nica) are
optional, and the reasons say "theory: not applicable" without them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ntkscope.defaults import MIN_ESS
from ntkscope.statistics import format_ess
from ntkscope.theory.phases import CHAOTIC, ORDERED

__all__ = [
    "BORDERLINE",
    "FAIL",
    "INCONCLUSIVE",
    "NO",
    "PASS",
    "THEORY_EXPONENT",
    "THRESHOLDS",
    "YES",
    "Evidence",
    "Thresholds",
    "Verdict",
    "WidthChange",
    "judge",
    "kappa_cut",
    "theory_condition",
]

PASS, BORDERLINE, FAIL = "pass", "borderline", "fail"
#: The randomness outcome when ``R`` is only a lower bound below ``ratio_random``.
INCONCLUSIVE = "inconclusive"
YES, NO = "yes", "no"


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
        exponent_falls: a large change counts as falling with the width like NTK theory
            predicts when the exponent ``log(c2/c1)/log(M2/M1)`` of the changes at two
            widths (both runs at the loss fraction) is at most this (half of theory's
            ``-1/2``; measured exponents: ``docs/check.md``).
    """

    ratio_deterministic: float = 1.1
    ratio_random: float = 2.0
    change_small: float = 0.1
    change_large: float = 0.3
    unexplained_trainable: float = 0.5
    kappa_ill_conditioned: float = 1.5
    exponent_falls: float = -0.25

    def to_dict(self) -> dict[str, float]:
        """The thresholds by name (the ``thresholds`` key of ``ntkscope check --json``)."""
        return asdict(self)


#: The defaults used by :func:`check_network` and ``ntkscope check``.
THRESHOLDS = Thresholds()


# ---------------------------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class WidthChange:
    """The NTK change of the same model at two widths, ``M1`` (the one checked) and ``M2``,
    each trained by the same protocol (same seed, data, rate scale and stopping rule).

    ``exponent = log(c2/c1)/log(M2/M1)`` where both changes are finite and positive, else
    ``None``; NTK theory predicts it near ``-1/2`` (Lee et al. 2019: the change is
    ``O(1/sqrt(M))``). ``comparable``: both runs stopped at the loss fraction, so the changes
    are measured at the same point of training (else the exponent compares different stages
    and the verdict does not read it).
    """

    widths: tuple[int, int]
    changes: tuple[float | None, float | None]
    steps: tuple[int, int]
    stop_reasons: tuple[str, str]
    exponent: float | None
    comparable: bool

    @classmethod
    def of(cls, widths: tuple[int, int], changes: tuple[float | None, float | None],
           steps: tuple[int, int], stop_reasons: tuple[str, str]) -> WidthChange:
        """The comparison of two runs; the exponent and ``comparable`` computed."""
        c1, c2 = changes
        exponent = None
        if (c1 is not None and c2 is not None and c1 > 0 and c2 > 0 and math.isfinite(c1)
                and math.isfinite(c2) and widths[0] != widths[1]):
            exponent = math.log(c2 / c1) / math.log(widths[1] / widths[0])
        comparable = all(r == "loss_fraction" for r in stop_reasons)
        return cls(widths, changes, steps, stop_reasons, exponent, comparable)

    def to_dict(self) -> dict[str, object]:
        """The ``width_change`` key of ``ntkscope check --json``."""
        return {"widths": list(self.widths),
                "changes": [None if c is None or not math.isfinite(c) else c
                            for c in self.changes],
                "steps": list(self.steps), "stop_reasons": list(self.stop_reasons),
                "exponent": self.exponent, "theory_exponent": THEORY_EXPONENT,
                "comparable": self.comparable}


#: The exponent of the NTK change in the width that NTK theory predicts (Lee et al. 2019).
THEORY_EXPONENT = -0.5


@dataclass(frozen=True)
class Evidence:
    """Every number the verdict reads (:func:`judge`); ``None`` where it is undefined.

    ``ntk_change`` is ``None`` for a run that diverged. ``ess`` is the tail diagnostic of the
    ``inits`` draws of ``R`` (:func:`ntkscope.statistics.tail_ess`); with
    ``ratio_is_lower_bound`` they support only ``R >= ratio`` and ``ratio_ci`` is ``None``.
    ``unexplained`` is ``min_loss`` over the loss of the best constant predictor
    ``mean((y - mean y)^2)/2`` (``1 - R^2`` on the training set; for cross-entropy, over the
    loss of predicting the class frequencies). ``loss_fraction``: the run stopped when its
    loss fell to this fraction of the initial loss (stop reason ``"loss_fraction"``), else at
    ``train_steps`` (or early stopping); ``width_change``: the change at a second width.

    The fields from ``activation`` on describe an ntkscope MLP and its mean-field theory;
    they are ``None`` for any other model (``model`` then names it), and ``sigma_w2_eoc`` is
    ``None`` for activations without an edge of chaos.
    """

    samples: int
    ratio: float
    ratio_ci: tuple[float, float] | None
    ntk_change: float | None
    steps: int
    stop_reason: str
    loss_drop: float
    unexplained: float
    train_steps: int | None = None
    lr_scale: float | None = None
    loss_fraction: float | None = None
    width_change: WidthChange | None = None
    ess: float | None = None
    ratio_is_lower_bound: bool = False
    inits: int | None = None
    model: str | None = None
    activation: str | None = None
    sigma_w2: float | None = None
    sigma_b2: float | None = None
    depth: int | None = None
    width: int | None = None
    phase: str | None = None
    chi1: float | None = None
    sigma_w2_eoc: float | None = None
    kappa_ratio: float | None = None
    hanin_nica: float | None = None

    @property
    def is_mlp(self) -> bool:
        """Whether the mean-field theory of an ntkscope MLP applies (its fields are set)."""
        return self.phase is not None

    @property
    def reached_fraction(self) -> bool:
        """The run stopped because its loss fell to ``loss_fraction`` of the initial loss."""
        return self.stop_reason == "loss_fraction"

    def run_text(self) -> str:
        """``38 steps (loss at 0.01 of its initial value) at 0.5 lr_max``: where the change
        was measured."""
        where = f"{self.steps} steps"
        if self.loss_fraction is not None:
            where += (f" (loss at {self.loss_fraction:g} of its initial value)"
                      if self.reached_fraction
                      else f" (the loss did not fall to {self.loss_fraction:g} of its initial "
                      f"value: {self.stop_reason.replace('_', ' ')})")
        if self.lr_scale is not None:
            where += f" at {self.lr_scale:g} lr_max"
        return where


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


def _width_text(w: WidthChange) -> str:
    (m1, m2), c2 = w.widths, w.changes[1]
    text = (f"at width {m2} the same protocol gives {'diverged' if c2 is None else _g(c2)} "
            f"({w.steps[1]} steps")
    text += ")" if w.stop_reasons[1] == "loss_fraction" else f", {w.stop_reasons[1]})"
    if w.exponent is not None:
        text += (f": change ~ width^{w.exponent:.2f} between {m1} and {m2} (NTK theory: "
                 f"about width^{THEORY_EXPONENT:g}, Lee et al. 2019)")
    if not w.comparable:
        text += ("; not comparable: a run did not reach the loss fraction, so the two changes "
                 "are at different points of training")
    return text


def _falls(e: Evidence, t: Thresholds) -> bool:
    """The change falls with the width like NTK theory predicts (comparable runs)."""
    w = e.width_change
    return (w is not None and w.comparable and w.exponent is not None
            and w.exponent <= t.exponent_falls)


def _wider_needed(e: Evidence, t: Thresholds) -> str:
    """``; extrapolated, the change falls to 0.1 near width 4,100`` (when it falls)."""
    w = e.width_change
    if w is None or w.exponent is None or w.exponent >= 0 or e.ntk_change is None:
        return ""
    m = w.widths[0] * (t.change_small / e.ntk_change) ** (1.0 / w.exponent)
    return f"; extrapolated, it falls to {t.change_small:g} near width {m:,.0f}"


def _change(e: Evidence, t: Thresholds) -> tuple[str, str]:
    run = e.run_text()
    widths = "" if e.width_change is None else "; " + _width_text(e.width_change)
    if e.ntk_change is None:
        return FAIL, (f"change: training diverged after {run}, a rate at which the linearized "
                      f"(NTK) dynamics converge: the kernel did not stay constant{widths}")
    numbers = f"|Theta_t - Theta_0|_F/|Theta_0|_F = {_g(e.ntk_change)} after {run}"
    if e.ntk_change >= t.change_large:
        if _falls(e, t):
            return BORDERLINE, (
                f"change: {numbers}; >= {t.change_large:g} at this width, but it falls with "
                f"the width as NTK theory predicts{widths}{_wider_needed(e, t)}: the network "
                "approaches the NTK regime as it widens, at this width its kernel changes "
                "(paper Sec. 4)")
        why = ("" if e.width_change is None or not e.width_change.comparable
               or e.width_change.exponent is None
               else f", and it does not fall with the width like NTK theory predicts "
               f"(exponent > {t.exponent_falls:g})")
        return FAIL, (f"change: {numbers}; >= {t.change_large:g}: the kernel changes during "
                      f"training, the NTK dynamics (paper eq. 3) do not hold (Sec. 4){why}"
                      f"{widths}")
    if e.ntk_change <= t.change_small:
        text = (f"change: {numbers}; <= {t.change_small:g}: the kernel stays nearly constant "
                f"(paper Sec. 4){widths}")
        if e.stop_reason == "max_steps":
            text += ("; training stopped at the step budget before the loss fell to the "
                     "fraction, so this is a lower bound: raise --steps to follow it further")
        return PASS, text
    return BORDERLINE, (f"change: {numbers}; between {t.change_small:g} and "
                        f"{t.change_large:g}: the kernel moves noticeably, NTK theory is only "
                        f"approximate (paper Sec. 4){widths}{_wider_needed(e, t)}")


def _trainability(e: Evidence, t: Thresholds) -> tuple[bool, str]:
    at = "" if e.lr_scale is None else f" at {e.lr_scale:g} lr_max"
    if e.stop_reason == "diverged":
        return False, f"trainability: diverged{at}; retry with a smaller learning rate"
    explained = f"{1.0 - e.unexplained:.1%}" if e.unexplained <= 1.0 else "none"
    numbers = (f"min/initial loss = {_g(e.loss_drop)}, min loss / constant-predictor loss = "
               f"{_g(e.unexplained)} (explained: {explained})")
    if e.unexplained <= t.unexplained_trainable:
        return True, f"trainability: {numbers}: the network learns"
    return False, (f"trainability: {numbers} > {t.unexplained_trainable:g}: the network does not "
                   f"learn in {e.steps} steps (its loss stays above half the loss of the best "
                   "constant predictor)")


def _theory(e: Evidence, t: Thresholds) -> list[str]:
    if not e.is_mlp:
        return ["theory: not applicable (not an ntkscope MLP): the mean-field phase, the edge "
                "of chaos and kappa1/kappa2 describe the MLPs of CONVENTIONS section 1 only"]
    assert e.depth is not None and e.width is not None and e.chi1 is not None
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
    if e.kappa_ratio is not None and e.kappa_ratio < cut:
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
    * ``change`` (at the loss fraction or the step budget): ``fail`` if the run diverged, or
      the change is ``>= change_large`` and does not fall with the width like theory;
      ``borderline`` if it is ``>= change_large`` but the changes at two widths of comparable
      runs give an exponent ``<= exponent_falls``; ``pass`` if it is ``<= change_small``;
      else ``borderline``;
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
        weak = [k for k, v in criteria.items() if v == BORDERLINE]
        falling = (change == BORDERLINE and e.ntk_change is not None
                   and e.ntk_change >= t.change_large)
        if falling:
            weak.remove("change")
        if weak:
            parts.append(f"{' and '.join(weak)} between the thresholds")
        if falling:
            parts.append(f"change above {t.change_large:g} at this width but falling with the "
                         "width like NTK theory")
        if rand == INCONCLUSIVE:
            parts.append("randomness inconclusive (R is only a lower bound below "
                         f"{t.ratio_random:g}: heavy tail)")
        head = "borderline: " + "; ".join(parts)
    reasons = [head, rand_reason, change_reason, train_reason, *_theory(e, t)]
    return Verdict(regime, trainable, criteria, reasons)
