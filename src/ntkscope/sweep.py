"""A resumable sweep over a grid of cells, computed in parallel and kept in a results store.

A :class:`Cell` is one parameter combination: a ``kind`` (which computation, e.g.
``"ntk_variance"``) and a ``config`` dict (activation, sw2, sb2, depth, width, inits, seed,
...). A *cell function* ``fn(config) -> (summary, samples)`` computes it: ``summary`` is a dict
of statistics and ``samples`` the raw per-initialization values. ``fn`` must be a picklable
top-level function so worker processes can import it.

:func:`run_sweep` computes only the cells missing from the :class:`~ntkscope.store.Store`
(and, with ``retry_failed=True``, the failed ones), on local worker processes
(``executor="local"``), a Dask cluster (``executor="dask"``) or, one after the other, in the
calling process (``executor="inline"``: for cell functions worker processes cannot import,
such as closures over a user's lambda, and for debugging). Workers only compute; the
driver process receives each result as it completes and writes it in one transaction, so a
run killed at any moment leaves only complete rows and the rerun finishes the rest. The
report lists the stored rows in the order of the given cells. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import itertools
import logging
import math
import multiprocessing.context
import os
import pickle
import signal
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.progress import Progress
from ntkscope.store import CellRecord, Store, canonical, cell_key, summary_json
from ntkscope.validation import NtkscopeInputError, positive_int

EXECUTORS = ("local", "dask", "inline")
#: Seconds to wait for an existing Dask scheduler before giving up.
CONNECT_TIMEOUT = 5.0
# Thread pools a worker process limits to one thread (the workers already fill the cores).
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_MAX_ERROR_CHARS = 8000


# --------------------------------------------------------------------------------------------
# Cells and results


@dataclass(frozen=True, eq=False)
class Cell:
    """One parameter combination: a ``kind`` and a JSON-able ``config`` (seed included).

    ``key`` (computed) is the store key, :func:`ntkscope.store.cell_key`; two cells are equal
    when their keys are (``{"sw2": 2}`` and ``{"sw2": 2.0}`` are the same cell). ``config`` is
    kept as plain JSON data with floats as given; it is what the cell function receives.
    """

    kind: str
    config: Mapping[str, Any]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", cell_key(self.kind, self.config))
        object.__setattr__(self, "config", canonical(self.config, fold=False))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class CellOutput:
    """What a cell function returns (a plain ``(summary, samples)`` tuple works too)."""

    summary: Mapping[str, Any]
    samples: Any


def grid(kind: str, axes: Mapping[str, Sequence[Any]], **fixed: Any) -> list[Cell]:
    """All combinations of ``axes`` (the last axis varies fastest), plus ``fixed`` entries.

    ``grid("ntk_variance", {"sw2": [1.0, 2.0], "seed": range(3)}, depth=3)`` gives 6 cells.
    """
    names = list(axes)
    clash = set(names) & set(fixed)
    if clash:
        raise NtkscopeInputError(f"grid: {sorted(clash)} given both as an axis and fixed")
    try:
        values = [list(axes[n]) for n in names]
    except TypeError:
        raise NtkscopeInputError("grid: every axis must be a list of values") from None
    for n, v in zip(names, values, strict=True):
        if not v:
            raise NtkscopeInputError(f"grid: axis {n!r} is empty")
    return [Cell(kind, {**fixed, **dict(zip(names, combo, strict=True))})
            for combo in itertools.product(*values)]


@dataclass
class SweepReport:
    """The outcome of :func:`run_sweep`; ``records`` are in the order of the given cells."""

    cells: list[Cell]
    records: list[CellRecord]
    computed: int
    cached: int
    failed: int
    wall_time: float
    executor: str

    @property
    def ok(self) -> bool:
        """True when every cell is done."""
        return self.failed == 0

    @property
    def summaries(self) -> list[dict[str, Any] | None]:
        """Summary dict per cell (``None`` for a failed cell), in cell order."""
        return [r.summary for r in self.records]

    @property
    def samples(self) -> list[np.ndarray | None]:
        """Raw samples per cell (``None`` for a failed cell), in cell order."""
        return [r.samples for r in self.records]

    def failures(self) -> list[CellRecord]:
        """The failed rows."""
        return [r for r in self.records if not r.ok]


# --------------------------------------------------------------------------------------------
# The toy cell (tests, benchmarks, docs)


def demo_cell(config: Mapping[str, Any]) -> CellOutput:
    """A toy cell shaped like an NTK-statistics cell: seeded, deterministic, CPU-bound.

    ``config``: ``seed`` (int), ``inits`` (samples, default 16), ``size`` (matrix size,
    default 32), ``iters`` (matrix products per init, default 1), ``sleep`` (seconds, default
    0), ``fail_unless_exists`` (a path: raise unless that file exists, a stand-in for a
    transient failure) and ``crash`` (true: the process kills itself, as the OS would kill an
    out-of-memory worker). Each sample is the mean square of a random tanh network's output.
    """
    path = config.get("fail_unless_exists")
    if path is not None and not os.path.exists(path):
        raise RuntimeError(f"demo cell failure: {path} does not exist")
    if config.get("crash"):  # a worker killed mid-cell (out of memory, a native crash)
        os.kill(os.getpid(), signal.SIGKILL)
    rng = np.random.default_rng(int(config.get("seed", 0)))
    inits, size, iters = (int(config.get(k, d)) for k, d in (("inits", 16), ("size", 32),
                                                              ("iters", 1)))
    time.sleep(float(config.get("sleep", 0.0)))
    samples = np.empty(inits)
    for i in range(inits):
        h = rng.standard_normal((size, size))
        for _ in range(iters):
            h = np.tanh(rng.standard_normal((size, size)) @ h / math.sqrt(size))
        samples[i] = float(np.mean(h * h))
    summary = {"mean": float(samples.mean()), "var": float(samples.var(ddof=1)) if inits > 1
               else 0.0, "n": inits}
    return CellOutput(summary, samples)


# --------------------------------------------------------------------------------------------
# Worker side


_worker_ready = False


def _worker_init() -> None:
    """Once per worker process: one thread per BLAS/torch pool (the workers fill the cores)."""
    global _worker_ready
    for name in _THREAD_ENV:
        os.environ.setdefault(name, "1")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    else:
        torch.set_num_threads(1)
    _worker_ready = True


def _run_cell(fn: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> tuple:
    """Run ``fn(config)`` in a worker; returns ``(summary, samples, error, wall_time)``
    (:func:`_cell_result`)."""
    if not _worker_ready:
        _worker_init()
    return _cell_result(fn, config)


def _cell_result(fn: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> tuple:
    """``fn(config)`` as ``(summary, samples, error, wall_time)``.

    Exceptions become an error message (first line ``Type: message``, then the traceback) so
    one bad cell never stops the sweep.
    """
    start = time.perf_counter()
    try:
        out = fn(config)
        if isinstance(out, CellOutput):
            summary, samples = out.summary, out.samples
        elif isinstance(out, tuple) and len(out) == 2:
            summary, samples = out
        else:
            raise TypeError("a cell function must return CellOutput or (summary dict, "
                            f"samples array), got {type(out).__name__}")
        if not isinstance(summary, Mapping):
            raise TypeError(f"summary must be a dict, got {type(summary).__name__}")
        summary_json(summary)  # refuse a non-JSON summary here, as this cell's failure
        samples = np.ascontiguousarray(samples, dtype=np.float64)
        return dict(summary), samples, None, time.perf_counter() - start
    except Exception as exc:
        return None, None, _error_text(exc), time.perf_counter() - start


def _error_text(exc: BaseException) -> str:
    head = f"{type(exc).__name__}: {exc}".strip()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = f"{head}\n\n{tb}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + "\n[...]"


@contextmanager
def _one_thread_env() -> Iterator[None]:
    """Temporarily default the thread-count variables to 1 (for processes started inside).

    NumPy sizes its BLAS thread pool when imported, which in a new worker happens before any
    initializer runs, so the limit has to be in the environment the worker starts with.
    Values the user set are kept.
    """
    saved = {name: os.environ.get(name) for name in _THREAD_ENV}
    try:
        for name in _THREAD_ENV:
            os.environ.setdefault(name, "1")
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _SpawnProcess(multiprocessing.context.SpawnProcess):
    def start(self) -> None:
        with _one_thread_env():
            super().start()


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnProcess


def _worker_context() -> multiprocessing.context.BaseContext:
    """How local workers start: ``forkserver`` where the platform has it, else ``spawn``.

    The fork server is a fresh interpreter that imports ntkscope (and torch) once; every pool
    of every later sweep in this process forks ready workers from it instead of paying the
    imports again. Either way workers inherit nothing from the driver (threads, CUDA state).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return _SpawnContext()
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ntkscope.sweep"])
    with _one_thread_env():
        forkserver.ensure_running()  # a no-op when it already runs
    return ctx


