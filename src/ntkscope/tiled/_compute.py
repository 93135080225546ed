"""``kernel_matrix``: an NTK cut into tiles, each a task writing its own zarr chunk.

With ``X1`` the first ``N`` samples of the data selection and, where ``x2_samples = N2`` is
given, ``X2`` the next ``N2`` (else ``X2 = X1``), the kernel is the trace NTK of the model of
``seed`` (``torch.manual_seed(seed); factory()``, CONVENTIONS section 9)::

    K_ij = sum_a <df_a(x1_i)/dtheta, df_a(x2_j)/dtheta>       (output="trace", N x N2)
    K_i  = K(x1_i, x1_i)                                      (output="diagonal", N)

computed as tiles of ``tile x tile`` sample pairs (upper triangle only when ``X2 = X1``) by
:func:`ntkscope.module_ntk`, on the executors of the sweep engine
(:func:`ntkscope.sweep.execute_cells`: this process, local worker processes, Dask). Each tile
task builds the model itself (from the factory's import spec), checks its parameters'
fingerprint against the store's, reads its input blocks from the store and writes its chunk
then its done marker (layout: :mod:`ntkscope.tiled._store`).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ntkscope._version import __version__
from ntkscope.tiled._store import (
    FORMAT,
    KernelStore,
    checksum,
    create_or_resume,
    open_kernel,
    tile_grid,
)
from ntkscope.validation import NtkscopeInputError, positive_int

__all__ = ["KernelConfig", "KernelResult", "KernelTilesFailed", "WeightsMismatch",
           "kernel_info", "kernel_matrix", "parameters_fingerprint", "tile_task"]

OUTPUTS = ("trace", "diagonal")
EXECUTORS = ("local", "dask", "inline")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Default tile side (samples).
TILE = 512
#: A failing tile is tried this many more times before it is reported.
RETRIES = 2
#: Tiles named in a failure message.
SHOWN = 8
KIND = "kernel_tile"


class WeightsMismatch(RuntimeError):
    """A tile task built a model whose parameters differ from the store's (never retried)."""


class KernelTilesFailed(RuntimeError):
    """Tiles that failed every try; ``tiles`` lists them, ``result`` is the store's state
    (the finished tiles are kept: a rerun computes only the missing ones)."""

    def __init__(self, message: str, tiles: list[tuple[int, int]], result: KernelResult
                 ) -> None:
        super().__init__(message)
        self.tiles = tiles
        self.result = result


# --------------------------------------------------------------------------------------------
# Configuration and result


