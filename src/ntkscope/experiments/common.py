"""What every sweep-backed figure shares: execution options and running its cells."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntkscope.experiments import PRESETS
from ntkscope.store import DEFAULT_STORE_PATH, Store
from ntkscope.sweep import Cell, run_sweep
from ntkscope.validation import NtkscopeInputError


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a figure's cells run (``ntkscope figure/reproduce`` options)."""

    store: str | Path = DEFAULT_STORE_PATH
    executor: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    retry_failed: bool = False
    quiet: bool = False
    #: Where the cells compute (``cpu`` or ``cuda``). Not part of a cell's key: a cell's
    #: numbers are the same mathematics on either device (float64 rounding aside), so
    #: stored cells are reused whichever device computed them.
    device: str = "cpu"


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise NtkscopeInputError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    return preset


def run_cells(
    kind: str,
    configs: Sequence[dict[str, Any]],
    fn: Callable[..., Any],
    options: SweepOptions,
) -> list[dict[str, Any] | None]:
    """Run (or fetch from the store) one cell per config; summaries in config order.

    Failed cells come back as ``None`` (the figure leaves them blank) with a warning naming
    how many failed; ``--retry-failed`` computes them again. ``fn(config, device=...)`` runs
    on ``options.device``.
    """
    if not configs:
        raise NtkscopeInputError("grid: the figure's grid is empty")
    cells = [Cell(kind, cfg) for cfg in configs]
    fn = functools.partial(fn, device=options.device)  # cell functions take it as a keyword
    with Store(options.store) as store:
        report = run_sweep(
            cells,
            fn,
            store,
            executor=options.executor,
            workers=options.workers,
            scheduler=options.scheduler,
            retry_failed=options.retry_failed,
            quiet=options.quiet,
        )
    if report.failed:
        first = report.failures()[0]
        print(
            f"warning: {report.failed} of {len(cells)} cells failed (first: "
            f"{(first.error or '').splitlines()[-1] if first.error else '?'}); they are left "
            "blank. Rerun with --retry-failed after fixing the cause.",
            file=sys.stderr,
        )
    return report.summaries