# --------------------------------------------------------------------------------------------
# Driver side

# A finished cell as the driver sees it: (cell, (summary, samples, error, wall_time)).
_Outcome = tuple[Cell, tuple]
_DIED = ("worker process died while computing this cell, twice (killed by the OS, e.g. out "
         "of memory, or a crash in native code)")


def run_sweep(
    cells: Sequence[Cell],
    fn: Callable[[dict[str, Any]], Any],
    store: Store,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    retry_failed: bool = False,
    quiet: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    *,
    unit: str = "cell",
    size: Callable[[Cell], int] | None = None,
) -> SweepReport:
    """Compute the cells missing from ``store`` with ``fn`` and return every cell's row.

    ``executor="local"`` runs ``workers`` (default: all cores) worker processes;
    ``executor="dask"`` connects to the Dask scheduler at ``scheduler`` (``"tcp://HOST:PORT"``)
    or, without one, starts a local cluster of ``workers`` single-threaded processes for
    the run; ``executor="inline"`` computes the cells in this process, in order (``fn`` need
    not be importable; ``workers`` is ignored). A cell whose ``fn`` raises is stored as failed
    with the message and the sweep goes on; ``retry_failed=True`` computes failed cells
    again. ``quiet`` hides the progress bar (stderr), which counts cells, or ``size(cell)``
    items of ``unit`` per cell (e.g. the initializations a cell draws). Duplicate cells are
    computed once.
    """
    start = time.perf_counter()
    cells = _check_cells(cells)
    if executor not in EXECUTORS:
        raise NtkscopeInputError(f"executor: expected one of {EXECUTORS}, got {executor!r}")
    if not isinstance(store, Store):
        raise NtkscopeInputError(f"store: expected an ntkscope Store, got {type(store).__name__}")
    if not callable(fn):
        raise NtkscopeInputError(f"fn: expected a function, got {fn!r}")
    n_workers = positive_int("workers", workers) if workers is not None else os.cpu_count() or 1
    if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) \
            or not 0 < connect_timeout < math.inf:
        raise NtkscopeInputError(f"connect_timeout: expected seconds > 0, got {connect_timeout!r}")
    if scheduler is not None and (executor != "dask" or not isinstance(scheduler, str)):
        raise NtkscopeInputError(f"scheduler: an address string for executor='dask', got "
                                 f"{scheduler!r} with executor={executor!r}")

    unique = list({c.key: c for c in cells}.values())
    status = store.statuses(c.key for c in unique)
    todo = [c for c in unique
            if c.key not in status or (retry_failed and status[c.key] == "failed")]
    computed = 0
    n_workers = min(n_workers, len(todo)) if todo else n_workers  # no idle processes
    if todo:
        weight = size if size is not None else (lambda c: 1)
        done_before = sum(weight(c) for c in unique) - sum(weight(c) for c in todo)
        desc = f"{unit}s ({done_before} cached)" if done_before else f"{unit}s"
        with ExitStack() as stack:
            # connect (or start the cluster) before the progress bar appears
            outcomes = stack.enter_context(execute_cells(todo, fn, executor, n_workers,
                                                         scheduler, connect_timeout))
            bar = stack.enter_context(Progress(sum(weight(c) for c in todo), desc, unit=unit,
                                               quiet=quiet))
            for cell, (summary, samples, error, wall) in outcomes:
                if error is None:
                    store.put_done(cell.key, cell.kind, cell.config, summary, samples, wall)
                else:
                    store.put_failed(cell.key, cell.kind, cell.config, error, wall)
                computed += 1
                bar.update(ok=error is None, n=weight(cell))

    records = {c.key: store.get(c.key) for c in unique}
    ordered = [records[c.key] for c in cells]
    missing = [c for c, r in zip(cells, ordered, strict=True) if r is None]
    if missing:  # only if another process deleted rows meanwhile
        raise RuntimeError(f"store {store.path}: {len(missing)} cells vanished during the sweep")
    return SweepReport(
        cells=cells,
        records=ordered,  # type: ignore[arg-type]
        computed=computed,
        cached=len(unique) - len(todo),
        failed=sum(not r.ok for r in records.values()),  # type: ignore[union-attr]
        wall_time=time.perf_counter() - start,
        executor=executor,
    )


