"""``NTKTracker``: lazy vs feature-learning diagnostics inside the user's own training loop.

At construction (step 0) the tracker takes the empirical NTK ``Theta_0`` of the model on fixed
probe inputs (:func:`ntkscope.module_ntk`) and a detached copy ``theta_0`` of the parameters the
kernel differentiates; at every snapshot it takes ``Theta_t`` and records the diagnostics of
:mod:`ntkscope.diagnostics` (CONVENTIONS section 9) against them. Records can be kept in a
results store (:class:`ntkscope.store.Store`) as they are taken, so a killed job loses nothing
taken and a new tracker on the same store and run continues its history. Guide:
``docs/tracker.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ntkscope.diagnostics import (
    centered_alignment,
    kernel_distance,
    ntk_change,
    spectrum,
    weight_change,
)
from ntkscope.generic._api import Method, module_ntk
from ntkscope.generic._inputs import Inputs, _map, _skeleton
from ntkscope.generic._problem import Forward, select_params
from ntkscope.validation import NtkscopeInputError, positive_int

#: The run name of a tracker given a store and no ``run``.
DEFAULT_RUN = "default"

__all__ = ["NTKTracker", "TrackerRecord"]

#: ``kind`` of the store rows: one per snapshot, and one holding ``Theta_0`` and ``theta_0``.
RECORD_KIND = "ntk_tracker"
INIT_KIND = "ntk_tracker_init"
#: Kernel outputs the tracker accepts ("diagonal" has no off-diagonal entries to compare).
TRACKER_OUTPUTS = ("trace", "full")
#: Columns of :meth:`NTKTracker.to_csv` before the per-tensor weight changes.
CSV_COLUMNS = ("step", "ntk_change", "kernel_distance", "alignment", "weight_change",
               "kernel_norm", "lambda_max", "lambda_min", "condition", "seconds")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class TrackerRecord:
    """One snapshot of :class:`NTKTracker` at training step ``step``.

    Attributes:
        step: the tracker's step counter when the snapshot was taken.
        ntk_change: ``|Theta_t - Theta_0|_F / |Theta_0|_F`` (paper Section 4, eq. 3).
        kernel_distance: ``1 - <Theta_t, Theta_0>_F / (|Theta_t|_F |Theta_0|_F)`` (Fort et
            al. 2020).
        alignment: centered kernel-target alignment of ``Theta_t`` with the probe targets
            (Cortes et al. 2012); None without ``probe_y``.
        weight_change: ``|theta_t - theta_0|_2 / |theta_0|_2`` over all tracked parameters
            (Chizat et al. 2019, Lee et al. 2019).
        weight_change_per_tensor: the same per parameter tensor; None for a tensor that
            started at zero and moved (the relative change is infinite).
        kernel_norm: ``|Theta_t|_F``.
        lambda_max, lambda_min: extreme eigenvalues of ``Theta_t`` (the full kernel as the
            ``(n O) x (n O)`` matrix).
        condition: ``lambda_max / lambda_min``; None where ``Theta_t`` is singular to working
            precision (``lambda_min <= n eps lambda_max``, :func:`ntkscope.diagnostics.spectrum`).
        seconds: wall time of the measurement (the kernel and the diagnostics).
    """

    step: int
    ntk_change: float
    kernel_distance: float
    alignment: float | None
    weight_change: float
    weight_change_per_tensor: dict[str, float | None]
    kernel_norm: float
    lambda_max: float
    lambda_min: float
    condition: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (None for the undefined values; never NaN or inf)."""
        return {
            "step": self.step,
            "ntk_change": self.ntk_change,
            "kernel_distance": self.kernel_distance,
            "alignment": self.alignment,
            "weight_change": self.weight_change,
            "weight_change_per_tensor": dict(self.weight_change_per_tensor),
            "kernel_norm": self.kernel_norm,
            "lambda_max": self.lambda_max,
            "lambda_min": self.lambda_min,
            "condition": self.condition,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackerRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            step=int(data["step"]),
            ntk_change=float(data["ntk_change"]),
            kernel_distance=float(data["kernel_distance"]),
            alignment=None if data["alignment"] is None else float(data["alignment"]),
            weight_change=float(data["weight_change"]),
            weight_change_per_tensor={k: None if v is None else float(v)
                                      for k, v in data["weight_change_per_tensor"].items()},
            kernel_norm=float(data["kernel_norm"]),
            lambda_max=float(data["lambda_max"]),
            lambda_min=float(data["lambda_min"]),
            condition=None if data["condition"] is None else float(data["condition"]),
            seconds=float(data["seconds"]),
        )

    def csv_row(self, names: Sequence[str]) -> list[Any]:
        """The values of :data:`CSV_COLUMNS`, then the per-tensor changes of ``names``."""
        return [self.step, self.ntk_change, self.kernel_distance, self.alignment,
                self.weight_change, self.kernel_norm, self.lambda_max, self.lambda_min,
                self.condition, self.seconds,
                *(self.weight_change_per_tensor.get(n) for n in names)]


