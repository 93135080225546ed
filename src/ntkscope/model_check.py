"""Is *my* model in the NTK regime? ``ntkscope check --model``: the check of any PyTorch model.

:func:`check_model` asks the two questions of NTK theory (paper Section 1, eqs. 3-4) of any
``nn.Module`` built by a factory, with the same rules as the MLP check
(:func:`ntkscope.verdict.judge`; ``docs/check.md``):

* **randomness at initialization** (Section 3): ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` over
  ``inits`` initializations ``torch.manual_seed(seed + i); factory()`` (CONVENTIONS section 9)
  on the first ``probes`` training inputs (:func:`ntkscope.generic.init_randomness`); the
  verdict reads the worst input (largest ``R``) with its 95% interval;
* **change during training** (Section 4): the model of seed ``seed`` trained by full-batch
  gradient descent (:func:`ntkscope.generic.fit`) until its loss has fallen to
  ``loss_fraction`` of the initial loss, or ``steps``; ``|Theta_t - Theta_0|_F / |Theta_0|_F``
  of the trace kernel on the training inputs there; where the factory takes ``width=``, the
  same at a second width and the exponent ``log(c2/c1)/log(w2/w1)`` (theory: about
  ``-1/2``);
* **trainability**: the smallest loss over the loss of the best constant predictor.

Targets (``O`` = the model's outputs per sample):

* ``mse``, ``O = 1``: the data set's ``+-1`` targets (parity of the digit for images, the
  side of a hyperplane for ``gaussian``; a file's ``y``, or ``+1`` for an even label and
  ``-1`` for an odd one); ``O > 1``: one-hot class labels centered, ``e_c - 1/O`` (a file's
  ``(N, O)`` ``y`` as given);
* ``cross-entropy``, ``O >= 2``: the class labels (every label ``< O``; with ``O = 2`` and
  more classes than that, the two parity classes); ``O = 1``: the logistic loss on the binary
  classes ``1`` where the ``+-1`` target is ``+1``.

Mean-field theory (phase, EOC, ``kappa1/kappa2``) describes ntkscope's MLPs only; a model
check reports it as not applicable.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkscope.check import LOSS_FRACTION, STEPS, change_rows, reasons_footer, verdict_rows
from ntkscope.datasets import DATASET_NAMES, dataset_name
from ntkscope.defaults import CHECK_MODEL_INITS, CHECK_PROBES
from ntkscope.rendering import fmt
from ntkscope.statistics import format_ess
from ntkscope.validation import NtkscopeInputError, positive, positive_int
from ntkscope.verdict import THRESHOLDS, Evidence, Thresholds, Verdict, WidthChange, judge

if TYPE_CHECKING:
    from torch import nn

    from ntkscope.generic import ModelInputs
    from ntkscope.generic._fit import FitResult

__all__ = ["LOSSES", "PROBES", "ModelCheckResult", "check_model", "model_second_width"]

#: The losses a model check trains with.
LOSSES: tuple[str, ...] = ("mse", "cross-entropy")
#: Inputs (the first of the training samples) on which ``R`` is measured.
PROBES = CHECK_PROBES
#: :func:`model_second_width` widens by 4 while the wider model has at most this many
#: parameters (the cost of a step grows with them), else narrows by 4.
WIDE_PARAMETERS = 1 << 22


# ---------------------------------------------------------------------------------------------
# The data


@dataclass(frozen=True)
class _Data:
    name: str
    pm1: np.ndarray | None  # (S,) +-1 targets
    labels: np.ndarray | None  # (S,) class labels
    y: np.ndarray | None  # a file's own targets


def _data(inputs: ModelInputs) -> _Data:
    """The targets' raw material of the inputs (module docstring)."""
    y, labels = inputs.y, inputs.labels
    pm1 = None
    if y is not None and y.ndim == 1:
        pm1 = y
    elif labels is not None:
        pm1 = np.where(labels % 2 == 0, 1.0, -1.0)
    return _Data(inputs.name, pm1, labels, y)


