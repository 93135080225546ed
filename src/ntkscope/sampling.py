"""NTK randomness at initialization (paper Section 3; CONVENTIONS sections 1, 3 and 6).

For ``N`` independent initializations of the network of CONVENTIONS section 1 this module draws
the joint sample ``(Theta0(X), f0(X))`` on ``S`` inputs ``X`` (``S x M0``), where

    Theta0(x, x') = sum_{l=1}^{L+1} <delta^l(x), delta^l(x')> (<x^{l-1}(x), x^{l-1}(x')> + 1)

(``delta^l = df/dh^l``, ``x^0 = x``), and summarises the randomness of ``Theta0(x, x)`` by

    R = E[Theta0(x, x)^2] / E[Theta0(x, x)]^2          (Hanin & Nica; paper Section 3)

with a bootstrap (BCa) confidence interval (:func:`ntk_variance`).

Two samplers draw from the same law:

* ``"dense"``: full Gaussian weights (:meth:`ntkscope.MLP.init`) and the exact empirical NTK
  (:func:`ntkscope.empirical_ntk`); ``O(M^2 S)`` work per layer.
* ``"lowrank"``: the exact low-rank sampler of CONVENTIONS section 6, ``O(M S^2)`` per layer.
  Layer ``l`` only ever meets its inputs ``A`` (``S x M_{l-1}``) and backpropagated signals
  ``D`` (``S x M_l``). With ``Q`` an orthonormal basis containing the row span of ``A``
  (``A^T = Q R``), ``P = I - Q Q^T``::

      G = W Q ~ N(0, sw2/M_{l-1}) entrywise (M_l x r),   W A^T = G R       (forward)
      W^T D^T = Q G^T D^T + P Z B                                          (backward)

  with ``Z ~ N(0, sw2/M_{l-1})`` entrywise (``M_{l-1} x k``) and any ``B`` (``k x S``) with
  ``B^T B = D D^T``; here ``B`` is the triangular factor of a QR decomposition of ``D^T``
  (exact also when ``D D^T`` is singular, ``k = min(S, M_l)``). ``P W^T`` is independent of
  ``G`` and ``D`` depends on ``W`` only through ``G``, so nothing is approximated. Valid only
  at initialization.

Overflow: signals of deep chaotic networks grow like ``(sw2/2)^L`` (ReLU). The low-rank sampler
runs on the scaled-pass engine of :mod:`ntkscope.engine` (the operator above is
:class:`ntkscope.engine.LowRankLayer`): if a signal leaves the safe range, every row of ``A``
and ``D`` is kept as an exact power of two times a normalized row and ``Theta0`` accumulated
the same way, so it never overflows (ReLU is positively homogeneous, ``relu(c h) = c relu(h)``;
bounded activations keep their signals bounded). Results beyond the float64 range stay
available as ``theta_scaled`` and ``theta_log_scale``; nothing non-finite is ever returned
silently.

Reproducibility: initialization ``i`` with seed ``s`` draws its Gaussians from its own generator
seeded by ``numpy.random.SeedSequence([s, i])`` (:func:`ntkscope.networks.network_seed`, as
:meth:`MLP.init` does), so results do not depend on ``chunk``. The two samplers consume the
Gaussians differently: the same seed gives draws from the same law, not the same numbers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ntkscope.defaults import CONFIDENCE, INITS, INPUT_DIM, MAX_INITS, MIN_ESS, RESAMPLES
from ntkscope.engine import fold_log_scale, lowrank_draw, lowrank_noise_size, unscale_log
from ntkscope.networks import MLP, NtkscopeRangeError, check_device, check_dtype
from ntkscope.progress import Progress
from ntkscope.spec import NetworkSpec, as_spec
from ntkscope.statistics import (
    format_ess,
    format_ratio,
    ratio_bootstrap_ci,
    ratio_is_lower_bound,
    second_moment_ratio,
    tail_ess,
)
from ntkscope.threads import torch_threads
from ntkscope.validation import (
    NtkscopeInputError,
    finite_array,
    positive,
    positive_int,
)

METHODS = ("lowrank", "dense")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Working memory aimed at when ``chunk`` is not given (bytes).
_CHUNK_BUDGET = 256 * 2**20


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class NTKSamples:
    """``N`` independent draws of ``(Theta0(X), f0(X))`` on ``S`` inputs.

    The true values are ``Theta0_i = theta_scaled[i] * exp(theta_log_scale[i])`` and
    ``f0_i = f_scaled[i] * exp(f_log_scale[i])``. Whenever every value fits in float64 the
    log-scales are 0 and the ``*_scaled`` arrays hold the values themselves; use :attr:`theta`
    and :attr:`f` for them.

    Attributes:
        theta_scaled: ``(N, S, S)``, or ``(N, S)`` (the diagonal ``Theta0(x_s, x_s)``) when
            sampled with ``diagonal=True``.
        theta_log_scale, f_log_scale: ``(N,)`` natural-log scale factors.
        f_scaled: ``(N, S)`` network outputs.
        method, seed, start: how they were drawn (init ``i`` used ``SeedSequence([seed,
            start + i])`` for ``"lowrank"``, :meth:`MLP.init` with ``start`` for ``"dense"``).
    """

    theta_scaled: np.ndarray
    theta_log_scale: np.ndarray
    f_scaled: np.ndarray
    f_log_scale: np.ndarray
    method: str
    seed: int
    start: int = 0
    diagonal: bool = False

    @property
    def inits(self) -> int:
        """Number of initializations ``N``."""
        return int(self.theta_scaled.shape[0])

    @property
    def theta(self) -> np.ndarray:
        """``Theta0`` itself; raises :class:`NtkscopeRangeError` beyond the float64 range."""
        return unscale_log(self.theta_scaled, self.theta_log_scale, "theta")

    @property
    def f(self) -> np.ndarray:
        """``f0(X)`` itself, ``(N, S)``; raises :class:`NtkscopeRangeError` beyond float64."""
        return unscale_log(self.f_scaled, self.f_log_scale, "f")

    def theta_diag_scaled(self) -> np.ndarray:
        """``(N, S)`` diagonal ``Theta0(x_s, x_s)`` in units of ``exp(theta_log_scale)``."""
        if self.diagonal:
            return self.theta_scaled
        return np.diagonal(self.theta_scaled, axis1=1, axis2=2)

    def log_theta_diag(self) -> np.ndarray:
        """``(N, S)`` array of ``log Theta0(x_s, x_s)`` (always finite: ``Theta0(x,x) >= 1``)."""
        return np.log(self.theta_diag_scaled()) + self.theta_log_scale[:, None]


@dataclass
class NTKVarianceResult:
    """NTK randomness at initialization for one input ``x`` with ``q0 = 1`` (paper Section 3).

    Attributes:
        ratio: ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` estimated as
            ``mean(theta^2) / mean(theta)^2`` over the ``inits`` draws (``R >= 1``); a lower
            bound when :attr:`ratio_is_lower_bound`.
        ratio_ci: bootstrap (BCa) confidence interval ``(low, high)`` for ``R``; ``None`` when
            ``R`` is a lower bound (the interval would be too low and too narrow).
        ess: the tail diagnostic ``(sum t^2)^2 / sum t^4`` of the draws ``t = Theta0(x, x)``
            (:func:`ntkscope.statistics.tail_ess`; ``1 <= ess <= inits``).
        ratio_is_lower_bound: ``ess`` below ``min_ess`` (default
            :data:`ntkscope.defaults.MIN_ESS`) and below half the draws
            (:func:`ntkscope.statistics.ratio_is_lower_bound`): the heavy tail of ``Theta0``
            is not sampled well enough, the draws support only ``R >= ratio``
            (``docs/ntk-variance.md``).
        mean, std: sample mean and standard deviation (``ddof=1``) of ``Theta0(x, x)``.
        theory_mean: ``E Theta0(x,x)`` from mean-field theory at these finite widths
            (:attr:`ntkscope.theory.MeanField.ntk_mean_diag`).
        hanin_nica: ReLU only: ``exp(5 sum_l 1/M_l)`` (``= exp(5 L/M)`` for constant width),
            Hanin & Nica's large-``L, M`` asymptotics of ``R`` for ``(sw2, sb2) = (2, 0)``;
            ``None`` for other activations.
        theta, f: the raw per-initialization ``Theta0(x, x)`` and ``f0(x)``, shape ``(inits,)``.
        seconds: wall-clock time of sampling and statistics.
        network: the network (its ``input_dim`` fixed).
    """

    inits: int
    method: str
    seed: int
    ratio: float
    ratio_ci: tuple[float, float] | None
    ess: float
    ratio_is_lower_bound: bool
    mean: float
    std: float
    theory_mean: float
    hanin_nica: float | None
    seconds: float
    network: NetworkSpec
    confidence: float = 0.95
    theta: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    f: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    # The architecture is read off ``network`` (one place), not stored twice.
    @property
    def activation(self) -> str:
        return self.network.activation.name

    @property
    def sigma_w2(self) -> float:
        return self.network.sigma_w2

    @property
    def sigma_b2(self) -> float:
        return self.network.sigma_b2

    @property
    def depth(self) -> int:
        return self.network.depth

    @property
    def width(self) -> tuple[int, ...]:
        return self.network.width

    @property
    def input_dim(self) -> int:
        return self.network.resolved_input_dim()

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """The summary (the keys of ``ntkscope ntk-variance --json``); raw draws if ``samples``.

        ``ratio_ci`` is ``None`` (JSON ``null``) when ``ratio_is_lower_bound``.
        """
        out: dict[str, Any] = {
            "ratio": self.ratio,
            "ratio_ci": None if self.ratio_ci is None else [self.ratio_ci[0], self.ratio_ci[1]],
            "ratio_is_lower_bound": self.ratio_is_lower_bound,
            "ess": self.ess,
            "mean": self.mean,
            "std": self.std,
            "theory_mean": self.theory_mean,
            "inits": self.inits,
            "method": self.method,
            "seconds": self.seconds,
        }
        if self.hanin_nica is not None:
            out["hanin_nica"] = self.hanin_nica
        if samples:
            out["theta"] = self.theta.tolist()
            out["f"] = self.f.tolist()
        return out

    def ratio_text(self) -> str:
        """``R`` for people: ``1.234 [1.2, 1.27]`` (95% interval), or ``R >= x (lower bound:
        heavy tail, ESS e of N)``."""
        return format_ratio(self.ratio, self.ratio_ci, self.ess, self.inits)

    def title(self) -> str:
        """``NTK variance at initialization: relu, sw2=2, sb2=0, L=20, M=10, M0=784``."""
        return f"NTK variance at initialization: {self.network.describe()}, M0={self.input_dim}"

    def rows(self) -> list[tuple[str, Any]]:
        """The table of ``ntkscope ntk-variance``."""
        name = "R = E[Theta0^2]/E[Theta0]^2"
        if self.ratio_ci is None:
            rows: list[tuple[str, Any]] = [(name, self.ratio_text())]
        else:
            lo, hi = self.ratio_ci
            rows = [(name, self.ratio),
                    (f"{self.confidence:.0%} bootstrap CI", f"[{lo:.6g}, {hi:.6g}]")]
        rows += [
            ("ESS of Theta0^2 weights", format_ess(self.ess, self.inits)),
            ("mean Theta0(x,x)", self.mean),
            ("std Theta0(x,x)", self.std),
            ("theory E Theta0(x,x)", self.theory_mean),
        ]
        if self.hanin_nica is not None:
            rows.append(("Hanin-Nica exp(5L/M)", self.hanin_nica))
        rows += [("inits", self.inits), ("method", self.method),
                 ("seconds", round(self.seconds, 3))]
        return rows


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class _Setup:
    net: MLP
    device: torch.device
    dtype: torch.dtype


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``; CUDA must be available."""
    dev = check_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise NtkscopeInputError(f"device: unknown device {device!r}; choose 'cpu' or 'cuda'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NtkscopeInputError(
            f"device: {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)"
        )
    return dev


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    dt = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else check_dtype(dtype)
    if dt not in (torch.float32, torch.float64):
        raise NtkscopeInputError(f"dtype: expected float32 or float64, got {dtype!r}")
    return dt  # type: ignore[return-value]


def _setup(spec: NetworkSpec, device: Any, dtype: Any) -> _Setup:
    """The MLP of ``spec`` (its ``input_dim`` fixed) on a checked device and dtype."""
    return _Setup(spec.mlp(), resolve_device(device), _resolve_dtype(dtype))


def _inputs(X: Any) -> np.ndarray:
    arr = finite_array("X", X)
    if arr.ndim != 2:
        raise NtkscopeInputError(
            f"X: expected a 2-D array of inputs (samples x input_dim), got shape {arr.shape}"
        )
    return arr


# --------------------------------------------------------------------------------------------
# Sampling


def sample_ntk(
    net: NetworkSpec | MLP,
    X: np.ndarray,
    inits: int,
    seed: int = 0,
    method: str = "lowrank",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float64,
    chunk: int | None = None,
    *,
    diagonal: bool = False,
    start: int = 0,
    progress: bool = False,
    threads: int | None = None,
) -> NTKSamples:
    """Draw ``(Theta0(X), f0(X))`` for ``inits`` independent initializations.

    Args:
        net: the network, a :class:`ntkscope.NetworkSpec` or an :class:`MLP` (``W^l_ij ~
            N(0, sw2/M_{l-1})``, ``b^l_i ~ N(0, sb2)``, ``L+1`` weight layers); its
            ``input_dim`` is taken from ``X`` (a spec fixing another one is an error).
        X: inputs, ``(S, M0)``.
        inits: number ``N`` of initializations.
        seed, start: initialization ``i`` (``0 <= i < N``) is number ``start + i`` of ``seed``.
        method: ``"lowrank"`` (exact, ``O(M S^2)`` per layer) or ``"dense"``
            (:meth:`MLP.init` + :func:`empirical_ntk`, ``O(M^2 S)``).
        device, dtype: where and in which precision to compute (results are float64 NumPy).
        chunk: initializations per batch (default: about 256 MiB of working memory). Results
            do not depend on it.
        diagonal: return only ``Theta0(x_s, x_s)``, shape ``(N, S)``.
        progress: show a progress bar on stderr.
        threads: CPU threads torch may use while sampling (restored afterwards). Default: 1
            for ``"lowrank"`` on the CPU (its operations are small; idle OpenMP workers
            spinning between them cost up to 10x on a loaded machine), unchanged otherwise.

    Returns:
        :class:`NTKSamples`.

    Raises:
        NtkscopeInputError: bad input (including CUDA requested but not available).
        NtkscopeRangeError: (an ``NtkscopeInputError``) the dense sampler overflowed (use
            ``"lowrank"``), or a custom unbounded activation produced non-finite values.
    """
    spec = as_spec(net)
    Xa = _inputs(X)
    S, m0 = Xa.shape
    setup = _setup(spec.with_input_dim(m0), device, dtype)
    inits = positive_int("inits", inits)
    seed = positive_int("seed", seed, minimum=0)
    start = positive_int("start", start, minimum=0)
    if method not in METHODS:
        raise NtkscopeInputError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(diagonal, bool):
        raise NtkscopeInputError(f"diagonal: expected True or False, got {diagonal!r}")
    if chunk is None:
        per_init = _bytes_per_init(method, setup.net.layer_widths, S, setup.dtype)
        chunk = int(max(1, min(inits, _CHUNK_BUDGET // max(per_init, 1))))
    else:
        chunk = positive_int("chunk", chunk)
    if threads is None and method == "lowrank" and setup.device.type == "cpu":
        threads = 1
    elif threads is not None:
        threads = positive_int("threads", threads)
    Xt = torch.as_tensor(Xa, dtype=setup.dtype, device=setup.device)
    draw = lowrank_draw if method == "lowrank" else _dense_draw

    parts: list[tuple[torch.Tensor, ...]] = []
    with torch_threads(threads), Progress(
        inits, f"NTK samples ({method})", unit="init", quiet=not progress
    ) as bar:
        for lo in range(0, inits, chunk):
            n = min(chunk, inits - lo)
            with torch.no_grad() if method == "lowrank" else contextlib.nullcontext():
                th, th_log, f, f_log = draw(setup, Xt, seed, start + lo, n, diagonal)
            parts.append(tuple(t.detach().to("cpu", torch.float64) for t in (th, th_log, f, f_log)))
            bar.update(n=n)
    th, th_log, f, f_log = (torch.cat(p).numpy() for p in zip(*parts, strict=True))
    th, th_log = fold_log_scale(th, th_log)
    f, f_log = fold_log_scale(f, f_log)
    return NTKSamples(th, th_log, f, f_log, method, seed, start, diagonal)


def _bytes_per_init(method: str, layer_widths: tuple[int, ...], S: int, dtype: torch.dtype) -> int:
    item = torch.finfo(dtype).bits // 8
    fan_in, dims = layer_widths[:-1], layer_widths[1:]
    if method == "dense":
        # weights, their gradients/Jacobian rows and activations (a generous factor of 4)
        pairs = zip(fan_in, dims, strict=True)
        return 4 * item * sum((mi + 1) * mo + S * (mi + mo) for mi, mo in pairs)
    return 2 * item * (lowrank_noise_size(layer_widths, S) + sum(
        mi * S * 2 + S * mi + S * S for mi in fan_in))


# --------------------------------------------------------------------------------------------
# The dense sampler


def _dense_draw(
    setup: _Setup, X: torch.Tensor, seed: int, first: int, count: int, diagonal: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full weights from :meth:`MLP.init` and :func:`empirical_ntk` (no rescaling)."""
    from ntkscope.ntk import empirical_ntk

    net = setup.net
    params = net.init(batch=count, seed=seed, dtype=setup.dtype, device=setup.device, start=first)
    f = net.apply(params, X)
    theta = empirical_ntk(net, params, X, diagonal=diagonal)  # both checked for finiteness
    zeros = torch.zeros((count,), dtype=torch.float64, device=X.device)
    return theta, zeros, f, zeros


# --------------------------------------------------------------------------------------------
# R and its tail diagnostic (statistics: ntkscope.statistics)


def hanin_nica(hidden: Sequence[int]) -> float | None:
    """``exp(5 sum_l 1/M_l)``: Hanin & Nica's asymptotic ``R`` for ReLU, ``(sw2, sb2) = (2, 0)``.

    For constant width ``M`` and depth ``L`` this is ``exp(5 L / M)``; ``None`` when it
    exceeds the float64 range.
    """
    beta = sum(1.0 / m for m in hidden)
    return math.exp(5.0 * beta) if 5.0 * beta < 709.0 else None


def ntk_variance(
    net: NetworkSpec | MLP,
    inits: int = INITS,
    seed: int = 0,
    method: str = "lowrank",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float64,
    chunk: int | None = None,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    progress: bool = False,
    target_ess: float | None = None,
    max_inits: int | None = None,
    min_ess: float = MIN_ESS,
) -> NTKVarianceResult:
    """NTK randomness at initialization: ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` (Section 3).

    The input is ``x = (1, ..., 1)`` in ``R^M0`` (``q0 = |x|^2/M0 = 1``; the law of
    ``Theta0(x, x)`` depends on ``x`` only through ``|x|``). ``R``, its bootstrap interval and
    the tail diagnostic ``ess = (sum t^2)^2 / sum t^4`` (:func:`ntkscope.statistics.tail_ess`)
    are computed from ``t = Theta0 / max Theta0`` (all scale-free), so they stay finite for
    networks whose NTK exceeds float64. Below ``min_ess`` effective draws (and below half the
    draws) ``R`` is reported as a lower bound (``ratio_is_lower_bound``, ``ratio_ci = None``;
    :func:`ntkscope.statistics.ratio_is_lower_bound`, ``docs/ntk-variance.md``).

    Args:
        net: the network (:class:`ntkscope.NetworkSpec` or :class:`MLP`); ``M0`` is its
            ``input_dim``, 784 where the spec leaves it open.
        inits: number of initializations (at least 2); with ``target_ess``, the first batch.
        seed: seeds the initializations and the bootstrap.
        method, device, dtype, chunk: see :func:`sample_ntk`.
        confidence, resamples: of the bootstrap interval.
        progress: show a progress bar on stderr.
        target_ess: keep drawing initializations (batches continuing ``start``, so the draws
            are those of one call with the final ``inits``) until ``ess >= target_ess`` or
            ``max_inits`` draws; ``None`` draws ``inits`` once.
        max_inits: the budget of ``target_ess`` (default
            :data:`ntkscope.defaults.MAX_INITS`); at least ``inits`` and ``target_ess``.
        min_ess: the lower-bound threshold (default :data:`ntkscope.defaults.MIN_ESS`;
            ``1`` always gives an interval).

    Returns:
        :class:`NTKVarianceResult` (``theory_mean`` from :func:`ntkscope.theory.propagate`).

    Raises:
        NtkscopeInputError: bad input, or ``E Theta0`` beyond the float64 range.
        NtkscopeRangeError: see :func:`sample_ntk`.
    """
    from ntkscope.theory import propagate

    t0 = time.perf_counter()
    spec = as_spec(net)
    spec = spec.with_input_dim(spec.resolved_input_dim(INPUT_DIM))
    setup = _setup(spec, device, dtype)
    mlp = setup.net
    inits = positive_int("inits", inits, minimum=2)
    target, budget = _adaptive(target_ess, max_inits, inits)
    min_ess = _scalar_positive("min_ess", min_ess)
    with np.errstate(over="ignore", invalid="ignore"):  # propagate raises on non-finite values
        mf = propagate(mlp.activation, mlp.sigma_w2, mlp.sigma_b2, mlp.depth, width=mlp.widths,
                       input_dim=mlp.input_dim, q0=1.0, pairs=False)
    x = np.ones((1, mlp.input_dim))

    def draw(n: int, start: int) -> NTKSamples:
        return sample_ntk(mlp, x, n, seed=seed, method=method, device=setup.device,
                          dtype=setup.dtype, chunk=chunk, diagonal=True, start=start,
                          progress=progress)

    samples = draw(inits, 0)
    log_theta = samples.log_theta_diag()[:, 0]
    ess = tail_ess(np.exp(log_theta - np.max(log_theta)))
    parts = [samples]
    while target is not None and ess < target and samples.inits < budget:
        # ESS grows about linearly with the draws; aim a little past the target, at most
        # doubling (a heavy tail makes the estimate optimistic).
        grow = min(2.0, max(1.1, 1.2 * target / ess))
        n = min(budget, math.ceil(samples.inits * grow)) - samples.inits
        parts.append(draw(n, samples.inits))
        samples = _concat(parts)
        log_theta = samples.log_theta_diag()[:, 0]
        ess = tail_ess(np.exp(log_theta - np.max(log_theta)))
    top = float(np.max(log_theta))
    rel = np.exp(log_theta - top)  # in (0, 1]
    ratio = second_moment_ratio(rel)
    lower = ratio_is_lower_bound(ess, samples.inits, min_ess)
    ci = None if lower else ratio_bootstrap_ci(rel, confidence, resamples, seed)
    try:
        theta, f = samples.theta[:, 0], samples.f[:, 0]
    except NtkscopeRangeError:
        raise NtkscopeRangeError(
            f"depth: Theta0(x, x) or f0(x) exceeds the float64 range at depth {mlp.depth}; "
            "use sample_ntk for their log-scales"
        ) from None
    scale = math.exp(top)  # top <= log(max theta) < 710: theta is representable
    mean = float(np.mean(rel)) * scale
    std = float(np.std(rel, ddof=1)) * scale
    return NTKVarianceResult(
        inits=samples.inits,
        method=method,
        seed=int(seed),
        ratio=ratio,
        ratio_ci=ci,
        ess=ess,
        ratio_is_lower_bound=lower,
        mean=mean,
        std=std,
        theory_mean=float(mf.ntk_mean_diag),
        hanin_nica=hanin_nica(mlp.widths) if mlp.activation.closed_form == "relu" else None,
        seconds=time.perf_counter() - t0,
        network=spec,
        confidence=float(confidence),
        theta=theta,
        f=f,
    )


def _scalar_positive(name: str, value: Any) -> float:
    arr = positive(name, value)
    if arr.ndim != 0:
        raise NtkscopeInputError(f"{name}: expected a single number, got shape {arr.shape}")
    return float(arr)


def _adaptive(target_ess: Any, max_inits: Any, inits: int) -> tuple[float | None, int]:
    """Validated ``(target_ess, budget)`` of :func:`ntk_variance`."""
    if target_ess is None:
        if max_inits is not None:
            raise NtkscopeInputError("max_inits: is the budget of target_ess; give target_ess "
                                     "too (or use inits for a fixed number of draws)")
        return None, inits
    target = _scalar_positive("target_ess", target_ess)
    budget = positive_int("max_inits", MAX_INITS if max_inits is None else max_inits,
                          minimum=inits)
    if target > budget:
        raise NtkscopeInputError(
            f"target_ess: {target:g} cannot be reached with max_inits = {budget} draws (the "
            "ESS is at most the number of draws); raise max_inits or lower target_ess"
        )
    return target, budget


def _concat(parts: list[NTKSamples]) -> NTKSamples:
    """Consecutive draws (``start`` continuing) as one :class:`NTKSamples`; each row keeps its
    own log-scale."""
    first = parts[0]
    cat = [np.concatenate([getattr(p, k) for p in parts])
           for k in ("theta_scaled", "theta_log_scale", "f_scaled", "f_log_scale")]
    return NTKSamples(*cat, first.method, first.seed, first.start, first.diagonal)
