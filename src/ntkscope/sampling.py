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

from ntkscope.activations import Activation
from ntkscope.engine import fold_log_scale, lowrank_draw, lowrank_noise_size, unscale_log
from ntkscope.networks import MLP, NtkscopeRangeError, check_device, check_dtype
from ntkscope.progress import Progress
from ntkscope.threads import torch_threads
from ntkscope.validation import (
    NtkscopeInputError,
    finite_array,
    nonnegative,
    positive,
    positive_int,
)

METHODS = ("lowrank", "dense")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Working memory aimed at when ``chunk`` is not given (bytes).
_CHUNK_BUDGET = 256 * 2**20
# Bootstrap resamples are drawn in blocks of at most this many indices.
_BOOTSTRAP_BLOCK = 2**22


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
            ``mean(theta^2) / mean(theta)^2`` over the ``inits`` draws (``R >= 1``).
        ratio_ci: bootstrap (BCa) confidence interval ``(low, high)`` for ``R``.
        mean, std: sample mean and standard deviation (``ddof=1``) of ``Theta0(x, x)``.
        theory_mean: ``E Theta0(x,x)`` from mean-field theory at these finite widths
            (:attr:`ntkscope.theory.MeanField.ntk_mean_diag`).
        hanin_nica: ReLU only: ``exp(5 sum_l 1/M_l)`` (``= exp(5 L/M)`` for constant width),
            Hanin & Nica's large-``L, M`` asymptotics of ``R`` for ``(sw2, sb2) = (2, 0)``;
            ``None`` for other activations.
        theta, f: the raw per-initialization ``Theta0(x, x)`` and ``f0(x)``, shape ``(inits,)``.
        seconds: wall-clock time of sampling and statistics.
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    depth: int
    width: tuple[int, ...]
    input_dim: int
    inits: int
    method: str
    seed: int
    ratio: float
    ratio_ci: tuple[float, float]
    mean: float
    std: float
    theory_mean: float
    hanin_nica: float | None
    seconds: float
    confidence: float = 0.95
    theta: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    f: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """The summary (the keys of ``ntkscope ntk-variance --json``); raw draws if ``samples``."""
        out: dict[str, Any] = {
            "ratio": self.ratio,
            "ratio_ci": [self.ratio_ci[0], self.ratio_ci[1]],
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


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class _Setup:
    net: MLP
    device: torch.device
    dtype: torch.dtype


def _scalar(name: str, arr: np.ndarray) -> float:
    if arr.ndim != 0:
        raise NtkscopeInputError(f"{name}: expected a single number, got shape {arr.shape}")
    return float(arr)


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


def _setup(
    activation: Any,
    sigma_w2: Any,
    sigma_b2: Any,
    depth: Any,
    width: Any,
    input_dim: Any,
    device: Any,
    dtype: Any,
) -> _Setup:
    sw2 = _scalar("sigma_w2", positive("sigma_w2", sigma_w2))
    sb2 = _scalar("sigma_b2", nonnegative("sigma_b2", sigma_b2))
    net = MLP(input_dim, width, positive_int("depth", depth), activation, sw2, sb2)
    return _Setup(net, resolve_device(device), _resolve_dtype(dtype))


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
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int | Sequence[int],
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
        activation: ``relu``, ``tanh``, ``erf``, an :class:`Activation` or a callable.
        sigma_w2, sigma_b2: ``W^l_ij ~ N(0, sw2/M_{l-1})``, ``b^l_i ~ N(0, sb2)`` (every layer).
        depth: number of hidden layers ``L`` (the network has ``L+1`` weight matrices).
        width: hidden width ``M`` or the list ``M_1..M_L``.
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
    Xa = _inputs(X)
    S, m0 = Xa.shape
    setup = _setup(activation, sigma_w2, sigma_b2, depth, width, m0, device, dtype)
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
# Statistics


def second_moment_ratio(samples: np.ndarray) -> float:
    """``R = mean(x^2) / mean(x)^2`` of positive samples (scale-free: any common unit works)."""
    x = finite_array("samples", samples).ravel()
    x = x / np.max(np.abs(x))
    return float(np.mean(x * x) / np.mean(x) ** 2)


def ratio_bootstrap_ci(
    samples: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    method: str = "bca",
) -> tuple[float, float]:
    """Bootstrap confidence interval for ``R = mean(x^2)/mean(x)^2``.

    ``resamples`` resamples of size ``N`` with replacement, drawn with
    ``default_rng(SeedSequence([seed, N]))`` and vectorised in blocks, give ratios ``R*_b``.

    * ``"percentile"``: the ``(1 -+ confidence)/2`` quantiles of ``R*``.
    * ``"bca"`` (default; Efron's bias-corrected and accelerated interval): quantiles at
      ``Phi(z0 + (z0 + z_a) / (1 - acc (z0 + z_a)))`` with ``z0 = Phi^-1(P(R* < R))`` and the
      acceleration ``acc = sum d_i^3 / (6 (sum d_i^2)^1.5)`` from the jackknife ratios
      ``R_(i)`` (``d_i = mean R_(.) - R_(i)``, computed in ``O(N)`` from leave-one-out sums).

    The draws of a right-skewed ``Theta0`` make every bootstrap interval for ``R`` undercover
    somewhat at small ``N`` (``tests/test_sampling.py`` measures BCa at ~92% for a nominal
    95% with ``N = 1000`` and a ReLU network at ``L/M = 0.3``); BCa is the closer of the two.
    """
    x = finite_array("samples", samples).ravel()
    if x.size < 2:
        raise NtkscopeInputError(f"samples: need at least 2 samples, got {x.size}")
    conf = _scalar("confidence", positive("confidence", confidence))
    if conf >= 1.0:
        raise NtkscopeInputError(f"confidence: must be < 1, got {conf:g}")
    resamples = positive_int("resamples", resamples, minimum=10)
    seed = positive_int("seed", seed, minimum=0)
    if method not in ("bca", "percentile"):
        raise NtkscopeInputError(f"method: expected 'bca' or 'percentile', got {method!r}")
    x = x / np.max(np.abs(x))
    n = x.size
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    ratios = np.empty(resamples)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    for lo in range(0, resamples, block):
        hi = min(resamples, lo + block)
        xs = x[rng.integers(0, n, size=(hi - lo, n))]
        ratios[lo:hi] = np.mean(xs * xs, axis=1) / np.mean(xs, axis=1) ** 2
    alphas = np.array([(1.0 - conf) / 2.0, (1.0 + conf) / 2.0])
    if method == "bca":
        alphas = _bca_levels(x, ratios, alphas)
    low, high = np.quantile(ratios, alphas)
    return float(low), float(high)


def _bca_levels(x: np.ndarray, ratios: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """BCa-adjusted quantile levels (see :func:`ratio_bootstrap_ci`)."""
    import scipy.special

    n, R = x.size, float(np.mean(x * x) / np.mean(x) ** 2)
    frac = np.clip(np.mean(ratios < R), 1.0 / (ratios.size + 1), ratios.size / (ratios.size + 1))
    z0 = float(scipy.special.ndtri(frac))
    jack = ((np.sum(x * x) - x * x) / (n - 1)) / ((np.sum(x) - x) / (n - 1)) ** 2
    d = np.mean(jack) - jack
    denom = 6.0 * float(np.sum(d * d)) ** 1.5
    acc = float(np.sum(d**3)) / denom if denom > 0 else 0.0
    z = scipy.special.ndtri(alphas)
    return scipy.special.ndtr(z0 + (z0 + z) / (1.0 - acc * (z0 + z)))


def hanin_nica(hidden: Sequence[int]) -> float | None:
    """``exp(5 sum_l 1/M_l)``: Hanin & Nica's asymptotic ``R`` for ReLU, ``(sw2, sb2) = (2, 0)``.

    For constant width ``M`` and depth ``L`` this is ``exp(5 L / M)``; ``None`` when it
    exceeds the float64 range.
    """
    beta = sum(1.0 / m for m in hidden)
    return math.exp(5.0 * beta) if 5.0 * beta < 709.0 else None


def ntk_variance(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    width: int | Sequence[int],
    inits: int = 1000,
    input_dim: int = 784,
    seed: int = 0,
    method: str = "lowrank",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float64,
    chunk: int | None = None,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    progress: bool = False,
) -> NTKVarianceResult:
    """NTK randomness at initialization: ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` (Section 3).

    The input is ``x = (1, ..., 1)`` in ``R^input_dim`` (``q0 = |x|^2/M0 = 1``; the law of
    ``Theta0(x, x)`` depends on ``x`` only through ``|x|``). ``R`` and its bootstrap interval
    are computed from ``Theta0 / max Theta0`` (``R`` is scale-free), so they stay finite for
    networks whose NTK exceeds float64.

    Args:
        activation, sigma_w2, sigma_b2, depth, width: the network (see :func:`sample_ntk`).
        inits: number of initializations (at least 2).
        input_dim: ``M0``.
        seed: seeds the initializations and the bootstrap.
        method, device, dtype, chunk: see :func:`sample_ntk`.
        confidence, resamples: of the bootstrap interval.
        progress: show a progress bar on stderr.

    Returns:
        :class:`NTKVarianceResult` (``theory_mean`` from :func:`ntkscope.theory.propagate`).

    Raises:
        NtkscopeInputError: bad input, or ``E Theta0`` beyond the float64 range.
        NtkscopeRangeError: see :func:`sample_ntk`.
    """
    from ntkscope.theory import propagate

    t0 = time.perf_counter()
    setup = _setup(activation, sigma_w2, sigma_b2, depth, width, input_dim, device, dtype)
    net = setup.net
    inits = positive_int("inits", inits, minimum=2)
    with np.errstate(over="ignore", invalid="ignore"):  # propagate raises on non-finite values
        mf = propagate(net.activation, net.sigma_w2, net.sigma_b2, net.depth, width=net.widths,
                       input_dim=net.input_dim, q0=1.0, pairs=False)
    x = np.ones((1, net.input_dim))
    samples = sample_ntk(net.activation, net.sigma_w2, net.sigma_b2, net.depth, net.widths, x,
                         inits, seed=seed, method=method, device=setup.device, dtype=setup.dtype,
                         chunk=chunk, diagonal=True, progress=progress)
    log_theta = samples.log_theta_diag()[:, 0]
    top = float(np.max(log_theta))
    rel = np.exp(log_theta - top)  # in (0, 1]
    ratio = second_moment_ratio(rel)
    ci = ratio_bootstrap_ci(rel, confidence, resamples, seed)
    try:
        theta, f = samples.theta[:, 0], samples.f[:, 0]
    except NtkscopeRangeError:
        raise NtkscopeRangeError(
            f"depth: Theta0(x, x) or f0(x) exceeds the float64 range at depth {net.depth}; "
            "use sample_ntk for their log-scales"
        ) from None
    scale = math.exp(top)  # top <= log(max theta) < 710: theta is representable
    mean = float(np.mean(rel)) * scale
    std = float(np.std(rel, ddof=1)) * scale
    return NTKVarianceResult(
        activation=net.activation.name,
        sigma_w2=net.sigma_w2,
        sigma_b2=net.sigma_b2,
        depth=net.depth,
        width=net.widths,
        input_dim=net.input_dim,
        inits=inits,
        method=method,
        seed=int(seed),
        ratio=ratio,
        ratio_ci=ci,
        mean=mean,
        std=std,
        theory_mean=float(mf.ntk_mean_diag),
        hanin_nica=hanin_nica(net.widths) if net.activation.closed_form == "relu" else None,
        seconds=time.perf_counter() - t0,
        confidence=float(confidence),
        theta=theta,
        f=f,
    )
