"""How random is the NTK of any model at initialization? (paper Section 3; CONVENTIONS section 9)

:func:`init_randomness` draws the kernels ``Theta0_k`` (``k = 0 .. N-1``) of ``N``
initializations of a model factory, initialization ``k`` being ``torch.manual_seed(seed + k);
factory()`` (:func:`ntkscope.generic.init_kernels`), and summarises them by

* per input ``x_s``: ``R_s = E[Theta0(x_s,x_s)^2] / E[Theta0(x_s,x_s)]^2`` (the trace kernel's
  diagonal, ``sum_a Theta_{ss,aa}``), with the bootstrap interval and the tail diagnostic of the
  MLP sampler (:mod:`ntkscope.statistics`; a lower bound without interval when the ESS is too
  small);
* the mean kernel ``Theta_bar = (1/N) sum_k Theta0_k`` (estimates ``E Theta0``);
* the relative standard deviation of the whole kernel::

      kernel_std = sqrt(V / B),   V = sum_k |Theta0_k - Theta_bar|_F^2 / (N - 1),
                                  B = |Theta_bar|_F^2 - V / N

  ``V`` is unbiased for ``E|Theta0 - E Theta0|_F^2`` and ``B`` for ``|E Theta0|_F^2`` (the
  ratio and its square root are not unbiased); its standard error is the delete-one-chunk
  jackknife over the chunks (below).

The initializations run as cells of the sweep engine (:func:`ntkscope.sweep.run_sweep`):
chunk ``[start, start + count)`` is one cell whose config holds the factory's import spec,
the SHA-256 of its source file, the SHA-256 of the inputs, the seed, output, parameters, dtype,
device and the range, so a store keeps finished chunks across runs (resume after a kill) and
chunks of other inputs or factories are never mixed in. A cell's samples are
``[diagonals (count x S), M2_c, sum_k Theta0_k (flattened)]`` with ``M2_c =
sum_{k in chunk} |Theta0_k - mean_chunk|_F^2``; chunks combine exactly (Chan et al.'s
pairwise variance).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ntkscope.defaults import CONFIDENCE, INITS, MIN_ESS, RESAMPLES
from ntkscope.generic._factory import ModelFactory, load_factory
from ntkscope.generic._inputs import Inputs, _leaves, _skeleton
from ntkscope.generic._randomness import init_kernels
from ntkscope.statistics import (
    check_confidence,
    format_ratio,
    ratio_bootstrap_ci,
    ratio_is_lower_bound,
    second_moment_ratio,
    tail_ess,
)
from ntkscope.validation import NtkscopeInputError, positive, positive_int

__all__ = ["KIND", "InitRandomnessResult", "factory_spec", "init_randomness",
           "inputs_fingerprint", "randomness_cell"]

#: Sweep-cell kind of a chunk of initializations.
KIND = "init_randomness"
#: Part of every chunk's config: bump when the meaning of the stored samples changes.
FORMAT_VERSION = 1
OUTPUTS = ("trace", "diagonal", "full")
EXECUTORS = ("local", "dask", "inline")
#: Seconds a chunk (one cell) aims at when ``chunk`` is not given.
CELL_SECONDS = 4.0
#: At least this many chunks when there are enough initializations (the jackknife of
#: ``kernel_std`` and the parallelism need several).
MIN_CHUNKS = 16
#: ``executor="local"`` computes in this process when the whole job is estimated below this
#: many seconds (starting worker processes that import torch costs more).
LOCAL_MIN_SECONDS = 10.0
#: The jackknife standard error of ``kernel_std`` is given from this many chunks on.
MIN_JACKKNIFE_CHUNKS = 8
#: Inputs listed by :meth:`InitRandomnessResult.rows`.
MAX_ROWS = 5
_PLAN_KIND = "init_randomness_plan"
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# --------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class InitRandomnessResult:
    """NTK randomness at initialization of a model factory on ``S`` inputs.

    Per input ``s`` (arrays of length ``S``):

    Attributes:
        ratios: ``R_s = mean_k(t_ks^2) / mean_k(t_ks)^2``, ``t_ks = Theta0_k(x_s, x_s)`` (trace
            over outputs), a lower bound where :attr:`lower_bounds`.
        ratio_cis: BCa bootstrap interval per input (``confidence``, ``resamples`` resamples,
            :func:`ntkscope.statistics.ratio_bootstrap_ci` seeded by ``seed``), ``None``
            where ``R_s`` is a lower bound.
        esses: tail diagnostic ``(sum t^2)^2 / sum t^4`` per input.
        lower_bounds: :func:`ntkscope.statistics.ratio_is_lower_bound` per input.
        theta: the draws ``t``, ``(inits, S)``.

    The summary a verdict reads is the worst input, ``worst = argmax ratios``:
    :attr:`ratio`, :attr:`ratio_ci`, :attr:`ess`, :attr:`ratio_is_lower_bound`.

    Whole kernel:

    Attributes:
        mean_kernel: ``(1/N) sum_k Theta0_k`` (float64 tensor; ``(S, S)`` trace, ``(S,)``
            diagonal, ``(S, S, O, O)`` full).
        kernel_std: ``sqrt(V / B)`` with ``V = sum_k |Theta0_k - mean|_F^2 / (N - 1)`` and
            ``B = |mean|_F^2 - V/N`` (both unbiased; ``B = |mean|_F^2`` if that were
            ``<= 0``): the relative standard deviation ``sqrt(E|Theta0 - E Theta0|_F^2) /
            |E Theta0|_F`` of the kernel of ``output``.
        kernel_std_se: its delete-one-chunk jackknife standard error, ``None`` with fewer
            than :data:`MIN_JACKKNIFE_CHUNKS` chunks.

    Bookkeeping: ``model`` (the factory's spec, or its repr when it has none), ``inits``,
    ``seed``, ``output``, ``chunk`` (initializations per cell), ``chunks``, ``computed`` and
    ``cached`` (cells computed by this call / found in the store), ``executor`` (the one used),
    ``seconds``, ``inputs`` (a description of the inputs, set by the command line).
    """

    model: str
    inits: int
    seed: int
    output: str
    ratios: np.ndarray
    ratio_cis: tuple[tuple[float, float] | None, ...]
    esses: np.ndarray
    lower_bounds: np.ndarray
    mean_kernel: torch.Tensor = field(repr=False)
    kernel_std: float
    kernel_std_se: float | None
    chunk: int
    chunks: int
    computed: int
    cached: int
    executor: str
    seconds: float
    confidence: float = CONFIDENCE
    theta: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False)
    inputs: str = ""

    @property
    def n_inputs(self) -> int:
        """Number of inputs ``S``."""
        return int(self.ratios.shape[0])

    @property
    def worst(self) -> int:
        """Index of the input with the largest ``R_s``."""
        return int(np.argmax(self.ratios))

    @property
    def ratio(self) -> float:
        """``R`` of the worst input."""
        return float(self.ratios[self.worst])

    @property
    def ratio_ci(self) -> tuple[float, float] | None:
        """Interval of the worst input's ``R`` (``None``: a lower bound)."""
        return self.ratio_cis[self.worst]

    @property
    def ess(self) -> float:
        """Tail ESS of the worst input."""
        return float(self.esses[self.worst])

    @property
    def ratio_is_lower_bound(self) -> bool:
        """Whether the worst input's ``R`` is a lower bound."""
        return bool(self.lower_bounds[self.worst])

    @property
    def mean_diag(self) -> np.ndarray:
        """Sample mean of ``Theta0(x_s, x_s)`` per input."""
        return self.theta.mean(axis=0)

    @property
    def std_diag(self) -> np.ndarray:
        """Sample standard deviation (``ddof=1``) of ``Theta0(x_s, x_s)`` per input."""
        return self.theta.std(axis=0, ddof=1)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """The summary (the keys of ``ntkscope ntk-variance --model ... --json``): the worst
        input's ``ratio``, ``ratio_ci``, ``ratio_is_lower_bound``, ``ess``; per input
        ``ratios``, ``ratio_cis``, ``esses``, ``lower_bounds``, ``mean_diag``, ``std_diag``;
        ``kernel_std`` (``kernel_std_se``); bookkeeping. ``samples``: also ``theta`` and
        ``mean_kernel`` as nested lists."""
        out: dict[str, Any] = {
            "model": self.model,
            "ratio": self.ratio,
            "ratio_ci": None if self.ratio_ci is None else list(self.ratio_ci),
            "ratio_is_lower_bound": self.ratio_is_lower_bound,
            "ess": self.ess,
            "worst": self.worst,
            "ratios": self.ratios.tolist(),
            "ratio_cis": [None if c is None else list(c) for c in self.ratio_cis],
            "esses": self.esses.tolist(),
            "lower_bounds": [bool(b) for b in self.lower_bounds],
            "mean_diag": self.mean_diag.tolist(),
            "std_diag": self.std_diag.tolist(),
            "kernel_std": self.kernel_std,
            "kernel_std_se": self.kernel_std_se,
            "inputs": self.n_inputs,
            "inits": self.inits,
            "seed": self.seed,
            "output": self.output,
            "confidence": self.confidence,
            "chunk": self.chunk,
            "chunks": self.chunks,
            "computed": self.computed,
            "cached": self.cached,
            "executor": self.executor,
            "seconds": self.seconds,
        }
        if self.inputs:
            out["inputs_described"] = self.inputs
        if samples:
            out["theta"] = self.theta.tolist()
            out["mean_kernel"] = self.mean_kernel.tolist()
        return out

    def title(self) -> str:
        """``NTK randomness at initialization: zoo:mnist_cnn, 16 inputs, 200 inits``."""
        return (f"NTK randomness at initialization: {self.model}, {self.n_inputs} inputs, "
                f"{self.inits:,} inits")

    def rows(self) -> list[tuple[str, Any]]:
        """The key/value table of ``ntkscope ntk-variance --model`` (``R`` of the
        :data:`MAX_ROWS` largest inputs, the worst first)."""
        n_lower = int(np.sum(self.lower_bounds))
        se = "" if self.kernel_std_se is None else f" +- {self.kernel_std_se:.3g}"
        order = np.argsort(-self.ratios, kind="stable")[:MAX_ROWS]
        per_input = [(f"  R of input {s}", format_ratio(
            float(self.ratios[s]), self.ratio_cis[s], float(self.esses[s]), self.inits))
            for s in order[1:]]
        head: list[tuple[str, Any]] = [("inputs", self.inputs)] if self.inputs else []
        return [
            *head,
            (f"R of the worst input ({self.worst})", self.ratio_text()),
            *per_input,
            ("R over inputs (min, median, max)",
             f"{np.min(self.ratios):.4g}, {np.median(self.ratios):.4g}, "
             f"{np.max(self.ratios):.4g}"),
            ("inputs with R a lower bound", f"{n_lower} of {self.n_inputs}"),
            ("|Theta0 - E Theta0|_F / |E Theta0|_F", f"{self.kernel_std:.4g}{se}"),
            ("kernel", self.output),
            ("inits", self.inits),
            ("chunks", f"{self.chunks} of <= {self.chunk} inits: {self.computed} computed, "
                       f"{self.cached} from the store"),
            ("executor", self.executor),
            ("seconds", round(self.seconds, 3)),
        ]

    def ratio_text(self) -> str:
        """The worst input's ``R`` for people (:func:`ntkscope.statistics.format_ratio`)."""
        return format_ratio(self.ratio, self.ratio_ci, self.ess, self.inits)


# --------------------------------------------------------------------------------------------
# Naming the factory (cell configs are JSON: the factory travels as an import spec)


def _file_spec(path: str | Path, attr: str) -> str:
    return f"{Path(path).expanduser().resolve()}:{attr}"


def _normalized_spec(spec: str) -> str:
    """``spec`` with a file path made absolute (workers may start elsewhere)."""
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        return _file_spec(where, attr)
    return spec


def factory_spec(fn: Any) -> str | None:
    """An import spec (``/abs/FILE.py:NAME`` or ``package.module:NAME``) from which worker
    processes rebuild ``fn``, or ``None`` (a lambda, a local function, a ``functools.partial``,
    a function of an interactive session).

    A :class:`~ntkscope.generic.ModelFactory` gives its ``spec`` (file paths made absolute);
    a function or class defined at module level gives ``module:qualname`` when that module
    imports by name and holds it there, else ``FILE:qualname`` of the file that defines it
    (a script's ``__main__``, a file loaded by :func:`load_factory`).
    """
    if isinstance(fn, ModelFactory):
        return _normalized_spec(fn.spec)
    qualname = getattr(fn, "__qualname__", None)
    module_name = getattr(fn, "__module__", None)
    if not isinstance(qualname, str) or not isinstance(module_name, str) or "<" in qualname:
        return None
    module = sys.modules.get(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn:
        return None
    if module_name != "__main__" and not module_name.startswith("_ntkscope_model_"):
        try:
            if importlib.util.find_spec(module_name) is not None:
                return f"{module_name}:{qualname}"
        except (ImportError, ValueError):
            pass
    file = getattr(module, "__file__", None)
    return _file_spec(file, qualname) if file else None


def _source_digest(spec: str) -> str | None:
    """SHA-256 of the file that defines the factory of ``spec`` (``None`` if none is found):
    an edited model file gives new cells instead of stale ones."""
    where, _, _ = spec.rpartition(":")
    path: str | None
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = where
    else:
        try:
            found = importlib.util.find_spec(where)
        except (ImportError, ValueError):
            found = None
        path = found.origin if found is not None and found.has_location else None
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=16)
def _loaded(spec: str) -> ModelFactory:
    """The factory of ``spec``, loaded once per process."""
    return load_factory(spec)


def inputs_fingerprint(x: Any) -> str:
    """SHA-256 of the inputs: their structure, every tensor leaf's dtype, shape and bytes, and
    the non-tensor leaves' ``repr``."""
    h = hashlib.sha256()
    h.update(repr(_skeleton(x)).encode())
    for path, t in _leaves(x, "x"):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{path}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if not isinstance(x, torch.Tensor):
        h.update(repr(_map_repr(x)).encode())
    return h.hexdigest()


def _map_repr(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, dict):
        return [(repr(k), _map_repr(v)) for k, v in value.items()]
    if isinstance(value, (tuple, list)):
        return [_map_repr(v) for v in value]
    return repr(value)


# --------------------------------------------------------------------------------------------
# One chunk (the cell function)


def _chunk_samples(K: torch.Tensor, output: str) -> np.ndarray:
    """``[diagonals (count x S), M2_c, sum_k K_k (flat)]`` of a chunk's kernels ``K``."""
    K = K.detach().to("cpu", torch.float64)
    if output == "trace":
        diag = K.diagonal(dim1=1, dim2=2)
    elif output == "diagonal":
        diag = K
    else:  # (count, S, S, O, O) -> trace of the O x O block of (x_s, x_s)
        diag = K.diagonal(dim1=1, dim2=2).diagonal(dim1=1, dim2=2).sum(-1)
    flat = K.reshape(K.shape[0], -1)
    total = flat.sum(0)
    m2 = float(((flat - total / flat.shape[0]) ** 2).sum())
    return np.concatenate([diag.reshape(-1).numpy(), [m2], total.numpy()])


def randomness_cell(factory: Callable[[], nn.Module] | None, x: Any,
                    forward: Callable[..., Any] | None, max_memory: int | str | None,
                    config: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """Sweep cell: the kernels of initializations ``[start, start + count)`` (``config``) of
    the factory (``factory``, or loaded from ``config["factory"]`` when ``None``) on ``x``;
    samples as described in the module docstring, summary ``{"count": count}``."""
    fn = factory if factory is not None else _loaded(config["factory"])
    dtype = None if config["dtype"] is None else _DTYPES[config["dtype"]]
    K = init_kernels(fn, x, seed=config["seed"], start=config["start"], count=config["count"],
                     output=config["output"], forward=forward, params=config["params"],
                     dtype=dtype, device=config["device"], max_memory=max_memory)
    return {"count": int(config["count"])}, _chunk_samples(K, config["output"])


# --------------------------------------------------------------------------------------------
# Combining chunks


@dataclass(frozen=True)
class _Chunk:
    count: int
    diag: np.ndarray  # (count, S)
    m2: float
    total: np.ndarray  # flat sum of the kernels


def _parse(samples: np.ndarray, count: int, n_inputs: int) -> _Chunk:
    d = count * n_inputs
    return _Chunk(count, samples[:d].reshape(count, n_inputs), float(samples[d]),
                  samples[d + 1:])


def _kernel_std(chunks: Sequence[_Chunk]) -> tuple[np.ndarray, float]:
    """Mean kernel (flat) and ``kernel_std`` of the pooled chunks (pairwise M2)."""
    n = sum(c.count for c in chunks)
    mean = sum(c.total for c in chunks) / n
    m2 = sum(c.m2 + c.count * float(np.sum((c.total / c.count - mean) ** 2)) for c in chunks)
    v = m2 / (n - 1)
    b = float(np.sum(mean * mean))
    if b == 0.0:
        raise NtkscopeInputError("model: the mean kernel is 0 (the outputs do not depend on "
                                 "the parameters); the kernel's relative std is undefined")
    b_unbiased = b - v / n
    return mean, math.sqrt(v / (b_unbiased if b_unbiased > 0 else b))


def _jackknife_se(chunks: Sequence[_Chunk]) -> float | None:
    """Delete-one-chunk jackknife standard error of ``kernel_std``."""
    g = len(chunks)
    if g < MIN_JACKKNIFE_CHUNKS:
        return None
    values = np.array([_kernel_std([c for j, c in enumerate(chunks) if j != i])[1]
                       for i in range(g)])
    return float(math.sqrt((g - 1) / g * np.sum((values - values.mean()) ** 2)))


def _per_input(theta: np.ndarray, confidence: float, resamples: int, seed: int,
               min_ess: float) -> tuple[np.ndarray, tuple, np.ndarray, np.ndarray]:
    n = theta.shape[0]
    ratios, esses, lowers, cis = [], [], [], []
    for s in range(theta.shape[1]):
        t = theta[:, s]
        if not np.any(t > 0):
            raise NtkscopeInputError(
                f"model: Theta0(x_{s}, x_{s}) is 0 in every initialization (the output does "
                "not depend on the parameters at this input); R is undefined")
        ess = tail_ess(t)
        lower = ratio_is_lower_bound(ess, n, min_ess)
        ratios.append(second_moment_ratio(t))
        esses.append(ess)
        lowers.append(lower)
        cis.append(None if lower else ratio_bootstrap_ci(t, confidence, resamples, seed))
    return np.array(ratios), tuple(cis), np.array(esses), np.array(lowers, dtype=bool)


# --------------------------------------------------------------------------------------------
# The entry point


def _check_params(params: Any) -> list[str] | None:
    if params is None:
        return None
    if isinstance(params, str) or not isinstance(params, Sequence) \
            or not all(isinstance(p, str) for p in params):
        raise NtkscopeInputError(f"params: expected a list of parameter names, got {params!r}")
    return list(params)


def _check_dtype(dtype: Any) -> str | None:
    if dtype is None:
        return None
    for name, dt in _DTYPES.items():
        if dtype == dt or dtype == name:
            return name
    raise NtkscopeInputError(f"dtype: expected torch.float64, torch.float32 or None, got "
                             f"{dtype!r}")


def _resolve_factory(factory: Any) -> tuple[Callable[[], nn.Module], str | None]:
    if isinstance(factory, str):
        loaded = load_factory(factory)
        return loaded, factory_spec(loaded)
    if isinstance(factory, nn.Module):
        raise NtkscopeInputError(
            "factory: got a model; pass a function of no arguments that builds it (e.g. "
            "lambda: MyNet()), so each initialization is a fresh model")
    if inspect.ismodule(factory) or not callable(factory):
        raise NtkscopeInputError(
            f"factory: expected a callable of no arguments returning an nn.Module (or a spec "
            f"FILE.py:FACTORY), got {type(factory).__name__}")
    return factory, factory_spec(factory)


def _open_store(store: Any, stack: Any) -> Any:
    from ntkscope.store import Store

    if store is None:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ntkscope-randomness-"))
        return stack.enter_context(Store(Path(tmp) / "store.sqlite"))
    if isinstance(store, Store):
        return store
    if isinstance(store, (str, Path)):
        return stack.enter_context(Store(store))
    raise NtkscopeInputError(f"store: expected a path or an ntkscope Store, got "
                             f"{type(store).__name__}")


def init_randomness(
    factory: Callable[[], nn.Module] | str,
    x: Any,
    *,
    inits: int = INITS,
    seed: int = 0,
    output: str = "trace",
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    store: Any = None,
    chunk: int | None = None,
    forward: Callable[..., Any] | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | str | None = torch.float64,
    device: str | torch.device | None = None,
    max_memory: int | str | None = None,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    min_ess: float = MIN_ESS,
    quiet: bool = True,
) -> InitRandomnessResult:
    """NTK randomness at initialization of any model: ``R_s = E[Theta0(x_s,x_s)^2] /
    E[Theta0(x_s,x_s)]^2`` per input, the mean kernel and the kernel's relative std.

    Initialization ``k`` is ``torch.manual_seed(seed + k); model = factory()`` (CONVENTIONS
    section 9), in eval mode, cast to ``dtype`` (float64; ``None``: as built) and moved to
    ``device``; its kernel is ``module_ntk(model, x, output=output, forward=forward,
    params=params)`` (:func:`ntkscope.generic.init_kernels`). ``R_s`` is read off the trace
    kernel's diagonal ``Theta0(x_s, x_s) = sum_a Theta_{ss,aa}`` whatever ``output``;
    ``output`` chooses the kernel of :attr:`InitRandomnessResult.mean_kernel` and
    :attr:`InitRandomnessResult.kernel_std` (formulas: :class:`InitRandomnessResult`).

    Args:
        factory: a callable of no arguments returning an ``nn.Module``, or a spec
            ``FILE.py:FACTORY`` / ``package.module:factory`` (:func:`load_factory`).
        x: the inputs (a tensor, or a structure of tensors, first axis the ``S`` samples).
        inits: ``N >= 2`` initializations.
        seed: initialization ``k`` uses seed ``seed + k``; seeds the bootstrap too.
        output: ``"trace"``, ``"diagonal"`` or ``"full"``.
        executor: ``"local"`` (worker processes; the factory is rebuilt in them from its
            import spec, :func:`factory_spec`; a factory without one, such as a lambda or a
            closure, runs in this process instead, and so does a job estimated below
            :data:`LOCAL_MIN_SECONDS`; a script calling this needs the ``if __name__ ==
            "__main__":`` guard, as every multiprocessing program), ``"dask"``
            (``scheduler`` address, or a local cluster) or ``"inline"`` (this process, one
            chunk after the other).
        workers: worker processes (default: all cores).
        store: a path or :class:`ntkscope.store.Store` keeping the finished chunks: a rerun
            computes only the missing ones. Default: a temporary store, removed afterwards.
        chunk: initializations per cell; default: about :data:`CELL_SECONDS` seconds of work
            (timed on one initialization, at most ``ceil(inits / MIN_CHUNKS)``), or the chunk
            size of the run this store already holds.
        forward, params, max_memory: as in :func:`ntkscope.module_ntk`.
        confidence, resamples, min_ess: of the bootstrap intervals and the lower-bound rule
            (as :func:`ntkscope.sampling.ntk_variance`).
        quiet: hide the progress bar over initializations.

    Returns:
        :class:`InitRandomnessResult`.

    Raises:
        NtkscopeInputError: bad input; a factory that fails or returns no module; a model
            :func:`ntkscope.module_ntk` refuses (checked on initialization 0 in this process
            before any cell runs); chunks that failed (stored as failed, retried by a rerun).
    """
    from contextlib import ExitStack

    from ntkscope.sweep import Cell, run_sweep

    t0 = time.perf_counter()
    fn, spec = _resolve_factory(factory)
    inits = positive_int("inits", inits, minimum=2)
    seed = positive_int("seed", seed, minimum=0)
    if output not in OUTPUTS:
        raise NtkscopeInputError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
    if executor not in EXECUTORS:
        raise NtkscopeInputError(f"executor: expected one of {', '.join(EXECUTORS)}, got "
                                 f"{executor!r}")
    if workers is not None:
        workers = positive_int("workers", workers)
    if chunk is not None:
        chunk = positive_int("chunk", chunk)
    if forward is not None and not callable(forward):
        raise NtkscopeInputError(f"forward: expected a callable, got {type(forward).__name__}")
    params_list = _check_params(params)
    dtype_name = _check_dtype(dtype)
    confidence = check_confidence(confidence)
    resamples = positive_int("resamples", resamples, minimum=10)
    min_ess_arr = positive("min_ess", min_ess)
    if min_ess_arr.ndim != 0:
        raise NtkscopeInputError(f"min_ess: expected a single number, got {min_ess!r}")
    n_inputs = Inputs.of(x).n
    forward_spec = None if forward is None else factory_spec(forward)
    named = spec is not None and (forward is None or forward_spec is not None)
    if not named:
        if executor == "dask":
            raise NtkscopeInputError(
                "executor: 'dask' workers rebuild the factory (and forward) from an import "
                "spec; define it at module level in a file or module (not a lambda or a "
                "closure), or use executor='local' / 'inline' (this process)")
        if store is not None:
            raise NtkscopeInputError(
                "store: resuming needs a factory (and forward) known by name across runs; "
                "define it at module level in a file or module (not a lambda or a closure)")
        executor = "inline"
    dev = None if device is None else str(torch.device(device))

    # Initialization 0 in this process: validates the factory, the inputs and the model
    # (errors as NtkscopeInputError here, not as failed cells) and times one initialization.
    tick = time.perf_counter()
    init_kernels(fn, x, seed=seed, start=0, count=1, output=output, forward=forward,
                 params=params_list, dtype=None if dtype_name is None else _DTYPES[dtype_name],
                 device=dev, max_memory=max_memory)
    per_init = time.perf_counter() - tick
    if executor == "local" and per_init * inits < LOCAL_MIN_SECONDS:
        executor = "inline"

    base = {
        "format": FORMAT_VERSION,
        "factory": spec if named else repr(fn),
        "factory_source": _source_digest(spec) if named else None,
        "forward": forward_spec,
        "inputs": inputs_fingerprint(x),
        "n_inputs": n_inputs,
        "seed": seed,
        "output": output,
        "params": params_list,
        "dtype": dtype_name,
        "device": dev,
    }
    with ExitStack() as stack:
        st = _open_store(store, stack)
        plan = Cell(_PLAN_KIND, base)
        if chunk is None:
            found = st.get(plan.key)
            if found is not None and found.ok and found.summary is not None:
                chunk = int(found.summary["chunk"])
            else:
                chunk = max(1, min(math.ceil(CELL_SECONDS / max(per_init, 1e-6)),
                                   math.ceil(inits / MIN_CHUNKS)))
        st.put_done(plan.key, plan.kind, plan.config, {"chunk": chunk}, np.zeros(0), None)
        cells = [Cell(KIND, {**base, "chunk": chunk, "start": lo,
                             "count": min(chunk, inits - lo)})
                 for lo in range(0, inits, chunk)]
        in_process = executor == "inline"  # else workers load the factory from its spec
        cell_fn = functools.partial(randomness_cell, fn if in_process else None, x, forward,
                                    max_memory)
        report = run_sweep(cells, cell_fn, st, executor=executor, workers=workers,
                           scheduler=scheduler, retry_failed=True, quiet=quiet, unit="init",
                           size=lambda c: int(c.config["count"]))
        if not report.ok:
            first = report.failures()[0].error or ""
            raise NtkscopeInputError(
                f"init_randomness: {report.failed} of {len(cells)} chunks failed (kept as "
                f"failed in the store; a rerun retries them): {first.splitlines()[0]}")
        parts = [_parse(r.samples, int(r.config["count"]), n_inputs)  # type: ignore[arg-type]
                 for r in report.records]

    theta = np.concatenate([p.diag for p in parts])
    ratios, cis, esses, lowers = _per_input(theta, confidence, resamples, seed,
                                            float(min_ess_arr))
    mean_flat, kstd = _kernel_std(parts)
    shape = _kernel_shape(output, n_inputs, mean_flat.size)
    return InitRandomnessResult(
        model=spec if named else repr(fn),
        inits=inits,
        seed=seed,
        output=output,
        ratios=ratios,
        ratio_cis=cis,
        esses=esses,
        lower_bounds=lowers,
        mean_kernel=torch.from_numpy(mean_flat.reshape(shape)),
        kernel_std=kstd,
        kernel_std_se=_jackknife_se(parts),
        chunk=chunk,
        chunks=len(cells),
        computed=report.computed,
        cached=report.cached,
        executor=executor,
        seconds=time.perf_counter() - t0,
        confidence=confidence,
        theta=theta,
    )


def _kernel_shape(output: str, n: int, size: int) -> tuple[int, ...]:
    if output == "trace":
        return (n, n)
    if output == "diagonal":
        return (n,)
    o = math.isqrt(size // (n * n))
    return (n, n, o, o)
