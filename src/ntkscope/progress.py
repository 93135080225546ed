"""A small progress bar for long computations (sweeps, figure grids), built on tqdm.

It writes to stderr, so stdout stays clean for results, and shows items done out of the
total, how many failed, the rate and the ETA::

    cells (12 cached):  40%|████      | 8/20 done, 1 failed [00:04<00:06, 1.9 cell/s]

``quiet=True`` turns it off entirely. Usage::

    with Progress(total=len(todo), desc="cells", quiet=quiet) as bar:
        for item in todo:
            ...
            bar.update(ok=succeeded)
"""

from __future__ import annotations

import sys

from tqdm import tqdm

_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} done{postfix} " \
          "[{elapsed}<{remaining}, {rate_fmt}]"


class Progress:
    """Progress of ``total`` items: done (successes and failures) and failed counts."""

    def __init__(self, total: int, desc: str = "", *, unit: str = "item",
                 quiet: bool = False) -> None:
        self.total = int(total)
        self.done = 0
        self.failed = 0
        self._bar = tqdm(
            total=self.total,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            disable=quiet,
            dynamic_ncols=True,
            bar_format=_FORMAT,
            smoothing=0.1,
        )

    def update(self, ok: bool = True, n: int = 1) -> None:
        """``n`` more items finished; ``ok=False`` counts them as failed too."""
        self.done += n
        if not ok:
            self.failed += n
            self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
        self._bar.update(n)

    def write(self, message: str) -> None:
        """Print a line on stderr above the bar (nothing when quiet)."""
        if self._bar.disable:
            return
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