def _targets(loss: str, outputs: int, data: _Data) -> tuple[np.ndarray, float, str]:
    """The targets for ``loss`` and ``O`` outputs, the loss of the best constant predictor,
    and what the targets are (module docstring)."""
    if loss == "mse":
        if outputs == 1:
            if data.pm1 is None:
                raise NtkscopeInputError(f"dataset: {data.name} has no (N,) targets 'y' or "
                                         "'labels' for a model with one output")
            y = data.pm1[:, None]
            what = "+-1 targets (S, 1)"
        elif data.y is not None and data.y.ndim == 2:
            if data.y.shape[1] != outputs:
                raise NtkscopeInputError(f"dataset: 'y' has {data.y.shape[1]} columns, the "
                                         f"model {outputs} outputs")
            y, what = data.y, f"the file's targets (S, {outputs})"
        else:
            lab = _labels(data, outputs)
            y = np.eye(outputs)[lab] - 1.0 / outputs
            what = f"one-hot class labels centered, e_c - 1/{outputs}"
        base = float(np.sum((y - y.mean(0)) ** 2)) / (2 * y.shape[0])
        return y, base, what
    if outputs == 1:
        if data.pm1 is None or not np.all(np.isin(data.pm1, (-1.0, 1.0))):
            raise NtkscopeInputError(f"dataset: cross-entropy with one output needs binary "
                                     f"targets; {data.name} has none")
        lab = (data.pm1 > 0).astype(np.int64)
        what = "binary classes (logistic loss), 1 where the +-1 target is +1"
    else:
        lab = _labels(data, outputs)
        what = f"class labels 0..{outputs - 1}"
    freq = np.bincount(lab, minlength=max(outputs, 2)) / lab.shape[0]
    base = float(-np.sum(freq[freq > 0] * np.log(freq[freq > 0])))
    return lab, base, what


def _labels(data: _Data, outputs: int) -> np.ndarray:
    """Class labels ``< outputs``: the data's, or with two outputs the parity classes."""
    if data.labels is None:
        if outputs == 2 and data.pm1 is not None:
            return (data.pm1 > 0).astype(np.int64)
        raise NtkscopeInputError(f"dataset: {data.name} has no class labels for a model with "
                                 f"{outputs} outputs")
    if int(data.labels.max()) < outputs:
        return data.labels
    if outputs == 2 and data.pm1 is not None:
        return (data.pm1 > 0).astype(np.int64)
    raise NtkscopeInputError(f"model: {outputs} outputs, but the labels of {data.name} run to "
                             f"{int(data.labels.max())}: give the model one output per class, "
                             "one output (+-1 targets) or two (parity classes)")


# ---------------------------------------------------------------------------------------------
# The factory and its width