# ---------------------------------------------------------------------------------------------
# Inputs


def _targets(probe_y: Any, n: int) -> torch.Tensor | None:
    """Probe targets as float64 ``(n, k)``: real targets ``(n,)`` or ``(n, k)`` as given,
    integer class labels ``(n,)`` one-hot over ``0..max``."""
    if probe_y is None:
        return None
    if isinstance(probe_y, np.ndarray):
        probe_y = torch.from_numpy(probe_y)
    if not isinstance(probe_y, torch.Tensor):
        try:
            probe_y = torch.as_tensor(probe_y)
        except (TypeError, ValueError, RuntimeError):
            raise NtkscopeInputError(f"probe_y: expected a tensor or an array of numbers, got "
                                     f"{type(probe_y).__name__}") from None
    y = probe_y.detach().cpu()
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise NtkscopeInputError(f"probe_y: expected shape ({n},) or ({n}, k) for the {n} probe "
                                 f"inputs, got {tuple(y.shape)}")
    if y.dtype == torch.bool:
        y = y.to(torch.float64)
    if not y.dtype.is_floating_point and not y.dtype.is_complex:
        if y.dim() == 1:
            if int(y.min()) < 0:
                raise NtkscopeInputError("probe_y: integer class labels must be >= 0")
            y = torch.nn.functional.one_hot(y.long(), int(y.max()) + 1)
        y = y.to(torch.float64)
    if y.is_complex():
        raise NtkscopeInputError("probe_y: complex targets are not supported")
    y = y.to(torch.float64)
    if not bool(torch.isfinite(y).all()):
        raise NtkscopeInputError("probe_y: contains NaN or inf")
    y = y[:, None] if y.dim() == 1 else y
    if n < 2:
        raise NtkscopeInputError("probe_y: the alignment needs at least 2 probe inputs")
    if not bool((y != 0).any()):
        raise NtkscopeInputError("probe_y: all targets are zero")
    return y


def _digest(value: Any, y: torch.Tensor | None) -> str:
    """SHA-256 of the probe inputs as given (structure, shapes, dtypes, values) and targets."""
    h = hashlib.sha256(repr(_skeleton(value)).encode())
    for t in Inputs.of(value, "probe_x").tensors():
        t = t.detach().cpu().contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(b"targets")
    if y is not None:
        h.update(y.numpy().tobytes())
    return h.hexdigest()


def _open_store(store: Any) -> tuple[Any, bool]:
    """``(Store, owned)``: a path opens (or creates) a store the tracker closes."""
    from ntkscope.store import Store

    if isinstance(store, Store):
        return store, False
    if isinstance(store, (str, os.PathLike)):
        return Store(store), True
    raise NtkscopeInputError(f"store: expected a path or an ntkscope.store.Store, got "
                             f"{type(store).__name__}")