@dataclass(frozen=True)
class KernelConfig:
    """What :func:`kernel_matrix` computes and how (validated on construction).

    Attributes:
        model: the factory, ``FILE.py:FACTORY`` / ``package.module:factory``, or a callable
            of no arguments returning an ``nn.Module`` (worker processes and Dask need one
            they can import: a spec, or a function defined at module level).
        out: the store, a directory or an fsspec URL (``s3://...``, ``memory://...``).
        dataset: ``mnist``, ``fashion-mnist``, ``cifar10``, ``gaussian`` or ``FILE.npz``
            (:func:`ntkscope.generic.model_inputs`); ``data_dir``, ``input_dim`` and
            ``input_shape`` as there.
        samples: ``N``, the samples ``X1``; ``x2_samples``: ``N2``, ``X2`` = the next ``N2``
            samples of the same selection (of ``N + N2`` samples), or None for ``X2 = X1``.
        output: ``"trace"`` (``N x N2``) or ``"diagonal"`` (``K(x_i, x_i)``, ``N``).
        tile: tile side in samples (one zarr chunk per tile).
        executor: ``"local"`` (``workers`` processes; 1, the default: this process),
            ``"dask"`` (``scheduler``, or a local cluster of ``workers``, default all cores)
            or ``"inline"`` (this process).
        dtype: ``"float64"`` (default) or ``"float32"``: the model's, the inputs' and the
            stored kernel's dtype.
        device: where tiles are computed (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        seed: the model of seed ``seed`` (and the data selection's seed).
        data_seed: the data selection's seed when it differs from ``seed`` (kernels of two
            models' seeds on the same inputs).
        retries: further tries of a failing tile before it is reported.
        max_memory: per-tile budget of :func:`ntkscope.module_ntk` (bytes or ``"8GiB"``;
            default: its default, divided among ``workers`` local CPU workers).
        quiet: no progress bar.
    """

    model: Any
    out: str
    dataset: str = "mnist"
    samples: int = 1000
    x2_samples: int | None = None
    output: str = "trace"
    tile: int = TILE
    executor: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    data_seed: int | None = None
    retries: int = RETRIES
    max_memory: int | str | None = None
    data_dir: str | None = None
    input_dim: int | None = None
    input_shape: str | tuple[int, ...] | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.model, nn.Module):
            raise NtkscopeInputError(
                "model: got a model; pass a function of no arguments that builds it (or a "
                "spec FILE.py:FACTORY), so every tile task builds the same weights")
        if not isinstance(self.model, str) and not callable(self.model):
            raise NtkscopeInputError(f"model: expected FILE.py:FACTORY or a callable, got "
                                     f"{type(self.model).__name__}")
        if not isinstance(self.out, (str, os.PathLike)) or not os.fspath(self.out):
            raise NtkscopeInputError(f"out: expected a path or URL, got {self.out!r}")
        object.__setattr__(self, "out", os.fspath(self.out))
        if not isinstance(self.dataset, (str, os.PathLike)):
            raise NtkscopeInputError(f"dataset: expected a name or FILE.npz, got "
                                     f"{self.dataset!r}")
        object.__setattr__(self, "dataset", os.fspath(self.dataset))
        object.__setattr__(self, "samples", positive_int("samples", self.samples))
        if self.x2_samples is not None:
            object.__setattr__(self, "x2_samples", positive_int("x2_samples", self.x2_samples))
        if self.output not in OUTPUTS:
            raise NtkscopeInputError(f"output: expected one of {', '.join(OUTPUTS)}, got "
                                     f"{self.output!r}")
        if self.output == "diagonal" and self.x2_samples is not None:
            raise NtkscopeInputError("x2_samples: the diagonal K(x_i, x_i) has no X2")
        object.__setattr__(self, "tile", positive_int("tile", self.tile))
        if self.executor not in EXECUTORS:
            raise NtkscopeInputError(f"executor: expected one of {', '.join(EXECUTORS)}, got "
                                     f"{self.executor!r}")
        if self.workers is not None:
            object.__setattr__(self, "workers", positive_int("workers", self.workers))
        if self.scheduler is not None and (self.executor != "dask"
                                           or not isinstance(self.scheduler, str)):
            raise NtkscopeInputError(f"scheduler: an address tcp://HOST:PORT, with executor "
                                     f"'dask' (got {self.scheduler!r}, executor "
                                     f"{self.executor!r})")
        names = {str(v): k for k, v in DTYPES.items()} | {k: k for k in DTYPES}
        key = str(self.dtype)
        if key not in names:
            raise NtkscopeInputError(f"dtype: expected float64 or float32, got {self.dtype!r}")
        object.__setattr__(self, "dtype", names[key])
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise NtkscopeInputError(f"device: expected cpu, cuda or cuda:N, got "
                                     f"{self.device!r}") from None
        object.__setattr__(self, "device", str(dev))
        object.__setattr__(self, "seed", positive_int("seed", self.seed, minimum=0))
        if self.data_seed is not None:
            object.__setattr__(self, "data_seed",
                               positive_int("data_seed", self.data_seed, minimum=0))
        object.__setattr__(self, "retries", positive_int("retries", self.retries, minimum=0))
        if not isinstance(self.quiet, bool):
            raise NtkscopeInputError(f"quiet: expected True or False, got {self.quiet!r}")