def _accepts_width(fn: Callable[..., Any]) -> tuple[bool, int | None]:
    """Whether ``fn`` takes a ``width=`` keyword, and its default when that is an int."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False, None
    p = sig.parameters.get("width")
    if p is None or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
        return False, None
    default = p.default if isinstance(p.default, int) and not isinstance(p.default, bool) \
        else None
    return True, default


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_second_width(factory: Callable[..., nn.Module], width: int) -> int:
    """The second width of a factory taking ``width=``: ``4 w`` while the model at ``4 w`` has
    at most :data:`WIDE_PARAMETERS` (``2^22``) trainable parameters, else ``w // 4`` (at
    least 1): the rule of the MLP check (:func:`ntkscope.check.second_width`) read off the
    parameter count."""
    import torch

    width = positive_int("width", width)
    if width < 4:
        return 4 * width
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        try:
            n = _count(factory(width=4 * width))
        except Exception:  # a factory that cannot build on the meta device: build it for real
            n = None
    if n is None:
        with torch.random.fork_rng(devices=[]):
            n = _count(factory(width=4 * width))
    return 4 * width if n <= WIDE_PARAMETERS else width // 4


# ---------------------------------------------------------------------------------------------
# The result


@dataclass
class ModelCheckResult:
    """Everything ``ntkscope check --model`` reports; renders itself like
    :class:`ntkscope.check.CheckResult` (same JSON keys where they apply).

    Attributes:
        evidence, verdict: the numbers the rules read and the verdict.
        model: the factory's name; parameters: its trainable parameters; outputs: ``O``.
        inputs: the inputs' shape text and why that shape (``ModelInputs.describe``).
        loss, targets: the loss and what the targets are.
        randomness: the :class:`ntkscope.generic.InitRandomnessResult` on the probes.
        training, second: the :class:`ntkscope.generic.FitResult` at the width and at the
            second width (``None`` without one).
        dataset, data_source, data_note, seed, thresholds, seconds: as in the MLP check.
    """

    evidence: Evidence
    verdict: Verdict
    model: str
    parameters: int
    outputs: int
    inputs: str
    input_shape: list[int]
    loss: str
    targets: str
    randomness: Any
    training: FitResult
    second: FitResult | None
    dataset: str
    data_source: str
    data_note: str | None
    seed: int
    probes: int
    thresholds: Thresholds
    seconds: dict[str, float] = field(default_factory=dict)
    curve: list[Any] = field(default_factory=list)  # no R-by-depth curve for a model

    def to_dict(self) -> dict[str, Any]:
        """The ``ntkscope check --model --json`` object: the MLP check's keys where they apply
        (theory keys ``null``), plus the model's (non-finite numbers become ``None``)."""
        e, v, tr, rnd = self.evidence, self.verdict, self.training, self.randomness
        return {
            "phase": None, "chi1": None, "sigma_w2_eoc": None, "kappa_ratio": None,
            "ratio": e.ratio, "ratio_ci": None if e.ratio_ci is None else list(e.ratio_ci),
            "ntk_change": e.ntk_change, "loss_drop": _num(e.loss_drop),
            "ntk_regime": v.ntk_regime, "reasons": list(v.reasons),
            "trainable": v.trainable, "criteria": dict(v.criteria),
            "theory": "not applicable (not an ntkscope MLP)",
            "ess": e.ess, "ratio_is_lower_bound": e.ratio_is_lower_bound,
            "ratio_std_over_mean": math.sqrt(max(e.ratio - 1.0, 0.0)),
            "ratio_per_input": [float(r) for r in np.asarray(rnd.ratios)],
            "kernel_std": _num(float(rnd.kernel_std)),
            "unexplained": _num(e.unexplained),
            "initial_loss": _num(tr.initial_loss), "min_loss": _num(tr.min_loss),
            "final_loss": _num(tr.final_loss), "steps": tr.steps,
            "stop_reason": tr.stop_reason, "lr": tr.lr, "lr_max": _num(tr.lr_max),
            "loss_fraction": e.loss_fraction,
            "steps_to_fraction": tr.steps if e.reached_fraction else None,
            "width_change": None if e.width_change is None else e.width_change.to_dict(),
            "kernel_distance": _num(tr.kernel_distance),
            "weight_change": _num(tr.weight_change),
            "thresholds": self.thresholds.to_dict(),
            "settings": {
                "model": self.model, "parameters": self.parameters, "outputs": self.outputs,
                "input_shape": list(self.input_shape), "inputs": self.inputs,
                "dataset": self.dataset, "samples": e.samples, "inits": rnd.inits,
                "probes": self.probes, "loss": self.loss, "targets": self.targets,
                "steps": e.train_steps, "loss_fraction": e.loss_fraction,
                "lr_scale": e.lr_scale, "width": e.width,
                "second_width": None if e.width_change is None else e.width_change.widths[1],
                "seed": self.seed, "data_source": self.data_source,
            },
            "seconds": dict(self.seconds),
        }

    def title(self) -> str:
        """``ntkscope check: models.py:cnn (width 16), mnist, S=128, inits=200, mse, ...``."""
        e = self.evidence
        width = "" if e.width is None else f" (width {e.width})"
        lr = f"lr={e.lr_scale:g} lr_max" if e.lr_scale is not None else f"lr={self.training.lr:g}"
        frac = "" if e.loss_fraction is None else f", to {e.loss_fraction:g} L0"
        return (f"ntkscope check: {self.model}{width}, {self.dataset}, S={e.samples}, "
                f"inits={self.randomness.inits}, {self.loss}, {lr}{frac}")

    def rows(self) -> list[tuple[str, Any, str]]:
        """``(quantity, value, threshold / outcome)`` rows of the command's table."""
        e, v, t = self.evidence, self.verdict, self.thresholds
        rows: list[tuple[str, Any, str]] = [
            ("inputs", self.inputs, ""),
            ("trainable parameters", self.parameters, f"{self.outputs} output(s)"),
            ("targets", self.targets, self.loss),
            ("theory", "not applicable", "not an ntkscope MLP"),
            (f"R (worst of {self.probes} probes)",
             fmt(e.ratio) if e.ratio_ci is not None else f"R >= {e.ratio:.6g}",
             f"pass if CI <= {t.ratio_deterministic:g}, fail if >= {t.ratio_random:g}: "
             f"{v.criteria['randomness']}"),
            ("95% CI of R", "none: R is a lower bound (heavy tail)" if e.ratio_ci is None
             else f"[{e.ratio_ci[0]:.6g}, {e.ratio_ci[1]:.6g}]", ""),
            ("ESS of Theta0^2 weights", format_ess(e.ess or 0.0, e.inits or 0), ""),
            ("relative std of Theta0", fmt(float(self.randomness.kernel_std)), "whole kernel"),
            *change_rows(e, t, v),
            ("kernel distance", fmt(self.training.kernel_distance), "Fort et al. 2020"),
            ("weight change", fmt(self.training.weight_change), "|theta_t - theta_0|/|theta_0|"),
            *verdict_rows(e, t, v, self.seconds["total"]),
        ]
        return rows

    def footer(self) -> list[str]:
        """The reasons, most important first."""
        return reasons_footer(self.verdict)

    # The report's view (ntkscope.report): what the HTML page draws.
    def heading(self) -> str:
        """The page's subtitle."""
        e = self.evidence
        width = "" if e.width is None else f", width {e.width}"
        return f"{self.model}{width} ({self.parameters:,} parameters, {self.inputs})"

    def loss_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, losses)`` of the run at the width."""
        return np.asarray(self.training.loss_steps), np.asarray(self.training.losses)

    def change_points(self) -> tuple[list[int], list[float]]:
        """``(steps, changes)``: 0 at step 0 and the change where the run stopped."""
        c = self.training.ntk_change
        return ([0] if c is None else [0, self.training.steps]), ([0.0] if c is None
                                                                  else [0.0, float(c)])


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# ---------------------------------------------------------------------------------------------
# Running a check


def check_model(
    factory: Callable[..., nn.Module] | str,
    *,
    dataset: str = "mnist",
    samples: int = 128,
    inits: int = CHECK_MODEL_INITS,
    probes: int = PROBES,
    loss: str = "mse",
    lr: float | None = None,
    lr_scale: float | None = None,
    steps: int = STEPS,
    loss_fraction: float | None = LOSS_FRACTION,
    width: int | None = None,
    width2: int | str | None = "auto",
    input_shape: str | tuple[int, ...] | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    thresholds: Thresholds = THRESHOLDS,
    quiet: bool = True,
) -> ModelCheckResult:
    """Is the model in the NTK regime? ``R`` at initialization, training runs, a verdict.

    Args:
        factory: a callable returning an ``nn.Module`` (initialization ``i``:
            ``torch.manual_seed(seed + i); factory()``), or its name ``FILE.py:FACTORY`` /
            ``package.module:factory`` (:func:`ntkscope.generic.load_factory`).
        dataset: ``mnist``, ``fashion-mnist``, ``gaussian`` (:func:`ntkscope.datasets.
            load_dataset`, ``samples`` class-balanced samples by ``seed``) or a file
            ``FILE.npz`` (:func:`ntkscope.generic.load_npz`; its first ``samples`` rows),
            through :func:`ntkscope.generic.model_inputs`: flat rows go in flat for a model
            whose first layer is ``nn.Linear``, else as ``(S, 1, 28, 28)`` images, or shaped
            ``input_shape``; a file's ``x`` with more than two axes as stored.
        inits, probes: ``R`` from ``inits`` initializations on the first ``probes`` samples
            (:func:`ntkscope.generic.init_randomness`, ``executor`` / ``workers``).
        loss, lr, lr_scale, steps, loss_fraction: the run (:func:`ntkscope.generic.fit`):
            ``mse`` or ``cross-entropy`` (targets: module docstring), ``lr`` or ``lr_scale *
            lr_max`` (default ``0.5 lr_max``), until the loss is at most ``loss_fraction``
            times its initial value or ``steps`` steps.
        width, width2: for a factory taking ``width=``: the width checked (default: the
            factory's default) and the second width (``"auto"``: :func:`model_second_width`;
            an int; ``None``: no comparison). Ignored (no comparison) for other factories.
        thresholds: the verdict's :class:`ntkscope.verdict.Thresholds`.
        quiet: no progress bars.

    Returns:
        a :class:`ModelCheckResult`.

    Raises:
        NtkscopeInputError: a bad argument, a factory that fails, data that does not fit the
            model, targets the loss cannot use, or any error of ``init_randomness`` / ``fit``.
    """
    import torch

    from ntkscope.generic import (
        FitConfig,
        fit,
        init_model,
        init_randomness,
        load_factory,
        model_inputs,
    )
    from ntkscope.generic._factory import ModelFactory

    start = time.perf_counter()
    if isinstance(factory, str):
        factory = load_factory(factory)
    if not callable(factory):
        raise NtkscopeInputError(f"factory: expected a callable returning an nn.Module or "
                                 f"FILE.py:FACTORY, got {type(factory).__name__}")
    name = (factory.spec if isinstance(factory, ModelFactory)
            else getattr(factory, "__qualname__", repr(factory)))
    fn = factory.fn if isinstance(factory, ModelFactory) else factory
    if loss not in LOSSES:
        raise NtkscopeInputError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    samples = positive_int("samples", samples, minimum=2)
    inits = positive_int("inits", inits, minimum=2)
    probes = min(positive_int("probes", probes), samples)
    steps = positive_int("steps", steps)
    seed = positive_int("seed", seed, minimum=0)
    if lr_scale is not None:
        lr_scale = float(positive("lr_scale", lr_scale))
    if not isinstance(thresholds, Thresholds):
        raise NtkscopeInputError(f"thresholds: expected Thresholds, got {thresholds!r}")
    config = FitConfig(loss=loss, lr=lr, lr_scale=lr_scale, max_steps=steps,
                       loss_fraction=loss_fraction)
    if not (isinstance(dataset, str) and (dataset.lower().endswith(".npz")
                                          or dataset.lower() in DATASET_NAMES)):
        dataset_name(dataset)  # raises the data sets' own message
    takes_width, default_width = _accepts_width(fn)
    if width is not None:
        if not takes_width:
            raise NtkscopeInputError(f"width: {name} takes no width= argument")
        width = positive_int("width", width)
    elif takes_width:
        width = default_width
    build: Callable[[], nn.Module] = (factory if width is None or not takes_width
                                      else functools.partial(fn, width=width))
    w2: int | None = None
    if takes_width and width is not None and width2 is not None:
        if isinstance(width2, str):
            if width2 != "auto":
                raise NtkscopeInputError(f"second_width: expected a width, 'auto' or None, got "
                                         f"{width2!r}")
            w2 = model_second_width(fn, width)
        else:
            w2 = positive_int("second_width", width2)
            if w2 == width:
                raise NtkscopeInputError(f"second_width: must differ from the width {width}")
    # The model of seed `seed`, its inputs (float64: the kernels and runs are float64 whatever
    # the model's dtype) and its targets.
    with torch.random.fork_rng(devices=[]):
        model = init_model(build, seed).to(torch.float64)
    inputs = model_inputs(model, dataset, samples, seed, data_dir=data_dir,
                          input_shape=input_shape)
    x, shape = inputs.x, inputs.shape
    data = _data(inputs)
    with torch.no_grad():
        model.eval()
        try:
            out = model(x[:2])
        except Exception as exc:
            raise NtkscopeInputError(
                f"model: {name} failed on inputs of shape {tuple(x[:2].shape)}: "
                f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(out, torch.Tensor):
        raise NtkscopeInputError(f"model: {name} returned {type(out).__name__}, expected a "
                                 "tensor of outputs")
    outputs = int(out[0].numel())
    with torch.random.fork_rng(devices=[]):
        model = init_model(build, seed)  # afresh, as the factory builds it (fit casts a copy)
    parameters = _count(model)
    y, baseline, what = _targets(loss, outputs, data)
    if baseline <= 0:
        raise NtkscopeInputError("samples: all targets are equal; the check needs at least two "
                                 "classes")
    inputs_text = inputs.describe()

    # Randomness at initialization.
    clock = time.perf_counter()
    rnd = init_randomness(build, x[:probes], inits=inits, seed=seed, executor=executor,
                          workers=workers, quiet=quiet)
    seconds = {"randomness": time.perf_counter() - clock}

    # Training, at the width and at the second width.
    clock = time.perf_counter()
    tr = fit(model, x, y, config, quiet=quiet)
    seconds["training"] = time.perf_counter() - clock
    second = None
    widths = None
    if w2 is not None:
        assert width is not None
        clock = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            wide = init_model(functools.partial(fn, width=w2), seed)
        second = fit(wide, x, y, config, quiet=quiet)
        seconds["second_width"] = time.perf_counter() - clock
        widths = WidthChange.of((width, w2), (tr.ntk_change, second.ntk_change),
                                (tr.steps, second.steps), (tr.stop_reason, second.stop_reason))

    evidence = Evidence(
        samples=samples, ratio=float(rnd.ratio),
        ratio_ci=None if rnd.ratio_ci is None else (float(rnd.ratio_ci[0]),
                                                    float(rnd.ratio_ci[1])),
        ntk_change=tr.ntk_change, steps=tr.steps, stop_reason=tr.stop_reason,
        loss_drop=tr.min_loss / tr.initial_loss if tr.initial_loss > 0 else math.nan,
        unexplained=tr.min_loss / baseline, train_steps=steps,
        lr_scale=config.lr_scale,
        loss_fraction=config.loss_fraction, width_change=widths, ess=float(rnd.ess),
        ratio_is_lower_bound=bool(rnd.ratio_is_lower_bound), inits=int(rnd.inits),
        model=name, width=width,
    )
    seconds["total"] = time.perf_counter() - start
    return ModelCheckResult(
        evidence=evidence, verdict=judge(evidence, thresholds), model=name,
        parameters=parameters, outputs=outputs, inputs=inputs_text,
        input_shape=[samples, *shape], loss=loss, targets=what, randomness=rnd, training=tr,
        second=second, dataset=data.name, data_source=inputs.source, data_note=inputs.note,
        seed=seed, probes=probes, thresholds=thresholds, seconds=seconds,
    )