@contextmanager
def execute_cells(todo: Sequence[Cell], fn: Callable[[dict[str, Any]], Any],
                  executor: str = "local", workers: int = 1, scheduler: str | None = None,
                  connect_timeout: float = CONNECT_TIMEOUT) -> Iterator[Iterator[_Outcome]]:
    """The executor layer of :func:`run_sweep`, for engines that keep results elsewhere.

    Yields an iterator of ``(cell, (summary, samples, error, wall_time))`` in completion
    order, ``fn(cell.config)`` computed for every cell of ``todo`` by ``executor``
    (``"inline"``: this process, in order; ``"local"``: ``workers`` worker processes, a
    worker that dies is retried alone once; ``"dask"``: the scheduler at ``scheduler`` or a
    local cluster of ``workers`` processes). An exception in ``fn`` becomes that cell's
    ``error`` text. Leaving the context stops the workers (and the cluster it started) and
    cancels what is still running.
    """
    if executor not in EXECUTORS:
        raise NtkscopeInputError(f"executor: expected one of {EXECUTORS}, got {executor!r}")
    todo = list(todo)
    with ExitStack() as stack:
        outcomes: Iterator[_Outcome]
        if executor == "inline":
            outcomes = ((c, _cell_result(fn, c.config)) for c in todo)
        elif executor == "local":
            _check_importable(fn)
            outcomes = _local_outcomes(todo, fn, workers)
        else:
            client = stack.enter_context(_dask_client(workers, scheduler, connect_timeout))
            outcomes = _dask_outcomes(todo, fn, client)
        stack.enter_context(closing(outcomes))  # type: ignore[arg-type]
        yield outcomes


