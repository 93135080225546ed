"""The verdict of ``ntkscope check``: rules from numbers to ``yes`` / ``borderline`` / ``no``.

:func:`judge` reads an :class:`Evidence` (every number the rules need) and applies
:class:`Thresholds`; it runs nothing. The orchestration that produces the evidence (theory,
sampling, a training run) is :func:`ntkscope.check.check_network`. Rules and why the
thresholds are where they are: ``docs/check.md``.

* ``randomness`` (paper Section 3): ``fail`` if ``R >= ratio_random`` (also when ``R`` is only
  a lower bound: the NTK is at least that random), ``pass`` if the upper end of the 95%
  interval of ``R`` is ``<= ratio_deterministic``, ``inconclusive`` if ``R`` is a lower bound
  below ``ratio_random`` (heavy tail, CONVENTIONS section 6), else ``borderline``;
* ``change`` (Section 4): ``fail`` if the run diverged or ``|Theta_t - Theta_0|_F /
  |Theta_0|_F >= change_large``, ``pass`` if it is ``<= change_small``, else ``borderline``;
* ``ntk_regime``: ``no`` if a criterion fails, ``yes`` if both pass, else ``borderline``.
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
    "THRESHOLDS",
    "YES",
    "Evidence",
    "Thresholds",
    "Verdict",
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