@dataclass(frozen=True, eq=False)
class KernelResult:
    """The state of a kernel store: what it holds and how much is done; after a run of
    :func:`kernel_matrix` also what this run did.

    Attributes:
        path: the store (absolute path or URL); ``shape``: ``(N1, N2)`` or ``(N1,)``.
        tiles_done, tiles_total: tile tasks done and in all (upper triangle when symmetric).
        attrs: the store's attributes (model, parameters, data selection, seed, ...).
        computed, cached: tiles this run computed / found done (None: not a run).
        failed: tiles that failed every try in this run.
        executor, seconds: of this run (None: not a run).
    """

    path: str
    shape: tuple[int, ...]
    tiles_done: int
    tiles_total: int
    attrs: dict[str, Any] = field(repr=False)
    computed: int | None = None
    cached: int | None = None
    failed: tuple[tuple[int, int], ...] = ()
    executor: str | None = None
    seconds: float | None = None

    @property
    def complete(self) -> bool:
        """Every tile done."""
        return self.tiles_done == self.tiles_total

    def store(self) -> KernelStore:
        """The store, opened (:func:`ntkscope.tiled.open_kernel`)."""
        return open_kernel(self.path)

    def load(self) -> np.ndarray:
        """The whole kernel as a NumPy array (refused while tiles are missing)."""
        return self.store().load()

    def to_dict(self) -> dict[str, Any]:
        """Path, shape, tiles done/total, this run's counts and every attribute."""
        return {"path": self.path, "shape": list(self.shape), "tiles_done": self.tiles_done,
                "tiles_total": self.tiles_total, "complete": self.complete,
                "computed": self.computed, "cached": self.cached,
                "failed": [list(t) for t in self.failed], "executor": self.executor,
                "seconds": self.seconds, "attrs": dict(self.attrs)}

    def title(self) -> str:
        """``Tiled NTK K.zarr: 1000 x 1000 trace, 10 of 10 tiles done``."""
        dims = " x ".join(str(v) for v in self.shape)
        return (f"Tiled NTK {self.path}: {dims} {self.attrs.get('output')}, "
                f"{self.tiles_done} of {self.tiles_total} tiles done")

    def rows(self) -> list[tuple[str, Any]]:
        """The key/value table of ``ntkscope kernel`` and ``ntkscope kernel info``."""
        a = self.attrs
        x2 = a.get("x2_samples")
        data = f"{a.get('dataset')}, seed {a.get('data_seed')}: X1 = {a.get('samples')} samples"
        data += f", X2 = the next {x2}" if x2 else " (X2 = X1: upper-triangle tiles)"
        rows: list[tuple[str, Any]] = [
            ("model", f"{a.get('model')}, seed {a.get('seed')}"),
            ("parameters (sha256)", f"{str(a.get('parameters'))[:16]}... "
                                    f"({a.get('parameter_count'):,} values)"),
            ("data", data),
            ("input shape", " x ".join(str(v) for v in a.get("input_shape", []))),
            ("inputs (sha256)", f"{str(a.get('inputs'))[:16]}..."),
            ("dtype, tile", f"{a.get('dtype')}, {a.get('tile')} samples"),
            ("tiles", f"{self.tiles_done} of {self.tiles_total} done"
                      + ("" if self.complete else
                         f" ({self.tiles_total - self.tiles_done} missing: rerun the same "
                         "command to finish)")),
        ]
        if self.computed is not None:
            rows.append(("this run", f"{self.computed} computed, {self.cached} already "
                                     f"done, {len(self.failed)} failed ({self.executor})"))
        if self.seconds is not None:
            rows.append(("seconds", round(self.seconds, 3)))
        rows.append(("ntkscope", a.get("version")))
        return rows


def kernel_info(path: str | os.PathLike[str]) -> KernelResult:
    """What the store at ``path`` holds and how much of it is done (reads no tiles)."""
    ks = open_kernel(path)
    return _state(ks)


def _state(ks: KernelStore, **run: Any) -> KernelResult:
    total = len(ks.tiles())
    return KernelResult(ks.path, ks.shape, total - len(ks.missing()), total, dict(ks.attrs),
                        **run)


# --------------------------------------------------------------------------------------------
# The model of a seed, fingerprinted