def _check_cells(cells: Sequence[Cell]) -> list[Cell]:
    if isinstance(cells, (str, bytes, Mapping)) or not isinstance(cells, Sequence):
        raise NtkscopeInputError(f"cells: expected a list of Cell, got {type(cells).__name__}")
    for i, c in enumerate(cells):
        if not isinstance(c, Cell):
            raise NtkscopeInputError(f"cells[{i}]: expected a Cell, got {type(c).__name__}")
    return list(cells)


def _check_importable(fn: Callable[..., Any]) -> None:
    """Worker processes are spawned: ``fn`` must pickle by reference and be importable."""
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise NtkscopeInputError(
            f"fn: must be a top-level function that worker processes can import (not a "
            f"lambda or a local function): {exc}"
        ) from None
    module = getattr(fn, "__module__", None)
    if module == "__main__" and getattr(sys.modules.get("__main__"), "__file__", None) is None:
        raise NtkscopeInputError(
            "fn: defined in an interactive session, so worker processes cannot import it; "
            "put it in a module (or a script file)"
        )


def _local_outcomes(todo: list[Cell], fn: Callable[..., Any], workers: int) -> Iterator[_Outcome]:
    """Results of ``todo`` from a local process pool, in completion order.

    At most ``workers + 1`` cells are in flight (one queued, so no worker waits for the
    driver). A worker that dies (killed by the OS, a native crash) breaks the pool and every
    cell in flight with it; those cells become *suspects*, and a fresh pool runs each suspect
    alone, so only the cell that kills its worker again is reported failed.
    """
    pending = iter(todo)
    suspects: deque[Cell] = deque()
    suspected: set[str] = set()
    in_flight: dict[cf.Future, tuple[Cell, cf.ProcessPoolExecutor]] = {}
    pool: cf.ProcessPoolExecutor | None = None

    def submit(cell: Cell) -> None:
        nonlocal pool
        for _ in range(2):
            if pool is None:
                pool = _new_pool(workers)
            try:
                in_flight[pool.submit(_run_cell, fn, cell.config)] = (cell, pool)
                return
            except cf.process.BrokenProcessPool:  # broke since the last result came in
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
        raise RuntimeError("cannot start local worker processes")  # pragma: no cover

    try:
        while True:
            if suspects:
                if not in_flight:
                    submit(suspects.popleft())
            else:
                for cell in itertools.islice(pending, workers + 1 - len(in_flight)):
                    submit(cell)
            if not in_flight:
                return
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                cell, its_pool = in_flight.pop(fut)
                exc = fut.exception()
                if isinstance(exc, cf.process.BrokenProcessPool):
                    if its_pool is pool:  # (not a straggler of an earlier broken pool)
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = None
                    if cell.key in suspected:  # it ran alone: it killed its worker
                        yield cell, (None, None, _DIED, None)
                    else:
                        suspected.add(cell.key)
                        suspects.append(cell)
                elif exc is not None:  # e.g. a result that does not pickle
                    yield cell, (None, None, _error_text(exc), None)
                else:
                    yield cell, fut.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(workers, mp_context=_worker_context(), initializer=_worker_init)