@contextlib.contextmanager
def _measuring(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Every submodule in eval mode and the RNG forked for the block; each submodule's
    ``training`` flag is restored exactly afterwards (``model.train()`` would set them all)."""
    flags = [(m, m.training) for m in model.modules()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            yield
    finally:
        for m, flag in flags:
            m.training = flag


# ---------------------------------------------------------------------------------------------
# The tracker


@dataclass
class _State:
    """What a measurement compares with (fixed at step 0, or loaded from the store)."""

    kernel0: torch.Tensor
    params0: dict[str, torch.Tensor]
    step0: int
    seconds0: float


class NTKTracker:
    r"""Lazy vs feature-learning diagnostics of ``model`` on probe inputs, in your own loop.

    ::

        tracker = ntkscope.NTKTracker(model, probe_x, probe_y, every=100)
        for step, (x, y) in enumerate(loader):
            ...; optimizer.step()
            tracker.step()           # snapshots at steps every, 2 every, ...
        tracker.to_csv("ntk.csv"); tracker.plot("ntk.png")

    Constructing the tracker is step 0: it takes ``Theta_0`` on ``probe_x`` and keeps a
    detached copy ``theta_0`` of the parameters the kernel differentiates (those that require
    grad, or ``params``), and records the first snapshot. :meth:`step` advances the step
    counter by one (or sets it: ``step(step=N)``) and takes a snapshot when the counter is a
    multiple of ``every``; :meth:`measure` takes one now. Each snapshot is a
    :class:`TrackerRecord` in :attr:`history` (a snapshot taken twice at the same step
    replaces the first):

    * ``ntk_change = |Theta_t - Theta_0|_F / |Theta_0|_F`` (paper Section 4, eq. 3);
    * ``kernel_distance = 1 - <Theta_t, Theta_0>_F / (|Theta_t|_F |Theta_0|_F)`` (Fort et al.
      2020);
    * ``alignment = <H K H, Y Y^T>_F / (|H K H|_F |Y Y^T|_F)``, ``H = I - 1 1^T / n``, ``K``
      the trace kernel (Cortes et al. 2012), with ``probe_y``;
    * ``weight_change = |theta_t - theta_0|_2 / |theta_0|_2``, globally and per tensor
      (Chizat et al. 2019, Lee et al. 2019);
    * ``lambda_max``, ``lambda_min`` and the condition number of ``Theta_t``.

    A measurement leaves training undisturbed: every submodule is switched to eval mode for
    the kernel (BatchNorm uses its running statistics, dropout is off) and its own training
    flag is restored afterwards; ``.grad`` of the parameters, the global RNG state (CPU and
    the model's CUDA device) and the autograd mode are left as they were. The kernel is
    computed in the model's dtype on its device (floating probe inputs are cast and moved to
    them); the diagnostics in float64.

    Args:
        model: any ``nn.Module`` :func:`ntkscope.module_ntk` accepts in eval mode.
        probe_x: probe inputs: a tensor (or NumPy array) or a tuple/list/dict of tensors split
            along the first axis (as :func:`ntkscope.module_ntk` takes them; copied at
            construction).
        probe_y: targets of the probe inputs for the alignment: real ``(n,)`` or ``(n, k)``
            (one-hot included), or integer class labels ``(n,)`` (one-hot encoded over
            ``0..max``); None: no alignment.
        every: snapshot interval in steps (``>= 1``).
        output: ``"trace"`` (default; the ``(n, n)`` kernel summed over outputs) or
            ``"full"`` (``(n, n, O, O)``; the alignment uses its trace kernel, the spectrum
            the ``(n O) x (n O)`` matrix). ``"diagonal"`` is refused: the diagnostics compare
            whole kernels.
        forward, params: as in :func:`ntkscope.module_ntk`; the tracked parameters (default:
            those that require grad now) are fixed at construction.
        store: a path or an :class:`ntkscope.store.Store`: every snapshot is written as it is
            taken (one transaction each), with ``Theta_0`` and ``theta_0``.
        run: name of the run in the store (default ``"default"``: one run per store; name
            runs to keep several in one store). A store that already holds ``run`` is
            continued:
            its history, ``Theta_0`` and ``theta_0`` are loaded (changes stay relative to the
            original step 0, not to the resumed model), no snapshot is taken at construction,
            and the step counter continues from the last recorded step (``step`` sets it;
            stored snapshots after ``step`` are dropped, since training is redone from there).
            The probe inputs and targets, ``output``, the model's dtype and the tracked
            parameters' names and shapes must match the stored run (else an error).
        step: the step counter at construction (default 0, or the resumed run's last step).
        method, max_memory: passed to :func:`ntkscope.module_ntk`.

    Raises:
        NtkscopeInputError: bad arguments, a model or probe :func:`ntkscope.module_ntk`
            refuses, a stored run that does not match, ``store`` without ``run``.
    """

    def __init__(self, model: nn.Module, probe_x: Any, probe_y: Any = None, *,
                 every: int = 100, output: str = "trace", forward: Forward | None = None,
                 params: Sequence[str] | None = None, store: Any = None,
                 run: str | None = None, step: int | None = None,
                 method: str | Method = "auto", max_memory: int | str | None = None) -> None:
        self.every = positive_int("every", every)
        if output == "diagonal":
            raise NtkscopeInputError(
                "output: 'diagonal' gives only Theta(x_i, x_i), but the tracker's diagnostics "
                "compare whole kernels; use 'trace' (default) or 'full'")
        if output not in TRACKER_OUTPUTS:
            raise NtkscopeInputError(f"output: expected 'trace' or 'full', got {output!r}")
        self.output = output
        self.model = model
        self.forward = forward
        self.method = method
        self.max_memory = max_memory
        tracked = select_params(model, params)  # validates model and params
        # fixed now: freezing a tracked tensor later is an error, not another kernel
        self._param_arg = list(tracked)
        self.param_names: tuple[str, ...] = tuple(tracked)
        if isinstance(probe_x, np.ndarray):
            probe_x = torch.from_numpy(probe_x)
        probe = Inputs.of(probe_x, "probe_x")
        self.n_probe = probe.n
        self._targets = _targets(probe_y, probe.n)
        self._probe_given = _map(probe.value, lambda t: t.detach().clone())
        self._probe_cache: tuple[tuple[torch.dtype, torch.device], Any] | None = None
        dtype = self._dtype()
        self.fingerprint = {
            "probe": _digest(self._probe_given, self._targets),
            "n_probe": probe.n,
            "output": output,
            "dtype": str(dtype).replace("torch.", ""),
            "params": [[n, list(p.shape)] for n, p in tracked.items()],
        }
        if step is not None:
            step = positive_int("step", step, minimum=0)
        if run is not None and (not isinstance(run, str) or not run.strip()):
            raise NtkscopeInputError(f"run: expected a non-empty name, got {run!r}")
        if store is not None and run is None:
            run = DEFAULT_RUN
        self.run = run
        self._store, self._owns_store = (None, False) if store is None else _open_store(store)
        self._records: dict[int, TrackerRecord] = {}
        try:
            loaded = self._load(step) if self._store is not None else None
            if loaded is None:
                self.counter = 0 if step is None else step
                self._state = self._initial_state()
                self._save_init()
                self._add(self._record(self._state.kernel0, self._state.params0,
                                       self.counter, self._state.seconds0))
            else:
                self._state = loaded
        except BaseException:
            self.close()
            raise

    # -- public ---------------------------------------------------------------------------

    @property
    def history(self) -> list[TrackerRecord]:
        """The snapshots, in step order."""
        return [self._records[s] for s in sorted(self._records)]

    @property
    def initial_kernel(self) -> torch.Tensor:
        """``Theta_0`` on the probe inputs (model dtype and device)."""
        return self._state.kernel0

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        """``theta_0``: detached copies of the tracked parameters at step 0."""
        return dict(self._state.params0)

    def step(self, step: int | None = None) -> TrackerRecord | None:
        """Advance the step counter by one (or set it to ``step``) and take a snapshot when it
        is a multiple of ``every``; returns the new record or None."""
        if step is None:
            self.counter += 1
        else:
            self.counter = positive_int("step", step, minimum=0)
        if self.counter % self.every == 0:
            return self.measure()
        return None

    def measure(self) -> TrackerRecord:
        """Take a snapshot now, at the current step counter (replacing one already taken at
        this step)."""
        start = time.perf_counter()
        kernel = self._kernel()
        params = {n: p.detach() for n, p in self._tracked().items()}
        record = self._record(kernel, params, self.counter, 0.0)
        record = replace(record, seconds=time.perf_counter() - start)
        self._add(record)
        return record

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready data: settings and every record."""
        return {"run": self.run, "every": self.every, "output": self.output,
                "n_probe": self.n_probe, "params": list(self.param_names),
                "step": self.counter, "history": [r.to_dict() for r in self.history]}

    def title(self) -> str:
        """One line: the run, its probe and the number of snapshots."""
        name = f" {self.run!r}" if self.run else ""
        return (f"NTK tracker{name}: {len(self._records)} snapshots of the {self.output} "
                f"kernel on {self.n_probe} probe inputs, every {self.every} steps")

    def rows(self) -> list[tuple[str, Any]]:
        """The latest snapshot, one ``(name, value)`` per diagnostic."""
        last = self.history[-1]
        return [(k, v) for k, v in last.to_dict().items() if k != "weight_change_per_tensor"]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per snapshot (:data:`CSV_COLUMNS`)."""
        return list(CSV_COLUMNS), [r.csv_row(())[:len(CSV_COLUMNS)] for r in self.history]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the history as CSV (atomically): :data:`CSV_COLUMNS`, then one
        ``weight_change[NAME]`` column per tracked tensor; undefined values are empty."""
        from ntkscope.io import check_output_file
        from ntkscope.plotting import write_csv

        target = check_output_file(path, "path", (".csv",))
        names = self.param_names
        header = [*CSV_COLUMNS, *(f"weight_change[{n}]" for n in names)]
        return write_csv(target, header, (r.csv_row(names) for r in self.history))

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """A multi-panel figure of the history vs step (PNG, PDF or SVG by suffix): kernel
        change and distance (log y), weight change, global and per tensor (log y), the
        extreme eigenvalues and condition number (log y), and the alignment (with
        ``probe_y``). Step 0 (all changes zero) is left out of the log panels."""
        from ntkscope.io import check_output_file

        target = check_output_file(path, "path", (".png", ".pdf", ".svg"))
        return _plot_history(self.history, self.param_names, target,
                            title or self.title(), alignment=self._targets is not None)

    def close(self) -> None:
        """Close a store the tracker opened from a path (idempotent)."""
        if self._store is not None and self._owns_store:
            self._store.close()
        self._owns_store = False

    def __enter__(self) -> NTKTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"NTKTracker(run={self.run!r}, step={self.counter}, every={self.every}, "
                f"snapshots={len(self._records)})")

    # -- measuring ------------------------------------------------------------------------

    def _tracked(self) -> dict[str, nn.Parameter]:
        return select_params(self.model, self._param_arg)

    def _dtype(self) -> torch.dtype:
        tracked = self._tracked()
        return max(tracked.values(), key=lambda p: p.element_size()).dtype

    def _probe(self) -> Any:
        """The probe inputs with floating leaves in the model's dtype, all on its device."""
        p = next(iter(self._tracked().values()))
        key = (self._dtype(), p.device)
        if self._probe_cache is None or self._probe_cache[0] != key:
            dtype, device = key

            def cast(t: torch.Tensor) -> torch.Tensor:
                if t.dtype.is_floating_point:
                    return t.to(device=device, dtype=dtype)
                return t.to(device=device)

            self._probe_cache = (key, _map(self._probe_given, cast))
        return self._probe_cache[1]

    def _kernel(self) -> torch.Tensor:
        device = next(iter(self._tracked().values())).device
        try:
            with _measuring(self.model, device):
                return module_ntk(self.model, self._probe(), output=self.output,
                                  params=self._param_arg, forward=self.forward,
                                  method=self.method, max_memory=self.max_memory)
        except NtkscopeInputError as exc:
            raise NtkscopeInputError(f"NTKTracker at step {self.counter}: {exc}") from None

    def _initial_state(self) -> _State:
        start = time.perf_counter()
        kernel = self._kernel()
        params = {n: p.detach().clone() for n, p in self._tracked().items()}
        return _State(kernel, params, self.counter, time.perf_counter() - start)

    def _record(self, kernel: torch.Tensor, params: Mapping[str, torch.Tensor], step: int,
                seconds: float) -> TrackerRecord:
        k0, p0 = self._state.kernel0, self._state.params0
        try:
            wc = weight_change(params, p0)
            spec = spectrum(kernel)
            align = None if self._targets is None else centered_alignment(kernel,
                                                                           self._targets)
            change, dist = ntk_change(kernel, k0), kernel_distance(kernel, k0)
        except NtkscopeInputError as exc:
            raise NtkscopeInputError(f"NTKTracker at step {step}: {exc}") from None
        return TrackerRecord(
            step=step, ntk_change=change, kernel_distance=dist, alignment=align,
            weight_change=wc.total,
            weight_change_per_tensor={k: _finite_or_none(v) for k, v in wc.per_tensor.items()},
            kernel_norm=float(torch.linalg.vector_norm(kernel.detach().to(torch.float64))),
            lambda_max=spec.lambda_max, lambda_min=spec.lambda_min,
            condition=_finite_or_none(spec.condition), seconds=float(seconds))

    def _add(self, record: TrackerRecord) -> None:
        self._records[record.step] = record
        if self._store is not None:
            from ntkscope.store import cell_key

            config = {"run": self.run, "step": record.step}
            self._store.put_done(cell_key(RECORD_KIND, config), RECORD_KIND, config,
                                 record.to_dict(), np.empty(0), wall_time=record.seconds)

    # -- the store ------------------------------------------------------------------------

    def _init_key(self) -> str:
        from ntkscope.store import cell_key

        return cell_key(INIT_KIND, {"run": self.run})

    def _save_init(self) -> None:
        if self._store is None:
            return
        s = self._state
        blob = np.concatenate(
            [s.kernel0.detach().cpu().to(torch.float64).reshape(-1).numpy()]
            + [p.detach().cpu().to(torch.float64).reshape(-1).numpy()
               for p in s.params0.values()])
        summary = {"fingerprint": self.fingerprint, "step0": s.step0,
                   "kernel_shape": list(s.kernel0.shape), "seconds0": s.seconds0,
                   "every": self.every, "model": type(self.model).__name__}
        self._store.put_done(self._init_key(), INIT_KIND, {"run": self.run}, summary, blob,
                             wall_time=s.seconds0)

    def _load(self, step: int | None) -> _State | None:
        """The stored run's state and history (None: a new run)."""
        row = self._store.get(self._init_key())
        if row is None or not row.ok:
            return None
        stored = row.summary["fingerprint"]
        differ = [k for k in ("probe", "n_probe", "output", "dtype", "params")
                  if stored.get(k) != self.fingerprint[k]]
        if differ:
            what = {"probe": "the probe inputs or targets", "n_probe": "the number of probe "
                    "inputs", "output": "output", "dtype": "the model's dtype",
                    "params": "the tracked parameters (names or shapes)"}
            detail = "; ".join(
                f"{what[k]}: stored {stored.get(k)!r}, now {self.fingerprint[k]!r}"
                if k in ("n_probe", "output", "dtype") else what[k] for k in differ)
            raise NtkscopeInputError(
                f"run {self.run!r} in {self._store.path} was tracked with other settings "
                f"({detail}); use another run name, or the same probe, output and model")
        shape = tuple(row.summary["kernel_shape"])
        blob = torch.from_numpy(np.asarray(row.samples, dtype=np.float64))
        tracked = self._tracked()
        dtype, device = self._dtype(), next(iter(tracked.values())).device
        size = math.prod(shape)
        kernel0 = blob[:size].reshape(shape).to(device=device, dtype=dtype)
        params0, at = {}, size
        for n, p in tracked.items():
            params0[n] = blob[at:at + p.numel()].reshape(p.shape).to(device=device,
                                                                       dtype=p.dtype)
            at += p.numel()
        state = _State(kernel0, params0, int(row.summary["step0"]),
                       float(row.summary["seconds0"]))
        records = [r for r in self._store.records(kind=RECORD_KIND)
                   if r.ok and r.config.get("run") == self.run]
        history = {int(r.config["step"]): TrackerRecord.from_dict(r.summary) for r in records}
        last = max(history, default=state.step0)
        self.counter = last if step is None else step
        dropped = [s for s in history if s > self.counter]
        if dropped:
            from ntkscope.store import cell_key

            self._store.delete(cell_key(RECORD_KIND, {"run": self.run, "step": s})
                               for s in dropped)
        self._records = {s: r for s, r in history.items() if s <= self.counter}
        self._state = state
        if state.step0 not in self._records and state.step0 <= self.counter:
            # killed between the two writes of step 0: the record is a function of Theta_0
            self._add(self._record(kernel0, params0, state.step0, state.seconds0))
        return state



# ---------------------------------------------------------------------------------------------
# The figure

#: Per-tensor weight-change curves drawn (the largest changes at the last snapshot).
MAX_TENSOR_CURVES = 8


def _plot_history(history: Sequence[TrackerRecord], names: Sequence[str], path: Path,
                  title: str, *, alignment: bool) -> Path:
    """The figure of :meth:`NTKTracker.plot`."""
    from ntkscope.plotting import plt, save_figure

    steps = np.array([r.step for r in history], dtype=float)

    def series(values: Sequence[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    def logline(ax: Any, values: Sequence[float | None], **kw: Any) -> None:
        v = series(values)
        keep = np.isfinite(v) & (v > 0)
        if keep.any():
            ax.plot(steps[keep], v[keep], marker="o", ms=3, **kw)

    panels = 4 if alignment else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    logline(ax, [r.ntk_change for r in history], label=r"$\|\Theta_t-\Theta_0\|_F/\|\Theta_0\|_F$")
    logline(ax, [r.kernel_distance for r in history], label="kernel distance")
    ax.set_title("kernel change", fontsize=10)

    ax = axes[0][1]
    logline(ax, [r.weight_change for r in history], color="black", lw=2, label="all")
    last = history[-1].weight_change_per_tensor
    ranked = sorted(names, key=lambda n: -(last.get(n) or 0.0))[:MAX_TENSOR_CURVES]
    for n in ranked:
        logline(ax, [r.weight_change_per_tensor.get(n) for r in history], lw=0.8, alpha=0.8,
                label=n)
    ax.set_title(r"weight change $\|\theta_t-\theta_0\|/\|\theta_0\|$", fontsize=10)

    ax = axes[0][2]
    logline(ax, [r.lambda_max for r in history], label=r"$\lambda_{max}$")
    logline(ax, [r.lambda_min for r in history], label=r"$\lambda_{min}$")
    logline(ax, [r.condition for r in history], ls="--", label="condition")
    ax.set_title(r"spectrum of $\Theta_t$", fontsize=10)

    if alignment:
        ax = axes[0][3]
        ax.plot(steps, series([r.alignment for r in history]), marker="o", ms=3)
        ax.set_title("centered kernel-target alignment", fontsize=10)
    for i, ax in enumerate(axes[0]):
        ax.set_xlabel("step")
        if ax.get_lines():
            if i < 3:  # changes and eigenvalues on log axes; the alignment is in [-1, 1]
                ax.set_yscale("log")
            if len(ax.get_lines()) > 1:
                ax.legend(fontsize=7, framealpha=0.7)
        else:
            ax.text(0.5, 0.5, "no change yet", ha="center", va="center",
                    transform=ax.transAxes)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