def parameters_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers: names, dtypes, shapes and bytes (on the
    CPU), in registration order."""
    h = hashlib.sha256()
    for kind, named in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for name, t in named:
            t = t.detach().to("cpu").contiguous()
            h.update(f"{kind}:{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_BUILD_LOCK = threading.Lock()


def _built(factory: Any, seed: int, dtype: str, device: str) -> tuple[nn.Module, str, int]:
    """:func:`_build`, one thread at a time (building seeds torch's global generator)."""
    with _BUILD_LOCK:
        return _build(factory, seed, dtype, device)


@functools.lru_cache(maxsize=2)
def _build(factory: Any, seed: int, dtype: str, device: str) -> tuple[nn.Module, str, int]:
    """``(model, fingerprint, parameter count)`` of the model of ``seed``: ``torch.manual_seed
    (seed); factory()`` (the caller's random state kept), fingerprinted as built, then in eval
    mode, cast to ``dtype`` and on ``device``; once per process and arguments."""
    from ntkscope.generic._factory import init_model
    from ntkscope.generic._init_randomness import _loaded
    from ntkscope.generic._randomness import prepared

    fn = _loaded(factory) if isinstance(factory, str) else factory
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        model = init_model(fn, seed)
    fp = parameters_fingerprint(model)
    count = sum(p.numel() for p in model.parameters())
    return prepared(model, DTYPES[dtype], device), fp, count


# --------------------------------------------------------------------------------------------
# One tile (the task)


def tile_task(factory: Callable[[], nn.Module] | None, config: dict[str, Any]
              ) -> tuple[dict[str, Any], np.ndarray]:
    """Compute tile ``(config["i"], config["j"])`` of the store ``config["store"]`` and write
    it: kernel chunk(s) first, then the done marker (:func:`ntkscope.tiled._store.checksum`).

    The model is ``factory`` (in this process) or rebuilt from ``config["model"]`` (a spec);
    its parameters' fingerprint must equal the store's (else :class:`WeightsMismatch`,
    nothing written). Returns ``({"i", "j"}, empty samples)`` for the executor.
    """
    from ntkscope.generic._api import module_ntk

    ks = open_kernel(config["store"])
    model, fp, _ = _built(factory if factory is not None else config["model"],
                          ks.attrs["seed"], ks.attrs["dtype"], config["device"])
    if fp != ks.attrs["parameters"]:
        raise WeightsMismatch(
            f"the model built here ({config['model']}, seed {ks.attrs['seed']}) has "
            f"parameters {fp[:16]}..., the store's are {ks.attrs['parameters'][:16]}... (a "
            "factory that does not build the same weights every time, another torch "
            "version or file?); tile not written")
    i, j = int(config["i"]), int(config["j"])
    x = ks.group["x"]
    n1 = ks.shape[0]
    rows = ks.rows(i)
    dev = torch.device(config["device"])
    xa = torch.from_numpy(x[rows]).to(dev)
    max_memory = config.get("max_memory")
    if ks.output == "diagonal":
        tile = module_ntk(model, xa, output="diagonal", max_memory=max_memory)
    elif ks.symmetric and i == j:
        tile = module_ntk(model, xa, max_memory=max_memory)
    else:
        cols = ks.cols(j)
        lo = 0 if ks.symmetric else n1
        xb = torch.from_numpy(x[lo + cols.start:lo + cols.stop]).to(dev)
        tile = module_ntk(model, xa, xb, max_memory=max_memory)
    block = tile.detach().to("cpu").numpy().astype(ks.kernel.dtype, copy=False)
    if not np.all(np.isfinite(block)):
        raise FloatingPointError(f"tile {(i, j)}: the kernel has non-finite values (NaN or "
                                 "inf); not written")
    if ks.output == "diagonal":
        ks.kernel[rows] = block
    else:
        ks.kernel[rows, ks.cols(j)] = block
        if ks.symmetric and i != j:
            ks.kernel[ks.cols(j), rows] = block.T
    ks.group["done"][i, j] = checksum(block)
    return {"i": i, "j": j}, np.zeros(0)


# --------------------------------------------------------------------------------------------
# The driver


def _resolve(model: Any) -> tuple[Callable[[], nn.Module], str | None]:
    from ntkscope.generic._init_randomness import _resolve_factory

    return _resolve_factory(model)


def kernel_matrix(model: Any = None, *, config: KernelConfig | None = None, **options: Any
                  ) -> KernelResult:
    r"""The NTK of the model of ``seed`` on a data set, computed as tiles into a zarr store.

    ``kernel_matrix("net.py:build", out="K.zarr", dataset="mnist", samples=4000)`` (options:
    the fields of :class:`KernelConfig`), or ``kernel_matrix(config=KernelConfig(...))``.
    The kernel (module docstring) is ``K_ij = sum_a <df_a(x1_i)/dtheta, df_a(x2_j)/dtheta>``
    (CONVENTIONS section 9; :func:`ntkscope.module_ntk` per tile, float64 by default).

    Resumable: the store keeps every finished tile (its chunk, then its done marker); a
    rerun with the same arguments computes only the missing tiles (after a SIGKILL too) and
    gives the same numbers. A store holding another kernel (other weights, inputs, seed,
    output, dtype, tile or sizes) is refused before anything is written. Each tile task
    builds the model itself and refuses to write a tile of other weights than the store's.

    Returns:
        :class:`KernelResult` (the store's state and this run's counts); read the kernel with
        ``result.load()`` or reduce it tile by tile (:func:`ntkscope.tiled.kernel_trace`, ...).

    Raises:
        NtkscopeInputError: bad options, a factory or data set that fails, a model
            :func:`ntkscope.module_ntk` refuses (checked on two samples in this process
            first), a store holding another kernel.
        KernelTilesFailed: tiles that failed ``1 + retries`` times (named in the message; the
            finished ones are kept).
    """
    from ntkscope.generic._data import model_inputs
    from ntkscope.generic._init_randomness import inputs_fingerprint
    from ntkscope.sweep import Cell

    t0 = time.perf_counter()
    if config is None:
        if model is None:
            raise NtkscopeInputError("model: give the factory (FILE.py:FACTORY) or config=")
        config = KernelConfig(model, **options)
    elif model is not None or options:
        raise NtkscopeInputError("give either config= or the model and options, not both")
    cfg = config
    fn, spec = _resolve(cfg.model)
    executor = cfg.executor
    local_cluster = executor == "dask" and cfg.scheduler is None
    workers = cfg.workers or ((os.cpu_count() or 1) if local_cluster else 1)
    if executor == "local" and workers == 1:
        executor = "inline"  # one worker: this process (no process to start)
    if spec is None and executor != "inline":
        raise NtkscopeInputError(
            "model: worker processes and Dask rebuild the factory from an import spec; "
            "define it at module level in a file or module (not a lambda or a closure), or "
            "use one worker (this process)")
    here = _driver_device(cfg, executor)
    model_built, fp, count = _built(fn if spec is None else spec, cfg.seed, cfg.dtype, here)
    n1, n2 = cfg.samples, cfg.x2_samples or 0
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    data = model_inputs(model_built, cfg.dataset, n1 + n2, data_seed, data_dir=cfg.data_dir,
                        input_dim=cfg.input_dim, input_shape=cfg.input_shape)
    x = data.x.detach().to("cpu")
    _check_model(model_built, x, cfg, here)
    symmetric = n2 == 0
    shape = [n1] if cfg.output == "diagonal" else [n1, n1 if symmetric else n2]
    identity = {
        "format": FORMAT, "parameters": fp, "inputs": inputs_fingerprint(x),
        "dataset": data.name or cfg.dataset, "samples": n1, "x2_samples": cfg.x2_samples,
        "seed": cfg.seed, "data_seed": data_seed, "input_shape": list(data.shape),
        "output": cfg.output,
        "dtype": cfg.dtype, "tile": cfg.tile, "shape": shape, "symmetric": symmetric,
    }
    info = {
        "model": spec if spec is not None else repr(fn), "parameter_count": count,
        "data_source": data.source, "input_layout": data.layout, "method": "auto",
        "kernel": "K_ij = sum_a <df_a(x1_i)/dtheta, df_a(x2_j)/dtheta>" if cfg.output
                  == "trace" else "K_i = sum_a |df_a(x1_i)/dtheta|^2",
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tiles": len(tile_grid(cfg.output, n1, shape[-1], cfg.tile, symmetric)),
    }
    ks = create_or_resume(cfg.out, identity, info, x.numpy(), cfg.tile)
    todo = ks.missing()
    cached = len(ks.tiles()) - len(todo)
    max_memory = cfg.max_memory
    if max_memory is None and executor == "local" and torch.device(cfg.device).type == "cpu":
        from ntkscope.generic._memory import default_budget

        # local workers share this machine's memory: each gets its part of the default
        max_memory = default_budget(torch.device("cpu")) // workers
    base = {"store": ks.path, "model": info["model"], "device": cfg.device,
            "max_memory": max_memory}
    cells = [Cell(KIND, {**base, "i": i, "j": j}) for i, j in todo]
    task = functools.partial(tile_task, fn if spec is None else None)  # (None: by its spec)
    failed = _run_tiles(cells, task, executor, workers, cfg, cached)
    result = _state(open_kernel(ks.path), computed=len(todo) - len(failed), cached=cached,
                    failed=tuple(sorted(failed)), executor=_executor_name(executor, workers),
                    seconds=time.perf_counter() - t0)
    if failed:
        names = ", ".join(str(t) for t in sorted(failed)[:SHOWN])
        more = f" and {len(failed) - SHOWN} more" if len(failed) > SHOWN else ""
        first = next(iter(failed.values())).strip().splitlines()[0]
        raise KernelTilesFailed(
            f"{len(failed)} of {len(ks.tiles())} tiles failed after {1 + cfg.retries} tries: "
            f"{names}{more} ({first}); the {result.tiles_done} finished tiles are kept in "
            f"{ks.path}: rerun to compute the rest", sorted(failed), result)
    return result


def _executor_name(executor: str, workers: int) -> str:
    if executor == "inline":
        return "local (this process)"
    return f"{executor} ({workers} workers)" if executor == "local" else executor


def _driver_device(cfg: KernelConfig, executor: str) -> str:
    """Where this process builds and checks the model: ``cfg.device``, or the CPU when the
    tiles run on an existing Dask cluster whose workers have the GPUs this machine lacks
    (a login node)."""
    if torch.device(cfg.device).type != "cuda" or torch.cuda.is_available():
        return cfg.device
    if executor == "dask" and cfg.scheduler is not None:
        return "cpu"
    raise NtkscopeInputError("device: cuda is not available on this machine")


def _check_model(model: nn.Module, x: torch.Tensor, cfg: KernelConfig, device: str) -> None:
    """``module_ntk`` on two samples here: a model it refuses fails now, as an input error,
    not as every tile's failure."""
    from ntkscope.generic._api import module_ntk

    probe = x[: min(2, x.shape[0])].to(device)
    module_ntk(model, probe, output="diagonal", max_memory=cfg.max_memory)


def _run_tiles(cells: list[Any], task: Callable[..., Any], executor: str, workers: int,
               cfg: KernelConfig, cached: int) -> dict[tuple[int, int], str]:
    """Run the tile cells, retrying failures up to ``cfg.retries`` times; the tiles that
    failed every try, with their last error."""
    from ntkscope.progress import Progress
    from ntkscope.sweep import execute_cells

    failed: dict[tuple[int, int], str] = {}
    if not cells:
        return failed
    desc = f"tiles ({cached} done before)" if cached else "tiles"
    todo = cells
    with Progress(len(cells), desc, unit="tile", quiet=cfg.quiet) as bar:
        for attempt in range(1 + cfg.retries):
            again = []
            n = min(workers, len(todo))
            with execute_cells(todo, task, executor, n, cfg.scheduler) as outcomes:
                for cell, (_, _, error, _) in outcomes:
                    tile = (int(cell.config["i"]), int(cell.config["j"]))
                    if error is None:
                        failed.pop(tile, None)
                        bar.update()
                        continue
                    failed[tile] = error
                    final = attempt == cfg.retries or error.startswith("WeightsMismatch")
                    if final:
                        bar.update(ok=False)
                    else:
                        again.append(cell)
                        bar.write(f"tile {tile} failed ({error.splitlines()[0]}); trying "
                                  "again")
            if not again:
                break
            todo = again
    return failed