def _dask_outcomes(todo: list[Cell], fn: Callable[..., Any], client: Any) -> Iterator[_Outcome]:
    """Results of ``todo`` computed as Dask tasks, in completion order (``as_completed``)."""
    from dask.distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = client.map(
        functools.partial(_run_cell, fn),
        [c.config for c in todo],
        key=[f"ntkscope-{c.kind}-{c.key[:16]}-{token}" for c in todo],
        pure=False,
    )
    by_key = {f.key: c for f, c in zip(futures, todo, strict=True)}
    try:
        for fut in as_completed(futures):
            cell = by_key[fut.key]
            if fut.status == "finished":
                yield cell, fut.result()
            elif fut.cancelled():  # the scheduler went away or dropped the task
                raise NtkscopeInputError(
                    "scheduler: the Dask cluster lost a task (scheduler shut down or "
                    "unreachable?); every finished cell is stored, rerun to compute the rest"
                )
            else:  # e.g. KilledWorker: the task took down its workers repeatedly
                yield cell, (None, None, _error_text(fut.exception()), None)
            fut.release()
    finally:
        client.cancel(futures)


@contextmanager
def _dask_client(workers: int, scheduler: str | None, connect_timeout: float) -> Iterator[Any]:
    """A Client connected to ``scheduler``, or to a LocalCluster started for the run."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency
        raise NtkscopeInputError("executor='dask' needs Dask: pip install 'dask[distributed]'"
                                 ) from None

    with dask.config.set({"distributed.comm.timeouts.connect": f"{connect_timeout}s"}):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise NtkscopeInputError(
                    f"scheduler: cannot reach the Dask scheduler at {scheduler!r} within "
                    f"{connect_timeout:g} s ({type(exc).__name__}: {exc})"
                ) from None
            cluster = None
        else:  # worker processes from the same preloaded fork server as the local executor
            method = "spawn" if isinstance(_worker_context(), _SpawnContext) else "forkserver"
            # Quiet logs: cell errors go to the store, and a worker's heartbeat racing the
            # shutdown at the end of the run would otherwise print a traceback.
            with dask.config.set({"distributed.worker.multiprocessing-method": method}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.CRITICAL)
            client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
